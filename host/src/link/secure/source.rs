//! [`SecureSource`]: wraps any live source; each connection it opens is handed on only once
//! the edge has proved its key, and then sealed both ways. The thin runner of the gate: it
//! reads the clock and the transport, the decisions are the gate's and the limiter's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::audit::{AuditEntry, SecurityReport};
use super::gate::{Gate, GateContext, GateOutcome, Refused, SeenEphemerals};
use super::keyring::Keyring;
use super::limiter::{LimiterConfig, RateLimiter};
use super::stream::{PeerInfo, SealedRead, SealedWrite};
use crate::link::{Connection, LinkConfig, OpenFuture, Source};

/// How the host runs its secure links.
#[derive(Debug, Clone)]
pub struct LinkSecurity {
    /// The keys it accepts.
    pub keyring: Keyring,
    /// Failed handshakes per address.
    pub limiter: LimiterConfig,
    /// A TCP peer that has not completed its handshake by then is dropped (a serial edge may
    /// take as long as it likes: it may still be booting).
    pub handshake_timeout: Duration,
    /// Largest clear packet the edge may send (the link's `max_packet_to_host`).
    pub max_packet_to_host: usize,
    /// Largest clear packet the host sends (the link's `max_packet_to_edge`).
    pub max_packet_to_edge: usize,
    /// The counters and audit trail, shared with whoever reports them.
    pub report: Arc<Mutex<SecurityReport>>,
    /// Notified at each audit entry (for a watcher that waits on refusals).
    pub changed: Arc<tokio::sync::Notify>,
}

impl LinkSecurity {
    /// Security with `keyring` and the defaults: the link's default packet sizes, a 5 s
    /// handshake limit, the default rate limits.
    pub fn new(keyring: Keyring) -> Self {
        let link = LinkConfig::default();
        LinkSecurity {
            keyring,
            limiter: LimiterConfig::default(),
            handshake_timeout: Duration::from_secs(5),
            max_packet_to_host: link.max_packet_to_host,
            max_packet_to_edge: link.max_packet_to_edge,
            report: Arc::default(),
            changed: Arc::default(),
        }
    }

