//! The simulator (the firmware core on Linux) and the host link, end to end, with the secure
//! link on (each edge proves its key, every packet sealed): over TCP on loopback and over a
//! real pseudo-terminal pair opened with tokio-serial; clean, noisy, with the host or the
//! edge restarting mid-stream, and with an edge whose key the host does not accept.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dinoedge::link::secure::{Keyring, LinkSecurity, SecureSource, SecurityReport, keyring};
use dinoedge::link::{LinkConfig, LinkEvent, LinkStats, LiveSource, Source, Transport};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge::source::TestPattern;
use dinoedge_edge_sim::link::Faults;
use dinoedge_edge_sim::source::{Cine, FrameList, load_dicom};
use dinoedge_edge_sim::{SimConfig, SimInput, SimReport, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::secure::{LinkKey, parse_key_block};

/// Starts the simulator on its own thread.
fn start_sim(
    target: SimTarget,
    faults: Faults,
    max_frames: Option<u32>,
    input: SimInput,
    key: Option<LinkKey>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<SimReport>) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let handle = std::thread::spawn(move || {
        run_sim(
            SimConfig {
                faults,
                max_frames,
                duration: Some(Duration::from_secs(60)),
                device_id: heapless::String::try_from("e2e").unwrap(),
                key,
                ..SimConfig::new(input, target)
            },
            &stop2,
        )
        .unwrap()
    });
    (stop, handle)
}

/// A key folder with one key for the simulator's unit, `e2e`.
struct Keys {
    _dir: tempfile::TempDir,
    /// The simulator's key, as its key block holds it.
    key: LinkKey,
    /// The host's side.
    security: LinkSecurity,
}

fn keys() -> Keys {
    let dir = tempfile::tempdir().unwrap();
    let new = keyring::new_key(dir.path(), "e2e", 0).unwrap();
    let block = std::fs::read(&new.firmware_file).unwrap();
    let (key, _) = parse_key_block(&block).unwrap();
    let security = LinkSecurity::new(Keyring::load(dir.path()).unwrap());
    Keys {
        _dir: dir,
        key,
        security,
    }
}

impl Keys {
    /// `source`, secured with these keys (a fresh gate: a restarted host).
    fn secure(&self, source: LiveSource) -> Box<dyn Source> {
        Box::new(SecureSource::new(Box::new(source), self.security.clone()))
    }

    fn report(&self) -> SecurityReport {
        self.security.snapshot()
    }
}

/// What the host saw.
#[derive(Default)]
struct Seen {
    frames: Vec<(u32, u32, Vec<u8>)>,
    lost: Vec<dinoedge_proto::reassembly::Loss>,
    sessions: Vec<u32>,
    /// Frames delivered in each session, in the order sessions began.
    frames_per_session: Vec<usize>,
    disconnects: Vec<String>,
}

