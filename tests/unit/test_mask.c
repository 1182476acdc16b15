/*
 * Partial knowledge updates (train/mask.h, the masked AdamW of train/optim.c):
 *   - after 50 AdamW steps with weight decay on, every masked-out entry is bit-identical to
 *     the start and every selected entry has changed (magnitude, random, FISH and pattern
 *     masks); the fixed-mask optimizer state holds exactly the selected entries;
 *   - magnitude selects the k largest |w| (checked against a full sort), random is a
 *     function of the seed, FISH selects exactly the entries a brute-force per-example
 *     Fisher (each window's gradient computed on its own, squared, averaged, fully sorted)
 *     ranks highest; LT-SFT selects the k largest changes of its dense phase (the same
 *     phase redone by hand) and leaves the weights where they started;
 *   - Child-Tuning-F's masked gradient is unbiased: the mean of keep * g / p over D seeded
 *     draws is within 6 standard deviations (sqrt((1 - p) / (p D)) |g|) of g for every
 *     entry; after one step about p of the entries moved and no other did.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/mask.h"
#include "train/model.h"
#include "train/optim.h"

enum { B = 2, T = 8 };

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static char shards[1200];

/* a byte-tokenized shard of varied text, for FISH's windows */
static void make_shards(void) {
    char dir[900], text[1024];
    snprintf(dir, sizeof dir, "%s/test_mask", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(dir) != HN_OK) die();
    snprintf(text, sizeof text, "%s/text.txt", dir);
    FILE* f = fopen(text, "w");
    if (!f) die();
    for (int i = 0; i < 200; i++)
        fprintf(f, "line %d: the %s sat on the %s %d times.\n", i, i % 3 ? "cat" : "dog",
                i % 5 ? "mat" : "rug", i % 7);
    fclose(f);
    snprintf(shards, sizeof shards, "%s/shards", dir);
    const char* inputs[] = {text};
    HnPrepareOptions o = {.inputs = inputs,
                          .ninputs = 1,
                          .out_dir = shards,
                          .tokenizer = "byte",
                          .val_fraction = 0,
                          .shard_tokens = 1 << 20,
                          .seed = 1};
    HnPrepareStats st;
    if (hn_prepare(&o, &st) != HN_OK) die();
    snprintf(shards + strlen(shards), sizeof shards - strlen(shards), "/train_*.bin");
}

static void model(HnModel* m, HnConfig* cfg, const char* mask_yaml) {
    hn_config_defaults(cfg);
    if (hn_config_load_text(cfg,
                            "model: {layers: 2, channels: 16, heads: 2, vocab: 257, context: 8}",
                            "model") != HN_OK ||
        hn_config_load_text(cfg, mask_yaml, "mask") != HN_OK)
        die();
    HnModelConfig mc = hn_model_config_of(cfg);
    if (hn_model_create(m, &mc, B, T) != HN_OK) die();
    hn_model_init(m, 0.3f, 11);
    /* biases and gains away from 0 and 1, so magnitude has something to rank */
    HnRng rng;
    hn_rng_seed(&rng, 5);
    for (int i = 0; i < m->params.n; i++) {
        const HnParamRow* r = &m->params.rows[i];
        if (strstr(r->name, ".bias") || strstr(r->name, "norm"))
            for (size_t j = 0; j < r->numel; j++)
                m->params.data[r->offset + j] += 0.1f * hn_rng_normal(&rng);
    }
}

static void build(HnModel* m, const HnConfig* cfg) {
    HnLoader fl;
    memset(&fl, 0, sizeof fl);
    int lt = hn_mask_method(cfg->mask.method) == HN_MASK_LT_SFT;
    if (hn_loader_open(&fl, shards, lt ? B : 1, T, 257, 0, 0) != HN_OK) die();
    if (hn_mask_build(m, cfg, &fl, 77) != HN_OK) die();
    hn_loader_close(&fl);
}

static size_t selected(const HnParamTable* t) {
    size_t k = 0;
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].trainable) k += t->rows[i].mask ? t->rows[i].mask_k : t->rows[i].numel;
    return k;
}

