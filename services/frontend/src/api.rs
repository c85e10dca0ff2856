//! The JSON API and the CSV export. Errors are JSON too, and never carry a
//! database message: a caller learns which parameter to fix, or that the
//! database is down, and nothing about the SQL.

use actix_web::http::{header, StatusCode};
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use chrono::{NaiveDateTime, TimeDelta};
use futures_util::stream::{self, Stream};
use serde_json::json;
use telemetry_core::time::{now_utc, SEED_FORMAT};
use telemetry_core::Reading;

use crate::params::{
    check_range, AggregatesParams, AggregatesQuery, CsvParams, NoParams, ReadingsParams,
    ReadingsQuery, WeatherParams, WeatherQuery,
};
use crate::query::{self, ParamError};
use crate::state::AppState;
use crate::store::{Aggregate, Cursor, Database, Order, ReadingFilter, StoreError};
use crate::view::Freshness;

/// Rows fetched per query while streaming a CSV export.
const CSV_PAGE: u32 = 1000;
/// The longest range one export may cover (about 2.4 million rows for the
/// default seven cities): bounded so one request cannot tie up a connection
/// for an unbounded time.
const CSV_MAX_DAYS: i64 = 366;
/// Suggested wait before retrying while the database is down.
const RETRY_AFTER_SECS: &str = "15";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    InvalidParameter(#[from] ParamError),
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] StoreError),
    #[error("live weather unavailable ({0})")]
    WeatherUnavailable(&'static str),
    #[error("database error")]
    Database(#[source] StoreError),
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownCursor(_) => {
                Self::InvalidParameter(ParamError::new("before_id", "no reading has this id"))
            }
            error if error.is_unavailable() => Self::DatabaseUnavailable(error),
            error => Self::Database(error),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            Self::DatabaseUnavailable(_) | Self::WeatherUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        let body = match self {
            Self::InvalidParameter(error) => json!({
                "error": "invalid parameter",
                "parameter": error.parameter,
                "detail": error.detail,
            }),
            Self::DatabaseUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
                json!({"error": "database unavailable", "detail": "the database is not answering; try again shortly"})
            }
            Self::WeatherUnavailable(kind) => {
                response.insert_header((header::RETRY_AFTER, "30"));
                json!({"error": "weather unavailable", "detail": format!("Open-Meteo request failed: {}", kind.replace('_', " "))})
            }
            // Already logged with its cause where it happened (store.rs).
            Self::Database(_) => json!({"error": "internal error"}),
        };
        response.json(body)
    }
}

/// `GET /api/readings?city=&since=&until=&limit=&before_id=`: newest first;
/// pass `next_before_id` back as `before_id` for the next page.
pub async fn readings(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ReadingsQuery {
        mut filter,
        limit,
        before_id,
    } = query::strict::<ReadingsParams>(request.query_string())?.try_into()?;
    canonical_city(&state, &mut filter);
    // Recent pages come from the panel's last read, older ones from the
    // database; a query asked again before the next read gets the same
    // bytes. During an outage, the error a query would give.
    let last_read = match state.panel.last_read().await {
        Ok(last_read) => Some(last_read),
        Err(error @ StoreError::Unreachable(_)) => return Err(error.into()),
        // The last read failed, or none has finished yet.
        Err(_) => None,
    };
    // Keyed by path and query, as the aggregates' replies in the same cache.
    let key = format!("{}?{}", request.path(), request.query_string());
    if let Some((read, _)) = &last_read {
        if let Some(body) = state.recent_replies.get(*read, &key) {
            return Ok(json_reply(body));
        }
    }
    // One row more than asked tells whether there is a next page.
    let count = limit as usize + 1;
    let from_memory = last_read.and_then(|(read, data)| {
        let rows = data.window_for(&filter)?.page(&filter, before_id, count)?;
        Some((read, rows))
    });
    let body = match from_memory {
        Some((read, rows)) => {
            let body = readings_page(rows, limit);
            state.recent_replies.put(read, &key, body.clone());
            body
        }
        None => {
            let cursor = match before_id {
                Some(id) => Some(state.database.cursor_after(id).await?),
                None => None,
            };
            let rows = state
                .database
                .readings(filter, Order::NewestFirst, cursor, limit + 1)
                .await?;
            readings_page(rows, limit)
        }
    };
    Ok(json_reply(body))
}

