//! A session's two keys: packets sealed with ChaCha20-Poly1305, the packet counter as the
//! nonce, and a window that drops replayed and stale packets.

use clatter::bytearray::SensitiveByteArray;
use clatter::crypto::cipher::ChaChaPoly;
use clatter::traits::Cipher;

use crate::wire;
use crate::{Message, Sealed};

/// Bytes of the authentication tag on every sealed message.
pub const TAG_LEN: usize = 16;

/// Bytes a [`Sealed`] packet adds to the packet it carries (message plus CRC): its wire id
/// (1), the counter (a varint of at most 10) and the data's length (a varint of at most 3),
/// and the tag; the inner CRC is not sent (the tag covers more than it did). A link whose
/// packets may be `n` bytes carries sealed packets of up to `n - SEAL_OVERHEAD`.
pub const SEAL_OVERHEAD: usize = 1 + 10 + 3 + TAG_LEN;

/// How far behind the newest counter a packet may arrive and still be taken (once).
pub const REPLAY_WINDOW: u64 = 64;

/// Why a sealed packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum OpenError {
    /// This counter was already taken: a replay.
    #[error("packet {counter} was already received (a replay)")]
    Replayed {
        /// The counter.
        counter: u64,
    },
    /// The counter is further behind the newest than the window reaches.
    #[error("packet {counter} is more than {REPLAY_WINDOW} behind packet {newest}")]
    TooOld {
        /// The counter.
        counter: u64,
        /// The newest counter taken.
        newest: u64,
    },
    /// The tag did not verify: forged, or altered on the way.
    #[error("packet {counter} failed authentication (forged or altered)")]
    Forged {
        /// The counter.
        counter: u64,
    },
    /// The inner message did not parse although its tag verified (a peer bug).
    #[error("packet {counter} decrypted to an unreadable message")]
    Unreadable {
        /// The counter.
        counter: u64,
    },
    /// The data is shorter than a tag, or larger than the buffer given to open it.
    #[error("the sealed data is {len} bytes, outside what this side can open")]
    Size {
        /// Its length.
        len: usize,
    },
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SealError {
    /// The buffer has no room for the message and its tag.
    #[error("no room to seal {len} bytes and the tag")]
    NoRoom {
        /// The message's length.
        len: usize,
    },
    /// The sealed packet exceeds the negotiated packet size, or the message does not
    /// serialise.
    #[error("the sealed packet does not fit: {0}")]
    Encode(wire::EncodeError),
    /// This session's counter is used up (after 2^64 packets): a new handshake is needed.
    #[error("the session's packet counter is used up")]
    CounterExhausted,
}

/// The counters seen lately, as a bitmap below the newest: a packet is taken once, in any
/// order within [`REPLAY_WINDOW`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReplayWindow {
    newest: Option<u64>,
    /// Bit `i` set: counter `newest - i` was taken.
    seen: u64,
}

impl ReplayWindow {
    /// Whether `counter` may be taken (not yet seen, not too old); nothing changes.
    pub fn check(&self, counter: u64) -> Result<(), OpenError> {
        let Some(newest) = self.newest else {
            return Ok(());
        };
        if counter > newest {
            return Ok(());
        }
        let behind = newest - counter;
        if behind >= REPLAY_WINDOW {
            return Err(OpenError::TooOld { counter, newest });
        }
        if self.seen & (1 << behind) != 0 {
            return Err(OpenError::Replayed { counter });
        }
        Ok(())
    }

    /// Marks `counter` taken (after its tag verified).
    pub fn accept(&mut self, counter: u64) {
        match self.newest {
            Some(newest) if counter <= newest => {
                let behind = newest - counter;
                if behind < REPLAY_WINDOW {
                    self.seen |= 1 << behind;
                }
            }
            Some(newest) => {
                let ahead = counter - newest;
                self.seen = if ahead >= REPLAY_WINDOW {
                    1
                } else {
                    (self.seen << ahead) | 1
                };
                self.newest = Some(counter);
            }
            None => {
                self.newest = Some(counter);
                self.seen = 1;
            }
        }
    }
}

/// One session's keys, one per direction, and where each direction's counter stands.
#[derive(Clone)]
pub struct Channel {
    send_key: SensitiveByteArray<[u8; 32]>,
    receive_key: SensitiveByteArray<[u8; 32]>,
    next_send: Option<u64>,
    window: ReplayWindow,
}

