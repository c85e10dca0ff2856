//! The throwaway MariaDB server the benchmarks run against: a fresh,
//! migrated database per benchmark, and bulk loading for the fixtures.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Opts, OptsBuilder, Pool, Value, WhiteListFsHandler};
use secrecy::SecretString;
use telemetry_core::reading::INSERT_COLUMNS;
use telemetry_core::DatabaseSettings;

use crate::data::{write_tsv, Readings};

/// An admin account on the server named by `TEST_DATABASE_URL`.
#[derive(Clone)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Server {
    pub fn from_url(url: &str) -> Result<Self> {
        let opts =
            Opts::from_url(url).with_context(|| "TEST_DATABASE_URL is not a mysql:// URL")?;
        Ok(Self {
            host: opts.ip_or_hostname().to_owned(),
            port: opts.tcp_port(),
            user: opts.user().unwrap_or("root").to_owned(),
            password: opts.pass().unwrap_or_default().to_owned(),
        })
    }

    /// The services' own settings type, so `pool()` below is configured
    /// exactly like theirs (pool size, init statements, time zone).
    pub fn settings(&self, database: &str) -> DatabaseSettings {
        DatabaseSettings {
            host: self.host.clone(),
            port: self.port,
            name: database.to_owned(),
            user: self.user.clone(),
            password: Some(SecretString::from(self.password.clone())),
            password_file: None,
            // Generous: a 1,000-row batch on a busy shared machine must not
            // be cut off by the services' 5 s default.
            timeout_secs: 60,
            ca_file: None,
            // Benchmarks start from an empty database, never a seed's.
            seed_time_zone: String::new(),
        }
    }

    /// Drops and recreates `database`, applies the real migrations, and
    /// returns a pool configured like the services'.
    pub async fn fresh_database(&self, database: &str) -> Result<Pool> {
        let settings = self.settings(database);
        let server = settings.server_pool()?;
        let mut conn = server
            .get_conn()
            .await
            .context("connecting to the benchmark server")?;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
            .await?;
        conn.query_drop(format!(
            "CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        ))
        .await?;
        // LOAD DATA LOCAL is refused unless the server allows it.
        conn.query_drop("SET GLOBAL local_infile = 1").await?;
        drop(conn);
        server.disconnect().await?;
        let pool = settings.pool()?;
        telemetry_core::migration::migrate(&pool, None)
            .await
            .context("running the migrations")?;
        Ok(pool)
    }

    /// A pool that may send the listed files with `LOAD DATA LOCAL INFILE`.
    pub fn infile_pool(&self, database: &str, files: &[&Path]) -> Pool {
        let allowed: Vec<String> = files
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(Some(database.to_owned()))
            .init(vec!["SET time_zone = '+00:00'"])
            .local_infile_handler(Some(WhiteListFsHandler::new(allowed)));
        Pool::new(opts)
    }
}

/// `LOAD DATA LOCAL INFILE` of a TSV written by `write_tsv`; `IGNORE` so it
/// has the same duplicate semantics as the sensor's `INSERT IGNORE`.
pub async fn load_tsv(pool: &Pool, path: &Path) -> Result<u64> {
    let mut conn = pool.get_conn().await?;
    conn.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' IGNORE INTO TABLE mediciones CHARACTER SET utf8mb4 ({INSERT_COLUMNS})",
        path.display()
    ))
    .await
    .context("LOAD DATA LOCAL INFILE")?;
    Ok(conn.affected_rows())
}

/// Fills `database` (already migrated) with `readings`, the fast way, and
/// refreshes the optimizer's statistics so EXPLAIN shows production plans.
pub async fn fill(
    server: &Server,
    database: &str,
    readings: Readings,
    scratch: &Path,
) -> Result<u64> {
    let path = scratch.join(format!("{database}-fill.tsv"));
    write_tsv(&path, readings)?;
    let pool = server.infile_pool(database, &[&path]);
    let rows = load_tsv(&pool, &path).await?;
    let mut conn = pool.get_conn().await?;
    conn.query_drop("ANALYZE TABLE mediciones").await?;
    drop(conn);
    pool.disconnect().await?;
    std::fs::remove_file(&path)?;
    Ok(rows)
}

/// Reads every row once so the measured runs start from a warm buffer pool
/// (the table fits in the server's 256 MB), not from whoever ran first.
pub async fn warm(pool: &Pool) -> Result<()> {
    let mut conn = pool.get_conn().await?;
    let _: Option<(u64, f64)> = conn
        .query_first("SELECT COUNT(*), SUM(temperatura) FROM mediciones")
        .await?;
    Ok(())
}

pub async fn truncate(pool: &Pool) -> Result<()> {
    // TRUNCATE fires no trigger: the aggregates are emptied alongside.
    pool.get_conn()
        .await?
        .query_drop("TRUNCATE TABLE mediciones; TRUNCATE TABLE mediciones_hourly")
        .await?;
    Ok(())
}

pub async fn count(pool: &Pool) -> Result<u64> {
    let count: Option<u64> = pool
        .get_conn()
        .await?
        .query_first("SELECT COUNT(*) FROM mediciones")
        .await?;
    Ok(count.unwrap_or(0))
}

/// The time bound passed to the real insert code.
pub const LIMIT: Duration = Duration::from_secs(60);

pub async fn count_on(conn: &mut mysql_async::Conn) -> Result<u64> {
    let count: Option<u64> = conn.query_first("SELECT COUNT(*) FROM mediciones").await?;
    Ok(count.unwrap_or(0))
}

/// The statement with its parameters written in, for EXPLAIN/ANALYZE and for
/// the text protocol.
pub fn inline(sql: &str, params: &[Value]) -> String {
    let mut values = params.iter();
    let mut out = String::new();
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            out.push_str(
                &values
                    .next()
                    .map_or("NULL".into(), |value| value.as_sql(false)),
            );
        }
        out.push_str(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlines_parameters_in_order() {
        let sql = inline("SELECT ? , ?", &[Value::from("a'b"), Value::from(3u32)]);
        assert_eq!(sql, "SELECT 'a\\'b' , 3");
    }
}
