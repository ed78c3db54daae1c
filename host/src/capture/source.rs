//! The capture stage: buffers from a device (or recorded ones) become the pipeline's frames,
//! stamped at capture, numbered, counted. [`FrameMaker`] does the work without I/O or clock;
//! [`spawn`] runs it on a thread of its own against a [`BufferSource`] and presents the result
//! to the pipeline as a [`Link`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dinoedge_proto::reassembly::Frame;
use dinoedge_proto::{FrameMeta, FrameStart};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::CaptureLoss;
use super::device::DeviceError;
use super::format::{Layout, convert};
use crate::link::{Link, LinkEvent, LinkHandle, LinkStats, OutgoingResult, ReceivedFrame};

/// How long the capture thread waits for a buffer before it looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);

/// How far after its dequeue a driver's timestamp may seem to lie and still be taken: the
/// pipeline's clock and `CLOCK_MONOTONIC` are aligned once, to within a few microseconds.
pub const ALIGNMENT_SLACK_US: u64 = 100;

/// Results the pipeline may queue (there is no edge to send them to; they are taken at once).
const RESULT_QUEUE: usize = 64;

/// When the driver says a buffer was captured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// On `CLOCK_MONOTONIC` (`V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC`).
    Monotonic(Duration),
    /// Not said, or on another clock (`V4L2_BUF_FLAG_TIMESTAMP_COPY`, unknown).
    Unknown,
}

/// One filled buffer, as the driver handed it back.
#[derive(Debug, Clone, Copy)]
pub struct RawBuffer<'a> {
    /// Its bytes (`bytesused` of them).
    pub data: &'a [u8],
    /// The driver's frame counter.
    pub sequence: u32,
    /// The driver's timestamp.
    pub timestamp: Timestamp,
    /// Whether the driver flagged the data as damaged (`V4L2_BUF_FLAG_ERROR`).
    pub driver_error: bool,
}

/// What [`BufferSource::next`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A buffer; it goes back to the driver at [`BufferSource::release`] or the next call.
    Buffer(RawBuffer<'a>),
    /// Nothing within the timeout.
    Timeout,
    /// The source has no more (recorded buffers played out).
    End,
}

/// Where buffers come from: a [`super::Device`], or [`RecordedBuffers`].
pub trait BufferSource: Send {
    /// The negotiated layout of every buffer.
    fn layout(&self) -> Layout;

    /// What it is, for logs and reports.
    fn describe(&self) -> String;

    /// Waits up to `timeout` for the next filled buffer (starting the stream on the first
    /// call, and giving back the buffer handed out before, if still held).
    fn next(&mut self, timeout: Duration) -> Result<Next<'_>, DeviceError>;

    /// Gives the buffer handed out last back to the driver.
    fn release(&mut self) -> Result<(), DeviceError>;
}

/// Where a frame's capture time came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampSource {
    /// The driver's `CLOCK_MONOTONIC` timestamp, moved onto the pipeline's clock.
    Driver,
    /// The moment the buffer was dequeued (the driver's timestamp was absent, on another
    /// clock, or after the dequeue).
    Dequeue,
}

/// The pipeline's clock (microseconds since its epoch, an [`Instant`]) against
/// `CLOCK_MONOTONIC`, which is the clock of [`Instant`] on Linux and of V4L2's monotonic
/// timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureClock {
    /// `CLOCK_MONOTONIC` at the pipeline's epoch, microseconds; `None` where it could not be
    /// read (then every frame is stamped at its dequeue).
    pub epoch_monotonic_us: Option<u64>,
}

impl CaptureClock {
    /// Reads `CLOCK_MONOTONIC` and places `epoch` on it: the reading between two looks at
    /// the pipeline's clock, the closest of a few pairs, so the two agree to a microsecond or
    /// so.
    pub fn at(epoch: Instant) -> Self {
        let monotonic_ns = || {
            let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
            let s = u64::try_from(t.tv_sec()).ok()?;
            let ns = u64::try_from(t.tv_nsec()).ok()?;
            s.checked_mul(1_000_000_000)?.checked_add(ns)
        };
        let mut best: Option<(u128, u64)> = None;
        for _ in 0..5 {
            let before = epoch.elapsed().as_nanos();
            let Some(mono) = monotonic_ns() else {
                break;
            };
            let after = epoch.elapsed().as_nanos();
            let window = after - before;
            if best.is_none_or(|(w, _)| window < w) {
                let middle = u64::try_from(before + window / 2).unwrap_or(u64::MAX);
                best = Some((window, mono.saturating_sub(middle)));
            }
        }
        CaptureClock {
            epoch_monotonic_us: best.map(|(_, ns)| ns / 1000),
        }
    }

