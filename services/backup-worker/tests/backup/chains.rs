//! Incremental snapshots: chains that verify link by link and restore to
//! any point, and the room they are given on disk.

use std::path::{Path, PathBuf};

use backup_worker::archive::{self, ArchiveError};
use backup_worker::chain::{self, ChainError};
use backup_worker::metrics::Metrics;
use backup_worker::settings::Settings;
use backup_worker::snapshot::{self, Kind, Manifest, SnapshotError};
use backup_worker::{snapshot_once, Due};
use mysql_async::prelude::Queryable;
use telemetry_core::ops::Observable;
use telemetry_core::reading::{insert_batch, insert_with_ids};
use telemetry_core::testing::TestDatabase;
use telemetry_core::Reading;

use super::{readings, table, FullDisk, TIMEOUT};

fn settings(db: &TestDatabase, directory: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.database = db.settings.clone();
    settings.backup.directory = directory.to_owned();
    settings
}

async fn take(settings: &Settings, db: &TestDatabase, due: Due) -> Manifest {
    snapshot_once(settings, &db.pool, &Metrics::default(), due)
        .await
        .unwrap()
}

/// The rows a snapshot file holds, as the seed's readers see them: a JSON
/// array of objects with its five keys first.
fn file_rows(directory: &Path, manifest: &Manifest) -> Vec<serde_json::Value> {
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(directory.join(&manifest.file)).unwrap()).unwrap();
    for row in &rows {
        for key in ["id", "ciudad", "temperatura", "humedad", "fecha_registro"] {
            assert!(row.get(key).is_some(), "{key} missing in {row}");
        }
    }
    rows
}

