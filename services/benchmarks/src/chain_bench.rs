//! Issue 12: what history costs. An incremental snapshot on a large table
//! next to a full one and to the bare read it does (its limit); a chain of
//! one full and 144 incrementals restored next to `mariadb` loading a
//! `mariadb-dump` of the same table; and the storage a simulated year takes
//! under the default retention. Everything goes through the worker's own
//! code (`snapshot_once`, `archive::restore`, `retention::plan`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use backup_worker::archive;
use backup_worker::metrics::Metrics;
use backup_worker::retention::{self, Stored};
use backup_worker::settings::{Compression, Settings};
use backup_worker::snapshot::{self, Kind, Manifest};
use backup_worker::{snapshot_once, Due};
use chrono::{NaiveDateTime, TimeDelta};
use mysql_async::prelude::Queryable;
use mysql_async::Pool;
use telemetry_core::reading::insert_batch;
use telemetry_core::time::now_utc;

use crate::data::{Readings, TICK_SECS};
use crate::db::{self, Server, LIMIT};
use crate::process::Timed;
use crate::report::{rate, secs, thousands, verdict, Table};

const SOURCE: &str = "bench_chain_source";
const RESTORED: &str = "bench_chain_restored";
const DUMPED: &str = "bench_chain_dumped";
/// Rows added between two snapshots, as issue 12 sizes it (the stack's own
/// interval adds 280: 7 cities, 40 ticks of 15 s in 10 minutes).
const INTERVAL_ROWS: u64 = 2_800;
/// A day of 10-minute snapshots after the full one.
const CHAIN_INCREMENTALS: u64 = 144;

pub struct Options {
    /// Table size for the incremental snapshot's figure.
    pub rows: u64,
    /// Table size at the end of the restored chain.
    pub chain_rows: u64,
}

pub async fn run(server: &Server, options: &Options) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let sizes = incremental(server, options.rows, scratch.path()).await?;
    restore_chain(server, options.chain_rows, scratch.path()).await?;
    simulated_year(&sizes);
    Ok(())
}

/// The worker's settings against `database`, snapshots into `directory`.
fn settings(server: &Server, database: &str, directory: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.database = server.settings(database);
    settings.backup.directory = directory.to_owned();
    settings
}

/// `count` readings for the ticks after `after` (no (city, time) shared
/// with what is there): one interval's new rows.
fn readings_after(after: NaiveDateTime, count: u64) -> Vec<telemetry_core::NewReading> {
    let ticks = count.div_ceil(7) as i64;
    Readings::new(count, after + TimeDelta::seconds(ticks * TICK_SECS)).collect()
}

async fn timed_snapshot(
    settings: &Settings,
    pool: &Pool,
    due: Due,
) -> Result<(Manifest, Duration)> {
    let started = Instant::now();
    let manifest = snapshot_once(settings, pool, &Metrics::default(), due).await?;
    Ok((manifest, started.elapsed()))
}

