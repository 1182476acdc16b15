/*
 * `hone prepare`: text files in, token shards and a meta.json out.
 * Each input file is one document; every document starts with the end-of-text id, as
 * GPT-2 was trained. The validation split takes whole documents (chosen by seed) when
 * there are several, or the tail of the only one. meta.json records the tokenizer, so
 * `hone train` can find the vocabulary and decode samples without being told again.
 * Beside each shard NAME.bin goes NAME.docs, where its documents start (data/dataset.h).
 *
 * With instruct set the inputs are JSONL files of instruction examples (data/instruct.h):
 * each non-blank line is one example and one document; the validation split takes whole
 * examples (none when there is only one). Beside each shard NAME.bin goes its loss mask
 * NAME.mask (data/dataset.h); meta.json adds "instruct": true, the template and the counts.
 * A malformed line is an error naming FILE:LINE, or with skip_bad is reported through warn
 * and left out. A plain prepare removes the .mask of every shard it writes.
 */
#ifndef HONE_PREPARE_H
#define HONE_PREPARE_H

#include <stddef.h>

typedef struct {
    const char* const* inputs; /* text files */
    int ninputs;
    const char* out_dir;
    const char* tokenizer; /* "byte", "gpt2", or a checkpoint path ending in .h5 */
    const char* encoder;   /* gpt2 only */
    const char* merges;    /* gpt2 only */
    double val_fraction;   /* in [0, 0.5] */
    size_t shard_tokens;   /* tokens per shard */
    unsigned long long seed;
    int instruct;              /* inputs are JSONL instruction examples */
    const char* chat_template; /* instruct: chatml, llama2, plain, or NULL to recognise */
    int skip_bad;              /* instruct: skip malformed lines instead of failing */
    void (*warn)(void* ctx, const char* msg); /* skipped lines are reported here (or not) */
    void* warn_ctx;
} HnPrepareOptions;

typedef struct {
    size_t train_tokens, val_tokens;
    int train_shards, val_shards, documents;
    /* instruct only */
    int skipped;                       /* malformed lines left out (skip_bad) */
    size_t train_targets, val_targets; /* tokens whose mask byte is 1 */
    char chat_template[16];            /* the template used */
} HnPrepareStats;

int hn_prepare(const HnPrepareOptions* opt, HnPrepareStats* stats);

/* what meta.json of a prepared folder says */
typedef struct {
    char tokenizer[16];
    char encoder[512];
    char merges[512];
    int vocab_size;
    int eos;
} HnDataMeta;

/* read DIR/meta.json; HN_ERR if missing or malformed */
int hn_data_meta_read(const char* dir, HnDataMeta* meta);

#endif
