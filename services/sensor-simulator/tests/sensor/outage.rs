use std::time::Duration;

use telemetry_core::testing::{eventually, Outage, TestDatabase};

use crate::helpers::*;

const PATIENCE: Duration = Duration::from_secs(30);

/// A tick long enough that one tick's work, a database timeout (2 s) at
/// worst, never makes the sensor skip the next: it skips ticks more than half
/// an interval late, and this test counts every tick.
const TICK_SECS: u64 = 3;

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

    let ticks = assert_complete_ticks(&db.pool, TICK_SECS).await;
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

#[tokio::test]
async fn a_refusal_waiting_will_not_fix_is_unhealthy_and_nothing_is_lost() {
    use mysql_async::prelude::Queryable;

    let db = TestDatabase::create().await;
    let api = api_answering(&current_reply().0).await;
    let sensor = RunningSensor::start(|spool| {
        let mut settings = settings(&db.settings, &api.uri(), spool);
        settings.sensor.interval_secs = TICK_SECS;
        settings
    });
    let health = |port: u16| async move {
        let response = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json::<serde_json::Value>().await.unwrap())
    };
    eventually("rows before the refusal", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= CITIES as u64).then_some(())
    })
    .await;
    assert_eq!(health(sensor.port).await.0, 200);

    // The table is gone (as after a wrong migration): every write gets
    // server error 1146, which no amount of waiting fixes.
    let mut conn = db.pool.get_conn().await.unwrap();
    conn.query_drop("RENAME TABLE mediciones TO mediciones_aside")
        .await
        .unwrap();
    let (status, body) = eventually("/healthz says why", PATIENCE, POLL, || async {
        let (status, body) = health(sensor.port).await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    let problem = body["database_error"].as_str().unwrap();
    assert!(problem.contains("1146"), "{body}");
    assert!(
        sensor
            .metric("sensor_database_refusals_total{code=\"1146\"}")
            .await
            >= 1.0,
        "{}",
        sensor.metrics().await
    );
    assert!(sensor.metric("sensor_readings_spooled_total").await >= CITIES as f64);

    // Fixed: the spool goes in, and the sensor is healthy again by itself.
    conn.query_drop("RENAME TABLE mediciones_aside TO mediciones")
        .await
        .unwrap();
    eventually("healthy again, spool replayed", PATIENCE, POLL, || async {
        let (status, _) = health(sensor.port).await;
        (status == 200 && sensor.metric("sensor_spool_bytes").await == 0.0).then_some(())
    })
    .await;
    drop(conn);
    sensor.stop().await;
    let ticks = assert_complete_ticks(&db.pool, TICK_SECS).await;
    assert_eq!(
        row_count(&db.pool).await,
        (ticks * CITIES) as u64,
        "nothing lost"
    );
    db.drop().await;
}

/// Issue 13: a long spool drained over a link that drops for 300 ms 200 ms
/// after every resumed replay, far sooner than the whole replay takes (a
/// replay that started over each time would never finish). Each attempt
/// resumes at the checkpoint, so it finishes with every spooled row stored
/// exactly once, and the ticks, beside the replay, keep their cadence.
#[tokio::test]
async fn a_long_spool_drains_over_a_link_that_keeps_dropping_and_no_tick_is_skipped() {
    use chrono::{NaiveDate, TimeDelta};
    use mysql_async::prelude::Queryable;
    use sensor_simulator::spool::Spool;
    use telemetry_core::testing::reading;
    use telemetry_core::Source;

    const BACKLOG: [&str; 2] = ["Backlog A", "Backlog B"];
    const BACKLOG_TICKS: i64 = 50_000;
    let db = TestDatabase::create().await;
    let mut link = Outage::relay(&db.settings).await;
    let api = api_answering(&current_reply().0).await;
    let database = link.settings(&db.settings);
    let started = telemetry_core::time::now_utc();
    let sensor = RunningSensor::start(|spool_dir| {
        // The spool a long outage left behind: 100,000 readings from 2020.
        let spool = Spool::open(&spool_dir, u64::MAX).unwrap();
        let first = NaiveDate::from_ymd_opt(2020, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        let backlog: Vec<_> = (0..BACKLOG_TICKS)
            .flat_map(|tick| {
                let at = first + TimeDelta::seconds(15 * tick);
                BACKLOG.map(|city| reading(city, at, 20.0, 60, Source::Simulated))
            })
            .collect();
        for chunk in backlog.chunks(10_000) {
            spool.append(chunk).unwrap();
        }
        settings(&database, &api.uri(), spool_dir)
    });

    // Each cut falls while a replay is under way: 200 ms after the next
    // batch is stored, the link drops for 300 ms.
    let drops = async {
        let mut replayed = 0.0;
        loop {
            replayed = eventually(
                "replay progress",
                PATIENCE,
                Duration::from_millis(5),
                || async {
                    let now = sensor.metric("sensor_readings_replayed_total").await;
                    (now > replayed).then_some(now)
                },
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            link.cut();
            tokio::time::sleep(Duration::from_millis(300)).await;
            link.restore().await;
        }
    };
    let drained = eventually(
        "the spool drained",
        Duration::from_secs(120),
        POLL,
        || async {
            let replayed = sensor.metric("sensor_readings_replayed_total").await;
            (replayed >= 2.0 * BACKLOG_TICKS as f64
                && sensor.metric("sensor_spool_bytes").await == 0.0)
                .then_some(replayed)
        },
    );
    tokio::select! {
        _ = drops => unreachable!("the link drops forever"),
        _ = drained => {}
    }
    link.restore().await;
    eventually(
        "a direct insert after the drain",
        PATIENCE,
        POLL,
        || async { (sensor.metric("sensor_readings_inserted_total").await > 0.0).then_some(()) },
    )
    .await;
    let interruptions = sensor
        .metric("sensor_spool_replay_interruptions_total")
        .await;
    let skipped = sensor.metric("sensor_ticks_skipped_total").await;
    let lateness = sensor.metric("sensor_tick_lateness_max_seconds").await;
    sensor.stop().await;

    let stored: u64 = db
        .pool
        .get_conn()
        .await
        .unwrap()
        .exec_first(
            "SELECT COUNT(*) FROM mediciones WHERE ciudad IN (?, ?)",
            (BACKLOG[0], BACKLOG[1]),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        2 * BACKLOG_TICKS as u64,
        "every spooled reading stored once"
    );
    assert!(
        interruptions >= 1.0,
        "the link never cut a replay short: the test did not test anything"
    );
    assert_eq!(skipped, 0.0, "no tick skipped during the replay");
    let ticks = assert_complete_ticks_since(&db.pool, 1, started).await;
    println!(
        "flaky link: {stored} spooled readings stored across {interruptions} interrupted replays; \
         {ticks} ticks complete beside it, none skipped, the latest {lateness:.3} s after it was due"
    );
    db.drop().await;
}
