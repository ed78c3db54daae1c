//! Video files, decoded by the `ffmpeg` program (found on PATH): linking a video decoder into
//! dinoedge would bring FFmpeg's libraries into every build, for a command used on a bench.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use dinoedge_proto::PixelFormat;

use super::{ImportError, SourceFrame};

/// Why a video could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    /// `ffmpeg` or `ffprobe` is not installed.
    #[error(
        "decoding {path} needs the `{program}` program on PATH ({reason}); install FFmpeg \
         (e.g. `apt install ffmpeg`) or export the frames to a folder and use --images"
    )]
    ToolMissing {
        /// The video.
        path: PathBuf,
        /// `ffmpeg` or `ffprobe`.
        program: &'static str,
        /// What the system said.
        reason: String,
    },
    /// `ffprobe` could not read the video's size.
    #[error("{path}: ffprobe could not read a video stream: {detail}")]
    Probe {
        /// The video.
        path: PathBuf,
        /// What ffprobe said.
        detail: String,
    },
    /// The decoder failed or stopped inside a frame.
    #[error("{path}: ffmpeg stopped inside frame {frame}: {detail}")]
    Decode {
        /// The video.
        path: PathBuf,
        /// The frame being read.
        frame: u32,
        /// What went wrong.
        detail: String,
    },
}

/// The frames of a video as Rgb888, decoded as they are read.
#[derive(Debug)]
pub struct VideoFrames {
    path: PathBuf,
    child: Child,
    stdout: ChildStdout,
    width: u16,
    height: u16,
    /// The video's own frame rate, if it states one.
    pub fps: Option<f64>,
    read: u32,
    done: bool,
    stderr_tail: Arc<Mutex<String>>,
}

impl VideoFrames {
    /// Probes `path` and starts decoding it.
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        let missing = |program, e: std::io::Error| VideoError::ToolMissing {
            path: path.to_owned(),
            program,
            reason: e.to_string(),
        };
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
            .args(["stream=width,height,r_frame_rate", "-of", "csv=p=0"])
            .arg(path)
            .output()
            .map_err(|e| missing("ffprobe", e))?;
        let text = String::from_utf8_lossy(&probe.stdout);
        let fields: Vec<&str> = text.trim().split(',').collect();
        let bad = || VideoError::Probe {
            path: path.to_owned(),
            detail: format!(
                "{} {}",
                text.trim(),
                String::from_utf8_lossy(&probe.stderr).trim()
            ),
        };
        let (Some(w), Some(h)) = (fields.first(), fields.get(1)) else {
            return Err(bad());
        };
        let (Ok(width), Ok(height)) = (w.parse::<u16>(), h.parse::<u16>()) else {
            return Err(bad());
        };
        let fps = fields.get(2).and_then(|r| {
            let (n, d) = r.split_once('/')?;
            let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
            (d > 0.0 && n > 0.0).then(|| n / d)
        });
        // The stream probed and no rotation: the frames must have the probed size.
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-noautorotate", "-i"])
            .arg(path)
            .args(["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| missing("ffmpeg", e))?;
        // ffmpeg's complaints are read as they come (a full pipe would stall it); the last
        // few kilobytes are kept for the error message.
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut t) = tail.lock() {
                        t.push_str(&String::from_utf8_lossy(buf.get(..n).unwrap_or_default()));
                        let excess = t.len().saturating_sub(4096);
                        if excess > 0 {
                            let cut = t.char_indices().map(|(i, _)| i).find(|&i| i >= excess);
                            t.replace_range(..cut.unwrap_or(0), "");
                        }
                    }
                }
            });
        }
        let stdout = child.stdout.take().ok_or_else(|| VideoError::Decode {
            path: path.to_owned(),
            frame: 0,
            detail: "no output pipe".into(),
        })?;
        Ok(VideoFrames {
            path: path.to_owned(),
            child,
            stdout,
            width,
            height,
            fps,
            read: 0,
            done: false,
            stderr_tail,
        })
    }
}

impl Iterator for VideoFrames {
    type Item = Result<SourceFrame, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let len = usize::from(self.width) * usize::from(self.height) * 3;
        let mut data = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.stdout.read(&mut data[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.decode_error(e.to_string())));
                }
            }
        }
        if got == 0 {
            self.done = true;
            let status = self.child.wait();
            if status.as_ref().is_ok_and(|s| s.success()) {
                return None;
            }
            return Some(Err(
                self.decode_error(format!("ffmpeg exited with {status:?}"))
            ));
        }
        if got < len {
            self.done = true;
            return Some(Err(self.decode_error(format!("{got} of {len} bytes"))));
        }
        self.read += 1;
        Some(Ok(SourceFrame {
            width: self.width,
            height: self.height,
            format: PixelFormat::Rgb888,
            data,
            label: None,
        }))
    }
}

impl VideoFrames {
    fn decode_error(&mut self, detail: String) -> ImportError {
        let stderr = self
            .stderr_tail
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        ImportError::Video(VideoError::Decode {
            path: self.path.clone(),
            frame: self.read,
            detail: format!("{detail} {}", stderr.trim()),
        })
    }
}

impl Drop for VideoFrames {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
