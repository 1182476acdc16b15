/*
 * The CPU ops of kernels/ops.h against independent double-precision references.
 *
 * Every backward is checked against a central finite difference of a forward written here
 * in double, with the scalar loss sum(out * R) for a random R, so every output element
 * counts. The same check is then run with the op deliberately broken (hn_ops_test_break) to
 * prove it would catch a wrong gradient. Gradient buffers the contract accumulates into are
 * pre-filled with random values, those it overwrites with NaN, so a convention mistake fails.
 *
 * Tolerances: float kernels against double references agree to ~1e-6 relative; a
 * deliberately broken backward is off by ~1e-2. Checks compare the largest error of an
 * array to the largest magnitude of its reference (GRAD_TOL = 1e-4 for gradients).
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
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

/* ---- encoder ---- */

typedef struct {
    const int* tokens;
    double *wte, *wpe;
    const double* R;
    int B, T, C;
} EncoderRef;

static double encoder_loss(const void* p) {
    const EncoderRef* e = p;
    double loss = 0.0;
    for (int i = 0; i < e->B * e->T; i++)
        for (int c = 0; c < e->C; c++)
            loss += (e->wte[e->tokens[i] * e->C + c] + e->wpe[(i % e->T) * e->C + c]) *
                    e->R[i * e->C + c];
    return loss;
}

static int check_encoder(int quiet) {
    const int B = 3, T = 5, C = 70, V = 4, maxT = T + 2; /* V < B*T: tokens repeat */
    int tokens[3 * 5];
    for (int i = 0; i < B * T; i++)
        tokens[i] = (int)hn_rng_below(&rng, V);
    float *wte = randn(V * C, 1, 0), *wpe = randn(maxT * C, 1, 0), *R = randn(B * T * C, 1, 0);
    float* out = alloc_f(B * T * C);
    hn_encoder_forward(out, tokens, NULL, wte, wpe, B, T, C);
    int fwd_ok = 1;
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            fwd_ok &= out[i * C + c] == wte[tokens[i] * C + c] + wpe[(i % T) * C + c];
    CHECK(fwd_ok, "encoder forward is not wte[token] + wpe[t]");

    float *dwte0 = randn(V * C, 1, 0), *dwpe0 = randn(maxT * C, 1, 0);
    float *dwte = copy_f(dwte0, V * C), *dwpe = copy_f(dwpe0, maxT * C);
    hn_encoder_backward(dwte, dwpe, R, tokens, NULL, B, T, C);

    EncoderRef ref = {
        tokens, to_double(wte, V * C), to_double(wpe, maxT * C), to_double(R, B * T * C), B, T, C};
    double *gwte = alloc_d(V * C), *gwpe = alloc_d(maxT * C);
    numeric_grad(gwte, ref.wte, V * C, encoder_loss, &ref);
    numeric_grad(gwpe, ref.wpe, maxT * C, encoder_loss, &ref);
    int ok = within("encoder dwte", rel_err_added(dwte, dwte0, gwte, V * C), GRAD_TOL, quiet);
    ok &= within("encoder dwpe", rel_err_added(dwpe, dwpe0, gwpe, maxT * C), GRAD_TOL, quiet);

    /* NULL means frozen: the other gradient is unchanged, bit for bit */
    float *dwte1 = copy_f(dwte0, V * C), *dwpe1 = copy_f(dwpe0, maxT * C);
    hn_encoder_backward(dwte1, NULL, R, tokens, NULL, B, T, C);
    hn_encoder_backward(NULL, dwpe1, R, tokens, NULL, B, T, C);
    CHECK(bits_equal(dwte1, dwte, V * C) && bits_equal(dwpe1, dwpe, maxT * C),
          "encoder backward with a NULL gradient changes the other one");

    free(wte), free(wpe), free(R), free(out), free(dwte0), free(dwpe0), free(dwte), free(dwpe);
    free(ref.wte), free(ref.wpe), free((void*)ref.R), free(gwte), free(gwpe), free(dwte1),
        free(dwpe1);
    return ok;
}

