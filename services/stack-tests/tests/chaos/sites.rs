//! Issue #10: the two sites as two compose projects, on networks with no
//! route between them but the cloud proxy's published port, reached across
//! a simulated WAN (80 ± 20 ms each way, 1 % of packets lost). On it:
//! readings at every tick, a packet capture that finds nothing readable, a
//! two-minute cut, a man in the middle with his own certificate, a password
//! rotation, and the proxy's door closed to everyone else.

use std::process::Command;
use std::time::{Duration, Instant};

use stack_tests::wan::{find_any, Capture, Wan, WanProfile};
use stack_tests::{
    address_on, assert_login_refused, database_opts, docker, repository_root, Stack, StackSlot,
};

use crate::common::*;

/// The name the local site knows the cloud by; the cloud puts it in its
/// certificate (TLS_PUBLIC_NAMES), as an operator does with a DNS name.
const CLOUD_NAME: &str = "cloud.telemetria.test";
/// Issue #10: the WAN is cut for two minutes.
const WAN_CUT: Duration = Duration::from_secs(120);
const PROBE_EVERY: Duration = Duration::from_secs(5);
const RECOVERY_LIMIT: Duration = Duration::from_secs(180);
const MITM_HOLD: Duration = Duration::from_secs(40);
const LOCAL_FILES: &str = "compose/local.yml:services/stack-tests/compose.e2e.yml";

#[tokio::test(flavor = "multi_thread")]
async fn two_sites_across_a_wan_keep_every_reading_and_every_secret() {
    let started = Instant::now();
    let (_slot, wan, cloud) = tokio::task::spawn_blocking(|| {
        let slot = StackSlot::take();
        let wan = Wan::start(
            &format!("telemetria-sites-{}", std::process::id()),
            WanProfile {
                delay_ms: 80,
                jitter_ms: 20,
                loss: 0.01,
                rate: None,
            },
        );
        // The cloud's public address here is the WAN gateway: the probes
        // reach the published port there and verify the certificate too.
        let gateway = wan.gateway().to_string();
        let public_names = format!("{CLOUD_NAME},{gateway}");
        let cloud = Stack::create(
            "compose/cloud.yml",
            &[
                ("PROXY_BIND", &gateway),
                ("TLS_PUBLIC_NAMES", &public_names),
            ],
            |_| {},
        );
        cloud.start();
        wan.set_target(&format!("{gateway}:{}", cloud.proxy_port));
        (slot, wan, cloud)
    })
    .await
    .unwrap();
    let gateway = wan.gateway().to_string();
    say(format!(
        "two sites: WAN {} (gateway {gateway}), cloud {} publishing its proxy on {gateway}:{}",
        wan.network(),
        cloud.project,
        cloud.proxy_port
    ));

    // The local site's credentials, carried over as an operator does.
    let site = tempfile::tempdir().unwrap();
    carry_site_credentials(&cloud, site.path());

    // The capture starts before the local site's first login.
    let capture = Capture::start(wan.bridge_interface(), cloud.proxy_port);
    let site_dir = site.path().display().to_string();
    let local = Stack::create(
        LOCAL_FILES,
        &[
            ("DB_HOST", CLOUD_NAME),
            ("DB_PORT", "3306"),
            ("SITE_CREDENTIALS_DIR", &site_dir),
            ("BACKUP_INTERVAL_SECS", "20"),
        ],
        |_| {},
    );
    // Until the router joins local-net the services cannot resolve the
    // cloud: they start, the sensor spools, and all of it arrives after.
    local.start();
    let _attached = wan.attach(&local.network("local-net"), CLOUD_NAME);
    say(format!(
        "two sites: local site {} up, {} s after the start",
        local.project,
        started.elapsed().as_secs()
    ));
    let probe = Probe::reading(
        &local,
        database_opts(
            &gateway,
            cloud.proxy_port,
            "panel",
            &cloud.secret("panel"),
            cloud.ca_file(),
        ),
    );

    // Readings cross the WAN at every tick; meanwhile a plain-text canary
    // crosses the same path, to show the capture sees what is readable.
    let first = probe
        .complete_ticks(
            3,
            now_utc() - chrono::TimeDelta::hours(1),
            Duration::from_secs(120),
        )
        .await;
    send_canary(&local);
    let (captured, findings, needles) = encrypted_on_the_wire(&cloud, capture, &probe).await;
    say(format!(
        "two sites figures: capture on {} of {captured} bytes, {needles} needles (city names, table, statement, \
         passwords, every reading's value as text and as bytes): {} found; plain-text canary found",
        wan.bridge_interface(),
        findings.len()
    ));
    assert!(findings.is_empty(), "readable on the WAN: {findings:?}");
    let flowing = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    assert!(flowing.exact(), "readings across the WAN: {flowing}");
    say(format!(
        "two sites: across the WAN, {flowing}; first complete tick {first}"
    ));

    wan_cut(&wan, &probe).await;
    man_in_the_middle(&wan, &local, &probe, cloud.proxy_port).await;
    rotation(&cloud, &local, site.path(), &probe, &gateway).await;
    closed_door(&cloud, &wan, &gateway).await;

    let whole = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "two sites figures: whole run {whole}; test took {} s",
        started.elapsed().as_secs()
    ));
    assert!(whole.exact(), "two sites, whole run: {whole}");
    let metrics = probe.sensor_metrics().await.unwrap();
    assert_eq!(metrics.get("sensor_readings_dropped_total"), 0.0);
    // Dropped in reverse order: the probe, the router's place on local-net,
    // the local site, the cloud, the WAN, and last the slot.
}

