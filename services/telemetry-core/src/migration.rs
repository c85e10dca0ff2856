//! Schema migrations, and adopting the seed's own `mediciones`.
//!
//! Users of the seed already have a five-column `mediciones` holding the
//! server's local time. Our migration is `CREATE TABLE IF NOT EXISTS`: run
//! blindly it would leave that table as it is, record itself as applied, and
//! every insert would fail. So `migrate` looks at the table first:
//!
//! - no table, or ours (it has `source`): the migrations run as usual;
//! - the seed's five columns: the table is renamed aside (kept, never
//!   dropped), ours is created, and every row is copied over with its time
//!   converted to UTC from `database.seed_time_zone`;
//! - anything else: refused, nothing changed.
//!
//! The copy is restartable: an aside table is marked (its comment) only
//! once every row is verified in `mediciones`, and an unmarked one is copied
//! again on the next run (`INSERT IGNORE` on the ids it keeps).

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use chrono::{LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use mysql_async::prelude::Queryable;
use mysql_async::{from_value_opt, Pool, Row, Value};

use crate::database::{with_timeout, DatabaseError};
use crate::reading::{insert_with_ids, NewReading, Reading};
use crate::settings::{SEED_TIME_ZONE_ENV, SEED_TIME_ZONE_KEY};
use crate::weather::{canonical_city, city_key, default_cities};
use crate::Source;

mod embedded {
    refinery::embed_migrations!("migrations");
}

const TABLE: &str = "mediciones";
/// Aside tables are `mediciones_seed_<UTC time of the rename>`.
const ASIDE_PREFIX: &str = "mediciones_seed_";
/// The comment an aside table gets once all its rows are verified in
/// `mediciones`: without it, the next `migrate` resumes the copy.
const COPIED_MARK: &str = "telemetria: every row is in mediciones (source seed)";
/// Seed rows read and inserted per statement.
const BATCH_ROWS: usize = 1_000;
/// Bound on each statement of an adoption: generous, as a rename waits for
/// the table's metadata lock and a batch may be large.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// The only migration that creates `mediciones`, run again when the table
/// is missing after the seed's was moved aside (see `ensure_our_table`).
const CREATE_MEDICIONES: &str = include_str!("../migrations/V1__create_mediciones.sql");

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Database(#[from] DatabaseError),
    #[error(
        "table `{table}` matches neither shape migrate accepts, so nothing was changed. \
         Found columns: {found}. Accepted: the current schema (it has a `source` column), or \
         the seed's five columns id (integer), ciudad (VARCHAR), temperatura (FLOAT, DOUBLE or \
         DECIMAL), humedad (integer), fecha_registro (DATETIME or TIMESTAMP)"
    )]
    UnknownShape { table: String, found: String },
    #[error(
        "found the seed's five-column table `{table}`, but `{SEED_TIME_ZONE_KEY}` (environment \
         {SEED_TIME_ZONE_ENV}) is not set: the seed wrote fecha_registro in its server's local \
         time without saying which, and a guess would shift every row. Set it to that zone, \
         e.g. America/Bogota or UTC, and run migrate again; nothing was changed"
    )]
    SeedTimeZoneUnset { table: String },
    #[error(
        "seed row id {id} of `{table}`: {time} {problem} in {zone} (a daylight-saving change), \
         so it has no single UTC time. Correct that row in `{table}` and run migrate again"
    )]
    LocalTime {
        table: String,
        id: String,
        time: NaiveDateTime,
        zone: Tz,
        problem: &'static str,
    },
    #[error(
        "seed row id {id} of `{table}`: column {column} holds {value}, which is not a {expected}"
    )]
    UnreadableValue {
        table: String,
        id: String,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "after copying `{table}`: it has {seed_rows} rows, {reported} were reported as not \
         copied, but {copied} of the others are in mediciones with source seed. `{table}` is \
         kept and not marked as copied, so the next migrate copies it again"
    )]
    CountMismatch {
        table: String,
        seed_rows: u64,
        reported: u64,
        copied: u64,
    },
}

