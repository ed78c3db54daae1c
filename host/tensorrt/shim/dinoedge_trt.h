/*
 * dinoedge's C ABI over TensorRT: the builder (ONNX parser, strongly typed network, timing cache,
 * serialized engine) and the runtime (engine, execution context, device buffers, CUDA stream).
 *
 * The host loads the shared library that implements this header at run time, so one dinoedge
 * binary runs with or without TensorRT. Two libraries implement it: `shim.cpp` over TensorRT
 * 10.3+ (built by this crate's build script where TensorRT's headers are found), and `fake.c`, a
 * stand-in with no GPU that the tests build to exercise the host's side of every call.
 *
 * Conventions:
 *  - Every call that can fail returns a `dtrt_status`; on anything but DTRT_OK,
 *    `dtrt_last_error()` describes it (parser messages, TensorRT's own log errors, CUDA error
 *    names such as `cudaErrorIllegalAddress`).
 *  - No call aborts or throws across this boundary.
 *  - Objects are opaque; each `*_create`/`*_load` has its `*_free`.
 *  - An engine may be used by several threads; a context by one thread at a time.
 */
#ifndef DINOEDGE_TRT_H
#define DINOEDGE_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes; the host refuses a library that reports another. */
#define DTRT_ABI_VERSION 1

/* What a call returns. */
typedef int32_t dtrt_status;
#define DTRT_OK 0
/* Anything not below. */
#define DTRT_ERR_OTHER 1
/* The ONNX parser refused the graph; the message holds every parser error. */
#define DTRT_ERR_PARSE 2
/* Out of host or device memory (a build, an engine load, a context, a buffer). */
#define DTRT_ERR_OUT_OF_MEMORY 3
/* A CUDA call failed; the message starts with the error's name. */
#define DTRT_ERR_CUDA 4
/* The engine bytes were refused (corrupt, truncated, another TensorRT version or GPU). */
#define DTRT_ERR_DESERIALIZE 5
/* An argument was wrong (null pointer, index out of range, wrong byte count). */
#define DTRT_ERR_ARGUMENT 6
/* The progress callback asked to stop the build. */
#define DTRT_ERR_CANCELLED 7

/* Versions, as TensorRT encodes them: major * 10000 + minor * 100 + patch (CUDA: major * 1000 + minor * 10). */
typedef struct dtrt_versions {
    /* DTRT_ABI_VERSION of the library. */
    int32_t abi;
    /* NV_TENSORRT_VERSION of the headers the library was compiled against. */
    int32_t headers;
    /* getInferLibVersion(): the libnvinfer loaded. */
    int32_t library;
    /* getNvOnnxParserVersion(): the libnvonnxparser loaded. */
    int32_t parser;
    /* cudaRuntimeGetVersion(). */
    int32_t cuda_runtime;
    /* cudaDriverGetVersion(). */
    int32_t cuda_driver;
} dtrt_versions;

/* One GPU. */
typedef struct dtrt_device {
    /* NUL-terminated, e.g. "Orin". */
    char name[256];
    int32_t cc_major;
    int32_t cc_minor;
    /* Streaming multiprocessors: tells Orin AGX, NX and Nano apart (all "Orin", sm_87). */
    int32_t multiprocessors;
    uint64_t total_bytes;
} dtrt_device;

/* Element types, with TensorRT's DataType numbering. */
#define DTRT_FLOAT 0
#define DTRT_HALF 1
#define DTRT_INT8 2
#define DTRT_INT32 3
#define DTRT_BOOL 4
#define DTRT_UINT8 5
#define DTRT_FP8 6
#define DTRT_BF16 7
#define DTRT_INT64 8

/* One input or output tensor of a context, with concrete dimensions. */
typedef struct dtrt_io {
    /* NUL-terminated; valid while the context lives. */
    const char *name;
    /* 1 for an input, 0 for an output. */
    int32_t is_input;
    /* DTRT_FLOAT, DTRT_HALF, ... */
    int32_t dtype;
    int32_t nb_dims;
    int64_t dims[8];
    /* Bytes of one whole tensor. */
    uint64_t bytes;
} dtrt_io;

