/*
 * GPT-2 inference with a KV cache: the weights from a checkpoint (or any tensor source),
 * then one forward for n new tokens that reads like the math, one op call a line. The
 * block is pre-LN, as in training:
 *   x += attn_o(attention(qkv(ln1(x)))); x += down(gelu(up(ln2(x)))); logits = lnf(x) wte^T
 * The ops are kernels/ops.h's (the same the trainer runs); only attention is this file's
 * own, because it reads keys and values from the cache instead of from the current rows.
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
#include "kernels/cpu/fastmath.h"
#include "kernels/ops.h"

int hn_eval_padded_vocab(int V) {
    return (V + 127) / 128 * 128;
}

/* ---- weights ---- */

/* the rows of one layer, in the training table's order: name suffix, where the stacked
 * tensor lives in HnEvalWeights, and its size per layer in units of C (rows x cols) */
static const struct {
    const char* suffix;
    size_t field;   /* offsetof(HnEvalWeights, ...) */
    int rows, cols; /* cols 0: a vector of rows*C */
} LAYER_ROWS[] = {
    {"attn_norm.weight", offsetof(HnEvalWeights, ln1w), 1, 0},
    {"attn_norm.bias", offsetof(HnEvalWeights, ln1b), 1, 0},
    {"attn.qkv.weight", offsetof(HnEvalWeights, qkvw), 3, 1},
    {"attn.qkv.bias", offsetof(HnEvalWeights, qkvb), 3, 0},
    {"attn.o.weight", offsetof(HnEvalWeights, attow), 1, 1},
    {"attn.o.bias", offsetof(HnEvalWeights, attob), 1, 0},
    {"mlp_norm.weight", offsetof(HnEvalWeights, ln2w), 1, 0},
    {"mlp_norm.bias", offsetof(HnEvalWeights, ln2b), 1, 0},
    {"mlp.up.weight", offsetof(HnEvalWeights, fcw), 4, 1},
    {"mlp.up.bias", offsetof(HnEvalWeights, fcb), 4, 0},
    {"mlp.down.weight", offsetof(HnEvalWeights, fcprojw), 1, 4},
    {"mlp.down.bias", offsetof(HnEvalWeights, fcprojb), 1, 0},
};
#define NLAYER_ROWS ((int)(sizeof LAYER_ROWS / sizeof LAYER_ROWS[0]))

static float** layer_field(HnEvalWeights* w, int k) {
    return (float**)((char*)w + LAYER_ROWS[k].field);
}

static size_t layer_row_numel(const HnEvalConfig* c, int k) {
    size_t C = (size_t)c->C;
    return LAYER_ROWS[k].rows * C * (LAYER_ROWS[k].cols ? LAYER_ROWS[k].cols * C : 1);
}

/* slice one buffer into the weights (the stacked tensors one after another); returns the
 * floats needed, so the first call (with base NULL) sizes the buffer */
static size_t bind_weights(HnEvalWeights* w, const HnEvalConfig* c, float* base) {
    size_t C = (size_t)c->C, used = 0;
#define TAKE(ptr, numel) (ptr = base ? base + used : NULL, used += (numel))
    TAKE(w->wte, (size_t)c->Vp * C);
    TAKE(w->wpe, (size_t)c->maxT * C);
    for (int k = 0; k < NLAYER_ROWS; k++)
        TAKE(*layer_field(w, k), layer_row_numel(c, k) * (size_t)c->L);
    TAKE(w->lnfw, C);
    TAKE(w->lnfb, C);
#undef TAKE
    return used;
}

static int load_weights(HnEvalModel* m, HnEvalTensorFn fn, void* ctx) {
    const HnEvalConfig* c = &m->config;
    HnEvalWeights* w = &m->w;
    size_t C = (size_t)c->C;
    char name[96];
    if (fn(ctx, "tok_embed.weight", w->wte, (size_t)c->Vp * C) != HN_OK) return HN_ERR;
    if (fn(ctx, "pos_embed.weight", w->wpe, (size_t)c->maxT * C) != HN_OK) return HN_ERR;
    for (int l = 0; l < c->L; l++)
        for (int k = 0; k < NLAYER_ROWS; k++) {
            size_t numel = layer_row_numel(c, k);
            snprintf(name, sizeof name, "layers.%d.%s", l, LAYER_ROWS[k].suffix);
            if (fn(ctx, name, *layer_field(w, k) + (size_t)l * numel, numel) != HN_OK)
                return HN_ERR;
        }
    if (fn(ctx, "final_norm.weight", w->lnfw, C) != HN_OK) return HN_ERR;
    return fn(ctx, "final_norm.bias", w->lnfb, C);
}

/* ---- run state ---- */

/* prefill rows per attention block: one block's scores are PREFILL_ROWS x maxT floats */
#define PREFILL_ROWS 256

