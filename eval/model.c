/*
 * GPT-2 and Llama inference with a KV cache: the weights from a checkpoint (or any tensor
 * source), then one forward for n new tokens that reads like the math, one op call a line.
 * Both blocks are pre-norm, as in training:
 *   gpt2:  x = wte[tok] + wpe[pos];
 *          x += o(attention(qkv(LN(x))));  x += down(gelu(up(LN(x))));  logits = LN(x) wte^T
 *   llama: x = wte[tok];
 *          x += o(attention(rope(q(RMS(x))), rope(k(RMS(x))), v(RMS(x))));
 *          x += down(silu(gate(RMS(x))) * up(RMS(x)));  logits = RMS(x) cls^T
 *          (cls = lm_head when untied, else wte; NKV <= NH kv heads, query head h reads kv
 *          head h / (NH / NKV))
 * The ops are kernels/ops.h's (the same the trainer runs); only attention is this file's
 * own, because it reads keys and values from the cache instead of from the current rows.
 *
 * Memory does not grow with the context beyond the cache: a forward of n rows runs through
 * the layers in blocks of R = HN_EVAL_ROWS rows, and the logits of a block are consumed
 * (the last row kept, copied out, or turned into losses) before the next. SmolLM2-135M
 * (L 30, C 576, NKV 3 of NH 9, F 1536, V 49152, tied) served at a context of 2048:
 *   weights 134.5M floats = 538 MB;
 *   run state 38.6M floats = 154 MB: the cache 2 x 30 x 2048 x 192 = 94 MB, the block's
 *   logits 256 x 49152 = 50 MB, activations 256 x (5C + 3F) = 7.7 MB, one head's prefill
 *   scores 256 x 2048 = 2 MB.
 * Sized for its own 8192 positions at once, the logits alone would be 1.6 GB.
 */
#include "eval/model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "data/h5ckpt.h"
#include "train/peft/peft.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/ops.h"

int hn_eval_padded_vocab(int V) {
    return (V + 127) / 128 * 128;
}

/* ---- weights ---- */

/* the dimensions a layer's rows are made of */
enum { D1, DC, D3C, DKV, DF };

static size_t dim(const HnEvalConfig* c, int d) {
    switch (d) {
    case DC:
        return (size_t)c->C;
    case D3C:
        return 3 * (size_t)c->C;
    case DKV:
        return (size_t)c->NKV * (c->C / c->NH);
    case DF:
        return (size_t)c->F;
    default:
        return 1;
    }
}

/* the rows of one layer, in the training table's order: name suffix, where the stacked
 * tensor lives in HnEvalWeights, and its shape per layer (cols D1: a vector) */
typedef struct {
    const char* suffix;
    size_t field; /* offsetof(HnEvalWeights, ...) */
    int rows, cols;
} LayerRow;

static const LayerRow GPT2_ROWS[] = {
    {"attn_norm.weight", offsetof(HnEvalWeights, ln1w), DC, D1},
    {"attn_norm.bias", offsetof(HnEvalWeights, ln1b), DC, D1},
    {"attn.qkv.weight", offsetof(HnEvalWeights, qkvw), D3C, DC},
    {"attn.qkv.bias", offsetof(HnEvalWeights, qkvb), D3C, D1},
    {"attn.o.weight", offsetof(HnEvalWeights, attow), DC, DC},
    {"attn.o.bias", offsetof(HnEvalWeights, attob), DC, D1},
    {"mlp_norm.weight", offsetof(HnEvalWeights, ln2w), DC, D1},
    {"mlp_norm.bias", offsetof(HnEvalWeights, ln2b), DC, D1},
    {"mlp.up.weight", offsetof(HnEvalWeights, fcw), DF, DC},
    {"mlp.up.bias", offsetof(HnEvalWeights, fcb), DF, D1},
    {"mlp.down.weight", offsetof(HnEvalWeights, fcprojw), DC, DF},
    {"mlp.down.bias", offsetof(HnEvalWeights, fcprojb), DC, D1},
};

