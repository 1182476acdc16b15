/*
 * Token + position embeddings on the GPU (GPT-2's wte, wpe), as kernels/cpu/encoder.c.
 * Shapes: tokens (B,T) on the device, wte (V,C), wpe (maxT,C), out and dout (B,T,C).
 *
 * The backward uses no atomics. Rows that share a token add into the same dwte row, so the
 * work is split by channel: one thread owns column c of dwte and walks all B*T positions
 * in order. That is the CPU's order too, so dwte matches it bit for bit; the price is
 * little parallelism (C threads), acceptable for a kernel run once per step.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define ENC_BLOCK 256

__global__ static void encoder_forward_kernel(float* out, const int* tokens, const float* wte,
                                              const float* wpe, int T, int C, size_t total) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t row = i / C, c = i % C;
        float x = wte[(size_t)tokens[row] * C + c];
        if (wpe) x += wpe[(row % T) * C + c];
        out[i] = x;
    }
}

/* one thread per column c: dwte[tokens[n], c] += dout[n, c] for n = 0 .. N-1 in order */
__global__ static void encoder_backward_wte_kernel(float* dwte, const float* dout,
                                                   const int* tokens, int N, int C) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    for (int n = 0; n < N; n++)
        dwte[(size_t)tokens[n] * C + c] += dout[(size_t)n * C + c];
}

/* one thread per (t, c): dwpe[t, c] += dout[b, t, c] for b = 0 .. B-1 in order */
__global__ static void encoder_backward_wpe_kernel(float* dwpe, const float* dout, int B, int T,
                                                   int C) {
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)T * C) return;
    float acc = dwpe[i];
    for (int b = 0; b < B; b++)
        acc += dout[(size_t)b * T * C + i];
    dwpe[i] = acc;
}

extern "C" int hn_cuda_encoder_forward(float* out, const int* tokens, const float* wte,
                                       const float* wpe, int B, int T, int C) {
    if (B < 0 || T < 0 || C < 0) return hn_error("hn_cuda_encoder_forward: negative size");
    const size_t total = (size_t)B * T * C;
    if (!total) return HN_OK;
    encoder_forward_kernel<<<hn_cuda_grid(total, ENC_BLOCK), ENC_BLOCK, 0, hn_cuda_stream()>>>(
        out, tokens, wte, wpe, T, C, total);
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_encoder_backward(float* dwte, float* dwpe, const float* dout,
                                        const int* tokens, int B, int T, int C) {
    if (B < 0 || T < 0 || C < 0) return hn_error("hn_cuda_encoder_backward: negative size");
    if ((size_t)B * T > (size_t)0x7fffffff)
        return hn_error("hn_cuda_encoder_backward: B*T = %zu rows is too many", (size_t)B * T);
    if (!B || !T || !C) return HN_OK;
    cudaStream_t s = hn_cuda_stream();
    if (dwte) {
        encoder_backward_wte_kernel<<<(C + ENC_BLOCK - 1) / ENC_BLOCK, ENC_BLOCK, 0, s>>>(
            dwte, dout, tokens, B * T, C);
        HN_CUDA_CHECK_LAUNCH();
    }
    if (dwpe) {
        const size_t tc = (size_t)T * C;
        encoder_backward_wpe_kernel<<<(unsigned int)((tc + ENC_BLOCK - 1) / ENC_BLOCK), ENC_BLOCK,
                                      0, s>>>(dwpe, dout, B, T, C);
        HN_CUDA_CHECK_LAUNCH();
    }
    return HN_OK;
}
