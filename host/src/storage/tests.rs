#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::guard::{CHECK_EVERY, CHECK_EVERY_BYTES};
use super::rotation::{Current, Finished, Naming, Why, plan_retention, rotate_before};
use super::*;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

// ---- units ----

#[test]
fn sizes_ages_and_thresholds_parse_as_people_write_them() {
    assert_eq!(parse_size("1GiB").unwrap(), GIB);
    assert_eq!(parse_size("1.5 MiB").unwrap(), 3 * MIB / 2);
    assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
    assert_eq!(parse_size("4096").unwrap(), 4096);
    assert_eq!(parse_size("2kb").unwrap(), 2000);
    for bad in ["", "GiB", "-1GiB", "1 parsec", "1e400", "99999999999TiB"] {
        let err = parse_size(bad).unwrap_err().to_string();
        assert!(err.contains("GiB"), "{bad}: {err}");
    }
    assert_eq!(parse_age("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_age("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_age("1.5h").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_age("7d").unwrap(), Duration::from_secs(7 * 86_400));
    for bad in ["", "1", "0h", "1w", "h"] {
        assert!(parse_age(bad).is_err(), "{bad}");
    }
    assert_eq!("2GiB".parse::<MinFree>().unwrap(), MinFree::Bytes(2 * GIB));
    assert_eq!("5%".parse::<MinFree>().unwrap(), MinFree::Percent(5.0));
    assert_eq!("0".parse::<MinFree>().unwrap(), MinFree::Bytes(0));
    assert!("0".parse::<MinFree>().unwrap().is_off());
    for bad in ["0%", "100%", "5 %x", "lots"] {
        assert!(bad.parse::<MinFree>().is_err(), "{bad}");
    }
    assert_eq!(MinFree::Percent(5.0).bytes(1000), 50);
    assert_eq!(MinFree::default(), MinFree::Bytes(GIB));
    assert_eq!(format_bytes(812 * MIB), "812.0 MiB");
    assert_eq!(format_bytes(100), "100 B");
}

// ---- the rotation planner ----

#[test]
fn a_file_rotates_before_it_would_pass_its_size_and_once_it_reaches_its_age() {
    let t0 = Instant::now();
    let rotation = Rotation {
        max_bytes: Some(1000),
        max_age: Some(Duration::from_secs(3600)),
    };
    let current = Current {
        bytes: 900,
        written: true,
        opened: t0,
    };
    assert_eq!(rotate_before(&rotation, &current, 100, t0), None);
    assert_eq!(rotate_before(&rotation, &current, 101, t0), Some(Why::Size));
    let later = t0 + Duration::from_secs(3599);
    assert_eq!(rotate_before(&rotation, &current, 1, later), None);
    let hour = t0 + Duration::from_secs(3600);
    assert_eq!(rotate_before(&rotation, &current, 1, hour), Some(Why::Age));
    // A file with nothing in it yet takes any write, however large, and never ages out.
    let empty = Current {
        bytes: 24,
        written: false,
        opened: t0,
    };
    assert_eq!(rotate_before(&rotation, &empty, 5000, hour), None);
    // No limits, no rotation.
    assert_eq!(
        rotate_before(&Rotation::default(), &current, u64::MAX, hour),
        None
    );
}

#[test]
fn retention_deletes_the_lowest_numbers_first_and_never_the_file_being_written() {
    let files = |sizes: &[(u64, u64)]| -> Vec<Finished> {
        sizes
            .iter()
            .map(|&(seq, bytes)| Finished { seq, bytes })
            .collect()
    };
    // Out of order on disk: the numbers decide, not the listing or the clock.
    let finished = files(&[(3, 100), (1, 100), (2, 100), (4, 100)]);
    let keep3 = Retention {
        max_files: Some(3),
        max_bytes: None,
    };
    assert_eq!(plan_retention(&keep3, &finished, 10), vec![1, 2]);
    let keep350 = Retention {
        max_files: None,
        max_bytes: Some(350),
    };
    // 400 finished + 10 current: 1 and 2 go (410 -> 310).
    assert_eq!(plan_retention(&keep350, &finished, 10), vec![1]);
    assert_eq!(plan_retention(&keep350, &finished, 60), vec![1, 2]);
    // The current file alone past the limit: every finished file goes, the current stays.
    assert_eq!(
        plan_retention(&keep350, &finished, 10_000),
        vec![1, 2, 3, 4]
    );
    // Keeping one file keeps only the one being written.
    let keep1 = Retention {
        max_files: Some(1),
        max_bytes: None,
    };
    assert_eq!(plan_retention(&keep1, &finished, 0), vec![1, 2, 3, 4]);
    // Within limits, or no limits: nothing.
    assert!(plan_retention(&Retention::default(), &finished, 10).is_empty());
    let roomy = Retention {
        max_files: Some(10),
        max_bytes: Some(10_000),
    };
    assert!(plan_retention(&roomy, &finished, 10).is_empty());
    assert!(plan_retention(&keep3, &[], 1 << 40).is_empty());
}

#[test]
fn numbered_names_round_trip_and_other_names_are_not_counted() {
    let n = Naming::new("session.rec").unwrap();
    assert_eq!(n.name(1), "session.000001.rec");
    assert_eq!(n.name(1_234_567), "session.1234567.rec");
    assert_eq!(n.seq("session.000042.rec"), Some(42));
    assert_eq!(n.seq("session.1234567.rec"), Some(1_234_567));
    for other in [
        "session.rec",
        "session.42.rec",
        "session.000042.rec.partial",
        "session.00004x.rec",
        "other.000001.rec",
        "session.000001.jsonl",
    ] {
        assert_eq!(n.seq(other), None, "{other}");
    }
    let bare = Naming::new("results").unwrap();
    assert_eq!(bare.name(7), "results.000007");
    assert_eq!(bare.seq("results.000007"), Some(7));
    let dotted = Naming::new("results.v2.jsonl").unwrap();
    assert_eq!(dotted.name(3), "results.v2.000003.jsonl");
    assert_eq!(dotted.seq("results.v2.000003.jsonl"), Some(3));
    assert_eq!(Naming::new(""), None);
}

// ---- the guard ----

#[test]
fn the_guard_reads_the_space_first_then_every_few_mib_or_every_second() {
    let t0 = Instant::now();
    let mut g = DiskGuard::new(MinFree::Bytes(GIB));
    assert!(g.due(10, t0), "before the first write");
    let roomy = Space {
        available: 10 * GIB,
        total: 100 * GIB,
    };
    assert_eq!(g.judge(roomy, 10, t0), Verdict::Enough);
    g.wrote(10);
    assert!(!g.due(10, t0));
    g.wrote(CHECK_EVERY_BYTES - 100);
    assert!(!g.due(10, t0));
    assert!(g.due(100, t0), "after CHECK_EVERY_BYTES");
    assert!(g.due(CHECK_EVERY_BYTES, t0), "a write that large by itself");
    let mut g = DiskGuard::new(MinFree::Bytes(GIB));
    g.judge(roomy, 0, t0);
    assert!(!g.due(1, t0 + CHECK_EVERY - Duration::from_millis(1)));
    assert!(g.due(1, t0 + CHECK_EVERY), "after CHECK_EVERY");
    // Low when writing would leave less than the threshold.
    let edge = Space {
        available: GIB + 100,
        total: 100 * GIB,
    };
    assert_eq!(g.judge(edge, 100, t0), Verdict::Enough);
    assert_eq!(
        g.judge(edge, 101, t0),
        Verdict::Low {
            available: GIB + 100,
            min_free: GIB
        }
    );
    // A share of the filesystem.
    let mut share = DiskGuard::new(MinFree::Percent(5.0));
    let disk = Space {
        available: 4 * GIB,
        total: 100 * GIB,
    };
    assert_eq!(
        share.judge(disk, 0, t0),
        Verdict::Low {
            available: 4 * GIB,
            min_free: 5 * GIB
        }
    );
    // Off: never reads.
    assert!(!DiskGuard::new(MinFree::Bytes(0)).due(u64::MAX, t0));
}

// ---- the runner, with a driven free-space reading ----

/// A free-space reading the test sets.
fn driven(free: &Arc<AtomicU64>) -> Arc<dyn FreeSpace> {
    let free = free.clone();
    Arc::new(move |_: &Path| {
        Ok(Space {
            available: free.load(Ordering::Relaxed),
            total: 100 * GIB,
        })
    })
}

fn config(policy: Policy, min_free: MinFree, free: &Arc<AtomicU64>) -> StorageConfig {
    StorageConfig {
        policy,
        min_free,
        space: driven(free),
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn a_set_numbers_on_from_the_highest_file_and_keeps_what_its_policy_says() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("session.rec");
    // A restart: files 1..=3 from before, and an unrelated file that is never touched.
    for seq in 1..=3 {
        std::fs::write(
            tmp.path().join(format!("session.00000{seq}.rec")),
            [0u8; 100],
        )
        .unwrap();
    }
    std::fs::write(tmp.path().join("notes.txt"), b"keep").unwrap();
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let policy = Policy {
        rotation: Rotation {
            max_bytes: Some(1000),
            max_age: Some(Duration::from_secs(60)),
        },
        retention: Retention {
            max_files: Some(2),
            max_bytes: None,
        },
    };
    let t0 = Instant::now();
    let mut set = RotatingSet::new(
        "test",
        &base,
        &config(policy, MinFree::Bytes(GIB), &free),
        t0,
    )
    .unwrap();
    let first = set.first_path().unwrap();
    assert_eq!(first, tmp.path().join("session.000004.rec"));
    std::fs::write(&first, [0u8; 24]).unwrap();
    set.opened(&first, 24, t0);
    // Two files kept: the new one and number 3.
    assert_eq!(
        names(tmp.path()),
        ["notes.txt", "session.000003.rec", "session.000004.rec"]
    );
    assert_eq!(set.before_write(900, t0), Step::Write);
    set.wrote(900);
    match set.before_write(100, t0) {
        Step::Rotate { next, why } => {
            assert_eq!(why, Why::Size);
            assert_eq!(next, tmp.path().join("session.000005.rec"));
            std::fs::write(&next, [0u8; 24]).unwrap();
            set.rotated(why, &next, 24, t0);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        names(tmp.path()),
        ["notes.txt", "session.000004.rec", "session.000005.rec"]
    );
    // Age, on the driven clock.
    set.wrote(10);
    assert_eq!(
        set.before_write(1, t0 + Duration::from_secs(59)),
        Step::Write
    );
    assert!(matches!(
        set.before_write(1, t0 + Duration::from_secs(60)),
        Step::Rotate { why: Why::Age, .. }
    ));
    let r = snapshot(&set.report());
    assert_eq!(r.rotations, 1);
    assert_eq!(r.files.len(), 2);
    assert_eq!(
        r.deleted,
        vec![
            tmp.path().join("session.000001.rec"),
            tmp.path().join("session.000002.rec"),
            tmp.path().join("session.000003.rec")
        ]
    );
    assert!(r.stopped.is_none());
}

#[test]
fn a_set_without_limits_is_the_one_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("results.jsonl");
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let set = RotatingSet::new(
        "test",
        &base,
        &config(Policy::default(), MinFree::default(), &free),
        Instant::now(),
    )
    .unwrap();
    assert_eq!(set.first_path().unwrap(), base);
    assert!(
        RotatingSet::new(
            "test",
            Path::new("/"),
            &config(Policy::default(), MinFree::default(), &free),
            Instant::now()
        )
        .is_err()
    );
}

#[test]
fn a_low_disk_stops_the_set_once_and_for_good_and_counts_what_was_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("session.rec");
    let free = Arc::new(AtomicU64::new(3 * GIB));
    let t0 = Instant::now();
    let mut set = RotatingSet::new(
        "test",
        &base,
        &config(Policy::default(), MinFree::Bytes(GIB), &free),
        t0,
    )
    .unwrap();
    set.opened(&base, 24, t0);
    assert_eq!(set.before_write(100, t0), Step::Write);
    set.wrote(100);
    // The disk fills from elsewhere; the next reading (a second later) sees it.
    free.store(GIB - 1, Ordering::Relaxed);
    assert_eq!(set.before_write(100, t0), Step::Write, "not read again yet");
    set.wrote(100);
    let later = t0 + Duration::from_secs(2);
    let stopped = match set.before_write(100, later) {
        Step::Stop(s) => s,
        other => panic!("{other:?}"),
    };
    assert_eq!(stopped.reason, StopReason::DiskLow);
    assert_eq!(stopped.free_bytes, Some(GIB - 1));
    assert_eq!(stopped.min_free_bytes, Some(GIB));
    assert_eq!(stopped.file, base);
    assert_eq!(stopped.after_s, 2.0);
    // Stays stopped even when space comes back: a run's recording is one stretch.
    free.store(50 * GIB, Ordering::Relaxed);
    assert_eq!(
        set.before_write(50, later + Duration::from_secs(5)),
        Step::Skip
    );
    let r = snapshot(&set.report());
    assert_eq!(r.bytes_written, 200);
    assert_eq!(r.bytes_not_written, 150);
    assert_eq!(r.stopped, Some(stopped));
}

#[test]
fn an_unreadable_free_space_never_stops_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("r.jsonl");
    let config = StorageConfig {
        policy: Policy::default(),
        min_free: MinFree::default(),
        space: Arc::new(|_: &Path| Err(std::io::Error::other("no statvfs here"))),
    };
    let t0 = Instant::now();
    let mut set = RotatingSet::new("test", &base, &config, t0).unwrap();
    set.opened(&base, 0, t0);
    for s in 0..5 {
        assert_eq!(
            set.before_write(CHECK_EVERY_BYTES, t0 + Duration::from_secs(s)),
            Step::Write
        );
        set.wrote(CHECK_EVERY_BYTES);
    }
}

