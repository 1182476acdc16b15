/*
 * The safetensors reader against files written by an independent writer (the Python one in
 * scripts/make_fixtures.py): exact values of every dtype, the tiny GPT-2 fixture's layout and
 * internal consistency, and hostile files that must fail with one clear message, not crash.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "data/safetensors.h"
#include "testing.h"

static char fixtures[512], tmpdir[512];

static HnSafetensors* open_fixture(const char* name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", fixtures, name);
    HnSafetensors* st = hn_safetensors_open(path);
    CHECK(st != NULL, "open %s: %s", path, hn_error_message());
    return st;
}

static int same_shape(const HnStTensor* t, int rank, const int64_t* shape) {
    if (!t || t->rank != rank) return 0;
    for (int i = 0; i < rank; i++)
        if (t->shape[i] != shape[i]) return 0;
    return 1;
}

static void test_every_dtype_reads_exactly(void) {
    HnSafetensors* st = open_fixture("st_dtypes.safetensors");
    if (!st) return;
    CHECK(hn_safetensors_count(st) == 8, "count %d", hn_safetensors_count(st));
    CHECK(strcmp(hn_safetensors_tensor(st, 0)->name, "f32") == 0, "header order kept");

    float f[8];
    const float f32_want[6] = {0.0f, 1.0f, -2.0f, 0.5f, 3.25f, -1024.0f};
    CHECK(hn_safetensors_read_f32(st, "f32", f, 6) == HN_OK, "%s", hn_error_message());
    CHECK(memcmp(f, f32_want, sizeof f32_want) == 0, "f32 values");
    CHECK(same_shape(hn_safetensors_find(st, "f32"), 2, (const int64_t[]){2, 3}), "f32 shape");

    /* 65504: the largest finite half; 2^-14 the smallest normal; 2^-24 the smallest subnormal */
    const float f16_want[8] = {1.0f,     -2.5f, 65504.0f,  0x1p-14f,
                               0x1p-24f, 0.0f,  3.140625f, -0.0009765625f};
    CHECK(hn_safetensors_read_f32(st, "f16", f, 8) == HN_OK, "%s", hn_error_message());
    for (int i = 0; i < 8; i++)
        CHECK(f[i] == f16_want[i], "f16[%d] = %g", i, f[i]);
    CHECK(hn_safetensors_find(st, "f16")->dtype == HN_ST_F16, "f16 dtype");

    const float bf16_want[5] = {1.0f, -3.0f, 0.15625f, 0x1p100f, 0x1p-130f};
    CHECK(hn_safetensors_read_f32(st, "bf16", f, 5) == HN_OK, "%s", hn_error_message());
    for (int i = 0; i < 5; i++)
        CHECK(f[i] == bf16_want[i], "bf16[%d] = %g", i, f[i]);

    int32_t v[4];
    const int32_t i32_want[4] = {0, -1, INT32_MAX, INT32_MIN};
    CHECK(hn_safetensors_read_i32(st, "i32", v, 4) == HN_OK, "%s", hn_error_message());
    CHECK(memcmp(v, i32_want, sizeof v) == 0, "i32 values");
    const int32_t i64_want[4] = {5, -7, INT32_MAX, INT32_MIN};
    CHECK(hn_safetensors_read_i32(st, "i64", v, 4) == HN_OK, "%s", hn_error_message());
    CHECK(memcmp(v, i64_want, sizeof v) == 0, "i64 values");

    const HnStTensor* scalar = hn_safetensors_find(st, "scalar");
    CHECK(scalar && scalar->rank == 0 && scalar->numel == 1, "a scalar has rank 0, one element");
    CHECK(hn_safetensors_read_f32(st, "scalar", f, 1) == HN_OK && f[0] == 42.0f, "scalar");
    const HnStTensor* empty = hn_safetensors_find(st, "empty");
    CHECK(empty && empty->numel == 0 && same_shape(empty, 2, (const int64_t[]){0, 3}), "empty");
    CHECK(hn_safetensors_read_f32(st, "empty", NULL, 0) == HN_OK, "%s", hn_error_message());

    const char* note = hn_safetensors_meta(st, "note");
    CHECK(note && strcmp(note, "hone dtype fixture") == 0, "metadata 'note'");
    hn_safetensors_close(st);
}

