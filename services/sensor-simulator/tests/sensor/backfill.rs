//! Filling the gap a downtime left: the real sensor, started after six
//! hours down, against a stub Open-Meteo that answers `minutely_15`
//! requests in the documented shape. The fetcher runs on a virtual clock, so
//! the sensor's start, and with it the gap, is exact.

use std::time::Duration;

use chrono::{DateTime, DurationRound, NaiveDateTime, TimeDelta, Timelike, Utc};
use mysql_async::prelude::Queryable;
use sensor_simulator::settings::Settings;
use serde_json::{json, Value};
use telemetry_core::reading::insert_batch;
use telemetry_core::testing::{eventually, reading, TestDatabase};
use telemetry_core::weather::default_cities;
use telemetry_core::Source;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::*;

const PATIENCE: Duration = Duration::from_secs(30);
const SLOT: TimeDelta = TimeDelta::minutes(15);
const DOWNTIME: TimeDelta = TimeDelta::hours(6);
/// In the stub's reply, the slot (by index in the asked range) where
/// Medellín has neither temperature nor humidity: not a slot to fill.
const MEDELLIN_EMPTY_SLOT: usize = 2;
/// ...and where Bogotá has no temperature: filled with its humidity alone.
const BOGOTA_NO_TEMPERATURE_SLOT: usize = 3;

/// Answers `current` requests as [`CurrentReplies`] and `minutely_15`
/// requests as Open-Meteo does: one series per requested city, a value for
/// every quarter hour from `start_minutely_15` to `end_minutely_15`, and two
/// more (the slot the sensor started in, and one in the future) to prove
/// that only the asked-for past is stored.
struct OpenMeteoStub {
    current: CurrentReplies,
}

impl Respond for OpenMeteoStub {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if query(request, "minutely_15").is_none() {
            return self.current.respond(request);
        }
        let minute = |name| {
            let text = query(request, name).expect("start and end of the range");
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M").expect("YYYY-MM-DDTHH:MM")
        };
        let (from, to) = (minute("start_minutely_15"), minute("end_minutely_15"));
        let mut times = Vec::new();
        let mut at = from;
        while at <= to + SLOT * 2 {
            times.push(at);
            at += SLOT;
        }
        let locations: Vec<Value> = requested_latitudes(request)
            .iter()
            .enumerate()
            .map(|(index, _)| past_location(index, &times))
            .collect();
        let body = match locations.as_slice() {
            [one] => one.clone(),
            _ => Value::Array(locations),
        };
        ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json")
    }
}

/// One location of a `minutely_15` reply; `index` is its place in the
/// request (Bogotá first, then Medellín).
fn past_location(index: usize, times: &[NaiveDateTime]) -> Value {
    let temperature: Vec<Value> = (0..times.len())
        .map(|slot| match (index, slot) {
            (0, BOGOTA_NO_TEMPERATURE_SLOT) | (1, MEDELLIN_EMPTY_SLOT) => Value::Null,
            _ => json!(14.0 + index as f64 * 8.0 + slot as f64 / 10.0),
        })
        .collect();
    let humidity: Vec<Value> = (0..times.len())
        .map(|slot| match (index, slot) {
            (1, MEDELLIN_EMPTY_SLOT) => Value::Null,
            _ => json!(80 - index * 10),
        })
        .collect();
    let mut location = json!({
        "latitude": 4.625,
        "longitude": -74.125,
        "generationtime_ms": 0.3,
        "utc_offset_seconds": 0,
        "timezone": "GMT",
        "timezone_abbreviation": "GMT",
        "elevation": 2556.0,
        "minutely_15_units": {"time": "iso8601", "temperature_2m": "°C", "relative_humidity_2m": "%"},
        "minutely_15": {
            "time": times.iter().map(|at| at.format("%Y-%m-%dT%H:%M").to_string()).collect::<Vec<_>>(),
            "temperature_2m": temperature,
            "relative_humidity_2m": humidity,
            "apparent_temperature": vec![json!(13.0); times.len()],
            "weather_code": vec![json!(3); times.len()],
            "wind_speed_10m": vec![json!(5.5); times.len()],
        }
    });
    if index > 0 {
        location["location_id"] = json!(index);
    }
    location
}

