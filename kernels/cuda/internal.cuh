/*
 * Shared by the CUDA backend's .cu files, never by C code: the one stream and cuBLAS
 * handle that every op queues on (owned by backend.cu), and the macros that turn a CUDA or
 * cuBLAS failure into one hn_error() line and an HN_ERR return.
 */
#ifndef HONE_CUDA_INTERNAL_CUH
#define HONE_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <math.h>

/* error.h has no extern "C" guard of its own; without this nvcc would mangle hn_error */
extern "C" {
#include "core/error.h"
}

/* the backend's stream and cuBLAS handle (bound to that stream); valid after hn_cuda_init */
cudaStream_t hn_cuda_stream(void);
cublasHandle_t hn_cuda_blas(void);

/* in a function returning int: return HN_ERR with "file:line: reason" if the call failed */
#define HN_CUDA_CHECK(call)                                                                        \
    do {                                                                                           \
        cudaError_t hn_e_ = (call);                                                                \
        if (hn_e_ != cudaSuccess)                                                                  \
            return hn_error("%s:%d: %s", __FILE__, __LINE__, cudaGetErrorString(hn_e_));           \
    } while (0)

/* right after a <<<...>>> launch: bad configurations are reported here, not later */
#define HN_CUDA_CHECK_LAUNCH() HN_CUDA_CHECK(cudaGetLastError())

#define HN_CUBLAS_CHECK(call)                                                                      \
    do {                                                                                           \
        cublasStatus_t hn_s_ = (call);                                                             \
        if (hn_s_ != CUBLAS_STATUS_SUCCESS)                                                        \
            return hn_error("%s:%d: cuBLAS: %s", __FILE__, __LINE__,                               \
                            cublasGetStatusString(hn_s_));                                         \
    } while (0)

/* blocks for a grid-stride loop over n elements: enough to fill the GPU, never 0, and
 * within the grid's x limit */
static inline unsigned int hn_cuda_grid(size_t n, unsigned int block) {
    size_t g = (n + block - 1) / block;
    if (g < 1) g = 1;
    if (g > 65535u * 16u) g = 65535u * 16u;
    return (unsigned int)g;
}

/* sum over the 32 lanes of a warp; every lane gets the result, in the same fixed
 * butterfly order on every run */
__device__ __forceinline__ float hn_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float hn_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ double hn_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets
 * the result. Fixed order: warp butterflies, then warp totals in warp order. The leading
 * barrier lets a kernel call it more than once (the shared slots are reused). */
__device__ __forceinline__ float hn_block_sum(float v) {
    __shared__ float hn_part_[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = hn_warp_sum(v);
    __syncthreads();
    if (lane == 0) hn_part_[warp] = v;
    __syncthreads();
    return hn_warp_sum(lane < nwarps ? hn_part_[lane] : 0.0f);
}
__device__ __forceinline__ float hn_block_max(float v) {
    __shared__ float hn_part_[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = hn_warp_max(v);
    __syncthreads();
    if (lane == 0) hn_part_[warp] = v;
    __syncthreads();
    return hn_warp_max(lane < nwarps ? hn_part_[lane] : -INFINITY);
}
__device__ __forceinline__ double hn_block_sum_d(double v) {
    __shared__ double hn_part_[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = hn_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) hn_part_[warp] = v;
    __syncthreads();
    return hn_warp_sum_d(lane < nwarps ? hn_part_[lane] : 0.0);
}

#endif
