/*
 * dinoedge's TensorRT shim: implements the C ABI of dinoedge_trt.h over TensorRT 10.3+ and the
 * CUDA runtime. host/tensorrt/build.rs compiles it where TensorRT's headers are found, and the
 * host loads it at run time. CI only compiles it (scripts/ci_tensorrt_shim.sh), against
 * TensorRT 11.4's public headers with a stub cuda_runtime_api.h, so the code keeps to the API
 * that TensorRT 10.3 and 11.x share.
 */
#include "dinoedge_trt.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#if (NV_TENSORRT_MAJOR * 100 + NV_TENSORRT_MINOR) < 1003
#error "the dinoedge TensorRT shim needs TensorRT 10.3 or newer"
#endif

/*
 * NvInfer.h includes <cuda_runtime_api.h>. CI compiles against a stub of it that declares only
 * cudaStream_t and cudaEvent_t; CUDA's real header defines __CUDA_RUNTIME_API_H__. For that
 * compile-only check (and only when asked for, so a real build cannot silently pick up a stub),
 * declare the few runtime functions and constants used here, with CUDA's own signatures and
 * values. Such a build is never linked.
 */
#if !defined(__CUDA_RUNTIME_API_H__)
#if !defined(DTRT_STUB_CUDA_HEADERS)
#error "the cuda_runtime_api.h that NvInfer.h included is not CUDA's; define DTRT_STUB_CUDA_HEADERS only for a compile check"
#endif
extern "C" {
enum cudaError { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2 };
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76
};
cudaError_t cudaMalloc(void** devPtr, size_t size);
cudaError_t cudaFree(void* devPtr);
cudaError_t cudaMallocHost(void** ptr, size_t size);
cudaError_t cudaFreeHost(void* ptr);
cudaError_t cudaMemset(void* devPtr, int value, size_t count);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaStreamCreate(cudaStream_t* pStream);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaEventCreate(cudaEvent_t* event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device);
cudaError_t cudaRuntimeGetVersion(int* runtimeVersion);
cudaError_t cudaDriverGetVersion(int* driverVersion);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetLastError(void);
const char* cudaGetErrorName(cudaError_t error);
const char* cudaGetErrorString(cudaError_t error);
}
#endif

namespace {

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::ILogger;

static_assert(Dims::MAX_DIMS <= 8, "dtrt_io.dims holds 8 dimensions");
// Byte counts (uint64_t in the ABI) go to cudaMalloc and TensorRT as size_t unchecked.
static_assert(sizeof(size_t) >= sizeof(uint64_t), "a 64-bit target");
static_assert(static_cast<int32_t>(DataType::kFLOAT) == DTRT_FLOAT &&
                  static_cast<int32_t>(DataType::kHALF) == DTRT_HALF &&
                  static_cast<int32_t>(DataType::kINT8) == DTRT_INT8 &&
                  static_cast<int32_t>(DataType::kINT32) == DTRT_INT32 &&
                  static_cast<int32_t>(DataType::kBOOL) == DTRT_BOOL &&
                  static_cast<int32_t>(DataType::kUINT8) == DTRT_UINT8 &&
                  static_cast<int32_t>(DataType::kFP8) == DTRT_FP8 &&
                  static_cast<int32_t>(DataType::kBF16) == DTRT_BF16 &&
                  static_cast<int32_t>(DataType::kINT64) == DTRT_INT64,
              "the header promises TensorRT's DataType numbering");

constexpr int32_t kHeaderVersion = NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;

#if NV_TENSORRT_MAJOR >= 11
// TensorRT 11 networks are always strongly typed; the flag is deprecated there and its value moved
// (1 in 10.x, 0 in 11.x), so only the name may be used, and only where it still means something.
constexpr nvinfer1::NetworkDefinitionCreationFlags kNetworkFlags = 0U;
#else
constexpr nvinfer1::NetworkDefinitionCreationFlags kNetworkFlags =
    1U << static_cast<uint32_t>(nvinfer1::NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
#endif

// A failure on its way to the C boundary, where guarded() turns it into a status and message.
struct Failure {
    dtrt_status status;
    std::string message;
};

[[noreturn]] void fail(dtrt_status status, std::string message) {
    throw Failure{status, std::move(message)};
}

void require(bool ok, char const* message) {
    if (!ok) {
        fail(DTRT_ERR_ARGUMENT, message);
    }
}

thread_local std::string t_last_error;

void set_last_error(char const* a, char const* b = "") noexcept {
    try {
        t_last_error.assign(a).append(b);
    } catch (...) {
        // Short enough for the small-string buffer: cannot throw.
        t_last_error.clear();
        t_last_error.assign("out of memory");
    }
}

bool says_out_of_memory(std::string const& message) {
    std::string lower(message);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (char const* pattern : {"out of memory", "outofmemory", "cudaerrormemoryallocation",
                                "failed to allocate", "could not be allocated", "insufficient memory",
                                "memory allocation failed"}) {
        if (lower.find(pattern) != std::string::npos) {
            return true;
        }
    }
    return false;
}

/*
 * TensorRT's error log, per entry point. TensorRT keeps the first logger it is given for good
 * (its global logger), so there is one logger for the life of the process; each entry point that
 * calls TensorRT opens a Capture, and the logger files an error under the capture of the thread it
 * runs on, or, from a thread of TensorRT's own, under every open capture.
 */
struct Capture {
    std::vector<std::string> errors;
    size_t dropped = 0;
};

struct CaptureRegistry {
    std::mutex mutex;
    std::vector<Capture*> open;
};

// Never destroyed: TensorRT may log from its own teardown at process exit.
CaptureRegistry& registry() {
    static CaptureRegistry* r = new CaptureRegistry;
    return *r;
}

thread_local Capture* t_capture = nullptr;

void file_error(Capture& capture, char const* message) {
    constexpr size_t kMaxErrors = 24;
    constexpr size_t kMaxChars = 2000;
    if (capture.errors.size() >= kMaxErrors) {
        ++capture.dropped;
        return;
    }
    std::string m(message);
    if (m.size() > kMaxChars) {
        m.resize(kMaxChars);
        m.append("...");
    }
    capture.errors.push_back(std::move(m));
}

class Logger final : public ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* message) noexcept override {
        if ((severity != Severity::kERROR && severity != Severity::kINTERNAL_ERROR) || message == nullptr) {
            return;
        }
        try {
            CaptureRegistry& r = registry();
            std::lock_guard<std::mutex> lock(r.mutex);
            if (t_capture != nullptr) {
                file_error(*t_capture, message);
            } else {
                for (Capture* c : r.open) {
                    file_error(*c, message);
                }
            }
        } catch (...) {
            // A message lost to a full heap: the entry point still reports its own failure.
        }
    }
};

