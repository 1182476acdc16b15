/*
 * The CUDA ops of kernels/cuda/ops_cuda.h against the CPU ops of kernels/ops.h, which
 * tests/unit/test_ops*.c prove against double-precision references: each op runs on the
 * same fresh random inputs on both sides, and the results must agree.
 *
 * How the comparisons guard the contract:
 *   - outputs and overwritten gradients are poisoned with NaN on the device before every
 *     run, so an element the op forgets to write, or a += into a buffer it should
 *     overwrite, fails;
 *   - accumulated gradients start from the same random values on both sides and the
 *     increments are compared, so an op that overwrites instead fails;
 *   - every backward that reduces over rows runs twice on the device and must give the
 *     same bits (the backend promises no atomics in those reductions).
 * Errors are ||cuda - cpu|| / ||cpu|| (2-norms, in double; NaN or infinity fails).
 * Tolerances: elementwise ops, norms, cross-entropy 1e-5 (fp32 summation order and the CPU's
 * fast exp/tanh differ by ~1e-7); matmul 1e-5, which a TF32 GEMM (~4e-4 on random data)
 * fails; attention 1e-4 (softmax over up to 1024 keys, recomputed tile by tile in the
 * backward); AdamW and the sum of squares 1e-6.
 * Shapes: a small one (B=2, T=17, C=64, NH=4, NKV=2, HS=16, V=300 padded to 384) with odd
 * sizes and padded strides, GPT-2 small's (B=4, T=256, C=768, NH=12, HS=64, V=50257 padded
 * to 50304), and attention at T=1024.
 * Without a usable GPU the test skips (exit 77) with its reason; HONE_REQUIRE_GPU=1 turns the
 * skip into a failure (scripts/gpu_check.sh sets it).
 */
#include "core/error.h"
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "kernels/ops.h"
#include "testing.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"

#define ELEM_TOL 1e-5
#define MATMUL_TOL 1e-5
#define ATT_TOL 1e-4
#define OPT_TOL 1e-6

typedef struct {
    int B, T, C, NH, NKV, HS, V, Vp;
} Shape;

static const Shape SMALL = {2, 17, 64, 4, 2, 16, 300, 384};
static const Shape LARGE = {4, 256, 768, 12, 12, 64, 50257, 50304};

/* ---- buffers: a check allocates through these and release() frees them all ---- */

#define MAX_BUFS 64
static void* host_bufs[MAX_BUFS];
static void* dev_bufs[MAX_BUFS];
static int n_host, n_dev;

/* a failed launch can leave the CUDA context unusable, so the test stops at the first one */
static void stop(const char* what) {
    fprintf(stderr, "FAIL: %s: %s\n", what, hn_error_message());
    hn_test_failed++;
    hn_test_finish("test_cuda_ops");
    exit(1);
}

static void* keep(void* p) {
    if (!p || n_host == MAX_BUFS) abort();
    return host_bufs[n_host++] = p;
}

static float* h_alloc(size_t n) {
    return keep(alloc_f(n));
}

static float* h_randn(size_t n, float scale, float shift) {
    return keep(randn(n, scale, shift));
}

static float* h_copy(const float* x, size_t n) {
    return keep(copy_f(x, n));
}

static void* d_alloc(size_t bytes) {
    void* p = hn_cuda_alloc(bytes);
    if (!p) stop("hn_cuda_alloc");
    if (n_dev == MAX_BUFS) abort();
    return dev_bufs[n_dev++] = p;
}

static void upload(void* dst, const void* src, size_t bytes) {
    if (hn_cuda_upload(dst, src, bytes) != HN_OK) stop("hn_cuda_upload");
}

static float* d_from(const float* x, size_t n) {
    float* d = d_alloc(n * sizeof *d);
    upload(d, x, n * sizeof *d);
    return d;
}

static int* d_from_i(const int* x, size_t n) {
    int* d = d_alloc(n * sizeof *d);
    upload(d, x, n * sizeof *d);
    return d;
}

static void poison(float* d, size_t n) {
    float* nan = filled(n, NAN);
    upload(d, nan, n * sizeof *d);
    free(nan);
}

static float* d_nan(size_t n) {
    float* d = d_alloc(n * sizeof *d);
    poison(d, n);
    return d;
}

static float* h_from(const float* d, size_t n) {
    float* h = h_alloc(n);
    if (hn_cuda_download(h, d, n * sizeof *h) != HN_OK) stop("hn_cuda_download");
    return h;
}

static void release(void) {
    while (n_host)
        free(host_bufs[--n_host]);
    while (n_dev)
        hn_cuda_free(dev_bufs[--n_dev]);
}

/* an op's status, then the stream's: a kernel's own failure surfaces at the sync */
static void ran(int rc, const char* call) {
    if (rc != HN_OK || hn_cuda_sync() != HN_OK) stop(call);
}
#define RUN(call) ran((call), #call)

/* ---- measures and reports ---- */

/* ||got - ref|| / ||ref|| over columns [0, width) of `rows` rows `stride` apart; infinite
 * if anything is NaN or infinite */
static double rel_l2_strided(const float* got, const float* ref, size_t rows, size_t width,
                             size_t stride) {
    double d2 = 0.0, r2 = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < width; c++) {
            const double d = (double)got[r * stride + c] - ref[r * stride + c];
            d2 += d * d;
            r2 += (double)ref[r * stride + c] * ref[r * stride + c];
        }
    if (!isfinite(d2) || !isfinite(r2)) return INFINITY;
    return r2 > 0.0 ? sqrt(d2 / r2) : sqrt(d2);
}

