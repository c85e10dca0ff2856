//! A simulated WAN between the two sites of a test, and packet captures on it.
//!
//! [`Wan`] is a router container (`telemetria/wan-router`,
//! docker/wan-router.Dockerfile) on a Docker network of its own, the "WAN".
//! Its `wan-relay` (src/bin/wan-relay.rs) listens on port 3306 and relays
//! each connection, `delay ± jitter` each way, to the `HOST:PORT` of
//! [`Wan::set_target`]; iptables in the router drops a share of the packets
//! (random loss) or all of them ([`Wan::cut`]), and `tc tbf` can limit the
//! bandwidth. The kernel here has no netem: see shared/DOCKER-NOTES.md.
//!
//! The cloud publishes its proxy on the WAN network's gateway address
//! ([`Wan::gateway`]), so the router reaches the cloud only through that
//! published port; the local services reach the router by a network alias on
//! their own network ([`Wan::attach`]). That the local site goes through the
//! router is a matter of addresses, not enforced: Docker lets a container on
//! any network reach a port published on the gateway (measured here). The
//! relay's log ([`Wan::relay_log`]) shows who came through.
//!
//! ```no_run
//! use stack_tests::wan::{Capture, Wan, WanProfile};
//!
//! let wan = Wan::start("e2e-1234", WanProfile { delay_ms: 80, jitter_ms: 20, loss: 0.01, rate: None });
//! // ... start the cloud with its proxy published on `{wan.gateway()}:{port}` ...
//! # let port = 33060;
//! wan.set_target(&format!("{}:{port}", wan.gateway()));
//! // ... start the local site, its services pointed at cloud-db:3306 ...
//! # let local_network = "telemetria-local_local-net";
//! wan.attach(local_network, "cloud-db");
//! let capture = Capture::start(wan.bridge_interface(), port);
//! wan.cut();
//! wan.restore();
//! let seen = stack_tests::wan::find_any(&capture.stop(), &[b"INSERT INTO", b"mediciones"]);
//! assert!(seen.is_empty(), "in clear text on the WAN: {seen:?}");
//! // Dropped: the router and the WAN network are removed.
//! ```
//!
//! Blocking std code that drives the `docker` CLI, like the rest of this
//! crate. Every container and network made here carries the label
//! `stack-tests.wan=<prefix>` and is removed when its owner is dropped.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{address_on, docker, eventually};

pub const ROUTER_IMAGE: &str = "telemetria/wan-router:latest";
/// The port the relay listens on in the router, on every network.
pub const RELAY_PORT: u16 = 3306;
/// Label of the router container and the WAN network (value: the prefix).
const LABEL: &str = "stack-tests.wan";
/// Where the router's relay reads its target, for each new connection.
const TARGET_FILE: &str = "/run/wan/target";

/// How bad the simulated WAN is.
#[derive(Debug, Clone, Default)]
pub struct WanProfile {
    /// One-way delay added by the relay, each direction.
    pub delay_ms: u64,
    /// Each chunk's delay varies uniformly by up to this much, either way.
    pub jitter_ms: u64,
    /// Share of the packets entering the router dropped at random, in [0, 1].
    pub loss: f64,
    /// Bandwidth of each interface of the router, each way, in `tc` units
    /// (`"1mbit"`); `None`: as fast as the bridge.
    pub rate: Option<&'static str>,
}

/// The router's place on a site's network ([`Wan::attach`]).
#[must_use = "dropping it takes the router off the network at once"]
pub struct Attachment {
    router: String,
    network: String,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        docker(&["network", "disconnect", "-f", &self.network, &self.router]);
    }
}

/// The router between the sites; removed with its WAN network when dropped.
pub struct Wan {
    network: String,
    router: String,
    gateway: Ipv4Addr,
    bridge: String,
    profile: WanProfile,
}

