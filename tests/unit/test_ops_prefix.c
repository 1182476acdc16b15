/*
 * Causal grouped-query attention after P prefix positions (hn_attention_prefix_*, prefix
 * tuning) against a double-precision reference written here with plain loops, in the
 * harness of test_ops_llama.c:
 *   - P = 0 gives hn_attention_gqa_forward/backward's bits;
 *   - the forward (out and att) matches the reference, also with scores far beyond expf's
 *     range (the softmax subtracts its row maximum);
 *   - every gradient (q, k, v, pk, pv) matches a central finite difference of the scalar
 *     loss sum(out * R), R random, taken in double; dpk and dpv add onto what their buffers
 *     held, and leaving either NULL changes nothing else;
 *   - 1, 2 and 3 OpenMP threads give the same bits;
 *   - with the op broken on purpose (hn_ops_test_break("attention_prefix")) the gradient
 *     check fails.
 * Outputs and overwritten gradients are NaN before each run, so an entry the op forgets to
 * write shows; accumulated gradients start from random values. Layouts: q, k, v as slices
 * of Llama's fused row [q | k | v] with pk, pv the column blocks of one layer in a wider
 * (P, 2 * layers * NKV*HS) matrix, or three padded buffers with pk, pv two padded buffers.
 *
 * Tolerances, as in test_ops_llama.c: a float kernel against a double reference agrees to
 * ~1e-6 relative (FWD_TOL 1e-5 for the forward), a gradient to its central difference to
 * ~1e-6 (step 1e-4 in double; GRAD_TOL 1e-4); a broken backward is off by ~1e-2. Errors are
 * the largest error of an array over the largest magnitude of its reference.
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

/* gradcheck.h's rel_err and rel_err_added, except that a NaN or infinity anywhere in `got`
 * makes the error infinite: their running maximum lets a later finite difference replace a
 * NaN (!(d <= NaN) is true), so a NaN is only reported in the last element */
static int all_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static double rel_err_strict(const float* got, const double* ref, size_t n) {
    return all_finite(got, n) ? rel_err(got, ref, n) : INFINITY;
}

static double rel_err_added_strict(const float* after, const float* before, const double* ref,
                                   size_t n) {
    return all_finite(after, n) ? rel_err_added(after, before, ref, n) : INFINITY;
}

/* ---- the reference ---- */

typedef struct {
    const double *q, *k, *v, *pk, *pv; /* rows qs, kvs, ps apart; may share buffers */
    double *out, *att;                 /* NULL: not wanted */
    const double* R;
    int B, T, P, NH, NKV, HS, qs, kvs, ps;
} PrefixRef;

/* key (or value) j of query row (b, kv head kvh): j < P the prefix row j, else own row j - P */
static const double* ref_row(const PrefixRef* a, const double* pre, const double* own, int b,
                             int kvh, int j) {
    if (j < a->P) return pre + (size_t)j * a->ps + kvh * a->HS;
    return own + ((size_t)b * a->T + (j - a->P)) * a->kvs + kvh * a->HS;
}

static double prefix_loss(const void* p) {
    const PrefixRef* a = p;
    const int T = a->T, P = a->P, L = P + T, HS = a->HS, C = a->NH * HS, G = a->NH / a->NKV;
    double* row = alloc_d(L);
    double loss = 0.0;
    for (int b = 0; b < a->B; b++)
        for (int h = 0; h < a->NH; h++)
            for (int t = 0; t < T; t++) {
                const double* q = a->q + ((size_t)b * T + t) * a->qs + h * HS;
                const int kvh = h / G, n = P + t + 1;
                double maxv = -INFINITY, sum = 0.0;
                for (int j = 0; j < n; j++) {
                    const double* key = ref_row(a, a->pk, a->k, b, kvh, j);
                    double s = 0.0;
                    for (int i = 0; i < HS; i++)
                        s += q[i] * key[i];
                    row[j] = s / sqrt(HS);
                    if (row[j] > maxv) maxv = row[j];
                }
                for (int j = 0; j < n; j++)
                    sum += row[j] = exp(row[j] - maxv);
                for (int j = 0; j < n; j++)
                    row[j] /= sum;
                if (a->att)
                    for (int j = 0; j < L; j++)
                        a->att[(((size_t)b * a->NH + h) * T + t) * L + j] = j < n ? row[j] : 0.0;
                for (int i = 0; i < HS; i++) {
                    double o = 0.0;
                    for (int j = 0; j < n; j++)
                        o += row[j] * ref_row(a, a->pv, a->v, b, kvh, j)[i];
                    const size_t oi = ((size_t)b * T + t) * C + h * HS + i;
                    if (a->out) a->out[oi] = o;
                    loss += o * a->R[oi];
                }
            }
    free(row);
    return loss;
}