    /// The capture time of a buffer dequeued at `dequeued_us` (pipeline clock): the driver's
    /// monotonic timestamp where there is one that lies between the epoch and the dequeue
    /// (up to [`ALIGNMENT_SLACK_US`] after it, the two clocks' disagreement, counts as at the
    /// dequeue), else the dequeue itself.
    pub fn stamp(&self, timestamp: Timestamp, dequeued_us: u64) -> (u64, StampSource) {
        if let (Timestamp::Monotonic(t), Some(epoch)) = (timestamp, self.epoch_monotonic_us)
            && !t.is_zero()
            && let Some(us) = (t.as_micros() as u64).checked_sub(epoch)
            && us <= dequeued_us.saturating_add(ALIGNMENT_SLACK_US)
        {
            return (us.min(dequeued_us), StampSource::Driver);
        }
        (dequeued_us, StampSource::Dequeue)
    }
}

/// What a capture counted, in the run's report (`capture`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// The device and its format, as set.
    pub device: String,
    /// Buffers the driver handed back.
    pub buffers: u64,
    /// Bytes in them.
    pub bytes: u64,
    /// Frames handed to the pipeline.
    pub frames: u64,
    /// Frames made after the pipeline had stopped taking them (the run was ending): not lost
    /// on the way, but not processed either.
    pub undelivered: u64,
    /// Buffers that did not become frames, by [`CaptureLoss::name`].
    pub lost: BTreeMap<String, u64>,
    /// Frames the driver numbered but never handed back (gaps in its sequence: no free
    /// buffer), where the driver numbers them so.
    pub skipped_by_driver: u64,
    /// Frames stamped with the driver's timestamp.
    pub stamped_by_driver: u64,
    /// Frames stamped at their dequeue.
    pub stamped_at_dequeue: u64,
    /// Why the capture ended early, if it did (the device went away).
    pub error: Option<String>,
}

impl CaptureStats {
    /// All buffers lost.
    pub fn lost_total(&self) -> u64 {
        self.lost.values().sum()
    }

    /// One line for the run's summary.
    pub fn summary_line(&self) -> String {
        format!(
            "capture {}: {} buffers, {} frames to the pipeline, {} made as the run stopped, {} \
             lost{}, {} skipped by the driver (counted as dropped at the edge); stamped by the \
             driver {}, at dequeue {}{}",
            self.device,
            self.buffers,
            self.frames,
            self.undelivered,
            self.lost_total(),
            crate::pipeline::counts_by_name(&self.lost),
            self.skipped_by_driver,
            self.stamped_by_driver,
            self.stamped_at_dequeue,
            self.error
                .as_ref()
                .map(|e| format!("; ended early: {e}"))
                .unwrap_or_default()
        )
    }

    fn count(&mut self, loss: CaptureLoss) {
        *self.lost.entry(loss.name().to_owned()).or_default() += 1;
    }

    /// The same counts as a link's, for the pipeline's live status and report: frames
    /// received, losses by name, and frames skipped by the driver as dropped at the source.
    pub fn link_view(&self) -> LinkStats {
        LinkStats {
            connected: self.error.is_none(),
            bytes: self.bytes,
            frames_received: self.frames,
            frames_lost: self.lost.clone(),
            dropped_at_edge: self.skipped_by_driver,
            ..LinkStats::default()
        }
    }
}

/// Turns buffers into frames: converts, stamps, numbers and counts them. No I/O, no clock:
/// the caller says when each buffer was dequeued.
#[derive(Debug)]
pub struct FrameMaker {
    layout: Layout,
    clock: CaptureClock,
    session_id: u32,
    last_sequence: Option<u32>,
    stats: CaptureStats,
}

