//! Open-Meteo client: current conditions, or the past 15-minute series, for
//! several places in one request.
//!
//! Shared by the sensor (which stores what it gets, and fills gaps after
//! downtime from the past series) and the panel (which shows live weather).
//! Values the API does not send stay `None`: nothing is ever invented, and
//! values outside physical bounds are refused the same way.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Variables asked for, in `current` and in `minutely_15` alike; temperature
/// and humidity are the seed's, the rest are stored when present.
const VARIABLES: &str =
    "temperature_2m,relative_humidity_2m,apparent_temperature,weather_code,wind_speed_10m";

/// A `current` reply larger than this is refused: the real one for a dozen
/// cities is a few kilobytes, and a hostile one must not exhaust memory.
const MAX_CURRENT_BODY_BYTES: usize = 1024 * 1024;
/// The same bound for a past series: a week of quarter hours for seven
/// cities is about a quarter of a megabyte, Open-Meteo's whole 92 days
/// about three and a half megabytes.
const MAX_PAST_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How Open-Meteo writes times in requests and replies: minutes, no offset.
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M";

/// Physical bounds of each variable; a value outside is refused like a
/// missing one.
const TEMPERATURE: std::ops::RangeInclusive<f64> = -90.0..=60.0;
const HUMIDITY: std::ops::RangeInclusive<f64> = 0.0..=100.0;
const APPARENT_TEMPERATURE: std::ops::RangeInclusive<f64> = -100.0..=80.0;
const WEATHER_CODE: std::ops::RangeInclusive<f64> = 0.0..=99.0;
const WIND_SPEED: std::ops::RangeInclusive<f64> = 0.0..=500.0;

/// A place to observe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Mean temperature of the city's climate, used only by the simulated
    /// source.
    #[serde(default = "default_mean_temperature")]
    pub mean_temperature: f64,
    /// Mean relative humidity of the city's climate, in %, used only by the
    /// simulated source.
    #[serde(default = "default_mean_humidity")]
    pub mean_humidity: f64,
}

fn default_mean_temperature() -> f64 {
    22.0
}

fn default_mean_humidity() -> f64 {
    75.0
}

impl City {
    pub fn new(name: &str, latitude: f64, longitude: f64, mean_temperature: f64) -> Self {
        Self {
            name: name.into(),
            latitude,
            longitude,
            mean_temperature,
            mean_humidity: default_mean_humidity(),
        }
    }

    pub fn with_mean_humidity(self, mean_humidity: f64) -> Self {
        Self {
            mean_humidity,
            ..self
        }
    }
}

/// `typed` as one of `names`, the way people type city names: the seed
/// spells them without accents (`Bogota`, `Medellin`), and case does not
/// matter. Stored and shown names stay the configured ones.
pub fn canonical_city<'a>(names: &'a [String], typed: &str) -> Option<&'a str> {
    names
        .iter()
        .find(|name| *name == typed)
        .or_else(|| {
            let key = city_key(typed);
            names.iter().find(|name| city_key(name) == key)
        })
        .map(String::as_str)
}

/// Lower case, without the accents of Spanish (á é í ó ú ü ñ).
pub(crate) fn city_key(name: &str) -> String {
    name.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            'ñ' => 'n',
            other => other,
        })
        .collect()
}

/// The seed's seven Colombian cities (coordinates of each city centre).
pub fn default_cities() -> Vec<City> {
    vec![
        City::new("Bogotá", 4.7110, -74.0721, 14.0).with_mean_humidity(77.0),
        City::new("Medellín", 6.2442, -75.5812, 22.0).with_mean_humidity(68.0),
        City::new("Cali", 3.4516, -76.5320, 24.5).with_mean_humidity(72.0),
        City::new("Cartagena", 10.3910, -75.4794, 28.0).with_mean_humidity(80.0),
        City::new("Manizales", 5.0703, -75.5138, 17.0).with_mean_humidity(82.0),
        City::new("Pereira", 4.8133, -75.6961, 21.5).with_mean_humidity(78.0),
        City::new("Bucaramanga", 7.1193, -73.1227, 23.5).with_mean_humidity(76.0),
    ]
}

