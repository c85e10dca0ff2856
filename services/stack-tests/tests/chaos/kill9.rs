//! Scenario 4: `kill -9` of each service in turn, from the host, so that the
//! restart policy (not a manual start) brings it back. The backup worker is
//! killed at chosen moments of a snapshot: once mid-dump, then six times
//! around the end of the dump, where the manifest and the snapshot are
//! renamed into place one after the other; the
//! sensor is killed while its spool holds readings. Throughout, every snapshot file that
//! becomes visible is parsed the moment it is seen, and at the end every
//! snapshot verifies and the tick accounting is exact.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{NaiveDateTime, TimeDelta};
use stack_tests::{docker, ContainerState, Stack};

use crate::common::*;

/// Short, so the aimed kills come often and many snapshots get checked.
const BACKUP_INTERVAL_SECS: i64 = 5;
const BACK_LIMIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn killed_services_come_back_by_their_restart_policy() {
    let stack = tokio::task::spawn_blocking(|| {
        Stack::up(&[("BACKUP_INTERVAL_SECS", &BACKUP_INTERVAL_SECS.to_string())])
    })
    .await
    .unwrap();
    let probe = Probe::new(&stack);
    let watcher = SnapshotWatcher::start(stack.backups.path().to_owned());
    probe
        .complete_ticks(1, now_utc() - TimeDelta::hours(1), Duration::from_secs(90))
        .await;
    probe.get("/").await.unwrap();

    // frontend
    let back = kill_and_wait(&stack, "frontend", None).await;
    let page = eventually(
        "the panel with data after its restart",
        Duration::from_secs(30),
        POLL,
        || async {
            let page = probe.get("/").await.ok()?;
            (page.status == 200
                && !page.body.contains(BANNER)
                && city_names().iter().all(|c| page.body.contains(c.as_str())))
            .then_some(page)
        },
    )
    .await;
    say(format!(
        "scenario 4: frontend {back}; panel with every city again ({} bytes)",
        page.body.len()
    ));

    // backup-worker, aimed at a snapshot in progress: once halfway through
    // the dump, then, a few times with slightly different offsets, as the
    // dump ends and its manifest and file are renamed into place.
    let mut failures = Vec::new();
    let mut backup_kills = 0;
    let mut orphan = None;
    for aim in [
        Aim::Fraction(0.5),
        Aim::AfterDump(0.2),
        Aim::AfterDump(0.6),
        Aim::AfterDump(1.0),
        Aim::AfterDump(0.4),
        Aim::AfterDump(1.5),
        Aim::AfterDump(0.8),
    ] {
        let (killed_at, back) = aimed_backup_kill(&stack, aim).await;
        backup_kills += 1;
        let restarted = eventually(
            "a snapshot taken after the restart",
            Duration::from_secs(30),
            POLL,
            || async {
                newest_snapshot(&stack)
                    .filter(|s| s.started > killed_at + TimeDelta::milliseconds(100))
            },
        )
        .await;
        let orphans = orphans(&stack, killed_at);
        say(format!("scenario 4: backup-worker {back}; next snapshot {}; snapshots left without a manifest: {orphans:?}", restarted.name));
        if !orphans.is_empty() {
            orphan = Some((aim, orphans));
            break;
        }
    }
    let leftovers = removed_leftovers(&stack);
    let verified = verify_backups(&stack);
    say(format!(
        "scenario 4: {backup_kills} kills of the backup worker; temporary files it removed at its restarts: {leftovers}; snapshots verified: {verified:?}"
    ));
    if let Some((aim, orphans)) = orphan {
        failures.push(format!(
            "kill -9 of the backup worker {aim:?} left snapshot(s) without a manifest, which `verify` refuses and nothing ever removes: {orphans:?}"
        ));
    }
    if let Err(verify) = verified {
        failures.push(format!("after the backup worker's kills: {verify:?}"));
    }

    // nginx-proxy
    let back = kill_and_wait(&stack, "nginx-proxy", None).await;
    let restored = Instant::now();
    let recovery = probe
        .recovery(restored, now_utc(), Duration::from_secs(120))
        .await;
    say(format!("scenario 4: nginx-proxy {back}; {recovery}"));

    // db-master: crash recovery of the database files.
    let back = kill_and_wait(&stack, "db-master", None).await;
    let recovery = probe
        .recovery(Instant::now(), now_utc(), Duration::from_secs(120))
        .await;
    say(format!("scenario 4: db-master {back}; then {recovery}"));

    // sensor-simulator with readings in its spool: the cloud is cut off,
    // the spool fills, the sensor is killed just after a tick (so it is
    // back before the next one) and must find its spool on restart.
    let cut = disconnect(&stack, "nginx-proxy", "local-net");
    let base = probe
        .sensor_metrics()
        .await
        .unwrap()
        .get("sensor_readings_spooled_total");
    let spooled = eventually(
        "two ticks spooled",
        Duration::from_secs(60),
        POLL,
        || async {
            let metrics = probe.sensor_metrics().await.ok()?;
            (metrics.get("sensor_readings_spooled_total") >= base + 14.0)
                .then(|| metrics.get("sensor_readings_spooled_total"))
        },
    )
    .await;
    let spool = eventually(
        "the next tick spooled",
        Duration::from_secs(30),
        POLL,
        || async {
            let metrics = probe.sensor_metrics().await.ok()?;
            (metrics.get("sensor_readings_spooled_total") > spooled)
                .then(|| metrics.get("sensor_spool_bytes"))
        },
    )
    .await;
    let back = kill_and_wait(&stack, "sensor-simulator", None).await;
    let restarted = probe.sensor_metrics().await.unwrap();
    let found = restarted.get("sensor_spool_bytes");
    say(format!("scenario 4: sensor-simulator {back}; spool {spool} bytes before the kill, {found} bytes found by the restarted sensor"));
    assert!(
        found >= spool && spool > 0.0,
        "the spool must survive kill -9: {spool} bytes before, {found} after"
    );
    let logs = docker(&["logs", &stack.container("sensor-simulator")]);
    assert!(
        String::from_utf8_lossy(&logs.stdout)
            .contains("spool holds readings from before the restart"),
        "the restarted sensor should report its spool"
    );
    let restored = Instant::now();
    let restored_at = now_utc();
    reconnect(cut);
    let recovery = probe
        .recovery(restored, restored_at, Duration::from_secs(120))
        .await;
    let metrics = probe.sensor_metrics().await.unwrap();
    say(format!(
        "scenario 4: reconnected; {recovery}; restarted sensor replayed {} readings, dropped {}",
        metrics.get("sensor_readings_replayed_total"),
        metrics.get("sensor_readings_dropped_total")
    ));
    assert_eq!(metrics.get("sensor_readings_dropped_total"), 0.0);

    // Every service came back by its policy, as often as it was killed.
    for (service, kills) in [
        ("frontend", 1),
        ("backup-worker", backup_kills),
        ("nginx-proxy", 1),
        ("db-master", 1),
        ("sensor-simulator", 1),
    ] {
        let state = stack.state(service);
        assert!(
            state.is_up() && state.restarts == kills,
            "{service}: {state:?}, killed {kills} time(s)"
        );
    }
    let accounting = Accounting::of(&probe.tick_rows().await.unwrap(), None, None);
    let (seen, broken) = watcher.stop();
    let verified = verify_backups(&stack);
    let temporary = lingering_temporary_files(&stack);
    say(format!(
        "scenario 4 figures: {accounting}; snapshots parsed the moment they appeared: {seen}, broken: {broken:?}; \
         snapshots verified at the end: {verified:?}; temporary files lingering: {temporary:?}"
    ));
    assert!(accounting.exact(), "{accounting}");
    assert!(
        broken.is_empty(),
        "a partial or corrupt snapshot was visible: {broken:?}"
    );
    assert!(
        temporary.is_empty(),
        "temporary files left behind: {temporary:?}"
    );
    if let Err(verify) = verified {
        failures.push(format!("at the end: {verify:?}"));
    }
    assert!(failures.is_empty(), "backups: {failures:#?}");
}

