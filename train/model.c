/*
 * GPT-2 on the CPU backend: parameter table, initialisation, forward and backward.
 * The block is pre-LN: x += attn_o(attention(qkv(ln1(x)))); x += down(gelu(up(ln2(x)))).
 * Each op is one call into kernels/ops.h; this file only wires buffers together.
 */
#include "train/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"

int hn_model_padded_vocab(int V) {
    return (V + 127) / 128 * 128;
}

static int add_row(HnParamTable* t, const char* name, int d0, int d1) {
    int shape[2] = {d0, d1};
    return hn_params_add(t, name, d1 > 0 ? 2 : 1, shape);
}

static int build_table(HnParamTable* t, const HnModelConfig* c) {
    int C = c->C;
    char name[HN_NAME_MAX];
    if (add_row(t, "tok_embed.weight", c->Vp, C) < 0) return HN_ERR;
    if (add_row(t, "pos_embed.weight", c->maxT, C) < 0) return HN_ERR;
    static const struct {
        const char* suffix;
        int rows, cols; /* in units of C; cols 0 = a vector */
    } layer_rows[] = {
        {"attn_norm.weight", 1, 0}, {"attn_norm.bias", 1, 0},  {"attn.qkv.weight", 3, 1},
        {"attn.qkv.bias", 3, 0},    {"attn.o.weight", 1, 1},   {"attn.o.bias", 1, 0},
        {"mlp_norm.weight", 1, 0},  {"mlp_norm.bias", 1, 0},   {"mlp.up.weight", 4, 1},
        {"mlp.up.bias", 4, 0},      {"mlp.down.weight", 1, 4}, {"mlp.down.bias", 1, 0},
    };
    for (int l = 0; l < c->L; l++)
        for (size_t k = 0; k < sizeof layer_rows / sizeof layer_rows[0]; k++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, layer_rows[k].suffix);
            if (add_row(t, name, layer_rows[k].rows * C, layer_rows[k].cols * C) < 0) return HN_ERR;
        }
    if (add_row(t, "final_norm.weight", C, 0) < 0) return HN_ERR;
    if (add_row(t, "final_norm.bias", C, 0) < 0) return HN_ERR;
    return HN_OK;
}

int hn_model_table(HnParamTable* t, const HnModelConfig* cfg) {
    return build_table(t, cfg);
}

/* point a HnTensors at a buffer laid out like the table (the rows were added in order) */
static void bind_tensors(HnTensors* w, const HnParamTable* t, float* base, int L) {
    const HnParamRow* r = t->rows;
    w->wte = base + r[0].offset;
    w->wpe = base + r[1].offset;
    for (int l = 0; l < L; l++) {
        const HnParamRow* lr = r + 2 + 12 * l;
        float** p = (float**)&w->layers[l];
        for (int k = 0; k < 12; k++)
            p[k] = base + lr[k].offset;
    }
    w->lnfw = base + r[2 + 12 * L].offset;
    w->lnfb = base + r[3 + 12 * L].offset;
}

int hn_model_create(HnModel* m, const HnModelConfig* cfg, int maxB, int maxT) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    const HnModelConfig* c = &m->cfg;
    if (c->C % c->NH != 0)
        return hn_error("channels (%d) must be divisible by heads (%d)", c->C, c->NH);
    if (maxT > c->maxT)
        return hn_error("sequence length %d is longer than the model's context %d", maxT, c->maxT);
    if (build_table(&m->params, c) != HN_OK || hn_params_alloc(&m->params) != HN_OK) return HN_ERR;
    if (!(m->grads = hn_params_mirror(&m->params))) return HN_ERR;
    m->w.layers = calloc((size_t)c->L, sizeof(HnLayerTensors));
    m->g.layers = calloc((size_t)c->L, sizeof(HnLayerTensors));
    m->acts = calloc((size_t)c->L, sizeof(HnLayerActs));
    if (!m->w.layers || !m->g.layers || !m->acts) return hn_error("out of memory");
    bind_tensors(&m->w, &m->params, m->params.data, c->L);
    bind_tensors(&m->g, &m->params, m->grads, c->L);

    m->maxB = maxB;
    m->maxT = maxT;
    size_t N = (size_t)maxB * maxT, C = c->C, TT = (size_t)maxB * c->NH * maxT * maxT;
    size_t per_layer = N * C * 6 + N * 4 + N * 3 * C + TT + N * 4 * C * 2;
    size_t total = N * C + per_layer * c->L + N * C + 2 * N + N * (size_t)c->Vp + N /* forward */
                   + N * C * 3 + N * 3 * C + N * 4 * C;                             /* backward */
    m->act_mem = malloc(total * sizeof(float));
    if (!m->act_mem) return hn_error("out of memory: %zu MB of activations", total * 4 >> 20);
    float* p = m->act_mem;
