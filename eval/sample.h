/*
 * Choosing the next token from a row of logits: greedy (temperature 0), or sampling from
 * softmax(logits / temperature) restricted to the top-k tokens and then to the nucleus
 * (top-p, Holtzman et al. 2020: the smallest set of most likely tokens whose probability
 * reaches p). Deterministic given the seed. Not here: the model, stopping rules.
 */
#ifndef HONE_EVAL_SAMPLE_H
#define HONE_EVAL_SAMPLE_H

#include "core/rng.h"

typedef struct {
    float temperature; /* 0 = greedy (argmax) */
    int top_k;         /* keep the k most likely tokens; 0 = off */
    float top_p;       /* keep the nucleus of probability p; 1 = off */
} HnSampleParams;

typedef struct {
    HnSampleParams p;
    HnRng rng;
    int V;
    float* probs; /* (V) scratch */
    int* order;   /* (V) scratch: token ids sorted by probability */
} HnSampler;

/* HN_OK, or HN_ERR for bad parameters (temperature < 0, top_k < 0, top_p outside (0, 1])
 * or out of memory */
int hn_sampler_init(HnSampler* s, int V, const HnSampleParams* p, uint64_t seed);
void hn_sampler_free(HnSampler* s);

/* the index of the largest of logits[0..V) (the lowest index among equals) */
int hn_sample_argmax(const float* logits, int V);
/* the next token for logits[0..V) */
int hn_sampler_next(HnSampler* s, const float* logits);

#endif
