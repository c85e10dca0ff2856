//! Issue 3: replaying the sensor's spool into the database, next to
//! `LOAD DATA LOCAL INFILE` of the same rows and to one autocommitted
//! `INSERT` per row (the seed's way).
//!
//! "Ours" is the real code path: `sensor_simulator::spool::Spool` reopened
//! from disk and `Spool::replay` with `REPLAY_BATCH` (a checkpoint fsynced
//! after every batch), exactly as the sensor's replay calls it. The variants
//! after it are prototypes that isolate one factor each, to explain the gap.
//! Last, issue 13: the running sensor drains the same spool beside its
//! ticks; how fast, and how punctual the ticks stay.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use mysql_async::prelude::Queryable;
use mysql_async::{Pool, Value};
use sensor_simulator::spool::{Spool, CHECKPOINT_FILE, REPLAY_BATCH};
use telemetry_core::reading::{insert_batch, insert_statement, INSERT_COLUMNS};
use telemetry_core::NewReading;

use crate::data::{write_tsv, Readings};
use crate::db::{self, inline, Server, LIMIT};
use crate::report::{rate, secs, thousands, verdict, Cpu, Table};

const DATABASE: &str = "bench_spool";
/// The same, without the hourly aggregates' trigger: what it costs.
const PLAIN_DATABASE: &str = "bench_spool_plain";

pub struct Options {
    pub rows: u64,
    pub single_rows: u64,
    pub rounds: u32,
}

/// One measured method.
struct Run {
    name: String,
    rows: u64,
    wall: Duration,
    cpu: Cpu,
}

