//! Test support: a freshly migrated database per test on a real server, a
//! database outage a test can switch, waiting with a deadline, and sample
//! readings of the default cities.
//!
//! The server is named by `TEST_DATABASE_URL` (an admin account, e.g.
//! `mysql://root:secret@127.0.0.1:33306`); the README's test command starts a
//! MariaDB and sets it. Without it the tests fail loudly instead of skipping.

use std::future::Future;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Pool};
use secrecy::SecretString;

use crate::migration::{migrate, run_embedded_migrations};
use crate::settings::DatabaseSettings;
use crate::weather::default_cities;
use crate::{NewReading, Source};

pub struct TestDatabase {
    pub settings: DatabaseSettings,
    pub pool: Pool,
    server: Pool,
}

/// Admin settings of the test server, from `TEST_DATABASE_URL`.
pub fn server_settings() -> DatabaseSettings {
    let url = std::env::var("TEST_DATABASE_URL").expect(
        "TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, or point it at a MariaDB/MySQL \
         admin account, e.g. mysql://root:secret@127.0.0.1:3306",
    );
    let opts =
        Opts::from_url(&url).unwrap_or_else(|error| panic!("TEST_DATABASE_URL {url:?}: {error}"));
    DatabaseSettings {
        host: opts.ip_or_hostname().to_string(),
        port: opts.tcp_port(),
        user: opts.user().unwrap_or("root").to_owned(),
        password: opts.pass().map(|pass| SecretString::from(pass.to_owned())),
        ..DatabaseSettings::default()
    }
}

impl TestDatabase {
    /// Creates and migrates a database with a unique name.
    pub async fn create() -> Self {
        let db = Self::empty().await;
        migrate(&db.pool, None)
            .await
            .expect("migrate test database");
        db
    }

    /// Creates a database with a unique name and nothing in it, for tests
    /// that set up a table before migrating (a seed database to adopt).
    pub async fn empty() -> Self {
        let mut settings = server_settings();
        settings.name = format!("test_{}_{}", std::process::id(), rand_suffix());
        let server = settings.server_pool().expect("test server settings");
        server
            .get_conn()
            .await
            .expect("connect to the test database server")
            .query_drop(format!(
                "CREATE DATABASE `{}` CHARACTER SET utf8mb4",
                settings.name
            ))
            .await
            .expect("create test database");
        let pool = settings.pool().expect("test database settings");
        Self {
            settings,
            pool,
            server,
        }
    }

    /// Runs V1 without looking at `mediciones` first, as `migrate` did
    /// before it adopted seed tables (V1 was then the only migration): how a
    /// seed database came to have V1 recorded over the seed's own table.
    pub async fn migrate_without_adoption(&self) {
        run_embedded_migrations(&self.pool, Some(1))
            .await
            .expect("run the embedded migrations");
    }

    /// Drops the database. Call it at the end of each test.
    pub async fn drop(self) {
        self.pool.disconnect().await.ok();
        if let Ok(mut conn) = self.server.get_conn().await {
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.settings.name))
                .await
                .ok();
        }
        self.server.disconnect().await.ok();
    }
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{nanos:x}{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A TCP relay in front of the test server that a test can cut and restore:
/// a real network-level outage, on a port that stays the same.
pub struct Outage {
    port: u16,
    target: std::net::SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Outage {
    /// Starts relaying 127.0.0.1:<random port> to `settings`' server.
    pub async fn relay(settings: &DatabaseSettings) -> Self {
        let target = tokio::net::lookup_host((settings.host.as_str(), settings.port))
            .await
            .expect("resolve test server")
            .next()
            .expect("test server address");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        let mut relay = Self {
            port,
            target,
            task: None,
        };
        relay.task = Some(tokio::spawn(serve(listener, target)));
        relay
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `settings` redirected through the relay.
    pub fn settings(&self, settings: &DatabaseSettings) -> DatabaseSettings {
        DatabaseSettings {
            host: "127.0.0.1".into(),
            port: self.port,
            ..settings.clone()
        }
    }

    /// Closes the listener and every relayed connection.
    pub fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        self.cut();
        let listener = loop {
            // The aborted listener is released asynchronously.
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        };
        self.task = Some(tokio::spawn(serve(listener, self.target)));
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn serve(listener: tokio::net::TcpListener, target: std::net::SocketAddr) {
    // Connections live in this JoinSet, so aborting `serve` drops them all.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut inbound, _)) = accepted else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Polls `check` every `every` until it yields a value; fails the test after
/// `limit`, naming what it waited for. (`stack_tests::eventually` is the
/// blocking one, for threads outside a runtime.)
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// A reading of `city` stamped `at`, with the optional columns empty; set
/// those with `NewReading { .., ..reading(..) }`.
pub fn reading(
    city: &str,
    at: NaiveDateTime,
    temperature: f64,
    humidity: u8,
    source: Source,
) -> NewReading {
    NewReading {
        ciudad: city.into(),
        temperatura: Some(temperature),
        humedad: Some(humidity),
        fecha_registro: at,
        source,
        observed_at: None,
        apparent_temperature: None,
        weather_code: None,
        wind_speed: None,
    }
}

/// `seconds` before now, on a whole second.
pub fn seconds_ago(seconds: i64) -> NaiveDateTime {
    crate::time::now_utc() - TimeDelta::seconds(seconds)
}

/// Names of the default cities, in their order.
pub fn city_names() -> Vec<String> {
    default_cities().into_iter().map(|city| city.name).collect()
}
