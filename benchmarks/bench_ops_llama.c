/*
 * Times the Llama-family CPU ops at SmolLM2-135M's shapes for one training step (B=4, T=256,
 * so N=1024 rows; C=576, NH=9 query heads on NKV=3 kv heads of HS=64, FFN=1536, L=30
 * layers), on 2 threads. Each op is set against a baseline measured in the same run:
 * RMSNorm against LayerNorm, SwiGLU against GELU over the same n, RoPE against a residual
 * add streaming the same floats, and grouped-query attention against multi-head attention
 * (hn_attention_*, NH=9 kv heads). Prefix tuning's attention (P=32 prefix rows ahead of
 * every sequence) is set against grouped-query attention, outside the step total, as it
 * replaces that op rather than adding to it.
 * Usage: bench_ops_llama [threads]
 */
#include "benchmarks/bench.h"
#include "kernels/ops.h"
#include "core/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

enum { B = 4, T = 256, N = B * T, C = 576, NH = 9, NKV = 3, HS = 64, FFN = 1536, L = 30 };
/* Llama's fused projection row: [q (NH*HS) | k (NKV*HS) | v (NKV*HS)] */
enum { QKV = (NH + 2 * NKV) * HS };

static HnRng rng;

static float* randn_(size_t n, float scale) {
    return bench_randn(&rng, n, scale);
}

static double total;

static void report(const char* name, double ms, const char* base_name, double base_ms,
                   int per_step) {
    printf("%-22s %8.3f ms   %-26s %8.3f ms  ratio %5.2f   x%-3d = %7.2f ms/step\n", name, ms,
           base_name, base_ms, ms / base_ms, per_step, ms * per_step);
    total += ms * per_step;
}

int main(int argc, char** argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 2, reps = 20;
    omp_set_num_threads(threads);
    hn_rng_seed(&rng, 1);
    printf("bench_ops_llama: SmolLM2-135M step shapes, N=%d C=%d NH=%d NKV=%d HS=%d FFN=%d, "
           "%d threads\n",
           N, C, NH, NKV, HS, FFN, threads);
    const size_t nffn = (size_t)N * FFN, natt = (size_t)B * NH * T * T;
    float *x = randn_(nffn, 1), *y = randn_(nffn, 1), *z = randn_(nffn, 1), *u = randn_(nffn, 1);
    float* w = randn_(3 * C, 1);
    float *mean = randn_(N, 0), *rstd = randn_(N, 0);
    double ms, base;

    TIME_MS(base, reps, hn_layernorm_forward(y, mean, rstd, x, w, w + C, N, C, 1e-5f));
    TIME_MS(ms, reps, hn_rmsnorm_forward(y, rstd, x, w, N, C, 1e-5f));
    report("rmsnorm_forward", ms, "layernorm_forward", base, 2 * L + 1);
    TIME_MS(base, reps, hn_layernorm_backward(z, w + C, w + 2 * C, y, x, w, mean, rstd, N, C));
    TIME_MS(ms, reps, hn_rmsnorm_backward(z, w + C, y, x, w, rstd, N, C));
    report("rmsnorm_backward", ms, "layernorm_backward", base, 2 * L + 1);

    /* q and k of the fused row, rotated in place: NH + NKV heads per row */
    const size_t nrot = (size_t)N * (NH + NKV) * HS;
    TIME_MS(base, reps, hn_residual_forward(z, x, y, nrot));
    TIME_MS(ms, reps,
            (hn_rope_forward(x, NULL, B, T, NH, HS, QKV, 0, 1e5f),
             hn_rope_forward(x + NH * HS, NULL, B, T, NKV, HS, QKV, 0, 1e5f)));
    report("rope_forward (q+k)", ms, "residual (same floats)", base, L);
    TIME_MS(ms, reps,
            (hn_rope_backward(x, NULL, B, T, NH, HS, QKV, 0, 1e5f),
             hn_rope_backward(x + NH * HS, NULL, B, T, NKV, HS, QKV, 0, 1e5f)));
    report("rope_backward (q+k)", ms, "residual (same floats)", base, L);

    TIME_MS(base, reps, hn_gelu_forward(z, x, nffn));
    TIME_MS(ms, reps, hn_swiglu_forward(z, x, y, nffn));
    report("swiglu_forward", ms, "gelu_forward", base, L);
    TIME_MS(base, reps, hn_gelu_backward(z, x, y, nffn));
    TIME_MS(ms, reps, hn_swiglu_backward(z, u, y, x, y, nffn));
    report("swiglu_backward", ms, "gelu_backward", base, L);

    float *qkv = randn_((size_t)N * 3 * C, 1), *dqkv = randn_((size_t)N * 3 * C, 0);
    float *att = randn_(natt, 0), *out = randn_((size_t)N * C, 0), *dout = randn_((size_t)N * C, 1);
    const float *q = qkv, *k = qkv + NH * HS, *v = k + NKV * HS;
    float *dq = dqkv, *dk = dqkv + NH * HS, *dv = dk + NKV * HS;
    TIME_MS(base, 5, hn_attention_forward(out, att, qkv, B, T, C, NH));
    TIME_MS(ms, 5, hn_attention_gqa_forward(out, att, q, k, v, QKV, QKV, B, T, NH, NKV, HS));
    report("attention_gqa_forward", ms, "attention_forward (MHA)", base, L);
    const double gqa_forward = ms;
    TIME_MS(base, 5, hn_attention_backward(dqkv, dout, qkv, att, B, T, C, NH));
    TIME_MS(ms, 5,
            hn_attention_gqa_backward(dq, dk, dv, dout, q, k, v, att, QKV, QKV, B, T, NH, NKV, HS));
    report("attention_gqa_backward", ms, "attention_backward (MHA)", base, L);
    const double gqa_backward = ms;

    /* prefix tuning: pk, pv the column blocks of one (P, 2*NKV*HS) matrix */
    enum { P = 32, PW = 2 * NKV * HS };
    float *pkv = randn_((size_t)P * PW, 1), *dpkv = randn_((size_t)P * PW, 0);
    float* patt = randn_((size_t)B * NH * T * (P + T), 0);
    TIME_MS(ms, 5,
            hn_attention_prefix_forward(out, patt, q, k, v, pkv, pkv + NKV * HS, NULL, PW, QKV, QKV,
                                        B, T, P, NH, NKV, HS));
    printf("%-22s %8.3f ms   %-26s %8.3f ms  ratio %5.2f   (not in the total)\n",
           "attention_prefix_fwd", ms, "attention_gqa_forward", gqa_forward, ms / gqa_forward);
    TIME_MS(ms, 5,
            hn_attention_prefix_backward(dq, dk, dv, dpkv, dpkv + NKV * HS, dout, q, k, v, pkv,
                                         pkv + NKV * HS, patt, PW, QKV, QKV, B, T, P, NH, NKV, HS));
    printf("%-22s %8.3f ms   %-26s %8.3f ms  ratio %5.2f   (not in the total)\n",
           "attention_prefix_bwd", ms, "attention_gqa_backward", gqa_backward, ms / gqa_backward);

    printf("Llama ops total: %.1f ms/step (L=%d)\n", total, L);
    free(x), free(y), free(z), free(u), free(w), free(mean), free(rstd), free(qkv), free(dqkv),
        free(att);
    free(out), free(dout), free(pkv), free(dpkv), free(patt);
    return 0;
}
