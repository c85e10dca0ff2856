//! Durable store-and-forward spool: readings that could not be written to the
//! database wait here, one JSON line each, until they can.
//!
//! Every append is fsynced before it counts as spooled, so a `kill -9` loses
//! nothing acknowledged; a line torn by a crash mid-write is cut off when the
//! spool is reopened. Replay may repeat rows already stored (a crash between
//! insert and clear): the table's uniqueness key makes that a no-op.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mysql_async::Pool;
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::insert_batch;
use telemetry_core::NewReading;

const FILE_NAME: &str = "readings.jsonl";

/// Rows per replayed `INSERT` (9 placeholders a row, far under the
/// protocol's 65,535).
pub const REPLAY_BATCH: usize = 1000;

/// What a replay stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub readings: u64,
    /// Lines that did not parse (never written by us whole): counted as
    /// dropped by the caller.
    pub skipped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The cause is in the message, not a `source` (it would print twice).
    #[error("spool {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("spool is full ({used} of {max} bytes): {rejected} readings not spooled")]
    Full {
        used: u64,
        max: u64,
        rejected: usize,
    },
}

pub struct Spool {
    path: PathBuf,
    file: File,
    len: u64,
    max_bytes: u64,
}

impl Spool {
    pub fn open(directory: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let path = directory.join(FILE_NAME);
        let io_error = |error| SpoolError::Io {
            path: path.clone(),
            error,
        };
        fs::create_dir_all(directory).map_err(io_error)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error)?;
        let len = cut_torn_tail(&mut file).map_err(io_error)?;
        Ok(Self {
            path,
            file,
            len,
            max_bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> u64 {
        self.len
    }

    /// Appends and fsyncs. All or nothing: if the batch does not fit, none
    /// of it is written, so the spool never holds part of a tick.
    pub fn append(&mut self, readings: &[NewReading]) -> Result<(), SpoolError> {
        let mut buffer = Vec::with_capacity(readings.len() * 256);
        for reading in readings {
            serde_json::to_writer(&mut buffer, reading).expect("a reading always serialises");
            buffer.push(b'\n');
        }
        if self.len + buffer.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                used: self.len,
                max: self.max_bytes,
                rejected: readings.len(),
            });
        }
        let result = self
            .file
            .write_all(&buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(error) = result {
            // A short write (disk full) must not leave half a line behind.
            let _ = self.file.set_len(self.len);
            return Err(SpoolError::Io {
                path: self.path.clone(),
                error,
            });
        }
        self.len += buffer.len() as u64;
        Ok(())
    }

    /// Reads the waiting readings in the order they were spooled, in batches.
    /// Lines that do not parse are counted in `skipped` and left out.
    pub fn batches(&self, batch_size: usize) -> Result<Batches, SpoolError> {
        let file = File::open(&self.path).map_err(|error| SpoolError::Io {
            path: self.path.clone(),
            error,
        })?;
        Ok(Batches {
            lines: BufReader::new(file).lines(),
            batch_size,
            skipped: 0,
        })
    }

