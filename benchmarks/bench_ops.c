/*
 * Times every CPU op at GPT-2 small's shapes for one training step (B=4, T=64, so N=256
 * rows; C=768, NH=12, Vp=50304; AdamW over 124M parameters), on 2 threads, and sets the
 * step's non-GEMM time against its GEMM time: the target is a step within 1.25x its GEMMs.
 * Usage: bench_ops [threads]
 */
#include "benchmarks/bench.h"
#include "kernels/ops.h"
#include "core/rng.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { B = 4, T = 64, N = B * T, C = 768, NH = 12, L = 12, V = 50257, Vp = 50304 };
#define NPARAMS ((size_t)124475904)

static HnRng rng;

static float* randn_(size_t n, float scale) {
    return bench_randn(&rng, n, scale);
}

static double total_ops, total_gemm;

static void report(const char* name, double ms, int per_step, double* total) {
    printf("%-34s %9.3f ms  x%-3d = %9.2f ms/step\n", name, ms, per_step, ms * per_step);
    *total += ms * per_step;
}

/* one linear layer's three GEMMs, as matmul_forward/backward issue them */
static void time_gemms(const char* name, int OC, int IC, int per_step, int reps) {
    float *inp = randn_((size_t)N * IC, 1), *w = randn_((size_t)OC * IC, 0.02f);
    float *out = randn_((size_t)N * OC, 1), *dw = randn_((size_t)OC * IC, 0),
          *din = randn_((size_t)N * IC, 0);
    double f, bd, bw;
    TIME_MS(f, reps,
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, IC, 1.0f, inp, IC, w, IC,
                        0.0f, out, OC));
    TIME_MS(bd, reps,
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, IC, OC, 1.0f, out, OC, w, IC,
                        0.0f, din, IC));
    TIME_MS(bw, reps,
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, out, OC, inp, IC,
                        1.0f, dw, IC));
    char label[64];
    snprintf(label, sizeof label, "gemm %s fwd+bwd (%.1f+%.1f+%.1f)", name, f, bd, bw);
    report(label, f + bd + bw, per_step, &total_gemm);
    free(inp), free(w), free(out), free(dw), free(din);
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2;
    omp_set_num_threads(threads);
    hn_rng_seed(&rng, 1);
    printf("bench_ops: GPT-2 124M step shapes, N=%d C=%d NH=%d Vp=%d, %d threads\n", N, C, NH, Vp,
           threads);

    /* ---- GEMMs: per layer qkv, attention projection, fc, fc projection; then the LM head ---- */
    time_gemms("qkv     (2304x768)", 3 * C, C, L, 5);
    time_gemms("attproj  (768x768)", C, C, L, 5);
    time_gemms("fc      (3072x768)", 4 * C, C, L, 5);
    time_gemms("fcproj  (768x3072)", C, 4 * C, L, 5);
    time_gemms("lm head (50304x768)", Vp, C, 1, 3);

    /* ---- everything else ---- */
    const int reps = 20;
    double ms;
    float *x = randn_((size_t)N * 4 * C, 1), *y = randn_((size_t)N * 4 * C, 1);
    float *z = randn_((size_t)N * 4 * C, 1), *w = randn_(4 * C, 1), *bias = randn_(4 * C, 1);
    float *mean = randn_(N, 1), *rstd = randn_(N, 1);
    float *wte = randn_((size_t)Vp * C, 0.02f), *wpe = randn_((size_t)1024 * C, 0.02f);
    int* tokens = malloc(N * sizeof *tokens);
    for (int i = 0; i < N; i++)
        tokens[i] = (int)hn_rng_below(&rng, V);

    TIME_MS(ms, reps, hn_encoder_forward(x, tokens, NULL, wte, wpe, B, T, C));
    report("encoder_forward", ms, 1, &total_ops);
    TIME_MS(ms, reps, hn_encoder_backward(wte, wpe, y, tokens, NULL, B, T, C));
    report("encoder_backward", ms, 1, &total_ops);

    TIME_MS(ms, reps, hn_layernorm_forward(y, mean, rstd, x, w, bias, N, C, 1e-5f));
    report("layernorm_forward", ms, 2 * L + 1, &total_ops);
    TIME_MS(ms, reps, hn_layernorm_backward(z, w + C, bias + C, y, x, w, mean, rstd, N, C));
    report("layernorm_backward", ms, 2 * L + 1, &total_ops);

    float *att = randn_((size_t)B * NH * T * T, 1), *qkv = randn_((size_t)N * 3 * C, 1);
    TIME_MS(ms, reps, hn_attention_forward(x, att, qkv, B, T, C, NH));
    report("attention_forward", ms, L, &total_ops);
    TIME_MS(ms, reps, hn_attention_backward(z, y, qkv, att, B, T, C, NH));
    report("attention_backward", ms, L, &total_ops);

    TIME_MS(ms, reps, hn_gelu_forward(y, x, (size_t)N * 4 * C));
    report("gelu_forward", ms, L, &total_ops);
    TIME_MS(ms, reps, hn_gelu_backward(z, x, y, (size_t)N * 4 * C));
    report("gelu_backward", ms, L, &total_ops);
    TIME_MS(ms, reps, hn_residual_forward(z, x, y, (size_t)N * C));
    report("residual_forward", ms, 2 * L, &total_ops);

    /* the bias work matmul adds around its GEMMs: a prefill forward, column sums backward */
    float* dbias = randn_(4 * C, 0);
    TIME_MS(ms, reps,
            for (int i = 0; i < N; i++) memcpy(z + (size_t)i * 4 * C, bias, 4 * C * sizeof(float)));
    report("matmul bias prefill (N x 3072, memcpy)", ms, 2 * L, &total_ops);
    TIME_MS(ms, reps, hn_matmul_backward(NULL, NULL, dbias, x, y, w, N, C, 4 * C));
    report("matmul dbias (N x 3072)", ms, 2 * L, &total_ops);

    float* logits = randn_((size_t)N * Vp, 3);
    float* saved = malloc((size_t)N * Vp * sizeof *saved);
    memcpy(saved, logits, (size_t)N * Vp * sizeof *saved);
    float* losses = malloc(N * sizeof *losses);
    int* targets = malloc(N * sizeof *targets);
    for (int i = 0; i < N; i++)
        targets[i] = (int)hn_rng_below(&rng, V);
    /* overwritten by the gradient, so time a fresh copy each run (the copy is timed apart) */
    double copy_ms;
    TIME_MS(copy_ms, 5, memcpy(logits, saved, (size_t)N * Vp * sizeof *saved));
    TIME_MS(ms, 5,
            (memcpy(logits, saved, (size_t)N * Vp * sizeof *saved),
             hn_crossentropy_forward(logits, losses, targets, N, V, Vp, 1.0f / N)));
    report("crossentropy_forward (+grad)", ms - copy_ms, 1, &total_ops);
    free(logits), free(saved);

    float *p = randn_(NPARAMS, 0.02f), *g = randn_(NPARAMS, 0.01f);
    float *m = calloc(NPARAMS, sizeof *m), *v = calloc(NPARAMS, sizeof *v);
    TIME_MS(ms, 3, hn_sum_squares(g, NPARAMS));
    report("sum_squares (124M)", ms, 1, &total_ops);
    TIME_MS(ms, 3,
            hn_adamw_update(p, g, m, v, NPARAMS, 6e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1, 0));
    report("adamw_update (124M)", ms, 1, &total_ops);

    printf("GEMMs %.1f ms/step, other ops %.1f ms/step: step / GEMMs = %.3f (target <= 1.25)\n",
           total_gemm, total_ops, (total_gemm + total_ops) / total_gemm);
    return 0;
}
