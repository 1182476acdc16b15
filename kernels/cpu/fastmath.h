/*
 * Vectorisable float approximations of exp and tanh for the CPU kernels. libm's expf is a
 * call GCC cannot vectorise (and -ffast-math is off by policy), yet softmax over a 50k
 * vocabulary and GELU run these on every element, so they are written as straight-line
 * code that auto-vectorises inside a plain loop: no branches, no calls, no float->int
 * conversion (the integer is taken from the float's bits).
 *
 * Error bounds against double-precision libm (tests/unit/test_ops.c checks them on a dense
 * sweep; the measured maxima are over every third float of the range):
 *   hn_fast_expf:  relative error < HN_FAST_EXP_MAX_REL (measured 9.3e-8, about 1.5 ulp) for
 *                  x in [HN_EXP_LO, HN_EXP_HI] = [-87.34, 88.38]; x < HN_EXP_LO (incl. -inf)
 *                  gives 0 (the true value is below FLT_MIN), x > HN_EXP_HI (incl. +inf)
 *                  gives +inf, NaN gives NaN.
 *   hn_fast_tanhf: absolute error < HN_FAST_TANH_MAX_ABS (measured 1.8e-7) everywhere;
 *                  exactly +-1 for large |x|, NaN gives NaN. Absolute, not relative:
 *                  1 - 2/(e+1) cancels near 0, which GELU tolerates as it multiplies by x.
 */
#ifndef HONE_CPU_FASTMATH_H
#define HONE_CPU_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* inputs beyond these limits under/overflow; ln(FLT_MIN) = -87.3365, and 88.37 keeps the
 * power of two within the float exponent (n <= 127) */
#define HN_EXP_LO (-87.33654f)
#define HN_EXP_HI 88.37626f

#define HN_FAST_EXP_MAX_REL 1.2e-7
#define HN_FAST_TANH_MAX_ABS 2.5e-7

static inline float hn_fast_expf(float x) {
    /* comparisons are false for NaN, so NaN flows through every select below */
    float xc = x > HN_EXP_HI ? HN_EXP_HI : x;
    xc = xc < HN_EXP_LO ? HN_EXP_LO : xc;
    /* x = n ln2 + r with n = round(x / ln2), |r| <= ln2/2. Adding 1.5 * 2^23 rounds to an
     * integer and leaves n in the low mantissa bits of t. */
    float t = fmaf(xc, 1.44269504f, 12582912.0f);
    float n = t - 12582912.0f;
    /* Cody-Waite: ln2 split in a high part with few mantissa bits (n * hi is exact) and the
     * rest, so r keeps full precision */
    float r = fmaf(n, -0.693145751953125f, xc);
    r = fmaf(n, -1.428606765330187e-6f, r);
    /* e^r: degree 6 interpolant at Chebyshev nodes on [-ln2/2, ln2/2] (error 2.5e-9) */
    float p = fmaf(1.39411085e-3f, r, 8.37512594e-3f);
    p = fmaf(p, r, 4.16663513e-2f);
    p = fmaf(p, r, 1.66664155e-1f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    /* 2^n from the exponent bits; t's bits are 0x4B400000 + n */
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < HN_EXP_LO ? 0.0f : y;
    return x > HN_EXP_HI ? INFINITY : y;
}

/* tanh(x) = 1 - 2 / (e^{2x} + 1): e^{2x} -> 0 gives -1 and -> inf gives 1, no inf/inf */
static inline float hn_fast_tanhf(float x) {
    return 1.0f - 2.0f / (hn_fast_expf(2.0f * x) + 1.0f);
}

#endif
