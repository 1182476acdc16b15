/*
 * The inference model (eval/model.c) against the training model (train/model.c) as an
 * independent reference, for GPT-2 and for Llama (grouped-query attention, RoPE, SwiGLU,
 * RMSNorm; tied and untied classifier): the same random weights go into both (biases and
 * norm gains random too, so every row matters), and the logits of every position must
 * agree whether the eval model decodes token by token with its KV cache, prefills the
 * whole sequence at once, prefills a chunk and then decodes, or runs a block at pos > 0;
 * also across the internal row blocks of a prefill longer than HN_EVAL_ROWS, for the
 * block-by-block NLL, and under a context cap. Error measure: max |eval - train| over the
 * V real logits of every position, divided by max |train logit|; it must be <= 1e-5.
 */
#include "eval/model.h"

#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
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

/* a training model of cfg with random weights, for sequences of up to cfg->maxT */
static int make_train_model(HnModel* hm, const HnModelConfig* cfg, uint64_t seed) {
    if (hn_model_create(hm, cfg, 1, cfg->maxT) != HN_OK) return HN_ERR;
    hn_model_init(hm, 0.3f, seed); /* larger than GPT-2's 0.02, so attention is not uniform */
    randomize_biases_and_norms(hm, seed + 1);
    return HN_OK;
}

/* the eval config of a training config, serving up to cap positions (0: all) */
static HnEvalModel* make_eval_model(HnModel* hm, int cap) {
    const HnModelConfig* c = &hm->cfg;
    HnEvalConfig ec = {.arch = c->arch == HN_ARCH_LLAMA ? HN_EVAL_LLAMA : HN_EVAL_GPT2,
                       .L = c->L,
                       .C = c->C,
                       .NH = c->NH,
                       .NKV = c->NKV,
                       .F = c->F,
                       .V = c->V,
                       .context = c->maxT,
                       .eps = c->eps,
                       .rope_theta = c->rope_theta,
                       .untied = c->untied};
    return hn_eval_model_new(&ec, cap, from_train_model, hm);
}

static int random_tokens(int* tokens, int n, int V, uint64_t seed) {
    HnRng rng;
    hn_rng_seed(&rng, seed);
    for (int t = 0; t < n; t++)
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)V);
    return n;
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

static void copy_row(float* dst, const float* src, int Vp) {
    if (src) memcpy(dst, src, (size_t)Vp * sizeof(float));
}

