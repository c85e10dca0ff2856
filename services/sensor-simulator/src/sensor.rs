//! The sensor loop: every tick, one reading per city, stored or spooled.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use mysql_async::Pool;
use rand::Rng;
use telemetry_core::reading::insert_batch;
use telemetry_core::weather::{City, Observation, WeatherClient, WeatherError};
use telemetry_core::{NewReading, Source};

use crate::metrics::Metrics;
use crate::schedule::{Schedule, Tick};
use crate::settings::Settings;
use crate::simulated;
use crate::spool::{ReplayError, Spool, SpoolError, REPLAY_BATCH};

/// When a fetch returns the observation we already have (the API lags its
/// own schedule a little), ask again after this long rather than every tick.
const SAME_OBSERVATION_RETRY: TimeDelta = TimeDelta::seconds(60);

pub struct Sensor {
    cities: Vec<City>,
    source: Source,
    interval: Duration,
    client: WeatherClient,
    fetch_attempts: u32,
    pool: Pool,
    db_timeout: Duration,
    spool: Spool,
    metrics: Arc<Metrics>,
    /// Last observations from the API, one per city, and when to ask again.
    cache: Option<Vec<Observation>>,
    next_fetch: NaiveDateTime,
}

impl Sensor {
    pub fn new(
        settings: &Settings,
        pool: Pool,
        spool: Spool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, WeatherError> {
        metrics.spool_bytes.set(spool.bytes() as f64);
        let client = settings.weather.client()?;
        Ok(Self {
            cities: settings.sensor.cities.clone(),
            source: settings.sensor.source,
            interval: settings.sensor.interval(),
            client,
            fetch_attempts: settings.weather.attempts,
            pool,
            db_timeout: settings.database.timeout(),
            spool,
            metrics,
            cache: None,
            next_fetch: NaiveDateTime::MIN,
        })
    }

    /// Runs until `shutdown` resolves. Waiting and fetching are abandoned on
    /// shutdown; storing is not, so every reading made is in the database or
    /// the spool when this returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut schedule = Schedule::new(self.interval, Utc::now());
        if !self.spool.is_empty() {
            tracing::info!(
                message = "spool holds readings from before the restart",
                bytes = self.spool.bytes()
            );
            self.flush_spool().await;
        }
        loop {
            let readings = tokio::select! {
                _ = &mut shutdown => break,
                readings = async {
                    let tick = schedule.next().await;
                    self.readings_for(tick).await
                } => readings,
            };
            self.store(readings).await;
        }
        tracing::info!(message = "sensor stopped", spool_bytes = self.spool.bytes());
    }

    async fn readings_for(&mut self, tick: Tick) -> Vec<NewReading> {
        self.metrics.ticks.increment();
        if tick.skipped > 0 {
            self.metrics.ticks_skipped.add(tick.skipped);
            tracing::warn!(message = "process stalled; ticks skipped", skipped = tick.skipped, resumed_at = %tick.at);
        }
        match self.source {
            Source::Simulated => self
                .cities
                .iter()
                .map(|city| simulated::reading(city, tick.at))
                .collect(),
            Source::OpenMeteo => self.observed_readings(tick.at).await,
        }
    }

    async fn observed_readings(&mut self, tick: NaiveDateTime) -> Vec<NewReading> {
        if tick >= self.next_fetch {
            self.refresh(tick).await;
        }
        let Some(observations) = &self.cache else {
            return Vec::new();
        };
        observations
            .iter()
            .zip(&self.cities)
            // An observation past two of its own intervals is no longer
            // "current": better no row than a stale value passed off as new.
            .filter(|(observation, _)| {
                tick < observation.next_due()
                    + TimeDelta::from_std(observation.interval).unwrap_or_default()
            })
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

    /// Fetches new observations, with exponential backoff and jitter between
    /// attempts; gives up early on replies that retrying cannot fix.
    #[tracing::instrument(skip_all, fields(cities = self.cities.len()))]
    async fn refresh(&mut self, tick: NaiveDateTime) {
        let mut delay = Duration::from_millis(500);
        for attempt in 1..=self.fetch_attempts {
            match self.client.current(&self.cities).await {
                Ok(observations) => {
                    self.metrics.fetches.increment();
                    for (observation, city) in observations.iter().zip(&self.cities) {
                        if !observation.missing.is_empty() {
                            tracing::warn!(
                                message = "Open-Meteo reply lacks values; stored as NULL",
                                city = %city.name,
                                missing = ?observation.missing
                            );
                        }
                    }
                    let newest = observations.iter().map(|o| o.observed_at).max();
                    let previous = self
                        .cache
                        .as_ref()
                        .and_then(|c| c.iter().map(|o| o.observed_at).max());
                    self.next_fetch = if newest.is_some() && newest == previous {
                        tick + SAME_OBSERVATION_RETRY
                    } else {
                        observations
                            .iter()
                            .map(Observation::next_due)
                            .min()
                            .unwrap_or(tick)
                    };
                    tracing::info!(message = "observations fetched", observed_at = ?newest, next_fetch = %self.next_fetch);
                    self.cache = Some(observations);
                    return;
                }
                Err(error) => {
                    self.metrics.api_errors.increment(&error.kind());
                    tracing::warn!(message = "Open-Meteo request failed", kind = error.kind(), %error, attempt);
                    if !error.is_transient() || attempt == self.fetch_attempts {
                        break;
                    }
                    let jitter = rand::rng().random_range(0..=delay.as_millis() as u64 / 2);
                    tokio::time::sleep(delay + Duration::from_millis(jitter)).await;
                    delay *= 2;
                }
            }
        }
        // Failed: try again at the next tick.
        self.next_fetch = tick;
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
                Err(error) => {
                    tracing::warn!(message = "database write failed; spooling", %error, readings = readings.len());
                }
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
            Err(ReplayError::Database(error)) if error.is_untrusted() => {
                tracing::error!(message = "database server refused; spool kept", %error);
                return;
            }
            Err(ReplayError::Database(error)) => {
                tracing::debug!(message = "database still unavailable; spool kept", %error);
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
    }
}
