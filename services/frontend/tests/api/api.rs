use std::collections::HashSet;

use telemetry_core::testing::{reading, seconds_ago};
use telemetry_core::Source;

use crate::helpers::spawn_app;

#[tokio::test]
async fn readings_filter_by_city_and_time_range() {
    let app = spawn_app().await;
    let mut readings = Vec::new();
    for step in 0..10 {
        let at = seconds_ago(step * 60);
        readings.push(reading("Cali", at, 24.0, 70, Source::OpenMeteo));
        readings.push(reading("Bogotá", at, 14.0, 80, Source::OpenMeteo));
    }
    app.insert(&readings).await;
    // Between 7.5 and 2.5 minutes ago: ticks 3, 4, 5, 6 and 7 minutes ago.
    let now = telemetry_core::time::now_utc();
    let since = (now - chrono::TimeDelta::seconds(450))
        .and_utc()
        .to_rfc3339();
    let until = (now - chrono::TimeDelta::seconds(150))
        .and_utc()
        .to_rfc3339();
    let query = format!(
        "/api/readings?city=Cali&since={}&until={}",
        urlencode(&since),
        urlencode(&until)
    );

    let (status, json) = app.get_json(&query).await;

    assert_eq!(status, 200, "{json}");
    let rows = json["readings"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{json}");
    assert!(rows.iter().all(|row| row["ciudad"] == "Cali"));
    let ticks: Vec<&str> = rows
        .iter()
        .map(|row| row["fecha_registro"].as_str().unwrap())
        .collect();
    let mut sorted = ticks.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ticks, sorted, "newest first");
    assert!(json["next_before_id"].is_null());
    app.cleanup().await;
}

