/*
 * The device model (train/model_cuda.h) and the trainer's device path against the CPU
 * model (train/model.h), which tests/unit and tests/golden prove against PyTorch:
 *   - one training step of a small GPT-2 and of a small Llama with grouped-query attention
 *     and an untied classifier, from the same parameters and batch: the loss, every
 *     gradient row (||gpu - cpu|| / ||cpu|| <= 1e-4), the gradient norm, and the AdamW
 *     step. AdamW's first step moves each weight by about lr * sign(g), so a gradient
 *     element within rounding of 0 may step either way; the device step is therefore
 *     checked against the CPU's AdamW applied to the device's own gradients (1e-6), which
 *     isolates the optimizer, while the gradients themselves are checked above;
 *   - the same step twice on the device gives the same bits;
 *   - 20 training steps: each step's loss tracks the CPU's within 1e-3 relative;
 *   - through hn_train with train.device cuda: 10 steps in one run and 5 + 5 with a
 *     checkpoint and a resume in between end in bit-identical /model and /optim rows.
 * Without a usable GPU the test skips (exit 77) with its reason; HONE_REQUIRE_GPU=1 turns the
 * skip into a failure (scripts/gpu_check.sh sets it).
 */
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/h5.h"
#include "data/h5ckpt.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/model_cuda.h"
#include "train/optim.h"
#include "train/trainer.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_TOL 1e-4
#define LOSS_TOL 1e-5
#define OPT_TOL 1e-6
#define TRAJ_TOL 1e-3

#define B 2
#define T 17

/* a failed device call can leave the CUDA context unusable, so the test stops there */
static void stop(const char* what) {
    fprintf(stderr, "FAIL: %s: %s\n", what, hn_error_message());
    hn_test_failed++;
    hn_test_finish("test_cuda_train");
    exit(1);
}
#define DEV(call)                                                                                  \
    do {                                                                                           \
        if ((call) != HN_OK) stop(#call);                                                          \
    } while (0)

static HnModelConfig gpt2_config(void) {
    HnModelConfig c = {.arch = HN_ARCH_GPT2, .L = 2, .C = 64, .NH = 4, .V = 300, .maxT = 32,
                       .eps = 1e-5f};
    c.Vp = hn_model_padded_vocab(c.V);
    return c;
}

static HnModelConfig llama_config(void) {
    HnModelConfig c = {.arch = HN_ARCH_LLAMA, .L = 2, .C = 64, .NH = 4, .NKV = 2, .F = 96,
                       .V = 300, .maxT = 32, .eps = 1e-5f, .rope_theta = 10000.0f, .untied = 1};
    c.Vp = hn_model_padded_vocab(c.V);
    return c;
}

static HnOptimConfig optim_config(int steps) {
    HnOptimConfig o = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                       .weight_decay = 0.1f, .clip = 1.0f, .min_lr_ratio = 0.1f,
                       .warmup = 2, .steps = steps, .schedule = HN_SCHED_COSINE};
    return o;
}

/* a CPU model with the trainer's initialisation and weight-decay selection */
static void make_cpu_model(HnModel* m, const HnModelConfig* c) {
    if (hn_model_create(m, c, B, T) != HN_OK) stop("hn_model_create");
    hn_model_init(m, 0.02f, 1234);
    const char* no_decay[] = {"*.bias", "*norm*", "*embed*"};
    hn_params_set_no_decay(&m->params, no_decay, 3);
}

/* a batch with learnable structure (each token follows from the one before), a few
 * positions not counted; returns the number of counted targets */
static size_t make_batch(HnRng* rng, int V, int* tokens, int* targets) {
    size_t counted = 0;
    for (int b = 0; b < B; b++) {
        int x = (int)(hn_rng_uniform(rng) * V) % V;
        for (int t = 0; t < T; t++) {
            int next = (x * 7 + 3) % V;
            if (hn_rng_uniform(rng) < 0.2) next = (int)(hn_rng_uniform(rng) * V) % V;
            tokens[b * T + t] = x;
            targets[b * T + t] = t % 5 == 4 ? HN_IGNORE : next;
            counted += targets[b * T + t] != HN_IGNORE;
            x = next;
        }
    }
    return counted;
}

/* ||a - b|| / ||b|| in double; 0 when both are 0, infinity when only b is */
static double rel_err(const float* a, const float* b, size_t n) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        d += e * e;
        r += (double)b[i] * (double)b[i];
    }
    if (!isfinite(d)) return INFINITY;
    if (r == 0.0) return d == 0.0 ? 0.0 : INFINITY;
    return sqrt(d / r);
}

