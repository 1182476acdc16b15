/*
 * The training loop: data -> micro-batches -> forward/backward -> clip -> AdamW, with
 * progress on stderr, metrics in RUN/metrics.jsonl, validation, and a sample at the end.
 * A step with a non-finite loss or gradient norm is skipped (up to train.max_bad_steps in
 * a run), and loss spikes are reported (train.spike_factor).
 */
#ifndef HONE_TRAINER_H
#define HONE_TRAINER_H

#include "core/config.h"

typedef struct {
    int steps_done;
    double last_loss; /* training loss of the last step that updated (skipped ones do not) */
    double val_loss;  /* NAN when there is no validation data */
    double tokens_per_s;
} HnTrainResult;

typedef struct {
    const char* resume; /* NULL: start fresh; "auto": RUN/latest.h5 if it exists; or a path */
    int stop_at;        /* stop after this step with a checkpoint, as if interrupted (0: off) */
} HnTrainOptions;

int hn_train(const HnConfig* cfg, const HnTrainOptions* opts, HnTrainResult* result);

/* hone mask build: set the run up as hn_train would (model, base, data) and write the masks
 * its mask section selects to out as a checkpoint stores them: /mask/<row> (u32 indices,
 * attribute density) for every row that trains in part; root attributes format="hone-mask"
 * and config */
int hn_train_build_masks(const HnConfig* cfg, const char* out);

#endif
