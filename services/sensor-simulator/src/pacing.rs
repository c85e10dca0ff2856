//! When the sensor asks Open-Meteo, and for which cities: the fetch policy,
//! the backoff after failures and the daily call budget, as one state
//! machine over times it is given. Nothing here sleeps, reads a clock or
//! draws a random number, so every path can be tested without waiting.
//!
//! The fetcher ([`crate::fetcher`]) asks [`Pacer::next`] what to do, waits
//! until then, makes the request, and reports it with [`Pacer::record`].

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Deserialize;
use telemetry_core::weather::{quota_calls, Observation};

/// How often the sensor asks Open-Meteo, and for which cities. Rows are
/// stored every tick whatever the policy, from the latest observation held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum FetchPolicy {
    /// Every tick, one request for all cities: the design taken literally.
    /// Open-Meteo counts each city as a call, so this is for a self-hosted
    /// instance or a paid key.
    EveryTick,
    /// Every tick, one request for the next city in turn: a fetch every
    /// tick at the price of one city, whatever the number of cities.
    #[default]
    RoundRobin,
    /// One request for all cities when a newer observation is due: the
    /// thriftiest.
    OnNewObservation,
}

/// Open-Meteo's shortest refresh of the `current` block (`current.interval`
/// is 900 s for most places, 3600 s for some).
const SHORTEST_OBSERVATION_INTERVAL_SECS: u64 = 900;
/// When a reply's observation is already due for renewal (the API lags its
/// own schedule), ask again this much later...
const LATE_RETRY: TimeDelta = TimeDelta::seconds(60);
/// ...at most this many times in a row; then wait a whole interval. This
/// bounds `on-new-observation` to three requests per observation interval,
/// which its budget estimate counts.
const LATE_RETRIES: u32 = 2;

impl TryFrom<String> for FetchPolicy {
    type Error = String;
    /// By name; the config crate's own message would not list the names.
    fn try_from(name: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|policy| policy.name() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Self::ALL
                    .iter()
                    .map(|policy| format!("{:?}", policy.name()))
                    .collect();
                format!(
                    "unknown fetch policy {name:?}, expected {}",
                    names.join(", ")
                )
            })
    }
}

impl FetchPolicy {
    pub const ALL: [Self; 3] = [Self::EveryTick, Self::RoundRobin, Self::OnNewObservation];

    pub fn name(self) -> &'static str {
        match self {
            Self::EveryTick => "every-tick",
            Self::RoundRobin => "round-robin",
            Self::OnNewObservation => "on-new-observation",
        }
    }

    /// The most calls a day, as Open-Meteo counts them, that the policy
    /// makes while the API answers; what the budget check at start uses.
    /// Not included: one request for the cities with no current observation
    /// (at start, after an outage), [`quota_calls`] of their number each time.
    pub fn calls_per_day(self, interval: Duration, cities: usize) -> u64 {
        let ticks = 86_400u64.div_ceil(interval.as_secs().max(1));
        match self {
            Self::EveryTick => ticks * quota_calls(cities),
            Self::RoundRobin => ticks * quota_calls(1),
            Self::OnNewObservation => {
                let observations = 86_400 / SHORTEST_OBSERVATION_INTERVAL_SECS;
                observations * u64::from(1 + LATE_RETRIES) * quota_calls(cities)
            }
        }
    }

    /// One line on what the policy costs, for messages and logs.
    pub fn describe(self, interval: Duration, cities: usize) -> String {
        let secs = interval.as_secs();
        let per_day = self.calls_per_day(interval, cities);
        match self {
            Self::EveryTick => format!(
                "every-tick asks for all {cities} cities (sensor.cities) every {secs} s \
                 (sensor.interval_secs), which Open-Meteo counts as {cities} calls each: \
                 {per_day} calls a day"
            ),
            Self::RoundRobin => format!(
                "round-robin asks for one city every {secs} s (sensor.interval_secs): \
                 {per_day} calls a day"
            ),
            Self::OnNewObservation => format!(
                "on-new-observation asks for all {cities} cities (sensor.cities) at most three \
                 times per {SHORTEST_OBSERVATION_INTERVAL_SECS} s observation: at most \
                 {per_day} calls a day"
            ),
        }
    }
}

