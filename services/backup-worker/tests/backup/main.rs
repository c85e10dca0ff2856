//! Snapshots, verify and restore against a real database; the backup
//! directory's ACLs and the wait for a writable directory, which need none.

use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod chains;

use backup_worker::acl::{self, Acl, AclError, Entry, Kind, Tag, SERVICE_UID};
use backup_worker::archive::{self, ArchiveError, Resolution};
use backup_worker::settings::Compression;
use backup_worker::snapshot::{self, SnapshotError};
use chrono::NaiveDate;
use mysql_async::prelude::Queryable;
use secrecy::ExposeSecret;
use telemetry_core::reading::{insert_batch, insert_with_ids, latest};
use telemetry_core::testing::{city_names, eventually, Outage, TestDatabase};
use telemetry_core::{NewReading, Reading, Source};

const TIMEOUT: Duration = Duration::from_secs(5);

fn readings(count: u32) -> Vec<NewReading> {
    let cities = city_names();
    (0..count)
        .map(|i| NewReading {
            ciudad: cities[i as usize % cities.len()].clone(),
            temperatura: (i % 5 != 0).then_some(15.0 + f64::from(i % 20) / 10.0),
            humedad: (i % 7 != 0).then_some((40 + i % 50) as u8),
            fecha_registro: NaiveDate::from_ymd_opt(2026, 11, 23)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                + chrono::TimeDelta::seconds(i64::from(i / 7) * 15),
            source: if i % 2 == 0 {
                Source::OpenMeteo
            } else {
                Source::Simulated
            },
            observed_at: (i % 3 == 0).then(|| {
                NaiveDate::from_ymd_opt(2026, 11, 23)
                    .unwrap()
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
            }),
            apparent_temperature: (i % 4 == 0).then_some(14.2),
            weather_code: (i % 4 == 0).then_some(61),
            wind_speed: None,
        })
        .collect()
}

#[tokio::test]
async fn snapshot_drop_restore_gives_back_every_row() {
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let db = TestDatabase::create().await;
        let dir = tempfile::tempdir().unwrap();
        for chunk in readings(2_500).chunks(1000) {
            insert_batch(&db.pool, chunk, TIMEOUT).await.unwrap();
        }
        let before = latest(&db.pool, 10_000, TIMEOUT).await.unwrap();

        let manifest = snapshot::take(&db.pool, dir.path(), compression, TIMEOUT, None)
            .await
            .unwrap();
        assert_eq!(manifest.rows, 2_500);
        let path = dir.path().join(&manifest.file);
        assert_eq!(archive::verify(&path).unwrap().manifest(), &manifest);

        db.pool
            .get_conn()
            .await
            .unwrap()
            .query_drop("DELETE FROM mediciones")
            .await
            .unwrap();
        let mut progress = Vec::new();
        let restored = archive::restore(&path, &db.pool, TIMEOUT, |rows| progress.push(rows))
            .await
            .unwrap();
        assert_eq!(
            counts(&restored),
            [2_500, 2_500, 0, 0, 0, 0],
            "{compression:?}"
        );
        assert!(restored.restored_as_it_was());
        assert_eq!(progress, [1_000, 2_000, 2_500]);
        assert_eq!(
            latest(&db.pool, 10_000, TIMEOUT).await.unwrap(),
            before,
            "{compression:?}: every row, every field"
        );

        let again = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
            .await
            .unwrap();
        assert_eq!(
            counts(&again),
            [2_500, 0, 2_500, 0, 0, 0],
            "restoring twice inserts nothing: everything is already present"
        );
        assert!(again.restored_as_it_was());
        assert_eq!(latest(&db.pool, 10_000, TIMEOUT).await.unwrap(), before);
        db.drop().await;
    }
}

/// A restore's counts: rows, inserted, already present, same reading under
/// another id, under a new id, not restored.
fn counts(restored: &archive::Restored) -> [u64; 6] {
    [
        restored.rows,
        restored.inserted,
        restored.already_present,
        restored.same_reading_other_id,
        restored.new_id,
        restored.not_restored,
    ]
}

