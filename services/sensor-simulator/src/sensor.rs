//! The sensor loop: every tick, one reading per city, stored or spooled.
//! Open-Meteo is asked by a task of its own ([`crate::fetcher`]); a tick
//! only reads the latest observations it published.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use mysql_async::Pool;
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::insert_batch;
use telemetry_core::service::StartupError;
use telemetry_core::weather::City;
use telemetry_core::{NewReading, Source};
use tokio::sync::{watch, Notify};

use crate::backfill::Backfill;
use crate::clock::Clock;
use crate::fetcher::{Fetcher, Held};
use crate::metrics::Metrics;
use crate::pacing::Pacer;
use crate::schedule::{Schedule, Tick};
use crate::settings::Settings;
use crate::simulated;
use crate::spool::{ReplayError, Replayed, Spool, SpoolError, REPLAY_BATCH};

/// The first wait after a failed replay; it doubles while replays fail
/// without storing anything.
const FIRST_REPLAY_RETRY: Duration = Duration::from_millis(100);

pub struct Sensor {
    cities: Vec<City>,
    /// Open-Meteo only: the fetcher, until `run` starts it, and what it
    /// publishes. `None` for the simulated source.
    fetcher: Option<Fetcher>,
    held: Option<watch::Receiver<Held>>,
    /// Also holds the tick interval and the metrics the ticks count in.
    storage: Arc<Storage>,
}

/// Where readings go: the database, or the spool while it cannot take them.
/// The tick loop stores through it, and the replay beside it drains the
/// spool through it.
struct Storage {
    pool: Pool,
    db_timeout: Duration,
    spool: Spool,
    /// Woken when readings are spooled, so the replay starts at once.
    spooled: Notify,
    /// The tick interval: also the longest a failed replay waits before
    /// trying again.
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl Sensor {
    pub fn new(
        settings: &Settings,
        pool: Pool,
        spool: Spool,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        metrics.spool_bytes.set(spool.bytes() as f64);
        let cities = settings.sensor.cities.clone();
        let (fetcher, held) = match settings.sensor.source {
            // All but simulated are refused by `Settings::validate`.
            Source::Simulated | Source::Backfill | Source::Interpolated | Source::Seed => {
                (None, None)
            }
            Source::OpenMeteo => {
                let budget = settings.sensor_budget();
                metrics.api_budget.set(budget as f64);
                let pacer = Pacer::new(
                    settings.sensor.fetch_policy,
                    settings.sensor.interval(),
                    cities.len(),
                    budget,
                    settings.sensor.fetch_backoff_max(),
                );
                let client = settings.weather.client()?;
                let backfill = Backfill::new(
                    pool.clone(),
                    settings.database.timeout(),
                    settings.sensor.backfill_max_hours,
                );
                let (fetcher, held) = Fetcher::new(
                    client,
                    cities.clone(),
                    pacer,
                    clock,
                    metrics.clone(),
                    backfill,
                );
                (Some(fetcher), Some(held))
            }
        };
        let storage = Arc::new(Storage {
            pool,
            db_timeout: settings.database.timeout(),
            spool,
            spooled: Notify::new(),
            interval: settings.sensor.interval(),
            metrics,
        });
        Ok(Self {
            cities,
            fetcher,
            held,
            storage,
        })
    }

    /// Runs until `shutdown` resolves. Waiting, fetching and replaying are
    /// abandoned on shutdown; storing a tick is not, so every reading made
    /// is in the database or the spool when this returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Started first, so observations are on their way while the spool
        // from before a restart is replayed.
        let fetcher = self
            .fetcher
            .take()
            .map(|fetcher| tokio::spawn(fetcher.run()));
        if !self.storage.spool.is_empty() {
            tracing::info!(
                message =
                    "spool holds readings from before the restart; replaying them beside the ticks",
                bytes = self.storage.spool.bytes()
            );
        }
        let replay = tokio::spawn(self.storage.clone().replay_beside_ticks());
        let mut schedule = Schedule::new(self.storage.interval, Utc::now());
        loop {
            let tick = tokio::select! {
                _ = &mut shutdown => break,
                tick = schedule.next() => tick,
            };
            let readings = self.readings_for(tick);
            self.storage.store(readings).await;
            self.storage.metrics.note_tick_lateness(tick.due.elapsed());
        }
        // Safe to abandon at any point: a batch stored but not yet
        // checkpointed is replayed again later, and the uniqueness key makes
        // that a no-op.
        replay.abort();
        if let Err(error) = replay.await {
            if error.is_panic() {
                std::panic::resume_unwind(error.into_panic());
            }
        }
        // The fetcher stops when nobody is left to read what it publishes.
        self.held = None;
        if let Some(fetcher) = fetcher {
            if let Err(error) = fetcher.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        tracing::info!(
            message = "sensor stopped",
            spool_bytes = self.storage.spool.bytes()
        );
    }

    fn readings_for(&mut self, tick: Tick) -> Vec<NewReading> {
        let metrics = &self.storage.metrics;
        metrics.ticks.increment();
        if tick.skipped > 0 {
            metrics.ticks_skipped.add(tick.skipped);
            tracing::warn!(message = "process stalled; ticks skipped", skipped = tick.skipped, resumed_at = %tick.at);
        }
        match &self.held {
            None => self
                .cities
                .iter()
                .map(|city| simulated::reading(city, tick.at))
                .collect(),
            Some(held) => observed_readings(&self.cities, &held.borrow(), tick.at),
        }
    }
}

impl Storage {
    /// Writes the readings to the database, or to the spool if it cannot.
    /// While the spool holds anything, they go behind it, so rows arrive in
    /// order; the replay beside the ticks takes them from there.
    async fn store(&self, readings: Vec<NewReading>) {
        if readings.is_empty() {
            return;
        }
        if self.spool.is_empty() {
            match insert_batch(&self.pool, &readings, self.db_timeout).await {
                Ok(_) => {
                    self.metrics.inserted.add(readings.len() as u64);
                    self.record_success();
                    return;
                }
                Err(error) => self.database_failed(&error, readings.len()),
            }
        }
        match self.spool.append(&readings) {
            Ok(()) => {
                self.metrics.spooled.add(readings.len() as u64);
                self.spooled.notify_one();
            }
            Err(error @ SpoolError::Full { .. }) => {
                self.metrics.dropped.add(readings.len() as u64);
                tracing::error!(message = "readings dropped: spool full", %error, dropped = readings.len());
            }
            Err(error) => {
                self.metrics.dropped.add(readings.len() as u64);
                tracing::error!(message = "readings dropped: spool unwritable", %error, dropped = readings.len());
            }
        }
        self.metrics.spool_bytes.set(self.spool.bytes() as f64);
    }

