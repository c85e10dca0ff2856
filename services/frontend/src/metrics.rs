//! Counters exported on `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use telemetry_core::metrics::Exposition;

#[derive(Default)]
pub struct Metrics {
    /// By route pattern (`/api/readings`), never by raw path: a scanner
    /// walking random URLs must not grow this map.
    requests: Mutex<BTreeMap<String, u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    db_errors: Mutex<BTreeMap<&'static str, u64>>,
    database_up: AtomicBool,
    weather_cache_hits: AtomicU64,
    weather_cache_misses: AtomicU64,
    weather_errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Start of the last good panel read, Unix seconds as `f64` bits (0: none).
    panel_read_at: AtomicU64,
    /// Duration of the last good panel read, seconds as `f64` bits.
    panel_read_secs: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: String, status: u16) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry(route)
            .or_default() += 1;
        *self
            .responses
            .lock()
            .expect("metrics lock")
            .entry(status)
            .or_default() += 1;
    }

    pub fn database_result(&self, error_kind: Option<&'static str>) {
        match error_kind {
            None => self.database_up.store(true, Ordering::Relaxed),
            Some(kind) => {
                *self
                    .db_errors
                    .lock()
                    .expect("metrics lock")
                    .entry(kind)
                    .or_default() += 1;
            }
        }
    }

    pub fn database_down(&self) {
        self.database_up.store(false, Ordering::Relaxed);
    }

    pub fn weather_cache_hit(&self) {
        self.weather_cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn weather_cache_miss(&self) {
        self.weather_cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn weather_error(&self, kind: &'static str) {
        *self
            .weather_errors
            .lock()
            .expect("metrics lock")
            .entry(kind)
            .or_default() += 1;
    }

    /// A good panel read that started at `started_at` and took `took`.
    pub fn panel_read(&self, started_at: SystemTime, took: Duration) {
        let at = started_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.panel_read_at.store(at.to_bits(), Ordering::Relaxed);
        self.panel_read_secs
            .store(took.as_secs_f64().to_bits(), Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let requests = self.requests.lock().expect("metrics lock").clone();
        let responses: Vec<(String, u64)> = self
            .responses
            .lock()
            .expect("metrics lock")
            .iter()
            .map(|(status, count)| (status.to_string(), *count))
            .collect();
        let db_errors = self.db_errors.lock().expect("metrics lock").clone();
        let weather_errors = self.weather_errors.lock().expect("metrics lock").clone();
        let mut out = Exposition::default();
        out.labelled_counter(
            "frontend_http_requests_total",
            "HTTP requests by route.",
            "route",
            requests
                .iter()
                .map(|(route, count)| (route.as_str(), *count)),
        )
        .labelled_counter(
            "frontend_http_responses_total",
            "HTTP responses by status code.",
            "status",
            responses
                .iter()
                .map(|(status, count)| (status.as_str(), *count)),
        )
        .labelled_counter(
            "frontend_db_errors_total",
            "Failed database operations by kind.",
            "kind",
            db_errors.iter().map(|(kind, count)| (*kind, *count)),
        )
        .gauge(
            "frontend_database_up",
            "1 if the last database access succeeded.",
            if self.database_up.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        )
        .counter(
            "frontend_weather_cache_hits_total",
            "Live weather served from the cache.",
            self.weather_cache_hits.load(Ordering::Relaxed),
        )
        .counter(
            "frontend_weather_cache_misses_total",
            "Live weather requests sent to Open-Meteo.",
            self.weather_cache_misses.load(Ordering::Relaxed),
        )
        .labelled_counter(
            "frontend_weather_errors_total",
            "Failed Open-Meteo requests by kind.",
            "kind",
            weather_errors.iter().map(|(kind, count)| (*kind, *count)),
        )
        .gauge(
            "frontend_panel_data_read_timestamp_seconds",
            "Start of the last good read of the page's data (Unix time): the page and /api/cities show data this old.",
            f64::from_bits(self.panel_read_at.load(Ordering::Relaxed)),
        )
        .gauge(
            "frontend_panel_data_read_duration_seconds",
            "How long the last good read of the page's data took.",
            f64::from_bits(self.panel_read_secs.load(Ordering::Relaxed)),
        );
        out.finish()
    }
}
