/*
 * One training step of GPT-2 124M (12 layers, 768 channels, 12 heads, vocab 50257 padded to
 * 50304, fp32, random weights) on the GPU through train/model_cuda.h: forward, backward,
 * gradient norm, AdamW, at B x T = 16 x 1024 by default (halving B until the activations
 * fit). Prints the median step time, tokens/s and the model FLOPs utilisation, and, measured
 * in the same process on the same device buffers, the step's GEMMs alone (every linear
 * layer's forward and backward through hn_cuda_matmul_*: the floor this fp32 step cannot
 * beat), as a ratio. One JSON line on stdout. Without a GPU it says so and exits 0.
 *
 * FLOPs per token (forward + backward), the convention of Kaplan et al. 2020 / PaLM's MFU:
 *   6 * N, N = the parameters that take part in a matmul (every table row but the position
 *   embedding; the tied classifier counts once, at the padded vocabulary the GEMM computes),
 *   plus attention's two (T x T x HS) products per head: 2 * 2 * T * C per token and layer
 *   dense in the forward, twice that in the backward, i.e. 12 * T * C, halved for the causal
 *   mask (only the lower triangle is computed): 6 * T * C per token and layer.
 *   flops_per_token = 6 * N + 6 * L * T * C.
 * MFU = flops_per_token * tokens/s against 989 TFLOP/s (H100/H200 SXM dense bf16 tensor
 * cores, the datasheet figure llm.c and nanoGPT report against), and against 67 TFLOP/s
 * (the same parts' fp32 CUDA-core peak, the ceiling of this fp32, non-TF32 step).
 *
 * usage: bench_cuda_step [--steps S] [--batch B] [--seq T]
 */
#include <stdio.h>

#ifndef HONE_HAVE_CUDA
int main(void) {
    printf("bench_cuda_step: hone was built without CUDA: nothing to measure\n");
    return 0;
}
#else

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "benchmarks/bench.h"
#include "core/error.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "train/model.h"
#include "train/model_cuda.h"
#include "train/optim.h"

#define PEAK_BF16_TFLOPS 989.0
#define PEAK_FP32_TFLOPS 67.0

static int fail(const char* what) {
    fprintf(stderr, "bench_cuda_step: %s: %s\n", what, hn_error_message());
    return 1;
}

/* one linear layer's GEMMs as the step issues them (forward, then dinp and dweight) */
static int linear(float* out, const float* inp, const float* w, float* dinp, float* dw, int N,
                  int C, int OC) {
    if (hn_cuda_matmul_forward(out, inp, w, NULL, N, C, OC) != HN_OK) return HN_ERR;
    return hn_cuda_matmul_backward(dinp, dw, NULL, out, inp, w, N, C, OC);
}

/* every GEMM of one training step, on the device model's own buffers */
static int gemm_step(HnCudaModel* g, int B, int T) {
    int C = g->cfg.C, F = g->cfg.F, N = B * T;
    for (int l = 0; l < g->cfg.L; l++) {
        HnLayerActs* a = &g->act.layer[l];
        const HnLayerTensors* w = &g->w.layers[l];
        const HnLayerTensors* d = &g->g.layers[l];
        if (linear(a->qkv, a->ln1, w->qkvw, g->act.dln, d->qkvw, N, C, 3 * C) != HN_OK ||
            linear(a->res2, a->atty, w->attow, g->act.datty, d->attow, N, C, C) != HN_OK ||
            linear(a->fch, a->ln2, w->fcw, g->act.dln, d->fcw, N, C, F) != HN_OK ||
            linear(a->res3, a->fch_gelu, w->fcprojw, g->act.dbig, d->fcprojw, N, F, C) != HN_OK)
            return HN_ERR;
    }
    if (linear(g->act.logits, g->act.lnf, g->w.lm_head, g->act.dln, g->g.lm_head, N, C,
               g->cfg.Vp) != HN_OK)
        return HN_ERR;
    return hn_cuda_sync();
}

static int train_step(HnCudaModel* g, HnOptimizer* o, const int* tokens, const int* targets, int B,
                      int T, double* loss) {
    double sum, norm;
    float lr;
    if (hn_cuda_model_forward(g, tokens, targets, B, T, 1.0f / (float)(B * T), &sum) != HN_OK ||
        hn_cuda_model_backward(g) != HN_OK || hn_cuda_model_grad_norm(g, &norm) != HN_OK ||
        hn_cuda_model_step(g, o, norm, &lr) != HN_OK || hn_cuda_sync() != HN_OK)
        return HN_ERR;
    *loss = sum / (B * T);
    return HN_OK;
}

