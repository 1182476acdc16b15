/* Building partial-update masks; see mask.h. */
#include "train/mask.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "train/optim.h"

HnMaskMethod hn_mask_method(const char* name) {
    static const char* const names[] = {"none", "pattern", "magnitude", "random",
                                        "fish", "child_f", "lt_sft"};
    for (int i = 0; i < 7; i++)
        if (strcmp(name, names[i]) == 0) return (HnMaskMethod)i;
    return HN_MASK_NONE;
}

void hn_mask_bernoulli(unsigned char* keep, size_t n, float p, uint64_t seed) {
    enum { BLOCK = 4096 };
    size_t nblocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < nblocks; b++) {
        HnRng rng;
        hn_rng_seed(&rng, seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(b + 1)));
        size_t i1 = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        for (size_t i = b * BLOCK; i < i1; i++)
            keep[i] = hn_rng_uniform(&rng) < p;
    }
}

/* the k-th largest of x[0..n) (1 <= k <= n), reordering x: quickselect */
static float kth_largest(float* x, size_t n, size_t k) {
    size_t lo = 0, hi = n - 1, want = k - 1; /* position in descending order */
    while (lo < hi) {
        float pivot = x[lo + (hi - lo) / 2];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (x[i] > pivot)
                i++;
            while (x[j] < pivot)
                j--;
            if (i <= j) {
                float t = x[i];
                x[i] = x[j];
                x[j] = t;
                i++;
                if (j == 0) break;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return x[want];
    }
    return x[want];
}

int hn_mask_top_k(HnParamTable* t, const float* scores, double density) {
    size_t total = 0;
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].trainable) total += t->rows[i].numel;
    if (total == 0) return hn_error("mask: no row is eligible (check mask.patterns)");
    size_t k = (size_t)llround(density * (double)total);
    if (k < 1) k = 1;
    float* all = malloc(total * sizeof(float));
    if (!all) return hn_error("out of memory: %zu mask scores", total);
    size_t n = 0;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        for (size_t j = 0; j < r->numel; j++) {
            float s = scores[r->goff + j];
            if (!isfinite(s)) {
                free(all);
                return hn_error("mask: a non-finite score in %s (entry %zu)", r->name, j);
            }
            all[n++] = s;
        }
    }
    float tau = kth_largest(all, total, k);
    size_t above = 0;
    for (size_t i = 0; i < total; i++)
        above += all[i] > tau;
    free(all);
    size_t ties = k - above; /* entries equal to tau taken first by row, then by position */
    for (int i = 0; i < t->n; i++) {
        HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        const float* s = scores + r->goff;
        size_t cnt = 0;
        for (size_t j = 0; j < r->numel; j++)
            cnt += s[j] > tau || s[j] == tau;
        unsigned* idx = malloc((cnt ? cnt : 1) * sizeof(unsigned));
        if (!idx) return hn_error("out of memory");
        size_t m = 0;
        for (size_t j = 0; j < r->numel; j++) {
            if (s[j] > tau) {
                idx[m++] = (unsigned)j;
            } else if (s[j] == tau && ties > 0) {
                idx[m++] = (unsigned)j;
                ties--;
            }
        }
        if (hn_params_set_mask(t, i, idx, m) != HN_OK) return HN_ERR;
    }
    hn_params_layout_grads(t);
    return HN_OK;
}

/* per-example gradients squared and averaged into fisher (the gradient layout) */
static int fish_scores(HnModel* m, HnLoader* loader, int n, float* fisher) {
    int T = loader->T;
    int* tokens = malloc((size_t)T * sizeof(int));
    int* targets = malloc((size_t)T * sizeof(int));
    int* pos = loader->docs ? malloc((size_t)T * sizeof(int)) : NULL; /* packed documents */
    if (!tokens || !targets || (loader->docs && !pos)) {
        free(tokens);
        free(targets);
        free(pos);
        return hn_error("out of memory");
    }
    size_t G = m->params.grad_numel;
    memset(fisher, 0, G * sizeof(float));
    size_t windows = hn_loader_windows(loader);
    if ((size_t)n > windows) n = (int)windows;
    int rc = HN_OK;
    hn_loader_reset(loader);
    for (int e = 0; e < n && rc == HN_OK; e++) {
        rc = hn_loader_next_docs(loader, tokens, targets, pos);
        if (rc != HN_OK) break;
        int counted = 0;
        for (int i = 0; i < T; i++)
            counted += targets[i] != HN_IGNORE;
        hn_model_zero_grad(m);
        hn_model_forward_docs(m, tokens, pos, targets, 1, T,
                              counted ? 1.0f / (float)counted : 0.0f);
        hn_model_backward(m);
        const float* g = m->grads;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < G; i++)
            fisher[i] += g[i] * g[i];
    }
    for (size_t i = 0; i < G; i++)
        fisher[i] /= (float)(n > 0 ? n : 1);
    hn_model_zero_grad(m);
    hn_loader_reset(loader);
    free(tokens);
    free(targets);
    free(pos);
    return rc;
}

