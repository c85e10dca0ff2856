//! How often the real sensor calls a real HTTP stub: each fetch policy, an
//! hour of 5xx replies, a 429 with `Retry-After`, a spent budget (all on a
//! virtual clock driving the fetcher), and ticks that go on while the API
//! hangs (on the real clock).

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use mysql_async::prelude::Queryable;
use secrecy::SecretString;
use sensor_simulator::pacing::FetchPolicy;
use sensor_simulator::settings::Settings;
use telemetry_core::testing::{eventually, TestDatabase};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const PATIENCE: Duration = Duration::from_secs(30);
/// The production tick: backoff is counted in ticks, so the calls an hour
/// costs are the production figures.
const TICK_SECS: u64 = 15;

/// A start on a minute boundary, so ticks fall at whole offsets from it.
fn aligned_now() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::minutes(1)).unwrap()
}

fn production_tick(
    database: &TestDatabase,
    api: &MockServer,
) -> impl FnOnce(std::path::PathBuf) -> Settings {
    let database = database.settings.clone();
    let api = api.uri();
    move |spool| {
        let mut settings = settings(&database, &api, spool);
        settings.sensor.interval_secs = TICK_SECS;
        settings
    }
}

/// The latitudes each request asked for, in order.
async fn requests(api: &MockServer) -> Vec<String> {
    api.received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| requested_latitudes(request).join(","))
        .collect()
}

#[tokio::test]
async fn round_robin_asks_for_every_city_at_start_then_for_one_city_per_tick_in_turn() {
    let db = TestDatabase::create().await;
    let api = api_answering(&current_reply().0).await;
    let start = aligned_now();
    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(production_tick(&db, &api), clock.clone());
    let waiting_for = clock.run_until(start + TimeDelta::seconds(45)).await;
    assert_eq!(waiting_for, start + TimeDelta::seconds(60));
    assert_eq!(
        requests(&api).await,
        ["4.711,6.2442", "4.711", "6.2442", "4.711"]
    );
    // Open-Meteo counts the first request twice: one call per city.
    assert_eq!(sensor.metric("sensor_api_calls_total").await, 5.0);
    assert_eq!(
        sensor.metric("sensor_api_budget_remaining").await,
        sensor.metric("sensor_api_budget_calls").await - 5.0
    );
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn every_tick_asks_for_all_cities_every_tick_with_the_apikey() {
    let db = TestDatabase::create().await;
    let api = api_answering(&current_reply().0).await;
    let start = aligned_now();
    let clock = VirtualClock::starting_at(start);
    let tick = production_tick(&db, &api);
    let sensor = RunningSensor::start_with_clock(
        |spool| {
            let mut settings = tick(spool);
            settings.sensor.fetch_policy = FetchPolicy::EveryTick;
            settings.weather.apikey = Some(SecretString::from("k3y"));
            settings.weather.daily_budget = 100_000;
            settings
        },
        clock.clone(),
    );
    clock.run_until(start + TimeDelta::seconds(60)).await;
    assert_eq!(requests(&api).await, ["4.711,6.2442"; 5]);
    for request in api.received_requests().await.unwrap() {
        assert_eq!(query(&request, "apikey").as_deref(), Some("k3y"));
    }
    assert_eq!(sensor.metric("sensor_api_calls_total").await, 10.0);
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn an_hour_of_5xx_replies_costs_a_handful_of_calls() {
    let db = TestDatabase::create().await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).set_body_raw(
            r#"{"error":true,"reason":"overloaded"}"#,
            "application/json",
        ))
        .mount(&api)
        .await;
    let start = aligned_now();
    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(production_tick(&db, &api), clock.clone());
    let waiting_for = clock
        .run_until(start + TimeDelta::hours(1) - TimeDelta::milliseconds(1))
        .await;

    let requests = requests(&api).await;
    let calls = sensor.metric("sensor_api_calls_total").await;
    let backoff = sensor.metric("sensor_api_backoff_seconds").await;
    println!(
        "an hour of 503: {} requests, {calls} calls as Open-Meteo counts them, \
         the next one {} s after the hour, backoff now {backoff} s",
        requests.len(),
        (waiting_for - start - TimeDelta::hours(1)).num_seconds()
    );
    // 0, 60, 180, 420, 900 and 1860 s, each up to a quarter earlier
    // (jitter): 6 requests, or 7 when the jitter makes the waits short.
    assert!((6..=7).contains(&requests.len()), "{requests:?}");
    // All cities once (nothing was held), then one city to probe.
    assert_eq!(requests[0], "4.711,6.2442");
    assert!(requests[1..]
        .iter()
        .all(|latitudes| !latitudes.contains(',')));
    assert_eq!(calls, requests.len() as f64 + 1.0);
    assert_eq!(
        sensor
            .metric("sensor_api_errors_total{kind=\"unavailable\"}")
            .await,
        requests.len() as f64
    );
    assert!((1350.0..=1800.0).contains(&backoff), "{backoff}");
    sensor.stop().await;
    assert_eq!(row_count(&db.pool).await, 0);
    db.drop().await;
}

