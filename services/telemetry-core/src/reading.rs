//! The reading model and its table, `mediciones`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDateTime;
use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{FromRowError, Pool, Row, Value};
use serde::{Deserialize, Serialize};

use crate::database::{record_host, with_timeout, DatabaseError};
use crate::time::{seed_format, seed_timestamp};

/// Where a reading came from. Simulated readings are always stored as such,
/// never passed off as measured, and values filled in after downtime are
/// stored as filled in, never as live observations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum Source {
    #[serde(rename = "open-meteo")]
    OpenMeteo,
    #[serde(rename = "simulated")]
    Simulated,
    /// Filled in after the sensor was down, from Open-Meteo's past data at a
    /// full hour: the hourly model's own value.
    #[serde(rename = "backfill")]
    Backfill,
    /// Filled in after the sensor was down, at a quarter hour between full
    /// hours: Open-Meteo interpolates these from hourly data where no
    /// 15-minute model covers the place (our Colombian cities), and its
    /// reply does not say where one does, so they never claim more.
    #[serde(rename = "interpolated")]
    Interpolated,
    /// Copied from the seed's own `mediciones` when its database was
    /// adopted: measured by the seed, not by us, with times converted from
    /// the zone the settings gave.
    #[serde(rename = "seed")]
    Seed,
}

impl Source {
    pub const ALL: [Self; 5] = [
        Self::OpenMeteo,
        Self::Simulated,
        Self::Backfill,
        Self::Interpolated,
        Self::Seed,
    ];

    /// The name stored in `mediciones.source` (at most 16 characters).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenMeteo => "open-meteo",
            Self::Simulated => "simulated",
            Self::Backfill => "backfill",
            Self::Interpolated => "interpolated",
            Self::Seed => "seed",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Source {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl FromStr for Source {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|source| source.as_str() == value)
            .ok_or_else(|| {
                let names: Vec<String> = Self::ALL
                    .iter()
                    .map(|source| format!("{:?}", source.as_str()))
                    .collect();
                format!("unknown source {value:?}, expected {}", names.join(", "))
            })
    }
}

/// A reading about to be stored. Times are UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReading {
    pub ciudad: String,
    pub temperatura: Option<f64>,
    pub humedad: Option<u8>,
    /// The sensor tick this reading belongs to; with `ciudad`, its identity.
    #[serde(with = "seed_format")]
    pub fecha_registro: NaiveDateTime,
    pub source: Source,
    #[serde(with = "seed_format::option", default)]
    pub observed_at: Option<NaiveDateTime>,
    pub apparent_temperature: Option<f64>,
    pub weather_code: Option<u16>,
    pub wind_speed: Option<f64>,
}

/// A stored reading, serialised in the seed's backup shape: `id, ciudad,
/// temperatura, humedad, fecha_registro` first, our additions after.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Reading {
    pub id: u64,
    #[serde(flatten)]
    pub reading: NewReading,
}

/// `Reading` as one flat struct for serialisation: serde's `flatten` would
/// go through a map, which costs backups a good part of their time.
#[derive(Serialize)]
struct FlatReading<'a> {
    id: u64,
    ciudad: &'a str,
    temperatura: Option<f64>,
    humedad: Option<u8>,
    #[serde(with = "seed_format")]
    fecha_registro: NaiveDateTime,
    source: Source,
    #[serde(with = "seed_format::option")]
    observed_at: Option<NaiveDateTime>,
    apparent_temperature: Option<f64>,
    weather_code: Option<u16>,
    wind_speed: Option<f64>,
}

impl Serialize for Reading {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let reading = &self.reading;
        FlatReading {
            id: self.id,
            ciudad: &reading.ciudad,
            temperatura: reading.temperatura,
            humedad: reading.humedad,
            fecha_registro: reading.fecha_registro,
            source: reading.source,
            observed_at: reading.observed_at,
            apparent_temperature: reading.apparent_temperature,
            weather_code: reading.weather_code,
            wind_speed: reading.wind_speed,
        }
        .serialize(serializer)
    }
}

