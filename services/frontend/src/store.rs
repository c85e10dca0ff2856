//! Every query the panel runs. Each one is served by an index of
//! `mediciones` (primary key, `uq_mediciones_city_tick (ciudad,
//! fecha_registro)` or `ix_mediciones_fecha (fecha_registro)`), or by the
//! primary key `(ciudad, hour)` of the hourly aggregates `mediciones_hourly`
//! (kept by a trigger, see migration V2), so none of them scans a table,
//! whatever its size. All values are bound parameters.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta, Utc};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Pool, Value};
use telemetry_core::database::{with_timeout, DatabaseError};
use telemetry_core::reading::COLUMNS;
use telemetry_core::Reading;
use tokio::runtime::Handle;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::range::Range;

/// Rows in the page's "latest readings" table, as in the seed.
pub const RECENT_ROWS: u32 = 15;
/// The chart averages readings over buckets this long: 288 points a day is
/// as many as a 500-pixel-wide chart can show.
pub const CHART_BUCKET_SECS: u32 = 300;
/// Hours covered by the chart.
pub const CHART_HOURS: i64 = 24;
/// Chart queries of one panel read that run at once. MariaDB runs each on
/// one core; more than a few would only queue there, and take connections
/// (the pool holds 10) from the API.
const CHART_CONNECTIONS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error("no reading with id {0}")]
    UnknownCursor(u64),
    #[error("the database task was cancelled (shutting down)")]
    Cancelled,
    /// From the panel's snapshot: an outage is under way.
    #[error("the database has been unreachable since {0}")]
    Unreachable(NaiveDateTime),
    /// From the panel's snapshot: its last read failed with a query error.
    #[error("the last read of the panel data failed")]
    ReadFailed,
    /// From the panel's snapshot: the first read has not finished yet.
    #[error("the panel data has not been read yet")]
    NotReadYet,
}

impl StoreError {
    /// The server could not be reached, as opposed to a query it refused.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(error) => error.is_unavailable(),
            Self::UnknownCursor(_) | Self::ReadFailed => false,
            Self::Cancelled | Self::Unreachable(_) | Self::NotReadYet => true,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Database(DatabaseError::Timeout(_)) => "timeout",
            Self::Database(error) if error.is_unavailable() => "unavailable",
            Self::Database(_) => "query",
            Self::UnknownCursor(_) => "unknown_cursor",
            Self::Cancelled => "cancelled",
            Self::Unreachable(_) => "unavailable",
            Self::ReadFailed => "query",
            Self::NotReadYet => "not_read_yet",
        }
    }
}

/// One point of a city's 24 h chart: the average over one bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartPoint {
    pub at: NaiveDateTime,
    pub temperature: Option<f64>,
    pub humidity: Option<f64>,
}

/// The readings of one city over one hour, or one day, from the hourly
/// aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    /// Start of the hour or day (UTC).
    pub from: NaiveDateTime,
    /// Readings in it, with or without values.
    pub count: u64,
    pub temperature: Spread,
    pub humidity: Spread,
}

/// Minimum, mean and maximum of the values that are not NULL; all `None`
/// when there are none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub min: Option<f64>,
    pub mean: Option<f64>,
    pub max: Option<f64>,
}

/// What the page shows from the database, read in one go, and the newest
/// readings the API lists from memory.
#[derive(Debug, Clone)]
pub struct PanelData {
    /// When this was read (UTC).
    pub taken_at: NaiveDateTime,
    /// The latest reading of each configured city, in configuration order.
    pub latest: Vec<(String, Option<Reading>)>,
    /// Each configured city's last 24 h, in configuration order.
    pub charts: Vec<(String, Vec<ChartPoint>)>,
    /// Each configured city's hourly aggregates over the longest hourly
    /// range (30 days), oldest first; shorter ranges are their tail.
    pub hourly: Vec<(String, Vec<Aggregate>)>,
    /// Each configured city's daily aggregates over the year, oldest first.
    pub daily: Vec<(String, Vec<Aggregate>)>,
    /// The most recent rows, newest first (the seed's table).
    pub recent: Vec<Reading>,
    /// The newest readings of all cities, as `/api/readings` lists them.
    pub window: Window,
    /// The same per configured city, in configuration order.
    pub city_windows: Vec<(String, Window)>,
}

