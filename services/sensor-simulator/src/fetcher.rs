//! The task that asks Open-Meteo, beside the tick loop: it calls when the
//! [`Pacer`] says, and publishes the latest observation of each city through
//! a `watch`, so a tick never waits on the API, whether it is slow, failing
//! or rationed. Once the API has answered, it also fills the gap a downtime
//! left ([`crate::backfill`]), once, from the same budget.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rand::Rng;
use telemetry_core::weather::{quota_calls, City, Observation, WeatherClient};
use tokio::sync::watch;

use crate::backfill::Backfill;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::pacing::{Call, Next, Outcome, Pacer};

/// The latest observation of each city, in the order of the city list.
pub type Held = Vec<Option<Observation>>;

pub struct Fetcher {
    client: WeatherClient,
    cities: Vec<City>,
    pacer: Pacer,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    held: watch::Sender<Held>,
    /// The UTC day whose spent budget was logged: once a day is enough.
    budget_spent_logged: Option<NaiveDate>,
    /// Until it has run: filling the gap before the start. `None` when
    /// `sensor.backfill_max_hours` is 0.
    backfill: Option<Backfill>,
}

impl Fetcher {
    /// The fetcher and the receiving end of what it publishes.
    pub fn new(
        client: WeatherClient,
        cities: Vec<City>,
        pacer: Pacer,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        backfill: Option<Backfill>,
    ) -> (Self, watch::Receiver<Held>) {
        let (held, receiver) = watch::channel(pacer.held().to_vec());
        let fetcher = Self {
            client,
            cities,
            pacer,
            clock,
            metrics,
            held,
            budget_spent_logged: None,
            backfill,
        };
        (fetcher, receiver)
    }

    /// Runs until every receiver is dropped: the tick loop has stopped, and a
    /// request in flight is abandoned.
    pub async fn run(mut self) {
        let started = self.clock.now();
        loop {
            let now = self.clock.now();
            self.metrics
                .api_budget_remaining
                .set(self.pacer.budget_remaining(now) as f64);
            let call = match self.pacer.next(now) {
                Next::Call(call) => call,
                Next::BudgetSpent { until } => {
                    self.log_budget_spent(now, until);
                    if !self.wait_until(until).await {
                        return;
                    }
                    continue;
                }
            };
            if !self.wait_until(call.at).await {
                return;
            }
            if !self.fetch(&call).await {
                return;
            }
            // After the first answer, not before: the live observations
            // come first, and an API that is failing is not asked for the
            // past too.
            if self.pacer.backoff().failures() == 0 {
                if let Some(backfill) = self.backfill.take() {
                    if !self.fill_gaps(&backfill, started).await {
                        return;
                    }
                }
            }
        }
    }

    /// Fills each city's gap before `started` from Open-Meteo's past
    /// series, in one request; gives up, with a warning, on anything that
    /// goes wrong (the next start looks again from its own last rows).
    /// False if the tick loop stopped meanwhile: what was not stored is
    /// abandoned.
    #[tracing::instrument(skip_all)]
    async fn fill_gaps(&mut self, backfill: &Backfill, started: DateTime<Utc>) -> bool {
        let plan = tokio::select! {
            _ = self.held.closed() => return false,
            plan = backfill.plan(&self.cities, started.naive_utc()) => plan,
        };
        let Some(plan) = plan else { return true };
        let calls = quota_calls(plan.cities.len());
        let now = self.clock.now();
        let spare = self.pacer.spare_calls(now);
        if calls > spare {
            tracing::warn!(
                message = "the day's budget cannot spare the backfill; gaps left unfilled",
                calls,
                spare,
                slots = plan.slots(),
            );
            return true;
        }
        let reply = tokio::select! {
            _ = self.held.closed() => return false,
            reply = self.client.past_quarter_hours(&plan.cities, plan.from, plan.to) => reply,
        };
        self.pacer.spend_extra(now, calls);
        self.metrics.api_calls.add(calls);
        match reply {
            Ok(series) => tokio::select! {
                _ = self.held.closed() => false,
                () = backfill.fill(&plan, &series, &self.metrics) => true,
            },
            Err(error) => {
                self.metrics.api_errors.increment(&error.kind());
                tracing::warn!(
                    message = "Open-Meteo's past data request failed; gaps left unfilled",
                    kind = error.kind(),
                    %error,
                );
                true
            }
        }
    }

    /// Waits until `at`; false if the tick loop stopped meanwhile.
    async fn wait_until(&self, at: DateTime<Utc>) -> bool {
        tokio::select! {
            _ = self.held.closed() => false,
            _ = self.clock.sleep_until(at) => true,
        }
    }

    /// Makes the request and records it; false if the tick loop stopped.
    #[tracing::instrument(skip_all, fields(cities = call.cities.len()))]
    async fn fetch(&mut self, call: &Call) -> bool {
        let cities: Vec<City> = call
            .cities
            .iter()
            .map(|&index| self.cities[index].clone())
            .collect();
        let started = self.clock.now();
        let result = tokio::select! {
            _ = self.held.closed() => return false,
            result = self.client.current(&cities) => result,
        };
        let finished = self.clock.now();
        self.metrics.api_calls.add(quota_calls(cities.len()));
        let failures_before = self.pacer.backoff().failures();
        let (outcome, error) = match result {
            Ok(observations) => {
                self.metrics.fetches.increment();
                self.warn_of_missing_values(call, &observations);
                (Outcome::Observed(observations), None)
            }
            Err(error) => {
                self.metrics.api_errors.increment(&error.kind());
                let retry_after = error.retry_after().map(|after| after.not_before(finished));
                (Outcome::Failed { retry_after }, Some((error, retry_after)))
            }
        };
        self.pacer
            .record(call, started, finished, outcome, rand::rng().random());
        let wait = self.pacer.backoff().last_wait();
        self.metrics.api_backoff_seconds.set(wait.as_seconds_f64());
        if let Some((error, retry_after)) = error {
            tracing::warn!(
                message = "Open-Meteo request failed; backing off",
                kind = error.kind(),
                %error,
                failures = self.pacer.backoff().failures(),
                retry_after_secs = retry_after.map(|at| (at - finished).num_seconds()),
                wait_secs = wait.num_seconds(),
            );
            return true;
        }
        if failures_before > 0 {
            tracing::info!(
                message = "Open-Meteo answers again",
                failures = failures_before
            );
        }
        tracing::debug!(message = "observations fetched", cities = ?call.cities);
        self.held.send_replace(self.pacer.held().to_vec());
        true
    }

    /// Warns when a city's reply lacks values it did not lack before: once
    /// per change, not once per request.
    fn warn_of_missing_values(&self, call: &Call, observations: &[Observation]) {
        for (&index, observation) in call.cities.iter().zip(observations) {
            let before = self.pacer.held()[index]
                .as_ref()
                .map(|held| held.missing.as_slice());
            if !observation.missing.is_empty() && before != Some(&observation.missing) {
                tracing::warn!(
                    message = "Open-Meteo reply lacks values; stored as NULL",
                    city = %self.cities[index].name,
                    missing = ?observation.missing
                );
            }
        }
    }

    fn log_budget_spent(&mut self, now: DateTime<Utc>, until: DateTime<Utc>) {
        if self.budget_spent_logged != Some(now.date_naive()) {
            self.budget_spent_logged = Some(now.date_naive());
            tracing::warn!(
                message = "daily Open-Meteo budget spent; no calls until the next UTC day",
                until = %until,
            );
        }
    }
}
