/*
 * The HDF5 layer: every element type round-trips exactly (scalars, empty arrays, multi-chunk
 * arrays at deflate 0, 1 and 9), bf16 rounds to nearest even, attributes, listing, the
 * commit/abort semantics of the temporary file, and hostile files and requests that must
 * fail with one clean line while HDF5 prints nothing. Some checks open the files with raw
 * HDF5 to see what was really stored (layout, chunks, HDF5's own reading of the bf16 type).
 * It leaves $HONE_TEST_TMP/interop.h5 for tests/cli/test_h5_interop.sh to read with h5py.
 */
#include <dirent.h>
#include <fcntl.h>
#include <float.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/h5.h"
#include "testing.h"

static char tmpdir[512], scratch[600];

static const char* tpath(char* out, const char* name) {
    snprintf(out, 1024, "%s/%s", scratch, name);
    return out;
}

/* a failure must be HN_ERR with one non-empty line mentioning `needle` (if given) */
static void expect_fail(int rc, const char* what, const char* needle) {
    const char* m = hn_error_message();
    CHECK(rc == HN_ERR, "%s: returned %d, wanted HN_ERR", what, rc);
    CHECK(m[0] && !strchr(m, '\n'), "%s: message '%s'", what, m);
    CHECK(!needle || strstr(m, needle), "%s: message '%s' lacks '%s'", what, m, needle);
    hn_error_clear();
}

static void expect_open_fails(const char* path, const char* what, const char* needle) {
    hn_error_clear();
    HnH5* f = hn_h5_open(path);
    expect_fail(f ? HN_OK : HN_ERR, what, needle);
    hn_h5_close(f);
}

static HnH5* reopen(const char* path) {
    HnH5* f = hn_h5_open(path);
    CHECK(f != NULL, "open %s: %s", path, hn_error_message());
    return f;
}

static int has_shape(HnH5* f, const char* path, int ndim, const int64_t* shape) {
    int n = -1;
    int64_t s[8];
    if (hn_h5_shape(f, path, &n, s) != HN_OK || n != ndim) return 0;
    for (int i = 0; i < n; i++)
        if (s[i] != shape[i]) return 0;
    return 1;
}

static int has_dtype(HnH5* f, const char* path, HnH5Type want) {
    HnH5Type t;
    return hn_h5_dtype(f, path, &t) == HN_OK && t == want;
}

/* ---- round trips ---- */

static void test_every_type_round_trips_exactly(void) {
    char path[1024];
    tpath(path, "types.h5");
    const float f32[6] = {0.0f, 1.0f, -2.0f, 0.5f, 3.25f, -1024.0f};
    const float bf16[4] = {1.0f, -3.0f, 0.15625f, 0x1p100f}; /* all exactly representable */
    const int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    const uint32_t u32[3] = {0, 1, UINT32_MAX};
    const int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    const uint64_t u64[2] = {0, UINT64_MAX};
    uint8_t u8[256];
    for (int i = 0; i < 256; i++)
        u8[i] = (uint8_t)i;
    const int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3}, s2[1] = {2}, s256[2] = {16, 16};
    const int64_t e0[1] = {0}, e302[3] = {3, 0, 2};
    const float sf = -0.75f;
    const int64_t si = -123456789012345;
    const uint8_t su = 200;

    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    CHECK(hn_h5_write(f, "/f32", HN_H5_F32, f32, 2, s23) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/bf16", HN_H5_BF16, bf16, 1, s4) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/i/i32", HN_H5_I32, i32, 1, s4) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/i/u32", HN_H5_U32, u32, 1, s3) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/i/i64", HN_H5_I64, i64, 1, s3) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/i/u64", HN_H5_U64, u64, 1, s2) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/i/u8", HN_H5_U8, u8, 2, s256) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/s/f32", HN_H5_F32, &sf, 0, NULL) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/s/bf16", HN_H5_BF16, &sf, 0, NULL) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/s/i64", HN_H5_I64, &si, 0, NULL) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/s/u8", HN_H5_U8, &su, 0, NULL) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/e/f32", HN_H5_F32, NULL, 1, e0) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/e/bf16", HN_H5_BF16, NULL, 3, e302) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/e/i64", HN_H5_I64, NULL, 3, e302) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());

    f = reopen(path);
    if (!f) return;
    float fb[6];
    CHECK(hn_h5_read(f, "/f32", HN_H5_F32, fb, 6) == HN_OK && !memcmp(fb, f32, sizeof f32),
          "f32: %s", hn_error_message());
    CHECK(hn_h5_read(f, "/bf16", HN_H5_F32, fb, 4) == HN_OK && !memcmp(fb, bf16, sizeof bf16),
          "bf16: %s", hn_error_message());
    /* HN_H5_BF16 as a read type also means "into floats" */
    CHECK(hn_h5_read(f, "/bf16", HN_H5_BF16, fb, 4) == HN_OK && !memcmp(fb, bf16, sizeof bf16),
          "bf16 as bf16: %s", hn_error_message());
    int32_t ib[4];
    CHECK(hn_h5_read(f, "/i/i32", HN_H5_I32, ib, 4) == HN_OK && !memcmp(ib, i32, sizeof i32),
          "i32: %s", hn_error_message());
    uint32_t ub[3];
    CHECK(hn_h5_read(f, "/i/u32", HN_H5_U32, ub, 3) == HN_OK && !memcmp(ub, u32, sizeof u32),
          "u32: %s", hn_error_message());
    int64_t lb[3];
    CHECK(hn_h5_read(f, "/i/i64", HN_H5_I64, lb, 3) == HN_OK && !memcmp(lb, i64, sizeof i64),
          "i64: %s", hn_error_message());
    uint64_t qb[2];
    CHECK(hn_h5_read(f, "/i/u64", HN_H5_U64, qb, 2) == HN_OK && !memcmp(qb, u64, sizeof u64),
          "u64: %s", hn_error_message());
    uint8_t bb[256];
    CHECK(hn_h5_read(f, "/i/u8", HN_H5_U8, bb, 256) == HN_OK && !memcmp(bb, u8, sizeof u8),
          "u8: %s", hn_error_message());
    /* widening conversions of values that fit are fine */
    int64_t wide[4];
    CHECK(hn_h5_read(f, "/i/i32", HN_H5_I64, wide, 4) == HN_OK && wide[0] == INT32_MIN &&
              wide[3] == INT32_MAX,
          "i32 as i64: %s", hn_error_message());
    int32_t small[256];
    CHECK(hn_h5_read(f, "/i/u8", HN_H5_I32, small, 256) == HN_OK && small[255] == 255,
          "u8 as i32: %s", hn_error_message());

    float x = 0;
    int64_t y = 0;
    uint8_t z = 0;
    CHECK(hn_h5_read(f, "/s/f32", HN_H5_F32, &x, 1) == HN_OK && x == sf, "scalar f32 %g", x);
    CHECK(hn_h5_read(f, "/s/bf16", HN_H5_F32, &x, 1) == HN_OK && x == sf, "scalar bf16 %g", x);
    CHECK(hn_h5_read(f, "/s/i64", HN_H5_I64, &y, 1) == HN_OK && y == si, "scalar i64");
    CHECK(hn_h5_read(f, "/s/u8", HN_H5_U8, &z, 1) == HN_OK && z == su, "scalar u8");
    CHECK(has_shape(f, "/s/i64", 0, NULL), "scalar rank 0");
    CHECK(hn_h5_read(f, "/e/f32", HN_H5_F32, NULL, 0) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_read(f, "/e/bf16", HN_H5_F32, NULL, 0) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_read(f, "/e/i64", HN_H5_I64, NULL, 0) == HN_OK, "%s", hn_error_message());
    CHECK(has_shape(f, "/e/bf16", 3, e302), "empty shape kept");
    CHECK(has_shape(f, "/f32", 2, s23) && has_shape(f, "/i/u8", 2, s256), "shapes");

    CHECK(has_dtype(f, "/f32", HN_H5_F32) && has_dtype(f, "/bf16", HN_H5_BF16) &&
              has_dtype(f, "/i/i32", HN_H5_I32) && has_dtype(f, "/i/u32", HN_H5_U32) &&
              has_dtype(f, "/i/i64", HN_H5_I64) && has_dtype(f, "/i/u64", HN_H5_U64) &&
              has_dtype(f, "/i/u8", HN_H5_U8) && has_dtype(f, "/e/bf16", HN_H5_BF16),
          "dtypes");
    hn_h5_close(f);
}

