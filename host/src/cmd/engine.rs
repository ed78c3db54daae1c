//! `--engine` and `--precision`, shared by every command that runs the backbone (the choice is
//! logged by the engine itself, and named in each command's summary and JSON).

use clap::Args;
use dinoedge::engine::{EngineRequest, Precision};

/// Which engine runs the backbone.
#[derive(Debug, Args, Clone, Copy)]
pub struct EngineArgs {
    /// The engine that runs the backbone: `auto` takes the first of TensorRT (not yet in
    /// dinoedge), CUDA and the CPU that this build has and this machine can run, and says why
    /// it passed over the others.
    #[arg(long, value_enum, default_value_t = EngineRequest::Auto)]
    pub engine: EngineRequest,
    /// The precision the engine computes in: fp16 halves weights and activations, keeping the
    /// normalisations and softmax in fp32 (meant for the GPU; tract emulates it on the CPU).
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
}
