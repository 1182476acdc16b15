/*
 * Sparse deltas: the entries a fine-tuned checkpoint changed against its base, to share a
 * partial-knowledge update (a `mask:` run) without the whole model. HDF5 (data/h5.h):
 *
 *   /              attrs: format="hone-delta", format_version=1, base_sha256 (the base's
 *                  hn_ckpt_model_sha256), base_file and source_file (the paths it was made
 *                  from, for people), step and tokens (the fine-tuned checkpoint's
 *                  counters), rows (rows changed), entries (entries changed)
 *   /delta/<row>   a group per row that differs, attr numel (the row's size)
 *     index        u32, the flat (row-major) indices of the entries that differ, sorted
 *     value        f32, their NEW values (not differences), so applying is exact
 *
 * Rows are compared bit for bit as float32 (-0 and +0 differ; a NaN equal in its bits does
 * not). Applying writes a full hone checkpoint: the base's rows with the delta's entries
 * set, the base's config, arch and tokenizer, the delta's counters, no optimizer state.
 * Deltas made against the same base on disjoint entries compose: apply them together.
 */
#ifndef HONE_DELTA_H
#define HONE_DELTA_H

#include <stdint.h>

#define HN_DELTA_FORMAT "hone-delta"
#define HN_DELTA_FORMAT_VERSION 1

typedef struct {
    int rows;            /* rows in the model */
    int rows_changed;    /* rows with at least one changed entry */
    int64_t numel;       /* entries in the model */
    int64_t entries;     /* changed entries (applied entries, for hn_delta_apply) */
    int64_t model_bytes; /* numel * 4: the model's weights in f32 */
} HnDeltaStats;

/* write OUT (atomically) with the entries of CKPT's /model that differ from BASE's. Both must
 * be hone checkpoints holding a whole model of the same rows and shapes (an add-on / frozen-
 * base checkpoint, or one with /peft rows, is refused). deflate 0..9. HN_OK or HN_ERR. */
int hn_delta_export(const char* ckpt, const char* base, const char* out, int deflate,
                    HnDeltaStats* st);

/* write OUT (atomically): BASE with the entries of deltas[0..ndeltas) set. Every delta must
 * have been made against BASE (its base_sha256 equals BASE's hash); indices must be sorted
 * and in range, every row must exist in BASE with the delta's size; two deltas that set the
 * same entry to different values are refused. OUT's step and tokens are the largest of the
 * deltas'. HN_OK or HN_ERR. */
int hn_delta_apply(const char* base, const char* const* deltas, int ndeltas, const char* out,
                   int deflate, HnDeltaStats* st);

#endif