/* opens a dataset with raw HDF5 and returns its layout, filter count and chunk dims */
static H5D_layout_t raw_layout(const char* path, const char* dset, int* nfilters, hsize_t* chunk) {
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(file, dset, H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    H5D_layout_t layout = H5Pget_layout(dcpl);
    *nfilters = H5Pget_nfilters(dcpl);
    if (layout == H5D_CHUNKED) H5Pget_chunk(dcpl, 8, chunk);
    H5Pclose(dcpl);
    H5Dclose(d);
    H5Fclose(file);
    return layout;
}

static long file_size(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static void test_large_arrays_chunk_and_compress_at_every_level(void) {
    const int64_t big[2] = {700, 512};   /* 1.4 MiB of f32: chunks of 512 rows (1 MiB) */
    const int64_t wide[2] = {2, 300000}; /* one row is over 1 MiB: chunks split the row */
    const int64_t flat[1] = {600000};
    size_t nbig = 700 * 512, nwide = 600000;
    float* a = malloc(nbig * sizeof *a);
    float* b = malloc(nwide * sizeof *b);
    float* back = malloc(nwide * sizeof *back);
    int64_t* l = malloc(nwide * sizeof *l);
    int64_t* lback = malloc(nwide * sizeof *lback);
    if (!a || !b || !back || !l || !lback) {
        CHECK(0, "out of memory");
        return;
    }
    uint32_t s = 12345;
    for (size_t i = 0; i < nbig; i++) {
        s = s * 1664525u + 1013904223u;
        a[i] = (float)(s >> 8) * 0x1p-20f - 8.0f; /* every mantissa bit in use */
    }
    for (size_t i = 0; i < nwide; i++) {
        b[i] = (float)(i % 17) - 8.0f; /* compressible */
        l[i] = (int64_t)i * 1000003 - 7;
    }
    long sizes[3];
    const int levels[3] = {0, 1, 9};
    for (int k = 0; k < 3; k++) {
        char path[1024], name[64];
        snprintf(name, sizeof name, "big%d.h5", levels[k]);
        tpath(path, name);
        HnH5* f = hn_h5_create(path, levels[k]);
        CHECK(f != NULL, "create: %s", hn_error_message());
        if (!f) continue;
        CHECK(hn_h5_write(f, "/big", HN_H5_F32, a, 2, big) == HN_OK, "%s", hn_error_message());
        CHECK(hn_h5_write(f, "/wide", HN_H5_F32, b, 2, wide) == HN_OK, "%s", hn_error_message());
        CHECK(hn_h5_write(f, "/flat", HN_H5_I64, l, 1, flat) == HN_OK, "%s", hn_error_message());
        CHECK(hn_h5_write(f, "/bf", HN_H5_BF16, b, 2, wide) == HN_OK, "%s", hn_error_message());
        CHECK(hn_h5_write(f, "/small", HN_H5_F32, a, 1, (int64_t[]){1024}) == HN_OK, "%s",
              hn_error_message());
        CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());
        sizes[k] = file_size(path);

        f = reopen(path);
        if (!f) continue;
        CHECK(hn_h5_read(f, "/big", HN_H5_F32, back, nbig) == HN_OK &&
                  !memcmp(back, a, nbig * sizeof *a),
              "level %d big: %s", levels[k], hn_error_message());
        CHECK(hn_h5_read(f, "/wide", HN_H5_F32, back, nwide) == HN_OK &&
                  !memcmp(back, b, nwide * sizeof *b),
              "level %d wide: %s", levels[k], hn_error_message());
        CHECK(hn_h5_read(f, "/flat", HN_H5_I64, lback, nwide) == HN_OK &&
                  !memcmp(lback, l, nwide * sizeof *l),
              "level %d flat: %s", levels[k], hn_error_message());
        /* small integers are exact in bf16 */
        CHECK(hn_h5_read(f, "/bf", HN_H5_F32, back, nwide) == HN_OK &&
                  !memcmp(back, b, nwide * sizeof *b),
              "level %d bf16: %s", levels[k], hn_error_message());
        hn_h5_close(f);

        int nf = -1;
        hsize_t chunk[8] = {0};
        CHECK(raw_layout(path, "/big", &nf, chunk) == H5D_CHUNKED && chunk[0] == 512 &&
                  chunk[1] == 512 && nf == (levels[k] ? 2 : 0),
              "big: chunks %llu x %llu, %d filters", (unsigned long long)chunk[0],
              (unsigned long long)chunk[1], nf);
        CHECK(raw_layout(path, "/wide", &nf, chunk) == H5D_CHUNKED && chunk[0] == 1 &&
                  chunk[1] == 262144,
              "wide: chunks %llu x %llu", (unsigned long long)chunk[0],
              (unsigned long long)chunk[1]);
        CHECK(raw_layout(path, "/bf", &nf, chunk) == H5D_CHUNKED && chunk[1] == 300000,
              "bf16 chunks count 2-byte elements: %llu", (unsigned long long)chunk[1]);
        CHECK(raw_layout(path, "/small", &nf, chunk) == H5D_CONTIGUOUS && nf == 0,
              "1024 elements are not chunked");
    }
    CHECK(sizes[2] < sizes[0] && sizes[1] < sizes[0], "deflate shrinks: %ld %ld %ld", sizes[0],
          sizes[1], sizes[2]);
    free(a), free(b), free(back), free(l), free(lback);
}

static uint32_t bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float from_bits(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* bf16 keeps 7 mantissa bits: near 1 its step is 2^-7 (in hex floats 0x1.02p0 is 1 + 2^-7
 * and 0x1.01p0 is 1 + 2^-8); the 16 dropped bits of a float decide the rounding, a dropped
 * part of exactly 0x8000 being the tie */
static void test_bf16_rounds_to_nearest_even(void) {
    const float in[] = {
        1.0f,         -3.0f,     0.15625f, /* exact: 1, 1.1b * 2, 1.01b * 2^-3 */
        0x1.01p0f,                         /* 1 + 2^-8: the tie between 1 and 1 + 2^-7 -> even 1 */
        0x1.03p0f,                         /* 1 + 3*2^-8: tie between 1 + 2^-7 (odd) and 1 + 2^-6 */
        0x1.01002p0f,                      /* 1 + 2^-8 + 2^-19: above the tie -> 1 + 2^-7 */
        0x1.00ffep0f,                      /* 1 + 2^-8 - 2^-19: below the tie -> 1 */
        -0x1.01p0f,                        /* ties are symmetric: -1 */
        0x1p-130f,    0x1p-133f,           /* bf16 subnormals, exact (the second the smallest) */
        0x1p-134f,                         /* half the smallest subnormal: tie -> even 0 */
        0x1.8p-134f,                       /* 3/4 of the smallest subnormal -> 2^-133 */
        0x1.fep127f,                       /* the largest finite bf16, (2 - 2^-7) * 2^127: exact */
        0x1.fe8p127f,                      /* below the tie with 2^128 (0x1.ff): -> 0x1.fe */
        0x1.ffp127f,                       /* the tie: 0x1.fe is odd, so to even 2^128 = inf */
        FLT_MAX,                           /* above that tie: overflows to inf */
        0.0f,         -0.0f,     INFINITY, -INFINITY,
    };
    const float want[] = {
        1.0f,     -3.0f,     0.15625f,  1.0f,  0x1.04p0f, 0x1.02p0f,   1.0f,
        -1.0f,    0x1p-130f, 0x1p-133f, 0.0f,  0x1p-133f, 0x1.fep127f, 0x1.fep127f,
        INFINITY, INFINITY,  0.0f,      -0.0f, INFINITY,  -INFINITY,
    };
    enum { N = sizeof in / sizeof in[0] };
    _Static_assert(sizeof in == sizeof want, "one expectation per input");
    /* a quiet NaN, a negative NaN, and a NaN whose payload sits only in the dropped bits
     * (plain truncation would make that one inf) */
    const float nans[3] = {NAN, -NAN, from_bits(0x7f800001u)};
    char path[1024];
    tpath(path, "bf16.h5");
    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    CHECK(hn_h5_write(f, "/v", HN_H5_BF16, in, 1, (int64_t[]){N}) == HN_OK, "%s",
          hn_error_message());
    CHECK(hn_h5_write(f, "/nan", HN_H5_BF16, nans, 1, (int64_t[]){3}) == HN_OK, "%s",
          hn_error_message());
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());
    f = reopen(path);
    if (!f) return;
    float got[N], gn[3];
    CHECK(hn_h5_read(f, "/v", HN_H5_F32, got, N) == HN_OK, "%s", hn_error_message());
    for (int i = 0; i < N; i++)
        CHECK(bits(got[i]) == bits(want[i]), "bf16(%a) = %a, wanted %a", in[i], got[i], want[i]);
    CHECK(hn_h5_read(f, "/nan", HN_H5_F32, gn, 3) == HN_OK, "%s", hn_error_message());
    for (int i = 0; i < 3; i++)
        CHECK(isnan(gn[i]), "nan %d read as %g", i, gn[i]);
    CHECK(signbit(gn[1]), "a negative NaN keeps its sign");
    hn_h5_close(f);

    /* HDF5's own conversion of the stored type agrees: the type really is bfloat16 */
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(file, "/v", H5P_DEFAULT);
    float conv[N];
    CHECK(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, conv) >= 0, "raw read");
    for (int i = 0; i < N; i++)
        if (isfinite(want[i])) CHECK(conv[i] == want[i], "HDF5 reads %a as %a", want[i], conv[i]);
    H5Dclose(d);
    H5Fclose(file);
}

