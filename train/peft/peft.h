/*
 * Parameter-efficient methods on a frozen base: LoRA (with rsLoRA's scaling and DoRA), IA3
 * and BitFit. A method attaches "add-ons" to the named linear sites of a block; each add-on
 * owns rows of the parameter table (flagged addon, saved under /peft) and is applied by the
 * two hooks the model calls in place of a plain linear:
 *
 *   LoRA (Hu et al. 2021)       y = x W^T + b + s (drop(x) A^T) B^T      s = alpha / r, or
 *                                                                         alpha / sqrt(r) (rsLoRA)
 *   DoRA (Liu et al. 2024)      y = g * (x W^T + s (x A^T) B^T) + b      g = m / ||W + s B A||,
 *                               the norm per output row, detached from the gradient as in PEFT
 *   IA3 (Liu et al. 2022)       y = l * (x W^T + b)      on attention sites (output scaling)
 *                               y = (l * x) W^T + b      on feed-forward sites (input scaling)
 *   BitFit (Ben Zaken et al.)   no add-on: only the bias rows stay trainable
 *
 * Shapes follow PEFT: A (r, in), B (out, r), m (out), l (out) or (in). GPT-2's fused
 * attn.qkv may be targeted whole (as PEFT does) or as its attn.q / attn.k / attn.v slices
 * (as the LoRA paper does); a slice takes LoRA only. One base linear takes one method (or
 * several LoRA slices). This library has no training loop in it: the inference path links
 * it to fold add-ons into a base (hn_peft_fold).
 */
#ifndef HONE_PEFT_H
#define HONE_PEFT_H

#include <stdint.h>

#include "core/config.h"
#include "core/params.h"

typedef enum { HN_ADD_LORA, HN_ADD_DORA, HN_ADD_IA3_OUT, HN_ADD_IA3_IN } HnAddonKind;

/* the linears of a block; each architecture has some of them */
typedef enum {
    HN_LIN_QKV, /* gpt2 */
    HN_LIN_Q,
    HN_LIN_K,
    HN_LIN_V,
    HN_LIN_O,
    HN_LIN_UP,
    HN_LIN_GATE, /* llama */
    HN_LIN_DOWN,
    HN_NLIN
} HnLinear;

#define HN_PEFT_PER_LINEAR 3 /* add-ons one base linear can hold (gpt2: q, k, v slices) */

typedef struct {
    HnAddonKind kind;
    int layer;
    HnLinear lin;      /* the base linear it attaches to */
    char site[16];     /* the site as targeted ("attn.q" may be a slice of gpt2's attn.qkv) */
    int in, base_out;  /* the base linear's weight is (base_out, in) */
    int off, out;      /* the output columns [off, off + out) the add-on acts on */
    int rank;          /* LoRA / DoRA */
    float scale;       /* LoRA / DoRA: alpha / r or alpha / sqrt(r) */
    float dropout;     /* LoRA */
    char base_w[HN_NAME_MAX], base_b[HN_NAME_MAX]; /* base rows (base_b "" without a bias) */
    int row_a, row_b, row_m, row_l;                /* add-on rows in the table, -1 if none */
    /* state of the last forward, for up to maxN rows (hn_peft_alloc) */
    float* xa;           /* (N, rank) the LoRA input times A^T */
    float* xd;           /* (N, in) the input after dropout (dropout > 0) */
    unsigned char* keep; /* (N, in) dropout's mask */
    float* z;            /* DoRA, IA3 out: (N, out) the output before scaling; IA3 in: (N, in)
                          * the scaled input */
    float* norm;         /* DoRA: (out) row norms of W + s B A */
} HnAddon;

typedef struct {
    int n;
    HnAddon* a;
    int bitfit; /* only biases of the base train */
    int active; /* any method: the base is frozen */
    int L;
    int* index; /* (L, HN_NLIN, HN_PEFT_PER_LINEAR) add-on numbers, -1 = none */
    int merged; /* add-ons are folded into the base: the hooks apply the base alone */
    /* training */
    int training;          /* the forward is a training one (dropout on) */
    int hold_norms;        /* reuse the last forward's DoRA norms: the function whose gradient
                            * the backward computes (the norms are constants to it), which a
                            * finite-difference check needs */
    uint64_t dropout_seed; /* set by the trainer before each micro-batch */
    int maxN;
    float* mem;     /* every add-on's forward state */
    unsigned char* keep_mem; /* dropout masks */
    float* scratch; /* (maxN, widest) */
    float* scratch2;
    float* scratch3;
    size_t scratch_floats;
    const HnParamTable* t; /* rows and values of the add-ons */
    float* grads;          /* in t's gradient layout */
} HnPeft;

/* the sites of an architecture's block, by name (attn.qkv, attn.q, ..., mlp.down) */
const char* hn_peft_site_name(HnLinear lin);

/* Plan the add-ons cfg->peft asks for on the model cfg->model describes (shape keys
 * resolved). An empty plan (no methods) is not active. Errors name the key and the site:
 * a target that matches nothing, a rank <= 0 or wider than the layer, BitFit on a model
 * without biases, two methods on one linear. */
int hn_peft_plan(HnPeft* p, const HnConfig* cfg);
/* add the add-on rows to t (before hn_params_alloc), flagged addon, no weight decay */
int hn_peft_add_rows(HnPeft* p, HnParamTable* t);
/* freeze the base: only add-on rows (and biases with BitFit) stay trainable; lays the
 * gradients out again */
int hn_peft_freeze_base(const HnPeft* p, HnParamTable* t);
/* PEFT's initialisation of the add-on rows: A kaiming-uniform (a = sqrt 5), B zeros,
 * m = the row norms of the current base weight, IA3 ones; deterministic in seed */
void hn_peft_init(const HnPeft* p, HnParamTable* t, uint64_t seed);
/* forward state for up to maxN rows; hooks read add-on values from t and write gradients
 * into grads (t's gradient layout) */
int hn_peft_alloc(HnPeft* p, int maxN, const HnParamTable* t, float* grads);
void hn_peft_free(HnPeft* p);

/* out (N, OC) = inp (N, C) @ w^T + b with what is attached at (layer, lin) */
void hn_peft_linear_forward(HnPeft* p, int layer, HnLinear lin, float* out, const float* inp,
                            const float* w, const float* b, int N, int C, int OC);
/* hn_matmul_backward's contract (dinp overwritten, dw / db accumulated, NULL = frozen) plus
 * the add-ons' gradients, accumulated */
void hn_peft_linear_backward(HnPeft* p, int layer, HnLinear lin, float* dinp, float* dw,
                             float* db, const float* dout, const float* inp, const float* w, int N,
                             int C, int OC);

/* Fold one add-on into its base weight w (base_out, in) and bias b (NULL if none): rows[]
 * are the add-on's values (A, B, m for LoRA / DoRA; l for IA3) */
void hn_peft_fold(const HnAddon* a, float* w, float* b, const float* A, const float* B,
                  const float* m, const float* l);
/* fold every add-on of p into the base rows of t; afterwards the hooks apply the base only */
int hn_peft_merge(HnPeft* p, HnParamTable* t);
/* undo hn_peft_merge (LoRA only: DoRA's and IA3's folds are not kept reversible) */
int hn_peft_unmerge(HnPeft* p, HnParamTable* t);

/* trainable parameters per method: lora (A, B), dora (m), ia3, bitfit (biases) */
typedef struct {
    size_t lora, dora, ia3, bitfit;
} HnPeftCounts;
HnPeftCounts hn_peft_counts(const HnParamTable* t);

#endif