static const LayerRow LLAMA_ROWS[] = {
    {"attn_norm.weight", offsetof(HnEvalWeights, ln1w), DC, D1},
    {"attn.q.weight", offsetof(HnEvalWeights, qw), DC, DC},
    {"attn.k.weight", offsetof(HnEvalWeights, kw), DKV, DC},
    {"attn.v.weight", offsetof(HnEvalWeights, vw), DKV, DC},
    {"attn.o.weight", offsetof(HnEvalWeights, attow), DC, DC},
    {"mlp_norm.weight", offsetof(HnEvalWeights, ln2w), DC, D1},
    {"mlp.gate.weight", offsetof(HnEvalWeights, gatew), DF, DC},
    {"mlp.up.weight", offsetof(HnEvalWeights, fcw), DF, DC},
    {"mlp.down.weight", offsetof(HnEvalWeights, fcprojw), DC, DF},
};

static const LayerRow* layer_rows(const HnEvalConfig* c, int* n) {
    if (c->arch == HN_EVAL_LLAMA) {
        *n = (int)(sizeof LLAMA_ROWS / sizeof LLAMA_ROWS[0]);
        return LLAMA_ROWS;
    }
    *n = (int)(sizeof GPT2_ROWS / sizeof GPT2_ROWS[0]);
    return GPT2_ROWS;
}

static float** layer_field(HnEvalWeights* w, const LayerRow* r) {
    return (float**)((char*)w + r->field);
}

static size_t layer_row_numel(const HnEvalConfig* c, const LayerRow* r) {
    return dim(c, r->rows) * dim(c, r->cols);
}

/* slice one buffer into the weights (the stacked tensors one after another); returns the
 * floats needed, so the first call (with base NULL) sizes the buffer */
static size_t bind_weights(HnEvalWeights* w, const HnEvalConfig* c, float* base) {
    const size_t C = (size_t)c->C, Vp = (size_t)c->Vp;
    const int gpt2 = c->arch == HN_EVAL_GPT2;
    size_t used = 0;
    int nrows;
    const LayerRow* rows = layer_rows(c, &nrows);
#define TAKE(ptr, numel) (ptr = base ? base + used : NULL, used += (numel))
    TAKE(w->wte, Vp * C);
    if (gpt2) TAKE(w->wpe, (size_t)c->context * C);
    for (int k = 0; k < nrows; k++)
        TAKE(*layer_field(w, &rows[k]), layer_row_numel(c, &rows[k]) * (size_t)c->L);
    TAKE(w->lnfw, C);
    if (gpt2) TAKE(w->lnfb, C);
    if (c->untied) TAKE(w->lm_head, Vp * C);
#undef TAKE
    w->wcls = c->untied ? w->lm_head : w->wte;
    return used;
}

static int load_weights(HnEvalModel* m, HnEvalTensorFn fn, void* ctx) {
    const HnEvalConfig* c = &m->config;
    HnEvalWeights* w = &m->w;
    const size_t C = (size_t)c->C, Vp = (size_t)c->Vp;
    const int gpt2 = c->arch == HN_EVAL_GPT2;
    int nrows;
    const LayerRow* rows = layer_rows(c, &nrows);
    char name[96];
    if (fn(ctx, "tok_embed.weight", w->wte, Vp * C) != HN_OK) return HN_ERR;
    if (gpt2 && fn(ctx, "pos_embed.weight", w->wpe, (size_t)c->context * C) != HN_OK) return HN_ERR;
    for (int l = 0; l < c->L; l++)
        for (int k = 0; k < nrows; k++) {
            size_t numel = layer_row_numel(c, &rows[k]);
            snprintf(name, sizeof name, "layers.%d.%s", l, rows[k].suffix);
            if (fn(ctx, name, *layer_field(w, &rows[k]) + (size_t)l * numel, numel) != HN_OK)
                return HN_ERR;
        }
    if (fn(ctx, "final_norm.weight", w->lnfw, C) != HN_OK) return HN_ERR;
    if (gpt2 && fn(ctx, "final_norm.bias", w->lnfb, C) != HN_OK) return HN_ERR;
    if (c->untied && fn(ctx, "lm_head.weight", w->lm_head, Vp * C) != HN_OK) return HN_ERR;
    return HN_OK;
}

/* ---- run state ---- */