static double rel_l2(const float* got, const float* ref, size_t n) {
    return rel_l2_strided(got, ref, 1, n, n);
}

/* for buffers both sides accumulated into, starting from `before`: the increments' error */
static double rel_l2_added(const float* got, const float* ref, const float* before, size_t n) {
    double d2 = 0.0, r2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)got[i] - ref[i], r = (double)ref[i] - before[i];
        d2 += d * d;
        r2 += r * r;
    }
    if (!isfinite(d2) || !isfinite(r2)) return INFINITY;
    return r2 > 0.0 ? sqrt(d2 / r2) : sqrt(d2);
}

static int bits_equal_strided(const float* a, const float* b, size_t rows, size_t width,
                              size_t stride) {
    for (size_t r = 0; r < rows; r++)
        if (!bits_equal(a + r * stride, b + r * stride, width)) return 0;
    return 1;
}

static int all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void expect_close(const char* what, const char* shape, double err, double tol) {
    const int ok = err <= tol;
    printf("%-4s %-44s %-34s err %.2e  tol %.0e\n", ok ? "ok" : "FAIL", what, shape, err, tol);
    CHECK(ok, "%s [%s]: relative error %.3g > %.1g", what, shape, err, tol);
}

static void expect(const char* what, const char* shape, int cond) {
    printf("%-4s %-44s %s\n", cond ? "ok" : "FAIL", what, shape);
    CHECK(cond, "%s [%s]", what, shape);
}

/* ---- embeddings ---- */

static void check_encoder(const Shape* s) {
    const int B = s->B, T = s->T, C = s->C, V = s->V, maxT = s->T + 3;
    const size_t n = (size_t)B * T * C, nwte = (size_t)V * C, nwpe = (size_t)maxT * C;
    char shape[96];
    snprintf(shape, sizeof shape, "B=%d T=%d C=%d V=%d", B, T, C, V);
    int* tokens = keep(malloc((size_t)B * T * sizeof *tokens));
    /* half the tokens come from 4 ids: rows share wte rows, whose gradients are sums */
    for (int i = 0; i < B * T; i++)
        tokens[i] = (int)(hn_rng_below(&rng, 2) ? hn_rng_below(&rng, 4) : hn_rng_below(&rng, V));
    float *wte = h_randn(nwte, 1, 0), *wpe = h_randn(nwpe, 1, 0), *dout = h_randn(n, 1, 0);
    float* out = h_alloc(n);
    int* d_tokens = d_from_i(tokens, (size_t)B * T);
    float *d_wte = d_from(wte, nwte), *d_wpe = d_from(wpe, nwpe), *d_out = d_nan(n);

    hn_encoder_forward(out, tokens, NULL, wte, wpe, B, T, C);
    RUN(hn_cuda_encoder_forward(d_out, d_tokens, d_wte, d_wpe, B, T, C));
    expect_close("encoder_forward out", shape, rel_l2(h_from(d_out, n), out, n), ELEM_TOL);
    hn_encoder_forward(out, tokens, NULL, wte, NULL, B, T, C);
    poison(d_out, n);
    RUN(hn_cuda_encoder_forward(d_out, d_tokens, d_wte, NULL, B, T, C));
    expect_close("encoder_forward out (wpe NULL)", shape, rel_l2(h_from(d_out, n), out, n),
                 ELEM_TOL);

    /* both gradients accumulate */
    float *dwte0 = h_randn(nwte, 1, 0), *dwpe0 = h_randn(nwpe, 1, 0);
    float *dwte = h_copy(dwte0, nwte), *dwpe = h_copy(dwpe0, nwpe);
    hn_encoder_backward(dwte, dwpe, dout, tokens, NULL, B, T, C);
    float *d_dout = d_from(dout, n), *d_dwte = d_from(dwte0, nwte), *d_dwpe = d_from(dwpe0, nwpe);
    RUN(hn_cuda_encoder_backward(d_dwte, d_dwpe, d_dout, d_tokens, B, T, C));
    float *g_dwte = h_from(d_dwte, nwte), *g_dwpe = h_from(d_dwpe, nwpe);
    expect_close("encoder_backward dwte (+=)", shape, rel_l2_added(g_dwte, dwte, dwte0, nwte),
                 ELEM_TOL);
    expect_close("encoder_backward dwpe (+=)", shape, rel_l2_added(g_dwpe, dwpe, dwpe0, nwpe),
                 ELEM_TOL);

    upload(d_dwte, dwte0, nwte * sizeof *dwte0);
    upload(d_dwpe, dwpe0, nwpe * sizeof *dwpe0);
    RUN(hn_cuda_encoder_backward(d_dwte, d_dwpe, d_dout, d_tokens, B, T, C));
    expect("encoder_backward bit-identical on a rerun", shape,
           bits_equal(h_from(d_dwte, nwte), g_dwte, nwte) &&
               bits_equal(h_from(d_dwpe, nwpe), g_dwpe, nwpe));

    /* a NULL gradient is frozen; the other one is still computed */
    upload(d_dwte, dwte0, nwte * sizeof *dwte0);
    upload(d_dwpe, dwpe0, nwpe * sizeof *dwpe0);
    RUN(hn_cuda_encoder_backward(d_dwte, NULL, d_dout, d_tokens, B, T, C));
    RUN(hn_cuda_encoder_backward(NULL, d_dwpe, d_dout, d_tokens, B, T, C));
    expect_close("encoder_backward dwte (dwpe NULL)", shape,
                 rel_l2_added(h_from(d_dwte, nwte), dwte, dwte0, nwte), ELEM_TOL);
    expect_close("encoder_backward dwpe (dwte NULL)", shape,
                 rel_l2_added(h_from(d_dwpe, nwpe), dwpe, dwpe0, nwpe), ELEM_TOL);
    release();
}