/* ---- attributes, groups, listing ---- */

static const char* const UTF8 = "h\xc3\xb6n\xc3\xab \xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac";

static void test_attributes_round_trip(void) {
    char path[1024];
    tpath(path, "attrs.h5");
    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    const float one = 1.0f;
    CHECK(hn_h5_write(f, "/g/d", HN_H5_F32, &one, 0, NULL) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_str(f, "/", "name", UTF8) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_str(f, "/", "empty", "") == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_i64(f, "/", "min", INT64_MIN) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_i64(f, "/", "max", INT64_MAX) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_f64(f, "/g", "lr", 0.1) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_f64(f, "/g/d", "tiny", -DBL_MIN) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_i64(f, "/g/d", "step", 1) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_i64(f, "/g/d", "step", 2) == HN_OK, "overwrite: %s", hn_error_message());
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());

    f = reopen(path);
    if (!f) return;
    char* s = NULL;
    CHECK(hn_h5_read_attr_str(f, "/", "name", &s) == HN_OK && s && !strcmp(s, UTF8),
          "utf-8 string '%s': %s", s ? s : "(null)", hn_error_message());
    free(s);
    s = NULL;
    CHECK(hn_h5_read_attr_str(f, "/", "empty", &s) == HN_OK && s && !s[0], "empty string");
    free(s);
    int64_t v = 0;
    CHECK(hn_h5_read_attr_i64(f, "/", "min", &v) == HN_OK && v == INT64_MIN, "i64 min");
    CHECK(hn_h5_read_attr_i64(f, "/", "max", &v) == HN_OK && v == INT64_MAX, "i64 max");
    CHECK(hn_h5_read_attr_i64(f, "/g/d", "step", &v) == HN_OK && v == 2, "overwritten: %lld",
          (long long)v);
    double d = 0;
    CHECK(hn_h5_read_attr_f64(f, "/g", "lr", &d) == HN_OK && d == 0.1, "f64 %.17g", d);
    CHECK(hn_h5_read_attr_f64(f, "/g/d", "tiny", &d) == HN_OK && d == -DBL_MIN, "f64 %g", d);
    CHECK(hn_h5_has_attr(f, "/", "name") == 1 && hn_h5_has_attr(f, "/g", "name") == 0 &&
              hn_h5_has_attr(f, "/nope/x", "name") == 0,
          "has_attr");
    hn_h5_close(f);
}

