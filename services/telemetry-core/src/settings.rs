//! Layered configuration shared by every service.
//!
//! Order, last wins: the struct's `Default`, then an optional TOML file, then
//! `APP__`-prefixed environment variables (`APP__DATABASE__HOST` sets
//! `database.host`). Environment goes last so a container can override any
//! file value without editing it.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::weather::{quota_calls, City, WeatherClient, WeatherError};

/// Prefix of the environment variables read by every service.
pub const ENV_PREFIX: &str = "APP";

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration file {path}: {cause}")]
    File {
        path: PathBuf,
        cause: Box<config::ConfigError>,
    },
    /// The `config` crate names the key and the offending value itself.
    #[error("configuration: {0} (environment variables are APP__SECTION__KEY, e.g. APP__DATABASE__PORT)")]
    Parse(Box<config::ConfigError>),
    #[error("configuration key `{key}` has invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

// By hand rather than `#[from]`: the message already includes the cause, and
// a `source` would make error reports print it twice.
impl From<config::ConfigError> for SettingsError {
    fn from(error: config::ConfigError) -> Self {
        Self::Parse(Box::new(error))
    }
}

impl SettingsError {
    pub fn invalid(key: impl Into<String>, value: impl Display, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Checks that `value`, the setting `key`, lies within `range`; the error
/// names both, as every settings error does.
pub fn check_range(
    key: &str,
    value: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<(), SettingsError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(SettingsError::invalid(
        key,
        value,
        format!("must be {}-{}", range.start(), range.end()),
    ))
}

/// Implemented by each service's settings: checks that types alone cannot.
pub trait Validate {
    fn validate(&self) -> Result<(), SettingsError>;
}

/// Checks the `cities` list of `section` (the sensor's and the panel's):
/// at least one city, names of 1-64 characters (the column is VARCHAR(64)),
/// each listed once (a second one would collide with the first on the
/// table's uniqueness key), coordinates on the globe.
pub fn validate_cities(section: &str, cities: &[City]) -> Result<(), SettingsError> {
    if cities.is_empty() {
        return Err(SettingsError::invalid(
            format!("{section}.cities"),
            "[]",
            "at least one city is needed",
        ));
    }
    for (index, city) in cities.iter().enumerate() {
        let key = |field: &str| format!("{section}.cities.{field}");
        if city.name.trim().is_empty() || city.name.chars().count() > 64 {
            return Err(SettingsError::invalid(
                key("name"),
                &city.name,
                "must be 1-64 characters",
            ));
        }
        if cities[..index].iter().any(|other| other.name == city.name) {
            return Err(SettingsError::invalid(
                key("name"),
                &city.name,
                "is listed twice",
            ));
        }
        let ranges = [
            ("latitude", city.latitude, -90.0..=90.0, "must be -90..90"),
            (
                "longitude",
                city.longitude,
                -180.0..=180.0,
                "must be -180..180",
            ),
            (
                "mean_temperature",
                city.mean_temperature,
                -60.0..=60.0,
                "must be -60..60 (°C)",
            ),
            (
                "mean_humidity",
                city.mean_humidity,
                0.0..=100.0,
                "must be 0..100 (%)",
            ),
        ];
        for (field, value, range, reason) in ranges {
            if !range.contains(&value) {
                return Err(SettingsError::invalid(key(field), value, reason));
            }
        }
    }
    Ok(())
}

/// The `[weather]` section: how a service reaches Open-Meteo. Each service
/// sets its own defaults; `daily_budget` is the sensor's, `cache_secs` the
/// panel's (the sensor reads it too, to count the panel's share of the
/// budget), and the other service ignores it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeatherSettings {
    pub base_url: String,
    /// Sent as the `apikey` query parameter: the paid route, with the
    /// customer host as `base_url`. Never logged, masked in `Debug`.
    pub apikey: Option<SecretString>,
    /// Bound on one request.
    pub timeout_secs: u64,
    /// Panel: a city's live weather is reused this long. Open-Meteo itself
    /// updates every 15 minutes, and the panel must never hammer it.
    pub cache_secs: u64,
    /// Calls a UTC day that Open-Meteo allows this site (the free tier's
    /// 10,000; more for a paid key or a self-hosted instance). The sensor
    /// refuses to start when its policy and the panel's worst case need
    /// more, and never spends more than what the panel leaves it.
    pub daily_budget: u64,
}

impl Default for WeatherSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.open-meteo.com".into(),
            apikey: None,
            timeout_secs: 10,
            cache_secs: 300,
            daily_budget: 10_000,
        }
    }
}

