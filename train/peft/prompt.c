/*
 * Virtual tokens and virtual keys: prompt tuning and P-tuning (rows prepended to the
 * input embeddings) and prefix tuning (rows prepended to every layer's keys and values),
 * with their training-time MLPs. See peft.h for the layouts; PEFT's modules are
 * PromptEmbedding, PromptEncoder (MLP) and PrefixEncoder.
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

int hn_peft_virtual_tokens(const HnPeft* p) {
    return p && p->active ? p->prompt.P : 0;
}

int hn_peft_prefix_length(const HnPeft* p) {
    return p && p->active ? p->prefix.P : 0;
}

void hn_peft_set_prompt_ids(HnPeft* p, const int* ids, int n) {
    p->n_init_ids = n < HN_MAX_LIST ? n : HN_MAX_LIST;
    memcpy(p->init_ids, ids, (size_t)p->n_init_ids * sizeof(int));
}

int hn_peft_alloc_virtual(HnPeft* p) {
    size_t C = (size_t)p->C, n = 0;
    const HnPrefix* px = &p->prefix;
    const HnPrompt* pr = &p->prompt;
    if (px->hidden)
        n +=
            2 * (size_t)px->P * px->cols + 2 * (size_t)px->P * px->hidden + (size_t)px->P * px->dim;
    if (pr->P) n += 3 * (size_t)pr->P * C + 4 * (size_t)pr->P * pr->hidden;
    if (!n) return HN_OK;
    float* m = calloc(n, sizeof(float));
    if (!m) return hn_error("out of memory: prefix / prompt buffers");
    p->virt_mem = m;
    if (px->hidden) {
        p->prefix.kv = m, m += (size_t)px->P * px->cols;
        p->prefix.dkv = m, m += (size_t)px->P * px->cols;
        p->prefix.h = m, m += (size_t)px->P * px->hidden;
        p->prefix_scratch = m, m += (size_t)px->P * (px->hidden + px->dim);
    }
    if (pr->P) {
        p->prompt.emb = m, m += (size_t)pr->P * C;
        p->prompt.demb = m, m += (size_t)pr->P * C;
        p->prompt.h1 = m, m += (size_t)pr->P * pr->hidden;
        p->prompt.h2 = m, m += (size_t)pr->P * pr->hidden;
        p->prompt_scratch = m; /* (P, 2 hidden + C) */
    }
    return HN_OK;
}

/* ---- prompt tuning and P-tuning ---- */

/* y (P, out) = act(x (P, in) W^T + b), act ReLU or none */
static void dense(float* y, const float* x, const float* w, const float* b, int P, int in, int out,
                  int relu) {
    hn_matmul_forward(y, x, w, b, P, in, out);
    if (relu)
        for (size_t i = 0; i < (size_t)P * out; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

void hn_peft_prompt_encode(float* emb, float* h1, float* h2, const float* embed,
                           const float* const w[3], const float* const b[3], int P, int C, int H) {
    dense(h1, embed, w[0], b[0], P, C, H, 1);
    dense(h2, h1, w[1], b[1], P, H, H, 1);
    dense(emb, h2, w[2], b[2], P, H, C, 0);
}

void hn_peft_prefix_project(float* kv, float* h, const float* embed, const float* w0,
                            const float* b0, const float* w1, const float* b1, int P, int D, int H,
                            int cols) {
    hn_matmul_forward(h, embed, w0, b0, P, D, H);
    for (size_t i = 0; i < (size_t)P * H; i++)
        h[i] = tanhf(h[i]);
    hn_matmul_forward(kv, h, w1, b1, P, H, cols);
}

void hn_peft_embed_forward(HnPeft* p, float* out, const int* tokens, const float* wte,
                           const float* wpe, int pos0, int B, int T, int C) {
    HnPrompt* pr = &p->prompt;
    int P = pr->P, Tt = P + T;
    const float* emb = row_of(p, pr->row_embed);
    if (pr->hidden) { /* PEFT's PromptEncoder: Linear, ReLU, Linear, ReLU, Linear */
        const float* w[3] = {row_of(p, pr->row_w[0]), row_of(p, pr->row_w[1]),
                             row_of(p, pr->row_w[2])};
        const float* b[3] = {row_of(p, pr->row_b[0]), row_of(p, pr->row_b[1]),
                             row_of(p, pr->row_b[2])};
        hn_peft_prompt_encode(pr->emb, pr->h1, pr->h2, emb, w, b, P, C, pr->hidden);
        emb = pr->emb;
    }
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tt; t++) {
            float* o = out + ((size_t)b * Tt + t) * C;
            const float* src =
                t < P ? emb + (size_t)t * C : wte + (size_t)tokens[(size_t)b * T + t - P] * C;
            const float* pos = wpe ? wpe + (size_t)(pos0 + t) * C : NULL;
            for (int c = 0; c < C; c++)
                o[c] = src[c] + (pos ? pos[c] : 0.0f);
        }
}

/* dx (P, in) = dy W; dW += dy^T x; db += column sums of dy */
static void dense_back(float* dx, float* dw, float* db, const float* dy, const float* x,
                       const float* w, int P, int in, int out) {
    hn_matmul_backward(dx, dw, db, dy, x, w, P, in, out);
}

void hn_peft_embed_backward(HnPeft* p, const float* dout, int B, int T, int C) {
    HnPrompt* pr = &p->prompt;
    int P = pr->P, Tt = P + T;
    float* demb = pr->hidden ? pr->demb : grad_of(p, pr->row_embed);
    if (pr->hidden) memset(demb, 0, (size_t)P * C * sizeof(float));
        /* the virtual rows' gradients summed over the batch, in batch order */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < P; t++)
        for (int b = 0; b < B; b++) {
            const float* d = dout + ((size_t)b * Tt + t) * C;
            for (int c = 0; c < C; c++)
                demb[(size_t)t * C + c] += d[c];
        }
    if (!pr->hidden) return;
    int H = pr->hidden;
    float *d2 = p->prompt_scratch, *d1 = d2 + (size_t)P * H;
    dense_back(d2, grad_of(p, pr->row_w[2]), grad_of(p, pr->row_b[2]), demb, pr->h2,
               row_of(p, pr->row_w[2]), P, H, C);
    for (size_t i = 0; i < (size_t)P * H; i++)
        d2[i] = pr->h2[i] > 0.0f ? d2[i] : 0.0f;
    dense_back(d1, grad_of(p, pr->row_w[1]), grad_of(p, pr->row_b[1]), d2, pr->h1,
               row_of(p, pr->row_w[1]), P, H, H);
    for (size_t i = 0; i < (size_t)P * H; i++)
        d1[i] = pr->h1[i] > 0.0f ? d1[i] : 0.0f;
    /* the embedding's own gradient accumulates: d0 = d1 W0, added */
    float* de = d1 + (size_t)P * H;
    dense_back(de, grad_of(p, pr->row_w[0]), grad_of(p, pr->row_b[0]), d1, row_of(p, pr->row_embed),
               row_of(p, pr->row_w[0]), P, C, H);
    float* ge = grad_of(p, pr->row_embed);
    for (size_t i = 0; i < (size_t)P * C; i++)
        ge[i] += de[i];
}