async fn stub_open_meteo() -> MockServer {
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(OpenMeteoStub {
            current: CurrentReplies::from_reply(&current_reply().0),
        })
        .mount(&api)
        .await;
    api
}

/// The `minutely_15` requests the stub received.
async fn past_requests(api: &MockServer) -> Vec<Request> {
    api.received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|request| query(request, "minutely_15").is_some())
        .collect()
}

/// The sensor at the production tick (its budget then spares calls for the
/// backfill), with `backfill_max_hours`.
fn sensor_settings(
    database: &TestDatabase,
    api: &MockServer,
    backfill_max_hours: u64,
) -> impl FnOnce(std::path::PathBuf) -> Settings {
    let database = database.settings.clone();
    let api = api.uri();
    move |spool| {
        let mut settings = settings(&database, &api, spool);
        settings.sensor.interval_secs = 15;
        settings.sensor.backfill_max_hours = backfill_max_hours;
        settings
    }
}

/// What the sensor stored for each city before it went down: a row every
/// 15 s for the ten minutes up to `last_row`.
async fn rows_before_the_outage(database: &TestDatabase, last_row: NaiveDateTime) {
    let rows: Vec<_> = default_cities()[..CITIES]
        .iter()
        .flat_map(|city| {
            (0..40).map(|step| {
                let at = last_row - TimeDelta::seconds(15 * step);
                reading(&city.name, at, 20.0, 70, Source::OpenMeteo)
            })
        })
        .collect();
    let inserted = insert_batch(&database.pool, &rows, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(inserted, 80);
}

/// (city, time, source) of every row stored as filled in, in time order.
async fn filled_rows(database: &TestDatabase) -> Vec<(String, NaiveDateTime, String)> {
    let mut conn = database.pool.get_conn().await.unwrap();
    conn.query(
        "SELECT ciudad, fecha_registro, source FROM mediciones \
         WHERE source IN ('backfill', 'interpolated') ORDER BY ciudad, fecha_registro",
    )
    .await
    .unwrap()
}

/// The sensor's start, on a whole second like the stored times.
fn start() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::seconds(1)).unwrap()
}

fn slot_of(at: NaiveDateTime) -> NaiveDateTime {
    at.duration_trunc(SLOT).unwrap()
}