impl Wan {
    /// Creates the WAN network (`{name_prefix}-wan`), starts the router on it
    /// (`{name_prefix}-wan-router`) with the profile applied, and returns
    /// once the relay accepts connections. Until [`Wan::set_target`], the
    /// relay closes every connection it accepts.
    pub fn start(name_prefix: &str, profile: WanProfile) -> Self {
        assert!(
            (0.0..=1.0).contains(&profile.loss),
            "loss is a share of packets in [0, 1], not {}",
            profile.loss
        );
        let found = docker(&["image", "inspect", ROUTER_IMAGE]);
        assert!(
            found.status.success(),
            "image {ROUTER_IMAGE} is missing: run scripts/test.sh (it builds it after the stack's images)"
        );
        let label = format!("{LABEL}={name_prefix}");
        let network = format!("{name_prefix}-wan");
        let created = docker(&["network", "create", "--label", &label, &network]);
        let id = expect_success(&created, "docker network create");
        // From here on, dropping `wan` removes whatever was made, also when a
        // later step panics.
        let mut wan = Self {
            bridge: format!("br-{}", &id[..12]),
            router: format!("{name_prefix}-wan-router"),
            network,
            gateway: Ipv4Addr::UNSPECIFIED,
            profile,
        };
        let gateways = docker(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            &wan.network,
        ]);
        wan.gateway = expect_success(&gateways, "docker network inspect")
            .split_whitespace()
            .find_map(|gateway| gateway.parse().ok())
            .unwrap_or_else(|| panic!("network {} has no IPv4 gateway", wan.network));

