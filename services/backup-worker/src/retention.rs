//! Which snapshots to keep, within what room.
//!
//! The unit is a *restore point*: a snapshot with the snapshots it extends
//! (its chain up to it). The policy picks restore points: the newest
//! `keep_last` snapshots, and for each UTC day of the last
//! `keep_daily_days` one point (the day's newest full snapshot, which needs
//! nothing else, or else the day's newest snapshot). Every snapshot a picked
//! one extends is kept too; the rest is deleted. A size cap and the
//! free-space floor then drop the oldest picked points until both hold. The
//! newest snapshot, with its chain, is never deleted.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};

use crate::chain::{self, Link};
use crate::settings::BackupSettings;
use crate::snapshot::{manifest_path, Kind, MANIFEST_SUFFIX, PREFIX, TEMPORARY_PREFIX};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub keep_last: usize,
    pub keep_daily_days: u32,
    pub max_total_bytes: Option<u64>,
    pub min_free_bytes: u64,
}

impl Policy {
    /// The policy the settings configure (sizes there are in MiB).
    pub fn of(backup: &BackupSettings) -> Self {
        const MIB: u64 = 1024 * 1024;
        Self {
            keep_last: backup.keep_last,
            keep_daily_days: backup.keep_daily_days,
            max_total_bytes: (backup.max_total_mib > 0).then(|| backup.max_total_mib * MIB),
            min_free_bytes: backup.min_free_mib * MIB,
        }
    }
}

/// A snapshot as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub path: PathBuf,
    pub taken: NaiveDateTime,
    pub kind: Kind,
    /// The snapshot it extends.
    pub parent: Option<PathBuf>,
    /// Its file and its manifest.
    pub bytes: u64,
}

/// The snapshots in `directory`, newest first. One whose manifest cannot be
/// read counts as standing alone: it keeps no other snapshot.
pub fn catalogue(directory: &Path) -> io::Result<Vec<Stored>> {
    let mut stored = Vec::new();
    for listed in chain::list(directory)? {
        let size = |path: &Path| fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let bytes = size(&listed.path) + size(&manifest_path(&listed.path));
        let (kind, parent) = match Link::read(&listed.path) {
            Ok(link) => (
                link.manifest.kind,
                link.manifest.parent.and_then(|parent| {
                    let name = parent.manifest.strip_suffix(MANIFEST_SUFFIX)?.to_owned();
                    Some(directory.join(name))
                }),
            ),
            Err(_) => (Kind::Full, None),
        };
        stored.push(Stored {
            path: listed.path,
            taken: listed.taken,
            kind,
            parent,
            bytes,
        });
    }
    Ok(stored)
}

/// The disk around the snapshots: what is free, and what the next snapshot
/// is expected to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub free_bytes: u64,
    pub needed_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    /// Newest first: an incremental goes before the snapshot it extends, so
    /// an interrupted deletion never leaves a kept snapshot without parent.
    pub delete: Vec<PathBuf>,
    /// How many of `delete` only the size cap or the free-space floor
    /// chose (the policy alone would have kept them).
    pub for_room: usize,
    /// Whether the cap and the floor hold once `delete` is done.
    pub fits: bool,
}

/// Chooses what to delete; `stored` is newest first, as [`catalogue`] gives.
pub fn plan(stored: &[Stored], now: NaiveDateTime, policy: Policy, room: Option<Room>) -> Plan {
    if stored.is_empty() {
        return Plan {
            fits: room
                .is_none_or(|room| room.free_bytes >= room.needed_bytes + policy.min_free_bytes),
            ..Plan::default()
        };
    }
    let mut picked = picks(stored, now, policy);
    let total: u64 = stored.iter().map(|s| s.bytes).sum();
    let fits = |kept_bytes: u64| {
        policy.max_total_bytes.is_none_or(|cap| kept_bytes <= cap)
            && room.is_none_or(|room| {
                room.free_bytes + (total - kept_bytes) >= room.needed_bytes + policy.min_free_bytes
            })
    };
    let by_policy = closure(stored, &picked);
    let mut kept = by_policy.clone();
    while !fits(kept_bytes(stored, &kept)) && picked.len() > 1 {
        picked.pop();
        kept = closure(stored, &picked);
    }
    let delete: Vec<PathBuf> = (0..stored.len())
        .filter(|index| !kept.contains(index))
        .map(|index| stored[index].path.clone())
        .collect();
    Plan {
        for_room: by_policy.len() - kept.len(),
        fits: fits(kept_bytes(stored, &kept)),
        delete,
    }
}

