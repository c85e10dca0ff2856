//! Long-range charts: `/api/aggregates` (JSON and CSV) and the page's range
//! choice, both read from the hourly aggregates the database keeps.

use telemetry_core::testing::{eventually, reading, seconds_ago};
use telemetry_core::{NewReading, Source};

use crate::helpers::{spawn_app, TestApp, PATIENCE, POLL};

/// Three days of Cali, one reading an hour, at 10 °C plus its age in hours;
/// the reading 5 hours old has no temperature.
fn three_days_of_cali() -> Vec<NewReading> {
    (0..72)
        .map(|hours| {
            let mut row = reading(
                "Cali",
                seconds_ago(60 + hours * 3600),
                10.0 + hours as f64,
                50,
                Source::OpenMeteo,
            );
            if hours == 5 {
                row.temperatura = None;
            }
            row
        })
        .collect()
}

async fn rows(app: &TestApp, query: &str) -> Vec<serde_json::Value> {
    let (status, json) = app.get_json(&format!("/api/aggregates?{query}")).await;
    assert_eq!(status, 200, "{query}: {json}");
    json.as_array().expect("an array").clone()
}

#[tokio::test]
async fn aggregates_come_per_hour_or_per_day_as_json_and_csv() {
    let app = spawn_app().await;
    app.insert(&three_days_of_cali()).await;

    let week = rows(&app, "city=cali&range=7d").await;
    assert_eq!(week.len(), 72, "one row per hour with readings");
    let newest = &week[71];
    assert_eq!(newest["city"], "Cali", "the configured name");
    assert_eq!(newest["count"], 1);
    assert_eq!(newest["temperature_min"], 10.0);
    assert_eq!(newest["temperature_mean"], 10.0);
    assert_eq!(newest["temperature_max"], 10.0);
    assert_eq!(newest["humidity_mean"], 50.0);
    let no_temperature = &week[71 - 5];
    assert_eq!(no_temperature["count"], 1);
    assert!(
        no_temperature["temperature_mean"].is_null(),
        "{no_temperature}"
    );
    assert!(no_temperature["temperature_min"].is_null());
    assert_eq!(no_temperature["humidity_max"], 50.0);
    let froms: Vec<&str> = week
        .iter()
        .map(|row| row["from"].as_str().unwrap())
        .collect();
    assert!(
        froms.windows(2).all(|pair| pair[0] < pair[1]),
        "oldest first"
    );
    assert!(
        froms.iter().all(|from| from.ends_with(":00:00")),
        "{froms:?}"
    );

    // The same hours, counted in the other ranges.
    let day = rows(&app, "city=Cali&range=24h").await;
    assert!((23..=24).contains(&day.len()), "{}", day.len());
    assert_eq!(rows(&app, "city=Cali&range=30d").await, week);
    assert_eq!(rows(&app, "city=Cali").await, day, "24h is the default");
    let year = rows(&app, "city=Cali&range=1y").await;
    assert!((3..=4).contains(&year.len()), "three days: {year:?}");
    assert!(year
        .iter()
        .all(|row| row["from"].as_str().unwrap().ends_with(" 00:00:00")));
    let readings: u64 = year.iter().map(|row| row["count"].as_u64().unwrap()).sum();
    assert_eq!(readings, 72);
    // A day sums up its hours: the lowest and highest of today's hours.
    let newest_day = year.last().unwrap();
    let today = &newest_day["from"].as_str().unwrap()[..10];
    let today_maxima: Vec<f64> = week
        .iter()
        .filter(|row| row["from"].as_str().unwrap().starts_with(today))
        .filter_map(|row| row["temperature_max"].as_f64())
        .collect();
    assert_eq!(newest_day["temperature_min"], 10.0);
    assert_eq!(
        newest_day["temperature_max"].as_f64(),
        today_maxima.into_iter().reduce(f64::max)
    );

    // The CSV has the same rows and columns.
    let response = app.get("/api/aggregates.csv?city=Cali&range=7d").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let csv = response.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|line| !line.is_empty()).collect();
    assert_eq!(
        lines[0],
        "city,from,count,temperature_min,temperature_mean,temperature_max,humidity_min,humidity_mean,humidity_max"
    );
    assert_eq!(lines.len(), 73);
    assert_eq!(
        lines[72],
        format!(
            "Cali,{},1,10,10,10,50,50,50",
            newest["from"].as_str().unwrap()
        )
    );
    assert_eq!(
        lines[72 - 5],
        format!(
            "Cali,{},1,,,,50,50,50",
            no_temperature["from"].as_str().unwrap()
        )
    );

    // A configured city without readings has no rows.
    assert!(rows(&app, "city=Bogota&range=1y").await.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn aggregates_refuse_what_they_cannot_answer_naming_the_parameter() {
    let app = spawn_app().await;
    for path in ["/api/aggregates", "/api/aggregates.csv"] {
        let (status, body) = app.get_text(&format!("{path}?city=Cali&range=2w")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"detail":"must be one of 24h, 7d, 30d, 1y","error":"invalid parameter","parameter":"range"}"#
        );
        let (status, body) = app.get_text(&format!("{path}?range=7d")).await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            r#"{"detail":"required","error":"invalid parameter","parameter":"city"}"#
        );
        // An unknown city gets the words /api/weather gives it.
        let (status, body) = app.get_text(&format!("{path}?city=Atlantis")).await;
        let (_, weather) = app.get_text("/api/weather?city=Atlantis").await;
        assert_eq!((status, body), (400, weather));
        let (status, json) = app.get_json(&format!("{path}?city=Cali&limit=5")).await;
        assert_eq!((status, json["parameter"].as_str()), (400, Some("limit")));
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_page_offers_each_range_as_a_link_and_draws_it_without_javascript() {
    let app = spawn_app().await;
    app.insert(&three_days_of_cali()).await;
    for (range, heading) in [
        ("24h", "Last 24 hours"),
        ("7d", "Last 7 days"),
        ("30d", "Last 30 days"),
        ("1y", "Last year"),
    ] {
        let (status, html) = app.get_text(&format!("/?city=Cali&range={range}")).await;
        assert_eq!(status, 200, "{range}");
        assert!(
            html.contains(&format!(">{heading}</h2>")),
            "{range}: {html}"
        );
        for link in ["24h", "7d", "30d", "1y"] {
            assert!(
                html.contains(&format!("href=\"/?city=Cali&amp;range={link}\"")),
                "{range}: link to {link}"
            );
        }
        assert!(html.contains(&format!("aria-current=\"page\">{range}</a>")));
        // Works without JavaScript: the page reloads itself, the chart is
        // in the HTML, the city form keeps the range.
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\""));
        assert_eq!(
            html.matches("<svg").count(),
            1,
            "{range}: Cali's chart only"
        );
        if range != "24h" {
            assert!(html.contains("<polygon"), "{range}: the min–max band");
            assert!(html.contains(&format!(
                "<input type=\"hidden\" name=\"range\" value=\"{range}\">"
            )));
        }
        // The fragment panel.js fetches shows the same range.
        let (status, fragment) = app
            .get_text(&format!("/fragment/panel?city=Cali&range={range}"))
            .await;
        assert_eq!(status, 200);
        assert!(fragment.contains(&format!(">{heading}</h2>")));
    }
    let (status, html) = app.get_text("/?range=2w").await;
    assert_eq!(status, 400);
    assert!(html.contains("The charts show 24h, 7d, 30d, 1y."), "{html}");
    app.cleanup().await;
}

#[tokio::test]
async fn the_page_cache_keeps_each_range_apart() {
    let app = spawn_app().await;
    app.insert(&three_days_of_cali()).await;
    // The page changes with every background read (once a second here):
    // ask until all three requests land in the same version.
    let (week, day) = eventually("three pages of one version", PATIENCE, POLL, || async {
        let first = app.get("/?city=Cali&range=7d").await;
        let etag = first.headers()["etag"].clone();
        let week = first.text().await.unwrap();
        let day = app.get_text("/?city=Cali&range=24h").await.1;
        let again = app.get("/?city=Cali&range=7d").await;
        (again.headers()["etag"] == etag).then_some((week, day))
    })
    .await;
    assert!(week.contains(">Last 7 days</h2>"));
    assert!(day.contains(">Last 24 hours</h2>"), "not the 7-day page");
    app.cleanup().await;
}