        let (delay, jitter) = (
            wan.profile.delay_ms.to_string(),
            wan.profile.jitter_ms.to_string(),
        );
        let listen = format!("0.0.0.0:{RELAY_PORT}");
        let started = docker(&[
            "run",
            "-d",
            "--name",
            &wan.router,
            "--label",
            &label,
            // iptables and tc in the router's own network namespace.
            "--cap-add",
            "NET_ADMIN",
            "--network",
            &wan.network,
            ROUTER_IMAGE,
            "wan-relay",
            "--listen",
            &listen,
            "--target-file",
            TARGET_FILE,
            "--delay-ms",
            &delay,
            "--jitter-ms",
            &jitter,
        ]);
        expect_success(&started, "docker run of the router");
        let network = wan.network.clone();
        wan.shape(&network);
        wan.wait_listening();
        wan
    }

    /// Connects the router to `local_network` (a network of the local site),
    /// where its relay answers as `alias:3306`, with the same profile.
    /// The router leaves `local_network` when the returned guard is dropped:
    /// hold it while the site runs, and drop it before taking the site down
    /// (compose cannot remove a network a foreign container is attached to).
    pub fn attach(&self, local_network: &str, alias: &str) -> Attachment {
        let connected = docker(&[
            "network",
            "connect",
            "--alias",
            alias,
            local_network,
            &self.router,
        ]);
        expect_success(&connected, "docker network connect");
        self.shape(local_network);
        Attachment {
            router: self.router.clone(),
            network: local_network.to_owned(),
        }
    }

    /// Where new connections go from now on (`HOST:PORT`, e.g. the gateway
    /// and the cloud's published port, or a man in the middle). Connections
    /// already open keep theirs.
    pub fn set_target(&self, target: &str) {
        // Written aside and renamed: the relay never reads half a line.
        self.run(&[
            "bash",
            "-c",
            r#"printf '%s\n' "$1" >"$2.new" && mv "$2.new" "$2""#,
            "set-target",
            target,
            TARGET_FILE,
        ]);
    }

    /// Name of the WAN-side Docker network.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// The WAN network's gateway: a host address the router can reach, where
    /// the cloud publishes the port the router connects to.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// The host's bridge of the WAN network, for [`Capture::start`].
    pub fn bridge_interface(&self) -> &str {
        &self.bridge
    }

    /// Name of the router container (for `docker exec`, `docker logs`).
    pub fn router(&self) -> &str {
        &self.router
    }

    /// What the relay logged: a line per connection opened and closed, with
    /// its target and the bytes relayed each way.
    pub fn relay_log(&self) -> String {
        let logs = docker(&["logs", &self.router]);
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr)
    }

    /// Cuts the WAN: the router drops every packet, both ways, on every
    /// interface but loopback. Dropped, not refused: open connections hang,
    /// new ones get no answer, as across a real cut. Cutting twice is
    /// cutting once.
    pub fn cut(&self) {
        self.run(&[
            "bash",
            "-c",
            "iptables -C INPUT ! -i lo -j DROP 2>/dev/null || iptables -I INPUT ! -i lo -j DROP
             iptables -C OUTPUT ! -o lo -j DROP 2>/dev/null || iptables -I OUTPUT ! -o lo -j DROP",
        ]);
    }

    /// Ends a [`Wan::cut`]; connections that survived it carry on (TCP
    /// retransmits what was lost).
    pub fn restore(&self) {
        self.run(&[
            "bash",
            "-c",
            "while iptables -D INPUT ! -i lo -j DROP 2>/dev/null; do :; done
             while iptables -D OUTPUT ! -o lo -j DROP 2>/dev/null; do :; done",
        ]);
    }

    /// Runs `args` in the router; panics with its error output if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let mut full = vec!["exec", self.router.as_str()];
        full.extend_from_slice(args);
        expect_success(&docker(&full), &format!("in the router: {args:?}"))
    }

    /// Random loss and bandwidth on the router's interface on `network`.
    fn shape(&self, network: &str) {
        let address = address_on(&self.router, network)
            .unwrap_or_else(|| panic!("router {} has no address on {network}", self.router));
        let listing = self.run(&["ip", "-o", "-4", "addr", "show"]);
        let interface = interface_with(&listing, address)
            .unwrap_or_else(|| panic!("no interface with {address} in the router:\n{listing}"));
        if self.profile.loss > 0.0 {
            let probability = self.profile.loss.to_string();
            self.run(&[
                "iptables",
                "-A",
                "INPUT",
                "-i",
                &interface,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
                "-j",
                "DROP",
            ]);
        }
        if let Some(rate) = self.profile.rate {
            // The kernel here has tbf but no netem. A 16 kB bucket lets a
            // few full-size packets through at once, as a real link's buffer.
            self.run(&[
                "tc", "qdisc", "add", "dev", &interface, "root", "tbf", "rate", rate, "burst",
                "16kb", "latency", "400ms",
            ]);
        }
    }

    /// Waits until the relay's socket is listening (checked in the router,
    /// so no connection goes anywhere).
    fn wait_listening(&self) {
        let filter = format!("sport = :{RELAY_PORT}");
        eventually(
            "the relay listening in the router",
            Duration::from_secs(30),
            || {
                let state = docker(&["inspect", "-f", "{{.State.Status}}", &self.router]);
                let state = String::from_utf8_lossy(&state.stdout).trim().to_owned();
                assert!(
                    state == "running" || state == "created",
                    "router {} is {state}:\n{}",
                    self.router,
                    self.relay_log()
                );
                let sockets = docker(&["exec", &self.router, "ss", "-Hltn", &filter]);
                (sockets.status.success() && !sockets.stdout.is_empty()).then_some(())
            },
        );
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = docker(&["logs", "--tail", "40", &self.router]);
            eprintln!(
                "--- relay log of {} ---\n{}",
                self.router,
                String::from_utf8_lossy(&log.stderr)
            );
        }
        let remove = |args: &[&str]| {
            let removed = docker(args);
            let error = String::from_utf8_lossy(&removed.stderr);
            if !removed.status.success() && !error.contains("No such") {
                eprintln!("docker {args:?} failed: {error}");
            }
        };
        // The container first: a network with a container attached stays.
        remove(&["rm", "-f", "-v", &self.router]);
        remove(&["network", "rm", &self.network]);
    }
}

/// A packet capture on a host interface, with tcpdump (root only).
pub struct Capture {
    tcpdump: Child,
    file: PathBuf,
    // Holds the pcap and tcpdump's messages; deleted when dropped.
    _directory: tempfile::TempDir,
}

