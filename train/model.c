/*
 * The GPT-2 and Llama family models on the CPU backend: parameter table, initialisation,
 * forward and backward. Each op is one call into kernels/ops.h; this file only wires
 * buffers together. See model.h for the math of each block.
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

HnModelConfig hn_model_config_of(const HnConfig* cfg) {
    HnModelConfig mc = {.arch =
                            strcmp(cfg->model.arch, "llama") == 0 ? HN_ARCH_LLAMA : HN_ARCH_GPT2,
                        .L = cfg->model.layers,
                        .C = cfg->model.channels,
                        .NH = cfg->model.heads,
                        .NKV = cfg->model.kv_heads,
                        .F = cfg->model.ffn,
                        .V = cfg->model.vocab,
                        .Vp = hn_model_padded_vocab(cfg->model.vocab),
                        .maxT = cfg->model.context,
                        .eps = cfg->model.norm_eps,
                        .rope_theta = cfg->model.rope_theta,
                        .untied = !cfg->model.tied};
    return mc;
}

static int add_row(HnParamTable* t, const char* name, int d0, int d1) {
    int shape[2] = {d0, d1};
    return hn_params_add(t, name, d1 > 0 ? 2 : 1, shape);
}

/* one layer's rows: suffix, shape (rows x cols; cols 0 = a vector) */
typedef struct {
    const char* suffix;
    int rows, cols;
} RowSpec;

static int layer_specs(const HnModelConfig* c, RowSpec* out) {
    int C = c->C, HS = c->C / c->NH, F = c->F, Q = c->NH * HS, KV = c->NKV * HS, n = 0;
    if (c->arch == HN_ARCH_GPT2) {
        RowSpec g[] = {
            {"attn_norm.weight", C, 0},  {"attn_norm.bias", C, 0},  {"attn.qkv.weight", 3 * C, C},
            {"attn.qkv.bias", 3 * C, 0}, {"attn.o.weight", C, C},   {"attn.o.bias", C, 0},
            {"mlp_norm.weight", C, 0},   {"mlp_norm.bias", C, 0},   {"mlp.up.weight", F, C},
            {"mlp.up.bias", F, 0},       {"mlp.down.weight", C, F}, {"mlp.down.bias", C, 0}};
        n = (int)(sizeof g / sizeof g[0]);
        memcpy(out, g, sizeof g);
    } else {
        RowSpec l[] = {
            {"attn_norm.weight", C, 0}, {"attn.q.weight", Q, C}, {"attn.k.weight", KV, C},
            {"attn.v.weight", KV, C},   {"attn.o.weight", C, Q}, {"mlp_norm.weight", C, 0},
            {"mlp.gate.weight", F, C},  {"mlp.up.weight", F, C}, {"mlp.down.weight", C, F}};
        n = (int)(sizeof l / sizeof l[0]);
        memcpy(out, l, sizeof l);
    }
    return n;
}

static int build_table(HnParamTable* t, const HnModelConfig* c) {
    char name[HN_NAME_MAX];
    RowSpec specs[16];
    int nspecs = layer_specs(c, specs);
    if (add_row(t, "tok_embed.weight", c->Vp, c->C) < 0) return HN_ERR;
    if (c->arch == HN_ARCH_GPT2 && add_row(t, "pos_embed.weight", c->maxT, c->C) < 0) return HN_ERR;
    for (int l = 0; l < c->L; l++)
        for (int k = 0; k < nspecs; k++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, specs[k].suffix);
            if (add_row(t, name, specs[k].rows, specs[k].cols) < 0) return HN_ERR;
        }
    if (add_row(t, "final_norm.weight", c->C, 0) < 0) return HN_ERR;
    if (c->arch == HN_ARCH_GPT2 && add_row(t, "final_norm.bias", c->C, 0) < 0) return HN_ERR;
    if (c->untied && add_row(t, "lm_head.weight", c->Vp, c->C) < 0) return HN_ERR;
    return HN_OK;
}

