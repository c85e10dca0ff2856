use std::path::PathBuf;

use anyhow::Result;
use benchmarks::db::Server;
use benchmarks::{backup_bench, chain_bench, panel_bench, spool_bench};
use clap::{Parser, Subcommand};

/// Benchmarks of the services next to reference implementations. Needs
/// TEST_DATABASE_URL (an admin account on a throwaway server:
/// `scripts/test-mariadb.sh start DIR` prints it); `services/benchmarks/run.sh` does
/// all of that for you.
#[derive(Parser)]
struct Cli {
    /// mysql://root:PASSWORD@127.0.0.1:PORT of a throwaway server.
    #[arg(long, env = "TEST_DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Issue 3: spool replay vs LOAD DATA vs single-row INSERT.
    Spool {
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
        /// Rows for the single-row reference (it is slow).
        #[arg(long, default_value_t = 5_000)]
        single_rows: u64,
        /// Each method runs this many times; the median is reported.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Issue 4: backup-worker once vs mariadb-dump vs all-in-memory JSON.
    Backup {
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        rows: Vec<u64>,
        #[arg(long, default_value_t = 2)]
        repeat: u32,
        /// Where backup-worker was built.
        #[arg(long, env = "BENCH_BIN_DIR", default_value = "target/release")]
        bin_dir: PathBuf,
    },
    /// Issue 12: an incremental snapshot on a large table, a chain of 1 full
    /// and 144 incrementals restored, the storage of a simulated year.
    Chain {
        /// Table size for the incremental snapshot.
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Table size at the end of the restored chain.
        #[arg(long, default_value_t = 1_000_000)]
        chain_rows: u64,
    },
    /// Issue 5: the frontend under wrk vs a seed-style Flask panel and a fixed page.
    Panel {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value_t = 64)]
        connections: u32,
        /// Where frontend and open-meteo-stub were built.
        #[arg(long, env = "BENCH_BIN_DIR", default_value = "target/release")]
        bin_dir: PathBuf,
        #[arg(long, default_value = "services/benchmarks/.venv/bin/python")]
        python: PathBuf,
        #[arg(long, default_value = "services/benchmarks/flask-reference/app.py")]
        flask_app: PathBuf,
    },
    /// (Internal, measured by `backup`.) The seed's backup approach.
    SeedBackup {
        #[arg(long)]
        database: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// (Internal, measured by `panel`.) Serve a constant page of BYTES bytes.
    FixedPage {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        bytes: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let server = Server::from_url(&cli.database_url)?;
    match cli.command {
        Command::Spool {
            rows,
            single_rows,
            rounds,
        } => {
            spool_bench::run(
                &server,
                &spool_bench::Options {
                    rows,
                    single_rows,
                    rounds,
                },
            )
            .await
        }
        Command::Backup {
            rows,
            repeat,
            bin_dir,
        } => {
            let options = backup_bench::Options {
                sizes: rows,
                repeat,
                bin_dir,
                url: cli.database_url,
            };
            backup_bench::run(&server, &options).await
        }
        Command::Chain { rows, chain_rows } => {
            chain_bench::run(&server, &chain_bench::Options { rows, chain_rows }).await
        }
        Command::Panel {
            rows,
            duration_secs,
            connections,
            bin_dir,
            python,
            flask_app,
        } => {
            let options = panel_bench::Options {
                rows,
                duration_secs,
                connections,
                bin_dir,
                python,
                flask_app,
                url: cli.database_url,
            };
            panel_bench::run(&server, &options).await
        }
        Command::SeedBackup { database, out } => {
            let rows = backup_bench::seed_backup(&server, &database, &out).await?;
            println!("{rows}");
            Ok(())
        }
        Command::FixedPage { port, bytes } => panel_bench::serve_fixed_page(port, bytes).await,
    }
}
