//! Adopting the seed's own `mediciones`: a database made with the seed's
//! exact DDL and rows (tests/fixtures/seed-mediciones.sql, unchanged).

use chrono::{NaiveDateTime, TimeDelta};
use chrono_tz::Tz;
use mysql_async::prelude::Queryable;
use telemetry_core::migration::{migrate, MigrationError};
use telemetry_core::reading::latest;
use telemetry_core::testing::TestDatabase;
use telemetry_core::{Reading, Source};

use super::TIMEOUT;

const SEED_SQL: &str = include_str!("../fixtures/seed-mediciones.sql");
const SEED_IDS: [u64; 21] = [
    99, 100, 101, 102, 103, 104, 124, 125, 126, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136,
    137, 138,
];
const BOGOTA: Option<Tz> = Some(chrono_tz::America::Bogota);

async fn seed_database() -> TestDatabase {
    let db = TestDatabase::empty().await;
    sql(&db, SEED_SQL).await;
    db
}

async fn sql(db: &TestDatabase, statements: &str) {
    db.pool
        .get_conn()
        .await
        .unwrap()
        .query_drop(statements)
        .await
        .unwrap();
}

async fn adopted(db: &TestDatabase) -> Vec<Reading> {
    let mut rows = latest(&db.pool, 1_000, TIMEOUT).await.unwrap();
    rows.sort_by_key(|row| row.id);
    rows
}

/// Names of the tables in the test database, sorted.
async fn tables(db: &TestDatabase) -> Vec<String> {
    db.pool
        .get_conn()
        .await
        .unwrap()
        .query(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
        )
        .await
        .unwrap()
}

async fn aside_table(db: &TestDatabase) -> String {
    let aside: Vec<String> = tables(db)
        .await
        .into_iter()
        .filter(|name| name.starts_with("mediciones_seed_"))
        .collect();
    assert_eq!(aside.len(), 1, "one aside table: {aside:?}");
    aside[0].clone()
}

/// The seed's rows as they are in `table`: id, ciudad, fecha_registro.
async fn seed_rows(db: &TestDatabase, table: &str) -> Vec<(u64, String, NaiveDateTime)> {
    db.pool
        .get_conn()
        .await
        .unwrap()
        .query(format!(
            "SELECT id, ciudad, fecha_registro FROM `{table}` ORDER BY id"
        ))
        .await
        .unwrap()
}

async fn row_count(db: &TestDatabase, table: &str) -> u64 {
    db.pool
        .get_conn()
        .await
        .unwrap()
        .query_first(format!("SELECT COUNT(*) FROM `{table}`"))
        .await
        .unwrap()
        .unwrap()
}

fn time(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
}

#[tokio::test]
async fn the_seeds_rows_are_adopted_in_utc_with_their_ids_and_configured_city_names() {
    let db = seed_database().await;
    let applied = migrate(&db.pool, BOGOTA).await.unwrap();
    assert_eq!(applied.len(), 2, "our tables were created: {applied:?}");

    let rows = adopted(&db).await;
    let ids: Vec<u64> = rows.iter().map(|row| row.id).collect();
    assert_eq!(ids, SEED_IDS, "every row, ids kept");
    let aside = aside_table(&db).await;
    let originals = seed_rows(&db, &aside).await;
    assert_eq!(originals.len(), 21, "the seed's table is kept whole");
    for (row, (id, ciudad, local)) in rows.iter().zip(&originals) {
        assert_eq!(row.id, *id);
        assert_eq!(row.reading.source, Source::Seed);
        assert_eq!(
            row.reading.fecha_registro,
            *local + TimeDelta::hours(5),
            "Bogotá is UTC-5: id {id}"
        );
        let expected = match ciudad.as_str() {
            "Bogota" => "Bogotá",
            "Medellin" => "Medellín",
            other => other,
        };
        assert_eq!(row.reading.ciudad, expected, "id {id}");
    }
    let hours = super::aggregates::assert_aggregates_match(&db).await;
    assert!(
        !hours.is_empty(),
        "the adopted rows are in the hourly aggregates"
    );
    let first = &rows[0].reading;
    assert_eq!(
        (first.ciudad.as_str(), first.temperatura, first.humedad),
        ("Cali", Some(20.1), Some(91)),
        "FLOAT 20.1 is stored as 20.1, not 20.100000381…"
    );
    assert_eq!(first.fecha_registro, time("2025-12-08 14:38:05"));
    assert!(
        originals.iter().any(|(_, ciudad, _)| ciudad == "Bogota"),
        "the aside table keeps the seed's own values"
    );

    let tables_before = tables(&db).await;
    assert!(
        migrate(&db.pool, BOGOTA).await.unwrap().is_empty(),
        "a second run applies nothing"
    );
    assert_eq!(adopted(&db).await.len(), 21);
    assert_eq!(tables(&db).await, tables_before, "and moves nothing aside");
    db.drop().await;
}

#[tokio::test]
async fn a_seed_table_without_the_zone_setting_is_refused_by_its_name_and_left_alone() {
    let db = seed_database().await;
    let error = migrate(&db.pool, None).await.unwrap_err();
    assert!(
        matches!(error, MigrationError::SeedTimeZoneUnset { .. }),
        "{error}"
    );
    let message = error.to_string();
    for needed in [
        "database.seed_time_zone",
        "APP__DATABASE__SEED_TIME_ZONE",
        "local time",
        "nothing was changed",
    ] {
        assert!(message.contains(needed), "{needed:?} in: {message}");
    }
    assert_eq!(
        tables(&db).await,
        ["mediciones"],
        "no history, nothing aside"
    );
    assert_eq!(seed_rows(&db, "mediciones").await.len(), 21);
    db.drop().await;
}

