//! Synthetic readings shaped like the sensor's: seven cities, one row per
//! city every 15 s, every optional column filled (the widest row, so no
//! benchmark flatters itself with NULLs).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{NaiveDateTime, TimeDelta};
use telemetry_core::time::now_utc;
use telemetry_core::weather::{default_cities, City};
use telemetry_core::{NewReading, Source};

/// The sensor's tick.
pub const TICK_SECS: i64 = 15;

/// `count` readings, one per city per tick, the last tick being `end`.
/// Deterministic: the same arguments give the same rows.
pub struct Readings {
    /// The sensor's default cities; each one's mean temperature is the base
    /// of its rows.
    cities: Vec<City>,
    end: NaiveDateTime,
    ticks: u64,
    next: u64,
    count: u64,
}

impl Readings {
    pub fn new(count: u64, end: NaiveDateTime) -> Self {
        let cities = default_cities();
        Self {
            ticks: count.div_ceil(cities.len() as u64),
            cities,
            end,
            next: 0,
            count,
        }
    }

    /// Ending at the current 15 s tick, so the panel's last 24 h hold a full
    /// day of rows (5,760 per city) as they would in production.
    pub fn ending_now(count: u64) -> Self {
        let now = now_utc();
        let aligned = now - TimeDelta::seconds(now.and_utc().timestamp() % TICK_SECS);
        Self::new(count, aligned)
    }
}

impl Iterator for Readings {
    type Item = NewReading;

    fn next(&mut self) -> Option<NewReading> {
        if self.next >= self.count {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let tick = i / self.cities.len() as u64;
        let city = &self.cities[(i % self.cities.len() as u64) as usize];
        let base = city.mean_temperature;
        let at = self.end - TimeDelta::seconds((self.ticks - 1 - tick) as i64 * TICK_SECS);
        // A daily swing plus a little per-row jitter; one decimal, like the API.
        let hour = at.and_utc().timestamp() as f64 / 3600.0;
        let jitter = (i.wrapping_mul(2_654_435_761) % 1000) as f64 / 1000.0 - 0.5;
        let temperature = round1(base + 4.0 * (hour / 24.0 * std::f64::consts::TAU).sin() + jitter);
        let observed_at = at - TimeDelta::seconds(at.and_utc().timestamp() % 900);
        Some(NewReading {
            ciudad: city.name.clone(),
            temperatura: Some(temperature),
            humedad: Some(60 + (i % 35) as u8),
            fecha_registro: at,
            source: Source::Simulated,
            observed_at: Some(observed_at),
            apparent_temperature: Some(round1(temperature + 1.3)),
            weather_code: Some([0, 1, 2, 3, 61][(i % 5) as usize]),
            wind_speed: Some(round1(3.0 + (i % 90) as f64 / 10.0)),
        })
    }
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Writes `readings` as tab-separated lines in `LOAD DATA`'s default format
/// (`\N` for NULL), columns in `INSERT_COLUMNS` order (telemetry-core's
/// `NewReading::params` order). City names carry no tabs, newlines or
/// backslashes.
pub fn write_tsv(path: &Path, readings: impl IntoIterator<Item = NewReading>) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut rows = 0;
    for r in readings {
        writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.ciudad,
            opt(r.temperatura),
            opt(r.humedad),
            r.fecha_registro.format("%Y-%m-%d %H:%M:%S"),
            r.source.as_str(),
            opt(r.observed_at.map(|at| at.format("%Y-%m-%d %H:%M:%S"))),
            opt(r.apparent_temperature),
            opt(r.weather_code),
            opt(r.wind_speed),
        )?;
        rows += 1;
    }
    out.into_inner()
        .map_err(io::IntoInnerError::into_error)?
        .sync_all()?;
    Ok(rows)
}

fn opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "\\N".to_owned(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_city_per_tick_ending_at_end() {
        let end =
            NaiveDateTime::parse_from_str("2026-01-01 12:00:00", "%Y-%m-%d %H:%M:%S").unwrap();
        let rows: Vec<_> = Readings::new(14, end).collect();
        assert_eq!(rows.len(), 14);
        assert_eq!(rows[0].fecha_registro, end - TimeDelta::seconds(15));
        assert_eq!(rows[13].fecha_registro, end);
        assert_eq!(rows[7].ciudad, "Bogotá");
    }
}