static void test_bad_reads_fail_naming_file_and_tensor(void) {
    HnSafetensors* st = open_fixture("st_dtypes.safetensors");
    if (!st) return;
    float f[8];
    int32_t v[8];
    const char* msg = hn_error_message();
    CHECK(hn_safetensors_read_f32(st, "nope", f, 1) == HN_ERR &&
              strstr(msg, "st_dtypes.safetensors") && strstr(msg, "'nope'"),
          "missing tensor: %s", msg);
    CHECK(hn_safetensors_find(st, "nope") == NULL && strstr(msg, "'nope'"), "find: %s", msg);
    CHECK(hn_safetensors_read_f32(st, "f32", f, 5) == HN_ERR && strstr(msg, "6 elements"),
          "wrong count: %s", msg);
    CHECK(hn_safetensors_read_f32(st, "i32", f, 4) == HN_ERR && strstr(msg, "I32"),
          "int read as float: %s", msg);
    CHECK(hn_safetensors_read_i32(st, "f16", v, 8) == HN_ERR && strstr(msg, "F16"),
          "float read as int: %s", msg);
    CHECK(hn_safetensors_read_i32(st, "i64_big", v, 1) == HN_ERR && strstr(msg, "i64_big") &&
              strstr(msg, "int32"),
          "I64 out of int32 range: %s", msg);
    CHECK(hn_safetensors_meta(st, "nope") == NULL, "missing metadata key");
    hn_safetensors_close(st);
}

/* the lr the fixture's schedule gives step s (0-based), from its metadata */
static double schedule_lr(int s, double peak, int warmup, int steps, double min_ratio) {
    if (s < warmup) return peak * (s + 1) / warmup;
    double lo = peak * min_ratio, progress = (double)(s - warmup) / (steps - warmup);
    return lo + 0.5 * (1.0 + cos(3.14159265358979323846 * progress)) * (peak - lo);
}

static int meta_int(const HnSafetensors* st, const char* key) {
    const char* s = hn_safetensors_meta(st, key);
    CHECK(s != NULL, "metadata %s", key);
    return s ? atoi(s) : -1;
}

static double meta_double(const HnSafetensors* st, const char* key) {
    const char* s = hn_safetensors_meta(st, key);
    CHECK(s != NULL, "metadata %s", key);
    return s ? atof(s) : NAN;
}

