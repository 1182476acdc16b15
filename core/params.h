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
    int addon;     /* a parameter-efficient add-on (LoRA, IA3, ...): saved under /peft */
    size_t goff;   /* trainable rows: offset into the gradient-layout buffer, which holds
                    * trainable rows only; see hn_params_layout_grads */
    unsigned* mask; /* a partial update: the sorted indices of the entries that train (NULL:
                     * all of a trainable row); the row owns it */
    size_t mask_k;  /* entries in mask */
    size_t soff;    /* trainable rows: offset into the optimizer-state layout (AdamW moments),
                     * which holds mask_k floats for a masked row, numel for another */
} HnParamRow;

typedef struct {
    HnParamRow* rows;
    int n, cap;
    size_t numel;      /* floats in all rows together */
    size_t grad_numel; /* floats in the gradient layout (trainable rows only) */
    size_t state_numel; /* floats in the optimizer-state layout (selected entries only) */
    float* data;       /* one allocation, NULL until hn_params_alloc */
} HnParamTable;

/* append a row (before hn_params_alloc); returns its index or HN_ERR */
int hn_params_add(HnParamTable* t, const char* name, int ndim, const int* shape);
/* allocate the flat buffer, zero-filled, 64-byte aligned */
int hn_params_alloc(HnParamTable* t);
/* a zero-filled buffer with the same layout as data */
float* hn_params_mirror(const HnParamTable* t);
/* Lay out the trainable rows, in table order and 64-byte aligned, for gradients and
 * optimizer moments: sets every trainable row's goff and t->grad_numel. Frozen rows get no
 * place, so a frozen base costs no gradient or optimizer memory. When every row is
 * trainable the gradient layout equals the parameter layout (goff == offset). Call again
 * after changing any row's trainable flag. */
void hn_params_layout_grads(HnParamTable* t);
/* a zero-filled buffer of t->grad_numel floats (gradients) */
float* hn_params_grad_buffer(const HnParamTable* t);
/* a zero-filled buffer of t->state_numel floats (AdamW moments) */
float* hn_params_state_buffer(const HnParamTable* t);
/* give row i a partial-update mask (sorted, distinct indices below numel, taken over: the
 * row frees it); k = 0 freezes the row. Lay the gradients out again after it. */
int hn_params_set_mask(HnParamTable* t, int i, unsigned* idx, size_t k);
/* set trainable = 1 on the rows whose name matches any glob pattern (fnmatch), 0 on the
 * others; returns how many rows matched. The one mechanism behind BitFit ("*.bias") and the
 * frozen base of every parameter-efficient method. Lay the gradients out again after it. */
int hn_params_select_trainable(HnParamTable* t, const char* const* patterns, int npatterns);
/* elements in trainable rows */
size_t hn_params_trainable_numel(const HnParamTable* t);
void hn_params_free(HnParamTable* t);

/* index of the row called name, or -1 */
int hn_params_find(const HnParamTable* t, const char* name);
/* mark rows whose name matches any glob pattern (fnmatch) as not decayed */
void hn_params_set_no_decay(HnParamTable* t, const char* const* patterns, int npatterns);

#endif
