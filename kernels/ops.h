/*
 * The op interface: forward and backward of every op a transformer block uses, on plain
 * float arrays. kernels/cpu/ is the reference implementation; kernels/cuda/ mirrors it.
 * This file is the contract between the model code (train/) and the backends: shapes,
 * which outputs are overwritten and which are accumulated into.
 *
 * Letters used in shapes: B batch, T time, C channels, N = B*T rows, OC output channels,
 * NH heads, HS = C/NH head size, V vocabulary, Vp padded vocabulary (V <= Vp).
 *
 * Conventions for backward functions:
 *   - gradients of parameters (dweight, dbias, dwte, ...) are ACCUMULATED (+=), so one
 *     buffer collects the contributions of several micro-batches and of tied weights;
 *     a NULL parameter gradient means "frozen": it is not computed at all;
 *   - gradients of inputs are OVERWRITTEN (=) unless the function says otherwise
 *     (layernorm_backward accumulates into dinp: it sits on the residual stream).
 * All functions use OpenMP for parallelism and give the same bits for the same inputs and
 * the same number of threads.
 */
#ifndef HONE_OPS_H
#define HONE_OPS_H

#include <stddef.h>

/* target id of a position that does not count in the loss (the per-token loss mask) */
#define HN_IGNORE (-1)

/* ---- embeddings: out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:] ---- */
void hn_encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe, int B,
                        int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[t,:] += sum_b dout[b,t,:]; either may be NULL */
void hn_encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens, int B,
                         int T, int C);

/* ---- LayerNorm over the last dimension; mean, rstd (N) are saved for the backward ---- */
void hn_layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                          const float* weight, const float* bias, int N, int C, float eps);
/* dinp += ..., dweight += ..., dbias += ... (dweight/dbias may be NULL) */
void hn_layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                           const float* inp, const float* weight, const float* mean,
                           const float* rstd, int N, int C);

/* ---- linear: out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC); bias may be NULL ---- */
void hn_matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                       int C, int OC);
/* dinp (N,C) = dout @ weight (skipped if NULL); dweight (OC,C) += dout^T @ inp;
 * dbias (OC) += column sums of dout (NULL: no bias or frozen) */
void hn_matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, int N, int C, int OC);

/* ---- causal multi-head self-attention ----
 * qkv (B,T,3C) holds q, k, v side by side (GPT-2's fused projection), each split into NH
 * heads of HS; att (B,NH,T,T) receives the softmax probabilities (entries above the
 * diagonal are 0) and is kept for the backward; out (B,T,C). Scale 1/sqrt(HS). */
void hn_attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
/* dqkv (B,T,3C) = ... (overwritten) */
void hn_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                           int B, int T, int C, int NH);

/* ---- GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ---- */
void hn_gelu_forward(float* out, const float* inp, size_t n);
/* dinp = dout * gelu'(inp); dinp may alias dout */
void hn_gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);

/* ---- residual: out = a + b (out may alias a or b) ---- */
void hn_residual_forward(float* out, const float* a, const float* b, size_t n);

/* ---- fused softmax + cross-entropy over the first V of Vp columns ----
 * logits (N,Vp); targets (N) with HN_IGNORE for positions that do not count.
 * losses[i] = -log softmax(logits[i,:V])[targets[i]] (0 where ignored).
 * Returns the sum of losses over counted rows (in double).
 * If grad_scale != 0, logits is overwritten with the gradient of grad_scale * sum(losses):
 * grad_scale * (softmax - onehot) on counted rows, 0 on ignored rows and on padded columns.
 * If grad_scale == 0 logits is left as it is. Padded columns never get probability. */
double hn_crossentropy_forward(float* logits, float* losses, const int* targets, int N, int V,
                               int Vp, float grad_scale);

/* ---- optimizer ----
 * AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019), in the
 * order torch.optim.AdamW computes it:
 *   g' = g * grad_scale;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2
 *   p -= lr * wd * p;  p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 * t is the 1-based step count. If zero_grad, g is set to 0 afterwards (saves a pass). */
void hn_adamw_update(float* p, float* g, float* m, float* v, size_t n, float lr, float beta1,
                     float beta2, float eps, float wd, float grad_scale, int t, int zero_grad);

/* sum of squares in double, by a fixed blocking that does not depend on the thread count */
double hn_sum_squares(const float* x, size_t n);

/* ---- test hook ----
 * Deliberately breaks the backward of the named op (e.g. "layernorm", "matmul",
 * "attention", "gelu", "encoder", "crossentropy") so a test can prove that its
 * gradient check would catch a wrong backward. NULL restores correct behaviour.
 * Never used outside tests. */
void hn_ops_test_break(const char* op);

#endif