/// Current conditions at one place, as the API reported them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// Observation time in UTC (the API's `current.time` minus its offset).
    pub observed_at: NaiveDateTime,
    /// How long this observation stays current (`current.interval`).
    pub interval: Duration,
    pub temperature: Option<f64>,
    pub humidity: Option<u8>,
    pub apparent_temperature: Option<f64>,
    pub weather_code: Option<u16>,
    pub wind_speed: Option<f64>,
    /// Names of requested variables the reply lacked or that were refused.
    pub missing: Vec<&'static str>,
}

impl Observation {
    /// When the API will have a newer observation.
    pub fn next_due(&self) -> NaiveDateTime {
        self.observed_at + self.interval_delta()
    }

    /// Whether this observation may still be stored as current at `at`: an
    /// observation past two of its own intervals is no longer current, and
    /// no row is better than a stale value passed off as new.
    pub fn is_current_at(&self, at: NaiveDateTime) -> bool {
        at < self.next_due() + self.interval_delta()
    }

    fn interval_delta(&self) -> TimeDelta {
        TimeDelta::from_std(self.interval).unwrap_or(TimeDelta::MAX)
    }
}

/// How many calls Open-Meteo counts for one request of `locations` places:
/// one per location (the free tier's documented rule; our five `current`
/// variables are far below the count where a location costs more than one).
pub fn quota_calls(locations: usize) -> u64 {
    locations as u64
}

/// The longest `Retry-After` honoured: the quota is daily, so a server that
/// asks for more than a day is not asking about the quota, and a sensor
/// silenced for a week by a misconfigured proxy helps nobody.
pub const MAX_RETRY_AFTER: TimeDelta = TimeDelta::days(1);

/// A reply's `Retry-After` header: a delay in seconds or an HTTP date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Delay(Duration),
    At(DateTime<Utc>),
}

impl RetryAfter {
    /// Parses the header's value: `120`, or an HTTP date in any of the three
    /// forms HTTP/1.1 requires recipients to accept (RFC 9110, 5.6.7).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) {
            // Absurdly many digits saturate rather than fail; capped on use.
            let seconds = value.parse().unwrap_or(u64::MAX);
            return Some(Self::Delay(Duration::from_secs(seconds)));
        }
        let imf_fixdate = || DateTime::parse_from_rfc2822(value).ok().map(|t| t.to_utc());
        let obsolete = |format| {
            NaiveDateTime::parse_from_str(value, format)
                .ok()
                .map(|t| t.and_utc())
        };
        imf_fixdate()
            // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`.
            .or_else(|| obsolete("%A, %d-%b-%y %H:%M:%S GMT"))
            // asctime: `Sun Nov  6 08:49:37 1994`.
            .or_else(|| obsolete("%a %b %e %H:%M:%S %Y"))
            .map(Self::At)
    }

    /// The earliest time to ask again, for a reply received at `received`;
    /// never before `received`, never more than [`MAX_RETRY_AFTER`] later.
    pub fn not_before(self, received: DateTime<Utc>) -> DateTime<Utc> {
        let wanted = match self {
            Self::Delay(delay) => TimeDelta::from_std(delay).unwrap_or(TimeDelta::MAX),
            Self::At(at) => at - received,
        };
        received + wanted.clamp(TimeDelta::zero(), MAX_RETRY_AFTER)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WeatherError {
    #[error("Open-Meteo refused the request ({status}): {reason}")]
    Rejected { status: u16, reason: String },
    #[error("Open-Meteo rate limit reached: {reason}")]
    RateLimited {
        reason: String,
        retry_after: Option<RetryAfter>,
    },
    #[error("Open-Meteo is unavailable ({status}): {reason}")]
    Unavailable {
        status: u16,
        reason: String,
        retry_after: Option<RetryAfter>,
    },
    #[error("Open-Meteo did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach Open-Meteo: {0}")]
    Transport(String),
    #[error("malformed Open-Meteo reply: {0}")]
    Malformed(String),
}

impl WeatherError {
    /// A short stable label, used as the `kind` of the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::Malformed(_) => "malformed",
        }
    }

    /// When the server asked to be left alone until (429 and 5xx replies).
    pub fn retry_after(&self) -> Option<RetryAfter> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Unavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct WeatherClient {
    http: reqwest::Client,
    forecast_url: String,
    timeout: Duration,
    /// Sent as the `apikey` query parameter (the paid route); never logged.
    apikey: Option<SecretString>,
}

