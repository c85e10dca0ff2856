//! Reading snapshots back: `verify` (checksum, parse, count against the
//! manifest) and `restore` (batched, idempotent inserts). Both stream the
//! file, so memory stays flat whatever its size.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::Pool;
use serde::de::{Deserializer, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::insert_with_ids;
use telemetry_core::Reading;

use crate::settings::Compression;
use crate::snapshot::{manifest_path, Manifest};

/// Rows per INSERT when restoring.
const RESTORE_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The cause is in the message, not a `source` (it would print twice).
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: manifest unreadable: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("{path}: checksum mismatch: manifest says {expected}, file has {actual}")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: not a valid snapshot: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("{path}: manifest lists {expected} rows (ids {expected_ids:?}), file holds {actual} (ids {actual_ids:?})")]
    Count {
        path: PathBuf,
        expected: u64,
        actual: u64,
        expected_ids: (Option<u64>, Option<u64>),
        actual_ids: (Option<u64>, Option<u64>),
    },
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// What a verified snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub manifest: Manifest,
}

/// Checks the file against its manifest: checksum, JSON shape of every row,
/// row count and id range.
#[tracing::instrument(
    skip_all,
    fields(
        file = %path.display(),
        rows = tracing::field::Empty,
        bytes = tracing::field::Empty
    )
)]
pub fn verify(path: &Path) -> Result<Verified, ArchiveError> {
    let manifest = read_manifest(path)?;
    tracing::Span::current().record("bytes", manifest.bytes);
    let actual = sha256_of(path)?;
    if actual != manifest.sha256 {
        return Err(ArchiveError::Checksum {
            path: path.to_owned(),
            expected: manifest.sha256,
            actual,
        });
    }
    let (mut rows, mut min_id, mut max_id) = (0u64, None, None);
    for_each_row(path, manifest.compression, |reading| {
        rows += 1;
        min_id = Some(min_id.map_or(reading.id, |id: u64| id.min(reading.id)));
        max_id = Some(max_id.map_or(reading.id, |id: u64| id.max(reading.id)));
        Ok(())
    })?;
    if rows != manifest.rows || (min_id, max_id) != (manifest.min_id, manifest.max_id) {
        return Err(ArchiveError::Count {
            path: path.to_owned(),
            expected: manifest.rows,
            actual: rows,
            expected_ids: (manifest.min_id, manifest.max_id),
            actual_ids: (min_id, max_id),
        });
    }
    tracing::Span::current().record("rows", rows);
    Ok(Verified { manifest })
}

/// Outcome of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub rows: u64,
    /// Rows that were not already in the table.
    pub inserted: u64,
}

/// Verifies `path`, then inserts its rows into `pool`'s database keeping
/// their ids. Rows already present are skipped, so restoring twice changes
/// nothing. `progress` is called with the rows read so far.
#[tracing::instrument(
    skip_all,
    fields(
        file = %path.display(),
        rows = tracing::field::Empty,
        inserted = tracing::field::Empty
    )
)]
pub async fn restore(
    path: &Path,
    pool: &Pool,
    limit: Duration,
    progress: impl Fn(u64),
) -> Result<Restored, ArchiveError> {
    let verified = verify(path)?;
    let compression = verified.manifest.compression;
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<Reading>>(4);
    let owned_path = path.to_owned();
    // Parsing is blocking I/O: it runs on its own thread and hands batches
    // over a bounded channel, so at most a few batches are in memory.
    let reader = tokio::task::spawn_blocking(move || {
        let mut batch = Vec::with_capacity(RESTORE_BATCH);
        for_each_row(&owned_path, compression, |reading| {
            batch.push(reading);
            if batch.len() == RESTORE_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(RESTORE_BATCH));
                sender
                    .blocking_send(full)
                    .map_err(|_| "restore stopped".to_owned())?;
            }
            Ok(())
        })?;
        if !batch.is_empty() {
            let _ = sender.blocking_send(batch);
        }
        Ok::<_, ArchiveError>(())
    });
    let mut restored = Restored {
        rows: 0,
        inserted: 0,
    };
    while let Some(batch) = batches.recv().await {
        restored.inserted += insert_with_ids(pool, &batch, limit).await?;
        restored.rows += batch.len() as u64;
        progress(restored.rows);
    }
    reader.await.map_err(|error| ArchiveError::Parse {
        path: path.to_owned(),
        detail: error.to_string(),
    })??;
    let span = tracing::Span::current();
    span.record("rows", restored.rows);
    span.record("inserted", restored.inserted);
    Ok(restored)
}

pub fn read_manifest(path: &Path) -> Result<Manifest, ArchiveError> {
    let manifest = manifest_path(path);
    let file = File::open(&manifest).map_err(|error| ArchiveError::Io {
        path: manifest.clone(),
        error,
    })?;
    serde_json::from_reader(BufReader::new(file)).map_err(|error| ArchiveError::Manifest {
        path: manifest,
        detail: error.to_string(),
    })
}

fn sha256_of(path: &Path) -> Result<String, ArchiveError> {
    let io_error = |error| ArchiveError::Io {
        path: path.to_owned(),
        error,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 256 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Calls `each` for every row of the snapshot's JSON array, in file order.
fn for_each_row(
    path: &Path,
    compression: Compression,
    each: impl FnMut(Reading) -> Result<(), String>,
) -> Result<(), ArchiveError> {
    let file = File::open(path).map_err(|error| ArchiveError::Io {
        path: path.to_owned(),
        error,
    })?;
    let input: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(file)),
        Compression::Zstd => {
            Box::new(zstd::Decoder::new(file).map_err(|error| ArchiveError::Io {
                path: path.to_owned(),
                error,
            })?)
        }
    };
    let parse_error = |error: serde_json::Error| ArchiveError::Parse {
        path: path.to_owned(),
        detail: error.to_string(),
    };
    let mut deserializer =
        serde_json::Deserializer::from_reader(BufReader::with_capacity(256 * 1024, input));
    deserializer
        .deserialize_seq(EachRow(each))
        .map_err(parse_error)?;
    deserializer.end().map_err(parse_error)
}

struct EachRow<F>(F);

impl<'de, F: FnMut(Reading) -> Result<(), String>> Visitor<'de> for EachRow<F> {
    type Value = ();

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON array of mediciones rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut rows: A) -> Result<(), A::Error> {
        while let Some(reading) = rows.next_element::<Reading>()? {
            (self.0)(reading).map_err(serde::de::Error::custom)?;
        }
        Ok(())
    }
}
