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
    HnLinear lin;     /* the base linear it attaches to */
    char site[16];    /* the site as targeted ("attn.q" may be a slice of gpt2's attn.qkv) */
    int in, base_out; /* the base linear's weight is (base_out, in) */
    int off, out;     /* the output columns [off, off + out) the add-on acts on */
    int rank;         /* LoRA / DoRA */
    float scale;      /* LoRA / DoRA: alpha / r or alpha / sqrt(r) */
    float dropout;    /* LoRA */
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

/* prefix tuning (Li & Liang 2021): P virtual key/value rows per layer, in PEFT's layout:
 * one (P, 2 L KV) matrix whose column block 2l holds layer l's keys and 2l+1 its values
 * (KV = kv heads x head size); real tokens take positions P.. and the prefix keys are not
 * rotated. With a projection the matrix is MLP(embed) (Linear, tanh, Linear) while training
 * and folded into a plain prefix for inference; as in PEFT the embedding is KV wide. */
typedef struct {
    int P;                              /* 0 = no prefix */
    int hidden;                         /* the projection MLP's width, 0 = none */
    int cols;                           /* 2 L KV */
    int dim;                            /* KV: the projection's input width */
    int row_embed;                      /* (P, cols), or (P, KV) with a projection */
    int row_w0, row_b0, row_w1, row_b1; /* the projection: (hidden, KV), (hidden), (cols, hidden) */
    float* kv;                          /* with a projection: (P, cols) this step's prefix */
    float* h;                           /* (P, hidden) tanh output */
    float* dkv; /* with a projection: (P, cols) its gradient, summed over layers */
} HnPrefix;

/* prompt tuning (Lester et al. 2021) and P-tuning (Liu et al. 2021): P virtual token
 * embeddings prepended to the input at positions 0..P-1 (after a prefix); no loss there.
 * P-tuning makes them with PEFT's MLP prompt encoder: Linear, ReLU, Linear, ReLU, Linear. */
typedef struct {
    int P;      /* 0 = none */
    int hidden; /* P-tuning's encoder width, 0 = plain prompt tuning */
    int row_embed;
    int row_w[3], row_b[3];
    float* emb;     /* (P, C) the virtual tokens this step */
    float *h1, *h2; /* (P, hidden) the encoder's ReLU outputs */
    float* demb;    /* (P, C) their gradient, summed over the batch */
} HnPrompt;

/* bottleneck adapters, f(h) = up(act(down(h))), R = C / reduction, placed as AdapterHub
 * places them on a pre-norm block with input stream x and sublayer output s (the stream
 * becomes x + s + ...):
 *   Houlsby (Houlsby et al. 2019; DoubleSeqBn)  + f(s), after attention and after the MLP
 *   Pfeiffer (Pfeiffer et al. 2021; SeqBn)      + f(x + s), after the MLP
 *   parallel (He et al. 2022; ParBn)            + scaling f(x), beside the MLP */
typedef enum { HN_ADAPTER_PFEIFFER, HN_ADAPTER_HOULSBY, HN_ADAPTER_PARALLEL } HnAdapterKind;
typedef enum { HN_ACT_RELU, HN_ACT_SWISH, HN_ACT_GELU, HN_ACT_TANH } HnActivation;
typedef struct {
    int on;
    HnAdapterKind kind;
    HnActivation act;
    int R;
    float scaling;
    int near_identity;
    int* rows;   /* (L, 2 points, 4): down.weight, down.bias, up.weight, up.bias; -1 = none */
    float* mem;  /* per (layer, point): the input (N, C), pre-activation and activation (N, R) */
    float* dsub; /* (N, C) the sublayer output's gradient */
    float* din;  /* (N, C) the adapter input's gradient */
    float* dh;   /* (N, R) scratch */
} HnAdapters;

typedef struct {
    int n;
    HnAddon* a;
    HnPrefix prefix;
    HnPrompt prompt;
    HnAdapters adapters;
    int C;           /* channels (the virtual tokens' width) */
    int V;           /* vocabulary (prompt init from sampled tokens) */
    int prompt_init; /* 0 random, 1 sampled vocabulary rows, 2 a text's tokens */
    int init_ids[HN_MAX_LIST];
    int n_init_ids;
    float* virt_mem; /* the prefix's and prompt's per-step buffers */
    float* prompt_scratch;
    float* prefix_scratch;
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
    float* mem;              /* every add-on's forward state */
    unsigned char* keep_mem; /* dropout masks */
    float* scratch;          /* (maxN, widest) */
    float* scratch2;
    float* scratch3;
    size_t scratch_floats;
    const HnParamTable* t; /* rows and values of the add-ons */
    float* grads;          /* in t's gradient layout */
} HnPeft;

/* is a row name one of an add-on's (lora_A, ..., prefix.*, prompt.*, *.adapter_*) */
int hn_peft_is_addon_name(const char* name);
/* prompt tuning from a text: the run's tokenizer's ids of peft.prompt.text (before
 * hn_peft_init); at most HN_MAX_LIST are kept, repeated to fill the prompt as PEFT does */
