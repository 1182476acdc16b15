/*
 * Elementwise ops on flat arrays of n floats, as kernels/cpu/elementwise.c and swiglu.c:
 * GELU (tanh approximation), SwiGLU (Shazeer 2020) and the residual add. Each is a
 * grid-stride loop; every element is read before it is written, so the outputs may alias
 * the inputs exactly where ops.h allows it. libm's expf and tanhf are used (nvcc is not
 * run with fast math), not the CPU's polynomial: both are within ~2 ulp of the truth.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define EW_BLOCK 256
#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
         i += (size_t)gridDim.x * blockDim.x)

__global__ static void gelu_forward_kernel(float* out, const float* inp, size_t n) {
    GRID_STRIDE(i, n) {
        const float x = inp[i];
        const float t = tanhf(GELU_K * fmaf(GELU_A * x, x * x, x));
        out[i] = 0.5f * x * (1.0f + t);
    }
}

/* gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 A x^2), t = tanh(K (x + A x^3)) */
__global__ static void gelu_backward_kernel(float* dinp, const float* inp, const float* dout,
                                            size_t n) {
    GRID_STRIDE(i, n) {
        const float x = inp[i];
        const float t = tanhf(GELU_K * fmaf(GELU_A * x, x * x, x));
        const float dtanh = GELU_K * fmaf(3.0f * GELU_A * x, x, 1.0f);
        const float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dtanh;
        dinp[i] = grad * dout[i];
    }
}

/* For x < -88.7, expf(-x) is +inf and the sigmoid 0, so silu and silu' are 0, not NaN;
 * for large x the sigmoid is exactly 1: finite inputs give finite outputs. */
__device__ static inline float sigmoid(float x) {
    return 1.0f / (1.0f + expf(-x));
}

__global__ static void swiglu_forward_kernel(float* out, const float* gate, const float* up,
                                             size_t n) {
    GRID_STRIDE(i, n) {
        const float g = gate[i];
        out[i] = g * sigmoid(g) * up[i];
    }
}

/* silu'(x) = s (1 + x (1 - s)) with s = sigmoid(x) */
__global__ static void swiglu_backward_kernel(float* dgate, float* dup, const float* dout,
                                              const float* gate, const float* up, size_t n) {
    GRID_STRIDE(i, n) {
        /* read everything before either store: dgate and dup may alias dout */
        const float g = gate[i], d = dout[i], u = up[i];
        const float s = sigmoid(g);
        dgate[i] = d * u * s * fmaf(g, 1.0f - s, 1.0f);
        dup[i] = d * g * s;
    }
}

__global__ static void residual_forward_kernel(float* out, const float* a, const float* b,
                                               size_t n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

extern "C" int hn_cuda_gelu_forward(float* out, const float* inp, size_t n) {
    if (!n) return HN_OK;
    gelu_forward_kernel<<<hn_cuda_grid(n, EW_BLOCK), EW_BLOCK, 0, hn_cuda_stream()>>>(out, inp, n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    if (!n) return HN_OK;
    gelu_backward_kernel<<<hn_cuda_grid(n, EW_BLOCK), EW_BLOCK, 0, hn_cuda_stream()>>>(dinp, inp,
                                                                                       dout, n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
    if (!n) return HN_OK;
    swiglu_forward_kernel<<<hn_cuda_grid(n, EW_BLOCK), EW_BLOCK, 0, hn_cuda_stream()>>>(out, gate,
                                                                                        up, n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_swiglu_backward(float* dgate, float* dup, const float* dout,
                                       const float* gate, const float* up, size_t n) {
    if (!n) return HN_OK;
    swiglu_backward_kernel<<<hn_cuda_grid(n, EW_BLOCK), EW_BLOCK, 0, hn_cuda_stream()>>>(
        dgate, dup, dout, gate, up, n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_residual_forward(float* out, const float* a, const float* b, size_t n) {
    if (!n) return HN_OK;
    residual_forward_kernel<<<hn_cuda_grid(n, EW_BLOCK), EW_BLOCK, 0, hn_cuda_stream()>>>(out, a, b,
                                                                                          n);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}