/// An incremental with one interval's rows on a table of `rows`, three
/// times (median), next to a full snapshot and to the incremental's own
/// SELECT drained by the bare client (the limit: what the worker adds is
/// the JSON, the file and the chain); then the same full snapshot with each
/// compression. Returns each compression's bytes per row, for the
/// simulated year.
async fn incremental(
    server: &Server,
    rows: u64,
    scratch: &Path,
) -> Result<Vec<(Compression, f64)>> {
    let pool = server.fresh_database(SOURCE).await?;
    let end = now_utc() - TimeDelta::days(1);
    eprintln!("chain: filling {rows} rows ...");
    db::fill(server, SOURCE, Readings::new(rows, end), scratch).await?;
    db::warm(&pool).await?;
    let directory = scratch.join("incremental");
    std::fs::create_dir_all(&directory)?;
    let settings = settings(server, SOURCE, &directory);

    eprintln!("chain: full snapshot of {rows} rows ...");
    let (full, full_time) = timed_snapshot(&settings, &pool, Due::Full).await?;
    ensure!(full.rows == rows, "full snapshot holds {} rows", full.rows);
    let mut times = Vec::new();
    let mut last = full.clone();
    let mut newest_time = end;
    for round in 0..3 {
        let new = readings_after(newest_time, INTERVAL_ROWS);
        newest_time = new.last().unwrap().fecha_registro;
        for chunk in new.chunks(1000) {
            insert_batch(&pool, chunk, LIMIT).await?;
        }
        let (manifest, took) = timed_snapshot(&settings, &pool, Due::AsScheduled).await?;
        ensure!(
            manifest.kind == Kind::Incremental && manifest.rows == INTERVAL_ROWS,
            "round {round}: a {:?} snapshot of {} rows",
            manifest.kind,
            manifest.rows
        );
        times.push(took);
        last = manifest;
    }
    times.sort();
    let median = times[1];

    let (sql, params) = snapshot::incremental_query(last.through() - INTERVAL_ROWS, &[]);
    let mut conn = pool.get_conn().await?;
    let started = Instant::now();
    let read: Vec<mysql_async::Row> = conn.exec(&sql, params.clone()).await?;
    let bare = started.elapsed();
    ensure!(
        read.len() as u64 == INTERVAL_ROWS,
        "bare read got {}",
        read.len()
    );
    let explain: Vec<mysql_async::Row> = conn
        .query(format!("EXPLAIN {}", db::inline(&sql, &params)))
        .await?;
    let column = |row: &mysql_async::Row, name: &str| -> String {
        row.get_opt::<Option<String>, _>(name)
            .and_then(|value| value.ok())
            .flatten()
            .unwrap_or_else(|| "NULL".into())
    };
    drop(conn);

    let mut compressed = Table::new(&["full snapshot", "seconds", "bytes a row", "size vs plain"]);
    let plain = full.bytes as f64 / full.rows.max(1) as f64;
    let mut sizes = vec![(Compression::None, plain)];
    compressed.row(vec![
        "plain JSON (`none`, the default)".into(),
        secs(full_time),
        format!("{plain:.0}"),
        "1.00".into(),
    ]);
    for compression in [Compression::Gzip, Compression::Zstd] {
        let directory = scratch.join(format!("full-{}", compression.extension()));
        std::fs::create_dir_all(&directory)?;
        let mut settings = settings.clone();
        settings.backup.directory = directory.clone();
        settings.backup.compression = compression;
        eprintln!("chain: full snapshot with {compression:?} ...");
        let (manifest, took) = timed_snapshot(&settings, &pool, Due::Full).await?;
        let per_row = manifest.bytes as f64 / manifest.rows.max(1) as f64;
        sizes.push((compression, per_row));
        compressed.row(vec![
            format!("`{}`", compression.extension()),
            secs(took),
            format!("{per_row:.1}"),
            format!("{:.3}", per_row / plain),
        ]);
        std::fs::remove_dir_all(&directory)?;
    }
    pool.disconnect().await?;

    println!(
        "### History: an incremental snapshot on {} rows ({} new rows; in-process `snapshot_once`, median of 3)\n",
        thousands(rows as f64),
        thousands(INTERVAL_ROWS as f64)
    );
    let mut table = Table::new(&["what", "time ms", "rows", "vs incremental"]);
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let ratio = |d: Duration| format!("{:.2}×", d.as_secs_f64() / median.as_secs_f64());
    table
        .row(vec![
            "incremental snapshot (ours)".into(),
            ms(median),
            thousands(INTERVAL_ROWS as f64),
            "1.00×".into(),
        ])
        .row(vec![
            "its SELECT drained by the bare client (the limit)".into(),
            ms(bare),
            thousands(INTERVAL_ROWS as f64),
            ratio(bare),
        ])
        .row(vec![
            "full snapshot of the same table (ours)".into(),
            ms(full_time),
            thousands(rows as f64),
            ratio(full_time),
        ]);
    table.print();
    let mut plan = Table::new(&["EXPLAIN", "type", "key", "rows"]);
    for row in &explain {
        plan.row(vec![
            "incremental read".into(),
            column(row, "type"),
            column(row, "key"),
            column(row, "rows"),
        ]);
    }
    plan.print();
    let mut goals = Table::new(&["goal", "measured", "met"]);
    goals.row(vec![
        "incremental under 100 ms".into(),
        format!("{} ms", ms(median)),
        verdict(median < Duration::from_millis(100)).into(),
    ]);
    goals.print();
    println!(
        "### History: compression of a full snapshot ({} rows)\n",
        thousands(rows as f64)
    );
    compressed.print();
    Ok(sizes)
}

