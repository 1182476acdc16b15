/*
 * RMSNorm over the channels of each row (Zhang & Sennrich, "Root Mean Square Layer
 * Normalization", 2019), as Llama uses it: out = x * rstd * weight, no mean, no bias.
 * Shapes: inp, out, dout, dinp (N,C); weight, dweight (C); rstd (N).
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <math.h>

/* columns per task of the dweight sum: its accumulators stay in registers */
#define RMS_COLS 64

/* sum of a[i] * b[i] * c[i], i < n, in the fixed lane order of internal.h. Left to itself
 * GCC unrolls the lane loop completely and then fails to vectorise the block loop (scalar
 * FMAs, 2.4x slower at C = 576); `unroll 1` keeps it a loop the vectoriser takes whole. */
static float dot3(const float* a, const float* b, const float* c, int n) {
    float acc[HN_LANES] = {0};
    int i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
#pragma GCC unroll 1
        for (int j = 0; j < HN_LANES; j++)
            acc[j] = fmaf(a[i + j] * b[i + j], c[i + j], acc[j]);
    for (int j = 0; i + j < n; j++)
        acc[j] = fmaf(a[i + j] * b[i + j], c[i + j], acc[j]);
    return hn_lanes_sum(acc);
}

/* sum of a[i]^2, i < n, as dot3 */
static float sum_sq(const float* a, int n) {
    float acc[HN_LANES] = {0};
    int i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
#pragma GCC unroll 1
        for (int j = 0; j < HN_LANES; j++)
            acc[j] = fmaf(a[i + j], a[i + j], acc[j]);
    for (int j = 0; i + j < n; j++)
        acc[j] = fmaf(a[i + j], a[i + j], acc[j]);
    return hn_lanes_sum(acc);
}

void hn_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                        int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        float* o = out + (size_t)i * C;
        /* the fixed-order lane sum keeps ~1e-7 relative; no cancellation, all terms >= 0 */
        const float s = 1.0f / sqrtf(sum_sq(x, C) / C + eps);
        for (int c = 0; c < C; c++)
            o[c] = x[c] * s * weight[c];
        rstd[i] = s;
    }
}

/* With xhat = x * rstd and g = dout * weight (rstd depends on x through mean(x^2)):
 *   dinp = rstd * (g - xhat * mean(g * xhat)),   dweight = sum over rows of dout * xhat.
 * dinp is split by rows; dweight, a sum over rows, is split by columns, each column summed
 * over all rows in row order, so its bits do not depend on the thread count. */
void hn_rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                         const float* weight, const float* rstd, int N, int C) {
    const float broken = hn_cpu_broken_op == HN_OP_RMSNORM ? 1.02f : 1.0f;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float* x = inp + (size_t)i * C;
            const float* d = dout + (size_t)i * C;
            float* dx = dinp + (size_t)i * C;
            const float s = rstd[i];
            /* mean(g * xhat) * xhat = x * (s^2 * mean(g * x)) */
            const float k = broken * s * s * dot3(d, weight, x, C) / C;
            for (int c = 0; c < C; c++)
                dx[c] += s * (d[c] * weight[c] - x[c] * k);
        }
        if (dweight) {
            const int nchunks = (C + RMS_COLS - 1) / RMS_COLS;
#pragma omp for schedule(static)
            for (int k = 0; k < nchunks; k++) {
                const int c0 = k * RMS_COLS, w = c0 + RMS_COLS < C ? RMS_COLS : C - c0;
                float acc[RMS_COLS] = {0};
                for (int i = 0; i < N; i++) {
                    const float* x = inp + (size_t)i * C + c0;
                    const float* d = dout + (size_t)i * C + c0;
                    const float s = rstd[i];
                    for (int j = 0; j < w; j++)
                        acc[j] = fmaf(d[j], x[j] * s, acc[j]);
                }
                for (int j = 0; j < w; j++)
                    dweight[c0 + j] += acc[j];
            }
        }
    }
}
