/* AdamW with schedules and clipping over the parameter table; see optim.h. */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"
#include "kernels/ops.h"

int hn_optim_create(HnOptimizer* o, const HnOptimConfig* cfg, const HnParamTable* t) {
    o->cfg = *cfg;
    o->t = 0;
    o->m = hn_params_grad_buffer(t);
    o->v = hn_params_grad_buffer(t);
    return (o->m && o->v) ? HN_OK : HN_ERR;
}

void hn_optim_free(HnOptimizer* o) {
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
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
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].trainable) ss += hn_sum_squares(grads + t->rows[i].goff, t->rows[i].numel);
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
        size_t g = r->goff;
        hn_adamw_update(t->data + r->offset, grads + g, o->m + g, o->v + g, r->numel, lr, c->beta1,
                        c->beta2, c->eps, r->decay ? c->weight_decay : 0.0f, scale, o->t, 1);
    }
    return lr;
}
