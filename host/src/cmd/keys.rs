//! `dinoedge keys`: the link keys (one per edge), and the flags every live link takes to use
//! them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dinoedge::link::Transport;
use dinoedge::link::secure::{Keyring, LinkSecurity, keyring};

/// How a live link is secured: `--link-keys DIR`, or the clear where that is allowed.
#[derive(Debug, Args, Clone, Default)]
pub struct LinkSecurityArgs {
    /// The folder of link keys (`dinoedge keys new`): the edge must prove it holds one, and
    /// every packet is encrypted and authenticated.
    #[arg(long, value_name = "DIR")]
    pub link_keys: Option<PathBuf>,
    /// Run the link in the clear: only for a physically private serial or USB link, or TCP on
    /// the loopback interface (a simulator on this machine). Never on a network.
    #[arg(long, conflicts_with = "link_keys")]
    pub link_cleartext: bool,
}

impl LinkSecurityArgs {
    /// The security for a link over `transport`: `None` for the clear, when allowed.
    pub fn resolve(&self, transport: &Transport) -> anyhow::Result<Option<LinkSecurity>> {
        if let Some(dir) = &self.link_keys {
            let ring = Keyring::load(dir)
                .with_context(|| format!("loading the link keys in {}", dir.display()))?;
            if ring.is_empty() {
                bail!(
                    "{} holds no link keys (*.key.json); make one with `dinoedge keys new --device ID --dir {}`",
                    dir.display(),
                    dir.display()
                );
            }
            tracing::info!(keys = ring.len(), dir = %dir.display(), "secure link");
            return Ok(Some(LinkSecurity::new(ring)));
        }
        let tcp_addr = match transport {
            Transport::Serial { .. } => None,
            Transport::TcpConnect(addr) | Transport::TcpListen(addr) => Some(addr),
        };
        match (self.link_cleartext, tcp_addr) {
            (true, None) => Ok(None),
            (true, Some(addr)) if addr.ip().is_loopback() => Ok(None),
            (true, Some(addr)) => bail!(
                "--link-cleartext is refused on {addr}: in the clear, anyone on that network could \
                 stream frames in, read results or drive the edge's alarm. Use --link-keys DIR, \
                 or the loopback address for a simulator on this machine"
            ),
            (false, _) => bail!(
                "the link to the edge is secure by default: pass --link-keys DIR (made by \
                 `dinoedge keys new`), or --link-cleartext for a physically private serial link \
                 or a simulator on the loopback address"
            ),
        }
    }
}

/// What `dinoedge keys` does.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for one edge: its host copy (DIR/DEVICE-ID.key.json) and its firmware key
    /// block (DIR/DEVICE-ID.keyblock, flashed into the edge), both readable by their owner only.
    New(NewArgs),
    /// Replace an edge's key: a new key, and the old one accepted only for --window more (while
    /// the edge is reflashed with the new key block).
    Rotate(RotateArgs),
    /// Refuse a key from now on (a lost or stolen edge), whether or not its file remains.
    Revoke(RevokeArgs),
    /// List the keys of a folder: device, id, state.
    List(ListArgs),
    /// Make a recording key (for `--recording-key`: recordings encrypted at rest), readable by
    /// its owner only; separate from the link keys.
    Recording(RecordingKeyArgs),
    /// Make the live view's access token (for `--http-token`), readable by its owner only.
    ViewToken(RecordingKeyArgs),
}

/// `keys recording` and `keys view-token`.
#[derive(Debug, Args)]
pub struct RecordingKeyArgs {
    /// The key file to write (never overwritten).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

/// `keys new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The edge's device id, as its Hello sends it.
    #[arg(long)]
    device: String,
    /// The key folder (created readable by its owner only).
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// `keys rotate`.
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The edge's device id.
    #[arg(long)]
    device: String,
    /// The key folder.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// How long the old key stays accepted: a number and a unit, s, m, h or d.
    #[arg(long, default_value = "7d", value_parser = parse_window)]
    window: u64,
}

/// `keys revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The key's id, as `keys list` prints it.
    key_id: String,
    /// The key folder.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// Why, for the revocation list.
    #[arg(long, default_value = "revoked")]
    note: String,
}

/// `keys list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// The key folder.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
}

/// Runs a `keys` subcommand.
pub fn run(cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let now = dinoedge::link::secure::unix_ms() / 1000;
    match cmd {
        KeysCommand::New(a) => {
            let new = keyring::new_key(&a.dir, &a.device, now)?;
            print_new(&new);
        }
        KeysCommand::Rotate(a) => {
            let (new, retired) = keyring::rotate_key(&a.dir, &a.device, now, a.window)?;
            print_new(&new);
            for id in retired {
                println!(
                    "key {id} of {} is accepted until {} s from now, then refused",
                    a.device, a.window
                );
            }
        }
        KeysCommand::Revoke(a) => {
            let id = keyring::parse_key_id(&a.key_id)
                .with_context(|| format!("{:?} is not a key id (16 hex digits)", a.key_id))?;
            keyring::revoke_key(&a.dir, id, &a.note)?;
            println!(
                "key {id} is revoked: refused from the next handshake on (a running host \
                 reads the list when it starts)"
            );
        }
        KeysCommand::List(a) => list(&a.dir, now)?,
        KeysCommand::ViewToken(a) => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no OS entropy: {e}"))?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let mut file = dinoedge::files::create_private(&a.output)
                .with_context(|| format!("creating {}", a.output.display()))?;
            std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
                .with_context(|| format!("writing {}", a.output.display()))?;
            println!(
                "view token in {} (mode 0600): give it to the people who may watch",
                a.output.display()
            );
        }
        KeysCommand::Recording(a) => {
            let key = dinoedge::recording::create_key_file(&a.output)?;
            println!(
                "recording key {} in {} (mode 0600; keep it apart from the recordings)",
                key.id(),
                a.output.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_new(new: &keyring::NewKey) {
    println!("key {}", new.id);
    println!("  host copy:     {}", new.host_file.display());
    println!(
        "  firmware copy: {} (flash it into the edge's key sector, then remove it from \
         this machine)",
        new.firmware_file.display()
    );
}

fn list(dir: &Path, now: u64) -> anyhow::Result<()> {
    let ring = Keyring::load(dir)?;
    println!("{:<24} {:<16} state", "device", "key id");
    for e in ring.entries() {
        let state = if ring.is_revoked(e.id) {
            "revoked".to_owned()
        } else {
            match e.retire_after_unix_s {
                Some(t) if now > t => "retired".to_owned(),
                Some(t) => format!("retiring in {} s", t - now),
                None => "current".to_owned(),
            }
        };
        println!("{:<24} {:<16} {state}", e.device_id, e.id.to_string());
    }
    Ok(())
}

fn parse_window(text: &str) -> Result<u64, String> {
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: a number then s, m, h or d (e.g. 7d)"))?;
    let scale = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is s, m, h or d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}
