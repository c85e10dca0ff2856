use frontend::settings::Settings;
use frontend::Application;
use telemetry_core::service::{self, Cli, Identity, Lifecycle};

const IDENTITY: Identity = Identity {
    name: env!("CARGO_BIN_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    about: "The weather panel: latest reading per city, 24 h charts, the latest \
        readings and live weather, plus a JSON/CSV API.\n\n\
        Serves port 5000 by default, and keeps answering while the database is down.",
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::<Lifecycle>::parse_as(&IDENTITY);
    let settings: Settings = cli.settings()?;
    service::lifecycle(
        cli.command.unwrap_or(Lifecycle::Run),
        (&settings.http, &settings.log),
        || Application::build(&settings),
        Application::run_until_stopped,
    )
    .await?;
    Ok(())
}
