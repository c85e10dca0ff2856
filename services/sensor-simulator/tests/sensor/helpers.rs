use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use mysql_async::prelude::Queryable;
use sensor_simulator::clock::{Clock, SystemClock};
use sensor_simulator::settings::Settings;
use sensor_simulator::Application;
use serde_json::Value;
use telemetry_core::settings::{DatabaseSettings, HttpSettings};
use telemetry_core::weather::default_cities;
use telemetry_core::Source;
use tokio::sync::{oneshot, watch};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The sensor under test reads the first two default cities (Bogotá and
/// Medellín, the cities of the two-city fixture).
pub const CITIES: usize = 2;
/// How often a test looks again while it waits.
pub const POLL: Duration = Duration::from_millis(100);
const FIXTURE: &str = include_str!("../../../telemetry-core/tests/fixtures/current-many.json");

/// The documented two-city reply, observed at the start of this minute (the
/// sensor refuses observations older than two of their intervals).
pub fn current_reply() -> (String, String) {
    let minute = chrono::Utc::now().format("%Y-%m-%dT%H:%M").to_string();
    (FIXTURE.replace("2026-11-23T15:00", &minute), minute)
}

/// [`current_reply`] from an hourly model (`current.interval` 3600): current
/// for two hours, so it stays current while a virtual clock runs an hour.
pub fn hourly_reply() -> String {
    current_reply()
        .0
        .replace("\"interval\":900", "\"interval\":3600")
}

pub struct RunningSensor {
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub spool_dir: tempfile::TempDir,
}

pub fn settings(database: &DatabaseSettings, api: &str, spool: PathBuf) -> Settings {
    let mut settings = Settings {
        database: database.clone(),
        ..Settings::default()
    };
    settings.database.timeout_secs = 2;
    settings.http = HttpSettings {
        host: "127.0.0.1".into(),
        port: 0,
    };
    settings.weather.base_url = api.into();
    settings.weather.timeout_secs = 2;
    settings.sensor.interval_secs = 1;
    settings.sensor.source = Source::OpenMeteo;
    settings.sensor.cities = default_cities()[..CITIES].to_vec();
    settings.spool.directory = spool;
    settings
}

impl RunningSensor {
    pub fn start(settings: impl FnOnce(PathBuf) -> Settings) -> Self {
        Self::start_with_clock(settings, Arc::new(SystemClock))
    }

    /// The sensor with `clock` pacing its calls to Open-Meteo.
    pub fn start_with_clock(
        settings: impl FnOnce(PathBuf) -> Settings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let spool_dir = tempfile::tempdir().unwrap();
        let settings = settings(spool_dir.path().to_owned());
        let application = Application::build_with_clock(&settings, clock).expect("sensor builds");
        let port = application.port();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Self {
            port,
            stop: Some(stop),
            task,
            spool_dir,
        }
    }

    /// Sends the shutdown signal and waits for the sensor to drain.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.stop.take().unwrap().send(()).ok();
        (&mut self.task).await.unwrap().unwrap();
        self.spool_dir
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A metric's value; a labelled counter not yet incremented reads 0.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

/// Answers like Open-Meteo for the test's cities, whichever of them a
/// request names: for each requested latitude, that city's element of a
/// two-city reply; one object for one city, an array for several.
pub struct CurrentReplies {
    locations: Vec<Value>,
}

impl CurrentReplies {
    /// `body` is a two-city reply (Bogotá, Medellín), as [`current_reply`].
    pub fn from_reply(body: &str) -> Self {
        let Value::Array(locations) = serde_json::from_str(body).expect("a two-city reply") else {
            panic!("a two-city reply is an array")
        };
        assert_eq!(locations.len(), CITIES);
        Self { locations }
    }
}

impl Respond for CurrentReplies {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let cities = default_cities();
        let picked: Vec<Value> = requested_latitudes(request)
            .iter()
            .filter_map(|latitude| {
                let index = cities[..CITIES]
                    .iter()
                    .position(|city| city.latitude.to_string() == *latitude)?;
                Some(self.locations[index].clone())
            })
            .collect();
        let body = match picked.len() {
            0 => {
                return ResponseTemplate::new(400).set_body_raw(
                    r#"{"error":true,"reason":"no such city"}"#,
                    "application/json",
                )
            }
            1 => picked[0].clone(),
            _ => Value::Array(picked),
        };
        ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json")
    }
}

/// A request's `latitude` list.
pub fn requested_latitudes(request: &Request) -> Vec<String> {
    query(request, "latitude")
        .map(|list| list.split(',').map(str::to_owned).collect())
        .unwrap_or_default()
}

pub fn query(request: &Request, name: &str) -> Option<String> {
    request
        .url
        .query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// A stub Open-Meteo that answers every request for the test's cities from
/// the two-city reply `body`.
pub async fn api_answering(body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/forecast"))
        .respond_with(CurrentReplies::from_reply(body))
        .mount(&server)
        .await;
    server
}

/// Every tick between the first and the last stored holds every city once;
/// returns the number of ticks.
pub async fn assert_complete_ticks(pool: &mysql_async::Pool, tick_secs: u64) -> usize {
    let the_first_datetime = chrono::NaiveDate::from_ymd_opt(1000, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    assert_complete_ticks_since(pool, tick_secs, the_first_datetime).await
}

/// [`assert_complete_ticks`] over the rows stamped `since` or later.
pub async fn assert_complete_ticks_since(
    pool: &mysql_async::Pool,
    tick_secs: u64,
    since: NaiveDateTime,
) -> usize {
    let mut conn = pool.get_conn().await.unwrap();
    let rows: Vec<(NaiveDateTime, u64)> = conn
        .exec(
            "SELECT fecha_registro, COUNT(*) FROM mediciones WHERE fecha_registro >= ? \
             GROUP BY fecha_registro ORDER BY fecha_registro",
            (since,),
        )
        .await
        .unwrap();
    let ticks: BTreeMap<_, _> = rows.into_iter().collect();
    let first = *ticks.keys().next().expect("a tick stored");
    let last = *ticks.keys().last().unwrap();
    let expected = (last - first).num_seconds() as usize / tick_secs as usize + 1;
    assert_eq!(
        ticks.len(),
        expected,
        "a tick is missing between {first} and {last}: {ticks:?}"
    );
    assert!(
        ticks.values().all(|&count| count == CITIES as u64),
        "{ticks:?}"
    );
    expected
}

/// The fetcher's clock under a test's control. Time stands still but for
/// the fetcher's own waits, which end at once, up to a limit the test sets;
/// a wait beyond the limit lasts until the test moves it. So an hour of
/// backoff against a real HTTP server takes a moment, and the test can look
/// at what was called before the hour is up.
pub struct VirtualClock {
    time: watch::Sender<VirtualTime>,
}

#[derive(Debug, Clone, Copy)]
struct VirtualTime {
    now: DateTime<Utc>,
    limit: DateTime<Utc>,
    /// Where the fetcher is waiting to, if it is.
    waiting_for: Option<DateTime<Utc>>,
}

impl VirtualClock {
    /// Starts at `start`, which is also the first limit.
    pub fn starting_at(start: DateTime<Utc>) -> Arc<Self> {
        let (time, _) = watch::channel(VirtualTime {
            now: start,
            limit: start,
            waiting_for: None,
        });
        Arc::new(Self { time })
    }

    /// Lets the fetcher's time run to `limit`, and waits until it waits for
    /// a time beyond: everything it does before `limit` is done. Returns
    /// the time it waits for.
    pub async fn run_until(&self, limit: DateTime<Utc>) -> DateTime<Utc> {
        let mut time = self.time.subscribe();
        self.time.send_modify(|time| time.limit = limit);
        let waiting = time.wait_for(|time| time.waiting_for.is_some_and(|at| at > limit));
        let time = tokio::time::timeout(Duration::from_secs(30), waiting)
            .await
            .unwrap_or_else(|_| panic!("the fetcher never waited past {limit}"))
            .unwrap();
        time.waiting_for.unwrap()
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.time.borrow().now
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            let mut time = self.time.subscribe();
            self.time.send_modify(|time| time.waiting_for = Some(at));
            time.wait_for(|time| at <= time.limit).await.unwrap();
            self.time.send_modify(|time| {
                time.now = time.now.max(at);
                time.waiting_for = None;
            });
        })
    }
}

pub async fn row_count(pool: &mysql_async::Pool) -> u64 {
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_first("SELECT COUNT(*) FROM mediciones")
        .await
        .unwrap()
        .unwrap()
}