impl PanelData {
    /// `city`'s aggregates over `range` as of this read, oldest first;
    /// `None` for a city not configured.
    pub fn aggregates(&self, city: &str, range: Range) -> Option<&[Aggregate]> {
        let series = if range == Range::Year {
            &self.daily
        } else {
            &self.hourly
        };
        let (_, rows) = series.iter().find(|(name, _)| name == city)?;
        let first = range.first_aggregate(self.taken_at);
        Some(&rows[rows.partition_point(|row| row.from < first)..])
    }

    /// The window that holds `filter`'s listing, if one does.
    pub fn window_for(&self, filter: &ReadingFilter) -> Option<&Window> {
        match &filter.city {
            None => Some(&self.window),
            Some(city) => self
                .city_windows
                .iter()
                .find(|(name, _)| name == city)
                .map(|(_, window)| window),
        }
    }
}

/// Readings a window holds per listing: the first page at the API's largest
/// `limit`, plus the one row that tells whether a next page exists.
pub const WINDOW_ROWS: u32 = 1001;

/// The newest readings of one listing (all cities, or one), newest first as
/// `/api/readings` orders them: by tick, then id.
#[derive(Debug, Clone, Default)]
pub struct Window {
    pub rows: Vec<Reading>,
    /// The listing has no rows beyond these.
    pub complete: bool,
}

impl Window {
    /// The first `count` rows of the listing that `filter` selects (its city
    /// is this window's), after the reading `after_id` if given; `None` when
    /// the answer may reach past what this window holds.
    pub fn page(
        &self,
        filter: &ReadingFilter,
        after_id: Option<u64>,
        count: usize,
    ) -> Option<Vec<Reading>> {
        let start = match after_id {
            Some(id) => self.rows.iter().position(|reading| reading.id == id)? + 1,
            None => 0,
        };
        let mut page = Vec::with_capacity(count.min(self.rows.len()));
        for reading in &self.rows[start..] {
            let tick = reading.reading.fecha_registro;
            if filter.until.is_some_and(|until| tick >= until) {
                continue;
            }
            // Newest first: every row from here on is older still.
            if filter.since.is_some_and(|since| tick < since) {
                return Some(page);
            }
            if page.len() == count {
                return Some(page);
            }
            page.push(reading.clone());
        }
        (page.len() == count || self.complete).then_some(page)
    }
}

/// Filters of `/api/readings` and its CSV export, already validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadingFilter {
    pub city: Option<String>,
    /// Inclusive.
    pub since: Option<NaiveDateTime>,
    /// Exclusive.
    pub until: Option<NaiveDateTime>,
}

/// Listing order: by tick, ties (several cities per tick) broken by id. Both
/// indexes on `fecha_registro` end with the primary key, so either order is
/// read straight off an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// A position in a listing: the (tick, id) of the last row already seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub fecha_registro: NaiveDateTime,
    pub id: u64,
}

impl From<&Reading> for Cursor {
    fn from(reading: &Reading) -> Self {
        Self {
            fecha_registro: reading.reading.fecha_registro,
            id: reading.id,
        }
    }
}

/// The pool, the time bound, and whether the database is currently reachable.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    timeout: Duration,
    /// The runtime the pool's connections live on (see `run`).
    runtime: Handle,
    /// Start of the current outage (UTC), `None` while the database answers.
    outage_since: Arc<Mutex<Option<NaiveDateTime>>>,
    metrics: Arc<Metrics>,
}