fn ids(rows: &[serde_json::Value]) -> Vec<u64> {
    rows.iter().map(|row| row["id"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn incrementals_hold_only_new_rows_and_their_chain_restores_every_row_at_any_point() {
    let source = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&source, dir.path());
    let all = readings(1_800);

    insert_batch(&source.pool, &all[..1_000], TIMEOUT)
        .await
        .unwrap();
    let full = take(&settings, &source, Due::AsScheduled).await;
    insert_batch(&source.pool, &all[1_000..1_500], TIMEOUT)
        .await
        .unwrap();
    let second = take(&settings, &source, Due::AsScheduled).await;
    let quiet = take(&settings, &source, Due::AsScheduled).await;
    insert_batch(&source.pool, &all[1_500..], TIMEOUT)
        .await
        .unwrap();
    let last = take(&settings, &source, Due::AsScheduled).await;

    let kinds: Vec<Kind> = [&full, &second, &quiet, &last]
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            Kind::Full,
            Kind::Incremental,
            Kind::Incremental,
            Kind::Incremental
        ]
    );
    assert!(second.file.contains("-incremental."), "{}", second.file);
    assert_eq!(
        ids(&file_rows(dir.path(), &full)),
        (1..=1_000).collect::<Vec<_>>()
    );
    assert_eq!(
        ids(&file_rows(dir.path(), &second)),
        (1_001..=1_500).collect::<Vec<_>>()
    );
    assert!(file_rows(dir.path(), &quiet).is_empty());
    assert_eq!(
        ids(&file_rows(dir.path(), &last)),
        (1_501..=1_800).collect::<Vec<_>>()
    );
    // Each link names its parent's manifest and that manifest's checksum.
    let parent = last.parent.as_ref().unwrap();
    assert_eq!(parent.manifest, format!("{}.manifest.json", quiet.file));
    let quiet_link = chain::Link::read(&dir.path().join(&quiet.file)).unwrap();
    assert_eq!(parent.sha256, quiet_link.manifest_sha256);

    let last_path = dir.path().join(&last.file);
    let verified = archive::verify(&last_path).unwrap();
    assert_eq!(verified.chain.len(), 4);
    assert_eq!(verified.rows(), 1_800);

    let source_rows = table(&source).await;
    source.drop().await;

    // The whole chain, twice: the second time nothing goes in.
    let restored_db = TestDatabase::create().await;
    let restored = archive::restore(&last_path, &restored_db.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    assert_eq!((restored.rows, restored.inserted), (1_800, 1_800));
    assert!(restored.restored_as_it_was());
    assert_eq!(table(&restored_db).await, source_rows);
    let again = archive::restore(&last_path, &restored_db.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (again.rows, again.inserted, again.already_present),
        (1_800, 0, 1_800)
    );
    restored_db.drop().await;

    // A point in time: the chain up to the second snapshot.
    let point = TestDatabase::create().await;
    let at_second = chain::snapshot_at(dir.path(), Some(second.started_at)).unwrap();
    assert_eq!(at_second, dir.path().join(&second.file));
    let restored = archive::restore(&at_second, &point.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    assert_eq!(restored.inserted, 1_500);
    assert_eq!(table(&point).await, source_rows[..1_500]);
    point.drop().await;
}

/// Rewrites the manifest of `file` through `edit`.
fn edit_manifest(file: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = snapshot::manifest_path(file);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

#[tokio::test]
async fn verify_names_the_first_broken_link_and_a_broken_chain_restores_nothing() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, dir.path());
    let all = readings(30);
    let mut files: Vec<PathBuf> = Vec::new();
    for part in all.chunks(10) {
        insert_batch(&db.pool, part, TIMEOUT).await.unwrap();
        files.push(
            dir.path()
                .join(take(&settings, &db, Due::AsScheduled).await.file),
        );
    }
    let (middle, last) = (&files[1], &files[2]);
    archive::verify(last).unwrap();

    // The middle file's data changed: link 2 of 3, its checksum.
    let original = std::fs::read(middle).unwrap();
    std::fs::write(
        middle,
        String::from_utf8_lossy(&original)
            .replacen("1", "2", 1)
            .as_bytes(),
    )
    .unwrap();
    let error = archive::verify(last).unwrap_err();
    assert!(
        matches!(&error, ArchiveError::Link { position: 2, length: 3, cause, .. }
            if matches!(**cause, ArchiveError::Checksum { .. })),
        "{error}"
    );
    assert!(error.to_string().contains("link 2 of 3"), "{error}");
    std::fs::write(middle, &original).unwrap();

    // The middle manifest changed (say, its row count): the last one's link
    // no longer matches it.
    edit_manifest(middle, |manifest| manifest["rows"] = 11.into());
    let error = archive::verify(last).unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, ArchiveError::Chain(ChainError::BrokenLink { .. })),
        "{text}"
    );
    assert!(text.contains("has changed"), "{text}");
    assert!(text.contains(&last.display().to_string()), "{text}");

    // The middle snapshot deleted: missing, and nothing is restored.
    std::fs::remove_file(middle).unwrap();
    let error = archive::verify(last).unwrap_err();
    assert!(error.to_string().contains("is missing"), "{error}");
    let fresh = TestDatabase::create().await;
    assert!(archive::restore(last, &fresh.pool, TIMEOUT, |_| {})
        .await
        .is_err());
    assert!(
        table(&fresh).await.is_empty(),
        "a broken chain restores nothing"
    );
    fresh.drop().await;
    db.drop().await;
}