/* ---- layernorm ---- */

typedef struct {
    double *inp, *w, *b, *out, *mean, *rstd;
    const double* R;
    int N, C;
    double eps;
} LayerNormRef;

static double layernorm_loss(const void* p) {
    const LayerNormRef* l = p;
    double loss = 0.0;
    for (int i = 0; i < l->N; i++) {
        const double* x = l->inp + i * l->C;
        double m = 0.0, var = 0.0;
        for (int c = 0; c < l->C; c++)
            m += x[c];
        m /= l->C;
        for (int c = 0; c < l->C; c++)
            var += (x[c] - m) * (x[c] - m);
        const double s = 1.0 / sqrt(var / l->C + l->eps);
        for (int c = 0; c < l->C; c++) {
            const double o = (x[c] - m) * s * l->w[c] + l->b[c];
            if (l->out) l->out[i * l->C + c] = o;
            loss += o * l->R[i * l->C + c];
        }
        if (l->mean) l->mean[i] = m, l->rstd[i] = s;
    }
    return loss;
}

static int check_layernorm(int N, int C, int quiet) {
    const float eps = 1e-5f;
    /* a mean far from 0 exercises the cancellation a one-pass variance would suffer */
    float *inp = randn(N * C, 2, 3), *w = randn(C, 1, 1), *b = randn(C, 1, 0);
    float *R = randn(N * C, 1, 0), *out = alloc_f(N * C), *mean = alloc_f(N), *rstd = alloc_f(N);
    hn_layernorm_forward(out, mean, rstd, inp, w, b, N, C, eps);
    LayerNormRef ref = {to_double(inp, N * C),
                        to_double(w, C),
                        to_double(b, C),
                        alloc_d(N * C),
                        alloc_d(N),
                        alloc_d(N),
                        to_double(R, N * C),
                        N,
                        C,
                        eps};
    layernorm_loss(&ref);
    CHECK(rel_err(out, ref.out, N * C) <= FWD_TOL, "layernorm out %g",
          rel_err(out, ref.out, N * C));
    CHECK(rel_err(mean, ref.mean, N) <= FWD_TOL && rel_err(rstd, ref.rstd, N) <= FWD_TOL,
          "layernorm mean/rstd");
    free(ref.out), free(ref.mean), free(ref.rstd);
    ref.out = ref.mean = ref.rstd = NULL;

    /* all three gradients are accumulated */
    float *dinp0 = randn(N * C, 1, 0), *dw0 = randn(C, 1, 0), *db0 = randn(C, 1, 0);
    float *dinp = copy_f(dinp0, N * C), *dw = copy_f(dw0, C), *db = copy_f(db0, C);
    hn_layernorm_backward(dinp, dw, db, R, inp, w, mean, rstd, N, C);
    double *ginp = alloc_d(N * C), *gw = alloc_d(C), *gb = alloc_d(C);
    numeric_grad(ginp, ref.inp, N * C, layernorm_loss, &ref);
    numeric_grad(gw, ref.w, C, layernorm_loss, &ref);
    numeric_grad(gb, ref.b, C, layernorm_loss, &ref);
    int ok = within("layernorm dinp", rel_err_added(dinp, dinp0, ginp, N * C), GRAD_TOL, quiet);
    ok &= within("layernorm dweight", rel_err_added(dw, dw0, gw, C), GRAD_TOL, quiet);
    ok &= within("layernorm dbias", rel_err_added(db, db0, gb, C), GRAD_TOL, quiet);

    float* dinp1 = copy_f(dinp0, N * C);
    hn_layernorm_backward(dinp1, NULL, NULL, R, inp, w, mean, rstd, N, C);
    CHECK(bits_equal(dinp1, dinp, N * C), "layernorm dinp depends on whether dweight is NULL");

    free(inp), free(w), free(b), free(R), free(out), free(mean), free(rstd), free(dinp0);
    free(dw0), free(db0), free(dinp), free(dw), free(db), free(ginp), free(gw), free(gb);
    free(ref.inp), free(ref.w), free(ref.b), free((void*)ref.R), free(dinp1);
    return ok;
}