impl WeatherSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_secs)
    }

    /// The most calls a day the panel's live weather can make for `cities`:
    /// one request per city per `cache_secs`, one location each.
    pub fn panel_calls_per_day(&self, cities: usize) -> u64 {
        quota_calls(cities) * 86_400u64.div_ceil(self.cache_secs.max(1))
    }

    pub fn client(&self) -> Result<WeatherClient, WeatherError> {
        // An empty key (compose's `${WEATHER_APIKEY:-}`) is no key.
        let apikey = self
            .apikey
            .clone()
            .filter(|key| !key.expose_secret().is_empty());
        WeatherClient::new(&self.base_url, self.timeout(), apikey)
    }

    /// An http(s) base URL, a timeout, a cache period within a day and a
    /// budget of at least one call.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let base_url = &self.base_url;
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(SettingsError::invalid(
                "weather.base_url",
                base_url,
                "must start with http:// or https://",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(SettingsError::invalid(
                "weather.timeout_secs",
                0,
                "must be at least 1",
            ));
        }
        check_range("weather.cache_secs", self.cache_secs, 1..=86_400)?;
        if self.daily_budget == 0 {
            return Err(SettingsError::invalid(
                "weather.daily_budget",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Loads `T` from defaults, then `file` if given, then the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, SettingsError>
where
    T: DeserializeOwned + Validate,
{
    let mut builder = Config::builder();
    if let Some(path) = file {
        // Checked here so a typo in the path is reported as such, not as a
        // missing key further down.
        if !path.is_file() {
            return Err(SettingsError::File {
                path: path.to_owned(),
                cause: Box::new(config::ConfigError::Message("file not found".into())),
            });
        }
        builder = builder.add_source(File::from(path).format(FileFormat::Toml));
    }
    let settings: T = builder
        .add_source(
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()?
        .try_deserialize()?;
    settings.validate()?;
    Ok(settings)
}

/// How to reach MySQL/MariaDB. The password comes from `password` or, as
/// Docker secrets do, from the file named by `password_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    /// Bound on connecting and on each query, so a dead database is noticed
    /// in seconds rather than at the TCP timeout.
    pub timeout_secs: u64,
    /// PEM file of the certificate authority the server's certificate must
    /// chain to. When set, the connection is TLS and the server is verified
    /// (its certificate must name `host`) before the password is sent; when
    /// unset, the connection is plain, which is only meant for a database on
    /// the same machine.
    pub ca_file: Option<PathBuf>,
    /// Time zone the seed's `mediciones` was written in (an IANA name such
    /// as `America/Bogota`, or `UTC`), read only when `migrate` adopts a
    /// seed table. No default: the seed stored the server's local time
    /// without saying which, and a wrong guess would shift every adopted
    /// row. Empty means unset (compose passes `${VAR:-}`).
    pub seed_time_zone: String,
}

/// Settings key of [`DatabaseSettings::seed_time_zone`] and its environment
/// variable, for messages that tell an operator what to set.
pub const SEED_TIME_ZONE_KEY: &str = "database.seed_time_zone";
pub const SEED_TIME_ZONE_ENV: &str = "APP__DATABASE__SEED_TIME_ZONE";

impl DatabaseSettings {
    /// The seed's time zone, if one is set.
    pub fn seed_time_zone(&self) -> Result<Option<chrono_tz::Tz>, SettingsError> {
        let name = self.seed_time_zone.trim();
        if name.is_empty() {
            return Ok(None);
        }
        name.parse().map(Some).map_err(|_| {
            SettingsError::invalid(
                SEED_TIME_ZONE_KEY,
                &self.seed_time_zone,
                "must be an IANA time zone name such as America/Bogota, or UTC",
            )
        })
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 3306,
            name: "telemetria".into(),
            user: "root".into(),
            password: None,
            password_file: None,
            timeout_secs: 5,
            ca_file: None,
            seed_time_zone: String::new(),
        }
    }
}

impl Validate for DatabaseSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.host.trim().is_empty() {
            return Err(SettingsError::invalid(
                "database.host",
                &self.host,
                "must not be empty",
            ));
        }
        if self.port == 0 {
            return Err(SettingsError::invalid(
                "database.port",
                self.port,
                "must be 1-65535",
            ));
        }
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(SettingsError::invalid(
                "database.name",
                &self.name,
                "must be letters, digits or underscores",
            ));
        }
        if self.timeout_secs == 0 {
            return Err(SettingsError::invalid(
                "database.timeout_secs",
                self.timeout_secs,
                "must be at least 1",
            ));
        }
        if let Some(ca_file) = &self.ca_file {
            if !ca_file.is_file() {
                return Err(SettingsError::invalid(
                    "database.ca_file",
                    ca_file.display(),
                    "no such file: the cloud's credentials job makes it (ca.pem); \
                     on a separate local site, import the site credentials first \
                     (scripts/site-credentials.sh, docs/security.md)",
                ));
            }
        }
        if let (Some(_), Some(file)) = (&self.password, &self.password_file) {
            return Err(SettingsError::invalid(
                "database.password_file",
                file.display(),
                "set either database.password or database.password_file, not both",
            ));
        }
        self.seed_time_zone()?;
        Ok(())
    }
}

