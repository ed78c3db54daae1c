//! Writing a recording: each record goes to the file in one write as it happens (so a killed
//! process loses nothing the kernel has), and a helper thread syncs the file to the disk every
//! second (so a power loss costs at most that second).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::RecordingError;
use super::format::{MAX_RECORD_PAYLOAD, RecordKind, encode_record, header};
use super::reader::scan;

/// How often the helper thread syncs a recording to the disk.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// An open recording being written.
pub struct RecordingWriter {
    path: PathBuf,
    file: File,
    /// The clock of live records: µs since this instant, plus `time_base_us`.
    started: Instant,
    /// Where this writer's clock starts: 0 for a new file, just past the last record when
    /// appending, so that times never go backwards within a file.
    time_base_us: u64,
    buf: Vec<u8>,
    records: u64,
    bytes: u64,
    /// The first write error; once set, nothing more is written (the record would not be
    /// trustworthy) and every later call returns it again.
    failed: Option<String>,
    stop_sync: Arc<AtomicBool>,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("path", &self.path)
            .field("records", &self.records)
            .finish_non_exhaustive()
    }
}

impl RecordingWriter {
    /// Creates a new recording; refuses to overwrite an existing file.
    pub fn create(path: &Path) -> Result<Self, RecordingError> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => RecordingError::Exists {
                    path: path.to_owned(),
                },
                _ => RecordingError::io(path, e),
            })?;
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        file.write_all(&header(created_ms))
            .and_then(|()| file.sync_all())
            .map_err(|e| RecordingError::io(path, e))?;
        Ok(Self::with_file(path, file, 0))
    }

    /// Continues an existing recording: an incomplete last record (a crash while writing) is
    /// cut off, everything complete is kept, and new records follow the last one in time.
    pub fn append(path: &Path) -> Result<Self, RecordingError> {
        let scan = scan(path)?;
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| RecordingError::io(path, e))?;
        file.set_len(scan.valid_end)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| RecordingError::io(path, e))?;
        let base = scan.last_t_us.map_or(0, |t| t + 1);
        Ok(Self::with_file(path, file, base))
    }

    fn with_file(path: &Path, file: File, time_base_us: u64) -> Self {
        let stop_sync = Arc::new(AtomicBool::new(false));
        if let Ok(clone) = file.try_clone() {
            let stop = stop_sync.clone();
            // Syncing can take long on slow storage; the link must not wait for it.
            let _ = std::thread::Builder::new()
                .name("recording-sync".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(SYNC_INTERVAL);
                        let _ = clone.sync_data();
                    }
                });
        }
        RecordingWriter {
            path: path.to_owned(),
            file,
            started: Instant::now(),
            time_base_us,
            buf: Vec::new(),
            records: 0,
            bytes: 0,
            failed: None,
            stop_sync,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records written by this writer.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Payload bytes written by this writer.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Microseconds on this recording's clock now.
    pub fn now_us(&self) -> u64 {
        self.time_base_us + self.started.elapsed().as_micros() as u64
    }

    /// Whether a write has failed (nothing more is written after that).
    pub fn failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Records `payload` now.
    pub fn write(&mut self, kind: RecordKind, payload: &[u8]) -> Result<(), RecordingError> {
        let t = self.now_us();
        self.write_at(kind, t, payload)
    }

    /// Records `payload` at `t_us` (a synthetic clock, e.g. an import); payloads beyond
    /// [`MAX_RECORD_PAYLOAD`] are split over several records.
    pub fn write_at(
        &mut self,
        kind: RecordKind,
        t_us: u64,
        payload: &[u8],
    ) -> Result<(), RecordingError> {
        if let Some(reason) = &self.failed {
            return Err(RecordingError::io(
                &self.path,
                std::io::Error::other(reason.clone()),
            ));
        }
        let mut pieces = payload.chunks(MAX_RECORD_PAYLOAD).peekable();
        if pieces.peek().is_none()
            && kind != RecordKind::EdgeToHost
            && kind != RecordKind::HostToEdge
        {
            // Markers may be empty; empty byte records say nothing and are not written.
            return self.write_one(kind, t_us, &[]);
        }
        for piece in pieces {
            self.write_one(kind, t_us, piece)?;
        }
        Ok(())
    }

    fn write_one(
        &mut self,
        kind: RecordKind,
        t_us: u64,
        payload: &[u8],
    ) -> Result<(), RecordingError> {
        encode_record(kind, t_us, payload, &mut self.buf);
        if let Err(e) = self.file.write_all(&self.buf) {
            self.failed = Some(e.to_string());
            return Err(RecordingError::io(&self.path, e));
        }
        self.records += 1;
        self.bytes += payload.len() as u64;
        Ok(())
    }

    /// Syncs everything to the disk and closes the file; a write that failed earlier is
    /// reported here too, so that a cut-short recording is never taken for a whole one.
    pub fn finish(self) -> Result<(), RecordingError> {
        if let Some(reason) = &self.failed {
            return Err(RecordingError::io(
                &self.path,
                std::io::Error::other(format!("an earlier write failed: {reason}")),
            ));
        }
        self.file
            .sync_all()
            .map_err(|e| RecordingError::io(&self.path, e))
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        self.stop_sync.store(true, Ordering::Relaxed);
    }
}
