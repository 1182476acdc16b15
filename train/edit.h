/*
 * Knowledge editing: a rank-one update of one MLP's down-projection that rewrites a fact
 * (ROME: Meng et al., "Locating and Editing Factual Associations in GPT", 2022).
 *
 * A request is (subject, prompt with "{}" for the subject, new object). With W the
 * down-projection (C, F) of block `layer` and k the MLP key (its input, F wide) at the
 * subject's last token:
 *   1. C_k = E[k k^T], the keys' uncentred second moment over a corpus (hn_editor_covariance),
 *      plus a ridge of 1e-3 of its mean diagonal, kept as a Cholesky factor.
 *   2. Prefixes: nprefix short texts sampled from the model itself (starting "The",
 *      "Therefore", "Because", "I", "You"; top-5 sampling, seeded), each followed by ". " and
 *      the prompt, besides the bare prompt (ROME's context templates).
 *   3. The value: a vector delta added to the MLP output at the subject's last token of every
 *      prefixed prompt, found by Adam on
 *        mean over prompts of -mean log p(object tokens | prompt)
 *        + kl_weight * KL(p || p_before) of the next token after the subject in "{} is a"
 *        + weight_decay * ||delta|| / ||v0||^2,
 *      with ||delta|| clamped to clamp * ||v0||, v0 = W k0 (+ bias) the MLP output for the bare
 *      prompt; stops early once the object's loss is below 0.05.
 *   4. The update: u = C_k^{-1} k_mean (k_mean over the prompts), and
 *        W' = W + delta u^T / (u . k0),
 *      so W' k0 = v0 + delta exactly, and keys C_k-orthogonal to k_mean map as before.
 * The model runs on the training model (train/model.h, its `probe`), everything frozen, the
 * backward stopping at the edited layer.
 */
#ifndef HONE_EDIT_H
#define HONE_EDIT_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "data/tokenizer.h"
#include "train/model.h"

typedef struct {
    const char* subject;
    const char* prompt; /* "{}" marks the subject (or the subject appears verbatim) */
    const char* target; /* the new object, with its leading space: " Rome" */
} HnEditRequest;

typedef struct {
    int layer;          /* the block whose mlp.down changes */
    int steps;          /* Adam steps on delta (20) */
    float lr;           /* (0.5) */
    float kl_weight;    /* (0.0625) */
    float weight_decay; /* (0.5) */
    float clamp;        /* ||delta|| <= clamp * ||v0|| (4) */
    int nprefix;        /* sampled prefixes (10: five starts x lengths 5 and 10 tokens) */
    uint64_t seed;
} HnEditOptions;

void hn_edit_defaults(HnEditOptions* o, int nlayers);

typedef struct {
    HnModel model;
    HnTokenizer* tok;
    char* config_yaml;
    char* arch;
    int64_t step, tokens; /* the checkpoint's counters, kept on save */
    int maxB, maxT;
    int layer;    /* of the covariance below; -1: none yet */
    int F;        /* key width */
    double* chol; /* (F, F) lower Cholesky factor of C_k + ridge */
    size_t cov_n; /* keys the covariance averaged */
    float* saved; /* the down-projection before the applied edit (restore) */
    int row;      /* its row in the parameter table; -1: no edit applied */
} HnEditor;

/* what one edit did */
typedef struct {
    int steps;          /* Adam steps taken */
    double loss_before; /* the object's mean negative log-likelihood over the prompts */
    double loss_after;
    double delta_norm, v0_norm;
} HnEditStats;

/* load a whole-model checkpoint (not a frozen-base run's add-ons) with room for maxB
 * sequences of maxT tokens */
int hn_editor_open(HnEditor* e, const char* ckpt, int maxB, int maxT);
void hn_editor_close(HnEditor* e);

/* C_k of `layer` from up to max_tokens tokens of data: a glob of token shards (.bin) or a
 * text file (tokenized as one document) */
int hn_editor_covariance(HnEditor* e, int layer, const char* data, size_t max_tokens);

/* apply the edit to the model in place (the covariance must be of o->layer); an edit
 * already applied is first undone */
int hn_editor_apply(HnEditor* e, const HnEditRequest* r, const HnEditOptions* o, HnEditStats* st);
/* put the edited row back as it was */
void hn_editor_restore(HnEditor* e);

/* the prompt text with the subject in place of "{}" (malloc'd), or NULL with an error when
 * the prompt has neither "{}" nor the subject */
char* hn_edit_fill(const char* prompt, const char* subject);

/* log p(target | text) summed over the target's tokens, and whether the model's top next
 * token after text is the target's first token */
int hn_editor_score(HnEditor* e, const char* text, const char* target, double* logp, int* top);
/* the next-token distribution after text (V floats) and its top token */
int hn_editor_next(HnEditor* e, const char* text, float* probs, int* top);

/* write the model as a checkpoint (the source's config, tokenizer and counters) */
int hn_editor_save(HnEditor* e, const char* out, int deflate);

/* the rank-one step on its own (exposed for tests): W (OC, F) += delta u^T / (u . k0) */
void hn_edit_rank_one(float* W, int OC, int F, const float* delta, const double* u,
                      const float* k0);
/* solve (L L^T) x = b in place, L lower triangular (F, F) */
void hn_edit_cholesky_solve(const double* L, int F, double* b);
/* the Cholesky factor of the symmetric positive definite A (F, F) in place (lower half);
 * HN_ERR if A is not positive definite */
int hn_edit_cholesky(double* A, int F);

#endif
