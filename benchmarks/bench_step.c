/*
 * One training step of GPT-2 124M (12 layers, 768 channels, 12 heads, vocab 50257, fp32,
 * random weights) on the CPU: forward, backward, gradient norm, AdamW. Prints the median
 * step time over the timed steps, the peak RSS, and, measured in the same process on the
 * same buffers, the step's GEMMs alone through the same BLAS (the floor no implementation
 * that uses these GEMMs can beat). One JSON line on stdout.
 *
 * usage: bench_step [--threads N] [--steps S] [--batch B] [--seq T]
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "benchmarks/bench.h"
#include "core/error.h"
#include "kernels/ops.h"
#include "train/model.h"
#include "train/optim.h"

/* the three GEMMs of one linear layer's forward and backward, as kernels/cpu/matmul.c
 * issues them: out = inp W^T; dinp = dout W; dW += dout^T inp */
static void linear_gemms(float* out, const float* inp, const float* w, float* dinp, float* dw,
                         int N, int C, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out,
                OC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, out, OC, w, C, 0.0f,
                dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, out, OC, inp, C, 1.0f, dw,
                C);
}

/* every GEMM of one training step, on the model's own buffers */
static void gemm_step(HnModel* m, int B, int T) {
    int C = m->cfg.C, N = B * T;
    for (int l = 0; l < m->cfg.L; l++) {
        HnLayerActs* a = &m->act.layer[l];
        const HnLayerTensors* w = &m->w.layers[l];
        const HnLayerTensors* g = &m->g.layers[l];
        linear_gemms(a->qkv, a->ln1, w->qkvw, m->act.dln, g->qkvw, N, C, 3 * C);
        linear_gemms(a->res2, a->atty, w->attow, m->act.datty, g->attow, N, C, C);
        linear_gemms(a->fch, a->ln2, w->fcw, m->act.dln, g->fcw, N, C, 4 * C);
        linear_gemms(a->res3, a->fch_gelu, w->fcprojw, m->act.dbig, g->fcprojw, N, 4 * C, C);
    }
    linear_gemms(m->act.logits, m->act.lnf, m->w.wte, m->act.dln, m->g.wte, N, C, m->cfg.Vp);
}

int main(int argc, char** argv) {
    int threads = 2, steps = 5, B = 4, T = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq"))
            T = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_step [--threads N] [--steps S] [--batch B] [--seq T]\n");
            return 2;
        }
    }
    if (steps < 1 || steps > 1000 || threads < 1 || B < 1 || T < 1 || T > 1024) {
        fprintf(stderr, "bench_step: bad arguments\n");
        return 2;
    }
    omp_set_num_threads(threads);
    HnModelConfig cfg = {.L = 12,
                         .C = 768,
                         .NH = 12,
                         .V = 50257,
                         .Vp = hn_model_padded_vocab(50257),
                         .maxT = 1024,
                         .eps = 1e-5f};
    HnModel m;
    HnOptimizer opt;
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
    if (hn_model_create(&m, &cfg, B, T) != HN_OK ||
        hn_optim_create(&opt, &oc, &m.params) != HN_OK) {
        fprintf(stderr, "bench_step: %s\n", hn_error_message());
        return 1;
    }
    hn_model_init(&m, 0.02f, 1337);
    const char* no_decay[] = {"*.bias", "*norm*", "*embed*"};
    hn_params_set_no_decay(&m.params, no_decay, 3);
    int* tokens = malloc((size_t)B * T * sizeof(int));
    int* targets = malloc((size_t)B * T * sizeof(int));
    srand(1);
    for (int i = 0; i < B * T; i++)
        tokens[i] = rand() % cfg.V, targets[i] = rand() % cfg.V;

    int warmup = 2;
    double* ms = malloc((size_t)steps * sizeof *ms);
    double* gemm_ms = malloc((size_t)steps * sizeof *gemm_ms);
    double loss = 0;
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        loss = hn_model_forward(&m, tokens, targets, B, T, 1.0f / (float)(B * T)) / (B * T);
        hn_model_backward(&m);
        double norm = hn_optim_grad_norm(&m.params, m.grads);
        hn_optim_step(&opt, &m.params, m.grads, norm);
        if (s >= 0) ms[s] = now_ms() - t0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = ru.ru_maxrss / 1024.0;
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        gemm_step(&m, B, T);
        if (s >= 0) gemm_ms[s] = now_ms() - t0;
    }
    double step_med = median(ms, steps), gemm_med = median(gemm_ms, steps);
    printf("{\"impl\":\"hone\",\"threads\":%d,\"B\":%d,\"T\":%d,\"median_ms\":%.1f,\"gemm_floor_"
           "ms\":%.1f,"
           "\"ratio_to_floor\":%.3f,\"peak_rss_mb\":%.0f,\"loss\":%.4f,\"all_ms\":[",
           threads, B, T, step_med, gemm_med, step_med / gemm_med, peak_mb, loss);
    for (int s = 0; s < steps; s++)
        printf("%s%.1f", s ? "," : "", ms[s]);
    printf("]}\n");
    free(ms), free(gemm_ms), free(tokens), free(targets);
    hn_optim_free(&opt);
    hn_model_free(&m);
    return 0;
}