/* ---- norms ---- */

static void check_layernorm(int N, int C) {
    const float eps = 1e-5f;
    const size_t n = (size_t)N * C;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d C=%d", N, C);
    /* a mean far from 0 exercises the cancellation a one-pass variance would suffer */
    float *inp = h_randn(n, 2, 3), *w = h_randn(C, 1, 1), *b = h_randn(C, 1, 0);
    float *dout = h_randn(n, 1, 0), *out = h_alloc(n), *mean = h_alloc(N), *rstd = h_alloc(N);
    hn_layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
    float *d_inp = d_from(inp, n), *d_w = d_from(w, C), *d_b = d_from(b, C);
    float *d_out = d_nan(n), *d_mean = d_nan(N), *d_rstd = d_nan(N);
    RUN(hn_cuda_layernorm_forward(d_out, d_mean, d_rstd, d_inp, d_w, d_b, N, C, eps));
    expect_close("layernorm_forward out", shape, rel_l2(h_from(d_out, n), out, n), ELEM_TOL);
    expect_close("layernorm_forward mean", shape, rel_l2(h_from(d_mean, N), mean, N), ELEM_TOL);
    expect_close("layernorm_forward rstd", shape, rel_l2(h_from(d_rstd, N), rstd, N), ELEM_TOL);

    /* dinp (on the residual stream), dweight and dbias all accumulate */
    float *dinp0 = h_randn(n, 1, 0), *dw0 = h_randn(C, 1, 0), *db0 = h_randn(C, 1, 0);
    float *dinp = h_copy(dinp0, n), *dw = h_copy(dw0, C), *db = h_copy(db0, C);
    hn_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    float *d_dout = d_from(dout, n), *d_dinp = d_from(dinp0, n), *d_dw = d_from(dw0, C),
          *d_db = d_from(db0, C);
    RUN(hn_cuda_layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C));
    float *g_dinp = h_from(d_dinp, n), *g_dw = h_from(d_dw, C), *g_db = h_from(d_db, C);
    expect_close("layernorm_backward dinp (+=)", shape, rel_l2_added(g_dinp, dinp, dinp0, n),
                 ELEM_TOL);
    expect_close("layernorm_backward dweight (+=)", shape, rel_l2_added(g_dw, dw, dw0, C),
                 ELEM_TOL);
    expect_close("layernorm_backward dbias (+=)", shape, rel_l2_added(g_db, db, db0, C), ELEM_TOL);

    upload(d_dinp, dinp0, n * sizeof *dinp0);
    upload(d_dw, dw0, C * sizeof *dw0);
    upload(d_db, db0, C * sizeof *db0);
    RUN(hn_cuda_layernorm_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, N, C));
    expect("layernorm_backward bit-identical on a rerun", shape,
           bits_equal(h_from(d_dinp, n), g_dinp, n) && bits_equal(h_from(d_dw, C), g_dw, C) &&
               bits_equal(h_from(d_db, C), g_db, C));

    upload(d_dinp, dinp0, n * sizeof *dinp0);
    RUN(hn_cuda_layernorm_backward(d_dinp, NULL, NULL, d_dout, d_inp, d_w, d_mean, d_rstd, N, C));
    expect_close("layernorm_backward dinp (frozen weights)", shape,
                 rel_l2_added(h_from(d_dinp, n), dinp, dinp0, n), ELEM_TOL);
    release();
}

static void check_rmsnorm(int N, int C) {
    const float eps = 1e-5f;
    const size_t n = (size_t)N * C;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d C=%d", N, C);
    float *inp = h_randn(n, 2, 1), *w = h_randn(C, 1, 1), *dout = h_randn(n, 1, 0);
    float *out = h_alloc(n), *rstd = h_alloc(N);
    hn_rmsnorm_forward(out, rstd, inp, w, N, C, eps);
    float *d_inp = d_from(inp, n), *d_w = d_from(w, C), *d_out = d_nan(n), *d_rstd = d_nan(N);
    RUN(hn_cuda_rmsnorm_forward(d_out, d_rstd, d_inp, d_w, N, C, eps));
    expect_close("rmsnorm_forward out", shape, rel_l2(h_from(d_out, n), out, n), ELEM_TOL);
    expect_close("rmsnorm_forward rstd", shape, rel_l2(h_from(d_rstd, N), rstd, N), ELEM_TOL);

    /* dinp and dweight accumulate */
    float *dinp0 = h_randn(n, 1, 0), *dw0 = h_randn(C, 1, 0);
    float *dinp = h_copy(dinp0, n), *dw = h_copy(dw0, C);
    hn_rmsnorm_backward(dinp, dw, dout, inp, w, rstd, N, C);
    float *d_dout = d_from(dout, n), *d_dinp = d_from(dinp0, n), *d_dw = d_from(dw0, C);
    RUN(hn_cuda_rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C));
    float *g_dinp = h_from(d_dinp, n), *g_dw = h_from(d_dw, C);
    expect_close("rmsnorm_backward dinp (+=)", shape, rel_l2_added(g_dinp, dinp, dinp0, n),
                 ELEM_TOL);
    expect_close("rmsnorm_backward dweight (+=)", shape, rel_l2_added(g_dw, dw, dw0, C), ELEM_TOL);

    upload(d_dinp, dinp0, n * sizeof *dinp0);
    upload(d_dw, dw0, C * sizeof *dw0);
    RUN(hn_cuda_rmsnorm_backward(d_dinp, d_dw, d_dout, d_inp, d_w, d_rstd, N, C));
    expect("rmsnorm_backward bit-identical on a rerun", shape,
           bits_equal(h_from(d_dinp, n), g_dinp, n) && bits_equal(h_from(d_dw, C), g_dw, C));

    upload(d_dinp, dinp0, n * sizeof *dinp0);
    RUN(hn_cuda_rmsnorm_backward(d_dinp, NULL, d_dout, d_inp, d_w, d_rstd, N, C));
    expect_close("rmsnorm_backward dinp (frozen weight)", shape,
                 rel_l2_added(h_from(d_dinp, n), dinp, dinp0, n), ELEM_TOL);
    release();
}

