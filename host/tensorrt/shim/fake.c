/*
 * fake.c: a stand-in for TensorRT behind dinoedge_trt.h, in plain C11 with no GPU and nothing
 * beyond libc. The tests build it as a shared library and load it in place of the real shim, so
 * every path of the host's side (loading, versions, building, the timing cache, the engine
 * cache, the accuracy gate, every kind of error) runs on a machine without CUDA or TensorRT.
 *
 * The fake cannot parse ONNX, so a test describes the graph it "builds" in a control file beside
 * it, `<onnx_path>.fake`: lines `key=value`; blank lines and lines starting with '#' are skipped.
 *
 *   build=ok | parse_error | out_of_memory     how dtrt_build ends (default ok)
 *   input=NAME:DTYPE:DIMS                      repeatable; with `output=` lines, in the order
 *   output=NAME:DTYPE:DIMS                     given, the engine's I/O order. NAME may hold ':'
 *                                              (the last two fields are split off from the right).
 *                                              DTYPE: f32 f16 bf16 i8 u8 i32 i64 bool fp8.
 *                                              DIMS: `1x3x32x32`; -1 is dynamic and becomes
 *                                              options->batch; empty is a scalar.
 *   table=PATH                                 records: an 8-byte little-endian FNV-1a-64 hash of
 *                                              the first input's bytes, then the bytes of every
 *                                              output in order. A relative PATH is relative to
 *                                              the control file's folder. No table, or no record
 *                                              for the input: every output is all zeros.
 *   noise=X                                    on a table hit, element i of every f32 output
 *                                              becomes (float)((double)v + X * sin(0.7 * i + 0.3))
 *   run=ok | cuda_error | fail_after:N         how dtrt_context_run ends; with fail_after the
 *                                              first N runs of each context succeed, then every
 *                                              run fails as an illegal address would.
 *
 * A built engine is: "FAKETRT1", FAKE_LIBRARY (u32 LE), the device name (NUL-terminated), the
 * control text rewritten with dynamic axes resolved and the table path joined to the control
 * file's folder (u32 LE length, then the bytes), and an FNV-1a-64 of everything before it
 * (u64 LE), so that truncated, flipped, foreign-version and foreign-device engines are all
 * refused the way TensorRT would. The table itself is read at dtrt_engine_load.
 * The updated timing cache is the old one plus "+" ("FAKECACHE" when there was none), so a test
 * can see it carried from build to build.
 *
 * Compile-time knobs (-DNAME=VALUE) let one test build several fakes: versions, the device,
 * and FAKE_NO_DEVICE=1 for a machine where TensorRT loads but CUDA finds no GPU.
 */
#include "dinoedge_trt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef FAKE_ABI
#define FAKE_ABI DTRT_ABI_VERSION
#endif
#ifndef FAKE_HEADERS
#define FAKE_HEADERS 100300
#endif
#ifndef FAKE_LIBRARY
#define FAKE_LIBRARY 100300
#endif
#ifndef FAKE_PARSER
#define FAKE_PARSER 100300
#endif
#ifndef FAKE_CUDA_RUNTIME
#define FAKE_CUDA_RUNTIME 12060
#endif
#ifndef FAKE_CUDA_DRIVER
#define FAKE_CUDA_DRIVER 12060
#endif
#ifndef FAKE_DEVICE_NAME
#define FAKE_DEVICE_NAME "Fake Orin"
#endif
#ifndef FAKE_CC_MAJOR
#define FAKE_CC_MAJOR 8
#endif
#ifndef FAKE_CC_MINOR
#define FAKE_CC_MINOR 7
#endif
#ifndef FAKE_MULTIPROCESSORS
#define FAKE_MULTIPROCESSORS 16
#endif
#ifndef FAKE_TOTAL_BYTES
#define FAKE_TOTAL_BYTES (8ULL << 30)
#endif
#ifndef FAKE_NO_DEVICE
#define FAKE_NO_DEVICE 0
#endif

/* The name travels in dtrt_device.name and in every engine; it must fit the former. */
_Static_assert(sizeof(FAKE_DEVICE_NAME) <= sizeof(((dtrt_device *)0)->name),
               "FAKE_DEVICE_NAME is longer than dtrt_device.name");

#define ENGINE_MAGIC "FAKETRT1"
#define ENGINE_MAGIC_LEN 8
#define MAX_IO 64
/* Far beyond any test, small enough that sums over MAX_IO tensors cannot overflow size_t. */
#define MAX_TENSOR_BYTES_64 ((uint64_t)1 << 40)
#define MAX_TENSOR_BYTES \
    (MAX_TENSOR_BYTES_64 < (uint64_t)SIZE_MAX / (MAX_IO + 2) ? MAX_TENSOR_BYTES_64 \
                                                              : (uint64_t)SIZE_MAX / (MAX_IO + 2))
