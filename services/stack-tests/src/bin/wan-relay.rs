//! A TCP relay that behaves like a slow, jittery WAN path, for the two-site
//! end-to-end tests (src/wan.rs runs it in the router container). The kernel
//! here has no netem qdisc, so the latency is added in user space.
//!
//! `wan-relay --listen 0.0.0.0:3306 --target-file /run/wan/target --delay-ms 80 --jitter-ms 20`
//!
//! Each accepted connection is relayed to the `HOST:PORT` written in the
//! target file, read again for every new connection: rewriting the file
//! redirects new connections, established ones keep their target. Every chunk
//! read from one side is written to the other `delay ± jitter` (uniform) after
//! it arrived, but never before the chunk ahead of it: the bytes keep their
//! order, as a TCP stream over a jittery path does. An end of stream is
//! delayed the same way and passed on as a half-close; an error on either
//! side closes both. Logs a line to stderr when a connection opens and when
//! it closes (with the bytes relayed each way). SIGTERM or SIGINT: stop
//! accepting, close every connection, exit.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

const USAGE: &str =
    "usage: wan-relay --listen ADDR:PORT --target-file FILE [--delay-ms N] [--jitter-ms N]";

/// Most bytes taken from a socket at once.
const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks on their way per direction. When the receiver stops reading, the
/// relay stops reading from the sender too (like a TCP window) instead of
/// buffering without bound.
const CHUNKS_IN_FLIGHT: usize = 64;
/// After SIGTERM, how long connections get to log their close.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(2);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let settings = match Settings::parse(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("wan-relay: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(settings.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("wan-relay: cannot listen on {}: {error}", settings.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "wan-relay listening={} target_file={} delay_ms={} jitter_ms={}",
        settings.listen,
        settings.target_file.display(),
        settings.path.delay.as_millis(),
        settings.path.jitter.as_millis()
    );
    run(listener, settings.target_file, settings.path, stop_signal()).await;
    eprintln!("wan-relay stopped");
    ExitCode::SUCCESS
}

struct Settings {
    listen: SocketAddr,
    target_file: PathBuf,
    path: WanPath,
}

impl Settings {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let (mut listen, mut target_file) = (None, None);
        let (mut delay_ms, mut jitter_ms) = (0, 0);
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--listen" => listen = Some(parse(&flag, value()?)?),
                "--target-file" => target_file = Some(PathBuf::from(value()?)),
                "--delay-ms" => delay_ms = parse(&flag, value()?)?,
                "--jitter-ms" => jitter_ms = parse(&flag, value()?)?,
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        Ok(Self {
            listen: listen.ok_or("--listen is required")?,
            target_file: target_file.ok_or("--target-file is required")?,
            path: WanPath {
                delay: Duration::from_millis(delay_ms),
                jitter: Duration::from_millis(jitter_ms),
            },
        })
    }
}

fn parse<T: FromStr>(flag: &str, value: String) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    value
        .parse()
        .map_err(|error| format!("{flag} {value:?}: {error}"))
}

/// Resolves at the first SIGTERM (`docker stop`) or SIGINT.
async fn stop_signal() {
    let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}

/// Relays every connection `listener` accepts until `stop` resolves, then
/// closes them all.
async fn run(listener: TcpListener, target_file: PathBuf, path: WanPath, stop: impl Future) {
    let target_file = Arc::new(target_file);
    // Connections wait on `changed()`, which returns once the sender is
    // dropped: dropping it is the broadcast.
    let (stopping, stopped) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut last_id = 0u64;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    last_id += 1;
                    let connection = relay(last_id, client, peer, target_file.clone(), path, stopped.clone());
                    connections.spawn(connection);
                }
                Err(error) => {
                    // Out of descriptors, most likely: let some close.
                    eprintln!("wan-relay accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        // Reap finished connections so the set does not grow for ever.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    drop(stopping);
    let drained = tokio::time::timeout(SHUTDOWN_LIMIT, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        eprintln!("wan-relay: connections still open after {SHUTDOWN_LIMIT:?}, dropping them");
    }
}

/// One connection, from accept to close, with its two log lines.
async fn relay(
    id: u64,
    client: TcpStream,
    peer: SocketAddr,
    target_file: Arc<PathBuf>,
    path: WanPath,
    mut stopped: watch::Receiver<()>,
) {
    let target = match read_target(&target_file).await {
        Ok(target) => target,
        Err(error) => {
            eprintln!("wan-relay conn={id} peer={peer} closed, no target: {error}");
            return;
        }
    };
    eprintln!("wan-relay conn={id} open peer={peer} target={target}");
    let to_target = AtomicU64::new(0);
    let to_client = AtomicU64::new(0);
    let end = tokio::select! {
        relayed = connect_and_relay(client, &target, path, &to_target, &to_client) => match relayed {
            Ok(()) => "closed".to_owned(),
            Err(error) => format!("error error={:?}", error.to_string()),
        },
        _ = stopped.changed() => "shutdown".to_owned(),
    };
    eprintln!(
        "wan-relay conn={id} close peer={peer} target={target} to_target={} to_client={} end={end}",
        to_target.load(Ordering::Relaxed),
        to_client.load(Ordering::Relaxed),
    );
}

/// The `HOST:PORT` in the target file, as it is now.
async fn read_target(file: &Path) -> io::Result<String> {
    let text = tokio::fs::read_to_string(file).await.map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("target file {}: {error}", file.display()),
        )
    })?;
    let target = text.trim();
    if target.is_empty() {
        return Err(io::Error::other(format!(
            "target file {} is empty",
            file.display()
        )));
    }
    Ok(target.to_owned())
}

