//! A file of lines (the results, one JSON object per frame) that rotates and stops only
//! between lines, so that every file it leaves holds whole lines.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use super::StorageError;
use super::set::{RotatingSet, SharedSetReport, Step, StorageConfig};

/// Lines into a [`RotatingSet`]: each file created for its owner only (results describe a
/// patient's images) and never over an existing one.
pub struct RotatingLines {
    set: RotatingSet,
    file: Option<BufWriter<File>>,
    /// The line being written, until its end comes: the decision needs the whole line
    /// (`writeln!` hands it over in pieces).
    pending: Vec<u8>,
}

impl std::fmt::Debug for RotatingLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingLines")
            .field("file", &self.set.current_path())
            .finish_non_exhaustive()
    }
}

fn create(path: &Path) -> Result<BufWriter<File>, StorageError> {
    crate::files::create_private(path)
        .map(BufWriter::new)
        .map_err(|e| StorageError::create(path, e))
}

impl RotatingLines {
    /// Opens the first file of the set named by `base` (`label` names it in logs).
    pub fn create(
        label: &'static str,
        base: &Path,
        config: &StorageConfig,
    ) -> Result<Self, StorageError> {
        let now = Instant::now();
        let mut set = RotatingSet::new(label, base, config, now)?;
        let path = set.first_path()?;
        let file = create(&path)?;
        set.opened(&path, 0, now);
        Ok(RotatingLines {
            set,
            file: Some(file),
            pending: Vec::new(),
        })
    }

    /// The set's report.
    pub fn report(&self) -> SharedSetReport {
        self.set.report()
    }

    /// Flushes and syncs the current file and closes it.
    fn close(&mut self) -> std::io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
            file.get_ref().sync_all()?;
        }
        Ok(())
    }

    /// Decides, between lines, whether to write, rotate or stop; false when the line is left
    /// out.
    fn before_line(&mut self, incoming: u64) -> std::io::Result<bool> {
        let now = Instant::now();
        match self.set.before_write(incoming, now) {
            Step::Write => Ok(self.file.is_some()),
            Step::Skip => Ok(false),
            Step::Stop(_) => {
                self.close()?;
                Ok(false)
            }
            Step::Rotate { next, why } => {
                self.close()?;
                match create(&next) {
                    Ok(file) => {
                        self.file = Some(file);
                        self.set.rotated(why, &next, 0, now);
                        Ok(true)
                    }
                    Err(e) => {
                        self.set.rotation_failed(&e, now);
                        Ok(false)
                    }
                }
            }
        }
    }
}

impl RotatingLines {
    /// Writes the whole lines in `lines` (or leaves them out), in the current file or the next.
    fn put(&mut self, lines: &[u8]) -> std::io::Result<()> {
        if self.before_line(lines.len() as u64)?
            && let Some(file) = &mut self.file
        {
            file.write_all(lines)?;
            self.set.wrote(lines.len() as u64);
        }
        Ok(())
    }
}

impl Write for RotatingLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(end + 1);
            let lines = std::mem::replace(&mut self.pending, rest);
            self.put(&lines)?;
        }
        Ok(buf.len())
    }

    /// Writes a last line without its end, then flushes and syncs the current file: results
    /// are as durable as a recording once flushed.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.put(&line)?;
        }
        if let Some(file) = &mut self.file {
            file.flush()?;
            file.get_ref().sync_data()?;
        }
        Ok(())
    }
}
