/*
 * The GPT-2 and Llama family models on the CUDA backend: train/model.c's forward and
 * backward, op for op and in the same order, with kernels/cuda/ops_cuda.h in place of
 * kernels/ops.h, and train/optim.c's grad norm and AdamW step over the same table rows.
 * Read model.c beside it: each function here is its namesake there. What differs is only
 * what the device forces: attention keeps lse instead of the probabilities, every op can
 * fail (HN_ERR with an hn_error() line), and tokens and targets are uploaded first.
 * A CPU-only build compiles this file to nothing.
 */
#ifdef HONE_HAVE_CUDA

#include "train/model_cuda.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/cuda/fill.h"
#include "kernels/cuda/ops_cuda.h"

/* in a function returning int: pass an HN_ERR (and its error line) up */
#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((call) != HN_OK) return HN_ERR;                                                        \
    } while (0)

/* the device address of a host tensor: the same offset from the start of the table */
static float* rebase(const float* p, const float* host_base, float* dev_base) {
    return p ? dev_base + (p - host_base) : NULL;
}

/* point t at dev_base the way host points at host_base (HnLayerTensors holds only float*) */
static int bind_device_tensors(HnTensors* t, const HnTensors* host, const float* host_base,
                               float* dev_base, int L) {
    t->wte = rebase(host->wte, host_base, dev_base);
    t->wpe = rebase(host->wpe, host_base, dev_base);
    t->lnfw = rebase(host->lnfw, host_base, dev_base);
    t->lnfb = rebase(host->lnfb, host_base, dev_base);
    t->lm_head = rebase(host->lm_head, host_base, dev_base);
    if (!(t->layers = calloc((size_t)L, sizeof(HnLayerTensors)))) return hn_error("out of memory");
    enum { NPTR = sizeof(HnLayerTensors) / sizeof(float*) };
    for (int l = 0; l < L; l++) {
        float* const* src = (float* const*)&host->layers[l];
        float** dst = (float**)&t->layers[l];
        for (int k = 0; k < NPTR; k++)
            dst[k] = rebase(src[k], host_base, dev_base);
    }
    return HN_OK;
}

int hn_cuda_model_create(HnCudaModel* g, const HnModel* host, int maxB, int maxT) {
    memset(g, 0, sizeof *g);
    g->cfg = host->cfg;
    g->table = &host->params;
    const HnModelConfig* c = &g->cfg;
    if (maxT > c->maxT)
        return hn_error("sequence length %d is longer than the model's context %d", maxT, c->maxT);
    size_t P = host->params.numel * sizeof(float);
    if (!(g->params = hn_cuda_alloc(P)) || !(g->grads = hn_cuda_alloc(P)) ||
        !(g->m = hn_cuda_alloc(P)) || !(g->v = hn_cuda_alloc(P)))
        return HN_ERR;
    TRY(hn_cuda_zero(g->params, host->params.numel));
    TRY(hn_cuda_zero(g->grads, host->params.numel));
    TRY(hn_cuda_zero(g->m, host->params.numel));
    TRY(hn_cuda_zero(g->v, host->params.numel));
    TRY(bind_device_tensors(&g->w, &host->w, host->params.data, g->params, c->L));
    TRY(bind_device_tensors(&g->g, &host->w, host->params.data, g->grads, c->L));

    g->maxB = maxB;
    g->maxT = maxT;
    size_t N = (size_t)maxB * maxT;
    if (!(g->tokens = hn_cuda_alloc(N * sizeof(int))) ||
        !(g->targets = hn_cuda_alloc(N * sizeof(int))))
        return HN_ERR;
    if (!(g->act.layer = calloc((size_t)c->L, sizeof(HnLayerActs))))
        return hn_error("out of memory");
    /* model.c's activation layout, with the attention log-sum-exp (maxB * maxT * NH) in
     * place of the probabilities (maxB * NH * maxT^2) */
    size_t lse = N * (size_t)c->NH;
    size_t total = hn_model_layout_activations(&g->act, c, maxB, maxT, lse, NULL);
    if (!(g->act_mem = hn_cuda_alloc(total * sizeof(float)))) return HN_ERR;
    hn_model_layout_activations(&g->act, c, maxB, maxT, lse, g->act_mem);
    return hn_cuda_sync();
}