// ---- results lines ----

#[test]
fn results_rotate_between_lines_and_stop_between_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("results.jsonl");
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let policy = Policy {
        rotation: Rotation {
            max_bytes: Some(100),
            max_age: None,
        },
        retention: Retention {
            max_files: Some(3),
            max_bytes: None,
        },
    };
    let mut lines = RotatingLines::create(
        "results",
        &base,
        &config(policy, MinFree::Bytes(GIB), &free),
    )
    .unwrap();
    let report = lines.report();
    for i in 0..20 {
        // As `writeln!` writes: the line, then its end, in two calls.
        write!(lines, "{{\"frame\":{i},\"pad\":\"{}\"}}", "x".repeat(20)).unwrap();
        writeln!(lines).unwrap();
    }
    lines.flush().unwrap();
    let files = names(tmp.path());
    assert_eq!(files.len(), 3, "{files:?}");
    // Every file kept holds whole lines, each under the size limit, numbered on.
    let mut seen = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(tmp.path().join(f)).unwrap();
        assert!(text.len() <= 100, "{f}: {}", text.len());
        assert!(text.ends_with('\n'));
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            seen.push(v["frame"].as_u64().unwrap());
        }
    }
    assert_eq!(seen, (14..20).collect::<Vec<_>>());
    let r = snapshot(&report);
    assert_eq!(r.files.len(), 10);
    assert_eq!(r.deleted.len(), 7);

    // The disk fills: the line that would cross the threshold is not begun, nor any after it;
    // the file ends with the last whole line.
    free.store(GIB / 2, Ordering::Relaxed);
    // Enough bytes for the guard to read again.
    let long = "y".repeat(CHECK_EVERY_BYTES as usize);
    writeln!(lines, "{{\"frame\":20,\"pad\":\"{long}\"}}").unwrap();
    writeln!(lines, "{{\"frame\":21}}").unwrap();
    lines.flush().unwrap();
    let r = snapshot(&report);
    let stopped = r.stopped.expect("stopped");
    assert_eq!(stopped.reason, StopReason::DiskLow);
    let last = std::fs::read_to_string(&stopped.file).unwrap();
    assert!(
        last.ends_with('\n') && !last.contains("\"frame\":20"),
        "{last}"
    );
    assert!(r.bytes_not_written > CHECK_EVERY_BYTES);
}

#[test]
fn results_never_overwrite_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("results.jsonl");
    std::fs::write(&base, b"old\n").unwrap();
    let free = Arc::new(AtomicU64::new(50 * GIB));
    let err = RotatingLines::create(
        "results",
        &base,
        &config(Policy::default(), MinFree::default(), &free),
    )
    .unwrap_err();
    assert!(matches!(err, StorageError::Exists { .. }), "{err}");
    assert_eq!(std::fs::read(&base).unwrap(), b"old\n");
}
