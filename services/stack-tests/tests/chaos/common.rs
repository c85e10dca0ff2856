//! What every scenario needs: probes of the panel, the sensor's metrics and
//! the table (always from outside, the way an operator looks), the tick
//! accounting, and waiting with deadlines.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta, Timelike};
use mysql_async::prelude::Queryable;
use stack_tests::{docker, Stack};

/// Waiting with a deadline; scenarios look again every `POLL`.
pub use telemetry_core::testing::{city_names, eventually};
/// The seed's cities, with the coordinates the sensor sends: the stub's
/// values derive from them.
pub use telemetry_core::weather::{default_cities, City};

/// How often a scenario looks again while it waits: often enough to time an
/// outage, rarely enough not to load the stack it measures.
pub const POLL: Duration = Duration::from_millis(500);

/// The sensor's tick (APP__SENSOR__INTERVAL_SECS, not settable through
/// compose): readings are stamped :00, :15, :30 and :45.
pub const TICK_SECS: i64 = 15;

/// Text of the panel's outage banner and of its "last known data" note
/// (services/frontend/src/render.rs).
pub const BANNER: &str = "Database unreachable since";
pub const LAST_KNOWN: &str = "Showing the last known data";
/// Only present when the live-weather block shows an observation.
pub const LIVE_WEATHER: &str = "Feels like";

/// Prints a progress line stamped with the time since the suite started, so
/// the log of a run reads as a timeline.
pub fn say(message: impl fmt::Display) {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    println!("[chaos {:>7.1} s] {message}", start.elapsed().as_secs_f64());
}

pub fn secs(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

pub fn now_utc() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub elapsed: Duration,
}

/// The sensor's `/metrics`, by series (`name` or `name{label="value"}`).
#[derive(Debug, Default, Clone)]
pub struct Metrics(BTreeMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| line.rsplit_once(' '))
                .filter_map(|(series, value)| Some((series.to_owned(), value.parse().ok()?)))
                .collect(),
        )
    }

    /// The series' value; 0 when absent (counters start absent).
    pub fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    pub fn api_errors(&self, kind: &str) -> f64 {
        self.get(&format!("sensor_api_errors_total{{kind=\"{kind}\"}}"))
    }
}

/// Readings stored for one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickRows {
    pub at: NaiveDateTime,
    pub rows: u64,
    pub cities: u64,
}

/// A row of `mediciones` as the persistence check compares it.
pub type Row = (
    u64,
    String,
    Option<f64>,
    Option<u8>,
    NaiveDateTime,
    String,
    Option<NaiveDateTime>,
);

/// Looks at the stack from outside: the panel on its published port, the
/// table through the proxy's published port (read-only panel account), the
/// sensor's metrics on its address on local-net.
pub struct Probe<'a> {
    pub stack: &'a Stack,
    http: reqwest::Client,
    panel: String,
    database: mysql_async::OptsBuilder,
}

impl<'a> Probe<'a> {
    pub fn new(stack: &'a Stack) -> Self {
        Self::reading(stack, stack.database_opts("panel"))
    }

    /// A probe of the local site `stack` that reads the table with
    /// `database` (on two sites: the cloud's, across the WAN's published
    /// port).
    pub fn reading(stack: &'a Stack, database: mysql_async::OptsBuilder) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            // A killed or partitioned frontend must not leave us a dead
            // pooled connection: one connection per request.
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        Self {
            stack,
            http,
            panel: format!("http://127.0.0.1:{}", stack.panel_port),
            database,
        }
    }

