/*
 * The optimizer: AdamW over the trainable rows of a parameter table, with a learning-rate
 * schedule (linear warm-up, then cosine / linear decay or constant) and global-norm
 * gradient clipping. Gradients use the table's gradient layout (trainable rows only), the
 * moments its state layout (a masked row's selected entries only; hn_params_layout_grads);
 * frozen rows and masked-out entries are never touched, weight decay included.
 */
#ifndef HONE_OPTIM_H
#define HONE_OPTIM_H

#include <stdint.h>

#include "core/params.h"

typedef enum { HN_SCHED_COSINE, HN_SCHED_LINEAR, HN_SCHED_CONSTANT } HnSchedule;

typedef struct {
    float lr, beta1, beta2, eps, weight_decay, clip, min_lr_ratio;
    int warmup, steps;
    HnSchedule schedule;
    float child_p;       /* Child-Tuning-F: keep each gradient entry with this probability
                          * and scale it by 1/p, a fresh draw each step (0 = off) */
    uint64_t child_seed; /* its draws: a function of this seed, the step and the row */
} HnOptimConfig;

typedef struct {
    HnOptimConfig cfg;
    float* m;            /* first moments, in the optimizer-state layout (hn_params_layout_grads) */
    float* v;            /* second moments, likewise */
    int t;               /* optimizer steps taken */
    unsigned char* keep; /* Child-Tuning-F's draw for the largest row */
} HnOptimizer;

int hn_optim_create(HnOptimizer* o, const HnOptimConfig* cfg, const HnParamTable* t);
void hn_optim_free(HnOptimizer* o);
/* the schedule's learning rate at (0-based) step */
float hn_optim_lr(const HnOptimConfig* cfg, int step);
/* L2 norm of the gradients of the trainable rows (deterministic) */
double hn_optim_grad_norm(const HnParamTable* t, const float* grads);
/* count one more step and return its learning rate; *grad_scale gets the clipping factor
 * for grad_norm (1 when no clipping applies). hn_optim_step and the CUDA model's step both
 * start here. */
float hn_optim_begin_step(HnOptimizer* o, double grad_norm, float* grad_scale);
/* clip to cfg.clip using grad_norm, update every trainable row, zero the gradients;
 * returns the learning rate used */
float hn_optim_step(HnOptimizer* o, HnParamTable* t, float* grads, double grad_norm);
/* ZeRO-1: AdamW on the entries [lo, hi) of the gradient layout only (a rank's shard), with
 * g, m, v holding those entries' gradients and moments (hi - lo floats each, g zeroed);
 * entry by entry the same arithmetic as hn_optim_step. Rows with masks are not supported
 * (the config refuses them). Returns the learning rate used. */
float hn_optim_step_range(HnOptimizer* o, HnParamTable* t, float* g, float* m, float* v, size_t lo,
                          size_t hi, double grad_norm);

#endif
