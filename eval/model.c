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
 * Parameter-efficient add-ons: LoRA, DoRA and IA3 fold into the base at load. Prefix
 * tuning, prompt tuning / P-tuning and bottleneck adapters stay (HnEvalAddons): the prefix
 * keys and values sit at cache positions 0..Px-1 of every layer (unrotated), the virtual
 * tokens at Px..virt-1 (run through the layers once, when the add-ons are set), and a
 * caller's position p is the cache's virt + p, so attention needs no change: every row
 * attends the cache from 0 to its own position. Adapters act on a sublayer's output before
 * the residual add. Without add-ons the forward is the plain one, bit for bit.
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
    const size_t R = (size_t)s->rows, C = (size_t)c->C, F = (size_t)c->F, T = (size_t)s->T;
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
    m->s.T = c.maxT;
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
    free(m->peft.mem);
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

/* fold the checkpoint's LoRA, DoRA and IA3 add-ons (/peft) into the loaded base weights:
 * they all fold exactly, so the inference path runs them as a plain model */
static int fold_addons(HnEvalModel* m, HnH5* f, const HnPeft* plan) {
    int rc = HN_OK;
    char name[HN_NAME_MAX + 16];
    for (int j = 0; rc == HN_OK && j < plan->n; j++) {
        const HnAddon* a = &plan->a[j];
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
    return rc;
}

static int load_addons(HnEvalModel* m, HnH5* f, const HnPeft* plan);

/* the checkpoint's add-ons (cfg->peft): LoRA, DoRA and IA3 folded into the base, then the
 * prefix, virtual tokens and adapters set on the model */
static int apply_addons(HnEvalModel* m, HnH5* f, const HnConfig* cfg, const char* path) {
    HnPeft plan;
    int rc = hn_peft_plan(&plan, cfg);
    if (rc == HN_OK) rc = fold_addons(m, f, &plan);
    if (rc == HN_OK) rc = load_addons(m, f, &plan);
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
    if (rc == HN_OK) rc = hn_ckpt_open_base(f, ckpt_path, &pair.base);
    if (rc == HN_OK) {
        *m = hn_eval_model_new(&c, max_context, read_ckpt_tensor, &pair);
        if (!*m) rc = HN_ERR;
    }
    if (rc == HN_OK && cfg.peft.methods.n > 0) rc = apply_addons(*m, f, &cfg, ckpt_path);
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
 * already in the cache); kcache, vcache (T, KV); out (n, NH*HS). Row i attends to
 * positions 0..pos+i; query head h reads kv head h / (NH / NKV). */
static void attention_cached(float* out, float* scores, int threads, const float* q, int q_stride,
                             const float* kcache, const float* vcache, int n, int pos, int NH,
                             int NKV, int HS, int T) {
    const int KV = NKV * HS, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)HS);
    if (threads > omp_get_max_threads()) threads = omp_get_max_threads();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < NH; h++) {
            float* att = scores + (size_t)omp_get_thread_num() * T;
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
                         c->NKV, HS, s->T);
}

/* ---- bottleneck adapters ---- */

/* floats of one adapter: down.weight (R, C), down.bias (R), up.weight (C, R), up.bias (C) */
static size_t adapter_floats(int R, int C) {
    return 2 * (size_t)R * C + (size_t)R + (size_t)C;
}

/* The sublayer output sub (n, C) in place, with x (n, C) the stream the sublayer read:
 * Houlsby sub + f(sub), Pfeiffer sub + f(x + sub) (its input made in scratch), parallel
 * sub + scaling f(x); f(h) = up(act(down(h))) with the adapter at w (one layer's) */