/* ---- matmul ---- */

typedef struct {
    double *inp, *w, *b, *out;
    const double* R;
    int N, C, OC;
} MatmulRef;

static double matmul_loss(const void* p) {
    const MatmulRef* m = p;
    double loss = 0.0;
    for (int i = 0; i < m->N; i++)
        for (int o = 0; o < m->OC; o++) {
            double s = m->b ? m->b[o] : 0.0;
            for (int c = 0; c < m->C; c++)
                s += m->inp[i * m->C + c] * m->w[o * m->C + c];
            if (m->out) m->out[i * m->OC + o] = s;
            loss += s * m->R[i * m->OC + o];
        }
    return loss;
}

static int check_matmul(int N, int C, int OC, int quiet) {
    float *inp = randn(N * C, 1, 0), *w = randn(OC * C, 1, 0), *b = randn(OC, 1, 0);
    float *R = randn(N * OC, 1, 0), *out = filled(N * OC, NAN);
    MatmulRef ref = {to_double(inp, N * C),
                     to_double(w, OC * C),
                     NULL,
                     alloc_d(N * OC),
                     to_double(R, N * OC),
                     N,
                     C,
                     OC};
    hn_matmul_forward(out, inp, w, NULL, N, C, OC);
    matmul_loss(&ref);
    CHECK(rel_err(out, ref.out, N * OC) <= FWD_TOL, "matmul forward without bias");
    ref.b = to_double(b, OC);
    hn_matmul_forward(out, inp, w, b, N, C, OC);
    matmul_loss(&ref);
    CHECK(rel_err(out, ref.out, N * OC) <= FWD_TOL, "matmul forward with bias");
    free(ref.out);
    ref.out = NULL;

    /* dinp is overwritten, dweight and dbias accumulated */
    float *dinp = filled(N * C, NAN), *dw0 = randn(OC * C, 1, 0), *db0 = randn(OC, 1, 0);
    float *dw = copy_f(dw0, OC * C), *db = copy_f(db0, OC);
    hn_matmul_backward(dinp, dw, db, R, inp, w, N, C, OC);
    double *ginp = alloc_d(N * C), *gw = alloc_d(OC * C), *gb = alloc_d(OC);
    numeric_grad(ginp, ref.inp, N * C, matmul_loss, &ref);
    numeric_grad(gw, ref.w, OC * C, matmul_loss, &ref);
    numeric_grad(gb, ref.b, OC, matmul_loss, &ref);
    int ok = within("matmul dinp", rel_err(dinp, ginp, N * C), GRAD_TOL, quiet);
    ok &= within("matmul dweight", rel_err_added(dw, dw0, gw, OC * C), GRAD_TOL, quiet);
    ok &= within("matmul dbias", rel_err_added(db, db0, gb, OC), GRAD_TOL, quiet);

    /* NULLs skip their gradient and leave the others as they were */
    float *dw1 = copy_f(dw0, OC * C), *db1 = copy_f(db0, OC), *dinp1 = filled(N * C, NAN);
    hn_matmul_backward(NULL, dw1, NULL, R, inp, w, N, C, OC);
    hn_matmul_backward(dinp1, NULL, db1, R, inp, w, N, C, OC);
    CHECK(bits_equal(dw1, dw, OC * C) && bits_equal(db1, db, OC) && bits_equal(dinp1, dinp, N * C),
          "matmul backward with NULL gradients differs");

    free(inp), free(w), free(b), free(R), free(out), free(dinp), free(dw0), free(db0), free(dw);
    free(db), free(ginp), free(gw), free(gb), free(dw1), free(db1), free(dinp1);
    free(ref.inp), free(ref.w), free(ref.b), free((void*)ref.R);
    return ok;
}

