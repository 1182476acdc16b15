/* Sparse deltas between two checkpoints of the same model; see delta.h. */
#include "data/delta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checked.h"
#include "core/error.h"
#include "core/params.h"
#include "data/h5.h"
#include "data/h5ckpt.h"

#define PATH_LEN (HN_NAME_MAX + 32)

/* the rows of a checkpoint's /model: sorted names and their shapes */
typedef struct {
    char** names;
    int n;
    int* ndim;
    int64_t (*shape)[8];
} Rows;

static void rows_free(Rows* r) {
    hn_h5_free_names(r->names, r->n);
    free(r->ndim);
    free(r->shape);
    memset(r, 0, sizeof *r);
}

/* the product of the dims, or -1 when a dim is negative or the product overflows */
static int64_t numel_of(int ndim, const int64_t* shape) {
    size_t n;
    return hn_numel_overflow(shape, ndim, &n) || n > INT64_MAX ? -1 : (int64_t)n;
}

static void shape_text(char* buf, size_t size, int ndim, const int64_t* shape) {
    int at = 0;
    if (ndim == 0) snprintf(buf, size, "scalar");
    for (int d = 0; d < ndim && at < (int)size; d++)
        at += snprintf(buf + at, size - (size_t)at, d ? "x%lld" : "%lld", (long long)shape[d]);
}

static int rows_read(HnH5* f, Rows* r) {
    memset(r, 0, sizeof *r);
    if (!hn_h5_exists(f, "/model"))
        return hn_error("%s: no /model group — not a checkpoint holding a model", hn_h5_path(f));
    if (hn_h5_list(f, "/model", &r->names, &r->n) != HN_OK) return HN_ERR;
    r->ndim = calloc((size_t)r->n + 1, sizeof *r->ndim);
    r->shape = calloc((size_t)r->n + 1, sizeof *r->shape);
    if (!r->ndim || !r->shape) {
        rows_free(r);
        return hn_error("out of memory");
    }
    for (int i = 0; i < r->n; i++) {
        char path[PATH_LEN];
        snprintf(path, sizeof path, "/model/%s", r->names[i]);
        if (hn_h5_shape(f, path, &r->ndim[i], r->shape[i]) != HN_OK) {
            rows_free(r);
            return HN_ERR;
        }
        int64_t n = numel_of(r->ndim[i], r->shape[i]);
        if (r->ndim[i] < 1 || r->ndim[i] > HN_MAX_DIMS || n < 1 || n > ((int64_t)1 << 32)) {
            rows_free(r);
            return hn_error("%s: %s is not a parameter row of a supported shape", hn_h5_path(f),
                            path);
        }
    }
    return HN_OK;
}

/* a hone checkpoint that holds its whole model: not a frozen-base checkpoint of add-ons or
 * trained rows only (base_file), and without /peft rows */
static HnH5* open_whole(const char* path, const char* role, char** config) {
    HnH5* f = hn_ckpt_open(path, config);
    if (!f) return NULL;
    char *file = NULL, *sha = NULL;
    int rc = hn_ckpt_base_ref(f, &file, &sha);
    if (rc == HN_OK && file)
        rc = hn_error("%s holds only what a run trained on the frozen base %s, not a whole "
                      "model — %s needs a checkpoint of a full or masked (mask:) fine-tune; "
                      "merge the add-ons into a whole checkpoint first (--format hdf5-merged, "
                      "not yet available)",
                      path, file, role);
    free(file);
    free(sha);
    if (rc == HN_OK && hn_h5_exists(f, "/peft")) {
        char** names = NULL;
        int n = 0;
        rc = hn_h5_list(f, "/peft", &names, &n);
        if (rc == HN_OK && n > 0)
            rc = hn_error("%s holds parameter-efficient add-on rows (/peft/%s...) — %s needs "
                          "a checkpoint whose whole model is in /model",
                          path, names[0], role);
        hn_h5_free_names(names, n);
    }
    if (rc != HN_OK) {
        free(*config);
        *config = NULL;
        hn_h5_close(f);
        return NULL;
    }
    return f;
}

