use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use backup_worker::acl::{self, SERVICE_UID};
use backup_worker::settings::Settings;
use backup_worker::{archive, snapshot_once, Application, Metrics};
use clap::{Parser, Subcommand};
use telemetry_core::observability::{init_tracing, probe_health, shutdown_signal};

/// Writes consistent, timestamped JSON snapshots of the `mediciones` table
/// (the seed's format) with a manifest each, keeps a bounded history, and
/// verifies and restores them.
///
/// Configuration: defaults, then the TOML file given by --config, then
/// environment variables APP__SECTION__KEY (e.g. APP__BACKUP__INTERVAL_SECS).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, short, env = "APP_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Take a snapshot every interval (the default).
    Run,
    /// Take one snapshot now, then exit.
    Once,
    /// Check a snapshot against its manifest: checksum, every row, count.
    Verify { file: PathBuf },
    /// Verify a snapshot, then load its rows into the configured database
    /// (needs an account with INSERT). Rows already present are skipped.
    Restore { file: PathBuf },
    /// Exit 0 if the running worker's /healthz answers (for container healthchecks).
    Healthcheck,
    /// Let the service's user (UID 10001) write into DIR, with POSIX ACLs.
    ///
    /// For a DIR that belongs to someone else (a host user's bind mount):
    /// new files there become readable by DIR's owner and by no one else.
    /// Run once as root (CAP_FOWNER is all it needs) or as DIR's owner.
    PrepareDirectory {
        /// Default: the configured backup.directory.
        #[arg(value_name = "DIR")]
        directory: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = telemetry_core::settings::load(cli.config.as_deref())?;
    let command = cli.command.unwrap_or(Command::Run);
    if !matches!(command, Command::Healthcheck) {
        init_tracing(&settings.log);
    }
    match command {
        Command::Healthcheck => probe_health(settings.http.port).map_err(anyhow::Error::msg),
        Command::Run => {
            let application = Application::build(&settings)?;
            application.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
        Command::Once => {
            std::fs::create_dir_all(&settings.backup.directory)
                .with_context(|| format!("creating {}", settings.backup.directory.display()))?;
            let pool = settings.database.pool()?;
            let manifest = snapshot_once(&settings, &pool, &Metrics::default()).await?;
            println!(
                "{}",
                settings.backup.directory.join(&manifest.file).display()
            );
            Ok(())
        }
        Command::Verify { file } => {
            let verified = archive::verify(&file)?;
            let manifest = verified.manifest;
            println!(
                "{}: OK, {} rows, ids {:?}..{:?}, sha256 {}",
                file.display(),
                manifest.rows,
                manifest.min_id,
                manifest.max_id,
                manifest.sha256
            );
            Ok(())
        }
        Command::Restore { file } => {
            let pool = settings.database.pool()?;
            let total = archive::read_manifest(&file)?.rows;
            let bar = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(total)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let restored = archive::restore(&file, &pool, settings.database.timeout(), |rows| {
                bar.set_position(rows)
            })
            .await?;
            bar.finish_and_clear();
            println!(
                "{}: restored {} rows ({} new, {} already present)",
                file.display(),
                restored.rows,
                restored.inserted,
                restored.rows - restored.inserted
            );
            pool.disconnect().await.ok();
            Ok(())
        }
        Command::PrepareDirectory { directory } => {
            let directory = directory.unwrap_or(settings.backup.directory);
            let prepared = acl::prepare_directory(&directory)?;
            tracing::info!(
                message = if prepared.changed {
                    "backup directory prepared"
                } else {
                    "backup directory already prepared"
                },
                directory = %directory.display(),
                owner_uid = prepared.owner,
                service_uid = SERVICE_UID,
                access_acl = %prepared.access,
                default_acl = %prepared.default,
            );
            Ok(())
        }
    }
}
