//! The host's end of the secure link (PROTOCOL.md §6.7, SECURITY.md): the keys it accepts,
//! the handshake that proves an edge holds one, the sealing of every packet after it, the
//! limit on failed handshakes per address, and the audit trail.
//!
//! ```text
//!  LiveSource ─► SecureSource ─► (TappedSource) ─► runner ─► LinkSession
//!                 │ gate: SecureHello ─► key by id (keyring: revoked? retired?), Noise
//!                 │       NNpsk0 ─► SecureWelcome, or SecureReject and an audit entry
//!                 │ limiter: failures per address ─► refused for a while
//!                 └ SealedRead / SealedWrite: open / seal each packet; the session and the
//!                   recording tap above see the clear protocol
//! ```

pub mod audit;
pub mod gate;
pub mod keyring;
pub mod limiter;
mod source;
pub mod stream;

pub use audit::{AuditEntry, SecurityReport};
pub use keyring::{KeyEntry, KeyError, Keyring};
pub use limiter::{LimiterConfig, RateLimiter};
pub use source::{LinkSecurity, SecureSource};

use dinoedge_proto::wire;
use dinoedge_proto::{Message, PROTOCOL_VERSION, SecureReject};

/// Now, milliseconds since the Unix epoch (audit times, key windows).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A `SecureReject` for an audit reason, encoded for the wire.
pub(crate) fn reject_packet(reason: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 64];
    let msg = Message::SecureReject(SecureReject {
        reason: gate::refusal(reason),
        supported_min: PROTOCOL_VERSION,
        supported_max: PROTOCOL_VERSION,
    });
    wire::encode(&msg, &mut buf)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}