/* ---- attention ---- */

typedef struct {
    double *qkv, *out, *att;
    const double* R;
    int B, T, C, NH;
} AttentionRef;

static double attention_loss(const void* p) {
    const AttentionRef* a = p;
    const int T = a->T, C = a->C, HS = C / a->NH;
    double* row = alloc_d(T);
    double loss = 0.0;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->NH; h++)
            for (int t = 0; t < T; t++) {
                const double* q = a->qkv + (b * T + t) * 3 * C + h * HS;
                double maxv = -INFINITY, sum = 0.0;
                for (int t2 = 0; t2 <= t; t2++) {
                    const double* k = a->qkv + (b * T + t2) * 3 * C + C + h * HS;
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
                        a->att[((b * a->NH + h) * T + t) * T + t2] = t2 <= t ? row[t2] : 0.0;
                for (int i = 0; i < HS; i++) {
                    double o = 0.0;
                    for (int t2 = 0; t2 <= t; t2++)
                        o += row[t2] * a->qkv[(b * T + t2) * 3 * C + 2 * C + h * HS + i];
                    if (a->out) a->out[(b * T + t) * C + h * HS + i] = o;
                    loss += o * a->R[(b * T + t) * C + h * HS + i];
                }
            }
    free(row);
    return loss;
}

/* forward against the double reference, and the shape of att: rows sum to 1, 0 above the
 * diagonal. Returns the op's att and out (caller frees) in *att_out, *out_out. */
static void check_attention_forward(const float* qkv, int B, int T, int C, int NH, float** att_out,
                                    float** out_out) {
    const size_t natt = (size_t)B * NH * T * T;
    float *out = filled(B * T * C, NAN), *att = filled(natt, NAN), *R = randn(B * T * C, 1, 0);
    hn_attention_forward(out, att, qkv, B, T, C, NH);
    AttentionRef ref = {to_double(qkv, B * T * 3 * C),
                        alloc_d(B * T * C),
                        alloc_d(natt),
                        to_double(R, B * T * C),
                        B,
                        T,
                        C,
                        NH};
    attention_loss(&ref);
    CHECK(rel_err(out, ref.out, B * T * C) <= FWD_TOL, "attention out (T=%d)", T);
    CHECK(rel_err(att, ref.att, natt) <= FWD_TOL, "attention att (T=%d)", T);
    double worst_sum = 0.0;
    int upper_zero = 1;
    for (int r = 0; r < B * NH * T; r++) {
        const float* a = att + (size_t)r * T;
        const int t = r % T;
        double s = 0.0;
        for (int t2 = 0; t2 < T; t2++) {
            s += a[t2];
            if (t2 > t) upper_zero &= a[t2] == 0.0f;
        }
        if (!(fabs(s - 1.0) <= worst_sum)) worst_sum = fabs(s - 1.0);
    }
    CHECK(worst_sum <= 1e-5, "attention rows sum to 1 within %g (T=%d)", worst_sum, T);
    CHECK(upper_zero, "attention probabilities above the diagonal are not 0 (T=%d)", T);
    free(R), free(ref.qkv), free(ref.out), free(ref.att), free((void*)ref.R);
    *att_out = att;
    *out_out = out;
}

static int check_attention(int B, int T, int C, int NH, int quiet) {
    const size_t nqkv = (size_t)B * T * 3 * C;
    float* qkv = randn(nqkv, 1, 0);
    float *att, *out;
    check_attention_forward(qkv, B, T, C, NH, &att, &out);
    float *R = randn(B * T * C, 1, 0), *dqkv = filled(nqkv, NAN); /* overwritten */
    hn_attention_backward(dqkv, R, qkv, att, B, T, C, NH);
    AttentionRef ref = {to_double(qkv, nqkv), NULL, NULL, to_double(R, B * T * C), B, T, C, NH};
    double* g = alloc_d(nqkv);
    numeric_grad(g, ref.qkv, nqkv, attention_loss, &ref);
    int ok = within("attention dqkv", rel_err(dqkv, g, nqkv), GRAD_TOL, quiet);
    free(qkv), free(att), free(out), free(R), free(dqkv), free(ref.qkv), free((void*)ref.R),
        free(g);
    return ok;
}

