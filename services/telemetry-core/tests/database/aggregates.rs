//! The hourly aggregates (`mediciones_hourly`, migration V2): kept by a
//! trigger, filled for rows that were there before it.

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use mysql_async::prelude::Queryable;
use telemetry_core::migration::migrate;
use telemetry_core::reading::insert_batch;
use telemetry_core::testing::{self, TestDatabase};
use telemetry_core::{NewReading, Source};

use super::TIMEOUT;

/// One hourly row: city, hour, then the counts, sums, minima and maxima.
type Hourly = (
    String,
    NaiveDateTime,
    u64,
    u64,
    f64,
    Option<f64>,
    Option<f64>,
    u64,
    u64,
    Option<u8>,
    Option<u8>,
);

/// The same columns computed from scratch over `mediciones`.
const FROM_SCRATCH: &str = "SELECT ciudad, \
     CAST(DATE_FORMAT(fecha_registro, '%Y-%m-%d %H:00:00') AS DATETIME) AS hour_start, \
     COUNT(*), COUNT(temperatura), COALESCE(SUM(temperatura), 0), MIN(temperatura), \
     MAX(temperatura), COUNT(humedad), COALESCE(SUM(humedad), 0), MIN(humedad), MAX(humedad) \
     FROM mediciones GROUP BY ciudad, hour_start ORDER BY ciudad, hour_start";

const KEPT: &str = "SELECT ciudad, hour, readings, temperature_count, temperature_sum, \
     temperature_min, temperature_max, humidity_count, humidity_sum, humidity_min, humidity_max \
     FROM mediciones_hourly ORDER BY ciudad, hour";

/// Asserts that the aggregate table holds exactly what a GROUP BY over
/// `mediciones` gives, and returns it. Sums are compared to within rounding:
/// the trigger adds in insertion order, the GROUP BY in index order.
pub(super) async fn assert_aggregates_match(db: &TestDatabase) -> Vec<Hourly> {
    let mut conn = db.pool.get_conn().await.unwrap();
    let kept: Vec<Hourly> = conn.query(KEPT).await.unwrap();
    let scratch: Vec<Hourly> = conn.query(FROM_SCRATCH).await.unwrap();
    assert_eq!(kept.len(), scratch.len(), "hours: {kept:?} vs {scratch:?}");
    for (kept, scratch) in kept.iter().zip(&scratch) {
        assert!(
            (kept.4 - scratch.4).abs() < 1e-9,
            "temperature sums: {kept:?} vs {scratch:?}"
        );
        let mut rounded = kept.clone();
        rounded.4 = scratch.4;
        assert_eq!(&rounded, scratch);
    }
    kept
}

fn hour(h: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 11, 23)
        .unwrap()
        .and_hms_opt(h, 0, 0)
        .unwrap()
}

fn reading(
    city: &str,
    at: NaiveDateTime,
    temperature: Option<f64>,
    humidity: Option<u8>,
) -> NewReading {
    NewReading {
        temperatura: temperature,
        humedad: humidity,
        ..testing::reading(city, at, 0.0, 0, Source::Simulated)
    }
}