/* ---- linear layers ---- */

static void check_matmul(int N, int C, int OC) {
    const size_t ni = (size_t)N * C, nw = (size_t)OC * C, no = (size_t)N * OC;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d C=%d OC=%d", N, C, OC);
    float *inp = h_randn(ni, 1, 0), *w = h_randn(nw, 1, 0), *b = h_randn(OC, 1, 0);
    float *dout = h_randn(no, 1, 0), *out = h_alloc(no);
    float *d_inp = d_from(inp, ni), *d_w = d_from(w, nw), *d_b = d_from(b, OC), *d_out = d_nan(no);

    hn_matmul_forward(out, inp, w, NULL, N, C, OC);
    RUN(hn_cuda_matmul_forward(d_out, d_inp, d_w, NULL, N, C, OC));
    expect_close("matmul_forward out (no bias)", shape, rel_l2(h_from(d_out, no), out, no),
                 MATMUL_TOL);
    hn_matmul_forward(out, inp, w, b, N, C, OC);
    poison(d_out, no);
    RUN(hn_cuda_matmul_forward(d_out, d_inp, d_w, d_b, N, C, OC));
    expect_close("matmul_forward out (bias)", shape, rel_l2(h_from(d_out, no), out, no),
                 MATMUL_TOL);

    /* dinp is overwritten, dweight and dbias accumulate */
    float *dinp = filled(ni, NAN), *dw0 = h_randn(nw, 1, 0), *db0 = h_randn(OC, 1, 0);
    keep(dinp);
    float *dw = h_copy(dw0, nw), *db = h_copy(db0, OC);
    hn_matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC);
    float *d_dout = d_from(dout, no), *d_dinp = d_nan(ni), *d_dw = d_from(dw0, nw),
          *d_db = d_from(db0, OC);
    RUN(hn_cuda_matmul_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, N, C, OC));
    float *g_dinp = h_from(d_dinp, ni), *g_dw = h_from(d_dw, nw), *g_db = h_from(d_db, OC);
    expect_close("matmul_backward dinp (=)", shape, rel_l2(g_dinp, dinp, ni), MATMUL_TOL);
    expect_close("matmul_backward dweight (+=)", shape, rel_l2_added(g_dw, dw, dw0, nw),
                 MATMUL_TOL);
    expect_close("matmul_backward dbias (+=)", shape, rel_l2_added(g_db, db, db0, OC), ELEM_TOL);

    poison(d_dinp, ni);
    upload(d_dw, dw0, nw * sizeof *dw0);
    upload(d_db, db0, OC * sizeof *db0);
    RUN(hn_cuda_matmul_backward(d_dinp, d_dw, d_db, d_dout, d_inp, d_w, N, C, OC));
    expect("matmul_backward bit-identical on a rerun", shape,
           bits_equal(h_from(d_dinp, ni), g_dinp, ni) && bits_equal(h_from(d_dw, nw), g_dw, nw) &&
               bits_equal(h_from(d_db, OC), g_db, OC));

    /* NULLs skip their gradient */
    poison(d_dinp, ni);
    upload(d_dw, dw0, nw * sizeof *dw0);
    upload(d_db, db0, OC * sizeof *db0);
    RUN(hn_cuda_matmul_backward(NULL, d_dw, NULL, d_dout, d_inp, d_w, N, C, OC));
    RUN(hn_cuda_matmul_backward(d_dinp, NULL, d_db, d_dout, d_inp, d_w, N, C, OC));
    expect_close("matmul_backward dinp (dweight NULL)", shape, rel_l2(h_from(d_dinp, ni), dinp, ni),
                 MATMUL_TOL);
    expect_close("matmul_backward dweight (dinp, dbias NULL)", shape,
                 rel_l2_added(h_from(d_dw, nw), dw, dw0, nw), MATMUL_TOL);
    expect_close("matmul_backward dbias (dweight NULL)", shape,
                 rel_l2_added(h_from(d_db, OC), db, db0, OC), ELEM_TOL);
    release();
}

/* An fp32 GEMM computes (1 + 2^-12) * 1 + (-1) * 1 = 2^-12 exactly, in any summation
 * order; TF32 keeps 10 mantissa bits, rounds 1 + 2^-12 to 1 and gives 0. */
