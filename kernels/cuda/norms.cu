/*
 * LayerNorm and RMSNorm (Zhang & Sennrich 2019) on the GPU, as kernels/cpu/layernorm.c and
 * kernels/cpu/rmsnorm.c: the same formulas, in a different (but fixed) summation order.
 * Shapes: inp, out, dout, dinp (N,C); weight, bias, dweight, dbias (C); mean, rstd (N).
 *
 * Per-row work (forward, dinp) is one warp per row, reduced with warp shuffles.
 * dweight and dbias sum over all rows, without atomics, in two stages: stage 1 gives each
 * chunk of NORM_ROWS rows one thread per column, which sums its rows in order into a
 * partial (K, C) scratch array; stage 2 adds the K partials of a column in chunk order and
 * accumulates the total into the gradient. The blocking depends only on N and C, so the
 * bits repeat from run to run.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define NORM_BLOCK 256               /* threads per block */
#define NORM_WARPS (NORM_BLOCK / 32) /* rows per block in the per-row kernels */
#define NORM_ROWS 32                 /* rows per partial in the column sums */

/* ---- shared by both norms ---- */

/* dst[c] += sum over k of part[k, c], k in order */
__global__ static void colsum_finish_kernel(float* dst, const float* part, int K, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (int k = 0; k < K; k++)
        acc += part[(size_t)k * C + c];
    dst[c] += acc;
}

static int colsum_finish(float* dst, const float* part, int K, int C) {
    colsum_finish_kernel<<<(C + NORM_BLOCK - 1) / NORM_BLOCK, NORM_BLOCK, 0, hn_cuda_stream()>>>(
        dst, part, K, C);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

/* frees stream-ordered scratch; keeps the first error (rc) if there already is one */
static int free_scratch(void* part, int rc) {
    const cudaError_t e = cudaFreeAsync(part, hn_cuda_stream());
    if (rc != HN_OK) return rc;
    HN_CUDA_CHECK(e);
    return HN_OK;
}

static int check_sizes(const char* fn, int N, int C) {
    if (N < 0 || C < 0) return hn_error("%s: negative size (N=%d, C=%d)", fn, N, C);
    if ((C + NORM_BLOCK - 1) / NORM_BLOCK > 65535) return hn_error("%s: C=%d is too large", fn, C);
    return HN_OK;
}

/* ---- LayerNorm ---- */

__global__ static void layernorm_forward_kernel(float* out, float* mean, float* rstd,
                                                const float* inp, const float* weight,
                                                const float* bias, int N, int C, float eps) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return; /* whole warps leave together: no block barrier follows */
    const float* x = inp + (size_t)row * C;
    float* o = out + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32)
        s += x[c];
    const float m = hn_warp_sum(s) / C;
    /* variance as the mean of (x - m)^2, which does not cancel when |m| >> std */
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float d = x[c] - m;
        v = fmaf(d, d, v);
    }
    const float r = 1.0f / sqrtf(hn_warp_sum(v) / C + eps);
    for (int c = lane; c < C; c += 32)
        o[c] = (x[c] - m) * r * weight[c] + (bias ? bias[c] : 0.0f);
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

/* dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * weight */
__global__ static void layernorm_backward_dinp_kernel(float* dinp, const float* dout,
                                                      const float* inp, const float* weight,
                                                      const float* mean, const float* rstd, int N,
                                                      int C) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float* x = inp + (size_t)row * C;
    const float* d = dout + (size_t)row * C;
    float* dx = dinp + (size_t)row * C;
    const float m = mean[row], s = rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        const float g = d[c] * weight[c];
        sg += g;
        sgx = fmaf(g, (x[c] - m) * s, sgx);
    }
    const float gmean = hn_warp_sum(sg) / C, gxmean = hn_warp_sum(sgx) / C;
    for (int c = lane; c < C; c += 32) {
        const float xhat = (x[c] - m) * s;
        dx[c] += s * (d[c] * weight[c] - gmean - xhat * gxmean);
    }
}

/* stage 1 of dweight, dbias: block (k, tile) sums rows k*NORM_ROWS .. +NORM_ROWS in order */
__global__ static void layernorm_partial_kernel(float* pw, float* pb, const float* dout,
                                                const float* inp, const float* mean,
                                                const float* rstd, int N, int C) {
    const int k = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int r0 = k * NORM_ROWS, r1 = N - r0 > NORM_ROWS ? r0 + NORM_ROWS : N;
    float accw = 0.0f, accb = 0.0f;
    for (int i = r0; i < r1; i++) {
        const float d = dout[(size_t)i * C + c];
        accw = fmaf(d, (inp[(size_t)i * C + c] - mean[i]) * rstd[i], accw);
        accb += d;
    }
    pw[(size_t)k * C + c] = accw;
    pb[(size_t)k * C + c] = accb;
}

/* stages 1 and 2 of dweight, dbias; part holds (2, K, C) floats */
static int layernorm_param_grads(float* dweight, float* dbias, float* part, const float* dout,
                                 const float* inp, const float* mean, const float* rstd, int N,
                                 int C, int K) {
    const dim3 grid(K, (C + NORM_BLOCK - 1) / NORM_BLOCK);
    layernorm_partial_kernel<<<grid, NORM_BLOCK, 0, hn_cuda_stream()>>>(
        part, part + (size_t)K * C, dout, inp, mean, rstd, N, C);
    HN_CUDA_CHECK_LAUNCH();
    if (dweight && colsum_finish(dweight, part, K, C)) return HN_ERR;
    if (dbias && colsum_finish(dbias, part + (size_t)K * C, K, C)) return HN_ERR;
    return HN_OK;
}

