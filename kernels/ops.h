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

/* Positions of packed documents: where an op takes `pos` (B,T), pos[b,t] is the position of
 * token t of sequence b within its document, counted from the document's first token in the
 * window (so pos[b,t] <= t, and pos[b,t] = 0 where a document starts); the document of token
 * t then occupies t - pos[b,t] .. t. NULL means one document per sequence: pos[b,t] = t. */

/* ---- embeddings: out[b,t,:] = wte[tokens[b,t],:] + wpe[pos[b,t],:] (wpe NULL: no
 * positions) ---- */
void hn_encoder_forward(float* out, const int* tokens, const int* pos, const float* wte,
                        const float* wpe, int B, int T, int C);
/* dwte[tokens[b,t],:] += dout[b,t,:]; dwpe[pos[b,t],:] += dout[b,t,:]; either may be NULL */
void hn_encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens,
                         const int* pos, int B, int T, int C);

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

/* ---- a general strided GEMM, for the low-rank products of parameter-efficient methods:
 * C (M,N) = alpha * op(A) @ op(B) + beta * C, row-major, op(X) = X or X^T (ta, tb nonzero);
 * lda, ldb, ldc are the row strides of A, B, C as stored ---- */
void hn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
             const float* B, int ldb, float beta, float* C, int ldc);

/* ---- causal multi-head self-attention ----
 * qkv (B,T,3C) holds q, k, v side by side (GPT-2's fused projection), each split into NH
 * heads of HS; att (B,NH,T,T) receives the softmax probabilities (entries above the
 * diagonal are 0) and is kept for the backward; out (B,T,C). Scale 1/sqrt(HS). */
void hn_attention_forward(float* out, float* att, const float* qkv, int B, int T, int C, int NH);
/* dqkv (B,T,3C) = ... (overwritten) */
void hn_attention_backward(float* dqkv, const float* dout, const float* qkv, const float* att,
                           int B, int T, int C, int NH);

/* ---- Llama family ---- */

/* RMSNorm over the last dimension: out = inp * rstd * weight, rstd = 1/sqrt(mean(inp^2) + eps);
 * rstd (N) is saved for the backward (Zhang & Sennrich 2019) */
void hn_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                        int C, float eps);
/* dinp += ..., dweight += ... (dweight may be NULL) */
void hn_rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                         const float* weight, const float* rstd, int N, int C);

/* Rotary position embedding (Su et al. 2021), in place, in the convention of HF's Llama
 * ("rotate_half"): within each head of HS, dimension i < HS/2 is paired with i + HS/2, and
 * the pair at position p turns by p * theta^(-2i/HS).
 * x (B, T, nheads * HS) with rows `stride` floats apart (stride >= nheads * HS; columns past
 * nheads * HS are left alone); row (b,t) is at position pos0 + pos[b,t] (pos0 + t without
 * pos). HS is even.
 * Angles are formed in double, so positions in the thousands keep ~1e-7 accuracy (HF forms
 * them in float32 and drifts by ~1e-4 rad at p = 8000). */
void hn_rope_forward(float* x, const int* pos, int B, int T, int nheads, int HS, int stride,
                     int pos0, float theta);
/* the backward of a rotation is the inverse rotation: dx is turned by -angle in place */
void hn_rope_backward(float* dx, const int* pos, int B, int T, int nheads, int HS, int stride,
                      int pos0, float theta);

/* SwiGLU (Shazeer 2020): out = silu(gate) * up, silu(x) = x / (1 + exp(-x)) */
void hn_swiglu_forward(float* out, const float* gate, const float* up, size_t n);
/* dgate = dout * up * silu'(gate); dup = dout * silu(gate) (overwritten; either may alias
 * dout). Finite inputs give finite outputs, however large. */
void hn_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                        const float* up, size_t n);

/* Causal attention with grouped-query heads (Ainslie et al. 2023): NH query heads share
 * NKV key/value heads (NH % NKV == 0; query head h uses kv head h / (NH / NKV)).
 * q (B, T, NH*HS) rows q_stride floats apart; k, v (B, T, NKV*HS) rows kv_stride apart;
 * att (B, NH, T, T) softmax probabilities (0 above the diagonal); out (B, T, NH*HS).
 * Scale 1/sqrt(HS). GPT-2's fused qkv is the case NKV = NH, k = q + C, v = q + 2C and
 * both strides 3C. */
