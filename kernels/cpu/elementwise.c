/*
 * Elementwise ops on flat arrays of n floats: GELU (tanh approximation) and the residual add.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_A 0.044715f

void hn_gelu_forward(float* out, const float* inp, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float t = hn_fast_tanhf(GELU_K * fmaf(GELU_A * x, x * x, x));
        out[i] = 0.5f * x * (1.0f + t);
    }
}

/* gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) K (1 + 3 A x^2), t = tanh(K (x + A x^3)) */
void hn_gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    const float broken = hn_cpu_broken_op == HN_OP_GELU ? 1.02f : 1.0f;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float t = hn_fast_tanhf(GELU_K * fmaf(GELU_A * x, x * x, x));
        const float dtanh = GELU_K * fmaf(3.0f * GELU_A * x, x, 1.0f);
        const float grad = 0.5f * (1.0f + t) + broken * 0.5f * x * (1.0f - t * t) * dtanh;
        dinp[i] = grad * dout[i];
    }
}

void hn_residual_forward(float* out, const float* a, const float* b, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}