/// The restore points the policy picks, as indexes, newest first; the
/// newest snapshot (index 0) is always one.
fn picks(stored: &[Stored], now: NaiveDateTime, policy: Policy) -> Vec<usize> {
    let mut picked: Vec<usize> = (0..stored.len().min(policy.keep_last.max(1))).collect();
    let oldest_daily = now - TimeDelta::days(policy.keep_daily_days.into());
    let mut days: HashMap<NaiveDate, usize> = HashMap::new();
    for (index, snapshot) in stored.iter().enumerate() {
        if snapshot.taken < oldest_daily {
            continue;
        }
        // Newest first: the first seen of a day is its newest; a full one
        // seen later replaces a non-full one.
        days.entry(snapshot.taken.date())
            .and_modify(|chosen| {
                if stored[*chosen].kind != Kind::Full && snapshot.kind == Kind::Full {
                    *chosen = index;
                }
            })
            .or_insert(index);
    }
    picked.extend(days.into_values());
    picked.sort_unstable();
    picked.dedup();
    picked
}

/// The picked snapshots and every snapshot they extend, as indexes.
fn closure(stored: &[Stored], picked: &[usize]) -> HashSet<usize> {
    let by_path: HashMap<&Path, usize> = stored
        .iter()
        .enumerate()
        .map(|(index, s)| (s.path.as_path(), index))
        .collect();
    let mut kept = HashSet::new();
    for &start in picked {
        let mut next = Some(start);
        while let Some(index) = next {
            if !kept.insert(index) {
                break;
            }
            next = stored[index]
                .parent
                .as_deref()
                .and_then(|parent| by_path.get(parent).copied());
        }
    }
    kept
}

fn kept_bytes(stored: &[Stored], kept: &HashSet<usize>) -> u64 {
    kept.iter().map(|&index| stored[index].bytes).sum()
}

/// What the next snapshot of `kind` is expected to take: the newest one of
/// that kind, with a margin for growth (a full grows with the table), or a
/// small guess when there is none yet.
pub fn estimate(stored: &[Stored], kind: Kind) -> u64 {
    const FIRST_GUESS: u64 = 1024 * 1024;
    stored
        .iter()
        .find(|snapshot| snapshot.kind == kind)
        .map_or(FIRST_GUESS, |snapshot| snapshot.bytes + snapshot.bytes / 10)
}

