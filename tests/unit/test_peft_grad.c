/*
 * Parameter-efficient methods where no reference library can follow: the training-mode
 * paths with dropout (PEFT draws its masks from torch's RNG), checked by central finite
 * differences of the whole model's loss. With the dropout seed fixed, a training forward
 * is a deterministic function of the parameters, so the analytic gradient of every
 * trainable row (LoRA A and B, DoRA's magnitude, IA3 vectors, BitFit's biases, which see
 * the LoRA branch's input gradient through the mask) must match the difference quotient.
 * DoRA's gradient treats ||W + s B A|| as a constant (PEFT detaches it), so its quotients
 * are taken with the norms of the analytic forward held fixed.
 * Also: the dropout masks drop about the configured fraction, depend on the seed, and are
 * off outside training (an evaluation forward equals the same model built without dropout).
 *
 * Tolerance: |fd - analytic| <= 2e-2 |analytic| + 5e-4 on the three largest entries of each
 * row (float32 forwards; step 1e-3; noise of the quotient about 2e-4).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/peft/peft.h"

enum { B = 2, T = 8 };

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static void build(HnModel* m, const char* model_yaml, const char* peft_yaml) {
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (hn_config_load_text(&cfg, model_yaml, "model") != HN_OK ||
        hn_config_load_text(&cfg, peft_yaml, "peft") != HN_OK)
        die();
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnPeft plan;
    if (hn_peft_plan(&plan, &cfg) != HN_OK || hn_model_create_peft(m, &mc, &plan, B, T) != HN_OK)
        die();
    hn_model_init(m, 0.2f, 5);
    /* add-ons away from their identity initialisation, so every path carries values */
    HnRng rng;
    hn_rng_seed(&rng, 77);
    for (int i = 0; i < m->params.n; i++) {
        const HnParamRow* r = &m->params.rows[i];
        float* x = m->params.data + r->offset;
        for (size_t j = 0; j < r->numel; j++) {
            if (strstr(r->name, "lora_B")) x[j] = 0.3f * hn_rng_normal(&rng);
            if (strstr(r->name, ".ia3") || strstr(r->name, "dora_m"))
                x[j] *= 1.0f + 0.2f * hn_rng_normal(&rng);
            if (strstr(r->name, ".bias")) x[j] = 0.1f * hn_rng_normal(&rng);
            if (strstr(r->name, "adapter_") && strstr(r->name, ".weight"))
                x[j] = 0.3f * hn_rng_normal(&rng);
            if (strstr(r->name, "prefix.") || strstr(r->name, "prompt."))
                x[j] = 0.5f * hn_rng_normal(&rng);
        }
    }
}

static void batch(int V, int* tokens, int* targets) {
    HnRng rng;
    hn_rng_seed(&rng, 3);
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int)hn_rng_below(&rng, (uint64_t)V);
        targets[i] = i % 5 == 4 ? HN_IGNORE : (int)hn_rng_below(&rng, (uint64_t)V);
    }
}

/* the training-mode mean loss with the fixed dropout seed */
static double train_loss(HnModel* m, const int* tokens, const int* targets, int counted) {
    m->peft.dropout_seed = 12345;
    return hn_model_forward(m, tokens, targets, B, T, 1.0f / (float)counted) / counted;
}