/* fill the defaults (NKV = NH, F = 4C) and check the shapes fit together */
static int normalize(HnModelConfig* c) {
    if (c->NKV == 0) c->NKV = c->NH;
    if (c->F == 0) c->F = 4 * c->C;
    if (c->NH <= 0 || c->C % c->NH != 0)
        return hn_error("channels (%d) must be divisible by heads (%d)", c->C, c->NH);
    if (c->NH % c->NKV != 0) return hn_error("kv heads (%d) must divide heads (%d)", c->NKV, c->NH);
    if (c->arch == HN_ARCH_GPT2 && (c->NKV != c->NH || c->untied))
        return hn_error("gpt2 models have as many kv heads as heads and a tied classifier");
    return HN_OK;
}

int hn_model_table(HnParamTable* t, const HnModelConfig* cfg) {
    HnModelConfig c = *cfg;
    if (normalize(&c) != HN_OK) return HN_ERR;
    return build_table(t, &c);
}

/* the row called name inside base, or NULL if the architecture has none */
static float* row_ptr(const HnParamTable* t, float* base, const char* name) {
    int i = hn_params_find(t, name);
    return i < 0 ? NULL : base + t->rows[i].offset;
}

/* the row called name inside a gradient-layout buffer, or NULL if frozen or absent */
static float* grad_ptr(const HnParamTable* t, float* base, const char* name) {
    int i = hn_params_find(t, name);
    return i < 0 || !t->rows[i].trainable ? NULL : base + t->rows[i].goff;
}

/* point a HnTensors at a buffer laid out like the table, or (grads) like its gradient
 * layout, where frozen rows are NULL */
static void bind_tensors(HnTensors* w, const HnParamTable* t, float* base, int L, int tied,
                         int grads) {
    float* (*at)(const HnParamTable*, float*, const char*) = grads ? grad_ptr : row_ptr;
    static const struct {
        const char* suffix;
        size_t field; /* offset in HnLayerTensors */
    } fields[] = {
        {"attn_norm.weight", offsetof(HnLayerTensors, ln1w)},
        {"attn_norm.bias", offsetof(HnLayerTensors, ln1b)},
        {"attn.qkv.weight", offsetof(HnLayerTensors, qkvw)},
        {"attn.qkv.bias", offsetof(HnLayerTensors, qkvb)},
        {"attn.q.weight", offsetof(HnLayerTensors, qw)},
        {"attn.k.weight", offsetof(HnLayerTensors, kw)},
        {"attn.v.weight", offsetof(HnLayerTensors, vw)},
        {"attn.o.weight", offsetof(HnLayerTensors, attow)},
        {"attn.o.bias", offsetof(HnLayerTensors, attob)},
        {"mlp_norm.weight", offsetof(HnLayerTensors, ln2w)},
        {"mlp_norm.bias", offsetof(HnLayerTensors, ln2b)},
        {"mlp.up.weight", offsetof(HnLayerTensors, fcw)},
        {"mlp.up.bias", offsetof(HnLayerTensors, fcb)},
        {"mlp.gate.weight", offsetof(HnLayerTensors, gatew)},
        {"mlp.down.weight", offsetof(HnLayerTensors, fcprojw)},
        {"mlp.down.bias", offsetof(HnLayerTensors, fcprojb)},
    };
    char name[HN_NAME_MAX];
    w->wte = at(t, base, "tok_embed.weight");
    w->wpe = at(t, base, "pos_embed.weight");
    w->lnfw = at(t, base, "final_norm.weight");
    w->lnfb = at(t, base, "final_norm.bias");
    w->lm_head = tied ? w->wte : at(t, base, "lm_head.weight");
    for (int l = 0; l < L; l++)
        for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) {
            snprintf(name, sizeof name, "layers.%d.%s", l, fields[k].suffix);
            *(float**)((char*)&w->layers[l] + fields[k].field) = at(t, base, name);
        }
}

