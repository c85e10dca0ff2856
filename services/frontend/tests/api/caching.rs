//! The page cache seen from a client: validators, encodings, and that an
//! outage is never hidden behind a cached healthy page.

use std::io::Read;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, ETAG, IF_NONE_MATCH, VARY};
use telemetry_core::testing::{eventually, reading, seconds_ago};
use telemetry_core::Source;

use crate::helpers::{spawn_app, spawn_app_with, Options, TestApp, PATIENCE, POLL};

/// The status, ETag, Content-Encoding and raw body of `GET path` with the
/// given request headers.
async fn fetch(
    app: &TestApp,
    path: &str,
    headers: &[(reqwest::header::HeaderName, &str)],
) -> (u16, String, Option<String>, Vec<u8>) {
    let mut request = app.client.get(format!("{}{path}", app.address));
    for (name, value) in headers {
        request = request.header(name, *value);
    }
    let response = request.send().await.expect("request to the app");
    let status = response.status().as_u16();
    let etag = response.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(response.headers()[VARY], "Accept-Encoding");
    let encoding = response
        .headers()
        .get(CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap().to_owned());
    (
        status,
        etag,
        encoding,
        response.bytes().await.unwrap().to_vec(),
    )
}

/// A fresh reading of Cali at 24.0 °C.
fn cali_now() -> telemetry_core::NewReading {
    reading("Cali", seconds_ago(20), 24.0, 70, Source::OpenMeteo)
}

/// `body` as sent with `Content-Encoding: encoding`, decoded.
fn decode(encoding: Option<&str>, body: Vec<u8>) -> Vec<u8> {
    let mut decoded = Vec::new();
    match encoding {
        Some("br") => brotli::BrotliDecompress(&mut &body[..], &mut decoded).unwrap(),
        Some("gzip") => {
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut decoded)
                .unwrap();
        }
        _ => return body,
    }
    decoded
}

/// The render an ETag names, without its coding suffix.
fn digest(etag: &str) -> &str {
    etag.trim_matches('"').split('-').next().unwrap()
}

