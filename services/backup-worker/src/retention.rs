//! Which snapshots to keep: the newest `keep_last`, then one a day (the
//! newest of that UTC day) for `keep_daily_days`. Only snapshots with a
//! manifest are considered, and the newest of them is never deleted.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use crate::snapshot::{manifest_path, MANIFEST_SUFFIX, PREFIX, TEMPORARY_PREFIX};

/// Snapshots in `directory` that have a manifest, newest first.
pub fn snapshots(directory: &Path) -> io::Result<Vec<(PathBuf, NaiveDateTime)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.starts_with(PREFIX)
            || name.ends_with(MANIFEST_SUFFIX)
            || !manifest_path(&path).is_file()
        {
            continue;
        }
        let stamp = &name[PREFIX.len()..name.find('Z').unwrap_or(name.len())];
        if let Ok(taken) = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3f") {
            found.push((path, taken));
        }
    }
    found.sort_by_key(|(_, taken)| std::cmp::Reverse(*taken));
    Ok(found)
}

/// Chooses the snapshots to delete; `snapshots` is newest first.
pub fn to_delete(
    snapshots: &[(PathBuf, NaiveDateTime)],
    now: NaiveDateTime,
    keep_last: usize,
    keep_daily_days: u32,
) -> Vec<PathBuf> {
    let oldest_daily = now - TimeDelta::days(keep_daily_days.into());
    let mut days_kept: HashSet<NaiveDate> = HashSet::new();
    let mut doomed = Vec::new();
    for (index, (path, taken)) in snapshots.iter().enumerate() {
        // keep_last is at least 1 (validated), so index 0, the newest, stays.
        let keep = index < keep_last || (*taken >= oldest_daily && days_kept.insert(taken.date()));
        if index < keep_last {
            days_kept.insert(taken.date());
        }
        if !keep {
            doomed.push(path.clone());
        }
    }
    doomed
}

/// Applies the policy; returns how many snapshots were deleted.
pub fn apply(
    directory: &Path,
    now: NaiveDateTime,
    keep_last: usize,
    keep_daily_days: u32,
) -> io::Result<usize> {
    let doomed = to_delete(
        &snapshots(directory)?,
        now,
        keep_last.max(1),
        keep_daily_days,
    );
    for path in &doomed {
        // The file first, the reverse of how a snapshot appears: a crash in
        // between leaves a manifest without its file, which the next start
        // removes, never a file without its manifest.
        fs::remove_file(path)?;
        fs::remove_file(manifest_path(path))?;
    }
    Ok(doomed.len())
}

/// Removes what a process killed mid-snapshot (or mid-retention) leaves:
/// temporary files, and manifests whose snapshot never got renamed into
/// place (or was already deleted). Called at start, before any snapshot.
pub fn remove_leftovers(directory: &Path) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let orphan_manifest = name.starts_with(PREFIX)
            && name
                .strip_suffix(MANIFEST_SUFFIX)
                .is_some_and(|snapshot| !directory.join(snapshot).exists());
        if name.starts_with(TEMPORARY_PREFIX) || orphan_manifest {
            fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.display().to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_and_one_a_day() {
        let list: Vec<_> = [
            "2026-11-23 10:00",
            "2026-11-23 09:50",
            "2026-11-23 09:40",
            "2026-11-22 23:00",
            "2026-11-22 12:00",
            "2026-11-21 12:00",
            "2026-10-01 12:00",
        ]
        .iter()
        .map(|t| (PathBuf::from(*t), at(t)))
        .collect();
        let doomed = to_delete(&list, at("2026-11-23 10:05"), 2, 7);
        assert_eq!(
            names(&doomed),
            ["2026-11-23 09:40", "2026-11-22 12:00", "2026-10-01 12:00"]
        );
    }

    #[test]
    fn leftovers_are_temporary_files_and_manifests_without_their_snapshot() {
        let directory = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            fs::write(directory.path().join(name), b"[]").unwrap();
        };
        file(".tmp-mediciones-20261123T100000.000Z.json");
        file("mediciones-20261123T100000.000Z.json.manifest.json");
        file("mediciones-20261123T095000.000Z.json");
        file("mediciones-20261123T095000.000Z.json.manifest.json");
        file("notes.txt");

        assert_eq!(remove_leftovers(directory.path()).unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "mediciones-20261123T095000.000Z.json",
                "mediciones-20261123T095000.000Z.json.manifest.json",
                "notes.txt"
            ]
        );
    }

    #[test]
    fn never_deletes_the_newest() {
        let list = vec![(PathBuf::from("old"), at("2020-01-01 00:00"))];
        assert!(to_delete(&list, at("2026-11-23 10:00"), 1, 0).is_empty());
    }
}