void hn_attention_gqa_forward(float* out, float* att, const float* q, const float* k,
                              const float* v, int q_stride, int kv_stride, int B, int T, int NH,
                              int NKV, int HS);
/* dq, dk, dv are overwritten (same layouts and strides as q, k, v); with NKV < NH the
 * gradients of the query heads sharing a kv head are summed into it */
void hn_attention_gqa_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                               const float* k, const float* v, const float* att, int q_stride,
                               int kv_stride, int B, int T, int NH, int NKV, int HS);

/* Causal GQA attention after P prefix positions (prefix tuning, Li & Liang 2021): every
 * query of a sequence attends the P prefix keys / values pk, pv (P rows p_stride floats
 * apart, NKV*HS used per row; shared by the whole batch, never masked) and then the keys
 * 0..t of its own sequence. q, k, v, out as hn_attention_gqa_forward (strides q_stride,
 * kv_stride); att (B, NH, T, P + T) receives the probabilities (row t: P prefix columns,
 * then T columns, 0 above the causal diagonal), kept for the backward. Scale 1/sqrt(HS).
 * P = 0 gives exactly hn_attention_gqa_forward's result (pk, pv may then be NULL).
 * With pos (packed documents, above) query t sees the prefix and keys t - pos[b,t] .. t only:
 * att is 0 on the keys of earlier documents, so the backward, which reads att, needs no pos. */
void hn_attention_prefix_forward(float* out, float* att, const float* q, const float* k,
                                 const float* v, const float* pk, const float* pv, const int* pos,
                                 int p_stride, int q_stride, int kv_stride, int B, int T, int P,
                                 int NH, int NKV, int HS);
/* dq, dk, dv overwritten (layouts of q, k, v); dpk, dpv (P rows p_stride apart) ACCUMULATED
 * (+=) over the batch and the query heads sharing a kv head, NULL = not wanted. The same
 * bits for any thread count; when dpk or dpv is wanted, a scratch of B*NKV*2*P*HS floats is
 * allocated for the call. */
void hn_attention_prefix_backward(float* dq, float* dk, float* dv, float* dpk, float* dpv,
                                  const float* dout, const float* q, const float* k, const float* v,
                                  const float* pk, const float* pv, const float* att, int p_stride,
                                  int q_stride, int kv_stride, int B, int T, int P, int NH, int NKV,
                                  int HS);

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
/* AdamW on the entries idx[0..k) of p and g only, with moments m, v of k floats (a partial
 * update's state); the other entries, and their gradients, are not touched */
void hn_adamw_update_masked(float* p, const float* g, float* m, float* v, const unsigned* idx,
                            size_t k, float lr, float beta1, float beta2, float eps, float wd,
                            float grad_scale, int t);
/* AdamW on the entries with keep[i] set, their gradient scaled by grad_scale (Child-Tuning-F:
 * 1/p times the clipping factor); the other entries and their moments are not touched;
 * every gradient entry is zeroed */
void hn_adamw_update_keep(float* p, float* g, float* m, float* v, const unsigned char* keep,
                          size_t n, float lr, float beta1, float beta2, float eps, float wd,
                          float grad_scale, int t);
/* sum of g[idx[i]]^2, in double, independent of the thread count */
double hn_sum_squares_indexed(const float* g, const unsigned* idx, size_t k);

/* sum of squares in double, by a fixed blocking that does not depend on the thread count */
double hn_sum_squares(const float* x, size_t n);

/* ---- test hook ----
 * Deliberately breaks the backward of the named op (e.g. "layernorm", "matmul",
 * "attention", "gelu", "encoder", "crossentropy", "attention_prefix") so a test can prove
 * that its gradient check would catch a wrong backward. NULL restores correct behaviour.
 * Never used outside tests. */
void hn_ops_test_break(const char* op);

#endif
