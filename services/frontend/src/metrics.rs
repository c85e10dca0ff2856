//! What the panel exports on `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telemetry_core::metrics::{Counter, CounterVec, Exposition, Gauge};

#[derive(Default)]
pub struct Metrics {
    /// By route pattern (`/api/readings`), never by raw path: a scanner
    /// walking random URLs must not grow this map.
    requests: CounterVec<String>,
    responses: CounterVec<u16>,
    db_errors: CounterVec<&'static str>,
    database_up: AtomicBool,
    weather_cache_hits: Counter,
    weather_cache_misses: Counter,
    weather_errors: CounterVec<&'static str>,
    /// Start of the last good panel read, Unix seconds (0: none yet).
    panel_read_at: Gauge,
    /// Duration of the last good panel read, seconds.
    panel_read_secs: Gauge,
}

impl Metrics {
    /// `route` is the matched route's pattern, or `unmatched`.
    pub fn request(&self, route: &str, status: u16) {
        self.requests.increment(route);
        self.responses.increment(&status);
    }

    pub fn database_result(&self, error_kind: Option<&'static str>) {
        match error_kind {
            None => self.database_up.store(true, Ordering::Relaxed),
            Some(kind) => self.db_errors.increment(&kind),
        }
    }

    pub fn database_down(&self) {
        self.database_up.store(false, Ordering::Relaxed);
    }

    pub fn weather_cache_hit(&self) {
        self.weather_cache_hits.increment();
    }

    pub fn weather_cache_miss(&self) {
        self.weather_cache_misses.increment();
    }

    pub fn weather_error(&self, kind: &'static str) {
        self.weather_errors.increment(&kind);
    }

    /// A good panel read that started at `started_at` and took `took`.
    pub fn panel_read(&self, started_at: SystemTime, took: Duration) {
        let at = started_at.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.panel_read_at.set(at.as_secs_f64());
        self.panel_read_secs.set(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        out.counter_vec(
            "frontend_http_requests_total",
            "HTTP requests by route.",
            "route",
            &self.requests,
        )
        .counter_vec(
            "frontend_http_responses_total",
            "HTTP responses by status code.",
            "status",
            &self.responses,
        )
        .counter_vec(
            "frontend_db_errors_total",
            "Failed database operations by kind.",
            "kind",
            &self.db_errors,
        )
        .gauge(
            "frontend_database_up",
            "1 if the last database access succeeded.",
            f64::from(u8::from(self.database_up.load(Ordering::Relaxed))),
        )
        .counter(
            "frontend_weather_cache_hits_total",
            "Live weather served from the cache.",
            &self.weather_cache_hits,
        )
        .counter(
            "frontend_weather_cache_misses_total",
            "Live weather requests sent to Open-Meteo.",
            &self.weather_cache_misses,
        )
        .counter_vec(
            "frontend_weather_errors_total",
            "Failed Open-Meteo requests by kind.",
            "kind",
            &self.weather_errors,
        )
        .gauge(
            "frontend_panel_data_read_timestamp_seconds",
            "Start of the last good read of the page's data (Unix time): the page and /api/cities show data this old.",
            self.panel_read_at.get(),
        )
        .gauge(
            "frontend_panel_data_read_duration_seconds",
            "How long the last good read of the page's data took.",
            self.panel_read_secs.get(),
        );
        out.finish()
    }
}
