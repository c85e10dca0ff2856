//! Taking a snapshot: one consistent read of `mediciones`, streamed row by
//! row into a JSON file, so memory stays flat whatever the table size.
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
    pub rows: u64,
    pub min_id: Option<u64>,
    pub max_id: Option<u64>,
    /// SHA-256 of the file as stored (after compression).
    pub sha256: String,
    pub bytes: u64,
    pub compression: Compression,
    pub started_at: DateTime<Utc>,
    pub duration_ms: u64,
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
}

pub fn manifest_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(MANIFEST_SUFFIX);
    PathBuf::from(name)
}

/// Dumps `mediciones` into a new snapshot in `directory`.
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
) -> Result<Manifest, SnapshotError> {
    let started_at = Utc::now();
    let clock = Instant::now();
    let name = format!(
        "{PREFIX}{}.{}",
        started_at.format(TIMESTAMP),
        compression.extension()
    );
    let path = directory.join(&name);
    tracing::Span::current().record("file", name.as_str());
    let write_error = |error| SnapshotError::Write {
        path: path.clone(),
        error,
    };

    // Connect before creating any file: with the database down, no file.
    let mut conn = with_timeout(limit, pool.get_conn()).await?;
    record_host(&conn);
    begin(&mut conn, limit).await?;

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
        let mut result = with_timeout(limit, conn.exec_iter(rows_query(), ())).await?;
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

    let manifest = Manifest {
        file: name,
        rows,
        min_id,
        max_id,
        sha256,
        bytes,
        compression,
        started_at,
        duration_ms: clock.elapsed().as_millis() as u64,
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
