/*
 * The Llama-family CPU ops of kernels/ops.h (RMSNorm, RoPE, SwiGLU, grouped-query attention)
 * against independent double-precision references, in the harness of test_ops.c.
 *
 * Every backward is checked against a central finite difference of a forward written here
 * in double, with the scalar loss sum(out * R) for a random R, so every output element
 * counts; then the same check runs with the op deliberately broken (hn_ops_test_break) and
 * must fail. Gradient buffers the contract accumulates into are pre-filled with random
 * values, those it overwrites with NaN. RoPE is also checked against numbers computed by HF
 * transformers (tests/fixtures/rope_hf.txt, from scripts/make_rope_fixture.py), so its
 * rotate_half convention does not rest on a formula written here.
 *
 * Tolerances: float kernels against double references agree to ~1e-6 relative; a
 * deliberately broken backward is off by ~1e-2. Checks compare the largest error of an
 * array to the largest magnitude of its reference (GRAD_TOL = 1e-4 for gradients).
 */
#include "kernels/ops.h"
#include "core/rng.h"
#include "testing.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define GRAD_TOL 1e-4
#define FWD_TOL 1e-5
#define FD_STEP 1e-4 /* finite-difference step; the forward is in double, so 1e-4 is safe */

#include "gradcheck.h"

/* max |got - ref|; infinite if anything is NaN */
static double abs_err(const float* got, const double* ref, size_t n) {
    double err = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= err) && !isnan(err)) err = d; /* a NaN, once seen, stays */
    }
    return isnan(err) ? INFINITY : err;
}

/* columns [0, width) of `rows` rows `stride` apart, packed; for comparing strided buffers */
static float* gather_f(const float* x, int rows, int width, int stride) {
    float* p = alloc_f((size_t)rows * width);
    for (int r = 0; r < rows; r++)
        memcpy(p + (size_t)r * width, x + (size_t)r * stride, width * sizeof *p);
    return p;
}

static double* gather_d(const double* x, int rows, int width, int stride) {
    double* p = alloc_d((size_t)rows * width);
    for (int r = 0; r < rows; r++)
        memcpy(p + (size_t)r * width, x + (size_t)r * stride, width * sizeof *p);
    return p;
}

/* columns [width, stride) of every row are NaN still: the op wrote nothing outside its rows */
static int padding_untouched(const float* x, int rows, int width, int stride) {
    int ok = 1;
    for (int r = 0; r < rows; r++)
        for (int c = width; c < stride; c++)
            ok &= isnan(x[(size_t)r * stride + c]);
    return ok;
}

/* ---- rmsnorm ---- */

typedef struct {
    double *inp, *w, *out, *rstd;
    const double* R;
    int N, C;
    double eps;
} RmsNormRef;

static double rmsnorm_loss(const void* p) {
    const RmsNormRef* l = p;
    double loss = 0.0;
    for (int i = 0; i < l->N; i++) {
        const double* x = l->inp + i * l->C;
        double ss = 0.0;
        for (int c = 0; c < l->C; c++)
            ss += x[c] * x[c];
        const double s = 1.0 / sqrt(ss / l->C + l->eps);
        for (int c = 0; c < l->C; c++) {
            const double o = x[c] * s * l->w[c];
            if (l->out) l->out[i * l->C + c] = o;
            loss += o * l->R[i * l->C + c];
        }
        if (l->rstd) l->rstd[i] = s;
    }
    return loss;
}

