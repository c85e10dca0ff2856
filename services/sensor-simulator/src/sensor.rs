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
use tokio::sync::watch;

use crate::backfill::Backfill;
use crate::clock::Clock;
use crate::fetcher::{Fetcher, Held};
use crate::metrics::Metrics;
use crate::pacing::Pacer;
use crate::schedule::{Schedule, Tick};
use crate::settings::Settings;
use crate::simulated;
use crate::spool::{ReplayError, Spool, SpoolError, REPLAY_BATCH};

pub struct Sensor {
    cities: Vec<City>,
    interval: Duration,
    /// Open-Meteo only: the fetcher, until `run` starts it, and what it
    /// publishes. `None` for the simulated source.
    fetcher: Option<Fetcher>,
    held: Option<watch::Receiver<Held>>,
    pool: Pool,
    db_timeout: Duration,
    spool: Spool,
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
            // The last two are refused by `Settings::validate`.
            Source::Simulated | Source::Backfill | Source::Interpolated => (None, None),
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
        Ok(Self {
            cities,
            interval: settings.sensor.interval(),
            fetcher,
            held,
            pool,
            db_timeout: settings.database.timeout(),
            spool,
            metrics,
        })
    }

    /// Runs until `shutdown` resolves. Waiting and fetching are abandoned on
    /// shutdown; storing is not, so every reading made is in the database or
    /// the spool when this returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        // Started first, so observations are on their way while the spool
        // from before a restart is replayed.
        let fetcher = self
            .fetcher
            .take()
            .map(|fetcher| tokio::spawn(fetcher.run()));
        let mut schedule = Schedule::new(self.interval, Utc::now());
        if !self.spool.is_empty() {
            tracing::info!(
                message = "spool holds readings from before the restart",
                bytes = self.spool.bytes()
            );
            self.flush_spool().await;
        }
        loop {
            let tick = tokio::select! {
                _ = &mut shutdown => break,
                tick = schedule.next() => tick,
            };
            let readings = self.readings_for(tick);
            self.store(readings).await;
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
        tracing::info!(message = "sensor stopped", spool_bytes = self.spool.bytes());
    }

    fn readings_for(&mut self, tick: Tick) -> Vec<NewReading> {
        self.metrics.ticks.increment();
        if tick.skipped > 0 {
            self.metrics.ticks_skipped.add(tick.skipped);
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
    /// Writes the readings to the database, or to the spool if it cannot.
    /// Spooled readings go first, so rows arrive in order.
    async fn store(&mut self, readings: Vec<NewReading>) {
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
            self.spool_readings(&readings);
        } else {
            self.spool_readings(&readings);
            self.flush_spool().await;
        }
    }

    fn spool_readings(&mut self, readings: &[NewReading]) {
        match self.spool.append(readings) {
            Ok(()) => {
                self.metrics.spooled.add(readings.len() as u64);
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

    /// Replays the spool into the database in order; clears it only when
    /// every batch is stored. A failure leaves it for the next tick.
    #[tracing::instrument(skip_all, fields(file = %self.spool.path().display()))]
    async fn flush_spool(&mut self) {
        let replayed = match self
            .spool
            .replay(&self.pool, REPLAY_BATCH, self.db_timeout)
            .await
        {
            Ok(replayed) => replayed,
            Err(ReplayError::Database(error)) => {
                self.database_failed(&error, 0);
                return;
            }
            Err(ReplayError::Spool(error)) => {
                tracing::error!(message = "cannot read spool", %error);
                return;
            }
        };
        if replayed.skipped > 0 {
            self.metrics.dropped.add(replayed.skipped);
            tracing::error!(
                message = "unreadable spool lines skipped",
                skipped = replayed.skipped
            );
        }
        if let Err(error) = self.spool.clear() {
            tracing::error!(message = "cannot clear spool; its rows will be replayed again (no duplicates)", %error);
            return;
        }
        self.metrics.replayed.add(replayed.readings);
        self.metrics.spool_bytes.set(0.0);
        self.record_success();
        tracing::info!(
            message = "spool replayed into the database",
            readings = replayed.readings
        );
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