#define TAKE(ptr, n) (ptr = p, p += (n))
    TAKE(m->encoded, N * C);
    for (int l = 0; l < c->L; l++) {
        HnLayerActs* a = &m->acts[l];
        TAKE(a->ln1, N * C);
        TAKE(a->ln1_mean, N);
        TAKE(a->ln1_rstd, N);
        TAKE(a->qkv, N * 3 * C);
        TAKE(a->atty, N * C);
        TAKE(a->att, TT);
        TAKE(a->res2, N * C);
        TAKE(a->ln2, N * C);
        TAKE(a->ln2_mean, N);
        TAKE(a->ln2_rstd, N);
        TAKE(a->fch, N * 4 * C);
        TAKE(a->fch_gelu, N * 4 * C);
        TAKE(a->res3, N * C);
    }
    TAKE(m->lnf, N * C);
    TAKE(m->lnf_mean, N);
    TAKE(m->lnf_rstd, N);
    TAKE(m->logits, N * (size_t)c->Vp);
    TAKE(m->losses, N);
    TAKE(m->dres, N * C);
    TAKE(m->dln, N * C);
    TAKE(m->datty, N * C);
    TAKE(m->dqkv, N * 3 * C);
    TAKE(m->dbig, N * 4 * C);
#undef TAKE
    return HN_OK;
}

void hn_model_free(HnModel* m) {
    hn_params_free(&m->params);
    free(m->grads);
    free(m->w.layers);
    free(m->g.layers);
    free(m->acts);
    free(m->act_mem);
    memset(m, 0, sizeof *m);
}

void hn_model_init(HnModel* m, float std, uint64_t seed) {
    const HnParamTable* t = &m->params;
    float resid_std = std / sqrtf(2.0f * (float)m->cfg.L);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        float* x = t->data + r->offset;
        const char* name = r->name;
        size_t len = strlen(name);
        int is_bias = len > 5 && strcmp(name + len - 5, ".bias") == 0;
        int is_norm = strstr(name, "norm.") != NULL;
        if (is_norm && !is_bias) {
            for (size_t j = 0; j < r->numel; j++)
                x[j] = 1.0f;
        } else if (is_bias) {
            memset(x, 0, r->numel * sizeof(float));
        } else {
            /* one stream per row, so a row's values do not depend on the rows before it */
            HnRng rng;
            hn_rng_seed(&rng, seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)));
            int resid = strstr(name, "attn.o.") || strstr(name, "mlp.down.");
            float s = resid ? resid_std : std;
            size_t n = r->numel;
            if (i == 0) n = (size_t)m->cfg.V * m->cfg.C; /* padded vocab rows stay zero */
            for (size_t j = 0; j < n; j++)
                x[j] = s * hn_rng_normal(&rng);
        }
    }
}

void hn_model_zero_grad(HnModel* m) {
    memset(m->grads, 0, m->params.numel * sizeof(float));
}

