use std::path::PathBuf;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use sensor_simulator::settings::Settings;
use sensor_simulator::Application;
use telemetry_core::settings::{DatabaseSettings, HttpSettings};
use telemetry_core::weather::default_cities;
use telemetry_core::Source;
use tokio::sync::oneshot;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

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
    settings.weather.attempts = 1;
    settings.sensor.interval_secs = 1;
    settings.sensor.source = Source::OpenMeteo;
    settings.sensor.cities = default_cities()[..CITIES].to_vec();
    settings.spool.directory = spool;
    settings
}

impl RunningSensor {
    pub fn start(settings: impl FnOnce(PathBuf) -> Settings) -> Self {
        let spool_dir = tempfile::tempdir().unwrap();
        let settings = settings(spool_dir.path().to_owned());
        let application = Application::build(&settings).expect("sensor builds");
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

pub async fn api_answering(body: &str) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/forecast"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body.to_owned(), "application/json"))
        .mount(&server)
        .await;
    server
}

pub async fn row_count(pool: &mysql_async::Pool) -> u64 {
    let mut conn = pool.get_conn().await.unwrap();
    conn.query_first("SELECT COUNT(*) FROM mediciones")
        .await
        .unwrap()
        .unwrap()
}
