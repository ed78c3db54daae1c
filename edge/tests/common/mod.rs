//! The in-memory link, clock and pins the edge tests share.
#![allow(dead_code, clippy::unwrap_used)]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use dinoedge_edge::port::Clock;

pub type Pipe = Rc<RefCell<VecDeque<u8>>>;

/// One end of an in-memory duplex link.
pub struct End {
    pub rx: Pipe,
    pub tx: Pipe,
}

impl embedded_io::ErrorType for End {
    type Error = core::convert::Infallible;
}

impl embedded_io::Read for End {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let mut rx = self.rx.borrow_mut();
        let n = buf.len().min(rx.len());
        for b in buf.iter_mut().take(n) {
            *b = rx.pop_front().unwrap();
        }
        Ok(n)
    }
}

impl embedded_io::ReadReady for End {
    fn read_ready(&mut self) -> Result<bool, Self::Error> {
        Ok(!self.rx.borrow().is_empty())
    }
}

impl embedded_io::Write for End {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.tx.borrow_mut().extend(buf.iter().copied());
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Default)]
pub struct TestClock(pub Cell<u64>);

impl Clock for TestClock {
    fn now_us(&self) -> u64 {
        self.0.get()
    }
}

/// An output pin that does nothing.
pub struct NullPin;
impl embedded_hal::digital::ErrorType for NullPin {
    type Error = core::convert::Infallible;
}
impl embedded_hal::digital::OutputPin for NullPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
