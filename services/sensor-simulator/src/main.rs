use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use sensor_simulator::settings::Settings;
use sensor_simulator::Application;
use telemetry_core::observability::init_tracing;
use telemetry_core::service::{self, Cli, Identity, Lifecycle};

const IDENTITY: Identity = Identity {
    name: env!("CARGO_BIN_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "Reads current weather for each configured city every tick (15 s by default) \
        and stores it in MySQL/MariaDB.\n\n\
        While the database is down, readings wait in a durable on-disk spool.",
};

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Lifecycle(Lifecycle),
    /// Apply database migrations with the configured (admin) account, then exit.
    /// A seed database's own `mediciones` is adopted (needs
    /// `database.seed_time_zone`; see docs/operations.md).
    Migrate,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::<Command>::parse_as(&IDENTITY);
    let settings: Settings = cli.settings()?;
    match cli.command.unwrap_or(Command::Lifecycle(Lifecycle::Run)) {
        Command::Lifecycle(lifecycle) => {
            service::lifecycle(
                lifecycle,
                (&settings.http, &settings.log),
                || Application::build(&settings),
                Application::run_until_stopped,
            )
            .await?
        }
        Command::Migrate => migrate(&settings).await?,
    }
    Ok(())
}

async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    init_tracing(&settings.log);
    let pool = settings.database.pool()?;
    let seed_time_zone = settings.database.seed_time_zone()?;
    let applied = telemetry_core::migration::migrate_when_ready(
        &pool,
        seed_time_zone,
        Duration::from_secs(60),
    )
    .await
    .context("migrating the database")?;
    tracing::info!(message = "database schema is up to date", applied = ?applied);
    pool.disconnect().await.ok();
    Ok(())
}
