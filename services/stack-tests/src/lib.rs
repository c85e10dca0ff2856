//! Test harness for the compose stack: starting and stopping a project of the
//! whole stack on free ports, with its own credentials and backup directory, and
//! the container-level tools the chaos suite needs (the state of a service,
//! `kill -9` from the host, network names and addresses, placeholder
//! containers). Used by the end-to-end and chaos test binaries in tests/.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use telemetry_core::DatabaseSettings;

pub mod wan;

pub fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One stack at a time per test binary: the scenarios time outages and
/// restarts, and two stacks on a 2-core machine would skew each other.
/// (`cargo test` runs a binary's tests on several threads.)
static STACK_RUNNING: Mutex<bool> = Mutex::new(false);
static STACK_STOPPED: Condvar = Condvar::new();

pub struct StackSlot;

impl StackSlot {
    pub fn take() -> Self {
        let mut running = STACK_RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *running {
            running = STACK_STOPPED
                .wait(running)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        *running = true;
        StackSlot
    }
}

impl Drop for StackSlot {
    fn drop(&mut self) {
        *STACK_RUNNING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = false;
        STACK_STOPPED.notify_one();
    }
}

/// The compose files of the whole stack on one host, plus the tests' own
/// (the Open-Meteo stand-in), relative to the repository root.
const STACK_FILES: &str =
    "compose/cloud.yml:compose/local.yml:compose/one-host.yml:services/stack-tests/compose.e2e.yml";

/// The same stack with the database as a three-node Galera cluster
/// (compose/cluster.yml over the one-host files).
const CLUSTER_FILES: &str = "compose/cloud.yml:compose/local.yml:compose/one-host.yml:compose/cluster.yml:services/stack-tests/compose.e2e.yml";

/// The cluster's database nodes (compose services), in the order of
/// GALERA_NODES in compose/cluster.yml.
pub const CLUSTER_NODES: [&str; 3] = ["db-master", "db-node-2", "db-node-3"];

/// A running compose project; `down -v` when dropped, also when a test fails.
pub struct Stack {
    pub project: String,
    pub proxy_port: u16,
    pub panel_port: u16,
    pub backups: tempfile::TempDir,
    /// The stack's certificate authority (ca.pem), copied out once it is up.
    authority: tempfile::NamedTempFile,
    env: BTreeMap<String, String>,
    // Declared last: released only after `drop` has taken the stack down.
    _slot: Option<StackSlot>,
}

impl Stack {
    /// Starts the stack and waits until every container is healthy.
    pub fn up(extra_env: &[(&str, &str)]) -> Self {
        Self::up_with(extra_env, |_| {})
    }

    /// [`Stack::up`] with the database as a Galera cluster.
    pub fn up_cluster(extra_env: &[(&str, &str)]) -> Self {
        let slot = StackSlot::take();
        let mut stack = Self::create(CLUSTER_FILES, extra_env, |_| {});
        stack._slot = Some(slot);
        stack.start();
        stack
    }

    /// [`Stack::up`], with a chance to set up the backups directory first
    /// (its owner, its mode) as a user's checkout would have it.
    pub fn up_with(extra_env: &[(&str, &str)], prepare_backups: impl FnOnce(&Path)) -> Self {
        let slot = StackSlot::take();
        let mut stack = Self::create(STACK_FILES, extra_env, prepare_backups);
        stack._slot = Some(slot);
        stack.start();
        stack
    }