/// Waiting after failures: exponential, capped, with jitter, and never
/// before what the server asked for (`Retry-After`).
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The wait after the first failure.
    base: TimeDelta,
    /// The longest wait the exponent reaches.
    cap: TimeDelta,
    /// Failures since the last success.
    failures: u32,
    /// No call before this; `None` while the API answers.
    until: Option<DateTime<Utc>>,
    /// The wait imposed by the last failure (for the metric).
    last_wait: TimeDelta,
}

/// Each wait is shortened by up to this fraction at random, so sensors that
/// failed together do not retry together.
pub const JITTER: f64 = 0.25;
/// The first wait, in ticks: a failure is never retried at the next tick.
pub const BACKOFF_BASE_TICKS: i32 = 4;
/// The longest wait by default (`sensor.fetch_backoff_max_secs`): two
/// observation intervals, the life of a held observation; asking less often
/// would lose observations the API has.
pub const BACKOFF_CAP: TimeDelta = TimeDelta::minutes(30);

impl Backoff {
    /// Waits start at four ticks and double up to `cap` (at least the first).
    pub fn new(interval: TimeDelta, cap: TimeDelta) -> Self {
        let base = interval * BACKOFF_BASE_TICKS;
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
            until: None,
            last_wait: TimeDelta::zero(),
        }
    }

    /// Records a failure at `now`. `jitter` is a random number in [0, 1);
    /// `retry_after`, the server's own "not before". Returns the wait.
    pub fn fail(
        &mut self,
        now: DateTime<Utc>,
        retry_after: Option<DateTime<Utc>>,
        jitter: f64,
    ) -> TimeDelta {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(30);
        let nominal = self
            .base
            .checked_mul(1i32 << doublings)
            .unwrap_or(self.cap)
            .min(self.cap);
        let shortened = nominal.as_seconds_f64() * (1.0 - JITTER * jitter.clamp(0.0, 1.0));
        let mut until = now + TimeDelta::milliseconds((shortened * 1000.0) as i64);
        if let Some(retry_after) = retry_after {
            until = until.max(retry_after);
        }
        self.until = Some(until);
        self.last_wait = until - now;
        self.last_wait
    }

    pub fn succeed(&mut self) {
        self.failures = 0;
        self.until = None;
        self.last_wait = TimeDelta::zero();
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait the last failure imposed; zero once the API answered again.
    pub fn last_wait(&self) -> TimeDelta {
        self.last_wait
    }
}

/// Calls counted per UTC day against the sensor's share of the budget.
#[derive(Debug, Clone)]
pub struct Budget {
    limit: u64,
    day: NaiveDate,
    used: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            day: NaiveDate::MIN,
            used: 0,
        }
    }

    /// Calls left on the UTC day of `at`.
    pub fn remaining(&self, at: DateTime<Utc>) -> u64 {
        if at.date_naive() == self.day {
            self.limit.saturating_sub(self.used)
        } else {
            self.limit
        }
    }

    pub fn spend(&mut self, at: DateTime<Utc>, calls: u64) {
        if at.date_naive() != self.day {
            self.day = at.date_naive();
            self.used = 0;
        }
        self.used += calls;
    }
}

/// The start of the UTC day after `at`.
fn next_utc_day(at: DateTime<Utc>) -> DateTime<Utc> {
    let tomorrow = at.date_naive().succ_opt().unwrap_or(NaiveDate::MAX);
    tomorrow.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// What the fetcher does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Call(Call),
    /// The day's budget is spent: no call before `until` (the next UTC day).
    BudgetSpent {
        until: DateTime<Utc>,
    },
}

/// One request: when, and for which cities (indices into the city list, in
/// order).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub at: DateTime<Utc>,
    pub cities: Vec<usize>,
}