static void check(const char* name, const char* model_yaml, const char* peft_yaml) {
    HnModel m;
    build(&m, model_yaml, peft_yaml);
    int tokens[B * T], targets[B * T], counted = 0;
    batch(m.cfg.V, tokens, targets);
    for (int i = 0; i < B * T; i++)
        counted += targets[i] != HN_IGNORE;
    hn_model_zero_grad(&m);
    train_loss(&m, tokens, targets, counted);
    hn_model_backward(&m);
    /* DoRA's norms are detached (as in PEFT): differentiate with them held */
    m.peft.hold_norms = 1;

    const double h = 1e-3;
    int checked = 0, rows = 0;
    double worst = 0;
    const char* worst_row = "";
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        if (!r->trainable) continue;
        rows++;
        const float* g = m.grads + r->goff;
        int pick[3] = {-1, -1, -1}; /* the three largest |g| */
        for (int j = 0; j < (int)r->numel; j++)
            for (int k = 0; k < 3; k++)
                if (pick[k] < 0 || fabsf(g[j]) > fabsf(g[pick[k]])) {
                    for (int q = 2; q > k; q--)
                        pick[q] = pick[q - 1];
                    pick[k] = j;
                    break;
                }
        for (int k = 0; k < 3 && pick[k] >= 0; k++) {
            float* x = m.params.data + r->offset + pick[k];
            float keep = *x;
            *x = keep + (float)h;
            double lp = train_loss(&m, tokens, targets, counted);
            *x = keep - (float)h;
            double lm = train_loss(&m, tokens, targets, counted);
            *x = keep;
            double fd = (lp - lm) / (2 * h), an = g[pick[k]];
            double err = fabs(fd - an) / (2e-2 * fabs(an) + 5e-4);
            CHECK(err <= 1.0, "%s: d loss / d %s[%d]: analytic %.6g, finite difference %.6g", name,
                  r->name, pick[k], an, fd);
            if (err > worst) worst = err, worst_row = r->name;
            checked++;
        }
    }
    printf("%-28s %d rows, %d entries, worst error %.2f of the tolerance (%s)\n", name, rows,
           checked, worst, worst_row);
    CHECK(rows > 0, "%s: nothing trainable", name);
    hn_model_free(&m);
}

/* masks: the dropped fraction, seed dependence, and no dropout outside training */
static void check_masks(void) {
    const char* model = "model: {layers: 1, channels: 64, heads: 2, vocab: 40, context: 8}";
    HnModel m, plain;
    build(&m, model, "peft: [{lora: {targets: [attn.qkv], rank: 2, dropout: 0.3}}]");
    build(&plain, model, "peft: [{lora: {targets: [attn.qkv], rank: 2, dropout: 0}}]");
    memcpy(plain.params.data, m.params.data, m.params.numel * sizeof(float));
    int tokens[B * T], targets[B * T];
    batch(m.cfg.V, tokens, targets);
    const HnAddon* a = &m.peft.a[0];
    size_t n = (size_t)B * T * a->in, dropped = 0;
    m.peft.dropout_seed = 1;
    hn_model_forward(&m, tokens, targets, B, T, 1.0f);
    unsigned char* first = malloc(n);
    memcpy(first, a->keep, n);
    for (size_t i = 0; i < n; i++)
        dropped += !a->keep[i];
    double frac = (double)dropped / (double)n;
    printf("dropout 0.3: dropped %.3f of %zu inputs\n", frac, n);
    CHECK(fabs(frac - 0.3) < 0.03, "dropped fraction %.3f, configured 0.3", frac);
    m.peft.dropout_seed = 1;
    hn_model_forward(&m, tokens, targets, B, T, 1.0f);
    CHECK(memcmp(first, a->keep, n) == 0, "the same seed drew another mask");
    m.peft.dropout_seed = 2;
    hn_model_forward(&m, tokens, targets, B, T, 1.0f);
    CHECK(memcmp(first, a->keep, n) != 0, "another seed drew the same mask");
    double eval = hn_model_forward(&m, tokens, targets, B, T, 0.0f);
    double ref = hn_model_forward(&plain, tokens, targets, B, T, 0.0f);
    CHECK(eval == ref, "an evaluation forward applies dropout: %.9g vs %.9g", eval, ref);
    free(first);
    hn_model_free(&m);
    hn_model_free(&plain);
}

/* prompt tuning's "vocab" initialisation: every virtual token starts as some token's
 * embedding row (PEFT 0.13.2 has no such option to compare with) */
