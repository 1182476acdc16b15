/*
 * The GPT-2 family model on the CPU backend: its parameter rows, its activations, and a
 * forward and backward that read like the math, one op call a line. The parameters live
 * in a named parameter table (params.h); gradients mirror it.
 *
 * Shapes: B batch, T time, C channels, L layers, NH heads, V vocabulary, Vp padded
 * vocabulary (the classifier computes Vp logits so the GEMM has a friendly size; the
 * padded ones never get probability), maxT the context length.
 */
#ifndef HONE_MODEL_H
#define HONE_MODEL_H

#include <stdint.h>

#include "core/params.h"

typedef struct {
    int L, C, NH, V, Vp, maxT;
    float eps; /* LayerNorm epsilon */
} HnModelConfig;

/* pointers to one layer's tensors inside a buffer laid out like the parameter table */
typedef struct {
    float* ln1w;    /* (C) */
    float* ln1b;    /* (C) */
    float* qkvw;    /* (3C, C) */
    float* qkvb;    /* (3C) */
    float* attow;   /* (C, C) */
    float* attob;   /* (C) */
    float* ln2w;    /* (C) */
    float* ln2b;    /* (C) */
    float* fcw;     /* (4C, C) */
    float* fcb;     /* (4C) */
    float* fcprojw; /* (C, 4C) */
    float* fcprojb; /* (C) */
} HnLayerTensors;

typedef struct {
    float* wte;             /* (Vp, C), tied with the classifier */
    float* wpe;             /* (maxT, C) */
    float* lnfw;            /* (C) */
    float* lnfb;            /* (C) */
    HnLayerTensors* layers; /* L of them */
} HnTensors;

/* activations of one layer, kept for the backward */
typedef struct {
    float* ln1;      /* (B, T, C) */
    float* ln1_mean; /* (B, T) */
    float* ln1_rstd; /* (B, T) */
    float* qkv;      /* (B, T, 3C) */
    float* atty;     /* (B, T, C) */
    float* att;      /* (B, NH, T, T) */
    float* res2;     /* (B, T, C) residual after attention */
    float* ln2;      /* (B, T, C) */
    float* ln2_mean; /* (B, T) */
    float* ln2_rstd; /* (B, T) */
    float* fch;      /* (B, T, 4C) */
    float* fch_gelu; /* (B, T, 4C) */
    float* res3;     /* (B, T, C) residual after the MLP */
} HnLayerActs;

typedef struct {
    HnModelConfig cfg;
    HnParamTable params;
    HnTensors w;  /* into params.data */
    float* grads; /* mirror of params.data */
    HnTensors g;  /* into grads */

    /* activations, sized for up to maxB x maxT positions */
    int maxB, maxT;
    float* act_mem;
    float* encoded; /* (B, T, C) */
    HnLayerActs* acts;
    float* lnf;      /* (B, T, C) */
    float* lnf_mean; /* (B, T) */
    float* lnf_rstd; /* (B, T) */
    float* logits;   /* (B, T, Vp); after a forward with grad_scale != 0: their gradient */
    float* losses;   /* (B, T) */
    /* backward scratch */
    float* dres;  /* (B, T, C) gradient of the residual stream */
    float* dln;   /* (B, T, C) */
    float* datty; /* (B, T, C) */
    float* dqkv;  /* (B, T, 3C) */
    float* dbig;  /* (B, T, 4C) */

    int B, T;          /* of the last forward */
    const int* tokens; /* of the last forward, for the backward */
} HnModel;

/* padded vocabulary: V rounded up to a multiple of 128 */
int hn_model_padded_vocab(int V);
/* only the parameter rows (names and shapes) of a model with this config, unallocated */
int hn_model_table(HnParamTable* t, const HnModelConfig* cfg);
/* build the parameter table and allocate parameters, gradients and activations for
 * micro-batches of up to maxB x maxT; HN_OK or HN_ERR */
int hn_model_create(HnModel* m, const HnModelConfig* cfg, int maxB, int maxT);
void hn_model_free(HnModel* m);
/* GPT-2 initialisation: normal(0, std) weights, residual projections scaled by
 * 1/sqrt(2L) (Radford et al. 2019), zero biases, unit norm gains; deterministic in seed */
void hn_model_init(HnModel* m, float std, uint64_t seed);

/* Forward over tokens (B, T). With targets (B, T; HN_IGNORE = not counted) it computes the
 * per-position losses and returns their sum over counted positions; with grad_scale != 0
 * it also leaves in m->logits the gradient of grad_scale * (that sum), ready for
 * hn_model_backward. Without targets it returns 0 and leaves logits. B <= maxB, T <= maxT. */
double hn_model_forward(HnModel* m, const int* tokens, const int* targets, int B, int T,
                        float grad_scale);
/* accumulate (+=) into m->grads the gradient set up by the last forward */
void hn_model_backward(HnModel* m);
void hn_model_zero_grad(HnModel* m);

#endif