double hn_model_forward(HnModel* m, const int* tokens, const int* targets, int B, int T,
                        float grad_scale) {
    const HnModelConfig* c = &m->cfg;
    const HnTensors* w = &m->w;
    int C = c->C, NH = c->NH, N = B * T;
    m->B = B;
    m->T = T;
    m->tokens = tokens;

    hn_encoder_forward(m->encoded, tokens, w->wte, w->wpe, B, T, C);
    const float* residual = m->encoded;
    for (int l = 0; l < c->L; l++) {
        const HnLayerTensors* lw = &w->layers[l];
        HnLayerActs* a = &m->acts[l];
        hn_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, residual, lw->ln1w, lw->ln1b, N, C,
                             c->eps);
        hn_matmul_forward(a->qkv, a->ln1, lw->qkvw, lw->qkvb, N, C, 3 * C);
        hn_attention_forward(a->atty, a->att, a->qkv, B, T, C, NH);
        hn_matmul_forward(a->res2, a->atty, lw->attow, lw->attob, N, C, C);
        hn_residual_forward(a->res2, a->res2, residual, (size_t)N * C);
        hn_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, lw->ln2w, lw->ln2b, N, C,
                             c->eps);
        hn_matmul_forward(a->fch, a->ln2, lw->fcw, lw->fcb, N, C, 4 * C);
        hn_gelu_forward(a->fch_gelu, a->fch, (size_t)N * 4 * C);
        hn_matmul_forward(a->res3, a->fch_gelu, lw->fcprojw, lw->fcprojb, N, 4 * C, C);
        hn_residual_forward(a->res3, a->res3, a->res2, (size_t)N * C);
        residual = a->res3;
    }
    hn_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, residual, w->lnfw, w->lnfb, N, C,
                         c->eps);
    hn_matmul_forward(m->logits, m->lnf, w->wte, NULL, N, C, c->Vp);
    if (!targets) return 0.0;
    return hn_crossentropy_forward(m->logits, m->losses, targets, N, c->V, c->Vp, grad_scale);
}

void hn_model_backward(HnModel* m) {
    const HnModelConfig* c = &m->cfg;
    const HnTensors* w = &m->w;
    const HnTensors* g = &m->g;
    int B = m->B, T = m->T, C = c->C, NH = c->NH, N = B * T;
    const float* last = c->L ? m->acts[c->L - 1].res3 : m->encoded;

    /* classifier (tied with the token embedding), then the final norm into the stream */
    hn_matmul_backward(m->dln, g->wte, NULL, m->logits, m->lnf, w->wte, N, C, c->Vp);
    memset(m->dres, 0, (size_t)N * C * sizeof(float));
    hn_layernorm_backward(m->dres, g->lnfw, g->lnfb, m->dln, last, w->lnfw, m->lnf_mean,
                          m->lnf_rstd, N, C);

    for (int l = c->L - 1; l >= 0; l--) {
        const HnLayerTensors* lw = &w->layers[l];
        const HnLayerTensors* lg = &g->layers[l];
        HnLayerActs* a = &m->acts[l];
        const float* residual = l ? m->acts[l - 1].res3 : m->encoded;
        /* m->dres holds d(res3) here; the norms' backwards add their share into it */
        hn_matmul_backward(m->dbig, lg->fcprojw, lg->fcprojb, m->dres, a->fch_gelu, lw->fcprojw, N,
                           4 * C, C);
        hn_gelu_backward(m->dbig, a->fch, m->dbig, (size_t)N * 4 * C);
        hn_matmul_backward(m->dln, lg->fcw, lg->fcb, m->dbig, a->ln2, lw->fcw, N, C, 4 * C);
        hn_layernorm_backward(m->dres, lg->ln2w, lg->ln2b, m->dln, a->res2, lw->ln2w, a->ln2_mean,
                              a->ln2_rstd, N, C);
        hn_matmul_backward(m->datty, lg->attow, lg->attob, m->dres, a->atty, lw->attow, N, C, C);
        hn_attention_backward(m->dqkv, m->datty, a->qkv, a->att, B, T, C, NH);
        hn_matmul_backward(m->dln, lg->qkvw, lg->qkvb, m->dqkv, a->ln1, lw->qkvw, N, C, 3 * C);
        hn_layernorm_backward(m->dres, lg->ln1w, lg->ln1b, m->dln, residual, lw->ln1w, a->ln1_mean,
                              a->ln1_rstd, N, C);
    }
    hn_encoder_backward(g->wte, g->wpe, m->dres, m->tokens, B, T, C);
}