#[tokio::test]
async fn six_hours_down_are_filled_slot_by_slot_with_full_hours_and_interpolated_quarters() {
    let db = TestDatabase::create().await;
    let api = stub_open_meteo().await;
    let start = start();
    let last_row = start.naive_utc() - DOWNTIME;
    rows_before_the_outage(&db, last_row).await;

    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(sensor_settings(&db, &api, 168), clock.clone());
    // The first fetch and the backfill happen at the start; the fetcher
    // then waits for the next tick.
    clock.run_until(start).await;

    // The slots from the one after the last row's to the last one ended by
    // the start: six hours of quarter hours, less the one the last row is in
    // (the slot the sensor started in is the live readings').
    let first = slot_of(last_row) + SLOT;
    let last = slot_of(start.naive_utc()) - SLOT;
    let slots: Vec<NaiveDateTime> = (0..)
        .map(|index| first + SLOT * index)
        .take_while(|at| *at <= last)
        .collect();
    assert_eq!(slots.len(), 23, "{first} to {last}");
    let full_hours = slots.iter().filter(|at| at.minute() == 0).count();
    assert!((5..=6).contains(&full_hours), "{full_hours}");

    let expected = |city: &str, skipped: Option<usize>| -> Vec<(String, NaiveDateTime, String)> {
        slots
            .iter()
            .enumerate()
            .filter(|(index, _)| Some(*index) != skipped)
            .map(|(_, at)| {
                let source = if at.minute() == 0 {
                    "backfill"
                } else {
                    "interpolated"
                };
                (city.to_owned(), *at, source.to_owned())
            })
            .collect()
    };
    let mut wanted = expected("Bogotá", None);
    wanted.extend(expected("Medellín", Some(MEDELLIN_EMPTY_SLOT)));
    wanted.sort();
    let filled = eventually("the gap filled", PATIENCE, POLL, || async {
        let filled = filled_rows(&db).await;
        (filled.len() >= wanted.len()).then_some(filled)
    })
    .await;
    // Bogotá: all 23 slots; Medellín: 22 (one slot had neither value). Not
    // the slot the sensor started in, nor the future one the reply held.
    assert_eq!(filled, wanted);
    assert_eq!(filled.len(), 23 + 22);

    // Bogotá's slot without a temperature is stored with its humidity.
    let mut conn = db.pool.get_conn().await.unwrap();
    let humidity_only: Vec<(Option<f64>, Option<u8>, Option<NaiveDateTime>)> = conn
        .exec(
            "SELECT temperatura, humedad, observed_at FROM mediciones \
             WHERE ciudad = 'Bogotá' AND fecha_registro = ?",
            (slots[BOGOTA_NO_TEMPERATURE_SLOT],),
        )
        .await
        .unwrap();
    assert_eq!(
        humidity_only,
        [(None, Some(80), Some(slots[BOGOTA_NO_TEMPERATURE_SLOT]))]
    );
    // The rows from before the outage are untouched, and nothing filled in
    // shares their slot or comes at or after the start.
    let before: Vec<(String, u64)> = conn
        .exec(
            "SELECT source, COUNT(*) FROM mediciones WHERE fecha_registro <= ? GROUP BY source",
            (last_row,),
        )
        .await
        .unwrap();
    assert_eq!(before, [("open-meteo".to_owned(), 80)]);
    let late: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM mediciones \
             WHERE source IN ('backfill', 'interpolated') AND fecha_registro >= ?",
            (start.naive_utc(),),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(late, 0);
    drop(conn);

    // One request for both cities, for exactly the gap, in UTC.
    let requests = past_requests(&api).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(requested_latitudes(request), ["4.711", "6.2442"]);
    let minute = |at: NaiveDateTime| Some(at.format("%Y-%m-%dT%H:%M").to_string());
    assert_eq!(query(request, "start_minutely_15"), minute(first));
    assert_eq!(query(request, "end_minutely_15"), minute(last));
    assert_eq!(query(request, "timezone").as_deref(), Some("GMT"));
    assert_eq!(
        query(request, "minutely_15").as_deref(),
        Some(
            "temperature_2m,relative_humidity_2m,apparent_temperature,weather_code,wind_speed_10m"
        )
    );

    let full_hour_rows = wanted.iter().filter(|row| row.2 == "backfill").count();
    assert_eq!(
        sensor
            .metric("sensor_backfilled_total{source=\"backfill\"}")
            .await,
        full_hour_rows as f64
    );
    assert_eq!(
        sensor
            .metric("sensor_backfilled_total{source=\"interpolated\"}")
            .await,
        (45 - full_hour_rows) as f64
    );
    // The first fetch and the backfill, each a call per city.
    assert_eq!(sensor.metric("sensor_api_calls_total").await, 4.0);
    println!(
        "six hours down: {} slots per city from {first} to {last}, {} rows filled \
         ({full_hours} full hours a city)",
        slots.len(),
        filled.len()
    );
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_fresh_database_backfills_nothing_and_asks_for_no_past_data() {
    let db = TestDatabase::create().await;
    let api = stub_open_meteo().await;
    let start = start();
    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(sensor_settings(&db, &api, 168), clock.clone());
    // The first fetch done, and the backfill's turn, the fetcher waits for
    // the next tick.
    clock.run_until(start).await;
    assert!(past_requests(&api).await.is_empty());
    assert!(filled_rows(&db).await.is_empty());
    assert_eq!(sensor.metric("sensor_api_calls_total").await, 2.0);
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn backfill_max_hours_zero_turns_the_backfill_off() {
    let db = TestDatabase::create().await;
    let api = stub_open_meteo().await;
    let start = start();
    rows_before_the_outage(&db, start.naive_utc() - DOWNTIME).await;
    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(sensor_settings(&db, &api, 0), clock.clone());
    clock.run_until(start).await;
    assert!(past_requests(&api).await.is_empty());
    assert!(filled_rows(&db).await.is_empty());
    sensor.stop().await;
    db.drop().await;
}