impl Capture {
    /// Captures every TCP segment to or from `port` on `interface` (e.g.
    /// [`Wan::bridge_interface`]), from the moment this returns.
    pub fn start(interface: &str, port: u16) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("capture.pcap");
        let messages_path = directory.path().join("tcpdump.log");
        let messages = File::create(&messages_path).unwrap();
        let tcpdump = Command::new("tcpdump")
            // Immediate mode: libpcap hands each packet over at once, not
            // in blocks a second apart, the last of which SIGINT would lose.
            .args(["-i", interface, "-n", "--immediate-mode", "-U", "-w"])
            .arg(&file)
            // Debian's tcpdump drops to its own user by default, which may
            // not write into our private temporary directory.
            .args(["-Z", "root"])
            .arg(format!("tcp port {port}"))
            .stdout(Stdio::null())
            .stderr(messages)
            .spawn()
            .expect("tcpdump runs (scripts/test.sh installs it)");
        let mut capture = Self {
            tcpdump,
            file,
            _directory: directory,
        };
        eventually(
            &format!("tcpdump listening on {interface}"),
            Duration::from_secs(20),
            || {
                let said = std::fs::read_to_string(&messages_path).unwrap_or_default();
                if let Ok(Some(status)) = capture.tcpdump.try_wait() {
                    panic!("tcpdump on {interface} ended ({status}): {said}");
                }
                said.contains("listening on").then_some(())
            },
        );
        capture
    }

    /// Stops the capture and returns the pcap file's bytes.
    pub fn stop(mut self) -> Vec<u8> {
        // SIGINT: tcpdump flushes and closes the file (with -U, every packet
        // is already written when it is captured).
        let pid = self.tcpdump.id().to_string();
        let interrupted = Command::new("kill").args(["-INT", &pid]).output().unwrap();
        assert!(interrupted.status.success(), "kill -INT {pid}");
        self.tcpdump.wait().unwrap();
        std::fs::read(&self.file).unwrap()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Ok(None) = self.tcpdump.try_wait() {
            let _ = self.tcpdump.kill();
            let _ = self.tcpdump.wait();
        }
    }
}

/// Which of `needles` occur in `haystack` (e.g. a capture), as text.
pub fn find_any(haystack: &[u8], needles: &[&[u8]]) -> Vec<String> {
    needles
        .iter()
        .filter(|needle| {
            !needle.is_empty()
                && haystack
                    .windows(needle.len())
                    .any(|window| window == **needle)
        })
        .map(|needle| String::from_utf8_lossy(needle).into_owned())
        .collect()
}

/// The interface that holds `address` in an `ip -o -4 addr show` listing.
fn interface_with(listing: &str, address: Ipv4Addr) -> Option<String> {
    listing.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, family, cidr) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let holds = *family == "inet" && cidr.split('/').next()? == address.to_string();
        // A veth may be listed as `eth0@if12`.
        holds.then(|| name.split('@').next().unwrap_or(name).to_owned())
    })
}

/// Panics with `what` and the error output unless the command succeeded;
/// returns its trimmed standard output.
fn expect_success(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_interface_that_holds_an_address() {
        let listing = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n\
            25: eth0    inet 172.18.0.2/16 brd 172.18.255.255 scope global eth0\\       valid_lft forever\n\
            27: eth1@if28    inet 172.19.0.3/16 brd 172.19.255.255 scope global eth1\\       valid_lft forever\n";
        let find = |address: &str| interface_with(listing, address.parse().unwrap());
        assert_eq!(find("172.18.0.2").as_deref(), Some("eth0"));
        assert_eq!(find("172.19.0.3").as_deref(), Some("eth1"));
        assert_eq!(find("172.19.0.30"), None);
    }

    #[test]
    fn find_any_names_the_needles_present() {
        let haystack = b"\x00\x01INSERT INTO mediciones\xff";
        let found = find_any(haystack, &[b"INSERT INTO", b"secret", b"", b"\xff"]);
        assert_eq!(found, ["INSERT INTO", "\u{fffd}"]);
    }
}
