use telemetry_core::testing::{city_names, reading, seconds_ago};
use telemetry_core::weather::City;
use telemetry_core::Source;
use wiremock::ResponseTemplate;

use crate::helpers::{spawn_app, spawn_app_with, Options};

#[tokio::test]
async fn page_shows_every_city_card_chart_and_latest_table() {
    let app = spawn_app().await;
    let cities = city_names();
    // Two hours of readings every 5 minutes for every city.
    let mut readings = Vec::new();
    for (index, city) in cities.iter().enumerate() {
        for step in 0..24 {
            let source = if index == 1 {
                Source::Simulated
            } else {
                Source::OpenMeteo
            };
            readings.push(reading(
                city,
                seconds_ago(10 + step * 300),
                15.0 + index as f64,
                60 + step as u8,
                source,
            ));
        }
    }
    app.insert(&readings).await;

    let (status, html) = app.get_text("/").await;

    assert_eq!(status, 200);
    for city in &cities {
        assert!(
            html.contains(&format!("<h3 class=\"card-title\">{city}</h3>")),
            "no card for {city}"
        );
    }
    assert_eq!(html.matches("class=\"card city-card").count(), cities.len());
    assert_eq!(
        html.matches("<svg").count(),
        cities.len(),
        "one chart per city"
    );
    assert!(html.contains("<polyline"), "charts have lines");
    // The seed's table: header row plus the latest 15 readings.
    let table = &html[html.find("<table").unwrap()..html.find("</table>").unwrap()];
    assert_eq!(table.matches("<tr>").count(), 16, "{table}");
    for column in ["id", "ciudad", "temperatura", "humedad", "fecha_registro"] {
        assert!(
            table.contains(&format!(">{column}</th>")),
            "column {column}"
        );
    }
    // Where each reading came from: source and database node.
    assert!(html.contains("tag-simulated"));
    assert!(html.contains("tag-node") && html.contains("db-master"));
    // Live weather from the fake Open-Meteo (16.5 °C, code 3).
    assert!(
        html.contains("16.5 °C") && html.contains("Overcast"),
        "live weather"
    );
    assert!(!html.contains("Database unreachable"));
    app.cleanup().await;
}

#[tokio::test]
async fn old_readings_are_flagged_stale() {
    let app = spawn_app().await;
    app.insert(&[
        reading("Cali", seconds_ago(20), 24.0, 70, Source::OpenMeteo),
        reading("Bogotá", seconds_ago(3600), 14.0, 80, Source::OpenMeteo),
    ])
    .await;

    let (_, html) = app.get_text("/").await;

    let bogota = html.find(">Bogotá</h3>").unwrap();
    let card_start = html[..bogota].rfind("<article").unwrap();
    assert!(
        html[card_start..bogota].contains("stale"),
        "Bogotá is an hour old"
    );
    let cali = html.find(">Cali</h3>").unwrap();
    let card_start = html[..cali].rfind("<article").unwrap();
    assert!(!html[card_start..cali].contains("stale"), "Cali is fresh");
    assert!(html.contains("1 h ago") || html.contains("60 min ago"));
    app.cleanup().await;
}

#[tokio::test]
async fn fragment_is_the_panel_without_the_layout() {
    let app = spawn_app().await;
    let cali = reading("Cali", seconds_ago(20), 24.0, 70, Source::OpenMeteo);
    app.insert(&[cali]).await;

    let response = app.get("/fragment/panel?city=Cali").await;
    assert_eq!(response.status(), 200);
    // Stored, but revalidated before each use (ETag): never shown stale.
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let html = response.text().await.unwrap();

    assert!(!html.contains("<html"));
    assert!(html.contains("city-card"));
    assert!(html.contains("Live weather · Cali"));
    app.cleanup().await;
}

#[tokio::test]
async fn city_selector_chooses_the_live_weather_city() {
    let app = spawn_app().await;

    let (status, html) = app.get_text("/?city=Cartagena").await;
    assert_eq!(status, 200);
    assert!(html.contains("Live weather · Cartagena"));
    assert!(
        html.contains("<option value=\"Cartagena\" selected>"),
        "selector keeps the choice"
    );

    let (status, html) = app.get_text("/?city=Atlantis").await;
    assert_eq!(status, 400);
    assert!(html.contains("Unknown city"));
    app.cleanup().await;
}

