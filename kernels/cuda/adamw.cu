/*
 * The optimizer step and the gradient's sum of squares on the GPU, as
 * kernels/cpu/optimizer.c. Both are single memory-bound passes over every parameter.
 *
 * The sum of squares uses no atomics: a fixed grid of SQ_GRID blocks, each thread summing
 * a fixed strided set of elements in double, reduced per block in a fixed order into
 * SQ_GRID partials, which one block then adds in a fixed order. The blocking depends on
 * nothing but n, so the result repeats bit for bit.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#include <math.h>

#define ADAM_BLOCK 256
#define SQ_BLOCK 256
#define SQ_GRID 512 /* stage 1 blocks; also the thread count of stage 2 (<= 1024, x32) */

__device__ static double g_sq_part[SQ_GRID];
__device__ static double g_sq_total;

/* AdamW (Loshchilov & Hutter 2019) in torch's order; see hn_adamw_update in kernels/ops.h.
 * step = lr / (1 - b1^t), rbc2 = 1 / sqrt(1 - b2^t), decay = 1 - lr * wd. */
__global__ static void adamw_kernel(float* p, float* g, float* m, float* v, size_t n, float beta1,
                                    float beta2, float eps, float grad_scale, float step,
                                    float rbc2, float decay, int zero_grad) {
    const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float gi = g[i] * grad_scale;
        const float mi = fmaf(beta1, m[i], a1 * gi);
        const float vi = fmaf(beta2, v[i], a2 * gi * gi);
        m[i] = mi;
        v[i] = vi;
        p[i] = p[i] * decay - step * mi / (sqrtf(vi) * rbc2 + eps);
        if (zero_grad) g[i] = 0.0f;
    }
}

__global__ static void sum_squares_partial_kernel(const float* x, size_t n) {
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        acc += (double)x[i] * x[i];
    acc = hn_block_sum_d(acc);
    if (threadIdx.x == 0) g_sq_part[blockIdx.x] = acc;
}

/* one block of SQ_GRID threads, one partial each */
__global__ static void sum_squares_final_kernel(void) {
    const double total = hn_block_sum_d(g_sq_part[threadIdx.x]);
    if (threadIdx.x == 0) g_sq_total = total;
}

extern "C" int hn_cuda_adamw_update(float* p, float* g, float* m, float* v, size_t n, float lr,
                                    float beta1, float beta2, float eps, float wd, float grad_scale,
                                    int t, int zero_grad) {
    if (t < 1) return hn_error("hn_cuda_adamw_update: step t=%d, must be >= 1", t);
    if (!n) return HN_OK;
    /* the bias corrections are per step: computed once, in double, as the CPU does */
    const float step = (float)(lr / (1.0 - pow(beta1, t)));
    const float rbc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, t)));
    const float decay = 1.0f - lr * wd;
    adamw_kernel<<<hn_cuda_grid(n, ADAM_BLOCK), ADAM_BLOCK, 0, hn_cuda_stream()>>>(
        p, g, m, v, n, beta1, beta2, eps, grad_scale, step, rbc2, decay, zero_grad);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_sum_squares(const float* x, size_t n, double* out) {
    *out = 0.0;
    if (!n) return HN_OK;
    cudaStream_t st = hn_cuda_stream();
    /* always SQ_GRID blocks, even for tiny n: the order of the sum must not vary */
    sum_squares_partial_kernel<<<SQ_GRID, SQ_BLOCK, 0, st>>>(x, n);
    HN_CUDA_CHECK_LAUNCH();
    sum_squares_final_kernel<<<1, SQ_GRID, 0, st>>>();
    HN_CUDA_CHECK_LAUNCH();
    HN_CUDA_CHECK(
        cudaMemcpyFromSymbolAsync(out, g_sq_total, sizeof(double), 0, cudaMemcpyDeviceToHost, st));
    HN_CUDA_CHECK(cudaStreamSynchronize(st));
    return HN_OK;
}