async fn connect_and_relay(
    client: TcpStream,
    target: &str,
    path: WanPath,
    to_target: &AtomicU64,
    to_client: &AtomicU64,
) -> io::Result<()> {
    // No timeout of our own: across a cut WAN a connect hangs for as long as
    // the kernel retries the SYN, as it would for the client itself.
    let upstream = TcpStream::connect(target).await?;
    // Nagle's algorithm would add its own delay on top of ours to every small
    // request and reply.
    client.set_nodelay(true)?;
    upstream.set_nodelay(true)?;
    let (client_in, client_out) = client.into_split();
    let (upstream_in, upstream_out) = upstream.into_split();
    // An error in one direction ends both: the sockets are dropped, closed.
    tokio::try_join!(
        carry(client_in, upstream_out, path, to_target),
        carry(upstream_in, client_out, path, to_client),
    )?;
    Ok(())
}

/// One direction: reads chunks from `from` and writes each to `to` when
/// the path delivers it; the end of stream becomes a half-close of `to`.
async fn carry(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    path: WanPath,
    carried: &AtomicU64,
) -> io::Result<()> {
    // An empty chunk is the end of stream, as a read of 0 bytes is.
    let (send, mut in_flight) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut schedule = Schedule::new(path);
        let mut dice = Dice::new();
        loop {
            let mut chunk = vec![0; CHUNK_BYTES];
            let read = from.read(&mut chunk).await?;
            chunk.truncate(read);
            let due = schedule.due(Instant::now(), dice.roll());
            // A closed receiver means the writer failed: its error ends `carry`.
            if send.send((due, chunk)).await.is_err() || read == 0 {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = in_flight.recv().await {
            tokio::time::sleep_until(due).await;
            if chunk.is_empty() {
                to.shutdown().await?;
                break;
            }
            to.write_all(&chunk).await?;
            carried.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    };
    tokio::try_join!(read, write)?;
    Ok(())
}

/// The delay the simulated path adds to each chunk: `delay ± jitter`.
#[derive(Debug, Clone, Copy)]
struct WanPath {
    delay: Duration,
    jitter: Duration,
}

/// When the chunks of one direction are delivered: pure, the clock and the
/// randomness come in as arguments.
struct Schedule {
    path: WanPath,
    last_due: Option<Instant>,
}

impl Schedule {
    fn new(path: WanPath) -> Self {
        Self {
            path,
            last_due: None,
        }
    }

    /// When the chunk that arrived at `arrival` is delivered. `unit`, in
    /// [0, 1), picks its jitter in [-jitter, +jitter). Never before the
    /// chunk ahead of it (a stream keeps its order), never before it arrived.
    fn due(&mut self, arrival: Instant, unit: f64) -> Instant {
        let WanPath { delay, jitter } = self.path;
        let wait = (delay + jitter.mul_f64(2.0 * unit)).saturating_sub(jitter);
        let due = arrival + wait;
        let due = self.last_due.map_or(due, |last| due.max(last));
        self.last_due = Some(due);
        due
    }
}

/// Uniform numbers in [0, 1) for the jitter: SipHash of a counter under the
/// random keys std gives every `RandomState`. Random enough to shake a test
/// path, and no dependency for it.
struct Dice {
    keys: RandomState,
    rolls: u64,
}

impl Dice {
    fn new() -> Self {
        Self {
            keys: RandomState::new(),
            rolls: 0,
        }
    }

    fn roll(&mut self) -> f64 {
        self.rolls += 1;
        // The top 53 bits: every value an f64 in [0, 1) can hold exactly.
        (self.keys.hash_one(self.rolls) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(delay_ms: u64, jitter_ms: u64) -> WanPath {
        WanPath {
            delay: Duration::from_millis(delay_ms),
            jitter: Duration::from_millis(jitter_ms),
        }
    }

    #[test]
    fn without_jitter_every_chunk_takes_the_delay() {
        let start = Instant::now();
        let mut schedule = Schedule::new(path(80, 0));
        for (ms, unit) in [(0, 0.0), (1, 0.9), (500, 0.5)] {
            let arrival = start + Duration::from_millis(ms);
            assert_eq!(
                schedule.due(arrival, unit),
                arrival + Duration::from_millis(80)
            );
        }
    }

    #[test]
    fn jitter_stays_in_bounds_and_never_reorders() {
        let (delay, jitter) = (Duration::from_millis(80), Duration::from_millis(20));
        let mut schedule = Schedule::new(path(80, 20));
        let mut dice = Dice::new();
        let start = Instant::now();
        let mut previous = start;
        // A chunk every 0-3 ms: close enough that jitter alone would reorder.
        for index in 0..2_000u64 {
            let arrival = start + Duration::from_micros(index * 1_000 + (index * 7919) % 3_000);
            let due = schedule.due(arrival, dice.roll());
            assert!(due >= previous, "chunk {index} overtook the one before it");
            assert!(due >= arrival + delay - jitter, "chunk {index} came early");
            assert!(
                due <= (arrival + delay + jitter).max(previous),
                "chunk {index} held longer than delay + jitter"
            );
            previous = due;
        }
    }

    #[test]
    fn a_chunk_drawn_early_waits_for_the_one_ahead() {
        let start = Instant::now();
        let mut schedule = Schedule::new(path(80, 20));
        let first = schedule.due(start, 0.999_999);
        let second = schedule.due(start + Duration::from_millis(1), 0.0);
        assert!(first > start + Duration::from_millis(99));
        assert_eq!(second, first);
    }

    #[test]
    fn jitter_larger_than_the_delay_never_delivers_before_arrival() {
        let start = Instant::now();
        let mut schedule = Schedule::new(path(5, 50));
        assert_eq!(schedule.due(start, 0.0), start);
    }

    #[test]
    fn dice_rolls_are_units() {
        let mut dice = Dice::new();
        let rolls: Vec<f64> = (0..10_000).map(|_| dice.roll()).collect();
        assert!(rolls.iter().all(|roll| (0.0..1.0).contains(roll)));
        // The mean of 10,000 uniform rolls is 0.5 ± 0.003 (one sigma).
        let mean = rolls.iter().sum::<f64>() / rolls.len() as f64;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn settings_name_the_bad_value() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let settings = Settings::parse(
            args(&[
                "--listen",
                "0.0.0.0:3306",
                "--target-file",
                "/run/wan/target",
                "--delay-ms",
                "80",
                "--jitter-ms",
                "20",
            ])
            .into_iter(),
        )
        .unwrap();
        assert_eq!(settings.listen, "0.0.0.0:3306".parse().unwrap());
        assert_eq!(settings.path.delay, Duration::from_millis(80));
        let error = Settings::parse(args(&["--delay-ms", "eighty"]).into_iter())
            .err()
            .unwrap();
        assert!(error.contains("--delay-ms \"eighty\""), "{error}");
    }

    /// Echoes every connection until its client half-closes, then closes.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut input, mut output) = socket.split();
                    tokio::io::copy(&mut input, &mut output).await.unwrap();
                    output.shutdown().await.unwrap();
                });
            }
        });
        address
    }

    /// A relay on a free loopback port; it stops when the sender is dropped.
    async fn start_relay(target_file: PathBuf, path: WanPath) -> (SocketAddr, watch::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, mut stopped) = watch::channel(());
        tokio::spawn(run(listener, target_file, path, async move {
            let _ = stopped.changed().await;
        }));
        (address, stop)
    }

    #[tokio::test]
    async fn relays_a_stream_in_order_and_passes_the_half_close_on() {
        let echo = echo_server().await;
        let directory = tempfile::tempdir().unwrap();
        let target_file = directory.path().join("target");
        std::fs::write(&target_file, format!("{echo}\n")).unwrap();
        let (relay, _stop) = start_relay(target_file, path(2, 2)).await;

        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut client = TcpStream::connect(relay).await.unwrap();
        let (mut input, mut output) = client.split();
        // Many small writes: each becomes a chunk with its own jitter.
        let write = async {
            for piece in sent.chunks(1_000) {
                output.write_all(piece).await.unwrap();
            }
            output.shutdown().await.unwrap();
        };
        let mut received = Vec::new();
        let read = input.read_to_end(&mut received);
        let ((), read) = tokio::join!(write, read);
        read.unwrap();
        // read_to_end returned: the echo server's close came back through.
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the stream came back reordered");
    }

    /// Says `name` to every connection and closes it.
    async fn named_server(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(name.as_bytes()).await;
            }
        });
        address
    }

    #[tokio::test]
    async fn new_connections_follow_the_target_file() {
        let directory = tempfile::tempdir().unwrap();
        let target_file = directory.path().join("target");
        let (relay, _stop) = start_relay(target_file.clone(), path(0, 0)).await;
        for name in ["first", "second"] {
            std::fs::write(&target_file, named_server(name).await.to_string()).unwrap();
            let mut heard = String::new();
            let mut client = TcpStream::connect(relay).await.unwrap();
            client.read_to_string(&mut heard).await.unwrap();
            assert_eq!(heard, name);
        }
    }

    #[tokio::test]
    async fn without_a_target_the_connection_is_closed() {
        let directory = tempfile::tempdir().unwrap();
        let (relay, _stop) = start_relay(directory.path().join("missing"), path(0, 0)).await;
        let mut client = TcpStream::connect(relay).await.unwrap();
        let mut rest = Vec::new();
        // Closed (EOF), or reset: either way not left hanging.
        let _ = client.read_to_end(&mut rest).await;
        assert!(rest.is_empty());
    }
}