/// Applies pending migrations, waiting up to `patience` for the server to
/// accept connections (a database container reports healthy a little before
/// it accepts remote logins). Returns the names of the migrations applied.
pub async fn migrate_when_ready(
    pool: &Pool,
    seed_time_zone: Option<Tz>,
    patience: Duration,
) -> Result<Vec<String>, MigrationError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match migrate(pool, seed_time_zone).await {
            Err(MigrationError::Database(error))
                if (matches!(error, DatabaseError::Migration(_)) || error.is_unavailable())
                    && tokio::time::Instant::now() < deadline =>
            {
                tracing::warn!(message = "database not ready for migrations; retrying", %error);
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            result => return result,
        }
    }
}

/// Brings the schema up to date, adopting the seed's table if that is what
/// `mediciones` is (`seed_time_zone`: the zone its times were written in).
/// Returns the names of the migrations applied now.
pub async fn migrate(
    pool: &Pool,
    seed_time_zone: Option<Tz>,
) -> Result<Vec<String>, MigrationError> {
    let mut to_copy = unfinished_aside_tables(pool).await?;
    for table in &to_copy {
        // Checked before anything changes, for every table, so a missing
        // setting is reported at once rather than after a first copy.
        table.zone(seed_time_zone)?;
    }
    let adopt = match inspect(pool, TABLE).await? {
        Shape::Absent | Shape::Ours => None,
        Shape::Seed(times) => Some(SeedTable {
            name: TABLE.to_owned(),
            times,
        }),
        Shape::Unknown(found) => {
            return Err(MigrationError::UnknownShape {
                table: TABLE.to_owned(),
                found,
            })
        }
    };
    if let Some(seed) = adopt {
        let zone = seed.zone(seed_time_zone)?;
        // A dry run first: a time that has no single UTC value refuses the
        // adoption before the table is touched.
        let tally = copy_rows(pool, &seed, zone, CopyMode::DryRun).await?;
        let aside = format!("{ASIDE_PREFIX}{}", Utc::now().format("%Y%m%d_%H%M%S"));
        execute(pool, format!("RENAME TABLE `{TABLE}` TO `{aside}`")).await?;
        tracing::info!(
            message = "moved the seed's table aside; it is kept, never dropped, and its rows \
                       are copied into a new mediciones",
            aside,
            seed_rows = tally.rows,
        );
        to_copy.push(SeedTable {
            name: aside,
            times: seed.times,
        });
    }
    if !to_copy.is_empty() {
        // Before the migrations: V2 puts a trigger on our table, so it must
        // exist even when an earlier migrate recorded V1 over the seed's.
        ensure_our_table(pool).await?;
    }
    let applied = run_embedded_migrations(pool, None).await?;
    for table in &to_copy {
        let zone = table.zone(seed_time_zone)?;
        adopt_rows(pool, table, zone).await?;
    }
    Ok(applied)
}

/// Refinery's migrations as they are, without looking at the table first;
/// up to `last_version` only when given (tests recreate an older state).
pub(crate) async fn run_embedded_migrations(
    pool: &Pool,
    last_version: Option<i32>,
) -> Result<Vec<String>, DatabaseError> {
    let mut pool = pool.clone();
    let mut runner = embedded::migrations::runner();
    if let Some(version) = last_version {
        runner = runner.set_target(refinery::Target::Version(version));
    }
    let report = runner.run_async(&mut pool).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|migration| migration.to_string())
        .collect())
}

/// Creates `mediciones` if it is missing, once the seed's table is moved
/// aside. An earlier version of `migrate`, pointed at the seed's table,
/// recorded V1 as applied without creating anything, so refinery would not
/// run V1 again. V1 is `CREATE TABLE IF NOT EXISTS`, so when refinery does
/// run it afterwards it changes nothing.
async fn ensure_our_table(pool: &Pool) -> Result<(), MigrationError> {
    if matches!(inspect(pool, TABLE).await?, Shape::Absent) {
        tracing::info!(message = "creating mediciones, the seed's table being aside");
        execute(pool, CREATE_MEDICIONES.to_owned()).await?;
    }
    Ok(())
}