size_t hn_model_layout_activations(HnActivations* act, const HnModelConfig* c, int maxB, int maxT,
                                   size_t att_floats, float* base) {
    int llama = c->arch == HN_ARCH_LLAMA;
    size_t N = (size_t)maxB * maxT, C = c->C, F = c->F, HS = C / c->NH;
    size_t Q = c->NH * HS, KV = c->NKV * HS, used = 0;
#define TAKE(ptr, n)                                                                               \
    do {                                                                                           \
        if (base) (ptr) = base + used;                                                             \
        used += (n);                                                                               \
    } while (0)
    TAKE(act->encoded, N * C);
    for (int l = 0; l < c->L; l++) {
        HnLayerActs* a = &act->layer[l];
        TAKE(a->ln1, N * C);
        TAKE(a->ln1_mean, N);
        TAKE(a->ln1_rstd, N);
        if (llama) {
            TAKE(a->q, N * Q);
            TAKE(a->k, N * KV);
            TAKE(a->v, N * KV);
        } else {
            TAKE(a->qkv, N * 3 * C);
        }
        TAKE(a->atty, N * C);
        TAKE(a->att, att_floats);
        TAKE(a->res2, N * C);
        TAKE(a->ln2, N * C);
        TAKE(a->ln2_mean, N);
        TAKE(a->ln2_rstd, N);
        TAKE(a->fch, N * F);
        if (llama) TAKE(a->up, N * F);
        TAKE(a->fch_gelu, N * F);
        TAKE(a->res3, N * C);
    }
    TAKE(act->lnf, N * C);
    TAKE(act->lnf_mean, N);
    TAKE(act->lnf_rstd, N);
    TAKE(act->logits, N * (size_t)c->Vp);
    TAKE(act->losses, N);
    TAKE(act->dres, N * C);
    TAKE(act->dln, N * C);
    TAKE(act->dtmp, N * C);
    TAKE(act->datty, N * C);
    TAKE(act->dqkv, N * (llama ? Q + 2 * KV : 3 * C));
    TAKE(act->dbig, N * F);
    TAKE(act->dbig2, N * F);
#undef TAKE
    return used;
}

/* a frozen base trains nothing below its lowest trainable row: the backward stops there */
static void set_grad_floor(HnModel* m) {
    m->grad_floor = m->cfg.L;
    for (int i = 0; i < m->params.n; i++) {
        const HnParamRow* r = &m->params.rows[i];
        int layer;
        if (!r->trainable) continue;
        if (sscanf(r->name, "layers.%d.", &layer) == 1) {
            if (layer < m->grad_floor) m->grad_floor = layer;
        } else if (strncmp(r->name, "final_norm.", 11) != 0 && strcmp(r->name, "lm_head.weight")) {
            m->grad_floor = 0; /* embeddings, prefix, prompt: every layer */
        }
    }
}

int hn_model_relayout_grads(HnModel* m) {
    hn_params_layout_grads(&m->params);
    free(m->grads);
    if (!(m->grads = hn_params_grad_buffer(&m->params))) return HN_ERR;
    bind_tensors(&m->g, &m->params, m->grads, m->cfg.L, !m->cfg.untied, 1);
    m->peft.grads = m->grads;
    set_grad_floor(m);
    return HN_OK;
}

int hn_model_create(HnModel* m, const HnModelConfig* cfg, int maxB, int maxT) {
    HnPeft none;
    memset(&none, 0, sizeof none);
    return hn_model_create_peft(m, cfg, &none, maxB, maxT);
}