/// A configured city as configured (`Bogota` is Bogotá); another name is
/// left as typed, and matches what the database's collation matches.
fn canonical_city(state: &AppState, filter: &mut ReadingFilter) {
    if let Some(city) = filter.city.as_deref().and_then(|typed| state.city(typed)) {
        filter.city = Some(city.to_owned());
    }
}

/// The body of a `/api/readings` page; `rows` holds one more than `limit`
/// when there is a next page.
fn readings_page(mut rows: Vec<Reading>, limit: u32) -> Bytes {
    let next_before_id = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|reading| reading.id)
    } else {
        None
    };
    let body = json!({
        "readings": rows,
        "limit": limit,
        "next_before_id": next_before_id,
    });
    Bytes::from(serde_json::to_vec(&body).expect("JSON of plain values"))
}

fn json_reply(body: Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(header::ContentType::json())
        .body(body)
}

/// `GET /api/cities`: the latest reading of each configured city, from the
/// page's data (read every `panel.data_refresh_secs`); ages are as of now.
pub async fn cities(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    query::strict::<NoParams>(request.query_string())?;
    let (_, data) = state.panel.last_read().await?;
    let now = now_utc();
    let stale_after = state.settings.stale_after_secs;
    let cities: Vec<_> = data
        .latest
        .iter()
        .map(|(city, reading)| {
            let Freshness {
                age_secs,
                observation_age_secs,
                stale,
            } = Freshness::of(reading.as_ref(), now, stale_after);
            json!({
                "ciudad": city,
                "latest": reading,
                "age_seconds": age_secs,
                "observation_age_seconds": observation_age_secs,
                "stale": stale,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "cities": cities,
        "stale_after_secs": stale_after,
        "node": state.settings.node_name,
    })))
}

/// `GET /api/aggregates?city=&range=`: a configured city's hourly
/// aggregates (daily for `range=1y`), oldest first, from the page's data
/// (read every `panel.data_refresh_secs` from `mediciones_hourly`).
pub async fn aggregates(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = aggregates_reply(&request, &state, |city, rows| {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                json!({
                    "city": city,
                    "from": row.from.format(SEED_FORMAT).to_string(),
                    "count": row.count,
                    "temperature_min": row.temperature.min,
                    "temperature_mean": row.temperature.mean,
                    "temperature_max": row.temperature.max,
                    "humidity_min": row.humidity.min,
                    "humidity_mean": row.humidity.mean,
                    "humidity_max": row.humidity.max,
                })
            })
            .collect();
        Bytes::from(serde_json::to_vec(&rows).expect("JSON of plain values"))
    })
    .await?;
    Ok(json_reply(body))
}

/// `GET /api/aggregates.csv?city=&range=`: the same rows and columns as CSV.
pub async fn aggregates_csv(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = aggregates_reply(&request, &state, |city, rows| {
        let mut body = String::with_capacity(AGGREGATES_HEADER.len() + rows.len() * 80);
        body.push_str(AGGREGATES_HEADER);
        for row in rows {
            write_aggregate_row(&mut body, city, row);
        }
        Bytes::from(body)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"aggregates.csv\"",
        ))
        .body(body))
}

/// The body `format` makes of the configured city's rows over the range the
/// query asks for. The data changes once a read, so the bytes are kept
/// until the next one, by path and query (JSON and CSV apart).
async fn aggregates_reply(
    request: &HttpRequest,
    state: &AppState,
    format: impl FnOnce(&str, &[Aggregate]) -> Bytes,
) -> Result<Bytes, ApiError> {
    let AggregatesQuery { city, range } =
        query::strict::<AggregatesParams>(request.query_string())?.try_into()?;
    // Only configured cities have their aggregates read with the page's data.
    let Some(city) = state.city(&city) else {
        return Err(unknown_city(state));
    };
    let (read, data) = state.panel.last_read().await?;
    let key = format!("{}?{}", request.path(), request.query_string());
    if let Some(body) = state.recent_replies.get(read, &key) {
        return Ok(body);
    }
    let body = format(city, data.aggregates(city, range).unwrap_or_default());
    state.recent_replies.put(read, &key, body.clone());
    Ok(body)
}

