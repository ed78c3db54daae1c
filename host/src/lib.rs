//! dinoedge on the Jetson: the host side of the link to the acquisition edge.
//!
//! # Overview
//! The wire protocol itself lives in [`dinoedge_proto`] (re-exported as [`proto`]). This crate
//! grows around it: the link, preprocessing, the DINOv3 backbone, heads, results, record and
//! replay. It holds [`link`], the host's end of the link (serial or TCP, handshake,
//! credits, reassembly, clock offset, reconnection); [`backbone`], DINOv3 ViT weights, graph and
//! tract runtime; with a `cuda-*` feature, `cuda`, preprocessing on the GPU; and [`wire_tools`]:
//! making synthetic link captures as an edge would send them, and inspecting captures packet by
//! packet, with every loss explained.
//!
//! The binary `dinoedge` (`src/main.rs`, `src/cmd/`) is a thin command-line layer over this
//! library.

pub use dinoedge_proto as proto;

pub mod backbone;
pub mod capture;
pub mod controls;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod doctor;
pub mod engine;
pub mod files;
pub mod heads;
pub mod import;
pub mod link;
pub mod pipeline;
pub mod preprocess;
pub mod probe;
pub mod quantize;
pub mod recording;
pub mod service;
pub mod storage;
pub mod telemetry;
pub mod view;
pub mod wire_tools;
