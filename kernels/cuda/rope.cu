/*
 * Rotary position embedding on the GPU, the same rotation as kernels/cpu/rope.c (HF Llama's
 * rotate_half layout): within a head of HS, dimension i < HS/2 is paired with i + HS/2 and
 * at position p the pair turns by angle = p * theta^(-2i/HS).
 * Shapes: x (B, T, nheads*HS), rows `stride` floats apart, positions pos0 .. pos0+T-1.
 *
 * One thread a (row, head, pair). The angle, its cos and its sin are formed in double as on
 * the CPU (a float angle is off by ~5e-4 rad at p = 8192), then rounded to float for the
 * rotation. Each thread reads and writes only its own pair, so the update in place is
 * race-free.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define ROPE_THREADS 256

/* turns every pair by sign * angle; sign -1 undoes sign +1 */
__global__ void rope_rotate_kernel(float* x, int T, int nheads, int HS, int stride, int pos0,
                                   float theta, float sign, size_t n) {
    const int half = HS / 2;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(idx % half);
        const size_t rh = idx / half; /* rh = row * nheads + head, row = b * T + t */
        const int h = (int)(rh % nheads);
        const size_t row = rh / nheads;
        const int t = (int)(row % T);
        const double inv_freq = pow((double)theta, -2.0 * i / HS);
        double s, c;
        sincos(((double)pos0 + t) * inv_freq, &s, &c);
        const float cf = (float)c, sf = sign * (float)s;
        float* lo = x + row * stride + (size_t)h * HS + i;
        float* hi = lo + half;
        const float x1 = *lo, x2 = *hi;
        *lo = x1 * cf - x2 * sf;
        *hi = x2 * cf + x1 * sf;
    }
}

static int rope_rotate(const char* fn, float* x, int B, int T, int nheads, int HS, int stride,
                       int pos0, float theta, float sign) {
    if (B < 1 || T < 1 || nheads < 1 || HS < 2)
        return hn_error("%s: sizes must be positive (B %d, T %d, nheads %d, HS %d)", fn, B, T,
                        nheads, HS);
    if (HS % 2 != 0)
        return hn_error("%s: head size %d is odd; RoPE turns pairs of dimensions", fn, HS);
    if ((long long)stride < (long long)nheads * HS)
        return hn_error("%s: row stride %d is shorter than the heads (%d floats)", fn, stride,
                        nheads * HS);
    if (!(theta > 0.0f)) return hn_error("%s: theta %g must be positive", fn, (double)theta);
    const size_t n = (size_t)B * T * nheads * (HS / 2);
    rope_rotate_kernel<<<hn_cuda_grid(n, ROPE_THREADS), ROPE_THREADS, 0, hn_cuda_stream()>>>(
        x, T, nheads, HS, stride, pos0, theta, sign, n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_rope_forward(float* x, int B, int T, int nheads, int HS, int stride,
                                    int pos0, float theta) {
    return rope_rotate("hn_cuda_rope_forward", x, B, T, nheads, HS, stride, pos0, theta, 1.0f);
}

extern "C" int hn_cuda_rope_backward(float* dx, int B, int T, int nheads, int HS, int stride,
                                     int pos0, float theta) {
    return rope_rotate("hn_cuda_rope_backward", dx, B, T, nheads, HS, stride, pos0, theta, -1.0f);
}