impl Database {
    /// Must be called inside the runtime that will own the connections.
    pub fn new(pool: Pool, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            timeout,
            runtime: Handle::current(),
            outage_since: Arc::new(Mutex::new(None)),
            metrics,
        }
    }

    /// The bound on each database operation.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Since when the database has been unreachable, if it is.
    pub fn outage_since(&self) -> Option<NaiveDateTime> {
        *self.outage_since.lock().expect("outage lock")
    }

    /// Runs `work` under the configured time bound and records the outcome.
    ///
    /// The work runs on the application's main runtime, not on the actix
    /// worker thread that asked for it: actix gives each worker its own
    /// single-threaded runtime, and pooled connections (sockets registered
    /// with one runtime's reactor) must not wander between runtimes.
    async fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(Pool) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, mysql_async::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let limit = self.timeout;
        // The caller's span goes along, so the work's log lines carry it.
        let task = self
            .runtime
            .spawn(with_timeout(limit, work(pool)).in_current_span());
        let result = match task.await {
            Ok(result) => result.map_err(StoreError::from),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(StoreError::Cancelled),
        };
        self.record(&result);
        result
    }

    fn record<T>(&self, result: &Result<T, StoreError>) {
        let mut outage = self.outage_since.lock().expect("outage lock");
        match result {
            Ok(_) => {
                if let Some(since) = outage.take() {
                    tracing::info!(message = "database reachable again", down_since = %since);
                }
                self.metrics.database_result(None);
            }
            Err(error) => {
                self.metrics.database_result(Some(error.kind()));
                if matches!(&error, StoreError::Database(database) if database.is_untrusted()) {
                    tracing::error!(message = "database server refused", %error);
                }
                if error.is_unavailable() {
                    self.metrics.database_down();
                    if outage.is_none() {
                        tracing::warn!(message = "database unreachable", %error);
                        *outage = Some(Utc::now().naive_utc());
                    }
                } else {
                    tracing::error!(message = "database query failed", %error);
                }
            }
        }
    }

    /// A round trip to the server (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|pool| async move {
            let mut conn = pool.get_conn().await?;
            conn.query_drop("SELECT 1").await?;
            Ok(())
        })
        .await
    }

    /// Everything the page needs. The 24 h charts are the costly part (each
    /// averages some 5,800 rows), so they run `CHART_CONNECTIONS` at a time,
    /// alongside the cheap lookups on one more connection; the rest of the
    /// pool stays free for the API.
    #[tracing::instrument(skip_all, fields(cities = cities.len()))]
    pub async fn panel_data(&self, cities: Arc<[String]>) -> Result<PanelData, StoreError> {
        self.run(move |pool| async move {
            let taken_at = telemetry_core::time::now_utc();
            let chart_since = taken_at - TimeDelta::hours(CHART_HOURS);
            // Owned names: futures borrowing them would not be `Send` for
            // every lifetime, as the spawned task needs.
            let per_city = stream::iter(cities.to_vec())
                .map(|city| {
                    let pool = pool.clone();
                    async move {
                        let mut conn = pool.get_conn().await?;
                        let points = chart(&mut conn, &city, chart_since, taken_at).await?;
                        let window = window(&mut conn, Some(city.clone())).await?;
                        let hourly = aggregates(
                            &mut conn,
                            HOURLY_QUERY,
                            &city,
                            Range::Month.first_aggregate(taken_at),
                        )
                        .await?;
                        let daily = aggregates(
                            &mut conn,
                            DAILY_QUERY,
                            &city,
                            Range::Year.first_aggregate(taken_at),
                        )
                        .await?;
                        Ok::<_, mysql_async::Error>((city, points, window, hourly, daily))
                    }
                })
                .buffered(CHART_CONNECTIONS)
                .try_collect::<Vec<_>>();
            let overall = async {
                let mut conn = pool.get_conn().await?;
                let recent: Vec<Reading> = conn.exec(recent_query(), (RECENT_ROWS,)).await?;
                let window = window(&mut conn, None).await?;
                Ok::<_, mysql_async::Error>((recent, window))
            };
            let (per_city, (recent, window)) = tokio::try_join!(per_city, overall)?;
            let mut latest = Vec::with_capacity(per_city.len());
            let mut charts = Vec::with_capacity(per_city.len());
            let mut city_windows = Vec::with_capacity(per_city.len());
            let mut hourly = Vec::with_capacity(per_city.len());
            let mut daily = Vec::with_capacity(per_city.len());
            for (city, points, city_window, city_hourly, city_daily) in per_city {
                // The newest row of the city's listing is its latest reading.
                latest.push((city.clone(), city_window.rows.first().cloned()));
                charts.push((city.clone(), points));
                hourly.push((city.clone(), city_hourly));
                daily.push((city.clone(), city_daily));
                city_windows.push((city, city_window));
            }
            Ok(PanelData {
                taken_at,
                latest,
                charts,
                hourly,
                daily,
                recent,
                window,
                city_windows,
            })
        })
        .await
    }

    /// Where the listing continues after the reading `id`.
    pub async fn cursor_after(&self, id: u64) -> Result<Cursor, StoreError> {
        let tick: Option<NaiveDateTime> = self
            .run(move |pool| async move {
                let mut conn = pool.get_conn().await?;
                conn.exec_first(CURSOR_QUERY, (id,)).await
            })
            .await?;
        tick.map(|fecha_registro| Cursor { fecha_registro, id })
            .ok_or(StoreError::UnknownCursor(id))
    }

    /// Up to `limit` readings matching `filter`, in `order`, after `cursor`.
    #[tracing::instrument(
        skip_all,
        fields(city = filter.city.as_deref(), limit = limit, rows = tracing::field::Empty)
    )]
    pub async fn readings(
        &self,
        filter: ReadingFilter,
        order: Order,
        cursor: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<Reading>, StoreError> {
        let readings: Vec<Reading> = self
            .run(move |pool| async move {
                let (statement, params) = readings_statement(&filter, order, cursor, limit);
                let mut conn = pool.get_conn().await?;
                conn.exec(statement, params).await
            })
            .await?;
        tracing::Span::current().record("rows", readings.len());
        Ok(readings)
    }
}

