//! The audit trail of the secure link: who connected (address, device, key), when, whether
//! they proved the key, what was refused and why; and the counts of packets dropped because
//! they did not authenticate. Logged as it happens and kept for `report.json`.

use std::collections::BTreeMap;

use serde::Serialize;

/// Audit entries kept at most; later ones are counted, not kept (the log has them all).
pub const MAX_AUDIT_ENTRIES: usize = 1000;

/// One handshake, accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// The peer: its address on TCP, the device path on a serial link.
    pub peer: String,
    /// The unit the key belongs to, when the key was known.
    pub device_id: Option<String>,
    /// The key id the peer named, when it named one.
    pub key_id: Option<String>,
    /// `accepted` or `refused`.
    pub outcome: &'static str,
    /// Why it was refused (`unknown_key`, `revoked_key`, `retired_key`, `bad_proof`,
    /// `replayed_handshake`, `rate_limited`, `secure_link_required`, `unsupported_version`,
    /// `device_mismatch`, `handshake_timeout`).
    pub reason: Option<&'static str>,
}

/// The secure link's counters and trail, for `report.json` (`security`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SecurityReport {
    /// Handshakes that proved the key.
    pub handshakes_accepted: u64,
    /// Handshakes refused, by reason.
    pub handshakes_refused: BTreeMap<&'static str, u64>,
    /// Sealed packets whose tag did not verify, dropped.
    pub packets_forged: u64,
    /// Sealed packets seen before or too far behind, dropped.
    pub packets_replayed: u64,
    /// Clear packets on a secure link, dropped.
    pub packets_clear_refused: u64,
    /// Packets damaged on the link (CRC, framing), dropped before they could be opened.
    pub packets_damaged: u64,
    /// The trail, oldest first, up to [`MAX_AUDIT_ENTRIES`].
    pub audit: Vec<AuditEntry>,
    /// Entries beyond those kept.
    pub audit_entries_not_kept: u64,
}

impl SecurityReport {
    /// Records `entry` in the trail and the counts, and logs it.
    pub fn record(&mut self, entry: AuditEntry) {
        match entry.reason {
            None => {
                self.handshakes_accepted += 1;
                tracing::info!(
                    peer = %entry.peer,
                    device = entry.device_id.as_deref().unwrap_or("?"),
                    key = entry.key_id.as_deref().unwrap_or("?"),
                    "secure link: the edge proved its key"
                );
            }
            Some(reason) => {
                *self.handshakes_refused.entry(reason).or_default() += 1;
                tracing::warn!(
                    peer = %entry.peer,
                    device = entry.device_id.as_deref().unwrap_or("?"),
                    key = entry.key_id.as_deref().unwrap_or("?"),
                    reason,
                    "secure link: refused"
                );
            }
        }
        if self.audit.len() < MAX_AUDIT_ENTRIES {
            self.audit.push(entry);
        } else {
            self.audit_entries_not_kept += 1;
        }
    }

    /// Handshakes refused, all reasons.
    pub fn refused_total(&self) -> u64 {
        self.handshakes_refused.values().sum()
    }
}
