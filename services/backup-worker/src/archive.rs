//! Reading snapshots back: `verify` (every link of a chain, then each file:
//! checksum, parse, count against its manifest) and `restore` (a whole
//! chain, in batched, idempotent inserts that account for every row). Both
//! stream the files, so memory stays flat whatever their size.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDateTime;
use mysql_async::Pool;
use serde::de::{Deserializer, SeqAccess, Visitor};
use sha2::{Digest, Sha256};
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::{find_by_ids, ids_at_city_and_tick, insert_batch, insert_with_ids};
use telemetry_core::{NewReading, Reading};

use crate::chain::{self, ChainError, Link};
use crate::settings::Compression;
use crate::snapshot::Manifest;

/// Rows per INSERT when restoring.
const RESTORE_BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The cause is in the message, not a `source` (it would print twice).
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("{path}: link {position} of {length} of its chain: {cause}")]
    Link {
        path: PathBuf,
        position: usize,
        length: usize,
        cause: Box<ArchiveError>,
    },
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
    #[error(
        "snapshot row {id} ({city}, {time}) was inserted under a new id but is not in the \
         table afterwards: deleted meanwhile, or its values do not fit the table's columns"
    )]
    Vanished {
        id: u64,
        city: String,
        time: NaiveDateTime,
    },
    #[error(transparent)]
    Database(#[from] DatabaseError),
}

/// A verified chain: its full snapshot first, the one asked for last.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub chain: Vec<Link>,
}

impl Verified {
    /// The manifest of the snapshot asked for.
    pub fn manifest(&self) -> &Manifest {
        &self.chain.last().expect("a chain has a snapshot").manifest
    }

    /// Rows over the whole chain.
    pub fn rows(&self) -> u64 {
        self.chain.iter().map(|link| link.manifest.rows).sum()
    }
}

/// Checks the chain ending at `path`: every link (each parent there, its
/// manifest unchanged), then every file against its manifest, oldest first.
/// The error names the first broken link.
pub fn verify(path: &Path) -> Result<Verified, ArchiveError> {
    let chain = chain::chain(path)?;
    let length = chain.len();
    for (index, link) in chain.iter().enumerate() {
        verify_file(&link.path, &link.manifest).map_err(|cause| match length {
            1 => cause,
            _ => ArchiveError::Link {
                path: path.to_owned(),
                position: index + 1,
                length,
                cause: Box::new(cause),
            },
        })?;
    }
    Ok(Verified { chain })
}

/// Checks one file against its manifest: checksum, JSON shape of every row,
/// row count and id range.
#[tracing::instrument(
    skip_all,
    fields(
        file = %path.display(),
        rows = tracing::field::Empty,
        bytes = tracing::field::Empty
    )
)]
fn verify_file(path: &Path, manifest: &Manifest) -> Result<(), ArchiveError> {
    let manifest = manifest.clone();
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
    Ok(())
}

/// How many conflicts a [`Restored`] keeps for its report; every one is
/// logged, but memory stays flat however many there are.
pub const REPORTED_CONFLICTS: usize = 20;

/// What a restore did with the snapshot's rows. Every row ends up in exactly
/// one of the counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Restored {
    pub rows: u64,
    /// Inserted under its snapshot id.
    pub inserted: u64,
    /// Its id holds this very reading already (every column equal).
    pub already_present: u64,
    /// Its (city, time) holds this very reading under another id: the
    /// reading is there, e.g. put back under a new id by an earlier restore.
    pub same_reading_other_id: u64,
    /// Its id holds a different reading, so it went in under a new id.
    pub new_id: u64,
    /// Its (city, time) holds different values: left out, as the table
    /// keeps one reading per city and tick and we never overwrite one.
    pub not_restored: u64,
    /// The first [`REPORTED_CONFLICTS`] rows counted in `new_id` or
    /// `not_restored`, in file order (snapshots are in id order).
    pub conflicts: Vec<Conflict>,
}

/// The `restore` command's exit status when some row went in under a new
/// id or was left out (0: every row is in the table as the snapshot has it;
/// 1: the restore failed).
pub const NOT_RESTORED_AS_IT_WAS: u8 = 3;

impl Restored {
    /// Whether every row is in the table with its snapshot id and values.
    pub fn restored_as_it_was(&self) -> bool {
        self.new_id == 0 && self.not_restored == 0
    }

    /// The counts, then each kept conflict on a line of its own.
    pub fn report(&self, file: &Path) -> String {
        use std::fmt::Write;
        let mut report = format!(
            "{}: {} rows: {} inserted, {} already present, {} same reading under another id, \
             {} under a new id, {} not restored\n",
            file.display(),
            self.rows,
            self.inserted,
            self.already_present,
            self.same_reading_other_id,
            self.new_id,
            self.not_restored
        );
        let conflicts = self.new_id + self.not_restored;
        if conflicts == 0 {
            return report;
        }
        let listed = if conflicts > self.conflicts.len() as u64 {
            format!(
                "the first {} of {conflicts} (all of them are in the log)",
                self.conflicts.len()
            )
        } else {
            format!("all {conflicts}")
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            report,
            "not restored as it was (exit status {NOT_RESTORED_AS_IT_WAS}); {listed}:"
        );
        for conflict in &self.conflicts {
            let row = &conflict.row;
            let _ = write!(
                report,
                "  id {} ({}, {}) -> ",
                row.id, row.reading.ciudad, row.reading.fecha_registro
            );
            let _ = match conflict.resolution {
                Resolution::NewId(new_id) => writeln!(report, "new id {new_id}"),
                Resolution::NotRestored { holder } => writeln!(
                    report,
                    "not restored: (city, time) holds different values (id {holder})"
                ),
            };
        }
        report
    }
}

