//! Tests that span more than one dinoedge crate: edge, link, host.
// One test binary per crate: each binary links the whole host with tract (about 150 MB in a
// debug build), so one per file filled CI's disk and spent minutes linking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

mod capture_controls;
mod cut_link;
mod link_e2e;
mod live_mask;
mod pipeline_live;
mod wire_capture;