#[tokio::test]
async fn readings_paginate_with_before_id_without_gaps_or_repeats() {
    let app = spawn_app().await;
    // Several cities on the same ticks: ties on fecha_registro.
    let mut readings = Vec::new();
    for step in 0..9 {
        let at = seconds_ago(step * 15);
        for city in ["Cali", "Bogotá", "Pereira"] {
            readings.push(reading(city, at, 20.0, 60, Source::Simulated));
        }
    }
    app.insert(&readings).await;

    let mut seen = HashSet::new();
    let mut pages = 0;
    let mut query = "/api/readings?limit=10".to_string();
    loop {
        let (status, json) = app.get_json(&query).await;
        assert_eq!(status, 200, "{json}");
        pages += 1;
        for row in json["readings"].as_array().unwrap() {
            assert!(
                seen.insert(row["id"].as_u64().unwrap()),
                "repeated row {row}"
            );
        }
        match json["next_before_id"].as_u64() {
            Some(id) => query = format!("/api/readings?limit=10&before_id={id}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 27);
    assert_eq!(pages, 3);

    // Within one city the tick alone orders the rows.
    let mut seen = HashSet::new();
    let mut query = "/api/readings?city=Cali&limit=4".to_string();
    loop {
        let (status, json) = app.get_json(&query).await;
        assert_eq!(status, 200, "{json}");
        for row in json["readings"].as_array().unwrap() {
            assert_eq!(row["ciudad"], "Cali");
            assert!(
                seen.insert(row["id"].as_u64().unwrap()),
                "repeated row {row}"
            );
        }
        match json["next_before_id"].as_u64() {
            Some(id) => query = format!("/api/readings?city=Cali&limit=4&before_id={id}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 9);
    app.cleanup().await;
}

#[tokio::test]
async fn cities_gives_the_latest_reading_of_each_configured_city() {
    let app = spawn_app().await;
    app.insert(&[
        reading("Cali", seconds_ago(60), 23.0, 70, Source::OpenMeteo),
        reading("Cali", seconds_ago(15), 24.5, 71, Source::OpenMeteo),
        reading("Bogotá", seconds_ago(15), 14.0, 80, Source::Simulated),
    ])
    .await;

    let (status, json) = app.get_json("/api/cities").await;

    assert_eq!(status, 200);
    let cities = json["cities"].as_array().unwrap();
    assert_eq!(cities.len(), 7);
    let cali = cities.iter().find(|city| city["ciudad"] == "Cali").unwrap();
    assert_eq!(cali["latest"]["temperatura"], 24.5);
    assert_eq!(cali["stale"], false);
    let bogota = cities
        .iter()
        .find(|city| city["ciudad"] == "Bogotá")
        .unwrap();
    assert_eq!(bogota["latest"]["source"], "simulated");
    let medellin = cities
        .iter()
        .find(|city| city["ciudad"] == "Medellín")
        .unwrap();
    assert!(medellin["latest"].is_null());
    assert_eq!(medellin["stale"], true);
    app.cleanup().await;
}

#[tokio::test]
async fn weather_endpoint_serves_a_configured_city() {
    let app = spawn_app().await;

    let (status, json) = app.get_json("/api/weather?city=Cali").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["city"], "Cali");
    assert_eq!(json["temperature"], 16.5);
    assert_eq!(json["humidity"], 72);
    assert_eq!(json["observed_at"], "2026-11-23 15:00:00");

    let (status, json) = app.get_json("/api/weather").await;
    assert_eq!((status, json["parameter"].as_str()), (400, Some("city")));
    let (status, json) = app.get_json("/api/weather?city=Atlantis").await;
    assert_eq!((status, json["parameter"].as_str()), (400, Some("city")));
    app.cleanup().await;
}

#[tokio::test]
async fn csv_export_streams_a_range_across_pages() {
    let app = spawn_app().await;
    // 2,500 ticks of one city (more than one page of the stream), one other.
    let readings: Vec<_> = (0..2500)
        .map(|step| {
            reading(
                "Cali",
                seconds_ago(10 + step * 15),
                20.0 + (step % 10) as f64 / 10.0,
                65,
                Source::OpenMeteo,
            )
        })
        .chain([reading(
            "Bogotá",
            seconds_ago(10),
            14.0,
            80,
            Source::OpenMeteo,
        )])
        .collect();
    app.insert(&readings).await;

    let since = (telemetry_core::time::now_utc() - chrono::TimeDelta::days(2))
        .and_utc()
        .to_rfc3339();
    let response = app
        .get(&format!(
            "/api/readings.csv?city=Cali&since={}",
            urlencode(&since)
        ))
        .await;

    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let body = response.text().await.unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "id,ciudad,temperatura,humedad,fecha_registro,source,observed_at,apparent_temperature,weather_code,wind_speed");
    assert_eq!(lines.len(), 2501, "header plus every Cali row");
    assert!(lines[1..]
        .iter()
        .all(|line| line.split(',').nth(1) == Some("Cali")));
    let ticks: Vec<&str> = lines[1..]
        .iter()
        .map(|line| line.split(',').nth(4).unwrap())
        .collect();
    assert!(
        ticks.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first, no repeats"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn csv_export_defaults_to_the_last_day() {
    let app = spawn_app().await;
    app.insert(&[
        reading("Cali", seconds_ago(60), 24.0, 70, Source::OpenMeteo),
        reading("Cali", seconds_ago(2 * 86_400), 22.0, 70, Source::OpenMeteo),
    ])
    .await;

    let (status, body) = app.get_text("/api/readings.csv").await;

    assert_eq!(status, 200);
    assert_eq!(body.lines().count(), 2, "{body}");
    app.cleanup().await;
}

#[tokio::test]
async fn invalid_parameters_get_a_400_naming_them() {
    let app = spawn_app().await;
    let cases = [
        ("/api/readings?since=2025-02-30", "since"),
        ("/api/readings?until=tomorrow", "until"),
        ("/api/readings?since=2026-01-02&until=2026-01-01", "until"),
        ("/api/readings?limit=1000000", "limit"),
        ("/api/readings?limit=abc", "limit"),
        ("/api/readings?before_id=-5", "before_id"),
        ("/api/readings?before_id=999999999", "before_id"),
        ("/api/readings?colour=red", "colour"),
        ("/api/readings?city=a&city=b", "city"),
        ("/api/cities?city=Cali", "city"),
        (
            "/api/readings.csv?since=1990-01-01&until=2026-01-01",
            "since",
        ),
        ("/api/readings.csv?limit=5", "limit"),
    ];
    for (query, parameter) in cases {
        let (status, json) = app.get_json(query).await;
        assert_eq!(status, 400, "{query}: {json}");
        assert_eq!(json["error"], "invalid parameter", "{query}");
        assert_eq!(json["parameter"], parameter, "{query}: {json}");
        assert!(json["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()));
    }
    app.cleanup().await;
}

#[tokio::test]
async fn hostile_input_never_gets_a_5xx_or_sql_text() {
    let app = spawn_app().await;
    let cali = reading("Cali", seconds_ago(60), 24.0, 70, Source::OpenMeteo);
    app.insert(&[cali]).await;
    let long = "x".repeat(5000);
    let hostile_values = [
        "' OR '1'='1",
        "Cali'; DROP TABLE mediciones; --",
        "\" OR 1=1 --",
        "%00",
        "%F0%9F%92%A9",
        "%FF%FE",
        "9999-12-31T23:59:59Z",
        "0000-00-00",
        "2026-13-45T99:99:99Z",
        "18446744073709551616",
        "-1",
        "1e308",
        long.as_str(),
        "<script>alert(1)</script>",
        "${jndi:ldap://x}",
    ];
    let mut checked = 0;
    for value in hostile_values {
        for name in ["city", "since", "until", "limit", "before_id"] {
            for endpoint in [
                "/api/readings",
                "/api/readings.csv",
                "/api/weather",
                "/api/cities",
                "/",
                "/fragment/panel",
            ] {
                let query = format!("{endpoint}?{name}={value}");
                let (status, body) = app.get_text(&query).await;
                assert!(status < 500, "{query} -> {status}: {body}");
                let lower = body.to_lowercase();
                for leak in ["sql", "syntax", "mysql", "mariadb"] {
                    assert!(!lower.contains(leak), "{query} leaked {leak:?}: {body}");
                }
                checked += 1;
            }
        }
    }
    // Still there, still answering.
    let (status, json) = app.get_json("/api/readings?city=Cali").await;
    assert_eq!(status, 200);
    assert_eq!(json["readings"].as_array().unwrap().len(), 1);
    assert!(checked > 400);
    app.cleanup().await;
}

fn urlencode(value: &str) -> String {
    value.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn cities_are_found_as_people_type_them() {
    let app = spawn_app().await;
    app.insert(&[reading(
        "Bogotá",
        seconds_ago(20),
        14.0,
        80,
        Source::OpenMeteo,
    )])
    .await;

    let (status, json) = app.get_json("/api/readings?city=Bogota").await;
    assert_eq!(status, 200, "{json}");
    let rows = json["readings"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["ciudad"], "Bogotá", "stored names stay canonical");

    let (status, json) = app.get_json("/api/weather?city=medellin").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["city"], "Medellín");

    let (status, html) = app.get_text("/?city=BOGOTA").await;
    assert_eq!(status, 200);
    assert!(html.contains("Live weather · Bogotá"), "{html}");

    let (status, csv) = app.get_text("/api/readings.csv?city=bogota").await;
    assert_eq!(status, 200);
    assert!(csv.contains(",Bogotá,14"), "{csv}");
    app.cleanup().await;
}