ILogger& logger() {
    static Logger* l = new Logger;
    return *l;
}

class CaptureScope {
public:
    CaptureScope() : previous_(t_capture) {
        CaptureRegistry& r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.open.push_back(&capture_);
        t_capture = &capture_;
    }
    ~CaptureScope() {
        CaptureRegistry& r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        r.open.erase(std::remove(r.open.begin(), r.open.end(), &capture_), r.open.end());
        t_capture = previous_;
    }
    CaptureScope(CaptureScope const&) = delete;
    CaptureScope& operator=(CaptureScope const&) = delete;

    std::vector<std::string> errors() {
        std::lock_guard<std::mutex> lock(registry().mutex);
        std::vector<std::string> all = capture_.errors;
        if (capture_.dropped > 0) {
            all.push_back("(" + std::to_string(capture_.dropped) + " more errors)");
        }
        return all;
    }

    // Forgets what was logged so far, for a failure that was handled.
    void clear() {
        std::lock_guard<std::mutex> lock(registry().mutex);
        capture_.errors.clear();
        capture_.dropped = 0;
    }

    bool out_of_memory() {
        for (std::string const& e : errors()) {
            if (says_out_of_memory(e)) {
                return true;
            }
        }
        return false;
    }

    bool mentions_memory() {
        for (std::string e : errors()) {
            std::transform(e.begin(), e.end(), e.begin(),
                           [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
            if (e.find("memory") != std::string::npos) {
                return true;
            }
        }
        return false;
    }

    // `what`, then TensorRT's errors.
    std::string describe(std::string what) {
        std::vector<std::string> all = errors();
        for (size_t i = 0; i < all.size(); ++i) {
            what.append(i == 0 ? ": " : "; ").append(all[i]);
        }
        return what;
    }

private:
    Capture capture_;
    Capture* previous_;
};

void check_cuda(cudaError_t error, std::string const& what) {
    if (error == cudaSuccess) {
        return;
    }
    // Clears the thread's error state where the error is not sticky, so that a later TensorRT call
    // does not trip over ours.
    (void)cudaGetLastError();
    char const* name = cudaGetErrorName(error);
    char const* text = cudaGetErrorString(error);
    std::string message = name != nullptr ? std::string(name) : "cudaError " + std::to_string(static_cast<int>(error));
    message.append(": ").append(text != nullptr ? text : "?").append(" (").append(what).append(")");
    fail(error == cudaErrorMemoryAllocation ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_CUDA, std::move(message));
}

// Runs an entry point's body: nothing thrown gets past it.
template <typename Body>
dtrt_status guarded(Body&& body) noexcept {
    t_last_error.clear();
    try {
        body();
        return DTRT_OK;
    } catch (Failure const& f) {
        set_last_error(f.message.c_str());
        return f.status;
    } catch (std::bad_alloc const&) {
        set_last_error("out of host memory");
        return DTRT_ERR_OUT_OF_MEMORY;
    } catch (std::exception const& e) {
        set_last_error("unexpected C++ exception: ", e.what());
        return DTRT_ERR_OTHER;
    } catch (...) {
        set_last_error("unexpected C++ exception");
        return DTRT_ERR_OTHER;
    }
}

std::string dims_text(Dims const& dims) {
    std::string s("[");
    for (int32_t i = 0; i < dims.nbDims; ++i) {
        s.append(i == 0 ? "" : ",").append(std::to_string(dims.d[i]));
    }
    return s.append("]");
}

size_t element_size(DataType type) {
    switch (type) {
    case DataType::kFLOAT:
    case DataType::kINT32:
        return 4;
    case DataType::kHALF:
    case DataType::kBF16:
        return 2;
    case DataType::kINT8:
    case DataType::kBOOL:
    case DataType::kUINT8:
    case DataType::kFP8:
        return 1;
    case DataType::kINT64:
        return 8;
    default:
        // INT4, FP4 and later types: no whole-byte size, and not in the ABI.
        return 0;
    }
}

bool is_dynamic(Dims const& dims) {
    return std::any_of(dims.d, dims.d + std::max(dims.nbDims, 0), [](int64_t d) { return d < 0; });
}

/*
 * Build progress, forwarded to the C callback. TensorRT numbers completed steps from 0 and may end
 * a phase early; the callback sees 0 at the start, k+1 when step k completes and exactly one report
 * with step == steps at the end.
 */
class Progress final : public nvinfer1::IProgressMonitor {
public:
    Progress(dtrt_progress_fn fn, void* user) : fn_(fn), user_(user) {}

    void phaseStart(char const* phase, char const* parent, int32_t steps) noexcept override {
        try {
            std::lock_guard<std::mutex> lock(mutex_);
            int32_t depth = 0;
            if (parent != nullptr) {
                auto it = phases_.find(parent);
                depth = it == phases_.end() ? 1 : it->second.depth + 1;
            }
            std::string name(phase != nullptr ? phase : "");
            phases_[name] = Phase{depth, steps, 0};
            report(name, depth, 0, steps);
        } catch (...) {
            // Progress is informational: a failure to track it leaves the build alone.
        }
    }

    bool stepComplete(char const* phase, int32_t step) noexcept override {
        try {
            std::lock_guard<std::mutex> lock(mutex_);
            std::string name(phase != nullptr ? phase : "");
            auto it = phases_.find(name);
            if (it != phases_.end()) {
                Phase& p = it->second;
                p.reported = std::min(step + 1, p.steps);
                report(name, p.depth, p.reported, p.steps);
            }
        } catch (...) {
        }
        return !cancelled_.load();
    }

    void phaseFinish(char const* phase) noexcept override {
        try {
            std::lock_guard<std::mutex> lock(mutex_);
            std::string name(phase != nullptr ? phase : "");
            auto it = phases_.find(name);
            if (it != phases_.end()) {
                Phase p = it->second;
                phases_.erase(it);
                if (p.reported < p.steps) {
                    report(name, p.depth, p.steps, p.steps);
                }
            }
        } catch (...) {
        }
    }

    bool cancelled() const { return cancelled_.load(); }

private:
    struct Phase {
        int32_t depth;
        int32_t steps;
        int32_t reported;
    };

    void report(std::string const& name, int32_t depth, int32_t step, int32_t steps) {
        if (fn_(user_, name.c_str(), depth, step, steps) != 0) {
            cancelled_.store(true);
        }
    }

    dtrt_progress_fn fn_;
    void* user_;
    std::mutex mutex_;
    std::map<std::string, Phase> phases_;
    std::atomic<bool> cancelled_{false};
};

std::string parser_errors(nvonnxparser::IParser const& parser) {
    std::string text;
    for (int i = 0; i < parser.getNbErrors(); ++i) {
        nvonnxparser::IParserError const* e = parser.getError(i);
        if (e == nullptr) {
            continue;
        }
        text.append(text.empty() ? "" : "; ");
        if (e->node() >= 0) {
            text.append("node ").append(std::to_string(e->node()));
            char const* name = e->nodeName();
            char const* op = e->nodeOperator();
            if (name != nullptr && name[0] != '\0') {
                text.append(" '").append(name).append("'");
            }
            if (op != nullptr && op[0] != '\0') {
                text.append(" (").append(op).append(")");
            }
            text.append(": ");
        }
        text.append(e->desc() != nullptr ? e->desc() : "?");
    }
    return text;
}

// A TensorRT engine and the runtime that made it, which must outlive it (hence the member order).
// Contexts hold it too, so that freeing the engine before its contexts is harmless.
struct EngineCore {
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::mutex mutex;
};

struct DeviceBuffer {
    void* ptr = nullptr;
    DeviceBuffer() = default;
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
    ~DeviceBuffer() {
        if (ptr != nullptr) {
            (void)cudaFree(ptr);
        }
    }
};

struct PinnedBuffer {
    void* ptr = nullptr;
    PinnedBuffer() = default;
    PinnedBuffer(PinnedBuffer const&) = delete;
    PinnedBuffer& operator=(PinnedBuffer const&) = delete;
    ~PinnedBuffer() {
        if (ptr != nullptr) {
            (void)cudaFreeHost(ptr);
        }
    }
};

struct Stream {
    cudaStream_t handle = nullptr;
    Stream() = default;
    Stream(Stream const&) = delete;
    Stream& operator=(Stream const&) = delete;
    ~Stream() {
        if (handle != nullptr) {
            (void)cudaStreamDestroy(handle);
        }
    }
};

struct Event {
    cudaEvent_t handle = nullptr;
    Event() = default;
    Event(Event const&) = delete;
    Event& operator=(Event const&) = delete;
    ~Event() {
        if (handle != nullptr) {
            (void)cudaEventDestroy(handle);
        }
    }
};

struct Tensor {
    std::string name;
    bool is_input = false;
    DataType type = DataType::kFLOAT;
    Dims dims{};
    uint64_t bytes = 0;
    DeviceBuffer device;
    // What TensorRT reads for an input: `device`, or memory the caller bound.
    void* bound = nullptr;
    // Outputs only: where each run leaves its copy.
    PinnedBuffer host;
};

void use_gpu0() {
    check_cuda(cudaSetDevice(0), "cudaSetDevice(0)");
}

} // namespace

struct dtrt_engine {
    std::shared_ptr<EngineCore> core;
};

struct dtrt_context {
    // Destroyed in reverse: the TensorRT context, then the buffers it used, the events, the stream
    // and last the engine.
    std::shared_ptr<EngineCore> engine;
    Stream stream;
    Event start;
    Event stop;
    std::vector<std::unique_ptr<Tensor>> io;
    std::unique_ptr<nvinfer1::IExecutionContext> exec;