/* ---- export ---- */

static int same_rows(const Rows* a, const Rows* b, const char* pa, const char* pb) {
    int i = 0, j = 0;
    while (i < a->n || j < b->n) {
        int c = i == a->n ? 1 : j == b->n ? -1 : strcmp(a->names[i], b->names[j]);
        if (c < 0)
            return hn_error("%s and %s are not the same model: row %s is only in %s", pa, pb,
                            a->names[i], pa);
        if (c > 0)
            return hn_error("%s and %s are not the same model: row %s is only in %s", pa, pb,
                            b->names[j], pb);
        int same = a->ndim[i] == b->ndim[j];
        for (int d = 0; same && d < a->ndim[i]; d++)
            same = a->shape[i][d] == b->shape[j][d];
        if (!same) {
            char sa[96], sb[96];
            shape_text(sa, sizeof sa, a->ndim[i], a->shape[i]);
            shape_text(sb, sizeof sb, b->ndim[j], b->shape[j]);
            return hn_error("%s and %s are not the same model: row %s is %s in one, %s in the "
                            "other",
                            pa, pb, a->names[i], sa, sb);
        }
        i++, j++;
    }
    return HN_OK;
}

static int write_rows(HnH5* ck, HnH5* bs, HnH5* out, const Rows* rows, HnDeltaStats* st) {
    uint32_t *a = NULL, *b = NULL, *idx = NULL;
    size_t cap = 0;
    int rc = HN_OK;
    for (int i = 0; rc == HN_OK && i < rows->n; i++) {
        size_t n = (size_t)numel_of(rows->ndim[i], rows->shape[i]);
        if (n > cap) {
            free(a), free(b), free(idx);
            a = malloc(n * sizeof *a);
            b = malloc(n * sizeof *b);
            idx = malloc(n * sizeof *idx);
            cap = n;
            if (!a || !b || !idx) {
                rc = hn_error("out of memory for a row of %zu entries", n);
                break;
            }
        }
        char path[PATH_LEN];
        snprintf(path, sizeof path, "/model/%s", rows->names[i]);
        /* read as float32 and compare the bits: the values keep their exact bit patterns */
        if ((rc = hn_h5_read(ck, path, HN_H5_F32, a, n)) != HN_OK ||
            (rc = hn_h5_read(bs, path, HN_H5_F32, b, n)) != HN_OK)
            break;
        size_t k = 0;
        for (size_t e = 0; e < n; e++)
            if (a[e] != b[e]) {
                idx[k] = (uint32_t)e;
                a[k++] = a[e]; /* k <= e: the new values packed in place */
            }
        st->rows++;
        st->numel += (int64_t)n;
        if (k == 0) continue;
        st->rows_changed++;
        st->entries += (int64_t)k;
        int64_t len = (int64_t)k;
        char grp[PATH_LEN + 8], p[PATH_LEN + 16];
        snprintf(grp, sizeof grp, "/delta/%s", rows->names[i]);
        snprintf(p, sizeof p, "%s/index", grp);
        if ((rc = hn_h5_write(out, p, HN_H5_U32, idx, 1, &len)) != HN_OK) break;
        snprintf(p, sizeof p, "%s/value", grp);
        if ((rc = hn_h5_write(out, p, HN_H5_F32, a, 1, &len)) != HN_OK) break;
        rc = hn_h5_attr_i64(out, grp, "numel", (int64_t)n);
    }
    free(a), free(b), free(idx);
    return rc;
}

