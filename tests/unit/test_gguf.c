/*
 * The GGUF reader against files written by an independent writer (gguf-py, llama.cpp's
 * Python package, in scripts/make_gguf_fixtures.py): every metadata value type, every
 * tensor's shape and type, and dequantized values equal bit for bit to gguf-py's
 * dequantize; then hostile files built here byte by byte, each of which must fail with one
 * line naming the file, quickly, never crash.
 *
 * A helper mode for tests/cli/test_gguf_smollm2.sh:
 *   test_gguf --dump FILE TENSOR OUT   writes TENSOR's dequantized values to OUT (raw float32)
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "data/gguf.h"
#include "testing.h"

static char fixtures[512], tmpdir[512];

static HnGguf* open_fixture(const char* name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf/%s", fixtures, name);
    HnGguf* g = hn_gguf_open(path);
    CHECK(g != NULL, "open %s: %s", path, hn_error_message());
    return g;
}

/* ---- the fixture written by gguf-py ---- */

static HnGgufType key_type(const HnGguf* g, const char* key) {
    for (int i = 0; i < hn_gguf_key_count(g); i++) {
        HnGgufType t;
        if (strcmp(hn_gguf_key(g, i, &t), key) == 0) return t;
    }
    return (HnGgufType)-1;
}

static void check_int(const HnGguf* g, const char* key, HnGgufType type, int64_t want) {
    int64_t v = 0;
    CHECK(key_type(g, key) == type, "%s has type %d, want %d", key, key_type(g, key), type);
    CHECK(hn_gguf_get_int(g, key, &v) == HN_OK && v == want, "%s = %lld, want %lld (%s)", key,
          (long long)v, (long long)want, hn_error_message());
}

