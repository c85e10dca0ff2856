use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use backup_worker::acl::{self, SERVICE_UID};
use backup_worker::metrics::Metrics;
use backup_worker::progress::RowProgress;
use backup_worker::settings::Settings;
use backup_worker::{archive, chain, snapshot_once, Application, Due};
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
    /// Take one snapshot now (incremental when the newest chain is young
    /// enough, as the service would), then exit.
    Once {
        /// Take a full snapshot, starting a new chain.
        #[arg(long)]
        full: bool,
    },
    /// Check a snapshot's whole chain: each link, then each file against its
    /// manifest (checksum, every row, count). Names the first broken link.
    ///
    /// PATH is a snapshot file, or a directory: then every snapshot in it.
    Verify {
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Verify a snapshot's chain, then load its rows into the configured
    /// database (needs an account with INSERT and SELECT), full snapshot
    /// first, keeping their ids.
    ///
    /// PATH is a snapshot file (its chain is restored up to it), or a
    /// directory (its newest snapshot, or the newest taken at or before
    /// --at). Rows already present are skipped. A row whose id now holds
    /// another reading goes in under a new id; one whose city and time hold
    /// other values is left out. Either is reported, and the exit status is
    /// then 3.
    Restore {
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// With a directory: the point in time to go back to (RFC 3339, e.g.
        /// 2026-12-01T10:00:00Z).
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
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
        Command::Once { full } => once(&settings, full).await?,
        Command::Verify { path } => verify(&path)?,
        Command::Restore { path, at } => return restore(&settings, &path, at).await,
        Command::PrepareDirectory { directory } => {
            prepare_directory(&directory.unwrap_or(settings.backup.directory))?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn once(settings: &Settings, full: bool) -> anyhow::Result<()> {
    let directory = &settings.backup.directory;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let pool = settings.database.pool()?;
    let due = if full { Due::Full } else { Due::AsScheduled };
    let manifest = snapshot_once(settings, &pool, &Metrics::default(), due).await?;
    println!("{}", directory.join(&manifest.file).display());
    Ok(())
}

fn verify(path: &Path) -> anyhow::Result<()> {
    if !path.is_dir() {
        print_verified(path, &archive::verify(path)?);
        return Ok(());
    }
    // Oldest first, so that a broken link is reported at the first
    // snapshot it breaks.
    let mut broken = 0;
    for listed in chain::list(path)?.iter().rev() {
        match archive::verify(&listed.path) {
            Ok(verified) => print_verified(&listed.path, &verified),
            Err(error) => {
                broken += 1;
                println!("{}: BROKEN: {error}", listed.path.display());
            }
        }
    }
    anyhow::ensure!(
        broken == 0,
        "{broken} snapshot(s) in {} do not verify",
        path.display()
    );
    Ok(())
}

fn print_verified(path: &Path, verified: &archive::Verified) {
    let manifest = verified.manifest();
    println!(
        "{}: OK, {} {} rows, ids {:?}..{:?}, sha256 {}; chain of {} snapshot(s), {} rows",
        path.display(),
        manifest.kind.as_str(),
        manifest.rows,
        manifest.min_id,
        manifest.max_id,
        manifest.sha256,
        verified.chain.len(),
        verified.rows(),
    );
}

async fn restore(
    settings: &Settings,
    path: &Path,
    at: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<ExitCode> {
    let file = if path.is_dir() {
        chain::snapshot_at(path, at)?
    } else {
        anyhow::ensure!(at.is_none(), "--at needs a directory, not a snapshot file");
        path.to_owned()
    };
    let links = chain::chain(&file)?;
    let total = links.iter().map(|link| link.manifest.rows).sum();
    println!(
        "restoring {} rows from a chain of {} snapshot(s): {} and every one after it up to {}",
        total,
        links.len(),
        links[0].path.display(),
        file.display()
    );
    let pool = settings.database.pool()?;
    let mut progress = RowProgress::new(total, std::io::stderr().is_terminal());
    let restored = archive::restore(&file, &pool, settings.database.timeout(), |rows| {
        progress.update(rows)
    })
    .await;
    progress.finish();
    pool.disconnect().await.ok();
    let restored = restored?;
    print!("{}", restored.report(&file));
    Ok(if restored.restored_as_it_was() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(archive::NOT_RESTORED_AS_IT_WAS)
    })
}

fn prepare_directory(directory: &Path) -> anyhow::Result<()> {
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