int hn_delta_export(const char* ckpt, const char* base, const char* out, int deflate,
                    HnDeltaStats* st) {
    memset(st, 0, sizeof *st);
    char *ccfg = NULL, *bcfg = NULL;
    HnH5* ck = open_whole(ckpt, "a delta export", &ccfg);
    HnH5* bs = ck ? open_whole(base, "a delta's base", &bcfg) : NULL;
    Rows rc_rows = {0}, rb_rows = {0};
    int rc = ck && bs ? HN_OK : HN_ERR;
    if (rc == HN_OK) rc = rows_read(ck, &rc_rows);
    if (rc == HN_OK) rc = rows_read(bs, &rb_rows);
    if (rc == HN_OK) rc = same_rows(&rc_rows, &rb_rows, ckpt, base);
    char hex[65] = {0};
    int64_t step = 0, tokens = 0, opt_t = 0;
    if (rc == HN_OK) rc = hn_ckpt_model_sha256(bs, hex);
    if (rc == HN_OK) rc = hn_ckpt_counters(ck, &step, &tokens, &opt_t);
    HnH5* o = rc == HN_OK ? hn_h5_create(out, deflate) : NULL;
    if (rc == HN_OK && !o) rc = HN_ERR;
    if (rc == HN_OK &&
        (hn_h5_attr_str(o, "/", "format", HN_DELTA_FORMAT) != HN_OK ||
         hn_h5_attr_i64(o, "/", "format_version", HN_DELTA_FORMAT_VERSION) != HN_OK ||
         hn_h5_attr_str(o, "/", "base_sha256", hex) != HN_OK ||
         hn_h5_attr_str(o, "/", "base_file", base) != HN_OK ||
         hn_h5_attr_str(o, "/", "source_file", ckpt) != HN_OK ||
         hn_h5_attr_i64(o, "/", "step", step) != HN_OK ||
         hn_h5_attr_i64(o, "/", "tokens", tokens) != HN_OK || hn_h5_group(o, "/delta") != HN_OK))
        rc = HN_ERR;
    if (rc == HN_OK) rc = write_rows(ck, bs, o, &rc_rows, st);
    if (rc == HN_OK && (hn_h5_attr_i64(o, "/", "rows", st->rows_changed) != HN_OK ||
                        hn_h5_attr_i64(o, "/", "entries", st->entries) != HN_OK))
        rc = HN_ERR;
    st->model_bytes = st->numel * (int64_t)sizeof(float);
    if (o) {
        if (rc == HN_OK)
            rc = hn_h5_commit(o);
        else
            hn_h5_abort(o);
    }
    rows_free(&rc_rows);
    rows_free(&rb_rows);
    hn_h5_close(ck);
    hn_h5_close(bs);
    free(ccfg);
    free(bcfg);
    return rc;
}

/* ---- apply ---- */

/* the base's /model as a parameter table, read whole */
static int load_table(HnH5* f, HnParamTable* t) {
    Rows rows;
    if (rows_read(f, &rows) != HN_OK) return HN_ERR;
    int rc = HN_OK;
    for (int i = 0; rc == HN_OK && i < rows.n; i++) {
        int shape[HN_MAX_DIMS];
        for (int d = 0; d < rows.ndim[i]; d++) {
            if (rows.shape[i][d] > INT32_MAX) {
                rc = hn_error("%s: row %s is too large", hn_h5_path(f), rows.names[i]);
                break;
            }
            shape[d] = (int)rows.shape[i][d];
        }
        if (rc == HN_OK && hn_params_add(t, rows.names[i], rows.ndim[i], shape) < 0) rc = HN_ERR;
    }
    rows_free(&rows);
    if (rc == HN_OK && t->n == 0) rc = hn_error("%s: /model holds no rows", hn_h5_path(f));
    if (rc == HN_OK) rc = hn_params_alloc(t);
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "model", t, t->data, HN_ROWS_BASE);
    return rc;
}

