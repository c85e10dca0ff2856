//! Time handling. Everything is stored and exchanged in UTC; only the panel
//! converts to a display zone.

use chrono::{DateTime, NaiveDateTime, Utc};

/// The seed's timestamp format, `"YYYY-MM-DD HH:MM:SS"` (Fig. 2 of its paper).
pub const SEED_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Current UTC time truncated to whole seconds, as a DATETIME column holds it.
pub fn now_utc() -> NaiveDateTime {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0)
        .expect("a current timestamp is in range")
        .naive_utc()
}

/// `value` in the seed format, written digit by digit: backups format two
/// timestamps per row, and chrono's `format` parses its pattern on every call
/// (it was the largest cost of a snapshot, see docs/performance.md).
pub fn seed_timestamp(value: &NaiveDateTime) -> SeedTimestamp {
    use chrono::{Datelike, Timelike};
    let mut text = *b"0000-00-00 00:00:00";
    let mut put = |at: usize, digits: usize, mut number: u32| {
        for index in (at..at + digits).rev() {
            text[index] = b'0' + (number % 10) as u8;
            number /= 10;
        }
    };
    // Readings never carry years outside 0..=9999; such a year would print
    // modulo 10000 rather than panic.
    put(0, 4, value.year().rem_euclid(10_000) as u32);
    put(5, 2, value.month());
    put(8, 2, value.day());
    put(11, 2, value.hour());
    put(14, 2, value.minute());
    put(17, 2, value.second());
    SeedTimestamp(text)
}

/// A timestamp formatted in the seed format, on the stack.
pub struct SeedTimestamp([u8; 19]);

impl SeedTimestamp {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII digits and separators")
    }
}

/// Serde adapter for `NaiveDateTime` in the seed format.
pub mod seed_format {
    use super::{seed_timestamp, SEED_FORMAT};
    use chrono::NaiveDateTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &NaiveDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(seed_timestamp(value).as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<NaiveDateTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        NaiveDateTime::parse_from_str(&text, SEED_FORMAT).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::SEED_FORMAT;
        use chrono::NaiveDateTime;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(
            value: &Option<NaiveDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, serializer),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<NaiveDateTime>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| {
                    NaiveDateTime::parse_from_str(&text, SEED_FORMAT)
                        .map_err(serde::de::Error::custom)
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_timestamp_matches_chrono_format() {
        for text in [
            "2025-12-08 09:38:05",
            "0999-01-31 23:59:59",
            "2026-11-23 00:00:00",
        ] {
            let value = NaiveDateTime::parse_from_str(text, SEED_FORMAT).unwrap();
            assert_eq!(
                seed_timestamp(&value).as_str(),
                value.format(SEED_FORMAT).to_string()
            );
        }
    }
}