int main(int argc, char** argv) {
    int steps = 5, B = 16, T = 1024;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq"))
            T = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_cuda_step [--steps S] [--batch B] [--seq T]\n");
            return 2;
        }
    }
    if (steps < 1 || steps > 1000 || B < 1 || T < 1 || T > 1024) {
        fprintf(stderr, "bench_cuda_step: bad arguments\n");
        return 2;
    }
    if (hn_cuda_device_count() == 0) {
        printf("bench_cuda_step: no CUDA device (no driver or no GPU): nothing to measure\n");
        return 0;
    }
    if (hn_cuda_init(0) != HN_OK) return fail("hn_cuda_init");

    HnModelConfig cfg = {.L = 12,
                         .C = 768,
                         .NH = 12,
                         .V = 50257,
                         .Vp = hn_model_padded_vocab(50257),
                         .maxT = 1024,
                         .eps = 1e-5f};
    HnOptimConfig oc = {.lr = 1e-4f,
                        .beta1 = 0.9f,
                        .beta2 = 0.95f,
                        .eps = 1e-8f,
                        .weight_decay = 0.1f,
                        .clip = 1.0f,
                        .min_lr_ratio = 0.1f,
                        .warmup = 0,
                        .steps = 1000,
                        .schedule = HN_SCHED_COSINE};
    /* the host model holds the table and the initial weights only: no host activations */
    HnModel m;
    HnOptimizer opt;
    if (hn_model_create(&m, &cfg, 1, 1) != HN_OK || hn_optim_create(&opt, &oc, &m.params) != HN_OK)
        return fail("host model");
    hn_model_init(&m, 0.02f, 1337);
    const char* no_decay[] = {"*.bias", "*norm*", "*embed*"};
    hn_params_set_no_decay(&m.params, no_decay, 3);
    HnCudaModel g;
    while (hn_cuda_model_create(&g, &m, B, T) != HN_OK) {
        hn_cuda_model_free(&g);
        if (B == 1) return fail("device model");
        fprintf(stderr, "bench_cuda_step: B=%d does not fit (%s); trying B=%d\n", B,
                hn_error_message(), B / 2);
        hn_cuda_sync(); /* clears the failed cudaMalloc, which the next launch check would see */
        B /= 2;
    }
    if (hn_cuda_model_load(&g, m.params.data, NULL, NULL) != HN_OK) return fail("upload");

    int* tokens = malloc((size_t)B * T * sizeof(int));
    int* targets = malloc((size_t)B * T * sizeof(int));
    double* ms = malloc((size_t)steps * sizeof *ms);
    double* gemm_ms = malloc((size_t)steps * sizeof *gemm_ms);
    if (!tokens || !targets || !ms || !gemm_ms) return fail("out of memory");
    srand(1);
    for (int i = 0; i < B * T; i++)
        tokens[i] = rand() % cfg.V, targets[i] = rand() % cfg.V;

    int warmup = 2;
    double loss = 0;
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        if (train_step(&g, &opt, tokens, targets, B, T, &loss) != HN_OK) return fail("step");
        if (s >= 0) ms[s] = now_ms() - t0;
    }
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        if (gemm_step(&g, B, T) != HN_OK) return fail("gemm floor");
        if (s >= 0) gemm_ms[s] = now_ms() - t0;
    }

    size_t nparams = m.params.numel, n_matmul = nparams;
    int wpe = hn_params_find(&m.params, "pos_embed.weight");
    if (wpe >= 0) n_matmul -= m.params.rows[wpe].numel;
    double flops_per_token = 6.0 * (double)n_matmul + 6.0 * cfg.L * (double)T * cfg.C;
    double step_med = median(ms, steps), gemm_med = median(gemm_ms, steps);
    double tok_s = (double)B * T / (step_med * 1e-3);
    double tflops = flops_per_token * tok_s * 1e-12;
    printf("GPT-2 124M fp32 step on the GPU, B=%d T=%d: %.1f ms, %.0f tokens/s, %.1f TFLOP/s: "
           "MFU %.1f%% of %.0f (bf16 dense), %.1f%% of %.0f (fp32); GEMMs alone %.1f ms "
           "(step / GEMM floor %.2f)\n",
           B, T, step_med, tok_s, tflops, 100.0 * tflops / PEAK_BF16_TFLOPS, PEAK_BF16_TFLOPS,
           100.0 * tflops / PEAK_FP32_TFLOPS, PEAK_FP32_TFLOPS, gemm_med, step_med / gemm_med);
    printf("{\"impl\":\"hone-cuda-fp32\",\"B\":%d,\"T\":%d,\"params\":%zu,\"flops_per_token\":%.4g,"
           "\"median_ms\":%.2f,\"tokens_per_s\":%.0f,\"tflops\":%.2f,\"mfu_bf16_peak\":%.4f,"
           "\"mfu_fp32_peak\":%.4f,\"gemm_floor_ms\":%.2f,\"ratio_to_floor\":%.3f,\"loss\":%.4f,"
           "\"all_ms\":[",
           B, T, nparams, flops_per_token, step_med, tok_s, tflops, tflops / PEAK_BF16_TFLOPS,
           tflops / PEAK_FP32_TFLOPS, gemm_med, step_med / gemm_med, loss);
    for (int s = 0; s < steps; s++)
        printf("%s%.2f", s ? "," : "", ms[s]);
    printf("]}\n");
    free(ms), free(gemm_ms), free(tokens), free(targets);
    hn_cuda_model_free(&g);
    hn_optim_free(&opt);
    hn_model_free(&m);
    hn_cuda_shutdown();
    return 0;
}

#endif /* HONE_HAVE_CUDA */