    /// A project of the compose `files` (`:`-separated, from the repository
    /// root) on free ports, not started yet. The caller holds the
    /// [`StackSlot`]: two sites are two projects under one slot.
    pub fn create(
        files: &str,
        extra_env: &[(&str, &str)],
        prepare_backups: impl FnOnce(&Path),
    ) -> Self {
        for image in [
            "telemetria/sensor-simulator:latest",
            "telemetria/backup-worker:latest",
            "telemetria/frontend:latest",
            "telemetria/open-meteo-stub:latest",
            "telemetria/mariadb:10.11",
            "telemetria/nginx:latest",
        ]
        .into_iter()
        .chain(
            files
                .contains("compose/cluster.yml")
                .then_some("telemetria/mariadb-galera:10.11"),
        ) {
            let found = Command::new("docker")
                .args(["image", "inspect", image])
                .output()
                .unwrap();
            assert!(
                found.status.success(),
                "image {image} is missing: run scripts/test.sh (or scripts/build-images.sh) first"
            );
        }
        // STACK_PROJECT_PREFIX: tells apart the projects of several people
        // testing on one machine.
        let prefix =
            std::env::var("STACK_PROJECT_PREFIX").unwrap_or_else(|_| "telemetria-e2e".into());
        let project = format!("{prefix}-{}-{}", std::process::id(), free_port());
        let backups = tempfile::tempdir().unwrap();
        prepare_backups(backups.path());
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let proxy_port = free_port();
        let panel_port = free_port();
        for (key, value) in [
            ("PROXY_BIND", "127.0.0.1".to_owned()),
            ("PROXY_PORT", proxy_port.to_string()),
            ("PANEL_BIND", "127.0.0.1".to_owned()),
            ("PANEL_PORT", panel_port.to_string()),
            ("BACKUPS_DIR", backups.path().display().to_string()),
            ("COMPOSE_FILE", files.to_owned()),
            ("COMPOSE_PROJECT_NAME", project.clone()),
            ("WEATHER_BASE_URL", "http://weather-stub:8080".to_owned()),
            ("SENSOR_SOURCE", "open-meteo".to_owned()),
            ("FRONTEND_CPUS", "1".to_owned()),
            ("DOCKER_BUILDKIT", "0".to_owned()),
            ("COMPOSE_DOCKER_CLI_BUILD", "0".to_owned()),
        ] {
            env.insert(key.into(), value);
        }
        for (key, value) in extra_env {
            env.insert((*key).into(), (*value).into());
        }
        Self {
            project,
            proxy_port,
            panel_port,
            backups,
            authority: tempfile::NamedTempFile::new().unwrap(),
            env,
            _slot: None,
        }
    }