impl FrameMaker {
    /// A maker for buffers of `layout`, described as `device`; its frames belong to
    /// `session_id`.
    pub fn new(layout: Layout, device: String, clock: CaptureClock, session_id: u32) -> Self {
        FrameMaker {
            layout,
            clock,
            session_id,
            last_sequence: None,
            stats: CaptureStats {
                device,
                ..CaptureStats::default()
            },
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> &CaptureStats {
        &self.stats
    }

    /// The frame made last could not be handed on: the pipeline had stopped taking frames.
    pub fn undelivered(&mut self) {
        self.stats.frames = self.stats.frames.saturating_sub(1);
        self.stats.undelivered += 1;
    }

    /// Why the capture ended early.
    pub fn ended(&mut self, error: String) {
        self.stats.error = Some(error);
    }

    /// The frame in `raw`, dequeued at `dequeued_us` on the pipeline's clock, or why there is
    /// none (counted either way).
    pub fn take(
        &mut self,
        raw: &RawBuffer<'_>,
        dequeued_us: u64,
    ) -> Result<ReceivedFrame, CaptureLoss> {
        self.stats.buffers += 1;
        self.stats.bytes += raw.data.len() as u64;
        if let Some(last) = self.last_sequence {
            let gap = raw.sequence.wrapping_sub(last.wrapping_add(1));
            // A sequence that went back (a restarted stream) is no gap.
            if gap < u32::MAX / 2 {
                self.stats.skipped_by_driver += u64::from(gap);
            }
        }
        self.last_sequence = Some(raw.sequence);
        let made = if raw.driver_error {
            Err(CaptureLoss::DriverError)
        } else {
            convert(&self.layout, raw.data).map_err(|e| {
                tracing::debug!(error = %e, sequence = raw.sequence, "capture buffer lost");
                e.loss()
            })
        };
        let converted = match made {
            Ok(c) => c,
            Err(loss) => {
                self.stats.count(loss);
                return Err(loss);
            }
        };
        let (capture_us, source) = self.clock.stamp(raw.timestamp, dequeued_us);
        match source {
            StampSource::Driver => self.stats.stamped_by_driver += 1,
            StampSource::Dequeue => self.stats.stamped_at_dequeue += 1,
        }
        self.stats.frames += 1;
        let total_len = converted.data.len() as u32;
        Ok(ReceivedFrame {
            frame: Box::new(Frame {
                start: FrameStart {
                    seq: raw.sequence,
                    capture_us,
                    width: converted.width,
                    height: converted.height,
                    format: converted.format,
                    total_len,
                    frame_crc: None,
                    dropped_at_source: u32::try_from(self.stats.skipped_by_driver)
                        .unwrap_or(u32::MAX),
                    meta: FrameMeta::default(),
                },
                crc: crc32fast::hash(&converted.data),
                data: converted.data,
                first_us: dequeued_us,
                last_us: dequeued_us,
            }),
            session_id: self.session_id,
            received_us: dequeued_us,
            capture_host_us: Some(capture_us),
        })
    }
}

/// Recorded buffers played as a device would hand them out, for tests and for checking a
/// conversion on buffers saved from a real device.
#[derive(Debug, Clone)]
pub struct RecordedBuffers {
    layout: Layout,
    buffers: VecDeque<(RawMeta, Vec<u8>)>,
    held: Option<(RawMeta, Vec<u8>)>,
    stamp_now: bool,
}

/// A recorded buffer's driver fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawMeta {
    sequence: u32,
    timestamp: Timestamp,
    driver_error: bool,
}

impl RecordedBuffers {
    /// No buffers yet, of `layout`.
    pub fn new(layout: Layout) -> Self {
        RecordedBuffers {
            layout,
            buffers: VecDeque::new(),
            held: None,
            stamp_now: false,
        }
    }

    /// Stamps each buffer with `CLOCK_MONOTONIC` as it is handed out, as a driver stamps at
    /// the end of the frame.
    #[must_use]
    pub fn stamped_when_handed_out(mut self) -> Self {
        self.stamp_now = true;
        self
    }

    /// Adds a buffer with the driver's `sequence`, `timestamp` and error flag.
    pub fn push(&mut self, data: Vec<u8>, sequence: u32, timestamp: Timestamp, driver_error: bool) {
        self.buffers.push_back((
            RawMeta {
                sequence,
                timestamp,
                driver_error,
            },
            data,
        ));
    }
}

impl BufferSource for RecordedBuffers {
    fn layout(&self) -> Layout {
        self.layout
    }

    fn describe(&self) -> String {
        format!("recorded v4l2 buffers: {}", self.layout)
    }