static int in_mask(const HnParamRow* r, size_t j) {
    if (!r->trainable) return 0;
    if (!r->mask) return 1;
    size_t lo = 0, hi = r->mask_k;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (r->mask[mid] < j)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < r->mask_k && r->mask[lo] == j;
}

/* 50 AdamW steps with weight decay on every row; then only selected entries moved */
static void train_and_check(const char* name, HnModel* m, float child_p) {
    HnParamTable* t = &m->params;
    float* start = malloc(t->numel * sizeof(float));
    memcpy(start, t->data, t->numel * sizeof(float));
    HnOptimConfig oc = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                        .weight_decay = 0.1f, .clip = 1.0f, .min_lr_ratio = 0.1f, .warmup = 0,
                        .steps = 50, .schedule = HN_SCHED_CONSTANT, .child_p = child_p,
                        .child_seed = 3};
    HnOptimizer o;
    if (hn_optim_create(&o, &oc, t) != HN_OK) die();
    HnRng rng;
    hn_rng_seed(&rng, 1);
    int tokens[B * T], targets[B * T];
    int steps = child_p > 0 ? 1 : 50;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < B * T; i++) {
            tokens[i] = (int)hn_rng_below(&rng, 257);
            targets[i] = (int)hn_rng_below(&rng, 257);
        }
        hn_model_forward(m, tokens, targets, B, T, 1.0f / (B * T));
        hn_model_backward(m);
        hn_optim_step(&o, t, m->grads, hn_optim_grad_norm(t, m->grads));
    }
    size_t moved_out = 0, still_in = 0, sel = 0, moved = 0;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        for (size_t j = 0; j < r->numel; j++) {
            int changed = t->data[r->offset + j] != start[r->offset + j];
            int in = in_mask(r, j);
            sel += in;
            moved += changed;
            if (!in && changed) moved_out++;
            if (in && !changed) still_in++;
        }
    }
    if (child_p > 0) {
        double frac = (double)moved / (double)sel;
        printf("%-10s one step: %.3f of %zu eligible entries moved (p = %.2f)\n", name, frac, sel,
               child_p);
        CHECK(fabs(frac - child_p) < 0.02, "%s: %.3f of the entries moved, p = %.2f", name, frac,
              child_p);
        CHECK(moved_out == 0, "%s: %zu ineligible entries moved", name, moved_out);
    } else {
        printf("%-10s %zu selected of %zu (state %zu floats): %zu outside moved, %zu inside "
               "unmoved\n",
               name, sel, t->numel, t->state_numel, moved_out, still_in);
        CHECK(moved_out == 0, "%s: %zu masked-out entries changed", name, moved_out);
        CHECK(still_in == 0, "%s: %zu selected entries never changed", name, still_in);
        /* the state holds the selected entries (plus at most 15 floats of alignment a row) */
        CHECK(t->state_numel >= sel && t->state_numel < sel + 16 * (size_t)t->n,
              "%s: optimizer state of %zu floats for %zu selected entries", name, t->state_numel,
              sel);
    }
    hn_optim_free(&o);
    free(start);
}

static int desc(const void* a, const void* b) {
    const double* x = a;
    const double* y = b;
    if (x[0] != y[0]) return x[0] < y[0] ? 1 : -1;
    return x[1] < y[1] ? -1 : 1; /* ties: by position */
}

/* the masks equal the top k of scores (a full sort, ties by position) */
static void check_top_k(const char* name, HnModel* m, const double* scores, size_t k) {
    HnParamTable* t = &m->params;
    size_t n = t->numel;
    double* pairs = malloc(2 * n * sizeof(double));
    size_t e = 0;
    for (int i = 0; i < t->n; i++)
        for (size_t j = 0; j < t->rows[i].numel; j++, e++) {
            pairs[2 * e] = scores[t->rows[i].offset + j];
            pairs[2 * e + 1] = (double)e;
        }
    qsort(pairs, e, 2 * sizeof(double), desc);
    unsigned char* want = calloc(n, 1);
    for (size_t q = 0; q < k; q++)
        want[(size_t)pairs[2 * q + 1]] = 1;
    size_t wrong = 0;
    e = 0;
    for (int i = 0; i < t->n; i++)
        for (size_t j = 0; j < t->rows[i].numel; j++, e++)
            wrong += in_mask(&t->rows[i], j) != want[e];
    printf("%-10s top %zu: %zu entries differ from a full sort\n", name, k, wrong);
    CHECK(wrong == 0, "%s: %zu entries differ from the full sort's top %zu", name, wrong, k);
    free(pairs);
    free(want);
}