static int names_are(char** names, int n, int want_n, const char* const* want) {
    if (n != want_n) return 0;
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], want[i])) return 0;
    return 1;
}

static void test_groups_list_sorted_and_exists_never_errors(void) {
    char path[1024];
    tpath(path, "groups.h5");
    HnH5* f = hn_h5_create(path, 0);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    const int32_t x = 1;
    /* written out of order, and more than HDF5 keeps in a compact group */
    const char* rows[] = {"zeta", "h.0.attn", "h.10.mlp", "h.2.ln", "Alpha", "b",
                          "a",    "h.1.x",    "c_fc",     "c",      "wte"};
    enum { R = sizeof rows / sizeof rows[0] };
    for (int i = 0; i < R; i++) {
        char p[64];
        snprintf(p, sizeof p, "/model/%s", rows[i]);
        CHECK(hn_h5_write(f, p, HN_H5_I32, &x, 0, NULL) == HN_OK, "%s", hn_error_message());
    }
    CHECK(hn_h5_group(f, "/optim/m") == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_group(f, "/optim/m") == HN_OK, "an existing group is fine");
    CHECK(hn_h5_group(f, "/optim") == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_exists(f, "/optim/m") == 1 && hn_h5_exists(f, "/model/wte") == 1, "exists");
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());

    f = reopen(path);
    if (!f) return;
    char** names = NULL;
    int n = 0;
    const char* sorted[] = {"Alpha", "a",        "b",      "c",   "c_fc", "h.0.attn",
                            "h.1.x", "h.10.mlp", "h.2.ln", "wte", "zeta"};
    CHECK(hn_h5_list(f, "/model", &names, &n) == HN_OK && names_are(names, n, R, sorted),
          "sorted list of %d: %s", n, hn_error_message());
    hn_h5_free_names(names, n);
    const char* top[] = {"model", "optim"};
    CHECK(hn_h5_list(f, "/", &names, &n) == HN_OK && names_are(names, n, 2, top), "root list");
    hn_h5_free_names(names, n);
    CHECK(hn_h5_list(f, "/optim/m", &names, &n) == HN_OK && n == 0, "empty group lists nothing");
    hn_h5_free_names(names, n);

    CHECK(hn_h5_exists(f, "/") == 1 && hn_h5_exists(f, "/model") == 1 &&
              hn_h5_exists(f, "model/wte") == 1,
          "exists");
    CHECK(hn_h5_exists(f, "/nope") == 0 && hn_h5_exists(f, "/nope/x/y") == 0 &&
              hn_h5_exists(f, "/model/wte/x") == 0 && hn_h5_exists(f, "") == 0 &&
              hn_h5_exists(f, NULL) == 0,
          "missing objects are 0, never errors");
    CHECK(has_shape(f, "/model/wte", 0, NULL) && has_dtype(f, "/model/wte", HN_H5_I32), "scalar");
    CHECK(!strcmp(hn_h5_path(f), path), "path %s", hn_h5_path(f));
    hn_h5_close(f);
}

/* ---- commit semantics ---- */

