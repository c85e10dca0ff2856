use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sensor_simulator::settings::Settings;
use sensor_simulator::Application;
use telemetry_core::observability::{init_tracing, probe_health, shutdown_signal};

/// Reads current weather for each configured city every tick (15 s by
/// default) and stores it in MySQL/MariaDB; while the database is down,
/// readings wait in a durable on-disk spool.
///
/// Configuration: defaults, then the TOML file given by --config, then
/// environment variables APP__SECTION__KEY (e.g. APP__DATABASE__HOST).
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
    /// Run the sensor (the default).
    Run,
    /// Apply database migrations with the configured (admin) account, then exit.
    Migrate,
    /// Exit 0 if the running sensor's /healthz answers (for container healthchecks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = telemetry_core::settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Healthcheck => probe_health(settings.http.port).map_err(anyhow::Error::msg),
        Command::Migrate => {
            init_tracing(&settings.log);
            let pool = settings.database.pool()?;
            let applied = telemetry_core::database::migrate_when_ready(
                &pool,
                std::time::Duration::from_secs(60),
            )
            .await
            .context("migrating the database")?;
            tracing::info!(message = "database schema is up to date", applied = ?applied);
            pool.disconnect().await.ok();
            Ok(())
        }
        Command::Run => {
            init_tracing(&settings.log);
            let application = Application::build(&settings)?;
            application.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
    }
}
