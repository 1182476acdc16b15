/*
 * The inference model: GPT-2 and Llama family forward only, with a KV cache, in the way of
 * llama2.c's run.c. A config, the weights as pointers into one buffer, a run state of
 * activation buffers and the cache, and one forward that takes n >= 1 new tokens at
 * positions pos..pos+n-1: a prefill is one call with a chunk, decoding is one call per
 * token, and every new token costs O(context), not a recompute of the prefix. No gradients,
 * no optimizer state.
 *
 * Not here: training (train/model.c is the training model; this file must not use it), the
 * checkpoint format (data/h5ckpt.h), sampling (eval/sample.h), tasks (eval/tasks.h).
 *
 * Shapes: L layers, C channels, NH query heads, NKV key/value heads (NKV = NH for GPT-2;
 * fewer for grouped-query attention), HS = C/NH head size, KV = NKV*HS, F the MLP width,
 * V vocabulary, Vp padded vocabulary (V rounded up to 128; the classifier computes Vp
 * logits of which the first V are meaningful), maxT the positions this model serves (the
 * cache's size: the checkpoint's context, or less when the caller caps it), R =
 * min(HN_EVAL_ROWS, maxT) the rows one pass through the layers takes (a longer forward runs
 * in blocks of R rows, so activations never grow with n), n new tokens of one forward call.
 */
#ifndef HONE_EVAL_MODEL_H
#define HONE_EVAL_MODEL_H

#include <stddef.h>

#include "data/tokenizer.h"

/* rows per pass through the layers: activations and logits are sized for R rows, not maxT */
#define HN_EVAL_ROWS 256

/* the context cap `hone eval` and `hone generate` use unless told (--context N): a model
 * with a longer context (SmolLM2: 8192) is served at this many positions */
#define HN_EVAL_DEFAULT_CONTEXT 2048

typedef enum { HN_EVAL_GPT2, HN_EVAL_LLAMA } HnEvalArch;

typedef struct {
    HnEvalArch arch;
    int L, C, NH;
    int NKV;          /* 0 = NH */
    int F;            /* 0 = 4C */
    int V, Vp;        /* Vp is derived from V */
    int context;      /* the checkpoint's model.context (gpt2: rows of pos_embed) */
    int maxT;         /* derived: min(context, the cap given to the constructor) */
    float eps;        /* norm epsilon (LayerNorm for gpt2, RMSNorm for llama) */
    float rope_theta; /* llama: RoPE base */
    int untied;       /* the classifier is lm_head.weight, not the token embedding */
} HnEvalConfig;

/* every tensor is a slice of HnEvalModel.params; per-layer tensors are stacked over L;
 * NULL where the architecture has no such row */
typedef struct {
    float* wte;     /* (Vp, C) token embedding */
    float* wpe;     /* (context, C) gpt2: position embedding */
    float* ln1w;    /* (L, C) attn_norm */
    float* ln1b;    /* (L, C) gpt2 */
    float* qkvw;    /* (L, 3C, C) gpt2 */
    float* qkvb;    /* (L, 3C) gpt2 */
    float* qw;      /* (L, C, C) llama attn.q */
    float* kw;      /* (L, KV, C) llama attn.k */
    float* vw;      /* (L, KV, C) llama attn.v */
    float* attow;   /* (L, C, C) attn.o */
    float* attob;   /* (L, C) gpt2 */
    float* ln2w;    /* (L, C) mlp_norm */
    float* ln2b;    /* (L, C) gpt2 */
    float* gatew;   /* (L, F, C) llama mlp.gate */
    float* fcw;     /* (L, F, C) mlp.up */
    float* fcb;     /* (L, F) gpt2 */
    float* fcprojw; /* (L, C, F) mlp.down */
    float* fcprojb; /* (L, C) gpt2 */
    float* lnfw;    /* (C) final_norm */
    float* lnfb;    /* (C) gpt2 */
    float* lm_head; /* (Vp, C) only when untied */
    float* wcls;    /* (Vp, C) the classifier: lm_head when untied, else wte (not a copy) */
} HnEvalWeights;

