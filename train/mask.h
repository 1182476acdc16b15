/*
 * Partial knowledge updates: which entries of a model train. A mask is per parameter-table
 * row (hn_params_set_mask: sorted indices; rows outside mask.patterns are frozen); the
 * optimizer then updates only those entries and keeps AdamW state for them alone.
 *
 *   pattern     whole rows chosen by name (BitFit is the pattern "*.bias")
 *   magnitude   the k largest |w| over the eligible rows
 *   random      k entries drawn with the run's seed
 *   fish        the k largest empirical Fisher informations, the mean squared per-example
 *               gradient over mask.fish_examples windows (Sung et al. 2021)
 *   child_f     no fixed mask: each step keeps every gradient entry with probability p and
 *               scales it by 1/p (Child-Tuning-F, Xu et al. 2021); dense optimizer state
 *   lt_sft      a dense fine-tune of mask.lt_sft_steps steps, the k entries it changed most,
 *               then the weights reset to where they started (Ansell et al. 2022)
 * k = round(density x the eligible entries), chosen globally across rows (ties by position).
 */
#ifndef HONE_MASK_H
#define HONE_MASK_H

#include <stdint.h>

#include "core/config.h"
#include "data/dataset.h"
#include "train/model.h"

typedef enum {
    HN_MASK_NONE,
    HN_MASK_PATTERN,
    HN_MASK_MAGNITUDE,
    HN_MASK_RANDOM,
    HN_MASK_FISH,
    HN_MASK_CHILD_F,
    HN_MASK_LT_SFT
} HnMaskMethod;

HnMaskMethod hn_mask_method(const char* name);

/* Build cfg->mask's masks on m (its current weights; FISH reads the first fish_examples
 * windows of loader, which must give one window per call: B = 1; LT-SFT trains on
 * loader's batches, then puts the weights back) and lay its gradients out again. For
 * child_f only the eligible rows are selected. HN_OK or HN_ERR. */
int hn_mask_build(HnModel* m, const HnConfig* cfg, HnLoader* loader, uint64_t seed);

/* keep the k = round(density x eligible) largest scores (in m's gradient layout) */
int hn_mask_top_k(HnParamTable* t, const float* scores, double density);

/* Child-Tuning-F's draw: keep[i] = 1 with probability p, from a stream seeded by seed,
 * block by block so any thread count draws the same */
void hn_mask_bernoulli(unsigned char* keep, size_t n, float p, uint64_t seed);

#endif
