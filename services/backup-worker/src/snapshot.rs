//! Taking a snapshot: one consistent read of `mediciones`, streamed row by
//! row into a JSON file, so memory stays flat whatever the table size.
//!
//! A *full* snapshot holds every row. An *incremental* one extends the
//! newest snapshot of a chain: it holds the rows added since (readings are
//! append-only, and ids grow with each insert), and its manifest names its
//! parent's manifest with that manifest's SHA-256, so a chain can be checked
//! link by link ([`crate::chain`]). An insert can commit after a snapshot
//! that already holds a higher id (ids are handed out before commit); such
//! ids, the gaps among the newest [`PENDING_WINDOW`] ids, are listed in the
//! manifest and looked for again by the next incremental.
//!
//! The file is written under a temporary name and fsynced; its manifest is
//! written, fsynced and renamed into place, and only then is the file
//! renamed. A reader never sees a half-written snapshot, and every snapshot
//! it sees has its manifest: a `kill -9` between the two renames leaves a
//! manifest without its file, which the next start removes
//! ([`crate::retention::remove_leftovers`]).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use flate2::write::GzEncoder;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use telemetry_core::database::{record_host, with_timeout, DatabaseError};
use telemetry_core::reading::COLUMNS;
use telemetry_core::Reading;

use crate::settings::Compression;

/// File names are `mediciones-<UTC timestamp>.<extension>`; they sort by time.
pub const PREFIX: &str = "mediciones-";
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
const TIMESTAMP: &str = "%Y%m%dT%H%M%S%.3fZ";

/// The sidecar written next to each snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub file: String,
    /// Absent in manifests written before incrementals existed: full.
    #[serde(default)]
    pub kind: Kind,
    /// The snapshot an incremental extends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    pub rows: u64,
    pub min_id: Option<u64>,
    pub max_id: Option<u64>,
    /// SHA-256 of the file as stored (after compression).
    pub sha256: String,
    pub bytes: u64,
    pub compression: Compression,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
    /// Every id up to this one is in the chain ending here, except
    /// `pending_ids`.
    #[serde(default)]
    pub through_id: u64,
    /// Ids at most [`PENDING_WINDOW`] below `through_id` that the chain
    /// does not hold: never used (an ignored insert), or not yet committed
    /// when this snapshot was read. The next incremental reads them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_ids: Vec<u64>,
}

impl Manifest {
    /// The id after which the next incremental starts. Manifests from before
    /// incrementals have no `through_id`: their `max_id` is it.
    pub fn through(&self) -> u64 {
        self.through_id.max(self.max_id.unwrap_or(0))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Full,
    Incremental,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Incremental => "incremental",
        }
    }
}

/// An incremental's link to the snapshot it extends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// File name of the parent's manifest, in the same directory.
    pub manifest: String,
    /// SHA-256 of that manifest's bytes (which hold the parent's own
    /// checksum, and its parent's: one broken link breaks the chain).
    pub sha256: String,
}

/// How far below the newest id a snapshot looks for ids it did not see
/// (see the module documentation). An insert still uncommitted after this
/// many later ids were handed out is only in the next full snapshot.
pub const PENDING_WINDOW: u64 = 1_000;

/// What an incremental snapshot extends: the newest snapshot of a chain.
pub struct Extending<'a> {
    pub parent: Parent,
    pub manifest: &'a Manifest,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("a row of mediciones could not be read: {0}")]
    Row(String),
    /// The cause is in the message, not a `source` (it would print twice).
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error(
        "skipped: {directory} has {free_mib} MiB free, and a {kind} snapshot (about {needed_mib} \
         MiB) must leave backup.min_free_mib = {floor_mib} MiB; pruning old restore points \
         cannot free enough without deleting the newest snapshot's chain. Free space on that \
         disk or lower backup.min_free_mib"
    )]
    LowSpace {
        directory: PathBuf,
        kind: &'static str,
        free_mib: u64,
        needed_mib: u64,
        floor_mib: u64,
    },
}

