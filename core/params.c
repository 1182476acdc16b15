/* The named parameter table; see params.h. */
#include "core/params.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int hn_params_add(HnParamTable* t, const char* name, int ndim, const int* shape) {
    if (t->data) return hn_error("internal: parameter '%s' added after allocation", name);
    if (strlen(name) >= HN_NAME_MAX) return hn_error("parameter name too long: '%s'", name);
    if (ndim < 1 || ndim > HN_MAX_DIMS) return hn_error("parameter '%s' has %d dims", name, ndim);
    if (hn_params_find(t, name) >= 0) return hn_error("duplicate parameter '%s'", name);
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        HnParamRow* rows = realloc(t->rows, (size_t)cap * sizeof *rows);
        if (!rows) return hn_error("out of memory for the parameter table");
        t->rows = rows;
        t->cap = cap;
    }
    HnParamRow* r = &t->rows[t->n];
    memset(r, 0, sizeof *r);
    strcpy(r->name, name);
    r->ndim = ndim;
    r->numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) return hn_error("parameter '%s' has a non-positive dimension", name);
        r->shape[i] = shape[i];
        r->numel *= (size_t)shape[i];
    }
    /* keep every row 64-byte aligned so vector loops over a row start aligned */
    r->offset = (t->numel + 15) & ~(size_t)15;
    t->numel = r->offset + r->numel;
    r->trainable = 1;
    r->decay = 1;
    r->goff = r->offset;
    r->soff = r->offset;
    t->grad_numel = t->numel;
    t->state_numel = t->numel;
    return t->n++;
}

static float* hn_alloc_floats(size_t n) {
    size_t bytes = ((n * sizeof(float)) + 63) & ~(size_t)63;
    float* p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

int hn_params_alloc(HnParamTable* t) {
    t->data = hn_alloc_floats(t->numel);
    if (!t->data) return hn_error("out of memory: %zu parameters", t->numel);
    return HN_OK;
}

float* hn_params_mirror(const HnParamTable* t) {
    float* p = hn_alloc_floats(t->numel);
    if (!p) hn_error("out of memory: a mirror of %zu parameters", t->numel);
    return p;
}

void hn_params_layout_grads(HnParamTable* t) {
    size_t n = 0, s = 0;
    for (int i = 0; i < t->n; i++) {
        HnParamRow* r = &t->rows[i];
        if (!r->trainable) continue;
        r->goff = (n + 15) & ~(size_t)15;
        n = r->goff + r->numel;
        r->soff = (s + 15) & ~(size_t)15;
        s = r->soff + (r->mask ? r->mask_k : r->numel);
    }
    t->grad_numel = n;
    t->state_numel = s;
}

float* hn_params_state_buffer(const HnParamTable* t) {
    float* p = hn_alloc_floats(t->state_numel);
    if (!p) hn_error("out of memory: optimizer state of %zu entries", t->state_numel);
    return p;
}

int hn_params_set_mask(HnParamTable* t, int i, unsigned* idx, size_t k) {
    HnParamRow* r = &t->rows[i];
    for (size_t j = 0; j < k; j++)
        if (idx[j] >= r->numel || (j && idx[j] <= idx[j - 1])) {
            hn_error("mask of %s: index %u is out of order or beyond its %zu entries", r->name,
                     idx[j], r->numel);
            free(idx);
            return HN_ERR;
        }
    free(r->mask);
    r->mask = NULL;
    r->mask_k = 0;
    if (k == 0) {
        free(idx);
        r->trainable = 0;
    } else if (k == r->numel) {
        free(idx); /* every entry: a plain trainable row */
    } else {
        r->mask = idx;
        r->mask_k = k;
    }
    return HN_OK;
}

float* hn_params_grad_buffer(const HnParamTable* t) {
    float* p = hn_alloc_floats(t->grad_numel);
    if (!p) hn_error("out of memory: gradients of %zu parameters", t->grad_numel);
    return p;
}

int hn_params_select_trainable(HnParamTable* t, const char* const* patterns, int npatterns) {
    int matched = 0;
    for (int i = 0; i < t->n; i++) {
        int on = 0;
        for (int k = 0; k < npatterns && !on; k++)
            on = fnmatch(patterns[k], t->rows[i].name, 0) == 0;
        t->rows[i].trainable = on;
        matched += on;
    }
    return matched;
}

size_t hn_params_trainable_numel(const HnParamTable* t) {
    size_t n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].trainable) n += t->rows[i].numel;
    return n;
}

void hn_params_free(HnParamTable* t) {
    for (int i = 0; i < t->n; i++)
        free(t->rows[i].mask);
    free(t->rows);
    free(t->data);
    memset(t, 0, sizeof *t);
}

int hn_params_find(const HnParamTable* t, const char* name) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->rows[i].name, name) == 0) return i;
    return -1;
}

void hn_params_set_no_decay(HnParamTable* t, const char* const* patterns, int npatterns) {
    for (int i = 0; i < t->n; i++)
        for (int k = 0; k < npatterns; k++)
            if (fnmatch(patterns[k], t->rows[i].name, 0) == 0) t->rows[i].decay = 0;
}