static int check_rmsnorm(int N, int C, int quiet) {
    const float eps = 1e-5f;
    float *inp = randn(N * C, 2, 0.5f), *w = randn(C, 1, 1), *R = randn(N * C, 1, 0);
    float *out = filled(N * C, NAN), *rstd = filled(N, NAN);
    hn_rmsnorm_forward(out, rstd, inp, w, N, C, eps);
    RmsNormRef ref = {to_double(inp, N * C),
                      to_double(w, C),
                      alloc_d(N * C),
                      alloc_d(N),
                      to_double(R, N * C),
                      N,
                      C,
                      eps};
    rmsnorm_loss(&ref);
    CHECK(rel_err(out, ref.out, N * C) <= FWD_TOL, "rmsnorm out %g", rel_err(out, ref.out, N * C));
    CHECK(rel_err(rstd, ref.rstd, N) <= FWD_TOL, "rmsnorm rstd %g", rel_err(rstd, ref.rstd, N));
    free(ref.out), free(ref.rstd);
    ref.out = ref.rstd = NULL;

    /* both gradients are accumulated */
    float *dinp0 = randn(N * C, 1, 0), *dw0 = randn(C, 1, 0);
    float *dinp = copy_f(dinp0, N * C), *dw = copy_f(dw0, C);
    hn_rmsnorm_backward(dinp, dw, R, inp, w, rstd, N, C);
    double *ginp = alloc_d(N * C), *gw = alloc_d(C);
    numeric_grad(ginp, ref.inp, N * C, rmsnorm_loss, &ref);
    numeric_grad(gw, ref.w, C, rmsnorm_loss, &ref);
    int ok = within("rmsnorm dinp", rel_err_added(dinp, dinp0, ginp, N * C), GRAD_TOL, quiet);
    ok &= within("rmsnorm dweight", rel_err_added(dw, dw0, gw, C), GRAD_TOL, quiet);

    /* NULL dweight means frozen: dinp is the same, bit for bit */
    float* dinp1 = copy_f(dinp0, N * C);
    hn_rmsnorm_backward(dinp1, NULL, R, inp, w, rstd, N, C);
    CHECK(bits_equal(dinp1, dinp, N * C), "rmsnorm dinp depends on whether dweight is NULL");

    free(inp), free(w), free(R), free(out), free(rstd), free(dinp0), free(dw0), free(dinp);
    free(dw), free(ginp), free(gw), free(dinp1), free(ref.inp), free(ref.w), free((void*)ref.R);
    return ok;
}

/* ---- rope ---- */

typedef struct {
    double *x, *out; /* (B, T, stride), heads in the first nheads*HS columns */
    const double* R;
    int B, T, nheads, HS, stride, pos0;
    double theta;
} RopeRef;

/* the rotation written out directly: every angle from scratch, in double */
static double rope_loss(const void* p) {
    const RopeRef* r = p;
    const int half = r->HS / 2;
    double loss = 0.0;
    for (int b = 0; b < r->B; b++)
        for (int t = 0; t < r->T; t++)
            for (int h = 0; h < r->nheads; h++)
                for (int i = 0; i < half; i++) {
                    const size_t lo = ((size_t)b * r->T + t) * r->stride + h * r->HS + i;
                    const size_t hi = lo + half;
                    const double a = (r->pos0 + t) * pow(r->theta, -2.0 * i / r->HS);
                    const double y1 = r->x[lo] * cos(a) - r->x[hi] * sin(a);
                    const double y2 = r->x[hi] * cos(a) + r->x[lo] * sin(a);
                    if (r->out) r->out[lo] = y1, r->out[hi] = y2;
                    loss += y1 * r->R[lo] + y2 * r->R[hi];
                }
    return loss;
}

/* forward against the direct formula (absolute error on unit-scale inputs, also returned),
 * the columns past nheads*HS untouched, and forward then backward giving back the input */
