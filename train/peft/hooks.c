/*
 * The two hooks the model calls at each linear (see peft.h), the forward state they keep,
 * and folding add-ons into the base (merge / unmerge).
 *
 * Per add-on, with x (N, in), dy (N, out) the gradient arriving at its columns:
 *   LoRA   forward  xa = x_d A^T, y += s xa B^T          (x_d = dropout(x) while training)
 *          backward dB += s dy^T xa, dxa = s dy B, dA += dxa^T x_d, dx += mask(dxa A)
 *   DoRA   forward  u = x W^T + s xa B^T, y = g u + b, g = m / ||W + s B A|| (norm detached)
 *          backward du = g dy, dm += sum_n dy u / norm, then the base and LoRA with du
 *   IA3    output   z = x W^T + b, y = l z;   dl += sum_n dy z, dz = l dy
 *          input    z = l x, y = z W^T + b;   dz = dy W, dl += sum_n dz x, dx = l dz
 * Column sums run over rows in order inside each column, so results do not depend on the
 * thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "train/peft/internal.h"
#include "train/peft/peft.h"

static const float* row_of(const HnPeft* p, int row) {
    return p->t->data + p->t->rows[row].offset;
}

static float* grad_of(const HnPeft* p, int row) {
    return p->grads + p->t->rows[row].goff;
}

int hn_peft_alloc(HnPeft* p, int maxN, const HnParamTable* t, float* grads) {
    p->t = t;
    p->grads = grads;
    p->maxN = maxN;
    size_t N = (size_t)maxN, total = 0, widest = 0, rank = 0, wmat = 0, bytes = 0;
    for (int pass = 0; pass < 2; pass++) {
        total = 0;
        bytes = 0;
        for (int j = 0; j < p->n; j++) {
            HnAddon* a = &p->a[j];
            size_t in = (size_t)a->in, out = (size_t)a->out;
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        if (pass) (ptr) = p->mem + total;                                                          \
        total += ((n) + 15) & ~(size_t)15;                                                         \
    } while (0)
            if (a->kind == HN_ADD_LORA || a->kind == HN_ADD_DORA) {
                TAKE(a->xa, N * a->rank);
                if (a->dropout > 0) {
                    TAKE(a->xd, N * in);
                    if (pass) a->keep = p->keep_mem + bytes;
                    bytes += N * in;
                }
                if (rank < (size_t)a->rank) rank = (size_t)a->rank;
            }
            if (a->kind == HN_ADD_DORA) {
                TAKE(a->z, N * out);
                TAKE(a->norm, out);
                if (wmat < out * in) wmat = out * in;
            }
            if (a->kind == HN_ADD_IA3_OUT) TAKE(a->z, N * out);
            if (a->kind == HN_ADD_IA3_IN) TAKE(a->z, N * in);
#undef TAKE
            size_t w = (size_t)a->base_out > in ? (size_t)a->base_out : in;
            if (widest < w) widest = w;
        }
        if (!pass) {
            p->mem = malloc((total ? total : 1) * sizeof(float));
            p->keep_mem = malloc(bytes ? bytes : 1);
            if (!p->mem || !p->keep_mem)
                return hn_error("out of memory: %zu MB of add-on activations", total * 4 >> 20);
        }
    }
    /* scratch: a transformed gradient (N, widest); the LoRA middle (N, rank) or, for DoRA,
     * the updated weight (out, in); a third (N, widest) for DoRA with dropout */
    size_t s1 = N * widest, s2 = N * rank > wmat ? N * rank : wmat;
    if (s2 < N * widest) s2 = N * widest; /* dropout's masked input gradient */
    p->scratch_floats = s1;
    if (!(p->scratch = malloc((2 * s1 + s2 + 1) * sizeof(float))))
        return hn_error("out of memory: add-on scratch");
    p->scratch2 = p->scratch + s1;
    p->scratch3 = p->scratch2 + s2;
    if (hn_peft_alloc_virtual(p) != HN_OK || hn_peft_alloc_adapters(p, maxN) != HN_OK)
        return HN_ERR;
    return HN_OK;
}

