//! Scenarios 2, 5, 3 and 1 of issue #6 on one stack, in that order: the
//! cloud's database removed for two minutes, the local site cut off from the
//! cloud for one, the database recreated at a new address, then the whole
//! stack taken down and up again. The sensor runs throughout, so the tick
//! accounting covers every outage at once: between the first and the last
//! stored tick, exactly one reading per city per tick.

use std::time::{Duration, Instant};

use stack_tests::{docker, Stack};

use crate::common::*;

/// Issue #6: the database stays away "for at least two minutes".
const DATABASE_OUTAGE: Duration = Duration::from_secs(120);
/// Issue #6: the partition lasts a minute.
const PARTITION: Duration = Duration::from_secs(60);
/// How often the panel is probed during an outage.
const PROBE_EVERY: Duration = Duration::from_secs(5);
const RECOVERY_LIMIT: Duration = Duration::from_secs(180);
/// The services whose containers must survive every outage untouched.
const SERVICES: [&str; 4] = [
    "nginx-proxy",
    "sensor-simulator",
    "backup-worker",
    "frontend",
];

#[tokio::test(flavor = "multi_thread")]
async fn outages_of_the_cloud_lose_no_reading() {
    let stack = tokio::task::spawn_blocking(|| Stack::up(&[("BACKUP_INTERVAL_SECS", "30")]))
        .await
        .unwrap();
    let probe = Probe::new(&stack);
    let started = now_utc();

    // Before any outage: readings flow, and the panel has read them once
    // (its last known data) and has live weather in its cache.
    probe
        .complete_ticks(
            2,
            started - chrono::TimeDelta::hours(1),
            Duration::from_secs(90),
        )
        .await;
    let page = probe.get("/").await.unwrap();
    assert!(
        page.status == 200 && !page.body.contains(BANNER) && page.body.contains(LIVE_WEATHER),
        "panel before the outages: {page:?}"
    );

    database_removed(&stack, &probe).await;
    partitioned(&stack, &probe).await;
    new_address(&stack, &probe).await;

    let ticks = probe.tick_rows().await.unwrap();
    let whole = Accounting::of(&ticks, None, None);
    say(format!("scenarios 2+5+3, whole run: {whole}"));
    assert!(
        whole.exact(),
        "not exactly one reading per city per tick over the whole run: {whole}"
    );

    down_and_up(&stack, &probe).await;
}

/// Scenario 2: `docker rm -f` of db-master for two minutes, then `up -d`.
async fn database_removed(stack: &Stack, probe: &Probe<'_>) {
    let before = probe.sensor_metrics().await.unwrap();
    let services = states(stack, &SERVICES);
    let database = stack.container("db-master");

    say("scenario 2: docker rm -f db-master");
    let output = docker(&["rm", "-f", &database]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let down = Instant::now();

    let outage = probe.hold_outage(down, DATABASE_OUTAGE, PROBE_EVERY).await;
    let during = probe.sensor_metrics().await.unwrap();
    let spooled =
        during.get("sensor_readings_spooled_total") - before.get("sensor_readings_spooled_total");
    say(format!(
        "scenario 2: outage held {}; {outage}; sensor spooled {spooled} readings ({} bytes)",
        secs(down.elapsed()),
        during.get("sensor_spool_bytes")
    ));

    say("scenario 2: docker-compose up -d");
    let restored = Instant::now();
    let restored_at = now_utc();
    let output = stack.compose(&["up", "-d", "--no-build"]);
    assert!(
        output.status.success(),
        "up -d: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let up_returned = restored.elapsed();
    let recovery = probe.recovery(restored, restored_at, RECOVERY_LIMIT).await;
    let after = probe.sensor_metrics().await.unwrap();
    let replay = Replay::between(&before, &after);
    let ticks = probe.tick_rows().await.unwrap();
    let accounting = Accounting::of(&ticks, None, None);
    say(format!(
        "scenario 2 figures: outage {} (rm -f → up -d), database unreachable {} (rm -f → API back); `up -d` returned after {}; {recovery}; \
         {replay}; {accounting}",
        secs(restored - down),
        secs(restored + recovery.api - down),
        secs(up_returned),
    ));
    let restarted = unchanged(stack, &services);
    assert_survived(
        "scenario 2",
        &outage,
        spooled,
        7,
        &replay,
        &accounting,
        &restarted,
    );
    assert_backup_after(stack, probe, restored).await;
}

/// Scenario 5: nginx-proxy (the cloud's door) cut off from local-net for a
/// minute, then reconnected.
async fn partitioned(stack: &Stack, probe: &Probe<'_>) {
    // A page read just before, so "last known data" is recent.
    probe.get("/").await.unwrap();
    let before = probe.sensor_metrics().await.unwrap();
    let services = states(stack, &SERVICES);

    say("scenario 5: docker network disconnect local-net nginx-proxy");
    let cut = disconnect(stack, "nginx-proxy", "local-net");
    let down = Instant::now();
    let outage = probe.hold_outage(down, PARTITION, PROBE_EVERY).await;
    let during = probe.sensor_metrics().await.unwrap();
    let spooled =
        during.get("sensor_readings_spooled_total") - before.get("sensor_readings_spooled_total");
    say(format!(
        "scenario 5: partition held {}; {outage}; sensor spooled {spooled} readings",
        secs(down.elapsed())
    ));

    say("scenario 5: docker network connect local-net nginx-proxy");
    let restored = Instant::now();
    let restored_at = now_utc();
    reconnect(cut);
    let recovery = probe.recovery(restored, restored_at, RECOVERY_LIMIT).await;
    let after = probe.sensor_metrics().await.unwrap();
    let replay = Replay::between(&before, &after);
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "scenario 5 figures: partition {} (disconnect → connect), database unreachable for the services {}; {recovery}; \
         {replay}; {accounting}",
        secs(restored - down),
        secs(restored + recovery.api - down),
    ));
    let restarted = unchanged(stack, &services);
    assert_survived(
        "scenario 5",
        &outage,
        spooled,
        3,
        &replay,
        &accounting,
        &restarted,
    );
}

