/*
 * Causal self-attention, multi-head and grouped-query (Ainslie et al., "GQA: Training
 * Generalized Multi-Query Transformer Models from Multi-Head Checkpoints", 2023): NH query
 * heads share NKV key/value heads, G = NH / NKV query heads to a kv head; query head h reads
 * kv head h / G. GPT-2's multi-head attention on its fused qkv is the case NKV = NH with
 * q, k, v side by side in one row of 3C.
 * Shapes: q, dq (B,T,NH*HS) rows q_stride apart; k, v, dk, dv (B,T,NKV*HS) rows kv_stride
 * apart; att (B,NH,T,T) softmax probabilities, row t nonzero only in columns 0..t;
 * out, dout (B,T,NH*HS).
 *
 * All of them are prefix attention (attention_prefix.c) with no prefix, P = 0, which runs
 * the same steps as a kernel written for P = 0 alone; how the work is split over threads
 * and kept deterministic is described there.
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <stddef.h>

void hn_attention_gqa_forward(float* out, float* att, const float* q, const float* k,
                              const float* v, int q_stride, int kv_stride, int B, int T, int NH,
                              int NKV, int HS) {
    hn_attention_prefix_forward(out, att, q, k, v, NULL, NULL, NULL, 0, q_stride, kv_stride, B, T,
                                0, NH, NKV, HS);
}

void hn_attention_gqa_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                               const float* k, const float* v, const float* att, int q_stride,
                               int kv_stride, int B, int T, int NH, int NKV, int HS) {
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION_GQA ? 1.02f : 1.0f;
    hn_cpu_attention_backward(dq, dk, dv, NULL, NULL, dout, q, k, v, NULL, NULL, att, 0, q_stride,
                              kv_stride, B, T, 0, NH, NKV, HS, broken);
}

void hn_attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH) {
    hn_attention_gqa_forward(out, att, qkv, qkv + C, qkv + 2 * C, 3 * C, 3 * C, B, T, NH, NH,
                             C / NH);
}

void hn_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                           int B, int T, int C, int NH) {
    const float broken = hn_cpu_broken_op == HN_OP_ATTENTION ? 1.02f : 1.0f;
    hn_cpu_attention_backward(dqkv, dqkv + C, dqkv + 2 * C, NULL, NULL, dout, qkv, qkv + C,
                              qkv + 2 * C, NULL, NULL, att, 0, 3 * C, 3 * C, B, T, 0, NH, NH,
                              C / NH, broken);
}
