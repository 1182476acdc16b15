/*
 * The sampler: greedy, temperature, top-k, top-p. Probabilities are computed in float
 * after subtracting the max logit; cumulative sums are in double so that p close to 1
 * still cuts where it should over a 50k vocabulary.
 */
#include "eval/sample.h"

#include <math.h>
#include <stdlib.h>

#include "core/error.h"

int hn_sampler_init(HnSampler* s, int V, const HnSampleParams* p, uint64_t seed) {
    s->probs = NULL;
    s->order = NULL;
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return hn_error("temperature must be >= 0 (got %g)", (double)p->temperature);
    if (p->top_k < 0) return hn_error("top-k must be >= 0 (got %d)", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return hn_error("top-p must be in (0, 1] (got %g)", (double)p->top_p);
    if (V < 1) return hn_error("sampling needs a vocabulary of at least one token");
    s->p = *p;
    s->V = V;
    hn_rng_seed(&s->rng, seed);
    s->probs = malloc((size_t)V * sizeof *s->probs);
    s->order = malloc((size_t)V * sizeof *s->order);
    if (!s->probs || !s->order) {
        hn_sampler_free(s);
        return hn_error("out of memory");
    }
    return HN_OK;
}

void hn_sampler_free(HnSampler* s) {
    free(s->probs);
    free(s->order);
    s->probs = NULL;
    s->order = NULL;
}

int hn_sample_argmax(const float* logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

/* qsort has no context argument; the probabilities travel in a file-level pointer, so the
 * sort is not reentrant across threads (sampling is single-stream) */
static const float* sort_probs;

static int by_prob_desc(const void* a, const void* b) {
    int i = *(const int*)a, j = *(const int*)b;
    float pi = sort_probs[i], pj = sort_probs[j];
    if (pi != pj) return pi > pj ? -1 : 1;
    return i < j ? -1 : i > j; /* equal probabilities: lower id first, so runs repeat */
}

int hn_sampler_next(HnSampler* s, const float* logits) {
    const int V = s->V;
    const HnSampleParams* p = &s->p;
    if (p->temperature == 0.0f || p->top_k == 1) return hn_sample_argmax(logits, V);

    const int top = hn_sample_argmax(logits, V);
    const float maxv = logits[top];
    double total = 0.0;
    for (int v = 0; v < V; v++) {
        s->probs[v] = expf((logits[v] - maxv) / p->temperature);
        total += s->probs[v];
    }
    for (int v = 0; v < V; v++)
        s->probs[v] = (float)(s->probs[v] / total);

    /* candidates in order of probability; without a cut every token is one */
    const int cut = p->top_k > 0 || p->top_p < 1.0f;
    int n = 0;
    double mass = 1.0;
    if (cut) {
        /* With only top-p, a token below (1 - p) / (V - 1) cannot be in the nucleus: all
         * such tokens together (at most V - 1 of them: the most likely one always stays)
         * have less than 1 - p, so the others have more than p (llama2.c's trick; it keeps
         * the sort short). */
        float cutoff = p->top_k == 0 && V > 1 ? (1.0f - p->top_p) / (float)(V - 1) : 0.0f;
        for (int v = 0; v < V; v++)
            if (s->probs[v] >= cutoff || v == top) s->order[n++] = v;
        sort_probs = s->probs;
        qsort(s->order, (size_t)n, sizeof *s->order, by_prob_desc);
        if (p->top_k > 0 && p->top_k < n) n = p->top_k;
        mass = 0.0;
        for (int i = 0; i < n; i++)
            mass += s->probs[s->order[i]];
        if (p->top_p < 1.0f) {
            /* the nucleus of the (renormalised) top-k distribution: the shortest prefix
             * whose probability reaches p */
            double want = p->top_p * mass, acc = 0.0;
            for (int i = 0; i < n; i++) {
                acc += s->probs[s->order[i]];
                if (acc >= want) {
                    n = i + 1;
                    break;
                }
            }
            mass = acc;
        }
    }

    double r = hn_rng_uniform(&s->rng) * mass, acc = 0.0;
    if (!cut) { /* walk the vocabulary in id order */
        int last = 0;
        for (int v = 0; v < V; v++) {
            if (s->probs[v] <= 0.0f) continue;
            last = v;
            acc += s->probs[v];
            if (acc > r) return v;
        }
        return last; /* r fell in the rounding gap at the top */
    }
    for (int i = 0; i < n; i++) {
        acc += s->probs[s->order[i]];
        if (acc > r) return s->order[i];
    }
    return s->order[n - 1];
}
