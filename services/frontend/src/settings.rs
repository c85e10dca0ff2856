//! The panel's configuration: defaults, then a TOML file, then `APP__*`.

use std::time::Duration;

use chrono_tz::Tz;
use serde::Deserialize;
use telemetry_core::settings::{
    check_range, validate_cities, DatabaseSettings, HttpSettings, LogSettings, SettingsError,
    Validate, WeatherSettings,
};
use telemetry_core::weather::{default_cities, City};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub panel: PanelSettings,
    pub weather: WeatherSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // The panel only reads: its account has SELECT and nothing else.
            database: DatabaseSettings {
                user: "panel".into(),
                ..DatabaseSettings::default()
            },
            http: HttpSettings::with_port(5000),
            log: LogSettings::default(),
            panel: PanelSettings::default(),
            // The page waits for live weather alongside the database: short.
            weather: WeatherSettings {
                timeout_secs: 4,
                ..WeatherSettings::default()
            },
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PanelSettings {
    /// Cities shown, in this order; each gets a card, a chart and a live
    /// weather entry (hence the coordinates).
    pub cities: Vec<City>,
    /// IANA zone the page shows times in; everything stored stays UTC.
    pub time_zone: String,
    /// A city whose latest reading is older than this is flagged stale. The
    /// sensor writes every 15 s, so two minutes means several missed ticks,
    /// not one slow one.
    pub stale_after_secs: u64,
    /// How often the page fetches a fresh fragment (and, without JS, reloads).
    pub refresh_secs: u64,
    /// How often the panel reads its data from the database, in the
    /// background; pages are rendered from the last read. Well under the
    /// sensor's 15 s tick, so the page is at most one tick behind.
    pub data_refresh_secs: u64,
    /// Name of the database node this panel reads from, shown beside every
    /// reading so a reader knows which replica answered.
    pub node_name: String,
}

impl Default for PanelSettings {
    fn default() -> Self {
        Self {
            cities: default_cities(),
            time_zone: "America/Bogota".into(),
            stale_after_secs: 120,
            refresh_secs: 15,
            data_refresh_secs: 5,
            node_name: "db-master".into(),
        }
    }
}

impl PanelSettings {
    /// The display zone; `validate` has already checked that it parses.
    pub fn zone(&self) -> Tz {
        self.time_zone.parse().unwrap_or(Tz::UTC)
    }

    pub fn data_refresh(&self) -> Duration {
        Duration::from_secs(self.data_refresh_secs)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        let panel = &self.panel;
        validate_cities("panel", &panel.cities)?;
        if panel.time_zone.parse::<Tz>().is_err() {
            return Err(SettingsError::invalid(
                "panel.time_zone",
                &panel.time_zone,
                "must be an IANA zone name such as America/Bogota or UTC",
            ));
        }
        if panel.stale_after_secs == 0 {
            return Err(SettingsError::invalid(
                "panel.stale_after_secs",
                0,
                "must be at least 1",
            ));
        }
        check_range("panel.refresh_secs", panel.refresh_secs, 1..=3600)?;
        check_range("panel.data_refresh_secs", panel.data_refresh_secs, 1..=3600)?;
        if panel.node_name.trim().is_empty() || panel.node_name.chars().count() > 64 {
            return Err(SettingsError::invalid(
                "panel.node_name",
                &panel.node_name,
                "must be 1-64 characters",
            ));
        }
        self.weather.validate()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_read_only() {
        let settings = Settings::default();
        settings.validate().unwrap();
        assert_eq!(settings.database.user, "panel");
        assert_eq!(settings.http.port, 5000);
        assert_eq!(settings.panel.zone(), chrono_tz::America::Bogota);
    }

    #[test]
    fn unknown_zone_names_key_and_value() {
        let mut settings = Settings::default();
        settings.panel.time_zone = "Mars/Olympus".into();
        let error = settings.validate().unwrap_err().to_string();
        assert!(
            error.contains("panel.time_zone") && error.contains("Mars/Olympus"),
            "{error}"
        );
    }

    #[test]
    fn duplicate_city_is_refused() {
        let mut settings = Settings::default();
        settings.panel.cities.push(settings.panel.cities[0].clone());
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("panel.cities.name"), "{error}");
    }
}