/// What the sensor's counters say about one outage, from before it to after
/// the recovery.
struct Replay {
    spooled: f64,
    replayed: f64,
    dropped: f64,
}

impl Replay {
    fn between(before: &Metrics, after: &Metrics) -> Self {
        let delta = |name: &str| after.get(name) - before.get(name);
        Self {
            spooled: delta("sensor_readings_spooled_total"),
            replayed: delta("sensor_readings_replayed_total"),
            dropped: after.get("sensor_readings_dropped_total"),
        }
    }
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "readings spooled {}, replayed {}, dropped {}",
            self.spooled, self.replayed, self.dropped
        )
    }
}

/// What every outage scenario checks once the database is back: the panel
/// held on every probe (page with banner, last known data and live weather;
/// API and readiness 503; live weather 200), the sensor spooled at least
/// `min_ticks` ticks of the seven cities while it lasted and replayed all it
/// spooled, nothing was dropped, no service needed a restart (`restarted`
/// is empty), and every tick has exactly one reading per city.
fn assert_survived(
    scenario: &str,
    outage: &OutageLog,
    spooled_during: f64,
    min_ticks: u32,
    replay: &Replay,
    accounting: &Accounting,
    restarted: &[String],
) {
    assert!(outage.held(), "{scenario}: the panel must show banner, last known data and live weather on every probe once it can have noticed the outage: {outage}\n{:#?}", outage.problems);
    let count = |key: &str| outage.statuses.get(key).copied().unwrap_or(0);
    for path in ["/readyz 503", "/api/weather?city=Cali 200"] {
        assert_eq!(
            count(path),
            outage.probes,
            "{scenario}: during the outage every {path}: {outage}"
        );
    }
    // Recent readings: 503 once the outage is noticed, the last read before.
    assert_eq!(
        count(&format!("{RECENT_READINGS} 503"))
            + count(&format!("{RECENT_READINGS} 200 {BEFORE_NOTICE}")),
        outage.probes,
        "{scenario}: during the outage every {RECENT_READINGS}: {outage}"
    );
    assert!(
        spooled_during >= f64::from(min_ticks) * 7.0,
        "{scenario}: the sensor should have spooled the readings of {min_ticks}+ ticks, spooled {spooled_during}"
    );
    assert_eq!(
        replay.replayed, replay.spooled,
        "{scenario}: every spooled reading is replayed"
    );
    assert_eq!(replay.dropped, 0.0, "{scenario}: readings dropped");
    assert!(
        restarted.is_empty(),
        "{scenario}: no service may need a restart: {restarted:?}"
    );
    assert!(accounting.exact(), "after {scenario}: {accounting}");
}