impl WeatherClient {
    /// `base_url` is e.g. `https://api.open-meteo.com` (the paid route is its
    /// customer host with an `apikey`); `timeout` bounds the whole exchange,
    /// body included, so a reply that trickles in byte by byte is cut off too.
    pub fn new(
        base_url: &str,
        timeout: Duration,
        apikey: Option<SecretString>,
    ) -> Result<Self, WeatherError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("telemetria/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| WeatherError::Transport(error.to_string()))?;
        Ok(Self {
            http,
            forecast_url: format!("{}/v1/forecast", base_url.trim_end_matches('/')),
            timeout,
            apikey,
        })
    }

    /// Current conditions for every city, in the order given.
    #[tracing::instrument(
        skip_all,
        fields(
            cities = cities.len(),
            status = tracing::field::Empty,
            bytes = tracing::field::Empty
        )
    )]
    pub async fn current(&self, cities: &[City]) -> Result<Vec<Observation>, WeatherError> {
        let mut query = coordinates(cities);
        query.push(("current", VARIABLES.to_owned()));
        let body = self.get(&query, MAX_CURRENT_BODY_BYTES).await?;
        parse_reply(&body, cities.len())
    }

    /// The 15-minute series of every city from `from` to `to` (UTC, both
    /// included, on quarter hours), in the order given. A range reaching
    /// past now holds forecast values: the caller keeps only past slots.
    #[tracing::instrument(
        skip_all,
        fields(
            cities = cities.len(),
            from = %from,
            to = %to,
            status = tracing::field::Empty,
            bytes = tracing::field::Empty
        )
    )]
    pub async fn past_quarter_hours(
        &self,
        cities: &[City],
        from: NaiveDateTime,
        to: NaiveDateTime,
    ) -> Result<Vec<PastSeries>, WeatherError> {
        let mut query = coordinates(cities);
        query.extend([
            ("minutely_15", VARIABLES.to_owned()),
            ("start_minutely_15", from.format(TIME_FORMAT).to_string()),
            ("end_minutely_15", to.format(TIME_FORMAT).to_string()),
            // Times in the reply are then UTC, as `fecha_registro` is.
            ("timezone", "GMT".to_owned()),
        ]);
        let body = self.get(&query, MAX_PAST_BODY_BYTES).await?;
        parse_past_reply(&body, cities.len())
    }

    /// One request with `query` (and the `apikey`): the body of a 200 reply
    /// up to `max_bytes`, or the error the status, the transport or the
    /// size amounts to. Records `status` and `bytes` on the caller's span.
    async fn get(
        &self,
        query: &[(&str, String)],
        max_bytes: usize,
    ) -> Result<Vec<u8>, WeatherError> {
        let mut request = self.http.get(&self.forecast_url).query(query);
        if let Some(apikey) = &self.apikey {
            request = request.query(&[("apikey", apikey.expose_secret())]);
        }
        let mut response = request
            .send()
            .await
            .map_err(|error| self.transport_error(error))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(RetryAfter::parse);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport_error(error))?
        {
            if body.len() + chunk.len() > max_bytes {
                return Err(WeatherError::Malformed(format!(
                    "reply larger than {max_bytes} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        tracing::Span::current().record("bytes", body.len());
        if status == 200 {
            return Ok(body);
        }
        let reason = serde_json::from_slice::<ErrorReply>(&body)
            .map(|reply| reply.reason)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
        Err(match status {
            429 => WeatherError::RateLimited {
                reason,
                retry_after,
            },
            400..=499 => WeatherError::Rejected { status, reason },
            _ => WeatherError::Unavailable {
                status,
                reason,
                retry_after,
            },
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> WeatherError {
        // The URL carries the apikey: it must not reach a log line.
        let error = error.without_url();
        if error.is_timeout() {
            WeatherError::Timeout(self.timeout)
        } else if error.is_decode() || error.is_body() {
            WeatherError::Malformed(error.to_string())
        } else {
            WeatherError::Transport(error.to_string())
        }
    }
}

/// The `latitude` and `longitude` lists of a multi-location request.
fn coordinates(cities: &[City]) -> Vec<(&'static str, String)> {
    let join = |value: fn(&City) -> f64| {
        cities
            .iter()
            .map(|city| value(city).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        ("latitude", join(|city| city.latitude)),
        ("longitude", join(|city| city.longitude)),
    ]
}

#[derive(Deserialize)]
struct ErrorReply {
    reason: String,
}

#[derive(Deserialize)]
struct LocationReply {
    utc_offset_seconds: i32,
    current: CurrentReply,
}

/// Each field is kept as raw JSON so one value of the wrong type costs that
/// value, not the whole reply.
#[derive(Deserialize)]
struct CurrentReply {
    time: String,
    interval: u64,
    temperature_2m: Option<serde_json::Value>,
    relative_humidity_2m: Option<serde_json::Value>,
    apparent_temperature: Option<serde_json::Value>,
    weather_code: Option<serde_json::Value>,
    wind_speed_10m: Option<serde_json::Value>,
}

/// Parses a `current` reply for `expected` locations.
pub fn parse_reply(body: &[u8], expected: usize) -> Result<Vec<Observation>, WeatherError> {
    locations::<LocationReply>(body, expected)?
        .into_iter()
        .map(observation)
        .collect()
}

/// The elements of a reply for `expected` locations: an array in request
/// order, or a single object when one location was asked for.
fn locations<T: DeserializeOwned>(body: &[u8], expected: usize) -> Result<Vec<T>, WeatherError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| WeatherError::Malformed(error.to_string()))?;
    let locations: Vec<T> = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<_, _>>()
            .map_err(|error| WeatherError::Malformed(error.to_string()))?,
        object @ serde_json::Value::Object(_) => {
            vec![serde_json::from_value(object)
                .map_err(|error| WeatherError::Malformed(error.to_string()))?]
        }
        other => {
            return Err(WeatherError::Malformed(format!(
                "expected an object or array, got {other}"
            )))
        }
    };
    if locations.len() != expected {
        return Err(WeatherError::Malformed(format!(
            "asked for {expected} locations, got {}",
            locations.len()
        )));
    }
    Ok(locations)
}

/// A reply's time in UTC: `text` is local time, `utc_offset_seconds` ahead.
fn utc_time(
    field: &str,
    text: &str,
    utc_offset_seconds: i32,
) -> Result<NaiveDateTime, WeatherError> {
    let local = NaiveDateTime::parse_from_str(text, TIME_FORMAT)
        .map_err(|error| WeatherError::Malformed(format!("{field} {text:?}: {error}")))?;
    if utc_offset_seconds.abs() > 18 * 3600 {
        return Err(WeatherError::Malformed(format!(
            "utc_offset_seconds {utc_offset_seconds} is not a real offset"
        )));
    }
    Ok(local - TimeDelta::seconds(utc_offset_seconds.into()))
}

/// `value` if it is a number inside `range`; anything else costs only
/// this value.
fn within(value: Option<&serde_json::Value>, range: std::ops::RangeInclusive<f64>) -> Option<f64> {
    value
        .and_then(serde_json::Value::as_f64)
        .filter(|v| range.contains(v))
}

fn observation(location: LocationReply) -> Result<Observation, WeatherError> {
    let current = location.current;
    if !(60..=86_400).contains(&current.interval) {
        return Err(WeatherError::Malformed(format!(
            "current.interval {} is outside 60..=86400 seconds",
            current.interval
        )));
    }
    let observed_at = utc_time("current.time", &current.time, location.utc_offset_seconds)?;
    let mut missing = Vec::new();
    let mut number = |name: &'static str,
                      value: Option<serde_json::Value>,
                      range: std::ops::RangeInclusive<f64>| {
        let accepted = within(value.as_ref(), range);
        if accepted.is_none() {
            missing.push(name);
        }
        accepted
    };
    let temperature = number("temperature_2m", current.temperature_2m, TEMPERATURE);
    let humidity = number(
        "relative_humidity_2m",
        current.relative_humidity_2m,
        HUMIDITY,
    )
    .map(|v| v.round() as u8);
    let apparent_temperature = number(
        "apparent_temperature",
        current.apparent_temperature,
        APPARENT_TEMPERATURE,
    );
    let weather_code = number("weather_code", current.weather_code, WEATHER_CODE).map(|v| v as u16);
    let wind_speed = number("wind_speed_10m", current.wind_speed_10m, WIND_SPEED);
    // An observation without the seed's two values says nothing worth storing.
    if temperature.is_none() && humidity.is_none() {
        return Err(WeatherError::Malformed(
            "reply has neither temperature_2m nor relative_humidity_2m".into(),
        ));
    }
    Ok(Observation {
        observed_at: DateTime::from_timestamp(observed_at.and_utc().timestamp(), 0)
            .map(|t| t.naive_utc())
            .unwrap_or(observed_at),
        interval: Duration::from_secs(current.interval),
        temperature,
        humidity,
        apparent_temperature,
        weather_code,
        wind_speed,
        missing,
    })
}

/// One place's past 15-minute series, slots in the reply's order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PastSeries {
    pub slots: Vec<PastSlot>,
}

/// The values of one quarter hour. Only slots with a temperature or a
/// humidity are kept: without the seed's two values there is nothing worth
/// storing.
#[derive(Debug, Clone, PartialEq)]
pub struct PastSlot {
    /// The slot's start in UTC.
    pub at: NaiveDateTime,
    pub temperature: Option<f64>,
    pub humidity: Option<u8>,
    pub apparent_temperature: Option<f64>,
    pub weather_code: Option<u16>,
    pub wind_speed: Option<f64>,
}

#[derive(Deserialize)]
struct PastLocationReply {
    utc_offset_seconds: i32,
    minutely_15: SeriesReply,
}

/// Each series is kept as raw JSON so a value of the wrong type costs that
/// value, and a series the reply lacks costs that variable.
#[derive(Deserialize)]
struct SeriesReply {
    time: Vec<String>,
    temperature_2m: Option<Vec<serde_json::Value>>,
    relative_humidity_2m: Option<Vec<serde_json::Value>>,
    apparent_temperature: Option<Vec<serde_json::Value>>,
    weather_code: Option<Vec<serde_json::Value>>,
    wind_speed_10m: Option<Vec<serde_json::Value>>,
}

/// Parses a `minutely_15` reply for `expected` locations.
pub fn parse_past_reply(body: &[u8], expected: usize) -> Result<Vec<PastSeries>, WeatherError> {
    locations::<PastLocationReply>(body, expected)?
        .into_iter()
        .map(past_series)
        .collect()
}

fn past_series(location: PastLocationReply) -> Result<PastSeries, WeatherError> {
    let series = location.minutely_15;
    let slots = series.time.len();
    // A series of another length cannot be matched to the times: the reply
    // is broken, not one value.
    let values = |name: &str, values: Option<Vec<serde_json::Value>>| match values {
        None => Ok(vec![serde_json::Value::Null; slots]),
        Some(values) if values.len() == slots => Ok(values),
        Some(values) => Err(WeatherError::Malformed(format!(
            "minutely_15.{name} has {} values for {slots} times",
            values.len()
        ))),
    };
    let temperature = values("temperature_2m", series.temperature_2m)?;
    let humidity = values("relative_humidity_2m", series.relative_humidity_2m)?;
    let apparent_temperature = values("apparent_temperature", series.apparent_temperature)?;
    let weather_code = values("weather_code", series.weather_code)?;
    let wind_speed = values("wind_speed_10m", series.wind_speed_10m)?;
    let mut kept = Vec::with_capacity(slots);
    for (index, time) in series.time.iter().enumerate() {
        let slot = PastSlot {
            at: utc_time("minutely_15.time", time, location.utc_offset_seconds)?,
            temperature: within(temperature.get(index), TEMPERATURE),
            humidity: within(humidity.get(index), HUMIDITY).map(|v| v.round() as u8),
            apparent_temperature: within(apparent_temperature.get(index), APPARENT_TEMPERATURE),
            weather_code: within(weather_code.get(index), WEATHER_CODE).map(|v| v as u16),
            wind_speed: within(wind_speed.get(index), WIND_SPEED),
        };
        if slot.temperature.is_some() || slot.humidity.is_some() {
            kept.push(slot);
        }
    }
    Ok(PastSeries { slots: kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cities_are_found_as_people_type_them() {
        let names: Vec<String> = default_cities().into_iter().map(|city| city.name).collect();
        assert_eq!(canonical_city(&names, "Bogotá"), Some("Bogotá"));
        assert_eq!(canonical_city(&names, "Bogota"), Some("Bogotá"));
        assert_eq!(canonical_city(&names, "MEDELLIN"), Some("Medellín"));
        assert_eq!(canonical_city(&names, "cali"), Some("Cali"));
        assert_eq!(canonical_city(&names, "Atlantis"), None);
        assert_eq!(canonical_city(&names, "Bogot"), None);
    }

    const ONE: &str = include_str!("../tests/fixtures/current-one.json");
    const MANY: &str = include_str!("../tests/fixtures/current-many.json");

    #[test]
    fn parses_a_single_location() {
        let observations = parse_reply(ONE.as_bytes(), 1).unwrap();
        let first = &observations[0];
        assert_eq!(first.observed_at.to_string(), "2026-11-23 15:00:00");
        assert_eq!(first.interval, Duration::from_secs(900));
        assert_eq!(first.temperature, Some(16.5));
        assert_eq!(first.humidity, Some(72));
        assert_eq!(first.weather_code, Some(3));
        assert!(first.missing.is_empty());
    }

    #[test]
    fn parses_many_locations_in_order_and_reports_missing_fields() {
        let observations = parse_reply(MANY.as_bytes(), 2).unwrap();
        assert_eq!(observations[1].temperature, Some(26.3));
        assert_eq!(observations[1].apparent_temperature, None);
        assert!(observations[1].missing.contains(&"wind_speed_10m"));
    }

    #[test]
    fn converts_local_time_to_utc() {
        let body = ONE.replace("\"utc_offset_seconds\":0", "\"utc_offset_seconds\":-18000");
        let observations = parse_reply(body.as_bytes(), 1).unwrap();
        assert_eq!(
            observations[0].observed_at.to_string(),
            "2026-11-23 20:00:00"
        );
    }

    #[test]
    fn wrong_count_is_malformed() {
        assert!(matches!(
            parse_reply(MANY.as_bytes(), 3),
            Err(WeatherError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_json_is_malformed() {
        let error = parse_reply(&ONE.as_bytes()[..ONE.len() / 2], 1).unwrap_err();
        assert_eq!(error.kind(), "malformed");
    }

    #[test]
    fn out_of_range_and_wrong_type_values_are_dropped_not_invented() {
        let body = ONE
            .replace("\"temperature_2m\":16.5", "\"temperature_2m\":1e300")
            .replace(
                "\"relative_humidity_2m\":72",
                "\"relative_humidity_2m\":\"72\"",
            );
        // Neither of the seed's values survives: no observation at all.
        assert!(parse_reply(body.as_bytes(), 1).is_err());
        let body = ONE.replace("\"temperature_2m\":16.5", "\"temperature_2m\":null");
        let observation = &parse_reply(body.as_bytes(), 1).unwrap()[0];
        assert_eq!(observation.temperature, None);
        assert_eq!(observation.humidity, Some(72));
        assert_eq!(observation.missing, vec!["temperature_2m"]);
    }

    const PAST_MANY: &str = include_str!("../tests/fixtures/minutely-15-many.json");

    fn utc_minute(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, TIME_FORMAT).unwrap()
    }

    #[test]
    fn parses_past_series_of_many_locations_dropping_slots_without_the_seeds_values() {
        let series = parse_past_reply(PAST_MANY.as_bytes(), 2).unwrap();
        let bogota = &series[0].slots;
        // 10:30 has neither temperature nor humidity: not a slot to fill.
        let times: Vec<String> = bogota.iter().map(|slot| slot.at.to_string()).collect();
        assert_eq!(
            times,
            [
                "2026-11-23 10:00:00",
                "2026-11-23 10:15:00",
                "2026-11-23 10:45:00",
                "2026-11-23 11:00:00"
            ]
        );
        assert_eq!(
            bogota[0],
            PastSlot {
                at: utc_minute("2026-11-23T10:00"),
                temperature: Some(13.1),
                humidity: Some(80),
                apparent_temperature: Some(12.0),
                weather_code: Some(3),
                wind_speed: Some(5.4),
            }
        );
        let medellin = &series[1].slots;
        assert_eq!(medellin.len(), 5);
        // A string where a number belongs, and a null: that value only.
        assert_eq!(medellin[2].temperature, None);
        assert_eq!(medellin[2].humidity, Some(63));
        assert_eq!(medellin[4].temperature, None);
        // Series the reply lacks stay empty, never invented.
        assert!(medellin
            .iter()
            .all(|slot| slot.wind_speed.is_none() && slot.weather_code.is_none()));
    }

    #[test]
    fn past_series_times_are_converted_to_utc() {
        let body = PAST_MANY.replace("\"utc_offset_seconds\":0", "\"utc_offset_seconds\":-18000");
        let series = parse_past_reply(body.as_bytes(), 2).unwrap();
        assert_eq!(series[1].slots[0].at, utc_minute("2026-11-23T15:00"));
    }

    #[test]
    fn a_broken_past_series_is_malformed_and_says_what_is_wrong() {
        let short = PAST_MANY.replace("[65,64,63,62,61]", "[65,64]");
        let error = parse_past_reply(short.as_bytes(), 2).unwrap_err();
        assert_eq!(error.kind(), "malformed");
        assert!(
            error
                .to_string()
                .contains("relative_humidity_2m has 2 values for 5 times"),
            "{error}"
        );
        let bad_time = PAST_MANY.replacen("2026-11-23T10:15", "10:15 today", 1);
        let error = parse_past_reply(bad_time.as_bytes(), 2).unwrap_err();
        assert!(error.to_string().contains("minutely_15.time"), "{error}");
        let error = parse_past_reply(ONE.as_bytes(), 1).unwrap_err();
        assert!(error.to_string().contains("minutely_15"), "{error}");
        assert!(matches!(
            parse_past_reply(PAST_MANY.as_bytes(), 3),
            Err(WeatherError::Malformed(_))
        ));
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_any_http_date() {
        assert_eq!(
            RetryAfter::parse(" 3600 "),
            Some(RetryAfter::Delay(Duration::from_secs(3600)))
        );
        let date = Some(RetryAfter::At(utc("1994-11-06T08:49:37Z")));
        assert_eq!(RetryAfter::parse("Sun, 06 Nov 1994 08:49:37 GMT"), date);
        assert_eq!(RetryAfter::parse("Sunday, 06-Nov-94 08:49:37 GMT"), date);
        assert_eq!(RetryAfter::parse("Sun Nov  6 08:49:37 1994"), date);
        for nonsense in ["", "-5", "1.5", "soon", "Sun, 32 Nov 1994 08:49:37 GMT"] {
            assert_eq!(RetryAfter::parse(nonsense), None, "{nonsense:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_from_the_reply_and_bounded() {
        let received = utc("2026-11-23T10:00:00Z");
        let parse = |value| RetryAfter::parse(value).unwrap().not_before(received);
        assert_eq!(parse("3600"), utc("2026-11-23T11:00:00Z"));
        assert_eq!(
            parse("Mon, 23 Nov 2026 10:30:00 GMT"),
            utc("2026-11-23T10:30:00Z")
        );
        // A date in the past: at once (the backoff still applies).
        assert_eq!(parse("Mon, 23 Nov 2026 09:00:00 GMT"), received);
        // More than a day, or more seconds than fit anywhere: a day.
        assert_eq!(parse("604800"), received + MAX_RETRY_AFTER);
        assert_eq!(
            parse("99999999999999999999999999"),
            received + MAX_RETRY_AFTER
        );
    }

    #[test]
    fn only_429_and_5xx_replies_carry_a_retry_after() {
        let after = Some(RetryAfter::Delay(Duration::from_secs(5)));
        let limited = WeatherError::RateLimited {
            reason: "slow down".into(),
            retry_after: after,
        };
        let unavailable = WeatherError::Unavailable {
            status: 503,
            reason: "overloaded".into(),
            retry_after: after,
        };
        assert_eq!(limited.retry_after(), after);
        assert_eq!(unavailable.retry_after(), after);
        assert_eq!(
            WeatherError::Timeout(Duration::from_secs(1)).retry_after(),
            None
        );
    }

    #[tokio::test]
    async fn the_apikey_never_appears_in_an_error() {
        // Nothing listens on port 1: the request fails with its URL at hand.
        let client = WeatherClient::new(
            "http://127.0.0.1:1",
            Duration::from_secs(2),
            Some(SecretString::from("k3y-s3cret")),
        )
        .unwrap();
        let error = client.current(&default_cities()[..1]).await.unwrap_err();
        assert_eq!(error.kind(), "transport", "{error}");
        assert!(
            !format!("{error} {error:?}").contains("k3y-s3cret"),
            "{error:?}"
        );
        assert!(!format!("{client:?}").contains("k3y-s3cret"));
    }

    #[test]
    fn an_observation_is_current_for_two_of_its_intervals() {
        let observation = &parse_reply(ONE.as_bytes(), 1).unwrap()[0];
        let at = |text: &str| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap();
        assert!(observation.is_current_at(at("2026-11-23 15:29:59")));
        assert!(!observation.is_current_at(at("2026-11-23 15:30:00")));
    }
}
