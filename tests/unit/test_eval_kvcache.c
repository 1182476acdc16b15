/*
 * The inference model (eval/model.c) against the training model (train/model.c) as an
 * independent reference: the same random weights go into both (biases and norms random
 * too, so every row matters), and the logits of every position must agree whether the
 * eval model decodes token by token with its KV cache, prefills the whole sequence at
 * once, or prefills a chunk and then decodes. Error measure: max |eval - train| over the
 * V real logits of every position, divided by max |train logit|; it must be <= 1e-5.
 */
#include "eval/model.h"

#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "testing.h"
#include "train/model.h"

#define TOL 1e-5

/* the eval model's tensor source: rows of the training model's parameter table */
static int from_train_model(void* ctx, const char* name, float* dst, size_t numel) {
    const HnModel* hm = ctx;
    int i = hn_params_find(&hm->params, name);
    if (i < 0) return hn_error("no row %s", name);
    const HnParamRow* r = &hm->params.rows[i];
    if (r->numel != numel) return hn_error("%s: %zu floats, wanted %zu", name, r->numel, numel);
    memcpy(dst, hm->params.data + r->offset, numel * sizeof(float));
    return HN_OK;
}

/* every bias and norm parameter random, so a row loaded into the wrong place shows */
static void randomize_biases_and_norms(HnModel* hm, uint64_t seed) {
    HnRng rng;
    hn_rng_seed(&rng, seed);
    for (int i = 0; i < hm->params.n; i++) {
        const HnParamRow* r = &hm->params.rows[i];
        int is_bias = strstr(r->name, ".bias") != NULL, is_norm = strstr(r->name, "norm.") != NULL;
        float* x = hm->params.data + r->offset;
        for (size_t j = 0; j < r->numel && (is_bias || is_norm); j++)
            x[j] = is_bias ? 0.1f * hn_rng_normal(&rng) : 1.0f + 0.2f * hn_rng_normal(&rng);
    }
}

/* max |got - want| over the first V of each row's Vp logits, relative to max |want| */
static double rel_error(const float* got, const float* want, int n, int V, int Vp) {
    double err = 0.0, scale = 0.0;
    for (int i = 0; i < n; i++)
        for (int v = 0; v < V; v++) {
            double d = fabs((double)got[(size_t)i * Vp + v] - want[(size_t)i * Vp + v]);
            err = d > err ? d : err;
            double a = fabs(want[(size_t)i * Vp + v]);
            scale = a > scale ? a : scale;
        }
    return err / scale;
}

