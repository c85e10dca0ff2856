use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use backup_worker::acl::{self, SERVICE_UID};
use backup_worker::metrics::Metrics;
use backup_worker::progress::RowProgress;
use backup_worker::settings::Settings;
use backup_worker::{archive, snapshot_once, Application};
use clap::Subcommand;
use telemetry_core::observability::init_tracing;
use telemetry_core::service::{self, Cli, Identity, Lifecycle};

const IDENTITY: Identity = Identity {
    name: env!("CARGO_BIN_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Writes consistent, timestamped JSON snapshots of the `mediciones` table \
        (the seed's format) with a manifest each.\n\n\
        Keeps a bounded history of them, and verifies and restores them.",
};

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Lifecycle(Lifecycle),
    /// Take one snapshot now, then exit.
    Once,
    /// Check a snapshot against its manifest: checksum, every row, count.
    Verify { file: PathBuf },
    /// Verify a snapshot, then load its rows into the configured database
    /// (needs an account with INSERT and SELECT), keeping their ids.
    ///
    /// Rows already present are skipped. A row whose id now holds another
    /// reading goes in under a new id; one whose city and time hold other
    /// values is left out. Either is reported, and the exit status is then 3.
    Restore { file: PathBuf },
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
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::<Command>::parse_as(&IDENTITY);
    let settings: Settings = cli.settings()?;
    let command = cli.command.unwrap_or(Command::Lifecycle(Lifecycle::Run));
    if !matches!(command, Command::Lifecycle(_)) {
        init_tracing(&settings.log);
    }
    match command {
        Command::Lifecycle(lifecycle) => {
            service::lifecycle(
                lifecycle,
                (&settings.http, &settings.log),
                || Application::build(&settings),
                Application::run_until_stopped,
            )
            .await?
        }
        Command::Once => once(&settings).await?,
        Command::Verify { file } => verify(&file)?,
        Command::Restore { file } => return restore(&settings, &file).await,
        Command::PrepareDirectory { directory } => {
            prepare_directory(&directory.unwrap_or(settings.backup.directory))?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn once(settings: &Settings) -> anyhow::Result<()> {
    let directory = &settings.backup.directory;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let pool = settings.database.pool()?;
    let manifest = snapshot_once(settings, &pool, &Metrics::default()).await?;
    println!("{}", directory.join(&manifest.file).display());
    Ok(())
}

fn verify(file: &std::path::Path) -> anyhow::Result<()> {
    let manifest = archive::verify(file)?.manifest;
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

async fn restore(settings: &Settings, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let pool = settings.database.pool()?;
    let total = archive::read_manifest(file)?.rows;
    let mut progress = RowProgress::new(total, std::io::stderr().is_terminal());
    let restored = archive::restore(file, &pool, settings.database.timeout(), |rows| {
        progress.update(rows)
    })
    .await;
    progress.finish();
    pool.disconnect().await.ok();
    let restored = restored?;
    print!("{}", restored.report(file));
    Ok(if restored.restored_as_it_was() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(archive::NOT_RESTORED_AS_IT_WAS)
    })
}

fn prepare_directory(directory: &std::path::Path) -> anyhow::Result<()> {
    let prepared = acl::prepare_directory(directory)?;
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
