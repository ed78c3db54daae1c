//! The dinoedge firmware core, running on Linux: the very [`Edge`] state machine of
//! `dinoedge-edge`, fed from a test pattern or recorded frames, talking to the host over a
//! serial device (e.g. one end of a pseudo-terminal pair) or TCP, with faults on demand.

pub mod link;
pub mod source;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dinoedge_edge::buffers::{EdgeBuffers, chunk_len, rx_len, tx_len};
use dinoedge_edge::machine::{
    Edge, EdgeConfig, EdgeError, EdgeSecurity, EdgeStats, Peripherals, Phase,
};
use dinoedge_edge::port::{FrameSource, NewFrame, SourceInfo};
use dinoedge_edge::source::TestPattern;
use dinoedge_proto::secure::LinkKey;

use link::{FaultCounts, Faults, LinkError, StdClock, StreamLink};
use source::FrameList;

/// Largest packet the simulator sends.
pub const SIM_PACKET_TX: usize = 64 * 1024;
/// Largest packet the simulator receives.
pub const SIM_PACKET_RX: usize = 4 * 1024;

type SimBuffers =
    EdgeBuffers<{ tx_len(SIM_PACKET_TX) }, { rx_len(SIM_PACKET_RX) }, { chunk_len(SIM_PACKET_TX) }>;

/// Where the frames come from.
#[derive(Debug)]
pub enum SimInput {
    /// The built-in moving pattern.
    Pattern(SourceInfo),
    /// Recorded frames, Gray8.
    Frames(FrameList),
}

/// How the simulator reaches the host.
#[derive(Debug)]
pub enum SimTarget {
    /// A stream the caller opened, e.g. the master side of a pseudo-terminal pair whose other
    /// side the host opens as a serial device; a lost link reuses it.
    File(std::fs::File),
    /// A serial device (or pseudo-terminal) path.
    Serial {
        /// The device.
        path: PathBuf,
        /// Baud rate.
        baud: u32,
    },
    /// Connect to a host listening on TCP.
    TcpConnect(SocketAddr),
    /// Listen for the host on TCP.
    TcpListen(SocketAddr),
}

/// What to simulate.
#[derive(Debug)]
pub struct SimConfig {
    /// The frames.
    pub input: SimInput,
    /// The link.
    pub target: SimTarget,
    /// Faults on what the edge sends.
    pub faults: Faults,
    /// Stop sending and reading for a while: (after how long, for how long).
    pub pause: Option<(Duration, Duration)>,
    /// Drop the connection once, after this long, and reconnect.
    pub disconnect_at: Option<Duration>,
    /// Stop after this many frames were sent.
    pub max_frames: Option<u32>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The unit's id in `Hello`.
    pub device_id: heapless::String<{ dinoedge_proto::MAX_ID }>,
    /// The link key, for a secure link; `None` for the clear.
    pub key: Option<LinkKey>,
    /// The freeze button and the foot switch, pressed by whoever holds a clone.
    pub controls: SimControls,
}

impl SimConfig {
    /// `input` over `target`: no faults, pauses or disconnection, no limit on frames or time,
    /// the unit `sim-0001` in the clear, its buttons up.
    pub fn new(input: SimInput, target: SimTarget) -> Self {
        SimConfig {
            input,
            target,
            faults: Faults::default(),
            pause: None,
            disconnect_at: None,
            max_frames: None,
            duration: None,
            device_id: heapless::String::try_from("sim-0001").unwrap_or_default(),
            key: None,
            controls: SimControls::default(),
        }
    }
}

/// The simulated unit's buttons: the caller presses them (sets a flag) and the edge sends
/// the change as an `Event`.
#[derive(Debug, Clone, Default)]
pub struct SimControls {
    /// The freeze button, down while `true`.
    pub freeze: Arc<AtomicBool>,
    /// The foot switch, down while `true`.
    pub foot_switch: Arc<AtomicBool>,
    /// `Result`s the edge has acted on so far (its alarm output follows the newest); stored
    /// after [`alarm`](Self::alarm), with `Release`: load it with `Acquire`, then the alarm.
    pub results_seen: Arc<AtomicU32>,
    /// The alarm output's level now.
    pub alarm: Arc<AtomicBool>,
}

/// A button whose level another thread sets.
#[derive(Debug, Clone, Default)]
pub struct SharedButton(pub Arc<AtomicBool>);