static void check_fish(void) {
    HnModel m;
    HnConfig cfg;
    model(&m, &cfg, "mask: {method: fish, density: 0.03, fish_examples: 12}");
    /* brute force first, on the untouched model: every window's gradient alone */
    HnParamTable* t = &m.params;
    double* fisher = calloc(t->numel, sizeof(double));
    HnLoader ld;
    if (hn_loader_open(&ld, shards, 1, T, 257, 0, 0) != HN_OK) die();
    int tok[T], tgt[T];
    for (int e = 0; e < 12; e++) {
        if (hn_loader_next(&ld, tok, tgt) != HN_OK) die();
        hn_model_zero_grad(&m);
        hn_model_forward(&m, tok, tgt, 1, T, 1.0f / T);
        hn_model_backward(&m);
        for (int i = 0; i < t->n; i++)
            for (size_t j = 0; j < t->rows[i].numel; j++) {
                double g = m.grads[t->rows[i].goff + j];
                fisher[t->rows[i].offset + j] += g * g / 12.0;
            }
    }
    hn_loader_close(&ld);
    hn_model_zero_grad(&m);
    build(&m, &cfg);
    size_t k = (size_t)llround(0.03 * (double)t->numel);
    CHECK(selected(t) == k, "fish selected %zu, wanted %zu", selected(t), k);
    check_top_k("fish", &m, fisher, k);
    train_and_check("fish", &m, 0);
    free(fisher);
    hn_model_free(&m);
}

static void check_magnitude_random_pattern(void) {
    HnModel m;
    HnConfig cfg;
    model(&m, &cfg, "mask: {method: magnitude, density: 0.05}");
    double* mag = malloc(m.params.numel * sizeof(double));
    for (size_t i = 0; i < m.params.numel; i++)
        mag[i] = fabs(m.params.data[i]);
    build(&m, &cfg);
    size_t k = (size_t)llround(0.05 * (double)m.params.numel);
    CHECK(selected(&m.params) == k, "magnitude selected %zu, wanted %zu", selected(&m.params), k);
    check_top_k("magnitude", &m, mag, k);
    train_and_check("magnitude", &m, 0);
    free(mag);
    hn_model_free(&m);

    /* random: k exact, a function of the seed; eligible rows by pattern */
    HnModel a, b;
    model(&a, &cfg, "mask: {method: random, density: 0.1, patterns: ['layers.*']}");
    build(&a, &cfg);
    model(&b, &cfg, "mask: {method: random, density: 0.1, patterns: ['layers.*']}");
    build(&b, &cfg);
    int same = 1, frozen = 1;
    for (int i = 0; i < a.params.n; i++) {
        const HnParamRow *ra = &a.params.rows[i], *rb = &b.params.rows[i];
        same &= ra->mask_k == rb->mask_k &&
                (!ra->mask || !memcmp(ra->mask, rb->mask, ra->mask_k * sizeof(unsigned)));
        if (strncmp(ra->name, "layers.", 7) != 0) frozen &= !ra->trainable;
    }
    CHECK(same, "the same seed drew another random mask");
    CHECK(frozen, "rows outside mask.patterns are trainable");
    train_and_check("random", &a, 0);
    hn_model_free(&a);
    hn_model_free(&b);

    model(&m, &cfg, "mask: {method: pattern, patterns: ['*.bias']}");
    build(&m, &cfg);
    train_and_check("pattern", &m, 0);
    hn_model_free(&m);
}

