/*
 * Token shards and the loader that turns them into batches.
 *
 * A shard is llm.c's format: a header of 256 int32 (magic 20240520, version, token count,
 * the rest zero) followed by the tokens: version 1 stores uint16 ids, version 2 uint32 ids
 * (for vocabularies over 65535). A sample is a window of T+1 consecutive tokens inside one
 * shard (inputs are the first T, targets the last T); windows never cross a shard's end.
 * The training loader visits every window once per epoch, in an order shuffled by seed
 * (shard order, then windows within a shard); the validation loader reads in file order.
 *
 * Loss masks (instruction data, `hone prepare --instruct`): beside a shard NAME.bin may lie
 * NAME.mask: the same 1024-byte header convention (256 int32: magic HN_MASK_MAGIC, version
 * 1, token count equal to the shard's, the rest zero) then one byte per token of the shard:
 * 1 if predicting that token counts in the loss, 0 if not. The loader gives a target
 * HN_IGNORE (kernels/ops.h) where the mask byte of the target token is 0, so the trainer's
 * mean runs over the counted targets of the step. A shard without a .mask counts every
 * target.
 *
 * Document index (packed documents): beside a shard lies NAME.docs: the header (256 int32:
 * magic HN_DOCS_MAGIC, version 1, the number of document starts n, the shard's token count,
 * the rest zero) then n uint32, the shard positions where a document (a text file, an
 * instruction example) starts, strictly increasing; tokens before the first start continue
 * a document of the previous shard. `hone prepare` writes one for every shard. A window
 * packs whatever documents fall in it; with hn_loader_use_docs (data.packing: documents) the
 * loader also gives each token its position within its document (kernels/ops.h: `pos`),
 * counted from the window's start for a document that began before the window, so the model
 * lets a token attend to its own document only and restarts positions at each start.
 * Without it (data.packing: stream, GPT-2's pretraining) a window attends across documents.
 */
#ifndef HONE_DATASET_H
#define HONE_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

#define HN_SHARD_MAGIC 20240520
#define HN_SHARD_HEADER_INTS 256

/* write ids as one shard (version 1 if every id fits in uint16, else 2); the file is written
 * to path.tmp and renamed, so a failed write never leaves a half shard behind */
int hn_shard_write(const char* path, const int* ids, size_t n);

#define HN_MASK_MAGIC 20240521
#define HN_MASK_VERSION 1

/* write a loss mask (bytes 0/1, one per token) as path, through path.tmp as shards are */
int hn_mask_write(const char* path, const unsigned char* mask, size_t n);
/* the mask path of a shard path: NAME.bin -> NAME.mask, anything else gets .mask appended
 * (snprintf-style; HN_ERR if it does not fit) */
int hn_mask_path(char* out, size_t cap, const char* shard_path);

#define HN_DOCS_MAGIC 20240522
#define HN_DOCS_VERSION 1

/* the document index path of a shard path: NAME.bin -> NAME.docs */
int hn_docs_path(char* out, size_t cap, const char* shard_path);
/* write the document starts (n, increasing, each < ntok) of a shard of ntok tokens */
int hn_docs_write(const char* path, const uint32_t* starts, size_t n, size_t ntok);

typedef struct {
    char* path;
    const unsigned char* mask; /* NULL, or ntok bytes of the shard's .mask (mapped) */
    const unsigned char* mask_map;
    size_t mask_map_size;
    const uint32_t* docs; /* NULL, or ndocs document starts (hn_loader_use_docs) */
    size_t ndocs;
    const unsigned char* docs_map;
    size_t docs_map_size;
    const unsigned char* map; /* the whole file, mapped read-only */
    size_t map_size;
    size_t ntok;
    int version; /* 1: uint16, 2: uint32 */
} HnShard;

typedef struct {
    HnShard* shards;
    int nshards;
    int T, B;
    int vocab; /* ids must be < vocab */
    int shuffle;
    int docs; /* hn_loader_use_docs was called */
    HnRng rng;
    HnRng rng_at_shard; /* rng as it was when the current shard was entered (for resume) */
    /* cursor: where the next batch starts */
    int epoch;
    int shard_pos;          /* index into shard_order */
    size_t window_pos;      /* index into window_order */
    int* shard_order;       /* nshards */
    uint32_t* window_order; /* windows of the current shard */
    size_t nwindows;
} HnLoader;

/* open every shard matching the glob pattern; each is checked (magic, version, size, and
 * every token id below vocab unless vocab is INT_MAX). On error nothing stays open (hn_loader_close is then a no-op) */
int hn_loader_open(HnLoader* ld, const char* pattern, int B, int T, int vocab, int shuffle,
                   uint64_t seed);
void hn_loader_close(HnLoader* ld);
/* the next B windows: tokens (B,T) and targets (B,T); moves to the next shard and epoch as
 * needed. HN_ERR on a token id out of range, naming the shard and position. */
int hn_loader_next(HnLoader* ld, int* tokens, int* targets);
/* the vocabulary, when it is known only after the loader opened (vocab INT_MAX there, as
 * the trainer does: the shards come first so that their errors are the ones reported):
 * every token of every shard is checked against it, as hn_loader_open checks them */
int hn_loader_set_vocab(HnLoader* ld, int vocab);
/* read every shard's document index (HN_ERR naming a shard without one), so that
 * hn_loader_next_docs can give positions */
int hn_loader_use_docs(HnLoader* ld);
/* hn_loader_next, and pos (B,T): each token's position within its packed document */
int hn_loader_next_docs(HnLoader* ld, int* tokens, int* targets, int* pos);
/* the cursor as a checkpoint stores it: epoch, position, shard order, and the RNG state
 * from which the current shard's window order is regenerated */
void hn_loader_get_cursor(const HnLoader* ld, int* epoch, int* shard_pos, int64_t* window_pos,
                          HnRng* rng_at_shard, const int** shard_order);
/* continue from a saved cursor; HN_ERR if it does not fit these shards */
int hn_loader_set_cursor(HnLoader* ld, int epoch, int shard_pos, int64_t window_pos,
                         const HnRng* rng_at_shard, const int* shard_order, int nshards);
/* rewind to the start in file order (validation) */
void hn_loader_reset(HnLoader* ld);
/* total windows of length T+1 over all shards */
size_t hn_loader_windows(const HnLoader* ld);

#endif
