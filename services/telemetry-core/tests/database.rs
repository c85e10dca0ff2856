//! The schema and queries against a real MariaDB/MySQL server.

#[path = "database/aggregates.rs"]
mod aggregates;
#[path = "database/seed_adoption.rs"]
mod seed_adoption;

use std::time::Duration;

use chrono::{NaiveDate, TimeDelta};
use mysql_async::prelude::Queryable;
use telemetry_core::migration::migrate;
use telemetry_core::reading::{insert_batch, latest};
use telemetry_core::testing::{self, Outage, TestDatabase};
use telemetry_core::{NewReading, Source};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A reading with every column set, so a round trip checks them all.
fn reading(city: &str, second: u32) -> NewReading {
    let minute = NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(10, 0, 0)
        .unwrap();
    NewReading {
        observed_at: Some(minute),
        weather_code: Some(3),
        wind_speed: Some(7.5),
        ..testing::reading(
            city,
            minute + TimeDelta::seconds(second.into()),
            20.5,
            60,
            Source::OpenMeteo,
        )
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let db = TestDatabase::create().await;
    assert!(
        migrate(&db.pool, None).await.unwrap().is_empty(),
        "second run applies nothing"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_replayed_batch_stores_each_reading_once() {
    let db = TestDatabase::create().await;
    let batch: Vec<_> = ["Bogotá", "Cali", "Medellín"]
        .iter()
        .map(|c| reading(c, 15))
        .collect();
    assert_eq!(insert_batch(&db.pool, &batch, TIMEOUT).await.unwrap(), 3);
    assert_eq!(insert_batch(&db.pool, &batch, TIMEOUT).await.unwrap(), 0);
    let mut mixed = batch.clone();
    mixed.push(reading("Cali", 30));
    assert_eq!(insert_batch(&db.pool, &mixed, TIMEOUT).await.unwrap(), 1);
    let rows = latest(&db.pool, 15, TIMEOUT).await.unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(
        rows[0].reading,
        reading("Cali", 30),
        "newest first, every field round-trips"
    );
    db.drop().await;
}

#[tokio::test]
async fn the_seed_query_works_unchanged() {
    let db = TestDatabase::create().await;
    insert_batch(&db.pool, &[reading("Bogotá", 0)], TIMEOUT)
        .await
        .unwrap();
    let mut conn = db.pool.get_conn().await.unwrap();
    let rows: Vec<mysql_async::Row> = conn
        .query("SELECT * FROM mediciones ORDER BY id DESC LIMIT 15")
        .await
        .unwrap();
    let columns: Vec<String> = rows[0]
        .columns_ref()
        .iter()
        .map(|c| c.name_str().into_owned())
        .collect();
    assert_eq!(
        &columns[..5],
        ["id", "ciudad", "temperatura", "humedad", "fecha_registro"]
    );
    let (ciudad, fecha): (String, String) = conn
        .query_first(
            "SELECT ciudad, DATE_FORMAT(fecha_registro, '%Y-%m-%d %H:%i:%s') FROM mediciones",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ciudad.as_str(), fecha.as_str()),
        ("Bogotá", "2026-11-23 10:00:00")
    );
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn a_dead_database_is_reported_as_unavailable_within_the_timeout() {
    let db = TestDatabase::create().await;
    let mut outage = Outage::relay(&db.settings).await;
    let pool = outage.settings(&db.settings).pool().unwrap();
    insert_batch(&pool, &[reading("Cali", 0)], TIMEOUT)
        .await
        .unwrap();
    outage.cut();
    let error = insert_batch(&pool, &[reading("Cali", 15)], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    outage.restore().await;
    insert_batch(&pool, &[reading("Cali", 15)], TIMEOUT)
        .await
        .unwrap();
    assert_eq!(latest(&db.pool, 15, TIMEOUT).await.unwrap().len(), 2);
    pool.disconnect().await.ok();
    db.drop().await;
}
