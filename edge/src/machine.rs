//! The edge's state machine: handshake, streaming under credit, liveness, results, events.
//!
//! ```text
//!  boot ─► Handshake ──Welcome──► Session ──link lost (timeout, I/O error, host Error,
//!            ▲  │ Hello every 0.5 s,   │     new Welcome) ─┐
//!            │  │ backing off to 2 s   │                    │
//!            │  └──Reject: wait 2 s    ├─ frame captured: credit? start it : drop and count
//!            └─────────────────────────┴─ one packet per step: chunk, FrameEnd, Heartbeat, Pong
//! ```
//!
//! On a secure link ([`Edge::secured`]) a Noise handshake comes first: `SecureHello` until a
//! `SecureWelcome` proves the host holds the key, then every packet, `Hello` first, is sealed;
//! a clear packet from the host, a forged one or a replayed one is dropped and counted, so a
//! result that did not come from the host never moves the alarm output (PROTOCOL.md §6.7).
//!
//! A session lost to a timeout, an I/O error or a host `Error` is remembered (its id and the
//! next `seq` it would have used) and told in every following `Hello` as
//! [`Hello::previous`], so that the host can report the frames that vanished with the
//! connection; the first `Hello` after boot has none.
//!
//! A host that captures the video itself (PROTOCOL.md §6.8) grants no credit: the machine then
//! drops every frame its source gives and serves only its buttons, pedal and alarm, with no
//! change here.
//!
//! [`Edge::step`] does a bounded amount of work and never blocks on the source: call it in the
//! main loop (or from a timer) as often as the link can take packets.

use dinoedge_proto::credit::CreditWindow;
use dinoedge_proto::secure::{
    Channel, Initiator, LinkKey, NOISE_LEN, OpenError, SEAL_OVERHEAD, ephemeral_secret,
};
use dinoedge_proto::wire::{self, Decoder, FrameCrc};
use dinoedge_proto::{
    Capabilities, ErrorCode, Event, EventKind, FrameChunk, FrameEnd, FrameStart, Heartbeat, Hello,
    MIN_PACKET, Message, PROTOCOL_VERSION, Ping, Pong, PreviousSession, SecureHello, Sensor,
    Version, Welcome,
};
use embedded_hal::digital::{InputPin, OutputPin};
use embedded_io::{Read, ReadReady, Write};

use crate::buffers::EdgeBuffers;
use crate::port::{Clock, FrameSource};

/// When the alarm output goes up, besides a result's alarm flags.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(all(feature = "defmt", target_os = "none"), derive(defmt::Format))]
pub struct AlarmRule {
    /// The class whose score counts; `None` for any class in the top-k.
    pub class: Option<u16>,
    /// The score at or above which the alarm goes up; above 1.0 to disable.
    pub min_score: f32,
}

/// The edge's fixed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    /// The unit's id, sent in `Hello`.
    pub device_id: heapless::String<{ dinoedge_proto::MAX_ID }>,
    /// The firmware's version.
    pub firmware_version: Version,
    /// First `Hello` retry interval; it doubles up to 2 s.
    pub hello_retry_us: u64,
    /// Interval between heartbeats in a session.
    pub heartbeat_us: u64,
    /// A session with nothing valid from the host for this long is lost (at exactly this
    /// long, not a microsecond later).
    pub link_timeout_us: u64,
    /// When results raise the alarm output.
    pub alarm: AlarmRule,
}

impl Default for EdgeConfig {
    /// Retry 0.5 s, heartbeat 1 s, link lost after 3 s (PROTOCOL.md §6), alarm at a score of
    /// 0.5 for any class.
    fn default() -> Self {
        EdgeConfig {
            device_id: heapless::String::new(),
            firmware_version: Version {
                major: 0,
                minor: 1,
                patch: 0,
            },
            hello_retry_us: 500_000,
            heartbeat_us: 1_000_000,
            link_timeout_us: 3_000_000,
            alarm: AlarmRule {
                class: None,
                min_score: 0.5,
            },
        }
    }
}