/// One full snapshot and 144 incrementals of `INTERVAL_ROWS`, restored into
/// an empty database and compared with the source (row count and
/// `CHECKSUM TABLE`, which covers every column); beside it, `mariadb-dump`
/// of the source loaded by the `mariadb` client.
async fn restore_chain(server: &Server, rows: u64, scratch: &Path) -> Result<()> {
    let base = rows.saturating_sub(CHAIN_INCREMENTALS * INTERVAL_ROWS);
    let pool = server.fresh_database(SOURCE).await?;
    let end = now_utc() - TimeDelta::days(1);
    eprintln!("chain: filling {base} rows, then 144 incrementals of {INTERVAL_ROWS} ...");
    db::fill(server, SOURCE, Readings::new(base, end), scratch).await?;
    let directory = scratch.join("chain");
    std::fs::create_dir_all(&directory)?;
    let settings = settings(server, SOURCE, &directory);
    snapshot_once(&settings, &pool, &Metrics::default(), Due::Full).await?;
    let mut newest_time = end;
    let mut last = None;
    for _ in 0..CHAIN_INCREMENTALS {
        let new = readings_after(newest_time, INTERVAL_ROWS);
        newest_time = new.last().unwrap().fecha_registro;
        for chunk in new.chunks(1000) {
            insert_batch(&pool, chunk, LIMIT).await?;
        }
        last = Some(snapshot_once(&settings, &pool, &Metrics::default(), Due::AsScheduled).await?);
    }
    let last = directory.join(&last.context("no incremental")?.file);
    let chain_length = archive::verify(&last)?.chain.len();
    ensure!(
        chain_length as u64 == CHAIN_INCREMENTALS + 1,
        "chain of {chain_length}"
    );
    let source_sum = checksum(&pool).await?;
    pool.disconnect().await?;

    eprintln!("chain: restoring {rows} rows from {chain_length} files ...");
    let target = server.fresh_database(RESTORED).await?;
    let started = Instant::now();
    let restored = archive::restore(&last, &target, LIMIT, |_| {}).await?;
    let ours = started.elapsed();
    let restored_sum = checksum(&target).await?;
    target.disconnect().await?;

    eprintln!("chain: mariadb-dump | mariadb of the same table ...");
    let dump = scratch.join("chain-dump.sql");
    let mut dump_command = Timed::new("mariadb-dump")?;
    dump_command
        .command
        .args(client_args(server))
        .args(["--single-transaction", SOURCE, "mediciones"])
        .stdout(File::create(&dump)?);
    ensure!(
        dump_command.measure()?.status.success(),
        "mariadb-dump failed"
    );
    let reference_pool = server.fresh_database(DUMPED).await?;
    let mut load = Timed::new("mariadb")?;
    load.command
        .args(client_args(server))
        .arg(DUMPED)
        .stdin(File::open(&dump)?);
    let loaded = load.measure()?;
    ensure!(loaded.status.success(), "mariadb < dump failed");
    let reference_sum = checksum(&reference_pool).await?;
    reference_pool.disconnect().await?;
    std::fs::remove_file(&dump)?;

    println!(
        "### History: restoring a chain of 1 full + {CHAIN_INCREMENTALS} incrementals ({} rows)\n",
        thousands(rows as f64)
    );
    let mut table = Table::new(&["restore", "seconds", "rows/s", "rows, CHECKSUM TABLE"]);
    table
        .row(vec![
            format!(
                "`backup-worker restore` of the chain (ours; {} inserted)",
                thousands(restored.inserted as f64)
            ),
            secs(ours),
            thousands(rate(restored.rows, ours)),
            format!(
                "{} rows, {}",
                thousands(restored_sum.0 as f64),
                restored_sum.1
            ),
        ])
        .row(vec![
            "`mariadb < mariadb-dump` of the source (the raw tools)".into(),
            secs(loaded.wall),
            thousands(rate(rows, loaded.wall)),
            format!(
                "{} rows, {}",
                thousands(reference_sum.0 as f64),
                reference_sum.1
            ),
        ])
        .row(vec![
            "the source".into(),
            "–".into(),
            "–".into(),
            format!("{} rows, {}", thousands(source_sum.0 as f64), source_sum.1),
        ]);
    table.print();
    println!(
        "Every row and column identical to the source: {} (ours {:.2}× the raw tools' rate)\n",
        verdict(restored_sum == source_sum && restored.restored_as_it_was()),
        loaded.wall.as_secs_f64() / ours.as_secs_f64()
    );
    Ok(())
}