/* ---- layouts ---- */

enum { Q, K, V, PK, PV, NBUF };
static const char* const buf_names[NBUF] = {"dq", "dk", "dv", "dpk", "dpv"};

/* Buffers 0..2 hold q, k, v; 3..4 pk, pv. Fused: q, k, v in buf[Q] (a row of
 * (NH + 2 NKV) * HS) and pk, pv the columns of layer 1 of 3 in buf[PK], so buf[K], buf[V],
 * buf[PV] are NULL. Separate: five buffers whose rows carry a few padding floats. */
typedef struct {
    float* x[NBUF];  /* q, k, v, pk, pv: into buf */
    float* dx[NBUF]; /* their gradients: into dbuf */
    float *buf[NBUF], *dbuf[NBUF];
    float* prior[NBUF]; /* what dbuf[PK..PV] held before the backward */
    size_t n[NBUF];     /* floats of buf[j] */
    int rows[NBUF], stride[NBUF], col0[NBUF], width[NBUF]; /* used columns of buf[j] */
    int qs, kvs, ps;
} Layout;

static Layout make_layout(int B, int T, int P, int NH, int NKV, int HS, int fused) {
    Layout l = {0};
    const int kvw = NKV * HS;
    if (fused) {
        const int layers = 3, layer = 1;
        l.qs = l.kvs = (NH + 2 * NKV) * HS, l.ps = 2 * layers * kvw;
        l.rows[Q] = B * T, l.stride[Q] = l.qs, l.col0[Q] = 0, l.width[Q] = l.qs;
        l.rows[PK] = P, l.stride[PK] = l.ps, l.col0[PK] = 2 * layer * kvw, l.width[PK] = 2 * kvw;
    } else {
        l.qs = NH * HS + 5, l.kvs = kvw + 3, l.ps = kvw + 2;
        const int stride[NBUF] = {l.qs, l.kvs, l.kvs, l.ps, l.ps};
        const int width[NBUF] = {NH * HS, kvw, kvw, kvw, kvw};
        for (int j = 0; j < NBUF; j++)
            l.rows[j] = j < PK ? B * T : P, l.stride[j] = stride[j], l.width[j] = width[j];
    }
    for (int j = 0; j < NBUF; j++) {
        if (!l.rows[j]) continue;
        l.n[j] = (size_t)l.rows[j] * l.stride[j];
        l.buf[j] = randn(l.n[j], 1, 0);
        /* overwritten gradients start as NaN, accumulated ones as random values */
        l.dbuf[j] = j < PK ? filled(l.n[j], NAN) : randn(l.n[j], 1, 0);
        l.prior[j] = j < PK ? NULL : copy_f(l.dbuf[j], l.n[j]);
    }
    if (fused) {
        l.x[Q] = l.buf[Q], l.x[K] = l.x[Q] + NH * HS, l.x[V] = l.x[K] + kvw;
        l.dx[Q] = l.dbuf[Q], l.dx[K] = l.dx[Q] + NH * HS, l.dx[V] = l.dx[K] + kvw;
        if (P) { /* P = 0: no prefix buffer, pk, pv and their gradients NULL */
            l.x[PK] = l.buf[PK] + l.col0[PK], l.x[PV] = l.x[PK] + kvw;
            l.dx[PK] = l.dbuf[PK] + l.col0[PK], l.dx[PV] = l.dx[PK] + kvw;
        }
    } else {
        for (int j = 0; j < NBUF; j++)
            l.x[j] = l.buf[j], l.dx[j] = l.dbuf[j];
    }
    return l;
}