/// A snapshot of `readings(10)` (ids 1 to 10, in its own directory) and an
/// empty database standing for the one recreated after the loss.
async fn snapshot_of_ten_and_a_new_database() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<Reading>,
    TestDatabase,
) {
    let lost = TestDatabase::create().await;
    insert_batch(&lost.pool, &readings(10), TIMEOUT)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = snapshot::take(&lost.pool, dir.path(), Compression::None, TIMEOUT, None)
        .await
        .unwrap();
    let mut snapshot = latest(&lost.pool, 100, TIMEOUT).await.unwrap();
    snapshot.reverse();
    assert_eq!(
        snapshot.iter().map(|row| row.id).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    lost.drop().await;
    let path = dir.path().join(&manifest.file);
    (dir, path, snapshot, TestDatabase::create().await)
}

/// Readings the recreated database stored before the restore: a day after
/// the snapshot's, so no (city, time) is shared with it.
fn later_readings(count: u32) -> Vec<NewReading> {
    readings(count)
        .into_iter()
        .map(|mut reading| {
            reading.fecha_registro += chrono::TimeDelta::days(1);
            reading
        })
        .collect()
}

async fn table(db: &TestDatabase) -> Vec<Reading> {
    let mut rows = latest(&db.pool, 10_000, TIMEOUT).await.unwrap();
    rows.reverse();
    rows
}

#[tokio::test]
async fn snapshot_rows_whose_ids_were_taken_meanwhile_go_back_under_new_ids() {
    let (_dir, path, snapshot, db) = snapshot_of_ten_and_a_new_database().await;
    // The new database's own readings take ids 1 to 4.
    insert_batch(&db.pool, &later_readings(4), TIMEOUT)
        .await
        .unwrap();
    // Snapshot row 5 is back already, under its id, as it was.
    insert_with_ids(&db.pool, &snapshot[4..5], TIMEOUT)
        .await
        .unwrap();
    // Snapshot row 7's reading is back under id 6 (as a sensor replaying its
    // spool would put it), so snapshot row 6 finds its id taken.
    insert_batch(&db.pool, &[snapshot[6].reading.clone()], TIMEOUT)
        .await
        .unwrap();
    let before = table(&db).await;
    assert_eq!(
        before.iter().map(|row| row.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );

    let restored = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    // 8, 9, 10 inserted; 5 already present; 7 is the reading at id 6;
    // 1 to 4 and 6 under new ids.
    assert_eq!(counts(&restored), [10, 3, 1, 1, 5, 0]);
    assert!(!restored.restored_as_it_was());
    let moved: Vec<(u64, u64)> = restored
        .conflicts
        .iter()
        .map(|conflict| match conflict.resolution {
            Resolution::NewId(new_id) => (conflict.row.id, new_id),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        moved.iter().map(|&(old, _)| old).collect::<Vec<_>>(),
        [1, 2, 3, 4, 6],
        "in file order"
    );
    let after = table(&db).await;
    assert_eq!(after.len(), 14);
    for &(old, new_id) in &moved {
        assert!(new_id > 10, "{old} -> {new_id}");
        let stored = after.iter().find(|row| row.id == new_id).unwrap();
        assert_eq!(
            stored.reading,
            snapshot[old as usize - 1].reading,
            "{old} -> {new_id}: its city, time and values"
        );
    }
    for row in &snapshot {
        assert!(
            after.iter().any(|stored| stored.reading == row.reading),
            "snapshot row {} is in the table",
            row.id
        );
    }
    for row in &before {
        assert!(after.contains(row), "{row:?} untouched");
    }
    let report = restored.report(&path);
    let (_, moved_six) = moved[4];
    assert!(
        report.contains(
            "10 rows: 3 inserted, 1 already present, 1 same reading under another id, \
             5 under a new id, 0 not restored\nnot restored as it was (exit status 3); all 5:"
        ) && report.contains(&format!(") -> new id {moved_six}\n")),
        "{report}"
    );

    let again = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    // 5 and 8 to 10 under their ids; 1 to 4, 6 and 7 under other ids.
    assert_eq!(
        counts(&again),
        [10, 0, 4, 6, 0, 0],
        "the second restore inserts nothing, not even the moved rows again"
    );
    assert!(again.restored_as_it_was());
    assert_eq!(table(&db).await, after);
    db.drop().await;
}

#[tokio::test]
async fn a_city_and_time_holding_other_values_is_reported_not_restored() {
    let (_dir, path, snapshot, db) = snapshot_of_ten_and_a_new_database().await;
    // Row 3's city and time, other values, under id 1.
    let mut other_values = snapshot[2].reading.clone();
    other_values.temperatura = Some(-40.0);
    insert_batch(&db.pool, &[other_values], TIMEOUT)
        .await
        .unwrap();
    // Row 2's id, city and time, another humidity.
    let mut changed = snapshot[1].clone();
    changed.reading.humedad = Some(changed.reading.humedad.map_or(1, |h| h + 1));
    insert_with_ids(&db.pool, &[changed], TIMEOUT)
        .await
        .unwrap();
    let before = table(&db).await;

    let restored = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
        .await
        .unwrap();
    // 4 to 10 inserted; 1 under a new id (id 1 holds row 3's city and time);
    // 2 and 3 not restored.
    assert_eq!(counts(&restored), [10, 7, 0, 0, 1, 2]);
    assert!(!restored.restored_as_it_was());
    let resolutions: Vec<(u64, Resolution)> = restored
        .conflicts
        .iter()
        .map(|conflict| (conflict.row.id, conflict.resolution))
        .collect();
    assert!(
        matches!(resolutions[0], (1, Resolution::NewId(new_id)) if new_id > 10),
        "{resolutions:?}"
    );
    assert_eq!(
        resolutions[1..],
        [
            (2, Resolution::NotRestored { holder: 2 }),
            (3, Resolution::NotRestored { holder: 1 })
        ]
    );
    let after = table(&db).await;
    assert_eq!(after.len(), 10);
    for row in &before {
        assert!(after.contains(row), "{row:?} is never overwritten");
    }
    let report = restored.report(&path);
    assert!(
        report.contains("not restored as it was (exit status 3); all 3:")
            && report.contains("-> not restored: (city, time) holds different values (id 1)"),
        "{report}"
    );
    db.drop().await;
}

#[tokio::test]
async fn the_restore_command_exits_3_when_rows_did_not_go_back_as_they_were() {
    let (_dir, path, _snapshot, db) = snapshot_of_ten_and_a_new_database().await;
    insert_batch(&db.pool, &later_readings(2), TIMEOUT)
        .await
        .unwrap();
    let restore = || {
        let settings = &db.settings;
        let output = Command::new(env!("CARGO_BIN_EXE_backup-worker"))
            .arg("restore")
            .arg(&path)
            .env("APP__DATABASE__HOST", &settings.host)
            .env("APP__DATABASE__PORT", settings.port.to_string())
            .env("APP__DATABASE__NAME", &settings.name)
            .env("APP__DATABASE__USER", &settings.user)
            .env(
                "APP__DATABASE__PASSWORD",
                settings
                    .password
                    .as_ref()
                    .map(|password| password.expose_secret().to_owned())
                    .unwrap_or_default(),
            )
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (status, stdout, stderr) = restore();
    assert_eq!(status, Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "10 rows: 8 inserted, 0 already present, 0 same reading under another id, \
             2 under a new id, 0 not restored\nnot restored as it was (exit status 3); all 2:\n  \
             id 1 ("
        ) && stdout.contains("\n  id 2 ("),
        "{stdout}"
    );
    let (status, stdout, stderr) = restore();
    assert_eq!(status, Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "10 rows: 0 inserted, 8 already present, 2 same reading under another id, \
             0 under a new id, 0 not restored\n"
        ) && !stdout.contains("not restored as it was"),
        "{stdout}"
    );
    db.drop().await;
}

#[tokio::test]
async fn the_file_is_the_seeds_json_format() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    insert_batch(&db.pool, &readings(3), TIMEOUT).await.unwrap();
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT, None)
        .await
        .unwrap();
    assert!(
        manifest.file.starts_with("mediciones-") && manifest.file.ends_with(".json"),
        "{}",
        manifest.file
    );
    let text = std::fs::read_to_string(dir.path().join(&manifest.file)).unwrap();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(rows.len(), 3);
    let first = rows[0].as_object().unwrap();
    let first_line = text.lines().nth(1).unwrap();
    let positions: Vec<usize> = [
        "\"id\"",
        "\"ciudad\"",
        "\"temperatura\"",
        "\"humedad\"",
        "\"fecha_registro\"",
    ]
    .iter()
    .map(|key| {
        first_line
            .find(key)
            .unwrap_or_else(|| panic!("{key} missing in {first_line}"))
    })
    .collect();
    assert!(
        positions.is_sorted() && positions[0] == 1,
        "seed keys first, in order: {first_line}"
    );
    assert_eq!(first["fecha_registro"], "2026-11-23 00:00:00");
    assert_eq!(first["ciudad"], "Bogotá");
    let snapshot_path = dir.path().join(&manifest.file);
    for path in [snapshot::manifest_path(&snapshot_path), snapshot_path] {
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077 & !0o040, 0, "{}: {mode:o}", path.display());
    }
    db.drop().await;
}