static void check_matmul_is_fp32(void) {
    const int N = 32, C = 64, OC = 32;
    float *inp = h_alloc((size_t)N * C), *w = h_alloc((size_t)OC * C);
    for (int i = 0; i < N * C; i++)
        inp[i] = i % 2 ? -1.0f : 1.0f + 0x1p-12f;
    for (int i = 0; i < OC * C; i++)
        w[i] = 1.0f;
    float* expected = keep(filled((size_t)N * OC, (C / 2) * 0x1p-12f));
    float* d_out = d_nan((size_t)N * OC);
    RUN(hn_cuda_matmul_forward(d_out, d_from(inp, (size_t)N * C), d_from(w, (size_t)OC * C), NULL,
                               N, C, OC));
    expect_close("matmul_forward is fp32, not TF32", "(1 + 2^-12) - 1",
                 rel_l2(h_from(d_out, (size_t)N * OC), expected, (size_t)N * OC), 0.0);
    release();
}

/* ---- attention ---- */

/* lse (B, NH, T) = log sum_{t2 <= t} exp(q_t . k_t2 / sqrt(HS)), in double */
static void attention_lse_ref(float* lse, const float* q, const float* k, int q_stride,
                              int kv_stride, int B, int T, int NH, int NKV, int HS) {
    const int G = NH / NKV;
    const double scale = 1.0 / sqrt((double)HS);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < B * NH; bh++) {
        const int b = bh / NH, h = bh % NH;
        double* s = alloc_d((size_t)T);
        for (int t = 0; t < T; t++) {
            const float* qt = q + ((size_t)b * T + t) * q_stride + (size_t)h * HS;
            double maxv = -INFINITY, sum = 0.0;
            for (int t2 = 0; t2 <= t; t2++) {
                const float* kt = k + ((size_t)b * T + t2) * kv_stride + (size_t)(h / G) * HS;
                double dot = 0.0;
                for (int i = 0; i < HS; i++)
                    dot += (double)qt[i] * kt[i];
                s[t2] = dot * scale;
                if (s[t2] > maxv) maxv = s[t2];
            }
            for (int t2 = 0; t2 <= t; t2++)
                sum += exp(s[t2] - maxv);
            lse[(size_t)bh * T + t] = (float)(maxv + log(sum));
        }
        free(s);
    }
}

/* fused: GPT-2's layout, q, k, v side by side in rows of 3C (NKV = NH); otherwise three
 * buffers whose rows are `pad` floats wider than their heads */
static void check_attention(int B, int T, int NH, int NKV, int HS, int fused, int pad) {
    const int C = NH * HS, KC = NKV * HS;
    const int qs = fused ? 3 * C : C + pad, kvs = fused ? 3 * C : KC + pad;
    const size_t rows = (size_t)B * T;
    const size_t k_off = fused ? (size_t)C : rows * qs;
    const size_t v_off = fused ? 2 * (size_t)C : k_off + rows * kvs;
    const size_t nx = fused ? rows * qs : v_off + rows * kvs; /* q, k, v in one buffer */
    const size_t no = rows * C, nlse = (size_t)B * NH * T;
    char shape[96];
    snprintf(shape, sizeof shape, "B=%d T=%d NH=%d NKV=%d HS=%d%s", B, T, NH, NKV, HS,
             fused ? " qkv"
             : pad ? " padded"
                   : "");

    float *x = h_randn(nx, 1, 0), *dout = h_randn(no, 1, 0);
    float *out = h_alloc(no), *lse = h_alloc(nlse), *dx = keep(filled(nx, NAN));
    float* att = h_alloc((size_t)B * NH * T * T);
    hn_attention_gqa_forward(out, att, x, x + k_off, x + v_off, qs, kvs, B, T, NH, NKV, HS);
    attention_lse_ref(lse, x, x + k_off, qs, kvs, B, T, NH, NKV, HS);
    hn_attention_gqa_backward(dx, dx + k_off, dx + v_off, dout, x, x + k_off, x + v_off, att, qs,
                              kvs, B, T, NH, NKV, HS);

    float *d_x = d_from(x, nx), *d_out = d_nan(no), *d_lse = d_nan(nlse);
    RUN(hn_cuda_attention_forward(d_out, d_lse, d_x, d_x + k_off, d_x + v_off, qs, kvs, B, T, NH,
                                  NKV, HS));
    expect_close("attention_forward out", shape, rel_l2(h_from(d_out, no), out, no), ATT_TOL);
    expect_close("attention_forward lse", shape, rel_l2(h_from(d_lse, nlse), lse, nlse), ELEM_TOL);

    /* dq, dk, dv are overwritten; only the heads' columns are compared */
    float *d_dout = d_from(dout, no), *d_dx = d_nan(nx);
    RUN(hn_cuda_attention_backward(d_dx, d_dx + k_off, d_dx + v_off, d_dout, d_out, d_lse, d_x,
                                   d_x + k_off, d_x + v_off, qs, kvs, B, T, NH, NKV, HS));
    float* g_dx = h_from(d_dx, nx);
    expect_close("attention_backward dq (=)", shape, rel_l2_strided(g_dx, dx, rows, C, qs),
                 ATT_TOL);
    expect_close("attention_backward dk (=)", shape,
                 rel_l2_strided(g_dx + k_off, dx + k_off, rows, KC, kvs), ATT_TOL);
    expect_close("attention_backward dv (=)", shape,
                 rel_l2_strided(g_dx + v_off, dx + v_off, rows, KC, kvs), ATT_TOL);

    poison(d_dx, nx);
    RUN(hn_cuda_attention_backward(d_dx, d_dx + k_off, d_dx + v_off, d_dout, d_out, d_lse, d_x,
                                   d_x + k_off, d_x + v_off, qs, kvs, B, T, NH, NKV, HS));
    float* g_dx2 = h_from(d_dx, nx);
    expect("attention_backward bit-identical on a rerun", shape,
           bits_equal_strided(g_dx2, g_dx, rows, C, qs) &&
               bits_equal_strided(g_dx2 + k_off, g_dx + k_off, rows, KC, kvs) &&
               bits_equal_strided(g_dx2 + v_off, g_dx + v_off, rows, KC, kvs));
    release();
}

