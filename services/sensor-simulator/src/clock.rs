//! The fetcher's time. Its schedule is in UTC (ticks aligned to the clock,
//! the budget's UTC day, the API's observation times), and tests replace the
//! clock to run an hour of backoff in a moment against a real HTTP server,
//! where tokio's paused time would also fire the client's timeouts early.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves at `at` (at once if it is past).
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's clock, waiting on tokio's timer.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}