static double check_rope_forward(int B, int T, int nheads, int HS, int stride, int pos0,
                                 float theta) {
    const int rows = B * T, width = nheads * HS;
    const size_t n = (size_t)rows * stride;
    float *x0 = randn(n, 1, 0), *x = copy_f(x0, n);
    hn_rope_forward(x, NULL, B, T, nheads, HS, stride, pos0, theta);
    RopeRef ref = {to_double(x0, n), alloc_d(n), NULL, B, T, nheads, HS, stride, pos0, theta};
    ref.R = alloc_d(n);
    rope_loss(&ref);
    float* got = gather_f(x, rows, width, stride);
    double* want = gather_d(ref.out, rows, width, stride);
    const double err = abs_err(got, want, (size_t)rows * width);
    CHECK(err <= 1e-5, "rope forward, pos0 %d theta %g: max abs error %g", pos0, theta, err);
    int pad_ok = 1;
    for (int r = 0; r < rows; r++)
        pad_ok &= bits_equal(x + (size_t)r * stride + width, x0 + (size_t)r * stride + width,
                             stride - width);
    CHECK(pad_ok, "rope forward changed columns past nheads * HS");

    hn_rope_backward(x, NULL, B, T, nheads, HS, stride, pos0, theta);
    double* x0d = to_double(x0, n);
    CHECK(rel_err(x, x0d, n) <= 1e-6, "rope forward then backward (pos0 %d) is off by %g", pos0,
          rel_err(x, x0d, n));
    free(x0), free(x), free(ref.x), free(ref.out), free((void*)ref.R), free(got), free(want);
    free(x0d);
    return err;
}

static int check_rope(int B, int T, int nheads, int HS, int stride, int pos0, float theta,
                      int quiet) {
    const int rows = B * T, width = nheads * HS;
    const size_t n = (size_t)rows * stride;
    /* the backward turns dout in place into dx; padding columns are not gradients */
    float* dout = randn(n, 1, 0);
    float* dx = copy_f(dout, n);
    hn_rope_backward(dx, NULL, B, T, nheads, HS, stride, pos0, theta);
    float* x = randn(n, 1, 0);
    RopeRef ref = {
        to_double(x, n), NULL, to_double(dout, n), B, T, nheads, HS, stride, pos0, theta};
    double* g = alloc_d(n);
    numeric_grad(g, ref.x, n, rope_loss, &ref);
    float* got = gather_f(dx, rows, width, stride);
    double* want = gather_d(g, rows, width, stride);
    int ok = within("rope dx", rel_err(got, want, (size_t)rows * width), GRAD_TOL, quiet);
    free(dout), free(dx), free(x), free(ref.x), free((void*)ref.R), free(g), free(got), free(want);
    return ok;
}

/* HF's apply_rotary_pos_emb on a fixed input, from scripts/make_rope_fixture.py */
static void check_rope_hf_fixture(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rope_hf.txt", hn_test_env("HONE_FIXTURES"));
    FILE* f = fopen(path, "r");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    int c;
    while ((c = fgetc(f)) == '#') /* comment lines */
        while ((c = fgetc(f)) != '\n' && c != EOF) {
        }
    ungetc(c, f);
    int B, T, nheads, HS, pos0;
    double theta;
    int ok = fscanf(f, "%d %d %d %d %d %lf", &B, &T, &nheads, &HS, &pos0, &theta) == 6 && B > 0 &&
             T > 0 && nheads > 0 && HS > 0 && B * T * nheads * HS < 100000;
    const size_t n = ok ? (size_t)B * T * nheads * HS : 1;
    float* x = alloc_f(n);
    double* want = alloc_d(n);
    for (size_t i = 0; ok && i < n; i++)
        ok = fscanf(f, "%f", &x[i]) == 1;
    for (size_t i = 0; ok && i < n; i++)
        ok = fscanf(f, "%lf", &want[i]) == 1;
    fclose(f);
    CHECK(ok, "%s is malformed", path);
    if (ok) {
        hn_rope_forward(x, NULL, B, T, nheads, HS, nheads * HS, pos0, (float)theta);
        CHECK(abs_err(x, want, n) <= 1e-5, "rope differs from HF transformers by %g",
              abs_err(x, want, n));
    }
    free(x), free(want);
}

/* ---- swiglu ---- */

typedef struct {
    double *gate, *up, *out;
    const double* R;
    size_t n;
} SwigluRef;

