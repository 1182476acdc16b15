/*
 * Token + position embeddings (GPT-2's wte, wpe).
 * Shapes: tokens (B,T), pos (B,T) or NULL, wte (V,C), wpe (maxT,C), out and dout (B,T,C).
 * Token (b,t) takes position row pos[b*T+t], or t without pos (packed documents restart
 * their positions, data/dataset.h).
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

void hn_encoder_forward(float* out, const int* tokens, const int* pos, const float* wte,
                        const float* wpe, int B, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < B * T; i++) {
        float* o = out + (size_t)i * C;
        const float* e = wte + (size_t)tokens[i] * C;
        if (!wpe) { /* Llama: positions come from RoPE inside attention */
            for (int c = 0; c < C; c++)
                o[c] = e[c];
            continue;
        }
        const float* p = wpe + (size_t)(pos ? pos[i] : i % T) * C;
        for (int c = 0; c < C; c++)
            o[c] = e[c] + p[c];
    }
}

/* Rows that share a token add into the same dwte row, so rows cannot be split between
 * threads without atomics (whose order would vary). Threads split the channels instead:
 * each one walks all rows in order over its own columns, which is deterministic for any
 * thread count. */
void hn_encoder_backward(float* dwte, float* dwpe, const float* dout, const int* tokens,
                         const int* pos, int B, int T, int C) {
    const float scale = hn_cpu_broken_op == HN_OP_ENCODER ? 1.02f : 1.0f;
    const int chunk = 64; /* columns per task: a few cache lines of each row */
    const int nchunks = (C + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < nchunks; k++) {
        const int c0 = k * chunk, c1 = c0 + chunk < C ? c0 + chunk : C;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float* d = dout + ((size_t)b * T + t) * C;
                if (dwte) {
                    float* g = dwte + (size_t)tokens[b * T + t] * C;
                    for (int c = c0; c < c1; c++)
                        g[c] += d[c];
                }
                if (dwpe) {
                    float* g = dwpe + (size_t)(pos ? pos[b * T + t] : t) * C;
                    for (int c = c0; c < c1; c++)
                        g[c] += scale * d[c];
                }
            }
    }
}
