//! Snapshots, verify and restore against a real database.

use std::time::Duration;

use backup_worker::archive::{self, ArchiveError};
use backup_worker::settings::Compression;
use backup_worker::snapshot::{self, SnapshotError};
use chrono::NaiveDate;
use mysql_async::prelude::Queryable;
use telemetry_core::reading::{insert_batch, latest};
use telemetry_core::testing::{Outage, TestDatabase};
use telemetry_core::{NewReading, Source};

const TIMEOUT: Duration = Duration::from_secs(5);

fn readings(count: u32) -> Vec<NewReading> {
    let cities = [
        "Bogotá",
        "Medellín",
        "Cali",
        "Cartagena",
        "Manizales",
        "Pereira",
        "Bucaramanga",
    ];
    (0..count)
        .map(|i| NewReading {
            ciudad: cities[i as usize % cities.len()].into(),
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

        let manifest = snapshot::take(&db.pool, dir.path(), compression, TIMEOUT)
            .await
            .unwrap();
        assert_eq!(manifest.rows, 2_500);
        let path = dir.path().join(&manifest.file);
        assert_eq!(archive::verify(&path).unwrap().manifest, manifest);

        db.pool
            .get_conn()
            .await
            .unwrap()
            .query_drop("DELETE FROM mediciones")
            .await
            .unwrap();
        let restored = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
            .await
            .unwrap();
        assert_eq!((restored.rows, restored.inserted), (2_500, 2_500));
        assert_eq!(
            latest(&db.pool, 10_000, TIMEOUT).await.unwrap(),
            before,
            "{compression:?}: every row, every field"
        );

        let again = archive::restore(&path, &db.pool, TIMEOUT, |_| {})
            .await
            .unwrap();
        assert_eq!(again.inserted, 0, "restoring twice changes nothing");
        db.drop().await;
    }
}

#[tokio::test]
async fn the_file_is_the_seeds_json_format() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    insert_batch(&db.pool, &readings(3), TIMEOUT).await.unwrap();
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT)
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
    db.drop().await;
}

#[tokio::test]
async fn an_empty_table_gives_a_valid_empty_snapshot() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT)
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
    let error = snapshot::take(&pool, dir.path(), Compression::None, Duration::from_secs(2))
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
    let error = snapshot::take(&db.pool, &not_a_directory, Compression::None, TIMEOUT)
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
    let manifest = snapshot::take(&db.pool, dir.path(), Compression::None, TIMEOUT)
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
    let snapshots = backup_worker::retention::snapshots(dir.path()).unwrap();
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
            backup_worker::retention::snapshots(dir.path())
                .unwrap()
                .is_empty(),
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
    let error = snapshot::take(&db.pool, disk.0.path(), Compression::None, TIMEOUT)
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