/// How a request ended.
pub enum Outcome {
    /// One observation per city asked for, in the same order.
    Observed(Vec<Observation>),
    /// Failed; the server asked not to be called before `retry_after`.
    Failed { retry_after: Option<DateTime<Utc>> },
}

/// The fetch schedule: policy, backoff and budget, and the latest
/// observation of each city.
#[derive(Debug, Clone)]
pub struct Pacer {
    policy: FetchPolicy,
    interval: TimeDelta,
    /// The latest observation of each city, by index.
    held: Vec<Option<Observation>>,
    /// Round-robin: the city asked for next.
    turn: usize,
    /// When the last request started; at most one request per tick.
    last_call: Option<DateTime<Utc>>,
    /// On-new-observation: replies in a row that were already due for
    /// renewal, and when to ask again after one.
    late_replies: u32,
    retry_late_at: Option<DateTime<Utc>>,
    backoff: Backoff,
    budget: Budget,
}

impl Pacer {
    /// `daily_calls` is the sensor's share of the budget; `backoff_cap`, the
    /// longest wait after failures.
    pub fn new(
        policy: FetchPolicy,
        interval: Duration,
        cities: usize,
        daily_calls: u64,
        backoff_cap: Duration,
    ) -> Self {
        let interval = TimeDelta::from_std(interval).expect("interval in range");
        let backoff_cap = TimeDelta::from_std(backoff_cap).expect("cap in range");
        Self {
            policy,
            interval,
            held: vec![None; cities],
            turn: 0,
            last_call: None,
            late_replies: 0,
            retry_late_at: None,
            backoff: Backoff::new(interval, backoff_cap),
            budget: Budget::new(daily_calls),
        }
    }

    /// The latest observation of each city, by index; stale ones included
    /// (whoever stores them judges them at their own time).
    pub fn held(&self) -> &[Option<Observation>] {
        &self.held
    }

    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    pub fn budget_remaining(&self, at: DateTime<Utc>) -> u64 {
        self.budget.remaining(at)
    }

    /// Calls left today beyond what the policy needs for the rest of the
    /// UTC day: what a one-off request (the backfill after downtime) may
    /// spend without cutting the day's fetches short.
    pub fn spare_calls(&self, now: DateTime<Utc>) -> u64 {
        let interval = self.interval.to_std().unwrap_or(Duration::MAX);
        let per_day = self.policy.calls_per_day(interval, self.held.len());
        let seconds_left = (next_utc_day(now) - now).num_seconds().max(0) as u64;
        let needed = per_day.saturating_mul(seconds_left).div_ceil(86_400);
        self.budget.remaining(now).saturating_sub(needed)
    }

    /// Records `calls` made at `at` outside the schedule (the backfill).
    pub fn spend_extra(&mut self, at: DateTime<Utc>, calls: u64) {
        self.budget.spend(at, calls);
    }

    /// What to do next, seen at `now`.
    pub fn next(&self, now: DateTime<Utc>) -> Next {
        let mut at = self.policy_time(now);
        if let Some(until) = self.backoff.until {
            at = at.max(until);
        }
        let mut cities = self.cities_for(at);
        let remaining = self.budget.remaining(at);
        if remaining == 0 {
            return Next::BudgetSpent {
                until: next_utc_day(at),
            };
        }
        // Asking for fewer cities is better than asking for none.
        while quota_calls(cities.len()) > remaining {
            cities.pop();
        }
        Next::Call(Call { at, cities })
    }