static size_t bind_state(HnEvalState* s, const HnEvalConfig* c, float* base) {
    const size_t R = (size_t)s->rows, C = (size_t)c->C, F = (size_t)c->F, T = (size_t)c->maxT;
    const size_t KV = dim(c, DKV);
    const int llama = c->arch == HN_EVAL_LLAMA;
    size_t used = 0;
#define TAKE(ptr, numel) (ptr = base ? base + used : NULL, used += (numel))
    TAKE(s->x, R * C);
    TAKE(s->xb, R * C);
    TAKE(s->qkv, R * (llama ? C : 3 * C));
    TAKE(s->atty, R * C);
    TAKE(s->proj, R * C);
    TAKE(s->fch, R * F);
    if (llama) TAKE(s->up, R * F);
    TAKE(s->fch_gelu, R * F);
    TAKE(s->mean, R);
    TAKE(s->rstd, R);
    TAKE(s->scores, (size_t)s->threads * T);
    TAKE(s->block, R * T);
    TAKE(s->logits, R * (size_t)c->Vp);
    TAKE(s->losses, R);
    TAKE(s->key_cache, (size_t)c->L * T * KV);
    TAKE(s->value_cache, (size_t)c->L * T * KV);
#undef TAKE
    return used;
}

/* defaults filled in, then sizes checked before they become allocations: a config read
 * from a file decides them */
static int check_config(HnEvalConfig* c, int max_context) {
    if (c->NKV == 0) c->NKV = c->NH;
    if (c->F == 0) c->F = 4 * c->C;
    if (c->arch != HN_EVAL_GPT2 && c->arch != HN_EVAL_LLAMA)
        return hn_error("unknown architecture %d", (int)c->arch);
    if (c->L < 1 || c->C < 1 || c->NH < 1 || c->NKV < 1 || c->F < 1 || c->V < 1 || c->context < 1)
        return hn_error("bad model shape: layers %d, channels %d, heads %d, kv heads %d, ffn %d, "
                        "vocab %d, context %d (all must be positive)",
                        c->L, c->C, c->NH, c->NKV, c->F, c->V, c->context);
    if (c->C % c->NH != 0)
        return hn_error("channels (%d) must be divisible by heads (%d)", c->C, c->NH);
    if (c->NH % c->NKV != 0) return hn_error("kv heads (%d) must divide heads (%d)", c->NKV, c->NH);
    if (c->L > 4096 || c->C > 65536 || c->F > (1 << 20) || c->V > (1 << 24) ||
        c->context > (1 << 20))
        return hn_error("model shape out of range: layers %d, channels %d, ffn %d, vocab %d, "
                        "context %d",
                        c->L, c->C, c->F, c->V, c->context);
    if (c->arch == HN_EVAL_GPT2 && c->NKV != c->NH)
        return hn_error("gpt2 models have as many kv heads as heads (%d, not %d)", c->NH, c->NKV);
    if (c->arch == HN_EVAL_LLAMA && (c->C / c->NH) % 2 != 0)
        return hn_error("RoPE needs an even head size, not %d", c->C / c->NH);
    if (c->arch == HN_EVAL_LLAMA && !(c->rope_theta > 0.0f))
        return hn_error("bad RoPE base %g", (double)c->rope_theta);
    if (!(c->eps > 0.0f)) return hn_error("bad norm epsilon %g", (double)c->eps);
    if (max_context < 0) return hn_error("bad context cap %d", max_context);
    c->Vp = hn_eval_padded_vocab(c->V);
    c->maxT = max_context > 0 && max_context < c->context ? max_context : c->context;
    return HN_OK;
}

HnEvalModel* hn_eval_model_new(const HnEvalConfig* cfg, int max_context, HnEvalTensorFn fn,
                               void* ctx) {
    HnEvalConfig c = *cfg;
    if (check_config(&c, max_context) != HN_OK) return NULL;
    HnEvalModel* m = calloc(1, sizeof *m);
    if (!m) {
        hn_error("out of memory");
        return NULL;
    }
    m->config = c;
    m->nparams = bind_weights(&m->w, &m->config, NULL);
    m->s.threads = omp_get_max_threads();
    m->s.rows = c.maxT < HN_EVAL_ROWS ? c.maxT : HN_EVAL_ROWS;
    m->nstate = bind_state(&m->s, &m->config, NULL);
    m->params = malloc(m->nparams * sizeof(float));
    m->state_mem = calloc(m->nstate, sizeof(float));
    if (!m->params || !m->state_mem) {
        hn_error("out of memory: %zu MB of weights and %zu MB of run state (a smaller context "
                 "shrinks the run state)",
                 m->nparams >> 18, m->nstate >> 18);
        hn_eval_model_free(m);
        return NULL;
    }
    bind_weights(&m->w, &m->config, m->params);
    bind_state(&m->s, &m->config, m->state_mem);
    if (load_weights(m, fn, ctx) != HN_OK) {
        hn_eval_model_free(m);
        return NULL;
    }
    return m;
}

