use std::time::Duration;

use mysql_async::prelude::Queryable;
use sensor_simulator::pacing::FetchPolicy;
use telemetry_core::testing::{eventually, TestDatabase};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

const PATIENCE: Duration = Duration::from_secs(20);

#[tokio::test]
async fn stores_one_row_per_city_per_tick_with_observation_time_and_source() {
    let db = TestDatabase::create().await;
    let (body, minute) = current_reply();
    let api = api_answering(&body).await;
    let sensor = RunningSensor::start(|spool| settings(&db.settings, &api.uri(), spool));
    eventually("three ticks stored", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= 3 * CITIES as u64).then_some(())
    })
    .await;
    sensor.stop().await;

    // The first request asks for both cities at once, in the documented form.
    let requests = api.received_requests().await.unwrap();
    let first = &requests[0];
    assert_eq!(query(first, "latitude").unwrap(), "4.711,6.2442");
    assert_eq!(query(first, "longitude").unwrap(), "-74.0721,-75.5812");
    for request in &requests {
        assert_eq!(
            query(request, "current").unwrap(),
            "temperature_2m,relative_humidity_2m,apparent_temperature,weather_code,wind_speed_10m"
        );
        assert_eq!(query(request, "apikey"), None, "no key configured");
    }

    let mut conn = db.pool.get_conn().await.unwrap();
    type Row = (String, Option<f64>, Option<u8>, String, String);
    let rows: Vec<Row> = conn
        .query(
            "SELECT ciudad, temperatura, humedad, source, DATE_FORMAT(observed_at, '%Y-%m-%d %H:%i') \
             FROM mediciones ORDER BY id",
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0],
        (
            "Bogotá".into(),
            Some(16.5),
            Some(72),
            "open-meteo".into(),
            minute.replace('T', " ")
        )
    );
    assert_eq!(rows[1].0, "Medellín");
    assert_eq!(rows[1].1, Some(26.3));
    let per_tick: Vec<u64> = conn
        .query("SELECT COUNT(*) FROM mediciones GROUP BY fecha_registro")
        .await
        .unwrap();
    assert!(
        per_tick.iter().all(|&count| count == CITIES as u64),
        "{per_tick:?}"
    );
    drop(conn);
    db.drop().await;
}

#[tokio::test]
async fn on_new_observation_fetches_a_current_observation_once_and_reuses_it_until_due() {
    let db = TestDatabase::create().await;
    // An observation from this minute, current for 15 minutes.
    let (body, _) = current_reply();
    let api = api_answering(&body).await;
    let sensor = RunningSensor::start(|spool| {
        let mut settings = settings(&db.settings, &api.uri(), spool);
        settings.sensor.fetch_policy = FetchPolicy::OnNewObservation;
        settings
    });
    eventually("four ticks stored", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= 4 * CITIES as u64).then_some(())
    })
    .await;
    sensor.stop().await;
    assert_eq!(api.received_requests().await.unwrap().len(), 1);
    db.drop().await;
}

async fn no_rows_and_error_counted(reply: ResponseTemplate, kind: &str) {
    let db = TestDatabase::create().await;
    let api = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(reply)
        .mount(&api)
        .await;
    let sensor = RunningSensor::start(|spool| settings(&db.settings, &api.uri(), spool));
    let metric = format!("sensor_api_errors_total{{kind=\"{kind}\"}}");
    eventually(&format!("{metric} >= 2"), PATIENCE, POLL, || async {
        (sensor.metric(&metric).await >= 2.0).then_some(())
    })
    .await;
    sensor.stop().await;
    assert_eq!(
        row_count(&db.pool).await,
        0,
        "nothing is invented when the API fails"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_400_reply_is_counted_and_stores_nothing() {
    let body = include_str!("../../../telemetry-core/tests/fixtures/error-400.json");
    no_rows_and_error_counted(
        ResponseTemplate::new(400).set_body_raw(body, "application/json"),
        "rejected",
    )
    .await;
}

#[tokio::test]
async fn a_429_reply_is_counted_and_stores_nothing() {
    let body = include_str!("../../../telemetry-core/tests/fixtures/error-429.json");
    no_rows_and_error_counted(
        ResponseTemplate::new(429).set_body_raw(body, "application/json"),
        "rate_limited",
    )
    .await;
}

#[tokio::test]
async fn a_timeout_is_counted_and_stores_nothing() {
    let reply = ResponseTemplate::new(200)
        .set_body_raw(current_reply().0, "application/json")
        .set_delay(Duration::from_secs(5));
    no_rows_and_error_counted(reply, "timeout").await;
}

#[tokio::test]
async fn malformed_json_is_counted_and_stores_nothing() {
    let (body, _) = current_reply();
    let truncated = body[..body.len() / 2].to_owned();
    no_rows_and_error_counted(
        ResponseTemplate::new(200).set_body_raw(truncated, "application/json"),
        "malformed",
    )
    .await;
}

#[tokio::test]
async fn missing_fields_are_stored_as_null_never_invented() {
    let db = TestDatabase::create().await;
    let body = current_reply()
        .0
        .replace(",\"relative_humidity_2m\":58", "");
    let api = api_answering(&body).await;
    let sensor = RunningSensor::start(|spool| settings(&db.settings, &api.uri(), spool));
    eventually("a tick stored", PATIENCE, POLL, || async {
        (row_count(&db.pool).await >= CITIES as u64).then_some(())
    })
    .await;
    sensor.stop().await;
    let mut conn = db.pool.get_conn().await.unwrap();
    let humidity: Option<Option<u8>> = conn
        .query_first("SELECT humedad FROM mediciones WHERE ciudad = 'Medellín' LIMIT 1")
        .await
        .unwrap();
    assert_eq!(humidity, Some(None));
    drop(conn);
    db.drop().await;
}
