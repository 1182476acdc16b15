/*
 * Linear layers on cuBLAS, as kernels/cpu/matmul.c: out = inp @ weight^T + bias, the
 * PyTorch nn.Linear layout. Shapes: inp, dinp (N,C); weight, dweight (OC,C); bias, dbias
 * (OC); out, dout (N,OC).
 *
 * cuBLAS is column-major; a row-major (R, K) matrix is the column-major (K, R) one, so each
 * row-major product is computed as its transpose:
 *   out^T (OC,N)     = weight^T' @ inp^T'    sgemm(T, N, OC, N, C)  [primes: as stored]
 *   dinp^T (C,N)     = weight' @ dout'       sgemm(N, N, C, N, OC)
 *   dweight^T (C,OC) += inp' @ dout'^T       sgemm(N, T, C, OC, N), beta 1
 * fp32 in, fp32 compute (default math mode: no TF32). cuBLAS gives the same bits run to
 * run on one GPU model and stream. dbias, a column sum, uses the same two-stage fixed-order
 * reduction as the norms: no atomics.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define MM_BLOCK 256
#define MM_ROWS 32 /* rows per partial of the dbias column sums */

/* a leading dimension: cuBLAS rejects 0 even when the matrix is empty */
static inline int ld(int x) {
    return x > 0 ? x : 1;
}

/* out[i, o] = bias[o]; the GEMM then adds to it with beta = 1, as the CPU does */
__global__ static void fill_bias_kernel(float* out, const float* bias, int OC, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = bias[i % OC];
}

/* stage 1 of dbias: block (k, tile) sums rows k*MM_ROWS .. +MM_ROWS of each column in order */
__global__ static void dbias_partial_kernel(float* part, const float* dout, int N, int OC) {
    const int k = blockIdx.x, o = blockIdx.y * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    const int r0 = k * MM_ROWS, r1 = N - r0 > MM_ROWS ? r0 + MM_ROWS : N;
    float acc = 0.0f;
    for (int i = r0; i < r1; i++)
        acc += dout[(size_t)i * OC + o];
    part[(size_t)k * OC + o] = acc;
}

/* stage 2: dbias[o] += sum over k of part[k, o], k in order */
__global__ static void dbias_finish_kernel(float* dbias, const float* part, int K, int OC) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= OC) return;
    float acc = 0.0f;
    for (int k = 0; k < K; k++)
        acc += part[(size_t)k * OC + o];
    dbias[o] += acc;
}

static int dbias_sums(float* dbias, float* part, const float* dout, int N, int OC, int K) {
    cudaStream_t st = hn_cuda_stream();
    const int tiles = (OC + MM_BLOCK - 1) / MM_BLOCK;
    dbias_partial_kernel<<<dim3(K, tiles), MM_BLOCK, 0, st>>>(part, dout, N, OC);
    HN_CUDA_CHECK_LAUNCH();
    dbias_finish_kernel<<<tiles, MM_BLOCK, 0, st>>>(dbias, part, K, OC);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_matmul_forward(float* out, const float* inp, const float* weight,
                                      const float* bias, int N, int C, int OC) {
    if (N < 0 || C < 0 || OC < 0)
        return hn_error("hn_cuda_matmul_forward: negative size (N=%d C=%d OC=%d)", N, C, OC);
    if (!N || !OC) return HN_OK;
    float beta = 0.0f;
    if (bias) {
        const size_t total = (size_t)N * OC;
        fill_bias_kernel<<<hn_cuda_grid(total, MM_BLOCK), MM_BLOCK, 0, hn_cuda_stream()>>>(
            out, bias, OC, total);
        HN_CUDA_CHECK_LAUNCH();
        beta = 1.0f;
    }
    const float one = 1.0f;
    HN_CUBLAS_CHECK(cublasSgemm(hn_cuda_blas(), CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, weight,
                                ld(C), inp, ld(C), &beta, out, OC));
    return HN_OK;
}

extern "C" int hn_cuda_matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                                       const float* inp, const float* weight, int N, int C,
                                       int OC) {
    if (N < 0 || C < 0 || OC < 0)
        return hn_error("hn_cuda_matmul_backward: negative size (N=%d C=%d OC=%d)", N, C, OC);
    if ((OC + MM_BLOCK - 1) / MM_BLOCK > 65535)
        return hn_error("hn_cuda_matmul_backward: OC=%d is too large", OC);
    const float one = 1.0f, zero = 0.0f;
    cublasHandle_t h = hn_cuda_blas();
    if (dinp && N && C)
        HN_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, weight, C, dout,
                                    ld(OC), &zero, dinp, C));
    if (dweight && C && OC)
        HN_CUBLAS_CHECK(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C, dout, OC,
                                    &one, dweight, C));
    if (!dbias || !N || !OC) return HN_OK;
    const int K = (N + MM_ROWS - 1) / MM_ROWS;
    float* part = NULL; /* (K, OC) */
    cudaStream_t st = hn_cuda_stream();
    HN_CUDA_CHECK(cudaMallocAsync((void**)&part, (size_t)K * OC * sizeof(float), st));
    const int rc = dbias_sums(dbias, part, dout, N, OC, K);
    const cudaError_t e = cudaFreeAsync(part, st);
    if (rc != HN_OK) return rc;
    HN_CUDA_CHECK(e);
    return HN_OK;
}
