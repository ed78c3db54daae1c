// Preprocessing on the GPU: raw frame bytes to normalised NCHW, in two passes.
//
// This mirrors ReferencePreprocessor in host/src/preprocess/resample.rs step for step; change
// both together. No headers: NVRTC without the toolkit's include folder cannot find them, and
// nothing here needs them.
//
// Arithmetic is written with explicit roundings (__fmul_rn, __fadd_rn, fmaf) so that the compiler
// cannot contract it differently from the Rust reference: the mask test uses separate multiplies
// and adds as Rust does, the filter sums use one fused multiply-add per tap as Rust's mul_add.

// Pixel formats, as resample::format_code numbers them.
#define FMT_GRAY8 0u
#define FMT_RGB888 1u
#define FMT_RGB565 2u
#define FMT_YUYV422 3u

// Mask kinds, as resample::MaskParams numbers them.
#define MASK_NONE 0u
#define MASK_CIRCLE 1u
#define MASK_SECTOR 2u

// Degrees per radian, the constant Rust's f32::to_degrees multiplies by.
#define DEGREES_PER_RADIAN 57.2957795130823208767981548141051703f

// The region's numbers: circle cx, cy, radius; sector apex x, apex y, inner, outer, start, end.
struct Mask {
    unsigned int kind;
    float p[6];
};

// MaskParams::contains: whether pixel (x, y) of the frame is kept.
__device__ bool roi_contains(const Mask &m, unsigned int x, unsigned int y)
{
    float px = __fadd_rn((float)x, 0.5f);
    float py = __fadd_rn((float)y, 0.5f);
    if (m.kind == MASK_CIRCLE) {
        float dx = __fsub_rn(px, m.p[0]);
        float dy = __fsub_rn(py, m.p[1]);
        return __fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)) <= __fmul_rn(m.p[2], m.p[2]);
    }
    if (m.kind == MASK_SECTOR) {
        float dx = __fsub_rn(px, m.p[0]);
        float dy = __fsub_rn(py, m.p[1]);
        float r = hypotf(dx, dy);
        float angle = __fmul_rn(atan2f(dx, dy), DEGREES_PER_RADIAN);
        return r >= m.p[2] && r <= m.p[3] && angle >= m.p[4] && angle <= m.p[5];
    }
    return true;
}

// BT.601 limited range, integer form, clipped to a byte (convert.rs yuv_to_rgb).
__device__ int clip_byte(int t)
{
    int v = (t + 128) >> 8;
    return v < 0 ? 0 : (v > 255 ? 255 : v);
}

// decode_pixel: pixel (x, y) of a frame `width` wide as RGB 0-255.
__device__ void load_rgb(const unsigned char *data, unsigned int format, unsigned int width,
                         unsigned int x, unsigned int y, float rgb[3])
{
    unsigned long long w = width, xx = x, yy = y;
    if (format == FMT_GRAY8) {
        float v = (float)data[yy * w + xx];
        rgb[0] = v;
        rgb[1] = v;
        rgb[2] = v;
    } else if (format == FMT_RGB888) {
        unsigned long long i = (yy * w + xx) * 3ull;
        rgb[0] = (float)data[i];
        rgb[1] = (float)data[i + 1];
        rgb[2] = (float)data[i + 2];
    } else if (format == FMT_RGB565) {
        unsigned long long i = (yy * w + xx) * 2ull;
        unsigned int v = (unsigned int)data[i] | ((unsigned int)data[i + 1] << 8);
        unsigned int r = v >> 11, g = (v >> 5) & 0x3fu, b = v & 0x1fu;
        rgb[0] = (float)((r << 3) | (r >> 2));
        rgb[1] = (float)((g << 2) | (g >> 4));
        rgb[2] = (float)((b << 3) | (b >> 2));
    } else {
        unsigned long long row = yy * w * 2ull;
        unsigned long long pair = row + xx / 2ull * 4ull;
        int luma = (int)data[row + xx * 2ull];
        int u = (int)data[pair + 1];
        int v = (int)data[pair + 3];
        int c = 298 * (luma - 16);
        int d = u - 128, e = v - 128;
        rgb[0] = (float)clip_byte(c + 409 * e);
        rgb[1] = (float)clip_byte(c - 100 * d - 208 * e);
        rgb[2] = (float)clip_byte(c + 516 * d);
    }
}