static void adapter(HnEvalModel* m, const float* w, float* sub, const float* x, float* scratch,
                    int n) {
    const HnEvalAddons* p = &m->peft;
    const int C = m->config.C, R = p->R, parallel = p->adapter == HN_EVAL_ADAPTER_PARALLEL;
    const float scale = parallel ? p->scaling : 1.0f;
    const float *dw = w, *db = dw + (size_t)R * C, *uw = db + R, *ub = uw + (size_t)C * R;
    float* h = p->hidden;
    const float* in = parallel ? x : sub;
    if (p->adapter == HN_EVAL_ADAPTER_PFEIFFER) {
        const size_t nc = (size_t)n * C;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < nc; i++)
            scratch[i] = x[i] + sub[i];
        in = scratch;
    }
    hn_matmul_forward(h, in, dw, db, n, C, R);
    for (size_t i = 0; i < (size_t)n * R; i++)
        h[i] = hn_peft_activation(p->act, h[i]);
    hn_gemm(0, 1, n, C, R, scale, h, R, uw, R, 1.0f, sub, C);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++)
        for (int c = 0; c < C; c++)
            sub[(size_t)i * C + c] += scale * ub[c];
}

/* layer l's adapter at the attention point (houlsby) or the MLP point, NULL if none */
static const float* adapter_at(const HnEvalModel* m, const float* all, int l) {
    return all ? all + (size_t)l * adapter_floats(m->peft.R, m->config.C) : NULL;
}

/* one GPT-2 block over the n rows of s->x at positions pos..pos+n-1 */
static void gpt2_layer(HnEvalModel* m, int l, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C, F = c->F;
    const size_t CC = (size_t)C * C, CF = (size_t)C * F, T = (size_t)s->T;
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
    if (m->peft.adapter_attn)
        adapter(m, adapter_at(m, m->peft.adapter_attn, l), s->proj, s->x, s->xb, n);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
    hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->ln2w + (size_t)l * C,
                         w->ln2b + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->fch, s->xb, w->fcw + l * CF, w->fcb + (size_t)l * F, n, C, F);
    hn_gelu_forward(s->fch_gelu, s->fch, (size_t)n * F);
    hn_matmul_forward(s->proj, s->fch_gelu, w->fcprojw + l * CF, w->fcprojb + (size_t)l * C, n, F,
                      C);
    if (m->peft.adapter_mlp) /* s->xb, the MLP's normed input, is free by now */
        adapter(m, adapter_at(m, m->peft.adapter_mlp, l), s->proj, s->x, s->xb, n);
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
    float* kcache = s->key_cache + (size_t)l * s->T * KV;
    float* vcache = s->value_cache + (size_t)l * s->T * KV;
    float* k = kcache + (size_t)pos * KV;
    float* v = vcache + (size_t)pos * KV;
    hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->ln1w + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->qkv, s->xb, w->qw + l * CC, NULL, n, C, C);
    hn_matmul_forward(k, s->xb, w->kw + l * CKV, NULL, n, C, KV);
    hn_matmul_forward(v, s->xb, w->vw + l * CKV, NULL, n, C, KV);
    hn_rope_forward(s->qkv, NULL, 1, n, c->NH, HS, C, pos, c->rope_theta);
    hn_rope_forward(k, NULL, 1, n, c->NKV, HS, KV, pos, c->rope_theta);
    attention(m, s->qkv, C, kcache, vcache, n, pos);
    hn_matmul_forward(s->proj, s->atty, w->attow + l * CC, NULL, n, C, C);
    if (m->peft.adapter_attn)
        adapter(m, adapter_at(m, m->peft.adapter_attn, l), s->proj, s->x, s->xb, n);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
    hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->ln2w + (size_t)l * C, n, C, c->eps);
    hn_matmul_forward(s->fch, s->xb, w->gatew + l * CF, NULL, n, C, F);
    hn_matmul_forward(s->up, s->xb, w->fcw + l * CF, NULL, n, C, F);
    hn_swiglu_forward(s->fch_gelu, s->fch, s->up, (size_t)n * F);
    hn_matmul_forward(s->proj, s->fch_gelu, w->fcprojw + l * CF, NULL, n, F, C);
    if (m->peft.adapter_mlp) /* s->xb, the MLP's normed input, is free by now */
        adapter(m, adapter_at(m, m->peft.adapter_mlp, l), s->proj, s->x, s->xb, n);
    hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
}