    fn next(&mut self, _timeout: Duration) -> Result<Next<'_>, DeviceError> {
        let Some((mut meta, data)) = self.buffers.pop_front() else {
            self.held = None;
            return Ok(Next::End);
        };
        if self.stamp_now
            && let Ok(t) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        {
            meta.timestamp = Timestamp::Monotonic(Duration::from(t));
        }
        let (meta, data) = self.held.insert((meta, data));
        Ok(Next::Buffer(RawBuffer {
            data,
            sequence: meta.sequence,
            timestamp: meta.timestamp,
            driver_error: meta.driver_error,
        }))
    }

    fn release(&mut self) -> Result<(), DeviceError> {
        self.held = None;
        Ok(())
    }
}

/// A running capture: the link the pipeline reads, and the capture's own counts.
pub struct Capture {
    /// Frames as a link's events; counters, stop and results as a link's handle.
    pub link: Link,
    /// The capture's counts, updated with every buffer.
    pub stats: watch::Receiver<CaptureStats>,
}

/// Starts capturing from `source` on a thread of its own, on the current tokio runtime;
/// `epoch` is time zero of the pipeline's clock; `capacity` is how many frames wait for the
/// pipeline at most (a full queue holds the capture thread back, and the driver then skips
/// frames, counted). Results the pipeline queues are taken and dropped: no edge waits for
/// them.
pub fn spawn(source: Box<dyn BufferSource>, epoch: Instant, capacity: usize) -> Capture {
    let (events_tx, events) = mpsc::channel(capacity.max(1));
    let (handle, stats) = spawn_into(source, epoch, events_tx);
    Capture {
        link: Link { events, handle },
        stats,
    }
}