void hn_cuda_model_free(HnCudaModel* g) {
    hn_cuda_free(g->params);
    hn_cuda_free(g->grads);
    hn_cuda_free(g->m);
    hn_cuda_free(g->v);
    hn_cuda_free(g->tokens);
    hn_cuda_free(g->targets);
    hn_cuda_free(g->act_mem);
    free(g->w.layers);
    free(g->g.layers);
    free(g->act.layer);
    memset(g, 0, sizeof *g);
}

int hn_cuda_model_load(HnCudaModel* g, const float* params, const float* m, const float* v) {
    size_t n = g->table->numel, bytes = n * sizeof(float);
    TRY(hn_cuda_upload(g->params, params, bytes));
    if (m) TRY(hn_cuda_upload(g->m, m, bytes));
    if (v) TRY(hn_cuda_upload(g->v, v, bytes));
    TRY(hn_cuda_zero(g->grads, n));
    return hn_cuda_sync();
}

int hn_cuda_model_store(const HnCudaModel* g, float* params, float* m, float* v) {
    size_t bytes = g->table->numel * sizeof(float);
    TRY(hn_cuda_download(params, g->params, bytes));
    if (m) TRY(hn_cuda_download(m, g->m, bytes));
    if (v) TRY(hn_cuda_download(v, g->v, bytes));
    return HN_OK;
}

int hn_cuda_model_zero_grad(HnCudaModel* g) {
    return hn_cuda_zero(g->grads, g->table->numel);
}

/* ---- one block, forward ---- */

static int gpt2_block_forward(HnCudaModel* g, int l, const float* residual, int B, int T) {
    const HnModelConfig* c = &g->cfg;
    const HnLayerTensors* lw = &g->w.layers[l];
    HnLayerActs* a = &g->act.layer[l];
    int C = c->C, N = B * T, HS = C / c->NH;
    TRY(hn_cuda_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, residual, lw->ln1w, lw->ln1b, N,
                                  C, c->eps));
    TRY(hn_cuda_matmul_forward(a->qkv, a->ln1, lw->qkvw, lw->qkvb, N, C, 3 * C));
    TRY(hn_cuda_attention_forward(a->atty, a->att, a->qkv, a->qkv + C, a->qkv + 2 * C, 3 * C, 3 * C,
                                  B, T, c->NH, c->NH, HS));
    TRY(hn_cuda_matmul_forward(a->res2, a->atty, lw->attow, lw->attob, N, C, C));
    TRY(hn_cuda_residual_forward(a->res2, a->res2, residual, (size_t)N * C));
    TRY(hn_cuda_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, lw->ln2w, lw->ln2b, N,
                                  C, c->eps));
    TRY(hn_cuda_matmul_forward(a->fch, a->ln2, lw->fcw, lw->fcb, N, C, c->F));
    TRY(hn_cuda_gelu_forward(a->fch_gelu, a->fch, (size_t)N * c->F));
    TRY(hn_cuda_matmul_forward(a->res3, a->fch_gelu, lw->fcprojw, lw->fcprojb, N, c->F, C));
    TRY(hn_cuda_residual_forward(a->res3, a->res3, a->res2, (size_t)N * C));
    return HN_OK;
}