    dtrt_context() = default;
    dtrt_context(dtrt_context const&) = delete;
    dtrt_context& operator=(dtrt_context const&) = delete;
    ~dtrt_context() {
        // Nothing may still be reading or writing the buffers when they are freed.
        if (stream.handle != nullptr) {
            (void)cudaStreamSynchronize(stream.handle);
        }
    }

    Tensor& tensor(int32_t index) {
        if (index < 0 || static_cast<size_t>(index) >= io.size()) {
            fail(DTRT_ERR_ARGUMENT, "tensor index " + std::to_string(index) + " is not in 0.." +
                                        std::to_string(static_cast<int64_t>(io.size()) - 1));
        }
        return *io[static_cast<size_t>(index)];
    }

    Tensor const& tensor(int32_t index) const {
        return const_cast<dtrt_context*>(this)->tensor(index);
    }

    Tensor& input(int32_t index) {
        Tensor& t = tensor(index);
        if (!t.is_input) {
            fail(DTRT_ERR_ARGUMENT, "tensor " + std::to_string(index) + " ('" + t.name + "') is an output");
        }
        return t;
    }

    void bind(Tensor& t, void* address) {
        if (t.bound == address) {
            return;
        }
        CaptureScope capture;
        if (!exec->setTensorAddress(t.name.c_str(), address)) {
            fail(DTRT_ERR_ARGUMENT, capture.describe("TensorRT refused the address of input '" + t.name + "'"));
        }
        t.bound = address;
    }
};

extern "C" {

int32_t dtrt_abi_version(void) {
    return DTRT_ABI_VERSION;
}

const char* dtrt_last_error(void) {
    return t_last_error.c_str();
}

dtrt_status dtrt_versions_get(dtrt_versions* out) {
    return guarded([&] {
        require(out != nullptr, "out is null");
        dtrt_versions v{};
        v.abi = DTRT_ABI_VERSION;
        v.headers = kHeaderVersion;
        v.library = getInferLibVersion();
        v.parser = getNvOnnxParserVersion();
        int runtime = 0;
        int driver = 0;
        check_cuda(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
        check_cuda(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
        v.cuda_runtime = runtime;
        v.cuda_driver = driver;
        *out = v;
    });
}

dtrt_status dtrt_device_get(int32_t device, dtrt_device* out) {
    return guarded([&] {
        require(out != nullptr, "out is null");
        int count = 0;
        check_cuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
        if (device < 0 || device >= count) {
            fail(DTRT_ERR_ARGUMENT,
                 "no GPU " + std::to_string(device) + " (" + std::to_string(count) + " found)");
        }
        dtrt_device d{};
        int major = 0;
        int minor = 0;
        check_cuda(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                   "cudaDeviceGetAttribute(ComputeCapabilityMajor)");
        check_cuda(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                   "cudaDeviceGetAttribute(ComputeCapabilityMinor)");
        d.cc_major = major;
        d.cc_minor = minor;
        // Orin AGX, NX and Nano all say "Orin", sm_87: the SM count tells them apart.
        int sms = 0;
        check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device),
                   "cudaDeviceGetAttribute(MultiProcessorCount)");
        d.multiprocessors = sms;
#if defined(__CUDA_RUNTIME_API_H__)
        // The name and the memory size exist only in cudaDeviceProp, which the stub cannot declare.
        cudaDeviceProp prop{};
        check_cuda(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
        size_t n = 0;
        while (n < sizeof prop.name && n + 1 < sizeof d.name && prop.name[n] != '\0') {
            ++n;
        }
        std::memcpy(d.name, prop.name, n);
        d.name[n] = '\0';
        d.total_bytes = static_cast<uint64_t>(prop.totalGlobalMem);
#else
        fail(DTRT_ERR_OTHER, "compiled against a stub cuda_runtime_api.h: no device name or memory size");
#endif
        *out = d;
    });
}

dtrt_status dtrt_build(const char* onnx_path, const dtrt_build_options* options,
                       const uint8_t* timing_cache, size_t timing_cache_len,
                       dtrt_progress_fn progress, void* progress_user, dtrt_write_fn write_engine,
                       void* engine_user, dtrt_write_fn write_timing_cache, void* cache_user) {
    return guarded([&] {
        require(onnx_path != nullptr, "onnx_path is null");
        require(options != nullptr, "options is null");
        require(write_engine != nullptr, "write_engine is null");
        require(timing_cache != nullptr || timing_cache_len == 0, "timing_cache is null but its length is not 0");
        require(options->batch >= 1, "options->batch must be at least 1");
        require(options->opt_level == -1 || (options->opt_level >= 0 && options->opt_level <= 5),
                "options->opt_level must be -1 or 0..5");

        // The parser's own message for a missing file is vague; this one names the file and why.
        std::FILE* file = std::fopen(onnx_path, "rb");
        if (file == nullptr) {
            fail(DTRT_ERR_ARGUMENT, std::string("cannot open ") + onnx_path + ": " + std::strerror(errno));
        }
        std::fclose(file);

        CaptureScope capture;
        use_gpu0();

        // Declaration order is destruction order in reverse: TensorRT wants the network, config and
        // parser gone before the builder, and the timing cache and progress monitor to outlive it.
        std::unique_ptr<Progress> monitor;
        if (progress != nullptr) {
            monitor.reset(new Progress(progress, progress_user));
        }
        std::unique_ptr<nvinfer1::ITimingCache> cache;
        std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(logger()));
        if (!builder) {
            fail(capture.out_of_memory() ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_OTHER,
                 capture.describe("createInferBuilder failed"));
        }
        std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(kNetworkFlags));
        if (!network) {
            fail(DTRT_ERR_OTHER, capture.describe("createNetworkV2 failed"));
        }
        std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        if (!config) {
            fail(DTRT_ERR_OTHER, capture.describe("createBuilderConfig failed"));
        }
        // TF32 is on by default and strong typing leaves it on: an "fp32" engine would round
        // the inputs of its matmuls and convolutions to 10-bit mantissas on Ampere (Orin).
        config->clearFlag(nvinfer1::BuilderFlag::kTF32);
        std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, logger()));
        if (!parser) {
            fail(DTRT_ERR_OTHER, capture.describe("creating the ONNX parser failed"));
        }

        if (!parser->parseFromFile(onnx_path, static_cast<int>(ILogger::Severity::kWARNING))) {
            bool oom = false;
            for (int i = 0; i < parser->getNbErrors(); ++i) {
                nvonnxparser::IParserError const* e = parser->getError(i);
                oom = oom || (e != nullptr && e->code() == nvonnxparser::ErrorCode::kMEM_ALLOC_FAILED);
            }
            std::string what = std::string("parsing ") + onnx_path + " failed";
            std::string errors = parser_errors(*parser);
            // The parser logs what it records as well; its log alone speaks only where it recorded nothing.
            fail(oom ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_PARSE,
                 errors.empty() ? capture.describe(what) : what + ": " + errors);
        }

        nvinfer1::IOptimizationProfile* profile = nullptr; // owned by the builder
        for (int32_t i = 0; i < network->getNbInputs(); ++i) {
            nvinfer1::ITensor* input = network->getInput(i);
            if (input == nullptr) {
                fail(DTRT_ERR_OTHER, "the network has no input " + std::to_string(i));
            }
            Dims dims = input->getDimensions();
            if (dims.nbDims < 0) {
                fail(DTRT_ERR_PARSE, std::string("input '") + input->getName() + "' has no known rank");
            }
            if (!is_dynamic(dims)) {
                continue;
            }
            if (profile == nullptr) {
                profile = builder->createOptimizationProfile();
                if (profile == nullptr) {
                    fail(DTRT_ERR_OTHER, capture.describe("createOptimizationProfile failed"));
                }
            }
            Dims fixed = dims;
            for (int32_t k = 0; k < fixed.nbDims; ++k) {
                if (fixed.d[k] < 0) {
                    fixed.d[k] = options->batch;
                }
            }
            for (auto select : {nvinfer1::OptProfileSelector::kMIN, nvinfer1::OptProfileSelector::kOPT,
                                nvinfer1::OptProfileSelector::kMAX}) {
                if (!profile->setDimensions(input->getName(), select, fixed)) {
                    fail(DTRT_ERR_OTHER, capture.describe(std::string("setting the profile of input '") +
                                                          input->getName() + "' " + dims_text(dims) +
                                                          " to " + dims_text(fixed) + " failed"));
                }
            }
        }
        if (profile != nullptr && config->addOptimizationProfile(profile) < 0) {
            fail(DTRT_ERR_OTHER, capture.describe("addOptimizationProfile failed"));
        }

        if (options->opt_level >= 0) {
            config->setBuilderOptimizationLevel(options->opt_level);
        }
        if (options->workspace_bytes > 0) {
            config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE,
                                       static_cast<size_t>(options->workspace_bytes));
        }