impl embedded_hal::digital::ErrorType for SharedButton {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::InputPin for SharedButton {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(self.0.load(Ordering::Relaxed))
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.0.load(Ordering::Relaxed))
    }
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimReport {
    /// The edge's counters.
    pub edge: EdgeStats,
    /// Faults injected.
    pub faults: FaultCounts,
    /// Bytes written to the link.
    pub bytes_written: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// Connections opened.
    pub connections: u32,
}

/// Why the simulator stopped early.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The link could not be opened.
    #[error("opening the link: {0}")]
    Open(String),
}

/// The two kinds of source behind one type.
enum Source {
    Pattern(TestPattern),
    Frames(FrameList),
}

impl FrameSource for Source {
    type Error = std::convert::Infallible;

    fn info(&self) -> SourceInfo {
        match self {
            Source::Pattern(s) => s.info(),
            Source::Frames(s) => s.info(),
        }
    }

    fn poll_frame(&mut self, now_us: u64) -> Result<Option<NewFrame>, Self::Error> {
        match self {
            Source::Pattern(s) => s.poll_frame(now_us),
            Source::Frames(s) => s.poll_frame(now_us),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self {
            Source::Pattern(s) => s.read(buf),
            Source::Frames(s) => s.read(buf),
        }
    }

    fn skip(&mut self) -> Result<(), Self::Error> {
        match self {
            Source::Pattern(s) => s.skip(),
            Source::Frames(s) => s.skip(),
        }
    }
}

/// The alarm output on Linux: remembers its level.
#[derive(Debug, Default)]
pub struct AlarmLed(pub bool);

impl embedded_hal::digital::ErrorType for AlarmLed {
    type Error = std::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for AlarmLed {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        self.0 = false;
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        self.0 = true;
        Ok(())
    }
}

/// When the run must end: the caller's flag, or the configured duration.
struct Stopper<'a> {
    flag: &'a AtomicBool,
    deadline: Option<Instant>,
}