void hn_eval_model_free(HnEvalModel* m) {
    if (!m) return;
    free(m->params);
    free(m->state_mem);
    free(m);
}

/* ---- loading a checkpoint ---- */

/* a checkpoint, and for one trained on a frozen base, that base: rows the checkpoint does
 * not hold come from the base */
typedef struct {
    HnH5* ckpt;
    HnH5* base;
} CkptPair;

static int read_ckpt_tensor(void* ctx, const char* name, float* dst, size_t numel) {
    const CkptPair* p = ctx;
    char path[HN_NAME_MAX + 8];
    snprintf(path, sizeof path, "/model/%s", name);
    if (p->base && !hn_h5_exists(p->ckpt, path))
        return hn_ckpt_read_tensor(p->base, name, dst, numel);
    return hn_ckpt_read_tensor(p->ckpt, name, dst, numel);
}

/* the base a frozen-base checkpoint names, opened and checked against the hash it recorded;
 * *base stays NULL for a checkpoint that holds its whole model */
static int open_base(HnH5* f, const char* path, HnH5** base) {
    *base = NULL;
    char *file = NULL, *sha = NULL, *text = NULL, hex[65];
    if (hn_ckpt_base_ref(f, &file, &sha) != HN_OK) return HN_ERR;
    if (!file) return HN_OK;
    int rc = HN_OK;
    *base = hn_ckpt_open(file, &text);
    free(text);
    if (!*base)
        rc = hn_error("%s holds add-ons on the base %s, which cannot be opened (%s)", path, file,
                      hn_error_message());
    else if (hn_ckpt_model_sha256(*base, hex) != HN_OK)
        rc = HN_ERR;
    else if (strcmp(hex, sha) != 0)
        rc = hn_error("%s was trained on a different %s (SHA-256 of its weights %.12s..., now "
                      "%.12s...) — evaluate it on the base it was trained on",
                      path, file, sha, hex);
    free(file);
    free(sha);
    return rc;
}

/* layer l's weight (and bias) of a base linear inside the eval model's stacked tensors */
static void linear_of(HnEvalModel* m, int l, HnLinear lin, float** w, float** b) {
    const HnEvalConfig* c = &m->config;
    HnEvalWeights* x = &m->w;
    size_t C = (size_t)c->C, F = (size_t)c->F, KV = (size_t)(c->C / c->NH) * c->NKV;
    *b = NULL;
    switch (lin) {
    case HN_LIN_QKV:
        *w = x->qkvw + l * 3 * C * C, *b = x->qkvb + l * 3 * C;
        return;
    case HN_LIN_Q:
        *w = x->qw + l * C * C;
        return;
    case HN_LIN_K:
        *w = x->kw + l * KV * C;
        return;
    case HN_LIN_V:
        *w = x->vw + l * KV * C;
        return;
    case HN_LIN_O:
        *w = x->attow + l * C * C, *b = x->attob ? x->attob + l * C : NULL;
        return;
    case HN_LIN_UP:
        *w = x->fcw + l * F * C, *b = x->fcb ? x->fcb + l * F : NULL;
        return;
    case HN_LIN_GATE:
        *w = x->gatew + l * F * C;
        return;
    default:
        *w = x->fcprojw + l * C * F, *b = x->fcprojb ? x->fcprojb + l * C : NULL;
        return;
    }
}

/* fold the checkpoint's parameter-efficient add-ons (/peft) into the loaded base weights:
 * LoRA, DoRA and IA3 all fold exactly, so the inference path runs a plain model */
