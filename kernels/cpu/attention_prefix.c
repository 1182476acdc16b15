/*
 * Causal grouped-query attention after P prefix positions, the one CPU implementation of
 * every attention op in kernels/ops.h: hn_attention_gqa_* and GPT-2's hn_attention_*
 * (attention.c) are the case P = 0 and run through this code.
 *
 * Grouped-query attention (Ainslie et al., "GQA: Training Generalized Multi-Query Transformer
 * Models from Multi-Head Checkpoints", 2023): NH query heads share NKV key/value heads,
 * G = NH / NKV query heads to a kv head; query head h reads kv head h / G. Prefix tuning
 * (Li & Liang, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", 2021): P
 * trained key/value rows pk, pv per layer that every query attends before its own sequence;
 * they are shared by the whole batch and never masked.
 * Shapes: q, dq (B,T,NH*HS) rows q_stride apart; k, v, dk, dv (B,T,NKV*HS) rows kv_stride
 * apart; pk, pv, dpk, dpv (P,NKV*HS) rows p_stride apart; att (B,NH,T,L) with L = P + T,
 * row t holding the P prefix probabilities and then those of keys 0..t (0 after them);
 * out, dout (B,T,NH*HS).
 *
 * The forward is split by (b, h): each pair owns its att block and its head's columns of
 * out. The backward is split by (b, kv head): the thread that owns a kv head runs its G
 * query heads one after another, in head order, adding into dk and dv, so the sum over the
 * group has a fixed order and needs neither atomics nor per-thread copies. The prefix
 * gradients sum over the batch as well: each (b, kv head) writes its shares of dpk and dpv,
 * (P,HS) each, into a scratch buffer (B*NKV*2*P*HS floats, allocated per call), and a second
 * loop, split by (prefix row, kv head), adds the shares into dpk, dpv in the order of b, so
 * the sum has one order whatever the thread count (should the allocation fail, each adds its
 * share from its thread's stack in an `ordered` region instead: the same additions in the
 * same order, with the threads in lock step). Dot products against every key
 * (q_t . k_j, dout_t . v_j) run on a transposed copy of [prefix | K] or [prefix | V], (HS,Lp)
 * on the thread's stack, so the inner loop runs over keys in vector lanes instead of ending
 * each dot in a horizontal sum. With P = 0 every step is the one the prefix-free kernel took.
 * Packed documents (pos) only narrow each query's keys in the forward: the probabilities of
 * other documents' keys are exactly 0, so the backward, reading att, gives them nothing.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

#include <math.h>
#include <stdlib.h>
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

/* dst (HS,Lp) = one head's slice of P prefix rows (pre + j * pre_stride) followed by T rows
 * (src + t * stride), transposed; the columns P+T..Lp are zero padding for vecmat's tiles */
static void transpose_head(float* dst, const float* pre, size_t pre_stride, int P, const float* src,
                           size_t stride, int T, int Lp, int HS) {
    for (int i = 0; i < HS; i++) {
        float* row = dst + (size_t)i * Lp;
        for (int j = 0; j < P; j++)
            row[j] = pre[j * pre_stride + i];
        for (int t = 0; t < T; t++)
            row[P + t] = src[t * stride + i];
        for (int t = P + T; t < Lp; t++)
            row[t] = 0.0f;
    }
}

void hn_attention_prefix_forward(float* out, float* att, const float* q, const float* k,
                                 const float* v, const float* pk, const float* pv, const int* pos,
                                 int p_stride, int q_stride, int kv_stride, int B, int T, int P,
                                 int NH, int NKV, int HS) {
    const int G = NH / NKV, L = P + T, Lp = (L + TILE - 1) / TILE * TILE;
    const size_t C = (size_t)NH * HS, qs = q_stride, kvs = kv_stride, ps = p_stride;
    const float scale = 1.0f / sqrtf((float)HS);
#pragma omp parallel
    {
        float kt[HS * Lp]; /* [prefix | K] transposed; 256 KiB of stack at HS = 64, L = 1024 */
#pragma omp for schedule(static)
        for (int bh = 0; bh < B * NH; bh++) {
            const int b = bh / NH, h = bh % NH, kvh = h / G;
            const float* qh = q + (size_t)b * T * qs + h * HS; /* row t at qh + t * qs */
            const float* vh = v + (size_t)b * T * kvs + kvh * HS;
            const float* pvh = P ? pv + kvh * HS : NULL; /* row j at pvh + j * ps */
            transpose_head(kt, P ? pk + kvh * HS : NULL, ps, P, k + (size_t)b * T * kvs + kvh * HS,
                           kvs, T, Lp, HS);
            for (int t = 0; t < T; t++) {
                const int n = P + t + 1; /* keys query t sees: the prefix, then 0..t */
                /* packed documents: keys before s belong to earlier documents, unseen */
                const int s = pos ? t - pos[b * T + t] : 0;
                float* a = att + ((size_t)bh * T + t) * L;
                vecmat(a, qh + t * qs, 1, kt, Lp, HS, n, Lp, 0);
                for (int j = P; j < P + s; j++)
                    a[j] = -INFINITY;
                const float maxv = scale * hn_max(a, n); /* scale > 0 commutes with max */
                for (int j = 0; j < n; j++)
                    a[j] = hn_fast_expf(scale * a[j] - maxv);
                for (int j = P; j < P + s; j++) /* exactly 0, whatever exp(-inf) rounds to */
                    a[j] = 0.0f;
                const float inv = 1.0f / hn_sum(a, n);
                for (int j = 0; j < n; j++)
                    a[j] *= inv;
                for (int j = n; j < L; j++)
                    a[j] = 0.0f;
                float* o = out + ((size_t)b * T + t) * C + h * HS;
                if (P) vecmat(o, a, 1, pvh, ps, P, HS, HS, 0);
                vecmat(o, a + P + s, 1, vh + (size_t)s * kvs, kvs, t + 1 - s, HS, HS, P > 0);
            }
        }
    }
}

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *q, *k, *v, *pk, *pv, *att;
    size_t qs, kvs, ps;
    int B, T, P, NH, NKV, HS, Lp;
    float scale, broken;
} Backward;