/* the add-ons attached at (layer, lin): up to HN_PEFT_PER_LINEAR numbers, -1 ended */
static const int* attached(const HnPeft* p, int layer, HnLinear lin) {
    if (!p || !p->active || p->merged || !p->n) return NULL;
    const int* slot = p->index + ((size_t)layer * HN_NLIN + lin) * HN_PEFT_PER_LINEAR;
    return slot[0] >= 0 ? slot : NULL;
}

/* dropout with keep probability 1 - rate: x_d = x * keep / (1 - rate); one RNG stream per
 * row, seeded from the micro-batch's seed and the add-on, so any thread count gives the
 * same mask */
static void dropout(const HnPeft* p, const HnAddon* a, int j, const float* x, int N) {
    float inv = 1.0f / (1.0f - a->dropout);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        HnRng rng;
        hn_rng_seed(&rng, p->dropout_seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(j + 1)) ^
                              ((uint64_t)n << 32));
        for (int i = 0; i < a->in; i++) {
            size_t k = (size_t)n * a->in + i;
            a->keep[k] = hn_rng_uniform(&rng) >= a->dropout;
            a->xd[k] = a->keep[k] ? x[k] * inv : 0.0f;
        }
    }
}

/* the LoRA branch's input: x, or x after dropout while training (drawn here into a->xd) */
static const float* lora_input(const HnPeft* p, const HnAddon* a, int j, const float* x, int N) {
    if (!(a->dropout > 0 && p->training)) return x;
    dropout(p, a, j, x, N);
    return a->xd;
}

/* y[:, off:off+out] += s * (src A^T) B^T, keeping src A^T in a->xa */
static void lora_apply(const HnPeft* p, const HnAddon* a, float* y, int ldy, const float* src,
                       int N) {
    hn_gemm(0, 1, N, a->rank, a->in, 1.0f, src, a->in, row_of(p, a->row_a), a->in, 0.0f, a->xa,
            a->rank);
    hn_gemm(0, 1, N, a->out, a->rank, a->scale, a->xa, a->rank, row_of(p, a->row_b), a->rank, 1.0f,
            y + a->off, ldy);
}

static void lora_forward(const HnPeft* p, const HnAddon* a, int j, float* y, int ldy,
                         const float* x, int N) {
    lora_apply(p, a, y, ldy, lora_input(p, a, j, x, N), N);
}

/* LoRA's gradients from dy (columns off..off+out of rows ldy apart); dx += its input part */
static void lora_backward(const HnPeft* p, const HnAddon* a, float* dx, const float* dy, int ldy,
                          const float* x, int N) {
    const float* src = a->dropout > 0 && p->training ? a->xd : x;
    float* dxa = p->scratch2;
    hn_gemm(1, 0, a->out, a->rank, N, a->scale, dy + a->off, ldy, a->xa, a->rank, 1.0f,
            grad_of(p, a->row_b), a->rank);
    hn_gemm(0, 0, N, a->rank, a->out, a->scale, dy + a->off, ldy, row_of(p, a->row_b), a->rank,
            0.0f, dxa, a->rank);
    hn_gemm(1, 0, a->rank, a->in, N, 1.0f, dxa, a->rank, src, a->in, 1.0f, grad_of(p, a->row_a),
            a->in);
    if (!dx) return;
    if (a->dropout > 0 && p->training) {
        /* through the mask: dx += keep / (1 - rate) * (dxa A) */
        float* t = p->scratch;
        hn_gemm(0, 0, N, a->in, a->rank, 1.0f, dxa, a->rank, row_of(p, a->row_a), a->in, 0.0f, t,
                a->in);
        float inv = 1.0f / (1.0f - a->dropout);
        size_t n = (size_t)N * a->in;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < n; k++)
            if (a->keep[k]) dx[k] += t[k] * inv;
        return;
    }
    hn_gemm(0, 0, N, a->in, a->rank, 1.0f, dxa, a->rank, row_of(p, a->row_a), a->in, 1.0f, dx,
            a->in);
}

