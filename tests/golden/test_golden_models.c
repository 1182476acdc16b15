/*
 * Whole tiny models against independent PyTorch implementations: a GPT-2 in plain PyTorch
 * (scripts/make_fixtures.py -> tests/fixtures/gpt2_tiny.safetensors) and a Llama made by
 * transformers' LlamaForCausalLM with grouped-query attention (scripts/make_llama_fixture.py
 * -> tests/fixtures/llama_tiny.safetensors): logits, loss, the gradient of every
 * parameter, then 10 AdamW steps with gradient accumulation, clipping and a warm-up +
 * cosine schedule: per-step losses, gradient norms, learning rates and the final
 * parameters.
 *
 * Tolerances (both sides compute in float32 with different summation orders; the
 * fixture script prints its own float32-vs-float64 differences, which are of the same
 * order): relative L2 error per tensor, ||hone - torch|| / ||torch||,
 *   logits 1e-5, loss 1e-5 (relative), gradients 1e-4, step losses 1e-5,
 *   final parameters 3e-4: AdamW divides by sqrt(v), which turns rounding noise into
 *   full-size steps where the true gradient is ~0 (the key bias of attention has an exactly
 *   zero gradient in exact arithmetic, since softmax ignores a per-row shift); we see
 *   about 6e-5 there.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/safetensors.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/optim.h"

static HnSafetensors* st;

static const char* meta_str(const char* key, const char* fallback) {
    const char* v = hn_safetensors_meta(st, key);
    return v ? v : fallback;
}

static int meta_int(const char* key) {
    const char* v = hn_safetensors_meta(st, key);
    if (!v) {
        fprintf(stderr, "FAIL: fixture has no metadata '%s'\n", key);
        exit(1);
    }
    return atoi(v);
}

static double meta_f(const char* key) {
    const char* v = hn_safetensors_meta(st, key);
    if (!v) {
        fprintf(stderr, "FAIL: fixture has no metadata '%s'\n", key);
        exit(1);
    }
    return atof(v);
}

/* read a float tensor of n elements, or fail the whole test */
static float* load_f32(const char* name, size_t n) {
    float* x = malloc(n * sizeof(float));
    if (!x || hn_safetensors_read_f32(st, name, x, n) != HN_OK) {
        fprintf(stderr, "FAIL: %s\n", hn_error_message());
        exit(1);
    }
    return x;
}

static int* load_i32(const char* name, size_t n) {
    int* x = malloc(n * sizeof(int));
    if (!x || hn_safetensors_read_i32(st, name, (int32_t*)x, n) != HN_OK) {
        fprintf(stderr, "FAIL: %s\n", hn_error_message());
        exit(1);
    }
    return x;
}