#[tokio::test]
async fn a_429_with_retry_after_an_hour_means_no_call_until_the_hour_has_passed() {
    let db = TestDatabase::create().await;
    let api = MockServer::start().await;
    let rate_limited = include_str!("../../../telemetry-core/tests/fixtures/error-429.json");
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("Retry-After", "3600")
                .set_body_raw(rate_limited, "application/json"),
        )
        .up_to_n_times(1)
        .mount(&api)
        .await;
    Mock::given(method("GET"))
        .respond_with(CurrentReplies::from_reply(&hourly_reply()))
        .mount(&api)
        .await;
    let start = aligned_now();
    let clock = VirtualClock::starting_at(start);
    let sensor = RunningSensor::start_with_clock(production_tick(&db, &api), clock.clone());

    let hour = start + TimeDelta::hours(1);
    let waiting_for = clock.run_until(hour - TimeDelta::milliseconds(1)).await;
    let before = api.received_requests().await.unwrap().len();
    println!(
        "429 with Retry-After: 3600: {before} request in the hour, the next at +{} s",
        (waiting_for - start).num_seconds()
    );
    assert_eq!(before, 1, "only the request that was refused");
    assert_eq!(waiting_for, hour);
    assert_eq!(sensor.metric("sensor_api_backoff_seconds").await, 3600.0);
    assert_eq!(
        sensor
            .metric("sensor_api_errors_total{kind=\"rate_limited\"}")
            .await,
        1.0
    );

    // The hour has passed: asked again at once, with one city while the
    // last request had failed, then for the other; and rows follow.
    clock.run_until(hour + TimeDelta::seconds(15)).await;
    assert_eq!(requests(&api).await, ["4.711,6.2442", "4.711", "6.2442"]);
    assert_eq!(sensor.metric("sensor_api_backoff_seconds").await, 0.0);
    eventually("rows after the hour", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= CITIES as u64).then_some(())
    })
    .await;
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_spent_budget_means_no_calls_until_the_next_utc_day() {
    let db = TestDatabase::create().await;
    let api = api_answering(&hourly_reply()).await;
    let next_day = (Utc::now() + TimeDelta::days(1))
        .duration_trunc(TimeDelta::days(1))
        .unwrap();
    // Not so close to midnight that the day ends during the first calls.
    let start = aligned_now().min(next_day - TimeDelta::minutes(10));
    let clock = VirtualClock::starting_at(start);
    let tick = production_tick(&db, &api);
    let sensor = RunningSensor::start_with_clock(
        |spool| {
            let mut settings = tick(spool);
            // The panel's worst case for two cities is 576; three are left.
            settings.weather.daily_budget = 576 + 3;
            settings
        },
        clock.clone(),
    );
    let waiting_for = clock.run_until(start + TimeDelta::minutes(5)).await;
    assert_eq!(requests(&api).await, ["4.711,6.2442", "4.711"]);
    assert_eq!(sensor.metric("sensor_api_budget_calls").await, 3.0);
    assert_eq!(sensor.metric("sensor_api_budget_remaining").await, 0.0);
    assert_eq!(waiting_for, next_day);

    // A new UTC day, a new budget.
    clock.run_until(next_day).await;
    assert_eq!(requests(&api).await.len(), 3);
    assert!(sensor.metric("sensor_api_budget_remaining").await < 3.0);
    sensor.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn ticks_go_on_from_the_held_observation_while_the_api_hangs() {
    let db = TestDatabase::create().await;
    let api = MockServer::start().await;
    let (body, minute) = current_reply();
    Mock::given(method("GET"))
        .respond_with(CurrentReplies::from_reply(&body))
        .up_to_n_times(1)
        .mount(&api)
        .await;
    // Then every reply comes long after the client's timeout.
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(body.clone(), "application/json")
                .set_delay(Duration::from_secs(30)),
        )
        .mount(&api)
        .await;
    let sensor = RunningSensor::start(|spool| {
        let mut settings = settings(&db.settings, &api.uri(), spool);
        settings.weather.timeout_secs = 1;
        settings
    });
    eventually("two requests timed out", PATIENCE, POLL, || async {
        (sensor
            .metric("sensor_api_errors_total{kind=\"timeout\"}")
            .await
            >= 2.0)
            .then_some(())
    })
    .await;
    let skipped = sensor.metric("sensor_ticks_skipped_total").await;
    sensor.stop().await;

    let ticks = assert_complete_ticks(&db.pool, 1).await;
    assert_eq!(skipped, 0.0);
    // The first tick after the first reply, and every tick since: the two
    // timeouts (1 s each) and the 4 s backoff between them span 5 s at least.
    assert!(ticks >= 5, "{ticks} ticks");
    let mut conn = db.pool.get_conn().await.unwrap();
    let observed: Vec<String> = conn
        .query("SELECT DISTINCT DATE_FORMAT(observed_at, '%Y-%m-%dT%H:%i') FROM mediciones")
        .await
        .unwrap();
    assert_eq!(
        observed,
        [minute],
        "every row from the one observation held"
    );
    drop(conn);
    println!("API hanging: {ticks} complete ticks in a row, none skipped");
    db.drop().await;
}