static double swiglu_loss(const void* p) {
    const SwigluRef* s = p;
    double loss = 0.0;
    for (size_t i = 0; i < s->n; i++) {
        const double g = s->gate[i];
        const double o = g / (1.0 + exp(-g)) * s->up[i];
        if (s->out) s->out[i] = o;
        loss += o * s->R[i];
    }
    return loss;
}

static int check_swiglu(int quiet) {
    const size_t n = 203;
    float *gate = randn(n, 2.5f, 0), *up = randn(n, 1, 0), *R = randn(n, 1, 0);
    /* saturated tails, the neighbourhood of 0, and the fast exp's overflow limits */
    const float special[] = {-1000.0f, -100.0f, -88.5f, -87.0f, -20.0f, -0.01f, 0.0f,
                             0.02f,    20.0f,   87.0f,  88.5f,  100.0f, 1000.0f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        gate[i * 11] = special[i];
    float* out = filled(n, NAN);
    hn_swiglu_forward(out, gate, up, n);
    SwigluRef ref = {to_double(gate, n), to_double(up, n), alloc_d(n), to_double(R, n), n};
    swiglu_loss(&ref);
    CHECK(rel_err(out, ref.out, n) <= FWD_TOL, "swiglu forward %g", rel_err(out, ref.out, n));
    int finite = 1;
    for (size_t i = 0; i < n; i++) /* relative to the largest output, so each one alone */
        finite &= isfinite(out[i]) && fabs(out[i] - ref.out[i]) <= 1e-6 * fabs(ref.out[i]) + 1e-30;
    CHECK(finite, "swiglu forward: an element is not finite or off by more than 1e-6 relative");
    free(ref.out);
    ref.out = NULL;

    /* both gradients are overwritten */
    float *dgate = filled(n, NAN), *dup = filled(n, NAN);
    hn_swiglu_backward(dgate, dup, R, gate, up, n);
    double *ggate = alloc_d(n), *gup = alloc_d(n);
    numeric_grad(ggate, ref.gate, n, swiglu_loss, &ref);
    numeric_grad(gup, ref.up, n, swiglu_loss, &ref);
    int ok = within("swiglu dgate", rel_err(dgate, ggate, n), GRAD_TOL, quiet);
    ok &= within("swiglu dup", rel_err(dup, gup, n), GRAD_TOL, quiet);
    finite = 1;
    for (size_t i = 0; i < n; i++)
        finite &= isfinite(dgate[i]) && isfinite(dup[i]);
    CHECK(finite, "swiglu backward gives a non-finite gradient for a finite input");

    /* dup may alias dout */
    float* inplace = copy_f(R, n);
    float* dgate1 = filled(n, NAN);
    hn_swiglu_backward(dgate1, inplace, inplace, gate, up, n);
    CHECK(bits_equal(inplace, dup, n) && bits_equal(dgate1, dgate, n),
          "swiglu backward with dup aliasing dout differs");
    free(gate), free(up), free(R), free(out), free(dgate), free(dup), free(ggate), free(gup);
    free(inplace), free(dgate1), free(ref.gate), free(ref.up), free((void*)ref.R);
    return ok;
}

/* ---- grouped-query attention ---- */

typedef struct {
    const double *q, *k, *v; /* rows qs, kvs apart; may point into one fused buffer */
    double *out, *att;
    const double* R;
    int B, T, NH, NKV, HS, qs, kvs;
} GqaRef;

static double gqa_loss(const void* p) {
    const GqaRef* a = p;
    const int T = a->T, HS = a->HS, C = a->NH * HS, G = a->NH / a->NKV;
    double* row = alloc_d(T);
    double loss = 0.0;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->NH; h++)
            for (int t = 0; t < T; t++) {
                const double* q = a->q + (size_t)(b * T + t) * a->qs + h * HS;
                const size_t kv0 = (size_t)b * T * a->kvs + (h / G) * HS;
                double maxv = -INFINITY, sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double* k = a->k + kv0 + (size_t)t2 * a->kvs;
                    double s = 0.0;
                    for (int i = 0; i < HS; i++)
                        s += q[i] * k[i];
                    row[t2] = s / sqrt(HS);
                    if (row[t2] > maxv) maxv = row[t2];
                }
                for (int t2 = 0; t2 <= t; t2++)
                    sum += row[t2] = exp(row[t2] - maxv);
                for (int t2 = 0; t2 <= t; t2++)
                    row[t2] /= sum;
                if (a->att)
                    for (int t2 = 0; t2 < T; t2++)
                        a->att[(((size_t)b * a->NH + h) * T + t) * T + t2] =
                            t2 <= t ? row[t2] : 0.0;
                for (int i = 0; i < HS; i++) {
                    double o = 0.0;
                    for (int t2 = 0; t2 <= t; t2++)
                        o += row[t2] * a->v[kv0 + (size_t)t2 * a->kvs + i];
                    const size_t oi = (size_t)(b * T + t) * C + h * HS + i;
                    if (a->out) a->out[oi] = o;
                    loss += o * a->R[oi];
                }
            }
    free(row);
    return loss;
}

