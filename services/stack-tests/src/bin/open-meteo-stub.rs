//! A stand-in for the Open-Meteo forecast API, for tests on machines without
//! internet. It answers `GET /v1/forecast` in the documented format (see
//! shared/open-meteo/): one object per requested location, in request order,
//! an array when several were asked for. Values are deterministic functions
//! of the coordinates and the time, so a test can predict them.
//!
//! It can also misbehave on purpose, for the resilience suite: the reply's
//! *mode* (see [`Mode`]) is `normal` unless the environment variable
//! `STUB_MODE` says otherwise at start, and can be switched while running
//! with `PUT /control/mode/NAME` (`GET /control/mode` reads it).
//!
//! It counts what it was asked, the way Open-Meteo counts calls (one per
//! location): `GET /control/calls` answers `requests N` and `locations N`.
//!
//! `open-meteo-stub [PORT]` (default 8080) serves. `GET /healthz` answers 200,
//! and `open-meteo-stub healthcheck [PORT]` probes it (for a container
//! healthcheck); `open-meteo-stub mode NAME [PORT]` switches the mode of the
//! running stub and `open-meteo-stub calls [PORT]` prints the counts (for
//! `docker exec`: the image has no shell or curl).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{web, App, HttpResponse, HttpServer};
use chrono::{DurationRound, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use stack_tests::stub_weather;

/// The `current` block refreshes every 15 minutes, like the real API.
const INTERVAL_SECS: i64 = 900;
/// Size of the `huge-body` reply: ten times what the clients accept.
const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Pause between two bytes of a `trickle` reply: a few kilobytes take
/// minutes, far beyond any client timeout.
const TRICKLE_PAUSE: Duration = Duration::from_millis(100);

/// The `Retry-After` of a `rate-limited` reply: an hour, so a client that
/// honours it is silent for the rest of any test.
const RATE_LIMITED_RETRY_AFTER_SECS: u64 = 3600;

/// How `/v1/forecast` answers. Every hostile mode keeps the HTTP status 200
/// and the JSON content type: the client has to judge the body itself; the
/// two failing modes answer as Open-Meteo does when it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// The documented format with plausible values.
    Normal,
    /// The documented structure, but every weather value has the wrong JSON
    /// type (strings, arrays, objects, booleans).
    WrongTypes,
    /// Bare `NaN`, `Infinity` and `-Infinity` tokens where the numbers go, as
    /// some JSON encoders emit them (not valid JSON).
    Nan,
    /// Numbers that parse but are physically absurd (1e308, u64::MAX).
    HugeNumbers,
    /// Humidity is fine; every other value is refused for its type or range.
    /// A client must store the humidity and NULL elsewhere, inventing nothing.
    Partial,
    /// A 10 MB reply (a normal one padded with a long string).
    HugeBody,
    /// A normal reply sent one byte at a time, a byte every 100 ms.
    Trickle,
    /// 429, over the rate limit, with `Retry-After: 3600`.
    RateLimited,
    /// 503, overloaded, without `Retry-After`: the client backs off alone.
    Unavailable,
}

impl Mode {
    const ALL: [Mode; 9] = [
        Mode::Normal,
        Mode::WrongTypes,
        Mode::Nan,
        Mode::HugeNumbers,
        Mode::Partial,
        Mode::HugeBody,
        Mode::Trickle,
        Mode::RateLimited,
        Mode::Unavailable,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Normal => "normal",
            Mode::WrongTypes => "wrong-types",
            Mode::Nan => "nan",
            Mode::HugeNumbers => "huge-numbers",
            Mode::Partial => "partial",
            Mode::HugeBody => "huge-body",
            Mode::Trickle => "trickle",
            Mode::RateLimited => "rate-limited",
            Mode::Unavailable => "unavailable",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.name() == name)
    }

    fn names() -> String {
        Self::ALL.map(Mode::name).join(", ")
    }
}

