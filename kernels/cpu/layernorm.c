/*
 * LayerNorm over the channels of each row: out = (x - mean) * rstd * weight + bias.
 * Shapes: inp, out, dout, dinp (N,C); weight, bias, dweight, dbias (C); mean, rstd (N).
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <math.h>

/* columns per task of the dweight/dbias sums: their accumulators stay in registers */
#define LN_COLS 64

void hn_layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                          const float* weight, const float* bias, int N, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* x = inp + (size_t)i * C;
        float* o = out + (size_t)i * C;
        float m = hn_sum(x, C) / C;
        /* variance as the mean of (x - m)^2, not E[x^2] - m^2, which cancels when |m| >> std */
        float acc[HN_LANES] = {0};
        int c = 0;
        for (; c + HN_LANES <= C; c += HN_LANES)
            for (int j = 0; j < HN_LANES; j++) {
                float d = x[c + j] - m;
                acc[j] = fmaf(d, d, acc[j]);
            }
        for (int j = 0; c + j < C; j++) {
            float d = x[c + j] - m;
            acc[j] = fmaf(d, d, acc[j]);
        }
        float s = 1.0f / sqrtf(hn_lanes_sum(acc) / C + eps);
        for (c = 0; c < C; c++)
            o[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

/* With xhat = (x - mean) * rstd and g = dout * weight:
 *   dinp = rstd * (g - mean(g) - xhat * mean(g * xhat)),
 *   dweight = sum over rows of dout * xhat,  dbias = sum over rows of dout.
 * dinp is split by rows. dweight and dbias sum over rows, so they are split by columns
 * instead: each column is summed over all rows in row order, the same for any thread count. */
void hn_layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                           const float* inp, const float* weight, const float* mean,
                           const float* rstd, int N, int C) {
    const float broken = hn_cpu_broken_op == HN_OP_LAYERNORM ? 1.02f : 1.0f;
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int i = 0; i < N; i++) {
            const float* x = inp + (size_t)i * C;
            const float* d = dout + (size_t)i * C;
            float* dx = dinp + (size_t)i * C;
            const float m = mean[i], s = rstd[i];
            float accg[HN_LANES] = {0}, accgx[HN_LANES] = {0};
            int c = 0;
            for (; c + HN_LANES <= C; c += HN_LANES)
                for (int j = 0; j < HN_LANES; j++) {
                    float g = d[c + j] * weight[c + j];
                    accg[j] += g;
                    accgx[j] = fmaf(g, (x[c + j] - m) * s, accgx[j]);
                }
            for (int j = 0; c + j < C; j++) {
                float g = d[c + j] * weight[c + j];
                accg[j] += g;
                accgx[j] = fmaf(g, (x[c + j] - m) * s, accgx[j]);
            }
            const float gmean = hn_lanes_sum(accg) / C;
            const float gxmean = broken * hn_lanes_sum(accgx) / C;
            for (c = 0; c < C; c++) {
                float xhat = (x[c] - m) * s;
                dx[c] += s * (d[c] * weight[c] - gmean - xhat * gxmean);
            }
        }
        if (dweight || dbias) {
            const int nchunks = (C + LN_COLS - 1) / LN_COLS;
#pragma omp for schedule(static)
            for (int k = 0; k < nchunks; k++) {
                const int c0 = k * LN_COLS, w = c0 + LN_COLS < C ? LN_COLS : C - c0;
                float accw[LN_COLS] = {0}, accb[LN_COLS] = {0};
                for (int i = 0; i < N; i++) {
                    const float* x = inp + (size_t)i * C + c0;
                    const float* d = dout + (size_t)i * C + c0;
                    const float m = mean[i], s = rstd[i];
                    for (int j = 0; j < w; j++) {
                        accw[j] = fmaf(d[j], (x[j] - m) * s, accw[j]);
                        accb[j] += d[j];
                    }
                }
                for (int j = 0; j < w; j++) {
                    if (dweight) dweight[c0 + j] += accw[j];
                    if (dbias) dbias[c0 + j] += accb[j];
                }
            }
        }
    }
}