#[tokio::test]
async fn the_trigger_keeps_the_hourly_aggregates_equal_to_a_group_by() {
    let db = TestDatabase::create().await;
    // One batch across three hours and two cities, with missing values,
    // and a tick at the very end of an hour and at the start of the next.
    let batch = vec![
        reading(
            "Cali",
            hour(10) + TimeDelta::minutes(1),
            Some(20.5),
            Some(70),
        ),
        reading("Cali", hour(10) + TimeDelta::minutes(2), Some(22.25), None),
        reading("Cali", hour(10) + TimeDelta::minutes(3), None, Some(90)),
        reading(
            "Cali",
            hour(11) - TimeDelta::seconds(1),
            Some(19.0),
            Some(60),
        ),
        reading("Cali", hour(11), None, None),
        reading(
            "Bogotá",
            hour(11) + TimeDelta::minutes(30),
            Some(12.1),
            Some(80),
        ),
        reading(
            "Bogotá",
            hour(12) + TimeDelta::minutes(45),
            Some(-1.5),
            Some(0),
        ),
    ];
    assert_eq!(insert_batch(&db.pool, &batch, TIMEOUT).await.unwrap(), 7);
    // A replay of the same batch plus one new reading: INSERT IGNORE skips
    // the seven, and only the new one is counted.
    let mut replay = batch.clone();
    replay.push(reading(
        "Cali",
        hour(10) + TimeDelta::minutes(4),
        Some(30.0),
        Some(50),
    ));
    assert_eq!(insert_batch(&db.pool, &replay, TIMEOUT).await.unwrap(), 1);

    let kept = assert_aggregates_match(&db).await;
    let cali_10 = kept
        .iter()
        .find(|row| row.0 == "Cali" && row.1 == hour(10))
        .expect("Cali's 10:00 hour");
    assert_eq!(
        *cali_10,
        (
            "Cali".to_owned(),
            hour(10),
            5,
            4,
            20.5 + 22.25 + 19.0 + 30.0,
            Some(19.0),
            Some(30.0),
            4,
            70 + 90 + 60 + 50,
            Some(50),
            Some(90),
        )
    );
    let cali_11 = kept
        .iter()
        .find(|row| row.0 == "Cali" && row.1 == hour(11))
        .expect("Cali's 11:00 hour");
    assert_eq!(
        (cali_11.2, cali_11.3, cali_11.5, cali_11.7, cali_11.9),
        (1, 0, None, 0, None),
        "an hour of missing values counts its readings and has no extremes"
    );
    assert_eq!(kept.len(), 4);
    db.drop().await;
}

#[tokio::test]
async fn the_migration_fills_the_aggregates_of_rows_stored_before_it() {
    let db = TestDatabase::empty().await;
    // The schema before V2, holding readings.
    db.migrate_without_adoption().await;
    let readings: Vec<_> = (0..12)
        .map(|i| {
            let at = hour(3) + TimeDelta::minutes(20 * i);
            let temperature = (i % 5 != 0).then_some(15.0 + i as f64);
            reading("Medellín", at, temperature, Some(50 + i as u8))
        })
        .collect();
    assert_eq!(
        insert_batch(&db.pool, &readings, TIMEOUT).await.unwrap(),
        12
    );

    let applied = migrate(&db.pool, None).await.unwrap();
    assert_eq!(applied.len(), 1, "V2 only: {applied:?}");
    let kept = assert_aggregates_match(&db).await;
    assert_eq!(kept.len(), 4, "four hours of three readings each");
    assert!(kept.iter().all(|row| row.2 == 3));

    // And from then on the trigger keeps them.
    let later = [reading(
        "Medellín",
        hour(3) + TimeDelta::minutes(5),
        Some(40.0),
        None,
    )];
    assert_eq!(insert_batch(&db.pool, &later, TIMEOUT).await.unwrap(), 1);
    assert_eq!(assert_aggregates_match(&db).await[0].6, Some(40.0));
    db.drop().await;
}

/// Two writers at once (two sites, or a restore beside the sensor) update
/// the same hourly rows through the trigger, in opposite city orders: InnoDB
/// may then roll one statement back as a deadlock victim. Every batch must
/// still go in, and the aggregates stay exact.
#[tokio::test]
async fn concurrent_writers_on_the_same_hours_all_get_in() {
    let db = TestDatabase::create().await;
    let cities = testing::city_names();
    let batches = |offset_secs: i64, reversed: bool| -> Vec<Vec<NewReading>> {
        let mut order = cities.clone();
        if reversed {
            order.reverse();
        }
        (0..30)
            .map(|batch| {
                (0..5)
                    .flat_map(|tick| {
                        let at =
                            hour(0) + TimeDelta::seconds((batch * 5 + tick) * 30 + offset_secs);
                        order
                            .iter()
                            .map(move |city| reading(city, at, Some(20.0), Some(50)))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            })
            .collect()
    };
    let write = |batches: Vec<Vec<NewReading>>| {
        let pool = db.pool.clone();
        async move {
            let mut inserted = 0;
            for batch in &batches {
                inserted += insert_batch(&pool, batch, TIMEOUT).await.unwrap();
            }
            inserted
        }
    };
    let (first, second) = tokio::join!(write(batches(0, false)), write(batches(15, true)));
    let per_writer = 30 * 5 * cities.len() as u64;
    assert_eq!((first, second), (per_writer, per_writer));
    let kept = assert_aggregates_match(&db).await;
    assert_eq!(kept.iter().map(|row| row.2).sum::<u64>(), 2 * per_writer);
    db.drop().await;
}