/// How the seed's `fecha_registro` holds its times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SeedTimes {
    /// DATETIME: the server's local wall clock; converted with the zone.
    LocalWallClock,
    /// TIMESTAMP: the server stored instants, and our sessions read them in
    /// UTC already; no zone is needed.
    Instants,
}

#[derive(Debug)]
enum Shape {
    Absent,
    Ours,
    Seed(SeedTimes),
    /// The columns found, as `name TYPE, ...`.
    Unknown(String),
}

struct SeedTable {
    name: String,
    times: SeedTimes,
}

impl SeedTable {
    fn zone(&self, seed_time_zone: Option<Tz>) -> Result<Tz, MigrationError> {
        match (self.times, seed_time_zone) {
            (SeedTimes::Instants, _) => Ok(Tz::UTC),
            (SeedTimes::LocalWallClock, Some(zone)) => Ok(zone),
            (SeedTimes::LocalWallClock, None) => Err(MigrationError::SeedTimeZoneUnset {
                table: self.name.clone(),
            }),
        }
    }
}

/// The shape of `table` in the current database, from its columns.
async fn inspect(pool: &Pool, table: &str) -> Result<Shape, MigrationError> {
    let columns: Vec<(String, String)> = with_timeout(STATEMENT_TIMEOUT, async {
        pool.get_conn()
            .await?
            .exec(
                "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (table,),
            )
            .await
    })
    .await?;
    Ok(classify(&columns))
}

fn classify(columns: &[(String, String)]) -> Shape {
    if columns.is_empty() {
        return Shape::Absent;
    }
    let type_of = |name: &str| {
        columns
            .iter()
            .find(|(column, _)| column.eq_ignore_ascii_case(name))
            .map(|(_, data_type)| data_type.to_ascii_lowercase())
    };
    if type_of("source").is_some() {
        return Shape::Ours;
    }
    const INTEGER: &[&str] = &["tinyint", "smallint", "mediumint", "int", "bigint"];
    let is = |name: &str, accepted: &[&str]| {
        type_of(name).is_some_and(|data_type| accepted.contains(&data_type.as_str()))
    };
    let seed_shaped = columns.len() == 5
        && is("id", INTEGER)
        && is("ciudad", &["varchar"])
        && is("temperatura", &["float", "double", "decimal"])
        && is("humedad", INTEGER)
        && is("fecha_registro", &["datetime", "timestamp"]);
    if !seed_shaped {
        let found: Vec<String> = columns
            .iter()
            .map(|(name, data_type)| format!("{name} {}", data_type.to_ascii_uppercase()))
            .collect();
        return Shape::Unknown(found.join(", "));
    }
    if is("fecha_registro", &["timestamp"]) {
        Shape::Seed(SeedTimes::Instants)
    } else {
        Shape::Seed(SeedTimes::LocalWallClock)
    }
}

/// Aside tables whose copy has not been verified yet (normally none).
async fn unfinished_aside_tables(pool: &Pool) -> Result<Vec<SeedTable>, MigrationError> {
    let names: Vec<String> = with_timeout(STATEMENT_TIMEOUT, async {
        pool.get_conn()
            .await?
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE ? AND TABLE_COMMENT <> ? \
                 ORDER BY TABLE_NAME",
                (
                    format!("{}%", ASIDE_PREFIX.replace('_', "\\_")),
                    COPIED_MARK,
                ),
            )
            .await
    })
    .await?;
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        match inspect(pool, &name).await? {
            Shape::Seed(times) => tables.push(SeedTable { name, times }),
            Shape::Absent | Shape::Ours => {}
            Shape::Unknown(found) => {
                return Err(MigrationError::UnknownShape { table: name, found })
            }
        }
    }
    Ok(tables)
}

