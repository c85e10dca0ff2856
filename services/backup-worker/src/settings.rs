//! The backup worker's configuration: defaults, then a TOML file, then `APP__*`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use telemetry_core::settings::{
    DatabaseSettings, HttpSettings, LogSettings, SettingsError, Validate,
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub backup: BackupSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings {
                user: "backup".into(),
                ..DatabaseSettings::default()
            },
            http: HttpSettings::with_port(9102),
            log: LogSettings::default(),
            backup: BackupSettings::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain `.json`, the seed's format, readable by anything.
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Compression {
    pub fn extension(self) -> &'static str {
        match self {
            Self::None => "json",
            Self::Gzip => "json.gz",
            Self::Zstd => "json.zst",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupSettings {
    pub directory: PathBuf,
    /// Seconds between snapshots (the seed's 600).
    pub interval_secs: u64,
    pub compression: Compression,
    /// A new chain starts with a full snapshot once the current chain's
    /// full snapshot is this old; the snapshots between are incremental.
    pub full_every_hours: u32,
    /// The newest this many snapshots are kept (with the snapshots they
    /// extend).
    pub keep_last: usize,
    /// Beyond those, one restore point a day is kept for this many days.
    pub keep_daily_days: u32,
    /// Total size the snapshots may take, in MiB (0: no cap). The oldest
    /// restore points go first; the newest snapshot's chain always stays.
    pub max_total_mib: u64,
    /// Free space, in MiB, a snapshot must leave on the backup disk. When it
    /// would not, old restore points are pruned; when that is not enough,
    /// the snapshot is skipped.
    pub min_free_mib: u64,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("volumes/backups"),
            interval_secs: 600,
            compression: Compression::None,
            full_every_hours: 24,
            keep_last: 48,
            keep_daily_days: 30,
            max_total_mib: 0,
            min_free_mib: 512,
        }
    }
}

impl BackupSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), SettingsError> {
        self.database.validate()?;
        if self.backup.interval_secs == 0 {
            return Err(SettingsError::invalid(
                "backup.interval_secs",
                0,
                "must be at least 1",
            ));
        }
        if self.backup.full_every_hours == 0 {
            return Err(SettingsError::invalid(
                "backup.full_every_hours",
                0,
                "must be at least 1",
            ));
        }
        if self.backup.keep_last == 0 {
            return Err(SettingsError::invalid(
                "backup.keep_last",
                0,
                "must be at least 1 (the newest snapshot is never deleted)",
            ));
        }
        Ok(())
    }
}
