/*
 * Throughput of the inference model (eval/model.c) with random weights fed through the
 * tensor callback (no file), on 2 threads, at two shapes:
 *   gpt2-124M:    L=12, C=768, NH=12, V=50257, context 1024, prefill windows of 1024;
 *   smollm2-135M: L=30, C=576, NH=9, NKV=3, F=1536, V=49152, RoPE base 1e5, tied,
 *                 context 8192 capped at 2048, prefill windows of 512.
 * Prints one JSON line per shape:
 *   prefill: evaluation tokens/s over full windows (the ppl path: logits for every
 *            position, turned into losses block by block), against the GEMM floor: the
 *            model's GEMM flops per token at the sgemm rate measured here on the MLP's up
 *            product of a window (the ratio says how close the forward gets to its GEMMs
 *            alone);
 *   decode:  single-stream tokens/s with the cache holding 128 tokens, then 64 steps,
 *            against decoding without a cache (the whole prefix recomputed per token, as
 *            the trainer's sampler does), measured on a few steps;
 *   memory:  the weights and the run state (activations, logits of a row block, cache).
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

/* sgemm GFLOP/s on out (W, F) = inp (W, C) @ w (F, C)^T */
static double sgemm_gflops(int W, int C, int F) {
    float* a = calloc((size_t)W * C, sizeof(float));
    float* b = calloc((size_t)F * C, sizeof(float));
    float* c = calloc((size_t)W * F, sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, W, F, C, 1.0f, a, C, b, C, 0.0f, c, F);
    const int reps = 10;
    double t0 = now();
    for (int r = 0; r < reps; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, W, F, C, 1.0f, a, C, b, C, 0.0f, c, F);
    double gflops = reps * 2.0 * W * (double)F * C / (now() - t0) * 1e-9;
    free(a);
    free(b);
    free(c);
    return gflops;
}

static int bench(const char* name, const HnEvalConfig* cfg, int cap, int W) {
    HnRng rng;
    hn_rng_seed(&rng, 1);
    HnEvalModel* m = hn_eval_model_new(cfg, cap, random_tensor, &rng);
    if (!m) {
        fprintf(stderr, "bench_eval: %s\n", hn_error_message());
        return 1;
    }
    const HnEvalConfig* c = &m->config;
    int* tokens = malloc((size_t)(W + 1) * sizeof *tokens); /* W inputs, W targets */
    for (int t = 0; t <= W; t++)
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)c->V);

    /* prefill: one window to warm up, then timed windows */
    const int windows = 2;
    double nll;
    hn_eval_forward_nll(m, tokens, tokens + 1, W, 0, &nll);
    double t0 = now();
    for (int w = 0; w < windows; w++)
        hn_eval_forward_nll(m, tokens, tokens + 1, W, 0, &nll);
    double prefill_tps = windows * W / (now() - t0);

    /* the GEMM floor: per layer q, k, v C (C + 2 KV), o C^2, the MLP 2 or 3 C F; the
     * classifier Vp C */
    const double C = c->C, KV = (double)c->NKV * (c->C / c->NH), F = c->F;
    const double mlp = c->arch == HN_EVAL_LLAMA ? 3.0 : 2.0;
    double flops_per_token = 2.0 * (c->L * (C * (C + 2 * KV) + C * C + mlp * C * F) + c->Vp * C);
    double gflops = sgemm_gflops(W, c->C, c->F);
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

    printf("{\"bench\":\"eval\",\"model\":\"%s\",\"threads\":%d,\"context\":%d,"
           "\"weights_mb\":%.1f,\"state_mb\":%.1f,"
           "\"prefill_tokens_per_s\":%.1f,\"prefill_window\":%d,\"sgemm_gflops\":%.1f,"
           "\"gemm_floor_tokens_per_s\":%.1f,\"prefill_vs_gemm_floor\":%.3f,"
           "\"decode_tokens_per_s\":%.2f,\"decode_context\":%d,\"decode_steps\":%d,"
           "\"nocache_decode_tokens_per_s\":%.2f,\"decode_speedup_vs_nocache\":%.2f}\n",
           name, omp_get_max_threads(), c->maxT, m->nparams * 4e-6, m->nstate * 4e-6, prefill_tps,
           W, gflops, floor_tps, prefill_tps / floor_tps, decode_tps, ctx, steps, nocache_tps,
           decode_tps / nocache_tps);
    fflush(stdout);
    free(tokens);
    hn_eval_model_free(m);
    return 0;
}

int main(void) {
    omp_set_num_threads(2);
    const HnEvalConfig gpt2 = {.arch = HN_EVAL_GPT2,
                               .L = 12,
                               .C = 768,
                               .NH = 12,
                               .V = 50257,
                               .context = 1024,
                               .eps = 1e-5f};
    const HnEvalConfig smollm2 = {.arch = HN_EVAL_LLAMA,
                                  .L = 30,
                                  .C = 576,
                                  .NH = 9,
                                  .NKV = 3,
                                  .F = 1536,
                                  .V = 49152,
                                  .context = 8192,
                                  .eps = 1e-5f,
                                  .rope_theta = 1e5f};
    int rc = bench("gpt2-124M", &gpt2, 0, 1024);
    return rc | bench("smollm2-135M", &smollm2, 2048, 512);
}
