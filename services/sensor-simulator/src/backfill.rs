//! Filling the gap a downtime left: at start, for each city, the quarter
//! hours between its last row and the sensor's start, from Open-Meteo's past
//! 15-minute series. The fetcher ([`crate::fetcher`]) runs it once, with its
//! own client and budget; this module finds the gaps, turns a reply into
//! rows and stores them.
//!
//! Rows are tagged with where they came from: a full hour is the hourly
//! model's value (`backfill`), a quarter hour between is interpolated from it
//! (`interpolated`). They go in with `INSERT IGNORE` on (city, time), so a
//! row already there always wins.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DurationRound, NaiveDateTime, TimeDelta, Timelike};
use mysql_async::Pool;
use telemetry_core::database::DatabaseError;
use telemetry_core::reading::{insert_batch, last_rows_before};
use telemetry_core::weather::{City, PastSeries};
use telemetry_core::{NewReading, Source};

use crate::metrics::Metrics;

/// Open-Meteo's finest resolution: slots start at :00, :15, :30 and :45 UTC.
pub const SLOT: TimeDelta = TimeDelta::minutes(15);

/// Rows per `INSERT`: two weeks of seven cities is ~9,400 rows, more
/// placeholders than one prepared statement may hold.
const INSERT_BATCH: usize = 1_000;

/// The quarter hours one city lacks: every slot from `first` to `last`, both
/// included (a gap is one run: nothing was stored during it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Index of the city in the sensor's list.
    pub city: usize,
    pub first: NaiveDateTime,
    pub last: NaiveDateTime,
}

impl Gap {
    /// The slots `from` a city's `last_row` to the sensor's start, at most
    /// `lookback` back; `None` if there are none. The slot the sensor starts
    /// in is left to the live readings, so a slot counts only once it has
    /// ended by `started`: never one at or after the start, never one whose
    /// value would still be a forecast.
    pub fn between(
        city: usize,
        last_row: NaiveDateTime,
        started: NaiveDateTime,
        lookback: TimeDelta,
    ) -> Option<Self> {
        let after_last_row = slot_of(last_row) + SLOT;
        let oldest_allowed = slot_from(started - lookback);
        let first = after_last_row.max(oldest_allowed);
        let last = slot_of(started) - SLOT;
        (first <= last).then_some(Self { city, first, last })
    }

    pub fn slots(&self) -> usize {
        ((self.last - self.first).num_minutes() / SLOT.num_minutes() + 1) as usize
    }

    fn contains(&self, at: NaiveDateTime) -> bool {
        (self.first..=self.last).contains(&at) && slot_of(at) == at
    }
}

/// The start of the slot `at` falls in.
pub fn slot_of(at: NaiveDateTime) -> NaiveDateTime {
    // Only fails for times near the ends of chrono's range.
    at.duration_trunc(SLOT).unwrap_or(at)
}

/// The first slot that starts at or after `at`.
fn slot_from(at: NaiveDateTime) -> NaiveDateTime {
    let slot = slot_of(at);
    if slot == at {
        slot
    } else {
        slot + SLOT
    }
}

/// A full hour holds the hourly model's own value; any other quarter hour
/// was interpolated from it.
pub fn source_of(slot: NaiveDateTime) -> Source {
    if slot.minute() == 0 {
        Source::Backfill
    } else {
        Source::Interpolated
    }
}

/// The rows that fill `gap` of `city` from its series: one per slot of the
/// gap the series has values for; its other slots (outside the gap, or
/// later than asked) are not this gap's.
pub fn rows_filling(gap: &Gap, city: &City, series: &PastSeries) -> Vec<NewReading> {
    series
        .slots
        .iter()
        .filter(|slot| gap.contains(slot.at))
        .map(|slot| NewReading {
            ciudad: city.name.clone(),
            temperatura: slot.temperature,
            humedad: slot.humidity,
            fecha_registro: slot.at,
            source: source_of(slot.at),
            observed_at: Some(slot.at),
            apparent_temperature: slot.apparent_temperature,
            weather_code: slot.weather_code,
            wind_speed: slot.wind_speed,
        })
        .collect()
}

