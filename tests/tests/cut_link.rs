//! A link cut again and again (a proxy that closes the TCP connection every few megabytes,
//! mid-packet): every frame the edge started in a session that was cut is told to the host's
//! consumer, delivered or lost with its reason, once the edge reconnects and says how far it
//! had got. Before protocol version 2, the frames in flight at a cut vanished untold.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dinoedge::link::{LinkConfig, LinkEvent, LiveSource, Transport};
use dinoedge_edge::port::SourceInfo;
use dinoedge_edge_sim::{SimConfig, SimInput, SimTarget, run_sim};
use dinoedge_proto::PixelFormat;
use dinoedge_proto::reassembly::LossReason;

/// Accepts the edge's connections and relays each to the host; the first `cuts` of them are
/// cut (both ways, at once) after `cut_every` bytes from the edge.
fn cutting_proxy(listener: TcpListener, host: SocketAddr, cut_every: usize, cuts: u32) {
    std::thread::spawn(move || {
        let mut done = 0;
        for edge in listener.incoming() {
            let Ok(mut edge) = edge else { return };
            let Ok(mut to_host) = TcpStream::connect(host) else {
                return;
            };
            let (mut from_host, mut to_edge) =
                (to_host.try_clone().unwrap(), edge.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut from_host, &mut to_edge));
            let mut buf = vec![0u8; 16 * 1024];
            let mut relayed = 0;
            loop {
                let n = match edge.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let take = if done < cuts {
                    n.min(cut_every - relayed)
                } else {
                    n
                };
                if to_host.write_all(&buf[..take]).is_err() {
                    break;
                }
                relayed += take;
                if done < cuts && relayed >= cut_every {
                    done += 1;
                    break;
                }
            }
            let _ = edge.shutdown(Shutdown::Both);
            let _ = to_host.shutdown(Shutdown::Both);
        }
    });
}

/// What the host's consumer was told in one session.
#[derive(Debug, Default)]
struct Told {
    delivered: u64,
    lost: u64,
    connection_lost: u64,
    /// The `next_seq` the edge reported for this session in its next `Hello`.
    edge_started: Option<u32>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_a_cut_session_is_told_once_the_edge_is_back() {
    const CUTS: u32 = 8;
    let source = LiveSource::new(Transport::TcpListen("127.0.0.1:0".parse().unwrap())).unwrap();
    let host_addr = source.local_addr().unwrap();
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    // Small frames, so that several are in flight (in socket buffers) at each cut.
    cutting_proxy(proxy, host_addr, 256 << 10, CUTS);

    let stop = Arc::new(AtomicBool::new(false));
    let sim_stop = stop.clone();
    let sim = std::thread::spawn(move || {
        run_sim(
            SimConfig {
                duration: Some(Duration::from_secs(300)),
                device_id: heapless::String::try_from("cut").unwrap(),
                ..SimConfig::new(
                    SimInput::Pattern(SourceInfo {
                        width: 64,
                        height: 48,
                        format: PixelFormat::Gray8,
                        fps_milli: 0,
                    }),
                    SimTarget::TcpConnect(proxy_addr),
                )
            },
            &sim_stop,
        )
        .unwrap()
    });

    let config = LinkConfig {
        credit_window: 8,
        ..LinkConfig::default()
    };
    let dinoedge::link::Link { mut events, handle } =
        dinoedge::link::spawn(Box::new(source), config, Instant::now(), 8);
    let mut sessions: Vec<Told> = Vec::new();
    // A hang guard only: the test fails on what it saw if the run never gets there.
    let deadline = tokio::time::sleep(Duration::from_secs(240));
    tokio::pin!(deadline);
    let done =
        |s: &Vec<Told>| s.len() > CUTS as usize && s.last().is_some_and(|t| t.delivered >= 10);
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = &mut deadline => None,
        };
        match event {
            None => break,
            Some(LinkEvent::SessionStarted { hello, .. }) => {
                if let (Some(previous), Some(last)) = (hello.previous, sessions.last_mut()) {
                    last.edge_started = Some(previous.next_seq);
                }
                sessions.push(Told::default());
            }
            Some(LinkEvent::Frame(_)) => {
                if let Some(t) = sessions.last_mut() {
                    t.delivered += 1;
                }
            }
            Some(LinkEvent::Lost(loss)) => {
                if let Some(t) = sessions.last_mut() {
                    t.lost += u64::from(loss.frames());
                    if let LossReason::ConnectionLost { count } = loss.reason {
                        t.connection_lost += u64::from(count);
                    }
                }
            }
            Some(_) => {}
        }
        if done(&sessions) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let stats = handle.finish().await.unwrap();
    sim.join().unwrap();
    assert!(done(&sessions), "{sessions:?}");
    let cut = &sessions[..CUTS as usize];
    let started: u64 = cut.iter().map(|t| u64::from(t.edge_started.unwrap())).sum();
    let told: u64 = cut.iter().map(|t| t.delivered + t.lost).sum();
    let vanished: u64 = cut.iter().map(|t| t.connection_lost).sum();
    println!(
        "{CUTS} cuts: the edge started {started} frames in the cut sessions; {told} told \
         ({vanished} of them lost with the connection, reported when the edge came back)"
    );
    for (i, t) in cut.iter().enumerate() {
        assert_eq!(
            t.delivered + t.lost,
            u64::from(t.edge_started.unwrap()),
            "session {i}: {t:?}"
        );
    }
    assert_eq!(
        stats
            .frames_lost
            .get("ConnectionLost")
            .copied()
            .unwrap_or(0),
        vanished
    );
}