int hn_model_create_peft(HnModel* m, const HnModelConfig* cfg, HnPeft* peft, int maxB, int maxT) {
    memset(m, 0, sizeof *m);
    m->probe.layer = -1;
    m->peft = *peft;
    memset(peft, 0, sizeof *peft);
    m->cfg = *cfg;
    HnModelConfig* c = &m->cfg;
    if (normalize(c) != HN_OK) return HN_ERR;
    if (maxT > c->maxT)
        return hn_error("sequence length %d is longer than the model's context %d", maxT, c->maxT);
    if (build_table(&m->params, c) != HN_OK) return HN_ERR;
    if (m->peft.active && (hn_peft_add_rows(&m->peft, &m->params) != HN_OK ||
                           hn_peft_freeze_base(&m->peft, &m->params) != HN_OK))
        return HN_ERR;
    if (hn_params_alloc(&m->params) != HN_OK) return HN_ERR;
    if (!(m->grads = hn_params_grad_buffer(&m->params))) return HN_ERR;
    set_grad_floor(m);
    m->w.layers = calloc((size_t)c->L, sizeof(HnLayerTensors));
    m->g.layers = calloc((size_t)c->L, sizeof(HnLayerTensors));
    m->act.layer = calloc((size_t)c->L, sizeof(HnLayerActs));
    if (!m->w.layers || !m->g.layers || !m->act.layer) return hn_error("out of memory");
    bind_tensors(&m->w, &m->params, m->params.data, c->L, !c->untied, 0);
    bind_tensors(&m->g, &m->params, m->grads, c->L, !c->untied, 1);

    /* prompt tuning's virtual tokens lengthen every sequence; a prefix adds keys */
    int Pv = hn_peft_virtual_tokens(&m->peft), Px = hn_peft_prefix_length(&m->peft);
    if (Px + Pv + maxT > c->maxT)
        return hn_error("%d prefix positions + %d virtual tokens + sequence length %d exceed "
                        "the model's context %d — shorten peft.prefix.length / "
                        "peft.prompt.length or data.seq",
                        Px, Pv, maxT, c->maxT);
    maxT += Pv;
    if (Pv && !(m->targets_virt = malloc((size_t)maxB * maxT * sizeof(int))))
        return hn_error("out of memory");
    m->maxB = maxB;
    m->maxT = maxT;
    size_t att = (size_t)maxB * c->NH * maxT * (maxT + Px);
    size_t total = hn_model_layout_activations(&m->act, c, maxB, maxT, att, NULL);
    if (!(m->act_mem = malloc(total * sizeof(float))))
        return hn_error("out of memory: %zu MB of activations", total * 4 >> 20);
    hn_model_layout_activations(&m->act, c, maxB, maxT, att, m->act_mem);
    if (m->peft.active && hn_peft_alloc(&m->peft, maxB * maxT, &m->params, m->grads) != HN_OK)
        return HN_ERR;
    return HN_OK;
}

void hn_model_free(HnModel* m) {
    hn_params_free(&m->params);
    free(m->grads);
    free(m->w.layers);
    free(m->g.layers);
    free(m->act.layer);
    free(m->act_mem);
    free(m->targets_virt);
    hn_peft_free(&m->peft);
    memset(m, 0, sizeof *m);
}

void hn_model_init(HnModel* m, float std, uint64_t seed) {
    const HnParamTable* t = &m->params;
    float resid_std = std / sqrtf(2.0f * (float)m->cfg.L);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (r->addon) continue; /* hn_peft_init's */
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
            int vocab_rows =
                strcmp(name, "tok_embed.weight") == 0 || strcmp(name, "lm_head.weight") == 0;
            if (vocab_rows) n = (size_t)m->cfg.V * m->cfg.C; /* padded vocab rows stay zero */
            for (size_t j = 0; j < n; j++)
                x[j] = s * hn_rng_normal(&rng);
        }
    }
    if (m->peft.active) hn_peft_init(&m->peft, &m->params, seed);
}

void hn_model_zero_grad(HnModel* m) {
    memset(m->grads, 0, m->params.grad_numel * sizeof(float));
}

/* A linear of block l at a named site: the base weight plus whatever parameter-efficient
 * add-on is attached there (train/peft/); a plain GEMM where nothing is. */
