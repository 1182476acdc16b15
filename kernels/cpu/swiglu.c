/*
 * SwiGLU (Shazeer, "GLU Variants Improve Transformer", 2020), the gated MLP activation of
 * Llama: out = silu(gate) * up with silu(x) = x * sigmoid(x). Flat arrays of n floats.
 *
 * sigmoid(x) = 1 / (1 + exp(-x)) with the vectorisable exp of fastmath.h. For x < -88.4,
 * exp(-x) is +inf and sigmoid 0, so silu = x * 0 = 0 and silu' = 0 * (...) = 0; for large x
 * exp(-x) is 0 and sigmoid exactly 1: every finite input gives a finite result.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

static inline float sigmoid(float x) {
    return 1.0f / (1.0f + hn_fast_expf(-x));
}

void hn_swiglu_forward(float* out, const float* gate, const float* up, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g * sigmoid(g) * up[i];
    }
}

/* silu'(x) = s (1 + x (1 - s)) with s = sigmoid(x) */
void hn_swiglu_backward(float* dgate, float* dup, const float* dout, const float* gate,
                        const float* up, size_t n) {
    const float broken = hn_cpu_broken_op == HN_OP_SWIGLU ? 1.02f : 1.0f;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i], d = dout[i]; /* read before either store: both may alias dout */
        const float s = sigmoid(g);
        dgate[i] = d * up[i] * s * fmaf(broken * g, 1.0f - s, 1.0f);
        dup[i] = d * g * s;
    }
}
