//! Ticks aligned to the wall clock: with a 15 s interval, ticks fall on
//! :00, :15, :30 and :45 of every minute, so the same tick has the same
//! timestamp after a restart and the uniqueness key can recognise it.
//!
//! Time is measured on tokio's monotonic clock from one anchor, so the
//! schedule does not drift, a slow tick does not shift later ones, and tests
//! can drive it with `tokio::time::pause`.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use tokio::time::Instant;

pub struct Schedule {
    anchor_instant: Instant,
    anchor_utc: DateTime<Utc>,
    interval: Duration,
    /// Index of the next tick: its time is `next_index * interval` since the
    /// Unix epoch.
    next_index: i64,
}

/// One tick: when it is due and the UTC timestamp it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub due: Instant,
    pub at: NaiveDateTime,
    /// Ticks skipped before this one because the process was stalled.
    pub skipped: u64,
}

impl Schedule {
    pub fn new(interval: Duration, now_utc: DateTime<Utc>) -> Self {
        let anchor_instant = Instant::now();
        let millis = interval.as_millis() as i64;
        // First tick at or after now.
        let next_index = (now_utc.timestamp_millis() + millis - 1).div_euclid(millis);
        Self {
            anchor_instant,
            anchor_utc: now_utc,
            interval,
            next_index,
        }
    }

    fn tick_utc(&self, index: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(index * self.interval.as_millis() as i64)
            .expect("tick time in range")
    }

    fn due(&self, index: i64) -> Instant {
        let offset = self.tick_utc(index) - self.anchor_utc;
        self.anchor_instant + offset.to_std().unwrap_or_default()
    }

    /// Waits for the next tick. A tick more than half an interval late is
    /// skipped rather than fired in a burst after a stall.
    pub async fn next(&mut self) -> Tick {
        let now = Instant::now();
        let mut skipped = 0;
        while self.due(self.next_index) + self.interval / 2 < now {
            self.next_index += 1;
            skipped += 1;
        }
        let index = self.next_index;
        self.next_index += 1;
        let due = self.due(index);
        tokio::time::sleep_until(due).await;
        Tick {
            due,
            at: self.tick_utc(index).naive_utc(),
            skipped,
        }
    }

    pub fn interval(&self) -> TimeDelta {
        TimeDelta::from_std(self.interval).expect("interval in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_are_aligned_and_do_not_drift() {
        let start = Instant::now();
        let mut schedule = Schedule::new(Duration::from_secs(15), at("2026-11-23T10:00:07.250Z"));
        let first = schedule.next().await;
        assert_eq!(first.at.to_string(), "2026-11-23 10:00:15");
        assert_eq!(first.due - start, Duration::from_millis(7_750));
        for expected in ["10:00:30", "10:00:45", "10:01:00"] {
            // Work inside a tick does not push the next one later.
            tokio::time::sleep(Duration::from_secs(4)).await;
            let tick = schedule.next().await;
            assert_eq!(tick.at.format("%H:%M:%S").to_string(), expected);
            assert_eq!(tick.skipped, 0);
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(52_750));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stall_skips_ticks_instead_of_bursting() {
        let mut schedule = Schedule::new(Duration::from_secs(15), at("2026-11-23T10:00:00Z"));
        assert_eq!(
            schedule.next().await.at.format("%H:%M:%S").to_string(),
            "10:00:00"
        );
        tokio::time::sleep(Duration::from_secs(55)).await; // stalled until 10:00:55
        let tick = schedule.next().await;
        assert_eq!(tick.at.format("%H:%M:%S").to_string(), "10:01:00");
        assert_eq!(tick.skipped, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slightly_late_tick_still_fires() {
        let mut schedule = Schedule::new(Duration::from_secs(15), at("2026-11-23T10:00:00Z"));
        schedule.next().await;
        tokio::time::sleep(Duration::from_secs(20)).await; // 5 s late for 10:00:15
        let tick = schedule.next().await;
        assert_eq!(tick.at.format("%H:%M:%S").to_string(), "10:00:15");
        assert_eq!(tick.skipped, 0);
    }
}