/// `scripts/site-credentials.sh export` on the cloud, `import` into `site`.
fn carry_site_credentials(cloud: &Stack, site: &std::path::Path) {
    let script = repository_root().join("scripts/site-credentials.sh");
    let archive = site.join("site.tar");
    let exported = Command::new(&script)
        .arg("export")
        .envs(cloud.env())
        .stdout(std::fs::File::create(&archive).unwrap())
        .output()
        .unwrap();
    assert!(exported.status.success(), "export: {exported:?}");
    let imported = Command::new(&script)
        .args(["import", &archive.display().to_string()])
        .env("SITE_CREDENTIALS_DIR", site)
        .output()
        .unwrap();
    assert!(imported.status.success(), "import: {imported:?}");
    std::fs::remove_file(&archive).unwrap();
}

/// Plain bytes through the relay to the proxy, as a client without TLS
/// would send them: the capture must see these.
const CANARY: &str = "CANARY-plain-text-marker";

fn send_canary(local: &Stack) {
    let sent = docker(&[
        "run",
        "--rm",
        "--network",
        &local.network("local-net"),
        "--entrypoint",
        "bash",
        "telemetria/nginx:latest",
        "-c",
        &format!("exec 3<>/dev/tcp/{CLOUD_NAME}/3306 && printf '%s' '{CANARY}' >&3 && timeout 3 cat <&3 >/dev/null; true"),
    ]);
    assert!(sent.status.success(), "canary: {sent:?}");
}