static void test_every_metadata_type_reads_exactly(void) {
    HnGguf* g = open_fixture("types.gguf");
    if (!g) return;
    CHECK(hn_gguf_version(g) == 3, "version %d", hn_gguf_version(g));
    CHECK(hn_gguf_key_count(g) == 22, "key count %d", hn_gguf_key_count(g));
    CHECK(strcmp(hn_gguf_key(g, 0, NULL), "general.architecture") == 0, "keys in file order");
    check_int(g, "general.alignment", HN_GGUF_UINT32, 64);
    check_int(g, "t.u8", HN_GGUF_UINT8, 200);
    check_int(g, "t.i8", HN_GGUF_INT8, -128);
    check_int(g, "t.u16", HN_GGUF_UINT16, 65535);
    check_int(g, "t.i16", HN_GGUF_INT16, -32768);
    check_int(g, "t.u32", HN_GGUF_UINT32, 4000000000LL);
    check_int(g, "t.i32", HN_GGUF_INT32, INT32_MIN);
    check_int(g, "t.u64", HN_GGUF_UINT64, 12345678901234567LL);
    check_int(g, "t.i64", HN_GGUF_INT64, INT64_MIN);
    check_int(g, "t.true", HN_GGUF_BOOL, 1);
    check_int(g, "t.false", HN_GGUF_BOOL, 0);

    int64_t iv;
    double d;
    CHECK(key_type(g, "t.u64_big") == HN_GGUF_UINT64, "u64_big type");
    CHECK(hn_gguf_get_int(g, "t.u64_big", &iv) == HN_ERR && strstr(hn_error_message(), "int64"),
          "2^64-1 is not an int64: %s", hn_error_message());
    CHECK(hn_gguf_get_float(g, "t.u64_big", &d) == HN_OK && d == 18446744073709551615.0,
          "u64_big as float %g", d);
    CHECK(key_type(g, "t.f32") == HN_GGUF_FLOAT32, "f32 type");
    CHECK(hn_gguf_get_float(g, "t.f32", &d) == HN_OK && d == 0.15625, "f32 = %g", d);
    CHECK(key_type(g, "t.f64") == HN_GGUF_FLOAT64, "f64 type");
    CHECK(hn_gguf_get_float(g, "t.f64", &d) == HN_OK && d == -1.0 / 3.0, "f64 = %.17g", d);
    CHECK(hn_gguf_get_float(g, "t.i8", &d) == HN_OK && d == -128.0, "int as float %g", d);
    CHECK(hn_gguf_get_int(g, "t.f32", &iv) == HN_ERR && strstr(hn_error_message(), "t.f32"),
          "a float is not an int: %s", hn_error_message());

    size_t len = 0;
    const char* s = hn_gguf_get_str(g, "general.architecture", &len);
    CHECK(s && strcmp(s, "hone-test") == 0 && len == 9, "architecture '%s'", s ? s : "(null)");
    const char* want =
        "h\xc3\xa9llo, \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x99\x82"; /* héllo, 世界 🙂 */
    s = hn_gguf_get_str(g, "t.str", &len);
    CHECK(key_type(g, "t.str") == HN_GGUF_STRING, "str type");
    CHECK(s && len == strlen(want) && strcmp(s, want) == 0, "non-ASCII string '%s'",
          s ? s : "(null)");
    CHECK(hn_gguf_get_str(g, "t.u8", &len) == NULL && strstr(hn_error_message(), "uint8"),
          "a uint8 is not a string: %s", hn_error_message());
    CHECK(hn_gguf_get_str(g, "no.such.key", NULL) == NULL &&
              strstr(hn_error_message(), "no.such.key"),
          "missing key: %s", hn_error_message());
    CHECK(!hn_gguf_has(g, "no.such.key") && hn_gguf_has(g, "t.str"), "has");

    HnGgufType elem;
    uint64_t n;
    const int64_t i32_want[4] = {1, -2, 3, INT32_MAX};
    CHECK(hn_gguf_get_arr(g, "t.arr_i32", &elem, &n) == HN_OK && elem == HN_GGUF_INT32 && n == 4,
          "arr_i32: elem %d n %llu", elem, (unsigned long long)n);
    for (uint64_t i = 0; i < 4; i++)
        CHECK(hn_gguf_arr_int(g, "t.arr_i32", i, &iv) == HN_OK && iv == i32_want[i],
              "arr_i32[%llu] = %lld", (unsigned long long)i, (long long)iv);
    CHECK(hn_gguf_arr_int(g, "t.arr_i32", 4, &iv) == HN_ERR && strstr(hn_error_message(), "4"),
          "index out of range: %s", hn_error_message());
    const int64_t u8_want[3] = {0, 127, 255};
    CHECK(hn_gguf_get_arr(g, "t.arr_u8", &elem, &n) == HN_OK && elem == HN_GGUF_UINT8 && n == 3,
          "arr_u8");
    for (uint64_t i = 0; i < 3; i++)
        CHECK(hn_gguf_arr_int(g, "t.arr_u8", i, &iv) == HN_OK && iv == u8_want[i], "arr_u8[%d]",
              (int)i);
    CHECK(hn_gguf_get_arr(g, "t.arr_f32", &elem, &n) == HN_OK && elem == HN_GGUF_FLOAT32 && n == 2,
          "arr_f32");
    CHECK(hn_gguf_arr_int(g, "t.arr_f32", 0, &iv) == HN_ERR, "float array elements are no ints");

    const char* strs[4] = {"a", "", "\xc3\xbcn\xc3\xaf", "a\nb"};
    CHECK(hn_gguf_get_arr(g, "t.arr_str", &elem, &n) == HN_OK && elem == HN_GGUF_STRING && n == 4,
          "arr_str");
    for (uint64_t i = 0; i < 4; i++) {
        s = hn_gguf_arr_str(g, "t.arr_str", i, &len);
        CHECK(s && len == strlen(strs[i]) && strcmp(s, strs[i]) == 0, "arr_str[%d] '%s'", (int)i,
              s ? s : "(null)");
    }
    CHECK(hn_gguf_arr_str(g, "t.arr_i32", 0, &len) == NULL, "int array elements are no strings");
    CHECK(hn_gguf_arr_str(g, "t.str", 0, &len) == NULL && strstr(hn_error_message(), "array"),
          "a string is not an array: %s", hn_error_message());

    CHECK(hn_gguf_get_arr(g, "t.arr_nested", &elem, &n) == HN_OK && elem == HN_GGUF_ARRAY && n == 3,
          "nested array");
    CHECK(hn_gguf_get_arr(g, "t.arr_nested_str", &elem, &n) == HN_OK && elem == HN_GGUF_ARRAY &&
              n == 2,
          "nested array of strings");
    CHECK(hn_gguf_arr_int(g, "t.arr_nested", 0, &iv) == HN_ERR, "nested elements are no ints");
    CHECK(hn_gguf_key(g, 22, NULL) == NULL && hn_gguf_key(g, -1, NULL) == NULL, "key index");
    hn_gguf_close(g);
}

