//! The sensor's configuration: defaults, then a TOML file, then `APP__*`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use telemetry_core::settings::{
    check_range, validate_cities, DatabaseSettings, HttpSettings, LogSettings, SettingsError,
    Validate, WeatherSettings,
};
use telemetry_core::weather::{default_cities, City};
use telemetry_core::Source;

use crate::pacing::{FetchPolicy, BACKOFF_CAP};

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
    /// When Open-Meteo is asked, and for which cities. The default asks
    /// every tick, for one city in turn: the design's fetch every 15 s,
    /// inside the free tier with the panel's calls counted.
    pub fetch_policy: FetchPolicy,
    /// After failures, fetches wait four ticks, then twice as long each
    /// time, up to this (seconds).
    pub fetch_backoff_max_secs: u64,
    /// At start, the quarter hours a downtime left empty are filled from
    /// Open-Meteo's past data, at most this many hours back; 0 turns it off.
    pub backfill_max_hours: u64,
    pub cities: Vec<City>,
}

/// Open-Meteo keeps 92 days of past data.
pub const BACKFILL_MAX_HOURS_LIMIT: u64 = 92 * 24;

impl Default for SensorSettings {
    fn default() -> Self {
        Self {
            source: Source::OpenMeteo,
            interval_secs: 15,
            fetch_policy: FetchPolicy::default(),
            fetch_backoff_max_secs: BACKOFF_CAP.num_seconds() as u64,
            // A week: a downtime of a few days is filled; a longer one was
            // noticed and decided about.
            backfill_max_hours: 168,
            cities: default_cities(),
        }
    }
}

impl SensorSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub fn fetch_backoff_max(&self) -> Duration {
        Duration::from_secs(self.fetch_backoff_max_secs)
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

impl Settings {
    /// Open-Meteo calls a day of the sensor's policy (0 when simulated).
    pub fn sensor_calls_per_day(&self) -> u64 {
        match self.sensor.source {
            // All but simulated are refused by `validate`.
            Source::Simulated | Source::Backfill | Source::Interpolated | Source::Seed => 0,
            Source::OpenMeteo => self
                .sensor
                .fetch_policy
                .calls_per_day(self.sensor.interval(), self.sensor.cities.len()),
        }
    }

    /// The most calls a day the panel's live weather makes, assuming it
    /// shows the sensor's cities with this `weather.cache_secs`.
    pub fn panel_calls_per_day(&self) -> u64 {
        self.weather.panel_calls_per_day(self.sensor.cities.len())
    }

    /// The calls a UTC day the sensor may spend: the budget less the
    /// panel's worst case.
    pub fn sensor_budget(&self) -> u64 {
        self.weather
            .daily_budget
            .saturating_sub(self.panel_calls_per_day())
    }

    /// Refuses a policy that, with the panel's worst case, needs more calls
    /// a day than the budget.
    fn validate_budget(&self) -> Result<(), SettingsError> {
        let sensor = self.sensor_calls_per_day();
        if sensor == 0 {
            return Ok(());
        }
        let panel = self.panel_calls_per_day();
        let budget = self.weather.daily_budget;
        if sensor + panel <= budget {
            return Ok(());
        }
        let (interval, cities) = (self.sensor.interval(), self.sensor.cities.len());
        let alternatives: Vec<String> = FetchPolicy::ALL
            .into_iter()
            .filter(|&policy| policy.calls_per_day(interval, cities) + panel <= budget)
            .map(|policy| {
                format!(
                    "{} ({} a day)",
                    policy.name(),
                    policy.calls_per_day(interval, cities)
                )
            })
            .collect();
        let choose = if alternatives.is_empty() {
            String::new()
        } else {
            format!(
                ", or set sensor.fetch_policy to {}",
                alternatives.join(" or ")
            )
        };
        Err(SettingsError::invalid(
            "weather.daily_budget",
            budget,
            format!(
                "too small for sensor.fetch_policy = {}: {}; with up to {panel} calls a day for \
                 the panel's live weather ({cities} cities, each at most every {} s, \
                 weather.cache_secs) that is {} calls a day, more than the {budget} of \
                 weather.daily_budget. Raise weather.daily_budget (a paid key or a self-hosted \
                 Open-Meteo), lengthen sensor.interval_secs{choose}",
                self.sensor.fetch_policy.name(),
                self.sensor.fetch_policy.describe(interval, cities),
                self.weather.cache_secs,
                sensor + panel,
            ),
        ))
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        let sensor = &self.sensor;
        if !matches!(sensor.source, Source::OpenMeteo | Source::Simulated) {
            return Err(SettingsError::invalid(
                "sensor.source",
                sensor.source,
                "must be open-meteo or simulated (the sensor tags filled-in rows itself; \
                 seed marks rows adopted from the seed's table)",
            ));
        }
        check_range("sensor.interval_secs", sensor.interval_secs, 1..=86_400)?;
        check_range(
            "sensor.fetch_backoff_max_secs",
            sensor.fetch_backoff_max_secs,
            1..=86_400,
        )?;
        check_range(
            "sensor.backfill_max_hours",
            sensor.backfill_max_hours,
            0..=BACKFILL_MAX_HOURS_LIMIT,
        )?;
        validate_cities("sensor", &sensor.cities)?;
        self.weather.validate()?;
        self.validate_budget()?;
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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use telemetry_core::settings::load;

    use super::*;

    fn load_toml(body: &str) -> Result<Settings, SettingsError> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(body.as_bytes()).unwrap();
        load(Some(file.path()))
    }