/* the n <= R rows of s->x at cache positions pos..pos+n-1 through every layer */
static void run_layers(HnEvalModel* m, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    for (int l = 0; l < c->L; l++)
        if (c->arch == HN_EVAL_LLAMA)
            llama_layer(m, l, n, pos);
        else
            gpt2_layer(m, l, n, pos);
}

/* n <= R tokens at the callers' positions pos..pos+n-1 (the cache's virt + pos..) through
 * every layer; leaves the final-normed rows in s->xb, ready for the classifier */
static void forward_block(HnEvalModel* m, const int* tokens, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C;
    pos += m->peft.virt;
    if (c->arch == HN_EVAL_LLAMA) {
        hn_encoder_forward(s->x, tokens, NULL, w->wte, NULL, 1, n, C);
        run_layers(m, n, pos);
        hn_rmsnorm_forward(s->xb, s->rstd, s->x, w->lnfw, n, C, c->eps);
    } else {
        hn_encoder_forward(s->x, tokens, NULL, w->wte, w->wpe + (size_t)pos * C, 1, n, C);
        run_layers(m, n, pos);
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
    const int T = m->s.T, virt = m->peft.virt;
    if (n < 1 || pos < 0 || pos > c->maxT - n) {
        if (virt > 0 && T < c->context)
            return hn_error("positions %d..%d do not fit the context of %d (a cache of %d, "
                            "capped below the model's %d: a larger cap serves more; less %d "
                            "positions of prefix and virtual tokens)",
                            pos, pos + n - 1, c->maxT, T, c->context, virt);
        if (virt > 0)
            return hn_error("positions %d..%d do not fit the context of %d (the model's %d, "
                            "less %d positions of prefix and virtual tokens)",
                            pos, pos + n - 1, c->maxT, T, virt);
        return c->maxT < c->context
                   ? hn_error("positions %d..%d do not fit the context of %d (capped below the "
                              "model's %d: a larger cap serves more)",
                              pos, pos + n - 1, c->maxT, c->context)
                   : hn_error("positions %d..%d do not fit the model's context of %d", pos,
                              pos + n - 1, c->maxT);
    }
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

/* ---- prefix, virtual tokens and adapters ---- */

/* the add-ons' part of the cache: the prefix keys and values (not rotated) at positions
 * 0..Px-1 of every layer, then the virtual tokens run through the layers at Px..virt-1 */
static void prime_cache(HnEvalModel* m) {
    const HnEvalConfig* c = &m->config;
    const HnEvalAddons* p = &m->peft;
    HnEvalState* s = &m->s;
    const size_t KV = dim(c, DKV), cols = 2 * (size_t)c->L * KV, T = (size_t)s->T;
    const int C = c->C;
    for (int l = 0; l < c->L; l++)
        for (int t = 0; t < p->Px; t++) {
            const float* row = p->prefix + (size_t)t * cols;
            memcpy(s->key_cache + ((size_t)l * T + t) * KV, row + 2 * (size_t)l * KV,
                   KV * sizeof(float));
            memcpy(s->value_cache + ((size_t)l * T + t) * KV, row + (2 * (size_t)l + 1) * KV,
                   KV * sizeof(float));
        }
    for (int r0 = 0, rows; r0 < p->Pv; r0 += rows) {
        rows = block_rows(m, r0, p->Pv);
        for (int i = 0; i < rows; i++) {
            const int t = r0 + i;
            const float* e = p->prompt + (size_t)t * C;
            const float* pe = m->w.wpe ? m->w.wpe + (size_t)(p->Px + t) * C : NULL;
            float* x = s->x + (size_t)i * C;
            for (int k = 0; k < C; k++)
                x[k] = e[k] + (pe ? pe[k] : 0.0f);
        }
        run_layers(m, rows, p->Px + r0);
    }
}

/* the checks of hn_eval_model_set_peft, before anything is allocated: sizes, and with rows
 * set the arrays they need */
static int check_peft(const HnEvalModel* m, const HnEvalPeft* e, int rows) {
    const HnEvalConfig* c = &m->config;
    const int Px = e->prefix_len, Pv = e->prompt_len;
    if (Px < 0 || Pv < 0 || e->prefix_hidden < 0 || e->prompt_hidden < 0)
        return hn_error("peft: negative size (prefix %d, projection %d, virtual tokens %d, "
                        "encoder %d)",
                        Px, e->prefix_hidden, Pv, e->prompt_hidden);
    if (Px >= m->s.T || Pv >= m->s.T - Px)
        return hn_error("peft: %d prefix positions and %d virtual tokens leave none of the %d "
                        "positions served to the tokens%s",
                        Px, Pv, m->s.T,
                        m->s.T < c->context ? " (the context is capped: a larger cap serves more)"
                                            : "");
    if (e->prefix_hidden > (1 << 20) || e->prompt_hidden > (1 << 20))
        return hn_error("peft: projection width %d / encoder width %d out of range",
                        e->prefix_hidden, e->prompt_hidden);
    if (rows && Px &&
        (!e->prefix_embed ||
         (e->prefix_hidden && (!e->prefix_w0 || !e->prefix_b0 || !e->prefix_w1 || !e->prefix_b1))))
        return hn_error("peft: prefix rows missing");
    if (rows && Pv &&
        (!e->prompt_embed ||
         (e->prompt_hidden && (!e->prompt_w[0] || !e->prompt_b[0] || !e->prompt_w[1] ||
                               !e->prompt_b[1] || !e->prompt_w[2] || !e->prompt_b[2]))))
        return hn_error("peft: prompt rows missing");
    if (e->adapter == HN_EVAL_ADAPTER_NONE) return HN_OK;
    if (e->adapter != HN_EVAL_ADAPTER_PFEIFFER && e->adapter != HN_EVAL_ADAPTER_HOULSBY &&
        e->adapter != HN_EVAL_ADAPTER_PARALLEL)
        return hn_error("peft: unknown adapter kind %d", (int)e->adapter);
    if (e->adapter_act != HN_ACT_RELU && e->adapter_act != HN_ACT_SWISH &&
        e->adapter_act != HN_ACT_GELU && e->adapter_act != HN_ACT_TANH)
        return hn_error("peft: unknown adapter activation %d", (int)e->adapter_act);
    if (e->adapter_dim < 1 || e->adapter_dim > c->C)
        return hn_error("peft: adapter bottleneck %d (1..channels %d)", e->adapter_dim, c->C);
    if (!isfinite(e->adapter_scaling)) return hn_error("peft: adapter scaling not finite");
    if (rows && (!e->adapter_mlp || (e->adapter == HN_EVAL_ADAPTER_HOULSBY && !e->adapter_attn)))
        return hn_error("peft: adapter rows missing");
    return HN_OK;
}

int hn_eval_model_set_peft(HnEvalModel* m, const HnEvalPeft* peft) {
    static const HnEvalPeft none = {0};
    const HnEvalPeft* e = peft ? peft : &none;
    if (check_peft(m, e, 1) != HN_OK) return HN_ERR;
    const HnEvalConfig* c = &m->config;
    const int C = c->C, L = c->L, Px = e->prefix_len, Pv = e->prompt_len;
    const int on = e->adapter != HN_EVAL_ADAPTER_NONE, R = on ? e->adapter_dim : 0;
    const int houlsby = e->adapter == HN_EVAL_ADAPTER_HOULSBY;
    const size_t KV = dim(c, DKV), cols = 2 * L * KV, A = on ? adapter_floats(R, C) : 0;
    const int Hx = Px ? e->prefix_hidden : 0, Hv = Pv ? e->prompt_hidden : 0;
    const size_t n = (size_t)Px * cols + (size_t)Pv * C + (houlsby ? 2 : 1) * (size_t)L * A +
                     (size_t)m->s.rows * R;
    /* scratch of the folds: the prefix projection's (Px, Hx), the encoder's 2 x (Pv, Hv) */
    const size_t nscratch = (size_t)Px * Hx + 2 * (size_t)Pv * Hv;
    HnEvalAddons p = {.Px = Px, .Pv = Pv, .virt = Px + Pv};
    float* scratch = NULL;
    if (n > 0 && (!(p.mem = malloc(n * sizeof(float))) ||
                  (nscratch && !(scratch = malloc(nscratch * sizeof(float)))))) {
        free(p.mem);
        return hn_error("out of memory: parameter-efficient add-ons");
    }
    float* at = p.mem;
#define TAKE(ptr, numel) (ptr = at, at += (numel))
    if (Px) {
        TAKE(p.prefix, (size_t)Px * cols);
        if (Hx) { /* embed KV wide */
            hn_peft_prefix_project(p.prefix, scratch, e->prefix_embed, e->prefix_w0, e->prefix_b0,
                                   e->prefix_w1, e->prefix_b1, Px, (int)KV, Hx, (int)cols);
        } else {
            memcpy(p.prefix, e->prefix_embed, (size_t)Px * cols * sizeof(float));
        }
    }
    if (Pv) {
        TAKE(p.prompt, (size_t)Pv * C);
        if (Hv) { /* PEFT's prompt encoder: Linear, ReLU, Linear, ReLU, Linear */
            float* h1 = scratch + (size_t)Px * Hx;
            hn_peft_prompt_encode(p.prompt, h1, h1 + (size_t)Pv * Hv, e->prompt_embed, e->prompt_w,
                                  e->prompt_b, Pv, C, Hv);
        } else {
            memcpy(p.prompt, e->prompt_embed, (size_t)Pv * C * sizeof(float));
        }
    }
    if (on) {
        p.adapter = e->adapter;
        p.act = e->adapter_act;
        p.R = R;
        p.scaling = e->adapter_scaling;
        if (houlsby) {
            TAKE(p.adapter_attn, (size_t)L * A);
            memcpy(p.adapter_attn, e->adapter_attn, (size_t)L * A * sizeof(float));
        }
        TAKE(p.adapter_mlp, (size_t)L * A);
        memcpy(p.adapter_mlp, e->adapter_mlp, (size_t)L * A * sizeof(float));
        TAKE(p.hidden, (size_t)m->s.rows * R);
    }
#undef TAKE
    free(scratch);
    free(m->peft.mem);
    m->peft = p;
    m->config.maxT = m->s.T - p.virt;
    prime_cache(m);
    return HN_OK;
}

/* the next numel floats at *at, filled from /peft/<name> unless an earlier read failed */
static const float* read_next(HnH5* f, const char* name, float** at, size_t numel, int* rc) {
    float* dst = *at;
    *at += numel;
    if (*rc == HN_OK) *rc = hn_ckpt_read_group_tensor(f, "peft", name, dst, numel);
    return dst;
}

/* a checkpoint's prefix, prompt / P-tuning and adapter rows (/peft), as its plan names
 * them, set on m */
static int load_addons(HnEvalModel* m, HnH5* f, const HnPeft* plan) {
    const HnEvalConfig* c = &m->config;
    const HnPrefix* px = &plan->prefix;
    const HnPrompt* pr = &plan->prompt;
    const HnAdapters* ad = &plan->adapters;
    if (!px->P && !pr->P && !ad->on) return HN_OK;
    const int L = c->L;
    const size_t C = (size_t)c->C, KV = dim(c, DKV), cols = 2 * (size_t)L * KV;
    HnEvalPeft e = {.prefix_len = px->P,
                    .prefix_hidden = px->P ? px->hidden : 0,
                    .prompt_len = pr->P,
                    .prompt_hidden = pr->P ? pr->hidden : 0};
    if (!ad->on)
        e.adapter = HN_EVAL_ADAPTER_NONE;
    else if (ad->kind == HN_ADAPTER_HOULSBY)
        e.adapter = HN_EVAL_ADAPTER_HOULSBY;
    else if (ad->kind == HN_ADAPTER_PARALLEL)
        e.adapter = HN_EVAL_ADAPTER_PARALLEL;
    else
        e.adapter = HN_EVAL_ADAPTER_PFEIFFER;
    e.adapter_act = ad->act;
    e.adapter_dim = ad->on ? ad->R : 0;
    e.adapter_scaling = ad->scaling;
    /* sizes checked before they become allocations (the config decides them) */
    if (check_peft(m, &e, 0) != HN_OK) return HN_ERR;
    if (px->P && (size_t)px->cols != cols)
        return hn_error("prefix: %d columns, the model has 2 x %d layers x %zu", px->cols, L,
                        dim(c, DKV));
    const size_t Hx = (size_t)e.prefix_hidden, Hv = (size_t)e.prompt_hidden, P = (size_t)px->P,
                 V = (size_t)pr->P, A = ad->on ? adapter_floats(ad->R, (int)C) : 0;
    const size_t n_prefix = P * (Hx ? KV : cols) + (Hx ? Hx * KV + Hx + cols * Hx + cols : 0);
    const size_t n_prompt = V * C + (Hv ? Hv * C + Hv + Hv * Hv + Hv + C * Hv + C : 0);
    const size_t n_adapter = (e.adapter == HN_EVAL_ADAPTER_HOULSBY ? 2 : 1) * (size_t)L * A;
    float* buf = malloc((n_prefix + n_prompt + n_adapter + 1) * sizeof(float));
    if (!buf) return hn_error("out of memory: parameter-efficient add-ons");
    float* at = buf;
    int rc = HN_OK;
    char name[HN_NAME_MAX + 32];
    if (P) {
        e.prefix_embed = read_next(f, "prefix.embed", &at, P * (Hx ? KV : cols), &rc);
        if (Hx) {
            e.prefix_w0 = read_next(f, "prefix.mlp.0.weight", &at, Hx * KV, &rc);
            e.prefix_b0 = read_next(f, "prefix.mlp.0.bias", &at, Hx, &rc);
            e.prefix_w1 = read_next(f, "prefix.mlp.1.weight", &at, cols * Hx, &rc);
            e.prefix_b1 = read_next(f, "prefix.mlp.1.bias", &at, cols, &rc);
        }
    }
    if (V) {
        e.prompt_embed = read_next(f, "prompt.embed", &at, V * C, &rc);
        for (int k = 0; Hv && k < 3; k++) {
            size_t out = k == 2 ? C : Hv, in = k == 0 ? C : Hv;
            snprintf(name, sizeof name, "prompt.mlp.%d.weight", k);
            e.prompt_w[k] = read_next(f, name, &at, out * in, &rc);
            snprintf(name, sizeof name, "prompt.mlp.%d.bias", k);
            e.prompt_b[k] = read_next(f, name, &at, out, &rc);
        }
    }
    if (ad->on) { /* (L, A) per point, each layer's four rows back to back */
        static const char* const part[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
        const size_t R = (size_t)ad->R, numel[4] = {R * C, R, C * R, C};
        for (int pt = e.adapter == HN_EVAL_ADAPTER_HOULSBY ? 0 : 1; pt < 2; pt++) {
            if (pt == 0)
                e.adapter_attn = at;
            else
                e.adapter_mlp = at;
            for (int l = 0; l < L; l++)
                for (int k = 0; k < 4; k++) {
                    snprintf(name, sizeof name, "layers.%d.adapter_%s.%s", l, pt ? "mlp" : "attn",
                             part[k]);
                    read_next(f, name, &at, numel[k], &rc);
                }
        }
    }
    if (rc == HN_OK) rc = hn_eval_model_set_peft(m, &e);
    free(buf);
    return rc;
}