/// The newest `WINDOW_ROWS` readings of `city` (or of all cities), read off
/// an index as the API's own listing reads them.
async fn window(conn: &mut Conn, city: Option<String>) -> Result<Window, mysql_async::Error> {
    let filter = ReadingFilter {
        city,
        ..ReadingFilter::default()
    };
    let (statement, params) = readings_statement(&filter, Order::NewestFirst, None, WINDOW_ROWS);
    let rows: Vec<Reading> = conn.exec(statement, params).await?;
    Ok(Window {
        complete: rows.len() < WINDOW_ROWS as usize,
        rows,
    })
}

// The statements as they are sent, public so that the benchmarks time and
// EXPLAIN these and not copies of them.

/// Binds the city, the first and last tick, and `CHART_BUCKET_SECS`.
pub const CHART_QUERY: &str =
    "SELECT MIN(fecha_registro), AVG(temperatura), CAST(AVG(humedad) AS DOUBLE) \
     FROM mediciones WHERE ciudad = ? AND fecha_registro >= ? AND fecha_registro <= ? \
     GROUP BY UNIX_TIMESTAMP(fecha_registro) DIV ? ORDER BY 1";

/// One city's hourly aggregates from an hour on, off the primary key.
/// Binds the city and the first hour. Means are over the values that are
/// not NULL; an hour without any has a NULL mean.
pub const HOURLY_QUERY: &str = "SELECT hour, readings, \
     temperature_min, temperature_sum / NULLIF(temperature_count, 0), temperature_max, \
     CAST(humidity_min AS DOUBLE), CAST(humidity_sum / NULLIF(humidity_count, 0) AS DOUBLE), \
     CAST(humidity_max AS DOUBLE) \
     FROM mediciones_hourly WHERE ciudad = ? AND hour >= ? ORDER BY hour";

/// The same per UTC day, summed up from the hours (at most 24 × 365 rows
/// of one city, read off the primary key). Binds the city and the first day.
pub const DAILY_QUERY: &str = "SELECT CAST(DATE(hour) AS DATETIME) AS day, \
     CAST(SUM(readings) AS UNSIGNED), \
     MIN(temperature_min), SUM(temperature_sum) / NULLIF(SUM(temperature_count), 0), \
     MAX(temperature_max), CAST(MIN(humidity_min) AS DOUBLE), \
     CAST(SUM(humidity_sum) / NULLIF(SUM(humidity_count), 0) AS DOUBLE), \
     CAST(MAX(humidity_max) AS DOUBLE) \
     FROM mediciones_hourly WHERE ciudad = ? AND hour >= ? GROUP BY day ORDER BY day";