/* T = 1024: the forward in full, the backward at a few random entries of dqkv (a full
 * finite difference would take minutes) */
static void check_attention_long(void) {
    const int B = 1, T = 1024, C = 16, NH = 2;
    const size_t nqkv = (size_t)B * T * 3 * C;
    float* qkv = randn(nqkv, 1, 0);
    float *att, *out;
    check_attention_forward(qkv, B, T, C, NH, &att, &out);
    float *R = randn(B * T * C, 1, 0), *dqkv = filled(nqkv, NAN);
    hn_attention_backward(dqkv, R, qkv, att, B, T, C, NH);
    AttentionRef ref = {to_double(qkv, nqkv), NULL, NULL, to_double(R, B * T * C), B, T, C, NH};
    double worst = 0.0, scale = 1e-30;
    for (int k = 0; k < 6; k++) {
        const size_t i = hn_rng_below(&rng, nqkv);
        double g;
        numeric_grad(&g, ref.qkv + i, 1, attention_loss, &ref);
        if (!(fabs(dqkv[i] - g) <= worst)) worst = fabs(dqkv[i] - g);
        if (fabs(g) > scale) scale = fabs(g);
    }
    int finite = 1;
    for (size_t i = 0; i < nqkv; i++)
        finite &= isfinite(dqkv[i]);
    CHECK(finite && worst / scale <= 1e-3, "attention backward at T=1024: %g", worst / scale);
    free(qkv), free(att), free(out), free(R), free(dqkv), free(ref.qkv), free((void*)ref.R);
}

/* ---- gelu and residual ---- */

typedef struct {
    double* x;
    double* out;
    const double* R;
    size_t n;
} GeluRef;

static double gelu_loss(const void* p) {
    const GeluRef* g = p;
    double loss = 0.0;
    for (size_t i = 0; i < g->n; i++) {
        const double x = g->x[i];
        const double o =
            0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
        if (g->out) g->out[i] = o;
        loss += o * g->R[i];
    }
    return loss;
}

static int check_gelu(int quiet) {
    const size_t n = 101;
    float *x = randn(n, 2, 0), *R = randn(n, 1, 0);
    /* the saturated tails and the neighbourhood of 0 */
    const float special[] = {-12.0f, -6.0f, -3.0f, -0.01f, 0.0f, 0.02f, 3.0f, 6.0f, 12.0f};
    for (size_t i = 0; i < sizeof special / sizeof *special; i++)
        x[i * 7] = special[i];
    float* out = filled(n, NAN);
    hn_gelu_forward(out, x, n);
    GeluRef ref = {to_double(x, n), alloc_d(n), to_double(R, n), n};
    gelu_loss(&ref);
    CHECK(rel_err(out, ref.out, n) <= FWD_TOL, "gelu forward %g", rel_err(out, ref.out, n));
    free(ref.out);
    ref.out = NULL;

    float* dinp = filled(n, NAN);
    hn_gelu_backward(dinp, x, R, n);
    double* g = alloc_d(n);
    numeric_grad(g, ref.x, n, gelu_loss, &ref);
    int ok = within("gelu dinp", rel_err(dinp, g, n), GRAD_TOL, quiet);

    float* inplace = copy_f(R, n); /* dinp may alias dout */
    hn_gelu_backward(inplace, x, inplace, n);
    CHECK(bits_equal(inplace, dinp, n), "gelu backward in place differs");
    free(x), free(R), free(out), free(dinp), free(g), free(inplace), free(ref.x),
        free((void*)ref.R);
    return ok;
}