impl Reading {
    /// Appends the reading as one JSON object, the same bytes as its
    /// `Serialize` (a test checks), for the backup's hot loop: the keys are
    /// written as they are instead of escaped one by one on every row.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail, and these values always serialise.
        fn value(out: &mut Vec<u8>, value: &impl Serialize) {
            serde_json::to_writer(&mut *out, value).expect("serialising to memory");
        }
        fn timestamp(out: &mut Vec<u8>, time: &NaiveDateTime) {
            out.push(b'"');
            out.extend_from_slice(seed_timestamp(time).as_str().as_bytes());
            out.push(b'"');
        }
        let reading = &self.reading;
        out.extend_from_slice(b"{\"id\":");
        value(out, &self.id);
        out.extend_from_slice(b",\"ciudad\":");
        value(out, &reading.ciudad);
        out.extend_from_slice(b",\"temperatura\":");
        value(out, &reading.temperatura);
        out.extend_from_slice(b",\"humedad\":");
        value(out, &reading.humedad);
        out.extend_from_slice(b",\"fecha_registro\":");
        timestamp(out, &reading.fecha_registro);
        out.extend_from_slice(b",\"source\":\"");
        out.extend_from_slice(reading.source.as_str().as_bytes());
        out.extend_from_slice(b"\",\"observed_at\":");
        match &reading.observed_at {
            Some(time) => timestamp(out, time),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"apparent_temperature\":");
        value(out, &reading.apparent_temperature);
        out.extend_from_slice(b",\"weather_code\":");
        value(out, &reading.weather_code);
        out.extend_from_slice(b",\"wind_speed\":");
        value(out, &reading.wind_speed);
        out.push(b'}');
    }
}

/// Column list in the order `Reading` is read from a row.
pub const COLUMNS: &str = "id, ciudad, temperatura, humedad, fecha_registro, source, observed_at, \
                           apparent_temperature, weather_code, wind_speed";

impl FromRow for Reading {
    fn from_row_opt(row: Row) -> Result<Self, FromRowError> {
        // Parsed from the row's own bytes: a backup decodes millions of rows.
        let source = match row.as_ref(5) {
            Some(Value::Bytes(bytes)) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok()),
            _ => None,
        };
        let Some(source) = source else {
            return Err(FromRowError(row));
        };
        type Columns = (
            u64,
            String,
            Option<f64>,
            Option<u8>,
            NaiveDateTime,
            Value,
            Option<NaiveDateTime>,
            Option<f64>,
            Option<u16>,
            Option<f64>,
        );
        let (
            id,
            ciudad,
            temperatura,
            humedad,
            fecha_registro,
            _,
            observed_at,
            apparent_temperature,
            weather_code,
            wind_speed,
        ) = Columns::from_row_opt(row)?;
        Ok(Reading {
            id,
            reading: NewReading {
                ciudad,
                temperatura,
                humedad,
                fecha_registro,
                source,
                observed_at,
                apparent_temperature,
                weather_code,
                wind_speed,
            },
        })
    }
}

impl NewReading {
    /// The values bound for one row, in [`INSERT_COLUMNS`] order.
    pub fn params(&self) -> [Value; 9] {
        [
            self.ciudad.as_str().into(),
            self.temperatura.into(),
            self.humedad.into(),
            self.fecha_registro.into(),
            self.source.as_str().into(),
            self.observed_at.into(),
            self.apparent_temperature.into(),
            self.weather_code.into(),
            self.wind_speed.into(),
        ]
    }
}

/// Inserts `readings` in one multi-row statement. Rows whose (city, tick) is
/// already stored are skipped, so retrying a batch is safe. Returns how many
/// rows were new.
#[tracing::instrument(
    skip_all,
    fields(rows = readings.len(), inserted = tracing::field::Empty, host = tracing::field::Empty)
)]
pub async fn insert_batch(
    pool: &Pool,
    readings: &[NewReading],
    limit: Duration,
) -> Result<u64, DatabaseError> {
    let params = readings.iter().flat_map(NewReading::params).collect();
    insert_rows(pool, INSERT_COLUMNS, readings.len(), params, limit).await
}

/// Inserts stored readings keeping their ids (a restore). Rows whose id or
/// (city, tick) is already present are skipped, so restoring twice is safe.
#[tracing::instrument(
    skip_all,
    fields(rows = readings.len(), inserted = tracing::field::Empty, host = tracing::field::Empty)
)]
pub async fn insert_with_ids(
    pool: &Pool,
    readings: &[Reading],
    limit: Duration,
) -> Result<u64, DatabaseError> {
    let params = readings
        .iter()
        .flat_map(|row| std::iter::once(Value::from(row.id)).chain(row.reading.params()))
        .collect();
    insert_rows(
        pool,
        &format!("id, {INSERT_COLUMNS}"),
        readings.len(),
        params,
        limit,
    )
    .await
}

