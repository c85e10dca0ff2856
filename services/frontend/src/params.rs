//! What each endpoint accepts, and how each value is checked. A struct per
//! endpoint names its parameters (query.rs reads a query string into it);
//! its `TryFrom` checks the values in a fixed order, whatever the order of
//! the query, so the same query always gets the same answer.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde::Deserialize;

use crate::query::ParamError;
use crate::range::Range;
use crate::store::ReadingFilter;

/// `ciudad` is VARCHAR(64).
const MAX_CITY_CHARS: usize = 64;
const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// `/api/readings`: its fields, in this order, are the names it accepts.
#[derive(Deserialize)]
pub struct ReadingsParams {
    city: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    before_id: Option<String>,
}

#[derive(Debug)]
pub struct ReadingsQuery {
    pub filter: ReadingFilter,
    pub limit: u32,
    pub before_id: Option<u64>,
}

impl TryFrom<ReadingsParams> for ReadingsQuery {
    type Error = ParamError;

    fn try_from(params: ReadingsParams) -> Result<Self, ParamError> {
        Ok(Self {
            filter: filter(params.city, params.since, params.until)?,
            limit: limit("limit", params.limit)?,
            before_id: reading_id("before_id", params.before_id)?,
        })
    }
}

/// `/api/readings.csv`: a filter, without paging.
#[derive(Deserialize)]
pub struct CsvParams {
    city: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

impl TryFrom<CsvParams> for ReadingFilter {
    type Error = ParamError;

    fn try_from(params: CsvParams) -> Result<Self, ParamError> {
        filter(params.city, params.since, params.until)
    }
}

/// `/api/weather`: one city, required.
#[derive(Deserialize)]
pub struct WeatherParams {
    city: Option<String>,
}

#[derive(Debug)]
pub struct WeatherQuery {
    pub city: String,
}

impl TryFrom<WeatherParams> for WeatherQuery {
    type Error = ParamError;

    fn try_from(params: WeatherParams) -> Result<Self, ParamError> {
        let city = city("city", params.city)?.ok_or_else(|| ParamError::new("city", "required"))?;
        Ok(Self { city })
    }
}

/// `/api/cities`: no parameters at all.
#[derive(Deserialize)]
pub struct NoParams {}

/// The page and its fragment, read leniently (`query::lenient`): `city`
/// picks the live weather shown, `range` the charts' range.
#[derive(Default, Deserialize)]
pub struct PageParams {
    pub city: Option<String>,
    pub range: Option<String>,
}

/// `/api/aggregates` and its CSV form: one city, required, and a range.
#[derive(Deserialize)]
pub struct AggregatesParams {
    city: Option<String>,
    range: Option<String>,
}

#[derive(Debug)]
pub struct AggregatesQuery {
    pub city: String,
    pub range: Range,
}

impl TryFrom<AggregatesParams> for AggregatesQuery {
    type Error = ParamError;

    fn try_from(params: AggregatesParams) -> Result<Self, ParamError> {
        let city = city("city", params.city)?.ok_or_else(|| ParamError::new("city", "required"))?;
        let range = match params.range {
            None => Range::default(),
            Some(value) => Range::parse(&value).ok_or_else(|| {
                ParamError::new("range", format!("must be one of {}", Range::accepted()))
            })?,
        };
        Ok(Self { city, range })
    }
}

fn filter(
    city_name: Option<String>,
    since: Option<String>,
    until: Option<String>,
) -> Result<ReadingFilter, ParamError> {
    let filter = ReadingFilter {
        city: city("city", city_name)?,
        since: time("since", since)?,
        until: time("until", until)?,
    };
    check_range(filter.since, filter.until)?;
    Ok(filter)
}

fn city(name: &str, value: Option<String>) -> Result<Option<String>, ParamError> {
    let Some(value) = value else {
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
    Ok(Some(value))
}

/// A UTC time: RFC 3339 (`2026-11-23T15:00:00Z`, any offset), or
/// `YYYY-MM-DD HH:MM:SS` / `YYYY-MM-DDTHH:MM:SS` / `YYYY-MM-DD` taken as UTC.
fn time(name: &str, value: Option<String>) -> Result<Option<NaiveDateTime>, ParamError> {
    let Some(value) = value.as_deref() else {
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
            format!(
                "not a date-time; use RFC 3339 such as 2026-11-23T15:00:00Z, or 2026-11-23{hint}"
            ),
        ));
    };
    // The DATETIME column's range.
    if !(1000..=9999).contains(&time.year()) {
        return Err(ParamError::new(name, "year must be between 1000 and 9999"));
    }
    Ok(Some(time))
}

