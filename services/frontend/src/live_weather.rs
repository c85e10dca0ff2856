//! Live weather per city from Open-Meteo, cached so the panel asks at most
//! once per city per cache period however many people watch it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, Utc};
use telemetry_core::weather::{City, Observation, WeatherClient};
use tokio::runtime::Handle;

use crate::metrics::Metrics;

/// After a failed request, the next one waits this long: a down or
/// rate-limiting API is not retried on every page refresh.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What the panel knows about a city's current weather.
#[derive(Debug, Clone)]
pub struct LiveReport {
    pub city: City,
    pub observation: Option<Observation>,
    /// When the observation was fetched (UTC).
    pub fetched_at: Option<NaiveDateTime>,
    /// The observation is older than the cache period because refreshing it
    /// failed.
    pub outdated: bool,
    /// Kind of the last failure, while the API is failing.
    pub error: Option<&'static str>,
}

#[derive(Default)]
struct Entry {
    observation: Option<(Observation, Instant, NaiveDateTime)>,
    failed_at: Option<(Instant, &'static str)>,
}

pub struct LiveWeather {
    client: WeatherClient,
    ttl: Duration,
    /// Requests run on the main runtime, like database work: reqwest's
    /// pooled connections belong to the runtime that opened them.
    runtime: Handle,
    /// One lock per city, held during a fetch so concurrent requests for the
    /// same city wait for that fetch instead of each sending their own.
    entries: HashMap<String, (City, tokio::sync::Mutex<Entry>)>,
    metrics: Arc<Metrics>,
}

impl LiveWeather {
    pub fn new(
        client: WeatherClient,
        ttl: Duration,
        cities: &[City],
        metrics: Arc<Metrics>,
    ) -> Self {
        let entries = cities
            .iter()
            .map(|city| {
                (
                    city.name.clone(),
                    (city.clone(), tokio::sync::Mutex::new(Entry::default())),
                )
            })
            .collect();
        Self {
            client,
            ttl,
            runtime: Handle::current(),
            entries,
            metrics,
        }
    }

    /// The city's weather, or `None` for a city that is not configured.
    pub async fn report(&self, city: &str) -> Option<LiveReport> {
        let (city, entry) = self.entries.get(city)?;
        let mut entry = entry.lock().await;
        let fresh =
            matches!(&entry.observation, Some((_, fetched, _)) if fetched.elapsed() < self.ttl);
        let backing_off =
            matches!(entry.failed_at, Some((failed, _)) if failed.elapsed() < RETRY_AFTER_FAILURE);
        if fresh || backing_off {
            self.metrics.weather_cache_hit();
        } else {
            self.metrics.weather_cache_miss();
            let client = self.client.clone();
            let cities = [city.clone()];
            let fetched = self
                .runtime
                .spawn(async move { client.current(&cities).await })
                .await;
            match fetched {
                Ok(Ok(mut observations)) if !observations.is_empty() => {
                    let observation = observations.swap_remove(0);
                    entry.observation = Some((observation, Instant::now(), Utc::now().naive_utc()));
                    entry.failed_at = None;
                }
                Ok(Ok(_)) => entry.failed_at = Some((Instant::now(), "malformed")),
                Ok(Err(error)) => {
                    tracing::warn!(message = "live weather request failed", city = %city.name, %error);
                    self.metrics.weather_error(error.kind());
                    entry.failed_at = Some((Instant::now(), error.kind()));
                }
                Err(error) => {
                    if error.is_panic() {
                        std::panic::resume_unwind(error.into_panic());
                    }
                    entry.failed_at = Some((Instant::now(), "cancelled"));
                }
            }
        }
        let outdated =
            matches!(&entry.observation, Some((_, fetched, _)) if fetched.elapsed() >= self.ttl);
        Some(LiveReport {
            city: city.clone(),
            observation: entry
                .observation
                .as_ref()
                .map(|(observation, _, _)| observation.clone()),
            fetched_at: entry.observation.as_ref().map(|(_, _, at)| *at),
            outdated,
            error: entry.failed_at.map(|(_, kind)| kind),
        })
    }
}