/* ---- rotary embedding: in place on the first nheads * HS columns of rows `stride` apart ---- */

static void check_rope(int B, int T, int nheads, int HS, int stride, int pos0, float theta) {
    const size_t rows = (size_t)B * T, n = rows * stride, width = (size_t)nheads * HS;
    char shape[96];
    snprintf(shape, sizeof shape, "B=%d T=%d heads=%d HS=%d pos0=%d", B, T, nheads, HS, pos0);
    float *x = h_randn(n, 1, 0), *ref = h_copy(x, n);
    hn_rope_forward(ref, NULL, B, T, nheads, HS, stride, pos0, theta);
    float* d_x = d_from(x, n);
    RUN(hn_cuda_rope_forward(d_x, B, T, nheads, HS, stride, pos0, theta));
    float* got = h_from(d_x, n);
    expect_close("rope_forward x", shape, rel_l2_strided(got, ref, rows, width, stride), ELEM_TOL);
    expect("rope_forward leaves the other columns alone", shape,
           bits_equal_strided(got + width, x + width, rows, stride - width, stride));

    memcpy(ref, x, n * sizeof *x);
    hn_rope_backward(ref, NULL, B, T, nheads, HS, stride, pos0, theta);
    upload(d_x, x, n * sizeof *x);
    RUN(hn_cuda_rope_backward(d_x, B, T, nheads, HS, stride, pos0, theta));
    got = h_from(d_x, n);
    expect_close("rope_backward dx", shape, rel_l2_strided(got, ref, rows, width, stride),
                 ELEM_TOL);
    expect("rope_backward leaves the other columns alone", shape,
           bits_equal_strided(got + width, x + width, rows, stride - width, stride));
    release();
}

/* ---- activations and residual ---- */

static void check_gelu(size_t n) {
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu", n);
    float *inp = h_randn(n, 2, 0), *dout = h_randn(n, 1, 0), *out = h_alloc(n), *dinp = h_alloc(n);
    hn_gelu_forward(out, inp, n);
    hn_gelu_backward(dinp, inp, dout, n);
    float *d_inp = d_from(inp, n), *d_out = d_nan(n), *d_dout = d_from(dout, n), *d_dinp = d_nan(n);
    RUN(hn_cuda_gelu_forward(d_out, d_inp, n));
    expect_close("gelu_forward out", shape, rel_l2(h_from(d_out, n), out, n), ELEM_TOL);
    RUN(hn_cuda_gelu_backward(d_dinp, d_inp, d_dout, n));
    expect_close("gelu_backward dinp (=)", shape, rel_l2(h_from(d_dinp, n), dinp, n), ELEM_TOL);
    RUN(hn_cuda_gelu_backward(d_dout, d_inp, d_dout, n));
    expect_close("gelu_backward dinp (aliasing dout)", shape, rel_l2(h_from(d_dout, n), dinp, n),
                 ELEM_TOL);
    release();
}

static void check_swiglu(size_t n) {
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu", n);
    float *gate = h_randn(n, 3, 0), *up = h_randn(n, 1, 0), *dout = h_randn(n, 1, 0);
    /* large gates, where a naive silu' overflows exp into inf * 0 */
    const float extremes[] = {-1000.0f, -100.0f, -88.0f, 88.0f, 100.0f, 1000.0f, -20.0f, 20.0f};
    for (size_t i = 0; i < sizeof extremes / sizeof *extremes && i < n; i++)
        gate[i * (n / 8)] = extremes[i];
    float *out = h_alloc(n), *dgate = h_alloc(n), *dup = h_alloc(n);
    hn_swiglu_forward(out, gate, up, n);
    hn_swiglu_backward(dgate, dup, dout, gate, up, n);
    float *d_gate = d_from(gate, n), *d_up = d_from(up, n), *d_dout = d_from(dout, n);
    float *d_out = d_nan(n), *d_dgate = d_nan(n), *d_dup = d_nan(n);
    RUN(hn_cuda_swiglu_forward(d_out, d_gate, d_up, n));
    float* g_out = h_from(d_out, n);
    expect_close("swiglu_forward out", shape, rel_l2(g_out, out, n), ELEM_TOL);
    RUN(hn_cuda_swiglu_backward(d_dgate, d_dup, d_dout, d_gate, d_up, n));
    float *g_dgate = h_from(d_dgate, n), *g_dup = h_from(d_dup, n);
    expect_close("swiglu_backward dgate (=)", shape, rel_l2(g_dgate, dgate, n), ELEM_TOL);
    expect_close("swiglu_backward dup (=)", shape, rel_l2(g_dup, dup, n), ELEM_TOL);
    expect("swiglu finite at gates of +-1000", shape,
           all_finite(g_out, n) && all_finite(g_dgate, n) && all_finite(g_dup, n));

    /* either gradient may alias dout */
    poison(d_dup, n);
    RUN(hn_cuda_swiglu_backward(d_dout, d_dup, d_dout, d_gate, d_up, n));
    expect_close("swiglu_backward dgate (aliasing dout)", shape,
                 rel_l2(h_from(d_dout, n), dgate, n), ELEM_TOL);
    expect_close("swiglu_backward dup (dgate aliasing dout)", shape,
                 rel_l2(h_from(d_dup, n), dup, n), ELEM_TOL);
    upload(d_dout, dout, n * sizeof *dout);
    poison(d_dgate, n);
    RUN(hn_cuda_swiglu_backward(d_dgate, d_dout, d_dout, d_gate, d_up, n));
    expect_close("swiglu_backward dup (aliasing dout)", shape, rel_l2(h_from(d_dout, n), dup, n),
                 ELEM_TOL);
    expect_close("swiglu_backward dgate (dup aliasing dout)", shape,
                 rel_l2(h_from(d_dgate, n), dgate, n), ELEM_TOL);
    release();
}