/* the buffer x[j] and dx[j] point into */
static int owner(const Layout* l, int j) {
    return l->buf[j] ? j : j < PK ? Q : PK;
}

static void free_layout(Layout* l) {
    for (int j = 0; j < NBUF; j++)
        free(l->buf[j]), free(l->dbuf[j]), free(l->prior[j]);
}

/* the layout's buffers in double, the reference's pointers at the same offsets */
static void ref_inputs(PrefixRef* ref, double* dbuf[NBUF], const Layout* l) {
    for (int j = 0; j < NBUF; j++)
        dbuf[j] = l->buf[j] ? to_double(l->buf[j], l->n[j]) : NULL;
    const double** x[NBUF] = {&ref->q, &ref->k, &ref->v, &ref->pk, &ref->pv};
    for (int j = 0; j < NBUF; j++)
        *x[j] = dbuf[owner(l, j)] + (l->x[j] - l->buf[owner(l, j)]);
    ref->qs = l->qs, ref->kvs = l->kvs, ref->ps = l->ps;
}

/* columns outside [col0, col0 + width) of every row equal `want` bit for bit (NULL: NaN) */
static int outside_untouched(const float* x, const float* want, int rows, int stride, int col0,
                             int width) {
    int ok = 1;
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < stride; c++) {
            if (c >= col0 && c < col0 + width) continue;
            const size_t i = (size_t)r * stride + c;
            ok &= want ? memcmp(&x[i], &want[i], sizeof *x) == 0 : isnan(x[i]);
        }
    return ok;
}

/* att's entries right of the causal diagonal are exactly 0 */
static int att_masked(const float* att, int B, int NH, int T, int P) {
    const int L = P + T;
    int ok = 1;
    for (size_t r = 0; r < (size_t)B * NH * T; r++)
        for (int j = P + (int)(r % T) + 1; j < L; j++)
            ok &= att[r * L + j] == 0.0f;
    return ok;
}

static void run_backward(const Layout* l, float* const dx[NBUF], const float* dout,
                         const float* att, int B, int T, int P, int NH, int NKV, int HS) {
    hn_attention_prefix_backward(dx[Q], dx[K], dx[V], dx[PK], dx[PV], dout, l->x[Q], l->x[K],
                                 l->x[V], l->x[PK], l->x[PV], att, l->ps, l->qs, l->kvs, B, T, P,
                                 NH, NKV, HS);
}

/* ---- forward and gradients against the reference ---- */

/* Forward against the reference, then every gradient against central differences; quiet
 * for the broken runs, which expect failures. Returns whether the gradients passed. */