    /// Writes the spool into the database in order, `batch_size` rows per
    /// multi-row `INSERT`. The next batch is read and parsed on a blocking
    /// thread while the current one is in flight (the two take comparable
    /// time). Stops at the first failure; the spool itself is left as it is,
    /// for the caller to [`clear`](Self::clear) once everything is stored.
    #[tracing::instrument(
        skip_all,
        fields(
            file = %self.path.display(),
            bytes = self.len,
            readings = tracing::field::Empty,
            skipped = tracing::field::Empty
        )
    )]
    pub async fn replay(
        &self,
        pool: &Pool,
        batch_size: usize,
        limit: Duration,
    ) -> Result<Replayed, ReplayError> {
        let path = self.path.clone();
        let mut batches = self.batches(batch_size)?;
        // Capacity 1: one batch parsed ahead, never the whole spool in memory.
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let reader = tokio::task::spawn_blocking(move || {
            for batch in batches.by_ref() {
                let failed = batch.is_err();
                // A closed channel means the replay stopped: stop reading.
                if sender.blocking_send(batch).is_err() || failed {
                    break;
                }
            }
            batches.skipped
        });
        let mut readings = 0;
        while let Some(batch) = receiver.recv().await {
            let batch = batch.map_err(|error| SpoolError::Io {
                path: path.clone(),
                error,
            })?;
            insert_batch(pool, &batch, limit).await?;
            readings += batch.len() as u64;
        }
        let skipped = reader.await.map_err(|error| SpoolError::Io {
            path,
            error: io::Error::other(error),
        })?;
        let span = tracing::Span::current();
        span.record("readings", readings);
        span.record("skipped", skipped);
        Ok(Replayed { readings, skipped })
    }

    /// Empties the spool once everything in it is stored.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        let io_error = |error| SpoolError::Io {
            path: self.path.clone(),
            error,
        };
        self.file.set_len(0).map_err(io_error)?;
        self.file.sync_data().map_err(io_error)?;
        self.len = 0;
        Ok(())
    }
}

pub struct Batches {
    lines: io::Lines<BufReader<File>>,
    batch_size: usize,
    pub skipped: u64,
}

impl Iterator for Batches {
    type Item = io::Result<Vec<NewReading>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut batch = Vec::with_capacity(self.batch_size);
        while batch.len() < self.batch_size {
            match self.lines.next() {
                None => break,
                Some(Err(error)) => return Some(Err(error)),
                Some(Ok(line)) => match serde_json::from_str(&line) {
                    Ok(reading) => batch.push(reading),
                    Err(_) => self.skipped += 1,
                },
            }
        }
        (!batch.is_empty()).then_some(Ok(batch))
    }
}

/// Truncates the file after its last complete line; returns the new length.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut content = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    io::Read::read_to_end(file, &mut content)?;
    let keep = content
        .iter()
        .rposition(|&byte| byte == b'\n')
        .map_or(0, |i| i + 1) as u64;
    if keep < len {
        tracing::warn!(
            message = "spool ended in a torn line (crash during a write); cutting it off",
            kept_bytes = keep,
            cut_bytes = len - keep
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry_core::time::now_utc;
    use telemetry_core::Source;

    fn reading(city: &str) -> NewReading {
        NewReading {
            ciudad: city.into(),
            temperatura: Some(20.0),
            humedad: Some(50),
            fecha_registro: now_utc(),
            source: Source::Simulated,
            observed_at: None,
            apparent_temperature: None,
            weather_code: None,
            wind_speed: None,
        }
    }

    fn all(spool: &Spool) -> Vec<NewReading> {
        spool.batches(2).unwrap().flat_map(Result::unwrap).collect()
    }

    #[test]
    fn keeps_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a"), reading("b")]).unwrap();
        spool.append(&[reading("c")]).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let cities: Vec<_> = all(&spool).into_iter().map(|r| r.ciudad).collect();
        assert_eq!(cities, ["a", "b", "c"]);
    }

    #[test]
    fn torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a")]).unwrap();
        let good_len = spool.bytes();
        drop(spool);
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap();
        file.write_all(b"{\"ciudad\":\"tor").unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.bytes(), good_len);
        assert_eq!(all(&spool).len(), 1);
    }

    #[test]
    fn full_spool_rejects_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 4096).unwrap();
        let many: Vec<_> = (0..40).map(|i| reading(&format!("city-{i}"))).collect();
        let error = spool.append(&many).unwrap_err();
        assert!(
            matches!(error, SpoolError::Full { rejected: 40, .. }),
            "{error}"
        );
        assert!(spool.is_empty());
        spool.append(&many[..2]).unwrap();
        assert_eq!(all(&spool).len(), 2);
    }

    #[test]
    fn clear_empties() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a")]).unwrap();
        spool.clear().unwrap();
        assert!(spool.is_empty());
        assert!(all(&spool).is_empty());
    }
}
