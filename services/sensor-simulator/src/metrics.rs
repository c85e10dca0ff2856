//! What the sensor exports on `/metrics` and shows on `/healthz`.

use telemetry_core::metrics::{Counter, CounterVec, Exposition, Gauge};
use telemetry_core::ops::{Observable, Problem};

#[derive(Default)]
pub struct Metrics {
    /// Set while the database refuses the sensor's writes for a reason
    /// waiting will not fix (access denied, no such table or column, a value
    /// too long): readings wait in the spool, and `/healthz` says why.
    pub database_problem: Problem,
    /// Refused writes by the server's error code.
    pub database_refusals: CounterVec<u16>,
    pub ticks: Counter,
    pub ticks_skipped: Counter,
    pub fetches: Counter,
    pub inserted: Counter,
    pub spooled: Counter,
    pub replayed: Counter,
    pub dropped: Counter,
    /// Replays that stopped at a failure (they resume at the checkpoint).
    pub replay_interruptions: Counter,
    /// Bytes of readings that wait in the spool.
    pub spool_bytes: Gauge,
    /// The longest a tick's readings waited, after the tick was due, to be
    /// stored or spooled: how punctual ticks are, replay or not.
    pub tick_lateness_max: Gauge,
    /// Unix time of the last reading stored in the database.
    pub last_success: Gauge,
    /// By [`telemetry_core::weather::WeatherError::kind`].
    pub api_errors: CounterVec<&'static str>,
    /// Open-Meteo calls as it counts them (one per city asked for), failed
    /// requests included.
    pub api_calls: Counter,
    /// The sensor's share of `weather.daily_budget`, and what is left of it
    /// today (UTC).
    pub api_budget: Gauge,
    pub api_budget_remaining: Gauge,
    /// The wait imposed by the last failed request; 0 once one succeeds.
    pub api_backoff_seconds: Gauge,
    /// Rows filled in after downtime, by source (`backfill`, `interpolated`).
    pub backfilled: CounterVec<&'static str>,
}

impl Metrics {
    /// Only the tick loop calls this, so a read then a write is enough.
    pub fn note_tick_lateness(&self, lateness: std::time::Duration) {
        let seconds = lateness.as_secs_f64();
        if seconds > self.tick_lateness_max.get() {
            self.tick_lateness_max.set(seconds);
        }
    }
}

impl Observable for Metrics {
    /// Unhealthy only while the database refuses the writes for a reason an
    /// operator must fix; a database that is down is what the spool is for,
    /// which the body reports.
    fn healthy(&self) -> bool {
        self.database_problem.get().is_none()
    }

    fn health(&self) -> serde_json::Value {
        let problem = self.database_problem.get();
        serde_json::json!({
            "status": if problem.is_some() { "the database refuses the readings" } else { "ok" },
            "database_error": problem,
            "spool_bytes": self.spool_bytes.get() as u64,
            "last_success_unix": self.last_success.get() as i64,
        })
    }

    fn metrics(&self) -> String {
        let mut out = Exposition::default();
        out.counter("sensor_ticks_total", "Ticks processed.", &self.ticks)
            .counter(
                "sensor_ticks_skipped_total",
                "Ticks skipped after a stall.",
                &self.ticks_skipped,
            )
            .counter(
                "sensor_api_fetches_total",
                "Successful Open-Meteo requests.",
                &self.fetches,
            )
            .counter(
                "sensor_readings_inserted_total",
                "Readings written to the database directly.",
                &self.inserted,
            )
            .counter(
                "sensor_readings_spooled_total",
                "Readings written to the disk spool.",
                &self.spooled,
            )
            .counter(
                "sensor_readings_replayed_total",
                "Spooled readings written to the database.",
                &self.replayed,
            )
            .counter(
                "sensor_readings_dropped_total",
                "Readings lost: spool full or unwritable.",
                &self.dropped,
            )
            .counter(
                "sensor_spool_replay_interruptions_total",
                "Spool replays stopped by a failure; the next one resumes at the checkpoint.",
                &self.replay_interruptions,
            )
            .gauge(
                "sensor_spool_bytes",
                "Bytes of readings waiting in the spool.",
                self.spool_bytes.get(),
            )
            .gauge(
                "sensor_tick_lateness_max_seconds",
                "Longest time after a tick was due until its readings were stored or spooled.",
                self.tick_lateness_max.get(),
            )
            .gauge(
                "sensor_last_success_timestamp_seconds",
                "Unix time of the last reading stored in the database.",
                self.last_success.get(),
            )
            .counter_vec(
                "sensor_database_refusals_total",
                "Writes the database refused for a reason waiting will not fix, by the server's error code.",
                "code",
                &self.database_refusals,
            )
            .counter_vec(
                "sensor_api_errors_total",
                "Failed Open-Meteo requests by kind.",
                "kind",
                &self.api_errors,
            )
            .counter(
                "sensor_api_calls_total",
                "Open-Meteo calls as it counts them: one per city asked for, failures included.",
                &self.api_calls,
            )
            .gauge(
                "sensor_api_budget_calls",
                "The sensor's daily share of weather.daily_budget (what the panel leaves).",
                self.api_budget.get(),
            )
            .gauge(
                "sensor_api_budget_remaining",
                "Calls left of the sensor's share today (UTC).",
                self.api_budget_remaining.get(),
            )
            .gauge(
                "sensor_api_backoff_seconds",
                "Wait imposed by the last failed Open-Meteo request; 0 after a success.",
                self.api_backoff_seconds.get(),
            )
            .counter_vec(
                "sensor_backfilled_total",
                "Rows filled in after downtime from Open-Meteo's past data, by source.",
                "source",
                &self.backfilled,
            );
        out.finish()
    }
}