    #[test]
    fn the_default_fetches_every_tick_inside_the_free_tier_with_the_panel_counted() {
        let settings = load_toml("").unwrap();
        assert_eq!(settings.sensor.fetch_policy, FetchPolicy::RoundRobin);
        assert_eq!(settings.sensor_calls_per_day(), 5_760);
        assert_eq!(settings.panel_calls_per_day(), 2_016);
        assert_eq!(settings.sensor_budget(), 10_000 - 2_016);
    }

    #[test]
    fn a_policy_over_the_budget_is_refused_with_the_keys_and_the_numbers() {
        let error = load_toml("[sensor]\nfetch_policy = \"every-tick\"\n")
            .unwrap_err()
            .to_string();
        for expected in [
            "`weather.daily_budget`",
            "\"10000\"",
            "every-tick",
            "sensor.interval_secs",
            "40320 calls a day",
            "2016",
            "weather.cache_secs",
            "42336",
            "round-robin (5760 a day)",
            "on-new-observation (2016 a day)",
        ] {
            assert!(
                error.contains(expected),
                "{expected:?} missing from: {error}"
            );
        }
    }

    #[test]
    fn a_larger_budget_admits_every_tick_and_simulated_readings_need_none() {
        let settings =
            load_toml("[sensor]\nfetch_policy = \"every-tick\"\n[weather]\ndaily_budget = 50000\n")
                .unwrap();
        assert_eq!(settings.sensor_calls_per_day(), 40_320);
        let settings =
            load_toml("[sensor]\nsource = \"simulated\"\nfetch_policy = \"every-tick\"\n").unwrap();
        assert_eq!(settings.sensor_calls_per_day(), 0);
    }

    #[test]
    fn round_robin_is_refused_when_the_panel_leaves_too_little() {
        // A panel refreshing every 60 s takes 10,080 calls a day by itself.
        let error = load_toml("[weather]\ncache_secs = 60\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("10080 calls a day for the panel"), "{error}");
        assert!(!error.contains("set sensor.fetch_policy"), "{error}");
    }

    #[test]
    fn backfill_looks_a_week_back_by_default_and_at_most_what_open_meteo_keeps() {
        assert_eq!(load_toml("").unwrap().sensor.backfill_max_hours, 168);
        assert_eq!(
            load_toml("[sensor]\nbackfill_max_hours = 0\n")
                .unwrap()
                .sensor
                .backfill_max_hours,
            0
        );
        let error = load_toml("[sensor]\nbackfill_max_hours = 2209\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`sensor.backfill_max_hours`"), "{error}");
        assert!(error.contains("\"2209\""), "{error}");
    }

    #[test]
    fn the_sources_of_filled_in_rows_are_not_a_sensor_source() {
        let error = load_toml("[sensor]\nsource = \"backfill\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("`sensor.source`"), "{error}");
        assert!(error.contains("open-meteo or simulated"), "{error}");
    }

    #[test]
    fn an_unknown_policy_is_refused_with_the_known_ones() {
        let error = load_toml("[sensor]\nfetch_policy = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("sometimes"), "{error}");
        assert!(error.contains("round-robin"), "{error}");
    }
}