/* 1 if some file in the scratch folder starts with prefix */
static int left_over(const char* prefix) {
    DIR* dir = opendir(scratch);
    int found = 0;
    struct dirent* e;
    while (dir && (e = readdir(dir)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) found = 1;
    if (dir) closedir(dir);
    return found;
}

static int32_t content_of(const char* path) {
    int32_t v = -1;
    HnH5* f = hn_h5_open(path);
    if (f && hn_h5_read(f, "/content", HN_H5_I32, &v, 1) != HN_OK) v = -2;
    hn_h5_close(f);
    return v;
}

static int write_content(const char* path, int32_t v, int commit) {
    HnH5* f = hn_h5_create(path, 1);
    if (!f) return HN_ERR;
    if (hn_h5_write(f, "/content", HN_H5_I32, &v, 0, NULL) != HN_OK) {
        hn_h5_abort(f);
        return HN_ERR;
    }
    if (commit) return hn_h5_commit(f);
    hn_h5_abort(f);
    return HN_OK;
}

static void test_commit_replaces_and_abort_keeps_the_old_file(void) {
    char path[1024];
    tpath(path, "ckpt.h5");
    unlink(path);
    CHECK(write_content(path, 1, 1) == HN_OK && content_of(path) == 1, "first commit: %s",
          hn_error_message());
    CHECK(write_content(path, 2, 0) == HN_OK && content_of(path) == 1, "abort keeps content 1");
    CHECK(!left_over("ckpt.h5.tmp"), "abort leaves no temporary file");
    CHECK(write_content(path, 3, 1) == HN_OK && content_of(path) == 3, "commit replaces");
    CHECK(!left_over("ckpt.h5.tmp"), "commit leaves no temporary file");

    /* the temporary file is where the data goes until the commit */
    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL && left_over("ckpt.h5.tmp.") && content_of(path) == 3, "written aside");
    hn_h5_close(f);
    CHECK(!left_over("ckpt.h5.tmp"), "close of a created file aborts it");
}

static void test_failed_commits_leave_nothing_behind(void) {
    char path[1024];
    tpath(path, "no/such/folder/x.h5");
    hn_error_clear();
    HnH5* f = hn_h5_create(path, 1);
    expect_fail(f ? HN_OK : HN_ERR, "create in a missing folder", "no/such/folder/x.h5");
    if (f) hn_h5_abort(f);

    /* the rename cannot replace a folder: the commit fails, the folder and no temp remain */
    tpath(path, "adir");
    mkdir(path, 0755);
    char inner[1100];
    snprintf(inner, sizeof inner, "%s/keep", path);
    FILE* k = fopen(inner, "w");
    if (k) fclose(k);
    f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (f) expect_fail(hn_h5_commit(f), "commit onto a folder", "adir");
    CHECK(!left_over("adir.tmp"), "failed commit removed its temporary file");
    CHECK(access(inner, F_OK) == 0, "the folder is untouched");

    expect_fail(hn_h5_create(path, 10) ? HN_OK : HN_ERR, "deflate 10", "deflate");
    expect_fail(hn_h5_create("", 1) ? HN_OK : HN_ERR, "empty path", NULL);
}

/* ---- hostile input ---- */

static void copy_prefix(const char* from, const char* to, long n) {
    FILE* in = fopen(from, "rb");
    FILE* out = fopen(to, "wb");
    char buf[4096];
    while (in && out && n > 0) {
        size_t got = fread(buf, 1, n < (long)sizeof buf ? (size_t)n : sizeof buf, in);
        if (!got) break;
        fwrite(buf, 1, got, out);
        n -= (long)got;
    }
    if (in) fclose(in);
    if (out) fclose(out);
}

static void test_truncated_files_fail_cleanly(void) {
    char full[1024];
    tpath(full, "full.h5");
    size_t n = 300 * 1024;
    float* a = malloc(n * sizeof *a);
    if (!a) return;
    for (size_t i = 0; i < n; i++)
        a[i] = sinf((float)i);
    const int64_t s2[2] = {300, 1024}, s1[1] = {1000};
    HnH5* f = hn_h5_create(full, 6);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    CHECK(hn_h5_write(f, "/m/big", HN_H5_F32, a, 2, s2) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/m/half", HN_H5_BF16, a, 2, s2) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_write(f, "/m/small", HN_H5_F32, a, 1, s1) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_attr_str(f, "/", "config", "model: {layers: 2}") == HN_OK, "attr");
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());

    long size = file_size(full);
    const long cuts[3] = {size / 2, 1000, size - 100};
    for (int c = 0; c < 3; c++) {
        char cut[1024], name[64];
        snprintf(name, sizeof name, "cut%d.h5", c);
        copy_prefix(full, tpath(cut, name), cuts[c]);
        expect_open_fails(cut, "a cut file against its seal", "bytes follow its seal");
        /* and what libhdf5 makes of it when told to read it anyway */
        hn_error_clear();
        hn_h5_allow_unverified(1);
        f = hn_h5_open(cut);
        hn_h5_allow_unverified(0);
        int failures = f ? 0 : 1;
        const char* m = hn_error_message();
        CHECK(f || (m[0] && !strchr(m, '\n') && strstr(m, name)), "open of cut %d: '%s'", c, m);
        const char* dsets[3] = {"/m/big", "/m/half", "/m/small"};
        const size_t counts[3] = {n, n, 1000};
        for (int d = 0; f && d < 3; d++) {
            hn_error_clear();
            if (hn_h5_read(f, dsets[d], HN_H5_F32, a, counts[d]) != HN_OK) {
                failures++;
                m = hn_error_message();
                CHECK(m[0] && !strchr(m, '\n'), "read of cut %d: '%s'", c, m);
            }
        }
        char* s = NULL;
        if (f && hn_h5_read_attr_str(f, "/", "config", &s) != HN_OK) failures++;
        free(s);
        hn_h5_close(f);
        CHECK(failures > 0, "a file cut to %ld of %ld bytes read without an error", cuts[c], size);
    }
    free(a);
}

static void flip_byte(const char* path, long at) {
    FILE* f = fopen(path, "r+b");
    if (!f) return;
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x10, f);
    fclose(f);
}