pub async fn run(server: &Server, options: &Options) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let pool = server.fresh_database(DATABASE).await?;
    let server_pid = server_pid(&pool).await;
    let readings: Vec<NewReading> = Readings::ending_now(options.rows).collect();

    // The fixture: the spool as the sensor leaves it after a long outage.
    // Appended in large chunks only to save setup time (each append is
    // fsynced); the file is byte for byte what per-tick appends produce.
    let spool_dir = scratch.path().join("spool");
    let spool = Spool::open(&spool_dir, u64::MAX)?;
    for chunk in readings.chunks(7_000) {
        spool.append(chunk)?;
    }
    let spool_bytes = spool.bytes();
    drop(spool);
    let tsv = scratch.path().join("readings.tsv");
    write_tsv(&tsv, readings.iter().cloned())?;
    println!(
        "spool: {} readings, {} bytes of JSON lines; server pid {server_pid:?}\n",
        readings.len(),
        spool_bytes
    );

    let mut runs = Vec::new();

    // What part of the replay is only reading and parsing the spool.
    let parse = measure(
        "spool read + JSON parse only (no database)",
        server_pid,
        || async {
            let spool = Spool::open(&spool_dir, u64::MAX)?;
            let mut rows = 0;
            for batch in spool.batches(REPLAY_BATCH)? {
                rows += batch?.readings.len() as u64;
            }
            Ok(rows)
        },
    )
    .await?;

    // Each method runs `rounds` times on an emptied table; the median counts
    // (the machine is shared, single runs are noisy).
    let rounds = options.rounds;
    let n = options.rows;
    runs.push(
        median(
            &pool,
            rounds,
            n,
            "ours: Spool::replay (1,000-row batches, one read ahead)",
            server_pid,
            || replay(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    let infile = server.infile_pool(DATABASE, &[&tsv]);
    runs.push(
        median(
            &pool,
            rounds,
            n,
            "LOAD DATA LOCAL INFILE (same rows, TSV)",
            server_pid,
            || db::load_tsv(&infile, &tsv),
        )
        .await?,
    );
    infile.disconnect().await?;
    let single = &readings[..options.single_rows.min(options.rows) as usize];
    let single_n = single.len() as u64;
    runs.push(
        median(
            &pool,
            rounds,
            single_n,
            "single-row INSERT, autocommit per row (seed's way)",
            server_pid,
            || insert_one_by_one(&pool, single),
        )
        .await?,
    );

    // The test server runs with innodb_flush_log_at_trx_commit=2 (see
    // scripts/test-mariadb.sh); production MariaDB/MySQL default to 1, an
    // fsync per commit, which is what makes per-row commits expensive.
    let previous: Option<u8> = pool
        .get_conn()
        .await?
        .query_first("SELECT @@GLOBAL.innodb_flush_log_at_trx_commit")
        .await?;
    pool.get_conn()
        .await?
        .query_drop("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
        .await?;
    let durable = async {
        let ours = median(
            &pool,
            rounds,
            n,
            "ours, with flush_log_at_trx_commit=1",
            server_pid,
            || replay(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?;
        let single = median(
            &pool,
            rounds,
            single_n,
            "single-row INSERT, with flush_log_at_trx_commit=1",
            server_pid,
            || insert_one_by_one(&pool, single),
        )
        .await?;
        anyhow::Ok((ours, single))
    }
    .await;
    pool.get_conn()
        .await?
        .query_drop(format!(
            "SET GLOBAL innodb_flush_log_at_trx_commit = {}",
            previous.unwrap_or(2)
        ))
        .await?;
    let (durable_ours, durable_single) = durable?;
    runs.push(durable_ours);
    runs.push(durable_single);

    // Prototypes: one change each against "ours", one round each.
    let mut prototypes = Vec::new();
    // What the hourly aggregates cost each insert: the same replay into a
    // table without their trigger (migration V2).
    let plain = server.fresh_database(PLAIN_DATABASE).await?;
    plain
        .get_conn()
        .await?
        .query_drop("DROP TRIGGER mediciones_hourly_after_insert")
        .await?;
    prototypes.push(
        median(
            &plain,
            1,
            n,
            "Spool::replay into a table without the hourly aggregates' trigger",
            server_pid,
            || replay(&plain, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    plain.disconnect().await?;
    prototypes.push(
        median(
            &pool,
            1,
            n,
            "Spool::replay with 5,000-row batches",
            server_pid,
            || replay(&pool, &spool_dir, 5_000),
        )
        .await?,
    );
    prototypes.push(
        median(
            &pool,
            1,
            n,
            "1,000-row prepared batches in one transaction",
            server_pid,
            || replay_prepared_in_transaction(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    prototypes.push(
        median(
            &pool,
            1,
            n,
            "1,000-row text-protocol INSERT (values inlined)",
            server_pid,
            || replay_text_protocol(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    prototypes.push(
        median(
            &pool,
            1,
            n,
            "no read ahead: parse, then insert, batch after batch",
            server_pid,
            || replay_without_read_ahead(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    prototypes.push(
        median(
            &pool,
            1,
            n,
            "2 batches in flight on 2 connections (loses id order)",
            server_pid,
            || replay_two_connections(&pool, &spool_dir, REPLAY_BATCH),
        )
        .await?,
    );
    let beside = beside_the_ticks(server, &pool, &spool_dir, n).await?;
    pool.disconnect().await?;

    let ours = &runs[0];
    let load = &runs[1];
    let single = &runs[2];
    let ours_rate = rate(ours.rows, ours.wall);
    let mut table = Table::new(&[
        "method",
        "rows",
        "seconds",
        "rows/s",
        "ours ÷ it",
        "client CPU s",
        "server CPU s",
    ]);
    for run in runs.iter().chain(std::iter::once(&parse)) {
        table.row(vec![
            run.name.clone(),
            thousands(run.rows as f64),
            secs(run.wall),
            thousands(rate(run.rows, run.wall)),
            format!("{:.2}×", ours_rate / rate(run.rows, run.wall)),
            format!("{:.2}", run.cpu.client),
            format!("{:.2}", run.cpu.server),
        ]);
    }
    println!(
        "### Spool replay: ours and the references (median of {} rounds)\n",
        options.rounds
    );
    table.print();

    let mut table = Table::new(&[
        "prototype (not in the services)",
        "rows",
        "seconds",
        "rows/s",
        "÷ ours",
        "client CPU s",
        "server CPU s",
    ]);
    for run in &prototypes {
        table.row(vec![
            run.name.clone(),
            thousands(run.rows as f64),
            secs(run.wall),
            thousands(rate(run.rows, run.wall)),
            format!("{:.2}×", rate(run.rows, run.wall) / ours_rate),
            format!("{:.2}", run.cpu.client),
            format!("{:.2}", run.cpu.server),
        ]);
    }
    println!("### Spool replay: prototypes\n");
    table.print();

    let half_load = ours_rate >= rate(load.rows, load.wall) / 2.0;
    let vs_single = ours_rate / rate(single.rows, single.wall);
    let vs_single_durable = rate(runs[3].rows, runs[3].wall) / rate(runs[4].rows, runs[4].wall);
    let mut goals = Table::new(&["goal", "figure", "verdict"]);
    goals
        .row(vec![
            "≥ 50,000 rows/s".into(),
            thousands(ours_rate),
            verdict(ours_rate >= 50_000.0).into(),
        ])
        .row(vec![
            "≥ ½ LOAD DATA rate".into(),
            format!("{:.2} of it", ours_rate / rate(load.rows, load.wall)),
            verdict(half_load).into(),
        ])
        .row(vec![
            "≥ 20× single-row (test server, flush_log_at_trx_commit=2)".into(),
            format!("{vs_single:.1}×"),
            verdict(vs_single >= 20.0).into(),
        ])
        .row(vec![
            "≥ 20× single-row (production default, flush_log_at_trx_commit=1)".into(),
            format!("{vs_single_durable:.1}×"),
            verdict(vs_single_durable >= 20.0).into(),
        ]);
    println!("### Spool replay: goals\n");
    goals.print();

    let mut table = Table::new(&["the running sensor, simulated source, 1 s ticks", "figure"]);
    let beside_rate = rate(beside.replayed, beside.wall);
    table
        .row(vec![
            "spooled readings replayed".into(),
            thousands(beside.replayed as f64),
        ])
        .row(vec!["seconds to drain".into(), secs(beside.wall)])
        .row(vec![
            "replay rate, rows/s (÷ Spool::replay alone)".into(),
            format!(
                "{} ({:.2}×)",
                thousands(beside_rate),
                beside_rate / ours_rate
            ),
        ])
        .row(vec![
            "ticks during the drain".into(),
            format!("{}", beside.ticks),
        ])
        .row(vec!["ticks skipped".into(), format!("{}", beside.skipped)])
        .row(vec![
            "latest tick stored or spooled after it was due".into(),
            format!("{:.1} ms", beside.lateness * 1000.0),
        ]);
    println!("### Spool replay beside the ticks (issue 13)\n");
    table.print();
    Ok(())
}

/// What the running sensor showed while it drained the spool.
struct BesideTicks {
    replayed: u64,
    wall: Duration,
    ticks: u64,
    skipped: u64,
    lateness: f64,
}

/// Starts the real sensor (simulated source, 1 s ticks, so a tick falls
/// every second of the drain) on the spool and times the drain through its
/// own `/metrics`: the replay runs beside the tick loop, and the ticks'
/// lateness and skips say whether they kept their cadence.
async fn beside_the_ticks(
    server: &Server,
    pool: &Pool,
    spool_dir: &Path,
    expected: u64,
) -> Result<BesideTicks> {
    use sensor_simulator::settings::Settings;
    use telemetry_core::settings::HttpSettings;
    use telemetry_core::Source;

    let name = "the running sensor draining the spool beside its ticks";
    eprintln!("spool: {name} ...");
    db::truncate(pool).await?;
    forget_checkpoint(spool_dir)?;
    let mut settings = Settings {
        database: server.settings(DATABASE),
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
        },
        ..Settings::default()
    };
    settings.sensor.source = Source::Simulated;
    settings.sensor.interval_secs = 1;
    settings.spool.directory = spool_dir.to_owned();
    settings.spool.max_bytes = u64::MAX;
    let sensor = sensor_simulator::Application::build(&settings)?;
    let port = sensor.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(sensor.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let drained = loop {
        let metrics = sensor_metrics(port).await?;
        if metrics("sensor_readings_replayed_total") >= expected as f64
            && metrics("sensor_spool_bytes") == 0.0
        {
            break metrics;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the sensor did not drain the spool in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed();
    let _ = stop.send(());
    running.await??;
    let stored_ticks = db::count(pool).await? - expected;
    ensure!(
        stored_ticks.is_multiple_of(settings.sensor.cities.len() as u64),
        "{stored_ticks} rows of ticks: not whole ticks"
    );
    eprintln!("spool: {name}: drained in {:.2} s", wall.as_secs_f64());
    Ok(BesideTicks {
        replayed: drained("sensor_readings_replayed_total") as u64,
        wall,
        ticks: drained("sensor_ticks_total") as u64,
        skipped: drained("sensor_ticks_skipped_total") as u64,
        lateness: drained("sensor_tick_lateness_max_seconds"),
    })
}

/// The sensor's `/metrics`, as a lookup by series name (0 when absent).
async fn sensor_metrics(port: u16) -> Result<impl Fn(&str) -> f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    let values: std::collections::HashMap<String, f64> = reply
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    Ok(move |name: &str| values.get(name).copied().unwrap_or(0.0))
}

/// Runs `work` `rounds` times, each on an emptied table, checks the rows
/// stored, and returns the median run by wall time.
async fn median<F, Fut>(
    pool: &Pool,
    rounds: u32,
    expected: u64,
    name: &str,
    server_pid: Option<u32>,
    mut work: F,
) -> Result<Run>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    let mut runs = Vec::new();
    for _ in 0..rounds.max(1) {
        db::truncate(pool).await?;
        runs.push(measure(name, server_pid, &mut work).await?);
        check_count(pool, expected).await?;
    }
    runs.sort_by_key(|run| run.wall);
    Ok(runs.swap_remove(runs.len() / 2))
}

async fn measure<F, Fut>(name: &str, server_pid: Option<u32>, work: F) -> Result<Run>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<u64>>,
{
    eprintln!("spool: {name} ...");
    let cpu = Cpu::now(server_pid);
    let started = Instant::now();
    let rows = work().await.with_context(|| name.to_owned())?;
    let wall = started.elapsed();
    let run = Run {
        name: name.to_owned(),
        rows,
        wall,
        cpu: Cpu::now(server_pid).since(cpu),
    };
    eprintln!(
        "spool: {name}: {} rows in {:.2} s",
        run.rows,
        wall.as_secs_f64()
    );
    Ok(run)
}

/// What the sensor's replay runs, minus logging, metrics and the clear.
/// From the start of the spool: the previous round's checkpoint goes.
async fn replay(pool: &Pool, spool_dir: &Path, batch_size: usize) -> Result<u64> {
    forget_checkpoint(spool_dir)?;
    let spool = Spool::open(spool_dir, u64::MAX)?;
    Ok(spool
        .replay(pool, batch_size, LIMIT, |_| {})
        .await?
        .readings)
}

fn forget_checkpoint(spool_dir: &Path) -> Result<()> {
    match std::fs::remove_file(spool_dir.join(CHECKPOINT_FILE)) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
        _ => Ok(()),
    }
}

/// The replay before it read ahead: each batch parsed, then inserted.
async fn replay_without_read_ahead(
    pool: &Pool,
    spool_dir: &Path,
    batch_size: usize,
) -> Result<u64> {
    forget_checkpoint(spool_dir)?;
    let spool = Spool::open(spool_dir, u64::MAX)?;
    let mut rows = 0;
    for batch in spool.batches(batch_size)? {
        let batch = batch?.readings;
        insert_batch(pool, &batch, LIMIT).await?;
        rows += batch.len() as u64;
    }
    Ok(rows)
}

/// `insert_batch`'s statements, on one connection inside one transaction:
/// shows what the per-statement commit costs.
async fn replay_prepared_in_transaction(
    pool: &Pool,
    spool_dir: &Path,
    batch_size: usize,
) -> Result<u64> {
    forget_checkpoint(spool_dir)?;
    let spool = Spool::open(spool_dir, u64::MAX)?;
    let mut conn = pool.get_conn().await?;
    conn.query_drop("START TRANSACTION").await?;
    let mut rows = 0;
    for batch in spool.batches(batch_size)? {
        let batch = batch?.readings;
        let (statement, params) = batch_insert(&batch);
        conn.exec_drop(statement, params).await?;
        rows += batch.len() as u64;
    }
    conn.query_drop("COMMIT").await?;
    Ok(rows)
}

/// Two batches in flight at once: tells whether the server can use a second
/// core for inserts. Ids no longer follow spool order, which the sensor
/// promises, so this is an upper bound, not a proposal.
async fn replay_two_connections(pool: &Pool, spool_dir: &Path, batch_size: usize) -> Result<u64> {
    forget_checkpoint(spool_dir)?;
    let spool = Spool::open(spool_dir, u64::MAX)?;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut rows = 0;
    for batch in spool.batches(batch_size)? {
        if in_flight.len() == 2 {
            rows += in_flight.join_next().await.expect("two tasks")??;
        }
        let batch = batch?.readings;
        let pool = pool.clone();
        in_flight.spawn(async move {
            insert_batch(&pool, &batch, LIMIT).await?;
            anyhow::Ok(batch.len() as u64)
        });
    }
    while let Some(done) = in_flight.join_next().await {
        rows += done??;
    }
    Ok(rows)
}

/// One text-protocol statement per batch with the values written into it:
/// no prepare, no 9,000-parameter binary packet.
async fn replay_text_protocol(pool: &Pool, spool_dir: &Path, batch_size: usize) -> Result<u64> {
    forget_checkpoint(spool_dir)?;
    let spool = Spool::open(spool_dir, u64::MAX)?;
    let mut conn = pool.get_conn().await?;
    let mut rows = 0;
    for batch in spool.batches(batch_size)? {
        let batch = batch?.readings;
        let (statement, params) = batch_insert(&batch);
        // Value::as_sql quotes and escapes each value as the driver's own
        // client-side interpolation does.
        conn.query_drop(inline(&statement, &params)).await?;
        rows += batch.len() as u64;
    }
    Ok(rows)
}

/// One `INSERT` per row, each its own transaction: the seed's sensor loop.
async fn insert_one_by_one(pool: &Pool, readings: &[NewReading]) -> Result<u64> {
    let mut conn = pool.get_conn().await?;
    for reading in readings {
        let (statement, params) = batch_insert(std::slice::from_ref(reading));
        conn.exec_drop(statement, params).await?;
    }
    Ok(readings.len() as u64)
}

/// The statement and values `insert_batch` sends for `batch`, from its own
/// pieces in telemetry-core.
fn batch_insert(batch: &[NewReading]) -> (String, Vec<Value>) {
    let params: Vec<Value> = batch.iter().flat_map(NewReading::params).collect();
    let per_row = params.len() / batch.len().max(1);
    (
        insert_statement(INSERT_COLUMNS, per_row, batch.len()),
        params,
    )
}

async fn check_count(pool: &Pool, expected: u64) -> Result<()> {
    let stored = db::count(pool).await?;
    ensure!(
        stored == expected,
        "expected {expected} rows stored, found {stored}"
    );
    Ok(())
}

/// The server's pid, from its pid file, to read its CPU time.
pub async fn server_pid(pool: &Pool) -> Option<u32> {
    let file: Option<String> = pool
        .get_conn()
        .await
        .ok()?
        .query_first("SELECT @@pid_file")
        .await
        .ok()?;
    std::fs::read_to_string(file?).ok()?.trim().parse().ok()
}
