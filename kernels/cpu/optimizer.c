/*
 * The optimizer step and the gradient norm it is usually clipped by. Both stream over every
 * parameter (124M floats for GPT-2 small), so they are single memory-bound passes.
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <math.h>

/* Shapes: p, g, m, v (n). The bias corrections are per step, so they are computed once in
 * double; the loop itself is float (and vectorises). */
void hn_adamw_update(float* p, float* g, float* m, float* v, size_t n, float lr, float beta1,
                     float beta2, float eps, float wd, float grad_scale, int t, int zero_grad) {
    const float step = (float)(lr / (1.0 - pow(beta1, t)));
    const float rbc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, t))); /* 1 / sqrt(1 - b2^t) */
    const float decay = 1.0f - lr * wd;
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float gi = g[i] * grad_scale;
        const float mi = fmaf(beta1, m[i], a1 * gi);
        const float vi = fmaf(beta2, v[i], a2 * gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
        if (zero_grad) g[i] = 0.0f;
    }
}

void hn_adamw_update_masked(float* p, const float* g, float* m, float* v, const unsigned* idx,
                            size_t k, float lr, float beta1, float beta2, float eps, float wd,
                            float grad_scale, int t) {
    const float step = (float)(lr / (1.0 - pow(beta1, t)));
    const float rbc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, t)));
    const float decay = 1.0f - lr * wd;
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < k; i++) {
        const size_t j = idx[i];
        const float gi = g[j] * grad_scale;
        const float mi = fmaf(beta1, m[i], a1 * gi);
        const float vi = fmaf(beta2, v[i], a2 * gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[j] = p[j] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
    }
}

void hn_adamw_update_keep(float* p, float* g, float* m, float* v, const unsigned char* keep,
                          size_t n, float lr, float beta1, float beta2, float eps, float wd,
                          float grad_scale, int t) {
    const float step = (float)(lr / (1.0 - pow(beta1, t)));
    const float rbc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, t)));
    const float decay = 1.0f - lr * wd;
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        if (keep[i]) {
            const float gi = g[i] * grad_scale;
            const float mi = fmaf(beta1, m[i], a1 * gi);
            const float vi = fmaf(beta2, v[i], a2 * gi * gi);
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
        }
        g[i] = 0.0f;
    }
}

double hn_sum_squares_indexed(const float* g, const unsigned* idx, size_t k) {
    /* blocks of SQ_BLOCK indices summed by one thread each, block sums in order */
    enum { BLOCK = 4096 };
    size_t nblocks = (k + BLOCK - 1) / BLOCK;
    double total = 0.0;
    for (size_t b0 = 0; b0 < nblocks; b0 += 1024) {
        size_t nb = nblocks - b0 < 1024 ? nblocks - b0 : 1024;
        double part[1024];
#pragma omp parallel for schedule(static)
        for (size_t b = 0; b < nb; b++) {
            size_t i0 = (b0 + b) * BLOCK, i1 = i0 + BLOCK < k ? i0 + BLOCK : k;
            double s = 0.0;
            for (size_t i = i0; i < i1; i++)
                s += (double)g[idx[i]] * g[idx[i]];
            part[b] = s;
        }
        for (size_t b = 0; b < nb; b++)
            total += part[b];
    }
    return total;
}

/* floats per block: a block is summed by one thread, in lanes of doubles, and the block sums
 * are added in index order, so the result does not depend on the thread count */
#define SQ_BLOCK 4096
/* blocks per parallel round: their sums fit in a stack array (8 KiB) */
#define SQ_ROUND 1024

static double sum_squares_block(const float* x, size_t n) {
    double acc[HN_LANES] = {0};
    size_t i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
        for (int j = 0; j < HN_LANES; j++)
            acc[j] += (double)x[i + j] * x[i + j];
    for (int j = 0; i + j < n; j++)
        acc[j] += (double)x[i + j] * x[i + j];
    for (int w = HN_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] += acc[j + w];
    return acc[0];
}

double hn_sum_squares(const float* x, size_t n) {
    const size_t nblocks = (n + SQ_BLOCK - 1) / SQ_BLOCK;
    double total = 0.0;
    for (size_t k0 = 0; k0 < nblocks; k0 += SQ_ROUND) {
        const size_t nb = nblocks - k0 < SQ_ROUND ? nblocks - k0 : SQ_ROUND;
        double partial[SQ_ROUND];
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < nb; k++) {
            const size_t i0 = (k0 + k) * SQ_BLOCK;
            partial[k] = sum_squares_block(x + i0, n - i0 < SQ_BLOCK ? n - i0 : SQ_BLOCK);
        }
        for (size_t k = 0; k < nb; k++)
            total += partial[k];
    }
    return total;
}