/// Copies `table` into `mediciones`, verifies every row is there or
/// reported, and marks the table as copied.
async fn adopt_rows(pool: &Pool, table: &SeedTable, zone: Tz) -> Result<(), MigrationError> {
    let tally = copy_rows(pool, table, zone, CopyMode::Insert).await?;
    let copied: u64 = with_timeout(STATEMENT_TIMEOUT, async {
        let count: Option<u64> = pool
            .get_conn()
            .await?
            .exec_first(
                format!(
                    "SELECT COUNT(*) FROM `{TABLE}` m JOIN `{}` s ON m.id = s.id \
                     WHERE m.source = ?",
                    table.name
                ),
                (Source::Seed.as_str(),),
            )
            .await?;
        Ok(count.unwrap_or_default())
    })
    .await?;
    let reported = tally.not_copied.len() as u64;
    if copied + reported != tally.rows {
        return Err(MigrationError::CountMismatch {
            table: table.name.clone(),
            seed_rows: tally.rows,
            reported,
            copied,
        });
    }
    for (reason, ids) in tally.not_copied_by_reason() {
        tracing::warn!(
            message = "seed rows not copied into mediciones; they stay in the aside table",
            aside = table.name,
            reason,
            rows = ids.len(),
            ids = ids.join(","),
        );
    }
    if !tally.humidity_cleared.is_empty() {
        tracing::warn!(
            message = "seed rows copied with humedad NULL: their value does not fit 0-255; \
                       the original stays in the aside table",
            aside = table.name,
            rows = tally.humidity_cleared.len(),
            ids = tally.humidity_cleared.join(","),
        );
    }
    execute(
        pool,
        format!("ALTER TABLE `{}` COMMENT = '{COPIED_MARK}'", table.name),
    )
    .await?;
    tracing::info!(
        message = "adopted the seed's table",
        aside = table.name,
        zone = %zone,
        seed_rows = tally.rows,
        copied,
        inserted_now = tally.inserted,
        not_copied = reported,
        humidity_cleared = tally.humidity_cleared.len(),
    );
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum CopyMode {
    /// Convert every row, insert nothing: to refuse before changing anything.
    DryRun,
    Insert,
}

/// Why a seed row is not copied. The row itself stays in the aside table.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotCopied {
    /// Same city and UTC time as an earlier seed row (our unique key); the
    /// first by id is kept.
    SameCityAndTime,
    NoCity,
    /// Longer than our VARCHAR(64).
    CityTooLong,
    NoTime,
    /// Our ids are positive (BIGINT UNSIGNED AUTO_INCREMENT).
    IdNotPositive,
}

impl fmt::Display for NotCopied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SameCityAndTime => "same city and UTC time as a row with a lower id",
            Self::NoCity => "ciudad is NULL",
            Self::CityTooLong => "ciudad is longer than 64 characters",
            Self::NoTime => "fecha_registro is NULL",
            Self::IdNotPositive => "id is not positive",
        })
    }
}

#[derive(Default)]
struct Tally {
    rows: u64,
    inserted: u64,
    /// Seed ids (as text) and why each was left out.
    not_copied: Vec<(String, NotCopied)>,
    /// Ids of rows copied with humedad NULL because their value does not fit.
    humidity_cleared: Vec<String>,
}

impl Tally {
    fn not_copied_by_reason(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for (id, reason) in &self.not_copied {
            let reason = reason.to_string();
            match groups.iter_mut().find(|(known, _)| *known == reason) {
                Some((_, ids)) => ids.push(id.clone()),
                None => groups.push((reason, vec![id.clone()])),
            }
        }
        groups
    }
}