#[tokio::test]
async fn a_conditional_request_for_the_current_version_gets_304_without_a_body() {
    let app = spawn_app().await;
    app.insert(&[cali_now()]).await;
    // The page changes with every background read (once a second here), so
    // ask again until the second request lands in the same version.
    let (status, body) = eventually("a 304 for the current version", PATIENCE, POLL, || async {
        let (_, etag, _, _) = fetch(&app, "/?city=Cali", &[]).await;
        let (status, again, _, body) = fetch(&app, "/?city=Cali", &[(IF_NONE_MATCH, &etag)]).await;
        (again == etag).then_some((status, body))
    })
    .await;
    assert_eq!(status, 304);
    assert!(body.is_empty(), "a 304 has no body");

    let (status, _, _, body) =
        fetch(&app, "/?city=Cali", &[(IF_NONE_MATCH, "\"not-this-one\"")]).await;
    assert_eq!(status, 200);
    assert!(!body.is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn every_encoding_decodes_to_the_same_page() {
    let app = spawn_app().await;
    app.insert(&[cali_now()]).await;
    let (plain, gzip, brotli) = eventually("three forms of one render", PATIENCE, POLL, || async {
        let plain = fetch(&app, "/fragment/panel", &[]).await;
        let gzip = fetch(
            &app,
            "/fragment/panel",
            &[(ACCEPT_ENCODING, "gzip, deflate")],
        )
        .await;
        let brotli = fetch(
            &app,
            "/fragment/panel",
            &[(ACCEPT_ENCODING, "gzip, deflate, br")],
        )
        .await;
        (digest(&plain.1) == digest(&gzip.1) && digest(&gzip.1) == digest(&brotli.1))
            .then_some((plain, gzip, brotli))
    })
    .await;
    assert_eq!(plain.2, None);
    assert_eq!(gzip.2.as_deref(), Some("gzip"));
    assert_eq!(brotli.2.as_deref(), Some("br"));
    assert!(plain.1 != gzip.1 && gzip.1 != brotli.1, "one ETag per form");
    assert_eq!(decode(gzip.2.as_deref(), gzip.3), plain.3);
    assert_eq!(decode(brotli.2.as_deref(), brotli.3), plain.3);
    assert!(String::from_utf8(plain.3).unwrap().contains("24.0 °C"));
    app.cleanup().await;
}

#[tokio::test]
async fn new_data_changes_the_etag() {
    let app = spawn_app().await;
    app.insert(&[reading(
        "Cali",
        seconds_ago(60),
        24.0,
        70,
        Source::OpenMeteo,
    )])
    .await;
    let (_, before, _, _) = fetch(&app, "/?city=Cali", &[]).await;
    app.insert(&[reading("Cali", seconds_ago(5), 26.5, 70, Source::OpenMeteo)])
        .await;
    let (status, after, _, body) = fetch(&app, "/?city=Cali", &[(IF_NONE_MATCH, &before)]).await;
    assert_eq!(status, 200, "the old version is not current any more");
    assert_ne!(after, before);
    assert!(String::from_utf8(body).unwrap().contains("26.5 °C"));
    app.cleanup().await;
}

#[tokio::test]
async fn during_an_outage_the_page_is_the_degraded_one() {
    let mut app = spawn_app_with(Options {
        through_forwarder: true,
        ..Options::default()
    })
    .await;
    app.insert(&[reading(
        "Cali",
        seconds_ago(20),
        24.2,
        71,
        Source::OpenMeteo,
    )])
    .await;
    let (_, healthy, _, _) = fetch(&app, "/?city=Cali", &[(ACCEPT_ENCODING, "br")]).await;

    app.forwarder.as_mut().unwrap().cut();
    // Noticed by the background read or by any query; from then on every
    // page, in every coding and whatever the client holds, says so.
    eventually("the outage shows", PATIENCE, POLL, || async {
        let (_, html) = app.get_text("/?city=Cali").await;
        html.contains("Database unreachable since").then_some(())
    })
    .await;
    for coding in ["br", "gzip", "identity"] {
        let (status, etag, encoding, body) = fetch(
            &app,
            "/?city=Cali",
            &[(ACCEPT_ENCODING, coding), (IF_NONE_MATCH, &healthy)],
        )
        .await;
        assert_eq!(status, 200, "{coding}: the healthy version is not current");
        assert_ne!(etag, healthy);
        let html = decode(encoding.as_deref(), body);
        let html = String::from_utf8(html).unwrap();
        assert!(html.contains("Database unreachable since"), "{coding}");
        assert!(html.contains("24.2 °C"), "{coding}: last known data");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn readings_pages_join_the_panels_window_and_the_database_seamlessly() {
    let app = spawn_app().await;
    // More than the window holds (1,001 per city), one a tick.
    let total = 1_100;
    let readings: Vec<_> = (0..total)
        .map(|tick| {
            reading(
                "Cali",
                seconds_ago(15 * (tick + 1)),
                20.0,
                70,
                Source::OpenMeteo,
            )
        })
        .collect();
    app.insert(&readings).await;

    // The first page lies within the window (answered from memory), the
    // second reaches past it (answered by the database).
    let (status, first) = app.get_json("/api/readings?city=Cali&limit=1000").await;
    assert_eq!(status, 200, "{first}");
    let again = app
        .get("/api/readings?city=Cali&limit=1000")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&again).unwrap(),
        first,
        "the same query, the same reply"
    );
    let cursor = first["next_before_id"].as_u64().expect("a next page");
    let (status, second) = app
        .get_json(&format!(
            "/api/readings?city=Cali&limit=1000&before_id={cursor}"
        ))
        .await;
    assert_eq!(status, 200, "{second}");
    assert!(
        second["next_before_id"].is_null(),
        "{}",
        second["next_before_id"]
    );

    let ticks: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| page["readings"].as_array().unwrap())
        .map(|row| row["fecha_registro"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ticks.len(), total as usize, "every reading exactly once");
    assert!(
        ticks.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first, across the two pages"
    );
    app.cleanup().await;
}
