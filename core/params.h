/*
 * The named parameter table: every tensor the program owns is one row (an HF-style name,
 * a shape, an offset into one flat float buffer, and flags). Checkpoint I/O, the optimizer,
 * weight-decay selection and (later) data-parallel reduction and export all work row by
 * row through this table, so none of them needs to know the model's structure.
 */
#ifndef HONE_PARAMS_H
#define HONE_PARAMS_H

#include <stddef.h>

#define HN_NAME_MAX 96
#define HN_MAX_DIMS 4

typedef struct {
    char name[HN_NAME_MAX];
    int ndim;
    int shape[HN_MAX_DIMS];
    size_t offset; /* in floats, into HnParamTable.data (and every mirror of it) */
    size_t numel;
    int trainable; /* gets a gradient and optimizer state */
    int decay;     /* AdamW applies weight decay to it */
} HnParamRow;

typedef struct {
    HnParamRow* rows;
    int n, cap;
    size_t numel; /* floats in all rows together */
    float* data;  /* one allocation, NULL until hn_params_alloc */
} HnParamTable;

/* append a row (before hn_params_alloc); returns its index or HN_ERR */
int hn_params_add(HnParamTable* t, const char* name, int ndim, const int* shape);
/* allocate the flat buffer, zero-filled, 64-byte aligned */
int hn_params_alloc(HnParamTable* t);
/* a zero-filled buffer with the same layout (gradients, optimizer moments) */
float* hn_params_mirror(const HnParamTable* t);
void hn_params_free(HnParamTable* t);

/* index of the row called name, or -1 */
int hn_params_find(const HnParamTable* t, const char* name);
/* mark rows whose name matches any glob pattern (fnmatch) as not decayed */
void hn_params_set_no_decay(HnParamTable* t, const char* const* patterns, int npatterns);

#endif