    /// `GET` on the panel; `Err` only when no HTTP answer came at all.
    pub async fn get(&self, path: &str) -> Result<Reply, String> {
        let started = Instant::now();
        let response = self
            .http
            .get(format!("{}{path}", self.panel))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("GET {path} body: {e}"))?;
        Ok(Reply {
            status,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// `GET` written by hand on a fresh connection, for requests so large
    /// that the server answers and closes before reading all of them (which
    /// HTTP client libraries report as a failed send, not as the answer).
    pub async fn raw_get(&self, path: &str) -> Result<Reply, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", self.stack.panel_port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        // The server may stop reading early; its answer is what counts.
        let _ = stream.write_all(request.as_bytes()).await;
        let mut reply = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
        let text = String::from_utf8_lossy(&reply);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| format!("no HTTP answer ({} bytes)", reply.len()))?;
        Ok(Reply {
            status,
            body: text
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_owned())
                .unwrap_or_default(),
            elapsed: started.elapsed(),
        })
    }

    pub async fn status(&self, path: &str) -> Option<u16> {
        self.get(path).await.ok().map(|reply| reply.status)
    }

    pub async fn sensor_metrics(&self) -> Result<Metrics, String> {
        let address = self
            .stack
            .address("sensor-simulator", "local-net")
            .ok_or("the sensor has no address on local-net")?;
        let text = self
            .http
            .get(format!("http://{address}:9101/metrics"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("sensor metrics: {e}"))?
            .text()
            .await
            .map_err(|e| format!("sensor metrics: {e}"))?;
        Ok(Metrics::parse(&text))
    }

    /// A fresh connection through the proxy (a pooled one could be a dead
    /// leftover of an outage).
    async fn connect(&self) -> Result<mysql_async::Conn, String> {
        let opts = self.database.clone();
        match tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(format!("database through the proxy: {error}")),
            Err(_) => Err("database through the proxy: no answer in 10 s".into()),
        }
    }

    async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(
        &self,
        sql: &str,
    ) -> Result<Vec<T>, String> {
        let mut conn = self.connect().await?;
        let rows = tokio::time::timeout(Duration::from_secs(20), conn.query(sql))
            .await
            .map_err(|_| format!("{sql}: no answer in 20 s"))?
            .map_err(|e| format!("{sql}: {e}"))?;
        conn.disconnect().await.ok();
        Ok(rows)
    }

    /// Rows per tick, oldest first.
    pub async fn tick_rows(&self) -> Result<Vec<TickRows>, String> {
        let rows: Vec<(NaiveDateTime, u64, u64)> = self
            .query(
                "SELECT fecha_registro, COUNT(*), COUNT(DISTINCT ciudad) FROM mediciones \
                 GROUP BY fecha_registro ORDER BY fecha_registro",
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(at, rows, cities)| TickRows { at, rows, cities })
            .collect())
    }

    pub async fn all_rows(&self) -> Result<Vec<Row>, String> {
        self.query("SELECT id, ciudad, temperatura, humedad, fecha_registro, source, observed_at FROM mediciones ORDER BY id")
            .await
    }

    /// Rows stored for ticks at or after `since`, with every value column.
    pub async fn rows_since(&self, since: NaiveDateTime) -> Result<Vec<FullRow>, String> {
        self.query(&format!(
            "SELECT ciudad, temperatura, humedad, apparent_temperature, weather_code, wind_speed, source, fecha_registro \
             FROM mediciones WHERE fecha_registro >= '{}' ORDER BY fecha_registro, ciudad",
            since.format("%Y-%m-%d %H:%M:%S")
        ))
        .await
    }

    pub async fn count(&self) -> Result<u64, String> {
        let rows: Vec<u64> = self.query("SELECT COUNT(*) FROM mediciones").await?;
        Ok(rows.first().copied().unwrap_or(0))
    }

    /// Waits until `count` complete ticks (a reading of every city) later
    /// than `after` are stored; returns the newest.
    pub async fn complete_ticks(
        &self,
        count: usize,
        after: NaiveDateTime,
        limit: Duration,
    ) -> NaiveDateTime {
        eventually(
            &format!("{count} complete tick(s) after {after}"),
            limit,
            POLL,
            || async {
                let ticks = self.tick_rows().await.ok()?;
                let complete: Vec<_> = ticks
                    .iter()
                    .filter(|t| t.at > after && t.rows == 7 && t.cities == 7)
                    .collect();
                (complete.len() >= count).then(|| complete.last().unwrap().at)
            },
        )
        .await
    }

    /// Waits for the panel's outage view to clear, the API and readiness to
    /// come back, the spool to drain and a tick after `restored_at` to be
    /// stored complete; each time is measured from `restored`.
    pub async fn recovery(
        &self,
        restored: Instant,
        restored_at: NaiveDateTime,
        limit: Duration,
    ) -> Recovery {
        let mut times: [Option<Duration>; 4] = [None; 4];
        let deadline = restored + limit;
        loop {
            if times[0].is_none()
                && self.status("/readyz").await == Some(200)
                && self.status("/api/readings?limit=1").await == Some(200)
            {
                times[0] = Some(restored.elapsed());
            }
            if times[1].is_none() {
                if let Ok(page) = self.get("/").await {
                    if page.status == 200
                        && !page.body.contains(BANNER)
                        && !page.body.contains("could not answer")
                    {
                        times[1] = Some(restored.elapsed());
                    }
                }
            }
            if times[2].is_none() {
                if let Ok(metrics) = self.sensor_metrics().await {
                    if metrics.get("sensor_spool_bytes") == 0.0 {
                        times[2] = Some(restored.elapsed());
                    }
                }
            }
            if times[3].is_none() {
                if let Ok(ticks) = self.tick_rows().await {
                    if ticks.iter().any(|t| t.at > restored_at && t.rows == 7) {
                        times[3] = Some(restored.elapsed());
                    }
                }
            }
            if let [Some(api), Some(panel), Some(spool), Some(tick)] = times {
                return Recovery {
                    api,
                    panel,
                    spool,
                    tick,
                };
            }
            assert!(Instant::now() < deadline, "not recovered {limit:?} after the restore: {times:?} (api, panel, spool, fresh tick)");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Probes the panel every `every` until `hold` has passed since `since`,
    /// the outage's start, checking what it must show while the database is
    /// unreachable. Within [`PANEL_NOTICES_OUTAGE_WITHIN`] of the start the
    /// panel may still show its last read as current, without the banner.
    pub async fn hold_outage(&self, since: Instant, hold: Duration, every: Duration) -> OutageLog {
        let mut log = OutageLog::default();
        while since.elapsed() < hold {
            let round = Instant::now();
            log.probes += 1;
            match self.get("/").await {
                Ok(page) => {
                    log.slowest = log.slowest.max(page.elapsed);
                    let shows_data = page.status == 200
                        && page.body.contains(LIVE_WEATHER)
                        && city_names()
                            .iter()
                            .all(|city| page.body.contains(city.as_str()));
                    let banner = page.body.contains(BANNER);
                    let full = shows_data && banner && page.body.contains(LAST_KNOWN);
                    let unnoticed = shows_data && !banner;
                    if full {
                        log.full_view += 1;
                        log.first_banner.get_or_insert(since.elapsed());
                    } else if unnoticed && since.elapsed() < PANEL_NOTICES_OUTAGE_WITHIN {
                        log.before_notice += 1;
                    } else {
                        log.problems.push(format!(
                            "+{}: page {} banner={} last_known={} weather={}",
                            secs(since.elapsed()),
                            page.status,
                            page.body.contains(BANNER),
                            page.body.contains(LAST_KNOWN),
                            page.body.contains(LIVE_WEATHER)
                        ));
                    }
                }
                Err(error) => log
                    .problems
                    .push(format!("+{}: {error}", secs(since.elapsed()))),
            }
            for path in [RECENT_READINGS, "/readyz", "/api/weather?city=Cali"] {
                let status = self.status(path).await.unwrap_or(0);
                // Recent readings come from the panel's last read, as the
                // page does: the same window before the outage is noticed.
                let key = if path == RECENT_READINGS
                    && status == 200
                    && since.elapsed() < PANEL_NOTICES_OUTAGE_WITHIN
                {
                    format!("{path} {status} {BEFORE_NOTICE}")
                } else {
                    format!("{path} {status}")
                };
                *log.statuses.entry(key).or_default() += 1;
            }
            let rest = every
                .saturating_sub(round.elapsed())
                .min(hold.saturating_sub(since.elapsed()));
            // Holding the outage for its required length is the one place a
            // test sleeps without waiting for something.
            tokio::time::sleep(rest).await;
        }
        log
    }
}

/// A row with every value column, for the hostile-input checks.
pub type FullRow = (
    String,
    Option<f64>,
    Option<u8>,
    Option<f64>,
    Option<u16>,
    Option<f64>,
    String,
    NaiveDateTime,
);

/// The API probe of an outage: recent readings, answered from the panel's
/// last read.
pub const RECENT_READINGS: &str = "/api/readings?limit=5";
/// Marks a probe answered from the last read before the panel could have
/// noticed the outage.
pub const BEFORE_NOTICE: &str = "(last read, outage not yet noticed)";

/// The panel reads the database in the background every
/// `panel.data_refresh_secs` (5 s), each read bounded by
/// `database.timeout_secs` (5 s): by then it shows an outage's banner.
pub const PANEL_NOTICES_OUTAGE_WITHIN: Duration = Duration::from_secs(5 + 5 + 1);

impl OutageLog {
    /// Every probe showed the full outage view, or the data without the
    /// banner before the panel could have noticed; and the banner came.
    pub fn held(&self) -> bool {
        self.full_view + self.before_notice == self.probes && self.first_banner.is_some()
    }
}

/// What the panel did during an outage.
#[derive(Debug, Default)]
pub struct OutageLog {
    pub probes: u32,
    /// Answers with status 200, the banner, the last known data of every
    /// city and live weather.
    pub full_view: u32,
    /// Answers early in the outage with every city and live weather but no
    /// banner yet: the panel's last read was before the outage.
    pub before_notice: u32,
    pub first_banner: Option<Duration>,
    pub slowest: Duration,
    /// "path status" → how many times.
    pub statuses: BTreeMap<String, u32>,
    pub problems: Vec<String>,
}

impl fmt::Display for OutageLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "panel answered {}/{} probes with banner + last known data + live weather (first at +{}, slowest answer {}), {} before it noticed the outage; other endpoints: {:?}",
            self.full_view,
            self.probes,
            self.first_banner.map_or("never".into(), secs),
            secs(self.slowest),
            self.before_notice,
            self.statuses
        )
    }
}