/// Counts since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(all(feature = "defmt", target_os = "none"), derive(defmt::Format))]
pub struct EdgeStats {
    /// Frames streamed completely.
    pub frames_sent: u32,
    /// Frames dropped at the source for lack of credit (this session: in `FrameStart`).
    pub dropped_no_credit: u32,
    /// Frames dropped because no session was up.
    pub dropped_no_session: u32,
    /// Packets written to the link.
    pub packets_sent: u32,
    /// Valid packets received.
    pub packets_received: u32,
    /// Damaged packets received and discarded.
    pub packets_rejected: u32,
    /// Sessions begun.
    pub sessions: u32,
    /// Sessions lost (timeout, I/O error, host restart).
    pub link_losses: u32,
    /// Of those, sessions lost because nothing came from the host for the link timeout.
    pub link_timeouts: u32,
    /// `Reject`s received.
    pub rejects: u32,
    /// Source errors (the frame in progress was abandoned).
    pub source_errors: u32,
    /// Secure handshakes completed (the host proved it holds the key).
    pub secure_handshakes: u32,
    /// `SecureWelcome`s that did not verify (a host without the key, or a stale answer).
    pub handshake_failures: u32,
    /// `SecureReject`s received.
    pub secure_rejects: u32,
    /// Sealed packets whose tag did not verify (forged or altered), dropped.
    pub packets_forged: u32,
    /// Sealed packets already received or too far behind (replayed), dropped.
    pub packets_replayed: u32,
    /// Clear packets on a secure link (a downgrade or a forgery), dropped.
    pub packets_clear_refused: u32,
    /// `Result`s acted on (in a session; the newest sets the alarm output).
    pub results_received: u32,
}

/// What a secure edge holds: its key and the seed its handshake secrets are derived from.
#[derive(Debug, Clone)]
pub struct EdgeSecurity {
    /// The pre-shared key (from the key block in flash).
    pub key: LinkKey,
    /// Never the same on two boots: the chip's unique id and a boot counter advanced in
    /// flash before the first handshake, or 32 bytes from a hardware RNG
    /// ([`ephemeral_secret`] says why).
    pub boot_seed: [u8; 32],
}

/// Where the edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(all(feature = "defmt", target_os = "none"), derive(defmt::Format))]
pub enum Phase {
    /// Sending `Hello` until a `Welcome` comes.
    Handshake,
    /// Streaming.
    Session {
        /// The host's session id.
        session_id: u32,
    },
}

/// What went wrong in a step; the machine has already recovered (e.g. returned to the
/// handshake) and the next step goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError<LE, SE> {
    /// The link failed to read or write.
    Link(LE),
    /// The frame source failed; the frame in progress was abandoned.
    Source(SE),
    /// A pin failed.
    Pin,
}

/// The peripherals the machine drives.
#[derive(Debug)]
pub struct Peripherals<L, S, C, A, F, P> {
    /// The link: UART, USB CDC-ACM, a socket in the simulator.
    pub link: L,
    /// The capture peripheral.
    pub source: S,
    /// The monotonic clock.
    pub clock: C,
    /// The alarm output.
    pub alarm: A,
    /// The freeze button.
    pub freeze: F,
    /// The foot switch.
    pub foot_switch: P,
}

/// An input that never changes, for boards without a freeze button or foot switch.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoInput;

impl embedded_hal::digital::ErrorType for NoInput {
    type Error = core::convert::Infallible;
}

impl InputPin for NoInput {
    fn is_high(&mut self) -> Result<bool, Self::Error> {
        Ok(false)
    }