void hn_peft_colsum(float* dst, const float* a, int lda, const float* b, int ldb, int N, int w,
                    const float* div, float scale) {
    enum { CHUNK = 64 };
    int nchunks = (w + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nchunks; k++) {
        int j0 = k * CHUNK, cw = j0 + CHUNK < w ? CHUNK : w - j0;
        double acc[CHUNK] = {0};
        for (int n = 0; n < N; n++) {
            const float* ar = a + (size_t)n * lda + j0;
            const float* br = b ? b + (size_t)n * ldb + j0 : NULL;
            for (int j = 0; j < cw; j++)
                acc[j] += b ? (double)ar[j] * br[j] : (double)ar[j];
        }
        for (int j = 0; j < cw; j++)
            dst[j0 + j] += scale * (div ? (float)(acc[j] / div[j0 + j]) : (float)acc[j]);
    }
}

void hn_peft_linear_forward(HnPeft* p, int layer, HnLinear lin, float* out, const float* inp,
                            const float* w, const float* b, int N, int C, int OC) {
    const int* at = attached(p, layer, lin);
    if (!at) {
        hn_matmul_forward(out, inp, w, b, N, C, OC);
        return;
    }
    const HnAddon* a0 = &p->a[at[0]];
    size_t NO = (size_t)N * OC;
    switch (a0->kind) {
    case HN_ADD_LORA:
        hn_matmul_forward(out, inp, w, b, N, C, OC);
        for (int k = 0; k < HN_PEFT_PER_LINEAR && at[k] >= 0; k++)
            lora_forward(p, &p->a[at[k]], at[k], out, OC, inp, N);
        return;
    case HN_ADD_DORA: {
        if (!p->hold_norms)
            hn_peft_dora_norms(a0, w, row_of(p, a0->row_a), row_of(p, a0->row_b), a0->norm,
                               p->scratch2);
        const float* m = row_of(p, a0->row_m);
        const float* norm = a0->norm;
        if (a0->dropout > 0 && p->training) {
            /* PEFT's form, exact with dropout: y = x W^T + b + (g - 1) v + g s (x_d A^T) B^T,
             * v = x_d W^T; u = v + s (x_d A^T) B^T is kept */
            hn_matmul_forward(out, inp, w, b, N, C, OC);
            const float* xd = lora_input(p, a0, at[0], inp, N);
            float* v = p->scratch;
            hn_matmul_forward(v, xd, w, NULL, N, C, OC);
            memcpy(a0->z, v, NO * sizeof(float));
            lora_apply(p, a0, a0->z, OC, xd, N);
#pragma omp parallel for schedule(static)
            for (size_t k = 0; k < NO; k++)
                out[k] += m[k % OC] / norm[k % OC] * a0->z[k] - v[k];
            return;
        }
        /* u = x W^T + s (x A^T) B^T, kept; y = (m / ||W + s B A||) u + b */
        hn_matmul_forward(out, inp, w, NULL, N, C, OC);
        lora_forward(p, a0, at[0], out, OC, inp, N);
        memcpy(a0->z, out, NO * sizeof(float));
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++) {
                size_t k = (size_t)n * OC + o;
                out[k] = m[o] / norm[o] * out[k] + (b ? b[o] : 0.0f);
            }
        return;
    }
    case HN_ADD_IA3_OUT: {
        hn_matmul_forward(out, inp, w, b, N, C, OC);
        memcpy(a0->z, out, NO * sizeof(float));
        const float* l = row_of(p, a0->row_l);
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < OC; o++)
                out[(size_t)n * OC + o] *= l[o];
        return;
    }
    case HN_ADD_IA3_IN: {
        const float* l = row_of(p, a0->row_l);
        float* z = a0->z;
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < C; i++)
                z[(size_t)n * C + i] = inp[(size_t)n * C + i] * l[i];
        hn_matmul_forward(out, z, w, b, N, C, OC);
        return;
    }
    }
}