/// Times to recover, from the restoring action.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// `/readyz` and `/api/readings` answer 200.
    pub api: Duration,
    /// The page shows no banner.
    pub panel: Duration,
    /// The sensor's spool is empty (replayed).
    pub spool: Duration,
    /// A tick made after the restore is stored complete.
    pub tick: Duration,
}

impl Recovery {
    pub fn total(&self) -> Duration {
        self.api.max(self.panel).max(self.spool).max(self.tick)
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered in {} (API/readyz {}, panel banner gone {}, spool replayed {}, first new tick stored {})",
            secs(self.total()),
            secs(self.api),
            secs(self.panel),
            secs(self.spool),
            secs(self.tick)
        )
    }
}

/// The tick accounting: between the first and the last stored tick, every
/// tick must hold exactly one reading per city.
#[derive(Debug, Default)]
pub struct Accounting {
    pub first: Option<NaiveDateTime>,
    pub last: Option<NaiveDateTime>,
    pub ticks: u64,
    pub expected: u64,
    pub stored: u64,
    pub missing: Vec<NaiveDateTime>,
    pub wrong: Vec<TickRows>,
    pub misaligned: Vec<NaiveDateTime>,
}

impl Accounting {
    /// Accounts for the ticks in `[from, to]` (all when `None`).
    pub fn of(ticks: &[TickRows], from: Option<NaiveDateTime>, to: Option<NaiveDateTime>) -> Self {
        let selected: Vec<&TickRows> = ticks
            .iter()
            .filter(|t| from.is_none_or(|from| t.at >= from) && to.is_none_or(|to| t.at <= to))
            .collect();
        let mut accounting = Accounting::default();
        let (Some(first), Some(last)) = (selected.first(), selected.last()) else {
            return accounting;
        };
        accounting.first = Some(first.at);
        accounting.last = Some(last.at);
        accounting.stored = selected.iter().map(|t| t.rows).sum();
        let by_tick: BTreeMap<NaiveDateTime, &TickRows> =
            selected.iter().map(|t| (t.at, *t)).collect();
        for tick in &selected {
            if tick.at.second() as i64 % TICK_SECS != 0 || tick.at.nanosecond() != 0 {
                accounting.misaligned.push(tick.at);
            }
        }
        let mut at = first.at;
        while at <= last.at {
            accounting.ticks += 1;
            match by_tick.get(&at) {
                None => accounting.missing.push(at),
                Some(tick) if tick.rows != 7 || tick.cities != 7 => accounting.wrong.push(**tick),
                Some(_) => {}
            }
            at += TimeDelta::seconds(TICK_SECS);
        }
        accounting.expected = accounting.ticks * 7;
        accounting
    }

