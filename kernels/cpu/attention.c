/*
 * Causal self-attention, multi-head and grouped-query (Ainslie et al., "GQA: Training
 * Generalized Multi-Query Transformer Models from Multi-Head Checkpoints", 2023): NH query
 * heads share NKV key/value heads, G = NH / NKV query heads to a kv head; query head h reads
 * kv head h / G. GPT-2's multi-head attention on its fused qkv is the case NKV = NH with
 * q, k, v side by side in one row of 3C, and runs through the same code.
 * Shapes: q, dq (B,T,NH*HS) rows q_stride apart; k, v, dk, dv (B,T,NKV*HS) rows kv_stride
 * apart; att (B,NH,T,T) softmax probabilities, row t nonzero only in columns 0..t;
 * out, dout (B,T,NH*HS).
 *
 * The forward is split by (b, h): each pair owns its att block and its head's columns of
 * out. The backward is split by (b, kv head): the thread that owns a kv head runs its G
 * query heads one after another, in head order, adding into dk and dv, so the sum over the
 * group has a fixed order and needs neither atomics nor per-thread copies. Dot products
 * against every earlier position (q_t . k_t2, dout_t . v_t2) run on a transposed copy of K
 * or V, (HS,T) on the thread's stack, so the inner loop runs over t2 in vector lanes
 * instead of ending each dot in a horizontal sum.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

#include <math.h>
#include <string.h>

/* columns per register tile of vecmat: 2 AVX-512 or 4 AVX2 registers of accumulators */
#define TILE 32
/* rows of the backward handled together, so each dk, dv row is loaded and stored once per
 * RB rows instead of once per row */
#define RB 8

/* y[j] (+)= sum_{r<k} a[r * lda] * x[r * ldx + j] for j < m: a row vector times a (k,m)
 * matrix, added to y if accumulate. Tiles of TILE columns keep their sums in registers over
 * all k rows; an axpy per row would store and reload y k times, each waiting on the previous
 * store. Columns up to `readable` may be read (padding); a tile that would read past it is
 * done column by column. */
static void vecmat(float* y, const float* a, size_t lda, const float* x, size_t ldx, int k, int m,
                   int readable, int accumulate) {
    int j0 = 0;
    for (; j0 < m && j0 + TILE <= readable; j0 += TILE) {
        /* four partial sums over r, so four FMA chains are in flight instead of one */
        float acc[4][TILE] = {{0}};
        int r = 0;
        for (; r + 4 <= k; r += 4)
            for (int u = 0; u < 4; u++)
                for (int j = 0; j < TILE; j++)
                    acc[u][j] = fmaf(a[(r + u) * lda], x[(r + u) * ldx + j0 + j], acc[u][j]);
        for (; r < k; r++)
            for (int j = 0; j < TILE; j++)
                acc[0][j] = fmaf(a[r * lda], x[r * ldx + j0 + j], acc[0][j]);
        const int w = m - j0 < TILE ? m - j0 : TILE;
        for (int j = 0; j < w; j++) {
            const float sum = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
            y[j0 + j] = accumulate ? y[j0 + j] + sum : sum;
        }
    }
    for (; j0 < m; j0++) {
        float acc = 0.0f;
        for (int r = 0; r < k; r++)
            acc = fmaf(a[r * lda], x[r * ldx + j0], acc);
        y[j0] = accumulate ? y[j0] + acc : acc;
    }
}

/* dst (HS,Tp) = the head's slice (T,HS) of rows src + t * stride, transposed; the columns
 * T..Tp are zero padding for vecmat's tiles */
static void transpose_head(float* dst, const float* src, size_t stride, int T, int Tp, int HS) {
    for (int i = 0; i < HS; i++) {
        for (int t = 0; t < T; t++)
            dst[(size_t)i * Tp + t] = src[t * stride + i];
        for (int t = T; t < Tp; t++)
            dst[(size_t)i * Tp + t] = 0.0f;
    }
}

void hn_attention_gqa_forward(float* out, float* att, const float* q, const float* k,
                              const float* v, int q_stride, int kv_stride, int B, int T, int NH,
                              int NKV, int HS) {
    const int G = NH / NKV, Tp = (T + TILE - 1) / TILE * TILE;
    const size_t C = (size_t)NH * HS, qs = q_stride, kvs = kv_stride;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float kt[HS * Tp]; /* K transposed; 256 KiB of stack at HS = 64, T = 1024 */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH, kvh = h / G;
            const float* qh = q + (size_t)b * T * qs + h * HS; /* row t at qh + t * qs */
            const float* vh = v + (size_t)b * T * kvs + kvh * HS;
            transpose_head(kt, k + (size_t)b * T * kvs + kvh * HS, kvs, T, Tp, HS);
            for (int t = 0; t < T; t++) {
                float* a = att + ((size_t)bh * T + t) * T;
                vecmat(a, qh + t * qs, 1, kt, Tp, HS, t + 1, Tp, 0);
                const float maxv = scale * hn_max(a, t + 1); /* scale > 0 commutes with max */
                for (int t2 = 0; t2 <= t; t2++)
                    a[t2] = hn_fast_expf(scale * a[t2] - maxv);
                const float inv = 1.0f / hn_sum(a, t + 1);
                for (int t2 = 0; t2 <= t; t2++)
                    a[t2] *= inv;
                for (int t2 = t + 1; t2 < T; t2++)
                    a[t2] = 0.0f;
                vecmat(out + ((size_t)b * T + t) * C + h * HS, a, 1, vh, kvs, t + 1, HS, HS, 0);
            }
        }
    }
}