static void check_residual(size_t n) {
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu", n);
    float *a = h_randn(n, 1, 0), *b = h_randn(n, 1, 0), *out = h_alloc(n);
    hn_residual_forward(out, a, b, n);
    float *d_a = d_from(a, n), *d_b = d_from(b, n), *d_out = d_nan(n);
    RUN(hn_cuda_residual_forward(d_out, d_a, d_b, n));
    expect_close("residual_forward out", shape, rel_l2(h_from(d_out, n), out, n), ELEM_TOL);
    RUN(hn_cuda_residual_forward(d_a, d_a, d_b, n));
    expect_close("residual_forward out (aliasing a)", shape, rel_l2(h_from(d_a, n), out, n),
                 ELEM_TOL);
    release();
}

/* ---- classifier ---- */

static void check_crossentropy(int N, int V, int Vp) {
    const size_t n = (size_t)N * Vp;
    char shape[96];
    snprintf(shape, sizeof shape, "N=%d V=%d Vp=%d", N, V, Vp);
    float* logits = h_randn(n, 2, 0);
    /* padded columns hold large values: counted, they would take most of the probability */
    for (int i = 0; i < N; i++)
        for (int v = V; v < Vp; v++)
            logits[(size_t)i * Vp + v] = 30.0f;
    int* targets = keep(malloc((size_t)N * sizeof *targets));
    int counted = 0;
    for (int i = 0; i < N; i++) {
        targets[i] = i % 5 == 3 ? HN_IGNORE : i == 0 ? V - 1 : (int)hn_rng_below(&rng, V);
        counted += targets[i] != HN_IGNORE;
    }
    const float grad_scale = 1.0f / counted;
    float *grad = h_copy(logits, n), *losses = h_alloc(N);
    const double loss_sum = hn_crossentropy_forward(grad, losses, targets, N, V, Vp, grad_scale);

    float *d_logits = d_from(logits, n), *d_losses = d_nan(N);
    int* d_targets = d_from_i(targets, N);
    double g_loss_sum = NAN;
    RUN(hn_cuda_crossentropy_forward(d_logits, d_losses, d_targets, N, V, Vp, grad_scale,
                                     &g_loss_sum));
    float *g_grad = h_from(d_logits, n), *g_losses = h_from(d_losses, N);
    expect_close("crossentropy_forward losses", shape, rel_l2(g_losses, losses, N), ELEM_TOL);
    expect_close("crossentropy_forward loss sum", shape, fabs(g_loss_sum - loss_sum) / loss_sum,
                 ELEM_TOL);
    expect_close("crossentropy_forward dlogits", shape, rel_l2(g_grad, grad, n), ELEM_TOL);
    int ignored_zero = 1, padded_zero = 1;
    for (int i = 0; i < N; i++) {
        const float* row = g_grad + (size_t)i * Vp;
        for (int v = 0; v < Vp; v++) {
            if (targets[i] == HN_IGNORE) ignored_zero &= row[v] == 0.0f;
            if (v >= V) padded_zero &= row[v] == 0.0f;
        }
        if (targets[i] == HN_IGNORE) ignored_zero &= g_losses[i] == 0.0f;
    }
    expect("crossentropy ignored rows: loss 0, gradient 0", shape, ignored_zero);
    expect("crossentropy padded columns: gradient 0", shape, padded_zero);

    /* grad_scale 0: losses only, logits untouched; the loss sum repeats bit for bit */
    upload(d_logits, logits, n * sizeof *logits);
    poison(d_losses, N);
    double g_loss_sum0 = NAN;
    RUN(hn_cuda_crossentropy_forward(d_logits, d_losses, d_targets, N, V, Vp, 0.0f, &g_loss_sum0));
    expect_close("crossentropy_forward losses (no gradient)", shape,
                 rel_l2(h_from(d_losses, N), losses, N), ELEM_TOL);
    expect("crossentropy_forward without gradient leaves logits", shape,
           bits_equal(h_from(d_logits, n), logits, n));
    expect("crossentropy loss sum bit-identical on a rerun", shape,
           memcmp(&g_loss_sum0, &g_loss_sum, sizeof g_loss_sum) == 0);
    release();
}