static void test_gpt2_fixture_is_consistent(void) {
    HnSafetensors* st = open_fixture("gpt2_tiny.safetensors");
    if (!st) return;
    int L = meta_int(st, "L"), C = meta_int(st, "C"), V = meta_int(st, "V");
    int Vp = meta_int(st, "Vp"), B = meta_int(st, "B"), T = meta_int(st, "T");
    int steps = meta_int(st, "steps"), accum = meta_int(st, "accum");
    CHECK(L == 2 && C == 64 && V == 300 && Vp == 384 && B == 2 && T == 16 && steps == 10 &&
              accum == 2,
          "hyperparameters");
    CHECK(meta_int(st, "NH") == 4 && meta_int(st, "maxT") == 32, "NH, maxT");
    /* param., grad., final. for 4 + 12 L rows, and 9 input/output/training arrays */
    CHECK(hn_safetensors_count(st) == 3 * (4 + 12 * L) + 9, "count %d", hn_safetensors_count(st));
    CHECK(
        same_shape(hn_safetensors_find(st, "param.tok_embed.weight"), 2, (const int64_t[]){Vp, C}),
        "tok_embed shape");
    CHECK(same_shape(hn_safetensors_find(st, "grad.layers.1.attn.qkv.weight"), 2,
                     (const int64_t[]){3 * C, C}),
          "qkv shape");
    CHECK(same_shape(hn_safetensors_find(st, "final.layers.0.mlp.down.weight"), 2,
                     (const int64_t[]){C, 4 * C}),
          "mlp.down shape");
    CHECK(same_shape(hn_safetensors_find(st, "train.tokens"), 4,
                     (const int64_t[]){steps, accum, B, T}),
          "train.tokens shape");
    if (L != 2 || C != 64 || V != 300 || Vp != 384 || B != 2 || T != 16) {
        hn_safetensors_close(st);
        return;
    }

    static float wte[384 * 64], logits[2 * 16 * 300];
    const char* embeds[] = {"param.tok_embed.weight", "grad.tok_embed.weight",
                            "final.tok_embed.weight"};
    for (int k = 0; k < 3; k++) {
        CHECK(hn_safetensors_read_f32(st, embeds[k], wte, (size_t)Vp * C) == HN_OK, "%s",
              hn_error_message());
        int nonzero = 0;
        for (int i = V * C; i < Vp * C; i++)
            nonzero += wte[i] != 0.0f;
        CHECK(nonzero == 0, "%s: %d non-zero entries in the padded rows", embeds[k], nonzero);
    }

    /* the stored loss is the mean cross-entropy of the stored logits over counted targets */
    int32_t targets[2 * 16];
    float loss;
    CHECK(hn_safetensors_read_i32(st, "input.targets", targets, 32) == HN_OK, "targets");
    CHECK(hn_safetensors_read_f32(st, "out.logits", logits, (size_t)32 * V) == HN_OK, "logits");
    CHECK(hn_safetensors_read_f32(st, "out.loss", &loss, 1) == HN_OK, "loss");
    double sum = 0.0;
    int counted = 0, ignored = 0;
    for (int i = 0; i < 32; i++) {
        CHECK(targets[i] >= -1 && targets[i] < V, "target %d", targets[i]);
        if (targets[i] < 0 || targets[i] >= V) {
            ignored += targets[i] == -1;
            continue;
        }
        const float* row = logits + (size_t)i * V;
        double mx = row[0], z = 0.0;
        for (int j = 1; j < V; j++)
            mx = fmax(mx, row[j]);
        for (int j = 0; j < V; j++)
            z += exp(row[j] - mx);
        sum += log(z) + mx - row[targets[i]];
        counted++;
    }
    CHECK(counted > 0 && ignored > 0, "counted %d, ignored %d", counted, ignored);
    CHECK(hn_close(loss, sum / counted, 1e-6, 0.0), "loss %.9g vs %.9g from logits", loss,
          sum / counted);

    float lrs[10];
    CHECK(hn_safetensors_read_f32(st, "train.lrs", lrs, 10) == HN_OK, "lrs");
    for (int s = 0; s < 10; s++) {
        double want = schedule_lr(s, meta_double(st, "lr"), meta_int(st, "warmup"), steps,
                                  meta_double(st, "min_lr_ratio"));
        CHECK(hn_close(lrs[s], want, 1e-6, 0.0), "lr[%d] %g vs %g", s, lrs[s], want);
    }
    hn_safetensors_close(st);
}

/* ---- hostile files ---- */

static void write_bytes(const char* path, const void* bytes, size_t n) {
    FILE* f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    if (n) fwrite(bytes, 1, n, f);
    fclose(f);
}

/* a file with the given header text and ndata zero bytes of data */
static void write_st(const char* path, const char* header, size_t ndata) {
    size_t hlen = strlen(header);
    unsigned char buf[4096] = {0};
    uint64_t len = hlen;
    memcpy(buf, &len, 8);
    memcpy(buf + 8, header, hlen);
    write_bytes(path, buf, 8 + hlen + ndata);
}

static void expect_open_fails(const char* path, const char* needle) {
    hn_error_clear();
    HnSafetensors* st = hn_safetensors_open(path);
    const char* msg = hn_error_message();
    CHECK(st == NULL, "%s opened", path);
    CHECK(strstr(msg, path) != NULL, "message names the file: '%s'", msg);
    CHECK(!needle || strstr(msg, needle), "message for %s lacks '%s': '%s'", path, needle, msg);
    hn_safetensors_close(st);
}