    /// `up -d`, then waits until every container is healthy; keeps a copy of
    /// the certificate authority when the project runs the database.
    pub fn start(&self) {
        let started = Instant::now();
        let output = self.compose(&["up", "-d", "--no-build"]);
        assert!(
            output.status.success(),
            "compose up failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.wait_healthy(Duration::from_secs(240));
        if self.containers().contains_key("db-master") {
            let ca = self.exec("db-master", &["cat", "/run/credentials/ca.pem"]);
            assert!(ca.status.success(), "ca.pem: {ca:?}");
            std::fs::write(self.authority.path(), &ca.stdout).unwrap();
        }
        println!(
            "stack {} healthy in {:.1} s",
            self.project,
            started.elapsed().as_secs_f64()
        );
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        let root = repository_root();
        Command::new("docker-compose")
            .current_dir(&root)
            .envs(&self.env)
            .args(["--env-file", "compose/.env.offline"])
            .args(args)
            .output()
            .expect("docker-compose runs")
    }

    /// The password of a database account (`panel`, `sensor`, …), read where
    /// the stack keeps it.
    pub fn secret(&self, account: &str) -> String {
        let file = format!("/run/credentials/{account}_password");
        let output = self.exec("db-master", &["cat", &file]);
        assert!(output.status.success(), "{file}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    /// The stack's certificate authority (PEM), as the services trust it.
    pub fn ca_file(&self) -> &Path {
        self.authority.path()
    }

    /// Driver options for `account` through the published proxy port, with
    /// TLS verified against the stack's authority, as the services connect.
    pub fn database_opts(&self, account: &str) -> mysql_async::OptsBuilder {
        database_opts(
            "127.0.0.1",
            self.proxy_port,
            account,
            &self.secret(account),
            self.ca_file(),
        )
    }

    /// The environment the stack was started with (compose files, project,
    /// ports), for running the repository's scripts against it.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    /// Container ids of the project's running services, by service name.
    pub fn containers(&self) -> BTreeMap<String, String> {
        let output = Command::new("docker")
            .args([
                "ps",
                "-a",
                "--filter",
                &format!("label=com.docker.compose.project={}", self.project),
                "--format",
                "{{.ID}} {{.Label \"com.docker.compose.service\"}}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(' '))
            .map(|(id, service)| (service.to_owned(), id.to_owned()))
            .collect()
    }

    /// Waits until every container of the project is running and healthy
    /// (the one-shot jobs: exited).
    pub fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let mut waiting = Vec::new();
            for (service, id) in self.containers() {
                let state = Command::new("docker")
                    .args([
                        "inspect",
                        "-f",
                        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        &id,
                    ])
                    .output()
                    .unwrap();
                let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
                let done = state == "running healthy"
                    || (ONE_SHOT_JOBS.contains(&service.as_str()) && state.starts_with("exited"));
                if !done {
                    waiting.push(format!("{service}: {state}"));
                }
            }
            if waiting.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy after {limit:?}: {waiting:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The container of `service`; panics if the project has none.
    pub fn container(&self, service: &str) -> String {
        self.containers()
            .remove(service)
            .unwrap_or_else(|| panic!("project {} has no container for {service}", self.project))
    }

    /// Where `service`'s container is now.
    pub fn state(&self, service: &str) -> ContainerState {
        ContainerState::of(&self.container(service))
    }

    /// The Docker name of one of the project's networks (`local-net`,
    /// `backend-net`), found by compose's labels rather than guessed from
    /// the project name.
    pub fn network(&self, name: &str) -> String {
        let output = docker(&[
            "network",
            "ls",
            "--filter",
            &format!("label=com.docker.compose.project={}", self.project),
            "--filter",
            &format!("label=com.docker.compose.network={name}"),
            "--format",
            "{{.Name}}",
        ]);
        let found = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            !found.is_empty() && !found.contains('\n'),
            "network {name} of {}: {found:?}",
            self.project
        );
        found
    }

    /// The IPv4 address of `service` on the project network `network`, if it
    /// is attached to it.
    pub fn address(&self, service: &str, network: &str) -> Option<Ipv4Addr> {
        address_on(&self.container(service), &self.network(network))
    }

    /// `kill -9` of the container's main process from the host, so that the
    /// restart policy applies (`docker kill` counts as a manual stop, see
    /// shared/DOCKER-NOTES.md). Returns the state just before the kill.
    pub fn kill9(&self, service: &str) -> ContainerState {
        let before = self.state(service);
        assert!(
            before.pid > 0,
            "{service} has no process to kill: {before:?}"
        );
        let killed = Command::new("kill")
            .args(["-9", &before.pid.to_string()])
            .output()
            .unwrap();
        assert!(
            killed.status.success(),
            "kill -9 {}: {}",
            before.pid,
            String::from_utf8_lossy(&killed.stderr)
        );
        before
    }

    /// Runs `args` in `service`'s container (`docker exec`).
    pub fn exec(&self, service: &str, args: &[&str]) -> Output {
        let id = self.container(service);
        let mut full = vec!["exec", id.as_str()];
        full.extend_from_slice(args);
        docker(&full)
    }

    /// Starts a do-nothing container on one of the project's networks, to
    /// hold an address (Docker hands out the lowest free one). It is not part
    /// of the compose project, so `containers` and `wait_healthy` ignore it;
    /// [`Stack::remove_placeholders`] and the drop remove it.
    pub fn placeholder(&self, network: &str) -> (String, Option<Ipv4Addr>) {
        let network = self.network(network);
        let label = format!("{PLACEHOLDER_LABEL}={}", self.project);
        // The stub is small, local, and serves until stopped.
        let output = docker(&[
            "run",
            "-d",
            "--label",
            &label,
            "--network",
            &network,
            "telemetria/open-meteo-stub:latest",
        ]);
        assert!(
            output.status.success(),
            "placeholder: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let address = address_on(&id, &network);
        (id, address)
    }

    /// Removes this project's placeholder containers.
    pub fn remove_placeholders(&self) {
        let output = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("label={PLACEHOLDER_LABEL}={}", self.project),
        ]);
        let ids: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids.iter().map(String::as_str));
            docker(&args);
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.compose(&["logs", "--no-color", "--tail", "40"]);
            eprintln!(
                "--- logs of {} ---\n{}",
                self.project,
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        // Placeholders sit on the project's networks: compose could not
        // remove the networks while they are attached.
        self.remove_placeholders();
        let output = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "10"]);
        if !output.status.success() {
            eprintln!(
                "compose down failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Tries to log in with `opts` and checks the server said "Access denied";
/// returns its message. `what` names the attempt in a failure.
pub async fn assert_login_refused(opts: mysql_async::OptsBuilder, what: &str) -> String {
    match mysql_async::Conn::new(opts).await {
        Ok(_) => panic!("{what}: logged in, but must be refused"),
        Err(error) => {
            let message = error.to_string();
            assert!(message.contains("Access denied"), "{what}: {message}");
            message
        }
    }
}

/// Services that run once and exit.
pub const ONE_SHOT_JOBS: [&str; 3] = ["credentials", "backups-init", "db-migrate"];

/// Driver options for `account` at `host:port`, TLS verified against the CA
/// in `ca_file`, on the telemetria database: the services' own settings.
pub fn database_opts(
    host: &str,
    port: u16,
    account: &str,
    password: &str,
    ca_file: &Path,
) -> mysql_async::OptsBuilder {
    let settings = DatabaseSettings {
        host: host.to_owned(),
        port,
        user: account.to_owned(),
        password: Some(password.to_owned().into()),
        ca_file: Some(ca_file.to_owned()),
        ..DatabaseSettings::default()
    };
    settings
        .connection_opts(Some(&settings.name))
        .expect("a password given inline")
}

/// Polls `condition` until it returns Some; fails after `limit`.
pub fn eventually<T>(what: &str, limit: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Label of the placeholder containers a stack starts (value: the project).
const PLACEHOLDER_LABEL: &str = "stack-tests.placeholder-for";

/// Runs `docker ARGS` and returns its output, whatever the exit status.
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs")
}

/// The address of `container` on `network`, if it is attached.
pub fn address_on(container: &str, network: &str) -> Option<Ipv4Addr> {
    let format = format!(
        "{{{{with index .NetworkSettings.Networks \"{network}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}"
    );
    let output = docker(&["inspect", "-f", &format, container]);
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

/// A container as `docker inspect` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    /// `running`, `restarting`, `exited`, … (empty if the container is gone).
    pub status: String,
    /// `healthy`, `starting`, `unhealthy`, or empty without a healthcheck.
    pub health: String,
    /// 0 while not running, and briefly while a restart is under way.
    pub pid: u32,
    /// Restarts made by the restart policy.
    pub restarts: u32,
    pub started_at: String,
}

impl ContainerState {
    pub fn of(id: &str) -> Self {
        let output = docker(&[
            "inspect",
            "-f",
            "{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.Pid}}|{{.RestartCount}}|{{.State.StartedAt}}",
            id,
        ]);
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let fields: Vec<&str> = text.split('|').collect();
        let field = |index: usize| fields.get(index).copied().unwrap_or_default().to_owned();
        Self {
            id: id.to_owned(),
            status: field(0),
            health: field(1),
            pid: field(2).parse().unwrap_or(0),
            restarts: field(3).parse().unwrap_or(0),
            started_at: field(4),
        }
    }

    /// Running with a process, and healthy if it has a healthcheck. (During a
    /// policy restart Docker briefly reports `running` with pid 0.)
    pub fn is_up(&self) -> bool {
        self.status == "running"
            && self.pid > 0
            && (self.health.is_empty() || self.health == "healthy")
    }
}

/// The Open-Meteo stand-in's values (src/bin/open-meteo-stub.rs), shared
/// with the tests that check what the sensor stored from them.
pub mod stub_weather {
    /// Observation slots the temperature cycles through, one per `current`
    /// interval.
    pub const SLOTS: i64 = 5;

    /// Temperature of a place in an observation slot: warmer near the coast
    /// (higher latitude here), rounded to a tenth as the API reports it.
    pub fn temperature(latitude: f64, slot: i64) -> f64 {
        ((14.0 + latitude.abs() * 1.3 + (slot % SLOTS) as f64 * 0.2) * 10.0).round() / 10.0
    }

    /// Relative humidity of a place, in %.
    pub fn humidity(longitude: f64) -> u8 {
        (60.0 + (longitude.abs() % 7.0) * 4.0).round() as u8
    }
}