/* every committed file carries a seal of its bytes, checked before libhdf5 reads it */
static void test_seal_catches_any_change(void) {
    char path[1024], copy[1024];
    tpath(path, "sealed.h5");
    const int64_t shape[1] = {4096};
    float* a = malloc(4096 * sizeof *a);
    if (!a) return;
    for (int i = 0; i < 4096; i++)
        a[i] = (float)i;
    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    CHECK(hn_h5_write(f, "/a", HN_H5_F32, a, 1, shape) == HN_OK, "%s", hn_error_message());
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());
    free(a);

    FILE* in = fopen(path, "rb");
    char block[512] = {0};
    CHECK(in && fread(block, 1, sizeof block, in) == sizeof block, "read the seal");
    if (in) fclose(in);
    CHECK(strncmp(block, "hone-h5-seal 1\nsha256 ", 22) == 0, "the file starts with its seal");
    f = reopen(path);
    hn_h5_close(f);

    long size = file_size(path);
    const long spots[4] = {600, size / 2, size - 1, 30}; /* data, metadata, last byte, seal */
    for (int i = 0; i < 4; i++) {
        char name[64];
        snprintf(name, sizeof name, "flipped%d.h5", i);
        copy_prefix(path, tpath(copy, name), size);
        flip_byte(copy, spots[i]);
        expect_open_fails(copy, "one flipped byte", i == 3 ? NULL : "SHA-256 does not match");
    }
    copy_prefix(path, tpath(copy, "appended.h5"), size);
    FILE* app = fopen(copy, "ab");
    if (app) {
        fputc(0, app);
        fclose(app);
    }
    expect_open_fails(copy, "a byte appended", "bytes follow its seal");
    /* a seal that claims the file is another one's */
    copy_prefix(path, tpath(copy, "blank_seal.h5"), size);
    FILE* w = fopen(copy, "r+b");
    if (w) {
        char zeros[512] = {0};
        fwrite(zeros, 1, sizeof zeros, w);
        fclose(w);
    }
    expect_open_fails(copy, "a wiped seal", "no seal");
    hn_h5_allow_unverified(1);
    f = hn_h5_open(copy);
    CHECK(f != NULL, "a wiped seal opens with allow_unverified: %s", hn_error_message());
    float back[4096];
    CHECK(f && hn_h5_read(f, "/a", HN_H5_F32, back, 4096) == HN_OK && back[4095] == 4095.0f,
          "and reads: %s", hn_error_message());
    hn_h5_close(f);
    hn_h5_allow_unverified(0);
}

/* a file made with raw HDF5 holding what hone never writes but may meet */
static void write_foreign(const char* path) {
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t scalar = H5Screate(H5S_SCALAR);
    hsize_t two = 2;
    hid_t vec = H5Screate_simple(1, &two, NULL);
    const double f64[2] = {1.5, 2.5};
    hid_t d = H5Dcreate2(file, "f64", H5T_IEEE_F64LE, vec, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, f64);
    H5Dclose(d);
    hid_t half = H5Tcopy(H5T_IEEE_F32LE); /* IEEE f16: a 2-byte float that is not bf16 */
    H5Tset_fields(half, 15, 10, 5, 0, 10);
    H5Tset_precision(half, 16);
    H5Tset_size(half, 2);
    H5Tset_ebias(half, 15);
    d = H5Dcreate2(file, "f16", half, vec, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, f64);
    H5Dclose(d);
    H5Tclose(half);
    const int16_t i16[2] = {-300, 300};
    d = H5Dcreate2(file, "i16", H5T_STD_I16BE, vec, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, i16);
    H5Dclose(d);

    hid_t fixed = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 8);
    H5Tset_strpad(fixed, H5T_STR_NULLPAD);
    hid_t a = H5Acreate2(file, "fixed", fixed, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed, "byte\0\0\0\0");
    H5Aclose(a);
    H5Tset_strpad(fixed, H5T_STR_SPACEPAD);
    a = H5Acreate2(file, "padded", fixed, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, fixed, "gpt2    ");
    H5Aclose(a);
    H5Tclose(fixed);
    const int32_t i32 = -5;
    a = H5Acreate2(file, "i32", H5T_STD_I32BE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT32, &i32);
    H5Aclose(a);
    const uint64_t huge = UINT64_MAX;
    a = H5Acreate2(file, "huge", H5T_STD_U64LE, scalar, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_UINT64, &huge);
    H5Aclose(a);
    a = H5Acreate2(file, "pair", H5T_STD_I64LE, vec, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, f64);
    H5Aclose(a);
    H5Sclose(vec);
    H5Sclose(scalar);
    H5Fclose(file);
}

static void test_foreign_types_read_or_fail_clearly(void) {
    char path[1024];
    tpath(path, "foreign.h5");
    write_foreign(path);
    expect_open_fails(path, "a file hone did not write", "no seal");
    hn_h5_allow_unverified(1);
    HnH5* f = reopen(path);
    hn_h5_allow_unverified(0);
    if (!f) return;
    char* s = NULL;
    CHECK(hn_h5_read_attr_str(f, "/", "fixed", &s) == HN_OK && s && !strcmp(s, "byte"),
          "fixed-length string '%s': %s", s ? s : "(null)", hn_error_message());
    free(s);
    s = NULL;
    CHECK(hn_h5_read_attr_str(f, "/", "padded", &s) == HN_OK && s && !strcmp(s, "gpt2"),
          "space-padded string '%s'", s ? s : "(null)");
    free(s);
    int64_t v = 0;
    CHECK(hn_h5_read_attr_i64(f, "/", "i32", &v) == HN_OK && v == -5, "i32 attribute as i64");
    int32_t i[2];
    CHECK(hn_h5_read(f, "/i16", HN_H5_I32, i, 2) == HN_OK && i[0] == -300 && i[1] == 300,
          "big-endian i16 read as i32: %s", hn_error_message());
    hn_h5_close(f);
}