/* One layout of q, k, v: either Llama's fused projection, a row [q | k | v] of
 * (NH + 2 NKV) * HS floats, or three buffers whose rows carry a few padding floats. */
typedef struct {
    float *q, *k, *v, *dq, *dk, *dv; /* into buf, dbuf */
    float *buf[3], *dbuf[3];         /* the allocations (buf[1..2] NULL when fused) */
    size_t n[3];
    int qs, kvs;
} GqaLayout;

static GqaLayout gqa_layout(int B, int T, int NH, int NKV, int HS, int fused) {
    GqaLayout l = {0};
    const int rows = B * T;
    if (fused) {
        l.qs = l.kvs = (NH + 2 * NKV) * HS;
        l.n[0] = (size_t)rows * l.qs;
        l.buf[0] = randn(l.n[0], 1, 0), l.dbuf[0] = filled(l.n[0], NAN);
        l.q = l.buf[0], l.k = l.q + NH * HS, l.v = l.k + NKV * HS;
        l.dq = l.dbuf[0], l.dk = l.dq + NH * HS, l.dv = l.dk + NKV * HS;
    } else {
        l.qs = NH * HS + 5, l.kvs = NKV * HS + 3;
        l.n[0] = (size_t)rows * l.qs, l.n[1] = l.n[2] = (size_t)rows * l.kvs;
        for (int j = 0; j < 3; j++)
            l.buf[j] = randn(l.n[j], 1, 0), l.dbuf[j] = filled(l.n[j], NAN);
        l.q = l.buf[0], l.k = l.buf[1], l.v = l.buf[2];
        l.dq = l.dbuf[0], l.dk = l.dbuf[1], l.dv = l.dbuf[2];
    }
    return l;
}

static void gqa_layout_free(GqaLayout* l) {
    for (int j = 0; j < 3; j++)
        free(l->buf[j]), free(l->dbuf[j]);
}

/* a layout's float buffers in double, q, k, v pointing at the same offsets */
static void gqa_ref_inputs(GqaRef* ref, double* dbuf[3], const GqaLayout* l) {
    for (int j = 0; j < 3; j++)
        dbuf[j] = l->buf[j] ? to_double(l->buf[j], l->n[j]) : NULL;
    ref->q = dbuf[0] + (l->q - l->buf[0]);
    ref->k = l->buf[1] ? dbuf[1] : dbuf[0] + (l->k - l->buf[0]);
    ref->v = l->buf[2] ? dbuf[2] : dbuf[0] + (l->v - l->buf[0]);
    ref->qs = l->qs, ref->kvs = l->kvs;
}

