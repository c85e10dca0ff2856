use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use mysql_async::prelude::Queryable;
use telemetry_core::testing::{eventually, Outage, TestDatabase};

use crate::helpers::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// A tick long enough that one tick's work, a database timeout (2 s) at
/// worst, never makes the sensor skip the next: it skips ticks more than half
/// an interval late, and this test counts every tick.
const TICK_SECS: u64 = 3;

/// Every tick between the first and the last stored holds every city once.
async fn assert_complete_ticks(pool: &mysql_async::Pool) -> usize {
    let mut conn = pool.get_conn().await.unwrap();
    let rows: Vec<(NaiveDateTime, u64)> = conn
        .query("SELECT fecha_registro, COUNT(*) FROM mediciones GROUP BY fecha_registro ORDER BY fecha_registro")
        .await
        .unwrap();
    let ticks: BTreeMap<_, _> = rows.into_iter().collect();
    let first = *ticks.keys().next().unwrap();
    let last = *ticks.keys().last().unwrap();
    let expected = (last - first).num_seconds() as usize / TICK_SECS as usize + 1;
    assert_eq!(
        ticks.len(),
        expected,
        "a tick is missing between {first} and {last}: {ticks:?}"
    );
    assert!(
        ticks.values().all(|&count| count == CITIES as u64),
        "{ticks:?}"
    );
    expected
}

#[tokio::test]
async fn readings_made_during_an_outage_are_spooled_then_stored_once_each() {
    let db = TestDatabase::create().await;
    let mut outage = Outage::relay(&db.settings).await;
    let api = api_answering(&current_reply().0).await;
    let sensor = RunningSensor::start(|spool| {
        let mut settings = settings(&outage.settings(&db.settings), &api.uri(), spool);
        settings.sensor.interval_secs = TICK_SECS;
        settings
    });
    eventually("rows before the outage", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= 2 * CITIES as u64).then_some(())
    })
    .await;

    outage.cut();
    eventually("three ticks spooled", PATIENCE, POLL, || async {
        (sensor.metric("sensor_readings_spooled_total").await >= 3.0 * CITIES as f64).then_some(())
    })
    .await;
    outage.restore().await;
    eventually("spool replayed", PATIENCE, POLL, || async {
        (sensor.metric("sensor_readings_replayed_total").await >= 3.0 * CITIES as f64
            && sensor.metric("sensor_spool_bytes").await == 0.0)
            .then_some(())
    })
    .await;
    let spooled = sensor.metric("sensor_readings_spooled_total").await;
    eventually("a direct insert after recovery", PATIENCE, POLL, || async {
        (sensor.metric("sensor_readings_inserted_total").await > 0.0).then_some(())
    })
    .await;
    sensor.stop().await;

    let ticks = assert_complete_ticks(&db.pool).await;
    assert_eq!(row_count(&db.pool).await, (ticks * CITIES) as u64);
    println!("outage test: {ticks} ticks x {CITIES} cities stored, {spooled} readings went through the spool");
    db.drop().await;
}

#[tokio::test]
async fn the_spool_survives_a_restart_and_is_replayed_by_the_next_process() {
    let db = TestDatabase::create().await;
    let mut outage = Outage::relay(&db.settings).await;
    let api = api_answering(&current_reply().0).await;
    let database = outage.settings(&db.settings);
    outage.cut();
    let sensor = RunningSensor::start(|spool| settings(&database, &api.uri(), spool));
    eventually("two ticks spooled", PATIENCE, POLL, || async {
        (sensor.metric("sensor_readings_spooled_total").await >= 2.0 * CITIES as f64).then_some(())
    })
    .await;
    let spool_dir = sensor.stop().await;
    assert_eq!(row_count(&db.pool).await, 0);

    outage.restore().await;
    let spool_path = spool_dir.path().to_owned();
    let sensor = RunningSensor::start(|_| settings(&database, &api.uri(), spool_path.clone()));
    eventually("spool replayed", PATIENCE, POLL, || async {
        (sensor.metric("sensor_readings_replayed_total").await >= 2.0 * CITIES as f64).then_some(())
    })
    .await;
    sensor.stop().await;
    assert!(row_count(&db.pool).await >= 2 * CITIES as u64);
    db.drop().await;
}