    /// Records the request `call` made at `started` and how it ended at
    /// `finished`. `jitter` is a random number in [0, 1).
    pub fn record(
        &mut self,
        call: &Call,
        started: DateTime<Utc>,
        finished: DateTime<Utc>,
        outcome: Outcome,
        jitter: f64,
    ) {
        self.last_call = Some(started);
        self.budget.spend(started, quota_calls(call.cities.len()));
        match outcome {
            Outcome::Observed(observations) => {
                self.backoff.succeed();
                if self.policy == FetchPolicy::OnNewObservation {
                    self.note_lateness(&observations, finished);
                }
                for (&city, observation) in call.cities.iter().zip(observations) {
                    self.held[city] = Some(observation);
                }
                if self.policy == FetchPolicy::RoundRobin && call.cities == [self.turn] {
                    self.turn = (self.turn + 1) % self.held.len();
                }
            }
            Outcome::Failed { retry_after } => {
                self.backoff.fail(finished, retry_after, jitter);
            }
        }
    }

    /// When the policy alone would call: never twice in one tick.
    fn policy_time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let Some(last) = self.last_call else {
            return now;
        };
        let next_tick = self.tick_after(last).max(now);
        match self.policy {
            FetchPolicy::EveryTick | FetchPolicy::RoundRobin => next_tick,
            FetchPolicy::OnNewObservation => {
                let mut at = if self.missing_at(now).is_empty() {
                    self.held
                        .iter()
                        .flatten()
                        .map(|observation| observation.next_due().and_utc())
                        .min()
                        .unwrap_or(now)
                } else {
                    now
                };
                if let Some(retry_late_at) = self.retry_late_at {
                    at = at.max(retry_late_at);
                }
                at.max(next_tick)
            }
        }
    }

    /// The start of the first tick after `at` (ticks are aligned to the
    /// clock, as the tick loop's).
    fn tick_after(&self, at: DateTime<Utc>) -> DateTime<Utc> {
        let step = self.interval.num_milliseconds().max(1);
        let index = at.timestamp_millis().div_euclid(step) + 1;
        DateTime::from_timestamp_millis(index * step).unwrap_or(at)
    }

    /// Cities with no observation current at `at`.
    fn missing_at(&self, at: DateTime<Utc>) -> Vec<usize> {
        let at = at.naive_utc();
        (0..self.held.len())
            .filter(|&city| {
                !self.held[city]
                    .as_ref()
                    .is_some_and(|observation| observation.is_current_at(at))
            })
            .collect()
    }

    fn cities_for(&self, at: DateTime<Utc>) -> Vec<usize> {
        match self.policy {
            FetchPolicy::EveryTick | FetchPolicy::OnNewObservation => {
                (0..self.held.len()).collect()
            }
            FetchPolicy::RoundRobin => {
                let missing = self.missing_at(at);
                // Cities with nothing current (at start, after an outage)
                // are asked for first, together; that costs a call per
                // city, so only while the API answers. Under failure a
                // single city probes it.
                if self.backoff.failures() == 0 && !missing.is_empty() {
                    missing
                } else {
                    vec![self.turn]
                }
            }
        }
    }

    /// On-new-observation: a reply whose observation is already due for
    /// renewal is asked again after [`LATE_RETRY`], a few times, then after
    /// a whole interval.
    fn note_lateness(&mut self, observations: &[Observation], at: DateTime<Utc>) {
        let due = observations.iter().map(Observation::next_due).min();
        if due.is_some_and(|due| due.and_utc() > at) {
            self.late_replies = 0;
            self.retry_late_at = None;
            return;
        }
        self.late_replies += 1;
        let wait = if self.late_replies <= LATE_RETRIES {
            LATE_RETRY
        } else {
            self.late_replies = 0;
            observations
                .iter()
                .filter_map(|observation| TimeDelta::from_std(observation.interval).ok())
                .min()
                .unwrap_or(self.interval)
        };
        self.retry_late_at = Some(at + wait);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pacer at the default tick and backoff.
    fn pacer(policy: FetchPolicy, cities: usize, daily_calls: u64) -> Pacer {
        Pacer::new(
            policy,
            TICK,
            cities,
            daily_calls,
            BACKOFF_CAP.to_std().unwrap(),
        )
    }
    use chrono::{DurationRound, NaiveDateTime};

    const TICK: Duration = Duration::from_secs(15);
    const SEED_CITIES: usize = 7;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// The observation the API has at `at`: the one of the current quarter
    /// hour, current for 900 s.
    fn observation_at(at: DateTime<Utc>) -> Observation {
        observation(
            at.duration_trunc(TimeDelta::minutes(15))
                .unwrap()
                .naive_utc(),
        )
    }

    fn observation(observed_at: NaiveDateTime) -> Observation {
        Observation {
            observed_at,
            interval: Duration::from_secs(900),
            temperature: Some(20.0),
            humidity: Some(70),
            apparent_temperature: None,
            weather_code: None,
            wind_speed: None,
            missing: Vec::new(),
        }
    }

    fn answers(call: &Call) -> Outcome {
        Outcome::Observed(
            call.cities
                .iter()
                .map(|_| observation_at(call.at))
                .collect(),
        )
    }

    fn fails(_: &Call) -> Outcome {
        Outcome::Failed { retry_after: None }
    }

    #[test]
    fn spare_calls_leave_the_policy_what_it_needs_for_the_rest_of_the_day() {
        // Round-robin at 15 s: 5,760 calls a day, 2,880 by noon.
        let mut pacer = pacer(FetchPolicy::RoundRobin, SEED_CITIES, 7_984);
        let noon = at("2026-11-23T12:00:00Z");
        assert_eq!(pacer.spare_calls(noon), 7_984 - 2_880);
        pacer.spend_extra(noon, 7);
        assert_eq!(pacer.budget_remaining(noon), 7_984 - 7);
        assert_eq!(pacer.spare_calls(noon), 7_984 - 7 - 2_880);
        // A budget the policy needs all of spares nothing.
        let pacer = self::pacer(FetchPolicy::RoundRobin, SEED_CITIES, 5_760);
        assert_eq!(pacer.spare_calls(at("2026-11-23T00:00:00Z")), 0);
    }

    /// Runs the pacer from `from` to `until` as the fetcher does, with
    /// requests that take no time and answer as `reply` says; returns the
    /// calls made. Checks on the way that nothing is scheduled in the past
    /// and that no two calls fall in one tick.
    fn drive(
        pacer: &mut Pacer,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        jitter: f64,
        mut reply: impl FnMut(&Call) -> Outcome,
    ) -> Vec<Call> {
        let mut now = from;
        let mut calls: Vec<Call> = Vec::new();
        loop {
            match pacer.next(now) {
                Next::Call(call) => {
                    assert!(call.at >= now, "{call:?} scheduled before {now}");
                    if call.at >= until {
                        return calls;
                    }
                    if let Some(last) = calls.last() {
                        let tick = |t: DateTime<Utc>| t.timestamp() / TICK.as_secs() as i64;
                        assert!(tick(call.at) > tick(last.at), "{last:?} then {call:?}");
                    }
                    now = call.at;
                    let outcome = reply(&call);
                    pacer.record(&call, now, now, outcome, jitter);
                    calls.push(call);
                }
                Next::BudgetSpent { until: wake } => {
                    assert!(wake > now);
                    if wake >= until {
                        return calls;
                    }
                    now = wake;
                }
            }
        }
    }

    fn quota(calls: &[Call]) -> u64 {
        calls
            .iter()
            .map(|call| quota_calls(call.cities.len()))
            .sum()
    }

    fn offsets(calls: &[Call], from: DateTime<Utc>) -> Vec<i64> {
        calls
            .iter()
            .map(|call| (call.at - from).num_seconds())
            .collect()
    }

    /// Jitter values from 0 to just under 1.
    fn jitters() -> impl Iterator<Item = f64> {
        (0..100).map(|step| f64::from(step) / 100.0)
    }

    #[test]
    fn calls_per_day_of_each_policy_for_the_seed_cities_every_15_s() {
        assert_eq!(
            FetchPolicy::EveryTick.calls_per_day(TICK, SEED_CITIES),
            40_320
        );
        assert_eq!(
            FetchPolicy::RoundRobin.calls_per_day(TICK, SEED_CITIES),
            5_760
        );
        // Any number of cities costs round-robin the same.
        assert_eq!(FetchPolicy::RoundRobin.calls_per_day(TICK, 50), 5_760);
        assert_eq!(
            FetchPolicy::OnNewObservation.calls_per_day(TICK, SEED_CITIES),
            2_016
        );
    }

    #[test]
    fn a_day_of_each_policy_stays_within_its_estimate() {
        let start = at("2026-11-23T00:00:00Z");
        let end = start + TimeDelta::days(1);
        for policy in FetchPolicy::ALL {
            let mut pacer = pacer(policy, SEED_CITIES, u64::MAX);
            let calls = drive(&mut pacer, start, end, 0.0, answers);
            let estimate = policy.calls_per_day(TICK, SEED_CITIES);
            // The estimate leaves out the first request, for every city.
            assert!(
                quota(&calls) <= estimate + SEED_CITIES as u64,
                "{policy:?}: {} calls, estimate {estimate}",
                quota(&calls)
            );
            println!("{}: {} calls in a day", policy.name(), quota(&calls));
        }
    }

    #[test]
    fn round_robin_asks_for_every_city_at_start_then_one_city_per_tick_in_turn() {
        let start = at("2026-11-23T10:00:07Z");
        let mut pacer = pacer(FetchPolicy::RoundRobin, 3, u64::MAX);
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::seconds(68),
            0.0,
            answers,
        );
        let cities: Vec<_> = calls.iter().map(|call| call.cities.clone()).collect();
        assert_eq!(cities, [vec![0, 1, 2], vec![0], vec![1], vec![2], vec![0]]);
        // At once, then on the ticks (aligned to the clock).
        assert_eq!(offsets(&calls, start), [0, 8, 23, 38, 53]);
    }

    #[test]
    fn every_tick_asks_for_all_cities_on_every_tick() {
        let start = at("2026-11-23T10:00:00Z");
        let mut pacer = pacer(FetchPolicy::EveryTick, 3, u64::MAX);
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::minutes(1),
            0.0,
            answers,
        );
        assert_eq!(offsets(&calls, start), [0, 15, 30, 45]);
        assert!(calls.iter().all(|call| call.cities == [0, 1, 2]));
    }

    #[test]
    fn on_new_observation_asks_when_the_next_one_is_due() {
        let start = at("2026-11-23T10:00:07Z");
        let mut pacer = pacer(FetchPolicy::OnNewObservation, 2, u64::MAX);
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::minutes(31),
            0.0,
            answers,
        );
        assert_eq!(offsets(&calls, start), [0, 893, 1793]);
        assert!(calls.iter().all(|call| call.cities == [0, 1]));
    }

    #[test]
    fn on_new_observation_asks_a_late_api_again_a_few_times_then_waits() {
        let start = at("2026-11-23T10:00:07Z");
        let mut pacer = pacer(FetchPolicy::OnNewObservation, 2, u64::MAX);
        // The API is five minutes late with each observation.
        let late = |call: &Call| {
            let shown = observation_at(call.at - TimeDelta::minutes(5));
            Outcome::Observed(call.cities.iter().map(|_| shown.clone()).collect())
        };
        let end = start + TimeDelta::days(1);
        let calls = drive(&mut pacer, start, end, 0.0, late);
        let first: Vec<String> = calls[..7]
            .iter()
            .map(|call| call.at.format("%H:%M:%S").to_string())
            .collect();
        assert_eq!(
            first,
            ["10:00:07", "10:01:07", "10:02:07", "10:17:07", "10:18:07", "10:19:07", "10:34:07"]
        );
        // Inside the estimate all day long.
        assert!(
            quota(&calls) <= FetchPolicy::OnNewObservation.calls_per_day(TICK, 2),
            "{}",
            quota(&calls)
        );
    }

    #[test]
    fn an_hour_of_5xx_costs_a_handful_of_requests_whatever_the_jitter() {
        let start = at("2026-11-23T10:00:00Z");
        let hour = start + TimeDelta::hours(1);
        for policy in FetchPolicy::ALL {
            for jitter in jitters() {
                let mut pacer = pacer(policy, SEED_CITIES, u64::MAX);
                let calls = drive(&mut pacer, start, hour, jitter, fails);
                assert!(
                    (6..=7).contains(&calls.len()),
                    "{policy:?}, jitter {jitter}: {:?}",
                    offsets(&calls, start)
                );
                // The waits grow to the cap and never beyond it.
                let waits: Vec<i64> = calls
                    .windows(2)
                    .map(|pair| (pair[1].at - pair[0].at).num_seconds())
                    .collect();
                assert!(waits.windows(2).all(|pair| pair[1] >= pair[0]), "{waits:?}");
                assert!(waits.iter().all(|&wait| wait <= 1800), "{waits:?}");
            }
        }
        // Without jitter: 60 s (four ticks), doubling, capped at 30 min.
        let mut pacer = pacer(FetchPolicy::RoundRobin, SEED_CITIES, u64::MAX);
        let calls = drive(&mut pacer, start, start + TimeDelta::hours(2), 0.0, fails);
        assert_eq!(
            offsets(&calls, start),
            [0, 60, 180, 420, 900, 1860, 3660, 5460]
        );
        // Round-robin asks for every city once, then probes with one.
        assert_eq!(calls[0].cities.len(), SEED_CITIES);
        assert!(calls[1..].iter().all(|call| call.cities.len() == 1));
        assert_eq!(pacer.backoff().last_wait(), BACKOFF_CAP);
    }

    #[test]
    fn a_429_with_retry_after_an_hour_means_no_call_until_the_hour_has_passed() {
        let start = at("2026-11-23T10:00:00Z");
        for policy in FetchPolicy::ALL {
            for jitter in jitters() {
                let mut pacer = pacer(policy, SEED_CITIES, u64::MAX);
                let mut rate_limited = true;
                let calls = drive(
                    &mut pacer,
                    start,
                    start + TimeDelta::minutes(61),
                    jitter,
                    |call| {
                        if std::mem::take(&mut rate_limited) {
                            Outcome::Failed {
                                retry_after: Some(call.at + TimeDelta::hours(1)),
                            }
                        } else {
                            answers(call)
                        }
                    },
                );
                let offsets = offsets(&calls, start);
                assert_eq!(offsets[..2], [0, 3600], "{policy:?}, jitter {jitter}");
                // Then the policy's own pace again.
                if policy != FetchPolicy::OnNewObservation {
                    assert_eq!(offsets[2..], [3615, 3630, 3645], "{policy:?}");
                }
            }
        }
    }

    #[test]
    fn a_short_retry_after_does_not_shorten_the_backoff() {
        let start = at("2026-11-23T10:00:00Z");
        let mut pacer = pacer(FetchPolicy::RoundRobin, 2, u64::MAX);
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::minutes(2),
            0.0,
            |call| Outcome::Failed {
                retry_after: Some(call.at + TimeDelta::seconds(1)),
            },
        );
        assert_eq!(offsets(&calls, start), [0, 60]);
    }

    #[test]
    fn a_success_ends_the_backoff_and_round_robin_catches_up_the_cities_it_lost() {
        let start = at("2026-11-23T10:00:00Z");
        let mut pacer = pacer(FetchPolicy::RoundRobin, 3, u64::MAX);
        // Down for the first 10 minutes.
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::minutes(16),
            0.0,
            |call| {
                if call.at < start + TimeDelta::minutes(10) {
                    fails(call)
                } else {
                    answers(call)
                }
            },
        );
        let seen: Vec<(i64, Vec<usize>)> = calls
            .iter()
            .map(|call| ((call.at - start).num_seconds(), call.cities.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (0, vec![0, 1, 2]),
                // Probes with one city while it fails.
                (60, vec![0]),
                (180, vec![0]),
                (420, vec![0]),
                // Back: the probe's city, then the others together, then
                // one per tick again.
                (900, vec![0]),
                (915, vec![1, 2]),
                (930, vec![1]),
                (945, vec![2]),
            ]
        );
        assert_eq!(pacer.backoff().failures(), 0);
        assert_eq!(pacer.backoff().last_wait(), TimeDelta::zero());
    }

    #[test]
    fn a_stale_observation_is_caught_up_as_if_missing() {
        let start = at("2026-11-23T10:00:00Z");
        let mut pacer = pacer(FetchPolicy::RoundRobin, 3, u64::MAX);
        let old = observation(at("2026-11-23T09:00:00Z").naive_utc());
        let call = Call {
            at: start,
            cities: vec![0, 1, 2],
        };
        let fresh = observation_at(start);
        pacer.record(
            &call,
            start,
            start,
            Outcome::Observed(vec![fresh.clone(), old, fresh]),
            0.0,
        );
        let Next::Call(next) = pacer.next(start) else {
            panic!("a call is due")
        };
        assert_eq!(next.cities, [1]);
    }

    #[test]
    fn the_budget_stops_calls_until_the_next_utc_day() {
        let start = at("2026-11-23T23:58:00Z");
        // Two cities every tick; five calls a day.
        let mut pacer = pacer(FetchPolicy::EveryTick, 2, 5);
        let calls = drive(
            &mut pacer,
            start,
            start + TimeDelta::minutes(3),
            0.0,
            answers,
        );
        let seen: Vec<(String, usize)> = calls
            .iter()
            .map(|call| (call.at.format("%H:%M:%S").to_string(), call.cities.len()))
            .collect();
        assert_eq!(
            seen,
            [
                ("23:58:00".into(), 2),
                ("23:58:15".into(), 2),
                // One call left: one city rather than none.
                ("23:58:30".into(), 1),
                // A new UTC day, a new budget.
                ("00:00:00".into(), 2),
                ("00:00:15".into(), 2),
                ("00:00:30".into(), 1),
            ]
        );
        assert_eq!(pacer.budget_remaining(start + TimeDelta::minutes(3)), 0);
        assert!(matches!(
            pacer.next(start + TimeDelta::minutes(3)),
            Next::BudgetSpent { until } if until == at("2026-11-25T00:00:00Z")
        ));
    }

    #[test]
    fn failed_calls_count_against_the_budget() {
        let start = at("2026-11-23T10:00:00Z");
        let mut pacer = pacer(FetchPolicy::RoundRobin, 3, 100);
        let calls = drive(&mut pacer, start, start + TimeDelta::minutes(5), 0.0, fails);
        assert_eq!(quota(&calls), 3 + 1 + 1);
        assert_eq!(pacer.budget_remaining(start), 95);
    }

    #[test]
    fn backoff_waits_grow_to_the_cap_and_jitter_only_shortens_them() {
        let now = at("2026-11-23T10:00:00Z");
        let mut backoff = Backoff::new(TimeDelta::seconds(15), BACKOFF_CAP);
        let waits: Vec<i64> = (0..9)
            .map(|_| backoff.fail(now, None, 0.0).num_seconds())
            .collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1800, 1800, 1800, 1800]);
        for _ in 0..100 {
            backoff.fail(now, None, 0.0);
        }
        assert_eq!(backoff.fail(now, None, 0.0), BACKOFF_CAP);
        assert_eq!(backoff.fail(now, None, 0.999).num_seconds(), 1350);
        backoff.succeed();
        assert_eq!(backoff.fail(now, None, 0.5).num_milliseconds(), 52_500);
        // A tick longer than the cap: the first wait is still four ticks.
        let mut slow = Backoff::new(TimeDelta::hours(1), BACKOFF_CAP);
        assert_eq!(slow.fail(now, None, 0.0), TimeDelta::hours(4));
        assert_eq!(slow.fail(now, None, 0.0), TimeDelta::hours(4));
    }
}
