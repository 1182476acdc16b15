/*
 * What the CPU kernels share and the public interface (kernels/ops.h) does not: the switch
 * behind hn_ops_test_break, and reductions in a fixed order that GCC still vectorises.
 *
 * Why the reductions look odd: without -ffast-math GCC may not reorder a float sum, so a
 * plain `s += a[i]` loop stays scalar. Keeping HN_LANES independent partial sums (one per
 * vector lane) and adding them in a fixed tree at the end is a sum order we chose, so the
 * compiler may vectorise it, and the result is the same bits on every run and thread count.
 */
#ifndef HONE_CPU_INTERNAL_H
#define HONE_CPU_INTERNAL_H

#include <math.h>

/* ops whose backward hn_ops_test_break can spoil */
typedef enum {
    HN_OP_NONE = 0,
    HN_OP_ENCODER,
    HN_OP_LAYERNORM,
    HN_OP_MATMUL,
    HN_OP_ATTENTION,
    HN_OP_GELU,
    HN_OP_CROSSENTROPY,
    HN_OP_RMSNORM,
    HN_OP_ROPE,
    HN_OP_SWIGLU,
    HN_OP_ATTENTION_GQA,
    HN_OP_ATTENTION_PREFIX,
} HnOpId;

/* the op currently broken by hn_ops_test_break (HN_OP_NONE outside tests) */
extern HnOpId hn_cpu_broken_op;

/* hn_attention_prefix_backward (attention_prefix.c) with `broken` (1 = correct) in place of
 * the test hook, so each attention op that runs through it is broken under its own name */
void hn_cpu_attention_backward(float* dq, float* dk, float* dv, float* dpk, float* dpv,
                               const float* dout, const float* q, const float* k, const float* v,
                               const float* pk, const float* pv, const float* att, int p_stride,
                               int q_stride, int kv_stride, int B, int T, int P, int NH, int NKV,
                               int HS, float broken);

/* 16 floats: one AVX-512 register, two AVX2 registers */
#define HN_LANES 16

static inline float hn_lanes_sum(float acc[HN_LANES]) {
    for (int w = HN_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] += acc[j + w];
    return acc[0];
}

static inline float hn_lanes_max(float acc[HN_LANES]) {
    for (int w = HN_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++)
            acc[j] = acc[j + w] > acc[j] ? acc[j + w] : acc[j];
    return acc[0];
}

/* sum of a[i] * b[i], i < n */
static inline float hn_dot(const float* a, const float* b, int n) {
    float acc[HN_LANES] = {0};
    int i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
        for (int j = 0; j < HN_LANES; j++)
            acc[j] = fmaf(a[i + j], b[i + j], acc[j]);
    for (int j = 0; i + j < n; j++)
        acc[j] = fmaf(a[i + j], b[i + j], acc[j]);
    return hn_lanes_sum(acc);
}

/* sum of a[i], i < n */
static inline float hn_sum(const float* a, int n) {
    float acc[HN_LANES] = {0};
    int i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
        for (int j = 0; j < HN_LANES; j++)
            acc[j] += a[i + j];
    for (int j = 0; i + j < n; j++)
        acc[j] += a[i + j];
    return hn_lanes_sum(acc);
}

/* largest a[i], i < n (n >= 1); NaNs are skipped, so callers let them reach a later sum */
static inline float hn_max(const float* a, int n) {
    float acc[HN_LANES];
    for (int j = 0; j < HN_LANES; j++)
        acc[j] = a[0];
    int i = 0;
    for (; i + HN_LANES <= n; i += HN_LANES)
        for (int j = 0; j < HN_LANES; j++)
            acc[j] = a[i + j] > acc[j] ? a[i + j] : acc[j];
    for (int j = 0; i + j < n; j++)
        acc[j] = a[i + j] > acc[j] ? a[i + j] : acc[j];
    return hn_lanes_max(acc);
}

#endif