/// Reads `table` in id order, batch by batch, converts each row to ours and
/// (with `CopyMode::Insert`) inserts it keeping its id.
async fn copy_rows(
    pool: &Pool,
    table: &SeedTable,
    zone: Tz,
    copy: CopyMode,
) -> Result<Tally, MigrationError> {
    let cities: Vec<String> = default_cities().into_iter().map(|city| city.name).collect();
    // Keys as the unique key compares them (utf8mb4_unicode_ci ignores case,
    // accents and trailing spaces), of the rows already taken.
    let mut seen: HashSet<(String, NaiveDateTime)> = HashSet::new();
    let mut tally = Tally::default();
    let mut after: Option<Value> = None;
    loop {
        let rows: Vec<Row> = with_timeout(STATEMENT_TIMEOUT, async {
            let mut conn = pool.get_conn().await?;
            let columns = "id, ciudad, temperatura, humedad, fecha_registro";
            match &after {
                None => {
                    conn.query(format!(
                        "SELECT {columns} FROM `{}` ORDER BY id LIMIT {BATCH_ROWS}",
                        table.name
                    ))
                    .await
                }
                Some(last) => {
                    conn.exec(
                        format!(
                            "SELECT {columns} FROM `{}` WHERE id > ? ORDER BY id LIMIT {BATCH_ROWS}",
                            table.name
                        ),
                        (last.clone(),),
                    )
                    .await
                }
            }
        })
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.as_ref(0).cloned();
        let full = rows.len() == BATCH_ROWS;
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            tally.rows += 1;
            let seed = SeedRow::read(row, &table.name)?;
            match seed.convert(&table.name, zone, &cities, &mut tally)? {
                Ok(reading) => {
                    let key = (
                        city_key(reading.reading.ciudad.trim_end()),
                        reading.reading.fecha_registro,
                    );
                    // Rows come in id order: the lowest id of a key is kept.
                    if seen.insert(key) {
                        batch.push(reading);
                    } else {
                        tally
                            .not_copied
                            .push((seed.id_text, NotCopied::SameCityAndTime));
                    }
                }
                Err(reason) => tally.not_copied.push((seed.id_text, reason)),
            }
        }
        if copy == CopyMode::Insert {
            tally.inserted += insert_with_ids(pool, &batch, STATEMENT_TIMEOUT).await?;
        }
        if !full {
            break;
        }
    }
    Ok(tally)
}

/// One row of the seed's table, as the server sent it.
struct SeedRow {
    id_text: String,
    id: Value,
    ciudad: Value,
    temperatura: Value,
    humedad: Value,
    fecha_registro: Value,
}

impl SeedRow {
    fn read(row: Row, table: &str) -> Result<Self, MigrationError> {
        let mut values = row.unwrap().into_iter();
        let mut next = || values.next().unwrap_or(Value::NULL);
        let id = next();
        let row = Self {
            id_text: value_text(&id),
            id,
            ciudad: next(),
            temperatura: next(),
            humedad: next(),
            fecha_registro: next(),
        };
        if row.id == Value::NULL {
            // A primary key is never NULL; a table that says otherwise is not
            // one we understand.
            return Err(row.unreadable(table, "id", &Value::NULL, "integer"));
        }
        Ok(row)
    }

    fn unreadable(
        &self,
        table: &str,
        column: &'static str,
        value: &Value,
        expected: &'static str,
    ) -> MigrationError {
        MigrationError::UnreadableValue {
            table: table.to_owned(),
            id: self.id_text.clone(),
            column,
            value: value_text(value),
            expected,
        }
    }

    /// The row as ours, or why it cannot be copied. Errors are values we
    /// cannot read at all, and local times without a single UTC time.
    fn convert(
        &self,
        table: &str,
        zone: Tz,
        cities: &[String],
        tally: &mut Tally,
    ) -> Result<Result<Reading, NotCopied>, MigrationError> {
        let id = match from_value_opt::<i64>(self.id.clone()) {
            Ok(id) if id > 0 => id as u64,
            Ok(_) => return Ok(Err(NotCopied::IdNotPositive)),
            // Above i64: an unsigned id, positive by definition.
            Err(_) => from_value_opt::<u64>(self.id.clone())
                .map_err(|_| self.unreadable(table, "id", &self.id, "integer"))?,
        };
        let Some(ciudad) = from_value_opt::<Option<String>>(self.ciudad.clone())
            .map_err(|_| self.unreadable(table, "ciudad", &self.ciudad, "text"))?
        else {
            return Ok(Err(NotCopied::NoCity));
        };
        if ciudad.chars().count() > 64 {
            return Ok(Err(NotCopied::CityTooLong));
        }
        let ciudad = canonical_city(cities, &ciudad)
            .map(str::to_owned)
            .unwrap_or(ciudad);
        let temperatura = match &self.temperatura {
            // FLOAT: the seed meant the decimal it printed (20.1), not the
            // nearest binary float widened (20.100000381…).
            Value::Float(value) => value.to_string().parse().ok(),
            other => from_value_opt::<Option<f64>>(other.clone())
                .map_err(|_| self.unreadable(table, "temperatura", &self.temperatura, "number"))?,
        };
        let humedad = match from_value_opt::<Option<i64>>(self.humedad.clone())
            .map_err(|_| self.unreadable(table, "humedad", &self.humedad, "integer"))?
        {
            None => None,
            Some(value) => match u8::try_from(value) {
                Ok(value) => Some(value),
                Err(_) => {
                    tally.humidity_cleared.push(self.id_text.clone());
                    None
                }
            },
        };
        let Some(local) = from_value_opt::<Option<NaiveDateTime>>(self.fecha_registro.clone())
            .map_err(|_| {
                self.unreadable(
                    table,
                    "fecha_registro",
                    &self.fecha_registro,
                    "date and time",
                )
            })?
        else {
            return Ok(Err(NotCopied::NoTime));
        };
        let fecha_registro = match zone.from_local_datetime(&local) {
            LocalResult::Single(time) => time.naive_utc(),
            LocalResult::Ambiguous(..) => {
                return Err(self.local_time(table, local, zone, "is ambiguous"))
            }
            LocalResult::None => return Err(self.local_time(table, local, zone, "does not exist")),
        };
        Ok(Ok(Reading {
            id,
            reading: NewReading {
                ciudad,
                temperatura,
                humedad,
                fecha_registro,
                source: Source::Seed,
                observed_at: None,
                apparent_temperature: None,
                weather_code: None,
                wind_speed: None,
            },
        }))
    }