/* ||a - b|| / ||b|| (b the reference; a zero reference compares absolutely) */
static double rel_err(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_params(HnModel* m, const float* base, const char* prefix, double tol) {
    char key[160];
    double worst = 0;
    const char* worst_name = "";
    for (int i = 0; i < m->params.n; i++) {
        const HnParamRow* r = &m->params.rows[i];
        snprintf(key, sizeof key, "%s.%s", prefix, r->name);
        float* ref = load_f32(key, r->numel);
        double e = rel_err(base + r->offset, ref, r->numel);
        CHECK(e <= tol, "%s: relative error %.3g > %.1g", key, e, tol);
        if (e > worst) worst = e, worst_name = r->name;
        free(ref);
    }
    printf("%-6s worst relative error %.3g (%s)\n", prefix, worst, worst_name);
}

static void check_fixture(const char* file) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", hn_test_env("HONE_FIXTURES"), file);
    st = hn_safetensors_open(path);
    if (!st) {
        fprintf(stderr, "FAIL: %s\n", hn_error_message());
        exit(1);
    }
    printf("== %s (%s)\n", file, meta_str("generator", "?"));
    int llama = strcmp(meta_str("arch", "gpt2"), "llama") == 0;
    HnModelConfig cfg = {.arch = llama ? HN_ARCH_LLAMA : HN_ARCH_GPT2,
                         .L = meta_int("L"),
                         .C = meta_int("C"),
                         .NH = meta_int("NH"),
                         .NKV = llama ? meta_int("NKV") : 0,
                         .F = llama ? meta_int("F") : 0,
                         .V = meta_int("V"),
                         .Vp = meta_int("Vp"),
                         .maxT = meta_int("maxT"),
                         .eps = (float)meta_f("eps"),
                         .rope_theta = llama ? (float)meta_f("rope_theta") : 0.0f};
    int B = meta_int("B"), T = meta_int("T");
    CHECK(cfg.Vp == hn_model_padded_vocab(cfg.V), "padded vocab %d vs %d", cfg.Vp,
          hn_model_padded_vocab(cfg.V));
    HnModel m;
    if (hn_model_create(&m, &cfg, B, T) != HN_OK) {
        fprintf(stderr, "FAIL: %s\n", hn_error_message());
        exit(1);
    }
    char key[160];
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        snprintf(key, sizeof key, "param.%s", r->name);
        float* x = load_f32(key, r->numel);
        memcpy(m.params.data + r->offset, x, r->numel * sizeof(float));
        free(x);
    }
    CHECK(hn_safetensors_count(st) > 0, "fixture is empty");

    /* ---- forward: logits and loss ---- */
    size_t N = (size_t)B * T;
    int* tokens = load_i32("input.tokens", N);
    int* targets = load_i32("input.targets", N);
    size_t counted = 0;
    for (size_t i = 0; i < N; i++)
        counted += targets[i] != HN_IGNORE;
    hn_model_forward(&m, tokens, NULL, B, T, 0.0f);
    float* ref_logits = load_f32("out.logits", N * cfg.V);
    float* logits = malloc(N * cfg.V * sizeof(float));
    for (size_t i = 0; i < N; i++)
        memcpy(logits + i * cfg.V, m.act.logits + i * cfg.Vp, cfg.V * sizeof(float));
    double e = rel_err(logits, ref_logits, N * cfg.V);
    printf("logits relative error %.3g\n", e);
    CHECK(e <= 1e-5, "logits relative error %.3g > 1e-5", e);

    double loss =
        hn_model_forward(&m, tokens, targets, B, T, 1.0f / (float)counted) / (double)counted;
    float* ref_loss = load_f32("out.loss", 1);
    printf("loss %.7f (torch %.7f)\n", loss, ref_loss[0]);
    CHECK(hn_close(loss, ref_loss[0], 1e-5, 0), "loss %.7f vs torch %.7f", loss, ref_loss[0]);

    /* ---- backward: every parameter's gradient ---- */
    hn_model_zero_grad(&m);
    hn_model_backward(&m);
    check_params(&m, m.grads, "grad", 1e-4);

    /* ---- 10 AdamW steps with accumulation, clipping and the schedule ---- */
    int steps = meta_int("steps"), accum = meta_int("accum");
    HnOptimConfig oc = {.lr = (float)meta_f("lr"),
                        .beta1 = (float)meta_f("beta1"),
                        .beta2 = (float)meta_f("beta2"),
                        .eps = (float)meta_f("adam_eps"),
                        .weight_decay = (float)meta_f("weight_decay"),
                        .clip = (float)meta_f("clip"),
                        .min_lr_ratio = (float)meta_f("min_lr_ratio"),
                        .warmup = meta_int("warmup"),
                        .steps = steps,
                        .schedule = HN_SCHED_COSINE};
    const char* no_decay[] = {"*.bias", "*norm*", "*embed*"};
    CHECK(strcmp(hn_safetensors_meta(st, "no_decay"), "*.bias,*norm*,*embed*") == 0,
          "fixture's no_decay differs");
    hn_params_set_no_decay(&m.params, no_decay, 3);
    HnOptimizer opt;
    if (hn_optim_create(&opt, &oc, &m.params) != HN_OK) exit(1);
    int* tr_tokens = load_i32("train.tokens", (size_t)steps * accum * N);
    int* tr_targets = load_i32("train.targets", (size_t)steps * accum * N);
    float* ref_losses = load_f32("train.losses", steps);
    float* ref_norms = load_f32("train.grad_norms", steps);
    float* ref_lrs = load_f32("train.lrs", steps);
    hn_model_zero_grad(&m);
    int clipped = 0;
    for (int s = 0; s < steps; s++) {
        const int* tk = tr_tokens + (size_t)s * accum * N;
        const int* tg = tr_targets + (size_t)s * accum * N;
        size_t cnt = 0;
        for (size_t i = 0; i < accum * N; i++)
            cnt += tg[i] != HN_IGNORE;
        double sum = 0;
        for (int k = 0; k < accum; k++) {
            sum += hn_model_forward(&m, tk + k * N, tg + k * N, B, T, 1.0f / (float)cnt);
            hn_model_backward(&m);
        }
        double step_loss = sum / (double)cnt;
        double norm = hn_optim_grad_norm(&m.params, m.grads);
        clipped += norm > oc.clip;
        float lr = hn_optim_step(&opt, &m.params, m.grads, norm);
        printf("step %2d loss %.6f (torch %.6f) norm %.5f (torch %.5f) lr %.3e\n", s + 1, step_loss,
               ref_losses[s], norm, ref_norms[s], lr);
        CHECK(hn_close(step_loss, ref_losses[s], 1e-5, 0), "step %d loss %.7f vs %.7f", s + 1,
              step_loss, ref_losses[s]);
        CHECK(hn_close(norm, ref_norms[s], 1e-4, 0), "step %d grad norm %.6f vs %.6f", s + 1, norm,
              ref_norms[s]);
        CHECK(hn_close(lr, ref_lrs[s], 1e-6, 0), "step %d lr %.7g vs %.7g", s + 1, lr, ref_lrs[s]);
    }
    CHECK(clipped > 0, "the fixture never exercises clipping");
    check_params(&m, m.params.data, "final", 3e-4);

    free(tokens), free(targets), free(ref_logits), free(logits), free(ref_loss);
    free(tr_tokens), free(tr_targets), free(ref_losses), free(ref_norms), free(ref_lrs);
    hn_optim_free(&opt);
    hn_model_free(&m);
    hn_safetensors_close(st);
}

int main(void) {
    check_fixture("gpt2_tiny.safetensors");
    check_fixture("llama_tiny.safetensors");
    return hn_test_finish("test_golden_models");
}
