//! The time ranges the panel's charts and `/api/aggregates` offer, and the
//! buckets each is drawn in.

use chrono::{NaiveDateTime, TimeDelta, Timelike};

/// A chart's range. The last 24 hours are drawn from `mediciones` itself in
/// five-minute buckets; longer ranges from the hourly aggregates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Range {
    #[default]
    Day = 0,
    Week = 1,
    Month = 2,
    Year = 3,
}

impl Range {
    pub const ALL: [Self; 4] = [Self::Day, Self::Week, Self::Month, Self::Year];

    /// The value of `?range=`.
    pub fn param(self) -> &'static str {
        match self {
            Self::Day => "24h",
            Self::Week => "7d",
            Self::Month => "30d",
            Self::Year => "1y",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|range| range.param() == value)
    }

    /// What `range` accepts, for error messages: `24h, 7d, 30d, 1y`.
    pub fn accepted() -> String {
        Self::ALL.map(Self::param).join(", ")
    }

    /// "last 24 hours", as a sentence says it.
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Day => "last 24 hours",
            Self::Week => "last 7 days",
            Self::Month => "last 30 days",
            Self::Year => "last year",
        }
    }

    pub fn span(self) -> TimeDelta {
        match self {
            Self::Day => TimeDelta::hours(24),
            Self::Week => TimeDelta::days(7),
            Self::Month => TimeDelta::days(30),
            Self::Year => TimeDelta::days(365),
        }
    }

    /// Length of one aggregate point: an hour, or a day for the year (365
    /// points; hourly would be 8,760 for a chart 480 pixels wide).
    pub fn aggregate_secs(self) -> i64 {
        match self {
            Self::Year => 86_400,
            Self::Day | Self::Week | Self::Month => 3_600,
        }
    }

    /// Start of the first aggregate in the range ending `now`: whole hours
    /// (or UTC days), the current one included, `span` in all.
    pub fn first_aggregate(self, now: NaiveDateTime) -> NaiveDateTime {
        let bucket = TimeDelta::seconds(self.aggregate_secs());
        let current = match self {
            Self::Year => now.date().and_time(Default::default()),
            Self::Day | Self::Week | Self::Month => now
                .with_minute(0)
                .and_then(|time| time.with_second(0))
                .and_then(|time| time.with_nanosecond(0))
                .expect("the start of an hour exists"),
        };
        current - self.span() + bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        for range in Range::ALL {
            assert_eq!(Range::parse(range.param()), Some(range));
        }
        assert_eq!(Range::parse("2d"), None);
        assert_eq!(Range::accepted(), "24h, 7d, 30d, 1y");
    }

    #[test]
    fn ranges_cover_whole_buckets_up_to_the_current_one() {
        let now =
            NaiveDateTime::parse_from_str("2026-11-23 15:42:10", "%Y-%m-%d %H:%M:%S").unwrap();
        let first = |range: Range| range.first_aggregate(now).to_string();
        assert_eq!(first(Range::Day), "2026-11-22 16:00:00");
        assert_eq!(first(Range::Month), "2026-10-24 16:00:00");
        assert_eq!(first(Range::Year), "2025-11-24 00:00:00");
    }
}