    /// Drains the spool whenever it holds anything, in its own task: a long
    /// replay never delays a tick. Each attempt resumes where the last one
    /// stopped. After a failure it tries again soon (the first use of a
    /// pooled connection after a dropped link fails, the next one connects
    /// afresh), then less and less often, up to once a tick interval.
    async fn replay_beside_ticks(self: Arc<Self>) {
        let mut drained = Replayed::default();
        let mut retry = FIRST_REPLAY_RETRY;
        loop {
            if self.spool.is_empty() {
                self.spooled.notified().await;
                continue;
            }
            let mut progress = 0;
            let replay = self
                .spool
                .replay(&self.pool, REPLAY_BATCH, self.db_timeout, |batch| {
                    progress += batch.len();
                    self.metrics.replayed.add(batch.len() as u64);
                    self.metrics.spool_bytes.set(self.spool.bytes() as f64);
                })
                .await;
            match replay {
                Ok(replayed) => {
                    drained.readings += replayed.readings;
                    drained.skipped += replayed.skipped;
                    retry = FIRST_REPLAY_RETRY;
                }
                Err(error) => {
                    self.metrics.replay_interruptions.increment();
                    match error {
                        ReplayError::Database(error) => self.database_failed(&error, 0),
                        ReplayError::Spool(error) => {
                            tracing::error!(message = "cannot read or checkpoint the spool", %error)
                        }
                    }
                    drained.readings += progress as u64;
                    retry = if progress > 0 {
                        FIRST_REPLAY_RETRY
                    } else {
                        (retry * 2).min(self.interval)
                    };
                    tokio::time::sleep(retry).await;
                    continue;
                }
            }
            match self.spool.clear_if_drained() {
                // Readings were spooled during the replay: they are next.
                Ok(false) => continue,
                Ok(true) => {}
                Err(error) => {
                    tracing::error!(message = "cannot empty the drained spool; it is emptied after the next replay", %error);
                    tokio::time::sleep(self.interval).await;
                    continue;
                }
            }
            if drained.skipped > 0 {
                self.metrics.dropped.add(drained.skipped);
                tracing::error!(
                    message = "unreadable spool lines skipped",
                    skipped = drained.skipped
                );
            }
            self.metrics.spool_bytes.set(0.0);
            self.record_success();
            tracing::info!(
                message = "spool replayed into the database",
                readings = drained.readings
            );
            drained = Replayed::default();
        }
    }

    fn record_success(&self) {
        self.metrics.last_success.set(Utc::now().timestamp() as f64);
        if self.metrics.database_problem.clear() {
            tracing::info!(message = "the database takes the readings again");
        }
    }

    /// A write or a replay failed; the readings are in the spool. An outage
    /// is what the spool is for; a refusal that waiting will not fix (access
    /// denied, no such table or column, a value too long) is logged as an
    /// error each time, counted by code, and makes `/healthz` answer 503
    /// until a write succeeds again.
    fn database_failed(&self, error: &DatabaseError, readings: usize) {
        if error.is_untrusted() {
            tracing::error!(message = "database server refused; readings kept in the spool", %error, readings);
        } else if error.is_unavailable() {
            tracing::warn!(message = "database unavailable; readings kept in the spool", %error, readings);
        } else {
            let code = error.server_code().unwrap_or_default();
            self.metrics.database_refusals.increment(&code);
            tracing::error!(
                message = "the database refuses the readings; they wait in the spool until it is fixed",
                code,
                %error,
                readings,
                spool_bytes = self.spool.bytes(),
            );
            self.metrics.database_problem.set(format!("the database refuses the readings (server error {code}): {error}; they wait in the spool"));
        }
    }
}

/// One reading per city whose latest observation is still current at `tick`.
fn observed_readings(cities: &[City], held: &Held, tick: NaiveDateTime) -> Vec<NewReading> {
    held.iter()
        .zip(cities)
        .filter_map(|(observation, city)| Some((observation.as_ref()?, city)))
        .filter(|(observation, _)| observation.is_current_at(tick))
        .map(|(observation, city)| NewReading {
            ciudad: city.name.clone(),
            temperatura: observation.temperature,
            humedad: observation.humidity,
            fecha_registro: tick,
            source: Source::OpenMeteo,
            observed_at: Some(observation.observed_at),
            apparent_temperature: observation.apparent_temperature,
            weather_code: observation.weather_code,
            wind_speed: observation.wind_speed,
        })
        .collect()
}
