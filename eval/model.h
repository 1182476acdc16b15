/*
 * The inference model: GPT-2 forward only, with a KV cache, in the way of llama2.c's run.c.
 * A config, the weights as pointers into one buffer, a run state of activation buffers and
 * the cache, and one forward that takes n >= 1 new tokens at positions pos..pos+n-1: a
 * prefill is one call with a chunk, decoding is one call per token, and every new token
 * costs O(context), not a recompute of the prefix. No gradients, no optimizer state.
 *
 * Not here: training (train/model.c is the training model; this file must not use it), the
 * checkpoint format (data/h5ckpt.h), sampling (eval/sample.h), tasks (eval/tasks.h).
 *
 * Shapes: L layers, C channels, NH heads, HS = C/NH head size, V vocabulary, Vp padded
 * vocabulary (V rounded up to 128; the classifier computes Vp logits of which the first V
 * are meaningful), maxT the context (positions), n new tokens of one forward call.
 */
#ifndef HONE_EVAL_MODEL_H
#define HONE_EVAL_MODEL_H

#include <stddef.h>

#include "data/tokenizer.h"

typedef struct {
    int L, C, NH, V, Vp, maxT;
    float eps; /* LayerNorm epsilon */
} HnEvalConfig;

/* every tensor is a slice of HnEvalModel.params; per-layer tensors are stacked over L */
typedef struct {
    float* wte;     /* (Vp, C) token embedding, tied with the classifier */
    float* wpe;     /* (maxT, C) position embedding */
    float* ln1w;    /* (L, C) */
    float* ln1b;    /* (L, C) */
    float* qkvw;    /* (L, 3C, C) */
    float* qkvb;    /* (L, 3C) */
    float* attow;   /* (L, C, C) */
    float* attob;   /* (L, C) */
    float* ln2w;    /* (L, C) */
    float* ln2b;    /* (L, C) */
    float* fcw;     /* (L, 4C, C) */
    float* fcb;     /* (L, 4C) */
    float* fcprojw; /* (L, C, 4C) */
    float* fcprojb; /* (L, C) */
    float* lnfw;    /* (C) */
    float* lnfb;    /* (C) */
} HnEvalWeights;

/* activations of the n <= maxT new rows of one forward, and the cache of all positions */
typedef struct {
    float* x;           /* (maxT, C) the residual stream */
    float* xb;          /* (maxT, C) normed stream (input of qkv, up, the classifier) */
    float* qkv;         /* (maxT, 3C) */
    float* atty;        /* (maxT, C) attention output, heads side by side */
    float* proj;        /* (maxT, C) output of attn.o and of mlp.down */
    float* fch;         /* (maxT, 4C) */
    float* fch_gelu;    /* (maxT, 4C) */
    float *mean, *rstd; /* (maxT) LayerNorm statistics (the op wants somewhere to put them) */
    float* scores;      /* (threads, maxT) one attention row per thread */
    float* block;       /* (PREFILL_ROWS, maxT) attention scores of a block of prefill rows */
    int threads;        /* rows of scores */
    float* logits;      /* (maxT, Vp) */
    float* key_cache;   /* (L, maxT, C) */
    float* value_cache; /* (L, maxT, C) */
} HnEvalState;

typedef struct {
    HnEvalConfig config;
    float* params; /* one allocation holding every weight */
    size_t nparams;
    HnEvalWeights w;
    HnEvalState s;
    float* state_mem; /* one allocation holding the run state */
} HnEvalModel;

/* Fill dst with the numel floats of the parameter row called name (names as in the
 * training table: "tok_embed.weight", "layers.3.attn.qkv.weight", ...). HN_OK or HN_ERR
 * after hn_error(). */
typedef int (*HnEvalTensorFn)(void* ctx, const char* name, float* dst, size_t numel);

/* padded vocabulary: V rounded up to a multiple of 128 (as the trainer lays out tok_embed) */
int hn_eval_padded_vocab(int V);

/* allocate a model for cfg (cfg->Vp is derived from cfg->V) and fill its weights by one
 * call of fn per parameter row. NULL with an error. */
HnEvalModel* hn_eval_model_new(const HnEvalConfig* cfg, HnEvalTensorFn fn, void* ctx);
void hn_eval_model_free(HnEvalModel* m);

/* Load a checkpoint: its config, its weights (/model/<row>) and its tokenizer (*tok is NULL
 * when the checkpoint has none). HN_OK or HN_ERR; on error nothing is left allocated. */
int hn_eval_model_open(const char* ckpt_path, HnEvalModel** m, HnTokenizer** tok);

/* Run tokens[0..n) at positions pos..pos+n-1: their keys and values enter the cache, each
 * attends to cache positions 0..its own, and the logits (n, Vp) come back (valid until the
 * next call). Cache entries at positions >= pos are overwritten, so a caller can rewind by
 * passing a smaller pos. NULL with an error if n < 1, pos < 0, pos + n > maxT, or an id is
 * not below V. */
float* hn_eval_forward(HnEvalModel* m, const int* tokens, int n, int pos);

#endif
