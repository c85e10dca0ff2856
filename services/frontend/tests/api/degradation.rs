use telemetry_core::testing::{eventually, reading, seconds_ago};
use telemetry_core::Source;

use crate::helpers::{spawn_app_with, Options, PATIENCE, POLL};

#[tokio::test]
async fn database_outage_keeps_the_page_up_and_recovers_by_itself() {
    let mut app = spawn_app_with(Options {
        through_forwarder: true,
        ..Options::default()
    })
    .await;
    let cali = reading("Cali", seconds_ago(20), 24.2, 71, Source::OpenMeteo);
    app.insert(&[cali]).await;
    let (status, html) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("24.2 °C"));

    // Outage. The page reads no database itself: it shows the outage once
    // the background read (or any other query) has run into it.
    app.forwarder.as_mut().unwrap().cut();

    eventually("the page reports the outage", PATIENCE, POLL, || async {
        let (status, html) = app.get_text("/").await;
        assert_eq!(status, 200, "the page answers without its database");
        html.contains("Database unreachable since").then_some(())
    })
    .await;
    let (status, html) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("last known data"));
    assert!(html.contains("24.2 °C"), "last known data still shown");
    assert!(html.contains("16.5 °C"), "live weather still shown");

    let response = app.get("/api/readings").await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let json: serde_json::Value = response.json().await.unwrap();
    assert_eq!(json["error"], "database unavailable");
    let (status, _) = app.get_json("/api/cities").await;
    assert_eq!(status, 503);
    let (status, body) = app.get_text("/api/readings.csv").await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, 503);
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200, "the process itself is fine");
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("frontend_database_up 0"), "{metrics}");

    // Recovery, without a restart.
    app.forwarder.as_mut().unwrap().restore().await;
    app.insert(&[reading("Cali", seconds_ago(5), 25.7, 69, Source::OpenMeteo)])
        .await;

    eventually(
        "the panel sees the database again",
        PATIENCE,
        POLL,
        || async {
            let (status, _) = app.get_json("/readyz").await;
            (status == 200).then_some(())
        },
    )
    .await;
    eventually(
        "the page shows fresh data without a banner",
        PATIENCE,
        POLL,
        || async {
            let (status, html) = app.get_text("/").await;
            (status == 200 && !html.contains("Database unreachable") && html.contains("25.7 °C"))
                .then_some(())
        },
    )
    .await;
    let (status, json) = app.get_json("/api/readings?city=Cali").await;
    assert_eq!(status, 200);
    assert_eq!(json["readings"].as_array().unwrap().len(), 2);
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(metrics.contains("frontend_database_up 1"), "{metrics}");
    app.cleanup().await;
}

#[tokio::test]
async fn page_answers_when_the_database_was_never_reachable() {
    let mut app = spawn_app_with(Options {
        database_down_at_start: true,
        ..Options::default()
    })
    .await;

    let (status, html) = app.get_text("/?city=Cali").await;

    assert_eq!(status, 200);
    assert!(html.contains("Database unreachable since"));
    assert!(html.contains("No data has been read"));
    assert!(html.contains("Live weather · Cali") && html.contains("16.5 °C"));
    app.forwarder.as_mut().unwrap().restore().await;
    app.cleanup().await;
}