#[tokio::test]
async fn an_empty_table_gives_a_valid_empty_snapshot() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT, None)
        .await
        .unwrap();
    assert_eq!((manifest.rows, manifest.min_id), (0, None));
    archive::verify(&dir.path().join(&manifest.file)).unwrap();
    db.drop().await;
}

#[tokio::test]
async fn a_dead_database_leaves_no_file() {
    let db = TestDatabase::create().await;
    let mut outage = Outage::relay(&db.settings).await;
    let pool = outage.settings(&db.settings).pool().unwrap();
    outage.cut();
    let dir = tempfile::tempdir().unwrap();
    let error = snapshot::take(
        &pool,
        dir.path(),
        Compression::None,
        Duration::from_secs(2),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&error, SnapshotError::Database(e) if e.is_unavailable()),
        "{error}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    db.drop().await;
}

#[tokio::test]
async fn an_unwritable_directory_is_a_clear_error_and_leaves_nothing() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    // A regular file where the directory should be: fails for root too.
    let not_a_directory = dir.path().join("backups");
    std::fs::write(&not_a_directory, b"").unwrap();
    let error = snapshot::take(&db.pool, &not_a_directory, Compression::None, TIMEOUT, None)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("backups"), "{error}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    db.drop().await;
}

#[tokio::test]
async fn verify_catches_tampering_and_a_missing_manifest() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    insert_batch(&db.pool, &readings(10), TIMEOUT)
        .await
        .unwrap();
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT, None)
        .await
        .unwrap();
    let path = dir.path().join(&manifest.file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("Bogotá", "Bogotx", 1)).unwrap();
    assert!(matches!(
        archive::verify(&path),
        Err(ArchiveError::Checksum { .. })
    ));
    std::fs::remove_file(snapshot::manifest_path(&path)).unwrap();
    let error = archive::verify(&path).unwrap_err();
    assert!(error.to_string().contains("manifest"), "{error}");
    db.drop().await;
}

