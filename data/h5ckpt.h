/*
 * hone's checkpoint schema on HDF5 (data/h5.h does the file work):
 *
 *   /            attrs: format="hone", format_version=1, config (the resolved YAML of the
 *                run, model.vocab filled in), arch, step, tokens, dtype ("f32"|"bf16")
 *                base_file, base_sha256: only in a checkpoint of a run on a frozen base
 *                loaded from another checkpoint (model.from): that file and the SHA-256 of
 *                its weights (hn_ckpt_model_sha256); /model then holds only the base rows
 *                the run trained (BitFit's biases, say), the rest comes from the base
 *   /model/<row> base weights by parameter-table row name, f32 or bf16
 *   /peft/<row>  add-on rows of parameter-efficient methods (lora_A, lora_B, dora_m, ia3)
 *   /mask/<row>  partial-update masks: the sorted u32 indices of the entries that train
 *                (rows without one train whole, or are frozen)
 *   /optim       attrs: t (steps taken); /optim/m/<row>, /optim/v/<row> AdamW moments of
 *                trainable rows (always f32; a masked row's are 1-D, one per selected entry)
 *   /train       attrs: best_val_loss; datasets rng (u64[4]: the data loader's RNG state at
 *                the start of its current shard), shard_order (i32), cursor (i64[3]: epoch,
 *                shard_pos, window_pos)
 *   /tokenizer   attrs: type ("byte"|"bpe"|"none"); for bpe the dataset json (u8) holds the
 *                tokenizer as HF tokenizer.json text (hn_tokenizer_to_json), so a checkpoint
 *                needs nothing else
 *
 * Reading checks format and format_version first; every row is checked for presence and
 * shape. A checkpoint saved in bf16 loads, but only f32 checkpoints resume bit-exactly.
 */
#ifndef HONE_H5CKPT_H
#define HONE_H5CKPT_H

#include <stdint.h>

#include "core/rng.h"
#include "data/h5.h"
#include "data/tokenizer.h"
#include "core/params.h"

#define HN_CKPT_FORMAT_VERSION 1

/* where the training data loader stands, so a resume continues exactly there */
typedef struct {
    HnRng rng_at_shard; /* the loader's RNG state when it entered its current shard */
    int epoch, shard_pos;
    int64_t window_pos;
    int nshards;
    const int* shard_order; /* nshards */
} HnCkptCursor;

typedef struct {
    const char* config_yaml;
    const char* arch;
    int64_t step, tokens;
    const HnParamTable* params; /* rows -> /model */
    const float *m, *v;         /* AdamW moments laid out like params (NULL: none saved) */
    int64_t opt_t;
    const HnCkptCursor* cursor;   /* NULL: none saved */
    double best_val_loss;         /* NAN if none */
    const HnTokenizer* tokenizer; /* NULL: "none" */
    const char* base_file;        /* NULL, or the base checkpoint of a frozen-base run */
    const char* base_sha256;      /* with base_file: hn_ckpt_model_sha256 of that base */
    int bf16;                     /* store /model in bf16 */
    int deflate;                  /* 0..9 */
} HnCkptSave;

/* write the checkpoint atomically (temporary file, fsync, rename) */
int hn_ckpt_save(const char* path, const HnCkptSave* s);

/* open a checkpoint and check format/format_version; *config_yaml (malloc'd, caller frees)
 * gets the stored config text. NULL with an error otherwise. Close with hn_h5_close. */
HnH5* hn_ckpt_open(const char* path, char** config_yaml);
/* which rows of a table a read or write takes, and where they lie in the buffer */
typedef enum {
    HN_ROWS_BASE = 0,           /* rows that are not add-ons, at their offset */
    HN_ROWS_STATE = 1,          /* trainable rows in the optimizer-state layout (soff): a
                                 * masked row as its mask_k selected entries, 1-D */
    HN_ROWS_ADDON = 2,          /* add-on rows (/peft), at their offset */
    HN_ROWS_BASE_TRAINABLE = 3, /* trainable rows that are not add-ons, at their offset */
} HnRowSel;

/* read group/<row> (group "model", "peft", "optim/m", "optim/v") into base for every row of
 * t that sel selects; a missing row or a shape that differs from the table is an error
 * naming the row */
int hn_ckpt_read_rows(HnH5* f, const char* group, const HnParamTable* t, float* base, HnRowSel sel);
/* read one tensor /model/<name> of exactly numel floats (the eval path's loader) */
int hn_ckpt_read_tensor(HnH5* f, const char* name, float* dst, size_t numel);
/* the same from /<group>/<name> */
int hn_ckpt_read_group_tensor(HnH5* f, const char* group, const char* name, float* dst,
                              size_t numel);
/* the checkpoint's /mask rows equal the masks of t's rows (HN_OK), or an error naming the
 * first row that differs */
int hn_ckpt_same_masks(HnH5* f, const HnParamTable* t);
/* the base a frozen-base checkpoint was trained on: malloc'd strings (caller frees), both
 * NULL when the checkpoint holds its whole model */
int hn_ckpt_base_ref(HnH5* f, char** file, char** sha256);
/* the base a frozen-base checkpoint f (read from path) names, opened and checked against
 * the hash it recorded; *base stays NULL for a checkpoint that holds its whole model */
int hn_ckpt_open_base(HnH5* f, const char* path, HnH5** base);
/* SHA-256 (64 hex digits and a NUL into hex) of a checkpoint's /model group: each row's
 * name, shape and float32 values, rows in name order; the same weights give the same hash
 * whatever file (and HDF5 layout) holds them */
int hn_ckpt_model_sha256(HnH5* f, char hex[65]);
/* the tokenizer stored in the checkpoint; *tok is NULL for "none". HN_OK or HN_ERR */
int hn_ckpt_tokenizer(HnH5* f, HnTokenizer** tok);
/* the root attributes step and tokens, and the optimizer step count */
int hn_ckpt_counters(HnH5* f, int64_t* step, int64_t* tokens, int64_t* opt_t);
/* the loader cursor; shard_order is malloc'd into *order (caller frees) */
int hn_ckpt_cursor(HnH5* f, HnCkptCursor* c, int** order, double* best_val_loss);

#endif