/* A control text longer than this is a corrupt engine rather than a test's graph. */
#define MAX_CONTROL_BYTES (16u << 20)

#define ILLEGAL_ADDRESS "cudaErrorIllegalAddress: an illegal memory access was encountered"
#define NO_DEVICE "cudaErrorNoDevice: no CUDA-capable device is detected"

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                   */

static _Thread_local char last_error[1024];

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static dtrt_status
fail(dtrt_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

static dtrt_status fail_oom(void) {
    return fail(DTRT_ERR_OUT_OF_MEMORY, "fake TensorRT: out of host memory");
}

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                            */

static uint64_t fnv1a64(const uint8_t *data, size_t len) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= data[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/*
 * sin() without libm: the test's link line has no -lm, and a host that does not itself pull in
 * libm would fail to dlopen the fake. Accurate to ~1e-15 near zero and ~1e-10 at x ~ 1e6, far
 * below any tolerance the accuracy gate uses.
 */
static double fake_sin(double x) {
    const double pi = 3.14159265358979323846;
    const double two_pi = 6.28318530717958647692;
    double k = x / two_pi;
    k = (double)(long long)(k + (k >= 0 ? 0.5 : -0.5));
    double r = x - k * two_pi;
    if (r > pi / 2) r = pi - r;
    else if (r < -pi / 2) r = -pi - r;
    double r2 = r * r, term = r, sum = r;
    for (int n = 1; n <= 12; n++) {
        term *= -r2 / (double)((2 * n) * (2 * n + 1));
        sum += term;
    }
    return sum;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* 0, or -1 with errno set, or -2 out of memory. */
static int read_whole_file(const char *path, uint8_t **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return -2;
    }
    for (;;) {
        if (len == cap) {
            uint8_t *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!bigger) {
                free(buf);
                fclose(f);
                return -2;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    /* A folder opens but does not read; report it like any unreadable file. */
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        free(buf);
        fclose(f);
        errno = e;
        return -1;
    }
    fclose(f);
    *out = buf;
    *out_len = len;
    return 0;
}

/* A growable string for the engine's control text. */
typedef struct {
    char *data;
    size_t len, cap;
    int oom;
} strbuf;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static void
sb_printf(strbuf *sb, const char *fmt, ...) {
    if (sb->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = sb->cap - sb->len;
        int n = vsnprintf(sb->data ? sb->data + sb->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            sb->oom = 1;
            return;
        }
        if ((size_t)n < room) {
            sb->len += (size_t)n;
            return;
        }
        size_t want = sb->cap ? sb->cap * 2 : 256;
        while (want - sb->len <= (size_t)n) want *= 2;
        char *bigger = realloc(sb->data, want);
        if (!bigger) {
            sb->oom = 1;
            return;
        }
        sb->data = bigger;
        sb->cap = want;
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The control file                                                                         */

typedef struct {
    char *name;
    int32_t is_input;
    int32_t dtype;
    int32_t nb_dims;
    int64_t dims[8];
    uint64_t bytes;
} fake_io;

enum { BUILD_OK, BUILD_PARSE_ERROR, BUILD_OUT_OF_MEMORY };
enum { RUN_OK, RUN_CUDA_ERROR, RUN_FAIL_AFTER };

typedef struct {
    int build;
    int run;
    long long fail_after;
    double noise;
    char *table;
    fake_io *io;
    int32_t nb_io;
} fake_control;

static const struct {
    const char *name;
    int32_t dtype;
    uint32_t size;
} DTYPES[] = {
    {"f32", DTRT_FLOAT, 4}, {"f16", DTRT_HALF, 2},  {"i8", DTRT_INT8, 1},
    {"i32", DTRT_INT32, 4}, {"bool", DTRT_BOOL, 1}, {"u8", DTRT_UINT8, 1},
    {"fp8", DTRT_FP8, 1},   {"bf16", DTRT_BF16, 2}, {"i64", DTRT_INT64, 8},
};
#define NB_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

static const char *dtype_name(int32_t dtype) {
    for (size_t i = 0; i < NB_DTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].name;
    return "?";
}

static uint32_t dtype_size(int32_t dtype) {
    for (size_t i = 0; i < NB_DTYPES; i++)
        if (DTYPES[i].dtype == dtype) return DTYPES[i].size;
    return 0;
}

static void control_free(fake_control *c) {
    for (int32_t i = 0; i < c->nb_io; i++) free(c->io[i].name);
    free(c->io);
    free(c->table);
    memset(c, 0, sizeof *c);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
    return s;
}

/* The whole string is a decimal integer; strtoll alone accepts "12abc" and " 12". */
static int parse_ll(const char *s, long long *out) {
    if (!*s || *s == ' ' || *s == '\t' || *s == '+') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

/*
 * Parses NAME:DTYPE:DIMS into io. `batch` resolves -1 axes; in an engine's text (`batch` NULL)
 * none may be left. Returns DTRT_OK, or `bad` / DTRT_ERR_ARGUMENT with the message set.
 */
static dtrt_status parse_io(char *value, int is_input, const int32_t *batch, const char *where,
                            unsigned line, dtrt_status bad, fake_io *io) {
    char *dims = strrchr(value, ':');
    if (!dims || dims == value) goto syntax;
    *dims++ = '\0';
    char *dt = strrchr(value, ':');
    if (!dt || dt == value) goto syntax;
    *dt++ = '\0';
    const char *name = value;

    io->is_input = is_input;
    io->dtype = -1;
    for (size_t i = 0; i < NB_DTYPES; i++)
        if (strcmp(dt, DTYPES[i].name) == 0) io->dtype = DTYPES[i].dtype;
    if (io->dtype < 0)
        return fail(bad, "%s:%u: unknown dtype '%s' (f32 f16 bf16 i8 u8 i32 i64 bool fp8)", where,
                    line, dt);

    uint64_t bytes = dtype_size(io->dtype);
    io->nb_dims = 0;
    char *p = dims;
    while (*p) {
        if (io->nb_dims == 8) return fail(bad, "%s:%u: more than 8 dims", where, line);
        char *x = strchr(p, 'x');
        if (x) *x = '\0';
        long long d;
        if (parse_ll(p, &d) || d == 0 || d < -1 || (d > 0 && (uint64_t)d > MAX_TENSOR_BYTES))
            return fail(bad, "%s:%u: bad dim '%s' (a positive size, or -1)", where, line, p);
        if (d == -1) {
            if (!batch) return fail(bad, "%s:%u: dynamic axis in %s", where, line, name);
            if (*batch < 1)
                return fail(DTRT_ERR_ARGUMENT,
                            "fake TensorRT: %s has a dynamic axis but options->batch is %d", name,
                            (int)*batch);
            d = *batch;
        }
        io->dims[io->nb_dims++] = d;
        if (bytes > MAX_TENSOR_BYTES / (uint64_t)d)
            return fail(bad, "%s:%u: %s is larger than %llu bytes", where, line, name,
                        (unsigned long long)MAX_TENSOR_BYTES);
        bytes *= (uint64_t)d;
        if (!x) break;
        p = x + 1;
        if (!*p) return fail(bad, "%s:%u: empty dim in %s", where, line, name);
    }
    io->bytes = bytes;
    io->name = dup_str(name);
    if (!io->name) return fail_oom();
    return DTRT_OK;
syntax:
    return fail(bad, "%s:%u: expected NAME:DTYPE:DIMS", where, line);
}

/*
 * Parses a control text (a test's file, or the one stored in an engine). `where` prefixes
 * messages; `bad` is the status for malformed text; `base_dir` (may be NULL) prefixes a
 * relative table path.
 */
static dtrt_status parse_control(const uint8_t *text, size_t len, const int32_t *batch,
                                 const char *base_dir, const char *where, dtrt_status bad,
                                 fake_control *out) {
    memset(out, 0, sizeof *out);
    if (memchr(text, '\0', len)) return fail(bad, "%s: holds a NUL byte", where);
    char *copy = malloc(len + 1);
    out->io = malloc(MAX_IO * sizeof *out->io);
    if (!copy || !out->io) {
        free(copy);
        free(out->io);
        out->io = NULL;
        return fail_oom();
    }
    memcpy(copy, text, len);
    copy[len] = '\0';

    dtrt_status st = DTRT_OK;
    unsigned line = 0;
    char *next = copy;
    while (next && st == DTRT_OK) {
        char *cur = next;
        line++;
        next = strchr(cur, '\n');
        if (next) *next++ = '\0';
        cur = trim(cur);
        if (!*cur || *cur == '#') continue;
        char *eq = strchr(cur, '=');
        if (!eq) {
            st = fail(bad, "%s:%u: expected key=value", where, line);
            break;
        }
        *eq = '\0';
        char *key = trim(cur), *value = trim(eq + 1);

        if (strcmp(key, "build") == 0) {
            if (strcmp(value, "ok") == 0) out->build = BUILD_OK;
            else if (strcmp(value, "parse_error") == 0) out->build = BUILD_PARSE_ERROR;
            else if (strcmp(value, "out_of_memory") == 0) out->build = BUILD_OUT_OF_MEMORY;
            else st = fail(bad, "%s:%u: build=ok|parse_error|out_of_memory", where, line);
        } else if (strcmp(key, "run") == 0) {
            long long n;
            if (strcmp(value, "ok") == 0) out->run = RUN_OK;
            else if (strcmp(value, "cuda_error") == 0) out->run = RUN_CUDA_ERROR;
            else if (strncmp(value, "fail_after:", 11) == 0 && parse_ll(value + 11, &n) == 0 &&
                     n >= 0) {
                out->run = RUN_FAIL_AFTER;
                out->fail_after = n;
            } else st = fail(bad, "%s:%u: run=ok|cuda_error|fail_after:N", where, line);
        } else if (strcmp(key, "noise") == 0) {
            char *end;
            errno = 0;
            double x = strtod(value, &end);
            /* x - x != 0 catches inf and nan without <math.h>. */
            if (!*value || *end || errno || x - x != 0)
                st = fail(bad, "%s:%u: noise must be a finite number", where, line);
            else out->noise = x;
        } else if (strcmp(key, "table") == 0) {
            if (!*value) {
                st = fail(bad, "%s:%u: empty table path", where, line);
                continue;
            }
            free(out->table);
            size_t dl = (base_dir && value[0] != '/') ? strlen(base_dir) : 0;
            out->table = malloc(dl + strlen(value) + 1);
            if (!out->table) {
                st = fail_oom();
                continue;
            }
            memcpy(out->table, base_dir ? base_dir : "", dl);
            strcpy(out->table + dl, value);
        } else if (strcmp(key, "input") == 0 || strcmp(key, "output") == 0) {
            if (out->nb_io == MAX_IO) {
                st = fail(bad, "%s:%u: more than %d inputs and outputs", where, line, MAX_IO);
                continue;
            }
            fake_io *io = &out->io[out->nb_io];
            st = parse_io(value, key[0] == 'i', batch, where, line, bad, io);
            if (st != DTRT_OK) continue;
            out->nb_io++;
            for (int32_t i = 0; i + 1 < out->nb_io; i++)
                if (strcmp(out->io[i].name, io->name) == 0) {
                    st = fail(bad, "%s:%u: two tensors named %s", where, line, io->name);
                    break;
                }
        } else {
            st = fail(bad, "%s:%u: unknown key '%s'", where, line, key);
        }
    }
    free(copy);
    if (st != DTRT_OK) control_free(out);
    return st;
}

/* The engine's copy: every choice that matters at run time, dynamic axes already resolved. */
static dtrt_status control_text(const fake_control *c, strbuf *sb) {
    memset(sb, 0, sizeof *sb);
    if (c->run == RUN_OK) sb_printf(sb, "run=ok\n");
    else if (c->run == RUN_CUDA_ERROR) sb_printf(sb, "run=cuda_error\n");
    else sb_printf(sb, "run=fail_after:%lld\n", c->fail_after);
    sb_printf(sb, "noise=%.17g\n", c->noise);
    if (c->table) sb_printf(sb, "table=%s\n", c->table);
    for (int32_t i = 0; i < c->nb_io; i++) {
        const fake_io *io = &c->io[i];
        sb_printf(sb, "%s=%s:%s:", io->is_input ? "input" : "output", io->name,
                  dtype_name(io->dtype));
        for (int32_t d = 0; d < io->nb_dims; d++)
            sb_printf(sb, d ? "x%lld" : "%lld", (long long)io->dims[d]);
        sb_printf(sb, "\n");
    }
    if (sb->oom || sb->len > MAX_CONTROL_BYTES) {
        free(sb->data);
        memset(sb, 0, sizeof *sb);
        return fail_oom();
    }
    return DTRT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Versions and the device                                                                  */

int32_t dtrt_abi_version(void) { return FAKE_ABI; }

const char *dtrt_last_error(void) { return last_error; }

dtrt_status dtrt_versions_get(dtrt_versions *out) {
    if (!out) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_versions_get: out is NULL");
    out->abi = FAKE_ABI;
    out->headers = FAKE_HEADERS;
    out->library = FAKE_LIBRARY;
    out->parser = FAKE_PARSER;
    out->cuda_runtime = FAKE_CUDA_RUNTIME;
    out->cuda_driver = FAKE_CUDA_DRIVER;
    return DTRT_OK;
}

dtrt_status dtrt_device_get(int32_t device, dtrt_device *out) {
    if (!out) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_device_get: out is NULL");
    if (FAKE_NO_DEVICE) return fail(DTRT_ERR_CUDA, NO_DEVICE);
    if (device != 0)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: no GPU %d (there is 1, GPU 0)",
                    (int)device);
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", FAKE_DEVICE_NAME);
    out->cc_major = FAKE_CC_MAJOR;
    out->cc_minor = FAKE_CC_MINOR;
    out->multiprocessors = FAKE_MULTIPROCESSORS;
    out->total_bytes = FAKE_TOTAL_BYTES;
    return DTRT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Build                                                                                    */

static int progress_says_stop(dtrt_progress_fn progress, void *user, const char *phase,
                              int32_t depth, int32_t step, int32_t steps) {
    return progress && progress(user, phase, depth, step, steps) != 0;
}

dtrt_status dtrt_build(const char *onnx_path, const dtrt_build_options *options,
                       const uint8_t *timing_cache, size_t timing_cache_len,
                       dtrt_progress_fn progress, void *progress_user, dtrt_write_fn write_engine,
                       void *engine_user, dtrt_write_fn write_timing_cache, void *cache_user) {
    if (!onnx_path) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_build: onnx_path is NULL");
    if (!options) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_build: options is NULL");
    if (!write_engine)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_build: write_engine is NULL");
    if (!timing_cache && timing_cache_len)
        return fail(DTRT_ERR_ARGUMENT,
                    "fake TensorRT: dtrt_build: timing_cache is NULL with length %zu",
                    timing_cache_len);
    if (options->opt_level < -1 || options->opt_level > 5)
        return fail(DTRT_ERR_ARGUMENT,
                    "fake TensorRT: builder optimization level %d is not in 0..5 (or -1)",
                    (int)options->opt_level);
    if (FAKE_NO_DEVICE) return fail(DTRT_ERR_CUDA, NO_DEVICE);

    /* The graph itself is never read, but a missing one must fail as the parser would. */
    uint8_t *onnx;
    size_t onnx_len;
    int r = read_whole_file(onnx_path, &onnx, &onnx_len);
    if (r == -2) return fail_oom();
    if (r == -1)
        return fail(DTRT_ERR_OTHER, "fake TensorRT: cannot read %s: %s", onnx_path,
                    strerror(errno));
    free(onnx);

    size_t path_len = strlen(onnx_path);
    char *ctl_path = malloc(path_len + sizeof ".fake");
    char *base_dir = malloc(path_len + 1);
    if (!ctl_path || !base_dir) {
        free(ctl_path);
        free(base_dir);
        return fail_oom();
    }
    memcpy(ctl_path, onnx_path, path_len);
    memcpy(ctl_path + path_len, ".fake", sizeof ".fake");
    memcpy(base_dir, onnx_path, path_len + 1);
    char *slash = strrchr(base_dir, '/');
    if (slash) slash[1] = '\0';
    else base_dir[0] = '\0';

    dtrt_status st;
    fake_control ctl;
    uint8_t *text = NULL, *engine = NULL;
    size_t text_len;
    strbuf canon = {0};
    memset(&ctl, 0, sizeof ctl);

    r = read_whole_file(ctl_path, &text, &text_len);
    if (r == -2) {
        st = fail_oom();
        goto out;
    }
    if (r == -1) {
        if (errno == ENOENT) st = fail(DTRT_ERR_PARSE, "fake TensorRT: no control file %s", ctl_path);
        else st = fail(DTRT_ERR_OTHER, "fake TensorRT: cannot read %s: %s", ctl_path, strerror(errno));
        goto out;
    }
    char where[1100];
    snprintf(where, sizeof where, "fake TensorRT: %s", ctl_path);
    st = parse_control(text, text_len, &options->batch, base_dir, where,
                       DTRT_ERR_OTHER, &ctl);
    if (st != DTRT_OK) goto out;

    /* Parse errors come before any progress, as ONNX parsing precedes TensorRT's build. */
    if (ctl.build == BUILD_PARSE_ERROR) {
        st = fail(DTRT_ERR_PARSE,
                  "In node 3 (Fake): UNSUPPORTED_NODE: fake parser refused the graph");
        goto out;
    }
    /*
     * Out of memory strikes mid-build, after phases have started and not ended, as it does in
     * TensorRT's tactic selection, so the host sees an unfinished progress report too.
     */
    static const char *cancelled = "fake TensorRT: build cancelled";
    if (progress_says_stop(progress, progress_user, "Fake build", 0, 0, 3) ||
        progress_says_stop(progress, progress_user, "Fake build", 0, 1, 3) ||
        progress_says_stop(progress, progress_user, "Fake tactics", 1, 0, 2)) {
        st = fail(DTRT_ERR_CANCELLED, "%s", cancelled);
        goto out;
    }
    if (ctl.build == BUILD_OUT_OF_MEMORY) {
        st = fail(DTRT_ERR_OUT_OF_MEMORY,
                  "fake TensorRT: out of GPU memory while building (requested 9999 MiB)");
        goto out;
    }
    if (progress_says_stop(progress, progress_user, "Fake tactics", 1, 1, 2) ||
        progress_says_stop(progress, progress_user, "Fake tactics", 1, 2, 2) ||
        progress_says_stop(progress, progress_user, "Fake build", 0, 2, 3) ||
        progress_says_stop(progress, progress_user, "Fake build", 0, 3, 3)) {
        st = fail(DTRT_ERR_CANCELLED, "%s", cancelled);
        goto out;
    }

    st = control_text(&ctl, &canon);
    if (st != DTRT_OK) goto out;
    size_t name_len = strlen(FAKE_DEVICE_NAME) + 1;
    size_t engine_len = ENGINE_MAGIC_LEN + 4 + name_len + 4 + canon.len + 8;
    engine = malloc(engine_len);
    if (!engine) {
        st = fail_oom();
        goto out;
    }
    size_t p = 0;
    memcpy(engine, ENGINE_MAGIC, ENGINE_MAGIC_LEN);
    p += ENGINE_MAGIC_LEN;
    put_u32(engine + p, (uint32_t)FAKE_LIBRARY);
    p += 4;
    memcpy(engine + p, FAKE_DEVICE_NAME, name_len);
    p += name_len;
    put_u32(engine + p, (uint32_t)canon.len);
    p += 4;
    memcpy(engine + p, canon.data, canon.len);
    p += canon.len;
    put_u64(engine + p, fnv1a64(engine, p));

    if (write_timing_cache) {
        static const char fresh[] = "FAKECACHE";
        size_t cache_len = timing_cache_len ? timing_cache_len + 1 : sizeof fresh - 1;
        uint8_t *cache = malloc(cache_len);
        if (!cache) {
            st = fail_oom();
            goto out;
        }
        if (timing_cache_len) {
            memcpy(cache, timing_cache, timing_cache_len);
            cache[timing_cache_len] = '+';
        } else {
            memcpy(cache, fresh, cache_len);
        }
        write_engine(engine_user, engine, engine_len);
        write_timing_cache(cache_user, cache, cache_len);
        free(cache);
    } else {
        write_engine(engine_user, engine, engine_len);
    }
    st = DTRT_OK;

out:
    free(engine);
    free(canon.data);
    control_free(&ctl);
    free(text);
    free(ctl_path);
    free(base_dir);
    return st;
}

/* ---------------------------------------------------------------------------------------- */
/* Engine                                                                                   */

struct dtrt_engine {
    /* The caller's reference plus one per context, so a context never outlives its tensors. */
    atomic_int refs;
    fake_control ctl;
    uint8_t *table;
    size_t record_bytes;
    size_t records;
};

static void engine_release(dtrt_engine *e) {
    if (atomic_fetch_sub(&e->refs, 1) != 1) return;
    control_free(&e->ctl);
    free(e->table);
    free(e);
}

static void version_text(char *buf, size_t n, uint32_t v) {
    snprintf(buf, n, "%u.%u.%u", (unsigned)(v / 10000), (unsigned)(v / 100 % 100),
             (unsigned)(v % 100));
}

dtrt_status dtrt_engine_load(const uint8_t *data, size_t len, dtrt_engine **out) {
    if (!out) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_engine_load: out is NULL");
    *out = NULL;
    if (!data && len) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_engine_load: data is NULL");
    if (FAKE_NO_DEVICE) return fail(DTRT_ERR_CUDA, NO_DEVICE);

    static const char *truncated = "fake TensorRT: engine is truncated";
    if (len < ENGINE_MAGIC_LEN) {
        if (len == 0 || memcmp(data, ENGINE_MAGIC, len) == 0)
            return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: not an engine (bad magic)");
    }
    if (memcmp(data, ENGINE_MAGIC, ENGINE_MAGIC_LEN) != 0)
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: not an engine (bad magic)");
    size_t p = ENGINE_MAGIC_LEN;
    if (len - p < 4) return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
    uint32_t version = get_u32(data + p);
    p += 4;
    size_t room = len - p, name_max = sizeof(((dtrt_device *)0)->name);
    const uint8_t *nul = memchr(data + p, '\0', room < name_max ? room : name_max);
    if (!nul) {
        if (room < name_max) return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: engine is corrupt (device name)");
    }
    const char *device = (const char *)(data + p);
    p = (size_t)(nul - data) + 1;
    if (len - p < 4) return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
    uint32_t text_len = get_u32(data + p);
    p += 4;
    if (len - p < text_len) return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
    const uint8_t *text = data + p;
    p += text_len;
    if (len - p < 8) return fail(DTRT_ERR_DESERIALIZE, "%s", truncated);
    uint64_t sum = get_u64(data + p);
    p += 8;
    if (p != len)
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: engine is corrupt (%zu trailing bytes)",
                    len - p);
    /* Version and device before the checksum, so their refusals carry their own message. */
    if (version != (uint32_t)FAKE_LIBRARY) {
        char built[32], here[32];
        version_text(built, sizeof built, version);
        version_text(here, sizeof here, (uint32_t)FAKE_LIBRARY);
        return fail(DTRT_ERR_DESERIALIZE,
                    "fake TensorRT: engine built by %s, this library is %s", built, here);
    }
    if (strcmp(device, FAKE_DEVICE_NAME) != 0)
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: engine built for %s, this GPU is %s",
                    device, FAKE_DEVICE_NAME);
    if (fnv1a64(data, len - 8) != sum)
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: engine is corrupt (checksum mismatch)");
    if (text_len > MAX_CONTROL_BYTES)
        return fail(DTRT_ERR_DESERIALIZE, "fake TensorRT: engine is corrupt (control text)");

    dtrt_engine *e = calloc(1, sizeof *e);
    if (!e) return fail_oom();
    atomic_init(&e->refs, 1);
    dtrt_status st = parse_control(text, text_len, NULL, NULL, "fake TensorRT: engine is corrupt: control text",
                                   DTRT_ERR_DESERIALIZE, &e->ctl);
    if (st != DTRT_OK) {
        free(e);
        return st;
    }

    e->record_bytes = 8;
    for (int32_t i = 0; i < e->ctl.nb_io; i++)
        if (!e->ctl.io[i].is_input) e->record_bytes += (size_t)e->ctl.io[i].bytes;
    if (e->ctl.table) {
        size_t table_len;
        int r = read_whole_file(e->ctl.table, &e->table, &table_len);
        if (r == -2) st = fail_oom();
        else if (r == -1)
            st = fail(DTRT_ERR_OTHER, "fake TensorRT: cannot read table %s: %s", e->ctl.table,
                      strerror(errno));
        else if (table_len % e->record_bytes != 0)
            st = fail(DTRT_ERR_OTHER,
                      "fake TensorRT: table %s is %zu bytes, not a multiple of its %zu-byte "
                      "records",
                      e->ctl.table, table_len, e->record_bytes);
        else e->records = table_len / e->record_bytes;
        if (st != DTRT_OK) {
            engine_release(e);
            return st;
        }
    }
    *out = e;
    return DTRT_OK;
}

void dtrt_engine_free(dtrt_engine *engine) {
    if (!engine) return;
    /* TensorRT forbids this order; say so loudly, but stay safe so the test reports it. */
    int refs = atomic_load(&engine->refs);
    if (refs > 1)
        fprintf(stderr, "fake TensorRT: engine freed while %d context(s) still use it\n",
                refs - 1);
    engine_release(engine);
}

/* ---------------------------------------------------------------------------------------- */
/* Context                                                                                  */

typedef struct {
    uint8_t *own;
    /* The caller's memory from dtrt_context_bind_input; the fake reads it as host memory. */
    const uint8_t *bound;
} fake_buffer;

struct dtrt_context {
    dtrt_engine *engine;
    fake_buffer *buf;
    long long runs;
};

dtrt_status dtrt_context_create(dtrt_engine *engine, dtrt_context **out) {
    if (!out) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_create: out is NULL");
    *out = NULL;
    if (!engine)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_create: engine is NULL");
    dtrt_context *c = calloc(1, sizeof *c);
    if (!c) return fail_oom();
    int32_t n = engine->ctl.nb_io;
    c->buf = calloc(n ? (size_t)n : 1, sizeof *c->buf);
    if (!c->buf) {
        free(c);
        return fail_oom();
    }
    for (int32_t i = 0; i < n; i++) {
        /* Zeroed, so an output read before any run is defined. */
        c->buf[i].own = calloc(1, (size_t)engine->ctl.io[i].bytes);
        if (!c->buf[i].own) {
            for (int32_t j = 0; j < i; j++) free(c->buf[j].own);
            free(c->buf);
            free(c);
            return fail(DTRT_ERR_OUT_OF_MEMORY,
                        "fake TensorRT: out of memory for %s (%llu bytes)", engine->ctl.io[i].name,
                        (unsigned long long)engine->ctl.io[i].bytes);
        }
    }
    atomic_fetch_add(&engine->refs, 1);
    c->engine = engine;
    *out = c;
    return DTRT_OK;
}

void dtrt_context_free(dtrt_context *context) {
    if (!context) return;
    for (int32_t i = 0; i < context->engine->ctl.nb_io; i++) free(context->buf[i].own);
    free(context->buf);
    engine_release(context->engine);
    free(context);
}

int32_t dtrt_context_io_count(const dtrt_context *context) {
    if (!context) {
        fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_io_count: context is NULL");
        return 0;
    }
    return context->engine->ctl.nb_io;
}

static dtrt_status check_index(const dtrt_context *context, int32_t index, const char *call) {
    if (!context) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: %s: context is NULL", call);
    if (index < 0 || index >= context->engine->ctl.nb_io)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: %s: index %d is not in 0..%d", call,
                    (int)index, (int)context->engine->ctl.nb_io - 1);
    return DTRT_OK;
}

dtrt_status dtrt_context_io(const dtrt_context *context, int32_t index, dtrt_io *out) {
    dtrt_status st = check_index(context, index, "dtrt_context_io");
    if (st != DTRT_OK) return st;
    if (!out) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_io: out is NULL");
    const fake_io *io = &context->engine->ctl.io[index];
    memset(out, 0, sizeof *out);
    out->name = io->name;
    out->is_input = io->is_input;
    out->dtype = io->dtype;
    out->nb_dims = io->nb_dims;
    memcpy(out->dims, io->dims, sizeof out->dims);
    out->bytes = io->bytes;
    return DTRT_OK;
}

static dtrt_status check_input(const dtrt_context *context, int32_t index, const char *call) {
    dtrt_status st = check_index(context, index, call);
    if (st != DTRT_OK) return st;
    if (!context->engine->ctl.io[index].is_input)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: %s: tensor %d (%s) is an output", call,
                    (int)index, context->engine->ctl.io[index].name);
    return DTRT_OK;
}

dtrt_status dtrt_context_copy_input(dtrt_context *context, int32_t index, const void *host,
                                    size_t bytes) {
    dtrt_status st = check_input(context, index, "dtrt_context_copy_input");
    if (st != DTRT_OK) return st;
    const fake_io *io = &context->engine->ctl.io[index];
    if (!host) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_copy_input: host is NULL");
    if (bytes != io->bytes)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: input %s is %llu bytes, given %zu",
                    io->name, (unsigned long long)io->bytes, bytes);
    /* Into the context's own buffer even while bound elsewhere, as cudaMemcpyAsync would. */
    memcpy(context->buf[index].own, host, bytes);
    return DTRT_OK;
}

dtrt_status dtrt_context_bind_input(dtrt_context *context, int32_t index, uint64_t device_ptr,
                                    size_t bytes) {
    dtrt_status st = check_input(context, index, "dtrt_context_bind_input");
    if (st != DTRT_OK) return st;
    const fake_io *io = &context->engine->ctl.io[index];
    if (device_ptr == 0) {
        context->buf[index].bound = NULL;
        return DTRT_OK;
    }
    if (bytes < io->bytes)
        return fail(DTRT_ERR_ARGUMENT,
                    "fake TensorRT: input %s needs %llu bytes, the bound memory holds %zu",
                    io->name, (unsigned long long)io->bytes, bytes);
    context->buf[index].bound = (const uint8_t *)(uintptr_t)device_ptr;
    return DTRT_OK;
}

dtrt_status dtrt_context_run(dtrt_context *context, float *gpu_ms) {
    if (!context) return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_run: context is NULL");
    const dtrt_engine *e = context->engine;
    if (e->ctl.run == RUN_CUDA_ERROR) return fail(DTRT_ERR_CUDA, ILLEGAL_ADDRESS);
    /* Sticky once it fails, as an illegal address poisons a real CUDA context. */
    if (e->ctl.run == RUN_FAIL_AFTER && context->runs >= e->ctl.fail_after)
        return fail(DTRT_ERR_CUDA, ILLEGAL_ADDRESS);
    context->runs++;

    uint64_t hash = fnv1a64(NULL, 0);
    for (int32_t i = 0; i < e->ctl.nb_io; i++)
        if (e->ctl.io[i].is_input) {
            const uint8_t *src = context->buf[i].bound ? context->buf[i].bound : context->buf[i].own;
            hash = fnv1a64(src, (size_t)e->ctl.io[i].bytes);
            break;
        }

    const uint8_t *record = NULL;
    for (size_t r = 0; r < e->records && !record; r++)
        if (get_u64(e->table + r * e->record_bytes) == hash) record = e->table + r * e->record_bytes;

    size_t off = 8;
    for (int32_t i = 0; i < e->ctl.nb_io; i++) {
        const fake_io *io = &e->ctl.io[i];
        if (io->is_input) continue;
        uint8_t *dst = context->buf[i].own;
        size_t n = (size_t)io->bytes;
        if (!record) {
            memset(dst, 0, n);
            continue;
        }
        memcpy(dst, record + off, n);
        off += n;
        if (io->dtype == DTRT_FLOAT && e->ctl.noise != 0) {
            for (size_t k = 0; k < n / 4; k++) {
                float v;
                memcpy(&v, dst + 4 * k, 4);
                v = (float)((double)v + e->ctl.noise * fake_sin(0.7 * (double)k + 0.3));
                memcpy(dst + 4 * k, &v, 4);
            }
        }
    }
    if (gpu_ms) *gpu_ms = 0.25f;
    return DTRT_OK;
}

dtrt_status dtrt_context_output(const dtrt_context *context, int32_t index, const void **host,
                                size_t *bytes) {
    dtrt_status st = check_index(context, index, "dtrt_context_output");
    if (st != DTRT_OK) return st;
    if (context->engine->ctl.io[index].is_input)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_output: tensor %d (%s) is an input",
                    (int)index, context->engine->ctl.io[index].name);
    if (!host || !bytes)
        return fail(DTRT_ERR_ARGUMENT, "fake TensorRT: dtrt_context_output: host or bytes is NULL");
    *host = context->buf[index].own;
    *bytes = (size_t)context->engine->ctl.io[index].bytes;
    return DTRT_OK;
}
