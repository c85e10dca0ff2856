//! Live weather per city from Open-Meteo, cached so the panel asks at most
//! once per city per cache period however many people watch it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// What a city's live weather shows, in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeatherVersion {
    pub fetched_at: Option<NaiveDateTime>,
    pub outdated: bool,
    pub error: Option<&'static str>,
}

#[derive(Default)]
struct Entry {
    observation: Option<(Observation, Instant, NaiveDateTime)>,
    failed_at: Option<(Instant, &'static str)>,
    /// A request to Open-Meteo for this city is under way.
    refreshing: bool,
}

impl Entry {
    /// Nothing to show yet: no observation, and no failure either.
    fn is_blank(&self) -> bool {
        self.observation.is_none() && self.failed_at.is_none()
    }
}

/// Cloned into the refresh tasks, which outlive the request that started them.
#[derive(Clone)]
pub struct LiveWeather {
    shared: Arc<Shared>,
}

struct Shared {
    client: WeatherClient,
    ttl: Duration,
    /// Requests run on the main runtime, like database work: reqwest's
    /// pooled connections belong to the runtime that opened them.
    runtime: Handle,
    entries: HashMap<String, (City, Mutex<Entry>)>,
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
                    (city.clone(), Mutex::new(Entry::default())),
                )
            })
            .collect();
        Self {
            shared: Arc::new(Shared {
                client,
                ttl,
                runtime: Handle::current(),
                entries,
                metrics,
            }),
        }
    }

    /// The city's weather, or `None` for a city that is not configured. When
    /// the cached report is due for a refresh, one request to Open-Meteo
    /// starts in the background and this answers with what is held, so a
    /// page never waits for the API; only the very first ask for a city,
    /// with nothing to show yet, waits for that request.
    pub async fn report(&self, city: &str) -> Option<LiveReport> {
        self.refreshed(city).await?;
        self.held(city)
    }

    /// What is held for `city` now, without asking Open-Meteo or counting
    /// a cache lookup: for rendering what [`version`](Self::version) saw.
    pub fn held(&self, city: &str) -> Option<LiveReport> {
        let (city, entry) = self.shared.entries.get(city)?;
        let entry = entry.lock().expect("weather cache lock");
        let WeatherVersion {
            fetched_at,
            outdated,
            error,
        } = self.version_of(&entry);
        Some(LiveReport {
            city: city.clone(),
            observation: entry
                .observation
                .as_ref()
                .map(|(observation, _, _)| observation.clone()),
            fetched_at,
            outdated,
            error,
        })
    }

    /// What [`report`](Self::report) would show, in brief, without copying
    /// it: the page cache compares this to decide whether to render again.
    pub async fn version(&self, city: &str) -> Option<WeatherVersion> {
        let entry = self.refreshed(city).await?;
        let entry = entry.lock().expect("weather cache lock");
        Some(self.version_of(&entry))
    }

    /// The city's entry, after starting a refresh if one is due.
    async fn refreshed(&self, city: &str) -> Option<&Mutex<Entry>> {
        let shared = &self.shared;
        let (city, entry) = shared.entries.get(city)?;
        let refresh = {
            let mut entry = entry.lock().expect("weather cache lock");
            let fresh = matches!(&entry.observation, Some((_, fetched, _)) if fetched.elapsed() < shared.ttl);
            let backing_off = matches!(entry.failed_at, Some((failed, _)) if failed.elapsed() < RETRY_AFTER_FAILURE);
            if fresh || backing_off || entry.refreshing {
                shared.metrics.weather_cache_hit();
                None
            } else {
                shared.metrics.weather_cache_miss();
                entry.refreshing = true;
                let blank = entry.is_blank();
                Some((self.refresh(city.clone()), blank))
            }
        };
        if let Some((refresh, true)) = refresh {
            if let Err(error) = refresh.await {
                if error.is_panic() {
                    std::panic::resume_unwind(error.into_panic());
                }
            }
        }
        Some(entry)
    }

    /// `outdated`: the held observation is older than the cache period
    /// (refreshing it failed, or is under way).
    fn version_of(&self, entry: &Entry) -> WeatherVersion {
        WeatherVersion {
            fetched_at: entry.observation.as_ref().map(|(_, _, at)| *at),
            outdated: matches!(&entry.observation, Some((_, fetched, _)) if fetched.elapsed() >= self.shared.ttl),
            error: entry.failed_at.map(|(_, kind)| kind),
        }
    }

    /// Asks Open-Meteo for `city` and records the answer in its entry.
    fn refresh(&self, city: City) -> tokio::task::JoinHandle<()> {
        let weather = self.clone();
        self.shared.runtime.spawn(async move {
            let shared = &weather.shared;
            let fetched = shared.client.current(std::slice::from_ref(&city)).await;
            if let Err(error) = &fetched {
                tracing::warn!(message = "live weather request failed", city = %city.name, %error);
                shared.metrics.weather_error(error.kind());
            }
            let Some((_, entry)) = shared.entries.get(&city.name) else {
                return;
            };
            let mut entry = entry.lock().expect("weather cache lock");
            entry.refreshing = false;
            match fetched {
                Ok(mut observations) if !observations.is_empty() => {
                    let observation = observations.swap_remove(0);
                    entry.observation = Some((observation, Instant::now(), Utc::now().naive_utc()));
                    entry.failed_at = None;
                }
                Ok(_) => entry.failed_at = Some((Instant::now(), "malformed")),
                Err(error) => entry.failed_at = Some((Instant::now(), error.kind())),
            }
        })
    }
}
