/*
 * The training loop: data -> micro-batches -> forward/backward -> clip -> AdamW, with
 * progress on stderr, metrics in RUN/metrics.jsonl, validation, and a sample at the end.
 */
#ifndef HONE_TRAINER_H
#define HONE_TRAINER_H

#include "core/config.h"

typedef struct {
    int steps_done;
    double last_loss; /* training loss of the last step */
    double val_loss;  /* NAN when there is no validation data */
    double tokens_per_s;
} HnTrainResult;

typedef struct {
    const char* resume; /* NULL: start fresh; "auto": RUN/latest.h5 if it exists; or a path */
    int stop_at;        /* stop after this step with a checkpoint, as if interrupted (0: off) */
} HnTrainOptions;

int hn_train(const HnConfig* cfg, const HnTrainOptions* opts, HnTrainResult* result);

#endif