extern "C" int hn_cuda_layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                         const float* weight, const float* bias, int N, int C,
                                         float eps) {
    if (check_sizes("hn_cuda_layernorm_forward", N, C)) return HN_ERR;
    if (!N || !C) return HN_OK;
    layernorm_forward_kernel<<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_BLOCK, 0,
                               hn_cuda_stream()>>>(out, mean, rstd, inp, weight, bias, N, C, eps);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_layernorm_backward(float* dinp, float* dweight, float* dbias,
                                          const float* dout, const float* inp, const float* weight,
                                          const float* mean, const float* rstd, int N, int C) {
    if (check_sizes("hn_cuda_layernorm_backward", N, C)) return HN_ERR;
    if (!N || !C) return HN_OK;
    cudaStream_t st = hn_cuda_stream();
    if (dinp) {
        layernorm_backward_dinp_kernel<<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_BLOCK, 0, st>>>(
            dinp, dout, inp, weight, mean, rstd, N, C);
        HN_CUDA_CHECK_LAUNCH();
    }
    if (!dweight && !dbias) return HN_OK;
    const int K = (N + NORM_ROWS - 1) / NORM_ROWS;
    float* part = NULL; /* (2, K, C): dweight's partials, then dbias's */
    HN_CUDA_CHECK(cudaMallocAsync((void**)&part, 2 * (size_t)K * C * sizeof(float), st));
    const int rc = layernorm_param_grads(dweight, dbias, part, dout, inp, mean, rstd, N, C, K);
    return free_scratch(part, rc);
}

/* ---- RMSNorm ---- */

__global__ static void rmsnorm_forward_kernel(float* out, float* rstd, const float* inp,
                                              const float* weight, int N, int C, float eps) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float* x = inp + (size_t)row * C;
    float* o = out + (size_t)row * C;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32)
        ss = fmaf(x[c], x[c], ss);
    const float r = 1.0f / sqrtf(hn_warp_sum(ss) / C + eps);
    for (int c = lane; c < C; c += 32)
        o[c] = x[c] * r * weight[c];
    if (lane == 0) rstd[row] = r;
}

/* dinp += rstd * (g - x * rstd^2 * mean(g * x)), g = dout * weight */
__global__ static void rmsnorm_backward_dinp_kernel(float* dinp, const float* dout,
                                                    const float* inp, const float* weight,
                                                    const float* rstd, int N, int C) {
    const int row = blockIdx.x * NORM_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const float* x = inp + (size_t)row * C;
    const float* d = dout + (size_t)row * C;
    float* dx = dinp + (size_t)row * C;
    const float s = rstd[row];
    float acc = 0.0f;
    for (int c = lane; c < C; c += 32)
        acc = fmaf(d[c] * weight[c], x[c], acc);
    const float k = s * s * hn_warp_sum(acc) / C;
    for (int c = lane; c < C; c += 32)
        dx[c] += s * (d[c] * weight[c] - x[c] * k);
}

__global__ static void rmsnorm_partial_kernel(float* pw, const float* dout, const float* inp,
                                              const float* rstd, int N, int C) {
    const int k = blockIdx.x, c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    const int r0 = k * NORM_ROWS, r1 = N - r0 > NORM_ROWS ? r0 + NORM_ROWS : N;
    float acc = 0.0f;
    for (int i = r0; i < r1; i++)
        acc = fmaf(dout[(size_t)i * C + c], inp[(size_t)i * C + c] * rstd[i], acc);
    pw[(size_t)k * C + c] = acc;
}

/* stages 1 and 2 of dweight; part holds (K, C) floats */
static int rmsnorm_param_grads(float* dweight, float* part, const float* dout, const float* inp,
                               const float* rstd, int N, int C, int K) {
    const dim3 grid(K, (C + NORM_BLOCK - 1) / NORM_BLOCK);
    rmsnorm_partial_kernel<<<grid, NORM_BLOCK, 0, hn_cuda_stream()>>>(part, dout, inp, rstd, N, C);
    HN_CUDA_CHECK_LAUNCH();
    return colsum_finish(dweight, part, K, C);
}

extern "C" int hn_cuda_rmsnorm_forward(float* out, float* rstd, const float* inp,
                                       const float* weight, int N, int C, float eps) {
    if (check_sizes("hn_cuda_rmsnorm_forward", N, C)) return HN_ERR;
    if (!N || !C) return HN_OK;
    rmsnorm_forward_kernel<<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_BLOCK, 0, hn_cuda_stream()>>>(
        out, rstd, inp, weight, N, C, eps);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_rmsnorm_backward(float* dinp, float* dweight, const float* dout,
                                        const float* inp, const float* weight, const float* rstd,
                                        int N, int C) {
    if (check_sizes("hn_cuda_rmsnorm_backward", N, C)) return HN_ERR;
    if (!N || !C) return HN_OK;
    cudaStream_t st = hn_cuda_stream();
    if (dinp) {
        rmsnorm_backward_dinp_kernel<<<(N + NORM_WARPS - 1) / NORM_WARPS, NORM_BLOCK, 0, st>>>(
            dinp, dout, inp, weight, rstd, N, C);
        HN_CUDA_CHECK_LAUNCH();
    }
    if (!dweight) return HN_OK;
    const int K = (N + NORM_ROWS - 1) / NORM_ROWS;
    float* part = NULL; /* (K, C) */
    HN_CUDA_CHECK(cudaMallocAsync((void**)&part, (size_t)K * C * sizeof(float), st));
    const int rc = rmsnorm_param_grads(dweight, part, dout, inp, rstd, N, C, K);
    return free_scratch(part, rc);
}
