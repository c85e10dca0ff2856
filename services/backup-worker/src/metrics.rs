//! What the worker exports on `/metrics` and shows on `/healthz`.

use chrono::Utc;
use telemetry_core::metrics::{Counter, Exposition, Gauge};
use telemetry_core::ops::{Observable, Problem};

use crate::snapshot::{Kind, Manifest, SnapshotError};

#[derive(Default)]
pub struct Metrics {
    /// Set while the backup directory is not writable: no snapshot can be
    /// taken, and `/healthz` says why.
    pub directory_problem: Problem,
    /// Set while snapshots are skipped for lack of space.
    pub space_problem: Problem,
    pub snapshots: Counter,
    pub full_snapshots: Counter,
    /// Snapshots skipped because the free-space floor could not be kept.
    pub skipped: Counter,
    pub pruned_by_policy: Counter,
    /// Deleted only to meet the size cap or the free-space floor.
    pub pruned_for_room: Counter,
    /// Bytes the kept snapshots take, after the last retention pass.
    pub directory_bytes: Gauge,
    pub free_bytes: Gauge,
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
                if manifest.kind == Kind::Full {
                    self.full_snapshots.increment();
                }
                self.rows.add(manifest.rows);
                self.bytes.add(manifest.bytes);
                self.last_rows.set(manifest.rows as f64);
                self.last_duration_secs
                    .set(manifest.duration_ms as f64 / 1000.0);
                self.last_success.set(Utc::now().timestamp() as f64);
            }
            Err(SnapshotError::LowSpace { .. }) => {}
            Err(_) => self.failures.increment(),
        }
    }
}

impl Observable for Metrics {
    fn healthy(&self) -> bool {
        self.directory_problem.get().is_none() && self.space_problem.get().is_none()
    }

    fn health(&self) -> serde_json::Value {
        let problem = self.directory_problem.get();
        let space = self.space_problem.get();
        let status = match (&problem, &space) {
            (Some(_), _) => "waiting for the backup directory",
            (None, Some(_)) => "skipping snapshots: not enough free space",
            (None, None) => "ok",
        };
        serde_json::json!({
            "status": status,
            "directory_error": problem,
            "space_error": space,
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
            "backup_full_snapshots_total",
            "Full snapshots written (each starts a chain; the others are incremental).",
            &self.full_snapshots,
        )
        .counter(
            "backup_skipped_total",
            "Snapshots skipped because they would have left less than backup.min_free_mib free.",
            &self.skipped,
        )
        .counter(
            "backup_pruned_total",
            "Snapshots deleted by the keep_last / keep_daily_days policy.",
            &self.pruned_by_policy,
        )
        .counter(
            "backup_pruned_for_room_total",
            "Snapshots deleted only to meet backup.max_total_mib or backup.min_free_mib.",
            &self.pruned_for_room,
        )
        .gauge(
            "backup_stored_bytes",
            "Bytes the kept snapshots and manifests take.",
            self.directory_bytes.get(),
        )
        .gauge(
            "backup_free_bytes",
            "Free bytes on the backup directory's file system, at the last check.",
            self.free_bytes.get(),
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