/// An insert that commits after a snapshot holding a higher id (ids are
/// handed out before commit): the next incremental still gets it.
#[tokio::test]
async fn a_row_committed_late_below_the_newest_id_is_in_the_next_incremental() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, dir.path());
    let all = readings(40);
    let with_id = |id: u64, index: usize| Reading {
        id,
        reading: all[index].clone(),
    };
    insert_batch(&db.pool, &all[..10], TIMEOUT).await.unwrap();
    // Id 20 committed, 11 to 19 handed out and not committed yet.
    insert_with_ids(&db.pool, &[with_id(20, 10)], TIMEOUT)
        .await
        .unwrap();
    let full = take(&settings, &db, Due::AsScheduled).await;
    assert_eq!(full.pending_ids, (11..=19).collect::<Vec<_>>());

    insert_with_ids(&db.pool, &[with_id(15, 11)], TIMEOUT)
        .await
        .unwrap();
    insert_batch(&db.pool, &all[12..15], TIMEOUT).await.unwrap();
    let next = take(&settings, &db, Due::AsScheduled).await;
    assert_eq!(ids(&file_rows(dir.path(), &next)), [15, 21, 22, 23]);
    assert_eq!(next.pending_ids, [11, 12, 13, 14, 16, 17, 18, 19]);

    let restored = TestDatabase::create().await;
    archive::restore(
        &dir.path().join(&next.file),
        &restored.pool,
        TIMEOUT,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(table(&restored).await, table(&db).await);
    restored.drop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_new_chain_starts_when_the_table_was_recreated_or_a_full_one_is_due() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(&db, dir.path());
    insert_batch(&db.pool, &readings(20), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        take(&settings, &db, Due::AsScheduled).await.kind,
        Kind::Full
    );
    assert_eq!(take(&settings, &db, Due::Full).await.kind, Kind::Full);

    // Recreated: its ids start again below the chain's.
    let mut conn = db.pool.get_conn().await.unwrap();
    conn.query_drop("TRUNCATE TABLE mediciones").await.unwrap();
    drop(conn);
    insert_batch(&db.pool, &readings(5), TIMEOUT).await.unwrap();
    let after_reset = take(&settings, &db, Due::AsScheduled).await;
    assert_eq!((after_reset.kind, after_reset.rows), (Kind::Full, 5));

    // The chain's full snapshot is older than full_every_hours.
    assert_eq!(
        take(&settings, &db, Due::AsScheduled).await.kind,
        Kind::Incremental
    );
    edit_manifest(&dir.path().join(&after_reset.file), |manifest| {
        manifest["started_at"] = "2020-01-01T00:00:00Z".into()
    });
    // (Editing the full's manifest also breaks the link to it: either way a
    // new chain starts; check the age rule on its own below.)
    assert_eq!(
        take(&settings, &db, Due::AsScheduled).await.kind,
        Kind::Full
    );
    let now = chrono::Utc::now();
    let newest = chain::list(dir.path()).unwrap()[0].path.clone();
    let hour = chrono::TimeDelta::hours(1);
    assert!(chain::to_extend(Some(&newest), now, hour)
        .unwrap()
        .is_some());
    assert!(chain::to_extend(Some(&newest), now + hour, hour)
        .unwrap()
        .is_none());
    db.drop().await;
}

#[tokio::test]
async fn without_room_for_the_floor_old_points_are_pruned_or_the_snapshot_is_skipped() {
    let db = TestDatabase::create().await;
    // About 800 kB a full snapshot, on a 3 MiB disk that must keep 1 MiB.
    insert_batch(&db.pool, &readings(3_500), TIMEOUT)
        .await
        .unwrap();
    let disk = FullDisk::mount(3 * 1024 * 1024);
    let mut settings = settings(&db, disk.0.path());
    settings.backup.min_free_mib = 1;
    let metrics = Metrics::default();
    let mut fulls = Vec::new();
    for _ in 0..3 {
        let manifest = snapshot_once(&settings, &db.pool, &metrics, Due::Full)
            .await
            .unwrap();
        fulls.push(manifest.file);
    }
    let left: Vec<String> = chain::list(disk.0.path())
        .unwrap()
        .iter()
        .map(|listed| {
            listed
                .path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        left,
        [fulls[2].clone(), fulls[1].clone()],
        "the oldest went for room"
    );
    assert_eq!(metrics.pruned_for_room.get(), 1);
    assert!(metrics.healthy());

    // A floor no pruning can reach: skipped, said, counted, nothing deleted.
    settings.backup.min_free_mib = 64;
    let error = snapshot_once(&settings, &db.pool, &metrics, Due::Full)
        .await
        .unwrap_err();
    assert!(matches!(error, SnapshotError::LowSpace { .. }), "{error}");
    assert!(
        error.to_string().contains("backup.min_free_mib = 64 MiB"),
        "{error}"
    );
    assert_eq!(metrics.skipped.get(), 1);
    assert!(!metrics.healthy());
    assert!(metrics.health()["space_error"]
        .as_str()
        .unwrap()
        .contains("skipped"));
    assert_eq!(
        chain::list(disk.0.path()).unwrap().len(),
        2,
        "nothing deleted in vain"
    );
    assert!(metrics.metrics().contains("backup_skipped_total 1"));

    // Room again: the next snapshot goes in and health recovers.
    settings.backup.min_free_mib = 1;
    snapshot_once(&settings, &db.pool, &metrics, Due::AsScheduled)
        .await
        .unwrap();
    assert!(metrics.healthy());
    drop(disk);
    db.drop().await;
}
