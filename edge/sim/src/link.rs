//! The link on Linux: an embedded-io adapter over a std byte stream (a serial device or a TCP
//! socket), with a reader thread so that `read_ready` never blocks, and faults on demand on the
//! bytes the edge sends.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::{Duration, Instant};

/// Faults to inject on what the edge sends.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Probability that each bit sent is flipped.
    pub bit_error_rate: f64,
    /// Probability that each byte sent is dropped.
    pub byte_drop_rate: f64,
    /// Seed of the fault generator.
    pub seed: u64,
}

/// Why the link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The stream failed or closed.
    #[error("link: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the stream.
    #[error("the host closed the link")]
    Closed,
}

impl embedded_io::Error for LinkError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::BrokenPipe
    }
}

/// Counts of injected faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Bits flipped.
    pub flipped_bits: u64,
    /// Bytes dropped.
    pub dropped_bytes: u64,
}

/// An embedded-io link over a std stream.
pub struct StreamLink {
    rx: Receiver<std::io::Result<Vec<u8>>>,
    pending: VecDeque<u8>,
    closed: bool,
    /// Packets go to a writer thread, so that a peer that stops reading (a full pseudo-terminal)
    /// makes writes time out instead of blocking the edge forever.
    tx: SyncSender<Vec<u8>>,
    /// Set by the writer thread when the stream failed.
    write_failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    faults: Faults,
    rng: u64,
    counts: FaultCounts,
    /// Bytes written: the simulator's throughput.
    pub bytes_written: u64,
}

impl StreamLink {
    /// Wraps a stream given as its two halves (e.g. a socket and its `try_clone`).
    pub fn new(
        mut reader: Box<dyn Read + Send>,
        mut writer: Box<dyn Write + Send>,
        faults: Faults,
    ) -> Self {
        let (wtx, wrx) = mpsc::sync_channel::<Vec<u8>>(64);
        let write_failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let failed = write_failed.clone();
        std::thread::spawn(move || {
            for bytes in wrx {
                if writer
                    .write_all(&bytes)
                    .and_then(|()| writer.flush())
                    .is_err()
                {
                    failed.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Ok(Vec::new()));
                        break;
                    }
                    Ok(n) => {
                        if tx.send(Ok(buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    // Serial ports time out when idle; that is not an error.
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
            }
        });
        let rng = faults.seed | 1;
        StreamLink {
            rx,
            pending: VecDeque::new(),
            closed: false,
            tx: wtx,
            write_failed,
            faults,
            rng,
            counts: FaultCounts::default(),
            bytes_written: 0,
        }
    }

    /// Faults injected so far.
    pub fn fault_counts(&self) -> FaultCounts {
        self.counts
    }

    fn fill(&mut self) -> Result<(), LinkError> {
        loop {
            match self.rx.try_recv() {
                Ok(Ok(bytes)) if bytes.is_empty() => self.closed = true,
                Ok(Ok(bytes)) => self.pending.extend(bytes),
                Ok(Err(e)) => return Err(LinkError::Io(e)),
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return Ok(());
                }
            }
        }
    }

    fn unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl embedded_io::ErrorType for StreamLink {
    type Error = LinkError;
}

impl embedded_io::ReadReady for StreamLink {
    fn read_ready(&mut self) -> Result<bool, LinkError> {
        self.fill()?;
        if self.pending.is_empty() && self.closed {
            return Err(LinkError::Closed);
        }
        Ok(!self.pending.is_empty())
    }
}

impl embedded_io::Read for StreamLink {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        self.fill()?;
        let n = buf.len().min(self.pending.len());
        for (slot, byte) in buf.iter_mut().zip(self.pending.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl embedded_io::Write for StreamLink {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        if self.closed || self.write_failed.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(LinkError::Closed);
        }
        let mut out = Vec::with_capacity(buf.len());
        let noisy = self.faults.bit_error_rate > 0.0 || self.faults.byte_drop_rate > 0.0;
        for &byte in buf {
            if !noisy {
                out.push(byte);
                continue;
            }
            if self.faults.byte_drop_rate > 0.0 && self.unit() < self.faults.byte_drop_rate {
                self.counts.dropped_bytes += 1;
                continue;
            }
            let mut b = byte;
            // One draw per byte: P(some bit flips) ~ 8 * rate for small rates.
            if self.faults.bit_error_rate > 0.0 && self.unit() < self.faults.bit_error_rate * 8.0 {
                b ^= 1 << (self.rng >> 61);
                self.counts.flipped_bits += 1;
            }
            out.push(b);
        }
        let started = Instant::now();
        loop {
            match self.tx.try_send(out) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if started.elapsed() < WRITE_TIMEOUT => {
                    out = back;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err(TrySendError::Full(_)) => {
                    return Err(LinkError::Io(std::io::ErrorKind::TimedOut.into()));
                }
                Err(TrySendError::Disconnected(_)) => return Err(LinkError::Closed),
            }
        }
        self.bytes_written += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        // The writer thread flushes after every packet.
        Ok(())
    }
}

/// A clock over `Instant`, in microseconds since the simulator started.
#[derive(Debug, Clone, Copy)]
pub struct StdClock(pub Instant);

impl dinoedge_edge::port::Clock for StdClock {
    fn now_us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A write that cannot be queued for this long fails: the host stopped reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the simulator sleeps when a step found nothing to do.
pub const IDLE_SLEEP: Duration = Duration::from_micros(200);