    pub fn exact(&self) -> bool {
        self.ticks > 0
            && self.missing.is_empty()
            && self.wrong.is_empty()
            && self.misaligned.is_empty()
            && self.stored == self.expected
    }
}

impl fmt::Display for Accounting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (Some(first), Some(last)) = (self.first, self.last) else {
            return write!(f, "no ticks stored");
        };
        write!(
            f,
            "ticks {first} .. {last} UTC ({:.1} min): {} ticks, readings expected {}, stored {}",
            (last - first).num_seconds() as f64 / 60.0,
            self.ticks,
            self.expected,
            self.stored
        )?;
        if !self.missing.is_empty() {
            write!(f, "; MISSING ticks {:?}", self.missing)?;
        }
        if !self.wrong.is_empty() {
            write!(
                f,
                "; ticks with the wrong number of readings {:?}",
                self.wrong
            )?;
        }
        if !self.misaligned.is_empty() {
            write!(f, "; ticks off the 15 s grid {:?}", self.misaligned)?;
        }
        Ok(())
    }
}

/// Whether the containers of `services` are the same processes as in
/// `before` (same container, not restarted); the differences otherwise.
pub fn unchanged(stack: &Stack, before: &[(String, stack_tests::ContainerState)]) -> Vec<String> {
    before
        .iter()
        .filter_map(|(service, was)| {
            let now = stack
                .containers()
                .get(service)
                .map(|id| stack_tests::ContainerState::of(id));
            match now {
                Some(now)
                    if now.id == was.id
                        && now.started_at == was.started_at
                        && now.restarts == was.restarts
                        && now.is_up() =>
                {
                    None
                }
                other => Some(format!("{service}: was {was:?}, now {other:?}")),
            }
        })
        .collect()
}

