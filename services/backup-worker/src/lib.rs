//! backup-worker: timestamped JSON snapshots of `mediciones`, every interval
//! and on demand, with manifests, retention, verification and restore.

pub mod archive;
pub mod retention;
pub mod settings;
pub mod snapshot;

use std::future::Future;
use std::net::TcpListener;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use actix_web::dev::Server;
use chrono::Utc;
use mysql_async::Pool;
use telemetry_core::metrics::Exposition;
use telemetry_core::ops::Observable;

use crate::settings::Settings;
use crate::snapshot::{Manifest, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] telemetry_core::SettingsError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("backup directory {path} is not usable: {source}")]
    Directory {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub snapshots: AtomicU64,
    pub failures: AtomicU64,
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub last_duration_ms: AtomicU64,
    pub last_success_unix: AtomicI64,
    pub last_rows: AtomicU64,
}

impl Observable for Metrics {
    fn health(&self) -> serde_json::Value {
        serde_json::json!({
            "status": "ok",
            "last_success_unix": self.last_success_unix.load(Ordering::Relaxed),
            "last_rows": self.last_rows.load(Ordering::Relaxed),
            "failures": self.failures.load(Ordering::Relaxed),
        })
    }

    fn metrics(&self) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = Exposition::default();
        out.counter(
            "backup_snapshots_total",
            "Snapshots written.",
            load(&self.snapshots),
        )
        .counter(
            "backup_failures_total",
            "Snapshots that failed.",
            load(&self.failures),
        )
        .counter(
            "backup_rows_total",
            "Rows written over all snapshots.",
            load(&self.rows),
        )
        .counter(
            "backup_bytes_total",
            "Bytes written over all snapshots.",
            load(&self.bytes),
        )
        .gauge(
            "backup_last_rows",
            "Rows in the last snapshot.",
            load(&self.last_rows) as f64,
        )
        .gauge(
            "backup_last_duration_seconds",
            "Duration of the last snapshot.",
            load(&self.last_duration_ms) as f64 / 1000.0,
        )
        .gauge(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last snapshot written.",
            self.last_success_unix.load(Ordering::Relaxed) as f64,
        );
        out.finish()
    }
}

impl Metrics {
    fn record(&self, outcome: &Result<Manifest, SnapshotError>) {
        match outcome {
            Ok(manifest) => {
                self.snapshots.fetch_add(1, Ordering::Relaxed);
                self.rows.fetch_add(manifest.rows, Ordering::Relaxed);
                self.bytes.fetch_add(manifest.bytes, Ordering::Relaxed);
                self.last_rows.store(manifest.rows, Ordering::Relaxed);
                self.last_duration_ms
                    .store(manifest.duration_ms, Ordering::Relaxed);
                self.last_success_unix
                    .store(Utc::now().timestamp(), Ordering::Relaxed);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    settings: Settings,
    pool: Pool,
    metrics: Arc<Metrics>,
}

impl Application {
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        prepare_directory(settings)?;
        let address = format!("{}:{}", settings.http.host, settings.http.port);
        let listener = TcpListener::bind(&address).map_err(|source| StartupError::Listen {
            address: address.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Listen {
                address: address.clone(),
                source,
            })?
            .port();
        let metrics = Arc::new(Metrics::default());
        let server = telemetry_core::ops::serve(listener, metrics.clone())
            .map_err(|source| StartupError::Listen { address, source })?;
        let pool = settings.database.pool()?;
        tracing::info!(
            message = "backup worker started",
            port,
            directory = %settings.backup.directory.display(),
            interval_secs = settings.backup.interval_secs,
        );
        Ok(Self {
            port,
            server,
            settings: settings.clone(),
            pool,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Takes a snapshot now and every interval until `shutdown`; a dump in
    /// progress at shutdown is abandoned and its temporary file removed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        tokio::pin!(shutdown);
        let mut ticks = tokio::time::interval(self.settings.backup.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = async {
                    ticks.tick().await;
                    snapshot_once(&self.settings, &self.pool, &self.metrics).await.ok();
                } => {}
            }
        }
        tracing::info!(message = "backup worker stopped");
        handle.stop(true).await;
        self.pool.disconnect().await.ok();
        server.await.map_err(std::io::Error::other)?
    }
}

fn prepare_directory(settings: &Settings) -> Result<(), StartupError> {
    let directory = &settings.backup.directory;
    let error = |source| StartupError::Directory {
        path: directory.clone(),
        source,
    };
    std::fs::create_dir_all(directory).map_err(error)?;
    let removed = retention::remove_leftovers(directory).map_err(error)?;
    if removed > 0 {
        tracing::warn!(
            message = "removed leftovers of interrupted snapshots",
            removed
        );
    }
    Ok(())
}

/// One snapshot plus retention, logged and counted.
pub async fn snapshot_once(
    settings: &Settings,
    pool: &Pool,
    metrics: &Metrics,
) -> Result<Manifest, SnapshotError> {
    let backup = &settings.backup;
    let outcome = snapshot::take(
        pool,
        &backup.directory,
        backup.compression,
        settings.database.timeout(),
    )
    .await;
    metrics.record(&outcome);
    match &outcome {
        Ok(manifest) => {
            tracing::info!(
                message = "snapshot written",
                file = %manifest.file,
                rows = manifest.rows,
                bytes = manifest.bytes,
                duration_ms = manifest.duration_ms,
            );
            match retention::apply(
                &backup.directory,
                Utc::now().naive_utc(),
                backup.keep_last,
                backup.keep_daily_days,
            ) {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(message = "old snapshots deleted by retention", deleted)
                }
                Err(error) => tracing::error!(message = "retention failed", %error),
            }
        }
        Err(error) => {
            tracing::error!(message = "snapshot failed; retrying at the next interval", %error)
        }
    }
    outcome
}