static int llama_block_forward(HnCudaModel* g, int l, const float* residual, int B, int T) {
    const HnModelConfig* c = &g->cfg;
    const HnLayerTensors* lw = &g->w.layers[l];
    HnLayerActs* a = &g->act.layer[l];
    int C = c->C, N = B * T, HS = C / c->NH, Q = c->NH * HS, KV = c->NKV * HS;
    TRY(hn_cuda_rmsnorm_forward(a->ln1, a->ln1_rstd, residual, lw->ln1w, N, C, c->eps));
    TRY(hn_cuda_matmul_forward(a->q, a->ln1, lw->qw, NULL, N, C, Q));
    TRY(hn_cuda_matmul_forward(a->k, a->ln1, lw->kw, NULL, N, C, KV));
    TRY(hn_cuda_matmul_forward(a->v, a->ln1, lw->vw, NULL, N, C, KV));
    TRY(hn_cuda_rope_forward(a->q, B, T, c->NH, HS, Q, 0, c->rope_theta));
    TRY(hn_cuda_rope_forward(a->k, B, T, c->NKV, HS, KV, 0, c->rope_theta));
    TRY(hn_cuda_attention_forward(a->atty, a->att, a->q, a->k, a->v, Q, KV, B, T, c->NH, c->NKV,
                                  HS));
    TRY(hn_cuda_matmul_forward(a->res2, a->atty, lw->attow, NULL, N, Q, C));
    TRY(hn_cuda_residual_forward(a->res2, a->res2, residual, (size_t)N * C));
    TRY(hn_cuda_rmsnorm_forward(a->ln2, a->ln2_rstd, a->res2, lw->ln2w, N, C, c->eps));
    TRY(hn_cuda_matmul_forward(a->fch, a->ln2, lw->gatew, NULL, N, C, c->F));
    TRY(hn_cuda_matmul_forward(a->up, a->ln2, lw->fcw, NULL, N, C, c->F));
    TRY(hn_cuda_swiglu_forward(a->fch_gelu, a->fch, a->up, (size_t)N * c->F));
    TRY(hn_cuda_matmul_forward(a->res3, a->fch_gelu, lw->fcprojw, NULL, N, c->F, C));
    TRY(hn_cuda_residual_forward(a->res3, a->res3, a->res2, (size_t)N * C));
    return HN_OK;
}

int hn_cuda_model_forward(HnCudaModel* g, const int* tokens, const int* targets, int B, int T,
                          float grad_scale, double* loss_sum) {
    const HnModelConfig* c = &g->cfg;
    const HnTensors* w = &g->w;
    int C = c->C, N = B * T, llama = c->arch == HN_ARCH_LLAMA;
    *loss_sum = 0.0;
    if (B > g->maxB || T > g->maxT)
        return hn_error("batch %d x %d is larger than the device model's %d x %d", B, T, g->maxB,
                        g->maxT);
    g->B = B;
    g->T = T;
    TRY(hn_cuda_upload(g->tokens, tokens, (size_t)N * sizeof(int)));
    if (targets) TRY(hn_cuda_upload(g->targets, targets, (size_t)N * sizeof(int)));

    TRY(hn_cuda_encoder_forward(g->act.encoded, g->tokens, w->wte, w->wpe, B, T, C));
    const float* residual = g->act.encoded;
    for (int l = 0; l < c->L; l++) {
        if (llama)
            TRY(llama_block_forward(g, l, residual, B, T));
        else
            TRY(gpt2_block_forward(g, l, residual, B, T));
        residual = g->act.layer[l].res3;
    }
    if (llama)
        TRY(hn_cuda_rmsnorm_forward(g->act.lnf, g->act.lnf_rstd, residual, w->lnfw, N, C, c->eps));
    else
        TRY(hn_cuda_layernorm_forward(g->act.lnf, g->act.lnf_mean, g->act.lnf_rstd, residual,
                                      w->lnfw, w->lnfb, N, C, c->eps));
    TRY(hn_cuda_matmul_forward(g->act.logits, g->act.lnf, w->lm_head, NULL, N, C, c->Vp));
    if (!targets) return HN_OK;
    return hn_cuda_crossentropy_forward(g->act.logits, g->act.losses, g->targets, N, c->V, c->Vp,
                                        grad_scale, loss_sum);
}

/* ---- one block, backward: g->act.dres holds d(res3) on entry and d(residual) on exit ---- */