/// A snapshot row that could not go back as it was.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The row as the snapshot holds it.
    pub row: Reading,
    pub resolution: Resolution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Inserted under this new id.
    NewId(u64),
    /// Not inserted: the stored row with this id holds the row's (city,
    /// time) with other values.
    NotRestored { holder: u64 },
}

/// Verifies the chain ending at `path` (nothing is inserted when any link
/// is broken), then inserts its files' rows into `pool`'s database, full
/// snapshot first, keeping their ids, and accounts for every row that did
/// not go in: see [`Restored`]. Restoring twice inserts nothing the second
/// time. `progress` is called with the rows handled so far.
#[tracing::instrument(
    skip_all,
    fields(
        file = %path.display(),
        snapshots = tracing::field::Empty,
        rows = tracing::field::Empty,
        inserted = tracing::field::Empty,
        new_id = tracing::field::Empty,
        not_restored = tracing::field::Empty
    )
)]
pub async fn restore(
    path: &Path,
    pool: &Pool,
    limit: Duration,
    mut progress: impl FnMut(u64),
) -> Result<Restored, ArchiveError> {
    let verified = verify(path)?;
    let mut restored = Restored::default();
    for link in &verified.chain {
        restore_file(link, pool, limit, &mut restored, &mut progress).await?;
    }
    let span = tracing::Span::current();
    span.record("snapshots", verified.chain.len());
    span.record("rows", restored.rows);
    span.record("inserted", restored.inserted);
    span.record("new_id", restored.new_id);
    span.record("not_restored", restored.not_restored);
    Ok(restored)
}

/// Restores one verified file of a chain into `restored`'s counts.
async fn restore_file(
    link: &Link,
    pool: &Pool,
    limit: Duration,
    restored: &mut Restored,
    progress: &mut impl FnMut(u64),
) -> Result<(), ArchiveError> {
    let path = link.path.as_path();
    let compression = link.manifest.compression;
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
    while let Some(batch) = batches.recv().await {
        restore_batch(pool, batch, limit, restored).await?;
        progress(restored.rows);
    }
    reader.await.map_err(|error| ArchiveError::Parse {
        path: path.to_owned(),
        detail: error.to_string(),
    })??;
    Ok(())
}

/// Inserts one batch keeping ids, then finds out why each row that did not
/// go in did not, and puts back under a new id those whose id alone is taken.
async fn restore_batch(
    pool: &Pool,
    batch: Vec<Reading>,
    limit: Duration,
    restored: &mut Restored,
) -> Result<(), ArchiveError> {
    restored.rows += batch.len() as u64;
    let inserted = insert_with_ids(pool, &batch, limit).await?;
    restored.inserted += inserted;
    if inserted == batch.len() as u64 {
        return Ok(());
    }
    // The rows that went in now hold their own id with their own values, so
    // they classify as "already present" here; subtracting the batch's
    // inserted count from that tally keeps each row in one count. (Saturating:
    // a row deleted by someone else between the two statements must not wrap
    // the count around.)
    let ids: Vec<u64> = batch.iter().map(|row| row.id).collect();
    let by_id: HashMap<u64, Reading> = find_by_ids(pool, &ids, limit)
        .await?
        .into_iter()
        .map(|stored| (stored.id, stored))
        .collect();
    let mut present_under_own_id = 0u64;
    let mut unresolved = Vec::new();
    for row in batch {
        match by_id.get(&row.id) {
            Some(stored) if stored.reading == row.reading => present_under_own_id += 1,
            _ => unresolved.push(row),
        }
    }
    restored.already_present += present_under_own_id.saturating_sub(inserted);

    let holders = holders_of_city_and_tick(pool, &unresolved, limit).await?;
    let mut conflicts = Vec::new();
    let mut to_reinsert = Vec::new();
    for (row, holder) in unresolved.into_iter().zip(holders) {
        match holder {
            Some(stored) if stored.reading == row.reading => restored.same_reading_other_id += 1,
            Some(stored) => conflicts.push(Conflict {
                row,
                resolution: Resolution::NotRestored { holder: stored.id },
            }),
            None => to_reinsert.push(row),
        }
    }

    if !to_reinsert.is_empty() {
        let readings: Vec<NewReading> = to_reinsert.iter().map(|row| row.reading.clone()).collect();
        insert_batch(pool, &readings, limit).await?;
        // Read back rather than trust the insert: a reading the sensor stored
        // at the same (city, time) meanwhile would have made ours a no-op.
        let holders = holders_of_city_and_tick(pool, &to_reinsert, limit).await?;
        for (row, holder) in to_reinsert.into_iter().zip(holders) {
            let resolution = match holder {
                Some(stored) if stored.reading == row.reading => Resolution::NewId(stored.id),
                Some(stored) => Resolution::NotRestored { holder: stored.id },
                None => {
                    return Err(ArchiveError::Vanished {
                        id: row.id,
                        city: row.reading.ciudad,
                        time: row.reading.fecha_registro,
                    })
                }
            };
            conflicts.push(Conflict { row, resolution });
        }
    }
    // Snapshots are dumped in id order: so the report reads in file order.
    conflicts.sort_by_key(|conflict| conflict.row.id);
    for conflict in conflicts {
        record_conflict(restored, conflict);
    }
    Ok(())
}