fn limit(name: &str, value: Option<String>) -> Result<u32, ParamError> {
    let Some(value) = value else {
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

fn reading_id(name: &str, value: Option<String>) -> Result<Option<u64>, ParamError> {
    let Some(value) = value else {
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
    use crate::query::strict;

    fn readings(query: &str) -> Result<ReadingsQuery, ParamError> {
        strict::<ReadingsParams>(query)?.try_into()
    }

    #[test]
    fn accepts_the_documented_forms() {
        let query = readings(
            "city=Bogot%C3%A1&since=2026-11-23T15:00:00Z&until=2026-11-24&limit=10&before_id=5",
        )
        .unwrap();
        assert_eq!(query.filter.city.as_deref(), Some("Bogotá"));
        assert_eq!(
            query.filter.since.unwrap().to_string(),
            "2026-11-23 15:00:00"
        );
        assert_eq!(
            query.filter.until.unwrap().to_string(),
            "2026-11-24 00:00:00"
        );
        assert_eq!(query.limit, 10);
        assert_eq!(query.before_id, Some(5));
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let query = readings("since=2026-11-23T10:00:00%2D05:00").unwrap();
        assert_eq!(
            query.filter.since.unwrap().to_string(),
            "2026-11-23 15:00:00"
        );
    }

    #[test]
    fn absent_and_empty_values_take_the_default() {
        let query = readings("city=&limit=").unwrap();
        assert_eq!(query.filter.city, None);
        assert_eq!(query.limit, DEFAULT_LIMIT);
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
            let error = readings(query).unwrap_err();
            assert_eq!(error.parameter, parameter, "{query}: {error}");
        }
    }

    #[test]
    fn checks_go_in_a_fixed_order_whatever_the_query_order() {
        let error = readings("limit=0&since=2026-01-02&until=2026-01-01")
            .err()
            .unwrap();
        assert_eq!(error.parameter, "until");
        let error = readings("before_id=0&limit=0").unwrap_err();
        assert_eq!(error.parameter, "limit");
    }

    #[test]
    fn long_and_control_values_are_refused() {
        let long = "a".repeat(65);
        assert_eq!(
            readings(&format!("city={long}")).unwrap_err().parameter,
            "city"
        );
        let huge = "a".repeat(10_000);
        assert_eq!(
            readings(&format!("city={huge}")).unwrap_err().parameter,
            "city"
        );
        assert_eq!(readings("city=a%00b").unwrap_err().parameter, "city");
        let name = "x".repeat(500);
        assert_eq!(
            readings(&format!("{name}=1")).unwrap_err().parameter.len(),
            64
        );
    }

    #[test]
    fn weather_needs_a_city() {
        let weather = |query| -> Result<WeatherQuery, ParamError> {
            strict::<WeatherParams>(query)?.try_into()
        };
        assert_eq!(weather("city=Cali").unwrap().city, "Cali");
        assert_eq!(weather("city=").unwrap_err().detail, "required");
    }

    #[test]
    fn aggregates_need_a_city_and_take_a_known_range() {
        let aggregates = |query| -> Result<AggregatesQuery, ParamError> {
            strict::<AggregatesParams>(query)?.try_into()
        };
        let query = aggregates("city=Cali&range=30d").unwrap();
        assert_eq!((query.city.as_str(), query.range), ("Cali", Range::Month));
        assert_eq!(aggregates("city=Cali").unwrap().range, Range::Day);
        assert_eq!(aggregates("range=7d").unwrap_err().detail, "required");
        let error = aggregates("city=Cali&range=2w").unwrap_err();
        assert_eq!(
            (error.parameter.as_str(), error.detail.as_str()),
            ("range", "must be one of 24h, 7d, 30d, 1y")
        );
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