static int fold_addons(HnEvalModel* m, HnH5* f, const HnConfig* cfg, const char* path) {
    HnPeft plan;
    if (hn_peft_plan(&plan, cfg) != HN_OK) return HN_ERR;
    int rc = HN_OK;
    char name[HN_NAME_MAX + 16];
    for (int j = 0; rc == HN_OK && j < plan.n; j++) {
        const HnAddon* a = &plan.a[j];
        size_t na = (size_t)a->rank * a->in, nb = (size_t)a->out * a->rank;
        size_t nl = a->kind == HN_ADD_IA3_IN ? (size_t)a->in : (size_t)a->out;
        float* buf = malloc((na + nb + 2 * nl + 4) * sizeof(float));
        if (!buf) {
            rc = hn_error("out of memory");
            break;
        }
        float *A = buf, *B = buf + na, *mag = B + nb, *l = mag + nl;
        if (a->kind == HN_ADD_LORA || a->kind == HN_ADD_DORA) {
            snprintf(name, sizeof name, "layers.%d.%s.lora_A", a->layer, a->site);
            rc = hn_ckpt_read_group_tensor(f, "peft", name, A, na);
            snprintf(name, sizeof name, "layers.%d.%s.lora_B", a->layer, a->site);
            if (rc == HN_OK) rc = hn_ckpt_read_group_tensor(f, "peft", name, B, nb);
            snprintf(name, sizeof name, "layers.%d.%s.dora_m", a->layer, a->site);
            if (rc == HN_OK && a->kind == HN_ADD_DORA)
                rc = hn_ckpt_read_group_tensor(f, "peft", name, mag, (size_t)a->out);
        } else {
            snprintf(name, sizeof name, "layers.%d.%s.ia3", a->layer, a->site);
            rc = hn_ckpt_read_group_tensor(f, "peft", name, l, nl);
        }
        if (rc == HN_OK) {
            float *w, *b;
            linear_of(m, a->layer, a->lin, &w, &b);
            hn_peft_fold(a, w, b, A, B, mag, l);
        }
        free(buf);
    }
    if (rc != HN_OK) hn_error("%s: %s", path, hn_error_message());
    hn_peft_free(&plan);
    return rc;
}

/* the model section of a checkpoint's config as the eval model's config */
static int config_of(const HnConfig* cfg, const char* path, HnEvalConfig* c) {
    HnEvalArch arch;
    if (strcmp(cfg->model.arch, "gpt2") == 0)
        arch = HN_EVAL_GPT2;
    else if (strcmp(cfg->model.arch, "llama") == 0)
        arch = HN_EVAL_LLAMA;
    else
        return hn_error("%s: unknown model.arch '%s' (gpt2 or llama)", path, cfg->model.arch);
    if (cfg->model.vocab < 1) return hn_error("%s: its config has no model.vocab", path);
    *c = (HnEvalConfig){.arch = arch,
                        .L = cfg->model.layers,
                        .C = cfg->model.channels,
                        .NH = cfg->model.heads,
                        .NKV = cfg->model.kv_heads,
                        .F = cfg->model.ffn,
                        .V = cfg->model.vocab,
                        .context = cfg->model.context,
                        .eps = cfg->model.norm_eps,
                        .rope_theta = cfg->model.rope_theta,
                        .untied = !cfg->model.tied};
    return HN_OK;
}

int hn_eval_model_open(const char* ckpt_path, int max_context, HnEvalModel** m, HnTokenizer** tok) {
    *m = NULL;
    *tok = NULL;
    char* yaml = NULL;
    HnH5* f = hn_ckpt_open(ckpt_path, &yaml);
    if (!f) return HN_ERR;
    HnConfig cfg;
    HnEvalConfig c;
    hn_config_defaults(&cfg);
    int rc = hn_config_load_text(&cfg, yaml, ckpt_path);
    free(yaml);
    if (rc == HN_OK) rc = config_of(&cfg, ckpt_path, &c);
    CkptPair pair = {f, NULL};
    if (rc == HN_OK) rc = open_base(f, ckpt_path, &pair.base);
    if (rc == HN_OK) {
        *m = hn_eval_model_new(&c, max_context, read_ckpt_tensor, &pair);
        if (!*m) rc = HN_ERR;
    }
    if (rc == HN_OK && cfg.peft.methods.n > 0) rc = fold_addons(*m, f, &cfg, ckpt_path);
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(f, tok);
    if (pair.base) hn_h5_close(pair.base);
    hn_h5_close(f);
    if (rc != HN_OK) {
        hn_eval_model_free(*m);
        *m = NULL;
        return HN_ERR;
    }
    if (*tok && hn_tokenizer_vocab_size(*tok) > (*m)->config.V) {
        rc = hn_error("%s: its tokenizer has %d ids but the model only %d", ckpt_path,
                      hn_tokenizer_vocab_size(*tok), (*m)->config.V);
        hn_tokenizer_free(*tok);
        hn_eval_model_free(*m);
        *tok = NULL;
        *m = NULL;
    }
    return rc;
}