static int check_gqa(int B, int T, int NH, int NKV, int HS, int fused, int quiet) {
    const int C = NH * HS, rows = B * T;
    const size_t natt = (size_t)B * NH * T * T;
    GqaLayout l = gqa_layout(B, T, NH, NKV, HS, fused);
    float *out = filled((size_t)rows * C, NAN), *att = filled(natt, NAN);
    float* R = randn((size_t)rows * C, 1, 0);
    hn_attention_gqa_forward(out, att, l.q, l.k, l.v, l.qs, l.kvs, B, T, NH, NKV, HS);
    GqaRef ref = {.out = alloc_d((size_t)rows * C),
                  .att = alloc_d(natt),
                  .R = to_double(R, (size_t)rows * C),
                  .B = B,
                  .T = T,
                  .NH = NH,
                  .NKV = NKV,
                  .HS = HS};
    double* dbuf[3];
    gqa_ref_inputs(&ref, dbuf, &l);
    gqa_loss(&ref);
    CHECK(rel_err(out, ref.out, (size_t)rows * C) <= FWD_TOL, "gqa out (T=%d NH=%d NKV=%d)", T, NH,
          NKV);
    CHECK(rel_err(att, ref.att, natt) <= FWD_TOL, "gqa att (T=%d NH=%d NKV=%d)", T, NH, NKV);
    free(ref.out), free(ref.att);
    ref.out = ref.att = NULL;

    /* dq, dk, dv are overwritten; the padding columns of separate buffers stay NaN */
    hn_attention_gqa_backward(l.dq, l.dk, l.dv, R, l.q, l.k, l.v, att, l.qs, l.kvs, B, T, NH, NKV,
                              HS);
    int ok = 1;
    const char* names[3] = {"gqa dq", "gqa dk", "gqa dv"};
    for (int j = 0; j < 3 && l.buf[j]; j++) {
        /* fused: one buffer, all of whose columns are q, k or v; separate: three, padded */
        const int stride = fused ? l.qs : j == 0 ? l.qs : l.kvs;
        const int width = fused ? l.qs : j == 0 ? C : NKV * HS;
        double* g = alloc_d(l.n[j]);
        numeric_grad(g, dbuf[j], l.n[j], gqa_loss, &ref);
        float* got = gather_f(l.dbuf[j], rows, width, stride);
        double* want = gather_d(g, rows, width, stride);
        ok &= within(fused ? "gqa dqkv" : names[j], rel_err(got, want, (size_t)rows * width),
                     GRAD_TOL, quiet);
        CHECK(padding_untouched(l.dbuf[j], rows, width, stride),
              "gqa backward wrote into padding columns");
        free(g), free(got), free(want);
    }
    gqa_layout_free(&l);
    for (int j = 0; j < 3; j++)
        free(dbuf[j]);
    free(out), free(att), free(R), free((void*)ref.R);
    return ok;
}

/* T = 2048: the forward in full, the backward at a few random entries of dq, dk, dv (a full
 * finite difference would take minutes) */
static void check_gqa_long(void) {
    const int B = 1, T = 2048, NH = 2, NKV = 1, HS = 16, C = NH * HS;
    const size_t natt = (size_t)B * NH * T * T;
    GqaLayout l = gqa_layout(B, T, NH, NKV, HS, 1);
    float *out = filled((size_t)T * C, NAN), *att = filled(natt, NAN), *R = randn(T * C, 1, 0);
    hn_attention_gqa_forward(out, att, l.q, l.k, l.v, l.qs, l.kvs, B, T, NH, NKV, HS);
    GqaRef ref = {.out = alloc_d((size_t)T * C),
                  .R = to_double(R, (size_t)T * C),
                  .B = B,
                  .T = T,
                  .NH = NH,
                  .NKV = NKV,
                  .HS = HS};
    double* dbuf[3];
    gqa_ref_inputs(&ref, dbuf, &l);
    gqa_loss(&ref);
    CHECK(rel_err(out, ref.out, (size_t)T * C) <= FWD_TOL, "gqa out at T=2048: %g",
          rel_err(out, ref.out, (size_t)T * C));
    free(ref.out);
    ref.out = NULL;
    hn_attention_gqa_backward(l.dq, l.dk, l.dv, R, l.q, l.k, l.v, att, l.qs, l.kvs, B, T, NH, NKV,
                              HS);
    double worst = 0.0, scale = 1e-30;
    for (int s = 0; s < 4; s++) {
        /* one entry of each of q, k, v, and one more anywhere */
        const size_t col = s < 3 ? (size_t)(s == 0   ? 0
                                            : s == 1 ? C
                                                     : C + HS) +
                                       hn_rng_below(&rng, s == 0 ? C : HS)
                                 : hn_rng_below(&rng, l.qs);
        const size_t i = hn_rng_below(&rng, T) * l.qs + col;
        double g;
        numeric_grad(&g, dbuf[0] + i, 1, gqa_loss, &ref);
        if (!(fabs(l.dbuf[0][i] - g) <= worst)) worst = fabs(l.dbuf[0][i] - g);
        if (fabs(g) > scale) scale = fabs(g);
    }
    int finite = 1;
    for (size_t i = 0; i < l.n[0]; i++)
        finite &= isfinite(l.dbuf[0][i]);
    CHECK(finite && worst / scale <= 1e-3, "gqa backward at T=2048: %g", worst / scale);
    gqa_layout_free(&l);
    free(dbuf[0]), free(out), free(att), free(R), free((void*)ref.R);
}