/// The echo cine shipped in tests/data: 30 frames of 320x240 at 30 fps.
fn echo() -> Cine {
    load_dicom(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/echo_cine.dcm")).unwrap()
}

/// The echo cine, looping at its own 30 fps.
fn echo_input() -> SimInput {
    let cine = echo();
    SimInput::Frames(FrameList::new(
        cine.width,
        cine.height,
        cine.frames,
        cine.fps_milli.unwrap(),
        true,
    ))
}

/// Every delivered frame is a frame of the looping cine, exact to the byte, in capture order
/// within a session (frames dropped at the source take no sequence number, so the loop index
/// may skip, but never goes back).
fn assert_cine_exact(cine: &Cine, seen: &Seen) {
    let mut previous: Option<(u32, usize)> = None;
    for (session, seq, data) in &seen.frames {
        let from = match previous {
            Some((s, k)) if s == *session => k + 1,
            _ => 0,
        };
        let k = (from..from + 10 * cine.frames.len())
            .find(|&k| cine.frames[k % cine.frames.len()] == *data)
            .unwrap_or_else(|| panic!("frame {seq} is not a cine frame after {from}"));
        previous = Some((*session, k));
    }
}

/// The first test-pattern frame at or after `from` that `data` is, exactly.
fn pattern_index(info: &SourceInfo, data: &[u8], from: u32) -> Option<u32> {
    let is = |k: u32, range: std::ops::Range<usize>| {
        data[range.clone()]
            .iter()
            .zip(range)
            .all(|(&b, i)| b == TestPattern::pattern_byte(info, k, i as u32))
    };
    (from..from + 50_000).find(|&k| is(k, 0..data.len().min(64)) && is(k, 0..data.len()))
}

/// Every delivered frame is a test-pattern frame, exact to the byte, and within a session
/// frames come in capture order (the edge may drop frames at the source between them, which
/// take no sequence number, but never repeats or reorders one).
fn assert_bit_exact(info: &SourceInfo, seen: &Seen) {
    let mut previous: Option<(u32, u32)> = None;
    for (session, seq, data) in &seen.frames {
        let from = match previous {
            Some((s, k)) if s == *session => k + 1,
            _ => 0,
        };
        let k = pattern_index(info, data, from)
            .unwrap_or_else(|| panic!("frame {seq} is not a pattern frame after {from}"));
        previous = Some((*session, k));
    }
}

/// Runs the host link until `until` says the run is complete; `limit` only guards against a
/// hang (the test then fails on what it saw).
async fn host(
    source: Box<dyn Source>,
    limit: Duration,
    until: impl Fn(&Seen) -> bool,
) -> (Seen, LinkStats) {
    let config = LinkConfig {
        credit_window: 8,
        ..LinkConfig::default()
    };
    let dinoedge::link::Link { mut events, handle } =
        dinoedge::link::spawn(source, config, Instant::now(), 8);
    let mut seen = Seen::default();
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let record = |seen: &mut Seen, ev: LinkEvent| match ev {
        LinkEvent::Frame(f) => {
            if let Some(n) = seen.frames_per_session.last_mut() {
                *n += 1;
            }
            seen.frames
                .push((f.session_id, f.frame.start.seq, f.frame.data));
        }
        LinkEvent::Lost(l) => seen.lost.push(l),
        LinkEvent::SessionStarted { session_id, .. } => {
            seen.sessions.push(session_id);
            seen.frames_per_session.push(0);
        }
        LinkEvent::Disconnected { reason } => seen.disconnects.push(reason),
        _ => {}
    };
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(ev) => record(&mut seen, ev),
                None => break,
            },
            _ = &mut deadline => break,
        }
        if until(&seen) {
            break;
        }
    }
    handle.stop();
    // What the session still tells until it ends (frames in the channel, the final flush) is
    // part of the record: the accounting invariants hold at the session's end, not at an
    // arbitrary event in the middle of a burst.
    while let Some(ev) = events.recv().await {
        record(&mut seen, ev);
    }
    let stats = handle.finish().await.unwrap();
    (seen, stats)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_300_frames_of_the_echo_cine_at_30_fps_arrive_without_loss_and_bit_exact() {
    let keys = keys();
    let source = LiveSource::new(Transport::TcpListen(loopback())).unwrap();
    let addr = source.local_addr().unwrap();
    let (_stop, sim) = start_sim(
        SimTarget::TcpConnect(addr),
        Faults::default(),
        Some(300),
        echo_input(),
        Some(keys.key.clone()),
    );
    let (seen, stats) = host(keys.secure(source), Duration::from_secs(30), |s| {
        s.frames.len() >= 300
    })
    .await;
    let report = sim.join().unwrap();
    let security = keys.report();
    assert_eq!(security.handshakes_accepted, 1, "{security:?}");
    assert_eq!(security.audit[0].device_id.as_deref(), Some("e2e"));
    assert_eq!(security.audit[0].outcome, "accepted");
    assert_eq!(report.edge.secure_handshakes, 1);
    assert_eq!(report.edge.packets_forged + report.edge.packets_replayed, 0);
    assert_eq!(seen.frames.len(), 300, "lost: {:?}", seen.lost);
    assert!(seen.lost.is_empty(), "{:?}", seen.lost);
    assert_cine_exact(&echo(), &seen);
    assert_eq!(stats.resyncs, 0);
    assert_eq!(
        stats.dropped_at_edge,
        u64::from(report.edge.dropped_no_credit)
    );
    assert!(
        stats.clock_offset_us.is_some(),
        "the clock offset was estimated"
    );
}

