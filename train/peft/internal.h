/* Shared between the files of train/peft/, not part of its interface. */
#ifndef HONE_PEFT_INTERNAL_H
#define HONE_PEFT_INTERNAL_H

#include "train/peft/peft.h"

/* norm (out) = the row norms of w + a->scale * B @ A over the add-on's rows (DoRA's
 * ||W + s B A||), through tmp (out x in floats) */
void hn_peft_dora_norms(const HnAddon* a, const float* w, const float* A, const float* B,
                        float* norm, float* tmp);

/* dst[j] += scale * sum_n a[n, j] * b[n, j] (b NULL: a[n, j] alone; divided by div[j] when
 * div) over N rows of width w: chunks of 64 columns in parallel, rows in order inside each,
 * so memory is read along rows and every column sums in the same order whatever the thread
 * count */
void hn_peft_colsum(float* dst, const float* a, int lda, const float* b, int ldb, int N, int w,
                    const float* div, float scale);

/* the prefix's and prompt's buffers (prompt.c) and the adapters' (adapter.c), for up to
 * maxN rows */
int hn_peft_alloc_virtual(HnPeft* p);
int hn_peft_alloc_adapters(HnPeft* p, int maxN);

#endif