        // A cache TensorRT refuses (another TensorRT version or GPU, or damaged) costs build time,
        // not the build: start from an empty one, which then replaces it.
        cache.reset(config->createTimingCache(timing_cache, timing_cache_len));
        if (!cache || !config->setTimingCache(*cache, false)) {
            cache.reset(config->createTimingCache(nullptr, 0));
            if (!cache || !config->setTimingCache(*cache, false)) {
                fail(DTRT_ERR_OTHER, capture.describe("creating a timing cache failed"));
            }
            capture.clear();
        }

        if (monitor) {
            config->setProgressMonitor(monitor.get());
        }

        std::unique_ptr<nvinfer1::IHostMemory> plan(builder->buildSerializedNetwork(*network, *config));
        if (monitor && monitor->cancelled()) {
            fail(DTRT_ERR_CANCELLED, "the progress callback cancelled the build");
        }
        if (!plan || plan->data() == nullptr || plan->size() == 0) {
            bool oom = capture.out_of_memory() || capture.mentions_memory();
            fail(oom ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_OTHER, capture.describe("building the engine failed"));
        }
        write_engine(engine_user, static_cast<const uint8_t*>(plan->data()), plan->size());

        if (write_timing_cache != nullptr) {
            // The engine is written: a cache that cannot be serialized is not worth failing the build.
            nvinfer1::ITimingCache const* used = config->getTimingCache();
            std::unique_ptr<nvinfer1::IHostMemory> blob(used != nullptr ? used->serialize() : nullptr);
            if (blob && blob->data() != nullptr && blob->size() > 0) {
                write_timing_cache(cache_user, static_cast<const uint8_t*>(blob->data()), blob->size());
            }
        }
    });
}

