/*
 * The model on the CPU backend, GPT-2 or Llama family: its parameter rows, its
 * activations, and a forward and backward that read like the math, one op call a line.
 * The parameters live in a named parameter table (core/params.h); gradients mirror it.
 *
 *   gpt2:  x = wte[tok] + wpe[pos]; per block x += o(attn(qkv(LN(x)))), x += down(gelu(up(LN(x))))
 *   llama: x = wte[tok];            per block x += o(attn(rope(q, k), v)(RMS(x))),
 *                                             x += down(silu(gate(RMS(x))) * up(RMS(x)))
 *   then a final norm and the classifier (the token embedding when tied).
 *
 * Shapes: B batch, T time, C channels, L layers, NH query heads, NKV key/value heads,
 * HS = C / NH head size, F MLP width, V vocabulary, Vp padded vocabulary (the classifier
 * computes Vp logits so the GEMM has a friendly size; the padded ones never get
 * probability), maxT the context length.
 */
#ifndef HONE_MODEL_H
#define HONE_MODEL_H

#include <stdint.h>

#include "core/config.h"
#include "core/params.h"
#include "train/peft/peft.h"

typedef enum { HN_ARCH_GPT2, HN_ARCH_LLAMA } HnArch;

typedef struct {
    HnArch arch;
    int L, C, NH, NKV, F, V, Vp, maxT;
    float eps;        /* norm epsilon */
    float rope_theta; /* llama */
    int untied;       /* llama: a separate lm_head (0: the classifier is the token embedding) */
} HnModelConfig;

/* pointers to one layer's tensors inside a buffer laid out like the parameter table;
 * NULL where the architecture has no such row */
typedef struct {
    float* ln1w;    /* (C) */
    float* ln1b;    /* (C) gpt2 */
    float* qkvw;    /* (3C, C) gpt2 */
    float* qkvb;    /* (3C) gpt2 */
    float* qw;      /* (NH*HS, C) llama */
    float* kw;      /* (NKV*HS, C) llama */
    float* vw;      /* (NKV*HS, C) llama */
    float* attow;   /* (C, NH*HS) */
    float* attob;   /* (C) gpt2 */
    float* ln2w;    /* (C) */
    float* ln2b;    /* (C) gpt2 */
    float* fcw;     /* (F, C) mlp.up */
    float* fcb;     /* (F) gpt2 */
    float* gatew;   /* (F, C) llama mlp.gate */
    float* fcprojw; /* (C, F) mlp.down */
    float* fcprojb; /* (C) gpt2 */
} HnLayerTensors;

typedef struct {
    float* wte;             /* (Vp, C) */
    float* wpe;             /* (maxT, C) gpt2 */
    float* lnfw;            /* (C) */
    float* lnfb;            /* (C) gpt2 */
    float* lm_head;         /* (Vp, C): wte when tied */
    HnLayerTensors* layers; /* L of them */
} HnTensors;

/* activations of one layer, kept for the backward */
typedef struct {
    float* ln1;      /* (B, T, C) */
    float* ln1_mean; /* (B, T) gpt2 */
    float* ln1_rstd; /* (B, T) */
    float* qkv;      /* (B, T, 3C) gpt2 */
    float* q;        /* (B, T, NH*HS) llama, after RoPE */
    float* k;        /* (B, T, NKV*HS) llama, after RoPE */
    float* v;        /* (B, T, NKV*HS) llama */
    float* atty;     /* (B, T, C) */
    float* att;      /* CPU: (B, NH, T, T) probabilities; CUDA: (B, NH, T) log-sum-exp */
    float* res2;     /* (B, T, C) residual after attention */
    float* ln2;      /* (B, T, C) */
    float* ln2_mean; /* (B, T) gpt2 */
    float* ln2_rstd; /* (B, T) */
    float* fch;      /* (B, T, F) gpt2: up before GELU; llama: gate */
    float* up;       /* (B, T, F) llama */
    float* fch_gelu; /* (B, T, F) the MLP's hidden activation (GELU or SwiGLU output) */
    float* res3;     /* (B, T, C) residual after the MLP */
} HnLayerActs;

/* every activation buffer of a model, as one layout over one allocation (host or device) */
typedef struct {
    float* encoded;     /* (B, T, C) */
    HnLayerActs* layer; /* L of them (an array the model owns) */
    float* lnf;         /* (B, T, C) */
    float* lnf_mean;    /* (B, T) */
    float* lnf_rstd;    /* (B, T) */
    float* logits;      /* (B, T, Vp); after a forward with grad_scale != 0: their gradient */
    float* losses;      /* (B, T) */
    /* backward scratch */
    float* dres;  /* (B, T, C) gradient of the residual stream */
    float* dln;   /* (B, T, C) */
    float* dtmp;  /* (B, T, C) */
    float* datty; /* (B, T, C) */
    float* dqkv;  /* (B, T, 3C) gpt2; llama: dq, dk, dv back to back */
    float* dbig;  /* (B, T, F) */
    float* dbig2; /* (B, T, F) llama */
} HnActivations;