#[tokio::test]
async fn the_worker_snapshots_at_start_and_reports_health() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    insert_batch(&db.pool, &readings(7), TIMEOUT).await.unwrap();
    let mut settings = backup_worker::settings::Settings::default();
    settings.database = db.settings.clone();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.backup.directory = dir.path().to_owned();
    let application = backup_worker::Application::build(&settings).unwrap();
    let port = application.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let metrics_url = format!("http://127.0.0.1:{port}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("backup_snapshots_total 1") {
            assert!(text.contains("backup_last_rows 7"), "{text}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let snapshots = backup_worker::chain::list(dir.path()).unwrap();
    assert_eq!(snapshots.len(), 1);
    db.drop().await;
}

#[tokio::test]
async fn shutdown_during_a_dump_leaves_no_file_behind() {
    let db = TestDatabase::create().await;
    // Large enough that the dump is still streaming when we stop it.
    let rows = readings(300_000);
    for chunk in rows.chunks(2000) {
        insert_batch(&db.pool, chunk, TIMEOUT).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let mut settings = backup_worker::settings::Settings::default();
    settings.database = db.settings.clone();
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.backup.directory = dir.path().to_owned();
    let application = backup_worker::Application::build(&settings).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let temporary_exists = || {
        std::fs::read_dir(dir.path()).unwrap().any(|entry| {
            entry
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp-")
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !temporary_exists() {
        assert!(
            backup_worker::chain::list(dir.path()).unwrap().is_empty(),
            "the dump finished before it could be interrupted: make the table larger"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dump never started"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "a stopped dump leaves nothing, found {left:?}"
    );
    db.drop().await;
}

/// A small tmpfs mounted for one test and unmounted when dropped.
struct FullDisk(tempfile::TempDir);

impl FullDisk {
    fn mount(bytes: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(status.success(), "mounting a {bytes}-byte tmpfs failed: this test needs root (scripts/test.sh runs as root)");
        Self(dir)
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.0.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_leaves_no_partial_file() {
    let db = TestDatabase::create().await;
    for chunk in readings(20_000).chunks(2000) {
        insert_batch(&db.pool, chunk, TIMEOUT).await.unwrap();
    }
    let disk = FullDisk::mount(256 * 1024);
    let error = snapshot::take(&db.pool, disk.0.path(), Compression::None, TIMEOUT, None)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("No space left on device"),
        "{error}"
    );
    let left: Vec<_> = std::fs::read_dir(disk.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "no partial file: {left:?}");
    drop(disk);
    db.drop().await;
}

/// The ACL `kind` of `path` as the kernel holds it, read with getxattr
/// directly (not through the code under test).
fn xattr_acl(path: &Path, kind: Kind) -> Acl {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(kind.xattr_name()).unwrap();
    let mut buffer = vec![0u8; 1024];
    // SAFETY: NUL-terminated strings and a buffer of the length passed.
    let length = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    assert!(
        length >= 0,
        "{} of {}: {}",
        kind.xattr_name(),
        path.display(),
        std::io::Error::last_os_error()
    );
    Acl::decode(&buffer[..length as usize]).unwrap()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `sh -c script` as `uid` (and gid, no supplementary groups).
fn as_user(uid: u32, script: &str) -> bool {
    Command::new("sh")
        .args(["-c", script])
        .uid(uid)
        .gid(uid)
        .status()
        .unwrap()
        .success()
}

fn unnamed(tag: Tag, perm: u16) -> Entry {
    Entry::unnamed(tag, perm)
}

#[test]
fn prepare_directory_lets_the_service_write_and_only_the_owner_read() {
    const HOST_UID: u32 = 4242;
    let parent = tempfile::tempdir().unwrap();
    let directory = parent.path().join("backups");
    std::fs::create_dir(&directory).unwrap();
    std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).unwrap();
    if !is_root() {
        // Only root (CAP_FOWNER) or the owner may set ACLs; the one-shot
        // container is root. As anyone else, a directory of someone else's
        // is refused with a message that says what is needed.
        let error = acl::prepare_directory(Path::new("/")).unwrap_err();
        assert!(
            matches!(&error, AclError::Set { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied),
            "{error:?}"
        );
        assert!(error.to_string().contains("CAP_FOWNER"), "{error}");
        return;
    }
    // A host user's bind mount: owned by them, 0755.
    std::os::unix::fs::chown(&directory, Some(HOST_UID), Some(HOST_UID)).unwrap();
    // The uids below must be able to reach the directory.
    std::fs::set_permissions(parent.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let prepared = acl::prepare_directory(&directory).unwrap();
    assert_eq!((prepared.owner, prepared.changed), (HOST_UID, true));
    use acl::{READ, RWX, RX};
    let access = Acl::new(vec![
        unnamed(Tag::UserObj, RWX),
        Entry::user(SERVICE_UID, RWX),
        unnamed(Tag::GroupObj, RX),
        unnamed(Tag::Mask, RWX),
        unnamed(Tag::Other, RX),
    ]);
    let default = Acl::new(vec![
        unnamed(Tag::UserObj, RWX),
        Entry::user(HOST_UID, RWX),
        Entry::user(SERVICE_UID, RWX),
        unnamed(Tag::GroupObj, RX),
        unnamed(Tag::Mask, RWX),
        unnamed(Tag::Other, 0),
    ]);
    assert_eq!(xattr_acl(&directory, Kind::Access), access);
    assert_eq!(xattr_acl(&directory, Kind::Default), default);
    assert_eq!((&prepared.access, &prepared.default), (&access, &default));

    let again = acl::prepare_directory(&directory).unwrap();
    assert!(!again.changed, "a second run changes nothing");
    assert_eq!(xattr_acl(&directory, Kind::Access), access);
    assert_eq!(xattr_acl(&directory, Kind::Default), default);

    // A file created the way snapshots are: the default ACL replaces the
    // umask, so the mode is exactly 0640 and the mask is its group bits.
    let file = directory.join("mediciones-x.json");
    std::io::Write::write_all(&mut snapshot::create_file(&file).unwrap(), b"[]\n").unwrap();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(
        xattr_acl(&file, Kind::Access),
        Acl::new(vec![
            unnamed(Tag::UserObj, READ | acl::WRITE),
            Entry::user(HOST_UID, RWX),
            Entry::user(SERVICE_UID, RWX),
            unnamed(Tag::GroupObj, RX),
            unnamed(Tag::Mask, READ),
            unnamed(Tag::Other, 0),
        ])
    );

    // And what that means for real processes.
    let path = directory.display();
    assert!(
        as_user(
            SERVICE_UID,
            &format!("echo x > {path}/by-service && mv {path}/by-service {path}/renamed")
        ),
        "the service writes and renames in the directory"
    );
    assert_eq!(
        std::fs::metadata(directory.join("renamed")).unwrap().uid(),
        SERVICE_UID
    );
    assert!(
        as_user(
            HOST_UID,
            &format!("cat {path}/mediciones-x.json >/dev/null")
        ),
        "the owner reads"
    );
    assert!(
        !as_user(
            HOST_UID,
            &format!("exec 2>/dev/null; echo y >> {path}/mediciones-x.json")
        ),
        "the owner cannot write"
    );
    assert!(
        !as_user(2000, &format!("cat {path}/mediciones-x.json 2>/dev/null")),
        "others cannot read"
    );
}

#[test]
fn a_filesystem_without_acls_is_one_clear_line() {
    let error = acl::prepare_directory(Path::new("/proc")).unwrap_err();
    assert!(matches!(error, AclError::Unsupported { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("/proc does not support POSIX ACLs")
            && message.contains("chown 10001")
            && !message.contains('\n'),
        "{message}"
    );
}

/// Settings for a worker that never reaches a database (a closed port) and
/// writes into `directory`.
fn offline_settings(directory: &Path) -> backup_worker::settings::Settings {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = backup_worker::settings::Settings::default();
    settings.database.host = "127.0.0.1".into();
    settings.database.port = closed_port;
    settings.http.host = "127.0.0.1".into();
    settings.http.port = 0;
    settings.backup.directory = directory.to_owned();
    settings
}

async fn health(port: u16) -> serde_json::Value {
    reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn eventually_healthy(
    port: u16,
    want: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(
        "the wanted /healthz answer",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let body = health(port).await;
            want(&body).then_some(body)
        },
    )
    .await
}

#[tokio::test]
async fn the_worker_waits_for_an_unwritable_directory_and_stops_cleanly_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory's parent should be: unwritable for root too.
    std::fs::write(dir.path().join("volumes"), b"").unwrap();
    let directory = dir.path().join("volumes").join("backups");
    let application = backup_worker::Application::build(&offline_settings(&directory)).unwrap();
    let port = application.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let body = eventually_healthy(port, |body| body["status"] != "ok").await;
    assert_eq!(body["status"], "waiting for the backup directory", "{body}");
    let error = body["directory_error"].as_str().unwrap();
    assert!(
        error.contains(&directory.display().to_string())
            && error.contains("prepare-directory")
            && error.contains(&format!("uid {SERVICE_UID}")),
        "{error}"
    );
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("backup_directory_writable 0"), "{metrics}");

    let asked = tokio::time::Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), worker)
        .await
        .expect("stops while waiting")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "{:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn the_worker_goes_on_once_the_directory_becomes_writable() {
    let dir = tempfile::tempdir().unwrap();
    let in_the_way = dir.path().join("volumes");
    std::fs::write(&in_the_way, b"").unwrap();
    let directory = in_the_way.join("backups");
    let application = backup_worker::Application::build(&offline_settings(&directory)).unwrap();
    let port = application.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    eventually_healthy(port, |body| body["status"] != "ok").await;

    std::fs::remove_file(&in_the_way).unwrap();
    // A leftover of a killed snapshot, removed once the directory is usable.
    std::fs::create_dir_all(&directory).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(directory.join(".tmp-mediciones-x.json"))
        .unwrap();
    let body = eventually_healthy(port, |body| body["status"] == "ok").await;
    assert!(body["directory_error"].is_null(), "{body}");
    // The first snapshot is tried at once (and fails: no database).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while health(port).await["failures"] == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no snapshot tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = std::fs::read_dir(&directory)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.is_empty(),
        "leftovers and the probe are gone: {left:?}"
    );
    stop.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