void hn_peft_set_prompt_ids(HnPeft* p, const int* ids, int n);
/* virtual tokens prepended (prompt / ptuning) and prefix positions, 0 when none */
int hn_peft_virtual_tokens(const HnPeft* p);
int hn_peft_prefix_length(const HnPeft* p);

/* PEFT's encoders, one implementation for training, inference and export (the caller owns
 * the intermediates, which training keeps for its backward):
 *   prompt  h1 = relu(embed W0^T + b0), h2 = relu(h1 W1^T + b1), emb = h2 W2^T + b2
 *           embed (P, C), W0 (H, C), W1 (H, H), W2 (C, H)
 *   prefix  h = tanh(embed W0^T + b0), kv = h W1^T + b1;  embed (P, D), W0 (H, D), W1 (cols, H) */
void hn_peft_prompt_encode(float* emb, float* h1, float* h2, const float* embed,
                           const float* const w[3], const float* const b[3], int P, int C, int H);
void hn_peft_prefix_project(float* kv, float* h, const float* embed, const float* w0,
                            const float* b0, const float* w1, const float* b1, int P, int D, int H,
                            int cols);
/* what inference uses, for exports: the prefix (P, 2 L KV), its projection applied, and the
 * virtual tokens (P, C), P-tuning's encoder applied; from the add-on rows of t. Only the
 * out of memory of the projection's scratch fails. */
int hn_peft_prefix_values(const HnPeft* p, const HnParamTable* t, float* kv);
int hn_peft_prompt_values(const HnPeft* p, const HnParamTable* t, float* emb);

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
void hn_peft_linear_backward(HnPeft* p, int layer, HnLinear lin, float* dinp, float* dw, float* db,
                             const float* dout, const float* inp, const float* w, int N, int C,
                             int OC);

/* Fold one add-on into its base weight w (base_out, in) and bias b (NULL if none): rows[]
 * are the add-on's values (A, B, m for LoRA / DoRA; l for IA3) */
void hn_peft_fold(const HnAddon* a, float* w, float* b, const float* A, const float* B,
                  const float* m, const float* l);
/* fold every add-on of p into the base rows of t; afterwards the hooks apply the base only */
int hn_peft_merge(HnPeft* p, HnParamTable* t);
/* undo hn_peft_merge (LoRA only: DoRA's and IA3's folds are not kept reversible) */
int hn_peft_unmerge(HnPeft* p, HnParamTable* t);

/* ---- virtual tokens, prefix, adapters (train/peft/prompt.c, adapter.c) ---- */

/* embeddings of one micro-batch with the virtual tokens in front: out (B, P + T, C); real
 * token t of sequence b at row P + t gets wte[token] + wpe[pos0 + P + t] (wpe NULL: none);
 * computes P-tuning's encoder first */
void hn_peft_embed_forward(HnPeft* p, float* out, const int* tokens, const float* wte,
                           const float* wpe, int pos0, int B, int T, int C);
/* the virtual tokens' gradients from dout (B, P + T, C), into the prompt rows (and
 * P-tuning's encoder) */
void hn_peft_embed_backward(HnPeft* p, const float* dout, int B, int T, int C);
/* the prefix of this step (computes the projection MLP while training): (P, cols) with row
 * stride cols; NULL without a prefix */
const float* hn_peft_prefix_begin(HnPeft* p);
/* where layer l's prefix key / value gradients accumulate (row stride cols), NULL if none */
float* hn_peft_prefix_grad(HnPeft* p);
/* after the backward's last layer: the projection MLP's backward from the summed gradient */
void hn_peft_prefix_end(HnPeft* p);

/* an adapter's non-linearity and its derivative (given z and act(z)): ReLU, x sigmoid(x),
 * exact (erf) GELU as transformers' "gelu", tanh; the inference path uses the same */
float hn_peft_activation(HnActivation k, float z);
float hn_peft_activation_grad(HnActivation k, float z, float a);

/* adapter points of a block */
enum { HN_POINT_ATTN = 0, HN_POINT_MLP = 1 };
/* the sublayer output s (N, C) in place: s + f(in) (times scaling for parallel), in = s,
 * x + s or x by kind; x (N, C) is the stream the sublayer read */
void hn_peft_adapter_forward(HnPeft* p, int layer, int point, float* s, const float* x, int N,
                             int C);
/* dres (N, C) holds the gradient of x + s + f(...): accumulates the adapter's gradients,
 * adds what flows into x to dres, and returns the gradient of the sublayer's own output s
 * (dres itself where no adapter is) */
const float* hn_peft_adapter_backward(HnPeft* p, int layer, int point, float* dres, int N, int C);

/* trainable parameters per method: lora (A, B), dora (m), ia3, bitfit (biases), prefix,
 * prompt (and P-tuning), adapter */
typedef struct {
    size_t lora, dora, ia3, bitfit, prefix, prompt, adapter;
} HnPeftCounts;
HnPeftCounts hn_peft_counts(const HnParamTable* t);

#endif