/// Scenario 3: db-master recreated with a different IP. Docker would hand
/// the old address back, so placeholders take it (and any lower free one)
/// before compose recreates the container.
async fn new_address(stack: &Stack, probe: &Probe<'_>) {
    let services = states(stack, &SERVICES);
    let old = stack
        .address("db-master", "backend-net")
        .expect("db-master on backend-net");
    let database = stack.container("db-master");

    say(format!(
        "scenario 3: docker rm -f db-master (at {old}); placeholders take its address"
    ));
    let output = docker(&["rm", "-f", &database]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let down = Instant::now();
    let mut held = Vec::new();
    loop {
        let (_, address) = stack.placeholder("backend-net");
        held.push(address);
        if address == Some(old) {
            break;
        }
        assert!(held.len() < 10, "placeholders never got {old}: {held:?}");
    }
    let restored = Instant::now();
    let restored_at = now_utc();
    let output = stack.compose(&["up", "-d", "--no-build"]);
    assert!(
        output.status.success(),
        "up -d: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let new = stack
        .address("db-master", "backend-net")
        .expect("db-master on backend-net");
    // Only needed while compose created the container.
    stack.remove_placeholders();
    say(format!(
        "scenario 3: db-master recreated at {new} (was {old}; placeholders held {held:?})"
    ));
    assert_ne!(new, old, "the test must force a new address");

    let recovery = probe.recovery(restored, restored_at, RECOVERY_LIMIT).await;
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    say(format!(
        "scenario 3 figures: address {old} → {new}; database unreachable {} (rm -f → API back; `up -d` issued after {}); {recovery}; {accounting}",
        secs(restored + recovery.api - down),
        secs(restored - down)
    ));
    let changed = unchanged(stack, &services);
    assert!(
        changed.is_empty(),
        "the proxy and the services must reconnect without a restart: {changed:?}"
    );
    assert!(accounting.exact(), "after scenario 3: {accounting}");
}

/// Scenario 1: `docker-compose down` (volumes kept), then `up -d`: every row
/// is still there, and the sensor carries on.
async fn down_and_up(stack: &Stack, probe: &Probe<'_>) {
    let before = probe.all_rows().await.unwrap();
    say(format!(
        "scenario 1: docker-compose down (volumes kept) with {} rows stored",
        before.len()
    ));
    let down = Instant::now();
    let output = stack.compose(&["down", "--timeout", "10"]);
    assert!(
        output.status.success(),
        "down: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stack.containers().is_empty(),
        "down left containers: {:?}",
        stack.containers()
    );
    let down_took = down.elapsed();

    let up = Instant::now();
    let restarted_at = now_utc();
    let output = stack.compose(&["up", "-d", "--no-build"]);
    assert!(
        output.status.success(),
        "up -d: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stack.wait_healthy(Duration::from_secs(240));
    let healthy = up.elapsed();
    probe
        .complete_ticks(1, restarted_at, Duration::from_secs(90))
        .await;
    let new_tick = up.elapsed();

    let after = probe.all_rows().await.unwrap();
    let kept = before
        .iter()
        .filter(|row| {
            after
                .binary_search_by_key(&row.0, |r| r.0)
                .is_ok_and(|i| after[i] == **row)
        })
        .count();
    let ticks = probe.tick_rows().await.unwrap();
    let last_before = before.iter().map(|row| row.4).max().unwrap();
    let before_down = Accounting::of(&ticks, None, Some(last_before));
    let since_up = Accounting::of(&ticks, Some(restarted_at), None);
    say(format!(
        "scenario 1 figures: rows before down {}, identical after up {kept}, rows now {}; down took {}, healthy {} after up -d, first new tick stored after {}; \
         before down: {before_down}; since up: {since_up}",
        before.len(),
        after.len(),
        secs(down_took),
        secs(healthy),
        secs(new_tick)
    ));
    assert_eq!(
        kept,
        before.len(),
        "every row stored before `down` must be there, unchanged, after `up -d`"
    );
    assert!(before_down.exact(), "{before_down}");
    assert!(since_up.exact(), "{since_up}");
}

/// A snapshot started after `after` appears, verifies, and its chain holds
/// every row stored before the outage ended.
async fn assert_backup_after(stack: &Stack, probe: &Probe<'_>, after: Instant) {
    let rows_then = probe.count().await.unwrap();
    let newest = eventually(
        "a backup snapshot after the recovery",
        Duration::from_secs(90),
        POLL,
        || async {
            let mut names: Vec<String> = std::fs::read_dir(stack.backups.path())
                .ok()?
                .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
                .filter(|name| name.ends_with(".json.manifest.json"))
                .collect();
            names.sort();
            let newest = names.pop()?;
            let rows = chain_rows(stack.backups.path(), &newest)?;
            (rows >= rows_then).then_some((newest, rows))
        },
    )
    .await;
    let verified = verify_backups(stack);
    say(format!(
        "scenario 2: first snapshot whose chain holds every row: {} ({} rows) {} after up -d; all snapshots verify: {verified:?}",
        newest.0,
        newest.1,
        secs(after.elapsed())
    ));
    assert!(verified.is_ok(), "{verified:?}");
}
