//! backup-worker: timestamped JSON snapshots of `mediciones`, every interval
//! and on demand, with manifests, retention, verification and restore.

pub mod acl;
pub mod archive;
pub mod chain;
pub mod metrics;
pub mod progress;
pub mod retention;
pub mod settings;
pub mod snapshot;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use chrono::Utc;
use mysql_async::Pool;
use telemetry_core::service::{Listener, StartupError};

use crate::acl::SERVICE_UID;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::snapshot::{Extending, Kind, Manifest, Parent, SnapshotError, TEMPORARY_PREFIX};

/// The backup directory cannot take a snapshot (yet). The cause is in the
/// message, with the fix: this text is both the log line and `/healthz`.
#[derive(Debug, thiserror::Error)]
#[error(
    "backup directory {path} is not writable by uid {uid} ({cause}): run this binary's \
     `prepare-directory` once as root (it grants uid {SERVICE_UID} access), or chown the \
     directory to uid {uid}"
)]
pub struct NotWritable {
    pub path: PathBuf,
    pub uid: u32,
    pub cause: std::io::Error,
}

/// Creates `directory` if needed, then creates and removes a hidden file in
/// it, as a snapshot will. A probe left by a kill in between has the
/// temporary prefix, so the next start removes it with the other leftovers.
pub fn check_writable(directory: &Path) -> Result<(), NotWritable> {
    let probe = directory.join(format!("{TEMPORARY_PREFIX}write-probe"));
    std::fs::create_dir_all(directory)
        .and_then(|()| snapshot::create_file(&probe))
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|cause| NotWritable {
            path: directory.to_owned(),
            // SAFETY: geteuid has no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
            cause,
        })
}

pub struct Application {
    port: u16,
    server: Server,
    settings: Settings,
    pool: Pool,
    metrics: Arc<Metrics>,
}

impl Application {
    /// Binds the health/metrics listener; touches neither the database nor
    /// the backup directory yet, so `/healthz` answers while either is not
    /// usable.
    pub fn build(settings: &Settings) -> Result<Self, StartupError> {
        let listener = Listener::bind(&settings.http)?;
        let port = listener.port();
        let metrics = Arc::new(Metrics::default());
        let server =
            listener.serve(|listener| telemetry_core::ops::serve(listener, metrics.clone()))?;
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

    /// Waits until the backup directory is writable, then takes a snapshot
    /// now and every interval until `shutdown`; a dump in progress at
    /// shutdown is abandoned and its temporary file removed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Self {
            server,
            settings,
            pool,
            metrics,
            ..
        } = self;
        let snapshots = async {
            tokio::pin!(shutdown);
            let directory = &settings.backup.directory;
            if wait_until_writable(directory, &metrics, shutdown.as_mut()).await {
                remove_leftovers(directory);
                let mut ticks = tokio::time::interval(settings.backup.interval());
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = async {
                            ticks.tick().await;
                            snapshot_once(&settings, &pool, &metrics, Due::AsScheduled)
                                .await
                                .ok();
                        } => {}
                    }
                }
            }
            tracing::info!(message = "backup worker stopped");
        };
        let served = telemetry_core::ops::serve_while(server, snapshots).await;
        pool.disconnect().await.ok();
        served
    }
}

/// How often an unwritable backup directory is checked again.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);
/// How often, at most, the worker logs that it is still waiting.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Returns once `directory` is writable (true), or when `shutdown` comes
/// first (false). The one-shot `prepare-directory` container starts next to
/// the worker, not before it (compose 1.29 cannot extend a service that has
/// `depends_on`), so the worker waits for it here instead of failing.
async fn wait_until_writable(
    directory: &Path,
    metrics: &Metrics,
    mut shutdown: Pin<&mut impl Future<Output = ()>>,
) -> bool {
    let mut reported_at: Option<tokio::time::Instant> = None;
    loop {
        let problem = check_writable(directory).err();
        if let Some(problem) = &problem {
            if reported_at.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                tracing::error!(
                    message = "no snapshots until the backup directory is writable",
                    error = %problem,
                    retry_secs = PROBE_EVERY.as_secs(),
                );
                reported_at = Some(tokio::time::Instant::now());
            }
        } else if reported_at.is_some() {
            tracing::info!(
                message = "backup directory is writable now",
                directory = %directory.display()
            );
        }
        match problem {
            Some(problem) => metrics.directory_problem.set(problem.to_string()),
            None => {
                metrics.directory_problem.clear();
                return true;
            }
        }
        tokio::select! {
            () = &mut shutdown => return false,
            () = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// Removes what an interrupted snapshot left. A failure is logged, not
/// fatal: leftovers are hidden files that retention and readers ignore.
fn remove_leftovers(directory: &Path) {
    match retention::remove_leftovers(directory) {
        Ok(0) => {}
        Ok(removed) => tracing::warn!(
            message = "removed leftovers of interrupted snapshots",
            removed
        ),
        Err(error) => tracing::error!(
            message = "cannot remove leftovers of interrupted snapshots",
            directory = %directory.display(),
            %error
        ),
    }
}

/// Which kind of snapshot to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Incremental, extending the newest chain, unless a full one is due.
    AsScheduled,
    /// Full, starting a new chain (the `once --full` command).
    Full,
}

/// One snapshot with room made for it first, then retention; logged and
/// counted. Its span carries the host and directory into every line it
/// logs, failures included.
#[tracing::instrument(
    skip_all,
    fields(
        host = %settings.database.host,
        directory = %settings.backup.directory.display()
    )
)]
pub async fn snapshot_once(
    settings: &Settings,
    pool: &Pool,
    metrics: &Metrics,
    due: Due,
) -> Result<Manifest, SnapshotError> {
    let backup = &settings.backup;
    let directory = &backup.directory;
    let outcome = async {
        let write_error = |error| SnapshotError::Write {
            path: directory.clone(),
            error,
        };
        let stored = retention::catalogue(directory).map_err(write_error)?;
        let base = match due {
            Due::Full => None,
            Due::AsScheduled => base_to_extend(&stored, backup),
        };
        let kind = if base.is_some() {
            Kind::Incremental
        } else {
            Kind::Full
        };
        make_room(&stored, kind, settings, metrics)?;
        snapshot::take(
            pool,
            directory,
            backup.compression,
            settings.database.timeout(),
            base.as_ref().map(|link| Extending {
                parent: Parent {
                    manifest: snapshot::manifest_path(&link.path)
                        .file_name()
                        .expect("a snapshot path has a file name")
                        .to_string_lossy()
                        .into_owned(),
                    sha256: link.manifest_sha256.clone(),
                },
                manifest: &link.manifest,
            }),
        )
        .await
    }
    .await;
    metrics.record(&outcome);
    match &outcome {
        Ok(manifest) => {
            tracing::info!(
                message = "snapshot written",
                file = %manifest.file,
                kind = manifest.kind.as_str(),
                rows = manifest.rows,
                bytes = manifest.bytes,
                duration_ms = manifest.duration_ms,
            );
            apply_retention(settings, metrics);
        }
        Err(error @ SnapshotError::LowSpace { .. }) => {
            tracing::error!(message = "snapshot skipped for lack of space", %error)
        }
        Err(error) => {
            tracing::error!(message = "snapshot failed; retrying at the next interval", %error)
        }
    }
    outcome
}