/* every way of feeding a sequence through the cache gives the training model's logits */
static void test_cache_paths(const char* what, const HnModelConfig* cfg) {
    HnModel hm;
    CHECK(make_train_model(&hm, cfg, 42) == HN_OK, "%s: %s", what, hn_error_message());
    HnEvalModel* m = make_eval_model(&hm, 0);
    CHECK(m != NULL, "%s: %s", what, hn_error_message());
    if (!m) {
        hn_model_free(&hm);
        return;
    }
    const int T = cfg->maxT, V = cfg->V, Vp = hm.cfg.Vp;
    CHECK(m->config.Vp == Vp && m->config.maxT == T, "%s: Vp %d maxT %d", what, m->config.Vp,
          m->config.maxT);
    CHECK(m->config.NKV == hm.cfg.NKV && m->config.F == hm.cfg.F, "%s: NKV %d F %d", what,
          m->config.NKV, m->config.F);
    int tokens[64];
    random_tokens(tokens, T, V, 3);
    hn_model_forward(&hm, tokens, NULL, 1, T, 0.0f);
    const float* want = hm.act.logits; /* (T, Vp) */
    float* got = malloc((size_t)T * Vp * sizeof(float));

    /* (a) token by token through the cache */
    for (int t = 0; t < T; t++) {
        const float* l = hn_eval_forward(m, tokens + t, 1, t);
        CHECK(l != NULL, "%s: decode at %d: %s", what, t, hn_error_message());
        copy_row(got + (size_t)t * Vp, l, Vp);
    }
    double e = rel_error(got, want, T, V, Vp);
    printf("%s: decode token by token: max relative error %.3g\n", what, e);
    CHECK(e <= TOL, "%s: decode: %.3g", what, e);

    /* (b) one prefill of all T, every row's logits; and the last row alone */
    CHECK(hn_eval_forward_all(m, tokens, T, 0, got) == HN_OK, "%s: prefill: %s", what,
          hn_error_message());
    e = rel_error(got, want, T, V, Vp);
    printf("%s: prefill of %d: max relative error %.3g\n", what, T, e);
    CHECK(e <= TOL, "%s: prefill: %.3g", what, e);
    const float* l = hn_eval_forward(m, tokens, T, 0);
    e = l ? rel_error(l, want + (size_t)(T - 1) * Vp, 1, V, Vp) : 1.0;
    CHECK(e <= TOL, "%s: last row of a prefill: %.3g", what, e);

    /* (c) prefill a chunk, then decode the rest (after (b) left other values in the cache,
     * so stale entries past the chunk would show) */
    for (int chunk = 1; chunk < T; chunk += 6) {
        CHECK(hn_eval_forward_all(m, tokens, chunk, 0, got) == HN_OK, "%s: chunk: %s", what,
              hn_error_message());
        for (int t = chunk; t < T; t++) {
            int other = (tokens[t] + 1) % V; /* a different token at t first: then rewind */
            hn_eval_forward(m, &other, 1, t);
            copy_row(got + (size_t)t * Vp, hn_eval_forward(m, tokens + t, 1, t), Vp);
        }
        e = rel_error(got, want, T, V, Vp);
        printf("%s: prefill %d then decode: max relative error %.3g\n", what, chunk, e);
        CHECK(e <= TOL, "%s: chunk %d: %.3g", what, chunk, e);
    }

    /* (d) a short prefill, then the rest as one block at pos > 0 (the GEMM attention path
     * for blocks of 16 rows or more, over keys already in the cache) */
    hn_eval_forward_all(m, tokens, 4, 0, got);
    CHECK(hn_eval_forward_all(m, tokens + 4, T - 4, 4, got + (size_t)4 * Vp) == HN_OK,
          "%s: block at pos 4: %s", what, hn_error_message());
    e = rel_error(got, want, T, V, Vp);
    printf("%s: prefill 4 then a block of %d: max relative error %.3g\n", what, T - 4, e);
    CHECK(e <= TOL, "%s: block after prefill: %.3g", what, e);

    /* positions past the context are an error, not a write past the cache */
    hn_error_clear();
    CHECK(hn_eval_forward(m, tokens, 1, T) == NULL, "%s: pos = maxT accepted", what);
    CHECK(strstr(hn_error_message(), "context") != NULL, "message: %s", hn_error_message());
    CHECK(hn_eval_forward(m, tokens, 2, T - 1) == NULL, "%s: pos + n = maxT + 1 accepted", what);
    CHECK(hn_eval_forward_all(m, tokens, T + 1, 0, got) == HN_ERR, "%s: n = maxT + 1", what);
    CHECK(hn_eval_forward(m, tokens, 1, -1) == NULL, "%s: negative pos accepted", what);
    CHECK(hn_eval_forward(m, tokens, 0, 0) == NULL, "%s: n = 0 accepted", what);
    int bad = V;
    CHECK(hn_eval_forward(m, &bad, 1, 0) == NULL, "%s: id = V accepted", what);
    double nll;
    CHECK(hn_eval_forward_nll(m, tokens, &bad, 1, 0, &nll) == HN_ERR, "%s: target V", what);
    CHECK(hn_eval_forward(m, tokens, 1, T - 1) != NULL, "%s: the last position: %s", what,
          hn_error_message());

    free(got);
    hn_eval_model_free(m);
    hn_model_free(&hm);
}

/* a prefill longer than the internal row block: the second block's rows attend over the
 * first block's cache entries; the NLL, computed block by block, equals the training
 * model's losses (the same op on the reference logits) */