/* ---- prefix tuning ---- */

const float* hn_peft_prefix_begin(HnPeft* p) {
    HnPrefix* px = &p->prefix;
    if (!p->active || !px->P) return NULL;
    if (!px->hidden) return row_of(p, px->row_embed);
    /* PEFT's PrefixEncoder with projection: Linear, tanh, Linear */
    const int P = px->P;
    hn_peft_prefix_project(px->kv, px->h, row_of(p, px->row_embed), row_of(p, px->row_w0),
                           row_of(p, px->row_b0), row_of(p, px->row_w1), row_of(p, px->row_b1), P,
                           px->dim, px->hidden, px->cols);
    memset(px->dkv, 0, (size_t)P * px->cols * sizeof(float));
    return px->kv;
}

float* hn_peft_prefix_grad(HnPeft* p) {
    HnPrefix* px = &p->prefix;
    if (!p->active || !px->P) return NULL;
    return px->hidden ? px->dkv : grad_of(p, px->row_embed);
}

void hn_peft_prefix_end(HnPeft* p) {
    HnPrefix* px = &p->prefix;
    if (!p->active || !px->P || !px->hidden) return;
    int P = px->P, H = px->hidden, D = px->dim;
    float *dh = p->prefix_scratch, *de = dh + (size_t)P * H;
    hn_matmul_backward(dh, grad_of(p, px->row_w1), grad_of(p, px->row_b1), px->dkv, px->h,
                       row_of(p, px->row_w1), P, H, px->cols);
    for (size_t i = 0; i < (size_t)P * H; i++)
        dh[i] *= 1.0f - px->h[i] * px->h[i];
    hn_matmul_backward(de, grad_of(p, px->row_w0), grad_of(p, px->row_b0), dh,
                       row_of(p, px->row_embed), row_of(p, px->row_w0), P, D, H);
    float* ge = grad_of(p, px->row_embed);
    for (size_t i = 0; i < (size_t)P * D; i++)
        ge[i] += de[i];
}

/* ---- the values inference uses ---- */

static const float* table_row(const HnParamTable* t, int row) {
    return t->data + t->rows[row].offset;
}

int hn_peft_prefix_values(const HnPeft* p, const HnParamTable* t, float* kv) {
    const HnPrefix* px = &p->prefix;
    if (!px->hidden) {
        memcpy(kv, table_row(t, px->row_embed), (size_t)px->P * px->cols * sizeof(float));
        return HN_OK;
    }
    float* h = malloc((size_t)px->P * px->hidden * sizeof(float));
    if (!h) return hn_error("out of memory: the prefix projection");
    hn_peft_prefix_project(kv, h, table_row(t, px->row_embed), table_row(t, px->row_w0),
                           table_row(t, px->row_b0), table_row(t, px->row_w1),
                           table_row(t, px->row_b1), px->P, px->dim, px->hidden, px->cols);
    free(h);
    return HN_OK;
}

int hn_peft_prompt_values(const HnPeft* p, const HnParamTable* t, float* emb) {
    const HnPrompt* pr = &p->prompt;
    const int P = pr->P, C = p->C, H = pr->hidden;
    if (!H) {
        memcpy(emb, table_row(t, pr->row_embed), (size_t)P * C * sizeof(float));
        return HN_OK;
    }
    float* h1 = malloc(2 * (size_t)P * H * sizeof(float));
    if (!h1) return hn_error("out of memory: the P-tuning encoder");
    const float* w[3] = {table_row(t, pr->row_w[0]), table_row(t, pr->row_w[1]),
                         table_row(t, pr->row_w[2])};
    const float* b[3] = {table_row(t, pr->row_b[0]), table_row(t, pr->row_b[1]),
                         table_row(t, pr->row_b[2])};
    hn_peft_prompt_encode(emb, h1, h1 + (size_t)P * H, table_row(t, pr->row_embed), w, b, P, C, H);
    free(h1);
    return HN_OK;
}