dtrt_status dtrt_engine_load(const uint8_t* data, size_t len, dtrt_engine** out) {
    return guarded([&] {
        require(out != nullptr, "out is null");
        *out = nullptr;
        require(data != nullptr || len == 0, "data is null");
        CaptureScope capture;
        use_gpu0();
        auto core = std::make_shared<EngineCore>();
        core->runtime.reset(nvinfer1::createInferRuntime(logger()));
        if (!core->runtime) {
            fail(capture.out_of_memory() ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_OTHER,
                 capture.describe("createInferRuntime failed"));
        }
        // TensorRT keeps nothing of `data` once this returns.
        if (len == 0) {
            fail(DTRT_ERR_DESERIALIZE, "the engine is empty");
        }
        core->engine.reset(core->runtime->deserializeCudaEngine(data, len));
        if (!core->engine) {
            fail(capture.out_of_memory() ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_DESERIALIZE,
                 capture.describe("TensorRT refused the engine"));
        }
        std::unique_ptr<dtrt_engine> engine(new dtrt_engine);
        engine->core = std::move(core);
        *out = engine.release();
    });
}

void dtrt_engine_free(dtrt_engine* engine) {
    try {
        delete engine;
    } catch (...) {
    }
}

dtrt_status dtrt_context_create(dtrt_engine* engine, dtrt_context** out) {
    return guarded([&] {
        require(out != nullptr, "out is null");
        *out = nullptr;
        require(engine != nullptr && engine->core && engine->core->engine, "engine is null");
        CaptureScope capture;
        use_gpu0();

        std::unique_ptr<dtrt_context> ctx(new dtrt_context);
        ctx->engine = engine->core;
        nvinfer1::ICudaEngine& e = *ctx->engine->engine;
        {
            // The header lets several threads share an engine.
            std::lock_guard<std::mutex> lock(ctx->engine->mutex);
            ctx->exec.reset(e.createExecutionContext());
        }
        if (!ctx->exec) {
            bool oom = capture.out_of_memory() || capture.mentions_memory();
            fail(oom ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_OTHER, capture.describe("createExecutionContext failed"));
        }
        check_cuda(cudaStreamCreate(&ctx->stream.handle), "cudaStreamCreate");
        check_cuda(cudaEventCreate(&ctx->start.handle), "cudaEventCreate");
        check_cuda(cudaEventCreate(&ctx->stop.handle), "cudaEventCreate");

        int32_t count = e.getNbIOTensors();
        for (int32_t i = 0; i < count; ++i) {
            char const* name = e.getIOTensorName(i);
            if (name == nullptr) {
                fail(DTRT_ERR_OTHER, "the engine has no I/O tensor " + std::to_string(i));
            }
            std::unique_ptr<Tensor> t(new Tensor);
            t->name = name;
            t->is_input = e.getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT;
            t->type = e.getTensorDataType(name);
            if (element_size(t->type) == 0) {
                fail(DTRT_ERR_OTHER, "tensor '" + t->name + "' has TensorRT data type " +
                                         std::to_string(static_cast<int32_t>(t->type)) +
                                         ", which dinoedge_trt.h has no size for");
            }
            // Shape tensors live in host memory; the ABI has only device buffers.
            if (e.getTensorLocation(name) != nvinfer1::TensorLocation::kDEVICE) {
                fail(DTRT_ERR_OTHER, "tensor '" + t->name + "' lives in host memory (a shape tensor)");
            }
            if (t->is_input) {
                Dims shape = e.getTensorShape(name);
                if (is_dynamic(shape)) {
                    shape = e.getProfileShape(name, 0, nvinfer1::OptProfileSelector::kOPT);
                    if (shape.nbDims < 0 || is_dynamic(shape) || !ctx->exec->setInputShape(name, shape)) {
                        fail(DTRT_ERR_OTHER, capture.describe("cannot give input '" + t->name +
                                                              "' its profile's shape " + dims_text(shape)));
                    }
                }
            }
            ctx->io.push_back(std::move(t));
        }

        // Output shapes are known only once every input has one.
        for (std::unique_ptr<Tensor>& t : ctx->io) {
            t->dims = ctx->exec->getTensorShape(t->name.c_str());
            if (t->dims.nbDims < 0 || is_dynamic(t->dims)) {
                fail(DTRT_ERR_OTHER, capture.describe("tensor '" + t->name + "' has no fixed shape " +
                                                      dims_text(t->dims) + " (a data-dependent output?)"));
            }
            uint64_t bytes = element_size(t->type);
            for (int32_t k = 0; k < t->dims.nbDims; ++k) {
                uint64_t d = static_cast<uint64_t>(t->dims.d[k]);
                if (d != 0 && bytes > std::numeric_limits<uint64_t>::max() / d) {
                    fail(DTRT_ERR_OTHER, "tensor '" + t->name + "' " + dims_text(t->dims) + " is too large");
                }
                bytes *= d;
            }
            t->bytes = bytes;
            // An empty tensor still gets an address: TensorRT wants one for every I/O tensor.
            size_t alloc = static_cast<size_t>(std::max<uint64_t>(bytes, 1));
            check_cuda(cudaMalloc(&t->device.ptr, alloc),
                       "cudaMalloc of " + std::to_string(alloc) + " bytes for '" + t->name + "'");
            // Zeroed, so that a run before any input copy, or an output read before any run, is defined.
            check_cuda(cudaMemset(t->device.ptr, 0, alloc), "cudaMemset of '" + t->name + "'");
            if (!t->is_input) {
                check_cuda(cudaMallocHost(&t->host.ptr, alloc),
                           "cudaMallocHost of " + std::to_string(alloc) + " bytes for '" + t->name + "'");
                std::memset(t->host.ptr, 0, alloc);
            }
            if (!ctx->exec->setTensorAddress(t->name.c_str(), t->device.ptr)) {
                fail(DTRT_ERR_OTHER, capture.describe("TensorRT refused the buffer of '" + t->name + "'"));
            }
            t->bound = t->device.ptr;
        }
        *out = ctx.release();
    });
}