static int check_prefix(int B, int T, int P, int NH, int NKV, int HS, int fused, int quiet) {
    const int C = NH * HS, L = P + T;
    const size_t nout = (size_t)B * T * C, natt = (size_t)B * NH * T * L;
    Layout l = make_layout(B, T, P, NH, NKV, HS, fused);
    float *out = filled(nout, NAN), *att = filled(natt, NAN), *R = randn(nout, 1, 0);
    hn_attention_prefix_forward(out, att, l.x[Q], l.x[K], l.x[V], l.x[PK], l.x[PV], NULL, l.ps,
                                l.qs, l.kvs, B, T, P, NH, NKV, HS);
    PrefixRef ref = {.out = alloc_d(nout),
                     .att = alloc_d(natt),
                     .R = to_double(R, nout),
                     .B = B,
                     .T = T,
                     .P = P,
                     .NH = NH,
                     .NKV = NKV,
                     .HS = HS};
    double* dbuf[NBUF];
    ref_inputs(&ref, dbuf, &l);
    prefix_loss(&ref);
    const double eo = rel_err_strict(out, ref.out, nout), ea = rel_err_strict(att, ref.att, natt);
    CHECK(eo <= FWD_TOL && ea <= FWD_TOL,
          "prefix forward (B=%d T=%d P=%d NH=%d NKV=%d HS=%d%s): "
          "out %g, att %g",
          B, T, P, NH, NKV, HS, fused ? " fused" : "", eo, ea);
    CHECK(att_masked(att, B, NH, T, P), "prefix att is not 0 right of the causal diagonal");
    if (!quiet)
        printf("  forward B=%d T=%d P=%d NH=%d NKV=%d HS=%d %-8s out %.2e att %.2e\n", B, T, P, NH,
               NKV, HS, fused ? "fused" : "separate", eo, ea);
    free(ref.out), free(ref.att);
    ref.out = ref.att = NULL;

    /* dq, dk, dv overwritten (their padding stays NaN), dpk, dpv added to the prior */
    run_backward(&l, l.dx, R, att, B, T, P, NH, NKV, HS);
    int ok = 1;
    double errs[NBUF] = {0};
    for (int j = 0; j < NBUF; j++) {
        if (!l.buf[j]) continue;
        double* g = alloc_d(l.n[j]);
        numeric_grad(g, dbuf[j], l.n[j], prefix_loss, &ref);
        /* every column, used or not: the finite difference of an unused one is exactly 0 */
        if (l.prior[j]) {
            errs[j] = rel_err_added_strict(l.dbuf[j], l.prior[j], g, l.n[j]);
        } else { /* the NaN padding is no gradient: compare the used columns */
            double worst = 0.0, scale = 1e-30;
            for (int r = 0; r < l.rows[j]; r++)
                for (int c = l.col0[j]; c < l.col0[j] + l.width[j]; c++) {
                    const size_t i = (size_t)r * l.stride[j] + c;
                    const double d = fabs((double)l.dbuf[j][i] - g[i]);
                    worst = isfinite(d) && d <= worst ? worst : isfinite(d) ? d : INFINITY;
                    if (fabs(g[i]) > scale) scale = fabs(g[i]);
                }
            errs[j] = worst / scale;
        }
        const char* name = fused ? (j == Q ? "dqkv" : "dprefix (dpk, dpv)") : buf_names[j];
        ok &= within(name, errs[j], GRAD_TOL, quiet);
        CHECK(
            outside_untouched(l.dbuf[j], l.prior[j], l.rows[j], l.stride[j], l.col0[j], l.width[j]),
            "prefix backward wrote outside the columns of %s", name);
        free(g);
    }
    if (!quiet) {
        printf("  grad    B=%d T=%d P=%d NH=%d NKV=%d HS=%d %-8s", B, T, P, NH, NKV, HS,
               fused ? "fused" : "separate");
        for (int j = 0; j < NBUF; j++)
            if (l.buf[j])
                printf(" %s %.2e", fused ? (j == Q ? "dqkv" : "dprefix") : buf_names[j], errs[j]);
        printf("\n");
    }

    /* dpk, dpv NULL (one, the other, both): the other gradients keep their bits */
    for (int mask = 1; mask < 4; mask++) {
        Layout m = make_layout(B, T, P, NH, NKV, HS, fused); /* fresh NaN / prior buffers */
        float* dx[NBUF];
        for (int j = 0; j < NBUF; j++) /* same offsets as l's, in m's gradient buffers */
            dx[j] = m.dbuf[owner(&m, j)] + (l.dx[j] - l.dbuf[owner(&l, j)]);
        for (int j = 0; j < NBUF; j++)
            if (m.prior[j]) { /* the prior l started from */
                memcpy(m.dbuf[j], l.prior[j], l.n[j] * sizeof(float));
                memcpy(m.prior[j], l.prior[j], l.n[j] * sizeof(float));
            }
        if (mask & 1) dx[PK] = NULL;
        if (mask & 2) dx[PV] = NULL;
        run_backward(&l, dx, R, att, B, T, P, NH, NKV, HS);
        int same = 1;
        for (int j = 0; j < NBUF; j++) {
            if (!m.dbuf[j]) continue;
            /* in the fused layout dpk and dpv share a buffer: compare column by column */
            for (int r = 0; r < m.rows[j]; r++)
                for (int c = 0; c < m.stride[j]; c++) {
                    const size_t i = (size_t)r * m.stride[j] + c;
                    int which = j; /* the gradient column c of buffer j belongs to */
                    if (j == PK && fused) which = c < m.col0[PK] + NKV * HS ? PK : PV;
                    const int skipped = (which == PK && (mask & 1)) || (which == PV && (mask & 2));
                    const float want = skipped ? m.prior[j][i] : l.dbuf[j][i];
                    same &= memcmp(&m.dbuf[j][i], &want, sizeof want) == 0 ||
                            (isnan(want) && isnan(m.dbuf[j][i]));
                }
        }
        CHECK(same, "prefix backward with%s%s NULL differs (or wrote into a NULL gradient)",
              mask & 1 ? " dpk" : "", mask & 2 ? " dpv" : "");
        free_layout(&m);
    }

    free_layout(&l);
    for (int j = 0; j < NBUF; j++)
        free(dbuf[j]);
    free(out), free(att), free(R), free((void*)ref.R);
    return ok;
}