fn client_args(server: &Server) -> Vec<String> {
    vec![
        "--no-defaults".into(),
        "-h".into(),
        server.host.clone(),
        "-P".into(),
        server.port.to_string(),
        "-u".into(),
        server.user.clone(),
        format!("-p{}", server.password),
    ]
}

/// Row count and `CHECKSUM TABLE` (a hash over every column of every row).
async fn checksum(pool: &Pool) -> Result<(u64, u64)> {
    let mut conn = pool.get_conn().await?;
    let rows = db::count_on(&mut conn).await?;
    let sum: Option<(String, Option<u64>)> = conn.query_first("CHECKSUM TABLE mediciones").await?;
    Ok((rows, sum.and_then(|(_, sum)| sum).unwrap_or(0)))
}

/// A year of the stack's own rate (7 cities every 15 s: 40,320 rows a day)
/// with a snapshot every 10 minutes, under the default settings' chains and
/// retention, each file `bytes_per_row` a row (the full snapshot above).
/// Beside it: every snapshot full, as before incrementals, same retention.
fn simulated_year(sizes: &[(Compression, f64)]) {
    let defaults = Settings::default().backup;
    let policy = retention::Policy::of(&defaults);
    let full_every = TimeDelta::hours(defaults.full_every_hours.into());
    println!(
        "### History: storage over a simulated year (7 cities every 15 s, a snapshot every 10 min, bytes a row as written above; retention as configured by default: keep_last {}, keep_daily_days {}, full every {} h)\n",
        defaults.keep_last, defaults.keep_daily_days, defaults.full_every_hours
    );
    let mut table = Table::new(&[
        "snapshots",
        "compression",
        "after 30 days",
        "after 365 days",
        "peak",
        "files kept",
        "written in the last day",
    ]);
    let daily = "chains, a full one daily (default)";
    let plain = sizes[0].1;
    let mut cases: Vec<(&str, Option<TimeDelta>, Compression, f64)> = vec![
        (daily, Some(full_every), Compression::None, plain),
        (
            "chains, a full one weekly (full_every_hours = 168)",
            Some(TimeDelta::hours(168)),
            Compression::None,
            plain,
        ),
        (
            "every snapshot full (before chains)",
            None,
            Compression::None,
            plain,
        ),
    ];
    for &(compression, per_row) in &sizes[1..] {
        cases.push((daily, Some(full_every), compression, per_row));
    }
    for (label, full_every, compression, bytes_per_row) in cases {
        let start = NaiveDateTime::parse_from_str("2026-01-01 00:00", "%Y-%m-%d %H:%M").unwrap();
        let mut stored: Vec<Stored> = Vec::new(); // newest first
        let (mut rows, mut peak, mut at_30, mut written_last_day) = (0u64, 0u64, 0u64, 0u64);
        let mut chain_full: Option<NaiveDateTime> = None;
        for step in 0..(365 * 144) {
            let now = start + TimeDelta::minutes(10 * step);
            let new_rows = 280;
            rows += new_rows;
            let full = match (full_every, chain_full) {
                (Some(every), Some(taken)) => now - taken >= every,
                _ => true,
            };
            let bytes = ((if full { rows } else { new_rows }) as f64 * bytes_per_row) as u64;
            if full {
                chain_full = Some(now);
            }
            if step >= 364 * 144 {
                written_last_day += bytes;
            }
            stored.insert(
                0,
                Stored {
                    path: PathBuf::from(step.to_string()),
                    taken: now,
                    kind: if full { Kind::Full } else { Kind::Incremental },
                    parent: (!full).then(|| stored[0].path.clone()),
                    bytes,
                },
            );
            let plan = retention::plan(&stored, now, policy, None);
            stored.retain(|snapshot| !plan.delete.contains(&snapshot.path));
            let total: u64 = stored.iter().map(|s| s.bytes).sum();
            peak = peak.max(total);
            if step == 30 * 144 {
                at_30 = total;
            }
        }
        let total: u64 = stored.iter().map(|s| s.bytes).sum();
        table.row(vec![
            label.into(),
            format!("`{}`", compression.extension()),
            gib(at_30),
            gib(total),
            gib(peak),
            stored.len().to_string(),
            gib(written_last_day),
        ]);
    }
    table.print();
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}