    fn is_low(&mut self) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[derive(Debug)]
struct Sending {
    seq: u32,
    offset: u32,
    total: u32,
    crc: FrameCrc,
}

#[derive(Debug)]
struct Session {
    id: u32,
    max_packet: usize,
    credit: CreditWindow,
    next_seq: u32,
    dropped: u32,
    frames_sent: u32,
    sending: Option<Sending>,
    next_heartbeat_us: u64,
}

#[derive(Debug)]
enum State {
    Handshake { next_hello_us: u64, tries: u32 },
    Session(Session),
}

/// A message from the host, reduced to what the edge acts on (so that the receive buffer is
/// free again before acting).
enum Incoming {
    SecureWelcome([u8; NOISE_LEN]),
    SecureReject,
    Welcome(Welcome),
    Reject,
    Credit(dinoedge_proto::Credit),
    Ping(Ping),
    Alarm(bool),
    HostError(ErrorCode),
    Ignored,
}

/// The edge; see the module documentation.
pub struct Edge<'b, L, S, C, A, F, P> {
    io: Peripherals<L, S, C, A, F, P>,
    config: EdgeConfig,
    state: State,
    decoder: Decoder<&'b mut [u8]>,
    tx: &'b mut [u8],
    chunk: &'b mut [u8],
    secure: Option<Secure<'b>>,
    max_packet_tx: usize,
    max_packet_rx: usize,
    last_rx_us: u64,
    /// The last session lost, told in each `Hello` until it is replaced by the next one lost.
    previous: Option<PreviousSession>,
    alarm_on: bool,
    buttons: (bool, bool),
    stats: EdgeStats,
}

/// The secure link's state: the key, the handshake in flight, the session's channel.
struct Secure<'b> {
    security: EdgeSecurity,
    /// Handshakes started since boot: each gets a secret of its own.
    attempts: u32,
    initiator: Option<Initiator>,
    channel: Option<Channel>,
    seal: &'b mut [u8],
    open: &'b mut [u8],
}

type StepResult<L, S> =
    Result<(), EdgeError<<L as embedded_io::ErrorType>::Error, <S as FrameSource>::Error>>;

