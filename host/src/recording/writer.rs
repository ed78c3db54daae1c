//! Writing a recording: each record goes to the file in one write as it happens (so a killed
//! process loses nothing the kernel has), and a helper thread syncs the file to the disk every
//! second (so a power loss costs at most that second). A new file is readable by its owner
//! only from the moment it exists (it holds patient images); given a key, each record's
//! payload is sealed on its own, so a crash or damage still costs only the record it hits.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::RecordingError;
use super::format::{
    MAX_RECORD_PAYLOAD, RECORD_HEAD, RecordKind, encode_record, encrypted_header, finish_record,
    header, read_header, start_record,
};
use super::key::{FileCipher, RecordingKey, SALT_LEN, SEAL_OVERHEAD, WRITER_TAG_LEN, fill_random};
use super::reader::scan_with;
use crate::storage::{RotatingSet, SharedSetReport, Step, Stopped, StorageConfig, StorageError};

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
    /// File offset of the next record (its nonce, in an encrypted recording).
    offset: u64,
    /// Seals the payloads of an encrypted recording, with this writer's tag.
    sealing: Option<(FileCipher, [u8; WRITER_TAG_LEN])>,
    /// Rotation, retention and the disk-space guard, for a recording made as a set of files.
    storage: Option<RotatingSet>,
    /// The key the next file of a rotating set is sealed with.
    key: Option<RecordingKey>,
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
    /// Creates a new plain (version 1) recording, mode 0600; refuses to overwrite an existing
    /// file.
    pub fn create(path: &Path) -> Result<Self, RecordingError> {
        Self::create_with(path, None)
    }

    /// Creates a new recording, mode 0600 from the start; refuses to overwrite an existing
    /// file. With `key`, an encrypted (version 2) recording: a fresh random salt in the
    /// header, every record's payload sealed. Without, a plain version 1 recording.
    pub fn create_with(path: &Path, key: Option<&RecordingKey>) -> Result<Self, RecordingError> {
        // The randomness first: if the system has none, no file is left behind.
        let sealing = match key {
            Some(key) => {
                let mut salt = [0u8; SALT_LEN];
                fill_random(&mut salt)?;
                Some((key, salt, writer_tag(None)?))
            }
            None => None,
        };
        let mut file = crate::files::create_private(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => RecordingError::Exists {
                path: path.to_owned(),
            },
            _ => RecordingError::io(path, e),
        })?;
        let created_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let head: Vec<u8> = match &sealing {
            Some((key, salt, _)) => encrypted_header(created_ms, key.id(), salt).to_vec(),
            None => header(created_ms).to_vec(),
        };
        if let Err(e) = file.write_all(&head).and_then(|()| file.sync_all()) {
            // The file is ours and holds no record: nothing half-made is left.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(RecordingError::io(path, e));
        }
        let sealing = sealing.map(|(key, salt, tag)| (key.file_cipher(&salt), tag));
        Ok(Self::with_file(path, file, 0, head.len() as u64, sealing))
    }

    /// Continues an existing plain recording ([`Self::append_with`] for an encrypted one).
    pub fn append(path: &Path) -> Result<Self, RecordingError> {
        Self::append_with(path, None)
    }

    /// Continues an existing recording: an incomplete last record (a crash while writing) is
    /// cut off, everything complete is kept, and new records follow the last one in time. The
    /// file's mode is left as it is. An encrypted recording needs its key and goes on sealed;
    /// a plain one refuses a key (one file never mixes plain and sealed records).
    pub fn append_with(path: &Path, key: Option<&RecordingKey>) -> Result<Self, RecordingError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| RecordingError::io(path, e))?;
        let header = read_header(path, &mut file)?;
        if header.encryption.is_none() && key.is_some() {
            return Err(RecordingError::NotEncrypted {
                path: path.to_owned(),
            });
        }
        // Checks the key against the header's id, and finds where the intact records end.
        let scan = scan_with(path, key)?;
        let sealing = match (header.encryption, key) {
            (Some((_, salt)), Some(key)) => {
                // The record this writer overwrites first, if a crashed one left its start.
                let mut overwritten = [0u8; WRITER_TAG_LEN];
                let left = file
                    .seek(SeekFrom::Start(scan.valid_end + RECORD_HEAD as u64))
                    .and_then(|_| file.read_exact(&mut overwritten))
                    .is_ok();
                let tag = writer_tag(left.then_some(overwritten))?;
                Some((key.file_cipher(&salt), tag))
            }
            _ => None,
        };
        file.set_len(scan.valid_end)
            .and_then(|()| file.seek(SeekFrom::End(0)).map(|_| ()))
            .map_err(|e| RecordingError::io(path, e))?;
        let base = scan.last_t_us.map_or(0, |t| t + 1);
        Ok(Self::with_file(path, file, base, scan.valid_end, sealing))
    }

    fn with_file(
        path: &Path,
        file: File,
        time_base_us: u64,
        offset: u64,
        sealing: Option<(FileCipher, [u8; WRITER_TAG_LEN])>,
    ) -> Self {
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
            offset,
            sealing,
            storage: None,
            key: None,
        }
    }

    /// Begins a recording as the set of files that `base` names under `config` (see
    /// [`crate::storage`]): the single file `base` without rotation or retention, else numbered
    /// files beside it. Before each record the set may have this writer finish the file and
    /// go on in the next (the old file's last record and the new file's first are notes that
    /// name each other, so every file reads back whole on its own), or stop it for a low disk
    /// (a last note says why; later records are left out, and counted).
    pub fn create_rotating(
        base: &Path,
        key: Option<&RecordingKey>,
        config: &StorageConfig,
    ) -> Result<Self, RecordingError> {
        let now = Instant::now();
        let from = |e: StorageError| match e {
            StorageError::Io { path, source } => RecordingError::Io { path, source },
            other => RecordingError::io(base, std::io::Error::other(other.to_string())),
        };
        let mut set = RotatingSet::new("recording", base, config, now).map_err(from)?;
        let path = set.first_path().map_err(from)?;
        let mut writer = Self::create_with(&path, key)?;
        set.opened(&path, writer.offset, now);
        writer.storage = Some(set);
        writer.key = key.cloned();
        Ok(writer)
    }

    /// The report of a recording begun with [`Self::create_rotating`].
    pub fn storage_report(&self) -> Option<SharedSetReport> {
        self.storage.as_ref().map(RotatingSet::report)
    }

    /// Whether the storage guard stopped this recording.
    pub fn stopped(&self) -> bool {
        self.storage.as_ref().is_some_and(RotatingSet::is_stopped)
    }

    /// Asks the set (if any) before `incoming` bytes: false when they are to be left out.
    fn make_room(&mut self, incoming: u64) -> bool {
        let now = Instant::now();
        let step = match &mut self.storage {
            None => return true,
            Some(set) => set.before_write(incoming, now),
        };
        match step {
            Step::Write => true,
            Step::Skip => false,
            Step::Stop(stopped) => {
                self.stop_here(&stopped);
                false
            }
            Step::Rotate { next, why } => match self.rotate(&next) {
                Ok(()) => {
                    let offset = self.offset;
                    if let Some(set) = &mut self.storage {
                        set.rotated(why, &next, offset, now);
                    }
                    true
                }
                Err(e) => {
                    let stopped = self
                        .storage
                        .as_mut()
                        .map(|set| set.rotation_failed(&e, now));
                    if let Some(stopped) = stopped {
                        self.stop_here(&stopped);
                    }
                    false
                }
            },
        }
    }

    /// Ends the current file where it is: a note says why, and everything goes to the disk.
    fn stop_here(&mut self, stopped: &Stopped) {
        let note = serde_json::json!({
            "stopped": stopped.reason,
            "detail": stopped.detail,
            "free_bytes": stopped.free_bytes,
            "min_free_bytes": stopped.min_free_bytes,
        });
        let t = self.now_us();
        let written = self.write_one(RecordKind::Note, t, note.to_string().as_bytes());
        if let Err(e) = written.and_then(|()| {
            self.file
                .sync_all()
                .map_err(|e| RecordingError::io(&self.path, e))
        }) {
            tracing::error!(error = %e, "finishing the recording after it stopped");
        }
    }

    /// Finishes this file and goes on in `next`: the same key (a fresh salt), a fresh clock.
    fn rotate(&mut self, next: &Path) -> Result<(), RecordingError> {
        let name = |p: &Path| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        };
        let mut fresh = Self::create_with(next, self.key.as_ref())?;
        let continues = serde_json::json!({ "continues": name(&self.path) }).to_string();
        fresh.write_one(RecordKind::Note, 0, continues.as_bytes())?;
        let rotated_to = serde_json::json!({ "rotated_to": name(next) }).to_string();
        let t = self.now_us();
        self.write_one(RecordKind::Note, t, rotated_to.as_bytes())?;
        // The file-specific half of the writer changes places; the counters and the set stay.
        std::mem::swap(&mut self.path, &mut fresh.path);
        std::mem::swap(&mut self.file, &mut fresh.file);
        std::mem::swap(&mut self.started, &mut fresh.started);
        std::mem::swap(&mut self.time_base_us, &mut fresh.time_base_us);
        std::mem::swap(&mut self.offset, &mut fresh.offset);
        std::mem::swap(&mut self.sealing, &mut fresh.sealing);
        std::mem::swap(&mut self.stop_sync, &mut fresh.stop_sync);
        self.records += fresh.records;
        self.bytes += fresh.bytes;
        // `fresh` now holds the finished file.
        fresh.finish()
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

    /// Whether the record payloads are sealed (an encrypted, version 2 recording).
    pub fn encrypted(&self) -> bool {
        self.sealing.is_some()
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
        // A sealed payload carries its writer tag and authentication tag within the limit.
        let largest = if self.sealing.is_some() {
            MAX_RECORD_PAYLOAD - SEAL_OVERHEAD
        } else {
            MAX_RECORD_PAYLOAD
        };
        let overhead = (RECORD_HEAD + 4) as u64;
        let framed = payload.len() as u64 + overhead * (payload.len() / largest + 1) as u64;
        if !self.make_room(framed) {
            return Ok(());
        }
        let mut pieces = payload.chunks(largest).peekable();
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
        match &self.sealing {
            None => encode_record(kind, t_us, payload, &mut self.buf),
            Some((cipher, tag)) => {
                start_record(kind, t_us, payload.len() + SEAL_OVERHEAD, &mut self.buf);
                let sealed =
                    cipher.seal(self.offset, *tag, kind.byte(), t_us, payload, &mut self.buf);
                if sealed.is_none() {
                    let reason = "a record could not be sealed";
                    self.failed = Some(reason.into());
                    return Err(RecordingError::io(
                        &self.path,
                        std::io::Error::other(reason),
                    ));
                }
                finish_record(&mut self.buf);
            }
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            self.failed = Some(e.to_string());
            return Err(RecordingError::io(&self.path, e));
        }
        self.offset += self.buf.len() as u64;
        if let Some(set) = &mut self.storage {
            set.wrote(self.buf.len() as u64);
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

/// A random writer tag, other than `avoid` (the tag of the first record an append overwrites),
/// so that a record sealed at an offset a crashed writer had used does not share its nonce
/// (the nonce is the offset and the writer tag).
fn writer_tag(avoid: Option<[u8; WRITER_TAG_LEN]>) -> Result<[u8; WRITER_TAG_LEN], RecordingError> {
    loop {
        let mut tag = [0u8; WRITER_TAG_LEN];
        fill_random(&mut tag)?;
        if Some(tag) != avoid {
            return Ok(tag);
        }
    }
}

impl Drop for RecordingWriter {
    fn drop(&mut self) {
        self.stop_sync.store(true, Ordering::Relaxed);
    }
}