static void check_residual(void) {
    const size_t n = 77;
    float *a = randn(n, 1, 0), *b = randn(n, 1, 0), *out = filled(n, NAN);
    hn_residual_forward(out, a, b, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++)
        ok &= out[i] == a[i] + b[i];
    hn_residual_forward(a, a, b, n); /* out may alias an input */
    CHECK(ok && bits_equal(a, out, n), "residual is not a + b");
    free(a), free(b), free(out);
}

/* ---- cross-entropy ---- */

typedef struct {
    double* logits;
    const int* targets;
    double* losses;
    int N, V, Vp;
    double scale;
} CrossEntropyRef;

/* grad_scale * sum of the losses of counted rows, from a double log-softmax */
static double crossentropy_loss(const void* p) {
    const CrossEntropyRef* c = p;
    double total = 0.0;
    for (int i = 0; i < c->N; i++) {
        const double* x = c->logits + (size_t)i * c->Vp;
        double loss = 0.0;
        if (c->targets[i] != HN_IGNORE) {
            double maxv = -INFINITY, sum = 0.0;
            for (int v = 0; v < c->V; v++)
                maxv = x[v] > maxv ? x[v] : maxv;
            for (int v = 0; v < c->V; v++)
                sum += exp(x[v] - maxv);
            loss = -(x[c->targets[i]] - maxv - log(sum));
        }
        if (c->losses) c->losses[i] = loss;
        total += loss;
    }
    return c->scale * total;
}

static int check_crossentropy(int quiet) {
    const int N = 7, V = 37, Vp = 40, ignored = 2;
    const float grad_scale = 0.37f;
    int targets[7];
    for (int i = 0; i < N; i++)
        targets[i] = (int)hn_rng_below(&rng, V);
    targets[ignored] = HN_IGNORE;
    float* logits = randn(N * Vp, 2, 0);
    for (int i = 0; i < N; i++) /* padded columns must never be read */
        for (int v = V; v < Vp; v++)
            logits[i * Vp + v] = NAN;
    logits[1 * Vp + 5] += 1000.0f; /* a dominant logit: the max subtraction must hold */
    if (targets[3] != 4) logits[3 * Vp + 4] = -INFINITY; /* a masked-out column */

    CrossEntropyRef ref = {to_double(logits, N * Vp), targets, alloc_d(N), N, V, Vp, 1.0};
    const double want_total = crossentropy_loss(&ref);

    /* grad_scale 0: losses only, logits untouched */
    float *x = copy_f(logits, N * Vp), *losses = filled(N, NAN);
    double total = hn_crossentropy_forward(x, losses, targets, N, V, Vp, 0.0f);
    CHECK(bits_equal(x, logits, N * Vp), "crossentropy with grad_scale 0 changed the logits");
    CHECK(rel_err(losses, ref.losses, N) <= FWD_TOL, "crossentropy losses");
    CHECK(hn_close(total, want_total, 1e-6, 0), "crossentropy total %g vs %g", total, want_total);
    CHECK(losses[ignored] == 0.0f, "ignored row has loss %g", losses[ignored]);

    total = hn_crossentropy_forward(x, losses, targets, N, V, Vp, grad_scale);
    CHECK(rel_err(losses, ref.losses, N) <= FWD_TOL && hn_close(total, want_total, 1e-6, 0),
          "crossentropy losses with gradient");
    int zeros = 1;
    for (int i = 0; i < N; i++)
        for (int v = 0; v < Vp; v++)
            if (i == ignored || v >= V) zeros &= x[i * Vp + v] == 0.0f;
    CHECK(zeros, "ignored rows or padded columns got a nonzero gradient");

    ref.scale = grad_scale;
    ref.losses = (free(ref.losses), NULL);
    double* g = alloc_d(N * Vp);
    for (int i = 0; i < N; i++) /* only the real columns are inputs */
        numeric_grad(g + i * Vp, ref.logits + i * Vp, V, crossentropy_loss, &ref);
    int ok = within("crossentropy dlogits", rel_err(x, g, N * Vp), GRAD_TOL, quiet);
    free(logits), free(x), free(losses), free(ref.logits), free(g);
    return ok;
}