/* ---- forward ---- */

/* sums in LANES partial sums added in a fixed order: a plain float sum would stay scalar
 * without -ffast-math */
#define LANES 16
static float lanes_sum(float acc[LANES]) {
    for (int w = LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] += acc[j + w];
    return acc[0];
}

static float dot(const float* a, const float* b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] = fmaf(a[i + j], b[i + j], acc[j]);
    for (int j = 0; i + j < n; j++)
        acc[j] = fmaf(a[i + j], b[i + j], acc[j]);
    return lanes_sum(acc);
}

static float sum(const float* a, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++)
            acc[j] += a[i + j];
    for (int j = 0; i + j < n; j++)
        acc[j] += a[i + j];
    return lanes_sum(acc);
}

/* Causal attention of n new rows (at positions pos..pos+n-1) over the cache of one layer.
 * q (n, NH*HS) rows q_stride apart holds the new rows' queries (their keys and values are
 * already in the cache); kcache, vcache (maxT, KV); out (n, NH*HS). Row i attends to
 * positions 0..pos+i; query head h reads kv head h / (NH / NKV). */
static void attention_cached(float* out, float* scores, int threads, const float* q, int q_stride,
                             const float* kcache, const float* vcache, int n, int pos, int NH,
                             int NKV, int HS, int maxT) {
    const int KV = NKV * HS, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    if (threads > omp_get_max_threads()) threads = omp_get_max_threads();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < NH; h++) {
            float* att = scores + (size_t)omp_get_thread_num() * maxT;
            const float* qh = q + (size_t)i * q_stride + h * HS;
            const float* k = kcache + (h / group) * HS;
            const float* v = vcache + (h / group) * HS;
            const int len = pos + i + 1;
            float maxv = -INFINITY;
            for (int t = 0; t < len; t++) {
                att[t] = dot(qh, k + (size_t)t * KV, HS) * scale;
                maxv = att[t] > maxv ? att[t] : maxv;
            }
            for (int t = 0; t < len; t++)
                att[t] = hn_fast_expf(att[t] - maxv);
            const float inv = 1.0f / sum(att, len);
            float* o = out + (size_t)i * NH * HS + h * HS;
            for (int d = 0; d < HS; d++)
                o[d] = 0.0f;
            for (int t = 0; t < len; t++) {
                const float a = att[t] * inv;
                const float* vt = v + (size_t)t * KV;
                for (int d = 0; d < HS; d++)
                    o[d] = fmaf(a, vt[d], o[d]);
            }
        }
}

/* The same attention for a block of n <= R new rows at once (prefill), as GEMMs per head:
 * scores = q k^T (scaled), causal softmax, out = scores v. Rows attend to positions
 * 0..pos+i exactly as in attention_cached; only the order of summation differs. block
 * holds n x (pos + n) scores. */