/// The seed's own query, on the primary key. Binds `RECENT_ROWS`.
pub fn recent_query() -> String {
    format!("SELECT {COLUMNS} FROM mediciones ORDER BY id DESC LIMIT ?")
}

/// Binds the reading's id.
pub const CURSOR_QUERY: &str = "SELECT fecha_registro FROM mediciones WHERE id = ?";

/// `city`'s readings from `since` to `until`, averaged per bucket.
async fn chart(
    conn: &mut Conn,
    city: &str,
    since: NaiveDateTime,
    until: NaiveDateTime,
) -> Result<Vec<ChartPoint>, mysql_async::Error> {
    let rows: Vec<(NaiveDateTime, Option<f64>, Option<f64>)> = conn
        .exec(CHART_QUERY, (city, since, until, CHART_BUCKET_SECS))
        .await?;
    Ok(rows
        .into_iter()
        .map(|(at, temperature, humidity)| ChartPoint {
            at,
            temperature,
            humidity,
        })
        .collect())
}

/// One row of `HOURLY_QUERY` or `DAILY_QUERY`.
type AggregateRow = (
    NaiveDateTime,
    u64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<f64>,
);

/// `city`'s aggregates from `first` on, by `statement` (hourly or daily).
async fn aggregates(
    conn: &mut Conn,
    statement: &str,
    city: &str,
    first: NaiveDateTime,
) -> Result<Vec<Aggregate>, mysql_async::Error> {
    let rows: Vec<AggregateRow> = conn.exec(statement, (city, first)).await?;
    Ok(rows
        .into_iter()
        .map(
            |(from, count, t_min, t_mean, t_max, h_min, h_mean, h_max)| Aggregate {
                from,
                count,
                temperature: Spread {
                    min: t_min,
                    mean: t_mean,
                    max: t_max,
                },
                humidity: Spread {
                    min: h_min,
                    mean: h_mean,
                    max: h_max,
                },
            },
        )
        .collect())
}

