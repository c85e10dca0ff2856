use std::time::{Duration, SystemTime, UNIX_EPOCH};

use frontend::settings::Settings;
use frontend::Application;
use mysql_async::prelude::Queryable;
use secrecy::SecretString;
use telemetry_core::reading::insert_batch;
use telemetry_core::testing::{eventually, Outage, TestDatabase};
use telemetry_core::weather::{default_cities, City};
use telemetry_core::NewReading;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// How long a test waits for the panel to see a change (it reads the
/// database every second), and how often it looks.
pub const PATIENCE: Duration = Duration::from_secs(20);
pub const POLL: Duration = Duration::from_millis(100);

pub const CURRENT_ONE: &str =
    include_str!("../../../telemetry-core/tests/fixtures/current-one.json");

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db: TestDatabase,
    pub weather: MockServer,
    pub client: reqwest::Client,
    /// Present when the app reaches the database through a forwarder the
    /// test can cut.
    pub forwarder: Option<Outage>,
    panel_user: String,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

pub struct Options {
    pub cities: Vec<City>,
    pub through_forwarder: bool,
    /// Cut the forwarder before the app starts: its first read fails.
    pub database_down_at_start: bool,
    /// Answer of the fake Open-Meteo.
    pub weather: ResponseTemplate,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cities: default_cities(),
            through_forwarder: false,
            database_down_at_start: false,
            weather: ResponseTemplate::new(200).set_body_raw(CURRENT_ONE, "application/json"),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let db = TestDatabase::create().await;
    let weather = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/forecast"))
        .respond_with(options.weather)
        .mount(&weather)
        .await;
    // The panel runs as in production: with an account that may only SELECT.
    let panel_user = format!(
        "p{}",
        &db.settings.name[db.settings.name.len().saturating_sub(24)..]
    );
    let panel_password = "panel-test-password";
    {
        let mut conn = db.pool.get_conn().await.expect("admin connection");
        conn.query_drop(format!(
            "CREATE USER '{panel_user}'@'%' IDENTIFIED BY '{panel_password}'"
        ))
        .await
        .expect("create read-only user");
        conn.query_drop(format!(
            "GRANT SELECT ON `{}`.* TO '{panel_user}'@'%'",
            db.settings.name
        ))
        .await
        .expect("grant SELECT");
    }
    let mut forwarder = if options.through_forwarder || options.database_down_at_start {
        Some(Outage::relay(&db.settings).await)
    } else {
        None
    };
    let mut settings = Settings::default();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.database = db.settings.clone();
    settings.database.user = panel_user.clone();
    settings.database.password = Some(SecretString::from(panel_password));
    settings.database.timeout_secs = 2;
    if let Some(forwarder) = &forwarder {
        settings.database = forwarder.settings(&settings.database);
    }
    settings.panel.cities = options.cities;
    // The page's data is read in the background; often here, so a test
    // waits about a second for its inserts to show (see `insert`).
    settings.panel.data_refresh_secs = 1;
    if options.database_down_at_start {
        forwarder.as_mut().expect("forwarder").cut();
    }
    settings.weather.base_url = weather.uri();
    settings.weather.timeout_secs = 2;
    let application = Application::build(&settings).expect("build application");
    let port = application.port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db,
        weather,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        forwarder,
        panel_user,
        stop,
        server,
    }
}

impl TestApp {
    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path_and_query))
            .send()
            .await
            .expect("request to the app")
    }

    pub async fn get_text(&self, path_and_query: &str) -> (u16, String) {
        let response = self.get(path_and_query).await;
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    pub async fn get_json(&self, path_and_query: &str) -> (u16, serde_json::Value) {
        let (status, body) = self.get_text(path_and_query).await;
        let json = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{path_and_query}: {error}: {body}"));
        (status, json)
    }

    /// Inserts `readings`, then waits until the panel has read the database
    /// again (its page data and `/api/cities` include them). The app must be
    /// able to reach the database.
    pub async fn insert(&self, readings: &[NewReading]) {
        insert_batch(&self.db.pool, readings, Duration::from_secs(10))
            .await
            .expect("insert readings");
        let inserted = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        eventually(
            "the panel reads the database after the insert",
            PATIENCE,
            POLL,
            || async { (self.panel_read_at().await >= inserted).then_some(()) },
        )
        .await;
    }

    /// Start of the panel's last good read (Unix time), from `/metrics`.
    pub async fn panel_read_at(&self) -> f64 {
        let (_, metrics) = self.get_text("/metrics").await;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("frontend_panel_data_read_timestamp_seconds "))
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0)
    }

    /// Stops the app, drops its database and user.
    pub async fn cleanup(self) {
        let _ = self.stop.send(());
        self.server
            .await
            .expect("server task")
            .expect("server stopped cleanly");
        if let Ok(mut conn) = self.db.pool.get_conn().await {
            conn.query_drop(format!("DROP USER IF EXISTS '{}'@'%'", self.panel_user))
                .await
                .ok();
        }
        self.db.drop().await;
    }
}