static int gpt2_block_backward(HnCudaModel* g, int l, const float* residual, int B, int T) {
    const HnModelConfig* c = &g->cfg;
    const HnLayerTensors* lw = &g->w.layers[l];
    const HnLayerTensors* lg = &g->g.layers[l];
    HnLayerActs* a = &g->act.layer[l];
    int C = c->C, N = B * T, F = c->F, HS = C / c->NH;
    float *dq = g->act.dqkv, *dk = dq + C, *dv = dq + 2 * C;
    TRY(hn_cuda_matmul_backward(g->act.dbig, lg->fcprojw, lg->fcprojb, g->act.dres, a->fch_gelu,
                                lw->fcprojw, N, F, C));
    TRY(hn_cuda_gelu_backward(g->act.dbig, a->fch, g->act.dbig, (size_t)N * F));
    TRY(hn_cuda_matmul_backward(g->act.dln, lg->fcw, lg->fcb, g->act.dbig, a->ln2, lw->fcw, N, C,
                                F));
    TRY(hn_cuda_layernorm_backward(g->act.dres, lg->ln2w, lg->ln2b, g->act.dln, a->res2, lw->ln2w,
                                   a->ln2_mean, a->ln2_rstd, N, C));
    TRY(hn_cuda_matmul_backward(g->act.datty, lg->attow, lg->attob, g->act.dres, a->atty, lw->attow,
                                N, C, C));
    TRY(hn_cuda_attention_backward(dq, dk, dv, g->act.datty, a->atty, a->att, a->qkv, a->qkv + C,
                                   a->qkv + 2 * C, 3 * C, 3 * C, B, T, c->NH, c->NH, HS));
    TRY(hn_cuda_matmul_backward(g->act.dln, lg->qkvw, lg->qkvb, g->act.dqkv, a->ln1, lw->qkvw, N, C,
                                3 * C));
    TRY(hn_cuda_layernorm_backward(g->act.dres, lg->ln1w, lg->ln1b, g->act.dln, residual, lw->ln1w,
                                   a->ln1_mean, a->ln1_rstd, N, C));
    return HN_OK;
}

static int llama_block_backward(HnCudaModel* g, int l, const float* residual, int B, int T) {
    const HnModelConfig* c = &g->cfg;
    const HnLayerTensors* lw = &g->w.layers[l];
    const HnLayerTensors* lg = &g->g.layers[l];
    HnLayerActs* a = &g->act.layer[l];
    int C = c->C, N = B * T, F = c->F, HS = C / c->NH, Q = c->NH * HS, KV = c->NKV * HS;
    size_t NC = (size_t)N * C;
    float *dq = g->act.dqkv, *dk = dq + (size_t)N * Q, *dv = dk + (size_t)N * KV;
    /* MLP: down, then SwiGLU, then gate and up, whose input gradients add */
    TRY(hn_cuda_matmul_backward(g->act.dbig, lg->fcprojw, NULL, g->act.dres, a->fch_gelu,
                                lw->fcprojw, N, F, C));
    TRY(hn_cuda_swiglu_backward(g->act.dbig2, g->act.dbig, g->act.dbig, a->fch, a->up,
                                (size_t)N * F)); /* dgate, dup */
    TRY(hn_cuda_matmul_backward(g->act.dln, lg->gatew, NULL, g->act.dbig2, a->ln2, lw->gatew, N, C,
                                F));
    TRY(hn_cuda_matmul_backward(g->act.dtmp, lg->fcw, NULL, g->act.dbig, a->ln2, lw->fcw, N, C, F));
    TRY(hn_cuda_residual_forward(g->act.dln, g->act.dln, g->act.dtmp, NC));
    TRY(hn_cuda_rmsnorm_backward(g->act.dres, lg->ln2w, g->act.dln, a->res2, lw->ln2w, a->ln2_rstd,
                                 N, C));
    /* attention: o, then attention, then RoPE undone, then q, k, v, whose input gradients add */
    TRY(hn_cuda_matmul_backward(g->act.datty, lg->attow, NULL, g->act.dres, a->atty, lw->attow, N,
                                Q, C));
    TRY(hn_cuda_attention_backward(dq, dk, dv, g->act.datty, a->atty, a->att, a->q, a->k, a->v, Q,
                                   KV, B, T, c->NH, c->NKV, HS));
    TRY(hn_cuda_rope_backward(dq, B, T, c->NH, HS, Q, 0, c->rope_theta));
    TRY(hn_cuda_rope_backward(dk, B, T, c->NKV, HS, KV, 0, c->rope_theta));
    TRY(hn_cuda_matmul_backward(g->act.dln, lg->qw, NULL, dq, a->ln1, lw->qw, N, C, Q));
    TRY(hn_cuda_matmul_backward(g->act.dtmp, lg->kw, NULL, dk, a->ln1, lw->kw, N, C, KV));
    TRY(hn_cuda_residual_forward(g->act.dln, g->act.dln, g->act.dtmp, NC));
    TRY(hn_cuda_matmul_backward(g->act.dtmp, lg->vw, NULL, dv, a->ln1, lw->vw, N, C, KV));
    TRY(hn_cuda_residual_forward(g->act.dln, g->act.dln, g->act.dtmp, NC));
    TRY(hn_cuda_rmsnorm_backward(g->act.dres, lg->ln1w, g->act.dln, residual, lw->ln1w, a->ln1_rstd,
                                 N, C));
    return HN_OK;
}