static void attention_prefill(float* out, float* block, const float* q, int q_stride,
                              const float* kcache, const float* vcache, int n, int pos, int NH,
                              int NKV, int HS) {
    const int KV = NKV * HS, group = NH / NKV, len = pos + n; /* keys the last row sees */
    const float scale = 1.0f / sqrtf((float)HS);
    for (int h = 0; h < NH; h++) {
        const int kvh = h / group;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, len, HS, scale, q + h * HS,
                    q_stride, kcache + kvh * HS, KV, 0.0f, block, len);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            float* att = block + (size_t)i * len;
            const int seen = pos + i + 1;
            float maxv = -INFINITY;
            for (int t = 0; t < seen; t++)
                maxv = att[t] > maxv ? att[t] : maxv;
            for (int t = 0; t < seen; t++)
                att[t] = hn_fast_expf(att[t] - maxv);
            const float inv = 1.0f / sum(att, seen);
            for (int t = 0; t < seen; t++)
                att[t] *= inv;
            for (int t = seen; t < len; t++)
                att[t] = 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, HS, len, 1.0f, block, len,
                    vcache + kvh * HS, KV, 0.0f, out + h * HS, NH * HS);
    }
}

/* attention of the block's rows into s->atty: GEMMs pay off from 16 rows on */
static void attention(HnEvalModel* m, const float* q, int q_stride, const float* kcache,
                      const float* vcache, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    HnEvalState* s = &m->s;
    const int HS = c->C / c->NH;
    if (n >= 16)
        attention_prefill(s->atty, s->block, q, q_stride, kcache, vcache, n, pos, c->NH, c->NKV,
                          HS);
    else
        attention_cached(s->atty, s->scores, s->threads, q, q_stride, kcache, vcache, n, pos, c->NH,
                         c->NKV, HS, c->maxT);
}

/* one GPT-2 block over the n rows of s->x at positions pos..pos+n-1 */
static void gpt2_layer(HnEvalModel* m, int l, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C, F = c->F;
    const size_t CC = (size_t)C * C, CF = (size_t)C * F, T = (size_t)c->maxT;
    float* kcache = s->key_cache + (size_t)l * T * C;
    float* vcache = s->value_cache + (size_t)l * T * C;
    hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->ln1w + (size_t)l * C,
                         w->ln1b + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->qkv, s->xb, w->qkvw + l * 3 * CC, w->qkvb + (size_t)l * 3 * C, n, C,
                      3 * C);
    for (int i = 0; i < n; i++) { /* the new rows' k and v join the cache */
        memcpy(kcache + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + C, C * sizeof(float));
        memcpy(vcache + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + 2 * C,
               C * sizeof(float));
    }
    attention(m, s->qkv, 3 * C, kcache, vcache, n, pos);
    hn_matmul_forward(s->proj, s->atty, w->attow + l * CC, w->attob + (size_t)l * C, n, C, C);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
    hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->ln2w + (size_t)l * C,
                         w->ln2b + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->fch, s->xb, w->fcw + l * CF, w->fcb + (size_t)l * F, n, C, F);
    hn_gelu_forward(s->fch_gelu, s->fch, (size_t)n * F);
    hn_matmul_forward(s->proj, s->fch_gelu, w->fcprojw + l * CF, w->fcprojb + (size_t)l * C, n, F,
                      C);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
}

/* one Llama block over the n rows of s->x at positions pos..pos+n-1; k and v are computed
 * straight into the cache and turned there */
static void llama_layer(HnEvalModel* m, int l, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C, F = c->F, HS = C / c->NH, KV = c->NKV * HS;
    const size_t CC = (size_t)C * C, CKV = (size_t)C * KV, CF = (size_t)C * F;
    float* kcache = s->key_cache + (size_t)l * c->maxT * KV;
    float* vcache = s->value_cache + (size_t)l * c->maxT * KV;
    float* k = kcache + (size_t)pos * KV;
    float* v = vcache + (size_t)pos * KV;
    hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->ln1w + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->qkv, s->xb, w->qw + l * CC, NULL, n, C, C);
    hn_matmul_forward(k, s->xb, w->kw + l * CKV, NULL, n, C, KV);
    hn_matmul_forward(v, s->xb, w->vw + l * CKV, NULL, n, C, KV);
    hn_rope_forward(s->qkv, 1, n, c->NH, HS, C, pos, c->rope_theta);
    hn_rope_forward(k, 1, n, c->NKV, HS, KV, pos, c->rope_theta);
    attention(m, s->qkv, C, kcache, vcache, n, pos);
    hn_matmul_forward(s->proj, s->atty, w->attow + l * CC, NULL, n, C, C);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
    hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->ln2w + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->fch, s->xb, w->gatew + l * CF, NULL, n, C, F);
    hn_matmul_forward(s->up, s->xb, w->fcw + l * CF, NULL, n, C, F);
    hn_swiglu_forward(s->fch_gelu, s->fch, s->up, (size_t)n * F);
    hn_matmul_forward(s->proj, s->fch_gelu, w->fcprojw + l * CF, NULL, n, F, C);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
}

