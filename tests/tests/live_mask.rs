//! A segmentation result crossing a live TCP link to the edge simulator: the host sends each
//! `Result` with its class mask at the configured size, the mask decodes, and the simulator
//! read it without rejecting a packet.
//!
//! The simulator reaches the host through a relay in this test that keeps a copy of every byte
//! each way. The copy of the host's bytes shows the masks; the simulator answering a `Ping`
//! that the host sent after a mask shows that it read past that mask, and its count of rejected
//! packets (zero) that it decoded it. Nothing waits on time: the test waits on conditions, with
//! a generous deadline only to turn a hang into a failure.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dinoedge::backbone::{InputSize, ModelDir};
use dinoedge::engine::EngineSetup;
use dinoedge::heads::{HeadFiles, Task};
use dinoedge::link::{LinkConfig, Transport};
use dinoedge::pipeline::{self, Input, Models, PipelineConfig, Policy};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::{SIM_PACKET_RX, SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::{Message, PixelFormat, wire};

/// Only turns a hang into a failure; the test ends as soon as its conditions hold.
const HANG_GUARD: Duration = Duration::from_secs(300);

/// Side of the mask along the frame's longer axis, in cells.
const MASK_CELLS: usize = 16;

/// The bytes each way, as the relay read them, and whether each way has ended.
#[derive(Default)]
struct Copies {
    to_edge: Vec<u8>,
    to_host: Vec<u8>,
    to_edge_ended: bool,
}

#[derive(Default)]
struct Tap {
    copies: Mutex<Copies>,
    changed: Condvar,
}

impl Tap {
    /// Waits until `done` holds for the copies; panics at the hang guard.
    fn wait_until<T>(&self, what: &str, mut done: impl FnMut(&Copies) -> Option<T>) -> T {
        let deadline = Instant::now() + HANG_GUARD;
        let mut copies = self.copies.lock().unwrap();
        loop {
            if let Some(v) = done(&copies) {
                return v;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("gave up waiting for {what}"));
            copies = self.changed.wait_timeout(copies, left).unwrap().0;
        }
    }
}

/// Copies `from` into `to`, keeping a copy of every byte read. Once `to` is gone it goes on
/// reading, so that the copy holds all that `from` sent.
fn relay(mut from: TcpStream, mut to: TcpStream, tap: Arc<Tap>, to_edge: bool) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut writing = true;
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        {
            let mut copies = tap.copies.lock().unwrap();
            if to_edge {
                copies.to_edge.extend_from_slice(&buf[..n]);
                copies.to_edge_ended |= n == 0;
            } else {
                copies.to_host.extend_from_slice(&buf[..n]);
            }
        }
        tap.changed.notify_all();
        if n == 0 {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        if writing && to.write_all(&buf[..n]).is_err() {
            writing = false;
        }
    }
}

/// A mask as it reached the edge: its size and decoded cells.
#[derive(Debug)]
struct SeenMask {
    width: u16,
    height: u16,
    cells: Vec<u8>,
}

/// What the bytes each way hold so far, decoded packet by packet.
struct Reading {
    to_edge: wire::Decoder<Vec<u8>>,
    to_edge_pos: usize,
    to_host: wire::Decoder<Vec<u8>>,
    to_host_pos: usize,
    /// Per `Result` to the edge, in order: its mask, if it had one (`Err`: it did not decode).
    results: Vec<Option<Result<SeenMask, String>>>,
    /// Ids of the pings the host sent after the first mask.
    pings_after_a_mask: BTreeSet<u32>,
    /// Ids the edge answered.
    pongs: BTreeSet<u32>,
    damaged_to_edge: u64,
}

impl Reading {
    fn new() -> Self {
        Reading {
            to_edge: wire::Decoder::new(vec![0u8; 1 << 20]),
            to_edge_pos: 0,
            to_host: wire::Decoder::new(vec![0u8; 1 << 20]),
            to_host_pos: 0,
            results: Vec::new(),
            pings_after_a_mask: BTreeSet::new(),
            pongs: BTreeSet::new(),
            damaged_to_edge: 0,
        }
    }

    fn update(&mut self, copies: &Copies) {
        let mut input = &copies.to_edge[self.to_edge_pos..];
        while let Some(kind) = self.to_edge.push(&mut input) {
            let Ok(_) = kind.and_then(|_| self.to_edge.message().map(|_| ())) else {
                self.damaged_to_edge += 1;
                continue;
            };
            match self.to_edge.message().unwrap() {
                Message::Result(r) => {
                    let mask = r.mask.map(|m| {
                        let mut cells = vec![0u8; m.cells()];
                        m.validate()
                            .and_then(|()| m.decode_into(&mut cells))
                            .map(|()| SeenMask {
                                width: m.width,
                                height: m.height,
                                cells,
                            })
                            .map_err(|e| e.to_string())
                    });
                    self.results.push(mask);
                }
                Message::Ping(p) if self.results.iter().any(Option::is_some) => {
                    self.pings_after_a_mask.insert(p.id);
                }
                _ => {}
            }
        }
        self.to_edge_pos = copies.to_edge.len();
        let mut input = &copies.to_host[self.to_host_pos..];
        while let Some(kind) = self.to_host.push(&mut input) {
            if kind.is_ok()
                && let Ok(Message::Pong(p)) = self.to_host.message()
            {
                self.pongs.insert(p.id);
            }
        }
        self.to_host_pos = copies.to_host.len();
    }

