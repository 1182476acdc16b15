/*
 * Rotary position embedding (Su et al., "RoFormer: Enhanced Transformer with Rotary Position
 * Embedding", 2021) in HF Llama's "rotate_half" layout: within a head of HS, dimension i
 * (i < HS/2) is paired with i + HS/2, and at position p the pair turns by
 *   angle = p * inv_freq[i],   inv_freq[i] = theta^(-2i/HS)
 *   (x_i, x_{i+HS/2}) -> (x_i cos - x_{i+HS/2} sin, x_{i+HS/2} cos + x_i sin).
 * Shapes: x (B, T, nheads*HS), rows `stride` floats apart, positions pos0 .. pos0+T-1, or
 * pos0 + pos[b,t] for packed documents (pos[b,t] <= t, kernels/ops.h).
 *
 * The angles are formed in double: at p = 8192 a float angle would already be off by ~5e-4.
 * cos and sin are needed for every (position, i), but libm's double cos/sin cost more than
 * the rotation itself, so each block of ROPE_TB positions takes them from libm once, at its
 * first position, and steps on by multiplying with the rotation by one position's angle
 * (angle addition, in double: ROPE_TB steps lose ~1e-15). The block's float table is then
 * applied to every batch row and head at those positions while it sits in L1. With pos the
 * rows of a block are scattered, so the whole table (T positions, the same floats the blocks
 * would compute) is built first and each row looks its position up.
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <math.h>
#include <stdlib.h>

/* positions per block: its table, ROPE_TB * HS floats, stays in L1 */
#define ROPE_TB 16

/* the cos and sin (sign * sin) of positions pos0 + t0 .. pos0 + t0 + n - 1 into tc, ts (n rows
 * of half); c, s are scratch of half doubles */
static void rope_table(float* tc, float* ts, int t0, int n, int half, int pos0, float sign,
                       const double* inv_freq, const double* step_c, const double* step_s,
                       double* c, double* s) {
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
}

/* turns the nheads heads of one row by the table row cr, sr */
static void rope_row(float* row, const float* cr, const float* sr, int nheads, int HS) {
    const int half = HS / 2;
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

/* turns every pair by sign * angle; sign -1 undoes sign +1 */
static void rope_rotate(float* x, const int* pos, int B, int T, int nheads, int HS, int stride,
                        int pos0, float theta, float sign) {
    const int half = HS / 2, nblocks = (T + ROPE_TB - 1) / ROPE_TB;
    double inv_freq[half], step_c[half], step_s[half]; /* cos, sin of one position's angle */
    for (int i = 0; i < half; i++) {
        inv_freq[i] = pow((double)theta, -2.0 * i / HS);
        step_c[i] = cos(inv_freq[i]);
        step_s[i] = sin(inv_freq[i]);
    }
    float* table = pos ? malloc((size_t)2 * T * half * sizeof(float)) : NULL;
    if (pos && table) {
        float *tc = table, *ts = table + (size_t)T * half;
#pragma omp parallel
        {
            double c[half], s[half];
#pragma omp for schedule(static)
            for (int blk = 0; blk < nblocks; blk++) {
                const int t0 = blk * ROPE_TB, n = T - t0 < ROPE_TB ? T - t0 : ROPE_TB;
                rope_table(tc + (size_t)t0 * half, ts + (size_t)t0 * half, t0, n, half, pos0, sign,
                           inv_freq, step_c, step_s, c, s);
            }
#pragma omp for schedule(static)
            for (int i = 0; i < B * T; i++) {
                const size_t p = (size_t)pos[i] * half;
                rope_row(x + (size_t)i * stride, tc + p, ts + p, nheads, HS);
            }
        }
        free(table);
        return;
    }
    if (pos) { /* no memory for the table: each row computes its own position's */
#pragma omp parallel
        {
            double c[half], s[half];
            float tc[half], ts[half];
#pragma omp for schedule(static)
            for (int i = 0; i < B * T; i++) {
                /* the block start of the position and the steps after it, as the table has */
                const int p = pos[i], t0 = p / ROPE_TB * ROPE_TB;
                float bc[ROPE_TB * half], bs[ROPE_TB * half];
                rope_table(bc, bs, t0, p - t0 + 1, half, pos0, sign, inv_freq, step_c, step_s, c,
                           s);
                for (int j = 0; j < half; j++) {
                    tc[j] = bc[(p - t0) * half + j];
                    ts[j] = bs[(p - t0) * half + j];
                }
                rope_row(x + (size_t)i * stride, tc, ts, nheads, HS);
            }
        }
        return;
    }
#pragma omp parallel
    {
        double c[half], s[half];
        float tc[ROPE_TB * half], ts[ROPE_TB * half];
#pragma omp for schedule(static)
        for (int blk = 0; blk < nblocks; blk++) {
            const int t0 = blk * ROPE_TB, n = T - t0 < ROPE_TB ? T - t0 : ROPE_TB;
            rope_table(tc, ts, t0, n, half, pos0, sign, inv_freq, step_c, step_s, c, s);
            for (int b = 0; b < B; b++)
                for (int r = 0; r < n; r++)
                    rope_row(x + ((size_t)b * T + t0 + r) * stride, tc + r * half, ts + r * half,
                             nheads, HS);
        }
    }
}

void hn_rope_forward(float* x, const int* pos, int B, int T, int nheads, int HS, int stride,
                     int pos0, float theta) {
    rope_rotate(x, pos, B, T, nheads, HS, stride, pos0, theta, 1.0f);
}

void hn_rope_backward(float* dx, const int* pos, int B, int T, int nheads, int HS, int stride,
                      int pos0, float theta) {
    /* the broken variant turns the gradient the wrong way, a plausible sign slip */
    const float sign = hn_cpu_broken_op == HN_OP_ROPE ? 1.0f : -1.0f;
    rope_rotate(dx, pos, B, T, nheads, HS, stride, pos0, theta, sign);
}
