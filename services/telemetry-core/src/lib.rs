//! Shared library of the telemetria services.

pub mod database;
pub mod metrics;
pub mod migration;
pub mod observability;
pub mod ops;
pub mod reading;
pub mod service;
pub mod settings;
pub mod time;
pub mod weather;

pub use database::DatabaseError;
pub use reading::{NewReading, Reading, Source};
pub use settings::{
    DatabaseSettings, HttpSettings, LogSettings, SettingsError, Validate, WeatherSettings,
};

#[cfg(feature = "testing")]
pub mod testing;