/* scores of a few hundred (q scaled by 40, prefix keys by 3), so exp of an unshifted score
 * overflows in some rows; the row maximum in the prefix for some rows, in the sequence for
 * others: the forward stays finite and matches the reference */
static void check_large_scores(void) {
    const int B = 2, T = 9, P = 4, NH = 2, NKV = 1, HS = 16, C = NH * HS, L = P + T;
    const size_t nout = (size_t)B * T * C, natt = (size_t)B * NH * T * L;
    Layout l = make_layout(B, T, P, NH, NKV, HS, 0);
    for (size_t i = 0; i < l.n[Q]; i++)
        l.buf[Q][i] *= 40.0f;
    for (size_t i = 0; i < l.n[PK]; i++)
        l.buf[PK][i] *= 3.0f;
    float *out = filled(nout, NAN), *att = filled(natt, NAN), *R = randn(nout, 1, 0);
    hn_attention_prefix_forward(out, att, l.x[Q], l.x[K], l.x[V], l.x[PK], l.x[PV], NULL, l.ps,
                                l.qs, l.kvs, B, T, P, NH, NKV, HS);
    PrefixRef ref = {.out = alloc_d(nout),
                     .att = alloc_d(natt),
                     .R = to_double(R, nout),
                     .B = B,
                     .T = T,
                     .P = P,
                     .NH = NH,
                     .NKV = NKV,
                     .HS = HS};
    double* dbuf[NBUF];
    ref_inputs(&ref, dbuf, &l);
    prefix_loss(&ref);
    /* the largest score, and how many rows peak in the prefix */
    double top = -INFINITY;
    int prefix_peaks = 0;
    for (int r = 0; r < B * NH * T; r++) {
        int arg = 0;
        for (int j = 1; j < L; j++)
            if (ref.att[(size_t)r * L + j] > ref.att[(size_t)r * L + arg]) arg = j;
        prefix_peaks += arg < P;
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int t = 0; t < T; t++)
                for (int j = 0; j < P + t + 1; j++) {
                    const double* q = ref.q + ((size_t)b * T + t) * ref.qs + h * HS;
                    const double* key = ref_row(&ref, ref.pk, ref.k, b, h / (NH / NKV), j);
                    double s = 0.0;
                    for (int i = 0; i < HS; i++)
                        s += q[i] * key[i];
                    if (s / sqrt(HS) > top) top = s / sqrt(HS);
                }
    const double eo = rel_err_strict(out, ref.out, nout), ea = rel_err_strict(att, ref.att, natt);
    printf("  large scores: largest score %.0f, %d of %d rows peak in the prefix: out %.2e att "
           "%.2e\n",
           top, prefix_peaks, B * NH * T, eo, ea);
    CHECK(top > 88.0, "the large-score case is not large (%g)", top);
    CHECK(prefix_peaks > 0 && prefix_peaks < B * NH * T, "the row maxima are all in one part");
    CHECK(eo <= FWD_TOL && ea <= FWD_TOL, "prefix forward with large scores: out %g att %g", eo,
          ea);
    free_layout(&l);
    for (int j = 0; j < NBUF; j++)
        free(dbuf[j]);
    free(out), free(att), free(R), free(ref.out), free(ref.att), free((void*)ref.R);
}