static const struct {
    const char* name;
    int type;
    int ndim;
    int64_t dims[4];
    size_t nbytes;
} tensors_want[] = {
    {"f32", HN_GGML_F32, 2, {5, 3, 1, 1}, 60},
    {"f32_4d", HN_GGML_F32, 4, {4, 3, 1, 2}, 96},
    {"f16", HN_GGML_F16, 2, {8, 2, 1, 1}, 32},
    {"bf16", HN_GGML_BF16, 2, {4, 3, 1, 1}, 24},
    {"q8_0", HN_GGML_Q8_0, 2, {64, 2, 1, 1}, 4 * 34},
    {"q4_0", HN_GGML_Q4_0, 2, {64, 2, 1, 1}, 4 * 18},
    {"q4_1", HN_GGML_Q4_1, 2, {64, 2, 1, 1}, 4 * 20},
    {"q4_k", HN_GGML_Q4_K, 2, {256, 3, 1, 1}, 3 * 144},
    {"q6_k", HN_GGML_Q6_K, 2, {512, 2, 1, 1}, 4 * 210},
    {"q5_k", 13, 2, {256, 1, 1, 1}, 176},
};
#define NTENSORS ((int)(sizeof tensors_want / sizeof tensors_want[0]))

static void test_tensor_infos_match_the_writer(void) {
    HnGguf* g = open_fixture("types.gguf");
    if (!g) return;
    CHECK(hn_gguf_tensor_count(g) == NTENSORS, "tensor count %d", hn_gguf_tensor_count(g));
    for (int i = 0; i < NTENSORS && i < hn_gguf_tensor_count(g); i++) {
        const HnGgufTensor* t = hn_gguf_tensor(g, i);
        CHECK(strcmp(t->name, tensors_want[i].name) == 0, "tensor %d is '%s'", i, t->name);
        CHECK(t->type == tensors_want[i].type, "%s type %d", t->name, t->type);
        CHECK(t->ndim == tensors_want[i].ndim, "%s ndim %d", t->name, t->ndim);
        size_t numel = 1;
        for (int d = 0; d < 4; d++) {
            CHECK(t->dims[d] == tensors_want[i].dims[d], "%s dims[%d] = %lld", t->name, d,
                  (long long)t->dims[d]);
            numel *= (size_t)tensors_want[i].dims[d];
        }
        CHECK(t->numel == numel, "%s numel %zu", t->name, t->numel);
        CHECK(t->nbytes == tensors_want[i].nbytes, "%s nbytes %zu", t->name, t->nbytes);
        /* gguf-py honours general.alignment = 64: every tensor's data starts aligned */
        CHECK(((uintptr_t)t->data & 63) == 0, "%s data aligned to 64", t->name);
        CHECK(hn_gguf_find_tensor(g, t->name) == t, "find %s", t->name);
    }
    CHECK(strcmp(hn_gguf_type_name(HN_GGML_Q4_K), "Q4_K") == 0, "type name");
    CHECK(strcmp(hn_gguf_type_name(4), "unknown") == 0, "removed type 4 is unknown");
    CHECK(hn_gguf_find_tensor(g, "nope") == NULL && strstr(hn_error_message(), "nope"),
          "missing tensor: %s", hn_error_message());
    CHECK(hn_gguf_tensor(g, NTENSORS) == NULL && hn_gguf_tensor(g, -1) == NULL, "tensor index");
    hn_gguf_close(g);
}