/* LT-SFT's first phase: a dense fine-tune of the eligible rows; scores = |change|; the
 * weights are put back */
static int lt_sft_scores(HnModel* m, const HnConfig* cfg, HnLoader* loader, float* scores) {
    HnParamTable* t = &m->params;
    float* start = malloc(t->numel * sizeof(float));
    int B = loader->B, T = loader->T;
    int* tokens = malloc((size_t)B * T * sizeof(int));
    int* targets = malloc((size_t)B * T * sizeof(int));
    int* pos = loader->docs ? malloc((size_t)B * T * sizeof(int)) : NULL; /* packed documents */
    HnOptimConfig oc = {.lr = cfg->optim.lr,
                        .beta1 = cfg->optim.betas[0],
                        .beta2 = cfg->optim.betas[1],
                        .eps = cfg->optim.eps,
                        .weight_decay = cfg->optim.weight_decay,
                        .clip = cfg->optim.clip,
                        .min_lr_ratio = 1.0f,
                        .warmup = 0,
                        .steps = cfg->mask.lt_sft_steps,
                        .schedule = HN_SCHED_CONSTANT};
    HnOptimizer o;
    memset(&o, 0, sizeof o);
    int rc = start && tokens && targets && (pos || !loader->docs) ? hn_optim_create(&o, &oc, t)
                                                                  : hn_error("out of memory");
    if (rc == HN_OK) memcpy(start, t->data, t->numel * sizeof(float));
    for (int s = 0; rc == HN_OK && s < cfg->mask.lt_sft_steps; s++) {
        if ((rc = hn_loader_next_docs(loader, tokens, targets, pos)) != HN_OK) break;
        int counted = 0;
        for (int i = 0; i < B * T; i++)
            counted += targets[i] != HN_IGNORE;
        hn_model_forward_docs(m, tokens, pos, targets, B, T,
                              counted ? 1.0f / (float)counted : 0.0f);
        hn_model_backward(m);
        hn_optim_step(&o, t, m->grads, hn_optim_grad_norm(t, m->grads));
    }
    if (rc == HN_OK) {
        for (int i = 0; i < t->n; i++) {
            const HnParamRow* r = &t->rows[i];
            if (!r->trainable) continue;
            for (size_t j = 0; j < r->numel; j++)
                scores[r->goff + j] = fabsf(t->data[r->offset + j] - start[r->offset + j]);
        }
        memcpy(t->data, start, t->numel * sizeof(float)); /* back to the start */
    }
    hn_model_zero_grad(m);
    hn_optim_free(&o);
    free(start);
    free(tokens);
    free(targets);
    return rc;
}

int hn_mask_build(HnModel* m, const HnConfig* cfg, HnLoader* loader, uint64_t seed) {
    HnMaskMethod method = hn_mask_method(cfg->mask.method);
    if (method == HN_MASK_NONE) return HN_OK;
    HnParamTable* t = &m->params;
    const char* pats[HN_MAX_LIST];
    for (int i = 0; i < cfg->mask.patterns.n; i++)
        pats[i] = cfg->mask.patterns.item[i];
    if (hn_params_select_trainable(t, pats, cfg->mask.patterns.n) == 0)
        return hn_error("mask.patterns matches no parameter row");
    if (hn_model_relayout_grads(m) != HN_OK) return HN_ERR;
    if (method == HN_MASK_PATTERN || method == HN_MASK_CHILD_F) return HN_OK;
    float* scores = hn_params_grad_buffer(t);
    if (!scores) return HN_ERR;
    int rc = HN_OK;
    if (method == HN_MASK_MAGNITUDE) {
        for (int i = 0; i < t->n; i++) {
            const HnParamRow* r = &t->rows[i];
            if (!r->trainable) continue;
            for (size_t j = 0; j < r->numel; j++)
                scores[r->goff + j] = fabsf(t->data[r->offset + j]);
        }
    } else if (method == HN_MASK_RANDOM) {
        for (int i = 0; i < t->n; i++) {
            const HnParamRow* r = &t->rows[i];
            if (!r->trainable) continue;
            HnRng rng;
            hn_rng_seed(&rng, seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(i + 1)));
            for (size_t j = 0; j < r->numel; j++)
                scores[r->goff + j] = hn_rng_uniform(&rng);
        }
    } else if (method == HN_MASK_LT_SFT) {
        rc = lt_sft_scores(m, cfg, loader, scores);
    } else {
        rc = fish_scores(m, loader, cfg->mask.fish_examples, scores);
    }
    if (rc == HN_OK) rc = hn_mask_top_k(t, scores, cfg->mask.density);
    free(scores);
    if (rc == HN_OK) rc = hn_model_relayout_grads(m);
    return rc;
}
