/*
 * Throughput of the inference model (eval/model.c) at GPT-2 124M (L=12, C=768, NH=12,
 * V=50257, maxT=1024) with random weights fed through the tensor callback (no file), on
 * 2 threads. Prints one JSON line:
 *   prefill: evaluation tokens/s over full 1024-token windows (logits for every position),
 *            against the GEMM floor: the model's GEMM flops per token at the sgemm rate
 *            measured here on a layer-sized product (the ratio says how close the forward
 *            gets to its GEMMs alone);
 *   decode:  single-stream tokens/s with the cache holding 128 tokens, then 64 steps,
 *            against decoding without a cache (the whole prefix recomputed per token, as
 *            the trainer's sampler does), measured on a few steps.
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/rng.h"
#include "eval/model.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* random weights: uniform with GPT-2's std 0.02, unit norm gains, zero biases */
static int random_tensor(void* ctx, const char* name, float* dst, size_t numel) {
    HnRng* rng = ctx;
    size_t len = strlen(name);
    int bias = len > 5 && strcmp(name + len - 5, ".bias") == 0;
    int norm = strstr(name, "norm.") != NULL;
    for (size_t i = 0; i < numel; i++)
        dst[i] = bias ? 0.0f : norm ? 1.0f : 0.0693f * (hn_rng_uniform(rng) - 0.5f);
    return HN_OK;
}

int main(void) {
    omp_set_num_threads(2);
    const HnEvalConfig cfg = {.L = 12, .C = 768, .NH = 12, .V = 50257, .maxT = 1024, .eps = 1e-5f};
    const int T = cfg.maxT, C = cfg.C;
    HnRng rng;
    hn_rng_seed(&rng, 1);
    HnEvalModel* m = hn_eval_model_new(&cfg, random_tensor, &rng);
    if (!m) {
        fprintf(stderr, "bench_eval: %s\n", hn_error_message());
        return 1;
    }
    int* tokens = malloc((size_t)T * sizeof *tokens);
    for (int t = 0; t < T; t++)
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)cfg.V);

    /* prefill: one window to warm up, then timed windows */
    const int windows = 2;
    hn_eval_forward(m, tokens, T, 0);
    double t0 = now();
    for (int w = 0; w < windows; w++)
        hn_eval_forward(m, tokens, T, 0);
    double prefill_tps = windows * T / (now() - t0);

    /* the GEMM floor: sgemm rate on the qkv product of a window, times the GEMM flops of
     * one token (per layer qkv 3C^2, o C^2, up 4C^2, down 4C^2; classifier Vp C) */
    float* a = calloc((size_t)T * C, sizeof(float));
    float* b = calloc((size_t)3 * C * C, sizeof(float));
    float* c = calloc((size_t)T * 3 * C, sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, 3 * C, C, 1.0f, a, C, b, C, 0.0f, c,
                3 * C);
    const int reps = 10;
    t0 = now();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, 3 * C, C, 1.0f, a, C, b, C, 0.0f, c,
                    3 * C);
    double gflops = reps * 2.0 * T * 3.0 * C * C / (now() - t0) * 1e-9;
    double flops_per_token = 2.0 * ((double)cfg.L * 12 * C * C + (double)m->config.Vp * C);
    double floor_tps = gflops * 1e9 / flops_per_token;

    /* decode: cache filled to 128, then 64 single-token steps */
    const int ctx = 128, steps = 64;
    hn_eval_forward(m, tokens, ctx, 0);
    t0 = now();
    for (int i = 0; i < steps; i++)
        hn_eval_forward(m, tokens + ctx + i, 1, ctx + i);
    double decode_tps = steps / (now() - t0);

    /* without a cache: each token recomputes its whole prefix */
    const int nocache_steps = 4;
    t0 = now();
    for (int i = 0; i < nocache_steps; i++)
        hn_eval_forward(m, tokens, ctx + i + 1, 0);
    double nocache_tps = nocache_steps / (now() - t0);

    printf("{\"bench\":\"eval\",\"model\":\"gpt2-124M\",\"threads\":2,"
           "\"prefill_tokens_per_s\":%.1f,\"prefill_window\":%d,\"sgemm_gflops\":%.1f,"
           "\"gemm_floor_tokens_per_s\":%.1f,\"prefill_vs_gemm_floor\":%.3f,"
           "\"decode_tokens_per_s\":%.2f,\"decode_context\":%d,\"decode_steps\":%d,"
           "\"nocache_decode_tokens_per_s\":%.2f,\"decode_speedup_vs_nocache\":%.2f}\n",
           prefill_tps, T, gflops, floor_tps, prefill_tps / floor_tps, decode_tps, ctx, steps,
           nocache_tps, decode_tps / nocache_tps);
    free(a);
    free(b);
    free(c);
    free(tokens);
    hn_eval_model_free(m);
    return 0;
}
