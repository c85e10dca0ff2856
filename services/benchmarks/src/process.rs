//! Child processes: measured one-shot runs (wall time, peak RSS and CPU of
//! that child alone) and servers that are stopped, by pid, when dropped.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// What one measured child cost.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    pub wall: Duration,
    /// Peak resident set size of the child, in bytes.
    pub peak_rss: u64,
    /// User + system CPU seconds of the child.
    pub cpu: f64,
    pub status: ExitStatus,
}

/// A command for `program`, run under GNU time so `measure` can read the
/// peak RSS of that program alone.
///
/// Not our own wait4(): Rust spawns children with vfork/posix_spawn, and
/// Linux carries the pre-exec memory's high-water mark into the child's
/// ru_maxrss, so every child would report at least the benchmark's own peak.
/// GNU time is tiny, so the floor it adds is ~2 MB below anything measured.
pub struct Timed {
    pub command: Command,
    report: tempfile::NamedTempFile,
}

impl Timed {
    pub fn new(program: impl AsRef<std::ffi::OsStr>) -> Result<Self> {
        let report = tempfile::NamedTempFile::new()?;
        let mut command = Command::new("/usr/bin/time");
        command
            .args(["-f", "%M %U %S", "-o"])
            .arg(report.path())
            .arg(program);
        Ok(Self { command, report })
    }

    /// Runs the command to completion: wall time, peak RSS, CPU.
    pub fn measure(mut self) -> Result<Usage> {
        let started = Instant::now();
        let status = self
            .command
            .status()
            .with_context(|| format!("starting {:?} (apt-get install -y time)", self.command))?;
        let wall = started.elapsed();
        let mut text = String::new();
        std::fs::File::open(self.report.path())?.read_to_string(&mut text)?;
        // On failure GNU time writes "Command exited with non-zero status N" first.
        let line = text.lines().last().context("GNU time wrote nothing")?;
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|field| field.parse().ok())
            .collect();
        let [kilobytes, user, system] = fields[..] else {
            bail!("unexpected GNU time output {text:?}");
        };
        Ok(Usage {
            wall,
            peak_rss: kilobytes as u64 * 1024,
            cpu: user + system,
            status,
        })
    }
}

/// A server we started; sent SIGTERM (then SIGKILL) by pid when dropped.
pub struct Server {
    pub name: &'static str,
    child: Child,
}

impl Server {
    pub fn start(name: &'static str, command: &mut Command) -> Result<Self> {
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(Self { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process already exited (a port clash, a bad setting).
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early: {status}", self.name);
        }
        Ok(())
    }

    /// Current resident set size (VmRSS), in bytes.
    pub fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let line = status
            .lines()
            .find(|line| line.starts_with("VmRSS:"))
            .context("no VmRSS line")?;
        let kb: u64 = line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse()?;
        Ok(kb * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A minimal HTTP/1.0 GET on loopback: status code and body. Enough to wait
/// for readiness and to size a page, without an HTTP client dependency.
pub fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    std::io::Write::write_all(
        &mut stream,
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes(),
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&response[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status code")?;
    Ok((status, response[split + 4..].to_vec()))
}

/// Waits until `GET path` answers 200.
pub fn wait_for_http(server: &mut Server, port: u16, path: &str, patience: Duration) -> Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        server.check_running()?;
        if matches!(http_get(port, path), Ok((200, _))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer 200 on {path} within {patience:?}",
                server.name
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