/// The stored readings with these ids, in no particular order; ids that
/// are free are simply absent.
#[tracing::instrument(
    skip_all,
    fields(ids = ids.len(), found = tracing::field::Empty, host = tracing::field::Empty)
)]
pub async fn find_by_ids(
    pool: &Pool,
    ids: &[u64],
    limit: Duration,
) -> Result<Vec<Reading>, DatabaseError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let readings: Vec<Reading> = with_timeout(limit, async {
        let mut conn = pool.get_conn().await?;
        record_host(&conn);
        conn.exec(
            format!("SELECT {COLUMNS} FROM mediciones WHERE id IN ({placeholders})"),
            ids.to_vec(),
        )
        .await
    })
    .await?;
    tracing::Span::current().record("found", readings.len());
    Ok(readings)
}

/// For each (city, tick) of `keys` that a stored row holds: the key's index
/// in `keys` and that row's id. Cities are compared with the column's
/// collation, as the unique key compares them, so a key the unique key would
/// refuse ("Bogota" against a stored "Bogotá") is found too.
#[tracing::instrument(
    skip_all,
    fields(keys = keys.len(), found = tracing::field::Empty, host = tracing::field::Empty)
)]
pub async fn ids_at_city_and_tick(
    pool: &Pool,
    keys: &[(&str, NaiveDateTime)],
    limit: Duration,
) -> Result<Vec<(usize, u64)>, DatabaseError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // The keys as a derived table joined on the unique key: one indexed
    // lookup per key, and each answer says which key it belongs to.
    let wanted = (0..keys.len())
        .map(|index| format!("SELECT {index} AS position, ? AS ciudad, ? AS fecha_registro"))
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let params: Vec<Value> = keys
        .iter()
        .flat_map(|(city, tick)| [Value::from(*city), Value::from(*tick)])
        .collect();
    let found: Vec<(usize, u64)> = with_timeout(limit, async {
        let mut conn = pool.get_conn().await?;
        record_host(&conn);
        conn.exec(
            format!(
                "SELECT wanted.position, stored.id FROM ({wanted}) AS wanted \
                 JOIN mediciones AS stored ON stored.ciudad = wanted.ciudad \
                 AND stored.fecha_registro = wanted.fecha_registro"
            ),
            params,
        )
        .await
    })
    .await?;
    tracing::Span::current().record("found", found.len());
    Ok(found)
}

/// Columns `insert_batch` writes, in [`NewReading::params`] order.
pub const INSERT_COLUMNS: &str =
    "ciudad, temperatura, humedad, fecha_registro, source, observed_at, \
     apparent_temperature, weather_code, wind_speed";

async fn insert_rows(
    pool: &Pool,
    columns: &str,
    rows: usize,
    params: Vec<Value>,
    limit: Duration,
) -> Result<u64, DatabaseError> {
    if rows == 0 {
        return Ok(0);
    }
    let statement = insert_statement(columns, params.len() / rows, rows);
    let inserted = with_timeout(limit, async {
        let mut conn = pool.get_conn().await?;
        record_host(&conn);
        // Concurrent inserts (two sites, a restore, the backfill beside the
        // ticks) update the same hourly aggregate rows through the trigger,
        // so InnoDB may pick one as a deadlock victim: it rolled back the
        // whole statement, and running it again is what the server asks.
        let mut attempt = 1;
        loop {
            match conn.exec_drop(&statement, params.clone()).await {
                Err(mysql_async::Error::Server(error))
                    if error.code == ER_LOCK_DEADLOCK && attempt < DEADLOCK_ATTEMPTS =>
                {
                    tracing::warn!(
                        message = "insert chosen as a deadlock victim; running it again",
                        attempt,
                        rows
                    );
                    tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
                    attempt += 1;
                }
                result => break result?,
            }
        }
        Ok(conn.affected_rows())
    })
    .await?;
    // On the caller's span (`insert_batch` or `insert_with_ids`).
    tracing::Span::current().record("inserted", inserted);
    Ok(inserted)
}

/// InnoDB's "Deadlock found when trying to get lock; try restarting
/// transaction".
const ER_LOCK_DEADLOCK: u16 = 1213;
/// How many times an insert chosen as a deadlock victim is sent in all.
const DEADLOCK_ATTEMPTS: u64 = 5;

/// The multi-row `INSERT` of `rows` rows of `per_row` values each into
/// `columns`, as `insert_batch` and `insert_with_ids` send it.
pub fn insert_statement(columns: &str, per_row: usize, rows: usize) -> String {
    let row = format!("({})", vec!["?"; per_row].join(", "));
    let placeholders = vec![row.as_str(); rows].join(", ");
    // INSERT IGNORE rather than ON DUPLICATE KEY UPDATE: the sensor's account
    // has no UPDATE privilege, on purpose.
    format!("INSERT IGNORE INTO mediciones ({columns}) VALUES {placeholders}")
}

