/*
 * Autoregressive generation on the inference model: prefill the prompt once, then one
 * cached forward per new token. Used by `hone generate` (sampling, streamed) and by the
 * gen task (greedy, stopped at a newline). Not here: choosing a token (eval/sample.h).
 */
#ifndef HONE_EVAL_GENERATE_H
#define HONE_EVAL_GENERATE_H

#include <stddef.h>

#include "eval/model.h"
#include "eval/sample.h"

/* called with each new token; a nonzero return stops generation after it */
typedef int (*HnTokenFn)(void* ctx, int id);

/* Generate up to max_tokens after prompt[0..n) (n >= 1), stopping before stop_id (not
 * reported; -1 = none), or when on_token asks. A prompt longer than the context keeps its
 * rightmost maxT tokens; when the cache is full the rightmost maxT/2 tokens are prefilled
 * again and generation goes on. *generated (may be NULL) gets the number of tokens
 * reported. HN_OK or HN_ERR. */
int hn_eval_generate(HnEvalModel* m, HnSampler* s, const int* prompt, size_t n, int max_tokens,
                     int stop_id, HnTokenFn on_token, void* ctx, int* generated);

#endif