/* every trainable row of a and b (laid out like t) agrees within tol */
static void check_rows(const char* what, const HnParamTable* t, const float* a, const float* b,
                       double tol) {
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        double e = rel_err(a + r->offset, b + r->offset, r->numel);
        CHECK(e <= tol, "%s %s: relative error %.3g > %.0e", what, r->name, e, tol);
    }
}

static float* host_floats(size_t n) {
    float* p = calloc(n, sizeof(float));
    if (!p) stop("out of memory");
    return p;
}

/* ---- (1) one step: loss, gradients, grad norm, AdamW; and determinism ---- */

static void test_one_step_matches_cpu(const HnModelConfig* cfg, const char* name) {
    HnModel hm;
    HnCudaModel gm;
    make_cpu_model(&hm, cfg);
    DEV(hn_cuda_model_create(&gm, &hm, B, T));
    DEV(hn_cuda_model_load(&gm, hm.params.data, NULL, NULL));
    size_t P = hm.params.numel;
    int tokens[B * T], targets[B * T];
    HnRng rng;
    hn_rng_seed(&rng, 99);
    size_t counted = make_batch(&rng, cfg->V, tokens, targets);
    float scale = 1.0f / (float)counted;

    hn_model_zero_grad(&hm);
    double loss_cpu = hn_model_forward(&hm, tokens, targets, B, T, scale);
    hn_model_backward(&hm);

    double loss_gpu = 0.0;
    float* grads = host_floats(P);
    float* grads_again = host_floats(P);
    for (int run = 0; run < 2; run++) {
        DEV(hn_cuda_model_zero_grad(&gm));
        DEV(hn_cuda_model_forward(&gm, tokens, targets, B, T, scale, &loss_gpu));
        DEV(hn_cuda_model_backward(&gm));
        DEV(hn_cuda_download(run ? grads_again : grads, gm.grads, P * sizeof(float)));
    }
    CHECK(hn_close(loss_gpu, loss_cpu, LOSS_TOL, 0.0), "%s loss: gpu %.9g cpu %.9g", name,
          loss_gpu, loss_cpu);
    char what[64];
    snprintf(what, sizeof what, "%s gradient", name);
    check_rows(what, &hm.params, grads, hm.grads, GRAD_TOL);
    CHECK(memcmp(grads, grads_again, P * sizeof(float)) == 0,
          "%s: two device backwards of the same batch differ in their bits", name);

    /* the optimizer: device step vs the CPU's AdamW on the device's gradients */
    double norm_gpu = 0.0;
    DEV(hn_cuda_model_grad_norm(&gm, &norm_gpu));
    double norm_ref = hn_optim_grad_norm(&hm.params, grads);
    double norm_cpu = hn_optim_grad_norm(&hm.params, hm.grads);
    CHECK(hn_close(norm_gpu, norm_ref, OPT_TOL, 0.0), "%s grad norm: gpu %.9g, cpu of gpu grads %.9g",
          name, norm_gpu, norm_ref);
    CHECK(hn_close(norm_gpu, norm_cpu, GRAD_TOL, 0.0), "%s grad norm: gpu %.9g cpu %.9g", name,
          norm_gpu, norm_cpu);

    HnOptimConfig oc = optim_config(10);
    HnOptimizer og, ocpu;
    if (hn_optim_create(&og, &oc, &hm.params) != HN_OK ||
        hn_optim_create(&ocpu, &oc, &hm.params) != HN_OK)
        stop("hn_optim_create");
    float lr_gpu = 0.0f;
    DEV(hn_cuda_model_step(&gm, &og, norm_gpu, &lr_gpu));
    float lr_cpu = hn_optim_step(&ocpu, &hm.params, grads, norm_ref);
    CHECK(lr_gpu == lr_cpu && og.t == ocpu.t, "%s: lr %g vs %g, t %d vs %d", name, lr_gpu, lr_cpu,
          og.t, ocpu.t);
    float* params = host_floats(P);
    DEV(hn_cuda_model_store(&gm, params, og.m, og.v));
    snprintf(what, sizeof what, "%s params after AdamW", name);
    check_rows(what, &hm.params, params, hm.params.data, OPT_TOL);
    snprintf(what, sizeof what, "%s AdamW m", name);
    check_rows(what, &hm.params, og.m, ocpu.m, OPT_TOL);
    snprintf(what, sizeof what, "%s AdamW v", name);
    check_rows(what, &hm.params, og.v, ocpu.v, OPT_TOL);
    /* the step clears the gradients of the rows it updates, as the CPU's does */
    DEV(hn_cuda_download(grads, gm.grads, P * sizeof(float)));
    int zeroed = 1;
    for (int i = 0; i < hm.params.n; i++)
        if (hm.params.rows[i].trainable)
            for (size_t j = 0; j < hm.params.rows[i].numel; j++)
                zeroed &= grads[hm.params.rows[i].offset + j] == 0.0f;
    CHECK(zeroed, "%s: gradients are not zero after the step", name);

    free(grads);
    free(grads_again);
    free(params);
    hn_optim_free(&og);
    hn_optim_free(&ocpu);
    hn_cuda_model_free(&gm);
    hn_model_free(&hm);
}