impl Stopper<'_> {
    fn stopped(&self) -> bool {
        self.flag.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Opens the link; a listening target accepts one connection (waiting until stopped).
fn open(
    target: &SimTarget,
    listener: Option<&TcpListener>,
    faults: &Faults,
    stop: &Stopper<'_>,
) -> Result<(StreamLink, Option<TcpStream>), SimError> {
    match target {
        SimTarget::File(file) => {
            let reader = file
                .try_clone()
                .map_err(|e| SimError::Open(e.to_string()))?;
            let writer = file
                .try_clone()
                .map_err(|e| SimError::Open(e.to_string()))?;
            Ok((
                StreamLink::new(Box::new(reader), Box::new(writer), faults.clone()),
                None,
            ))
        }
        SimTarget::Serial { path, baud } => {
            let port = serialport::new(path.to_string_lossy(), *baud)
                .timeout(Duration::from_millis(100))
                .open()
                .map_err(|e| SimError::Open(format!("{}: {e}", path.display())))?;
            let reader = port
                .try_clone()
                .map_err(|e| SimError::Open(format!("{}: {e}", path.display())))?;
            Ok((StreamLink::new(reader, port, faults.clone()), None))
        }
        SimTarget::TcpConnect(addr) => {
            let stream =
                TcpStream::connect(addr).map_err(|e| SimError::Open(format!("{addr}: {e}")))?;
            tcp_link(stream, faults)
        }
        SimTarget::TcpListen(addr) => {
            let listener = listener.ok_or_else(|| SimError::Open(format!("{addr}: not bound")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| SimError::Open(format!("{addr}: {e}")))?;
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        return tcp_link(stream, faults);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if stop.stopped() {
                            return Err(SimError::Open("stopped".into()));
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(SimError::Open(format!("{addr}: {e}"))),
                }
            }
        }
    }
}

fn tcp_link(
    stream: TcpStream,
    faults: &Faults,
) -> Result<(StreamLink, Option<TcpStream>), SimError> {
    let _ = stream.set_nodelay(true);
    let clone = |s: &TcpStream| s.try_clone().map_err(|e| SimError::Open(e.to_string()));
    let reader = clone(&stream)?;
    let closer = clone(&stream)?;
    Ok((
        StreamLink::new(Box::new(reader), Box::new(stream), faults.clone()),
        Some(closer),
    ))
}

/// Runs the simulator until `stop`, the frame limit or the duration.
pub fn run_sim(config: SimConfig, stop: &AtomicBool) -> Result<SimReport, SimError> {
    let started = Instant::now();
    let stopper = Stopper {
        flag: stop,
        deadline: config.duration.map(|d| started + d),
    };
    let stop = &stopper;
    let listener = match &config.target {
        SimTarget::TcpListen(addr) => {
            Some(TcpListener::bind(addr).map_err(|e| SimError::Open(format!("{addr}: {e}")))?)
        }
        _ => None,
    };
    let mut report = SimReport::default();
    let (link, mut closer) =
        open_retrying(&config.target, &config.faults, listener.as_ref(), stop)?;
    report.connections += 1;
    let source = match config.input {
        SimInput::Pattern(info) => Source::Pattern(TestPattern::new(info)),
        SimInput::Frames(list) => Source::Frames(list),
    };
    let edge_config = EdgeConfig {
        device_id: config.device_id.clone(),
        ..EdgeConfig::default()
    };
    let mut buffers = Box::new(SimBuffers::new());
    let peripherals = Peripherals {
        link,
        source,
        clock: StdClock(started),
        alarm: AlarmLed::default(),
        freeze: SharedButton(config.controls.freeze.clone()),
        foot_switch: SharedButton(config.controls.foot_switch.clone()),
    };
    let mut edge = match config.key.clone() {
        Some(key) => {
            // A simulator run is a boot: its handshake secrets come from a fresh seed.
            let mut boot_seed = [0u8; 32];
            getrandom::fill(&mut boot_seed)
                .map_err(|e| SimError::Open(format!("no OS entropy for the handshake: {e}")))?;
            Edge::new_secure(
                peripherals,
                edge_config,
                EdgeSecurity { key, boot_seed },
                &mut buffers,
            )
        }
        None => Edge::new(peripherals, edge_config, &mut buffers),
    };
    let mut disconnected = false;
    let mut paused = false;
    let mut bytes_before = 0u64;
    loop {
        let elapsed = started.elapsed();
        if stop.stopped()
            || config
                .max_frames
                .is_some_and(|n| edge.stats().frames_sent >= n)
            || matches!(&edge.peripherals().source, Source::Frames(f) if f.exhausted())
                && matches!(edge.phase(), Phase::Session { .. })
                && edge.stats().frames_sent > 0
        {
            break;
        }
        if let Some((at, length)) = config.pause
            && !paused
            && elapsed >= at
        {
            paused = true;
            std::thread::sleep(length);
            continue;
        }
        if let Some(at) = config.disconnect_at
            && !disconnected
            && elapsed >= at
        {
            disconnected = true;
            if let Some(c) = closer.take() {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        }
        let stepped = edge.step();
        // The alarm first: whoever reads a result count (Acquire) sees the alarm as that
        // result left it.
        config
            .controls
            .alarm
            .store(edge.alarm_raised(), Ordering::Relaxed);
        config
            .controls
            .results_seen
            .store(edge.stats().results_received, Ordering::Release);
        match stepped {
            Ok(true) => {}
            Ok(false) => std::thread::sleep(link::IDLE_SLEEP),
            Err(EdgeError::Link(LinkError::Closed | LinkError::Io(_))) => {
                // The machine is back in its handshake; give it a new connection.
                std::thread::sleep(Duration::from_millis(100));
                let reopened =
                    open_retrying(&config.target, &config.faults, listener.as_ref(), stop);
                let (link, new_closer) = match reopened {
                    Ok(opened) => opened,
                    // Asked to stop while the host was away: a normal end.
                    Err(_) if stop.stopped() => break,
                    Err(e) => return Err(e),
                };
                let old = &edge.peripherals().link;
                report.faults = add(report.faults, old.fault_counts());
                bytes_before += old.bytes_written;
                closer = new_closer;
                report.connections += 1;
                edge.peripherals_mut().link = link;
            }
            Err(_) => {}
        }
    }
    let link = &edge.peripherals().link;
    report.faults = add(report.faults, link.fault_counts());
    report.bytes_written = bytes_before + link.bytes_written;
    report.edge = *edge.stats();
    report.elapsed = started.elapsed();
    Ok(report)
}

fn add(a: FaultCounts, b: FaultCounts) -> FaultCounts {
    FaultCounts {
        flipped_bits: a.flipped_bits + b.flipped_bits,
        dropped_bytes: a.dropped_bytes + b.dropped_bytes,
    }
}

/// Opens the link, retrying every 100 ms until it opens or `stop`.
fn open_retrying(
    target: &SimTarget,
    faults: &Faults,
    listener: Option<&TcpListener>,
    stop: &Stopper<'_>,
) -> Result<(StreamLink, Option<TcpStream>), SimError> {
    loop {
        match open(target, listener, faults, stop) {
            Ok(opened) => return Ok(opened),
            Err(e) if stop.stopped() => return Err(e),
            Err(_) if !matches!(target, SimTarget::TcpListen(_)) => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}
