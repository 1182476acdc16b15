/*
 * Token shards and the loader: shards round-trip in both widths (uint16, and uint32 for
 * ids over 65535) with llm.c's header; a damaged shard is an error; the loader visits every
 * window of T+1 tokens exactly once per epoch, never across a shard's end, in an order
 * that depends on the seed alone; its cursor restores the exact continuation.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/dataset.h"
#include "testing.h"

static char dir[1024];

static void write_shard(const char* name, const int* ids, size_t n) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(hn_shard_write(path, ids, n) == HN_OK, "%s", hn_error_message());
}

static int32_t header_word(const char* name, int i) {
    char path[1100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE* f = fopen(path, "rb");
    int32_t h[256] = {0};
    if (f) {
        if (fread(h, 4, 256, f) != 256) h[0] = -1;
        fclose(f);
    }
    return h[i];
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/dataset", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(dir) != HN_OK) return 1;

    /* two shards whose token at position p of shard s encodes (s, p), so every window can
     * be traced to where it came from */
    enum { T = 8, N0 = 8 * 10 + 1, N1 = 8 * 6 + 5 };
    int s0[N0], s1[N1];
    for (int i = 0; i < N0; i++)
        s0[i] = i;
    for (int i = 0; i < N1; i++)
        s1[i] = 1000 + i;
    write_shard("a_000000.bin", s0, N0);
    write_shard("a_000001.bin", s1, N1);
    CHECK(header_word("a_000000.bin", 0) == HN_SHARD_MAGIC, "magic");
    CHECK(header_word("a_000000.bin", 1) == 1, "small ids use version 1 (uint16)");
    CHECK(header_word("a_000000.bin", 2) == N0, "token count in the header");

    int big[20];
    for (int i = 0; i < 20; i++)
        big[i] = 70000 + i;
    write_shard("big.bin", big, 20);
    CHECK(header_word("big.bin", 1) == 2, "ids over 65535 use version 2 (uint32)");
    char pat[1100];
    snprintf(pat, sizeof pat, "%s/big.bin", dir);
    HnLoader ld;
    int tok[2 * T], tgt[2 * T];
    CHECK(hn_loader_open(&ld, pat, 2, T, 80000, 0, 1) == HN_OK, "%s", hn_error_message());
    CHECK(hn_loader_next(&ld, tok, tgt) == HN_OK, "%s", hn_error_message());
    CHECK(tok[0] == 70000 && tgt[0] == 70001 && tok[T] == 70008 && tgt[2 * T - 1] == 70016,
          "uint32 shard read back wrong: %d %d %d", tok[0], tgt[0], tok[T]);
    hn_loader_close(&ld);
    /* an id >= vocab anywhere in a shard is an error when the loader opens, not when its
     * window comes up; so is one when the vocabulary is set later */
    CHECK(hn_loader_open(&ld, pat, 1, T, 70019, 0, 1) == HN_ERR &&
              strstr(hn_error_message(), "token 70019 at position 19 is out of range"),
          "an id >= vocab must be an error at open: %s", hn_error_message());
    CHECK(hn_loader_open(&ld, pat, 1, T, INT_MAX, 0, 1) == HN_OK, "%s", hn_error_message());
    CHECK(hn_loader_set_vocab(&ld, 70019) == HN_ERR && strstr(hn_error_message(), "position 19"),
          "an id >= a vocabulary set later must be an error: %s", hn_error_message());
    CHECK(hn_loader_set_vocab(&ld, 70020) == HN_OK, "%s", hn_error_message());
    CHECK(hn_loader_next(&ld, tok, tgt) == HN_OK, "%s", hn_error_message());
    hn_loader_close(&ld);

    /* one epoch visits each window once: 10 + 6 windows; none crosses a shard's end */
    snprintf(pat, sizeof pat, "%s/a_*.bin", dir);
    int windows = 16, seen[16] = {0};
    int order_a[32], order_b[32];
    for (int run = 0; run < 2; run++) {
        CHECK(hn_loader_open(&ld, pat, 1, T, 2000, 1, 42) == HN_OK, "%s", hn_error_message());
        CHECK(hn_loader_windows(&ld) == (size_t)windows, "windows %zu", hn_loader_windows(&ld));
        for (int w = 0; w < 2 * windows; w++) {
            CHECK(hn_loader_next(&ld, tok, tgt) == HN_OK, "%s", hn_error_message());
            int shard = tok[0] >= 1000, start = tok[0] - 1000 * shard;
            for (int t = 0; t < T; t++)
                if (tok[t] != tok[0] + t || tgt[t] != tok[0] + t + 1)
                    CHECK(0, "window not contiguous");
            CHECK(start % T == 0 && start + T < (shard ? N1 : N0), "window at %d crosses the end",
                  start);
            int id = shard ? 10 + start / T : start / T;
            if (w < windows) seen[id]++;
            (run ? order_b : order_a)[w] = tok[0];
        }
        hn_loader_close(&ld);
    }
    int all_once = 1;
    for (int i = 0; i < windows; i++)
        all_once &= seen[i] == 2; /* once per run, two runs */
    CHECK(all_once, "an epoch must visit every window exactly once");
    CHECK(memcmp(order_a, order_b, sizeof order_a) == 0, "the same seed must give the same order");
    int differs = memcmp(order_a, order_a + windows, windows * sizeof(int)) != 0;
    CHECK(differs, "the second epoch should be shuffled differently");
    int in_order = 1;
    for (int w = 1; w < windows; w++)
        in_order &= order_a[w] > order_a[w - 1];
    CHECK(!in_order, "shuffle=1 should not visit windows in file order");

    /* the cursor restores the continuation exactly, mid-shard and mid-epoch */
    HnLoader a, b;
    CHECK(hn_loader_open(&a, pat, 1, T, 2000, 1, 7) == HN_OK, "%s", hn_error_message());
    for (int w = 0; w < 13; w++)
        hn_loader_next(&a, tok, tgt);
    int epoch, shard_pos;
    int64_t window_pos;
    HnRng rng;
    const int* order;
    hn_loader_get_cursor(&a, &epoch, &shard_pos, &window_pos, &rng, &order);
    int saved_order[2] = {order[0], order[1]};
    CHECK(hn_loader_open(&b, pat, 1, T, 2000, 1, 999) == HN_OK, "%s", hn_error_message());
    CHECK(hn_loader_set_cursor(&b, epoch, shard_pos, window_pos, &rng, saved_order, 2) == HN_OK,
          "%s", hn_error_message());
    int same = 1;
    for (int w = 0; w < 40; w++) {
        int ta[T], tb[T], ga[T], gb[T];
        hn_loader_next(&a, ta, ga);
        hn_loader_next(&b, tb, gb);
        same &= memcmp(ta, tb, sizeof ta) == 0;
    }
    CHECK(same, "a restored cursor must continue exactly as the original");
    CHECK(hn_loader_set_cursor(&b, 0, 0, 0, &rng, saved_order, 3) == HN_ERR,
          "wrong shard count accepted");
    hn_loader_close(&a);
    hn_loader_close(&b);

    /* damaged shards */
    char path[1100];
    snprintf(path, sizeof path, "%s/short.bin", dir);
    FILE* f = fopen(path, "wb");
    int32_t h[256] = {HN_SHARD_MAGIC, 1, 100};
    fwrite(h, 4, 256, f);
    fwrite(s0, 2, 10, f); /* 10 of the 100 promised tokens */
    fclose(f);
    CHECK(hn_loader_open(&ld, path, 1, T, 2000, 0, 1) == HN_ERR &&
              strstr(hn_error_message(), "truncated"),
          "truncated shard: %s", hn_error_message());
    hn_loader_close(&ld);
    h[1] = 7;
    f = fopen(path, "wb");
    fwrite(h, 4, 256, f);
    fclose(f);
    CHECK(hn_loader_open(&ld, path, 1, T, 2000, 0, 1) == HN_ERR &&
              strstr(hn_error_message(), "version"),
          "bad version: %s", hn_error_message());
    hn_loader_close(&ld);
    snprintf(pat, sizeof pat, "%s/nothing_*.bin", dir);
    CHECK(hn_loader_open(&ld, pat, 1, T, 2000, 0, 1) == HN_ERR, "no match must be an error");
    hn_loader_close(&ld);
    return hn_test_finish("test_dataset");
}