/// How long a killed service took to come back.
struct Back {
    running: Duration,
    up: Duration,
}

impl std::fmt::Display for Back {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "back by its restart policy: running after {}, healthy after {}",
            secs(self.running),
            secs(self.up)
        )
    }
}

/// Kills the service's process (unless `killed` says it was already, and
/// how it was before) and waits for the restart policy to bring the same
/// container back, healthy.
async fn kill_and_wait(stack: &Stack, service: &str, killed: Option<ContainerState>) -> Back {
    let before = match killed {
        Some(before) => before,
        None => stack.kill9(service),
    };
    say(format!("scenario 4: kill -9 {} ({service})", before.pid));
    let killed = Instant::now();
    let mut running = None;
    loop {
        let now = ContainerState::of(&before.id);
        let restarted = now.restarts > before.restarts && now.pid > 0 && now.pid != before.pid;
        if restarted && now.status == "running" {
            running.get_or_insert(killed.elapsed());
        }
        if restarted && now.is_up() {
            return Back {
                running: running.unwrap_or(killed.elapsed()),
                up: killed.elapsed(),
            };
        }
        assert!(
            killed.elapsed() < BACK_LIMIT,
            "{service} not back {BACK_LIMIT:?} after kill -9: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kill -9 pid` at `target` (UTC), to within a fraction of a millisecond:
/// a sleep, then a spin for the last two milliseconds (tokio's timer has a
/// millisecond's granularity, and starting `kill(1)` takes longer still).
/// Returns when it was sent.
fn kill_at(pid: u32, target: NaiveDateTime) -> NaiveDateTime {
    loop {
        let left = target - now_utc();
        if left <= TimeDelta::milliseconds(3) {
            break;
        }
        std::thread::sleep(
            (left - TimeDelta::milliseconds(2))
                .to_std()
                .unwrap_or_default(),
        );
    }
    while now_utc() < target {
        std::hint::spin_loop();
    }
    // SAFETY: kill(2) with a pid read from `docker inspect` just before.
    let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(
        sent,
        0,
        "kill -9 {pid}: {}",
        std::io::Error::last_os_error()
    );
    now_utc()
}

#[derive(Debug, Clone, Copy)]
enum Aim {
    /// This fraction of the way through the snapshot (as long as the
    /// previous one took): in the middle of the dump.
    Fraction(f64),
    /// This many milliseconds after the dump is expected to end (the
    /// previous snapshot's duration), while its manifest is written and the
    /// two files are renamed into place.
    AfterDump(f64),
}

struct Snapshot {
    name: String,
    started: NaiveDateTime,
    duration_ms: u64,
}

/// The newest snapshot with a manifest: its start (from its name) and
/// duration (from its manifest).
fn newest_snapshot(stack: &Stack) -> Option<Snapshot> {
    let mut names: Vec<String> = std::fs::read_dir(stack.backups.path())
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("mediciones-") && name.ends_with(".json.manifest.json"))
        .collect();
    names.sort();
    let manifest_name = names.pop()?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(stack.backups.path().join(&manifest_name)).ok()?)
            .ok()?;
    let name = manifest_name.strip_suffix(".manifest.json")?.to_owned();
    let stamp = name.strip_prefix("mediciones-")?.split('Z').next()?;
    Some(Snapshot {
        started: NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3f").ok()?,
        duration_ms: manifest["duration_ms"].as_u64()?,
        name,
    })
}

/// Kills the backup worker at a chosen moment of its next snapshot: the
/// worker takes one every interval from its start, so the next one begins
/// an interval after the newest.
async fn aimed_backup_kill(stack: &Stack, aim: Aim) -> (NaiveDateTime, Back) {
    let newest = eventually("a snapshot", Duration::from_secs(30), POLL, || async {
        newest_snapshot(stack)
    })
    .await;
    let duration = newest.duration_ms.max(1) as f64;
    let offset_ms = match aim {
        Aim::Fraction(fraction) => duration * fraction,
        Aim::AfterDump(after) => duration + after,
    };
    let offset = TimeDelta::microseconds((offset_ms * 1000.0) as i64);
    let mut start = newest.started;
    while start + offset < now_utc() + TimeDelta::milliseconds(300) {
        start += TimeDelta::seconds(BACKUP_INTERVAL_SECS);
    }
    // The pid is read now: `docker inspect` takes longer than a snapshot.
    let before = stack.state("backup-worker");
    let pid = before.pid;
    let killed_at = tokio::task::spawn_blocking(move || kill_at(pid, start + offset))
        .await
        .unwrap();
    say(format!(
        "scenario 4: backup-worker killed {aim:?}: {:.1} ms after the expected start of a snapshot (the previous took {} ms)",
        (killed_at - start).num_microseconds().unwrap_or(0) as f64 / 1000.0,
        newest.duration_ms
    ));
    let back = kill_and_wait(stack, "backup-worker", Some(before)).await;
    (killed_at, back)
}

/// Snapshots without a manifest that started before `before`: not being
/// written any more, so left behind.
fn orphans(stack: &Stack, before: NaiveDateTime) -> Vec<String> {
    let directory = stack.backups.path();
    std::fs::read_dir(directory)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("mediciones-") && !name.ends_with(".manifest.json"))
        .filter(|name| !directory.join(format!("{name}.manifest.json")).exists())
        // Retention may have removed the snapshot and then its manifest
        // since the listing: that is no orphan.
        .filter(|name| directory.join(name).exists())
        .filter(|name| {
            let stamp = name
                .trim_start_matches("mediciones-")
                .split('Z')
                .next()
                .unwrap_or_default();
            NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3f")
                .is_ok_and(|started| started < before)
        })
        .collect()
}

