/* AdamW with schedules and clipping over the parameter table; see optim.h. */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "kernels/ops.h"
#include "train/mask.h"

int hn_optim_create(HnOptimizer* o, const HnOptimConfig* cfg, const HnParamTable* t) {
    o->cfg = *cfg;
    o->t = 0;
    o->m = hn_params_state_buffer(t);
    o->v = hn_params_state_buffer(t);
    o->keep = NULL;
    if (cfg->child_p > 0) {
        size_t widest = 0;
        for (int i = 0; i < t->n; i++)
            if (t->rows[i].trainable && t->rows[i].numel > widest) widest = t->rows[i].numel;
        if (!(o->keep = malloc(widest ? widest : 1))) return hn_error("out of memory");
    }
    return (o->m && o->v) ? HN_OK : HN_ERR;
}

void hn_optim_free(HnOptimizer* o) {
    free(o->m);
    free(o->v);
    free(o->keep);
    o->m = o->v = NULL;
    o->keep = NULL;
}

float hn_optim_lr(const HnOptimConfig* c, int step) {
    if (step < c->warmup) return c->lr * (float)(step + 1) / (float)c->warmup;
    if (c->schedule == HN_SCHED_CONSTANT) return c->lr;
    int span = c->steps - c->warmup;
    float progress = span > 0 ? (float)(step - c->warmup) / (float)span : 1.0f;
    if (progress > 1.0f) progress = 1.0f;
    float min_lr = c->lr * c->min_lr_ratio;
    float frac = c->schedule == HN_SCHED_COSINE ? 0.5f * (1.0f + cosf(3.14159265358979f * progress))
                                                : 1.0f - progress;
    return min_lr + frac * (c->lr - min_lr);
}

double hn_optim_grad_norm(const HnParamTable* t, const float* grads) {
    double ss = 0.0;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        /* a partial update clips by the gradient it applies */
        ss += r->mask ? hn_sum_squares_indexed(grads + r->goff, r->mask, r->mask_k)
                      : hn_sum_squares(grads + r->goff, r->numel);
    }
    return sqrt(ss);
}

float hn_optim_begin_step(HnOptimizer* o, double grad_norm, float* grad_scale) {
    const HnOptimConfig* c = &o->cfg;
    float lr = hn_optim_lr(c, o->t);
    o->t++;
    /* torch.nn.utils.clip_grad_norm_: scale by clip / (norm + 1e-6) when that is below 1 */
    *grad_scale = 1.0f;
    if (c->clip > 0.0f) {
        double coef = c->clip / (grad_norm + 1e-6);
        if (coef < 1.0) *grad_scale = (float)coef;
    }
    return lr;
}

float hn_optim_step(HnOptimizer* o, HnParamTable* t, float* grads, double grad_norm) {
    const HnOptimConfig* c = &o->cfg;
    float scale;
    float lr = hn_optim_begin_step(o, grad_norm, &scale);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        size_t g = r->goff, s = r->soff;
        float wd = r->decay ? c->weight_decay : 0.0f;
        if (c->child_p > 0) {
            /* Child-Tuning-F: this step's Bernoulli(p) draw, the kept gradients scaled by
             * 1/p (so the masked gradient is unbiased) */
            uint64_t seed = c->child_seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)o->t) ^
                            (0xbf58476d1ce4e5b9ULL * (uint64_t)(i + 1));
            hn_mask_bernoulli(o->keep, r->numel, c->child_p, seed);
            hn_adamw_update_keep(t->data + r->offset, grads + g, o->m + s, o->v + s, o->keep,
                                 r->numel, lr, c->beta1, c->beta2, c->eps, wd, scale / c->child_p,
                                 o->t);
        } else if (r->mask) {
            /* a partial update: the other entries never move, not even by weight decay */
            hn_adamw_update_masked(t->data + r->offset, grads + g, o->m + s, o->v + s, r->mask,
                                   r->mask_k, lr, c->beta1, c->beta2, c->eps, wd, scale, o->t);
            memset(grads + g, 0, r->numel * sizeof(float));
        } else {
            hn_adamw_update(t->data + r->offset, grads + g, o->m + s, o->v + s, r->numel, lr,
                            c->beta1, c->beta2, c->eps, wd, scale, o->t, 1);
        }
    }
    return lr;
}

float hn_optim_step_range(HnOptimizer* o, HnParamTable* t, float* g, float* m, float* v, size_t lo,
                          size_t hi, double grad_norm) {
    const HnOptimConfig* c = &o->cfg;
    float scale;
    float lr = hn_optim_begin_step(o, grad_norm, &scale);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        size_t a = r->goff > lo ? r->goff : lo,
               b = r->goff + r->numel < hi ? r->goff + r->numel : hi;
        if (a >= b) continue;
        float wd = r->decay ? c->weight_decay : 0.0f;
        hn_adamw_update(t->data + r->offset + (a - r->goff), g + (a - lo), m + (a - lo),
                        v + (a - lo), b - a, lr, c->beta1, c->beta2, c->eps, wd, scale, o->t, 1);
    }
    return lr;
}