#define LINEAR(site, out, inp, w, b, N, C, OC)                                                     \
    hn_peft_linear_forward(&m->peft, l, HN_LIN_##site, out, inp, w, b, N, C, OC)
#define LINEAR_BACK(site, dinp, dw, db, dout, inp, w, N, C, OC)                                    \
    hn_peft_linear_backward(&m->peft, l, HN_LIN_##site, dinp, dw, db, dout, inp, w, N, C, OC)

/* ---- one block, forward ---- */

static void gpt2_block_forward(HnModel* m, int l, const float* residual, const float* prefix, int B,
                               int T) {
    const HnModelConfig* c = &m->cfg;
    const HnLayerTensors* lw = &m->w.layers[l];
    HnLayerActs* a = &m->act.layer[l];
    int C = c->C, N = B * T;
    hn_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, residual, lw->ln1w, lw->ln1b, N, C,
                         c->eps);
    LINEAR(QKV, a->qkv, a->ln1, lw->qkvw, lw->qkvb, N, C, 3 * C);
    if (prefix || m->pos) {
        int KV = C, HS = C / c->NH, stride = m->peft.prefix.cols;
        hn_attention_prefix_forward(
            a->atty, a->att, a->qkv, a->qkv + C, a->qkv + 2 * C,
            prefix ? prefix + 2 * l * KV : NULL, prefix ? prefix + (2 * l + 1) * KV : NULL, m->pos,
            stride, 3 * C, 3 * C, B, T, prefix ? m->peft.prefix.P : 0, c->NH, c->NH, HS);
    } else {
        hn_attention_forward(a->atty, a->att, a->qkv, B, T, C, c->NH);
    }
    LINEAR(O, a->res2, a->atty, lw->attow, lw->attob, N, C, C);
    hn_peft_adapter_forward(&m->peft, l, HN_POINT_ATTN, a->res2, residual, N, C);
    hn_residual_forward(a->res2, a->res2, residual, (size_t)N * C);
    hn_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, lw->ln2w, lw->ln2b, N, C,
                         c->eps);
    LINEAR(UP, a->fch, a->ln2, lw->fcw, lw->fcb, N, C, c->F);
    hn_gelu_forward(a->fch_gelu, a->fch, (size_t)N * c->F);
    LINEAR(DOWN, a->res3, a->fch_gelu, lw->fcprojw, lw->fcprojb, N, c->F, C);
    hn_peft_adapter_forward(&m->peft, l, HN_POINT_MLP, a->res3, a->res2, N, C);
    hn_residual_forward(a->res3, a->res3, a->res2, (size_t)N * C);
}

static void llama_block_forward(HnModel* m, int l, const float* residual, const float* prefix,
                                int B, int T) {
    const HnModelConfig* c = &m->cfg;
    const HnLayerTensors* lw = &m->w.layers[l];
    HnLayerActs* a = &m->act.layer[l];
    int C = c->C, N = B * T, HS = C / c->NH, Q = c->NH * HS, KV = c->NKV * HS;
    hn_rmsnorm_forward(a->ln1, a->ln1_rstd, residual, lw->ln1w, N, C, c->eps);
    LINEAR(Q, a->q, a->ln1, lw->qw, NULL, N, C, Q);
    LINEAR(K, a->k, a->ln1, lw->kw, NULL, N, C, KV);
    LINEAR(V, a->v, a->ln1, lw->vw, NULL, N, C, KV);
    int P = m->peft.prefix.P * (prefix != NULL); /* real tokens start after the prefix */
    hn_rope_forward(a->q, m->pos, B, T, c->NH, HS, Q, P, c->rope_theta);
    hn_rope_forward(a->k, m->pos, B, T, c->NKV, HS, KV, P, c->rope_theta);
    if (prefix || m->pos)
        hn_attention_prefix_forward(a->atty, a->att, a->q, a->k, a->v,
                                    prefix ? prefix + 2 * l * KV : NULL,
                                    prefix ? prefix + (2 * l + 1) * KV : NULL, m->pos,
                                    m->peft.prefix.cols, Q, KV, B, T, P, c->NH, c->NKV, HS);
    else
        hn_attention_gqa_forward(a->atty, a->att, a->q, a->k, a->v, Q, KV, B, T, c->NH, c->NKV, HS);
    LINEAR(O, a->res2, a->atty, lw->attow, NULL, N, Q, C);
    hn_peft_adapter_forward(&m->peft, l, HN_POINT_ATTN, a->res2, residual, N, C);
    hn_residual_forward(a->res2, a->res2, residual, (size_t)N * C);
    hn_rmsnorm_forward(a->ln2, a->ln2_rstd, a->res2, lw->ln2w, N, C, c->eps);
    LINEAR(GATE, a->fch, a->ln2, lw->gatew, NULL, N, C, c->F);
    LINEAR(UP, a->up, a->ln2, lw->fcw, NULL, N, C, c->F);
    hn_swiglu_forward(a->fch_gelu, a->fch, a->up, (size_t)N * c->F);
    LINEAR(DOWN, a->res3, a->fch_gelu, lw->fcprojw, NULL, N, c->F, C);
    hn_peft_adapter_forward(&m->peft, l, HN_POINT_MLP, a->res3, a->res2, N, C);
    hn_residual_forward(a->res3, a->res3, a->res2, (size_t)N * C);
}