/// For each row, the stored reading at its (city, time), if any.
async fn holders_of_city_and_tick(
    pool: &Pool,
    rows: &[Reading],
    limit: Duration,
) -> Result<Vec<Option<Reading>>, ArchiveError> {
    let keys: Vec<(&str, NaiveDateTime)> = rows
        .iter()
        .map(|row| (row.reading.ciudad.as_str(), row.reading.fecha_registro))
        .collect();
    let positions = ids_at_city_and_tick(pool, &keys, limit).await?;
    let ids: Vec<u64> = positions.iter().map(|&(_, id)| id).collect();
    let mut stored: HashMap<u64, Reading> = find_by_ids(pool, &ids, limit)
        .await?
        .into_iter()
        .map(|reading| (reading.id, reading))
        .collect();
    let mut holders = vec![None; rows.len()];
    for (position, id) in positions {
        holders[position] = stored.remove(&id);
    }
    Ok(holders)
}

fn record_conflict(restored: &mut Restored, conflict: Conflict) {
    let (row, reading) = (&conflict.row, &conflict.row.reading);
    match conflict.resolution {
        Resolution::NewId(new_id) => {
            restored.new_id += 1;
            tracing::info!(
                message = "restored under a new id: its id holds another reading",
                snapshot_id = row.id,
                new_id,
                city = %reading.ciudad,
                time = %reading.fecha_registro,
            );
        }
        Resolution::NotRestored { holder } => {
            restored.not_restored += 1;
            tracing::warn!(
                message = "not restored: its city and time hold different values",
                snapshot_id = row.id,
                holder_id = holder,
                city = %reading.ciudad,
                time = %reading.fecha_registro,
            );
        }
    }
    if restored.conflicts.len() < REPORTED_CONFLICTS {
        restored.conflicts.push(conflict);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use telemetry_core::Source;

    fn row(id: u64) -> Reading {
        Reading {
            id,
            reading: NewReading {
                ciudad: "Cali".into(),
                temperatura: Some(21.5),
                humedad: Some(80),
                fecha_registro: chrono::NaiveDate::from_ymd_opt(2026, 11, 23)
                    .unwrap()
                    .and_hms_opt(0, 0, 15)
                    .unwrap(),
                source: Source::OpenMeteo,
                observed_at: None,
                apparent_temperature: None,
                weather_code: None,
                wind_speed: None,
            },
        }
    }

    #[test]
    fn the_report_lists_the_kept_conflicts_and_says_when_there_are_more() {
        let restored = Restored {
            rows: 100,
            inserted: 70,
            already_present: 4,
            same_reading_other_id: 1,
            new_id: 24,
            not_restored: 1,
            conflicts: (1..=REPORTED_CONFLICTS as u64)
                .map(|id| Conflict {
                    row: row(id),
                    resolution: if id == 1 {
                        Resolution::NotRestored { holder: 7 }
                    } else {
                        Resolution::NewId(100 + id)
                    },
                })
                .collect(),
        };
        assert!(!restored.restored_as_it_was());
        let report = restored.report(Path::new("/backups/s.json"));
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines.len(), 2 + REPORTED_CONFLICTS, "{report}");
        assert_eq!(
            lines[0],
            "/backups/s.json: 100 rows: 70 inserted, 4 already present, 1 same reading under \
             another id, 24 under a new id, 1 not restored"
        );
        assert_eq!(
            lines[1],
            "not restored as it was (exit status 3); the first 20 of 25 (all of them are in \
             the log):"
        );
        assert_eq!(
            lines[2],
            "  id 1 (Cali, 2026-11-23 00:00:15) -> not restored: (city, time) holds different \
             values (id 7)"
        );
        assert_eq!(lines[3], "  id 2 (Cali, 2026-11-23 00:00:15) -> new id 102");
    }

    #[test]
    fn a_restore_as_it_was_reports_only_the_counts() {
        let restored = Restored {
            rows: 3,
            already_present: 2,
            same_reading_other_id: 1,
            ..Restored::default()
        };
        assert!(restored.restored_as_it_was());
        assert_eq!(restored.report(Path::new("s.json")).lines().count(), 1);
    }
}