/// The newest snapshot, when the next one should extend its chain.
fn base_to_extend(
    stored: &[retention::Stored],
    backup: &settings::BackupSettings,
) -> Option<chain::Link> {
    let newest = stored.first().map(|snapshot| snapshot.path.as_path());
    let full_every = chrono::TimeDelta::hours(backup.full_every_hours.into());
    chain::to_extend(newest, Utc::now(), full_every).unwrap_or_else(|error| {
        tracing::warn!(
            message = "the newest snapshot's chain cannot be extended; starting a new chain \
                       with a full snapshot",
            %error
        );
        None
    })
}

/// Prunes old restore points when the next snapshot would leave less than
/// the free-space floor; refuses the snapshot when even that is not enough.
fn make_room(
    stored: &[retention::Stored],
    kind: Kind,
    settings: &Settings,
    metrics: &Metrics,
) -> Result<(), SnapshotError> {
    let directory = &settings.backup.directory;
    let policy = retention::Policy::of(&settings.backup);
    let room = retention::Room {
        free_bytes: retention::free_bytes(directory).map_err(|error| SnapshotError::Write {
            path: directory.clone(),
            error,
        })?,
        needed_bytes: retention::estimate(stored, kind),
    };
    metrics.free_bytes.set(room.free_bytes as f64);
    let plan = retention::plan(stored, Utc::now().naive_utc(), policy, Some(room));
    if plan.fits {
        // Old restore points go only when the room needs them, and only
        // when that is enough: pruning for a snapshot that still would not
        // fit would lose history for nothing.
        if plan.for_room > 0 {
            delete(&plan, metrics, "free space");
        }
        metrics.space_problem.clear();
        return Ok(());
    }
    const MIB: u64 = 1024 * 1024;
    let error = SnapshotError::LowSpace {
        directory: directory.clone(),
        kind: kind.as_str(),
        free_mib: retention::free_bytes(directory).unwrap_or(room.free_bytes) / MIB,
        needed_mib: room.needed_bytes.div_ceil(MIB),
        floor_mib: policy.min_free_bytes / MIB,
    };
    metrics.skipped.increment();
    metrics.space_problem.set(error.to_string());
    Err(error)
}

/// The policy, the size cap and the free-space floor, after a snapshot.
fn apply_retention(settings: &Settings, metrics: &Metrics) {
    let directory = &settings.backup.directory;
    let planned = retention::catalogue(directory).and_then(|stored| {
        let room = retention::Room {
            free_bytes: retention::free_bytes(directory)?,
            needed_bytes: 0,
        };
        metrics.free_bytes.set(room.free_bytes as f64);
        let plan = retention::plan(
            &stored,
            Utc::now().naive_utc(),
            retention::Policy::of(&settings.backup),
            Some(room),
        );
        let kept: u64 = stored
            .iter()
            .filter(|snapshot| !plan.delete.contains(&snapshot.path))
            .map(|snapshot| snapshot.bytes)
            .sum();
        metrics.directory_bytes.set(kept as f64);
        Ok(plan)
    });
    match planned {
        Ok(plan) => delete(&plan, metrics, "retention"),
        Err(error) => tracing::error!(message = "retention failed", %error),
    }
}

/// Deletes what `plan` chose, logging and counting it under `reason`.
fn delete(plan: &retention::Plan, metrics: &Metrics, reason: &'static str) {
    if plan.delete.is_empty() {
        return;
    }
    match retention::apply(plan) {
        Ok(deleted) => {
            metrics
                .pruned_by_policy
                .add((deleted - plan.for_room) as u64);
            metrics.pruned_for_room.add(plan.for_room as u64);
            tracing::info!(
                message = "old snapshots deleted",
                reason,
                deleted,
                for_size_or_free_space = plan.for_room,
            );
        }
        Err(error) => tracing::error!(message = "deleting old snapshots failed", reason, %error),
    }
}
