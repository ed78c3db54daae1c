//! Events the consumer has no room for yet, oldest first, bounded in events and in bytes.

use std::collections::VecDeque;

use crate::link::event::LinkEvent;

/// An ordered queue of events for the consumer. Structural events (connections, sessions)
/// are always kept; frames, logs and edge events are refused beyond the bounds.
#[derive(Debug)]
pub(crate) struct Backlog {
    events: VecDeque<LinkEvent>,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
}

impl Backlog {
    /// An empty backlog with these bounds.
    pub(crate) fn new(max_events: usize, max_bytes: usize) -> Self {
        Backlog {
            events: VecDeque::new(),
            bytes: 0,
            max_events,
            max_bytes,
        }
    }

    /// Queues `event`, or gives it back when it would break a bound.
    pub(crate) fn push(&mut self, event: LinkEvent) -> Result<(), LinkEvent> {
        let bytes = event.bytes();
        let fits = self.events.len() < self.max_events
            && self.bytes.saturating_add(bytes) <= self.max_bytes;
        if fits || event.is_structural() {
            self.bytes += bytes;
            self.events.push_back(event);
            Ok(())
        } else {
            Err(event)
        }
    }

    /// The oldest event.
    pub(crate) fn pop(&mut self) -> Option<LinkEvent> {
        let event = self.events.pop_front()?;
        self.bytes = self.bytes.saturating_sub(event.bytes());
        Some(event)
    }

    /// Events held.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Frame bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}