static void test_prefill_across_row_blocks(const char* what, const HnModelConfig* cfg) {
    HnModel hm;
    CHECK(make_train_model(&hm, cfg, 5) == HN_OK, "%s: %s", what, hn_error_message());
    HnEvalModel* m = make_eval_model(&hm, 0);
    CHECK(m != NULL, "%s: %s", what, hn_error_message());
    if (!m) {
        hn_model_free(&hm);
        return;
    }
    const int T = cfg->maxT, V = cfg->V, Vp = hm.cfg.Vp;
    CHECK(T > HN_EVAL_ROWS, "the test needs more than %d positions", HN_EVAL_ROWS);
    int* tokens = malloc((size_t)(T + 1) * sizeof *tokens);
    int* targets = malloc((size_t)T * sizeof *targets);
    random_tokens(tokens, T + 1, V, 9);
    memcpy(targets, tokens + 1, (size_t)T * sizeof *targets);
    float* got = malloc((size_t)T * Vp * sizeof(float));
    float* losses = malloc((size_t)T * sizeof(float));
    hn_model_forward(&hm, tokens, NULL, 1, T, 0.0f);

    CHECK(hn_eval_forward_all(m, tokens, T, 0, got) == HN_OK, "%s: %s", what, hn_error_message());
    double e = rel_error(got, hm.act.logits, T, V, Vp);
    printf("%s: prefill of %d in blocks of %d: max relative error %.3g\n", what, T, HN_EVAL_ROWS,
           e);
    CHECK(e <= TOL, "%s: long prefill: %.3g", what, e);

    /* a block at pos 10 that straddles the row block boundary */
    hn_eval_forward_all(m, tokens, 10, 0, got);
    hn_eval_forward_all(m, tokens + 10, T - 10, 10, got + (size_t)10 * Vp);
    e = rel_error(got, hm.act.logits, T, V, Vp);
    printf("%s: prefill 10 then a block of %d: max relative error %.3g\n", what, T - 10, e);
    CHECK(e <= TOL, "%s: long block at pos 10: %.3g", what, e);

    /* the last row's logits after a long prefill */
    const float* l = hn_eval_forward(m, tokens, T, 0);
    e = l ? rel_error(l, hm.act.logits + (size_t)(T - 1) * Vp, 1, V, Vp) : 1.0;
    CHECK(e <= TOL, "%s: last row of a long prefill: %.3g", what, e);

    /* block-by-block NLL, with one ignored target, against the reference logits */
    targets[HN_EVAL_ROWS + 3] = HN_IGNORE;
    double nll, want = hn_crossentropy_forward(hm.act.logits, losses, targets, T, V, Vp, 0.0f);
    CHECK(hn_eval_forward_nll(m, tokens, targets, T, 0, &nll) == HN_OK, "%s: nll: %s", what,
          hn_error_message());
    printf("%s: nll over %d rows %.6f, reference %.6f\n", what, T, nll, want);
    CHECK(hn_close(nll, want, 1e-5, 0), "%s: nll %.6f vs %.6f", what, nll, want);

    free(tokens);
    free(targets);
    free(got);
    free(losses);
    hn_eval_model_free(m);
    hn_model_free(&hm);
}

/* a cap below the model's context sizes the cache for the cap: the positions below it
 * are unchanged, the ones past it an error that says the context was capped */
static void test_context_cap(const char* what, const HnModelConfig* cfg) {
    HnModel hm;
    CHECK(make_train_model(&hm, cfg, 13) == HN_OK, "%s: %s", what, hn_error_message());
    const int T = cfg->maxT, cap = T / 2 + 3, V = cfg->V, Vp = hm.cfg.Vp;
    HnEvalModel* m = make_eval_model(&hm, cap);
    CHECK(m != NULL, "%s: %s", what, hn_error_message());
    if (!m) {
        hn_model_free(&hm);
        return;
    }
    CHECK(m->config.maxT == cap && m->config.context == T, "%s: maxT %d context %d", what,
          m->config.maxT, m->config.context);
    int tokens[64];
    random_tokens(tokens, T, V, 17);
    hn_model_forward(&hm, tokens, NULL, 1, T, 0.0f);
    float* got = malloc((size_t)cap * Vp * sizeof(float));
    hn_eval_forward_all(m, tokens, cap - 1, 0, got);
    copy_row(got + (size_t)(cap - 1) * Vp, hn_eval_forward(m, tokens + cap - 1, 1, cap - 1), Vp);
    double e = rel_error(got, hm.act.logits, cap, V, Vp);
    printf("%s: capped at %d of %d: max relative error %.3g\n", what, cap, T, e);
    CHECK(e <= TOL, "%s: capped: %.3g", what, e);
    hn_error_clear();
    CHECK(hn_eval_forward(m, tokens, 1, cap) == NULL, "%s: pos = cap accepted", what);
    CHECK(strstr(hn_error_message(), "capped") != NULL, "message: %s", hn_error_message());
    CHECK(hn_eval_forward_all(m, tokens, cap + 1, 0, got) == HN_ERR, "%s: cap + 1 rows", what);
    hn_eval_model_free(m);

    /* a cap at or above the context, or none, serves the whole context */
    int caps[3] = {0, T, 10 * T};
    for (int i = 0; i < 3; i++) {
        m = make_eval_model(&hm, caps[i]);
        CHECK(m && m->config.maxT == T, "%s: cap %d: %s", what, caps[i], hn_error_message());
        hn_eval_model_free(m);
    }
    CHECK(make_eval_model(&hm, -1) == NULL, "%s: negative cap accepted", what);
    free(got);
    hn_model_free(&hm);
}

