//! The CPU engine: tract optimises the graph for this machine's SIMD and runs it on `threads`
//! threads.

use std::sync::Arc;

use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::{RunOptions, Runnable};

/// Optimises `model` and makes it runnable with `threads` threads per run.
pub(super) fn prepare(
    model: TypedModel,
    threads: usize,
) -> TractResult<(Arc<dyn Runnable>, String)> {
    let executor = if threads > 1 {
        Executor::multithread(threads)
    } else {
        Executor::SingleThread
    };
    let plan = model
        .into_optimized()?
        .into_runnable_with_options(&RunOptions {
            executor: Some(executor),
            ..Default::default()
        })?;
    let device = format!(
        "cpu: {} ({threads} thread{})",
        crate::doctor::cpu_model(),
        if threads == 1 { "" } else { "s" }
    );
    Ok((Arc::new(plan), device))
}
