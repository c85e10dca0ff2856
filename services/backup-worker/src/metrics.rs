//! What the worker exports on `/metrics` and shows on `/healthz`.

use chrono::Utc;
use telemetry_core::metrics::{Counter, Exposition, Gauge};
use telemetry_core::ops::{Observable, Problem};

use crate::snapshot::{Manifest, SnapshotError};

#[derive(Default)]
pub struct Metrics {
    /// Set while the backup directory is not writable: no snapshot can be
    /// taken, and `/healthz` says why.
    pub directory_problem: Problem,
    pub snapshots: Counter,
    pub failures: Counter,
    pub rows: Counter,
    pub bytes: Counter,
    pub last_duration_secs: Gauge,
    /// Unix time of the last snapshot written.
    pub last_success: Gauge,
    pub last_rows: Gauge,
}

impl Metrics {
    pub fn record(&self, outcome: &Result<Manifest, SnapshotError>) {
        match outcome {
            Ok(manifest) => {
                self.snapshots.increment();
                self.rows.add(manifest.rows);
                self.bytes.add(manifest.bytes);
                self.last_rows.set(manifest.rows as f64);
                self.last_duration_secs
                    .set(manifest.duration_ms as f64 / 1000.0);
                self.last_success.set(Utc::now().timestamp() as f64);
            }
            Err(_) => self.failures.increment(),
        }
    }
}

impl Observable for Metrics {
    fn healthy(&self) -> bool {
        self.directory_problem.get().is_none()
    }

    fn health(&self) -> serde_json::Value {
        let problem = self.directory_problem.get();
        serde_json::json!({
            "status": if problem.is_some() { "waiting for the backup directory" } else { "ok" },
            "directory_error": problem,
            "last_success_unix": self.last_success.get() as i64,
            "last_rows": self.last_rows.get() as u64,
            "failures": self.failures.get(),
        })
    }

    fn metrics(&self) -> String {
        let writable = self.directory_problem.get().is_none();
        let mut out = Exposition::default();
        out.counter(
            "backup_snapshots_total",
            "Snapshots written.",
            &self.snapshots,
        )
        .counter(
            "backup_failures_total",
            "Snapshots that failed.",
            &self.failures,
        )
        .counter(
            "backup_rows_total",
            "Rows written over all snapshots.",
            &self.rows,
        )
        .counter(
            "backup_bytes_total",
            "Bytes written over all snapshots.",
            &self.bytes,
        )
        .gauge(
            "backup_last_rows",
            "Rows in the last snapshot.",
            self.last_rows.get(),
        )
        .gauge(
            "backup_last_duration_seconds",
            "Duration of the last snapshot.",
            self.last_duration_secs.get(),
        )
        .gauge(
            "backup_last_success_timestamp_seconds",
            "Unix time of the last snapshot written.",
            self.last_success.get(),
        )
        .gauge(
            "backup_directory_writable",
            "1 if the backup directory takes snapshots, 0 while the worker waits for it.",
            f64::from(u8::from(writable)),
        );
        out.finish()
    }
}
