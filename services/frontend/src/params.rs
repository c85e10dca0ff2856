//! Query-string parsing for the API. Every rejection names the parameter, so
//! a caller knows what to fix; nothing unparsed ever reaches a query.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};

/// No parameter value we accept is longer; a longer one is refused before
/// any parsing.
const MAX_VALUE_CHARS: usize = 256;
/// `ciudad` is VARCHAR(64).
const MAX_CITY_CHARS: usize = 64;
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid parameter `{parameter}`: {detail}")]
pub struct ParamError {
    pub parameter: String,
    pub detail: String,
}

impl ParamError {
    pub fn new(parameter: &str, detail: impl Into<String>) -> Self {
        // The name is echoed back; a hostile one is cut short.
        let parameter: String = parameter.chars().take(64).collect();
        Self {
            parameter,
            detail: detail.into(),
        }
    }
}

/// The decoded query string, restricted to the names an endpoint knows.
#[derive(Debug, Default)]
pub struct Params {
    values: BTreeMap<&'static str, String>,
}

impl Params {
    /// Decodes `query`; an unknown, repeated or overlong parameter is an
    /// error. An empty value counts as absent (`?city=` from an empty form).
    pub fn parse(query: &str, known: &[&'static str]) -> Result<Self, ParamError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|error| ParamError::new("query", error.to_string()))?;
        let mut values = BTreeMap::new();
        for (name, value) in pairs {
            let Some(known_name) = known.iter().copied().find(|known| *known == name) else {
                return Err(ParamError::new(
                    &name,
                    format!(
                        "unknown parameter; this endpoint accepts {}",
                        known.join(", ")
                    ),
                ));
            };
            if value.chars().count() > MAX_VALUE_CHARS {
                return Err(ParamError::new(
                    known_name,
                    format!("longer than {MAX_VALUE_CHARS} characters"),
                ));
            }
            if values.contains_key(known_name) {
                return Err(ParamError::new(known_name, "given more than once"));
            }
            if !value.is_empty() {
                values.insert(known_name, value);
            }
        }
        Ok(Self { values })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub fn city(&self, name: &'static str) -> Result<Option<String>, ParamError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        if value.chars().count() > MAX_CITY_CHARS {
            return Err(ParamError::new(
                name,
                format!("longer than {MAX_CITY_CHARS} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(ParamError::new(name, "contains control characters"));
        }
        Ok(Some(value.to_owned()))
    }

    /// A UTC time: RFC 3339 (`2026-11-23T15:00:00Z`, any offset), or
    /// `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` / `YYYY-MM-DD` taken as UTC.
    pub fn time(&self, name: &'static str) -> Result<Option<NaiveDateTime>, ParamError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let parsed = DateTime::parse_from_rfc3339(value)
            .map(|time| time.naive_utc())
            .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S"))
            .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
            .or_else(|_| {
                NaiveDate::parse_from_str(value, "%Y-%m-%d")
                    .map(|date| date.and_time(Default::default()))
            });
        let Ok(time) = parsed else {
            let hint = if value.contains(' ') && value.contains('T') {
                " (a `+` in a query string means a space: write the offset as %2B or use Z)"
            } else {
                ""
            };
            return Err(ParamError::new(
                name,
                format!("not a date-time; use RFC 3339 such as 2026-11-23T15:00:00Z, or 2026-11-23{hint}"),
            ));
        };
        // The DATETIME column's range.
        if !(1000..=9999).contains(&time.year()) {
            return Err(ParamError::new(name, "year must be between 1000 and 9999"));
        }
        Ok(Some(time))
    }

    pub fn limit(&self, name: &'static str) -> Result<u32, ParamError> {
        let Some(value) = self.get(name) else {
            return Ok(DEFAULT_LIMIT);
        };
        match value.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
            _ => Err(ParamError::new(
                name,
                format!("must be a whole number from 1 to {MAX_LIMIT}"),
            )),
        }
    }

    pub fn id(&self, name: &'static str) -> Result<Option<u64>, ParamError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        match value.parse::<u64>() {
            Ok(id) if id > 0 => Ok(Some(id)),
            _ => Err(ParamError::new(
                name,
                "must be a reading id (a positive whole number)",
            )),
        }
    }
}

/// Checks that a range is not inverted; the error names `until`.
pub fn check_range(
    since: Option<NaiveDateTime>,
    until: Option<NaiveDateTime>,
) -> Result<(), ParamError> {
    match (since, until) {
        (Some(since), Some(until)) if until <= since => {
            Err(ParamError::new("until", "must be later than since"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["city", "since", "until", "limit", "before_id"];

    fn parse(query: &str) -> Result<Params, ParamError> {
        Params::parse(query, KNOWN)
    }

    #[test]
    fn accepts_the_documented_forms() {
        let params = parse(
            "city=Bogot%C3%A1&since=2026-11-23T15:00:00Z&until=2026-11-24&limit=10&before_id=5",
        )
        .unwrap();
        assert_eq!(params.city("city").unwrap().as_deref(), Some("Bogotá"));
        assert_eq!(
            params.time("since").unwrap().unwrap().to_string(),
            "2026-11-23 15:00:00"
        );
        assert_eq!(
            params.time("until").unwrap().unwrap().to_string(),
            "2026-11-24 00:00:00"
        );
        assert_eq!(params.limit("limit").unwrap(), 10);
        assert_eq!(params.id("before_id").unwrap(), Some(5));
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let params = parse("since=2026-11-23T10:00:00%2D05:00").unwrap();
        assert_eq!(
            params.time("since").unwrap().unwrap().to_string(),
            "2026-11-23 15:00:00"
        );
    }

    #[test]
    fn absent_and_empty_values_take_the_default() {
        let params = parse("city=&limit=").unwrap();
        assert_eq!(params.city("city").unwrap(), None);
        assert_eq!(params.limit("limit").unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn each_rejection_names_its_parameter() {
        let cases = [
            ("since=2025-02-30", "since"),
            ("until=yesterday", "until"),
            ("since=0001-01-01T00:00:00Z", "since"),
            ("limit=1000000", "limit"),
            ("limit=-1", "limit"),
            ("limit=0", "limit"),
            ("before_id=1%27%20OR%201=1", "before_id"),
            ("colour=red", "colour"),
            ("limit=1&limit=2", "limit"),
        ];
        for (query, parameter) in cases {
            let params = parse(query);
            let error = params
                .and_then(|params| {
                    params.time("since")?;
                    params.time("until")?;
                    params.limit("limit")?;
                    params.id("before_id")?;
                    Ok(())
                })
                .unwrap_err();
            assert_eq!(error.parameter, parameter, "{query}: {error}");
        }
    }

    #[test]
    fn long_and_control_values_are_refused() {
        let long = "a".repeat(65);
        assert_eq!(
            parse(&format!("city={long}"))
                .unwrap()
                .city("city")
                .unwrap_err()
                .parameter,
            "city"
        );
        let huge = "a".repeat(10_000);
        assert_eq!(
            parse(&format!("city={huge}")).unwrap_err().parameter,
            "city"
        );
        assert_eq!(
            parse("city=a%00b")
                .unwrap()
                .city("city")
                .unwrap_err()
                .parameter,
            "city"
        );
        let name = "x".repeat(500);
        assert_eq!(parse(&format!("{name}=1")).unwrap_err().parameter.len(), 64);
    }

    #[test]
    fn inverted_range_names_until() {
        let since = NaiveDate::from_ymd_opt(2026, 1, 2)
            .unwrap()
            .and_hms_opt(0, 0, 0);
        let until = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0);
        assert_eq!(check_range(since, until).unwrap_err().parameter, "until");
    }
}
