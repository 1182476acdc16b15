/*
 * hone's checkpoint schema (see h5ckpt.h) on top of the HDF5 layer in h5.c: what goes
 * where, and the checks a reader makes before it trusts a file.
 */
#include "data/h5ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/checked.h"
#include "core/error.h"

#define PATH_LEN (HN_NAME_MAX + 32)
/* the most elements one row can have (64 GiB of floats): a larger shape is damage */
#define HN_CKPT_MAX_ROW ((size_t)1 << 34)

/* does the selection take row r, and where does it lie in its buffer */
static int selected(const HnParamRow* r, HnRowSel sel, size_t* at) {
    *at = r->offset;
    switch (sel) {
    case HN_ROWS_BASE:
        return !r->addon;
    case HN_ROWS_BASE_TRAINABLE:
        return !r->addon && r->trainable;
    case HN_ROWS_ADDON:
        return r->addon;
    case HN_ROWS_STATE:
        *at = r->soff;
        return r->trainable;
    }
    return 0;
}

static int write_rows(HnH5* f, const char* group, const HnParamTable* t, const float* base,
                      HnRowSel sel, HnH5Type type) {
    char path[PATH_LEN];
    if (hn_h5_group(f, group) != HN_OK) return HN_ERR;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        size_t at;
        if (!selected(r, sel, &at)) continue;
        int64_t shape[HN_MAX_DIMS];
        int ndim = r->ndim;
        for (int d = 0; d < r->ndim; d++)
            shape[d] = r->shape[d];
        if (sel == HN_ROWS_STATE && r->mask) ndim = 1, shape[0] = (int64_t)r->mask_k;
        snprintf(path, sizeof path, "%s/%s", group, r->name);
        if (hn_h5_write(f, path, type, base + at, ndim, shape) != HN_OK) return HN_ERR;
    }
    return HN_OK;
}

static int write_tokenizer(HnH5* f, const HnTokenizer* tok) {
    if (hn_h5_group(f, "/tokenizer") != HN_OK) return HN_ERR;
    int byte = tok && strcmp(hn_tokenizer_name(tok), "byte") == 0;
    const char* type = !tok ? "none" : byte ? "byte" : "bpe";
    if (hn_h5_attr_str(f, "/tokenizer", "type", type) != HN_OK) return HN_ERR;
    if (!tok || byte) return HN_OK;
    char* json = hn_tokenizer_to_json(tok);
    if (!json) return HN_ERR;
    int64_t n = (int64_t)strlen(json);
    int rc = hn_h5_write(f, "/tokenizer/json", HN_H5_U8, json, 1, &n);
    free(json);
    return rc;
}

static int write_cursor(HnH5* f, const HnCkptCursor* c) {
    int64_t four = 4, three = 3, n = c->nshards;
    int64_t cursor[3] = {c->epoch, c->shard_pos, c->window_pos};
    if (hn_h5_write(f, "/train/rng", HN_H5_U64, c->rng_at_shard.s, 1, &four) != HN_OK ||
        hn_h5_write(f, "/train/cursor", HN_H5_I64, cursor, 1, &three) != HN_OK ||
        hn_h5_write(f, "/train/shard_order", HN_H5_I32, c->shard_order, 1, &n) != HN_OK)
        return HN_ERR;
    return HN_OK;
}

