/*
 * Rotary position embedding (Su et al., "RoFormer: Enhanced Transformer with Rotary Position
 * Embedding", 2021) in HF Llama's "rotate_half" layout: within a head of HS, dimension i
 * (i < HS/2) is paired with i + HS/2, and at position p the pair turns by
 *   angle = p * inv_freq[i],   inv_freq[i] = theta^(-2i/HS)
 *   (x_i, x_{i+HS/2}) -> (x_i cos - x_{i+HS/2} sin, x_{i+HS/2} cos + x_i sin).
 * Shapes: x (B, T, nheads*HS), rows `stride` floats apart, positions pos0 .. pos0+T-1.
 *
 * The angles are formed in double: at p = 8192 a float angle would already be off by ~5e-4.
 * cos and sin are needed for every (position, i), but libm's double cos/sin cost more than
 * the rotation itself, so each block of ROPE_TB positions takes them from libm once, at its
 * first position, and steps on by multiplying with the rotation by one position's angle
 * (angle addition, in double: ROPE_TB steps lose ~1e-15). The block's float table is then
 * applied to every batch row and head at those positions while it sits in L1.
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <math.h>

/* positions per block: its table, ROPE_TB * HS floats, stays in L1 */
#define ROPE_TB 16

/* turns every pair by sign * angle; sign -1 undoes sign +1 */
static void rope_rotate(float* x, int B, int T, int nheads, int HS, int stride, int pos0,
                        float theta, float sign) {
    const int half = HS / 2, nblocks = (T + ROPE_TB - 1) / ROPE_TB;
    double inv_freq[half], step_c[half], step_s[half]; /* cos, sin of one position's angle */
    for (int i = 0; i < half; i++) {
        inv_freq[i] = pow((double)theta, -2.0 * i / HS);
        step_c[i] = cos(inv_freq[i]);
        step_s[i] = sin(inv_freq[i]);
    }
#pragma omp parallel
    {
        double c[half], s[half];
        float tc[ROPE_TB * half], ts[ROPE_TB * half];
#pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++) {
            const int t0 = blk * ROPE_TB, n = T - t0 < ROPE_TB ? T - t0 : ROPE_TB;
            for (int i = 0; i < half; i++) {
                const double a = ((double)pos0 + t0) * inv_freq[i];
                c[i] = cos(a);
                s[i] = sin(a);
            }
            for (int r = 0; r < n; r++)
                for (int i = 0; i < half; i++) {
                    tc[r * half + i] = (float)c[i];
                    ts[r * half + i] = sign * (float)s[i];
                    const double cn = c[i] * step_c[i] - s[i] * step_s[i];
                    s[i] = s[i] * step_c[i] + c[i] * step_s[i];
                    c[i] = cn;
                }
            for (int b = 0; b < B; b++)
                for (int r = 0; r < n; r++) {
                    float* row = x + ((size_t)b * T + t0 + r) * stride;
                    const float* cr = tc + r * half;
                    const float* sr = ts + r * half;
                    for (int h = 0; h < nheads; h++) {
                        float* lo = row + h * HS;
                        float* hi = lo + half;
                        for (int i = 0; i < half; i++) {
                            const float x1 = lo[i], x2 = hi[i];
                            lo[i] = x1 * cr[i] - x2 * sr[i];
                            hi[i] = x2 * cr[i] + x1 * sr[i];
                        }
                    }
                }
        }
    }
}

void hn_rope_forward(float* x, int B, int T, int nheads, int HS, int stride, int pos0,
                     float theta) {
    rope_rotate(x, B, T, nheads, HS, stride, pos0, theta, 1.0f);
}

void hn_rope_backward(float* dx, int B, int T, int nheads, int HS, int stride, int pos0,
                      float theta) {
    /* the broken variant turns the gradient the wrong way, a plausible sign slip */
    const float sign = hn_cpu_broken_op == HN_OP_ROPE ? 1.0f : -1.0f;
    rope_rotate(dx, B, T, nheads, HS, stride, pos0, theta, sign);
}
