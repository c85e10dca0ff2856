use std::path::PathBuf;

use clap::{Parser, Subcommand};
use frontend::settings::Settings;
use frontend::Application;
use telemetry_core::observability::{init_tracing, probe_health, shutdown_signal};

/// The weather panel: latest reading per city, 24 h charts, the latest
/// readings and live weather, plus a JSON/CSV API. Port 5000 by default.
///
/// Configuration: defaults, then the TOML file given by --config, then
/// environment variables APP__SECTION__KEY (e.g. APP__HTTP__PORT).
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
    /// Serve the panel (the default).
    Run,
    /// Exit 0 if the running panel's /healthz answers (for container healthchecks).
    Healthcheck,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = telemetry_core::settings::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Run) {
        Command::Healthcheck => probe_health(settings.http.port).map_err(anyhow::Error::msg),
        Command::Run => {
            init_tracing(&settings.log);
            let application = Application::build(&settings)?;
            application.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }
    }
}