static void check_vocab_init(void) {
    HnModel m;
    build(&m, "model: {layers: 1, channels: 16, heads: 2, vocab: 40, context: 16}",
          "peft: [{prompt: {length: 5, init: vocab}}]");
    hn_model_init(&m, 0.2f, 9); /* build() randomised the prompt rows: initialise again */
    const float* wte = m.params.data + m.params.rows[hn_params_find(&m.params, "tok_embed.weight")].offset;
    const float* pr = m.params.data + m.params.rows[hn_params_find(&m.params, "prompt.embed")].offset;
    int found = 0;
    for (int i = 0; i < 5; i++)
        for (int v = 0; v < 40; v++)
            if (memcmp(pr + i * 16, wte + v * 16, 16 * sizeof(float)) == 0) {
                found++;
                break;
            }
    CHECK(found == 5, "%d of 5 vocabulary-initialised virtual tokens are token rows", found);
    hn_model_free(&m);
}

int main(void) {
    check_vocab_init();
    const char* gpt2 = "model: {layers: 2, channels: 16, heads: 2, vocab: 40, context: 8}";
    const char* llama = "model: {arch: llama, layers: 2, channels: 16, heads: 4, kv_heads: 2, "
                        "ffn: 24, vocab: 40, context: 8}";
    check("gpt2 lora slices + bitfit", gpt2,
          "peft: [{lora: {targets: [attn.q, attn.v, mlp.down], rank: 2, alpha: 4, dropout: 0.3}}, "
          "bitfit]");
    check("gpt2 dora + dropout", gpt2,
          "peft: [{lora: {targets: [attn.qkv, mlp.up], rank: 2, alpha: 4, dropout: 0.25, dora: "
          "true}}]");
    check("gpt2 ia3 + bitfit", gpt2, "peft: [ia3, bitfit]");
    check("llama dora + dropout, ia3", llama,
          "peft: [{lora: {targets: [attn.q, attn.o, mlp.gate], rank: 3, alpha: 3, dropout: 0.2, "
          "dora: true, rslora: true}}, {ia3: {targets: [attn.k, attn.v, mlp.down]}}]");
    check("llama lora all + dropout", llama,
          "peft: [{lora: {targets: ['*'], rank: 2, alpha: 8, dropout: 0.1}}]");
    /* virtual tokens, virtual keys and adapters (context 16: room for them) */
    const char* gpt2w = "model: {layers: 2, channels: 16, heads: 2, vocab: 40, context: 16}";
    const char* llamaw = "model: {arch: llama, layers: 2, channels: 16, heads: 4, kv_heads: 2, "
                         "ffn: 24, vocab: 40, context: 16}";
    const char* virt[] = {
        "peft: [{prefix: {length: 3}}]",
        "peft: [{prefix: {length: 2, projection: 6}}]",
        "peft: [{prompt: {length: 3}}]",
        "peft: [{ptuning: {length: 2, hidden: 5}}]",
        "peft: [{adapter: {kind: pfeiffer, reduction: 4}}]",
        "peft: [{adapter: {kind: houlsby, reduction: 4, activation: swish}}]",
        "peft: [{adapter: {kind: parallel, reduction: 2, scaling: 4, activation: gelu}}]",
        "peft: [{prefix: {length: 2}}, {prompt: {length: 2}}, {adapter: {kind: houlsby, "
        "reduction: 8, activation: tanh}}, {lora: {targets: [attn.o], rank: 2, dropout: 0.2}}]",
    };
    for (int i = 0; i < (int)(sizeof virt / sizeof *virt); i++) {
        char name[64];
        snprintf(name, sizeof name, "gpt2 %.20s", virt[i] + 8);
        check(name, gpt2w, virt[i]);
        snprintf(name, sizeof name, "llama %.20s", virt[i] + 8);
        check(name, llamaw, virt[i]);
    }
    check_masks();
    return hn_test_finish("test_peft_grad");
}