/* exact to the bit (NaN payloads included) against gguf.quants.dequantize: every type is a
 * product (and for Q4_1/Q4_K a sum) of fp16 values and small integers, computed in float in
 * the same order as gguf-py */
static void test_dequantize_equals_gguf_py_bit_for_bit(void) {
    HnGguf* g = open_fixture("types.gguf");
    if (!g) return;
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf/types.f32", fixtures);
    FILE* f = fopen(path, "rb");
    CHECK(f != NULL, "open %s", path);
    float* ref = malloc(4096 * sizeof *ref);
    float* got = malloc(4096 * sizeof *got);
    for (int i = 0; f && i < hn_gguf_tensor_count(g); i++) {
        const HnGgufTensor* t = hn_gguf_tensor(g, i);
        if (t->type == 13) continue; /* Q5_K: no reference, see the next test */
        CHECK(t->numel <= 4096, "%s fits", t->name);
        if (t->numel > 4096) break;
        CHECK(fread(ref, sizeof *ref, t->numel, f) == t->numel, "%s reference values", t->name);
        memset(got, 0xff, t->numel * sizeof *got);
        CHECK(hn_gguf_dequantize(g, t, got, t->numel) == HN_OK, "%s: %s", t->name,
              hn_error_message());
        size_t bad = 0;
        for (size_t j = 0; j < t->numel; j++) {
            if (memcmp(&got[j], &ref[j], 4) != 0 && bad++ < 3)
                fprintf(stderr, "  %s[%zu] = %.9g, gguf-py %.9g\n", t->name, j, got[j], ref[j]);
        }
        CHECK(bad == 0, "%s: %zu of %zu values differ from gguf-py", t->name, bad, t->numel);
    }
    if (f) {
        CHECK(fgetc(f) == EOF, "every reference value used");
        fclose(f);
    }
    const HnGgufTensor* t = hn_gguf_find_tensor(g, "f32");
    CHECK(t && hn_gguf_dequantize(g, t, got, 14) == HN_ERR && strstr(hn_error_message(), "15"),
          "wrong element count: %s", hn_error_message());
    free(ref);
    free(got);
    hn_gguf_close(g);
}

static void test_unsupported_type_fails_at_dequantize(void) {
    HnGguf* g = open_fixture("types.gguf");
    if (!g) return;
    const HnGgufTensor* t = hn_gguf_find_tensor(g, "q5_k");
    float buf[256];
    CHECK(t && hn_gguf_dequantize(g, t, buf, 256) == HN_ERR, "Q5_K does not dequantize");
    const char* msg = hn_error_message();
    CHECK(strstr(msg, "unsupported quantization type 13") && strstr(msg, "q5_k") &&
              strstr(msg, "types.gguf") && !strchr(msg, '\n'),
          "message: %s", msg);
    hn_gguf_close(g);
}

static void test_version_2_reads(void) {
    HnGguf* g = open_fixture("v2.gguf");
    if (!g) return;
    int64_t v = 0;
    float w[3];
    const HnGgufTensor* t = hn_gguf_find_tensor(g, "w");
    CHECK(hn_gguf_version(g) == 2, "version %d", hn_gguf_version(g));
    CHECK(hn_gguf_get_int(g, "v2.answer", &v) == HN_OK && v == 42, "v2.answer %lld", (long long)v);
    CHECK(t && hn_gguf_dequantize(g, t, w, 3) == HN_OK && w[0] == 1.0f && w[1] == -2.0f &&
              w[2] == 0.5f,
          "v2 tensor");
    hn_gguf_close(g);
}

/* ---- hostile files, built byte by byte ---- */

typedef struct {
    unsigned char* p;
    size_t n, cap;
} Buf;