static void test_hostile_requests_fail_with_one_line(void) {
    char path[1024], text[1024], empty[1024], foreign[1024];
    tpath(path, "hostile.h5");
    tpath(text, "text.h5");
    tpath(empty, "empty.h5");
    tpath(foreign, "foreign.h5");
    FILE* t = fopen(text, "w");
    if (t) {
        fputs("this is not an HDF5 file, just some text that is long enough\n", t);
        fclose(t);
    }
    t = fopen(empty, "w");
    if (t) fclose(t);

    expect_open_fails(tpath(path, "missing.h5"), "missing file", "missing.h5");
    expect_open_fails(text, "text file", "not an HDF5 file");
    expect_open_fails(empty, "empty file", "empty.h5");
    expect_open_fails(scratch, "folder", "folder");

    tpath(path, "hostile.h5");
    const int64_t big = (int64_t)1 << 40, neg = -1;
    const float x = 1.5f;
    HnH5* f = hn_h5_create(path, 1);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    CHECK(hn_h5_write(f, "/big", HN_H5_I64, &big, 1, (int64_t[]){1}) == HN_OK, "write");
    CHECK(hn_h5_write(f, "/neg", HN_H5_I64, &neg, 1, (int64_t[]){1}) == HN_OK, "write");
    CHECK(hn_h5_write(f, "/u64", HN_H5_U64, &(uint64_t){UINT64_MAX}, 0, NULL) == HN_OK, "w");
    CHECK(hn_h5_write(f, "/x", HN_H5_F32, &x, 0, NULL) == HN_OK, "write");
    CHECK(hn_h5_attr_i64(f, "/", "n", 5) == HN_OK, "attr");
    expect_fail(hn_h5_write(f, "/x", HN_H5_F32, &x, 0, NULL), "dataset written twice", "/x");
    expect_fail(hn_h5_write(f, "/r9", HN_H5_F32, &x, 9, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1}),
                "rank 9", "rank 9");
    expect_fail(hn_h5_write(f, "/neg_dim", HN_H5_F32, &x, 1, (int64_t[]){-1}), "negative dim",
                "negative");
    expect_fail(hn_h5_write(f, "/huge", HN_H5_F32, &x, 2, (int64_t[]){INT64_MAX, 4}),
                "overflowing count", "too many");
    expect_fail(hn_h5_write(f, "/null", HN_H5_F32, NULL, 1, (int64_t[]){2}), "no data", "no data");
    expect_fail(hn_h5_write(f, "/t", (HnH5Type)42, &x, 0, NULL), "bad type", "type");
    expect_fail(hn_h5_group(f, "/x"), "group over a dataset", "not a group");
    expect_fail(hn_h5_attr_i64(f, "/missing", "n", 1), "attribute on a missing object", "/missing");
    char longname[1100];
    memset(longname, 'a', sizeof longname - 1);
    longname[0] = '/';
    longname[sizeof longname - 1] = '\0';
    expect_fail(hn_h5_write(f, longname, HN_H5_F32, &x, 0, NULL), "path too long", "1024");
    expect_fail(hn_h5_attr_i64(f, "/", longname + 1, 1), "attribute name too long", "1024");
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());

    f = reopen(path);
    if (!f) return;
    int32_t i32;
    uint32_t u32;
    int64_t i64;
    float fl[2];
    expect_fail(hn_h5_read(f, "/nope", HN_H5_F32, fl, 1), "missing dataset", "/nope");
    expect_fail(hn_h5_read(f, "/a/b/c", HN_H5_F32, fl, 1), "missing parents", "/a/b/c");
    expect_fail(hn_h5_read(f, "/x", HN_H5_F32, fl, 2), "wrong numel", "1 elements, expected 2");
    expect_fail(hn_h5_read(f, "/x", HN_H5_I32, &i32, 1), "float as int", "float32");
    expect_fail(hn_h5_read(f, "/big", HN_H5_F32, fl, 1), "int as float", "int64");
    expect_fail(hn_h5_read(f, "/big", HN_H5_I32, &i32, 1), "2^40 as i32", "does not fit");
    expect_fail(hn_h5_read(f, "/neg", HN_H5_U32, &u32, 1), "-1 as u32", "does not fit");
    expect_fail(hn_h5_read(f, "/u64", HN_H5_I64, &i64, 1), "u64 max as i64", "does not fit");
    expect_fail(hn_h5_read(f, "/", HN_H5_F32, fl, 1), "a group read as a dataset", NULL);
    expect_fail(hn_h5_shape(f, "/nope", &(int){0}, &i64), "shape of a missing dataset", "/nope");
    expect_fail(hn_h5_dtype(f, "/nope", &(HnH5Type){0}), "dtype of a missing dataset", "/nope");
    expect_fail(hn_h5_read_attr_i64(f, "/", "nope", &i64), "missing attribute", "nope");
    expect_fail(hn_h5_read_attr_i64(f, "/nope", "n", &i64), "attribute of a missing object",
                "/nope");
    expect_fail(hn_h5_read_attr_str(f, "/", "n", &(char*){NULL}), "int attribute as string",
                "not a string");
    expect_fail(hn_h5_read_attr_f64(f, "/", "n", &(double){0}), "int attribute as f64",
                "not a float");
    char** names = NULL;
    int n = 0;
    expect_fail(hn_h5_list(f, "/x", &names, &n), "list of a dataset", "/x");
    expect_fail(hn_h5_list(f, "/nope/deeper", &names, &n), "list of a missing group", "/nope");
    expect_fail(hn_h5_write(f, "/y", HN_H5_F32, &x, 0, NULL), "write to a read-only file",
                "read-only");
    expect_fail(hn_h5_attr_str(f, "/", "s", "v"), "attribute on a read-only file", "read-only");
    expect_fail(hn_h5_read(NULL, "/x", HN_H5_F32, fl, 1), "NULL handle", NULL);
    hn_h5_close(f);

    hn_h5_allow_unverified(1);
    f = reopen(foreign);
    hn_h5_allow_unverified(0);
    if (!f) return;
    HnH5Type ty;
    expect_fail(hn_h5_dtype(f, "/f64", &ty), "f64 dtype", "unsupported dtype float64");
    expect_fail(hn_h5_read(f, "/f64", HN_H5_F32, fl, 2), "f64 read", "unsupported dtype");
    expect_fail(hn_h5_dtype(f, "/f16", &ty), "f16 dtype", "unsupported dtype float16");
    expect_fail(hn_h5_read(f, "/f16", HN_H5_F32, fl, 2), "f16 read", "unsupported dtype");
    expect_fail(hn_h5_dtype(f, "/i16", &ty), "i16 dtype", "int16");
    expect_fail(hn_h5_read(f, "/i16", HN_H5_U8, &(uint8_t[2]){0}, 2), "i16 as u8", "fit");
    expect_fail(hn_h5_read_attr_i64(f, "/", "huge", &i64), "u64 attribute above i64",
                "does not fit");
    expect_fail(hn_h5_read_attr_i64(f, "/", "pair", &i64), "two-value attribute", "2 values");
    hn_h5_close(f);

    expect_fail(hn_h5_commit(hn_h5_open(path)), "commit of a read-only file", "read-only");
}