    /// The counters and trail so far.
    pub fn snapshot(&self) -> SecurityReport {
        match self.report.lock() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// A source whose connections are secure; see the module documentation.
pub struct SecureSource {
    inner: Box<dyn Source>,
    security: LinkSecurity,
    limiter: RateLimiter,
    seen: SeenEphemerals,
    epoch: Instant,
}

impl SecureSource {
    /// Secures every connection `inner` opens.
    pub fn new(inner: Box<dyn Source>, security: LinkSecurity) -> Self {
        SecureSource {
            inner,
            limiter: RateLimiter::new(security.limiter),
            security,
            seen: SeenEphemerals::default(),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn audit(&self, entry: AuditEntry) {
        let mut report = match self.security.report.lock() {
            Ok(r) => r,
            Err(poisoned) => poisoned.into_inner(),
        };
        report.record(entry);
        drop(report);
        self.security.changed.notify_one();
    }

    fn refused(&mut self, peer: &str, addr: Option<SocketAddr>, refused: &Refused) {
        self.audit(AuditEntry {
            at_unix_ms: super::unix_ms(),
            peer: peer.to_owned(),
            device_id: refused.device_id.clone(),
            key_id: refused.key_id.map(|k| k.to_string()),
            outcome: "refused",
            reason: Some(refused.reason),
        });
        if let Some(addr) = addr {
            let now = self.now_us();
            if let Some(until) = self.limiter.failure(now, addr.ip()) {
                tracing::warn!(
                    peer = %addr.ip(),
                    seconds = until.saturating_sub(now) / 1_000_000,
                    "too many failed handshakes; this address is refused for a while"
                );
            }
        }
    }

    /// Runs the handshake on `conn`: the sealed connection, or why the peer was refused.
    async fn handshake(&mut self, mut conn: Connection) -> Result<Connection, String> {
        let addr = conn.peer;
        let peer = addr.map_or_else(|| self.inner.describe(), |a| a.to_string());
        let deadline = addr.map(|_| tokio::time::Instant::now() + self.security.handshake_timeout);
        let mut gate = Gate::new();
        let mut buf = vec![0u8; 4096];
        loop {
            let read = conn.read.read(&mut buf);
            let n = match deadline {
                Some(at) => match tokio::time::timeout_at(at, read).await {
                    Ok(r) => r,
                    Err(_) => {
                        let refused = Refused {
                            reason: "handshake_timeout",
                            key_id: None,
                            device_id: None,
                        };
                        self.refused(&peer, addr, &refused);
                        return Err("no secure handshake in time".to_owned());
                    }
                },
                None => read.await,
            }
            .map_err(|e| format!("read error during the handshake: {e}"))?;
            if n == 0 {
                return Err("the edge closed the link during the handshake".to_owned());
            }
            let mut input = buf.get(..n).unwrap_or_default();
            while !input.is_empty() {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret)
                    .map_err(|e| format!("no OS entropy for the handshake: {e}"))?;
                let mut ctx = GateContext {
                    keyring: &self.security.keyring,
                    now_unix_s: super::unix_ms() / 1000,
                    seen: &mut self.seen,
                    secret,
                };
                let mut send = Vec::new();
                let outcome = gate.on_bytes(&mut input, &mut ctx, &mut send);
                if !send.is_empty() {
                    conn.write
                        .write_all(&send)
                        .await
                        .map_err(|e| format!("write error during the handshake: {e}"))?;
                }
                match outcome {
                    GateOutcome::Pending => break,
                    GateOutcome::Refused(refused) => {
                        self.refused(&peer, addr, &refused);
                        if addr.is_some() {
                            return Err(format!("refused: {}", refused.reason));
                        }
                        // A serial edge stays on the line; it may be reflashed and try again.
                    }
                    GateOutcome::Established(est) => {
                        if let Some(addr) = addr {
                            self.limiter.success(addr.ip());
                        }
                        let info = PeerInfo {
                            peer: peer.clone(),
                            key_id: est.key_id.to_string(),
                            device_id: est.device_id.clone(),
                        };
                        self.audit(AuditEntry {
                            at_unix_ms: super::unix_ms(),
                            peer,
                            device_id: Some(est.device_id.clone()),
                            key_id: Some(info.key_id.clone()),
                            outcome: "accepted",
                            reason: None,
                        });
                        let read = SealedRead::new(
                            conn.read,
                            est.channel.clone(),
                            self.security.max_packet_to_host,
                            info,
                            self.security.report.clone(),
                            input,
                        );
                        let write = SealedWrite::new(
                            conn.write,
                            est.channel,
                            self.security.max_packet_to_edge,
                        );
                        return Ok(Connection {
                            read: Box::pin(read),
                            write: Box::pin(write),
                            peer: addr,
                        });
                    }
                }
            }
        }
    }
}

impl Source for SecureSource {
    fn open(&mut self) -> OpenFuture<'_> {
        Box::pin(async move {
            loop {
                let Some(mut conn) = self.inner.open().await? else {
                    return Ok(None);
                };
                if let Some(addr) = conn.peer {
                    let now = self.now_us();
                    if self.limiter.check(now, addr.ip()).is_err() {
                        let refused = Refused {
                            reason: "rate_limited",
                            key_id: None,
                            device_id: None,
                        };
                        self.audit(AuditEntry {
                            at_unix_ms: super::unix_ms(),
                            peer: addr.to_string(),
                            device_id: None,
                            key_id: None,
                            outcome: "refused",
                            reason: Some(refused.reason),
                        });
                        let _ = tokio::time::timeout(
                            Duration::from_millis(200),
                            conn.write.write_all(&super::reject_packet(refused.reason)),
                        )
                        .await;
                        self.inner.closed("refused: rate_limited");
                        continue;
                    }
                }
                match self.handshake(conn).await {
                    Ok(conn) => return Ok(Some(conn)),
                    Err(reason) => {
                        tracing::debug!(%reason, "connection closed before its session");
                        self.inner.closed(&reason);
                    }
                }
            }
        })
    }

    fn closed(&mut self, reason: &str) {
        self.inner.closed(reason);
    }

    fn describe(&self) -> String {
        format!("{} (secure)", self.inner.describe())
    }

    fn configure(&self, config: &mut LinkConfig) {
        self.inner.configure(config);
    }

    fn is_live(&self) -> bool {
        self.inner.is_live()
    }
}