pub fn manifest_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(MANIFEST_SUFFIX);
    PathBuf::from(name)
}

/// Dumps `mediciones` into a new snapshot in `directory`: every row, or,
/// `extending` a chain, the rows added since its newest snapshot. A table
/// whose ids went back below the chain's (recreated, restored elsewhere)
/// gets a full snapshot instead.
#[tracing::instrument(
    skip_all,
    fields(
        directory = %directory.display(),
        host = tracing::field::Empty,
        file = tracing::field::Empty,
        rows = tracing::field::Empty,
        bytes = tracing::field::Empty
    )
)]
pub async fn take(
    pool: &Pool,
    directory: &Path,
    compression: Compression,
    limit: Duration,
    extending: Option<Extending<'_>>,
) -> Result<Manifest, SnapshotError> {
    let started_at = Utc::now();
    let clock = Instant::now();

    // Connect before creating any file: with the database down, no file.
    let mut conn = with_timeout(limit, pool.get_conn()).await?;
    record_host(&conn);
    begin(&mut conn, limit).await?;
    let extending = match extending {
        Some(base) => {
            let newest: Option<u64> =
                with_timeout(limit, conn.query_first("SELECT MAX(id) FROM mediciones"))
                    .await?
                    .flatten();
            if newest.unwrap_or(0) < base.manifest.through() {
                tracing::warn!(
                    message = "the table's ids went back below the chain's: taking a full \
                               snapshot instead (was the table recreated?)",
                    newest_id = newest,
                    chain_through_id = base.manifest.through(),
                );
                None
            } else {
                Some(base)
            }
        }
        None => None,
    };
    let kind = if extending.is_some() {
        Kind::Incremental
    } else {
        Kind::Full
    };
    let name = snapshot_name(started_at, kind, compression);
    let path = directory.join(&name);
    tracing::Span::current().record("file", name.as_str());
    let write_error = |error| SnapshotError::Write {
        path: path.clone(),
        error,
    };
    let (after_id, parent_pending) = match &extending {
        Some(base) => (base.manifest.through(), base.manifest.pending_ids.clone()),
        None => (0, Vec::new()),
    };
    let mut seen = SeenIds::new(after_id, parent_pending);

    let temporary = TemporaryFile::create(directory, &name).map_err(write_error)?;
    let file = temporary.file().map_err(write_error)?;
    // Rows are decoded and serialised here, and the bytes compressed, hashed
    // and written on a blocking thread, so that on two cores the two halves
    // overlap. Only byte buffers cross (rows are freed where they were
    // made), and at most a few of them: memory stays flat.
    let (buffers, receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let writer = tokio::task::spawn_blocking(move || write_file(file, compression, receiver));
    let (mut rows, mut min_id, mut max_id) = (0u64, None, None);
    let mut buffer = Vec::with_capacity(BUFFER_BYTES + 4096);
    buffer.extend_from_slice(b"[\n");
    {
        let (query, params) = match &extending {
            Some(_) => incremental_query(after_id, &seen.parent_pending),
            None => (rows_query(), Vec::new()),
        };
        let mut result = with_timeout(limit, conn.exec_iter(query, params)).await?;
        // A server that sends no row for a whole `limit` fails the dump
        // (noticed within twice that). One timer checks for progress every
        // `limit`: a timeout per row read the clock per row, a visible share
        // of the CPU.
        let check = tokio::time::sleep(limit);
        tokio::pin!(check);
        let mut rows_at_check = 0;
        loop {
            let row = tokio::select! {
                biased;
                row = result.next() => row.map_err(DatabaseError::from)?,
                () = &mut check => {
                    if rows == rows_at_check {
                        return Err(DatabaseError::Timeout(limit).into());
                    }
                    rows_at_check = rows;
                    check.as_mut().reset(tokio::time::Instant::now() + limit);
                    continue;
                }
            };
            let Some(row) = row else { break };
            let reading: Reading = mysql_async::from_row_opt(row)
                .map_err(|error| SnapshotError::Row(format!("{:?}", error.0)))?;
            if rows > 0 {
                buffer.extend_from_slice(b",\n");
            }
            reading.write_json(&mut buffer);
            min_id.get_or_insert(reading.id);
            max_id = Some(reading.id);
            seen.insert(reading.id);
            rows += 1;
            if buffer.len() >= BUFFER_BYTES {
                let full = std::mem::replace(&mut buffer, Vec::with_capacity(BUFFER_BYTES + 4096));
                // The writer stopped early: its error is what to report.
                if buffers.send(full).await.is_err() {
                    break;
                }
            }
        }
    }
    buffer.extend_from_slice(b"\n]\n");
    let _ = buffers.send(buffer).await;
    // Closing the channel tells the writer the file is complete (or, if it
    // stopped early, lets its error through).
    drop(buffers);
    let (sha256, bytes) = writer
        .await
        .map_err(|error| write_error(io::Error::other(error)))?
        .map_err(write_error)?;
    with_timeout(limit, conn.query_drop("COMMIT")).await?;
    drop(conn);
    let span = tracing::Span::current();
    span.record("rows", rows);
    span.record("bytes", bytes);

    let through_id = after_id.max(max_id.unwrap_or(0));
    let manifest = Manifest {
        file: name,
        kind,
        parent: extending.map(|base| base.parent),
        rows,
        min_id,
        max_id,
        sha256,
        bytes,
        compression,
        started_at,
        duration_ms: clock.elapsed().as_millis() as u64,
        through_id,
        pending_ids: seen.pending(through_id),
    };
    let manifest_file = manifest_path(&path);
    let manifest_error = |error| SnapshotError::Write {
        path: manifest_file.clone(),
        error,
    };
    let manifest_name = manifest_file
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let manifest_temporary =
        TemporaryFile::create(directory, &manifest_name).map_err(manifest_error)?;
    let mut file = manifest_temporary.file().map_err(manifest_error)?;
    serde_json::to_writer_pretty(&mut file, &manifest)
        .map_err(|error| manifest_error(error.into()))?;
    file.write_all(b"\n")
        .and_then(|()| file.sync_all())
        .map_err(manifest_error)?;
    manifest_temporary
        .persist(&manifest_file)
        .map_err(manifest_error)?;
    if let Err(source) = temporary.persist(&path) {
        let _ = fs::remove_file(&manifest_file);
        return Err(write_error(source));
    }
    sync_directory(directory).map_err(write_error)?;
    Ok(manifest)
}

/// Starts the one transaction snapshot a dump reads: rows inserted while we
/// dump neither appear half nor shift the result.
pub async fn begin(conn: &mut Conn, limit: Duration) -> Result<(), DatabaseError> {
    with_timeout(
        limit,
        conn.query_drop("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
    )
    .await?;
    with_timeout(
        limit,
        conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"),
    )
    .await
}

/// What [`take`] reads inside that transaction: every row, in id order.
pub fn rows_query() -> String {
    format!("SELECT {COLUMNS} FROM mediciones ORDER BY id")
}

/// What an incremental reads: the rows after `after_id`, and those of the
/// parent's pending ids that are there now, in id order. Both are ranges of
/// the primary key, so the read costs the new rows, not the table.
pub fn incremental_query(after_id: u64, pending: &[u64]) -> (String, Vec<mysql_async::Value>) {
    let mut sql = format!("SELECT {COLUMNS} FROM mediciones WHERE id > ?");
    let mut params = vec![mysql_async::Value::from(after_id)];
    if !pending.is_empty() {
        sql.push_str(" OR id IN (");
        sql.push_str(&vec!["?"; pending.len()].join(","));
        sql.push(')');
        params.extend(pending.iter().map(|&id| mysql_async::Value::from(id)));
    }
    sql.push_str(" ORDER BY id");
    (sql, params)
}

/// `mediciones-<UTC time>[-incremental].<extension>`: names sort by time, and
/// a reader sees which files stand alone.
fn snapshot_name(started_at: DateTime<Utc>, kind: Kind, compression: Compression) -> String {
    let suffix = match kind {
        Kind::Full => "",
        Kind::Incremental => INCREMENTAL_SUFFIX,
    };
    format!(
        "{PREFIX}{}{suffix}.{}",
        started_at.format(TIMESTAMP),
        compression.extension()
    )
}

pub const INCREMENTAL_SUFFIX: &str = "-incremental";

/// The ids a snapshot read among those it is answerable for: the parent's
/// pending ones, and those after the parent's `through_id` within the
/// window below the newest. What it did not see becomes its pending list.
struct SeenIds {
    after_id: u64,
    parent_pending: Vec<u64>,
    /// Ids read after `after_id`, the newest [`PENDING_WINDOW`] of them at
    /// most (ids arrive in ascending order): memory stays flat.
    recent: std::collections::VecDeque<u64>,
    found_pending: std::collections::HashSet<u64>,
}

impl SeenIds {
    fn new(after_id: u64, parent_pending: Vec<u64>) -> Self {
        Self {
            after_id,
            parent_pending,
            recent: std::collections::VecDeque::new(),
            found_pending: std::collections::HashSet::new(),
        }
    }

    fn insert(&mut self, id: u64) {
        if id <= self.after_id {
            self.found_pending.insert(id);
            return;
        }
        self.recent.push_back(id);
        while self
            .recent
            .front()
            .is_some_and(|&oldest| oldest + PENDING_WINDOW <= id)
        {
            self.recent.pop_front();
        }
    }

    /// The ids above `through_id - PENDING_WINDOW` that the chain still
    /// does not hold, ascending.
    fn pending(&self, through_id: u64) -> Vec<u64> {
        let floor = through_id.saturating_sub(PENDING_WINDOW);
        let recent: std::collections::HashSet<u64> = self.recent.iter().copied().collect();
        let mut pending: Vec<u64> = self
            .parent_pending
            .iter()
            .copied()
            .filter(|id| *id > floor && !self.found_pending.contains(id))
            .collect();
        pending
            .extend((self.after_id.max(floor) + 1..=through_id).filter(|id| !recent.contains(id)));
        pending.sort_unstable();
        pending
    }
}

/// How much serialised JSON is handed to the writing thread at a time.
const BUFFER_BYTES: usize = 256 * 1024;

/// The writing half of [`take`]: every buffer received, through the chosen
/// compression, into the file, fsynced. Returns the SHA-256 and size of what
/// was written.
fn write_file(
    file: File,
    compression: Compression,
    mut buffers: tokio::sync::mpsc::Receiver<Vec<u8>>,
) -> io::Result<(String, u64)> {
    let mut out = Encoder::new(compression, file)?;
    while let Some(buffer) = buffers.blocking_recv() {
        out.write_all(&buffer)?;
    }
    let (file, sha256, bytes) = out.finish()?.finish();
    file.sync_all()?;
    Ok((sha256, bytes))
}

/// Mode of every file the worker writes: the owner (the service) reads and
/// writes, the group class reads, others nothing. In a directory with the
/// default ACL of `prepare-directory`, the group bits are the mask, which
/// lets the directory's owner read the file; otherwise the umask applies.
pub const FILE_MODE: u32 = 0o640;

/// Creates (or truncates) `path` with [`FILE_MODE`].
pub fn create_file(path: &Path) -> io::Result<File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// A file under a hidden temporary name, removed on drop unless persisted:
/// an error, a full disk or a shutdown mid-dump leaves nothing behind.
struct TemporaryFile {
    path: PathBuf,
    persisted: bool,
}

pub const TEMPORARY_PREFIX: &str = ".tmp-";

impl TemporaryFile {
    fn create(directory: &Path, name: &str) -> io::Result<Self> {
        let path = directory.join(format!("{TEMPORARY_PREFIX}{name}"));
        create_file(&path)?;
        Ok(Self {
            path,
            persisted: false,
        })
    }

    fn file(&self) -> io::Result<File> {
        fs::OpenOptions::new().write(true).open(&self.path)
    }

    fn persist(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

/// Counts and hashes the bytes that reach the file.
struct Hashing {
    file: File,
    hasher: Sha256,
    bytes: u64,
}

impl Hashing {
    fn finish(self) -> (File, String, u64) {
        (self.file, hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

enum Encoder {
    Plain(Hashing),
    Gzip(GzEncoder<Hashing>),
    Zstd(zstd::Encoder<'static, Hashing>),
}

impl Encoder {
    fn new(compression: Compression, file: File) -> io::Result<Self> {
        let hashing = Hashing {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        };
        Ok(match compression {
            Compression::None => Self::Plain(hashing),
            Compression::Gzip => {
                Self::Gzip(GzEncoder::new(hashing, flate2::Compression::default()))
            }
            Compression::Zstd => Self::Zstd(zstd::Encoder::new(hashing, 3)?),
        })
    }

    fn finish(self) -> io::Result<Hashing> {
        match self {
            Self::Plain(hashing) => Ok(hashing),
            Self::Gzip(encoder) => encoder.finish(),
            Self::Zstd(encoder) => encoder.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(writer) => writer.write(buf),
            Self::Gzip(writer) => writer.write(buf),
            Self::Zstd(writer) => writer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(writer) => writer.flush(),
            Self::Gzip(writer) => writer.flush(),
            Self::Zstd(writer) => writer.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn pending_ids_are_the_gaps_near_the_top_and_the_parents_still_missing() {
        // Parent covered through 5000 with 4990 and 4995 pending; this
        // incremental read 4995 (committed late), 5001..=5010 but not 5004.
        let mut seen = SeenIds::new(5000, vec![4990, 4995]);
        seen.insert(4995);
        for id in (5001..=5010).filter(|id| *id != 5004) {
            seen.insert(id);
        }
        assert_eq!(seen.pending(5010), [4990, 5004]);
        // Far above, the parent's pending and old gaps fall out of the window.
        let mut seen = SeenIds::new(5000, vec![4990]);
        for id in (5001..=7000).filter(|id| *id != 5004 && *id != 6500) {
            seen.insert(id);
        }
        assert_eq!(seen.pending(7000), [6500]);
        // A full snapshot: gaps among the newest ids only.
        let mut seen = SeenIds::new(0, Vec::new());
        for id in [1, 2, 3, 7] {
            seen.insert(id);
        }
        assert_eq!(seen.pending(7), [4, 5, 6]);
    }

    #[test]
    fn the_incremental_query_reads_ranges_of_the_primary_key() {
        let (sql, params) = incremental_query(10, &[3, 4]);
        assert!(
            sql.ends_with("FROM mediciones WHERE id > ? OR id IN (?,?) ORDER BY id"),
            "{sql}"
        );
        assert_eq!(params.len(), 3);
        let (sql, params) = incremental_query(10, &[]);
        assert!(sql.ends_with("WHERE id > ? ORDER BY id"), "{sql}");
        assert_eq!(params.len(), 1);
    }

    /// This process's umask, which narrows the mode of files created where
    /// no default ACL applies.
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find_map(|line| line.strip_prefix("Umask:"))
            .expect("Umask in /proc/self/status");
        u32::from_str_radix(line.trim(), 8).unwrap()
    }

    #[test]
    fn snapshot_files_are_created_0640_narrowed_by_the_umask() {
        let directory = tempfile::tempdir().unwrap();
        let temporary = TemporaryFile::create(directory.path(), "mediciones-x.json").unwrap();
        let mode = fs::metadata(&temporary.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE & !umask(), "{mode:o}");
        assert_eq!(mode & 0o007, 0, "never readable by others: {mode:o}");
    }
}
