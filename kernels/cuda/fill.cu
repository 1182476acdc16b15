/* Zeroing device memory on the backend's stream; see fill.h. */
#include "kernels/cuda/fill.h"
#include "kernels/cuda/internal.cuh"

extern "C" int hn_cuda_zero(float* x, size_t n) {
    if (!n) return HN_OK;
    HN_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), hn_cuda_stream()));
    return HN_OK;
}