/// The current mode, shared by the server's worker and the control route.
static MODE: AtomicU8 = AtomicU8::new(Mode::Normal as u8);

/// Requests to `/v1/forecast`, and the locations they asked for.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
static LOCATIONS: AtomicU64 = AtomicU64::new(0);

fn mode() -> Mode {
    let value = MODE.load(Ordering::Relaxed);
    Mode::ALL
        .into_iter()
        .find(|mode| *mode as u8 == value)
        .unwrap_or(Mode::Normal)
}

#[derive(Deserialize)]
struct Query {
    latitude: String,
    longitude: String,
    current: Option<String>,
}

fn bad_request(reason: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": true, "reason": reason }))
}

/// The coordinates of a comma-separated list, or Open-Meteo's reason.
fn parse_list(name: &str, text: &str) -> Result<Vec<f64>, String> {
    text.split(',')
        .map(|part| {
            part.trim()
                .parse::<f64>()
                .map_err(|_| format!("Parameter '{name}' has an invalid value: {part}"))
        })
        .collect()
}

/// Where a bare token goes in `nan` mode: serde_json cannot write one, so a
/// marker string is written and replaced in the text afterwards.
const NAN_MARKER: &str = "__stub_nan__";
const INFINITY_MARKER: &str = "__stub_infinity__";
const NEG_INFINITY_MARKER: &str = "__stub_neg_infinity__";

/// The value of one variable in the given mode (one that answers 200).
fn value(mode: Mode, variable: &str, temperature: f64, humidity: f64) -> Value {
    match (mode, variable) {
        (Mode::RateLimited | Mode::Unavailable, _) => {
            unreachable!("{mode:?} refuses before any value is made")
        }
        (Mode::Normal | Mode::HugeBody | Mode::Trickle, "temperature_2m") => json!(temperature),
        (Mode::Normal | Mode::HugeBody | Mode::Trickle | Mode::Partial, "relative_humidity_2m") => {
            json!(humidity)
        }
        (Mode::Normal | Mode::HugeBody | Mode::Trickle, "apparent_temperature") => {
            json!(temperature - 0.6)
        }
        (Mode::Normal | Mode::HugeBody | Mode::Trickle, "weather_code") => json!(3),
        (Mode::Normal | Mode::HugeBody | Mode::Trickle, _) => json!(7.6),

        (Mode::WrongTypes, "temperature_2m") => json!(temperature.to_string()),
        (Mode::WrongTypes, "relative_humidity_2m") => json!([humidity]),
        (Mode::WrongTypes, "apparent_temperature") => json!({ "value": temperature }),
        (Mode::WrongTypes, "weather_code") => json!(true),
        (Mode::WrongTypes, _) => json!("calm"),

        (Mode::Nan, "temperature_2m" | "apparent_temperature") => json!(NAN_MARKER),
        (Mode::Nan, "relative_humidity_2m") => json!(INFINITY_MARKER),
        (Mode::Nan, "weather_code") => json!(NAN_MARKER),
        (Mode::Nan, _) => json!(NEG_INFINITY_MARKER),

        (Mode::HugeNumbers, "temperature_2m") => json!(f64::MAX),
        (Mode::HugeNumbers, "relative_humidity_2m") => json!(1e300),
        (Mode::HugeNumbers, "apparent_temperature") => json!(-f64::MAX),
        (Mode::HugeNumbers, "weather_code") => json!(u64::MAX),
        (Mode::HugeNumbers, _) => json!(1e308),

        (Mode::Partial, "temperature_2m") => json!("NaN"),
        (Mode::Partial, "apparent_temperature") => json!(1e300),
        (Mode::Partial, "weather_code") => json!(-1),
        (Mode::Partial, _) => json!(-5.0),
    }
}