/// What the backfill needs of the database, and how far back it looks.
pub struct Backfill {
    pool: Pool,
    db_timeout: Duration,
    lookback: TimeDelta,
}

impl Backfill {
    /// `None` when `lookback_hours` is 0: backfill off.
    pub fn new(pool: Pool, db_timeout: Duration, lookback_hours: u64) -> Option<Self> {
        (lookback_hours > 0).then(|| Self {
            pool,
            db_timeout,
            lookback: TimeDelta::hours(lookback_hours as i64),
        })
    }

    /// The gap of each city that has one. A city with no row before
    /// `started` is new (a fresh install, or a city just added): it has no
    /// gap, only a beginning.
    async fn gaps(
        &self,
        cities: &[City],
        started: NaiveDateTime,
    ) -> Result<Vec<Gap>, DatabaseError> {
        let names: Vec<String> = cities.iter().map(|city| city.name.clone()).collect();
        let last_rows = last_rows_before(&self.pool, &names, started, self.db_timeout).await?;
        Ok(last_rows
            .into_iter()
            .enumerate()
            .filter_map(|(city, last_row)| Gap::between(city, last_row?, started, self.lookback))
            .collect())
    }

    /// The gaps before `started`, as one request's worth; `None` when there
    /// is nothing to fill, or when the database cannot say (logged).
    pub async fn plan(&self, cities: &[City], started: NaiveDateTime) -> Option<Plan> {
        let gaps = match self.gaps(cities, started).await {
            Ok(gaps) if gaps.is_empty() => return None,
            Ok(gaps) => gaps,
            Err(error) => {
                tracing::warn!(message = "cannot look for gaps to backfill; none filled", %error);
                return None;
            }
        };
        Some(Plan {
            cities: gaps.iter().map(|gap| cities[gap.city].clone()).collect(),
            from: gaps.iter().map(|gap| gap.first).min().unwrap_or(started),
            to: gaps.iter().map(|gap| gap.last).max().unwrap_or(started),
            gaps,
        })
    }

    /// Stores what `series` (one per city of `plan`, as the API answered)
    /// has for the gaps, counts it per source and logs what each city got.
    /// A database that does not take it is logged, and the backfill given up.
    pub async fn fill(&self, plan: &Plan, series: &[PastSeries], metrics: &Metrics) {
        let rows: Vec<Vec<NewReading>> = plan
            .gaps
            .iter()
            .zip(&plan.cities)
            .zip(series)
            .map(|((gap, city), series)| rows_filling(gap, city, series))
            .collect();
        // One insert per source: `INSERT IGNORE` says how many rows went in,
        // not which, and the metric counts stored rows per source.
        let mut inserted = BTreeMap::new();
        for source in [Source::Backfill, Source::Interpolated] {
            let of_source: Vec<NewReading> = rows
                .iter()
                .flatten()
                .filter(|row| row.source == source)
                .cloned()
                .collect();
            match self.store(&of_source).await {
                Ok(count) => {
                    metrics.backfilled.add(&source.as_str(), count);
                    inserted.insert(source.as_str(), count);
                }
                Err(error) => {
                    tracing::warn!(message = "the database did not take the backfill; given up", %error);
                    return;
                }
            }
        }
        let by_city: Vec<String> = plan
            .gaps
            .iter()
            .zip(&plan.cities)
            .zip(&rows)
            .map(|((gap, city), rows)| {
                format!(
                    "{}: {} of {} slots from {} to {}",
                    city.name,
                    rows.len(),
                    gap.slots(),
                    gap.first,
                    gap.last
                )
            })
            .collect();
        tracing::info!(
            message = "gaps before the start filled from Open-Meteo's past data",
            cities = ?by_city,
            inserted = ?inserted,
        );
    }

    async fn store(&self, rows: &[NewReading]) -> Result<u64, DatabaseError> {
        let mut inserted = 0;
        for batch in rows.chunks(INSERT_BATCH) {
            inserted += insert_batch(&self.pool, batch, self.db_timeout).await?;
        }
        Ok(inserted)
    }
}

