//! Issue 4: a snapshot of `mediciones`, by the real `backup-worker once`
//! binary, next to `mariadb-dump` of the same table and to the seed's
//! approach (the whole result in memory, then one JSON). Each runs as its
//! own process so its peak RSS is its own; sizes 100k and 1M show whether
//! memory stays flat as the table grows.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use backup_worker::settings::Compression;
use backup_worker::snapshot;
use mysql_async::prelude::{Protocol, Queryable};
use mysql_async::{Pool, QueryResult};
use sha2::{Digest, Sha256};
use telemetry_core::reading::COLUMNS;
use telemetry_core::Reading;

use crate::data::Readings;
use crate::db::{self, Server, LIMIT};
use crate::process::{Timed, Usage};
use crate::report::{mib, secs, thousands, verdict, Table};

const DATABASE: &str = "bench_backup";

pub struct Options {
    pub sizes: Vec<u64>,
    pub repeat: u32,
    /// Where `backup-worker` was built (target/release).
    pub bin_dir: PathBuf,
    pub url: String,
}

/// The best wall time and the worst peak RSS over the repeats.
#[derive(Default, Clone, Copy)]
struct Measured {
    wall: Option<Duration>,
    peak_rss: u64,
    /// CPU seconds of the run with the best wall time.
    cpu: f64,
    bytes: u64,
}

impl Measured {
    fn add(&mut self, usage: Usage, bytes: u64) {
        if self.wall.is_none_or(|best| usage.wall < best) {
            self.wall = Some(usage.wall);
            self.cpu = usage.cpu;
        }
        self.peak_rss = self.peak_rss.max(usage.peak_rss);
        self.bytes = bytes;
    }

    fn wall(&self) -> Duration {
        self.wall.unwrap_or_default()
    }
}

pub async fn run(server: &Server, options: &Options) -> Result<()> {
    let scratch = tempfile::tempdir()?;
    let worker = options.bin_dir.join("backup-worker");
    ensure!(
        worker.is_file(),
        "{} not built (cargo build --release -p backup-worker)",
        worker.display()
    );
    let mut results = Vec::new();
    let mut profile = Table::new(&[]);
    for &rows in &options.sizes {
        let pool = server.fresh_database(DATABASE).await?;
        eprintln!("backup: filling {rows} rows ...");
        db::fill(server, DATABASE, Readings::ending_now(rows), scratch.path()).await?;
        db::warm(&pool).await?;
        pool.disconnect().await?;

        let (mut ours, mut dump, mut seed) = (
            Measured::default(),
            Measured::default(),
            Measured::default(),
        );
        for round in 0..options.repeat {
            eprintln!("backup: {rows} rows, round {} ...", round + 1);
            // Same order every round; the table is warm before the first.
            let dir = scratch.path().join(format!("ours-{rows}-{round}"));
            let (usage, bytes) = run_backup_worker(&worker, server, &dir, rows)?;
            ours.add(usage, bytes);
            std::fs::remove_dir_all(&dir)?;

            let file = scratch.path().join(format!("dump-{rows}-{round}.sql"));
            let mut dump_command = Timed::new("mariadb-dump")?;
            dump_command
                .command
                .args([
                    "--no-defaults",
                    "-h",
                    &server.host,
                    "-P",
                    &server.port.to_string(),
                    "-u",
                    &server.user,
                ])
                .arg(format!("-p{}", server.password))
                .args([
                    "--single-transaction",
                    "--skip-lock-tables",
                    DATABASE,
                    "mediciones",
                ])
                .stdout(File::create(&file)?);
            let usage = dump_command.measure()?;
            ensure!(
                usage.status.success(),
                "mariadb-dump failed: {}",
                usage.status
            );
            dump.add(usage, remove(&file)?);

            let file = scratch.path().join(format!("seed-{rows}-{round}.json"));
            let mut seed_command = Timed::new(std::env::current_exe()?)?;
            seed_command
                .command
                .args(["seed-backup", "--database", DATABASE, "--out"])
                .arg(&file)
                .env("TEST_DATABASE_URL", &options.url)
                .stdout(Stdio::null());
            let usage = seed_command.measure()?;
            ensure!(
                usage.status.success(),
                "seed-style backup failed: {}",
                usage.status
            );
            seed.add(usage, remove(&file)?);
        }
        results.push((rows, ours, dump, seed));
        if Some(&rows) == options.sizes.last() {
            profile = profile_snapshot(server, scratch.path()).await?;
        }
    }

    let mut table = Table::new(&[
        "rows",
        "method",
        "wall s (best)",
        "peak RSS MiB",
        "CPU s",
        "file MiB",
        "wall ÷ ours",
    ]);
    for (rows, ours, dump, seed) in &results {
        for (name, measured) in [
            ("ours: `backup-worker once`", ours),
            ("`mariadb-dump --single-transaction`", dump),
            ("seed's way: all rows in memory, one JSON", seed),
        ] {
            table.row(vec![
                thousands(*rows as f64),
                name.into(),
                secs(measured.wall()),
                mib(measured.peak_rss),
                format!("{:.2}", measured.cpu),
                mib(measured.bytes),
                format!(
                    "{:.2}×",
                    measured.wall().as_secs_f64() / ours.wall().as_secs_f64()
                ),
            ]);
        }
    }
    println!("### Backup: wall time and peak RSS (each a separate process, best wall / worst RSS of {} rounds)\n", options.repeat);
    table.print();

    let mut goals = Table::new(&["goal", "figure", "verdict"]);
    for (rows, ours, dump, _) in &results {
        let ratio = ours.wall().as_secs_f64() / dump.wall().as_secs_f64();
        goals.row(vec![
            format!(
                "not slower than mariadb-dump ({} rows)",
                thousands(*rows as f64)
            ),
            format!("ours {:.2}× its time", ratio),
            verdict(ratio <= 1.0).into(),
        ]);
        goals.row(vec![
            format!("peak RSS < 30 MB ({} rows)", thousands(*rows as f64)),
            format!("{} MiB", mib(ours.peak_rss)),
            verdict(ours.peak_rss < 30 * 1000 * 1000).into(),
        ]);
    }
    if let (Some(first), Some(last)) = (results.first(), results.last()) {
        if first.0 != last.0 {
            // "Flat": growing the table 10× moves peak RSS by less than 10 %.
            let growth = last.1.peak_rss as f64 / first.1.peak_rss as f64;
            goals.row(vec![
                format!(
                    "RSS flat from {} to {} rows",
                    thousands(first.0 as f64),
                    thousands(last.0 as f64)
                ),
                format!(
                    "{growth:.2}× ({} → {} MiB)",
                    mib(first.1.peak_rss),
                    mib(last.1.peak_rss)
                ),
                verdict(growth < 1.10).into(),
            ]);
        }
    }
    println!("### Backup: goals\n");
    goals.print();
    println!(
        "### Backup: where a snapshot's time goes ({} rows, in-process, each stage adds one step of `snapshot::take`, then `take` itself)\n",
        thousands(*options.sizes.last().unwrap_or(&0) as f64)
    );
    profile.print();
    Ok(())
}