    /// A ping the host sent after a mask, answered by the edge.
    fn answered_after_a_mask(&self) -> Option<u32> {
        self.pings_after_a_mask
            .intersection(&self.pongs)
            .next()
            .copied()
    }
}

#[test]
fn a_segmentation_mask_reaches_the_edge_over_a_live_link() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/fixtures/tiny_mlp");
    let model = ModelDir::load(&dir).unwrap();
    let size = InputSize::new(64, 64);
    let head = HeadFiles::random(
        &model,
        Task::Segment,
        vec!["background".into(), "region".into()],
        size,
        7,
    );
    let models = Models::from_files(
        &model,
        &dir,
        Some(size),
        vec![(PathBuf::from("seg"), head)],
        &EngineSetup::cpu(1),
    )
    .unwrap();

    // Both listeners are bound before anyone connects: no start-up race to wait out.
    let for_host = TcpListener::bind("127.0.0.1:0").unwrap();
    let for_edge = TcpListener::bind("127.0.0.1:0").unwrap();
    let (host_side, edge_side) = (
        for_host.local_addr().unwrap(),
        for_edge.local_addr().unwrap(),
    );
    let tap = Arc::new(Tap::default());
    {
        let tap = tap.clone();
        std::thread::spawn(move || {
            let (host, _) = for_host.accept().unwrap();
            let (edge, _) = for_edge.accept().unwrap();
            // Later connections (the host reconnecting after the edge left) are refused.
            drop((for_host, for_edge));
            let (host2, edge2) = (host.try_clone().unwrap(), edge.try_clone().unwrap());
            let tap2 = tap.clone();
            std::thread::spawn(move || relay(host2, edge2, tap2, true));
            relay(edge, host, tap, false);
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let pipeline = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let config = PipelineConfig {
                policy: Policy::Live,
                workers: 1,
                mask_cells: MASK_CELLS,
                link: LinkConfig {
                    // What the simulator announces it can receive.
                    max_packet_to_edge: SIM_PACKET_RX,
                    ..LinkConfig::default()
                },
                ..PipelineConfig::default()
            };
            pipeline::run(
                &models,
                &config,
                Input::Link(Transport::TcpConnect(host_side)),
                &stop,
                |_| {},
                |_| {},
            )
            .unwrap()
        })
    };
    let sim_stop = Arc::new(AtomicBool::new(false));
    let sim = {
        let sim_stop = sim_stop.clone();
        std::thread::spawn(move || {
            run_sim(
                SimConfig {
                    duration: Some(HANG_GUARD),
                    device_id: heapless::String::try_from("mask-test").unwrap(),
                    ..SimConfig::new(
                        SimInput::Pattern(SourceInfo {
                            width: 96,
                            height: 64,
                            format: PixelFormat::Gray8,
                            fps_milli: 30_000,
                        }),
                        SimTarget::TcpConnect(edge_side),
                    )
                },
                &sim_stop,
            )
            .unwrap()
        })
    };

    // Until the edge has answered a ping sent after a mask: it has read that far.
    let mut reading = Reading::new();
    let ping = tap.wait_until("the edge to answer a ping sent after a mask", |copies| {
        reading.update(copies);
        reading.answered_after_a_mask()
    });
    sim_stop.store(true, Ordering::Relaxed);
    let sim = sim.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    let report = pipeline.join().unwrap();
    // Everything the host sent, to its last byte.
    tap.wait_until("the host's side to close", |copies| {
        reading.update(copies);
        copies.to_edge_ended.then_some(())
    });

    assert!(reading.pongs.contains(&ping));
    assert_eq!(
        sim.edge.packets_rejected, 0,
        "the edge decoded every packet it read, masks included: {:?}",
        sim.edge
    );
    assert_eq!(reading.damaged_to_edge, 0);
    assert_eq!(report.link.results_mask_left_out, 0, "{:?}", report.link);
    assert_eq!(
        reading.results.len() as u64,
        report.link.results_sent,
        "every result the host counts as sent crossed the link"
    );
    assert!(report.link.results_sent >= 1, "{:?}", report.link);
    // The frames are 96x64: 16 cells along the longer side, 64 * 16 / 96 rounded up the other.
    let expected = (MASK_CELLS as u16, (64 * MASK_CELLS).div_ceil(96) as u16);
    for (i, mask) in reading.results.iter().enumerate() {
        let mask = match mask {
            Some(Ok(m)) => m,
            Some(Err(e)) => panic!("result {i}: the mask does not decode: {e}"),
            None => panic!("result {i} came without its mask"),
        };
        assert_eq!((mask.width, mask.height), expected, "result {i}");
        assert_eq!(
            mask.cells.len(),
            usize::from(expected.0) * usize::from(expected.1)
        );
        assert!(
            mask.cells.iter().all(|&c| c < 2),
            "result {i}: a class the head does not have: {:?}",
            mask.cells
        );
    }
}