/// The gaps to fill after a start, and the one request that fills them:
/// the cities with a gap, from the earliest missing slot to the latest.
pub struct Plan {
    pub gaps: Vec<Gap>,
    pub cities: Vec<City>,
    pub from: NaiveDateTime,
    pub to: NaiveDateTime,
}

impl Plan {
    pub fn slots(&self) -> usize {
        self.gaps.iter().map(Gap::slots).sum()
    }
}

#[cfg(test)]
mod tests {
    use telemetry_core::weather::{default_cities, PastSlot};

    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").unwrap()
    }

    const WEEK: TimeDelta = TimeDelta::hours(168);

    #[test]
    fn a_gap_runs_from_the_slot_after_the_last_row_to_the_last_slot_ended_by_the_start() {
        let gap = Gap::between(
            0,
            at("2026-11-23 03:59:45"),
            at("2026-11-23 10:07:12"),
            WEEK,
        )
        .unwrap();
        assert_eq!(gap.first, at("2026-11-23 04:00:00"));
        assert_eq!(gap.last, at("2026-11-23 09:45:00"));
        assert_eq!(gap.slots(), 24);
        // A start on a slot boundary: that slot is the live sensor's.
        let gap = Gap::between(
            0,
            at("2026-11-23 03:50:00"),
            at("2026-11-23 10:00:00"),
            WEEK,
        )
        .unwrap();
        assert_eq!(gap.last, at("2026-11-23 09:45:00"));
    }

    #[test]
    fn a_short_restart_leaves_no_gap() {
        for (last_row, started) in [
            ("2026-11-23 10:01:00", "2026-11-23 10:14:59"),
            ("2026-11-23 10:14:45", "2026-11-23 10:15:10"),
            ("2026-11-23 10:14:45", "2026-11-23 10:29:59"),
        ] {
            assert_eq!(Gap::between(0, at(last_row), at(started), WEEK), None);
        }
    }

    #[test]
    fn the_lookback_bounds_the_gap() {
        let gap = Gap::between(
            0,
            at("2026-11-01 00:00:00"),
            at("2026-11-23 10:07:12"),
            TimeDelta::hours(2),
        )
        .unwrap();
        // 08:07:12 is two hours back: its slot began before, so not it.
        assert_eq!(gap.first, at("2026-11-23 08:15:00"));
        assert_eq!(gap.slots(), 7);
    }

    #[test]
    fn full_hours_are_the_models_values_and_the_quarters_between_interpolated() {
        assert_eq!(source_of(at("2026-11-23 10:00:00")), Source::Backfill);
        for quarter in ["10:15:00", "10:30:00", "10:45:00"] {
            let slot = at(&format!("2026-11-23 {quarter}"));
            assert_eq!(source_of(slot), Source::Interpolated);
        }
    }

    #[test]
    fn rows_fill_only_the_gap_and_only_where_the_series_has_values() {
        let city = &default_cities()[0];
        let gap = Gap {
            city: 0,
            first: at("2026-11-23 10:00:00"),
            last: at("2026-11-23 10:30:00"),
        };
        let slot = |time: &str| PastSlot {
            at: at(time),
            temperature: Some(14.0),
            humidity: Some(80),
            apparent_temperature: None,
            weather_code: Some(3),
            wind_speed: None,
        };
        let series = PastSeries {
            slots: vec![
                slot("2026-11-23 09:45:00"),
                slot("2026-11-23 10:00:00"),
                // 10:15 had no value.
                slot("2026-11-23 10:30:00"),
                slot("2026-11-23 10:45:00"),
            ],
        };
        let rows = rows_filling(&gap, city, &series);
        let stored: Vec<(NaiveDateTime, Source)> = rows
            .iter()
            .map(|row| (row.fecha_registro, row.source))
            .collect();
        assert_eq!(
            stored,
            [
                (at("2026-11-23 10:00:00"), Source::Backfill),
                (at("2026-11-23 10:30:00"), Source::Interpolated)
            ]
        );
        assert_eq!(rows[0].ciudad, city.name);
        assert_eq!(rows[0].observed_at, Some(rows[0].fecha_registro));
        assert_eq!(rows[0].weather_code, Some(3));
    }
}