static int write_all(HnH5* f, const HnCkptSave* s) {
    const char* root = "/";
    if (hn_h5_attr_str(f, root, "format", "hone") != HN_OK ||
        hn_h5_attr_i64(f, root, "format_version", HN_CKPT_FORMAT_VERSION) != HN_OK ||
        hn_h5_attr_str(f, root, "config", s->config_yaml) != HN_OK ||
        hn_h5_attr_str(f, root, "arch", s->arch) != HN_OK ||
        hn_h5_attr_i64(f, root, "step", s->step) != HN_OK ||
        hn_h5_attr_i64(f, root, "tokens", s->tokens) != HN_OK ||
        hn_h5_attr_str(f, root, "dtype", s->bf16 ? "bf16" : "f32") != HN_OK)
        return HN_ERR;
    if (s->base_file && (hn_h5_attr_str(f, root, "base_file", s->base_file) != HN_OK ||
                         hn_h5_attr_str(f, root, "base_sha256", s->base_sha256) != HN_OK))
        return HN_ERR;
    HnH5Type wtype = s->bf16 ? HN_H5_BF16 : HN_H5_F32;
    if (write_rows(f, "/model", s->params, s->params->data,
                   s->base_file ? HN_ROWS_BASE_TRAINABLE : HN_ROWS_BASE, wtype) != HN_OK ||
        write_rows(f, "/peft", s->params, s->params->data, HN_ROWS_ADDON, wtype) != HN_OK)
        return HN_ERR;
    if (hn_h5_group(f, "/mask") != HN_OK) return HN_ERR;
    for (int i = 0; i < s->params->n; i++) {
        const HnParamRow* r = &s->params->rows[i];
        if (!r->mask) continue;
        char path[PATH_LEN];
        int64_t k = (int64_t)r->mask_k;
        snprintf(path, sizeof path, "/mask/%s", r->name);
        if (hn_h5_write(f, path, HN_H5_U32, r->mask, 1, &k) != HN_OK ||
            hn_h5_attr_f64(f, path, "density", (double)r->mask_k / (double)r->numel) != HN_OK)
            return HN_ERR;
    }
    if (hn_h5_group(f, "/optim") != HN_OK || hn_h5_group(f, "/train") != HN_OK) return HN_ERR;
    if (s->m && s->v) {
        if (hn_h5_attr_i64(f, "/optim", "t", s->opt_t) != HN_OK ||
            write_rows(f, "/optim/m", s->params, s->m, HN_ROWS_STATE, HN_H5_F32) != HN_OK ||
            write_rows(f, "/optim/v", s->params, s->v, HN_ROWS_STATE, HN_H5_F32) != HN_OK)
            return HN_ERR;
    }
    if (hn_h5_attr_f64(f, "/train", "best_val_loss", s->best_val_loss) != HN_OK) return HN_ERR;
    if (s->cursor && write_cursor(f, s->cursor) != HN_OK) return HN_ERR;
    return write_tokenizer(f, s->tokenizer);
}

int hn_ckpt_save(const char* path, const HnCkptSave* s) {
    HnH5* f = hn_h5_create(path, s->deflate);
    if (!f) return HN_ERR;
    if (write_all(f, s) != HN_OK) {
        hn_h5_abort(f);
        return HN_ERR;
    }
    return hn_h5_commit(f);
}

HnH5* hn_ckpt_open(const char* path, char** config_yaml) {
    *config_yaml = NULL;
    HnH5* f = hn_h5_open(path);
    if (!f) return NULL;
    char* format = NULL;
    int64_t version = 0;
    int rc = HN_OK;
    if (!hn_h5_has_attr(f, "/", "format") ||
        hn_h5_read_attr_str(f, "/", "format", &format) != HN_OK || strcmp(format, "hone") != 0)
        rc = hn_error("%s: not a hone checkpoint (no format=\"hone\" attribute)", path);
    else if (hn_h5_read_attr_i64(f, "/", "format_version", &version) != HN_OK)
        rc = HN_ERR;
    else if (version != HN_CKPT_FORMAT_VERSION)
        rc = hn_error("%s: checkpoint format_version %lld, this hone reads version %d — use a "
                      "matching hone to read or re-export it",
                      path, (long long)version, HN_CKPT_FORMAT_VERSION);
    else if (hn_h5_read_attr_str(f, "/", "config", config_yaml) != HN_OK)
        rc = HN_ERR;
    free(format);
    if (rc != HN_OK) {
        free(*config_yaml);
        *config_yaml = NULL;
        hn_h5_close(f);
        return NULL;
    }
    return f;
}