pub fn states(stack: &Stack, services: &[&str]) -> Vec<(String, stack_tests::ContainerState)> {
    services
        .iter()
        .map(|service| (service.to_string(), stack.state(service)))
        .collect()
}

/// Cuts `service` off one of the project's networks; returns what
/// [`reconnect`] needs to put it back as it was (its DNS aliases included,
/// which compose set and `docker network connect` does not restore alone).
pub fn disconnect(stack: &Stack, service: &str, network: &str) -> Disconnected {
    let container = stack.container(service);
    let network = stack.network(network);
    let format = format!("{{{{json (index .NetworkSettings.Networks \"{network}\").Aliases}}}}");
    let aliases = docker(&["inspect", "-f", &format, &container]);
    let aliases: Vec<String> = serde_json::from_slice(&aliases.stdout).unwrap_or_default();
    let output = docker(&["network", "disconnect", &network, &container]);
    assert!(
        output.status.success(),
        "network disconnect: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Disconnected {
        container,
        network,
        aliases,
    }
}

pub struct Disconnected {
    container: String,
    network: String,
    aliases: Vec<String>,
}

pub fn reconnect(cut: Disconnected) {
    let mut args = vec!["network".to_owned(), "connect".to_owned()];
    for alias in &cut.aliases {
        args.push("--alias".into());
        args.push(alias.clone());
    }
    args.push(cut.network.clone());
    args.push(cut.container.clone());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = docker(&args);
    assert!(
        output.status.success(),
        "network connect: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every snapshot in the backups directory has its manifest and passes
/// `backup-worker verify` (run in the worker's container); returns how many
/// were verified, or what failed.
pub fn verify_backups(stack: &Stack) -> Result<usize, Vec<String>> {
    let mut verified = 0;
    let mut failures = Vec::new();
    let directory = stack.backups.path();
    let names = |suffix_filter: &dyn Fn(&str) -> bool| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(directory)
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| suffix_filter(name))
            .collect();
        names.sort();
        names
    };
    for name in names(&|name| !name.starts_with('.')) {
        if !name.starts_with("mediciones-") {
            failures.push(format!("unexpected file {name}"));
            continue;
        }
        if let Some(snapshot) = name.strip_suffix(".manifest.json") {
            // The manifest lands just before its snapshot (and is deleted
            // just after it): one that stays alone for seconds is an orphan.
            let (snapshot, manifest) = (directory.join(snapshot), directory.join(&name));
            let deadline = Instant::now() + Duration::from_secs(3);
            while manifest.exists() && !snapshot.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if manifest.exists() && !snapshot.exists() {
                failures.push(format!("manifest without its snapshot: {name}"));
            }
            continue;
        }
        // A snapshot is renamed into place after its manifest, so it never
        // appears without one (unless retention deleted both meanwhile).
        let manifest = directory.join(format!("{name}.manifest.json"));
        if !manifest.exists() {
            if directory.join(&name).exists() {
                failures.push(format!("snapshot without a manifest: {name}"));
            }
            continue;
        }
        let output = stack.exec(
            "backup-worker",
            &["/app/service", "verify", &format!("/backups/{name}")],
        );
        if output.status.success() {
            verified += 1;
        } else if directory.join(&name).exists() {
            failures.push(format!(
                "verify {name}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }
    if failures.is_empty() {
        Ok(verified)
    } else {
        Err(failures)
    }
}

/// Rows in the chain ending at the snapshot whose manifest is
/// `manifest_name`: its own and those of every snapshot it extends (the
/// manifests' `parent` links, read here without the worker's code).
pub fn chain_rows(directory: &Path, manifest_name: &str) -> Option<u64> {
    let mut rows = 0;
    let mut next = Some(manifest_name.to_owned());
    while let Some(name) = next {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(directory.join(&name)).ok()?).ok()?;
        rows += manifest["rows"].as_u64()?;
        next = manifest["parent"]["manifest"].as_str().map(str::to_owned);
    }
    Some(rows)
}

/// Hidden temporary files (`.tmp-*`) in the backups directory.
pub fn temporary_backups(stack: &Stack) -> Vec<String> {
    std::fs::read_dir(stack.backups.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(".tmp-"))
        .collect()
}
