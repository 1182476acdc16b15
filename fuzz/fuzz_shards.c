/*
 * Fuzz target: token shards and their .mask and .docs companions (data/dataset.c) through
 * the loader: open, batches, document positions, and a resumed cursor.
 * Input: 4 bytes of settings (B, T, vocab, flags), then the files separated by "|SEP|":
 * s_000.bin, s_000.mask, s_000.docs, s_001.bin (flags say which companions exist).
 */
#include "data/dataset.h"
#include "fuzz/fuzz_util.h"

#define SEP "|SEP|"

static void write_part(const char* name, const uint8_t* p, size_t n, int present) {
    const char* path = fuzz_path(1, name);
    unlink(path);
    if (present) fuzz_write(1, name, p, n);
}

static void batches(HnLoader* ld, int docs, int rounds) {
    size_t bt = (size_t)ld->B * (size_t)ld->T;
    int* tokens = malloc(bt * sizeof(int));
    int* targets = malloc(bt * sizeof(int));
    int* pos = malloc(bt * sizeof(int));
    if (!tokens || !targets || !pos) abort();
    for (int i = 0; i < rounds; i++) {
        int rc = docs ? hn_loader_next_docs(ld, tokens, targets, pos)
                      : hn_loader_next(ld, tokens, targets);
        if (rc != 0) break;
        for (size_t k = 0; k < bt; k++) {
            FUZZ_CHECK(tokens[k] >= 0 && tokens[k] < ld->vocab);
            FUZZ_CHECK(targets[k] == -1 || (targets[k] >= 0 && targets[k] < ld->vocab));
            if (docs) FUZZ_CHECK(pos[k] >= 0 && pos[k] < ld->T);
        }
    }
    free(tokens);
    free(targets);
    free(pos);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    static const int vocabs[4] = {257, 50257, 65536, 1 << 20};
    int B = 1 + data[0] % 4, T = 1 + data[1] % 16, vocab = vocabs[data[2] % 4];
    unsigned flags = data[3];
    data += 4;
    size -= 4;
    const uint8_t* part[4];
    size_t len[4];
    part[0] = data;
    const uint8_t* rest = data;
    size_t left = size;
    for (int i = 0; i < 3; i++) {
        rest = fuzz_split(rest, left, SEP, &len[i], &left);
        part[i + 1] = rest;
    }
    len[3] = left;
    write_part("s_000.bin", part[0], len[0], 1);
    write_part("s_000.mask", part[1], len[1], flags & 1);
    write_part("s_000.docs", part[2], len[2], flags & 2);
    write_part("s_001.bin", part[3], len[3], (flags & 4) && len[3] > 0);
    write_part("s_001.docs", part[2], len[2], flags & 8);

    HnLoader ld;
    if (hn_loader_open(&ld, fuzz_path(2, "s_*.bin"), B, T, vocab, flags & 16, flags) != 0) return 0;
    size_t windows = hn_loader_windows(&ld);
    int rounds = (int)(windows / (size_t)B) + 2;
    if (rounds > 40) rounds = 40;
    int docs = (flags & 32) && hn_loader_use_docs(&ld) == 0;
    batches(&ld, docs, rounds);

    /* a cursor taken now resumes; a mutated one is accepted or refused, never trusted */
    int epoch, shard_pos;
    int64_t window_pos;
    HnRng rng;
    const int* order;
    hn_loader_get_cursor(&ld, &epoch, &shard_pos, &window_pos, &rng, &order);
    int nshards = ld.nshards;
    int* saved = malloc((size_t)nshards * sizeof *saved);
    if (!saved) abort();
    memcpy(saved, order, (size_t)nshards * sizeof *saved);
    FUZZ_CHECK(hn_loader_set_cursor(&ld, epoch, shard_pos, window_pos, &rng, saved, nshards) == 0);
    batches(&ld, docs, 2);
    if (flags & 64) {
        saved[0] += (int)(flags >> 7) - 1 + (int)(len[0] & 3);
        window_pos += (int64_t)(len[1] & 7) - 2;
        shard_pos += (int)(len[2] & 3) - 1;
        if (hn_loader_set_cursor(&ld, epoch, shard_pos, window_pos, &rng, saved, nshards) == 0)
            batches(&ld, docs, 2);
    }
    free(saved);
    hn_loader_reset(&ld);
    batches(&ld, docs, 1);
    hn_loader_close(&ld);
    return 0;
}