static size_t bind_state(HnEvalState* s, const HnEvalConfig* c, float* base) {
    size_t C = (size_t)c->C, T = (size_t)c->maxT, used = 0;
#define TAKE(ptr, numel) (ptr = base ? base + used : NULL, used += (numel))
    TAKE(s->x, T * C);
    TAKE(s->xb, T * C);
    TAKE(s->qkv, T * 3 * C);
    TAKE(s->atty, T * C);
    TAKE(s->proj, T * C);
    TAKE(s->fch, T * 4 * C);
    TAKE(s->fch_gelu, T * 4 * C);
    TAKE(s->mean, T);
    TAKE(s->rstd, T);
    TAKE(s->scores, (size_t)s->threads * T);
    TAKE(s->block, (size_t)PREFILL_ROWS * T);
    TAKE(s->logits, T * (size_t)c->Vp);
    TAKE(s->key_cache, (size_t)c->L * T * C);
    TAKE(s->value_cache, (size_t)c->L * T * C);
#undef TAKE
    return used;
}

/* sizes are checked before they become allocations: a config read from a file decides them */
static int check_config(const HnEvalConfig* c) {
    if (c->L < 1 || c->C < 1 || c->NH < 1 || c->V < 1 || c->maxT < 1)
        return hn_error("bad model shape: layers %d, channels %d, heads %d, vocab %d, context %d "
                        "(all must be positive)",
                        c->L, c->C, c->NH, c->V, c->maxT);
    if (c->C % c->NH != 0)
        return hn_error("channels (%d) must be divisible by heads (%d)", c->C, c->NH);
    if (c->L > 4096 || c->C > 65536 || c->V > (1 << 24) || c->maxT > (1 << 20))
        return hn_error("model shape out of range: layers %d, channels %d, vocab %d, context %d",
                        c->L, c->C, c->V, c->maxT);
    if (!(c->eps > 0.0f)) return hn_error("bad LayerNorm epsilon %g", (double)c->eps);
    return HN_OK;
}