/* one tensor group/name of exactly the row's shape (a masked row's state: mask_k) */
static int read_row(HnH5* f, const char* group, const HnParamRow* r, float* dst, int state) {
    char path[PATH_LEN];
    snprintf(path, sizeof path, "/%s/%s", group, r->name);
    if (!hn_h5_exists(f, path))
        return hn_error("%s: row %s is missing — the checkpoint does not match its config",
                        hn_h5_path(f), path);
    int ndim;
    int64_t shape[8];
    if (hn_h5_shape(f, path, &ndim, shape) != HN_OK) return HN_ERR;
    int same = ndim == r->ndim;
    for (int d = 0; same && d < ndim; d++)
        same = shape[d] == r->shape[d];
    if (state && r->mask) {
        if (ndim != 1 || shape[0] != (int64_t)r->mask_k)
            return hn_error("%s: %s holds %lld entries, the row's mask selects %zu", hn_h5_path(f),
                            path, ndim == 1 ? (long long)shape[0] : -1LL, r->mask_k);
        return hn_h5_read(f, path, HN_H5_F32, dst, r->mask_k);
    }
    if (!same) {
        /* room for 8 dims of 20 characters: the file's dims can be any int64 */
        char want[176], got[176];
        size_t a = 0, b = 0;
        for (int d = 0; d < r->ndim && a < sizeof want; d++)
            a += (size_t)snprintf(want + a, sizeof want - a, d ? "x%d" : "%d", r->shape[d]);
        for (int d = 0; d < ndim && b < sizeof got; d++)
            b += (size_t)snprintf(got + b, sizeof got - b, d ? "x%lld" : "%lld",
                                  (long long)shape[d]);
        if (ndim == 0) snprintf(got, sizeof got, "scalar");
        return hn_error("%s: row %s has shape %s, the config needs %s", hn_h5_path(f), path, got,
                        want);
    }
    return hn_h5_read(f, path, HN_H5_F32, dst, r->numel);
}

int hn_ckpt_read_rows(HnH5* f, const char* group, const HnParamTable* t, float* base,
                      HnRowSel sel) {
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        size_t at;
        if (!selected(r, sel, &at)) continue;
        if (read_row(f, group, r, base + at, sel == HN_ROWS_STATE) != HN_OK) return HN_ERR;
    }
    return HN_OK;
}

int hn_ckpt_same_masks(HnH5* f, const HnParamTable* t) {
    char path[PATH_LEN];
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        snprintf(path, sizeof path, "/mask/%s", r->name);
        int has = hn_h5_exists(f, path);
        if (!r->mask && !has) continue;
        if (!r->mask || !has)
            return hn_error("%s: the partial-update mask of %s differs from this run's",
                            hn_h5_path(f), r->name);
        int ndim;
        int64_t shape[8];
        if (hn_h5_shape(f, path, &ndim, shape) != HN_OK) return HN_ERR;
        if (ndim != 1 || shape[0] != (int64_t)r->mask_k)
            return hn_error("%s: the mask of %s selects %lld entries, this run's %zu",
                            hn_h5_path(f), r->name, (long long)shape[0], r->mask_k);
        unsigned* idx = malloc(r->mask_k * sizeof(unsigned));
        if (!idx) return hn_error("out of memory");
        int rc = hn_h5_read(f, path, HN_H5_U32, idx, r->mask_k);
        if (rc == HN_OK && memcmp(idx, r->mask, r->mask_k * sizeof(unsigned)) != 0)
            rc = hn_error("%s: the mask of %s differs from the one this run built", hn_h5_path(f),
                          r->name);
        free(idx);
        if (rc != HN_OK) return HN_ERR;
    }
    return HN_OK;
}

int hn_ckpt_base_ref(HnH5* f, char** file, char** sha256) {
    *file = *sha256 = NULL;
    if (!hn_h5_has_attr(f, "/", "base_file")) return HN_OK;
    if (hn_h5_read_attr_str(f, "/", "base_file", file) != HN_OK ||
        hn_h5_read_attr_str(f, "/", "base_sha256", sha256) != HN_OK) {
        free(*file);
        *file = NULL;
        return HN_ERR;
    }
    return HN_OK;
}

int hn_ckpt_read_tensor(HnH5* f, const char* name, float* dst, size_t numel) {
    return hn_ckpt_read_group_tensor(f, "model", name, dst, numel);
}