void dtrt_context_free(dtrt_context* context) {
    try {
        delete context;
    } catch (...) {
    }
}

int32_t dtrt_context_io_count(const dtrt_context* context) {
    if (context == nullptr) {
        set_last_error("context is null");
        return 0;
    }
    return static_cast<int32_t>(context->io.size());
}

dtrt_status dtrt_context_io(const dtrt_context* context, int32_t index, dtrt_io* out) {
    return guarded([&] {
        require(context != nullptr, "context is null");
        require(out != nullptr, "out is null");
        Tensor const& t = context->tensor(index);
        dtrt_io io{};
        io.name = t.name.c_str();
        io.is_input = t.is_input ? 1 : 0;
        io.dtype = static_cast<int32_t>(t.type);
        io.nb_dims = t.dims.nbDims;
        for (int32_t k = 0; k < t.dims.nbDims; ++k) {
            io.dims[k] = t.dims.d[k];
        }
        io.bytes = t.bytes;
        *out = io;
    });
}

dtrt_status dtrt_context_copy_input(dtrt_context* context, int32_t index, const void* host, size_t bytes) {
    return guarded([&] {
        require(context != nullptr, "context is null");
        Tensor& t = context->input(index);
        if (bytes != t.bytes) {
            fail(DTRT_ERR_ARGUMENT, "input '" + t.name + "' holds " + std::to_string(t.bytes) + " bytes, not " +
                                        std::to_string(bytes));
        }
        require(host != nullptr, "host is null");
        use_gpu0();
        // Into the context's own buffer even while the input is bound to the caller's memory,
        // which this never writes; binding 0 makes the copy the input again.
        if (bytes > 0) {
            // From pageable memory this returns once `host` has been staged: the caller may reuse it.
            check_cuda(cudaMemcpyAsync(t.device.ptr, host, bytes, cudaMemcpyHostToDevice, context->stream.handle),
                       "cudaMemcpyAsync to input '" + t.name + "'");
        }
    });
}