/// Builds the listing query from fixed fragments; every value is a parameter.
pub fn readings_statement(
    filter: &ReadingFilter,
    order: Order,
    cursor: Option<Cursor>,
    limit: u32,
) -> (String, Vec<Value>) {
    let mut statement = format!("SELECT {COLUMNS} FROM mediciones WHERE TRUE");
    let mut params: Vec<Value> = Vec::new();
    if let Some(city) = &filter.city {
        statement.push_str(" AND ciudad = ?");
        params.push(city.as_str().into());
    }
    if let Some(since) = filter.since {
        statement.push_str(" AND fecha_registro >= ?");
        params.push(since.into());
    }
    if let Some(until) = filter.until {
        statement.push_str(" AND fecha_registro < ?");
        params.push(until.into());
    }
    let (after, direction) = match order {
        Order::NewestFirst => ("<", "DESC"),
        Order::OldestFirst => (">", "ASC"),
    };
    if filter.city.is_some() {
        // (ciudad, fecha_registro) is unique, so within one city the tick
        // alone orders rows, and the unique key serves filter, order and
        // cursor in one range, stopping after `limit` rows.
        if let Some(cursor) = cursor {
            statement.push_str(&format!(" AND fecha_registro {after} ?"));
            params.push(cursor.fecha_registro.into());
        }
        statement.push_str(&format!(" ORDER BY fecha_registro {direction} LIMIT ?"));
    } else {
        // Across cities, ties on the tick are broken by id; the index on
        // fecha_registro ends with the primary key, so it serves this order.
        // Spelled out rather than as a row comparison `(a, b) < (?, ?)`,
        // which the optimizer does not always turn into an index range.
        if let Some(cursor) = cursor {
            statement.push_str(&format!(
                " AND (fecha_registro {after} ? OR (fecha_registro = ? AND id {after} ?))"
            ));
            params.push(cursor.fecha_registro.into());
            params.push(cursor.fecha_registro.into());
            params.push(cursor.id.into());
        }
        statement.push_str(&format!(
            " ORDER BY fecha_registro {direction}, id {direction} LIMIT ?"
        ));
    }
    params.push(limit.into());
    (statement, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_statement_binds_every_value() {
        let filter = ReadingFilter {
            city: Some("x' OR '1'='1".into()),
            since: Some(NaiveDateTime::default()),
            until: None,
        };
        let cursor = Cursor {
            fecha_registro: NaiveDateTime::default(),
            id: 7,
        };
        let (statement, params) = readings_statement(&filter, Order::NewestFirst, Some(cursor), 10);
        assert!(!statement.contains("OR '1'"), "{statement}");
        assert_eq!(statement.matches('?').count(), params.len());
        assert!(
            statement.ends_with("ORDER BY fecha_registro DESC LIMIT ?"),
            "{statement}"
        );
    }

    #[test]
    fn listing_across_cities_breaks_ties_by_id() {
        let cursor = Cursor {
            fecha_registro: NaiveDateTime::default(),
            id: 7,
        };
        let (statement, params) = readings_statement(
            &ReadingFilter::default(),
            Order::OldestFirst,
            Some(cursor),
            10,
        );
        assert!(
            statement.contains("(fecha_registro > ? OR (fecha_registro = ? AND id > ?))"),
            "{statement}"
        );
        assert!(
            statement.ends_with("ORDER BY fecha_registro ASC, id ASC LIMIT ?"),
            "{statement}"
        );
        assert_eq!(statement.matches('?').count(), params.len());
    }

    /// Ten readings of one city, one a minute, ids 1..=10, newest first.
    fn window(complete: bool) -> Window {
        let start = NaiveDateTime::default();
        let rows = (1..=10u64)
            .rev()
            .map(|id| Reading {
                id,
                reading: telemetry_core::testing::reading(
                    "Cali",
                    start + TimeDelta::minutes(id as i64),
                    20.0,
                    70,
                    telemetry_core::Source::Simulated,
                ),
            })
            .collect();
        Window { rows, complete }
    }

    fn ids(page: Option<Vec<Reading>>) -> Option<Vec<u64>> {
        page.map(|rows| rows.iter().map(|reading| reading.id).collect())
    }

    #[test]
    fn a_window_answers_only_what_it_holds_whole() {
        let all = ReadingFilter::default();
        let held = window(false);
        assert_eq!(ids(held.page(&all, None, 3)), Some(vec![10, 9, 8]));
        assert_eq!(ids(held.page(&all, Some(8), 3)), Some(vec![7, 6, 5]));
        // The page would run past the window's end: the database answers.
        assert_eq!(ids(held.page(&all, Some(3), 3)), None);
        assert_eq!(ids(held.page(&all, None, 11)), None);
        // A cursor the window does not hold: the database answers.
        assert_eq!(ids(held.page(&all, Some(42), 3)), None);
        // Unless the listing has nothing beyond the window.
        let whole = window(true);
        assert_eq!(ids(whole.page(&all, Some(3), 3)), Some(vec![2, 1]));
        assert_eq!(
            ids(whole.page(&all, None, 11)).map(|ids| ids.len()),
            Some(10)
        );
    }

    #[test]
    fn a_window_applies_the_time_range() {
        let start = NaiveDateTime::default();
        let held = window(false);
        let recent = ReadingFilter {
            since: Some(start + TimeDelta::minutes(8)),
            ..ReadingFilter::default()
        };
        // Everything from `since` on is held, so fewer rows are the answer.
        assert_eq!(ids(held.page(&recent, None, 5)), Some(vec![10, 9, 8]));
        let older = ReadingFilter {
            until: Some(start + TimeDelta::minutes(4)),
            ..ReadingFilter::default()
        };
        assert_eq!(ids(held.page(&older, None, 2)), Some(vec![3, 2]));
        assert_eq!(ids(held.page(&older, None, 5)), None);
    }
}