/* a delta file: its format, and made against the base whose hash is base_hex */
static HnH5* open_delta(const char* path, const char* base, const char* base_hex, int64_t* step,
                        int64_t* tokens) {
    HnH5* f = hn_h5_open(path);
    if (!f) return NULL;
    char *format = NULL, *sha = NULL;
    int64_t version = 0;
    int rc = HN_OK;
    if (!hn_h5_has_attr(f, "/", "format") ||
        hn_h5_read_attr_str(f, "/", "format", &format) != HN_OK ||
        strcmp(format, HN_DELTA_FORMAT) != 0)
        rc = hn_error("%s: not a hone delta (no format=\"%s\" attribute; make one with `hone "
                      "export CKPT --format delta --base BASE`)",
                      path, HN_DELTA_FORMAT);
    else if (hn_h5_read_attr_i64(f, "/", "format_version", &version) != HN_OK)
        rc = HN_ERR;
    else if (version != HN_DELTA_FORMAT_VERSION)
        rc = hn_error("%s: delta format_version %lld, this hone reads version %d", path,
                      (long long)version, HN_DELTA_FORMAT_VERSION);
    else if (hn_h5_read_attr_str(f, "/", "base_sha256", &sha) != HN_OK)
        rc = HN_ERR;
    else if (strcmp(sha, base_hex) != 0)
        rc = hn_error("%s was made against another base: its base_sha256 %.16s... does not "
                      "match %s (SHA-256 of the weights %.16s...) — apply it to the checkpoint "
                      "it was exported against",
                      path, sha, base, base_hex);
    else if (!hn_h5_exists(f, "/delta"))
        rc = hn_error("%s: no /delta group — the delta is damaged", path);
    *step = *tokens = 0;
    if (rc == HN_OK && hn_h5_has_attr(f, "/", "step") &&
        (hn_h5_read_attr_i64(f, "/", "step", step) != HN_OK ||
         hn_h5_read_attr_i64(f, "/", "tokens", tokens) != HN_OK))
        rc = HN_ERR;
    free(format);
    free(sha);
    if (rc != HN_OK) {
        hn_h5_close(f);
        return NULL;
    }
    return f;
}

/* one delta row: check it against the table and set its entries. seen (a bit per entry of
 * the table, or NULL with one delta) finds entries an earlier delta set. */
static int apply_row(HnH5* f, const char* name, HnParamTable* t, uint8_t* seen, HnDeltaStats* st) {
    const char* path = hn_h5_path(f);
    int i = hn_params_find(t, name);
    if (i < 0)
        return hn_error("%s changes row %s, which the base does not have — not the same model",
                        path, name);
    HnParamRow* r = &t->rows[i];
    char grp[PATH_LEN + 8], pi[PATH_LEN + 16], pv[PATH_LEN + 16];
    snprintf(grp, sizeof grp, "/delta/%s", name);
    snprintf(pi, sizeof pi, "%s/index", grp);
    snprintf(pv, sizeof pv, "%s/value", grp);
    int64_t numel = -1;
    if (hn_h5_has_attr(f, grp, "numel") && hn_h5_read_attr_i64(f, grp, "numel", &numel) != HN_OK)
        return HN_ERR;
    if (numel != (int64_t)r->numel)
        return hn_error("%s: row %s has %lld entries in the delta, %zu in the base — not the "
                        "same model",
                        path, name, (long long)numel, r->numel);
    int ni, nv;
    int64_t si[8], sv[8];
    if (!hn_h5_exists(f, pi) || !hn_h5_exists(f, pv))
        return hn_error("%s: %s lacks its index or value dataset — the delta is damaged", path,
                        grp);
    if (hn_h5_shape(f, pi, &ni, si) != HN_OK || hn_h5_shape(f, pv, &nv, sv) != HN_OK) return HN_ERR;
    if (ni != 1 || nv != 1 || si[0] != sv[0] || si[0] > (int64_t)r->numel)
        return hn_error("%s: %s/index and value are not two 1-D arrays of one length up to the "
                        "row's %zu entries — the delta is damaged",
                        path, grp, r->numel);
    size_t k = (size_t)si[0];
    uint32_t* idx = malloc((k ? k : 1) * sizeof *idx);
    uint32_t* val = malloc((k ? k : 1) * sizeof *val);
    int rc = idx && val ? HN_OK : hn_error("out of memory");
    /* values travel as float32 bits, untouched */
    if (rc == HN_OK) rc = hn_h5_read(f, pi, HN_H5_U32, idx, k);
    if (rc == HN_OK) rc = hn_h5_read(f, pv, HN_H5_F32, val, k);
    for (size_t e = 0; rc == HN_OK && e < k; e++) {
        if (idx[e] >= r->numel)
            rc = hn_error("%s: %s/index[%zu] = %u is out of range (the row has %zu entries) — "
                          "the delta is damaged",
                          path, grp, e, idx[e], r->numel);
        else if (e > 0 && idx[e] <= idx[e - 1])
            rc = hn_error("%s: %s/index is not sorted and distinct at [%zu] (%u after %u) — the "
                          "delta is damaged",
                          path, grp, e, idx[e], idx[e - 1]);
    }
    uint32_t* dst = (uint32_t*)(void*)(t->data + r->offset);
    for (size_t e = 0; rc == HN_OK && e < k; e++) {
        size_t at = r->offset + idx[e];
        if (seen) {
            if ((seen[at >> 3] >> (at & 7)) & 1) {
                if (dst[idx[e]] != val[e])
                    rc = hn_error("%s sets %s[%u], which an earlier delta set to another value "
                                  "— deltas applied together must change disjoint entries",
                                  path, name, idx[e]);
                continue;
            }
            seen[at >> 3] |= (uint8_t)(1u << (at & 7));
        }
        dst[idx[e]] = val[e];
        st->entries++;
    }
    free(idx);
    free(val);
    return rc;
}