/// The `count` most recent readings, newest first (the seed's panel query).
#[tracing::instrument(
    skip_all,
    fields(count = count, rows = tracing::field::Empty, host = tracing::field::Empty)
)]
pub async fn latest(
    pool: &Pool,
    count: u32,
    limit: Duration,
) -> Result<Vec<Reading>, DatabaseError> {
    let readings: Vec<Reading> = with_timeout(limit, async {
        let mut conn = pool.get_conn().await?;
        record_host(&conn);
        conn.exec(
            format!("SELECT {COLUMNS} FROM mediciones ORDER BY id DESC LIMIT ?"),
            (count,),
        )
        .await
    })
    .await?;
    tracing::Span::current().record("rows", readings.len());
    Ok(readings)
}

/// For each of `cities`, the `fecha_registro` of its last row before
/// `before`, or `None` if it has none. One query per city, each answered
/// from the unique key (ciudad, fecha_registro) without reading a row.
#[tracing::instrument(
    skip_all,
    fields(cities = cities.len(), host = tracing::field::Empty)
)]
pub async fn last_rows_before(
    pool: &Pool,
    cities: &[String],
    before: NaiveDateTime,
    limit: Duration,
) -> Result<Vec<Option<NaiveDateTime>>, DatabaseError> {
    with_timeout(limit, async {
        let mut conn = pool.get_conn().await?;
        record_host(&conn);
        let mut last = Vec::with_capacity(cities.len());
        for city in cities {
            let row: Option<Option<NaiveDateTime>> = conn
                .exec_first(
                    "SELECT MAX(fecha_registro) FROM mediciones \
                     WHERE ciudad = ? AND fecha_registro < ?",
                    (city.as_str(), before),
                )
                .await?;
            last.push(row.flatten());
        }
        Ok(last)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn sample() -> Reading {
        Reading {
            id: 99,
            reading: NewReading {
                ciudad: "Cali".into(),
                temperatura: Some(20.1),
                humedad: Some(91),
                fecha_registro: NaiveDate::from_ymd_opt(2025, 12, 8)
                    .unwrap()
                    .and_hms_opt(9, 38, 5)
                    .unwrap(),
                source: Source::OpenMeteo,
                observed_at: None,
                apparent_temperature: None,
                weather_code: Some(3),
                wind_speed: None,
            },
        }
    }

    #[test]
    fn serialises_in_the_seed_backup_shape() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert!(
            json.starts_with(
                r#"{"id":99,"ciudad":"Cali","temperatura":20.1,"humedad":91,"fecha_registro":"2025-12-08 09:38:05","source":"open-meteo""#
            ),
            "{json}"
        );
    }

    #[test]
    fn write_json_gives_the_same_bytes_as_serialize() {
        let mut readings = vec![sample()];
        let mut odd = sample();
        odd.id = u64::MAX;
        odd.reading.ciudad = "Bogotá \"norte\"\\\n\u{1}".into();
        odd.reading.temperatura = Some(f64::NAN);
        odd.reading.humedad = None;
        odd.reading.source = Source::Simulated;
        odd.reading.observed_at = Some(odd.reading.fecha_registro);
        odd.reading.apparent_temperature = Some(-1.5e-7);
        odd.reading.weather_code = None;
        odd.reading.wind_speed = Some(f64::INFINITY);
        readings.push(odd);
        for reading in readings {
            let mut written = Vec::new();
            reading.write_json(&mut written);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&reading).unwrap()
            );
        }
    }

    #[test]
    fn round_trips_through_json() {
        let reading = sample();
        let json = serde_json::to_string(&reading).unwrap();
        assert_eq!(serde_json::from_str::<Reading>(&json).unwrap(), reading);
    }

    #[test]
    fn source_parses_only_known_names() {
        assert_eq!("simulated".parse::<Source>().unwrap(), Source::Simulated);
        let error = "open_meteo".parse::<Source>().unwrap_err();
        assert!(error.contains("open_meteo"), "{error}");
        assert!(error.contains("\"interpolated\""), "{error}");
    }

    #[test]
    fn every_source_round_trips_by_name_and_fits_the_column() {
        for source in Source::ALL {
            assert_eq!(source.as_str().parse::<Source>().unwrap(), source);
            assert_eq!(source.to_string(), source.as_str());
            let json = serde_json::to_string(&source).unwrap();
            assert_eq!(json, format!("\"{source}\""));
            assert_eq!(serde_json::from_str::<Source>(&json).unwrap(), source);
            // `mediciones.source` is VARCHAR(16).
            assert!(source.as_str().len() <= 16, "{source}");
        }
    }
}