/* NKV = NH on GPT-2's fused qkv is hn_attention_forward/backward's case */
static void check_gqa_matches_attention(void) {
    const int B = 2, T = 37, NH = 3, HS = 64, C = NH * HS;
    const size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C,
                 natt = (size_t)B * NH * T * T;
    float *qkv = randn(nqkv, 1, 0), *dout = randn(nout, 1, 0);
    float *out1 = filled(nout, NAN), *att1 = filled(natt, NAN), *dqkv1 = filled(nqkv, NAN);
    float *out2 = filled(nout, NAN), *att2 = filled(natt, NAN), *dqkv2 = filled(nqkv, NAN);
    hn_attention_forward(out1, att1, qkv, B, T, C, NH);
    hn_attention_backward(dqkv1, dout, qkv, att1, B, T, C, NH);
    hn_attention_gqa_forward(out2, att2, qkv, qkv + C, qkv + 2 * C, 3 * C, 3 * C, B, T, NH, NH, HS);
    hn_attention_gqa_backward(dqkv2, dqkv2 + C, dqkv2 + 2 * C, dout, qkv, qkv + C, qkv + 2 * C,
                              att2, 3 * C, 3 * C, B, T, NH, NH, HS);
    double *o1 = to_double(out1, nout), *a1 = to_double(att1, natt), *d1 = to_double(dqkv1, nqkv);
    CHECK(rel_err(out2, o1, nout) <= 1e-6 && rel_err(att2, a1, natt) <= 1e-6,
          "gqa forward with NKV = NH differs from hn_attention_forward");
    CHECK(rel_err(dqkv2, d1, nqkv) <= 1e-6,
          "gqa backward with NKV = NH differs from hn_attention_backward: %g",
          rel_err(dqkv2, d1, nqkv));
    free(qkv), free(dout), free(out1), free(att1), free(dqkv1), free(out2), free(att2);
    free(dqkv2), free(o1), free(a1), free(d1);
}

/* ---- determinism of the reductions: 1 and 2 threads give the same bits ---- */