    fn local_time(
        &self,
        table: &str,
        time: NaiveDateTime,
        zone: Tz,
        problem: &'static str,
    ) -> MigrationError {
        MigrationError::LocalTime {
            table: table.to_owned(),
            id: self.id_text.clone(),
            time,
            zone,
            problem,
        }
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::Int(value) => value.to_string(),
        Value::UInt(value) => value.to_string(),
        other => other.as_sql(true),
    }
}

async fn execute(pool: &Pool, statement: String) -> Result<(), DatabaseError> {
    with_timeout(STATEMENT_TIMEOUT, async {
        pool.get_conn().await?.query_drop(statement).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(spec: &[(&str, &str)]) -> Vec<(String, String)> {
        spec.iter()
            .map(|(name, data_type)| (name.to_string(), data_type.to_string()))
            .collect()
    }

    #[test]
    fn the_seeds_columns_and_compatible_types_are_recognised() {
        let seed = [
            ("id", "int"),
            ("ciudad", "varchar"),
            ("temperatura", "float"),
            ("humedad", "int"),
            ("fecha_registro", "datetime"),
        ];
        assert!(matches!(
            classify(&columns(&seed)),
            Shape::Seed(SeedTimes::LocalWallClock)
        ));
        let compatible = [
            ("id", "bigint"),
            ("ciudad", "varchar"),
            ("temperatura", "decimal"),
            ("humedad", "tinyint"),
            ("fecha_registro", "timestamp"),
        ];
        assert!(matches!(
            classify(&columns(&compatible)),
            Shape::Seed(SeedTimes::Instants)
        ));
        assert!(matches!(classify(&[]), Shape::Absent));
        let ours = [
            ("id", "bigint"),
            ("ciudad", "varchar"),
            ("source", "varchar"),
        ];
        assert!(matches!(classify(&columns(&ours)), Shape::Ours));
    }

    #[test]
    fn any_other_shape_is_unknown_and_named() {
        let text_time = [
            ("id", "int"),
            ("ciudad", "varchar"),
            ("temperatura", "float"),
            ("humedad", "int"),
            ("fecha_registro", "varchar"),
        ];
        let Shape::Unknown(found) = classify(&columns(&text_time)) else {
            panic!("a VARCHAR time is not the seed's");
        };
        assert!(found.contains("fecha_registro VARCHAR"), "{found}");
        let six = [
            ("id", "int"),
            ("ciudad", "varchar"),
            ("temperatura", "float"),
            ("humedad", "int"),
            ("fecha_registro", "datetime"),
            ("presion", "float"),
        ];
        assert!(matches!(classify(&columns(&six)), Shape::Unknown(_)));
    }
}