double hn_model_forward(HnModel* m, const int* tokens, const int* targets, int B, int T,
                        float grad_scale) {
    return hn_model_forward_docs(m, tokens, NULL, targets, B, T, grad_scale);
}

double hn_model_forward_docs(HnModel* m, const int* tokens, const int* pos, const int* targets,
                             int B, int T, float grad_scale) {
    const HnModelConfig* c = &m->cfg;
    const HnTensors* w = &m->w;
    int C = c->C, llama = c->arch == HN_ARCH_LLAMA;
    int Pv = hn_peft_virtual_tokens(&m->peft), Px = hn_peft_prefix_length(&m->peft);
    m->B = B;
    m->Treal = T;
    m->tokens = tokens;
    m->pos = Pv ? NULL : pos; /* the trainer refuses virtual tokens with packed documents */
    m->peft.training = grad_scale != 0.0f;
    /* positions: a prefix's come first, then the prompt's virtual tokens, then the tokens */
    const float* wpe = w->wpe ? w->wpe + (size_t)Px * C : NULL;
    if (Pv) {
        hn_peft_embed_forward(&m->peft, m->act.encoded, tokens, w->wte, wpe, 0, B, T, C);
        if (targets) {
            for (int b = 0; b < B; b++)
                for (int t = 0; t < T + Pv; t++)
                    m->targets_virt[b * (T + Pv) + t] =
                        t < Pv ? HN_IGNORE : targets[b * T + t - Pv];
            targets = m->targets_virt;
        }
        T += Pv;
    } else {
        hn_encoder_forward(m->act.encoded, tokens, m->pos, w->wte, wpe, B, T, C);
    }
    m->T = T;
    int N = B * T;
    const float* prefix = hn_peft_prefix_begin(&m->peft);
    const float* residual = m->act.encoded;
    const int nblocks = m->stop_blocks > 0 && m->stop_blocks < c->L ? m->stop_blocks : c->L;
    for (int l = 0; l < nblocks; l++) {
        if (llama)
            llama_block_forward(m, l, residual, prefix, B, T);
        else
            gpt2_block_forward(m, l, residual, prefix, B, T);
        residual = m->act.layer[l].res3;
        if (l == m->probe.layer) /* adding to the stream after the block = to the MLP output */
            for (int b = 0; b < B; b++)
                if (m->probe.at[b] >= 0)
                    hn_residual_forward(m->act.layer[l].res3 + ((size_t)b * T + m->probe.at[b]) * C,
                                        m->act.layer[l].res3 + ((size_t)b * T + m->probe.at[b]) * C,
                                        m->probe.delta, (size_t)C);
    }
    if (nblocks < c->L) return 0.0;
    if (llama)
        hn_rmsnorm_forward(m->act.lnf, m->act.lnf_rstd, residual, w->lnfw, N, C, c->eps);
    else
        hn_layernorm_forward(m->act.lnf, m->act.lnf_mean, m->act.lnf_rstd, residual, w->lnfw,
                             w->lnfb, N, C, c->eps);
    hn_matmul_forward(m->act.logits, m->act.lnf, w->lm_head, NULL, N, C, c->Vp);
    if (!targets) return 0.0;
    return hn_crossentropy_forward(m->act.logits, m->act.losses, targets, N, c->V, c->Vp,
                                   grad_scale);
}

/* ---- one block, backward: m->act.dres holds d(res3) on entry and d(residual) on exit ---- */

/* the gradient of a sublayer's own output from that of the stream after it (dres), which
 * an adapter there also updates with what flows into its input */
#define ADAPTER_BACK(point) hn_peft_adapter_backward(&m->peft, l, point, m->act.dres, N, C)