static void check_crossentropy_nan(void) {
    const int V = 20, Vp = 32, target = 3;
    float* x = randn(Vp, 1, 0);
    x[11] = NAN;
    float loss;
    double total = hn_crossentropy_forward(x, &loss, &target, 1, V, Vp, 1.0f);
    CHECK(isnan(loss) && isnan(total), "a NaN logit does not make the loss NaN");
    free(x);
}

/* ---- optimizer ---- */

static void check_adamw(void) {
    const size_t n = 1003;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p = randn(n, 1, 0), *m = filled(n, 0), *v = filled(n, 0), *g = alloc_f(n);
    double *rp = to_double(p, n), *rm = alloc_d(n), *rv = alloc_d(n);
    double worst = 0.0;
    int grads_ok = 1;
    for (int t = 1; t <= 3; t++) {
        const int zero_grad = t == 2;
        for (size_t i = 0; i < n; i++)
            g[i] = 3.0f * hn_rng_normal(&rng);
        float* g0 = copy_f(g, n);
        hn_adamw_update(p, g, m, v, n, lr, b1, b2, eps, wd, gs, t, zero_grad);
        /* torch.optim.AdamW, as written in ops.h, in double */
        for (size_t i = 0; i < n; i++) {
            const double gi = (double)g0[i] * gs;
            rm[i] = (double)b1 * rm[i] + (1.0 - (double)b1) * gi;
            rv[i] = (double)b2 * rv[i] + (1.0 - (double)b2) * gi * gi;
            rp[i] -= (double)lr * wd * rp[i];
            rp[i] -= (double)lr * (rm[i] / (1.0 - pow(b1, t))) /
                     (sqrt(rv[i] / (1.0 - pow(b2, t))) + eps);
            grads_ok &= zero_grad ? g[i] == 0.0f : g[i] == g0[i];
        }
        free(g0);
        const double e[3] = {rel_err(p, rp, n), rel_err(m, rm, n), rel_err(v, rv, n)};
        for (int k = 0; k < 3; k++)
            worst = e[k] > worst || isnan(e[k]) ? e[k] : worst;
    }
    CHECK(worst <= 1e-6, "adamw p, m, v against double: %g", worst);
    CHECK(grads_ok, "adamw zero_grad: g not zeroed, or zeroed when it should not be");
    free(p), free(m), free(v), free(g), free(rp), free(rm), free(rv);
}

static void check_sum_squares(void) {
    const size_t n = 5000003; /* several parallel rounds of blocks, the last one partial */
    float* x = randn(n, 1, 0.5f);
    double want = 0.0;
    for (size_t i = 0; i < n; i++)
        want += (double)x[i] * x[i];
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const double one = hn_sum_squares(x, n);
    omp_set_num_threads(2);
    const double two = hn_sum_squares(x, n);
    omp_set_num_threads(threads);
    CHECK(hn_close(one, want, 1e-12, 0), "sum_squares %.17g vs %.17g", one, want);
    CHECK(memcmp(&one, &two, sizeof one) == 0, "sum_squares differs between 1 and 2 threads");
    CHECK(hn_sum_squares(x, 0) == 0.0 && hn_sum_squares(x, 3) == (double)x[0] * x[0] +
                                                                     (double)x[1] * x[1] +
                                                                     (double)x[2] * x[2],
          "sum_squares of tiny arrays");
    free(x);
}

/* ---- determinism of the reductions over rows ---- */

