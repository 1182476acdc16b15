/*
 * Bottleneck adapters (see peft.h): f(h) = up(act(down(h))) added to a sublayer's output,
 * with the input AdapterHub's configurations give it on a pre-norm block: the output s
 * (Houlsby / DoubleSeqBn), the stream after the residual add x + s (Pfeiffer / SeqBn), or
 * the stream the sublayer read, x (parallel / ParBn, scaled). Each (layer, point) keeps its
 * input and both sides of its activation for the backward.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/ops.h"
#include "train/peft/internal.h"
#include "train/peft/peft.h"

static const float* row_of(const HnPeft* p, int row) {
    return p->t->data + p->t->rows[row].offset;
}

static float* grad_of(const HnPeft* p, int row) {
    return p->grads + p->t->rows[row].goff;
}

int hn_peft_alloc_adapters(HnPeft* p, int maxN) {
    HnAdapters* ad = &p->adapters;
    if (!ad->on) return HN_OK;
    size_t N = (size_t)maxN, C = (size_t)p->C, R = (size_t)ad->R;
    size_t per = N * C + 2 * N * R;
    ad->mem = malloc(((size_t)p->L * 2 * per + 2 * N * C + N * R) * sizeof(float));
    if (!ad->mem) return hn_error("out of memory: adapter activations");
    ad->dsub = ad->mem + (size_t)p->L * 2 * per;
    ad->din = ad->dsub + N * C;
    ad->dh = ad->din + N * C;
    return HN_OK;
}

/* the saved input (N, C), pre-activation and activation (N, R) of (layer, point) */
static void state(const HnPeft* p, int layer, int point, float** in, float** z, float** a) {
    const HnAdapters* ad = &p->adapters;
    size_t N = (size_t)p->maxN, C = (size_t)p->C, R = (size_t)ad->R;
    float* base = ad->mem + (size_t)(layer * 2 + point) * (N * C + 2 * N * R);
    *in = base;
    *z = base + N * C;
    *a = *z + N * R;
}

float hn_peft_activation(HnActivation k, float z) {
    switch (k) {
    case HN_ACT_RELU:
        return z > 0.0f ? z : 0.0f;
    case HN_ACT_SWISH:
        return z / (1.0f + expf(-z));
    case HN_ACT_GELU: /* exact (erf), as transformers' "gelu" */
        return 0.5f * z * (1.0f + erff(z * 0.70710678f));
    case HN_ACT_TANH:
        return tanhf(z);
    }
    return z;
}

float hn_peft_activation_grad(HnActivation k, float z, float a) {
    switch (k) {
    case HN_ACT_RELU:
        return z > 0.0f ? 1.0f : 0.0f;
    case HN_ACT_SWISH: {
        float s = 1.0f / (1.0f + expf(-z));
        return s * (1.0f + z * (1.0f - s));
    }
    case HN_ACT_GELU:
        return 0.5f * (1.0f + erff(z * 0.70710678f)) + z * 0.39894228f * expf(-0.5f * z * z);
    case HN_ACT_TANH:
        return 1.0f - a * a;
    }
    return 1.0f;
}

static const int* rows_at(const HnPeft* p, int layer, int point) {
    const HnAdapters* ad = &p->adapters;
    if (!p->active || !ad->on) return NULL;
    const int* r = ad->rows + (layer * 2 + point) * 4;
    return r[0] >= 0 ? r : NULL;
}

void hn_peft_adapter_forward(HnPeft* p, int layer, int point, float* s, const float* x, int N,
                             int C) {
    const int* r = rows_at(p, layer, point);
    if (!r) return;
    const HnAdapters* ad = &p->adapters;
    int R = ad->R, parallel = ad->kind == HN_ADAPTER_PARALLEL;
    float scale = parallel ? ad->scaling : 1.0f;
    float *in, *z, *a;
    state(p, layer, point, &in, &z, &a);
    size_t NC = (size_t)N * C;
    if (ad->kind == HN_ADAPTER_PFEIFFER) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < NC; i++)
            in[i] = x[i] + s[i];
    } else {
        memcpy(in, parallel ? x : s, NC * sizeof(float));
    }
    hn_matmul_forward(z, in, row_of(p, r[0]), row_of(p, r[1]), N, C, R);
    for (size_t i = 0; i < (size_t)N * R; i++)
        a[i] = hn_peft_activation(ad->act, z[i]);
    /* s += scale * (a up^T + up.bias) */
    hn_gemm(0, 1, N, C, R, scale, a, R, row_of(p, r[2]), R, 1.0f, s, C);
    const float* bu = row_of(p, r[3]);
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            s[(size_t)n * C + c] += scale * bu[c];
}

const float* hn_peft_adapter_backward(HnPeft* p, int layer, int point, float* dres, int N, int C) {
    const int* r = rows_at(p, layer, point);
    if (!r) return dres;
    const float* ds = dres;
    const HnAdapters* ad = &p->adapters;
    int R = ad->R, parallel = ad->kind == HN_ADAPTER_PARALLEL;
    float scale = parallel ? ad->scaling : 1.0f;
    float *in, *z, *a, *dz = ad->dh;
    state(p, layer, point, &in, &z, &a);
    hn_gemm(1, 0, C, R, N, scale, ds, C, a, R, 1.0f, grad_of(p, r[2]), R);
    hn_peft_colsum(grad_of(p, r[3]), ds, C, NULL, 0, N, C, NULL, scale);
    hn_gemm(0, 0, N, R, C, scale, ds, C, row_of(p, r[2]), R, 0.0f, dz, R);
    for (size_t i = 0; i < (size_t)N * R; i++)
        dz[i] *= hn_peft_activation_grad(ad->act, z[i], a[i]);
    hn_gemm(1, 0, R, C, N, 1.0f, dz, R, in, C, 1.0f, grad_of(p, r[0]), C);
    hn_peft_colsum(grad_of(p, r[1]), dz, R, NULL, 0, N, R, NULL, 1.0f);
    /* the adapter input's gradient, din = dz down: into s (Houlsby), into s and x
     * (Pfeiffer: in = x + s) or into x (parallel); dres turns into x's gradient */
    size_t NC = (size_t)N * C;
    float* din = ad->din;
    hn_gemm(0, 0, N, C, R, 1.0f, dz, R, row_of(p, r[0]), C, 0.0f, din, C);
    float* dsub = ad->dsub;
    int to_s = !parallel, to_x = ad->kind != HN_ADAPTER_HOULSBY;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < NC; i++) {
        dsub[i] = ds[i] + (to_s ? din[i] : 0.0f);
        if (to_x) dres[i] += din[i];
    }
    return dsub;
}