void hn_peft_linear_backward(HnPeft* p, int layer, HnLinear lin, float* dinp, float* dw, float* db,
                             const float* dout, const float* inp, const float* w, int N, int C,
                             int OC) {
    const int* at = attached(p, layer, lin);
    if (!at) {
        hn_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
        return;
    }
    const HnAddon* a0 = &p->a[at[0]];
    size_t NO = (size_t)N * OC;
    switch (a0->kind) {
    case HN_ADD_LORA:
        hn_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
        for (int k = 0; k < HN_PEFT_PER_LINEAR && at[k] >= 0; k++)
            lora_backward(p, &p->a[at[k]], dinp, dout, OC, inp, N);
        return;
    case HN_ADD_DORA: {
        const float* m = row_of(p, a0->row_m);
        const float* norm = a0->norm;
        float* du = p->scratch;
        /* dm += sum_n dy u / norm (the norm is a constant to the gradient, as in PEFT) */
        hn_peft_colsum(grad_of(p, a0->row_m), dout, OC, a0->z, OC, N, OC, norm, 1.0f);
        if (a0->dropout > 0 && p->training) {
            /* the base sees x; x_d gets (g - 1) dy W from v and du W + s (du B) A from u */
            int in = a0->in, r = a0->rank;
            float *e = p->scratch, *dxa = p->scratch2, *dxd = p->scratch3;
            hn_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
#pragma omp parallel for schedule(static)
            for (size_t k = 0; k < NO; k++)
                dxd[k] = dout[k] * (m[k % OC] / norm[k % OC]); /* du */
            hn_gemm(1, 0, OC, r, N, a0->scale, dxd, OC, a0->xa, r, 1.0f, grad_of(p, a0->row_b), r);
            hn_gemm(0, 0, N, r, OC, a0->scale, dxd, OC, row_of(p, a0->row_b), r, 0.0f, dxa, r);
            hn_gemm(1, 0, r, in, N, 1.0f, dxa, r, a0->xd, in, 1.0f, grad_of(p, a0->row_a), in);
#pragma omp parallel for schedule(static)
            for (size_t k = 0; k < NO; k++)
                e[k] = dxd[k] - dout[k]; /* (g - 1) dy */
            hn_gemm(0, 0, N, in, OC, 1.0f, e, OC, w, in, 0.0f, dxd, in);
            hn_gemm(0, 0, N, in, r, 1.0f, dxa, r, row_of(p, a0->row_a), in, 1.0f, dxd, in);
            float inv = 1.0f / (1.0f - a0->dropout);
            size_t NI = (size_t)N * in;
#pragma omp parallel for schedule(static)
            for (size_t k = 0; k < NI; k++)
                if (a0->keep[k]) dinp[k] += dxd[k] * inv;
            return;
        }
        if (db) hn_matmul_backward(NULL, NULL, db, dout, inp, w, N, C, OC);
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < NO; k++)
            du[k] = dout[k] * (m[k % OC] / norm[k % OC]);
        hn_matmul_backward(dinp, dw, NULL, du, inp, w, N, C, OC);
        lora_backward(p, a0, dinp, du, OC, inp, N);
        return;
    }
    case HN_ADD_IA3_OUT: {
        const float* l = row_of(p, a0->row_l);
        float* dz = p->scratch;
        hn_peft_colsum(grad_of(p, a0->row_l), dout, OC, a0->z, OC, N, OC, NULL, 1.0f);
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < NO; k++)
            dz[k] = dout[k] * l[k % OC];
        hn_matmul_backward(dinp, dw, db, dz, inp, w, N, C, OC);
        return;
    }
    case HN_ADD_IA3_IN: {
        const float* l = row_of(p, a0->row_l);
        /* the base sees z = l x: its input gradient dz lands in dinp, then becomes l dz */
        hn_matmul_backward(dinp, dw, db, dout, a0->z, w, N, C, OC);
        hn_peft_colsum(grad_of(p, a0->row_l), dinp, C, inp, C, N, C, NULL, 1.0f);
        size_t NC = (size_t)N * C;
#pragma omp parallel for schedule(static)
        for (size_t k = 0; k < NC; k++)
            dinp[k] *= l[k % C];
        return;
    }
    }
}

/* ---- folding ---- */