fn unknown_city(state: &AppState) -> ApiError {
    ParamError::new(
        "city",
        format!("unknown city; known: {}", state.city_names.join(", ")),
    )
    .into()
}

const AGGREGATES_HEADER: &str = "city,from,count,temperature_min,temperature_mean,temperature_max,humidity_min,humidity_mean,humidity_max\r\n";

fn write_aggregate_row(out: &mut String, city: &str, row: &Aggregate) {
    use std::fmt::Write;
    let number = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    csv_text(out, city);
    let _ = write!(
        out,
        ",{},{},{},{},{},{},{},{}\r\n",
        row.from.format(SEED_FORMAT),
        row.count,
        number(row.temperature.min),
        number(row.temperature.mean),
        number(row.temperature.max),
        number(row.humidity.min),
        number(row.humidity.mean),
        number(row.humidity.max),
    );
}

/// `GET /api/weather?city=`: live weather for a configured city (cached).
pub async fn weather(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let WeatherQuery { city } =
        query::strict::<WeatherParams>(request.query_string())?.try_into()?;
    let Some(report) = state
        .weather
        .report(state.city(&city).unwrap_or(&city))
        .await
    else {
        return Err(unknown_city(&state));
    };
    let Some(observation) = &report.observation else {
        return Err(ApiError::WeatherUnavailable(
            report.error.unwrap_or("unknown"),
        ));
    };
    Ok(HttpResponse::Ok().json(json!({
        "city": report.city.name,
        "latitude": report.city.latitude,
        "longitude": report.city.longitude,
        "observed_at": observation.observed_at.format(SEED_FORMAT).to_string(),
        "temperature": observation.temperature,
        "humidity": observation.humidity,
        "apparent_temperature": observation.apparent_temperature,
        "weather_code": observation.weather_code,
        "wind_speed": observation.wind_speed,
        "fetched_at": report.fetched_at.map(|at| at.format(SEED_FORMAT).to_string()),
        "outdated": report.outdated,
    })))
}

/// `GET /api/readings.csv?city=&since=&until=`: oldest first, streamed page
/// by page. The range defaults to the last 24 hours and is at most a year.
pub async fn readings_csv(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut filter: ReadingFilter =
        query::strict::<CsvParams>(request.query_string())?.try_into()?;
    canonical_city(&state, &mut filter);
    let until = filter
        .until
        .unwrap_or_else(|| now_utc() + TimeDelta::seconds(1));
    let since = filter.since.unwrap_or(until - TimeDelta::hours(24));
    check_range(Some(since), Some(until))?;
    if until - since > TimeDelta::days(CSV_MAX_DAYS) {
        return Err(ParamError::new(
            "since",
            format!("the range may span at most {CSV_MAX_DAYS} days"),
        )
        .into());
    }
    filter.since = Some(since);
    filter.until = Some(until);
    // The first page is read before answering, so a dead database is a 503
    // rather than a 200 with a truncated body.
    let first = state
        .database
        .readings(filter.clone(), Order::OldestFirst, None, CSV_PAGE)
        .await?;
    let filename = format!(
        "mediciones_{}_{}.csv",
        since.format("%Y%m%dT%H%M%SZ"),
        until.format("%Y%m%dT%H%M%SZ")
    );
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(csv_stream(state.database.clone(), filter, first)))
}

struct CsvState {
    database: Database,
    filter: ReadingFilter,
    /// The page to write next, if already read.
    pending: Option<Vec<Reading>>,
    cursor: Option<Cursor>,
    header_written: bool,
    finished: bool,
}

