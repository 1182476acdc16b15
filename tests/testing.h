/*
 * A tiny test harness shared by the C tests: CHECK-style assertions that count instead of
 * aborting, so one run reports every failure, and a closing line ctest's log can be read by
 * ("N passed, N failed"). A test program's exit status is non-zero when anything failed.
 */
#ifndef HONE_TESTING_H
#define HONE_TESTING_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int hn_test_passed, hn_test_failed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            hn_test_passed++;                                                                      \
        } else {                                                                                   \
            hn_test_failed++;                                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* |a - b| <= atol + rtol * |b|, with b the reference; NaN never passes */
static inline int hn_close(double a, double b, double rtol, double atol) {
    double d = fabs(a - b);
    return d <= atol + rtol * fabs(b);
}

static inline int hn_test_finish(const char* name) {
    printf("%s: %d passed, %d failed\n", name, hn_test_passed, hn_test_failed);
    return hn_test_failed ? 1 : 0;
}

/* an environment variable the test cannot run without */
static inline const char* hn_test_env(const char* name) {
    const char* v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "FAIL: environment variable %s is not set (run through ctest)\n", name);
        exit(1);
    }
    return v;
}

#endif
