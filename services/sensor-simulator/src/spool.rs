//! Durable store-and-forward spool: readings that could not be written to the
//! database wait here, one JSON line each, until they can.
//!
//! Two files: `readings.jsonl`, appended and fsynced before a reading counts
//! as spooled (a `kill -9` loses nothing acknowledged; a line torn by a crash
//! mid-write is cut off when the spool is reopened), and `readings.stored`,
//! the checkpoint: how many bytes of it are already in the database. A replay
//! starts at the checkpoint and moves it after every stored batch, so a link
//! that drops every few seconds still drains a long spool, a little more on
//! every attempt, instead of starting over. When the checkpoint reaches the
//! end, both files are emptied.
//!
//! A replay may repeat one batch (a crash or a dropped link between the
//! insert's commit and the checkpoint's write): the table's uniqueness key
//! makes that a no-op, so nothing is ever written twice.
//!
//! The tick loop appends while the replay runs beside it: the two share the
//! spool through `&self`, and the lock is held only for file operations,
//! never across a database call.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use mysql_async::Pool;
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::insert_batch;
use telemetry_core::NewReading;

const FILE_NAME: &str = "readings.jsonl";
/// The checkpoint's file, beside the spool's.
pub const CHECKPOINT_FILE: &str = "readings.stored";
/// The checkpoint is one fixed-width decimal line, rewritten in place: a
/// write this small never spans two disk sectors, so it is never torn.
const CHECKPOINT_WIDTH: usize = 20;

/// Rows per replayed `INSERT` (9 placeholders a row, far under the
/// protocol's 65,535).
pub const REPLAY_BATCH: usize = 1000;

/// What a replay stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    checkpoint_path: PathBuf,
    max_bytes: u64,
    files: Mutex<Files>,
}

struct Files {
    /// Opened for appending.
    readings: File,
    len: u64,
    checkpoint: File,
    /// Bytes of `readings` already in the database: always at a line start.
    stored: u64,
}

/// Readings read from the spool, and where they end in it.
pub struct Batch {
    pub readings: Vec<NewReading>,
    end: u64,
}

impl Spool {
    pub fn open(directory: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        let path = directory.join(FILE_NAME);
        let checkpoint_path = directory.join(CHECKPOINT_FILE);
        let io_error = |path: &Path| {
            let path = path.to_owned();
            move |error| SpoolError::Io { path, error }
        };
        fs::create_dir_all(directory).map_err(io_error(directory))?;
        let mut readings = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        let len = cut_torn_tail(&mut readings).map_err(io_error(&path))?;
        let mut checkpoint = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&checkpoint_path)
            .map_err(io_error(&checkpoint_path))?;
        let stored =
            read_checkpoint(&mut checkpoint, &readings, len).map_err(io_error(&checkpoint_path))?;
        Ok(Self {
            path,
            checkpoint_path,
            max_bytes,
            files: Mutex::new(Files {
                readings,
                len,
                checkpoint,
                stored,
            }),
        })
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        // A panic while holding the lock leaves the files as the last
        // completed operation left them: still consistent.
        self.files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Nothing waits to be stored.
    pub fn is_empty(&self) -> bool {
        self.bytes() == 0
    }

    /// Bytes of readings that wait to be stored.
    pub fn bytes(&self) -> u64 {
        let files = self.files();
        files.len - files.stored
    }

    /// Appends and fsyncs. All or nothing: if the batch does not fit, none
    /// of it is written, so the spool never holds part of a tick.
    pub fn append(&self, readings: &[NewReading]) -> Result<(), SpoolError> {
        let mut buffer = Vec::with_capacity(readings.len() * 256);
        for reading in readings {
            serde_json::to_writer(&mut buffer, reading).expect("a reading always serialises");
            buffer.push(b'\n');
        }
        let mut files = self.files();
        let used = files.len - files.stored;
        if used + buffer.len() as u64 > self.max_bytes {
            return Err(SpoolError::Full {
                used,
                max: self.max_bytes,
                rejected: readings.len(),
            });
        }
        let result = files
            .readings
            .write_all(&buffer)
            .and_then(|()| files.readings.sync_data());
        if let Err(error) = result {
            // A short write (disk full) must not leave half a line behind.
            let len = files.len;
            let _ = files.readings.set_len(len);
            return Err(self.io_error(error));
        }
        files.len += buffer.len() as u64;
        Ok(())
    }