/// Logging output: `json` for containers, `pretty` for a terminal.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing` filter directive, e.g. `info` or `info,mysql_async=warn`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            level: "info".into(),
        }
    }
}

/// The small HTTP listener every service has (health, metrics; the panel).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub host: String,
    pub port: u16,
}

impl HttpSettings {
    pub fn with_port(port: u16) -> Self {
        Self {
            host: "0.0.0.0".into(),
            port,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::with_port(8080)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Sample {
        database: DatabaseSettings,
        log: LogSettings,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), SettingsError> {
            self.database.validate()
        }
    }

    fn toml_file(body: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(body.as_bytes()).unwrap();
        file
    }

    // Environment variables are process-wide; these tests use keys no other
    // test sets, through a file only, to stay independent of each other.
    #[test]
    fn a_missing_certificate_authority_is_named_with_where_it_comes_from() {
        let file = toml_file("[database]\nca_file = \"/nonexistent/ca.pem\"\n");
        let error = load::<Sample>(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("database.ca_file"), "{error}");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
        assert!(error.contains("site-credentials.sh"), "{error}");
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let settings: Sample = load(None).unwrap();
        assert_eq!(settings.database.port, 3306);
        assert_eq!(settings.database.name, "telemetria");
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn file_overrides_defaults() {
        let file = toml_file(
            "[database]\nhost = \"db.example\"\nport = 33060\n[log]\nformat = \"pretty\"\n",
        );
        let settings: Sample = load(Some(file.path())).unwrap();
        assert_eq!(settings.database.host, "db.example");
        assert_eq!(settings.database.port, 33060);
        assert_eq!(settings.log.format, LogFormat::Pretty);
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let file = toml_file("[database]\nport = \"abc\"\n");
        let error = load::<Sample>(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("port"), "{error}");
        assert!(error.contains("abc"), "{error}");
    }

    #[test]
    fn unknown_key_is_rejected_by_name() {
        let file = toml_file("[database]\nprot = 1\n");
        let error = load::<Sample>(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("prot"), "{error}");
    }

    #[test]
    fn invalid_value_names_key_and_value() {
        let file = toml_file("[database]\nname = \"tele-metria\"\n");
        let error = load::<Sample>(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("database.name"), "{error}");
        assert!(error.contains("tele-metria"), "{error}");
    }

    #[test]
    fn missing_file_is_reported_with_its_path() {
        let error = load::<Sample>(Some(Path::new("/nonexistent/telemetria.toml")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/telemetria.toml"), "{error}");
    }

    #[test]
    fn the_seed_time_zone_is_unset_by_default_and_a_wrong_name_is_refused_by_name() {
        let settings: Sample = load(None).unwrap();
        assert_eq!(settings.database.seed_time_zone().unwrap(), None);
        let file = toml_file("[database]\nseed_time_zone = \"America/Bogota\"\n");
        let settings: Sample = load(Some(file.path())).unwrap();
        assert_eq!(
            settings.database.seed_time_zone().unwrap(),
            Some(chrono_tz::America::Bogota)
        );
        let file = toml_file("[database]\nseed_time_zone = \"Colombia/Bogota\"\n");
        let error = load::<Sample>(Some(file.path())).unwrap_err().to_string();
        assert!(error.contains("database.seed_time_zone"), "{error}");
        assert!(error.contains("Colombia/Bogota"), "{error}");
    }

    #[test]
    fn password_is_masked_in_debug() {
        let file = toml_file("[database]\npassword = \"hunter2\"\n");
        let settings: Sample = load(Some(file.path())).unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
    }

    #[test]
    fn city_list_errors_name_the_section_key_and_value() {
        let bogota = City::new("Bogotá", 4.711, -74.0721, 14.0);
        let twice = [bogota.clone(), bogota.clone()];
        let error = validate_cities("sensor", &twice).unwrap_err().to_string();
        assert!(error.contains("`sensor.cities.name`") && error.contains("\"Bogotá\""));
        assert!(error.contains("listed twice"), "{error}");

        let off_the_globe = [City::new("Bogotá", 95.0, -74.0721, 14.0)];
        let error = validate_cities("panel", &off_the_globe)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`panel.cities.latitude`") && error.contains("\"95\""),
            "{error}"
        );

        assert!(validate_cities("panel", &[]).is_err());
        assert!(validate_cities("panel", &[bogota]).is_ok());
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct WithWeather {
        weather: WeatherSettings,
    }

    impl Validate for WithWeather {
        fn validate(&self) -> Result<(), SettingsError> {
            self.weather.validate()
        }
    }

    #[test]
    fn the_apikey_is_masked_in_debug() {
        let file = toml_file("[weather]\napikey = \"k3y-s3cret\"\n");
        let settings: WithWeather = load(Some(file.path())).unwrap();
        assert!(settings.weather.apikey.is_some());
        assert!(!format!("{settings:?}").contains("k3y-s3cret"));
    }

    #[test]
    fn the_panels_worst_case_is_one_call_per_city_per_cache_period() {
        let weather = WeatherSettings::default();
        assert_eq!(weather.panel_calls_per_day(7), 2_016);
        let weather = WeatherSettings {
            cache_secs: 7,
            ..weather
        };
        // A day is not a whole number of 7 s periods: rounded up.
        assert_eq!(weather.panel_calls_per_day(1), 12_343);
    }

    #[test]
    fn a_budget_or_cache_period_of_zero_is_refused_by_name() {
        let file = toml_file("[weather]\ndaily_budget = 0\n");
        let error = load::<WithWeather>(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("weather.daily_budget"), "{error}");
        let file = toml_file("[weather]\ncache_secs = 0\n");
        let error = load::<WithWeather>(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("weather.cache_secs"), "{error}");
    }

    #[test]
    fn the_removed_attempts_key_is_refused_by_name() {
        let file = toml_file("[weather]\nattempts = 3\n");
        let error = load::<WithWeather>(Some(file.path()))
            .unwrap_err()
            .to_string();
        assert!(error.contains("attempts"), "{error}");
    }
}