/* activations of up to R new rows, and the cache of all maxT positions */
typedef struct {
    float* x;           /* (R, C) the residual stream */
    float* xb;          /* (R, C) normed stream (input of the projections and the classifier) */
    float* qkv;         /* gpt2: (R, 3C) q, k, v side by side; llama: (R, C) q alone, its k
                           and v go straight into the cache */
    float* atty;        /* (R, C) attention output, heads side by side */
    float* proj;        /* (R, C) output of attn.o and of mlp.down */
    float* fch;         /* (R, F) gpt2: mlp.up before GELU; llama: mlp.gate */
    float* up;          /* (R, F) llama: mlp.up */
    float* fch_gelu;    /* (R, F) the MLP's hidden activation (GELU or SwiGLU output) */
    float *mean, *rstd; /* (R) norm statistics (the ops want somewhere to put them) */
    float* scores;      /* (threads, maxT) one attention row per thread (decode) */
    float* block;       /* (R, maxT) attention scores of one head over a block (prefill) */
    int threads;        /* rows of scores */
    int rows;           /* R */
    float* logits;      /* (R, Vp) */
    float* losses;      /* (R) */
    float* key_cache;   /* (L, maxT, KV) */
    float* value_cache; /* (L, maxT, KV) */
} HnEvalState;

typedef struct {
    HnEvalConfig config;
    float* params; /* one allocation holding every weight */
    size_t nparams;
    HnEvalWeights w;
    HnEvalState s;
    float* state_mem; /* one allocation holding the run state */
    size_t nstate;    /* its floats */
} HnEvalModel;

/* Fill dst with the numel floats of the parameter row called name (names as in the
 * training table: "tok_embed.weight", "layers.3.attn.qkv.weight", ...). HN_OK or HN_ERR
 * after hn_error(). */
typedef int (*HnEvalTensorFn)(void* ctx, const char* name, float* dst, size_t numel);

/* padded vocabulary: V rounded up to a multiple of 128 (as the trainer lays out tok_embed) */
int hn_eval_padded_vocab(int V);

/* Allocate a model for cfg and fill its weights by one call of fn per parameter row.
 * cfg->context is the model's own context; max_context caps the positions served (and so
 * the cache): maxT = min(context, max_context), 0 = no cap. Vp and maxT are derived, NKV 0
 * and F 0 take their defaults. NULL with an error. */
HnEvalModel* hn_eval_model_new(const HnEvalConfig* cfg, int max_context, HnEvalTensorFn fn,
                               void* ctx);
void hn_eval_model_free(HnEvalModel* m);

/* Load a checkpoint: its config (model.arch and shape), its weights (/model/<row>) and its
 * tokenizer (*tok is NULL when the checkpoint has none), serving min(model.context,
 * max_context) positions (0 = model.context). HN_OK or HN_ERR; on error nothing is left
 * allocated. */
int hn_eval_model_open(const char* ckpt_path, int max_context, HnEvalModel** m, HnTokenizer** tok);

/* The three forwards run tokens[0..n) at positions pos..pos+n-1: their keys and values
 * enter the cache and each attends to cache positions 0..its own. Cache entries at
 * positions >= pos are overwritten, so a caller can rewind by passing a smaller pos. Each
 * fails with an error if n < 1, pos < 0, pos + n > maxT, or an id is not below V. They
 * differ in what comes back: */

/* the logits (Vp) of the last row only (generation, the end of a prompt); valid until the
 * next call. NULL with an error */
float* hn_eval_forward(HnEvalModel* m, const int* tokens, int n, int pos);

/* the logits of every row into the caller's logits (n, Vp). HN_OK or HN_ERR */
int hn_eval_forward_all(HnEvalModel* m, const int* tokens, int n, int pos, float* logits);

/* *nll = sum over rows of -log p(targets[i] | tokens[..i]) (targets HN_IGNORE are skipped),
 * computed block by block, so the logits of all n rows never exist at once. Every target
 * must be below V or HN_IGNORE. HN_OK or HN_ERR */
int hn_eval_forward_nll(HnEvalModel* m, const int* tokens, const int* targets, int n, int pos,
                        double* nll);

#endif