/* rows missing or of the wrong shape are the loader's error, and nothing leaks or crashes */
static void test_bad_configs(const HnModelConfig* llama) {
    HnModel hm;
    CHECK(make_train_model(&hm, llama, 1) == HN_OK, "%s", hn_error_message());
    HnEvalConfig ec = {.arch = HN_EVAL_LLAMA,
                       .L = llama->L + 1, /* asks for layers.2.* which the table lacks */
                       .C = llama->C,
                       .NH = llama->NH,
                       .NKV = llama->NKV,
                       .F = llama->F,
                       .V = llama->V,
                       .context = llama->maxT,
                       .eps = 1e-5f,
                       .rope_theta = 1e4f,
                       .untied = llama->untied};
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "missing rows loaded");
    CHECK(strstr(hn_error_message(), "layers.2.") != NULL, "message: %s", hn_error_message());
    ec.L = llama->L;
    ec.untied = !llama->untied; /* lm_head missing, or the table's lm_head left unread */
    HnEvalModel* m = hn_eval_model_new(&ec, 0, from_train_model, &hm);
    CHECK(llama->untied ? m != NULL : m == NULL, "tied/untied mismatch: %s", hn_error_message());
    hn_eval_model_free(m);
    ec.untied = llama->untied;
    ec.NKV = llama->NKV * 2; /* k and v rows of the wrong size */
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "NKV mismatch loaded");
    ec.NKV = 3;
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "NH %% NKV != 0 accepted");
    CHECK(strstr(hn_error_message(), "kv heads") != NULL, "message: %s", hn_error_message());
    ec.NKV = llama->NKV;
    ec.NH = 5;
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "C %% NH != 0 accepted");
    ec.NH = llama->NH;
    ec.rope_theta = 0.0f;
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "RoPE base 0 accepted");
    ec.rope_theta = 1e4f;
    ec.arch = HN_EVAL_GPT2; /* gpt2 with NKV < NH */
    CHECK(hn_eval_model_new(&ec, 0, from_train_model, &hm) == NULL, "gpt2 with NKV < NH");
    hn_model_free(&hm);
}

int main(void) {
    const HnModelConfig gpt2 = {.arch = HN_ARCH_GPT2,
                                .L = 3,
                                .C = 48,
                                .NH = 4,
                                .V = 83,
                                .Vp = hn_model_padded_vocab(83),
                                .maxT = 24,
                                .eps = 1e-5f};
    HnModelConfig llama = {.arch = HN_ARCH_LLAMA,
                           .L = 2,
                           .C = 64,
                           .NH = 4,
                           .NKV = 2,
                           .F = 96,
                           .V = 300,
                           .Vp = hn_model_padded_vocab(300),
                           .maxT = 40,
                           .eps = 1e-5f,
                           .rope_theta = 10000.0f,
                           .untied = 0};
    test_cache_paths("gpt2", &gpt2);
    test_cache_paths("llama tied", &llama);
    llama.untied = 1;
    test_cache_paths("llama untied", &llama);
    test_context_cap("llama untied", &llama);
    test_bad_configs(&llama);
    llama.NKV = 1; /* one kv head for all four query heads */
    test_cache_paths("llama NKV 1", &llama);
    test_context_cap("gpt2", &gpt2);

    HnModelConfig gpt2_long = gpt2, llama_long = llama;
    gpt2_long.maxT = llama_long.maxT = HN_EVAL_ROWS + 44;
    llama_long.NKV = 2;
    test_prefill_across_row_blocks("gpt2", &gpt2_long);
    test_prefill_across_row_blocks("llama", &llama_long);
    return hn_test_finish("test_eval_kvcache");
}
