//! Numbers and times as the page writes them: times in the panel's zone,
//! a dash for a missing value.

use chrono::{NaiveDateTime, TimeZone};
use chrono_tz::Tz;

pub fn temperature(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |value| format!("{value:.1} °C"))
}

pub fn humidity(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "—".into(), |value| format!("{value} %"))
}

fn local(utc: NaiveDateTime, zone: Tz) -> chrono::DateTime<Tz> {
    zone.from_utc_datetime(&utc)
}

pub fn local_time(utc: NaiveDateTime, zone: Tz) -> String {
    local(utc, zone).format("%H:%M:%S").to_string()
}

pub fn local_date_time(utc: NaiveDateTime, zone: Tz) -> String {
    local(utc, zone).format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn iso_utc(utc: NaiveDateTime) -> String {
    utc.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn age_text(seconds: i64) -> String {
    match seconds {
        0..=4 => "just now".into(),
        5..=119 => format!("{seconds} s ago"),
        120..=7199 => format!("{} min ago", seconds / 60),
        7200..=172_799 => format!("{} h ago", seconds / 3600),
        _ => format!("{} days ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age_text(3), "just now");
        assert_eq!(age_text(45), "45 s ago");
        assert_eq!(age_text(600), "10 min ago");
        assert_eq!(age_text(3 * 86_400), "3 days ago");
    }
}