/// Stops the capture and looks for everything a reader must not find.
async fn encrypted_on_the_wire(
    cloud: &Stack,
    capture: Capture,
    probe: &Probe<'_>,
) -> (usize, Vec<String>, usize) {
    let bytes = capture.stop();
    assert!(
        !find_any(&bytes, &[CANARY.as_bytes()]).is_empty(),
        "the plain-text canary is not in the capture: it would prove nothing ({} bytes)",
        bytes.len()
    );
    let mut needles: Vec<Vec<u8>> = default_cities()
        .iter()
        .map(|city| city.name.as_bytes().to_vec())
        .collect();
    // Not "telemetria": it is in the public host name, which TLS sends in
    // clear (SNI), like any HTTPS client.
    for text in ["mediciones", "INSERT", "fecha_registro", "ciudad"] {
        needles.push(text.as_bytes().to_vec());
    }
    for account in ["sensor", "backup", "panel"] {
        needles.push(cloud.secret(account).into_bytes());
    }
    for (_, temperature, humidity, ..) in probe
        .rows_since(now_utc() - chrono::TimeDelta::hours(1))
        .await
        .unwrap()
    {
        if let Some(value) = temperature {
            needles.push(value.to_le_bytes().to_vec());
            needles.push(format!("{value:.1}").into_bytes());
        }
        if let Some(value) = humidity {
            needles.push(format!("{value}").into_bytes());
        }
    }
    // Short numbers ("82") can occur by chance in any byte stream: only
    // values of three or more characters count as evidence.
    needles.retain(|needle| needle.len() >= 3);
    needles.sort();
    needles.dedup();
    let refs: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    (bytes.len(), find_any(&bytes, &refs), needles.len())
}

/// The WAN cut for two minutes, then restored.
async fn wan_cut(wan: &Wan, probe: &Probe<'_>) {
    probe.get("/").await.unwrap();
    let before = probe.sensor_metrics().await.unwrap();
    say("two sites: WAN cut (every packet dropped in the router)");
    wan.cut();
    let down = Instant::now();
    let outage = probe.hold_outage(down, WAN_CUT, PROBE_EVERY).await;
    let restored = Instant::now();
    let restored_at = now_utc();
    wan.restore();
    say("two sites: WAN restored");
    let recovery = probe.recovery(restored, restored_at, RECOVERY_LIMIT).await;
    let after = probe.sensor_metrics().await.unwrap();
    let delta = |name: &str| after.get(name) - before.get(name);
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "two sites figures: WAN cut {}; {outage}; {recovery}; readings spooled {}, replayed {}, dropped {}; {accounting}",
        secs(restored - down),
        delta("sensor_readings_spooled_total"),
        delta("sensor_readings_replayed_total"),
        after.get("sensor_readings_dropped_total"),
    ));
    assert!(
        outage.held(),
        "the panel during the WAN cut: {outage}\n{:#?}",
        outage.problems
    );
    assert_eq!(
        outage.statuses.get("/api/weather?city=Cali 200"),
        Some(&outage.probes),
        "live weather during the cut: {outage}"
    );
    assert!(
        delta("sensor_readings_spooled_total") >= 5.0 * 7.0,
        "spooled during a two-minute cut"
    );
    assert_eq!(
        delta("sensor_readings_replayed_total"),
        delta("sensor_readings_spooled_total"),
        "every spooled reading is replayed"
    );
    assert!(accounting.exact(), "after the WAN cut: {accounting}");
}