#[tokio::test]
async fn hostile_city_names_are_escaped() {
    let hostile = "<script>alert(1)</script>";
    let app = spawn_app_with(Options {
        cities: vec![
            City::new(hostile, 4.7, -74.0, 14.0),
            City::new("Cali", 3.4, -76.5, 24.5),
        ],
        ..Options::default()
    })
    .await;
    app.insert(&[
        reading(hostile, seconds_ago(30), 10.0, 50, Source::Simulated),
        reading(hostile, seconds_ago(330), 11.0, 55, Source::Simulated),
    ])
    .await;

    let (status, html) = app.get_text("/").await;

    assert_eq!(status, 200);
    assert!(!html.contains(hostile));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_eq!(html.matches("<script").count(), 1, "only panel.js");
    app.cleanup().await;
}

#[tokio::test]
async fn live_weather_is_cached_per_city() {
    let app = spawn_app().await;

    for _ in 0..3 {
        assert_eq!(app.get("/?city=Cali").await.status(), 200);
    }
    let (status, _) = app.get_json("/api/weather?city=Cali").await;
    assert_eq!(status, 200);
    assert_eq!(app.get("/?city=Pereira").await.status(), 200);

    let requests = app.weather.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "one request per city, the rest from the cache"
    );
    let (_, metrics) = app.get_text("/metrics").await;
    assert!(
        metrics.contains("frontend_weather_cache_hits_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("frontend_weather_cache_misses_total 2"),
        "{metrics}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn page_still_renders_when_open_meteo_fails() {
    let app = spawn_app_with(Options {
        weather: ResponseTemplate::new(503).set_body_string("down"),
        ..Options::default()
    })
    .await;
    let cali = reading("Cali", seconds_ago(20), 24.0, 70, Source::OpenMeteo);
    app.insert(&[cali]).await;

    let (status, html) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(html.contains("Live weather is unavailable right now"));
    assert!(html.contains("24.0 °C"), "database data still shown");

    let (status, json) = app.get_json("/api/weather?city=Bogot%C3%A1").await;
    assert_eq!(status, 503);
    assert_eq!(json["error"], "weather unavailable");
    app.cleanup().await;
}

#[tokio::test]
async fn ages_are_the_observations_ages() {
    let app = spawn_app().await;
    // Stored 5 s ago, from an observation 25 minutes old (Cali), and from
    // one 40 minutes old (Pereira): the API stopped updating it.
    let observed = |city, seconds| telemetry_core::NewReading {
        observed_at: Some(seconds_ago(seconds)),
        ..reading(city, seconds_ago(5), 24.0, 70, Source::OpenMeteo)
    };
    app.insert(&[observed("Cali", 25 * 60), observed("Pereira", 40 * 60)])
        .await;

    let (status, html) = app.get_text("/?city=Cali").await;
    assert_eq!(status, 200);
    let card = |city: &str| {
        let title = html.find(&format!(">{city}</h3>")).unwrap();
        let start = html[..title].rfind("<article").unwrap();
        let end = title + html[title..].find("</article>").unwrap();
        html[start..end].to_owned()
    };
    let cali = card("Cali");
    assert!(
        cali.contains("observed <time") && cali.contains("25 min ago"),
        "{cali}"
    );
    assert!(!cali.contains("stale"), "{cali}");
    let pereira = card("Pereira");
    assert!(
        pereira.contains("40 min ago") && pereira.contains("stale"),
        "{pereira}"
    );
    assert!(
        html.contains("<th>observed</th>"),
        "the table shows each row's observation"
    );

    let (_, json) = app.get_json("/api/cities").await;
    let cali = json["cities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|city| city["ciudad"] == "Cali")
        .unwrap();
    let age = cali["observation_age_seconds"].as_i64().unwrap();
    assert!((25 * 60..25 * 60 + 30).contains(&age), "{cali}");
    assert!(cali["age_seconds"].as_i64().unwrap() < 60, "{cali}");
    app.cleanup().await;
}
