//! sensor-simulator: reads current weather for each configured city every
//! tick and stores it in `mediciones`, spooling to disk while the database
//! is unreachable; after downtime, fills the gap from Open-Meteo's past data.

pub mod backfill;
pub mod clock;
pub mod fetcher;
pub mod metrics;
pub mod pacing;
pub mod schedule;
pub mod sensor;
pub mod settings;
pub mod simulated;
pub mod spool;

use std::future::Future;
use std::sync::Arc;

use actix_web::dev::Server;
use telemetry_core::service::{Listener, StartupError};

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::sensor::Sensor;
use crate::settings::Settings;
use crate::spool::Spool;

pub struct Application {
    port: u16,
    server: Server,
    sensor: Sensor,
}

impl Application {
    /// Binds the health/metrics listener and opens the spool; connects to
    /// nothing yet, so the sensor starts (and spools) with the database down.
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        Self::build_with_clock(settings, Arc::new(SystemClock))
    }

    /// As [`Self::build`], with the clock that paces calls to Open-Meteo.
    pub fn build_with_clock(
        settings: &Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let listener = Listener::bind(&settings.http)?;
        let port = listener.port();
        let pool = settings.database.pool()?;
        let spool = Spool::open(&settings.spool.directory, settings.spool.max_bytes)
            .map_err(StartupError::part)?;
        let metrics = Arc::new(Metrics::default());
        let sensor = Sensor::new(settings, pool, spool, metrics.clone(), clock)?;
        let server = listener.serve(|listener| telemetry_core::ops::serve(listener, metrics))?;
        tracing::info!(
            message = "sensor started",
            port,
            source = %settings.sensor.source,
            interval_secs = settings.sensor.interval_secs,
            cities = settings.sensor.cities.len(),
            fetch_policy = settings.sensor.fetch_policy.name(),
            backfill_max_hours = settings.sensor.backfill_max_hours,
            api_calls_per_day = settings.sensor_calls_per_day(),
            api_budget = settings.sensor_budget(),
            database = %format!("{}:{}/{}", settings.database.host, settings.database.port, settings.database.name),
        );
        Ok(Self {
            port,
            server,
            sensor,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until `shutdown` resolves, then stores or spools what it holds
    /// and stops the HTTP listener.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        telemetry_core::ops::serve_while(self.server, self.sensor.run(shutdown)).await
    }
}
