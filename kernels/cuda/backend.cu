/*
 * The CUDA backend's state and memory: one device, one stream, one cuBLAS handle.
 *
 * Conventions every kernels/cuda/ file follows:
 *   - all work is queued on the single stream hn_cuda_stream() (non-blocking with respect
 *     to the legacy default stream); cuBLAS is bound to it, so the ops run in call order
 *     and need no events between them;
 *   - fp32 everywhere; cuBLAS keeps its default math mode (no TF32), so GEMMs round like
 *     the CPU's up to summation order;
 *   - no atomics in any reduction: sums over rows (dweight, dbias, dwte, losses, sum of
 *     squares) use a blocking that depends only on the sizes, so every run gives the same
 *     bits; scratch space is stream-ordered (cudaMallocAsync / cudaFreeAsync);
 *   - ops are asynchronous: an error inside a kernel surfaces at the next hn_cuda_sync or
 *     download. Functions that hand a number to the host (cross-entropy's loss sum, the sum
 *     of squares) and hn_cuda_upload / hn_cuda_download wait for the stream;
 *   - errors: a failed call returns HN_ERR after one hn_error() line "file:line: reason";
 *     nothing prints or exits.
 * What it is not: a multi-GPU or multi-stream runtime; one host thread drives one device
 * (cross-entropy and the sum of squares keep their results in file-static device words).
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

static int g_device = -1; /* -1: not initialised */
static cudaStream_t g_stream;
static cublasHandle_t g_blas;

cudaStream_t hn_cuda_stream(void) {
    return g_stream;
}

extern "C" void* hn_cuda_stream_handle(void) {
    return (void*)g_stream;
}

cublasHandle_t hn_cuda_blas(void) {
    return g_blas;
}

extern "C" int hn_cuda_init(int device) {
    if (g_device >= 0) {
        if (g_device == device) return HN_OK;
        return hn_error("hn_cuda_init: already using CUDA device %d, asked for %d", g_device,
                        device);
    }
    int n = 0;
    HN_CUDA_CHECK(cudaGetDeviceCount(&n));
    if (device < 0 || device >= n)
        return hn_error("hn_cuda_init: no CUDA device %d (%d available)", device, n);
    HN_CUDA_CHECK(cudaSetDevice(device));
    int pools = 0;
    HN_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device));
    if (!pools)
        return hn_error("hn_cuda_init: device %d lacks stream-ordered allocation (cudaMallocAsync)",
                        device);
    /* ops allocate scratch with cudaMallocAsync every step; keep freed blocks in the pool
     * instead of returning them to the driver at each synchronisation */
    cudaMemPool_t pool;
    HN_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, device));
    unsigned long long keep = ~0ull;
    HN_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
    HN_CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    cublasStatus_t s = cublasCreate(&g_blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cudaStreamDestroy(g_stream);
        return hn_error("hn_cuda_init: cublasCreate: %s", cublasGetStatusString(s));
    }
    /* default math (no TF32) and no atomics: fp32 results that repeat run to run */
    if ((s = cublasSetStream(g_blas, g_stream)) != CUBLAS_STATUS_SUCCESS ||
        (s = cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH)) != CUBLAS_STATUS_SUCCESS ||
        (s = cublasSetAtomicsMode(g_blas, CUBLAS_ATOMICS_NOT_ALLOWED)) != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(g_blas);
        cudaStreamDestroy(g_stream);
        return hn_error("hn_cuda_init: cuBLAS setup: %s", cublasGetStatusString(s));
    }
    g_device = device;
    return HN_OK;
}

extern "C" void hn_cuda_shutdown(void) {
    if (g_device < 0) return;
    /* errors are ignored: shutdown runs on error paths too, and has nobody to report to */
    cudaStreamSynchronize(g_stream);
    cublasDestroy(g_blas);
    cudaStreamDestroy(g_stream);
    cudaGetLastError();
    g_blas = NULL;
    g_stream = NULL;
    g_device = -1;
}

extern "C" int hn_cuda_sync(void) {
    HN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
    HN_CUDA_CHECK(cudaGetLastError());
    return HN_OK;
}

extern "C" void* hn_cuda_alloc(size_t bytes) {
    void* p = NULL;
    /* a zero-byte request still gets a distinct pointer, so NULL always means failure */
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        hn_error("hn_cuda_alloc: %zu bytes: %s", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void hn_cuda_free(void* p) {
    if (p) cudaFree(p); /* cudaFree waits for the device, so queued work is done with p */
}

/* Both copies wait for the stream: the host buffer may be reused or read as soon as they
 * return, and earlier ops on the stream are ordered before them. */
extern "C" int hn_cuda_upload(void* dst, const void* src, size_t bytes) {
    if (!bytes) return HN_OK;
    HN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g_stream));
    HN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
    return HN_OK;
}

extern "C" int hn_cuda_download(void* dst, const void* src, size_t bytes) {
    if (!bytes) return HN_OK;
    HN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g_stream));
    HN_CUDA_CHECK(cudaStreamSynchronize(g_stream));
    return HN_OK;
}