/// [`spawn`], with the frames sent into `events`, a queue the caller may share with another
/// sender (the edge's controls, `crate::controls`); the capture's counts come with the handle.
pub fn spawn_into(
    source: Box<dyn BufferSource>,
    epoch: Instant,
    events_tx: mpsc::Sender<LinkEvent>,
) -> (LinkHandle, watch::Receiver<CaptureStats>) {
    let (results_tx, results_rx) = mpsc::channel::<OutgoingResult>(RESULT_QUEUE);
    let (link_stats_tx, link_stats) = watch::channel(LinkStats::default());
    let (stats_tx, stats) = watch::channel(CaptureStats {
        device: source.describe(),
        ..CaptureStats::default()
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let maker = FrameMaker::new(
        source.layout(),
        source.describe(),
        CaptureClock::at(epoch),
        1,
    );
    let thread = CaptureThread {
        source,
        maker,
        events: events_tx,
        stop: stop.clone(),
        epoch,
        link_stats: link_stats_tx,
        stats: stats_tx,
    };
    let started = std::thread::Builder::new()
        .name("capture".into())
        .spawn(move || {
            let last = thread.run();
            let _ = done_tx.send(last);
        });
    let spawn_error = started
        .err()
        .map(|e| format!("starting the capture thread: {e}"));
    let task = tokio::spawn(watch_capture(
        stop,
        stop_rx,
        results_rx,
        done_rx,
        link_stats.clone(),
        spawn_error,
    ));
    (
        LinkHandle::from_parts(results_tx, link_stats, stop_tx, task),
        stats,
    )
}

/// The capture's side of the link handle: passes a stop on to the thread, takes the
/// pipeline's results, and ends with the thread, returning its counts as a link's.
async fn watch_capture(
    stop: Arc<AtomicBool>,
    mut stop_rx: watch::Receiver<bool>,
    mut results: mpsc::Receiver<OutgoingResult>,
    mut done: oneshot::Receiver<LinkStats>,
    last: watch::Receiver<LinkStats>,
    spawn_error: Option<String>,
) -> LinkStats {
    if let Some(e) = spawn_error {
        tracing::error!("{e}");
        return last.borrow().clone();
    }
    let mut stopping = false;
    let mut results_open = true;
    loop {
        tokio::select! {
            finished = &mut done => {
                // A panicked thread sent nothing: its last published counts stand.
                return finished.unwrap_or_else(|_| last.borrow().clone());
            }
            changed = stop_rx.changed(), if !stopping => {
                if changed.is_err() || *stop_rx.borrow() {
                    stopping = true;
                    stop.store(true, Ordering::Relaxed);
                }
            }
            result = results.recv(), if results_open => {
                // No edge to answer: the caller has the result already.
                if result.is_none() {
                    results_open = false;
                }
            }
        }
    }
}

/// The capture thread: buffers in, frames out, until told to stop, the source ends or fails,
/// or the pipeline stops listening.
struct CaptureThread {
    source: Box<dyn BufferSource>,
    maker: FrameMaker,
    events: mpsc::Sender<LinkEvent>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    link_stats: watch::Sender<LinkStats>,
    stats: watch::Sender<CaptureStats>,
}

impl CaptureThread {
    fn publish(&self) {
        self.link_stats.send_replace(self.maker.stats().link_view());
        self.stats.send_replace(self.maker.stats().clone());
    }

    fn run(mut self) -> LinkStats {
        tracing::info!(source = %self.source.describe(), "capturing");
        while !self.stop.load(Ordering::Relaxed) {
            let made = match self.source.next(POLL) {
                Err(e) => {
                    tracing::error!(error = %e, "capture ended");
                    self.maker.ended(e.to_string());
                    break;
                }
                Ok(Next::End) => break,
                Ok(Next::Timeout) => continue,
                Ok(Next::Buffer(raw)) => {
                    let now = self.epoch.elapsed().as_micros() as u64;
                    self.maker.take(&raw, now)
                }
            };
            // The bytes are copied out: the driver may fill the buffer again while the frame
            // waits for the pipeline.
            if let Err(e) = self.source.release() {
                tracing::error!(error = %e, "capture ended");
                self.maker.ended(e.to_string());
            }
            if let Ok(frame) = made
                && self.events.blocking_send(LinkEvent::Frame(frame)).is_err()
            {
                self.maker.undelivered();
                self.publish();
                break;
            }
            self.publish();
            if self.maker.stats().error.is_some() {
                break;
            }
        }
        self.publish();
        self.maker.stats().link_view()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::capture::CaptureFormat;
    use dinoedge_proto::PixelFormat;

    const EPOCH: u64 = 5_000_000;

    fn clock() -> CaptureClock {
        CaptureClock {
            epoch_monotonic_us: Some(EPOCH),
        }
    }

    fn mono(us: u64) -> Timestamp {
        Timestamp::Monotonic(Duration::from_micros(us))
    }

    #[test]
    fn driver_timestamps_move_onto_the_pipeline_clock_when_plausible() {
        let c = clock();
        assert_eq!(
            c.stamp(mono(EPOCH + 1_000), 1_500),
            (1_000, StampSource::Driver)
        );
        // Within the clocks' disagreement of the dequeue: at the dequeue.
        assert_eq!(
            c.stamp(mono(EPOCH + 1_550), 1_500),
            (1_500, StampSource::Driver)
        );
        // After the dequeue, before the epoch, zero, or on another clock: the dequeue time.
        assert_eq!(
            c.stamp(mono(EPOCH + 2_000), 1_500),
            (1_500, StampSource::Dequeue)
        );
        assert_eq!(
            c.stamp(mono(EPOCH - 1), 1_500),
            (1_500, StampSource::Dequeue)
        );
        assert_eq!(c.stamp(mono(0), 1_500), (1_500, StampSource::Dequeue));
        assert_eq!(
            c.stamp(Timestamp::Unknown, 1_500),
            (1_500, StampSource::Dequeue)
        );
        let unknown = CaptureClock {
            epoch_monotonic_us: None,
        };
        assert_eq!(unknown.stamp(mono(EPOCH + 1), 9), (9, StampSource::Dequeue));
    }

    #[test]
    fn the_clock_is_the_one_instants_use() {
        // Instant is CLOCK_MONOTONIC on Linux: a timestamp read now maps to about now.
        let epoch = Instant::now() - Duration::from_millis(250);
        let c = CaptureClock::at(epoch);
        let before = epoch.elapsed().as_micros() as u64;
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).unwrap();
        let after = epoch.elapsed().as_micros() as u64;
        let (us, source) = c.stamp(Timestamp::Monotonic(Duration::from(t)), u64::MAX);
        assert_eq!(source, StampSource::Driver);
        // Between the two looks at the pipeline's clock, give or take rounding to microseconds.
        assert!(
            us + 2 >= before && us <= after + 2,
            "{before} <= {us} <= {after}"
        );
    }

    #[test]
    fn the_maker_counts_every_buffer_once_with_its_reason() {
        let layout = Layout::packed(CaptureFormat::Grey, 4, 2);
        let mut m = FrameMaker::new(layout, "test".into(), clock(), 7);
        let raw = |sequence, data: &'static [u8], driver_error| RawBuffer {
            data,
            sequence,
            timestamp: mono(EPOCH + 100 * u64::from(sequence)),
            driver_error,
        };
        let f = m.take(&raw(0, &[1; 8], false), 50).unwrap();
        assert_eq!(
            (f.session_id, f.received_us, f.capture_host_us),
            (7, 50, Some(0))
        );
        assert_eq!(f.frame.start.format, PixelFormat::Gray8);
        assert_eq!(f.frame.crc, crc32fast::hash(&[1; 8]));
        assert_eq!(
            m.take(&raw(1, &[1; 8], true), 150).unwrap_err(),
            CaptureLoss::DriverError
        );
        assert_eq!(
            m.take(&raw(2, &[1; 7], false), 250).unwrap_err(),
            CaptureLoss::ShortBuffer
        );
        // Frames 3 and 4 never came back from the driver.
        let f = m.take(&raw(5, &[2; 9], false), 550).unwrap();
        assert_eq!((f.frame.start.seq, f.frame.start.dropped_at_source), (5, 2));
        assert_eq!(f.frame.data, [2; 8]);
        // Stamped at dequeue: its timestamp lies after the dequeue.
        let late = m.take(&raw(6, &[3; 8], false), 10).unwrap();
        assert_eq!(late.capture_host_us, Some(10));
        m.undelivered();
        let s = m.stats();
        assert_eq!((s.buffers, s.frames, s.skipped_by_driver), (5, 2, 2));
        assert_eq!((s.stamped_by_driver, s.stamped_at_dequeue), (2, 1));
        assert_eq!(s.bytes, 8 * 3 + 7 + 9);
        assert_eq!(
            s.lost,
            BTreeMap::from([
                ("CaptureDriverError".to_owned(), 1),
                ("CaptureShortBuffer".to_owned(), 1),
            ])
        );
        // Buffers in = frames out + lost + made too late.
        assert_eq!(s.buffers, s.frames + s.lost_total() + s.undelivered);
        let view = s.link_view();
        assert_eq!(
            (
                view.frames_received,
                view.lost_total(),
                view.dropped_at_edge
            ),
            (2, 2, 2)
        );
    }

    #[test]
    fn a_restarted_sequence_is_not_a_gap() {
        let mut m = FrameMaker::new(
            Layout::packed(CaptureFormat::Grey, 1, 1),
            String::new(),
            clock(),
            1,
        );
        for seq in [100, 101, 0, 1] {
            let raw = RawBuffer {
                data: &[0],
                sequence: seq,
                timestamp: Timestamp::Unknown,
                driver_error: false,
            };
            m.take(&raw, 1).unwrap();
        }
        assert_eq!(m.stats().skipped_by_driver, 0);
    }

    #[test]
    fn spawned_capture_hands_every_frame_to_the_link_and_ends_with_the_source() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let layout = Layout::packed(CaptureFormat::Grey, 2, 2);
        let mut buffers = RecordedBuffers::new(layout).stamped_when_handed_out();
        for seq in 0..5u32 {
            let data = if seq == 3 {
                vec![0; 3]
            } else {
                vec![seq as u8; 4]
            };
            buffers.push(data, seq, Timestamp::Unknown, false);
        }
        let epoch = Instant::now();
        let capture = {
            let _guard = rt.enter();
            spawn(Box::new(buffers), epoch, 1)
        };
        let mut events = capture.link.events;
        let mut seqs = Vec::new();
        while let Some(event) = rt.block_on(events.recv()) {
            if let LinkEvent::Frame(f) = event {
                assert!(f.capture_host_us.unwrap() <= f.received_us);
                seqs.push(f.frame.start.seq);
            }
        }
        assert_eq!(seqs, [0, 1, 2, 4]);
        let view = rt.block_on(capture.link.handle.finish()).unwrap();
        assert_eq!(view.frames_received, 4);
        assert_eq!(view.frames_lost.get("CaptureShortBuffer"), Some(&1));
        let stats = capture.stats.borrow().clone();
        assert_eq!((stats.stamped_by_driver, stats.stamped_at_dequeue), (4, 0));
        assert_eq!(stats.error, None);
    }
}