async fn forecast(query: web::Query<Query>) -> HttpResponse {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    let (latitudes, longitudes) = match (
        parse_list("latitude", &query.latitude),
        parse_list("longitude", &query.longitude),
    ) {
        (Ok(latitudes), Ok(longitudes)) => (latitudes, longitudes),
        (Err(reason), _) | (_, Err(reason)) => return bad_request(reason),
    };
    if latitudes.len() != longitudes.len() {
        return bad_request(
            "Parameter 'latitude' and 'longitude' must have the same number of elements".into(),
        );
    }
    let variables: Vec<&str> = query
        .current
        .as_deref()
        .unwrap_or("")
        .split(',')
        .filter(|v| !v.is_empty())
        .collect();
    let known = [
        "temperature_2m",
        "relative_humidity_2m",
        "apparent_temperature",
        "weather_code",
        "wind_speed_10m",
    ];
    if let Some(unknown) = variables.iter().find(|v| !known.contains(v)) {
        return bad_request(format!(
            "Cannot initialize WeatherVariable from invalid String value {unknown} for key current"
        ));
    }
    LOCATIONS.fetch_add(latitudes.len() as u64, Ordering::Relaxed);
    let mode = mode();
    match mode {
        Mode::RateLimited => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", RATE_LIMITED_RETRY_AFTER_SECS.to_string()))
                .json(json!({
                    "error": true,
                    "reason": "Minutely API request limit exceeded. Please try again in one minute."
                }))
        }
        Mode::Unavailable => {
            return HttpResponse::ServiceUnavailable()
                .json(json!({ "error": true, "reason": "Service overloaded" }))
        }
        _ => {}
    }
    let observed = Utc::now()
        .duration_trunc(TimeDelta::seconds(INTERVAL_SECS))
        .expect("truncation in range");
    let locations: Vec<Value> = latitudes
        .iter()
        .zip(&longitudes)
        .enumerate()
        .map(|(index, (&latitude, &longitude))| {
            let temperature =
                stub_weather::temperature(latitude, observed.timestamp() / INTERVAL_SECS);
            let humidity = f64::from(stub_weather::humidity(longitude));
            let mut current = serde_json::Map::new();
            current.insert(
                "time".into(),
                json!(observed.format("%Y-%m-%dT%H:%M").to_string()),
            );
            current.insert("interval".into(), json!(INTERVAL_SECS));
            for variable in &variables {
                current.insert(
                    (*variable).into(),
                    value(mode, variable, temperature, humidity),
                );
            }
            let mut location = json!({
                "latitude": latitude,
                "longitude": longitude,
                "generationtime_ms": 0.05,
                "utc_offset_seconds": 0,
                "timezone": "GMT",
                "timezone_abbreviation": "GMT",
                "elevation": 1000.0,
                "current": current,
            });
            if index > 0 {
                location["location_id"] = json!(index);
            }
            if index == 0 && mode == Mode::HugeBody {
                location["padding"] = json!(huge_padding());
            }
            location
        })
        .collect();
    let body = if locations.len() == 1 {
        locations.into_iter().next().unwrap()
    } else {
        Value::Array(locations)
    };
    let text = match mode {
        Mode::Nan => body
            .to_string()
            .replace(&format!("\"{NAN_MARKER}\""), "NaN")
            .replace(&format!("\"{NEG_INFINITY_MARKER}\""), "-Infinity")
            .replace(&format!("\"{INFINITY_MARKER}\""), "Infinity"),
        _ => body.to_string(),
    };
    let reply = HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .take();
    match mode {
        Mode::Trickle => trickle(reply, text.into_bytes()),
        _ => {
            let mut reply = reply;
            reply.body(text)
        }
    }
}

/// The padding of a `huge-body` reply, built once.
fn huge_padding() -> &'static str {
    static PADDING: OnceLock<String> = OnceLock::new();
    PADDING.get_or_init(|| "x".repeat(HUGE_BODY_BYTES))
}