static void gpt2_block_backward(HnModel* m, int l, const float* residual, const float* prefix,
                                int B, int T) {
    const HnModelConfig* c = &m->cfg;
    const HnLayerTensors* lw = &m->w.layers[l];
    const HnLayerTensors* lg = &m->g.layers[l];
    HnLayerActs* a = &m->act.layer[l];
    int C = c->C, N = B * T, F = c->F;
    const float* dmlp = ADAPTER_BACK(HN_POINT_MLP);
    LINEAR_BACK(DOWN, m->act.dbig, lg->fcprojw, lg->fcprojb, dmlp, a->fch_gelu, lw->fcprojw, N, F,
                C);
    hn_gelu_backward(m->act.dbig, a->fch, m->act.dbig, (size_t)N * F);
    LINEAR_BACK(UP, m->act.dln, lg->fcw, lg->fcb, m->act.dbig, a->ln2, lw->fcw, N, C, F);
    hn_layernorm_backward(m->act.dres, lg->ln2w, lg->ln2b, m->act.dln, a->res2, lw->ln2w,
                          a->ln2_mean, a->ln2_rstd, N, C);
    const float* dattn = ADAPTER_BACK(HN_POINT_ATTN);
    LINEAR_BACK(O, m->act.datty, lg->attow, lg->attob, dattn, a->atty, lw->attow, N, C, C);
    if (prefix) {
        int HS = C / c->NH;
        float* dp = hn_peft_prefix_grad(&m->peft);
        float* dq = m->act.dqkv;
        hn_attention_prefix_backward(
            dq, dq + C, dq + 2 * C, dp + 2 * l * C, dp + (2 * l + 1) * C, m->act.datty, a->qkv,
            a->qkv + C, a->qkv + 2 * C, prefix + 2 * l * C, prefix + (2 * l + 1) * C, a->att,
            m->peft.prefix.cols, 3 * C, 3 * C, B, T, m->peft.prefix.P, c->NH, c->NH, HS);
    } else {
        hn_attention_backward(m->act.dqkv, m->act.datty, a->qkv, a->att, B, T, C, c->NH);
    }
    LINEAR_BACK(QKV, m->act.dln, lg->qkvw, lg->qkvb, m->act.dqkv, a->ln1, lw->qkvw, N, C, 3 * C);
    hn_layernorm_backward(m->act.dres, lg->ln1w, lg->ln1b, m->act.dln, residual, lw->ln1w,
                          a->ln1_mean, a->ln1_rstd, N, C);
}

static void llama_block_backward(HnModel* m, int l, const float* residual, const float* prefix,
                                 int B, int T) {
    const HnModelConfig* c = &m->cfg;
    const HnLayerTensors* lw = &m->w.layers[l];
    const HnLayerTensors* lg = &m->g.layers[l];
    HnLayerActs* a = &m->act.layer[l];
    int C = c->C, N = B * T, F = c->F, HS = C / c->NH, Q = c->NH * HS, KV = c->NKV * HS;
    size_t NC = (size_t)N * C;
    float *dq = m->act.dqkv, *dk = dq + (size_t)N * Q, *dv = dk + (size_t)N * KV;
    /* MLP: down, then SwiGLU, then gate and up, whose input gradients add */
    const float* dmlp = ADAPTER_BACK(HN_POINT_MLP);
    LINEAR_BACK(DOWN, m->act.dbig, lg->fcprojw, NULL, dmlp, a->fch_gelu, lw->fcprojw, N, F, C);
    hn_swiglu_backward(m->act.dbig2, m->act.dbig, m->act.dbig, a->fch, a->up,
                       (size_t)N * F); /* dgate, dup */
    LINEAR_BACK(GATE, m->act.dln, lg->gatew, NULL, m->act.dbig2, a->ln2, lw->gatew, N, C, F);
    LINEAR_BACK(UP, m->act.dtmp, lg->fcw, NULL, m->act.dbig, a->ln2, lw->fcw, N, C, F);
    hn_residual_forward(m->act.dln, m->act.dln, m->act.dtmp, NC);
    hn_rmsnorm_backward(m->act.dres, lg->ln2w, m->act.dln, a->res2, lw->ln2w, a->ln2_rstd, N, C);
    /* attention: o, then attention, then RoPE undone, then q, k, v, whose input gradients add */
    const float* dattn = ADAPTER_BACK(HN_POINT_ATTN);
    LINEAR_BACK(O, m->act.datty, lg->attow, NULL, dattn, a->atty, lw->attow, N, Q, C);
    int P = m->peft.prefix.P * (prefix != NULL);
    if (prefix) {
        float* dp = hn_peft_prefix_grad(&m->peft);
        hn_attention_prefix_backward(dq, dk, dv, dp + 2 * l * KV, dp + (2 * l + 1) * KV,
                                     m->act.datty, a->q, a->k, a->v, prefix + 2 * l * KV,
                                     prefix + (2 * l + 1) * KV, a->att, m->peft.prefix.cols, Q, KV,
                                     B, T, P, c->NH, c->NKV, HS);
    } else {
        hn_attention_gqa_backward(dq, dk, dv, m->act.datty, a->q, a->k, a->v, a->att, Q, KV, B, T,
                                  c->NH, c->NKV, HS);
    }
    hn_rope_backward(dq, m->pos, B, T, c->NH, HS, Q, P, c->rope_theta);
    hn_rope_backward(dk, m->pos, B, T, c->NKV, HS, KV, P, c->rope_theta);
    LINEAR_BACK(Q, m->act.dln, lg->qw, NULL, dq, a->ln1, lw->qw, N, C, Q);
    LINEAR_BACK(K, m->act.dtmp, lg->kw, NULL, dk, a->ln1, lw->kw, N, C, KV);
    hn_residual_forward(m->act.dln, m->act.dln, m->act.dtmp, NC);
    LINEAR_BACK(V, m->act.dtmp, lg->vw, NULL, dv, a->ln1, lw->vw, N, C, KV);
    hn_residual_forward(m->act.dln, m->act.dln, m->act.dtmp, NC);
    hn_rmsnorm_backward(m->act.dres, lg->ln1w, m->act.dln, residual, lw->ln1w, a->ln1_rstd, N, C);
}

