//! The shell every service shares: its command line, the error that stops it
//! from starting, its HTTP listener, and how it runs until a signal stops it.
//! A service's `main.rs` names its parts and leaves the rest to this module.

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::de::DeserializeOwned;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;

use crate::observability::{init_tracing, probe_health};
use crate::settings::{HttpSettings, LogSettings, SettingsError, Validate};
use crate::weather::WeatherError;

/// After the first SIGTERM or SIGINT, a service has this long to finish what
/// it holds; then the process exits. Below Docker's 10 s stop timeout, so
/// the exit is ours, logged, and not a SIGKILL.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(9);

/// How the layered configuration reaches every service, shown by `--help`.
const CONFIGURATION_HELP: &str = "Configuration: defaults, then the TOML file given by \
    --config, then environment variables APP__SECTION__KEY (e.g. APP__HTTP__PORT, \
    APP__DATABASE__HOST); the last one wins.";

/// Who a binary is, for `--help` and `--version`.
pub struct Identity {
    /// `env!("CARGO_BIN_NAME")`
    pub name: &'static str,
    /// `env!("CARGO_PKG_VERSION")`
    pub version: &'static str,
    /// First line: what the service does; the rest: details for `--help`.
    pub about: &'static str,
}

/// The command line of a service: `--config` plus its subcommands `C`
/// (at least [`Lifecycle`]'s, flattened in); no subcommand means `run`.
#[derive(Parser)]
pub struct Cli<C: Subcommand> {
    #[command(flatten)]
    pub config: ConfigFile,
    #[command(subcommand)]
    pub command: Option<C>,
}

#[derive(Args)]
pub struct ConfigFile {
    /// TOML configuration file.
    #[arg(long, short, env = "APP_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl<C: Subcommand> Cli<C> {
    /// Parses the process arguments; on a usage error or `--help`, prints
    /// and exits as clap does.
    pub fn parse_as(identity: &Identity) -> Self {
        let (summary, details) = identity
            .about
            .split_once("\n\n")
            .unwrap_or((identity.about, ""));
        let long_about = if details.is_empty() {
            format!("{summary}\n\n{CONFIGURATION_HELP}")
        } else {
            format!("{summary}\n\n{details}\n\n{CONFIGURATION_HELP}")
        };
        let command = Self::command()
            .name(identity.name)
            .bin_name(identity.name)
            .version(identity.version)
            .about(summary.to_owned())
            .long_about(long_about);
        let matches = command.get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }

    /// Loads the settings: defaults, then `--config`, then the environment.
    pub fn settings<S: DeserializeOwned + Validate>(&self) -> Result<S, SettingsError> {
        crate::settings::load(self.config.config.as_deref())
    }
}

/// The subcommands every service has.
#[derive(Subcommand, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Run the service (the default).
    Run,
    /// Exit 0 if the running service's /healthz answers (for container healthchecks).
    Healthcheck,
}

/// `run`: logs, builds the service and runs it until a signal stops it.
/// `healthcheck`: probes the running service's `/healthz`, logging nothing.
pub async fn lifecycle<A, Running>(
    lifecycle: Lifecycle,
    (http, log): (&HttpSettings, &LogSettings),
    build: impl FnOnce() -> Result<A, StartupError>,
    run_until_stopped: impl FnOnce(A, Shutdown) -> Running,
) -> Result<(), LifecycleError>
where
    Running: Future<Output = std::io::Result<()>>,
{
    match lifecycle {
        Lifecycle::Healthcheck => probe_health(http.port).map_err(LifecycleError::Unhealthy),
        Lifecycle::Run => {
            init_tracing(log);
            let service = build()?;
            run_until_signalled(|shutdown| run_until_stopped(service, shutdown)).await?;
            Ok(())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("service failed")]
    Failed(#[from] std::io::Error),
    #[error("healthcheck: {0}")]
    Unhealthy(String),
}

/// Runs a service until it returns. The first SIGTERM or SIGINT resolves
/// its [`Shutdown`]; a second signal, or [`DRAIN_DEADLINE`] passing before
/// it has drained, ends the process at once with a logged reason (exit code
/// 130 or 1).
pub async fn run_until_signalled<Running>(
    run_until_stopped: impl FnOnce(Shutdown) -> Running,
) -> std::io::Result<()>
where
    Running: Future<Output = std::io::Result<()>>,
{
    let mut signals = Signals::install()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let first = signals.next().await;
        tracing::info!(
            message = "shutting down",
            signal = first,
            deadline_secs = DRAIN_DEADLINE.as_secs()
        );
        let _ = stop.send(());
        tokio::select! {
            second = signals.next() => {
                tracing::warn!(message = "second signal: exiting now, without draining", signal = second);
                std::process::exit(130);
            }
            () = tokio::time::sleep(DRAIN_DEADLINE) => {
                tracing::error!(
                    message = "shutdown did not finish in time: exiting now",
                    deadline_secs = DRAIN_DEADLINE.as_secs()
                );
                std::process::exit(1);
            }
        }
    });
    let outcome = run_until_stopped(Shutdown(stopped)).await;
    watcher.abort();
    outcome
}

/// Resolves when the service is asked to stop.
pub struct Shutdown(oneshot::Receiver<()>);

impl Future for Shutdown {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(context).map(|_| ())
    }
}

struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Why a service did not start. Each variant prints its cause once.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Boxed: the `config` crate's error is large, and this is returned by value.
    #[error(transparent)]
    Settings(Box<SettingsError>),
    #[error("cannot listen on {address}: {cause}")]
    Listen {
        address: String,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Weather(#[from] WeatherError),
    /// A part of one service only (the sensor's spool).
    #[error(transparent)]
    Part(Box<dyn std::error::Error + Send + Sync>),
    #[error("the service must be built inside a Tokio runtime")]
    NoRuntime,
}

impl From<SettingsError> for StartupError {
    fn from(error: SettingsError) -> Self {
        Self::Settings(Box::new(error))
    }
}

impl StartupError {
    pub fn part(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Part(Box::new(error))
    }
}

/// A bound listener and the port it got (the configured one, or the
/// system's choice for port 0, as tests use).
pub struct Listener {
    listener: TcpListener,
    address: String,
    port: u16,
}

impl Listener {
    pub fn bind(http: &HttpSettings) -> Result<Self, StartupError> {
        let address = format!("{}:{}", http.host, http.port);
        let bound = TcpListener::bind(&address).and_then(|listener| {
            let port = listener.local_addr()?.port();
            Ok((listener, port))
        });
        match bound {
            Ok((listener, port)) => Ok(Self {
                listener,
                address,
                port,
            }),
            Err(cause) => Err(StartupError::Listen { address, cause }),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Hands the socket to a server; `serve` says what failed, if anything.
    pub fn serve<T>(
        self,
        serve: impl FnOnce(TcpListener) -> std::io::Result<T>,
    ) -> Result<T, StartupError> {
        let Self {
            listener, address, ..
        } = self;
        serve(listener).map_err(|cause| StartupError::Listen { address, cause })
    }
}