/// `snapshot::take`'s work rebuilt step by step from its own pieces (its
/// transaction, its query, its row type and `Reading::write_json`), each
/// stage timed alone on one thread, to show which step costs; then `take`
/// itself, whose writer thread overlaps the last steps with the reading.
async fn profile_snapshot(server: &Server, scratch: &Path) -> Result<Table> {
    let pool = server.settings(DATABASE).pool()?;
    let server_pid = crate::spool_bench::server_pid(&pool).await;
    let mut table = Table::new(&["stage", "wall s", "client CPU s", "server CPU s"]);
    let file = scratch.join("profile.json");
    let all = Stage {
        json: true,
        hash: true,
        file: true,
        fsync: true,
        ..Stage::NONE
    };
    let stages: [(&str, Option<Stage>); 8] = [
        (
            "stream + decode rows, text protocol (as mariadb-dump reads)",
            Some(Stage {
                text: true,
                ..Stage::NONE
            }),
        ),
        (
            "stream + decode rows, binary protocol (as `take` reads)",
            Some(Stage::NONE),
        ),
        (
            "+ `Reading::write_json` to memory",
            Some(Stage {
                json: true,
                ..Stage::NONE
            }),
        ),
        (
            "+ SHA-256",
            Some(Stage {
                json: true,
                hash: true,
                ..Stage::NONE
            }),
        ),
        (
            "+ write the file",
            Some(Stage {
                fsync: false,
                ..all
            }),
        ),
        ("+ fsync (`take`'s steps, on one thread)", Some(all)),
        (
            "the same with `Reading`'s `Serialize` instead of `write_json` (same bytes)",
            Some(Stage { serde: true, ..all }),
        ),
        ("`snapshot::take` itself (no compression)", None),
    ];
    let directory = scratch.join("profile");
    std::fs::create_dir_all(&directory)?;
    for (name, stage) in stages {
        eprintln!("backup profile: {name} ...");
        let cpu = crate::report::Cpu::now(server_pid);
        let started = Instant::now();
        match stage {
            Some(stage) => run_stage(&pool, stage, &file).await.map(|_rows| ()),
            None => snapshot::take(&pool, &directory, Compression::None, LIMIT, None)
                .await
                .map(|_manifest| ())
                .map_err(anyhow::Error::from),
        }
        .with_context(|| name.to_owned())?;
        let wall = started.elapsed();
        let used = crate::report::Cpu::now(server_pid).since(cpu);
        table.row(vec![
            name.into(),
            secs(wall),
            format!("{:.2}", used.client),
            format!("{:.2}", used.server),
        ]);
        let _ = std::fs::remove_file(&file);
    }
    std::fs::remove_dir_all(&directory)?;
    pool.disconnect().await?;
    Ok(table)
}