/// Free space for an unprivileged writer on the file system of `directory`.
pub fn free_bytes(directory: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(directory.as_os_str().as_bytes())
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    // SAFETY: `path` is a valid C string and `stats` a writable statvfs.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

/// Deletes what `plan` chose; returns how many snapshots went.
pub fn apply(plan: &Plan) -> io::Result<usize> {
    for path in &plan.delete {
        // The file first, the reverse of how a snapshot appears: a crash in
        // between leaves a manifest without its file, which the next start
        // removes, never a file without its manifest.
        fs::remove_file(path)?;
        fs::remove_file(manifest_path(path))?;
    }
    Ok(plan.delete.len())
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

    const POLICY: Policy = Policy {
        keep_last: 2,
        keep_daily_days: 7,
        max_total_bytes: None,
        min_free_bytes: 0,
    };

    /// Full snapshots only, 100 bytes each, newest first.
    fn fulls(times: &[&str]) -> Vec<Stored> {
        times
            .iter()
            .map(|t| Stored {
                path: PathBuf::from(*t),
                taken: at(t),
                kind: Kind::Full,
                parent: None,
                bytes: 100,
            })
            .collect()
    }

    /// A chain per day: `(time, full?)`, oldest first in the input; each
    /// incremental extends the one before it.
    fn chains(times: &[(&str, bool)]) -> Vec<Stored> {
        let mut stored: Vec<Stored> = Vec::new();
        for (time, full) in times {
            let parent = (!full).then(|| stored.last().unwrap().path.clone());
            stored.push(Stored {
                path: PathBuf::from(*time),
                taken: at(time),
                kind: if *full { Kind::Full } else { Kind::Incremental },
                parent,
                bytes: if *full { 1000 } else { 10 },
            });
        }
        stored.reverse();
        stored
    }

    #[test]
    fn keeps_the_newest_and_one_a_day() {
        let list = fulls(&[
            "2026-11-23 10:00",
            "2026-11-23 09:50",
            "2026-11-23 09:40",
            "2026-11-22 23:00",
            "2026-11-22 12:00",
            "2026-11-21 12:00",
            "2026-10-01 12:00",
        ]);
        let plan = plan(&list, at("2026-11-23 10:05"), POLICY, None);
        assert_eq!(
            names(&plan.delete),
            ["2026-11-23 09:40", "2026-11-22 12:00", "2026-10-01 12:00"]
        );
        assert_eq!(plan.for_room, 0);
        assert!(plan.fits);
    }

    #[test]
    fn a_day_keeps_its_full_snapshot_and_a_kept_incremental_keeps_its_chain() {
        let list = chains(&[
            ("2026-11-21 00:00", true),
            ("2026-11-21 12:00", false),
            ("2026-11-22 00:00", true),
            ("2026-11-22 00:10", false),
            ("2026-11-22 00:20", false),
            ("2026-11-22 00:30", false),
        ]);
        let plan = plan(&list, at("2026-11-22 00:35"), POLICY, None);
        // Kept: the two newest, with their chain (00:10 and the day's full),
        // and the 21st's full (its daily point, needing nothing else).
        assert_eq!(names(&plan.delete), ["2026-11-21 12:00"]);
    }

    #[test]
    fn the_size_cap_drops_the_oldest_points_but_never_the_newest_chain() {
        let list = chains(&[
            ("2026-11-20 00:00", true),
            ("2026-11-21 00:00", true),
            ("2026-11-22 00:00", true),
            ("2026-11-22 00:10", false),
        ]);
        let capped = Policy {
            max_total_bytes: Some(2_100),
            ..POLICY
        };
        let plan_ = plan(&list, at("2026-11-22 00:15"), capped, None);
        assert_eq!(names(&plan_.delete), ["2026-11-20 00:00"]);
        assert_eq!(plan_.for_room, 1);
        assert!(plan_.fits);
        // A cap below the newest chain: everything else goes, and it still
        // does not fit, which the caller reports.
        let tiny = Policy {
            max_total_bytes: Some(500),
            ..POLICY
        };
        let plan_ = plan(&list, at("2026-11-22 00:15"), tiny, None);
        assert_eq!(
            names(&plan_.delete),
            ["2026-11-21 00:00", "2026-11-20 00:00"]
        );
        assert!(!plan_.fits);
    }

    #[test]
    fn the_free_space_floor_prunes_before_a_snapshot_or_says_it_cannot() {
        let list = chains(&[
            ("2026-11-21 00:00", true),
            ("2026-11-22 00:00", true),
            ("2026-11-22 00:10", false),
        ]);
        let floor = Policy {
            min_free_bytes: 500,
            ..POLICY
        };
        let now = at("2026-11-22 00:15");
        let enough = Room {
            free_bytes: 600,
            needed_bytes: 10,
        };
        assert_eq!(plan(&list, now, floor, Some(enough)).delete.len(), 0);
        let short = Room {
            free_bytes: 100,
            needed_bytes: 10,
        };
        let plan_ = plan(&list, now, floor, Some(short));
        assert_eq!(names(&plan_.delete), ["2026-11-21 00:00"]);
        assert!(plan_.fits);
        let hopeless = Room {
            free_bytes: 0,
            needed_bytes: 10_000,
        };
        assert!(!plan(&list, now, floor, Some(hopeless)).fits);
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
        let list = fulls(&["2020-01-01 00:00"]);
        let policy = Policy {
            keep_last: 1,
            keep_daily_days: 0,
            ..POLICY
        };
        assert!(plan(&list, at("2026-11-23 10:00"), policy, None)
            .delete
            .is_empty());
    }
}