/* ---- optimizer ---- */

static void check_adamw(size_t n, int steps) {
    const float lr = 1e-2f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, wd = 0.1f, grad_scale = 0.5f;
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu steps=%d", n, steps);
    float *p = h_randn(n, 1, 0), *m = h_randn(n, 0.1f, 0), *v = h_randn(n, 0.01f, 0);
    for (size_t i = 0; i < n; i++)
        v[i] = v[i] * v[i]; /* the second moment is never negative */
    float *d_p = d_from(p, n), *d_m = d_from(m, n), *d_v = d_from(v, n),
          *d_g = d_alloc(n * sizeof *p);
    int zeroed = 1, kept = 1;
    for (int t = 1; t <= steps; t++) {
        float* g = randn(n, 1, 0);
        const int zero_grad = t % 2;
        upload(d_g, g, n * sizeof *g);
        RUN(hn_cuda_adamw_update(d_p, d_g, d_m, d_v, n, lr, beta1, beta2, eps, wd, grad_scale, t,
                                 zero_grad));
        float* g_after = h_from(d_g, n);
        hn_adamw_update(p, g, m, v, n, lr, beta1, beta2, eps, wd, grad_scale, t, zero_grad);
        if (zero_grad)
            for (size_t i = 0; i < n; i++)
                zeroed &= g_after[i] == 0.0f;
        else
            kept &= bits_equal(g_after, g, n);
        free(g);
    }
    expect_close("adamw_update p", shape, rel_l2(h_from(d_p, n), p, n), OPT_TOL);
    expect_close("adamw_update m", shape, rel_l2(h_from(d_m, n), m, n), OPT_TOL);
    expect_close("adamw_update v", shape, rel_l2(h_from(d_v, n), v, n), OPT_TOL);
    expect("adamw_update zero_grad: g is 0 after", shape, zeroed);
    expect("adamw_update without zero_grad: g is kept", shape, kept);
    release();
}

static void check_sum_squares(size_t n) {
    char shape[96];
    snprintf(shape, sizeof shape, "n=%zu", n);
    float* x = h_randn(n, 1, 0.5f);
    const double ref = hn_sum_squares(x, n);
    float* d_x = d_from(x, n);
    double got = NAN, again = NAN;
    RUN(hn_cuda_sum_squares(d_x, n, &got));
    RUN(hn_cuda_sum_squares(d_x, n, &again));
    expect_close("sum_squares", shape, fabs(got - ref) / ref, OPT_TOL);
    expect("sum_squares bit-identical on a rerun", shape, memcmp(&got, &again, sizeof got) == 0);
    release();
}

int main(void) {
    const char* require = getenv("HONE_REQUIRE_GPU");
    const int required = require && strcmp(require, "1") == 0;
    char why[512] = "";
    if (hn_cuda_device_count() == 0)
        snprintf(why, sizeof why, "hn_cuda_device_count() is 0: no driver or no GPU");
    else if (hn_cuda_init(0) != HN_OK)
        snprintf(why, sizeof why, "hn_cuda_init(0) failed: %s", hn_error_message());
    if (why[0]) {
        if (required) {
            fprintf(stderr, "FAIL: no CUDA device (%s) and HONE_REQUIRE_GPU=1\n", why);
            return 1;
        }
        printf("SKIP: no CUDA device (%s)\n", why);
        return 77;
    }
    hn_rng_seed(&rng, 20240611);
    const Shape* shapes[] = {&SMALL, &LARGE};
    for (int i = 0; i < 2; i++) {
        const Shape* s = shapes[i];
        const int N = s->B * s->T, C = s->C;
        check_encoder(s);
        check_layernorm(N, C);
        check_rmsnorm(N, C);
        check_matmul(N, C, 3 * C);
        check_matmul(N, 4 * C, C);
        check_gelu((size_t)N * 4 * C);
        check_swiglu((size_t)N * 4 * C);
        check_residual((size_t)N * C);
        check_crossentropy(N, s->V, s->Vp);
        check_rope(s->B, s->T, s->NH, s->HS, (s->NH + 2 * s->NKV) * s->HS, 0, 10000.0f);
    }
    check_matmul(SMALL.B * SMALL.T, 33, 200); /* sizes no tile divides */
    check_matmul_is_fp32();
    check_rope(SMALL.B, SMALL.T, SMALL.NKV, SMALL.HS, SMALL.NKV * SMALL.HS + 8, 4000, 500000.0f);

    check_attention(SMALL.B, SMALL.T, SMALL.NH, SMALL.NKV, SMALL.HS, 0, 8);
    check_attention(SMALL.B, SMALL.T, SMALL.NH, SMALL.NH, SMALL.HS, 1, 0);
    check_attention(1, 33, 2, 1, 128, 0, 0); /* the largest head size the kernels take */
    check_attention(LARGE.B, LARGE.T, LARGE.NH, LARGE.NH, LARGE.HS, 1, 0);
    check_attention(2, 1024, 8, 2, 64, 0, 0);

    check_adamw(4099, 5);
    check_adamw(((size_t)7 << 20) + 3, 5);
    check_sum_squares(1);
    check_sum_squares(4099);
    check_sum_squares(((size_t)10 << 20) + 7);

    hn_cuda_shutdown();
    return hn_test_finish("test_cuda_ops");
}
