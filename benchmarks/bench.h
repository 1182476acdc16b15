/*
 * Helpers shared by the benchmark programs: a monotonic clock, the median of repeated
 * timings, the fastest of a few runs of a statement, and random test data.
 */
#ifndef HONE_BENCH_H
#define HONE_BENCH_H

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"

static inline double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static inline int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

/* the median of x[0..n) (sorts x) */
static inline double median(double* x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* n normal values times scale from rng; exits on out of memory (a benchmark, not a library) */
static inline float* bench_randn(HnRng* rng, size_t n, float scale) {
    float* p = malloc(n * sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        p[i] = scale * hn_rng_normal(rng);
    return p;
}

/* fastest of a few runs, in ms; the fastest is the least disturbed by the machine */
#define TIME_MS(result, reps, stmt)                                                                \
    do {                                                                                           \
        stmt;                                                                                      \
        double best_ = 1e30;                                                                       \
        for (int r_ = 0; r_ < (reps); r_++) {                                                      \
            double t0_ = omp_get_wtime();                                                          \
            stmt;                                                                                  \
            double dt_ = (omp_get_wtime() - t0_) * 1e3;                                            \
            best_ = dt_ < best_ ? dt_ : best_;                                                     \
        }                                                                                          \
        (result) = best_;                                                                          \
    } while (0)

#endif