void hn_model_backward(HnModel* m) {
    const HnModelConfig* c = &m->cfg;
    const HnTensors* w = &m->w;
    const HnTensors* g = &m->g;
    int B = m->B, T = m->T, C = c->C, N = B * T, llama = c->arch == HN_ARCH_LLAMA;
    const float* last = c->L ? m->act.layer[c->L - 1].res3 : m->act.encoded;

    /* classifier (the token embedding when tied), then the final norm into the stream */
    hn_matmul_backward(m->act.dln, g->lm_head, NULL, m->act.logits, m->act.lnf, w->lm_head, N, C,
                       c->Vp);
    memset(m->act.dres, 0, (size_t)N * C * sizeof(float));
    if (llama)
        hn_rmsnorm_backward(m->act.dres, g->lnfw, m->act.dln, last, w->lnfw, m->act.lnf_rstd, N, C);
    else
        hn_layernorm_backward(m->act.dres, g->lnfw, g->lnfb, m->act.dln, last, w->lnfw,
                              m->act.lnf_mean, m->act.lnf_rstd, N, C);

    /* the prefix of the forward (its projection's output stays in place until then) */
    int Px = hn_peft_prefix_length(&m->peft);
    const float* prefix = !Px ? NULL
                          : m->peft.prefix.hidden
                              ? m->peft.prefix.kv
                              : m->params.data + m->params.rows[m->peft.prefix.row_embed].offset;
    for (int l = c->L - 1; l >= m->grad_floor; l--) {
        const float* residual = l ? m->act.layer[l - 1].res3 : m->act.encoded;
        if (l == m->probe.layer && m->probe.ddelta) /* d(MLP output) = d(stream after it) */
            for (int b = 0; b < B; b++)
                if (m->probe.at[b] >= 0)
                    hn_residual_forward(m->probe.ddelta, m->probe.ddelta,
                                        m->act.dres + ((size_t)b * T + m->probe.at[b]) * C,
                                        (size_t)C);
        if (llama)
            llama_block_backward(m, l, residual, prefix, B, T);
        else
            gpt2_block_backward(m, l, residual, prefix, B, T);
    }
    if (m->grad_floor > 0) return; /* nothing below trains */
    hn_peft_prefix_end(&m->peft);
    if (hn_peft_virtual_tokens(&m->peft))
        hn_peft_embed_backward(&m->peft, m->act.dres, B, m->Treal, C);
    else
        hn_encoder_backward(g->wte, g->wpe ? g->wpe + (size_t)Px * C : NULL, m->act.dres, m->tokens,
                            m->pos, B, T, C);
}

float* hn_model_logits(HnModel* m, int b, int t) {
    return m->act.logits + ((size_t)b * m->T + (m->T - m->Treal) + t) * m->cfg.Vp;
}