int main(void) {
    const HnModelConfig cfg = {.L = 3,
                               .C = 48,
                               .NH = 4,
                               .V = 83,
                               .Vp = hn_model_padded_vocab(83),
                               .maxT = 24,
                               .eps = 1e-5f};
    const int T = cfg.maxT, V = cfg.V, Vp = cfg.Vp;
    HnModel hm;
    CHECK(hn_model_create(&hm, &cfg, 1, T) == HN_OK, "%s", hn_error_message());
    hn_model_init(&hm, 0.3f, 42); /* larger than GPT-2's 0.02, so attention is not uniform */
    randomize_biases_and_norms(&hm, 7);

    HnEvalConfig ec = {.L = cfg.L, .C = cfg.C, .NH = cfg.NH, .V = V, .maxT = T, .eps = cfg.eps};
    HnEvalModel* m = hn_eval_model_new(&ec, from_train_model, &hm);
    CHECK(m != NULL, "%s", hn_error_message());
    if (!m) return hn_test_finish("test_eval_kvcache");
    CHECK(m->config.Vp == Vp, "padded vocab %d, want %d", m->config.Vp, Vp);

    int tokens[64];
    HnRng rng;
    hn_rng_seed(&rng, 3);
    for (int t = 0; t < T; t++)
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)V);
    hn_model_forward(&hm, tokens, NULL, 1, T, 0.0f);
    const float* want = hm.logits; /* (T, Vp) */
    float* got = malloc((size_t)T * Vp * sizeof(float));

    /* (a) token by token through the cache */
    for (int t = 0; t < T; t++) {
        const float* l = hn_eval_forward(m, tokens + t, 1, t);
        CHECK(l != NULL, "decode at %d: %s", t, hn_error_message());
        if (l) memcpy(got + (size_t)t * Vp, l, (size_t)Vp * sizeof(float));
    }
    double e = rel_error(got, want, T, V, Vp);
    printf("decode token by token: max relative error %.3g\n", e);
    CHECK(e <= TOL, "decode: %.3g", e);

    /* (b) one prefill of all T */
    const float* l = hn_eval_forward(m, tokens, T, 0);
    CHECK(l != NULL, "prefill: %s", hn_error_message());
    e = l ? rel_error(l, want, T, V, Vp) : 1.0;
    printf("prefill of %d: max relative error %.3g\n", T, e);
    CHECK(e <= TOL, "prefill: %.3g", e);

    /* (c) prefill a chunk, then decode the rest (after (b) left other values in the cache,
     * so stale entries past the chunk would show) */
    for (int chunk = 1; chunk < T; chunk += 6) {
        l = hn_eval_forward(m, tokens, chunk, 0);
        CHECK(l != NULL, "chunk prefill: %s", hn_error_message());
        if (!l) break;
        memcpy(got, l, (size_t)chunk * Vp * sizeof(float));
        for (int t = chunk; t < T; t++) {
            int other = (tokens[t] + 1) % V; /* a different token at t first: then rewind */
            hn_eval_forward(m, &other, 1, t);
            l = hn_eval_forward(m, tokens + t, 1, t);
            if (l) memcpy(got + (size_t)t * Vp, l, (size_t)Vp * sizeof(float));
        }
        e = rel_error(got, want, T, V, Vp);
        printf("prefill %d then decode: max relative error %.3g\n", chunk, e);
        CHECK(e <= TOL, "chunk %d: %.3g", chunk, e);
    }

    /* (d) a short prefill, then the rest as one block at pos > 0 (the GEMM attention path
     * for blocks of 16 rows or more, over keys already in the cache) */
    l = hn_eval_forward(m, tokens, 4, 0);
    if (l) memcpy(got, l, (size_t)4 * Vp * sizeof(float));
    l = hn_eval_forward(m, tokens + 4, T - 4, 4);
    CHECK(l != NULL, "block at pos 4: %s", hn_error_message());
    if (l) memcpy(got + (size_t)4 * Vp, l, (size_t)(T - 4) * Vp * sizeof(float));
    e = l ? rel_error(got, want, T, V, Vp) : 1.0;
    printf("prefill 4 then a block of %d: max relative error %.3g\n", T - 4, e);
    CHECK(e <= TOL, "block after prefill: %.3g", e);

    /* positions past the context are an error, not a write past the cache */
    hn_error_clear();
    CHECK(hn_eval_forward(m, tokens, 1, T) == NULL, "pos = maxT accepted");
    CHECK(strstr(hn_error_message(), "context") != NULL, "message: %s", hn_error_message());
    CHECK(hn_eval_forward(m, tokens, 2, T - 1) == NULL, "pos + n = maxT + 1 accepted");
    CHECK(hn_eval_forward(m, tokens, T + 1, 0) == NULL, "n = maxT + 1 accepted");
    CHECK(hn_eval_forward(m, tokens, 1, -1) == NULL, "negative pos accepted");
    CHECK(hn_eval_forward(m, tokens, 0, 0) == NULL, "n = 0 accepted");
    int bad = V;
    CHECK(hn_eval_forward(m, &bad, 1, 0) == NULL, "id = V accepted");
    CHECK(hn_eval_forward(m, tokens, 1, T - 1) != NULL, "the last position: %s",
          hn_error_message());

    /* a missing row is the loader's error, and nothing leaks or crashes */
    HnEvalConfig wrong = ec;
    wrong.L = cfg.L + 1; /* asks for layers.3.* which the table lacks */
    CHECK(hn_eval_model_new(&wrong, from_train_model, &hm) == NULL, "missing rows loaded");
    CHECK(strstr(hn_error_message(), "layers.3.") != NULL, "message: %s", hn_error_message());
    wrong = ec;
    wrong.NH = 5;
    CHECK(hn_eval_model_new(&wrong, from_train_model, &hm) == NULL, "C %% NH != 0 accepted");

    free(got);
    hn_eval_model_free(m);
    hn_model_free(&hm);
    return hn_test_finish("test_eval_kvcache");
}