/* For one row t of query head h with p = att[t,:] and the scores s = scale * q_t . k_t2:
 *   dp[t2] = dout_t . v_t2,   ds[t2] = p[t2] * (dp[t2] - sum_t3 p[t3] dp[t3])  (softmax)
 *   dq_t = scale * sum_t2 ds[t2] k_t2,  dk_t2 += scale * ds[t2] q_t,  dv_t2 += p[t2] dout_t
 * where dk, dv collect every query head of the kv head's group. Only entries 0..t of att's
 * row t are read. `broken` != 1 spoils the softmax term for the test hook. */
static void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                               const float* k, const float* v, const float* att, int q_stride,
                               int kv_stride, int B, int T, int NH, int NKV, int HS, float broken) {
    const int G = NH / NKV, Tp = (T + TILE - 1) / TILE * TILE;
    const size_t C = (size_t)NH * HS, qs = q_stride, kvs = kv_stride;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float vt[HS * Tp]; /* V transposed */
        float g[RB * T];   /* scale * ds of RB rows, 0 right of the diagonal */
        float pb[RB * T];  /* p of the same rows, 0 right of the diagonal */
#pragma omp for schedule(static)
        for (int bk = 0; bk < B * NKV; bk++) {
            const int b = bk / NKV, kvh = bk % NKV;
            const size_t kv_off = (size_t)b * T * kvs + kvh * HS; /* row t at + t * kvs */
            const float* kh = k + kv_off;
            float* dkh = dk + kv_off;
            float* dvh = dv + kv_off;
            transpose_head(vt, v + kv_off, kvs, T, Tp, HS);
            for (int t = 0; t < T; t++) {
                memset(dkh + t * kvs, 0, HS * sizeof(float));
                memset(dvh + t * kvs, 0, HS * sizeof(float));
            }
            for (int h = kvh * G; h < (kvh + 1) * G; h++) {
                const float* qh = q + (size_t)b * T * qs + h * HS;  /* row t at qh + t * qs */
                const float* d = dout + (size_t)b * T * C + h * HS; /* row t at d + t * C */
                float* dqh = dq + (size_t)b * T * qs + h * HS;
                const float* ah = att + ((size_t)b * NH + h) * T * T;
                for (int t0 = 0; t0 < T; t0 += RB) {
                    const int rb = T - t0 < RB ? T - t0 : RB, end = t0 + rb;
                    for (int r = 0; r < rb; r++) {
                        const int t = t0 + r;
                        const float* p = ah + (size_t)t * T;
                        float* gr = g + r * T;
                        float* pr = pb + r * T;
                        vecmat(gr, d + t * C, 1, vt, Tp, HS, t + 1, Tp, 0); /* dp */
                        const float pdp = broken * hn_dot(p, gr, t + 1);
                        for (int t2 = 0; t2 <= t; t2++) {
                            gr[t2] = scale * p[t2] * (gr[t2] - pdp);
                            pr[t2] = p[t2];
                        }
                        for (int t2 = t + 1; t2 < end; t2++)
                            gr[t2] = pr[t2] = 0.0f;
                        vecmat(dqh + t * qs, gr, 1, kh, kvs, t + 1, HS, HS, 0);
                    }
                    for (int t2 = 0; t2 < end; t2++) {
                        vecmat(dkh + t2 * kvs, g + t2, T, qh + t0 * qs, qs, rb, HS, HS, 1);
                        vecmat(dvh + t2 * kvs, pb + t2, T, d + t0 * C, C, rb, HS, HS, 1);
                    }
                }
            }
        }
    }
}

void hn_attention_gqa_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                               const float* k, const float* v, const float* att, int q_stride,
                               int kv_stride, int B, int T, int NH, int NKV, int HS) {
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION_GQA ? 1.02f : 1.0f;
    attention_backward(dq, dk, dv, dout, q, k, v, att, q_stride, kv_stride, B, T, NH, NKV, HS,
                       broken);
}

void hn_attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    hn_attention_gqa_forward(out, att, qkv, qkv + C, qkv + 2 * C, 3 * C, 3 * C, B, T, NH, NH,
                             C / NH);
}

void hn_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                           int B, int T, int C, int NH) {
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION ? 1.02f : 1.0f;
    attention_backward(dqkv, dqkv + C, dqkv + 2 * C, dout, qkv, qkv + C, qkv + 2 * C, att, 3 * C,
                       3 * C, B, T, NH, NH, C / NH, broken);
}