    /// Reads the readings waiting now (from the checkpoint to the current
    /// end), in the order they were spooled, in batches. Lines that do not
    /// parse are counted in `skipped` and left out.
    pub fn batches(&self, batch_size: usize) -> Result<Batches, SpoolError> {
        let (start, end) = {
            let files = self.files();
            (files.stored, files.len)
        };
        let mut file = File::open(&self.path).map_err(|error| self.io_error(error))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|error| self.io_error(error))?;
        Ok(Batches {
            reader: BufReader::with_capacity(1 << 16, file.take(end - start)),
            offset: start,
            batch_size,
            skipped: 0,
        })
    }

    /// Writes what waits into the database in order, `batch_size` rows per
    /// multi-row `INSERT`, moving the checkpoint after each batch and
    /// calling `stored` with it. The next batch is read and parsed on a
    /// blocking thread while the current one is in flight (the two take
    /// comparable time). Stops at the first failure, keeping what was
    /// stored before it. Readings appended meanwhile wait for the next
    /// replay; [`Self::clear_if_drained`] empties the files once nothing
    /// waits.
    #[tracing::instrument(
        skip_all,
        fields(
            file = %self.path.display(),
            bytes = self.bytes(),
            readings = tracing::field::Empty,
            skipped = tracing::field::Empty
        )
    )]
    pub async fn replay(
        &self,
        pool: &Pool,
        batch_size: usize,
        limit: Duration,
        mut stored: impl FnMut(&[NewReading]),
    ) -> Result<Replayed, ReplayError> {
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
            let batch = batch.map_err(|error| self.io_error(error))?;
            insert_batch(pool, &batch.readings, limit).await?;
            self.mark_stored(batch.end)?;
            readings += batch.readings.len() as u64;
            stored(&batch.readings);
        }
        let skipped = reader
            .await
            .map_err(|error| self.io_error(io::Error::other(error)))?;
        let span = tracing::Span::current();
        span.record("readings", readings);
        span.record("skipped", skipped);
        Ok(Replayed { readings, skipped })
    }

    /// Moves the checkpoint: everything before `end` is in the database.
    fn mark_stored(&self, end: u64) -> Result<(), SpoolError> {
        let mut files = self.files();
        write_checkpoint(&files.checkpoint, end).map_err(|error| SpoolError::Io {
            path: self.checkpoint_path.clone(),
            error,
        })?;
        files.stored = end;
        Ok(())
    }

    /// Empties both files if everything in the spool is stored; true if it
    /// did. Under the lock, so no append slips in between the check and the
    /// truncation.
    pub fn clear_if_drained(&self) -> Result<bool, SpoolError> {
        let mut files = self.files();
        if files.stored < files.len {
            return Ok(false);
        }
        if files.len == 0 {
            return Ok(true);
        }
        // The readings first: a crash between the two leaves a checkpoint
        // past the end, which `open` recognises and resets.
        files
            .readings
            .set_len(0)
            .and_then(|()| files.readings.sync_data())
            .map_err(|error| self.io_error(error))?;
        files.len = 0;
        write_checkpoint(&files.checkpoint, 0).map_err(|error| SpoolError::Io {
            path: self.checkpoint_path.clone(),
            error,
        })?;
        files.stored = 0;
        Ok(true)
    }

    fn io_error(&self, error: io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.path.clone(),
            error,
        }
    }
}

pub struct Batches {
    reader: BufReader<io::Take<File>>,
    /// Where the next line starts in the spool file.
    offset: u64,
    batch_size: usize,
    pub skipped: u64,
}

impl Iterator for Batches {
    type Item = io::Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut readings = Vec::with_capacity(self.batch_size);
        let mut line = Vec::with_capacity(256);
        while readings.len() < self.batch_size {
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Err(error) => return Some(Err(error)),
                Ok(0) => break,
                Ok(read) => {
                    self.offset += read as u64;
                    match serde_json::from_slice(&line) {
                        Ok(reading) => readings.push(reading),
                        Err(_) => self.skipped += 1,
                    }
                }
            }
        }
        (!readings.is_empty()).then_some(Ok(Batch {
            readings,
            end: self.offset,
        }))
    }
}