int hn_delta_apply(const char* base, const char* const* deltas, int ndeltas, const char* out,
                   int deflate, HnDeltaStats* st) {
    memset(st, 0, sizeof *st);
    if (ndeltas < 1) return hn_error("apply needs at least one delta");
    char* config = NULL;
    HnH5* bs = open_whole(base, "applying a delta", &config);
    if (!bs) return HN_ERR;
    HnParamTable t = {0};
    HnTokenizer* tok = NULL;
    char* arch = NULL;
    uint8_t* seen = NULL;
    char hex[65] = {0};
    int rc = hn_ckpt_model_sha256(bs, hex);
    if (rc == HN_OK) rc = load_table(bs, &t);
    if (rc == HN_OK) rc = hn_h5_read_attr_str(bs, "/", "arch", &arch);
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(bs, &tok);
    if (rc == HN_OK && ndeltas > 1) {
        seen = calloc(t.numel / 8 + 1, 1);
        if (!seen) rc = hn_error("out of memory");
    }
    int64_t step = 0, tokens = 0;
    int changed = 0;
    int* touched = rc == HN_OK ? calloc((size_t)t.n, sizeof *touched) : NULL;
    if (rc == HN_OK && !touched) rc = hn_error("out of memory");
    for (int d = 0; rc == HN_OK && d < ndeltas; d++) {
        int64_t s = 0, tk = 0;
        HnH5* f = open_delta(deltas[d], base, hex, &s, &tk);
        if (!f) {
            rc = HN_ERR;
            break;
        }
        if (s > step) step = s;
        if (tk > tokens) tokens = tk;
        char** names = NULL;
        int n = 0;
        rc = hn_h5_list(f, "/delta", &names, &n);
        for (int i = 0; rc == HN_OK && i < n; i++) {
            rc = apply_row(f, names[i], &t, seen, st);
            int r = hn_params_find(&t, names[i]);
            if (rc == HN_OK && !touched[r]) touched[r] = 1, changed++;
        }
        hn_h5_free_names(names, n);
        hn_h5_close(f);
    }
    st->rows = t.n;
    st->rows_changed = changed;
    st->numel = 0;
    for (int i = 0; i < t.n; i++)
        st->numel += (int64_t)t.rows[i].numel;
    st->model_bytes = st->numel * (int64_t)sizeof(float);
    if (rc == HN_OK) {
        HnCkptSave s = {.config_yaml = config,
                        .arch = arch,
                        .step = step,
                        .tokens = tokens,
                        .params = &t,
                        .best_val_loss = NAN,
                        .tokenizer = tok,
                        .deflate = deflate};
        rc = hn_ckpt_save(out, &s);
    }
    free(touched);
    free(seen);
    free(arch);
    if (tok) hn_tokenizer_free(tok);
    hn_params_free(&t);
    hn_h5_close(bs);
    free(config);
    return rc;
}
