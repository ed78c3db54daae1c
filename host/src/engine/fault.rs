//! What a failed run means for the process: most engine errors end the run; an error that
//! poisons the CUDA context (an illegal address, a launch failure, a lost GPU) leaves no way to
//! run anything more on that GPU in this process, so it either ends the process with its own
//! exit code (the service manager restarts it, and `auto` chooses again) or, where the
//! configuration allows, the run carries on on the CPU with results flagged `DEGRADED`.

/// The exit code of a process ended by a GPU fault (75, `EX_TEMPFAIL`: try again).
pub const GPU_FAULT_EXIT_CODE: u8 = 75;

/// What to do when the GPU faults mid-run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GpuFaultPolicy {
    /// End the process with exit code 75; frames in flight are reported lost.
    #[default]
    Exit,
    /// Carry on with the CPU engine (prepared at the start, beside the GPU engine); every later
    /// result carries the `DEGRADED` alarm flag and the report says from which frame.
    Cpu,
}

/// CUDA errors after which the context cannot be used again (sticky errors), by the names the
/// driver API and the runtime API give them.
const POISONING: &[&str] = &[
    "CUDA_ERROR_ILLEGAL_ADDRESS",
    "CUDA_ERROR_LAUNCH_FAILED",
    "CUDA_ERROR_ILLEGAL_INSTRUCTION",
    "CUDA_ERROR_MISALIGNED_ADDRESS",
    "CUDA_ERROR_INVALID_ADDRESS_SPACE",
    "CUDA_ERROR_INVALID_PC",
    "CUDA_ERROR_HARDWARE_STACK_ERROR",
    "CUDA_ERROR_ECC_UNCORRECTABLE",
    "CUDA_ERROR_CONTEXT_IS_DESTROYED",
    "CUDA_ERROR_DEVICE_UNAVAILABLE",
    "CUDA_ERROR_LAUNCH_TIMEOUT",
    "cudaErrorIllegalAddress",
    "cudaErrorLaunchFailure",
    "cudaErrorIllegalInstruction",
    "cudaErrorMisalignedAddress",
    "cudaErrorInvalidPc",
    "cudaErrorHardwareStackError",
    "cudaErrorECCUncorrectable",
    "cudaErrorContextIsDestroyed",
    "cudaErrorDevicesUnavailable",
    "cudaErrorLaunchTimeout",
];

/// Whether an engine error (its whole chain, as text) poisons the CUDA context.
pub fn is_poisoning(error: &str) -> bool {
    POISONING.iter().any(|name| error.contains(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_cuda_errors_poison_and_others_do_not() {
        assert!(is_poisoning(
            "tract: running node 12: DriverError(CUDA_ERROR_ILLEGAL_ADDRESS, \"an illegal memory access was encountered\")"
        ));
        assert!(is_poisoning(
            "cudaErrorLaunchFailure: unspecified launch failure"
        ));
        assert!(!is_poisoning(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"
        ));
        assert!(!is_poisoning(
            "input shape [1, 3, 32, 32] expected [1, 3, 64, 64]"
        ));
    }
}