/// Truncates the file after its last complete line; returns the new length.
/// Reads backwards from the end, one block at a time: a long spool is not
/// read whole to find its last line.
fn cut_torn_tail(file: &mut File) -> io::Result<u64> {
    const BLOCK: u64 = 1 << 16;
    let len = file.metadata()?.len();
    let mut block = vec![0; BLOCK as usize];
    let mut end = len;
    let keep = loop {
        if end == 0 {
            break 0;
        }
        let start = end.saturating_sub(BLOCK);
        let chunk = &mut block[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(newline) = chunk.iter().rposition(|&byte| byte == b'\n') {
            break start + newline as u64 + 1;
        }
        end = start;
    };
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

/// The checkpoint as the last run left it, if it is one this spool can
/// trust: a number, at most the spool's length, at the start of a line.
/// Anything else means replaying from the start, which costs time but never
/// a row (the uniqueness key drops what is already stored).
fn read_checkpoint(checkpoint: &mut File, readings: &File, len: u64) -> io::Result<u64> {
    let mut text = String::new();
    checkpoint.read_to_string(&mut text)?;
    if text.is_empty() {
        return Ok(0);
    }
    let line_start = |offset: u64| -> io::Result<bool> {
        if offset == 0 {
            return Ok(true);
        }
        let mut byte = [0];
        readings.read_exact_at(&mut byte, offset - 1)?;
        Ok(byte[0] == b'\n')
    };
    match text.trim().parse::<u64>() {
        Ok(stored) if stored <= len && line_start(stored)? => Ok(stored),
        Ok(stored) if stored > len && len == 0 => Ok(0),
        _ => {
            tracing::warn!(
                message = "spool checkpoint does not fit the spool; replaying it from the start (rows already stored are skipped)",
                checkpoint = text.trim(),
                spool_bytes = len
            );
            Ok(0)
        }
    }
}

fn write_checkpoint(checkpoint: &File, stored: u64) -> io::Result<()> {
    let line = format!("{stored:0width$}\n", width = CHECKPOINT_WIDTH - 1);
    checkpoint.write_all_at(line.as_bytes(), 0)?;
    checkpoint.sync_data()
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

    fn waiting(spool: &Spool) -> Vec<String> {
        spool
            .batches(2)
            .unwrap()
            .flat_map(|batch| batch.unwrap().readings)
            .map(|reading| reading.ciudad)
            .collect()
    }

    /// Leaves `torn` at the end of the spool, as a crash during a write does.
    fn crash_mid_write(directory: &Path, torn: &[u8]) {
        OpenOptions::new()
            .append(true)
            .open(directory.join(FILE_NAME))
            .unwrap()
            .write_all(torn)
            .unwrap();
    }

    /// What a replay does after each stored batch, without a database.
    fn store_first_batch(spool: &Spool, batch_size: usize) {
        let batch = spool.batches(batch_size).unwrap().next().unwrap().unwrap();
        spool.mark_stored(batch.end).unwrap();
    }

    #[test]
    fn keeps_order_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a"), reading("b")]).unwrap();
        spool.append(&[reading("c")]).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(waiting(&spool), ["a", "b", "c"]);
    }

    #[test]
    fn a_replay_resumes_at_the_checkpoint_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append(&[reading("a"), reading("b"), reading("c")])
            .unwrap();
        store_first_batch(&spool, 2);
        assert_eq!(waiting(&spool), ["c"]);
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(waiting(&spool), ["c"]);
        assert!(!spool.clear_if_drained().unwrap());
        store_first_batch(&spool, 2);
        assert!(spool.is_empty());
        assert!(spool.clear_if_drained().unwrap());
        assert_eq!(fs::metadata(spool.path()).unwrap().len(), 0);
        spool.append(&[reading("d")]).unwrap();
        drop(spool);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(waiting(&spool), ["d"]);
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_the_spool_means_replaying_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a"), reading("b")]).unwrap();
        drop(spool);
        for checkpoint in ["7\n", "999999\n", "garbage"] {
            fs::write(dir.path().join(CHECKPOINT_FILE), checkpoint).unwrap();
            let spool = Spool::open(dir.path(), 1 << 20).unwrap();
            assert_eq!(waiting(&spool), ["a", "b"], "checkpoint {checkpoint:?}");
        }
    }

    #[test]
    fn torn_last_line_is_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a")]).unwrap();
        let good_len = spool.bytes();
        drop(spool);
        crash_mid_write(dir.path(), b"{\"ciudad\":\"tor");
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.bytes(), good_len);
        assert_eq!(waiting(&spool), ["a"]);
    }

    #[test]
    fn a_torn_line_longer_than_the_read_block_is_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[reading("a")]).unwrap();
        let good_len = spool.bytes();
        drop(spool);
        crash_mid_write(dir.path(), &vec![b'x'; 200_000]);
        let spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(spool.bytes(), good_len);
    }

    #[test]
    fn full_spool_rejects_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), 4096).unwrap();
        let many: Vec<_> = (0..40).map(|i| reading(&format!("city-{i}"))).collect();
        let error = spool.append(&many).unwrap_err();
        assert!(
            matches!(error, SpoolError::Full { rejected: 40, .. }),
            "{error}"
        );
        assert!(spool.is_empty());
        spool.append(&many[..2]).unwrap();
        assert_eq!(waiting(&spool).len(), 2);
    }
}