/* ---- (2) 20 steps: the loss curves agree ---- */

static void test_training_tracks_cpu(const HnModelConfig* cfg, const char* name) {
    enum { STEPS = 20 };
    HnModel hm;
    HnCudaModel gm;
    make_cpu_model(&hm, cfg);
    DEV(hn_cuda_model_create(&gm, &hm, B, T));
    DEV(hn_cuda_model_load(&gm, hm.params.data, NULL, NULL));
    HnOptimConfig oc = optim_config(STEPS);
    HnOptimizer og, ocpu;
    if (hn_optim_create(&og, &oc, &hm.params) != HN_OK ||
        hn_optim_create(&ocpu, &oc, &hm.params) != HN_OK)
        stop("hn_optim_create");
    hn_model_zero_grad(&hm);
    HnRng rng;
    hn_rng_seed(&rng, 7);
    int tokens[B * T], targets[B * T];
    double first = 0.0, last = 0.0, worst = 0.0;
    for (int s = 0; s < STEPS; s++) {
        size_t counted = make_batch(&rng, cfg->V, tokens, targets);
        float scale = 1.0f / (float)counted;
        double lc = hn_model_forward(&hm, tokens, targets, B, T, scale) / (double)counted;
        hn_model_backward(&hm);
        hn_optim_step(&ocpu, &hm.params, hm.grads, hn_optim_grad_norm(&hm.params, hm.grads));

        double sum = 0.0, norm = 0.0;
        float lr;
        DEV(hn_cuda_model_forward(&gm, tokens, targets, B, T, scale, &sum));
        DEV(hn_cuda_model_backward(&gm));
        DEV(hn_cuda_model_grad_norm(&gm, &norm));
        DEV(hn_cuda_model_step(&gm, &og, norm, &lr));
        double lg = sum / (double)counted;
        double e = fabs(lg - lc) / fabs(lc);
        if (e > worst) worst = e;
        CHECK(e <= TRAJ_TOL, "%s step %d: loss gpu %.6f cpu %.6f", name, s + 1, lg, lc);
        if (s == 0) first = lc;
        last = lc;
    }
    printf("%s: %d steps, loss %.4f -> %.4f, largest relative loss difference %.2e\n", name,
           STEPS, first, last, worst);
    CHECK(last < first, "%s: the CPU reference did not learn (%.4f -> %.4f)", name, first, last);
    hn_optim_free(&og);
    hn_optim_free(&ocpu);
    hn_cuda_model_free(&gm);
    hn_model_free(&hm);
}

/* ---- (3) hn_train on the device: save, resume, bit-exact ---- */

static HnConfig train_config(const char* shard, const char* out) {
    HnConfig c;
    hn_config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "gpt2");
    c.model.layers = 2;
    c.model.channels = 64;
    c.model.heads = 4;
    c.model.vocab = 300;
    c.model.context = 32;
    snprintf(c.tokenizer.type, sizeof c.tokenizer.type, "none");
    snprintf(c.data.train, sizeof c.data.train, "%s", shard);
    snprintf(c.data.val, sizeof c.data.val, "%s", shard);
    c.data.batch = 4;
    c.data.seq = 16;
    c.optim.lr = 1e-3f;
    c.optim.warmup = 2;
    c.train.steps = 10;
    snprintf(c.train.device, sizeof c.train.device, "cuda");
    c.train.threads = 2;
    snprintf(c.train.out, sizeof c.train.out, "%s", out);
    c.train.log_every = 1;
    c.train.eval_batches = 2;
    return c;
}

/* rows of group in RUN/latest.h5, laid out like t */
static float* read_group(const char* run, const char* group, const HnParamTable* t) {
    char path[PATH_MAX];
    if (hn_path(path, sizeof path, "%s/latest.h5", run) != HN_OK) stop("hn_path");
    char* config_text = NULL;
    HnH5* f = hn_ckpt_open(path, &config_text);
    if (!f) stop("hn_ckpt_open");
    free(config_text);
    float* x = host_floats(t->numel);
    int rc = hn_ckpt_read_rows(f, group, t, x, strcmp(group, "model") != 0);
    hn_h5_close(f);
    if (rc != HN_OK) stop("hn_ckpt_read_rows");
    return x;
}