/* ---- P = 0 is hn_attention_gqa_*, bit for bit ---- */

static void check_p0_is_gqa(int B, int T, int NH, int NKV, int HS, int fused) {
    const size_t nout = (size_t)B * T * NH * HS, natt = (size_t)B * NH * T * T;
    Layout l = make_layout(B, T, 0, NH, NKV, HS, fused);
    float *dout = randn(nout, 1, 0), *out1 = filled(nout, NAN), *att1 = filled(natt, NAN);
    float *out2 = filled(nout, NAN), *att2 = filled(natt, NAN);
    hn_attention_gqa_forward(out1, att1, l.x[Q], l.x[K], l.x[V], l.qs, l.kvs, B, T, NH, NKV, HS);
    hn_attention_prefix_forward(out2, att2, l.x[Q], l.x[K], l.x[V], NULL, NULL, NULL, 0, l.qs,
                                l.kvs, B, T, 0, NH, NKV, HS);
    CHECK(bits_equal(out1, out2, nout) && bits_equal(att1, att2, natt),
          "prefix forward with P = 0 differs from gqa (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T, NH,
          NKV, HS);
    /* the gqa gradients in dbuf, the prefix ones in a second NaN-filled copy; with P = 0
     * there are no prefix rows, so the non-NULL dpk, dpv must stay as they are */
    float* d2[3];
    for (int j = 0; j < 3; j++)
        d2[j] = l.dbuf[j] ? filled(l.n[j], NAN) : NULL;
    float* dx2[3];
    for (int j = 0; j < 3; j++)
        dx2[j] = d2[owner(&l, j)] + (l.dx[j] - l.dbuf[owner(&l, j)]);
    float sentinel[2] = {NAN, 7.0f};
    hn_attention_gqa_backward(l.dx[Q], l.dx[K], l.dx[V], dout, l.x[Q], l.x[K], l.x[V], att1, l.qs,
                              l.kvs, B, T, NH, NKV, HS);
    hn_attention_prefix_backward(dx2[Q], dx2[K], dx2[V], sentinel, sentinel + 1, dout, l.x[Q],
                                 l.x[K], l.x[V], NULL, NULL, att2, 0, l.qs, l.kvs, B, T, 0, NH, NKV,
                                 HS);
    int same = 1;
    for (int j = 0; j < 3; j++)
        if (l.dbuf[j])
            for (size_t i = 0; i < l.n[j]; i++) /* NaN padding on both sides is equal */
                same &= memcmp(&l.dbuf[j][i], &d2[j][i], sizeof(float)) == 0;
    CHECK(same, "prefix backward with P = 0 differs from gqa (B=%d T=%d NH=%d NKV=%d HS=%d)", B, T,
          NH, NKV, HS);
    CHECK(isnan(sentinel[0]) && sentinel[1] == 7.0f, "P = 0 wrote into dpk or dpv");
    free_layout(&l);
    for (int j = 0; j < 3; j++)
        free(d2[j]);
    free(dout), free(out1), free(att1), free(out2), free(att2);
}

/* ---- 1, 2 and 3 threads give the same bits ---- */

