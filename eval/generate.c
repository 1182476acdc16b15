/* Generation with the KV cache; see generate.h. */
#include "eval/generate.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int hn_eval_generate(HnEvalModel* m, HnSampler* s, const int* prompt, size_t n, int max_tokens,
                     int stop_id, HnTokenFn on_token, void* ctx, int* generated) {
    const int maxT = m->config.maxT;
    if (generated) *generated = 0;
    if (n < 1) return hn_error("generation needs a prompt of at least one token");
    /* the window the cache holds: the rightmost tokens of the prompt and what follows */
    int* window = malloc((size_t)maxT * sizeof *window);
    if (!window) return hn_error("out of memory");
    int len = n > (size_t)maxT ? maxT : (int)n;
    memcpy(window, prompt + (n - (size_t)len), (size_t)len * sizeof *window);
    const float* last = hn_eval_forward(m, window, len, 0); /* the logits of the last row */
    int rc = last ? HN_OK : HN_ERR;
    for (int i = 0; rc == HN_OK && i < max_tokens; i++) {
        int next = hn_sampler_next(s, last);
        if (next == stop_id) break;
        if (generated) *generated = i + 1;
        if (on_token(ctx, next) || i + 1 == max_tokens) break;
        if (len == maxT) {
            /* the cache is full: start again from the rightmost half of the window */
            int keep = maxT / 2 > 0 ? maxT / 2 : 1;
            memmove(window, window + (len - keep + 1), (size_t)(keep - 1) * sizeof *window);
            window[keep - 1] = next;
            len = keep;
            last = hn_eval_forward(m, window, len, 0);
        } else {
            window[len] = next;
            last = hn_eval_forward(m, &next, 1, len);
            len++;
        }
        if (!last) rc = HN_ERR;
    }
    free(window);
    return rc;
}