/// An impostor database with a certificate for the right name from another
/// authority takes the cloud's place on the path: every service refuses it
/// before sending a password, spools or waits, and loses nothing once the
/// real cloud is back.
async fn man_in_the_middle(wan: &Wan, local: &Stack, probe: &Probe<'_>, cloud_port: u16) {
    let impostor = Impostor::start(wan, cloud_port);
    let since = chrono::Utc::now().to_rfc3339();
    // New connections go to the impostor; the ones open to the real cloud
    // are reset at their next packet, as an attacker on the path would.
    wan.set_target(&format!("{}:3306", impostor.address));
    let cloud = wan.gateway().to_string();
    let reset = [
        "OUTPUT",
        "-p",
        "tcp",
        "-d",
        &cloud,
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ];
    wan.run(&[&["iptables", "-I"][..], &reset[..]].concat());
    let refusals = eventually(
        "every service refuses the impostor",
        MITM_HOLD + Duration::from_secs(60),
        POLL,
        || async {
            let lines: Vec<(String, String)> = ["sensor-simulator", "backup-worker", "frontend"]
                .iter()
                .filter_map(|service| {
                    let logs = docker(&["logs", "--since", &since, &local.container(service)]);
                    let text = String::from_utf8_lossy(&logs.stdout).into_owned()
                        + &String::from_utf8_lossy(&logs.stderr);
                    text.lines()
                        .find(|line| line.contains("refused the database server"))
                        .map(|line| (service.to_string(), line.to_owned()))
                })
                .collect();
            (lines.len() == 3).then_some(lines)
        },
    )
    .await;
    for (service, line) in &refusals {
        say(format!("two sites figures: MITM, {service} logged: {line}"));
        assert!(line.contains("password not sent"), "{line}");
    }
    let denied = impostor.logs();
    assert!(
        !denied.contains("Access denied"),
        "a service sent the impostor a login: {denied}"
    );
    let page = probe.get("/").await.unwrap();
    assert!(
        page.body.contains(BANNER),
        "the panel shows the cloud as unreachable while refusing the impostor"
    );
    let restored = Instant::now();
    let restored_at = now_utc();
    wan.set_target(&format!("{}:{}", wan.gateway(), impostor.cloud_port));
    wan.run(&[&["iptables", "-D"][..], &reset[..]].concat());
    let recovery = probe.recovery(restored, restored_at, RECOVERY_LIMIT).await;
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "two sites figures: MITM for {}; {recovery}; {accounting}",
        secs(restored - impostor.started)
    ));
    assert!(
        accounting.exact(),
        "after the man in the middle: {accounting}"
    );
}

/// A MariaDB with certificates from an authority of its own, for the name
/// the local site expects, on the WAN network.
struct Impostor {
    container: String,
    volume: String,
    address: String,
    cloud_port: u16,
    started: Instant,
}

impl Impostor {
    fn start(wan: &Wan, cloud_port: u16) -> Self {
        let volume = format!("{}-impostor", wan.network());
        let scripts = repository_root().join("compose/credentials");
        let made = docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            &format!("TLS_PUBLIC_NAMES={CLOUD_NAME}"),
            "-v",
            &format!("{}:/scripts:ro", scripts.display()),
            "-v",
            &format!("{volume}:/credentials/db"),
            "--entrypoint",
            "bash",
            "telemetria/mariadb:10.11",
            "/scripts/credentials.sh",
        ]);
        assert!(made.status.success(), "impostor credentials: {made:?}");
        let run = docker(&[
            "run",
            "-d",
            "--network",
            wan.network(),
            "-e",
            "MYSQL_ROOT_PASSWORD_FILE=/run/credentials/root_password",
            "-e",
            "MYSQL_ROOT_HOST=localhost",
            // An account for any host, so the impostor greets every client
            // (MariaDB answers "host not allowed" before TLS otherwise) and
            // gets as far as a man in the middle would: the TLS handshake.
            "-e",
            "MYSQL_USER=impostor",
            "-e",
            "MYSQL_PASSWORD_FILE=/run/credentials/panel_password",
            "-v",
            &format!("{volume}:/run/credentials:ro"),
            "telemetria/mariadb:10.11",
            "--ssl-ca=/run/credentials/ca.pem",
            "--ssl-cert=/run/credentials/server-cert.pem",
            "--ssl-key=/run/credentials/server-key.pem",
        ]);
        assert!(run.status.success(), "impostor: {run:?}");
        let container = String::from_utf8_lossy(&run.stdout).trim().to_owned();
        let mut impostor = Self {
            address: String::new(),
            container,
            volume,
            cloud_port,
            started: Instant::now(),
        };
        stack_tests::eventually(
            "the impostor accepts connections",
            Duration::from_secs(90),
            || {
                let ping = docker(&[
                    "exec",
                    &impostor.container,
                    "mysqladmin",
                    "ping",
                    "--silent",
                ]);
                ping.status.success().then_some(())
            },
        );
        impostor.address = address_on(&impostor.container, wan.network())
            .expect("the impostor is on the WAN")
            .to_string();
        impostor.started = Instant::now();
        impostor
    }

    fn logs(&self) -> String {
        let logs = docker(&["logs", &self.container]);
        String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr)
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        docker(&["rm", "-f", "-v", &self.container]);
        docker(&["volume", "rm", "-f", &self.volume]);
    }
}