static void check_threads(int B, int T, int P, int NH, int NKV, int HS) {
    const size_t nout = (size_t)B * T * NH * HS, natt = (size_t)B * NH * T * (P + T);
    Layout l = make_layout(B, T, P, NH, NKV, HS, 1);
    float* dout = randn(nout, 1, 0);
    float *out[3], *att[3], *dqkv[3], *dpre[3];
    const int threads = omp_get_max_threads();
    for (int k = 0; k < 3; k++) {
        omp_set_num_threads(k + 1);
        out[k] = filled(nout, NAN), att[k] = filled(natt, NAN);
        dqkv[k] = filled(l.n[Q], NAN), dpre[k] = copy_f(l.prior[PK], l.n[PK]);
        hn_attention_prefix_forward(out[k], att[k], l.x[Q], l.x[K], l.x[V], l.x[PK], l.x[PV], NULL,
                                    l.ps, l.qs, l.kvs, B, T, P, NH, NKV, HS);
        float* dx[NBUF] = {dqkv[k], dqkv[k] + NH * HS, dqkv[k] + (NH + NKV) * HS,
                           dpre[k] + l.col0[PK], dpre[k] + l.col0[PK] + NKV * HS};
        run_backward(&l, dx, dout, att[k], B, T, P, NH, NKV, HS);
    }
    omp_set_num_threads(threads);
    for (int k = 1; k < 3; k++) {
        CHECK(bits_equal(out[0], out[k], nout) && bits_equal(att[0], att[k], natt),
              "prefix forward on %d threads differs from 1 thread", k + 1);
        CHECK(bits_equal(dqkv[0], dqkv[k], l.n[Q]), "prefix dq, dk, dv on %d threads differ",
              k + 1);
        CHECK(bits_equal(dpre[0], dpre[k], l.n[PK]), "prefix dpk, dpv on %d threads differ", k + 1);
    }
    for (int k = 0; k < 3; k++)
        free(out[k]), free(att[k]), free(dqkv[k]), free(dpre[k]);
    free_layout(&l);
    free(dout);
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
    hn_rng_seed(&rng, 2021);

    /* P = 0: the gqa kernel's bits, fused and padded, with several tiles of keys */
    check_p0_is_gqa(2, 7, 4, 2, 8, 1);
    check_p0_is_gqa(1, 45, 4, 2, 32, 0);
    check_p0_is_gqa(2, 33, 2, 2, 40, 1);
    check_p0_is_gqa(1, 1, 2, 1, 8, 0);

    /* B=2 T=5 P=3 NH=4 NKV=2 HS=8, fused qkv with pk, pv in a wider matrix */
    CHECK_GRADIENT("attention_prefix", check_prefix(2, 5, 3, 4, 2, 8, 1, 1),
                   check_prefix(2, 5, 3, 4, 2, 8, 1, 0));
    CHECK(check_prefix(2, 5, 3, 4, 2, 8, 0, 0), "prefix gradient check, separate padded buffers");
    CHECK(check_prefix(2, 5, 3, 4, 4, 8, 1, 0), "prefix gradient check, NKV = NH");
    CHECK(check_prefix(2, 5, 3, 4, 1, 8, 0, 0), "prefix gradient check, NKV = 1");
    CHECK(check_prefix(2, 6, 1, 4, 2, 8, 0, 0), "prefix gradient check, P = 1");
    CHECK(check_prefix(3, 1, 3, 4, 2, 8, 1, 0), "prefix gradient check, T = 1");
    /* P + T past a tile of 32 keys and T past a block of 8 rows; HS past a tile */
    CHECK(check_prefix(1, 19, 17, 2, 1, 4, 1, 0), "prefix gradient check, P + T = 36");
    CHECK(check_prefix(1, 4, 2, 2, 1, 40, 0, 0), "prefix gradient check, HS = 40");
    /* another op's hook leaves this one alone */
    hn_ops_test_break("attention_gqa");
    CHECK(check_prefix(2, 5, 3, 4, 2, 8, 0, 0), "prefix broken by the attention_gqa hook");
    hn_ops_test_break(NULL);

    check_large_scores();
    check_threads(3, 45, 7, 4, 2, 32); /* 6 (b, kv head) tasks, keys over two tiles */
    check_threads(2, 3, 40, 2, 2, 8);  /* a prefix longer than the sequence */
    return hn_test_finish("test_ops_prefix");
}