fn csv_stream(
    database: Database,
    filter: ReadingFilter,
    first: Vec<Reading>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + 'static {
    let state = CsvState {
        database,
        filter,
        pending: Some(first),
        cursor: None,
        header_written: false,
        finished: false,
    };
    stream::unfold(state, |mut state| async move {
        if state.finished {
            return None;
        }
        let rows = match state.pending.take() {
            Some(rows) => rows,
            None => {
                let next = state
                    .database
                    .readings(
                        state.filter.clone(),
                        Order::OldestFirst,
                        state.cursor,
                        CSV_PAGE,
                    )
                    .await;
                match next {
                    Ok(rows) => rows,
                    Err(error) => {
                        // The status line is long gone: cutting the body short
                        // is the only way left to tell the client.
                        tracing::warn!(message = "CSV export interrupted", %error);
                        state.finished = true;
                        return Some((
                            Err(std::io::Error::other("database error during CSV export")),
                            state,
                        ));
                    }
                }
            }
        };
        let mut chunk = String::with_capacity(rows.len() * 96 + 128);
        if !state.header_written {
            chunk.push_str(CSV_HEADER);
            state.header_written = true;
        }
        for reading in &rows {
            write_csv_row(&mut chunk, reading);
        }
        state.finished = rows.len() < CSV_PAGE as usize;
        state.cursor = rows.last().map(Cursor::from);
        Some((Ok(Bytes::from(chunk)), state))
    })
}

const CSV_HEADER: &str = "id,ciudad,temperatura,humedad,fecha_registro,source,observed_at,apparent_temperature,weather_code,wind_speed\r\n";

fn write_csv_row(out: &mut String, reading: &Reading) {
    use std::fmt::Write;
    let r = &reading.reading;
    let time = |value: Option<NaiveDateTime>| {
        value
            .map(|t| t.format(SEED_FORMAT).to_string())
            .unwrap_or_default()
    };
    let number = |value: Option<f64>| value.map(|v| v.to_string()).unwrap_or_default();
    let _ = write!(out, "{},", reading.id);
    csv_text(out, &r.ciudad);
    let _ = write!(
        out,
        ",{},{},{},{},{},{},{},{}\r\n",
        number(r.temperatura),
        r.humedad.map(|v| v.to_string()).unwrap_or_default(),
        r.fecha_registro.format(SEED_FORMAT),
        r.source,
        time(r.observed_at),
        number(r.apparent_temperature),
        r.weather_code.map(|v| v.to_string()).unwrap_or_default(),
        number(r.wind_speed),
    );
}

/// A text field, quoted when needed (RFC 4180). A value that a spreadsheet
/// would run as a formula gets a leading `'`.
fn csv_text(out: &mut String, value: &str) {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(&value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    #[test]
    fn csv_text_quotes_and_defuses() {
        let mut out = String::new();
        csv_text(&mut out, "San José, \"CR\"");
        assert_eq!(out, "\"San José, \"\"CR\"\"\"");
        let mut out = String::new();
        csv_text(&mut out, "=HYPERLINK(\"x\")");
        assert!(out.starts_with("\"'=HYPERLINK"), "{out}");
    }

    #[test]
    fn invalid_parameter_is_a_400_naming_it() {
        let error = ApiError::from(ParamError::new("since", "not a date-time"));
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = response.into_body().try_into_bytes().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "invalid parameter");
        assert_eq!(json["parameter"], "since");
        assert_eq!(json["detail"], "not a date-time");
    }

    #[test]
    fn a_database_error_prints_its_cause_once() {
        let error = ApiError::from(StoreError::ReadFailed);
        let source = std::error::Error::source(&error).unwrap().to_string();
        assert_eq!(source, StoreError::ReadFailed.to_string());
        assert!(!error.to_string().contains(&source), "{error}");
    }

    #[test]
    fn unknown_cursor_is_a_400_on_before_id() {
        let error = ApiError::from(StoreError::UnknownCursor(9));
        assert_eq!(error.status_code(), StatusCode::BAD_REQUEST);
        assert!(matches!(error, ApiError::InvalidParameter(ref e) if e.parameter == "before_id"));
    }
}
