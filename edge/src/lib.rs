//! The dinoedge acquisition-side firmware core: captures frames at the scanner, streams them to
//! the host under credit-based flow control, and acts on the results that come back.
//!
//! `no_std` and without a heap. It speaks the protocol of [`dinoedge_proto`] (re-exported as
//! [`proto`]); its state machine, capture and link traits arrive with the firmware-core work
//! (see ARCHITECTURE.md). Until then this crate proves that the protocol crate builds into
//! firmware: `cargo build -p dinoedge-edge --target thumbv7em-none-eabihf`.
#![no_std]

pub use dinoedge_proto as proto;
