//! The sensor's configuration: defaults, then a TOML file, then `APP__*`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use telemetry_core::settings::{
    validate_cities, DatabaseSettings, HttpSettings, LogSettings, SettingsError, Validate,
    WeatherSettings,
};
use telemetry_core::weather::{default_cities, City};
use telemetry_core::Source;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub sensor: SensorSettings,
    pub weather: WeatherSettings,
    pub spool: SpoolSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings {
                user: "sensor".into(),
                ..DatabaseSettings::default()
            },
            http: HttpSettings::with_port(9101),
            log: LogSettings::default(),
            sensor: SensorSettings::default(),
            weather: WeatherSettings::default(),
            spool: SpoolSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorSettings {
    /// `open-meteo` for real readings, `simulated` for offline use; simulated
    /// readings are stored as such.
    pub source: Source,
    /// One reading per city per this many seconds, aligned to the clock.
    pub interval_secs: u64,
    pub cities: Vec<City>,
}

impl Default for SensorSettings {
    fn default() -> Self {
        Self {
            source: Source::OpenMeteo,
            interval_secs: 15,
            cities: default_cities(),
        }
    }
}

impl SensorSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpoolSettings {
    /// Readings that could not be stored wait here, on disk, until they can.
    pub directory: PathBuf,
    /// Upper bound of the spool file. When full, new readings are dropped
    /// (logged and counted) so the readings already waiting keep their place.
    pub max_bytes: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("spool"),
            // About 270 bytes a reading: ~380,000 readings, 9 days of 7 cities.
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        let sensor = &self.sensor;
        if !(1..=86_400).contains(&sensor.interval_secs) {
            return Err(SettingsError::invalid(
                "sensor.interval_secs",
                sensor.interval_secs,
                "must be 1-86400",
            ));
        }
        validate_cities("sensor", &sensor.cities)?;
        self.weather.validate()?;
        if self.spool.max_bytes < 4096 {
            return Err(SettingsError::invalid(
                "spool.max_bytes",
                self.spool.max_bytes,
                "must be at least 4096",
            ));
        }
        Ok(())
    }
}