/// Streams `body` one byte per [`TRICKLE_PAUSE`]; when the client gives up,
/// actix drops the stream.
fn trickle(mut reply: actix_web::HttpResponseBuilder, body: Vec<u8>) -> HttpResponse {
    let bytes = futures_util::stream::unfold((body, 0usize), |(body, sent)| async move {
        if sent == body.len() {
            return None;
        }
        if sent > 0 {
            actix_web::rt::time::sleep(TRICKLE_PAUSE).await;
        }
        let chunk = Bytes::copy_from_slice(&body[sent..=sent]);
        Some((Ok::<_, std::io::Error>(chunk), (body, sent + 1)))
    });
    reply.streaming(bytes)
}

async fn set_mode(name: web::Path<String>) -> HttpResponse {
    match Mode::parse(&name) {
        Some(mode) => {
            MODE.store(mode as u8, Ordering::Relaxed);
            eprintln!("open-meteo-stub: mode {}", mode.name());
            HttpResponse::Ok().body(format!("mode {}\n", mode.name()))
        }
        None => HttpResponse::NotFound().body(format!(
            "unknown mode {:?}; modes: {}\n",
            name.as_str(),
            Mode::names()
        )),
    }
}

async fn get_mode() -> HttpResponse {
    HttpResponse::Ok().body(format!("mode {}\n", mode().name()))
}

async fn get_calls() -> HttpResponse {
    HttpResponse::Ok().body(format!(
        "requests {}\nlocations {}\n",
        REQUESTS.load(Ordering::Relaxed),
        LOCATIONS.load(Ordering::Relaxed)
    ))
}

/// One plain HTTP/1.0 request to the stub on this host; the reply if 200.
fn local_request(port: u16, request_line: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{request_line} HTTP/1.0\r\nContent-Length: 0\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    if reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200") {
        Ok(reply)
    } else {
        Err(std::io::Error::other(reply))
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port_arg = |index: usize| args.get(index).map_or(Ok(8080), |p| p.parse::<u16>());
    match args.first().map(String::as_str) {
        Some("healthcheck") => {
            let port = port_arg(1).map_err(std::io::Error::other)?;
            return local_request(port, "GET /healthz").map(drop);
        }
        Some("mode") => {
            let name = args.get(1).ok_or_else(|| {
                std::io::Error::other(format!("usage: mode NAME [PORT]; modes: {}", Mode::names()))
            })?;
            let port = port_arg(2).map_err(std::io::Error::other)?;
            let reply = local_request(port, &format!("PUT /control/mode/{name}"))?;
            print!("{}", reply.split("\r\n\r\n").nth(1).unwrap_or_default());
            return Ok(());
        }
        Some("calls") => {
            let port = port_arg(1).map_err(std::io::Error::other)?;
            let reply = local_request(port, "GET /control/calls")?;
            print!("{}", reply.split("\r\n\r\n").nth(1).unwrap_or_default());
            return Ok(());
        }
        _ => {}
    }
    if let Ok(name) = std::env::var("STUB_MODE") {
        let mode = Mode::parse(&name).ok_or_else(|| {
            std::io::Error::other(format!(
                "STUB_MODE={name:?} is not one of {}",
                Mode::names()
            ))
        })?;
        MODE.store(mode as u8, Ordering::Relaxed);
    }
    eprintln!("open-meteo-stub: mode {}", mode().name());
    let port = port_arg(0).map_err(std::io::Error::other)?;
    actix_web::rt::System::new().block_on(
        HttpServer::new(|| {
            App::new()
                .route("/v1/forecast", web::get().to(forecast))
                .route("/healthz", web::get().to(HttpResponse::Ok))
                .route("/control/mode", web::get().to(get_mode))
                .route("/control/calls", web::get().to(get_calls))
                .route("/control/mode/{name}", web::put().to(set_mode))
        })
        .workers(1)
        .bind(("0.0.0.0", port))?
        .run(),
    )
}
