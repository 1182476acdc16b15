/*
 * Evaluation tasks on the inference model (`hone eval`):
 *   ppl  perplexity of a token shard or a text file, in the trainer's validation windows;
 *   mc   multiple choice from JSONL {"context", "choices", "answer"}: the choice with the
 *        highest log-likelihood given the context wins (accuracy), and the same per byte of
 *        the choice (accuracy_norm);
 *   gen  greedy generation from JSONL {"prompt", "reference"} up to a newline, scored by
 *        exact match and ROUGE-L F1 over words (Lin 2004).
 * mc and gen prompts can follow a template ({context} / {prompt}) and carry K examples
 * from the same file as shots; with a retriever, the top-k passages for the example's own
 * context or prompt (BM25, eval/retrieve.h) come first, each followed by a blank line. Not here:
 * printing results (cli/cmd_eval.c).
 */
#ifndef HONE_EVAL_TASKS_H
#define HONE_EVAL_TASKS_H

#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"
#include "eval/model.h"
#include "eval/retrieve.h"

typedef struct {
    const char* task;             /* "ppl", "mc" or "gen" */
    const char* data;             /* the data file */
    const char* template_path;    /* NULL: "{context}" (mc) or "{prompt}" (gen) */
    int shots;                    /* examples in front of each prompt (mc, gen) */
    uint64_t seed;                /* chooses the shots */
    int max_tokens;               /* gen: longest continuation */
    const HnRetriever* retriever; /* mc, gen: NULL, or the index whose top_k passages for
                                   * each example's context / prompt go first */
    int top_k;
} HnEvalOptions;

typedef struct {
    double ppl, loss;               /* ppl: exp(mean NLL) and the mean NLL (nats) */
    double accuracy, accuracy_norm; /* mc */
    double exact_match, rouge_l;    /* gen */
    size_t count;                   /* ppl: targets scored; mc, gen: examples */
} HnEvalResult;

/* run opt->task; tok may be NULL (then only ppl on a token shard works). HN_OK or HN_ERR */
int hn_eval_run(HnEvalModel* m, const HnTokenizer* tok, const HnEvalOptions* opt, HnEvalResult* r);

/* Sum of -log p(ids[i+1] | ids[..i]) over windows of the context T (m->config.maxT: the
 * model's context, or the cap it was opened with): window w scores the
 * targets ids[wT+1 .. wT+T] from the inputs ids[wT .. wT+T-1] (the trainer's validation
 * windows), a last shorter window the targets left (if at least 2 ids remain). *count gets
 * the targets scored. Every id must be below V. */
int hn_eval_nll(HnEvalModel* m, const int* ids, size_t n, double* nll, size_t* count);

/* log p(choice | ctx) summed over each choice's tokens, for nchoices choices after one
 * prefill of ctx (nctx >= 1). If a context and a choice exceed the model's context, the
 * context keeps its rightmost tokens. ll gets nchoices values. */
int hn_eval_choices_loglik(HnEvalModel* m, const int* ctx, int nctx, const HnTokens* choices,
                           int nchoices, double* ll);

/* ROUGE-L F1 over whitespace-separated words (1 if both have no words, 0 if one has none) */
double hn_rouge_l(const char* prediction, const char* reference);
/* 1 if the two are equal after trimming surrounding whitespace, else 0 */
int hn_exact_match(const char* prediction, const char* reference);

#endif