/* HDF5 must print nothing on stderr however the calls fail */
static void run_silenced(void (*test)(void)) {
    char capture[1024];
    tpath(capture, "stderr.txt");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(capture, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (saved < 0 || fd < 0) {
        CHECK(0, "cannot redirect stderr");
        return;
    }
    dup2(fd, 2);
    close(fd);
    test();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char buf[2048] = "";
    FILE* in = fopen(capture, "r");
    size_t got = in ? fread(buf, 1, sizeof buf - 1, in) : 0;
    if (in) fclose(in);
    buf[got] = '\0';
    CHECK(got == 0, "stderr was not silent:\n%s", buf);
}

/* ---- for h5py: tests/cli/h5_interop_check.py asserts exactly these contents ---- */

static void write_interop(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/interop.h5", tmpdir);
    HnH5* f = hn_h5_create(path, 4);
    CHECK(f != NULL, "create: %s", hn_error_message());
    if (!f) return;
    int ok = 1;
    const float f32[6] = {0.0f, 1.0f, -2.0f, 0.5f, 3.25f, -1024.0f};
    ok &= hn_h5_write(f, "/f32", HN_H5_F32, f32, 2, (int64_t[]){2, 3}) == HN_OK;
    size_t nbig = 600 * 512;
    float* big = malloc(nbig * sizeof *big);
    for (size_t i = 0; big && i < nbig; i++)
        big[i] = (float)(i % 1000) * 0.125f - 60.0f;
    ok &= big && hn_h5_write(f, "/big", HN_H5_F32, big, 2, (int64_t[]){600, 512}) == HN_OK;
    free(big);
    /* h5py sees 1, -3, 0.15625, 1, 1.015625, inf, -0, 0x1.fep127 */
    const float bf[8] = {1.0f, -3.0f, 0.15625f, 0x1.01p0f, 0x1.03p0f, INFINITY, -0.0f, 0x1.fep127f};
    ok &= hn_h5_write(f, "/bf16", HN_H5_BF16, bf, 2, (int64_t[]){2, 4}) == HN_OK;
    ok &= hn_h5_write(f, "/bf16_nan", HN_H5_BF16, &(float){NAN}, 0, NULL) == HN_OK;
    float bfbig[2000];
    for (int i = 0; i < 2000; i++)
        bfbig[i] = (float)(i % 256 - 128);
    ok &= hn_h5_write(f, "/bf16_big", HN_H5_BF16, bfbig, 1, (int64_t[]){2000}) == HN_OK;
    const int32_t i32[4] = {INT32_MIN, -1, 0, INT32_MAX};
    const uint32_t u32[3] = {0, 1, UINT32_MAX};
    const int64_t i64[3] = {INT64_MIN, 0, INT64_MAX};
    const uint64_t u64[2] = {0, UINT64_MAX};
    const uint8_t u8[6] = {0, 1, 2, 127, 128, 255};
    ok &= hn_h5_write(f, "/ints/i32", HN_H5_I32, i32, 1, (int64_t[]){4}) == HN_OK;
    ok &= hn_h5_write(f, "/ints/u32", HN_H5_U32, u32, 1, (int64_t[]){3}) == HN_OK;
    ok &= hn_h5_write(f, "/ints/i64", HN_H5_I64, i64, 1, (int64_t[]){3}) == HN_OK;
    ok &= hn_h5_write(f, "/ints/u64", HN_H5_U64, u64, 1, (int64_t[]){2}) == HN_OK;
    ok &= hn_h5_write(f, "/ints/u8", HN_H5_U8, u8, 2, (int64_t[]){2, 3}) == HN_OK;
    ok &= hn_h5_write(f, "/scalar_i64", HN_H5_I64, &(int64_t){-7}, 0, NULL) == HN_OK;
    ok &= hn_h5_write(f, "/scalar_f32", HN_H5_F32, &(float){2.5f}, 0, NULL) == HN_OK;
    ok &= hn_h5_write(f, "/empty", HN_H5_F32, NULL, 2, (int64_t[]){0, 4}) == HN_OK;
    ok &= hn_h5_attr_str(f, "/", "title", UTF8) == HN_OK;
    ok &= hn_h5_attr_i64(f, "/", "i64_min", INT64_MIN) == HN_OK;
    ok &= hn_h5_attr_i64(f, "/", "i64_max", INT64_MAX) == HN_OK;
    ok &= hn_h5_attr_f64(f, "/", "lr", 0.1) == HN_OK;
    ok &= hn_h5_attr_str(f, "/ints", "note", "") == HN_OK;
    ok &= hn_h5_attr_i64(f, "/ints", "count", 5) == HN_OK;
    CHECK(ok, "interop writes: %s", hn_error_message());
    CHECK(hn_h5_commit(f) == HN_OK, "commit: %s", hn_error_message());
}

/* after a clean run the scratch files go (a failed run keeps them to look at) */
static void remove_scratch(void) {
    char path[1024];
    unlink(tpath(path, "adir/keep"));
    rmdir(tpath(path, "adir"));
    DIR* dir = opendir(scratch);
    struct dirent* e;
    while (dir && (e = readdir(dir)))
        if (e->d_name[0] != '.') unlink(tpath(path, e->d_name));
    if (dir) closedir(dir);
    rmdir(scratch);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "%s", hn_test_env("HONE_TEST_TMP"));
    snprintf(scratch, sizeof scratch, "%s/h5", tmpdir);
    mkdir(tmpdir, 0755);
    mkdir(scratch, 0755);

    test_every_type_round_trips_exactly();
    test_large_arrays_chunk_and_compress_at_every_level();
    test_bf16_rounds_to_nearest_even();
    test_attributes_round_trip();
    test_groups_list_sorted_and_exists_never_errors();
    test_commit_replaces_and_abort_keeps_the_old_file();
    test_foreign_types_read_or_fail_clearly();
    run_silenced(test_failed_commits_leave_nothing_behind);
    run_silenced(test_truncated_files_fail_cleanly);
    test_seal_catches_any_change();
    run_silenced(test_hostile_requests_fail_with_one_line);
    write_interop();
    if (!hn_test_failed) remove_scratch();
    return hn_test_finish("test_h5");
}