int hn_ckpt_read_group_tensor(HnH5* f, const char* group, const char* name, float* dst,
                              size_t numel) {
    char path[PATH_LEN];
    if (snprintf(path, sizeof path, "/%s/%s", group, name) >= (int)sizeof path)
        return hn_error("tensor name too long: %s", name);
    if (!hn_h5_exists(f, path))
        return hn_error("%s: row %s is missing — the checkpoint does not match its config",
                        hn_h5_path(f), path);
    return hn_h5_read(f, path, HN_H5_F32, dst, numel);
}

static char* read_bytes(HnH5* f, const char* path, size_t* n) {
    int ndim;
    int64_t shape[8];
    if (hn_h5_shape(f, path, &ndim, shape) != HN_OK) return NULL;
    if (ndim != 1 || shape[0] < 1 || shape[0] > (64 << 20)) {
        hn_error("%s: %s is not a byte array of a plausible size", hn_h5_path(f), path);
        return NULL;
    }
    char* buf = malloc((size_t)shape[0]);
    if (!buf) return hn_error("out of memory"), NULL;
    if (hn_h5_read(f, path, HN_H5_U8, buf, (size_t)shape[0]) != HN_OK) {
        free(buf);
        return NULL;
    }
    *n = (size_t)shape[0];
    return buf;
}

int hn_ckpt_tokenizer(HnH5* f, HnTokenizer** tok) {
    *tok = NULL;
    char* type = NULL;
    if (!hn_h5_has_attr(f, "/tokenizer", "type")) return HN_OK; /* saved without one */
    if (hn_h5_read_attr_str(f, "/tokenizer", "type", &type) != HN_OK) return HN_ERR;
    int rc = HN_OK;
    if (strcmp(type, "byte") == 0) {
        *tok = hn_tokenizer_byte();
    } else if (strcmp(type, "bpe") == 0) {
        size_t n = 0;
        char* json = read_bytes(f, "/tokenizer/json", &n);
        if (json) *tok = hn_tokenizer_from_json(json, n, "checkpoint:/tokenizer/json");
        if (!*tok) rc = HN_ERR;
        free(json);
    } else if (strcmp(type, "none") != 0) {
        rc = hn_error("%s: unknown tokenizer type '%s'", hn_h5_path(f), type);
    }
    free(type);
    return rc;
}

int hn_ckpt_counters(HnH5* f, int64_t* step, int64_t* tokens, int64_t* opt_t) {
    *opt_t = 0;
    if (hn_h5_read_attr_i64(f, "/", "step", step) != HN_OK ||
        hn_h5_read_attr_i64(f, "/", "tokens", tokens) != HN_OK)
        return HN_ERR;
    if (hn_h5_has_attr(f, "/optim", "t") && hn_h5_read_attr_i64(f, "/optim", "t", opt_t) != HN_OK)
        return HN_ERR;
    if (*step < 0 || *tokens < 0 || *opt_t < 0 || *step > INT32_MAX)
        return hn_error("%s: negative or impossible step counters", hn_h5_path(f));
    return HN_OK;
}

int hn_ckpt_cursor(HnH5* f, HnCkptCursor* c, int** order, double* best_val_loss) {
    memset(c, 0, sizeof *c);
    *order = NULL;
    *best_val_loss = NAN;
    if (hn_h5_has_attr(f, "/train", "best_val_loss") &&
        hn_h5_read_attr_f64(f, "/train", "best_val_loss", best_val_loss) != HN_OK)
        return HN_ERR;
    if (!hn_h5_exists(f, "/train/cursor"))
        return hn_error("%s: no data cursor (/train/cursor): it cannot resume training",
                        hn_h5_path(f));
    int64_t cursor[3];
    int ndim;
    int64_t shape[8];
    if (hn_h5_read(f, "/train/cursor", HN_H5_I64, cursor, 3) != HN_OK ||
        hn_h5_read(f, "/train/rng", HN_H5_U64, c->rng_at_shard.s, 4) != HN_OK ||
        hn_h5_shape(f, "/train/shard_order", &ndim, shape) != HN_OK)
        return HN_ERR;
    if (ndim != 1 || shape[0] < 1 || shape[0] > (1 << 24) || cursor[0] < 0 ||
        cursor[0] > INT32_MAX || cursor[1] < 0 || cursor[1] >= shape[0] || cursor[2] < 0)
        return hn_error("%s: the data cursor in /train is malformed", hn_h5_path(f));
    *order = malloc((size_t)shape[0] * sizeof(int));
    if (!*order) return hn_error("out of memory");
    if (hn_h5_read(f, "/train/shard_order", HN_H5_I32, *order, (size_t)shape[0]) != HN_OK) {
        free(*order);
        *order = NULL;
        return HN_ERR;
    }
    c->epoch = (int)cursor[0];
    c->shard_pos = (int)cursor[1];
    c->window_pos = cursor[2];
    c->nshards = (int)shape[0];
    c->shard_order = *order;
    return HN_OK;
}