#[tokio::test]
async fn a_table_of_a_third_shape_is_refused_naming_its_columns() {
    let db = TestDatabase::empty().await;
    sql(
        &db,
        "CREATE TABLE mediciones (id INT PRIMARY KEY, ciudad VARCHAR(50), \
         temp FLOAT, fecha VARCHAR(20))",
    )
    .await;
    let error = migrate(&db.pool, BOGOTA).await.unwrap_err();
    assert!(
        matches!(error, MigrationError::UnknownShape { .. }),
        "{error}"
    );
    let message = error.to_string();
    for needed in [
        "id INT, ciudad VARCHAR, temp FLOAT, fecha VARCHAR",
        "`source`",
        "fecha_registro (DATETIME or TIMESTAMP)",
    ] {
        assert!(message.contains(needed), "{needed:?} in: {message}");
    }
    assert_eq!(tables(&db).await, ["mediciones"], "nothing changed");
    db.drop().await;
}

#[tokio::test]
async fn an_interrupted_adoption_is_finished_by_the_next_run() {
    let db = seed_database().await;
    migrate(&db.pool, BOGOTA).await.unwrap();
    let aside = aside_table(&db).await;
    // The state a crash leaves: moved aside, our table created, half the
    // rows copied, the aside table not yet marked as copied.
    sql(
        &db,
        &format!("DELETE FROM mediciones WHERE id > 127; ALTER TABLE `{aside}` COMMENT = ''"),
    )
    .await;
    assert_eq!(adopted(&db).await.len(), 10);

    let error = migrate(&db.pool, None).await.unwrap_err();
    assert!(
        error.to_string().contains(&aside),
        "the unfinished table needs its zone too: {error}"
    );
    assert!(migrate(&db.pool, BOGOTA).await.unwrap().is_empty());
    let rows = adopted(&db).await;
    let ids: Vec<u64> = rows.iter().map(|row| row.id).collect();
    assert_eq!(ids, SEED_IDS);
    assert_eq!(
        rows.last().unwrap().reading.fecha_registro,
        time("2025-12-08 15:55:14")
    );
    assert_eq!(aside_table(&db).await, aside, "the same aside table, kept");
    db.drop().await;
}

#[tokio::test]
async fn a_seed_table_the_old_migrate_recorded_as_migrated_is_adopted() {
    let db = seed_database().await;
    // What `migrate` did before it looked: V1 recorded over the seed's table.
    db.migrate_without_adoption().await;
    assert_eq!(migrate(&db.pool, BOGOTA).await.unwrap().len(), 1, "V2");
    assert_eq!(adopted(&db).await.len(), 21);
    super::aggregates::assert_aggregates_match(&db).await;
    db.drop().await;
}

#[tokio::test]
async fn rows_our_table_cannot_hold_are_counted_and_stay_in_the_aside_table() {
    let db = seed_database().await;
    sql(
        &db,
        "INSERT INTO mediciones (id, ciudad, temperatura, humedad, fecha_registro) VALUES \
         (200, 'BOGOTÁ', 16.0, 50, '2025-12-08 10:52:18'), \
         (201, 'Cali', 22.0, 300, '2025-12-08 11:00:00'), \
         (202, NULL, 22.0, 50, '2025-12-08 11:00:16'), \
         (203, 'Tunja', 12.5, -1, '2025-12-08 11:00:32')",
    )
    .await;
    migrate(&db.pool, BOGOTA).await.unwrap();
    let rows = adopted(&db).await;
    let ids: Vec<u64> = rows.iter().map(|row| row.id).collect();
    assert!(
        !ids.contains(&200),
        "same city and tick as id 127: the first is kept"
    );
    assert!(!ids.contains(&202), "no city: not copied");
    assert_eq!(rows.len(), 23);
    let cali = rows.iter().find(|row| row.id == 201).unwrap();
    assert_eq!(cali.reading.humedad, None, "300 does not fit 0-255");
    let tunja = rows.iter().find(|row| row.id == 203).unwrap();
    assert_eq!(
        (tunja.reading.ciudad.as_str(), tunja.reading.humedad),
        ("Tunja", None),
        "an unconfigured city is kept as it is"
    );
    assert_eq!(row_count(&db, &aside_table(&db).await).await, 25);
    db.drop().await;
}

#[tokio::test]
async fn a_local_time_a_clock_change_skipped_is_refused_before_anything_changes() {
    let db = seed_database().await;
    // 02:30 did not exist in New York on 2025-03-09 (clocks went 02:00 → 03:00).
    sql(
        &db,
        "INSERT INTO mediciones (id, ciudad, temperatura, humedad, fecha_registro) \
         VALUES (300, 'Cali', 20.0, 60, '2025-03-09 02:30:00')",
    )
    .await;
    let error = migrate(&db.pool, Some(chrono_tz::America::New_York))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("id 300") && message.contains("does not exist"),
        "{message}"
    );
    assert_eq!(tables(&db).await, ["mediciones"], "nothing changed");
    db.drop().await;
}