static void put(Buf* b, const void* src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void put_u32(Buf* b, uint32_t v) {
    put(b, &v, 4);
}
static void put_u64(Buf* b, uint64_t v) {
    put(b, &v, 8);
}
static void put_str(Buf* b, const char* s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void pad_to(Buf* b, size_t align) {
    while (b->n % align)
        put(b, "", 1);
}

/* arrays nested this deep are legal (the reader allows 8) */
#define GGUF_TEST_NEST_OK 3

/* what a small valid file holds, and the knobs the hostile cases turn */
typedef struct {
    char magic[5];
    uint32_t version;
    int fake_counts; /* write n_tensors/n_kv below instead of the real ones */
    uint64_t n_tensors, n_kv;
    uint64_t str_len;   /* the length written for a.str's "hi" */
    uint64_t arr_count; /* the count written for a.arr's two strings */
    uint32_t str_type;  /* the value type written for a.str */
    int alignment;      /* add general.alignment (uint32) with this value; -1: none */
    int nest_depth;     /* add a.nest, arrays nested this deep around one uint8 */
    int dup_key;        /* name the third key a.str too */
    uint32_t t0_ndim;
    uint64_t t0_dim0; /* t0 is Q8_0 (dim0, 2) */
    uint32_t t0_type;
    uint64_t t1_offset; /* t1 is F32 (3) */
    const char* t1_name;
} Spec;

static Spec valid_spec(void) {
    return (Spec){.magic = "GGUF",
                  .version = 3,
                  .str_len = 2,
                  .arr_count = 2,
                  .str_type = HN_GGUF_STRING,
                  .alignment = -1,
                  .t0_ndim = 2,
                  .t0_dim0 = 32,
                  .t0_type = HN_GGML_Q8_0,
                  .t1_offset = 96,
                  .t1_name = "t1"};
}

/* the file; *data_end is where its last tensor's bytes end */
static Buf build(const Spec* s, size_t* data_end) {
    Buf b = {0};
    int n_kv = 3 + (s->alignment >= 0) + (s->nest_depth > 0);
    put(&b, s->magic, 4);
    put_u32(&b, s->version);
    put_u64(&b, s->fake_counts ? s->n_tensors : 2);
    put_u64(&b, s->fake_counts ? s->n_kv : (uint64_t)n_kv);

    put_str(&b, "a.str");
    put_u32(&b, s->str_type);
    put_u64(&b, s->str_len);
    put(&b, "hi", 2);
    put_str(&b, "a.arr");
    put_u32(&b, HN_GGUF_ARRAY);
    put_u32(&b, HN_GGUF_STRING);
    put_u64(&b, s->arr_count);
    put_str(&b, "x");
    put_str(&b, "yy");
    put_str(&b, s->dup_key ? "a.str" : "a.num");
    put_u32(&b, HN_GGUF_UINT32);
    put_u32(&b, 7);
    if (s->alignment >= 0) {
        put_str(&b, "general.alignment");
        put_u32(&b, HN_GGUF_UINT32);
        put_u32(&b, (uint32_t)s->alignment);
    }
    if (s->nest_depth > 0) {
        put_str(&b, "a.nest");
        put_u32(&b, HN_GGUF_ARRAY);
        for (int i = 1; i < s->nest_depth; i++) {
            put_u32(&b, HN_GGUF_ARRAY);
            put_u64(&b, 1);
        }
        put_u32(&b, HN_GGUF_UINT8);
        put_u64(&b, 1);
        put(&b, "\x05", 1);
    }

    put_str(&b, "t0");
    put_u32(&b, s->t0_ndim);
    for (uint32_t d = 0; d < s->t0_ndim; d++)
        put_u64(&b, d == 0 ? s->t0_dim0 : 2);
    put_u32(&b, s->t0_type);
    put_u64(&b, 0);
    put_str(&b, s->t1_name);
    put_u32(&b, 1);
    put_u64(&b, 3);
    put_u32(&b, HN_GGML_F32);
    put_u64(&b, s->t1_offset);

    pad_to(&b, 32);
    for (int blk = 0; blk < 2; blk++) { /* t0: two Q8_0 blocks, d = 0.5 (0x3800) */
        put(&b, "\x00\x38", 2);
        for (int j = 0; j < 32; j++)
            put(&b, &(signed char){(signed char)(j - 16)}, 1);
    }
    pad_to(&b, 32);
    const float t1[3] = {1.5f, -2.0f, 3.0f};
    put(&b, t1, sizeof t1);
    *data_end = b.n;
    pad_to(&b, 32);
    return b;
}

static void write_file(const char* path, const void* p, size_t n) {
    FILE* f = fopen(path, "wb");
    CHECK(f != NULL, "create %s", path);
    if (!f) return;
    CHECK(fwrite(p, 1, n, f) == n, "write %s", path);
    fclose(f);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* opening path fails quickly with one line naming the file and containing want */
static void expect_open_fails(const char* path, const char* want, const char* what) {
    hn_error_clear();
    double t0 = now();
    HnGguf* g = hn_gguf_open(path);
    double dt = now() - t0;
    const char* msg = hn_error_message();
    CHECK(g == NULL, "%s: opened", what);
    hn_gguf_close(g);
    CHECK(*msg && !strchr(msg, '\n') && strstr(msg, path), "%s: message '%s'", what, msg);
    CHECK(strstr(msg, want) != NULL, "%s: message '%s' lacks '%s'", what, msg, want);
    CHECK(dt < 0.5, "%s: took %.3f s", what, dt);
}

static void expect_spec_fails(const Spec* s, const char* name, const char* want) {
    char path[1024];
    size_t end;
    Buf b = build(s, &end);
    snprintf(path, sizeof path, "%s/gguf_%s.gguf", tmpdir, name);
    write_file(path, b.p, b.n);
    free(b.p);
    expect_open_fails(path, want, name);
}

static void test_the_built_file_is_valid(void) {
    char path[1024];
    size_t end;
    Spec s = valid_spec();
    s.nest_depth = GGUF_TEST_NEST_OK;
    Buf b = build(&s, &end);
    snprintf(path, sizeof path, "%s/gguf_valid.gguf", tmpdir);
    write_file(path, b.p, b.n);
    free(b.p);
    HnGguf* g = hn_gguf_open(path);
    CHECK(g != NULL, "valid built file: %s", hn_error_message());
    if (!g) return;
    float x[64];
    const HnGgufTensor* t0 = hn_gguf_find_tensor(g, "t0");
    CHECK(t0 && hn_gguf_dequantize(g, t0, x, 64) == HN_OK && x[0] == -8.0f && x[63] == 7.5f,
          "t0 values");
    const HnGgufTensor* t1 = hn_gguf_find_tensor(g, "t1");
    CHECK(t1 && hn_gguf_dequantize(g, t1, x, 3) == HN_OK && x[1] == -2.0f, "t1 values");
    HnGgufType elem;
    uint64_t n;
    CHECK(hn_gguf_get_arr(g, "a.nest", &elem, &n) == HN_OK && elem == HN_GGUF_ARRAY && n == 1,
          "nested %d deep", GGUF_TEST_NEST_OK);
    hn_gguf_close(g);
}

/* every prefix of a valid file: those that cut into the tensor data or before must fail
 * cleanly; those that only drop the trailing padding still hold everything and must open */
static void test_every_truncation_fails_cleanly(void) {
    char path[1024];
    size_t end;
    Spec s = valid_spec();
    Buf b = build(&s, &end);
    snprintf(path, sizeof path, "%s/gguf_prefix.gguf", tmpdir);
    int wrong = 0;
    for (size_t len = 0; len <= b.n; len++) {
        write_file(path, b.p, len);
        hn_error_clear();
        HnGguf* g = hn_gguf_open(path);
        const char* msg = hn_error_message();
        if (len >= end) {
            if (!g) wrong++, fprintf(stderr, "  prefix %zu of %zu: %s\n", len, b.n, msg);
        } else if (g || !*msg || strchr(msg, '\n')) {
            wrong++;
            fprintf(stderr, "  prefix %zu of %zu opened or bad message '%s'\n", len, b.n, msg);
        }
        hn_gguf_close(g);
    }
    CHECK(wrong == 0, "%d of %zu prefixes misbehaved", wrong, b.n + 1);
    free(b.p);
}

static void test_hostile_headers_fail_fast(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gguf_empty.gguf", tmpdir);
    write_file(path, "", 0);
    expect_open_fails(path, "too short", "empty file");
    snprintf(path, sizeof path, "%s/gguf_3bytes.gguf", tmpdir);
    write_file(path, "GGU", 3);
    expect_open_fails(path, "too short", "3 bytes");
    snprintf(path, sizeof path, "%s/gguf_missing.gguf", tmpdir);
    remove(path);
    expect_open_fails(path, "cannot open", "missing file");
    expect_open_fails(tmpdir, "regular", "a directory");

    Spec s = valid_spec();
    memcpy(s.magic, "GGML", 4);
    expect_spec_fails(&s, "magic", "not a GGUF file");
    s = valid_spec(), s.version = 1;
    expect_spec_fails(&s, "v1", "version 1");
    s = valid_spec(), s.version = 99;
    expect_spec_fails(&s, "v99", "version 99");
    s = valid_spec(), s.version = 0x03000000;
    expect_spec_fails(&s, "big_endian", "big-endian");
    s = valid_spec(), s.fake_counts = 1, s.n_tensors = UINT64_MAX / 2, s.n_kv = 3;
    expect_spec_fails(&s, "huge_tensor_count", "tensors");
    s = valid_spec(), s.fake_counts = 1, s.n_tensors = 2, s.n_kv = (uint64_t)1 << 40;
    expect_spec_fails(&s, "huge_kv_count", "metadata keys");
    s = valid_spec(), s.fake_counts = 1, s.n_tensors = 2, s.n_kv = 8;
    expect_spec_fails(&s, "more_keys_than_written", "");
    s = valid_spec(), s.str_len = UINT64_MAX - 3;
    expect_spec_fails(&s, "huge_string", "claims");
    s = valid_spec(), s.str_len = 1000;
    expect_spec_fails(&s, "long_string", "claims");
    s = valid_spec(), s.arr_count = (uint64_t)1 << 61;
    expect_spec_fails(&s, "huge_array", "a.arr");
    /* a count that passes the 8-bytes-a-string bound: the strings run into the next key */
    s = valid_spec(), s.arr_count = 3;
    expect_spec_fails(&s, "array_one_string_too_many", "claims");
    s = valid_spec(), s.str_type = 13;
    expect_spec_fails(&s, "unknown_value_type", "value type 13");
    s = valid_spec(), s.nest_depth = 1000;
    expect_spec_fails(&s, "deep_nesting", "nests arrays");
    s = valid_spec(), s.dup_key = 1;
    expect_spec_fails(&s, "duplicate_key", "twice");
}

static void test_hostile_tensor_infos_fail(void) {
    Spec s = valid_spec();
    s.t0_ndim = 0;
    expect_spec_fails(&s, "ndim0", "0 dimensions");
    s = valid_spec(), s.t0_ndim = 5;
    expect_spec_fails(&s, "ndim5", "5 dimensions");
    s = valid_spec(), s.t0_dim0 = 0;
    expect_spec_fails(&s, "dim0", "dimension 0");
    s = valid_spec(), s.t0_dim0 = UINT64_MAX;
    expect_spec_fails(&s, "dim_huge", "dimension 0");
    s = valid_spec(), s.t0_dim0 = (uint64_t)1 << 62; /* times 2: numel fits, nbytes overflows */
    expect_spec_fails(&s, "dim_absurd", "t0");
    s = valid_spec(), s.t0_dim0 = 33;
    expect_spec_fails(&s, "row_not_whole_blocks", "block");
    s = valid_spec(), s.t1_offset = 1 << 20;
    expect_spec_fails(&s, "offset_beyond_file", "beyond the end");
    s = valid_spec(), s.t1_offset = 128; /* aligned, but 12 bytes from there pass the end */
    expect_spec_fails(&s, "tensor_past_end", "beyond the end");
    s = valid_spec(), s.t1_offset = 100;
    expect_spec_fails(&s, "misaligned_offset", "not a multiple of the alignment");
    s = valid_spec(), s.alignment = 0;
    expect_spec_fails(&s, "alignment0", "power of two");
    s = valid_spec(), s.alignment = 48;
    expect_spec_fails(&s, "alignment48", "power of two");
    s = valid_spec(), s.alignment = 64; /* t1 at 96 is no longer aligned */
    expect_spec_fails(&s, "alignment64", "not a multiple of the alignment 64");
    s = valid_spec(), s.t1_name = "t0";
    expect_spec_fails(&s, "duplicate_tensor", "appears twice");
}

static void test_unknown_tensor_type_opens_but_does_not_dequantize(void) {
    char path[1024];
    size_t end;
    Spec s = valid_spec();
    s.t0_type = 99;
    Buf b = build(&s, &end);
    snprintf(path, sizeof path, "%s/gguf_type99.gguf", tmpdir);
    write_file(path, b.p, b.n);
    free(b.p);
    HnGguf* g = hn_gguf_open(path);
    CHECK(g != NULL, "unknown type opens: %s", hn_error_message());
    if (!g) return;
    const HnGgufTensor* t = hn_gguf_find_tensor(g, "t0");
    float x[64];
    CHECK(t && t->type == 99 && t->nbytes == 0, "t0 listed as type 99");
    CHECK(t && hn_gguf_dequantize(g, t, x, 64) == HN_ERR, "type 99 does not dequantize");
    const char* msg = hn_error_message();
    CHECK(strstr(msg, "unsupported quantization type 99") && strstr(msg, "'t0'") &&
              strstr(msg, path) && !strchr(msg, '\n'),
          "message: %s", msg);
    hn_gguf_close(g);
}

/* the --dump helper mode: one tensor's dequantized values, raw float32 */
static int dump(const char* file, const char* name, const char* out) {
    HnGguf* g = hn_gguf_open(file);
    const HnGgufTensor* t = g ? hn_gguf_find_tensor(g, name) : NULL;
    float* x = t ? malloc(t->numel * sizeof *x) : NULL;
    FILE* f = NULL;
    int ok = x && hn_gguf_dequantize(g, t, x, t->numel) == HN_OK && (f = fopen(out, "wb")) &&
             fwrite(x, sizeof *x, t->numel, f) == t->numel;
    if (f && fclose(f) != 0) ok = 0;
    if (!ok)
        fprintf(stderr, "test_gguf --dump: %s\n",
                *hn_error_message() ? hn_error_message() : "cannot write");
    free(x);
    hn_gguf_close(g);
    return ok ? 0 : 1;
}

int main(int argc, char** argv) {
    if (argc == 5 && strcmp(argv[1], "--dump") == 0) return dump(argv[2], argv[3], argv[4]);
    snprintf(fixtures, sizeof fixtures, "%s", hn_test_env("HONE_FIXTURES"));
    snprintf(tmpdir, sizeof tmpdir, "%s", hn_test_env("HONE_TEST_TMP"));
    mkdir(tmpdir, 0777);
    test_every_metadata_type_reads_exactly();
    test_tensor_infos_match_the_writer();
    test_dequantize_equals_gguf_py_bit_for_bit();
    test_unsupported_type_fails_at_dequantize();
    test_version_2_reads();
    test_the_built_file_is_valid();
    test_every_truncation_fails_cleanly();
    test_hostile_headers_fail_fast();
    test_hostile_tensor_infos_fail();
    test_unknown_tensor_type_opens_but_does_not_dequantize();
    return hn_test_finish("test_gguf");
}