int hn_cuda_model_backward(HnCudaModel* g) {
    const HnModelConfig* c = &g->cfg;
    const HnTensors* w = &g->w;
    const HnTensors* gr = &g->g;
    int B = g->B, T = g->T, C = c->C, N = B * T, llama = c->arch == HN_ARCH_LLAMA;
    const float* last = c->L ? g->act.layer[c->L - 1].res3 : g->act.encoded;

    /* classifier (the token embedding when tied), then the final norm into the stream */
    TRY(hn_cuda_matmul_backward(g->act.dln, gr->lm_head, NULL, g->act.logits, g->act.lnf,
                                w->lm_head, N, C, c->Vp));
    TRY(hn_cuda_zero(g->act.dres, (size_t)N * C));
    if (llama)
        TRY(hn_cuda_rmsnorm_backward(g->act.dres, gr->lnfw, g->act.dln, last, w->lnfw,
                                     g->act.lnf_rstd, N, C));
    else
        TRY(hn_cuda_layernorm_backward(g->act.dres, gr->lnfw, gr->lnfb, g->act.dln, last, w->lnfw,
                                       g->act.lnf_mean, g->act.lnf_rstd, N, C));

    for (int l = c->L - 1; l >= 0; l--) {
        const float* residual = l ? g->act.layer[l - 1].res3 : g->act.encoded;
        if (llama)
            TRY(llama_block_backward(g, l, residual, B, T));
        else
            TRY(gpt2_block_backward(g, l, residual, B, T));
    }
    return hn_cuda_encoder_backward(gr->wte, gr->wpe, g->act.dres, g->tokens, B, T, C);
}

/* ---- the optimizer: optim.c's arithmetic on the host, the row updates on the device ---- */

int hn_cuda_model_grad_norm(HnCudaModel* g, double* norm) {
    const HnParamTable* t = g->table;
    double ss = 0.0;
    for (int i = 0; i < t->n; i++) {
        if (!t->rows[i].trainable) continue;
        double row = 0.0;
        TRY(hn_cuda_sum_squares(g->grads + t->rows[i].offset, t->rows[i].numel, &row));
        ss += row;
    }
    *norm = sqrt(ss);
    return HN_OK;
}

int hn_cuda_model_step(HnCudaModel* g, HnOptimizer* o, double grad_norm, float* lr_out) {
    const HnOptimConfig* c = &o->cfg;
    const HnParamTable* t = g->table;
    float scale;
    float lr = hn_optim_begin_step(o, grad_norm, &scale);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        size_t off = r->offset;
        TRY(hn_cuda_adamw_update(g->params + off, g->grads + off, g->m + off, g->v + off, r->numel,
                                 lr, c->beta1, c->beta2, c->eps, r->decay ? c->weight_decay : 0.0f,
                                 scale, o->t, 1));
    }
    *lr_out = lr;
    return HN_OK;
}

#endif /* HONE_HAVE_CUDA */