static void test_train_resume_on_gpu_is_bit_exact(const char* tmp) {
    char dir[PATH_MAX], shard[PATH_MAX], run_a[PATH_MAX], run_b[PATH_MAX];
    if (hn_path(dir, sizeof dir, "%s/cuda_train", tmp) != HN_OK || hn_mkdirs(dir) != HN_OK ||
        hn_path(shard, sizeof shard, "%s/train_000.bin", dir) != HN_OK ||
        hn_path(run_a, sizeof run_a, "%s/run_a", dir) != HN_OK ||
        hn_path(run_b, sizeof run_b, "%s/run_b", dir) != HN_OK)
        stop("test folder");
    enum { NTOK = 4096 };
    static int ids[NTOK];
    for (int i = 0, x = 5; i < NTOK; i++, x = (x * 7 + 3) % 300)
        ids[i] = i % 13 == 0 ? (i * 31) % 300 : x;
    if (hn_shard_write(shard, ids, NTOK) != HN_OK) stop("hn_shard_write");

    HnConfig ca = train_config(shard, run_a), cb = train_config(shard, run_b);
    HnTrainResult ra, rb1, rb2;
    HnTrainOptions straight = {0}, first_half = {.stop_at = 5}, second_half = {.resume = "auto"};
    if (hn_train(&ca, &straight, &ra) != HN_OK) stop("hn_train 10 steps");
    if (hn_train(&cb, &first_half, &rb1) != HN_OK) stop("hn_train 5 steps");
    if (hn_train(&cb, &second_half, &rb2) != HN_OK) stop("hn_train resumed 5 steps");
    CHECK(ra.steps_done == 10 && rb1.steps_done == 5 && rb2.steps_done == 10,
          "steps done: %d, %d + %d", ra.steps_done, rb1.steps_done, rb2.steps_done);
    CHECK(ra.last_loss == rb2.last_loss, "last loss: straight %.9g, resumed %.9g", ra.last_loss,
          rb2.last_loss);
    CHECK(ra.val_loss == rb2.val_loss, "val loss: straight %.9g, resumed %.9g", ra.val_loss,
          rb2.val_loss);

    HnParamTable t = {0};
    HnModelConfig mc = hn_model_config_of(&ca);
    if (hn_model_table(&t, &mc) != HN_OK) stop("hn_model_table");
    const char* groups[] = {"model", "optim/m", "optim/v"};
    for (int k = 0; k < 3; k++) {
        float* a = read_group(run_a, groups[k], &t);
        float* b = read_group(run_b, groups[k], &t);
        for (int i = 0; i < t.n; i++) {
            const HnParamRow* r = &t.rows[i];
            if (k > 0 && !r->trainable) continue;
            CHECK(memcmp(a + r->offset, b + r->offset, r->numel * sizeof(float)) == 0,
                  "/%s/%s differs between 10 steps and 5 + 5 steps", groups[k], r->name);
        }
        free(a);
        free(b);
    }
    /* and the run learned: its parameters moved from the initialisation */
    HnModel init;
    if (hn_model_create(&init, &mc, 1, 1) != HN_OK) stop("hn_model_create");
    hn_model_init(&init, ca.model.init_std, (uint64_t)ca.train.seed);
    float* trained = read_group(run_a, "model", &t);
    CHECK(rel_err(trained, init.params.data, t.numel) > 1e-4,
          "the parameters after 10 steps equal the initial ones");
    printf("hn_train on cuda: 10 steps loss %.4f val %.4f, 5 + 5 bit-identical\n", ra.last_loss,
           ra.val_loss);
    free(trained);
    hn_model_free(&init);
    hn_params_free(&t);
}

int main(void) {
    const char* require = getenv("HONE_REQUIRE_GPU");
    int required = require && strcmp(require, "1") == 0;
    char why[512] = "";
    if (hn_cuda_device_count() == 0)
        snprintf(why, sizeof why, "hn_cuda_device_count() is 0: no driver or no GPU");
    else if (hn_cuda_init(0) != HN_OK)
        snprintf(why, sizeof why, "hn_cuda_init(0) failed: %s", hn_error_message());
    if (why[0]) {
        if (required) {
            fprintf(stderr, "FAIL: no CUDA device (%s) and HONE_REQUIRE_GPU=1\n", why);
            return 1;
        }
        fprintf(stderr, "skipped: %s\n", why);
        return 77;
    }
    const char* tmp = hn_test_env("HONE_TEST_TMP");
    if (hn_mkdirs(tmp) != HN_OK) stop("hn_mkdirs HONE_TEST_TMP");

    HnModelConfig gpt2 = gpt2_config(), llama = llama_config();
    test_one_step_matches_cpu(&gpt2, "gpt2");
    test_one_step_matches_cpu(&llama, "llama");
    test_training_tracks_cpu(&gpt2, "gpt2");
    test_training_tracks_cpu(&llama, "llama");
    test_train_resume_on_gpu_is_bit_exact(tmp);
    return hn_test_finish("test_cuda_train");
}