/// The sensor's password rotated with scripts/rotate.sh on the cloud, the
/// new site credentials carried over, the sensor restarted: no reading lost.
async fn rotation(
    cloud: &Stack,
    local: &Stack,
    site: &std::path::Path,
    probe: &Probe<'_>,
    gateway: &str,
) {
    let old = cloud.secret("sensor");
    let started = Instant::now();
    let rotated = Command::new(repository_root().join("scripts/rotate.sh"))
        .arg("sensor")
        .envs(cloud.env())
        .output()
        .unwrap();
    assert!(rotated.status.success(), "rotate: {rotated:?}");
    let said = String::from_utf8_lossy(&rotated.stderr);
    assert!(said.contains("export the site credentials"), "{said}");
    assert_ne!(cloud.secret("sensor"), old, "the password did not change");
    carry_site_credentials(cloud, site);
    let restarted = local.compose(&["restart", "sensor-simulator"]);
    assert!(restarted.status.success(), "{restarted:?}");
    let at = now_utc();
    probe.complete_ticks(2, at, Duration::from_secs(120)).await;
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "two sites figures: sensor password rotated and carried over in {} s; {accounting}",
        started.elapsed().as_secs()
    ));
    assert!(accounting.exact(), "after the rotation: {accounting}");
    let opts = database_opts(gateway, cloud.proxy_port, "sensor", &old, cloud.ca_file());
    assert_login_refused(opts, "the sensor's previous password").await;
}

/// root, with the real password, cannot log in through the published port;
/// a client that reaches the proxy from a network outside its allow-list is
/// turned away before the MySQL greeting.
async fn closed_door(cloud: &Stack, wan: &Wan, gateway: &str) {
    let root = database_opts(
        gateway,
        cloud.proxy_port,
        "root",
        &cloud.secret("root"),
        cloud.ca_file(),
    );
    let refused = assert_login_refused(root, "root through the published port").await;

    // The proxy joins the WAN network after its start: that network is not
    // one it admits, as a real internet interface is not.
    let proxy = cloud.container("nginx-proxy");
    let joined = docker(&["network", "connect", wan.network(), &proxy]);
    assert!(joined.status.success(), "{joined:?}");
    let proxy_address = address_on(&proxy, wan.network())
        .expect("the proxy is on the WAN")
        .to_string();
    let greeting_bytes = |target: &str| {
        let output = docker(&[
            "run",
            "--rm",
            "--network",
            wan.network(),
            "--entrypoint",
            "bash",
            "telemetria/nginx:latest",
            "-c",
            &format!("exec 3<>/dev/tcp/{target} && timeout 3 cat <&3 | head -c 4096 | wc -c"),
        ]);
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    let admitted = greeting_bytes(&format!("{gateway}/{}", cloud.proxy_port));
    let outsider = greeting_bytes(&format!("{proxy_address}/3306"));
    let logs = cloud.compose(&["logs", "--no-color", "nginx-proxy"]);
    let forbidden = String::from_utf8_lossy(&logs.stdout).contains("access forbidden by rule");
    docker(&["network", "disconnect", wan.network(), &proxy]);
    say(format!(
        "two sites figures: root refused through the published port ({refused}); greeting through the published port {admitted} bytes, \
         from outside the allow-list {outsider} bytes; nginx logged 'access forbidden by rule': {forbidden}"
    ));
    assert!(admitted > 0, "no MySQL greeting through the published port");
    assert_eq!(
        outsider, 0,
        "the proxy greeted a client outside its allow-list"
    );
    assert!(forbidden, "nginx did not log the refusal");
}