impl<'b, L, S, C, A, F, P> Edge<'b, L, S, C, A, F, P>
where
    L: Read + ReadReady + Write,
    S: FrameSource,
    C: Clock,
    A: OutputPin,
    F: InputPin,
    P: InputPin,
{
    /// An edge on a clear link (a physically private serial or USB link whose host is
    /// configured for the clear), working in `buffers`, starting its handshake at the first
    /// step.
    pub fn new<const TX: usize, const RX: usize, const CHUNK: usize>(
        io: Peripherals<L, S, C, A, F, P>,
        config: EdgeConfig,
        buffers: &'b mut EdgeBuffers<TX, RX, CHUNK>,
    ) -> Self {
        Self::with_security(io, config, None, buffers)
    }

    /// An edge on a secure link under `security`'s key: it announces packets
    /// [`SEAL_OVERHEAD`] bytes smaller than its buffers take (size them with
    /// [`sealed`](crate::buffers::sealed)).
    pub fn new_secure<const TX: usize, const RX: usize, const CHUNK: usize>(
        io: Peripherals<L, S, C, A, F, P>,
        config: EdgeConfig,
        security: EdgeSecurity,
        buffers: &'b mut EdgeBuffers<TX, RX, CHUNK>,
    ) -> Self {
        Self::with_security(io, config, Some(security), buffers)
    }

    fn with_security<const TX: usize, const RX: usize, const CHUNK: usize>(
        io: Peripherals<L, S, C, A, F, P>,
        config: EdgeConfig,
        security: Option<EdgeSecurity>,
        buffers: &'b mut EdgeBuffers<TX, RX, CHUNK>,
    ) -> Self {
        let now = io.clock.now_us();
        let overhead = if security.is_some() { SEAL_OVERHEAD } else { 0 };
        let secure = security.map(|security| Secure {
            security,
            attempts: 0,
            initiator: None,
            channel: None,
            seal: &mut buffers.seal[..],
            open: &mut buffers.open[..],
        });
        Edge {
            io,
            config,
            state: State::Handshake {
                next_hello_us: now,
                tries: 0,
            },
            decoder: Decoder::new(&mut buffers.rx[..]),
            tx: &mut buffers.tx[..],
            chunk: &mut buffers.chunk[..],
            secure,
            max_packet_tx: EdgeBuffers::<TX, RX, CHUNK>::max_packet_tx().saturating_sub(overhead),
            max_packet_rx: EdgeBuffers::<TX, RX, CHUNK>::max_packet_rx().saturating_sub(overhead),
            last_rx_us: now,
            previous: None,
            alarm_on: false,
            buttons: (false, false),
            stats: EdgeStats::default(),
        }
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Handshake { .. } => Phase::Handshake,
            State::Session(s) => Phase::Session { session_id: s.id },
        }
    }

    /// The last session lost since boot, as the next `Hello` tells it.
    pub fn previous_session(&self) -> Option<PreviousSession> {
        self.previous
    }

    /// Counts since boot.
    pub fn stats(&self) -> &EdgeStats {
        &self.stats
    }

    /// Whether the link is secure and its handshake done (the session's packets are sealed).
    pub fn is_sealed(&self) -> bool {
        self.secure.as_ref().is_some_and(|s| s.channel.is_some())
    }

    /// Whether the alarm output is raised.
    pub fn alarm_raised(&self) -> bool {
        self.alarm_on
    }

    /// The peripherals (e.g. to inspect them in tests).
    pub fn peripherals(&self) -> &Peripherals<L, S, C, A, F, P> {
        &self.io
    }

    /// The peripherals, mutably.
    pub fn peripherals_mut(&mut self) -> &mut Peripherals<L, S, C, A, F, P> {
        &mut self.io
    }

    /// One round of work: read what the host sent, run timers, check the buttons, and send at
    /// most one packet of the frame in progress. Returns whether anything was sent or received
    /// (a caller with nothing else to do may sleep when not). On error the machine has already
    /// recovered.
    pub fn step(&mut self) -> Result<bool, EdgeError<L::Error, S::Error>> {
        let before = self.activity();
        self.step_inner()?;
        Ok(self.activity() != before)
    }

    fn activity(&self) -> (u32, u32, u32) {
        (
            self.stats.packets_sent,
            self.stats.packets_received,
            self.stats.packets_rejected,
        )
    }

    fn step_inner(&mut self) -> StepResult<L, S> {
        let now = self.io.clock.now_us();
        let result = self
            .receive(now)
            .and_then(|()| self.timers(now))
            .and_then(|()| self.buttons(now))
            .and_then(|()| self.stream(now));
        if let Err(e) = &result {
            match e {
                EdgeError::Link(_) => {
                    warn!("link error; restarting the handshake");
                    self.lose_link(now);
                }
                EdgeError::Source(_) => {
                    self.stats.source_errors += 1;
                    if let State::Session(s) = &mut self.state {
                        // The host sees the frame end early and reports it lost.
                        s.sending = None;
                    }
                }
                EdgeError::Pin => {}
            }
        }
        result
    }

    /// Drains the link's ready bytes through the decoder and acts on each message.
    fn receive(&mut self, now: u64) -> StepResult<L, S> {
        let mut scratch = [0u8; 64];
        // Bounded: at most this many reads per step, so streaming goes on under a flood.
        for _ in 0..64 {
            if !self.io.link.read_ready().map_err(EdgeError::Link)? {
                break;
            }
            let n = self.io.link.read(&mut scratch).map_err(EdgeError::Link)?;
            let mut input = scratch.get(..n).unwrap_or_default();
            while let Some(result) = self.decoder.push(&mut input) {
                let msg = match result.and_then(|_| self.decoder.message()) {
                    Ok(msg) => msg,
                    Err(_) => {
                        self.stats.packets_rejected += 1;
                        continue;
                    }
                };
                let Some(incoming) = unseal(
                    &msg,
                    self.secure.as_mut(),
                    &self.config.alarm,
                    &mut self.stats,
                ) else {
                    continue;
                };
                self.stats.packets_received += 1;
                self.last_rx_us = now;
                self.act(incoming, now)?;
            }
            if n == 0 {
                break;
            }
        }
        Ok(())
    }

    fn act(&mut self, incoming: Incoming, now: u64) -> StepResult<L, S> {
        match (incoming, &mut self.state) {
            (
                Incoming::SecureWelcome(noise),
                State::Handshake {
                    next_hello_us,
                    tries,
                },
            ) => {
                let Some(secure) = &mut self.secure else {
                    return Ok(());
                };
                let Some(initiator) = secure.initiator.take() else {
                    return Ok(());
                };
                match initiator.finish(&noise) {
                    Ok(channel) => {
                        secure.channel = Some(channel);
                        self.stats.secure_handshakes += 1;
                        info!("secure link established");
                        // The sealed Hello goes out at once.
                        *next_hello_us = now;
                        *tries = 0;
                        self.timers(now)
                    }
                    Err(_) => {
                        self.stats.handshake_failures += 1;
                        warn!("SecureWelcome did not verify; ignored");
                        Ok(())
                    }
                }
            }
            (Incoming::SecureReject, State::Handshake { next_hello_us, .. }) => {
                self.stats.secure_rejects += 1;
                warn!("host refused the secure handshake");
                *next_hello_us = now + 2_000_000;
                Ok(())
            }
            (Incoming::Welcome(w), State::Handshake { .. }) => self.begin_session(&w, now),
            (Incoming::Welcome(w), State::Session(s)) if w.session_id != s.id => {
                // The host restarted and answered an old Hello: a new session.
                info!("new session from the host");
                self.begin_session(&w, now)
            }
            (Incoming::Reject, State::Handshake { next_hello_us, .. }) => {
                self.stats.rejects += 1;
                warn!("host rejected this edge");
                *next_hello_us = now + 2_000_000;
                Ok(())
            }
            (Incoming::Credit(c), State::Session(s)) => {
                s.credit.grant(c);
                Ok(())
            }
            (Incoming::Ping(p), State::Session(s)) => {
                let pong = Message::Pong(Pong {
                    id: p.id,
                    ping_sent_us: p.sent_us,
                    received_us: now,
                });
                let max = s.max_packet;
                self.send(&pong, max)
            }
            (Incoming::Alarm(raise), State::Session(_)) => {
                self.stats.results_received = self.stats.results_received.wrapping_add(1);
                self.set_alarm(raise)
            }
            (Incoming::HostError(ErrorCode::Protocol), State::Session(_)) => {
                // The host has no session with us (it restarted): start again at once.
                self.lose_link(now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn begin_session(&mut self, w: &Welcome, now: u64) -> StepResult<L, S> {
        let to_host = usize::try_from(w.max_packet_to_host).unwrap_or(usize::MAX);
        if w.protocol_version != PROTOCOL_VERSION || to_host < MIN_PACKET {
            warn!("unusable Welcome ignored");
            return Ok(());
        }
        if let State::Session(s) = &self.state
            && s.sending.is_some()
        {
            self.io.source.skip().map_err(EdgeError::Source)?;
        }
        self.stats.sessions += 1;
        info!("session begins");
        self.state = State::Session(Session {
            id: w.session_id,
            max_packet: to_host.min(self.max_packet_tx),
            credit: CreditWindow::new(w.initial_credits),
            next_seq: 0,
            dropped: 0,
            frames_sent: 0,
            sending: None,
            next_heartbeat_us: now,
        });
        Ok(())
    }

    /// Back to the handshake: the frame in progress is abandoned, the alarm lowered (its
    /// results are stale) and the session remembered for the next `Hello`.
    fn lose_link(&mut self, now: u64) {
        if let State::Session(s) = &self.state {
            self.stats.link_losses += 1;
            // Frames up to `next_seq` were started, the one in progress included.
            self.previous = Some(PreviousSession {
                session_id: s.id,
                next_seq: s.next_seq,
            });
            if s.sending.is_some() {
                let _ = self.io.source.skip();
            }
        }
        self.state = State::Handshake {
            next_hello_us: now,
            tries: 0,
        };
        if let Some(secure) = &mut self.secure {
            // The next session needs a new handshake: its keys die with this one.
            secure.channel = None;
            secure.initiator = None;
        }
        self.decoder.reset();
        let _ = self.set_alarm(false);
    }

    fn timers(&mut self, now: u64) -> StepResult<L, S> {
        match &mut self.state {
            State::Handshake {
                next_hello_us,
                tries,
            } => {
                if now < *next_hello_us {
                    return Ok(());
                }
                let backoff = self.config.hello_retry_us << (*tries).min(8);
                *next_hello_us = now + backoff.min(2_000_000);
                *tries += 1;
                if let Some(secure) = &mut self.secure {
                    // A channel the host no longer answers on (it restarted and lost its
                    // keys) is given up like a session, for a new handshake.
                    if secure.channel.is_some()
                        && now.saturating_sub(self.last_rx_us) >= self.config.link_timeout_us
                    {
                        warn!("no answer on the secure channel; new handshake");
                        secure.channel = None;
                    }
                    if secure.channel.is_none() {
                        return send_secure_hello(
                            &mut self.io.link,
                            self.tx,
                            secure,
                            &mut self.stats,
                        );
                    }
                }
                let info = self.io.source.info();
                let hello = Message::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    device_id: self.config.device_id.clone(),
                    firmware_version: self.config.firmware_version,
                    sensor: Sensor {
                        width: info.width,
                        height: info.height,
                        format: info.format,
                        fps_milli: info.fps_milli,
                    },
                    max_packet_tx: self.max_packet_tx as u32,
                    max_packet_rx: self.max_packet_rx as u32,
                    capabilities: Capabilities::EVENTS
                        .with(Capabilities::ALARM_OUTPUT)
                        .with(Capabilities::CRC_AT_END),
                    previous: self.previous,
                });
                // A lone delimiter first ends whatever partial packet the host holds.
                self.io
                    .link
                    .write_all(&[wire::DELIMITER])
                    .map_err(EdgeError::Link)?;
                self.send(&hello, MIN_PACKET)
            }
            State::Session(s) => {
                if now.saturating_sub(self.last_rx_us) >= self.config.link_timeout_us {
                    warn!("nothing from the host; link lost");
                    self.stats.link_timeouts += 1;
                    self.lose_link(now);
                    return Ok(());
                }
                if now < s.next_heartbeat_us {
                    return Ok(());
                }
                s.next_heartbeat_us = now + self.config.heartbeat_us;
                let beat = Message::Heartbeat(Heartbeat {
                    now_us: now,
                    frames_sent: s.frames_sent,
                    dropped_at_source: s.dropped,
                    packets_received: self.stats.packets_received,
                    packets_rejected: self.stats.packets_rejected,
                });
                let max = s.max_packet;
                self.send(&beat, max)
            }
        }
    }

    fn buttons(&mut self, now: u64) -> StepResult<L, S> {
        let freeze = self.io.freeze.is_high().map_err(|_| EdgeError::Pin)?;
        let foot = self.io.foot_switch.is_high().map_err(|_| EdgeError::Pin)?;
        let (was_freeze, was_foot) = self.buttons;
        self.buttons = (freeze, foot);
        let State::Session(s) = &self.state else {
            return Ok(());
        };
        let max = s.max_packet;
        let changes = [
            (freeze != was_freeze).then_some(if freeze {
                EventKind::FreezePressed
            } else {
                EventKind::FreezeReleased
            }),
            (foot != was_foot).then_some(if foot {
                EventKind::FootSwitchPressed
            } else {
                EventKind::FootSwitchReleased
            }),
        ];
        for kind in changes.into_iter().flatten() {
            self.send(&Message::Event(Event { at_us: now, kind }), max)?;
        }
        Ok(())
    }

    /// Sends at most one packet of a frame: its start, a chunk, or its end; or drops a newly
    /// captured frame that has no credit.
    fn stream(&mut self, now: u64) -> StepResult<L, S> {
        let State::Session(s) = &mut self.state else {
            // No session: keep the source flowing, so the newest frame is there when one begins.
            if self
                .io
                .source
                .poll_frame(now)
                .map_err(EdgeError::Source)?
                .is_some()
            {
                self.io.source.skip().map_err(EdgeError::Source)?;
                self.stats.dropped_no_session += 1;
            }
            return Ok(());
        };
        let max = s.max_packet;
        let Some(sending) = &mut s.sending else {
            let Some(frame) = self.io.source.poll_frame(now).map_err(EdgeError::Source)? else {
                return Ok(());
            };
            if !s.credit.may_start(s.next_seq) {
                // Latest frame wins: drop this one now rather than queue it.
                self.io.source.skip().map_err(EdgeError::Source)?;
                s.dropped += 1;
                self.stats.dropped_no_credit += 1;
                debug!("frame dropped: no credit");
                return Ok(());
            }
            let info = self.io.source.info();
            let seq = s.next_seq;
            s.next_seq = seq.wrapping_add(1);
            s.sending = Some(Sending {
                seq,
                offset: 0,
                total: info.frame_len(),
                crc: FrameCrc::new(),
            });
            let start = Message::FrameStart(FrameStart {
                seq,
                capture_us: frame.capture_us.unwrap_or(now),
                width: info.width,
                height: info.height,
                format: info.format,
                total_len: info.frame_len(),
                frame_crc: None,
                dropped_at_source: s.dropped,
                meta: frame.meta,
            });
            return self.send(&start, max);
        };
        if sending.offset == sending.total {
            let end = Message::FrameEnd(FrameEnd {
                seq: sending.seq,
                frame_crc: sending.crc.value(),
            });
            s.sending = None;
            // Counted once its end is handed to the link: a frame whose end could not be
            // written was not sent.
            self.send(&end, max)?;
            if let State::Session(s) = &mut self.state {
                s.frames_sent += 1;
            }
            self.stats.frames_sent += 1;
            return Ok(());
        }
        let room = wire::chunk_capacity(max).min(self.chunk.len());
        let want = ((sending.total - sending.offset) as usize).min(room);
        let piece = self.chunk.get_mut(..want).unwrap_or_default();
        let n = self.io.source.read(piece).map_err(EdgeError::Source)?;
        let data = piece.get(..n).unwrap_or_default();
        if n == 0 {
            // The source ended the frame early: end it; the host reports it incomplete.
            let end = FrameEnd {
                seq: sending.seq,
                frame_crc: sending.crc.value(),
            };
            s.sending = None;
            self.stats.source_errors += 1;
            return send_packet(
                &mut self.io.link,
                self.tx,
                self.secure.as_mut(),
                max,
                &Message::FrameEnd(end),
                &mut self.stats,
            );
        }
        sending.crc.update(data);
        let chunk = Message::FrameChunk(FrameChunk {
            seq: sending.seq,
            offset: sending.offset,
            data,
        });
        sending.offset += n as u32;
        send_packet(
            &mut self.io.link,
            self.tx,
            self.secure.as_mut(),
            max,
            &chunk,
            &mut self.stats,
        )
    }

    fn set_alarm(&mut self, raise: bool) -> StepResult<L, S> {
        if raise == self.alarm_on {
            return Ok(());
        }
        self.alarm_on = raise;
        if raise {
            self.io.alarm.set_high().map_err(|_| EdgeError::Pin)
        } else {
            self.io.alarm.set_low().map_err(|_| EdgeError::Pin)
        }
    }

    fn send(&mut self, msg: &Message<'_>, max_packet: usize) -> StepResult<L, S> {
        send_packet(
            &mut self.io.link,
            self.tx,
            self.secure.as_mut(),
            max_packet,
            msg,
            &mut self.stats,
        )
    }
}

/// Encodes `msg` into `tx` (sealed, once a secure link has its channel) and writes it; a free
/// function so that a chunk borrowed from the edge's chunk buffer can be sent while the edge
/// is borrowed. `max_packet` is the session's packet size; sealing adds its overhead.
fn send_packet<L: Write, SE>(
    link: &mut L,
    tx: &mut [u8],
    secure: Option<&mut Secure<'_>>,
    max_packet: usize,
    msg: &Message<'_>,
    stats: &mut EdgeStats,
) -> Result<(), EdgeError<L::Error, SE>> {
    // Our own messages always fit the buffers they were sized for; if one does not, it is
    // dropped and counted rather than sent cut short.
    let bytes = match secure {
        None => wire::encode_limited(msg, max_packet, tx).ok(),
        Some(Secure {
            channel: Some(channel),
            seal,
            ..
        }) => channel
            .seal_message(msg, max_packet + SEAL_OVERHEAD, seal, tx)
            .ok(),
        // A secure link without its channel sends nothing but its handshake.
        Some(_) => return Ok(()),
    };
    let Some(bytes) = bytes else {
        warn!("packet does not fit; not sent");
        return Ok(());
    };
    link.write_all(bytes).map_err(EdgeError::Link)?;
    stats.packets_sent += 1;
    Ok(())
}

/// Starts a new secure handshake (a fresh ephemeral secret) and sends its `SecureHello`.
fn send_secure_hello<L: Write, SE>(
    link: &mut L,
    tx: &mut [u8],
    secure: &mut Secure<'_>,
    stats: &mut EdgeStats,
) -> Result<(), EdgeError<L::Error, SE>> {
    let attempt = secure.attempts;
    secure.attempts = secure.attempts.wrapping_add(1);
    let key = &secure.security.key;
    let secret = ephemeral_secret(key, &secure.security.boot_seed, attempt);
    let mut noise = [0u8; NOISE_LEN];
    let Ok(initiator) = Initiator::start(key, PROTOCOL_VERSION, secret, &mut noise) else {
        warn!("secure handshake could not start");
        return Ok(());
    };
    secure.initiator = Some(initiator);
    let hello = Message::SecureHello(SecureHello {
        protocol_version: PROTOCOL_VERSION,
        key_id: key.id().0,
        noise: &noise,
    });
    // A lone delimiter first ends whatever partial packet the host holds.
    link.write_all(&[wire::DELIMITER])
        .map_err(EdgeError::Link)?;
    send_packet(link, tx, None, MIN_PACKET, &hello, stats)
}

/// What a packet from the host means to this edge: on a secure link only the handshake's
/// answers come in the clear and everything else must open under the session's channel;
/// what does not is counted and dropped (`None`).
fn unseal(
    msg: &Message<'_>,
    secure: Option<&mut Secure<'_>>,
    rule: &AlarmRule,
    stats: &mut EdgeStats,
) -> Option<Incoming> {
    let Some(secure) = secure else {
        return Some(classify(msg, rule));
    };
    match msg {
        Message::SecureWelcome(w) => {
            let mut noise = [0u8; NOISE_LEN];
            if w.noise.len() != NOISE_LEN {
                stats.handshake_failures += 1;
                return None;
            }
            noise.copy_from_slice(w.noise);
            Some(Incoming::SecureWelcome(noise))
        }
        Message::SecureReject(_) => Some(Incoming::SecureReject),
        Message::Sealed(sealed) => {
            let channel = secure.channel.as_mut()?;
            match channel.open_message(sealed, secure.open) {
                Ok(inner) => Some(classify(&inner, rule)),
                Err(OpenError::Replayed { .. } | OpenError::TooOld { .. }) => {
                    stats.packets_replayed += 1;
                    warn!("replayed packet dropped");
                    None
                }
                Err(_) => {
                    stats.packets_forged += 1;
                    warn!("packet failed authentication; dropped");
                    None
                }
            }
        }
        _ => {
            stats.packets_clear_refused += 1;
            None
        }
    }
}

/// Reduces a host message to what the edge acts on.
fn classify(msg: &Message<'_>, rule: &AlarmRule) -> Incoming {
    match msg {
        Message::Welcome(w) => Incoming::Welcome(w.clone()),
        Message::Reject(_) => Incoming::Reject,
        Message::Credit(c) => Incoming::Credit(*c),
        Message::Ping(p) => Incoming::Ping(*p),
        Message::Result(r) => {
            let by_score = r.top_k.iter().any(|c| {
                rule.class.is_none_or(|class| class == c.class) && c.score >= rule.min_score
            });
            Incoming::Alarm(r.alarms.any() || by_score)
        }
        Message::Error(e) => Incoming::HostError(e.code),
        _ => Incoming::Ignored,
    }
}