/// Temporary files the backup worker reported removing at its starts.
fn removed_leftovers(stack: &Stack) -> u64 {
    let logs = docker(&["logs", &stack.container("backup-worker")]);
    String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter(|line| line.contains("removed leftovers of interrupted snapshots"))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|entry| {
            entry["removed"]
                .as_u64()
                .or_else(|| entry["fields"]["removed"].as_u64())
        })
        .sum()
}

/// `.tmp-*` files still there three seconds later: a snapshot in progress
/// takes milliseconds, so these are leftovers.
fn lingering_temporary_files(stack: &Stack) -> Vec<String> {
    let first: BTreeSet<String> = temporary_backups(stack).into_iter().collect();
    if first.is_empty() {
        return Vec::new();
    }
    std::thread::sleep(Duration::from_secs(3));
    temporary_backups(stack)
        .into_iter()
        .filter(|name| first.contains(name))
        .collect()
}

/// Parses every snapshot file the moment it becomes visible: a snapshot is
/// renamed into place only when complete, so none may ever be partial.
struct SnapshotWatcher {
    stop: Arc<AtomicBool>,
    result: Arc<Mutex<(usize, Vec<String>)>>,
    thread: std::thread::JoinHandle<()>,
}

impl SnapshotWatcher {
    fn start(directory: PathBuf) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let result = Arc::new(Mutex::new((0, Vec::new())));
        let thread = {
            let (stop, result) = (stop.clone(), result.clone());
            std::thread::spawn(move || {
                let mut seen = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&directory)
                        .into_iter()
                        .flatten()
                        .flatten()
                    {
                        let Ok(name) = entry.file_name().into_string() else {
                            continue;
                        };
                        if name.starts_with('.')
                            || name.ends_with(".manifest.json")
                            || !seen.insert(name.clone())
                        {
                            continue;
                        }
                        // Retention may delete it between listing and reading.
                        let Ok(bytes) = std::fs::read(entry.path()) else {
                            continue;
                        };
                        let mut result = result.lock().unwrap();
                        result.0 += 1;
                        if let Err(error) = serde_json::from_slice::<Vec<serde_json::Value>>(&bytes)
                        {
                            result
                                .1
                                .push(format!("{name} ({} bytes): {error}", bytes.len()));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            stop,
            result,
            thread,
        }
    }

    /// Snapshots checked, and those that did not parse.
    fn stop(self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        let result = self.result.lock().unwrap();
        (result.0, result.1.clone())
    }
}