/* LT-SFT: the dense phase's k largest changes, the weights back where they started */
static void check_lt_sft(void) {
    HnModel m, d;
    HnConfig cfg;
    model(&m, &cfg, "mask: {method: lt_sft, density: 0.02, lt_sft_steps: 5}\n"
                    "optim: {lr: 1e-2, weight_decay: 0}");
    float* start = malloc(m.params.numel * sizeof(float));
    memcpy(start, m.params.data, m.params.numel * sizeof(float));
    build(&m, &cfg);
    CHECK(memcmp(start, m.params.data, m.params.numel * sizeof(float)) == 0,
          "LT-SFT did not reset the weights after its dense phase");
    size_t k = (size_t)llround(0.02 * (double)m.params.numel);
    CHECK(selected(&m.params) == k, "lt_sft selected %zu, wanted %zu", selected(&m.params), k);
    /* the dense phase again, by hand: 5 AdamW steps on the same batches */
    model(&d, &cfg, "mask: {method: none}\noptim: {lr: 1e-2, weight_decay: 0}");
    HnOptimConfig oc = {.lr = 1e-2f, .beta1 = cfg.optim.betas[0], .beta2 = cfg.optim.betas[1],
                        .eps = cfg.optim.eps, .weight_decay = 0, .clip = cfg.optim.clip,
                        .min_lr_ratio = 1, .steps = 5, .schedule = HN_SCHED_CONSTANT};
    HnOptimizer o;
    if (hn_optim_create(&o, &oc, &d.params) != HN_OK) die();
    HnLoader ld;
    if (hn_loader_open(&ld, shards, B, T, 257, 0, 0) != HN_OK) die();
    int tok[B * T], tgt[B * T];
    for (int s = 0; s < 5; s++) {
        if (hn_loader_next(&ld, tok, tgt) != HN_OK) die();
        int counted = 0;
        for (int i = 0; i < B * T; i++)
            counted += tgt[i] != HN_IGNORE;
        hn_model_forward(&d, tok, tgt, B, T, 1.0f / (float)counted);
        hn_model_backward(&d);
        hn_optim_step(&o, &d.params, d.grads, hn_optim_grad_norm(&d.params, d.grads));
    }
    hn_loader_close(&ld);
    double* change = malloc(d.params.numel * sizeof(double));
    for (size_t i = 0; i < d.params.numel; i++)
        change[i] = fabsf(d.params.data[i] - start[i]);
    check_top_k("lt_sft", &m, change, k);
    train_and_check("lt_sft", &m, 0);
    hn_optim_free(&o);
    free(change);
    free(start);
    hn_model_free(&m);
    hn_model_free(&d);
}

static void check_child_f(void) {
    enum { N = 2000, D = 2000 };
    const float p = 0.3f;
    HnRng rng;
    hn_rng_seed(&rng, 8);
    float g[N];
    double mean[N] = {0};
    unsigned char keep[N];
    for (int i = 0; i < N; i++)
        g[i] = hn_rng_normal(&rng);
    for (int d = 0; d < D; d++) {
        hn_mask_bernoulli(keep, N, p, 1000 + (uint64_t)d * 7919);
        for (int i = 0; i < N; i++)
            mean[i] += keep[i] * g[i] / p / D;
    }
    double worst = 0, sd = sqrt((1 - p) / (p * D));
    for (int i = 0; i < N; i++) {
        double z = fabs(mean[i] - g[i]) / (sd * fabs(g[i]) + 1e-30);
        if (z > worst) worst = z;
    }
    printf("child_f    mean of keep*g/p over %d draws: worst %.2f standard deviations from g\n", D,
           worst);
    CHECK(worst < 6.0, "Child-Tuning-F's masked gradient is biased: %.2f sd", worst);
    HnModel m;
    HnConfig cfg;
    model(&m, &cfg, "mask: {method: child_f, density: 0.3, patterns: ['layers.*']}");
    build(&m, &cfg);
    train_and_check("child_f", &m, 0.3f);
    hn_model_free(&m);
}

int main(void) {
    make_shards();
    check_magnitude_random_pattern();
    check_fish();
    check_lt_sft();
    check_child_f();
    return hn_test_finish("test_mask");
}