static int cmp_names(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

int hn_ckpt_model_sha256(HnH5* f, char hex[65]) {
    char** names = NULL;
    int n = 0;
    if (hn_h5_list(f, "/model", &names, &n) != HN_OK) return HN_ERR;
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_names); /* an empty group: NULL */
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    int rc =
        ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? HN_OK : hn_error("OpenSSL: no SHA-256");
    float* buf = NULL;
    for (int i = 0; rc == HN_OK && i < n; i++) {
        char path[PATH_LEN];
        int ndim;
        int64_t shape[8] = {0};
        snprintf(path, sizeof path, "/model/%s", names[i]);
        if ((rc = hn_h5_shape(f, path, &ndim, shape)) != HN_OK) break;
        size_t numel;
        if (hn_numel_overflow(shape, ndim, &numel) || numel > HN_CKPT_MAX_ROW) {
            rc = hn_error("%s: %s has an implausible shape", hn_h5_path(f), path);
            break;
        }
        float* grown = realloc(buf, (numel ? numel : 1) * sizeof(float));
        if (!grown) {
            rc = hn_error("out of memory");
            break;
        }
        buf = grown;
        if ((rc = hn_h5_read(f, path, HN_H5_F32, buf, numel)) != HN_OK) break;
        int32_t nd = ndim;
        if (!EVP_DigestUpdate(ctx, names[i], strlen(names[i]) + 1) ||
            !EVP_DigestUpdate(ctx, &nd, sizeof nd) ||
            !EVP_DigestUpdate(ctx, shape, (size_t)ndim * sizeof(int64_t)) ||
            !EVP_DigestUpdate(ctx, buf, numel * sizeof(float)))
            rc = hn_error("OpenSSL: SHA-256 update failed");
    }
    unsigned char md[32];
    unsigned int len = 0;
    if (rc == HN_OK && (!EVP_DigestFinal_ex(ctx, md, &len) || len != 32))
        rc = hn_error("OpenSSL: SHA-256 failed");
    if (rc == HN_OK)
        for (int i = 0; i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    EVP_MD_CTX_free(ctx);
    free(buf);
    hn_h5_free_names(names, n);
    return rc;
}

/* the base a frozen-base checkpoint names, opened and checked against the hash it recorded;
 * *base stays NULL for a checkpoint that holds its whole model, and on error */
int hn_ckpt_open_base(HnH5* f, const char* path, HnH5** base) {
    *base = NULL;
    char *file = NULL, *sha = NULL, *text = NULL, hex[65];
    if (hn_ckpt_base_ref(f, &file, &sha) != HN_OK) return HN_ERR;
    if (!file) return HN_OK;
    int rc = HN_OK;
    *base = hn_ckpt_open(file, &text);
    free(text);
    if (!*base)
        rc = hn_error("%s holds add-ons on the base %s, which cannot be opened (%s)", path, file,
                      hn_error_message());
    else if (hn_ckpt_model_sha256(*base, hex) != HN_OK)
        rc = HN_ERR;
    else if (strcmp(hex, sha) != 0)
        rc = hn_error("%s was trained on a different %s (SHA-256 of its weights %.12s..., now "
                      "%.12s...) — evaluate it on the base it was trained on",
                      path, file, sha, hex);
    if (rc != HN_OK && *base) { /* a base that fails its check is not handed out */
        hn_h5_close(*base);
        *base = NULL;
    }
    free(file);
    free(sha);
    return rc;
}
