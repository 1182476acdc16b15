/*
 * Overflow-checked size arithmetic for sizes and counts that come from files: a shape's
 * element count, a count times an element size. Each returns 1 when the exact result does
 * not fit (and leaves *out unspecified), 0 with the result in *out otherwise, as GCC's and
 * clang's __builtin_*_overflow do, so a reader writes
 *     if (hn_mul_overflow(n, size, &bytes)) return hn_error("%s: ... overflows", path);
 */
#ifndef HONE_CHECKED_H
#define HONE_CHECKED_H

#include <stddef.h>
#include <stdint.h>

/* sizes read from files are uint64: hone builds for 64-bit hosts only */
_Static_assert(SIZE_MAX >= UINT64_MAX, "hone needs a 64-bit size_t");

static inline int hn_mul_overflow(size_t a, size_t b, size_t* out) {
    return __builtin_mul_overflow(a, b, out);
}

static inline int hn_add_overflow(size_t a, size_t b, size_t* out) {
    return __builtin_add_overflow(a, b, out);
}

/* the element count of ndim dims (1 for ndim 0); a negative dim counts as an overflow */
static inline int hn_numel_overflow(const int64_t* dims, int ndim, size_t* out) {
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (dims[d] < 0 || hn_mul_overflow(n, (size_t)dims[d], &n)) return 1;
    }
    *out = n;
    return 0;
}

#endif