#[test]
fn pty_300_frames_of_the_echo_cine_at_30_fps_arrive_without_loss_and_bit_exact() {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let pty = nix::pty::openpty(None, None).unwrap();
    // Raw from the start, so that nothing the edge sends is echoed or translated before the
    // host opens its side (which sets raw mode too).
    let mut termios = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut termios);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).unwrap();
    let path = nix::unistd::ttyname(&pty.slave).unwrap();
    let master = std::fs::File::from(pty.master);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = keys();
    let (seen, stats) = runtime.block_on(async {
        let source = LiveSource::new(Transport::Serial {
            path: path.clone(),
            baud: 115_200,
        })
        .unwrap();
        let (_stop, sim) = start_sim(
            SimTarget::File(master),
            Faults::default(),
            Some(300),
            echo_input(),
            Some(keys.key.clone()),
        );
        let out = host(keys.secure(source), Duration::from_secs(30), |s| {
            s.frames.len() >= 300
        })
        .await;
        sim.join().unwrap();
        out
    });
    drop(pty.slave);
    assert_eq!(keys.report().handshakes_accepted, 1);
    assert_eq!(seen.frames.len(), 300, "lost: {:?}", seen.lost);
    assert!(seen.lost.is_empty(), "{:?}", seen.lost);
    assert_cine_exact(&echo(), &seen);
    assert_eq!(stats.resyncs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_link_loses_frames_visibly_delivers_nothing_corrupt_and_keeps_going() {
    let keys = keys();
    let source = LiveSource::new(Transport::TcpListen(loopback())).unwrap();
    let addr = source.local_addr().unwrap();
    let faults = Faults {
        bit_error_rate: 1e-5,
        byte_drop_rate: 1e-6,
        seed: 7,
    };
    // Small frames (3 KB, one packet each) as fast as credit allows: at 1e-5 per bit about one
    // frame in five is hit.
    let small = SourceInfo {
        width: 64,
        height: 48,
        format: PixelFormat::Gray8,
        fps_milli: 0,
    };
    let (stop, sim) = start_sim(
        SimTarget::TcpConnect(addr),
        faults,
        None,
        SimInput::Pattern(small),
        Some(keys.key.clone()),
    );
    let (seen, _stats) = host(keys.secure(source), Duration::from_secs(20), |s| {
        s.frames.len() >= 500 && s.lost.len() >= 20
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let report = sim.join().unwrap();
    assert!(report.faults.flipped_bits > 0);
    assert!(!seen.lost.is_empty(), "faults must cost frames");
    assert!(seen.frames.len() >= 500, "{} frames", seen.frames.len());
    assert_bit_exact(&small, &seen);
    // Damage is caught below the session, by the secure layer's CRC check (or, where the CRC
    // misses it, by the tag): the session sees only packets that opened.
    let security = keys.report();
    assert!(security.packets_damaged > 0, "{security:?}");
    // Every frame of the session up to the last one told is accounted for, once.
    let told =
        seen.frames.len() as u64 + seen.lost.iter().map(|l| u64::from(l.frames())).sum::<u64>();
    let last_seq = seen
        .frames
        .iter()
        .map(|f| f.1)
        .chain(seen.lost.iter().map(|l| l.seq + l.frames() - 1))
        .max()
        .unwrap();
    assert_eq!(seen.sessions.len(), 1, "one session throughout");
    assert_eq!(told, u64::from(last_seq) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_edge_restarts_recover_without_waiting_for_the_timeout() {
    // Host restart: the first host stops, a new one listens on the same port. The edge sees
    // the connection end, reconnects, and is told at once that the new host has no session
    // with it: it never needs its liveness timeout (which would count a link loss).
    let keys = keys();
    let source = LiveSource::new(Transport::TcpListen(loopback())).unwrap();
    let addr = source.local_addr().unwrap();
    let (sim_stop, sim) = start_sim(
        SimTarget::TcpConnect(addr),
        Faults::default(),
        None,
        echo_input(),
        Some(keys.key.clone()),
    );
    let (first, _) = host(keys.secure(source), Duration::from_secs(30), |s| {
        s.frames.len() >= 10
    })
    .await;
    assert!(first.frames.len() >= 10);
    let source = LiveSource::new(Transport::TcpListen(addr)).unwrap();
    let (second, _) = host(keys.secure(source), Duration::from_secs(30), |s| {
        s.frames.len() >= 10
    })
    .await;
    sim_stop.store(true, Ordering::Relaxed);
    let report = sim.join().unwrap();
    assert!(second.frames.len() >= 10, "frames after the host restart");
    assert!(report.edge.sessions >= 2, "{:?}", report.edge);
    assert_eq!(
        report.edge.link_timeouts, 0,
        "the edge waited for its timeout"
    );
    assert_ne!(first.sessions.first(), second.sessions.first());

    // Edge restart: the first simulator ends after 10 frames and closes its connection; a
    // new one connects. The host learns of it from the end of the stream, not from silence.
    let source = LiveSource::new(Transport::TcpListen(loopback())).unwrap();
    let addr = source.local_addr().unwrap();
    let host_task = tokio::spawn(host(keys.secure(source), Duration::from_secs(30), |s| {
        s.frames_per_session.len() >= 2 && s.frames_per_session[1] >= 10
    }));
    let (_stop1, sim1) = start_sim(
        SimTarget::TcpConnect(addr),
        Faults::default(),
        Some(10),
        echo_input(),
        Some(keys.key.clone()),
    );
    sim1.join().unwrap();
    let (stop2, sim2) = start_sim(
        SimTarget::TcpConnect(addr),
        Faults::default(),
        None,
        echo_input(),
        Some(keys.key.clone()),
    );
    let (seen, _) = host_task.await.unwrap();
    stop2.store(true, Ordering::Relaxed);
    sim2.join().unwrap();
    assert_eq!(seen.sessions.len(), 2);
    assert_eq!(seen.frames_per_session[0], 10, "{:?}", seen.lost);
    assert_eq!(
        seen.disconnects.first().map(String::as_str),
        Some("the edge closed the link")
    );
    assert_cine_exact(&echo(), &seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_with_a_key_the_host_does_not_hold_never_reaches_the_pipeline() {
    let keys = keys();
    let source = LiveSource::new(Transport::TcpListen(loopback())).unwrap();
    let addr = source.local_addr().unwrap();
    let (stop, sim) = start_sim(
        SimTarget::TcpConnect(addr),
        Faults::default(),
        None,
        echo_input(),
        Some(LinkKey::new([0x5a; 32])),
    );
    let dinoedge::link::Link { mut events, handle } = dinoedge::link::spawn(
        keys.secure(source),
        LinkConfig::default(),
        Instant::now(),
        8,
    );
    // Woken at each audit entry until the address is refused for its failures.
    let changed = keys.security.changed.clone();
    let refused = async {
        while !refused_then_limited(&keys.report()) {
            changed.notified().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), refused)
        .await
        .unwrap_or_else(|_| panic!("{:?}", keys.report()));
    handle.stop();
    let mut frames = 0;
    while let Some(ev) = events.recv().await {
        if let LinkEvent::Frame(_) | LinkEvent::SessionStarted { .. } = ev {
            frames += 1;
        }
    }
    handle.finish().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let edge = sim.join().unwrap();
    let security = keys.report();
    assert_eq!(frames, 0, "nothing reached the pipeline");
    assert_eq!(security.handshakes_accepted, 0);
    assert!(security.audit.iter().all(|e| e.outcome == "refused"));
    assert_eq!(edge.edge.frames_sent, 0);
    assert_eq!(edge.edge.secure_handshakes, 0);
    assert!(edge.edge.secure_rejects >= 3, "{:?}", edge.edge);
}

/// The refusals name the unknown key three times, then the address is rate-limited.
fn refused_then_limited(security: &SecurityReport) -> bool {
    security
        .handshakes_refused
        .get("unknown_key")
        .copied()
        .unwrap_or(0)
        >= 3
        && security.handshakes_refused.contains_key("rate_limited")
}