#[derive(Clone, Copy)]
struct Stage {
    text: bool,
    json: bool,
    hash: bool,
    file: bool,
    fsync: bool,
    serde: bool,
}

impl Stage {
    const NONE: Stage = Stage {
        text: false,
        json: false,
        hash: false,
        file: false,
        fsync: false,
        serde: false,
    };
}

async fn run_stage(pool: &Pool, stage: Stage, path: &Path) -> Result<u64> {
    let mut conn = pool.get_conn().await?;
    snapshot::begin(&mut conn, LIMIT).await?;
    let sql = snapshot::rows_query();
    let rows = if stage.text {
        drain(conn.query_iter(sql).await?, stage, path).await?
    } else {
        drain(conn.exec_iter(sql, ()).await?, stage, path).await?
    };
    conn.query_drop("COMMIT").await?;
    Ok(rows)
}

async fn drain<P: Protocol>(
    mut result: QueryResult<'_, 'static, P>,
    stage: Stage,
    path: &Path,
) -> Result<u64> {
    let mut file = stage
        .file
        .then(|| File::create(path))
        .transpose()?
        .map(|f| BufWriter::with_capacity(256 * 1024, f));
    let mut hasher = Sha256::new();
    let mut buffer = Vec::with_capacity(512);
    let mut rows = 0;
    while let Some(row) = result.next().await? {
        let reading: Reading =
            mysql_async::from_row_opt(row).map_err(|error| anyhow::anyhow!("{:?}", error.0))?;
        rows += 1;
        if !stage.json {
            std::hint::black_box(&reading);
            continue;
        }
        buffer.clear();
        if stage.serde {
            serde_json::to_writer(&mut buffer, &reading)?;
        } else {
            reading.write_json(&mut buffer);
        }
        buffer.extend_from_slice(b",\n");
        if stage.hash {
            hasher.update(&buffer);
        }
        if let Some(file) = &mut file {
            file.write_all(&buffer)?;
        }
    }
    std::hint::black_box(hasher.finalize());
    if let Some(file) = file {
        let file = file.into_inner().map_err(|error| error.into_error())?;
        if stage.fsync {
            file.sync_all()?;
        }
    }
    Ok(rows)
}

/// `backup-worker once`, configured like the container is, as the backup
/// account would be (here the admin account; the worker only reads).
fn run_backup_worker(
    worker: &Path,
    server: &Server,
    dir: &Path,
    rows: u64,
) -> Result<(Usage, u64)> {
    let log = dir.with_extension("log");
    let mut timed = Timed::new(worker)?;
    timed
        .command
        .arg("once")
        .env("APP__DATABASE__HOST", &server.host)
        .env("APP__DATABASE__PORT", server.port.to_string())
        .env("APP__DATABASE__USER", &server.user)
        .env("APP__DATABASE__PASSWORD", &server.password)
        .env("APP__DATABASE__NAME", DATABASE)
        .env("APP__DATABASE__TIMEOUT_SECS", "60")
        .env("APP__BACKUP__DIRECTORY", dir)
        .env("APP__LOG__FORMAT", "json")
        .stdout(File::create(&log)?);
    let usage = timed.measure()?;
    let output = std::fs::read_to_string(&log)?;
    ensure!(
        usage.status.success(),
        "backup-worker once failed: {}\n{output}",
        usage.status
    );
    // Its last line is the snapshot's path; the manifest beside it counts rows.
    let snapshot = output
        .lines()
        .last()
        .context("backup-worker printed nothing")?
        .trim();
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{snapshot}.manifest.json"
    ))?)?;
    ensure!(
        manifest["rows"] == rows,
        "snapshot holds {} rows, expected {rows}",
        manifest["rows"]
    );
    let bytes = std::fs::metadata(snapshot)?.len();
    std::fs::remove_file(&log)?;
    Ok((usage, bytes))
}

fn remove(file: &Path) -> Result<u64> {
    let bytes = std::fs::metadata(file)?.len();
    std::fs::remove_file(file)?;
    Ok(bytes)
}

/// The seed's backup, in Rust: fetch every row into a `Vec`, serialise the
/// whole array, write it. Run as a child process by `run`, which measures it.
/// (The seed did this in Python, whose rows cost several times more memory;
/// this is the approach's floor, not the seed's actual footprint.)
pub async fn seed_backup(server: &Server, database: &str, out: &Path) -> Result<u64> {
    let pool = server.settings(database).pool()?;
    let mut conn = pool.get_conn().await?;
    let rows: Vec<Reading> = conn
        .query(format!("SELECT {COLUMNS} FROM mediciones"))
        .await?;
    let json = serde_json::to_vec(&rows)?;
    std::fs::write(out, json)?;
    drop(conn);
    pool.disconnect().await?;
    Ok(rows.len() as u64)
}