dtrt_status dtrt_context_bind_input(dtrt_context* context, int32_t index, uint64_t device_ptr, size_t bytes) {
    return guarded([&] {
        require(context != nullptr, "context is null");
        Tensor& t = context->input(index);
        if (device_ptr == 0) {
            context->bind(t, t.device.ptr);
            return;
        }
        if (bytes < t.bytes) {
            fail(DTRT_ERR_ARGUMENT, "input '" + t.name + "' needs " + std::to_string(t.bytes) +
                                        " bytes of device memory, not " + std::to_string(bytes));
        }
        context->bind(t, reinterpret_cast<void*>(static_cast<uintptr_t>(device_ptr)));
    });
}

dtrt_status dtrt_context_run(dtrt_context* context, float* gpu_ms) {
    return guarded([&] {
        require(context != nullptr, "context is null");
        CaptureScope capture;
        use_gpu0();
        cudaStream_t stream = context->stream.handle;
        check_cuda(cudaEventRecord(context->start.handle, stream), "cudaEventRecord before the run");
        if (!context->exec->enqueueV3(stream)) {
            // Whatever was queued must finish before the caller touches the buffers again.
            (void)cudaStreamSynchronize(stream);
            bool oom = capture.out_of_memory();
            fail(oom ? DTRT_ERR_OUT_OF_MEMORY : DTRT_ERR_OTHER, capture.describe("enqueueV3 failed"));
        }
        check_cuda(cudaEventRecord(context->stop.handle, stream), "cudaEventRecord after the run");
        for (std::unique_ptr<Tensor>& t : context->io) {
            if (!t->is_input && t->bytes > 0) {
                check_cuda(cudaMemcpyAsync(t->host.ptr, t->device.ptr, static_cast<size_t>(t->bytes),
                                           cudaMemcpyDeviceToHost, stream),
                           "cudaMemcpyAsync from output '" + t->name + "'");
            }
        }
        // Errors of the run itself (an illegal address in a kernel, say) surface here.
        check_cuda(cudaStreamSynchronize(stream), "cudaStreamSynchronize after the run");
        float ms = 0.0f;
        check_cuda(cudaEventElapsedTime(&ms, context->start.handle, context->stop.handle), "cudaEventElapsedTime");
        if (gpu_ms != nullptr) {
            *gpu_ms = ms;
        }
    });
}

dtrt_status dtrt_context_output(const dtrt_context* context, int32_t index, const void** host, size_t* bytes) {
    return guarded([&] {
        require(context != nullptr, "context is null");
        require(host != nullptr && bytes != nullptr, "host or bytes is null");
        Tensor const& t = context->tensor(index);
        if (t.is_input) {
            fail(DTRT_ERR_ARGUMENT, "tensor " + std::to_string(index) + " ('" + t.name + "') is an input");
        }
        *host = t.host.ptr;
        *bytes = static_cast<size_t>(t.bytes);
    });
}

} // extern "C"