impl core::fmt::Debug for Channel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Channel")
            .field("next_send", &self.next_send)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Channel {
    pub(super) fn new(
        send_key: SensitiveByteArray<[u8; 32]>,
        receive_key: SensitiveByteArray<[u8; 32]>,
    ) -> Self {
        Channel {
            send_key,
            receive_key,
            next_send: Some(0),
            window: ReplayWindow::default(),
        }
    }

    /// The counter the next sealed packet gets.
    pub fn next_counter(&self) -> Option<u64> {
        self.next_send
    }

    /// Encrypts `buf[..len]` in place and appends the tag (`buf` needs `len + TAG_LEN`
    /// bytes); returns the packet's counter and the sealed length.
    pub fn seal_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<(u64, usize), SealError> {
        if buf.len() < len.saturating_add(TAG_LEN) {
            return Err(SealError::NoRoom { len });
        }
        let counter = self.next_send.ok_or(SealError::CounterExhausted)?;
        let sealed = ChaChaPoly::encrypt_in_place(&self.send_key, counter, &[], buf, len)
            .map_err(|_| SealError::NoRoom { len })?;
        // The last counter is never used: after it the session must be renewed.
        self.next_send = counter.checked_add(1).filter(|&n| n < u64::MAX);
        Ok((counter, sealed))
    }

    /// Checks the counter against the window, then decrypts `buf` (data and tag) in place;
    /// returns the plaintext's length. The window moves only for a packet whose tag
    /// verified, so a forgery cannot push genuine packets out of it.
    pub fn open_in_place(&mut self, counter: u64, buf: &mut [u8]) -> Result<usize, OpenError> {
        let len = buf.len();
        if len < TAG_LEN {
            return Err(OpenError::Size { len });
        }
        self.window.check(counter)?;
        let plain = ChaChaPoly::decrypt_in_place(&self.receive_key, counter, &[], buf, len)
            .map_err(|_| OpenError::Forged { counter })?;
        self.window.accept(counter);
        Ok(plain)
    }

    /// Seals `msg` as a [`Sealed`] packet of at most `max_packet` bytes (message plus CRC)
    /// and encodes it for the wire into `tx`; `scratch` holds the inner message while it is
    /// encrypted.
    pub fn seal_message<'t>(
        &mut self,
        msg: &Message<'_>,
        max_packet: usize,
        scratch: &mut [u8],
        tx: &'t mut [u8],
    ) -> Result<&'t [u8], SealError> {
        let room = scratch.len().saturating_sub(TAG_LEN);
        let len = match postcard::to_slice(msg, scratch.get_mut(..room).unwrap_or_default()) {
            Ok(body) => body.len(),
            Err(_) => {
                return Err(SealError::NoRoom {
                    len: wire::serialized_len(msg),
                });
            }
        };
        self.seal_body(len, max_packet, scratch, tx)
    }

    /// Seals a message's postcard bytes, `scratch[..len]`, as [`seal_message`] does.
    ///
    /// [`seal_message`]: Self::seal_message
    pub fn seal_body<'t>(
        &mut self,
        len: usize,
        max_packet: usize,
        scratch: &mut [u8],
        tx: &'t mut [u8],
    ) -> Result<&'t [u8], SealError> {
        let (counter, sealed) = self.seal_in_place(scratch, len)?;
        let data = scratch.get(..sealed).unwrap_or_default();
        wire::encode_limited(&Message::Sealed(Sealed { counter, data }), max_packet, tx)
            .map_err(SealError::Encode)
    }

    /// Opens a [`Sealed`] packet into `scratch` and returns the inner message's postcard
    /// bytes (parse them with [`wire::parse_body`]).
    pub fn open_body<'s>(
        &mut self,
        sealed: &Sealed<'_>,
        scratch: &'s mut [u8],
    ) -> Result<&'s [u8], OpenError> {
        let len = sealed.data.len();
        let buf = scratch.get_mut(..len).ok_or(OpenError::Size { len })?;
        buf.copy_from_slice(sealed.data);
        let plain = self.open_in_place(sealed.counter, buf)?;
        Ok(scratch.get(..plain).unwrap_or_default())
    }

    /// Opens a [`Sealed`] packet into `scratch` and parses the inner message.
    pub fn open_message<'s>(
        &mut self,
        sealed: &Sealed<'_>,
        scratch: &'s mut [u8],
    ) -> Result<Message<'s>, OpenError> {
        let counter = sealed.counter;
        let body = self.open_body(sealed, scratch)?;
        wire::parse_body(body).map_err(|_| OpenError::Unreadable { counter })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_takes_each_counter_once_and_in_any_order_within_reach() {
        let mut w = ReplayWindow::default();
        for c in [5, 3, 4, 70, 10] {
            w.check(c).unwrap();
            w.accept(c);
        }
        assert_eq!(
            w.check(5),
            Err(OpenError::TooOld {
                counter: 5,
                newest: 70
            })
        );
        assert_eq!(w.check(70), Err(OpenError::Replayed { counter: 70 }));
        assert_eq!(w.check(10), Err(OpenError::Replayed { counter: 10 }));
        assert!(w.check(11).is_ok());
        assert!(w.check(7).is_ok(), "within 64 of 70, never seen");
        assert_eq!(
            w.check(6),
            Err(OpenError::TooOld {
                counter: 6,
                newest: 70
            })
        );
        w.accept(500);
        assert_eq!(
            w.check(70),
            Err(OpenError::TooOld {
                counter: 70,
                newest: 500
            })
        );
        assert!(w.check(499).is_ok());
    }
}