// Kernel 1, one thread per (output column, crop row): decode the row's window of source pixels,
// black outside the mask, and filter horizontally into rows[rect_h][out_w][3].
extern "C" __global__ void dinoedge_preprocess_rows(
    const unsigned char *data, unsigned int format, unsigned int frame_width,
    unsigned int rect_x, unsigned int rect_y, unsigned int rect_h,
    unsigned int mask_kind, float m0, float m1, float m2, float m3, float m4, float m5,
    const unsigned int *h_starts, const float *h_weights, unsigned int h_taps,
    unsigned int out_w, float *rows)
{
    unsigned int ox = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int r = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= out_w || r >= rect_h) {
        return;
    }
    Mask mask;
    mask.kind = mask_kind;
    mask.p[0] = m0;
    mask.p[1] = m1;
    mask.p[2] = m2;
    mask.p[3] = m3;
    mask.p[4] = m4;
    mask.p[5] = m5;
    unsigned int y = rect_y + r;
    unsigned int start = h_starts[ox];
    const float *weights = h_weights + (unsigned long long)ox * h_taps;
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (unsigned int k = 0; k < h_taps; ++k) {
        float w = weights[k];
        unsigned int x = rect_x + start + k;
        float rgb[3] = {0.0f, 0.0f, 0.0f};
        if (roi_contains(mask, x, y)) {
            load_rgb(data, format, frame_width, x, y, rgb);
        }
        for (int c = 0; c < 3; ++c) {
            acc[c] = fmaf(w, rgb[c], acc[c]);
        }
    }
    float *px = rows + ((unsigned long long)r * out_w + ox) * 3ull;
    px[0] = acc[0];
    px[1] = acc[1];
    px[2] = acc[2];
}

// Kernel 2's filter and normalisation for output pixel (ox, oy), channel values in `value`.
__device__ void vertical(const float *rows, unsigned int out_w, unsigned int ox, unsigned int oy,
                         const unsigned int *v_starts, const float *v_weights,
                         unsigned int v_taps, const float scale[3], const float offset[3],
                         float value[3])
{
    unsigned int start = v_starts[oy];
    const float *weights = v_weights + (unsigned long long)oy * v_taps;
    float acc[3] = {0.0f, 0.0f, 0.0f};
    for (unsigned int k = 0; k < v_taps; ++k) {
        float w = weights[k];
        const float *px = rows + ((unsigned long long)(start + k) * out_w + ox) * 3ull;
        for (int c = 0; c < 3; ++c) {
            acc[c] = fmaf(w, px[c], acc[c]);
        }
    }
    for (int c = 0; c < 3; ++c) {
        value[c] = fmaf(acc[c], scale[c], offset[c]);
    }
}

// Kernel 2's work for the pixel this thread owns: filtered vertically and normalised into
// `value`, with its index in a channel plane and the plane's size; false past the output.
__device__ bool column_pixel(
    const float *rows, unsigned int out_w, unsigned int out_h,
    const unsigned int *v_starts, const float *v_weights, unsigned int v_taps,
    float s0, float s1, float s2, float o0, float o1, float o2,
    float value[3], unsigned long long *i, unsigned long long *plane)
{
    unsigned int ox = blockIdx.x * blockDim.x + threadIdx.x;
    unsigned int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= out_w || oy >= out_h) {
        return false;
    }
    const float scale[3] = {s0, s1, s2};
    const float offset[3] = {o0, o1, o2};
    vertical(rows, out_w, ox, oy, v_starts, v_weights, v_taps, scale, offset, value);
    *plane = (unsigned long long)out_w * out_h;
    *i = (unsigned long long)oy * out_w + ox;
    return true;
}

// Kernel 2, one thread per output pixel: filter vertically, normalise, write NCHW f32.
extern "C" __global__ void dinoedge_preprocess_columns_f32(
    const float *rows, unsigned int out_w, unsigned int out_h,
    const unsigned int *v_starts, const float *v_weights, unsigned int v_taps,
    float s0, float s1, float s2, float o0, float o1, float o2, float *out)
{
    float value[3];
    unsigned long long i, plane;
    if (!column_pixel(rows, out_w, out_h, v_starts, v_weights, v_taps, s0, s1, s2, o0, o1, o2,
                      value, &i, &plane)) {
        return;
    }
    for (int c = 0; c < 3; ++c) {
        out[c * plane + i] = value[c];
    }
}

// f32 to IEEE half, round to nearest even, without cuda_fp16.h.
__device__ unsigned short to_half(float v)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
}

// Kernel 2 for an f16 model: the same values, written as IEEE half.
extern "C" __global__ void dinoedge_preprocess_columns_f16(
    const float *rows, unsigned int out_w, unsigned int out_h,
    const unsigned int *v_starts, const float *v_weights, unsigned int v_taps,
    float s0, float s1, float s2, float o0, float o1, float o2, unsigned short *out)
{
    float value[3];
    unsigned long long i, plane;
    if (!column_pixel(rows, out_w, out_h, v_starts, v_weights, v_taps, s0, s1, s2, o0, o1, o2,
                      value, &i, &plane)) {
        return;
    }
    for (int c = 0; c < 3; ++c) {
        out[c * plane + i] = to_half(value[c]);
    }
}
