/*
 * Causal multi-head self-attention on GPT-2's fused qkv projection.
 * Shapes: qkv, dqkv (B,T,3C) = [q | k | v], each C split into NH heads of HS = C/NH;
 * att (B,NH,T,T) softmax probabilities, row t nonzero only in columns 0..t; out, dout (B,T,C).
 *
 * Work is split by (b, h): each pair owns its att block and its head's columns of out and
 * dqkv, so threads never write the same memory. Dot products against every earlier
 * position (q_t . k_t2, dout_t . v_t2) run on a transposed copy of K or V, (HS,T), so the
 * inner loop runs over t2 in vector lanes instead of ending each dot in a horizontal sum.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* dst (HS,T) = the head's slice src (T,HS) of rows with the given stride, transposed */
static void transpose_head(float* dst, const float* src, size_t stride, int T, int HS) {
    for (int t = 0; t < T; t++)
        for (int i = 0; i < HS; i++) dst[(size_t)i * T + t] = src[t * stride + i];
}

/* s[t2] = sum_i x[i] * yt[i,t2] for t2 < n, with yt (HS,T) */
static void dots_transposed(float* s, const float* x, const float* yt, int n, int T, int HS) {
    for (int t2 = 0; t2 < n; t2++) s[t2] = 0.0f;
    for (int i = 0; i < HS; i++) hn_axpy(s, x[i], yt + (size_t)i * T, n);
}

void hn_attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    const int HS = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float* kt = malloc((size_t)HS * T * sizeof *kt); /* (HS,T) */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float* q = qkv + (size_t)b * T * C3 + h * HS; /* row t at q + t * C3 */
            const float* k = q + C;
            const float* v = q + 2 * C;
            transpose_head(kt, k, C3, T, HS);
            for (int t = 0; t < T; t++) {
                float* a = att + ((size_t)bh * T + t) * T;
                dots_transposed(a, q + t * C3, kt, t + 1, T, HS);
                const float maxv = scale * hn_max(a, t + 1); /* scale > 0 commutes with max */
                for (int t2 = 0; t2 <= t; t2++) a[t2] = hn_fast_expf(scale * a[t2] - maxv);
                const float inv = 1.0f / hn_sum(a, t + 1);
                for (int t2 = 0; t2 <= t; t2++) a[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
                float* o = out + ((size_t)b * T + t) * C + h * HS;
                memset(o, 0, HS * sizeof *o);
                for (int t2 = 0; t2 <= t; t2++) hn_axpy(o, a[t2], v + t2 * C3, HS);
            }
        }
        free(kt);
    }
}

/* For one row t with p = att[t,:] and the scores s = scale * q_t . k_t2:
 *   dp[t2] = dout_t . v_t2,   ds[t2] = p[t2] * (dp[t2] - sum_t3 p[t3] dp[t3])  (softmax)
 *   dq_t += scale * sum_t2 ds[t2] k_t2,  dk_t2 += scale * ds[t2] q_t,  dv_t2 += p[t2] dout_t */
void hn_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                           int B, int T, int C, int NH) {
    const int HS = C / NH;
    const size_t C3 = 3 * (size_t)C;
    const float scale = 1.0f / sqrtf((float)HS);
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION ? 1.02f : 1.0f;
#pragma omp parallel
    {
        float* vt = malloc(((size_t)HS + 1) * T * sizeof *vt); /* (HS,T), then dp (T) */
        float* dp = vt + (size_t)HS * T;
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH;
            const float* q = qkv + (size_t)b * T * C3 + h * HS; /* row t at q + t * C3 */
            const float* k = q + C;
            float* dq = dqkv + (size_t)b * T * C3 + h * HS;
            float* dk = dq + C;
            float* dv = dq + 2 * C;
            transpose_head(vt, q + 2 * C, C3, T, HS);
            for (int t = 0; t < T; t++) {
                memset(dq + t * C3, 0, HS * sizeof(float));
                memset(dk + t * C3, 0, HS * sizeof(float));
                memset(dv + t * C3, 0, HS * sizeof(float));
            }
            for (int t = 0; t < T; t++) {
                const float* p = att + ((size_t)bh * T + t) * T;
                const float* d = dout + ((size_t)b * T + t) * C + h * HS;
                dots_transposed(dp, d, vt, t + 1, T, HS);
                const float pdp = broken * hn_dot(p, dp, t + 1);
                /* dp becomes scale * ds */
                for (int t2 = 0; t2 <= t; t2++) dp[t2] = scale * p[t2] * (dp[t2] - pdp);
                for (int t2 = 0; t2 <= t; t2++) {
                    hn_axpy(dv + t2 * C3, p[t2], d, HS);
                    hn_axpy(dq + t * C3, dp[t2], k + t2 * C3, HS);
                    hn_axpy(dk + t2 * C3, dp[t2], q + t * C3, HS);
                }
            }
        }
        free(vt);
    }
}
