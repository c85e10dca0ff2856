use telemetry_core::observability::probe_health;

use crate::helpers::spawn_app;

#[tokio::test]
async fn health_readiness_and_healthcheck_probe() {
    let app = spawn_app().await;

    let (status, json) = app.get_json("/healthz").await;
    assert_eq!((status, json["status"].as_str()), (200, Some("ok")));
    let (status, json) = app.get_json("/readyz").await;
    assert_eq!((status, json["status"].as_str()), (200, Some("ready")));
    let port = app.port;
    tokio::task::spawn_blocking(move || probe_health(port))
        .await
        .unwrap()
        .expect("the healthcheck subcommand's probe succeeds");
    app.cleanup().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    app.get("/api/readings").await;
    app.get("/api/readings?limit=0").await;
    app.get("/no/such/page").await;

    let response = app.get("/metrics").await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();

    assert!(
        text.contains("frontend_http_requests_total{route=\"/api/readings\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("frontend_http_requests_total{route=\"unmatched\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("frontend_http_responses_total{status=\"400\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("frontend_http_responses_total{status=\"404\"} 1"),
        "{text}"
    );
    assert!(text.contains("frontend_database_up 1"), "{text}");
    assert!(text.contains("# TYPE frontend_weather_cache_hits_total counter"));
    assert!(text.contains("# TYPE frontend_db_errors_total counter"));
    app.cleanup().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/fragment/panel",
        "/api/readings",
        "/api/readings?limit=x",
        "/api/nothing",
        "/nothing",
        "/static/style.css",
        "/healthz",
        "/metrics",
    ] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(
            headers["content-security-policy"],
            frontend::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    app.cleanup().await;
}

#[tokio::test]
async fn static_assets_are_embedded_and_cacheable() {
    let app = spawn_app().await;
    let (_, html) = app.get_text("/").await;
    let start = html.find("/static/style.css?v=").unwrap();
    let url = &html[start..start + html[start..].find('"').unwrap()];

    let response = app.get(url).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(response.text().await.unwrap().contains(".city-card"));

    let response = app.get("/static/panel.js").await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(
        !response.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable"),
        "unversioned URL"
    );
    assert_eq!(app.get("/static/secret.txt").await.status(), 404);
    assert_eq!(app.get("/static/..%2fCargo.toml").await.status(), 404);
    app.cleanup().await;
}

#[tokio::test]
async fn unknown_paths_are_404_json_under_api() {
    let app = spawn_app().await;
    let (status, json) = app.get_json("/api/nothing").await;
    assert_eq!((status, json["error"].as_str()), (404, Some("not found")));
    let (status, html) = app.get_text("/nothing").await;
    assert_eq!(status, 404);
    assert!(html.contains("Not found"));
    app.cleanup().await;
}

#[tokio::test]
async fn head_is_answered_like_get_and_other_methods_are_refused() {
    let app = spawn_app().await;
    let url = format!("{}/", app.address);
    let response = app.client.head(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("content-security-policy"));
    let response = app.client.post(&url).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let response = app
        .client
        .delete(format!("{}/api/readings", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    app.cleanup().await;
}
