/*
 * Helpers shared by the op tests (test_ops.c, test_ops_llama.c): buffers of random or
 * constant values, the error measures and the central finite difference their gradient
 * checks use. Each test program includes this once (defining FD_STEP first to change the
 * step); `rng` is its random stream.
 */
#ifndef HONE_GRADCHECK_H
#define HONE_GRADCHECK_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#ifndef FD_STEP
#define FD_STEP 1e-4 /* central-difference step of numeric_grad (forwards in double) */
#endif

static HnRng rng;

static inline float* alloc_f(size_t n) {
    float* p = malloc((n ? n : 1) * sizeof *p);
    if (!p) abort();
    return p;
}

static inline double* alloc_d(size_t n) {
    double* p = calloc(n ? n : 1, sizeof *p);
    if (!p) abort();
    return p;
}

static inline float* randn(size_t n, float scale, float shift) {
    float* p = alloc_f(n);
    for (size_t i = 0; i < n; i++)
        p[i] = scale * hn_rng_normal(&rng) + shift;
    return p;
}

static inline float* filled(size_t n, float value) {
    float* p = alloc_f(n);
    for (size_t i = 0; i < n; i++)
        p[i] = value;
    return p;
}

static inline float* copy_f(const float* x, size_t n) {
    float* p = alloc_f(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static inline double* to_double(const float* x, size_t n) {
    double* p = alloc_d(n);
    for (size_t i = 0; i < n; i++)
        p[i] = x[i];
    return p;
}

/* max |got - ref| / max |ref|; infinite if anything is NaN */
static inline double rel_err(const float* got, const double* ref, size_t n) {
    double err = 0.0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= err) && !isnan(err)) err = d; /* a NaN, once seen, stays */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return isnan(err) ? INFINITY : err / scale;
}

/* like rel_err, for a buffer the op accumulated into: the gradient is after - before */
static inline double rel_err_added(const float* after, const float* before, const double* ref, size_t n) {
    double err = 0.0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(((double)after[i] - before[i]) - ref[i]);
        if (!(d <= err) && !isnan(err)) err = d; /* a NaN, once seen, stays */
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return isnan(err) ? INFINITY : err / scale;
}

/* reports a failed comparison unless quiet (the broken runs expect failures) */
static inline int within(const char* what, double err, double tol, int quiet) {
    if (err <= tol) return 1;
    if (!quiet) fprintf(stderr, "  %s: relative error %.3g > %.1g\n", what, err, tol);
    return 0;
}

/* d loss / d x[i] by central differences, x being one input of the double forward */
typedef double (*LossFn)(const void* ctx);

static inline void numeric_grad(double* grad, double* x, size_t n, LossFn loss, const void* ctx) {
    for (size_t i = 0; i < n; i++) {
        const double saved = x[i];
        x[i] = saved + FD_STEP;
        const double up = loss(ctx);
        x[i] = saved - FD_STEP;
        const double down = loss(ctx);
        x[i] = saved;
        grad[i] = (up - down) / (2 * FD_STEP);
    }
}

static inline int bits_equal(const float* a, const float* b, size_t n) {
    return memcmp(a, b, n * sizeof *a) == 0;
}

#endif
