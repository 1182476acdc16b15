/*
 * The CUDA backend's ops: the same math, shapes and accumulate/overwrite conventions as
 * kernels/ops.h (read that first), on device pointers, fp32, queued on the backend's
 * current stream (hn_cuda_stream). Differences from the CPU contract, forced by memory:
 *   - attention never stores the (B, NH, T, T) probabilities: the forward keeps the
 *     log-sum-exp of each row, lse (B, NH, T), and the backward recomputes the
 *     probabilities tile by tile (flash attention: Dao et al. 2022, 2023);
 *   - reductions that feed parameters (dweight, dbias, sum of squares) use no atomics, so
 *     results are bit-identical from run to run.
 * Every function returns HN_OK, or HN_ERR with an hn_error() line when a launch or a
 * cuBLAS call fails. Built only when HONE_HAVE_CUDA.
 */
#ifndef HONE_OPS_CUDA_H
#define HONE_OPS_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the backend ---- */
int hn_cuda_init(int device);      /* select a device, create the stream and cuBLAS handle */
void hn_cuda_shutdown(void);
int hn_cuda_sync(void);            /* wait for the stream; reports asynchronous errors */
void* hn_cuda_alloc(size_t bytes); /* device memory (cudaMalloc); NULL with an error */
void hn_cuda_free(void* p);
int hn_cuda_upload(void* dst, const void* src, size_t bytes);
int hn_cuda_download(void* dst, const void* src, size_t bytes);
void* hn_cuda_stream_handle(void); /* the backend's cudaStream_t, for NCCL (train/dist.c) */

/* ---- embeddings ---- */
int hn_cuda_encoder_forward(float* out, const int* tokens, const float* wte, const float* wpe,
                            int B, int T, int C);
int hn_cuda_encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens,
                             int B, int T, int C);

/* ---- norms ---- */
int hn_cuda_layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                              const float* weight, const float* bias, int N, int C, float eps);
int hn_cuda_layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                               const float* inp, const float* weight, const float* mean,
                               const float* rstd, int N, int C);
int hn_cuda_rmsnorm_forward(float* out, float* rstd, const float* inp, const float* weight, int N,
                            int C, float eps);
int hn_cuda_rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp,
                             const float* weight, const float* rstd, int N, int C);

/* ---- linear layers (cuBLAS, fp32 compute) ---- */
int hn_cuda_matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                           int N, int C, int OC);
int hn_cuda_matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                            const float* inp, const float* weight, int N, int C, int OC);

/* ---- attention (causal, grouped-query; GPT-2 is NKV = NH with a fused qkv) ---- */
int hn_cuda_attention_forward(float* out, float* lse, const float* q, const float* k,
                              const float* v, int q_stride, int kv_stride, int B, int T, int NH,
                              int NKV, int HS);
int hn_cuda_attention_backward(float* dq, float* dk, float* dv, const float* dout,
                               const float* out, const float* lse, const float* q, const float* k,
                               const float* v, int q_stride, int kv_stride, int B, int T, int NH,
                               int NKV, int HS);
int hn_cuda_rope_forward(float* x, int B, int T, int nheads, int HS, int stride, int pos0,
                         float theta);
int hn_cuda_rope_backward(float* dx, int B, int T, int nheads, int HS, int stride, int pos0,
                          float theta);

/* ---- activations and residual ---- */
int hn_cuda_gelu_forward(float* out, const float* inp, size_t n);
int hn_cuda_gelu_backward(float* dinp, const float* inp, const float* dout, size_t n);
int hn_cuda_swiglu_forward(float* out, const float* gate, const float* up, size_t n);
int hn_cuda_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                            const float* up, size_t n);
int hn_cuda_residual_forward(float* out, const float* a, const float* b, size_t n);

/* ---- classifier: fused softmax + cross-entropy (see hn_crossentropy_forward);
 * *loss_sum (host) receives the sum over counted rows ---- */
int hn_cuda_crossentropy_forward(float* logits, float* losses, const int* targets, int N, int V,
                                 int Vp, float grad_scale, double* loss_sum);

/* ---- optimizer ---- */
int hn_cuda_adamw_update(float* p, float* g, float* m, float* v, size_t n, float lr, float beta1,
                         float beta2, float eps, float wd, float grad_scale, int t, int zero_grad);
/* sum of squares into *out (host), fixed blocking, no atomics */
int hn_cuda_sum_squares(const float* x, size_t n, double* out);

#ifdef __cplusplus
}
#endif

#endif