/* For one row t of query head h with p = att[t,:] over the keys j (the prefix, then 0..t)
 * and the scores s = scale * q_t . key_j:
 *   dp[j] = dout_t . value_j,   ds[j] = p[j] * (dp[j] - sum_j' p[j'] dp[j'])  (softmax)
 *   dq_t = scale * sum_j ds[j] key_j,  dkey_j += scale * ds[j] q_t,  dvalue_j += p[j] dout_t
 * where dk, dv collect every query head of the kv head's group and ppk, ppv (P,HS) the
 * prefix rows' share of sequence b (NULL: not wanted). One (b, kv head) = bk; vt (HS,Lp),
 * g, pb (RB,L) are the thread's scratch. Only entries 0..P+t of att's row t are read.
 * `broken` != 1 spoils the softmax term for the test hook. */
static void backward_task(const Backward* a, int bk, float* vt, float* g, float* pb, float* ppk,
                          float* ppv) {
    const int T = a->T, P = a->P, L = P + T, HS = a->HS, G = a->NH / a->NKV;
    const size_t C = (size_t)a->NH * HS, qs = a->qs, kvs = a->kvs, ps = a->ps;
    const int b = bk / a->NKV, kvh = bk % a->NKV;
    const size_t kv_off = (size_t)b * T * kvs + kvh * HS; /* row t at + t * kvs */
    const float* kh = a->k + kv_off;
    const float* pkh = P ? a->pk + kvh * HS : NULL; /* row j at + j * ps */
    float* dkh = a->dk + kv_off;
    float* dvh = a->dv + kv_off;
    transpose_head(vt, P ? a->pv + kvh * HS : NULL, ps, P, a->v + kv_off, kvs, T, a->Lp, HS);
    for (int t = 0; t < T; t++) {
        memset(dkh + t * kvs, 0, HS * sizeof(float));
        memset(dvh + t * kvs, 0, HS * sizeof(float));
    }
    if (ppk) memset(ppk, 0, (size_t)P * HS * sizeof(float));
    if (ppv) memset(ppv, 0, (size_t)P * HS * sizeof(float));
    for (int h = kvh * G; h < (kvh + 1) * G; h++) {
        const float* qh = a->q + (size_t)b * T * qs + h * HS;  /* row t at qh + t * qs */
        const float* d = a->dout + (size_t)b * T * C + h * HS; /* row t at d + t * C */
        float* dqh = a->dq + (size_t)b * T * qs + h * HS;
        const float* ah = a->att + ((size_t)b * a->NH + h) * T * L;
        for (int t0 = 0; t0 < T; t0 += RB) {
            const int rb = T - t0 < RB ? T - t0 : RB, end = t0 + rb;
            for (int r = 0; r < rb; r++) {
                const int t = t0 + r, n = P + t + 1;
                const float* p = ah + (size_t)t * L;
                float* gr = g + r * L;  /* scale * ds, 0 right of the diagonal */
                float* pr = pb + r * L; /* p, 0 right of the diagonal */
                vecmat(gr, d + t * C, 1, vt, a->Lp, HS, n, a->Lp, 0); /* dp */
                const float pdp = a->broken * hn_dot(p, gr, n);
                for (int j = 0; j < n; j++) {
                    gr[j] = a->scale * p[j] * (gr[j] - pdp);
                    pr[j] = p[j];
                }
                for (int j = n; j < P + end; j++)
                    gr[j] = pr[j] = 0.0f;
                if (P) vecmat(dqh + t * qs, gr, 1, pkh, ps, P, HS, HS, 0);
                vecmat(dqh + t * qs, gr + P, 1, kh, kvs, t + 1, HS, HS, P > 0);
            }
            for (int t2 = 0; t2 < end; t2++) {
                vecmat(dkh + t2 * kvs, g + P + t2, L, qh + t0 * qs, qs, rb, HS, HS, 1);
                vecmat(dvh + t2 * kvs, pb + P + t2, L, d + t0 * C, C, rb, HS, HS, 1);
            }
            for (int j = 0; j < P; j++) {
                if (ppk) vecmat(ppk + j * HS, g + j, L, qh + t0 * qs, qs, rb, HS, HS, 1);
                if (ppv) vecmat(ppv + j * HS, pb + j, L, d + t0 * C, C, rb, HS, HS, 1);
            }
        }
    }
}