/* How to build. */
typedef struct dtrt_build_options {
    /* The size given to every input axis the graph leaves dynamic (-1): the batch. */
    int32_t batch;
    /* IBuilderConfig::setBuilderOptimizationLevel, 0-5; -1 keeps TensorRT's default (3). */
    int32_t opt_level;
    /* The workspace pool limit in bytes; 0 keeps TensorRT's default. */
    uint64_t workspace_bytes;
} dtrt_build_options;

/*
 * Receives bytes the library produces (a serialized engine, a timing cache). Called once with
 * the whole blob, which is valid only during the call.
 */
typedef void (*dtrt_write_fn)(void *user, const uint8_t *data, size_t len);

/*
 * Build progress: a phase starts (step 0), advances (step 1..steps) and ends (step == steps).
 * `depth` is 0 for top-level phases. Return 0 to go on, anything else to cancel the build.
 * Calls may come from any of TensorRT's threads, one at a time (the shim serialises them).
 */
typedef int32_t (*dtrt_progress_fn)(void *user, const char *phase, int32_t depth, int32_t step,
                                    int32_t steps);

/* DTRT_ABI_VERSION. Never fails; the first call the host makes. */
int32_t dtrt_abi_version(void);

/* The thread's last error message (NUL-terminated, empty if none), valid until its next call. */
const char *dtrt_last_error(void);

/* The versions of the headers, of the libraries loaded, and of CUDA. */
dtrt_status dtrt_versions_get(dtrt_versions *out);

/* GPU `device`'s name, compute capability and memory. */
dtrt_status dtrt_device_get(int32_t device, dtrt_device *out);

/*
 * Parses the ONNX file at `onnx_path` (external data beside it is found by the parser) into a
 * strongly typed network (precision comes from the graph; no builder precision flags), builds it
 * with one optimization profile in which every dynamic input axis is `options->batch`, and hands
 * the serialized engine to `write_engine`. `timing_cache` (may be NULL with length 0) seeds the
 * builder's timing cache; the updated cache goes to `write_timing_cache` (may be NULL).
 * `progress` may be NULL.
 */
dtrt_status dtrt_build(const char *onnx_path, const dtrt_build_options *options,
                       const uint8_t *timing_cache, size_t timing_cache_len,
                       dtrt_progress_fn progress, void *progress_user, dtrt_write_fn write_engine,
                       void *engine_user, dtrt_write_fn write_timing_cache, void *cache_user);

typedef struct dtrt_engine dtrt_engine;
typedef struct dtrt_context dtrt_context;

/* Deserializes an engine on GPU 0. The bytes are copied; the caller may free them. */
dtrt_status dtrt_engine_load(const uint8_t *data, size_t len, dtrt_engine **out);
void dtrt_engine_free(dtrt_engine *engine);

/*
 * An execution context with its own CUDA stream, timing events, a device buffer for every
 * input and output, and a page-locked host buffer for every output. Dynamic input axes take
 * the engine's optimization profile's dimensions.
 */
dtrt_status dtrt_context_create(dtrt_engine *engine, dtrt_context **out);
void dtrt_context_free(dtrt_context *context);

/* How many inputs and outputs, and each one (index 0 .. count-1, in the engine's order). */
int32_t dtrt_context_io_count(const dtrt_context *context);
dtrt_status dtrt_context_io(const dtrt_context *context, int32_t index, dtrt_io *out);

/* Copies `bytes` (exactly the tensor's size) from host memory into input `index` on the stream. */
dtrt_status dtrt_context_copy_input(dtrt_context *context, int32_t index, const void *host,
                                    size_t bytes);

/*
 * Binds input `index` to device memory the caller owns (e.g. the GPU preprocessing's output),
 * which must hold the whole tensor and outlive the runs that use it. 0 binds the context's own
 * buffer again.
 */
dtrt_status dtrt_context_bind_input(dtrt_context *context, int32_t index, uint64_t device_ptr,
                                    size_t bytes);

/*
 * Runs the engine on the context's stream (enqueueV3), copies every output to its page-locked
 * host buffer and waits. `gpu_ms` (may be NULL) receives the time between CUDA events recorded
 * around the enqueue.
 */
dtrt_status dtrt_context_run(dtrt_context *context, float *gpu_ms);

/* Output `index`'s host copy from the last run, valid until the next run or the free. */
dtrt_status dtrt_context_output(const dtrt_context *context, int32_t index, const void **host,
                                size_t *bytes);

#ifdef __cplusplus
}
#endif

#endif /* DINOEDGE_TRT_H */
