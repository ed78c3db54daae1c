//! A bounded hand-off between two pipeline stages, with the run's policy built in: wait for
//! room (every frame processed) or replace the oldest waiting item (the latest frame wins).
//! Written here because the channel crates offer no replace-the-oldest send.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard};

/// What a full hand-off does with a new item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The producer waits for room.
    Wait,
    /// The oldest waiting item is taken out and handed back to the producer (to be counted).
    ReplaceOldest,
}

/// A bounded queue between threads.
#[derive(Debug)]
pub struct Handoff<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
    capacity: usize,
    overflow: Overflow,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Handoff<T> {
    /// A hand-off holding at most `capacity` items (at least 1).
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Handoff {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
            }),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            overflow,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking stage leaves the queue itself consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `item` on. `Ok(Some(old))` is an item replaced by it; `Err(item)` when closed.
    pub fn push(&self, item: T) -> Result<Option<T>, T> {
        let mut s = self.lock();
        let mut evicted = None;
        loop {
            if s.closed {
                return Err(item);
            }
            if s.items.len() < self.capacity {
                break;
            }
            match self.overflow {
                Overflow::ReplaceOldest => {
                    evicted = s.items.pop_front();
                    break;
                }
                Overflow::Wait => {
                    s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        s.items.push_back(item);
        drop(s);
        self.changed.notify_all();
        Ok(evicted)
    }

    /// The next item, waiting for one; `None` once closed and empty.
    pub fn pop(&self) -> Option<T> {
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                drop(s);
                self.changed.notify_all();
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = self.changed.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// No more items will come: waiting producers fail, consumers drain what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether none are waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::Arc;

    #[test]
    fn latest_wins_hands_back_what_it_replaced() {
        let h = Handoff::new(1, Overflow::ReplaceOldest);
        assert_eq!(h.push(1), Ok(None));
        assert_eq!(h.push(2), Ok(Some(1)));
        assert_eq!(h.push(3), Ok(Some(2)));
        assert_eq!(h.pop(), Some(3));
        h.close();
        assert_eq!(h.push(4), Err(4));
        assert_eq!(h.pop(), None);
    }

    #[test]
    fn waiting_loses_nothing_and_keeps_order() {
        let h = Arc::new(Handoff::new(2, Overflow::Wait));
        let producer = {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..1000 {
                    assert_eq!(h.push(i), Ok(None));
                }
                h.close();
            })
        };
        let mut got = Vec::new();
        while let Some(i) = h.pop() {
            got.push(i);
        }
        producer.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
    }
}