void hn_peft_fold(const HnAddon* a, float* w, float* b, const float* A, const float* B,
                  const float* m, const float* l) {
    size_t in = (size_t)a->in;
    switch (a->kind) {
    case HN_ADD_LORA:
        hn_gemm(0, 0, a->out, a->in, a->rank, a->scale, B, a->rank, A, a->in, 1.0f,
                w + (size_t)a->off * in, a->in);
        return;
    case HN_ADD_DORA: {
        /* W' = (m / ||W + s B A||) (W + s B A), row by row */
        float* norm = malloc((size_t)a->out * sizeof(float));
        if (!norm) return;
        float* rows = w + (size_t)a->off * in;
        hn_gemm(0, 0, a->out, a->in, a->rank, a->scale, B, a->rank, A, a->in, 1.0f, rows, a->in);
        for (int j = 0; j < a->out; j++) {
            double ss = 0.0;
            for (size_t i = 0; i < in; i++)
                ss += (double)rows[j * in + i] * rows[j * in + i];
            norm[j] = (float)sqrt(ss);
            float g = m[j] / norm[j];
            for (size_t i = 0; i < in; i++)
                rows[j * in + i] *= g;
        }
        free(norm);
        return;
    }
    case HN_ADD_IA3_OUT:
        for (int j = 0; j < a->out; j++) {
            for (size_t i = 0; i < in; i++)
                w[(size_t)(a->off + j) * in + i] *= l[j];
            if (b) b[a->off + j] *= l[j];
        }
        return;
    case HN_ADD_IA3_IN:
        for (int j = 0; j < a->base_out; j++)
            for (size_t i = 0; i < in; i++)
                w[(size_t)j * in + i] *= l[i];
        return;
    }
}

static int fold_all(HnPeft* p, HnParamTable* t, float sign) {
    for (int j = 0; j < p->n; j++) {
        const HnAddon* a = &p->a[j];
        int wi = hn_params_find(t, a->base_w),
            bi = a->base_b[0] ? hn_params_find(t, a->base_b) : -1;
        if (wi < 0) return hn_error("internal: no base row %s", a->base_w);
        float* w = t->data + t->rows[wi].offset;
        float* b = bi >= 0 ? t->data + t->rows[bi].offset : NULL;
        const float* A = a->row_a >= 0 ? t->data + t->rows[a->row_a].offset : NULL;
        const float* B = a->row_b >= 0 ? t->data + t->rows[a->row_b].offset : NULL;
        const float* m = a->row_m >= 0 ? t->data + t->rows[a->row_m].offset : NULL;
        const float* l = a->row_l >= 0 ? t->data + t->rows[a->row_l].offset : NULL;
        if (sign < 0) {
            if (a->kind != HN_ADD_LORA)
                return hn_error("cannot unmerge %s at layers.%d.%s: only LoRA folds are undone",
                                a->kind == HN_ADD_DORA ? "DoRA" : "IA3", a->layer, a->site);
            HnAddon neg = *a;
            neg.scale = -a->scale;
            hn_peft_fold(&neg, w, b, A, B, m, l);
        } else {
            hn_peft_fold(a, w, b, A, B, m, l);
        }
    }
    return HN_OK;
}

int hn_peft_merge(HnPeft* p, HnParamTable* t) {
    if (p->merged) return hn_error("the add-ons are merged already");
    if (fold_all(p, t, 1.0f) != HN_OK) return HN_ERR;
    p->merged = 1;
    return HN_OK;
}

int hn_peft_unmerge(HnPeft* p, HnParamTable* t) {
    if (!p->merged) return hn_error("the add-ons are not merged");
    for (int j = 0; j < p->n; j++)
        if (p->a[j].kind != HN_ADD_LORA)
            return hn_error("cannot unmerge: layers.%d.%s has %s, whose fold is not undone",
                            p->a[j].layer, p->a[j].site,
                            p->a[j].kind == HN_ADD_DORA ? "DoRA" : "IA3");
    if (fold_all(p, t, -1.0f) != HN_OK) return HN_ERR;
    p->merged = 0;
    return HN_OK;
}