static void test_hostile_files_fail_cleanly(void) {
    char path[1024];
    struct {
        const char* name;
        const char* header; /* NULL: raw bytes below */
        size_t ndata;
        const char* needle; /* expected in the message */
    } cases[] = {
        {"not_json", "{\"a\": ", 0, "JSON"},
        {"array", "[1, 2]", 0, "object"},
        {"trailing", "{} x", 0, "after"},
        {"unknown_dtype", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "U8"},
        {"no_dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'"},
        {"entry_not_object", "{\"w\":[1]}", 0, "'w'"},
        {"negative_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
         "shape"},
        {"fractional_dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
         "shape"},
        {"rank_9",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "rank"},
        {"past_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
         "data_offsets"},
        {"begin_after_end", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8,
         "data_offsets"},
        {"size_mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "'w'"},
        {"numel_overflow",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,0]}}",
         0, "overflow"},
        {"bytes_overflow",
         "{\"w\":{\"dtype\":\"I64\",\"shape\":[2147483648,1073741824],\"data_offsets\":[0,0]}}", 0,
         "overflows"},
        {"bad_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
         "data_offsets"},
        {"duplicate",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         4, "twice"},
        {"metadata_not_string", "{\"__metadata__\":{\"a\":1}}", 0, "__metadata__"},
        {"metadata_not_object", "{\"__metadata__\":[]}", 0, "__metadata__"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(path, sizeof path, "%s/st_%s.safetensors", tmpdir, cases[i].name);
        write_st(path, cases[i].header, cases[i].ndata);
        expect_open_fails(path, cases[i].needle);
    }

    snprintf(path, sizeof path, "%s/st_empty.safetensors", tmpdir);
    write_bytes(path, "", 0);
    expect_open_fails(path, "short");
    snprintf(path, sizeof path, "%s/st_4bytes.safetensors", tmpdir);
    write_bytes(path, "\x10\0\0\0", 4);
    expect_open_fails(path, "short");
    uint64_t lens[] = {1000, UINT64_MAX, (uint64_t)1 << 63};
    for (size_t i = 0; i < 3; i++) {
        unsigned char buf[24] = "........{}              ";
        memcpy(buf, &lens[i], 8);
        snprintf(path, sizeof path, "%s/st_long_header_%zu.safetensors", tmpdir, i);
        write_bytes(path, buf, sizeof buf);
        expect_open_fails(path, "header length");
    }
    /* a sparse file, so the header length fits in it but is over the 100 MB limit */
    snprintf(path, sizeof path, "%s/st_huge_header.safetensors", tmpdir);
    uint64_t huge = 100 * 1000 * 1000 + 1;
    write_bytes(path, &huge, 8);
    CHECK(truncate(path, (off_t)(8 + huge)) == 0, "cannot extend %s", path);
    expect_open_fails(path, "limit");
    remove(path);
    snprintf(path, sizeof path, "%s/st_missing.safetensors", tmpdir);
    remove(path);
    expect_open_fails(path, NULL);
    expect_open_fails(tmpdir, "regular");

    /* the minimal valid file: an empty header object */
    snprintf(path, sizeof path, "%s/st_minimal.safetensors", tmpdir);
    write_st(path, "{}", 0);
    HnSafetensors* st = hn_safetensors_open(path);
    CHECK(st && hn_safetensors_count(st) == 0, "'{}' is a valid file: %s", hn_error_message());
    CHECK(st && hn_safetensors_find(st, "w") == NULL, "nothing to find");
    hn_safetensors_close(st);
}

int main(void) {
    snprintf(fixtures, sizeof fixtures, "%s", hn_test_env("HONE_FIXTURES"));
    snprintf(tmpdir, sizeof tmpdir, "%s", hn_test_env("HONE_TEST_TMP"));
    if (mkdir(tmpdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "FAIL: cannot create %s\n", tmpdir);
        return 1;
    }
    test_every_dtype_reads_exactly();
    test_bad_reads_fail_naming_file_and_tensor();
    test_gpt2_fixture_is_consistent();
    test_hostile_files_fail_cleanly();
    return hn_test_finish("test_safetensors");
}