static void check_thread_independence(void) {
    const int N = 96, C = 200;
    float *inp = randn(N * C, 1, 0), *w = randn(C, 1, 1), *dout = randn(N * C, 1, 0);
    float *out = alloc_f(N * C), *rstd = alloc_f(N);
    hn_rmsnorm_forward(out, rstd, inp, w, N, C, 1e-5f);

    const int B = 1, T = 45, NH = 4, NKV = 2, HS = 32; /* B * NKV = 2 tasks */
    GqaLayout l = gqa_layout(B, T, NH, NKV, HS, 1);
    const size_t natt = (size_t)B * NH * T * T, nout = (size_t)B * T * NH * HS;
    float *att = alloc_f(natt), *gout = alloc_f(nout), *gdout = randn(nout, 1, 0);
    hn_attention_gqa_forward(gout, att, l.q, l.k, l.v, l.qs, l.kvs, B, T, NH, NKV, HS);

    float* res[2][3];
    const int threads = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        res[k][0] = filled(N * C, 0), res[k][1] = filled(C, 0), res[k][2] = filled(l.n[0], 0);
        hn_rmsnorm_backward(res[k][0], res[k][1], dout, inp, w, rstd, N, C);
        float* d = res[k][2];
        hn_attention_gqa_backward(d, d + NH * HS, d + (NH + NKV) * HS, gdout, l.q, l.k, l.v, att,
                                  l.qs, l.kvs, B, T, NH, NKV, HS);
    }
    omp_set_num_threads(threads);
    CHECK(bits_equal(res[0][0], res[1][0], N * C) && bits_equal(res[0][1], res[1][1], C),
          "rmsnorm backward depends on the thread count");
    CHECK(bits_equal(res[0][2], res[1][2], l.n[0]), "gqa backward depends on the thread count");
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 3; j++)
            free(res[k][j]);
    gqa_layout_free(&l);
    free(inp), free(w), free(dout), free(out), free(rstd), free(att), free(gout), free(gdout);
}

/* ---- a gradient check passes, then fails once its op is broken ---- */

#define CHECK_GRADIENT(op, call_quiet, call_loud)                                                  \
    do {                                                                                           \
        CHECK(call_loud, "%s gradient check", op);                                                 \
        hn_ops_test_break(op);                                                                     \
        CHECK(!(call_quiet), "broken %s backward was not caught", op);                             \
        hn_ops_test_break(NULL);                                                                   \
    } while (0)

int main(void) {
    hn_rng_seed(&rng, 4321);
    CHECK_GRADIENT("rmsnorm", check_rmsnorm(7, 37, 1), check_rmsnorm(7, 37, 0));
    CHECK(check_rmsnorm(3, 64, 0), "rmsnorm gradient check, C = 64");

    /* odd T, pos0 > 0, rows wider than the heads (the k part of a fused qkv row) */
    check_rope_forward(2, 5, 3, 8, 3 * 8 + 7, 11, 10000.0f);
    CHECK_GRADIENT("rope", check_rope(2, 5, 3, 8, 3 * 8 + 7, 11, 10000.0f, 1),
                   check_rope(2, 5, 3, 8, 3 * 8 + 7, 11, 10000.0f, 0));
    /* T spanning several position blocks, pos0 = 0 */
    check_rope_forward(1, 37, 2, 6, 12, 0, 500.0f);
    CHECK(check_rope(1, 37, 2, 6, 12, 0, 500.0f, 0), "rope gradient check, T = 37");
    /* large positions (up to 8019, p = 8000 inside) against the direct double formula */
    check_rope_forward(1, 40, 2, 64, 128, 7980, 1e5f);
    check_rope_forward(1, 40, 2, 64, 128, 7980, 1e4f);
    check_rope_forward(2, 3, 1, 128, 128, 8000, 5e5f);
    check_rope_hf_fixture();

    CHECK_GRADIENT("swiglu", check_swiglu(1), check_swiglu(0));

    /* NH = 4 query heads on 2 kv heads, fused and separate padded layouts; then MQA */
    CHECK_GRADIENT("attention_gqa", check_gqa(2, 7, 4, 2, 8, 1, 1), check_gqa(2, 7, 4, 2, 8, 1, 0));
    CHECK(check_gqa(1, 9, 4, 2, 6, 0, 0), "gqa gradient check, separate padded buffers");
    CHECK(check_gqa(2, 5, 4, 1, 8, 0, 0), "gqa gradient check, NKV = 1");
    CHECK(check_gqa(1, 6, 2, 2, 8, 1, 0), "gqa gradient check, NKV = NH");
    check_gqa_long();
    check_gqa_matches_attention();

    check_thread_independence();
    return hn_test_finish("test_ops_llama");
}
