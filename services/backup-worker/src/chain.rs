//! The snapshots in a backup directory, and the chains they form: a full
//! snapshot, then incrementals, each naming its parent's manifest and that
//! manifest's SHA-256. Walking a chain reads manifests only (small files);
//! checking the data is [`crate::archive::verify`]'s work.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};

use crate::snapshot::{manifest_path, Manifest, MANIFEST_SUFFIX, PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The cause is in the message, not a `source` (it would print twice).
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error("{path}: manifest unreadable: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("broken link: {file} extends {parent}, which {problem}")]
    BrokenLink {
        file: PathBuf,
        parent: String,
        problem: String,
    },
    #[error("no snapshot in {directory} taken at or before {at}")]
    NoSnapshot {
        directory: PathBuf,
        at: DateTime<Utc>,
    },
}

/// A snapshot file with its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// SHA-256 of the manifest's bytes: what a child's link names.
    pub manifest_sha256: String,
}

impl Link {
    pub fn read(path: &Path) -> Result<Self, ChainError> {
        let manifest_file = manifest_path(path);
        let bytes = fs::read(&manifest_file).map_err(|error| ChainError::Io {
            path: manifest_file.clone(),
            error,
        })?;
        let manifest = serde_json::from_slice(&bytes).map_err(|error| ChainError::Manifest {
            path: manifest_file,
            detail: error.to_string(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            manifest,
            manifest_sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }

    /// The snapshot this one extends, checked against the link's checksum.
    pub fn parent(&self) -> Result<Option<Link>, ChainError> {
        let Some(parent) = &self.manifest.parent else {
            return Ok(None);
        };
        let broken = |problem: String| ChainError::BrokenLink {
            file: self.path.clone(),
            parent: parent.manifest.clone(),
            problem,
        };
        let snapshot_name = parent
            .manifest
            .strip_suffix(MANIFEST_SUFFIX)
            .filter(|name| name.starts_with(PREFIX) && !name.contains('/'))
            .ok_or_else(|| broken("is not a snapshot manifest's name".into()))?;
        let directory = self.path.parent().unwrap_or(Path::new("."));
        let path = directory.join(snapshot_name);
        if !path.is_file() {
            return Err(broken("is missing (its data file is not there)".into()));
        }
        let link = Link::read(&path).map_err(|error| broken(format!("cannot be read: {error}")))?;
        if link.manifest_sha256 != parent.sha256 {
            return Err(broken(format!(
                "has changed: its manifest's SHA-256 is {}, the link says {}",
                link.manifest_sha256, parent.sha256
            )));
        }
        Ok(Some(link))
    }
}

/// The chain ending at `path`: its full snapshot first, `path` last.
pub fn chain(path: &Path) -> Result<Vec<Link>, ChainError> {
    let mut links = vec![Link::read(path)?];
    let mut visited = HashSet::from([path.to_owned()]);
    while let Some(parent) = links.last().unwrap().parent()? {
        // Names carry their time and a child is always newer, so a loop
        // means hand-edited manifests; refuse rather than spin.
        if !visited.insert(parent.path.clone()) {
            return Err(ChainError::BrokenLink {
                file: links.last().unwrap().path.clone(),
                parent: parent.path.display().to_string(),
                problem: "is already in the chain (a loop)".into(),
            });
        }
        links.push(parent);
    }
    links.reverse();
    Ok(links)
}

/// A snapshot in the directory: a data file whose manifest is there.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub path: PathBuf,
    pub taken: NaiveDateTime,
}

/// Snapshots in `directory` that have a manifest, newest first.
pub fn list(directory: &Path) -> io::Result<Vec<Listed>> {
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
            found.push(Listed { path, taken });
        }
    }
    found.sort_by_key(|listed| std::cmp::Reverse(listed.taken));
    Ok(found)
}

/// The newest snapshot in `directory` taken at or before `at` (any time
/// when `at` is `None`): the point a restore goes back to.
pub fn snapshot_at(directory: &Path, at: Option<DateTime<Utc>>) -> Result<PathBuf, ChainError> {
    let listed = list(directory).map_err(|error| ChainError::Io {
        path: directory.to_owned(),
        error,
    })?;
    listed
        .into_iter()
        .find(|snapshot| at.is_none_or(|at| snapshot.taken <= at.naive_utc()))
        .map(|snapshot| snapshot.path)
        .ok_or_else(|| ChainError::NoSnapshot {
            directory: directory.to_owned(),
            at: at.unwrap_or_else(Utc::now),
        })
}

/// The snapshot the next one should extend: the newest in `directory`,
/// unless its chain's full snapshot is at least `full_every` old (then a new
/// chain starts). A chain that cannot be walked is not extended either:
/// the error says why, and the caller takes a full snapshot.
pub fn to_extend(
    newest: Option<&Path>,
    now: DateTime<Utc>,
    full_every: chrono::TimeDelta,
) -> Result<Option<Link>, ChainError> {
    let Some(newest) = newest else {
        return Ok(None);
    };
    let mut links = chain(newest)?;
    let full_taken = links[0].manifest.started_at;
    Ok((now - full_taken < full_every).then(|| links.pop().expect("a chain has a snapshot")))
}