HnEvalModel* hn_eval_model_new(const HnEvalConfig* cfg, HnEvalTensorFn fn, void* ctx) {
    if (check_config(cfg) != HN_OK) return NULL;
    HnEvalModel* m = calloc(1, sizeof *m);
    if (!m) {
        hn_error("out of memory");
        return NULL;
    }
    m->config = *cfg;
    m->config.Vp = hn_eval_padded_vocab(cfg->V);
    m->nparams = bind_weights(&m->w, &m->config, NULL);
    m->s.threads = omp_get_max_threads();
    size_t nstate = bind_state(&m->s, &m->config, NULL);
    m->params = malloc(m->nparams * sizeof(float));
    m->state_mem = calloc(nstate, sizeof(float));
    if (!m->params || !m->state_mem) {
        hn_error("out of memory: %zu MB of weights and %zu MB of run state", m->nparams >> 18,
                 nstate >> 18);
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

static int read_ckpt_tensor(void* ctx, const char* name, float* dst, size_t numel) {
    return hn_ckpt_read_tensor((HnH5*)ctx, name, dst, numel);
}

int hn_eval_model_open(const char* ckpt_path, HnEvalModel** m, HnTokenizer** tok) {
    *m = NULL;
    *tok = NULL;
    char* yaml = NULL;
    HnH5* f = hn_ckpt_open(ckpt_path, &yaml);
    if (!f) return HN_ERR;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    int rc = hn_config_load_text(&cfg, yaml, ckpt_path);
    free(yaml);
    if (rc == HN_OK && cfg.model.vocab < 1)
        rc = hn_error("%s: its config has no model.vocab", ckpt_path);
    if (rc == HN_OK) {
        HnEvalConfig c = {.L = cfg.model.layers,
                          .C = cfg.model.channels,
                          .NH = cfg.model.heads,
                          .V = cfg.model.vocab,
                          .maxT = cfg.model.context,
                          .eps = cfg.model.norm_eps};
        *m = hn_eval_model_new(&c, read_ckpt_tensor, f);
        if (!*m) rc = HN_ERR;
    }
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(f, tok);
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
 * qkv (n, 3C) holds the new rows' q (their k and v are already in the cache);
 * kcache, vcache (maxT, C); out (n, C). Row i attends to positions 0..pos+i. */
static void attention_cached(float* out, float* scores, int threads, const float* qkv,
                             const float* kcache, const float* vcache, int n, int pos, int C,
                             int NH, int maxT) {
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    if (threads > omp_get_max_threads()) threads = omp_get_max_threads();
#pragma omp parallel for collapse(2) schedule(dynamic, 1) num_threads(threads)
    for (int i = 0; i < n; i++)
        for (int h = 0; h < NH; h++) {
            float* att = scores + (size_t)omp_get_thread_num() * maxT;
            const float* q = qkv + (size_t)i * 3 * C + h * HS;
            const int len = pos + i + 1;
            float maxv = -INFINITY;
            for (int t = 0; t < len; t++) {
                att[t] = dot(q, kcache + (size_t)t * C + h * HS, HS) * scale;
                maxv = att[t] > maxv ? att[t] : maxv;
            }
            for (int t = 0; t < len; t++)
                att[t] = hn_fast_expf(att[t] - maxv);
            const float inv = 1.0f / sum(att, len);
            float* o = out + (size_t)i * C + h * HS;
            for (int d = 0; d < HS; d++)
                o[d] = 0.0f;
            for (int t = 0; t < len; t++) {
                const float a = att[t] * inv;
                const float* v = vcache + (size_t)t * C + h * HS;
                for (int d = 0; d < HS; d++)
                    o[d] = fmaf(a, v[d], o[d]);
            }
        }
}

/* The same attention for many new rows at once (prefill), as GEMMs per head and block of
 * rows: scores = q k^T (scaled), causal softmax, out = scores v. Rows attend to positions
 * 0..pos+i exactly as in attention_cached; only the order of summation differs. */
static void attention_prefill(float* out, float* block, const float* qkv, const float* kcache,
                              const float* vcache, int n, int pos, int C, int NH) {
    const int HS = C / NH;
    const float scale = 1.0f / sqrtf((float)HS);
    for (int r0 = 0; r0 < n; r0 += PREFILL_ROWS) {
        const int rows = n - r0 < PREFILL_ROWS ? n - r0 : PREFILL_ROWS;
        const int len = pos + r0 + rows; /* keys the block's last row sees */
        for (int h = 0; h < NH; h++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, len, HS, scale,
                        qkv + (size_t)r0 * 3 * C + h * HS, 3 * C, kcache + h * HS, C, 0.0f, block,
                        len);
#pragma omp parallel for schedule(static)
            for (int i = 0; i < rows; i++) {
                float* att = block + (size_t)i * len;
                const int seen = pos + r0 + i + 1;
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, HS, len, 1.0f, block, len,
                        vcache + h * HS, C, 0.0f, out + (size_t)r0 * C + h * HS, C);
        }
    }
}

float* hn_eval_forward(HnEvalModel* m, const int* tokens, int n, int pos) {
    const HnEvalConfig* c = &m->config;
    const HnEvalWeights* w = &m->w;
    HnEvalState* s = &m->s;
    const int C = c->C, L = c->L;
    const size_t CC = (size_t)C * C, T = (size_t)c->maxT;
    if (n < 1 || pos < 0 || pos > c->maxT - n) {
        hn_error("positions %d..%d do not fit the model's context of %d", pos, pos + n - 1,
                 c->maxT);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->V) {
            hn_error("token id %d is not below the model's vocabulary %d", tokens[i], c->V);
            return NULL;
        }

    hn_encoder_forward(s->x, tokens, w->wte, w->wpe + (size_t)pos * C, 1, n, C);
    for (int l = 0; l < L; l++) {
        float* kcache = s->key_cache + (size_t)l * T * C;
        float* vcache = s->value_cache + (size_t)l * T * C;
        hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->ln1w + (size_t)l * C,
                             w->ln1b + (size_t)l * C, n, C, c->eps);
        hn_matmul_forward(s->qkv, s->xb, w->qkvw + l * 3 * CC, w->qkvb + (size_t)l * 3 * C, n, C,
                          3 * C);
        for (int i = 0; i < n; i++) { /* the new rows' k and v join the cache */
            memcpy(kcache + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + C,
                   C * sizeof(float));
            memcpy(vcache + (size_t)(pos + i) * C, s->qkv + (size_t)i * 3 * C + 2 * C,
                   C * sizeof(float));
        }
        if (n >= 16)
            attention_prefill(s->atty, s->block, s->qkv, kcache, vcache, n, pos, C, c->NH);
        else
            attention_cached(s->atty, s->scores, s->threads, s->qkv, kcache, vcache, n, pos, C,
                             c->NH, c->maxT);
        hn_matmul_forward(s->proj, s->atty, w->attow + l * CC, w->attob + (size_t)l * C, n, C, C);
        hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
        hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->ln2w + (size_t)l * C,
                             w->ln2b + (size_t)l * C, n, C, c->eps);
        hn_matmul_forward(s->fch, s->xb, w->fcw + l * 4 * CC, w->fcb + (size_t)l * 4 * C, n, C,
                          4 * C);
        hn_gelu_forward(s->fch_gelu, s->fch, (size_t)n * 4 * C);
        hn_matmul_forward(s->proj, s->fch_gelu, w->fcprojw + l * 4 * CC, w->fcprojb + (size_t)l * C,
                          n, 4 * C, C);
        hn_residual_forward(s->x, s->proj, s->x, (size_t)n * C);
    }
    hn_layernorm_forward(s->xb, s->mean, s->rstd, s->x, w->lnfw, w->lnfb, n, C, c->eps);
    hn_matmul_forward(s->logits, s->xb, w->wte, NULL, n, C, c->Vp);
    return s->logits;
}
