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
 * cache's size T: the checkpoint's context, or less when the caller caps it; less the
 * prefix and virtual tokens of the add-ons below, when it has them), R =
 * min(HN_EVAL_ROWS, maxT) the rows one pass through the layers takes (a longer forward runs
 * in blocks of R rows, so activations never grow with n), n new tokens of one forward call.
 *
 * Parameter-efficient add-ons: LoRA, DoRA and IA3 fold into the base weights at load and
 * leave a plain model. Prefix tuning, prompt tuning / P-tuning and bottleneck adapters do
 * not fold; the model applies them (HnEvalAddons, set by hn_eval_model_set_peft or read by
 * hn_eval_model_open). Prefix and virtual tokens take the first Px + Pv = virt positions of
 * the cache: positions 0..Px-1 of every layer hold the prefix keys and values (not rotated),
 * Px..virt-1 the virtual tokens' own keys and values, computed once when the add-ons are
 * set. They are invisible to callers: a caller's position p is the cache's position
 * virt + p (GPT-2's position embedding and Llama's RoPE use virt + p), and the callers'
 * maxT is the cache's size less virt.
 */
#ifndef HONE_EVAL_MODEL_H
#define HONE_EVAL_MODEL_H

#include <stddef.h>

#include "data/tokenizer.h"
#include "train/peft/peft.h"

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
    int maxT;         /* derived: the positions callers may use: min(context, the cap given
                       * to the constructor), less the virtual positions of prefix and prompt
                       * tuning (HnEvalAddons.virt) once those are set */
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
    float* scores;      /* (threads, T) one attention row per thread (decode) */
    float* block;       /* (R, T) attention scores of one head over a block (prefill) */
    int threads;        /* rows of scores */
    int rows;           /* R */
    int T;              /* positions the cache holds: min(context, cap) = config.maxT + virt */
    float* logits;      /* (R, Vp) */
    float* losses;      /* (R) */
    float* key_cache;   /* (L, T, KV) */
    float* value_cache; /* (L, T, KV) */
} HnEvalState;

/* ---- parameter-efficient methods that do not fold into the base (train/peft/peft.h) ---- */

/* where a bottleneck adapter f(h) = up(act(down(h))) sits, as the trainer places it
 * (AdapterHub's configurations on a pre-norm block): with x the stream a sublayer reads and
 * s its output (after attn.o / mlp.down and their biases), the stream becomes x + s + ... */
typedef enum {
    HN_EVAL_ADAPTER_NONE,
    HN_EVAL_ADAPTER_PFEIFFER, /* + f(x + s) after the MLP (SeqBn) */
    HN_EVAL_ADAPTER_HOULSBY,  /* + f(s) after attention and after the MLP (DoubleSeqBn) */
    HN_EVAL_ADAPTER_PARALLEL  /* + scaling f(x) beside the MLP (ParBn) */
} HnEvalAdapterKind;

/* The add-ons as plain arrays in the checkpoint's (PEFT's) layouts, for
 * hn_eval_model_set_peft, which copies (and folds) them: the caller keeps ownership. A zero
 * length / HN_EVAL_ADAPTER_NONE leaves a method off, and its arrays are not read.
 * Shapes: KV = NKV * HS; cols = 2 L KV; A = the floats of one adapter: down.weight (R, C),
 * down.bias (R), up.weight (C, R), up.bias (C), back to back (2 R C + R + C). */
typedef struct {
    /* prefix tuning (Li & Liang 2021): rows prefix.* */
    int prefix_len;            /* Px; 0 = none */
    int prefix_hidden;         /* the projection's width H; 0 = none */
    const float* prefix_embed; /* (Px, cols) the prefix itself, or (Px, KV) with a projection
                                * (KV wide, as PEFT makes it) */
    const float *prefix_w0, *prefix_b0; /* (H, KV), (H) */
    const float *prefix_w1, *prefix_b1; /* (cols, H), (cols): kv = tanh(embed W0^T + b0) W1^T + b1
                                         * (folded here) */
    /* prompt tuning (Lester et al. 2021) and P-tuning (Liu et al. 2021): rows prompt.* */
    int prompt_len;            /* Pv; 0 = none */
    int prompt_hidden;         /* P-tuning's encoder width H; 0 = plain prompt tuning */
    const float* prompt_embed; /* (Pv, C) */
    const float* prompt_w[3];  /* (H, C), (H, H), (C, H): E = relu(relu(embed W0^T + b0)
                                * W1^T + b1) W2^T + b2 (computed here) */
    const float* prompt_b[3];  /* (H), (H), (C) */
    /* bottleneck adapters: rows layers.N.adapter_attn.* and layers.N.adapter_mlp.* */
    HnEvalAdapterKind adapter;
    HnActivation adapter_act;  /* the trainer's (train/peft/peft.h) */
    int adapter_dim;           /* R = C / reduction */
    float adapter_scaling;     /* the parallel adapter's output scale */
    const float* adapter_attn; /* (L, A) layer after layer; houlsby only */
    const float* adapter_mlp;  /* (L, A) */
} HnEvalPeft;

/* the add-ons a model applies (all in mem; pointers NULL where a method is off) */
typedef struct {
    int Px, Pv, virt; /* prefix positions, virtual tokens, and their sum */
    HnEvalAdapterKind adapter;
    HnActivation act;
    int R;
    float scaling;
    float* prefix;       /* (Px, cols) the folded prefix (also copied into the cache) */
    float* prompt;       /* (Pv, C) the virtual tokens' embeddings (P-tuning's encoder applied) */
    float* adapter_attn; /* (L, A) houlsby */
    float* adapter_mlp;  /* (L, A) */
    float* hidden;       /* (R rows, adapter R) the adapter's bottleneck activations */
    float* mem;          /* one allocation holding the above */
} HnEvalAddons;

typedef struct {
    HnEvalConfig config;
    float* params; /* one allocation holding every weight */
    size_t nparams;
    HnEvalWeights w;
    HnEvalState s;
    float* state_mem;  /* one allocation holding the run state */
    size_t nstate;     /* its floats */
    HnEvalAddons peft; /* prefix, prompt and adapters (all zero without) */
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

/* Give a model (made by hn_eval_model_new, its weights final) the add-ons of *peft (NULL
 * or all off: none), replacing any it had: copies them (folding the prefix projection and
 * computing P-tuning's virtual tokens), writes the prefix into every layer's cache, runs the
 * virtual tokens through the layers into the cache, and sets config.maxT to the cache's
 * positions less virt = Px + Pv. Errors (the model unchanged): negative sizes, a missing
 * array, virt leaving no position to callers. HN_OK or HN_ERR. */
int hn_eval_model_set_peft(HnEvalModel* m, const HnEvalPeft* peft);

/* Load a checkpoint: its config (model.arch and shape), its weights (/model/<row>) and its
 * tokenizer (*tok is NULL when the checkpoint has none), serving min(model.context,
 * max_context) positions (0 = model.context), less the prefix and virtual tokens of its
 * add-ons (/peft/<row>: LoRA, DoRA and IA3 folded into the base, prefix, prompt, P-tuning
 * and adapters set as by hn_eval_model_set_peft). HN_OK or HN_ERR; on error nothing is left
 * allocated. */
int hn_eval_model_open(const char* ckpt_path, int max_context, HnEvalModel** m, HnTokenizer** tok);

/* The three forwards run tokens[0..n) at positions pos..pos+n-1: their keys and values
 * enter the cache and each attends to cache positions 0..its own (and to the prefix and
 * virtual tokens before position 0, when the model has them). Cache entries at
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