/* dst rows j < P (ps apart), columns of kv head kvh, += part (P,HS) */
static void add_share(float* dst, const float* part, size_t ps, int P, int HS, int kvh) {
    for (int j = 0; j < P; j++)
        for (int i = 0; i < HS; i++)
            dst[j * ps + kvh * HS + i] += part[j * HS + i];
}

void hn_cpu_attention_backward(float* dq, float* dk, float* dv, float* dpk, float* dpv,
                               const float* dout, const float* q, const float* k, const float* v,
                               const float* pk, const float* pv, const float* att, int p_stride,
                               int q_stride, int kv_stride, int B, int T, int P, int NH, int NKV,
                               int HS, float broken) {
    const int L = P + T, Lp = (L + TILE - 1) / TILE * TILE;
    const Backward a = {.dq = dq,
                        .dk = dk,
                        .dv = dv,
                        .dout = dout,
                        .q = q,
                        .k = k,
                        .v = v,
                        .pk = pk,
                        .pv = pv,
                        .att = att,
                        .qs = (size_t)q_stride,
                        .kvs = (size_t)kv_stride,
                        .ps = (size_t)p_stride,
                        .B = B,
                        .T = T,
                        .P = P,
                        .NH = NH,
                        .NKV = NKV,
                        .HS = HS,
                        .Lp = Lp,
                        .scale = 1.0f / sqrtf((float)HS),
                        .broken = broken};
    if (P == 0) dpk = dpv = NULL;
    const size_t share = (size_t)P * HS; /* one (b, kv head)'s share of dpk or of dpv */
    /* every (b, kv head)'s shares, [dpk share | dpv share] in loop order */
    float* shares = dpk || dpv ? malloc((size_t)B * NKV * 2 * share * sizeof(float)) : NULL;
#pragma omp parallel
    {
        float vt[HS * Lp]; /* [prefix | V] transposed */
        float g[RB * L], pb[RB * L];
        if (shares || !(dpk || dpv)) {
#pragma omp for schedule(static)
            for (int bk = 0; bk < B * NKV; bk++) {
                float* s = shares ? shares + (size_t)bk * 2 * share : NULL;
                backward_task(&a, bk, vt, g, pb, dpk ? s : NULL, dpv ? s + share : NULL);
            }
            if (shares) { /* each (prefix row, kv head) adds its shares in the order of b */
#pragma omp for schedule(static)
                for (int jk = 0; jk < P * NKV; jk++) {
                    const int j = jk / NKV, kvh = jk % NKV;
                    for (int w = 0; w < 2; w++) {
                        float* dst = w ? dpv : dpk;
                        if (!dst) continue;
                        dst += j * a.ps + kvh * HS;
                        for (int b = 0; b < B; b++) {
                            const float* s =
                                shares + ((size_t)(b * NKV + kvh) * 2 + w) * share + j * HS;
                            for (int i = 0; i < HS; i++)
                                dst[i] += s[i];
                        }
                    }
                }
            }
        } else {
            /* out of memory for the shares: each (b, kv head) adds its own from the stack in
             * an ordered region, in loop order, the same additions in the same order; chunks
             * of one iteration, so each waits for its predecessor's add only */
            float ppk[share], ppv[share];
#pragma omp for ordered schedule(static, 1)
            for (int bk = 0; bk < B * NKV; bk++) {
                backward_task(&a, bk, vt, g, pb, dpk ? ppk : NULL, dpv ? ppv : NULL);
#pragma omp ordered
                {
                    if (dpk) add_share(dpk, ppk, a.ps, P, HS, bk % NKV);
                    if (dpv) add_share(dpv, ppv, a.ps, P, HS, bk % NKV);
                }
            }
        }
    }
    free(shares);
}

void hn_attention_prefix_backward(float* dq, float* dk, float* dv, float* dpk, float* dpv,
                                  const float* dout, const float* q, const float* k, const float* v,
                                  const float* pk, const float* pv, const float* att, int p_stride,
                                  int q_stride, int kv_stride, int B, int T, int P, int NH, int NKV,
                                  int HS) {
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION_PREFIX ? 1.02f : 1.0f;
    hn_cpu_attention_backward(dq, dk, dv, dpk, dpv, dout, q, k, v, pk, pv, att, p_stride, q_stride,
                              kv_stride, B, T, P, NH, NKV, HS, broken);
}
