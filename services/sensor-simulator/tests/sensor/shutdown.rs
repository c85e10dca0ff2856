//! The service shell's signal handling, on the real binary: the first
//! SIGTERM drains, a second one exits at once, and a drain that outlives
//! the deadline ends the process with a logged reason.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use telemetry_core::service::DRAIN_DEADLINE;

/// Longer than the drain deadline: a store to the silent database below
/// would hold the sensor this long if nothing cut it short.
const DATABASE_TIMEOUT_SECS: u64 = 60;

struct Sensor {
    child: Child,
    lines: mpsc::Receiver<String>,
    _spool: tempfile::TempDir,
}

impl Sensor {
    /// The sensor binary, simulated readings every second, its database at
    /// `database_port` on loopback.
    fn start(database_port: u16) -> Self {
        let spool = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sensor-simulator"))
            .env_clear()
            .env("APP__HTTP__HOST", "127.0.0.1")
            .env("APP__HTTP__PORT", "0")
            .env("APP__DATABASE__HOST", "127.0.0.1")
            .env("APP__DATABASE__PORT", database_port.to_string())
            .env("APP__DATABASE__PASSWORD", "unused")
            .env(
                "APP__DATABASE__TIMEOUT_SECS",
                DATABASE_TIMEOUT_SECS.to_string(),
            )
            .env("APP__SENSOR__SOURCE", "simulated")
            .env("APP__SENSOR__INTERVAL_SECS", "1")
            .env("APP__SPOOL__DIRECTORY", spool.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("sensor binary starts");
        let (sender, lines) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            _spool: spool,
        }
    }

    /// Waits for a log line containing `text`; panics with what was logged.
    fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        panic!("no log line with {text:?}; logged:\n{}", seen.join("\n"));
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for the process to exit, at most `within`.
    fn exit_status(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sensor still running after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A database that accepts connections and never greets: a store to it
/// hangs until the sensor's database timeout.
fn silent_database() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").unwrap()
}

/// Blocks until the sensor has connected to the silent database: from then
/// on it is in the middle of storing a reading.
fn wait_for_store(database: &TcpListener) -> std::net::TcpStream {
    database.accept().expect("the sensor connects to store").0
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    // A closed port: every store fails at once and goes to the spool.
    let closed_port = silent_database().local_addr().unwrap().port();
    let mut sensor = Sensor::start(closed_port);
    sensor.wait_for_log("kept in the spool");
    sensor.signal("TERM");
    sensor.wait_for_log("\"signal\":\"SIGTERM\"");
    let status = sensor.exit_status(DRAIN_DEADLINE);
    assert_eq!(status.code(), Some(0), "{status}");
    sensor.wait_for_log("sensor stopped");
}

#[test]
fn a_second_signal_exits_at_once() {
    let database = silent_database();
    let mut sensor = Sensor::start(database.local_addr().unwrap().port());
    let _held = wait_for_store(&database);
    sensor.signal("TERM");
    sensor.wait_for_log("shutting down");
    sensor.signal("INT");
    // Well before the deadline: the store in progress is abandoned.
    let status = sensor.exit_status(DRAIN_DEADLINE / 2);
    assert_eq!(status.code(), Some(130), "{status}");
    sensor.wait_for_log("second signal");
}

#[test]
fn a_drain_past_the_deadline_ends_the_process() {
    let database = silent_database();
    let mut sensor = Sensor::start(database.local_addr().unwrap().port());
    let _held = wait_for_store(&database);
    sensor.signal("TERM");
    sensor.wait_for_log("shutting down");
    let status = sensor.exit_status(Duration::from_secs(DATABASE_TIMEOUT_SECS / 2));
    assert_eq!(status.code(), Some(1), "{status}");
    sensor.wait_for_log("did not finish in time");
}