static void check_thread_independence(void) {
    const int N = 96, C = 200, B = 4, T = 24, V = 5;
    float *inp = randn(N * C, 1, 0), *w = randn(C, 1, 0), *b = randn(C, 1, 0);
    float *dout = randn(N * C, 1, 0), *out = alloc_f(N * C), *mean = alloc_f(N), *rstd = alloc_f(N);
    int tokens[96];
    for (int i = 0; i < N; i++)
        tokens[i] = (int)hn_rng_below(&rng, V);
    hn_layernorm_forward(out, mean, rstd, inp, w, b, N, C, 1e-5f);
    float* res[2][4];
    const int threads = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k + 1);
        res[k][0] = filled(N * C, 0), res[k][1] = filled(C, 0), res[k][2] = filled(C, 0);
        res[k][3] = filled(V * C, 0);
        hn_layernorm_backward(res[k][0], res[k][1], res[k][2], dout, inp, w, mean, rstd, N, C);
        hn_encoder_backward(res[k][3], NULL, dout, tokens, NULL, B, T, C);
    }
    omp_set_num_threads(threads);
    CHECK(bits_equal(res[0][0], res[1][0], N * C) && bits_equal(res[0][1], res[1][1], C) &&
              bits_equal(res[0][2], res[1][2], C) && bits_equal(res[0][3], res[1][3], V * C),
          "layernorm or encoder backward depends on the thread count");
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++)
            free(res[k][j]);
    free(inp), free(w), free(b), free(dout), free(out), free(mean), free(rstd);
}

/* ---- the fast exp and tanh against libm ---- */

static void check_fastmath(void) {
    const int n = 1 << 22;
    double worst_exp = 0.0, worst_tanh = 0.0;
    for (int i = 0; i <= n; i++) {
        const float x = HN_EXP_LO + (HN_EXP_HI - HN_EXP_LO) * (float)i / n;
        const double e = fabs(hn_fast_expf(x) / exp((double)x) - 1.0);
        if (!(e <= worst_exp)) worst_exp = e;
        const float u = -20.0f + 40.0f * (float)i / n;
        const double d = fabs(hn_fast_tanhf(u) - tanh((double)u));
        if (!(d <= worst_tanh)) worst_tanh = d;
    }
    CHECK(worst_exp < HN_FAST_EXP_MAX_REL, "fast exp max relative error %g", worst_exp);
    CHECK(worst_tanh < HN_FAST_TANH_MAX_ABS, "fast tanh max absolute error %g", worst_tanh);
    CHECK(hn_fast_expf(0.0f) == 1.0f && hn_fast_expf(-INFINITY) == 0.0f &&
              hn_fast_expf(-100.0f) == 0.0f && hn_fast_expf(INFINITY) == INFINITY &&
              hn_fast_expf(100.0f) == INFINITY && isnan(hn_fast_expf(NAN)),
          "fast exp special values");
    CHECK(hn_fast_tanhf(50.0f) == 1.0f && hn_fast_tanhf(-50.0f) == -1.0f &&
              hn_fast_tanhf(INFINITY) == 1.0f && hn_fast_tanhf(-INFINITY) == -1.0f &&
              isnan(hn_fast_tanhf(NAN)),
          "fast tanh special values");
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
    hn_rng_seed(&rng, 1234);
    CHECK_GRADIENT("encoder", check_encoder(1), check_encoder(0));
    CHECK_GRADIENT("layernorm", check_layernorm(7, 37, 1), check_layernorm(7, 37, 0));
    CHECK(check_layernorm(3, 64, 0), "layernorm gradient check, C = 64");
    CHECK_GRADIENT("matmul", check_matmul(5, 19, 21, 1), check_matmul(5, 19, 21, 0));
    CHECK_GRADIENT("attention", check_attention(2, 6, 12, 3, 1), check_attention(2, 6, 12, 3, 0));
    CHECK(check_attention(1, 19, 40, 2, 0), "attention gradient check, HS = 20");
    check_attention_long();
    CHECK_GRADIENT("gelu", check_gelu(1), check_gelu(0));
    check_residual();
    CHECK_GRADIENT("crossentropy", check_crossentropy(1), check_crossentropy(0));
    check_crossentropy_nan();
    check_adamw();
    check_sum_squares();
    check_thread_independence();
    check_fastmath();
    return hn_test_finish("test_ops");
}