typedef struct {
    HnModelConfig cfg;
    HnParamTable params;
    HnTensors w;  /* into params.data */
    float* grads; /* gradients of the trainable rows, in the table's gradient layout */
    HnTensors g;  /* into grads; NULL for frozen rows */
    HnPeft peft;  /* parameter-efficient add-ons (inactive: full fine-tuning) */

    /* activations, sized for up to maxB x maxT positions */
    int maxB, maxT;
    float* act_mem;
    HnActivations act;

    int B, T;          /* of the last forward: T positions per sequence, virtual ones included */
    int Treal;         /* of those, the real tokens (T - the prompt's virtual tokens) */
    int grad_floor;    /* the lowest layer the backward must reach (nothing trainable below;
                        * 0 when the embeddings or virtual tokens train) */
    const int* tokens; /* of the last forward, for the backward */
    const int* pos;    /* of the last forward: positions within packed documents, or NULL */
    int* targets_virt; /* (maxB, maxT) targets with the virtual positions ignored */

    /* knowledge editing (train/edit.c): with layer >= 0 the forward adds delta (C) to the
     * MLP output of block `layer` at position at[b] of each sequence b (at[b] < 0: none),
     * and the backward adds that position's gradient into ddelta (if not NULL); set
     * grad_floor to the layer so the backward reaches it with everything frozen */
    struct {
        int layer;
        const int* at;
        const float* delta;
        float* ddelta;
    } probe;
    int stop_blocks; /* > 0: forwards run the first stop_blocks blocks only, no logits */
} HnModel;

/* padded vocabulary: V rounded up to a multiple of 128 */
int hn_model_padded_vocab(int V);
/* NKV = 0 means NKV = NH and F = 0 means F = 4C in every function taking a config */
/* the model section of a run config (vocab must be resolved: > 0) */
HnModelConfig hn_model_config_of(const HnConfig* cfg);
/* only the parameter rows (names and shapes) of a model with this config, unallocated */
int hn_model_table(HnParamTable* t, const HnModelConfig* cfg);
/* Lay out act over base (act->layer must hold L entries) for micro-batches of up to
 * maxB x maxT positions, with att_floats per layer for attention's saved state; returns the
 * floats the layout needs. With base NULL nothing is assigned: it only counts. cfg must be
 * normalised (NKV and F filled in), as a created model's is. */
size_t hn_model_layout_activations(HnActivations* act, const HnModelConfig* cfg, int maxB, int maxT,
                                   size_t att_floats, float* base);
/* build the parameter table and allocate parameters, gradients and activations for
 * micro-batches of up to maxB x maxT positions; HN_OK or HN_ERR */
int hn_model_create(HnModel* m, const HnModelConfig* cfg, int maxB, int maxT);
/* the same with the add-ons of a plan (hn_peft_plan), which the model takes over (*peft is
 * zeroed): their rows join the table and, when the plan is active, the base is frozen. The
 * add-ons point into *m: a created model is not moved (copied by value) afterwards. */
int hn_model_create_peft(HnModel* m, const HnModelConfig* cfg, HnPeft* peft, int maxB, int maxT);
void hn_model_free(HnModel* m);
/* after rows' trainable flags or masks changed: lay the gradients out again (a new, zeroed
 * buffer) and point m->g at it */
int hn_model_relayout_grads(HnModel* m);
/* initialisation: normal(0, std) weights, residual projections scaled by 1/sqrt(2L)
 * (Radford et al. 2019), zero biases, unit norm gains; then the add-ons as PEFT initialises
 * them (hn_peft_init); deterministic in seed */
void hn_model_init(HnModel* m, float std, uint64_t seed);

/* Forward over tokens (B, T) (after the virtual tokens of prompt tuning, at positions after
 * a prefix's, when those methods are on). With targets (B, T; HN_IGNORE = not counted) it computes
 * the per-position losses and returns their sum over counted positions; with grad_scale != 0 it
 * also leaves in m->act.logits the gradient of grad_scale * (that sum), ready for
 * hn_model_backward. Without targets it returns 0 and leaves logits. B <= maxB, T <= maxT. */
double hn_model_forward(HnModel* m, const int* tokens, const int* targets, int B, int T,
                        float grad_scale);
/* the same over packed documents: pos (B, T) as in kernels/ops.h (NULL: one document per
 * sequence), so a token attends to its own document only and positions restart at each
 * document start. The pointer is kept for the backward. Not with virtual tokens (pos is then
 * ignored; the trainer refuses the combination). */
double hn_model_forward_docs(HnModel* m, const int* tokens, const int* pos, const int* targets,
                             int B, int T, float grad_scale);
/* the logits (Vp floats) of real token t of sequence b after the last forward: with prompt
 * tuning the virtual positions come first in m->act.logits */
float* hn_model_logits(HnModel* m, int b, int t);
/* accumulate (+=) into m->grads the gradient set up by the last forward */
void hn_model_backward(HnModel* m);
void hn_model_zero_grad(HnModel* m);

#endif