/* n <= R tokens at positions pos..pos+n-1 through every layer; leaves the final-normed
 * rows in s->xb, ready for the classifier */
static void forward_block(HnEvalModel* m, const int* tokens, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C;
    if (c->arch == HN_EVAL_LLAMA) {
        hn_encoder_forward(s->x, tokens, w->wte, NULL, 1, n, C);
        for (int l = 0; l < c->L; l++)
            llama_layer(m, l, n, pos);
        hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->lnfw, n, C, c->eps);
    } else {
        hn_encoder_forward(s->x, tokens, w->wte, w->wpe + (size_t)pos * C, 1, n, C);
        for (int l = 0; l < c->L; l++)
            gpt2_layer(m, l, n, pos);
        hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->lnfw, w->lnfb, n, C, c->eps);
    }
}

/* logits (rows, Vp) of the normed rows s->xb[row0 ..] */
static void classifier(HnEvalModel* m, float* logits, int row0, int rows) {
    const HnEvalConfig* c = &m->config;
    hn_matmul_forward(logits, m->s.xb + (size_t)row0 * c->C, m->w.wcls, NULL, rows, c->C, c->Vp);
}

static int check_input(const HnEvalModel* m, const int* tokens, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    if (n < 1 || pos < 0 || pos > c->maxT - n)
        return c->maxT < c->context
                   ? hn_error("positions %d..%d do not fit the context of %d (capped below the "
                              "model's %d: a larger cap serves more)",
                              pos, pos + n - 1, c->maxT, c->context)
                   : hn_error("positions %d..%d do not fit the model's context of %d", pos,
                              pos + n - 1, c->maxT);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->V)
            return hn_error("token id %d is not below the model's vocabulary %d", tokens[i], c->V);
    return HN_OK;
}

/* rows of the block that starts at row r0 of n */
static int block_rows(const HnEvalModel* m, int r0, int n) {
    return n - r0 < m->s.rows ? n - r0 : m->s.rows;
}

float* hn_eval_forward(HnEvalModel* m, const int* tokens, int n, int pos) {
    if (check_input(m, tokens, n, pos) != HN_OK) return NULL;
    int rows = 0;
    for (int r0 = 0; r0 < n; r0 += rows) {
        rows = block_rows(m, r0, n);
        forward_block(m, tokens + r0, rows, pos + r0);
    }
    classifier(m, m->s.logits, rows - 1, 1);
    return m->s.logits;
}

int hn_eval_forward_all(HnEvalModel* m, const int* tokens, int n, int pos, float* logits) {
    if (check_input(m, tokens, n, pos) != HN_OK) return HN_ERR;
    for (int r0 = 0, rows; r0 < n; r0 += rows) {
        rows = block_rows(m, r0, n);
        forward_block(m, tokens + r0, rows, pos + r0);
        classifier(m, logits + (size_t)r0 * m->config.Vp, 0, rows);
    }
    return HN_OK;
}

int hn_eval_forward_nll(HnEvalModel* m, const int* tokens, const int* targets, int n, int pos,
                        double* nll) {
    const HnEvalConfig* c = &m->config;
    *nll = 0.0;
    if (check_input(m, tokens, n, pos) != HN_OK) return HN_ERR;
    for (int i = 0; i < n; i++)
        if (targets[i] != HN_IGNORE && (targets[i] < 0 || targets[i] >= c->V))
            return hn_error("target id %d is not below the model's vocabulary %d", targets[i],
                            c->V);
    for (int r0 = 0, rows; r0 < n; r0 += rows) {
        rows = block_rows(m, r0, n);
        forward_block(m, tokens + r0, rows, pos + r0);
        classifier(m, m->s.logits, 0, rows);
        *nll += hn_crossentropy_forward(m->s.logits, m->s.losses, targets + r0, rows, c->V, c->Vp,
                                        0.0f);
    }
    return HN_OK;
}
