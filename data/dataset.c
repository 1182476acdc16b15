/* Token shards (llm.c's format) and the batch loader; see dataset.h. */
#include "data/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <limits.h>
#include <unistd.h>

#include "core/error.h"
#include "kernels/ops.h"

int hn_shard_write(const char* path, const int* ids, size_t n) {
    int version = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0) return hn_error("internal: negative token id written to %s", path);
        if (ids[i] > 65535) version = 2;
    }
    if (n > (size_t)INT32_MAX) return hn_error("%s: %zu tokens do not fit in one shard", path, n);
    int32_t header[HN_SHARD_HEADER_INTS] = {HN_SHARD_MAGIC, version, (int32_t)n};
    size_t tmp_len = strlen(path) + 5;
    char* tmp = malloc(tmp_len);
    if (!tmp) return hn_error("out of memory");
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f) {
        hn_error("cannot write %s", tmp);
        free(tmp);
        return HN_ERR;
    }
    int ok = fwrite(header, sizeof header, 1, f) == 1;
    enum { CHUNK = 1 << 16 };
    static _Thread_local union {
        uint16_t u16[CHUNK];
        uint32_t u32[CHUNK];
    } buf;
    for (size_t i = 0; ok && i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        for (size_t j = 0; j < k; j++) {
            if (version == 1)
                buf.u16[j] = (uint16_t)ids[i + j];
            else
                buf.u32[j] = (uint32_t)ids[i + j];
        }
        ok = fwrite(&buf, version == 1 ? 2 : 4, k, f) == k;
    }
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return hn_error("cannot write %s (disk full?)", path);
    }
    free(tmp);
    return HN_OK;
}

/* NAME.bin -> NAME<ext>, anything else gets ext appended */
static int side_path(char* out, size_t cap, const char* shard_path, const char* ext) {
    size_t n = strlen(shard_path);
    int k = n >= 4 && strcmp(shard_path + n - 4, ".bin") == 0
                ? snprintf(out, cap, "%.*s%s", (int)(n - 4), shard_path, ext)
                : snprintf(out, cap, "%s%s", shard_path, ext);
    return k >= 0 && (size_t)k < cap ? HN_OK : hn_error("path too long: %s", shard_path);
}

int hn_mask_path(char* out, size_t cap, const char* shard_path) {
    return side_path(out, cap, shard_path, ".mask");
}

int hn_docs_path(char* out, size_t cap, const char* shard_path) {
    return side_path(out, cap, shard_path, ".docs");
}

/* a 1024-byte header then n bytes of data, written to path.tmp and renamed */
static int write_with_header(const char* path, const int32_t* header, const void* data, size_t n) {
    size_t tmp_len = strlen(path) + 5;
    char* tmp = malloc(tmp_len);
    if (!tmp) return hn_error("out of memory");
    snprintf(tmp, tmp_len, "%s.tmp", path);
    FILE* f = fopen(tmp, "wb");
    if (!f) {
        hn_error("cannot write %s", tmp);
        free(tmp);
        return HN_ERR;
    }
    int ok = fwrite(header, HN_SHARD_HEADER_INTS * 4, 1, f) == 1 &&
             (n == 0 || fwrite(data, 1, n, f) == n);
    ok = (fflush(f) == 0) && ok;
    ok = (fsync(fileno(f)) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        free(tmp);
        return hn_error("cannot write %s (disk full?)", path);
    }
    free(tmp);
    return HN_OK;
}

int hn_mask_write(const char* path, const unsigned char* mask, size_t n) {
    if (n > (size_t)INT32_MAX) return hn_error("%s: %zu tokens do not fit in one mask", path, n);
    for (size_t i = 0; i < n; i++)
        if (mask[i] > 1) return hn_error("internal: mask byte %d written to %s", mask[i], path);
    int32_t header[HN_SHARD_HEADER_INTS] = {HN_MASK_MAGIC, HN_MASK_VERSION, (int32_t)n};
    return write_with_header(path, header, mask, n);
}

int hn_docs_write(const char* path, const uint32_t* starts, size_t n, size_t ntok) {
    if (ntok > (size_t)INT32_MAX || n > ntok)
        return hn_error("%s: %zu documents in %zu tokens do not fit a document index", path, n,
                        ntok);
    for (size_t i = 0; i < n; i++)
        if (starts[i] >= ntok || (i && starts[i] <= starts[i - 1]))
            return hn_error("internal: document starts written to %s are not increasing", path);
    int32_t header[HN_SHARD_HEADER_INTS] = {HN_DOCS_MAGIC, HN_DOCS_VERSION, (int32_t)n,
                                            (int32_t)ntok};
    return write_with_header(path, header, starts, n * sizeof *starts);
}

/* map an opened file (fd, closed here) that starts with the 1024-byte header; what names
 * the kind of file in errors */
static int map_with_header(int fd, const char* path, const char* what, const unsigned char** map,
                           size_t* size) {
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < HN_SHARD_HEADER_INTS * 4) {
        close(fd);
        return hn_error("%s: too small to be %s (no 1024-byte header)", path, what);
    }
    *size = (size_t)st.st_size;
    void* m = mmap(NULL, *size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) return hn_error("cannot map %s", path);
    *map = m;
    return HN_OK;
}

/* map the shard's .mask if there is one and check it against the shard */
static int mask_open(HnShard* s) {
    char path[4096];
    if (hn_mask_path(path, sizeof path, s->path) != HN_OK) return HN_ERR;
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        if (errno == ENOENT) return HN_OK;
        return hn_error("cannot open loss mask %s: %s", path, strerror(errno));
    }
    if (map_with_header(fd, path, "a loss mask", &s->mask_map, &s->mask_map_size) != HN_OK)
        return HN_ERR;
    int32_t h[3];
    memcpy(h, s->mask_map, sizeof h);
    if (h[0] != HN_MASK_MAGIC) return hn_error("%s: not a loss mask (bad magic %d)", path, h[0]);
    if (h[1] != HN_MASK_VERSION)
        return hn_error("%s: unsupported loss mask version %d (1 is known)", path, h[1]);
    if (h[2] < 0 || (size_t)h[2] != s->ntok)
        return hn_error("%s: holds %d mask bytes but its shard %s has %zu tokens — stale mask?",
                        path, h[2], s->path, s->ntok);
    if (s->mask_map_size != HN_SHARD_HEADER_INTS * 4 + s->ntok)
        return hn_error("%s: header says %zu bytes but the file has %zu — truncated?", path,
                        s->ntok, s->mask_map_size - HN_SHARD_HEADER_INTS * 4);
    s->mask = s->mask_map + HN_SHARD_HEADER_INTS * 4;
    for (size_t i = 0; i < s->ntok; i++)
        if (s->mask[i] > 1)
            return hn_error("%s: mask byte %d at position %zu (only 0 and 1 are valid)", path,
                            s->mask[i], i);
    return HN_OK;
}

/* map the shard's .docs (required) and check it against the shard */
static int docs_open(HnShard* s) {
    char path[4096];
    if (hn_docs_path(path, sizeof path, s->path) != HN_OK) return HN_ERR;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return hn_error("%s has no document index %s (data.packing: documents needs one): "
                        "prepare the data again with this version of `hone prepare`",
                        s->path, path);
    if (map_with_header(fd, path, "a document index", &s->docs_map, &s->docs_map_size) != HN_OK)
        return HN_ERR;
    int32_t h[4];
    memcpy(h, s->docs_map, sizeof h);
    if (h[0] != HN_DOCS_MAGIC)
        return hn_error("%s: not a document index (bad magic %d)", path, h[0]);
    if (h[1] != HN_DOCS_VERSION)
        return hn_error("%s: unsupported document index version %d (1 is known)", path, h[1]);
    if (h[3] < 0 || (size_t)h[3] != s->ntok)
        return hn_error("%s: indexes %d tokens but its shard %s has %zu — stale index?", path, h[3],
                        s->path, s->ntok);
    if (h[2] < 0 || s->docs_map_size != HN_SHARD_HEADER_INTS * 4 + (size_t)h[2] * 4)
        return hn_error("%s: header says %d documents but the file has %zu bytes — truncated?",
                        path, h[2], s->docs_map_size);
    s->ndocs = (size_t)h[2];
    s->docs = (const uint32_t*)(s->docs_map + HN_SHARD_HEADER_INTS * 4);
    for (size_t i = 0; i < s->ndocs; i++)
        if (s->docs[i] >= s->ntok || (i && s->docs[i] <= s->docs[i - 1]))
            return hn_error("%s: document start %u (entry %zu) is out of order or past the "
                            "shard's %zu tokens",
                            path, s->docs[i], i, s->ntok);
    return HN_OK;
}

static int shard_open(HnShard* s, const char* path) {
    memset(s, 0, sizeof *s);
    s->path = strdup(path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return hn_error("cannot open shard %s", path);
    if (map_with_header(fd, path, "a token shard", &s->map, &s->map_size) != HN_OK) return HN_ERR;
    int32_t h[3];
    memcpy(h, s->map, sizeof h);
    if (h[0] != HN_SHARD_MAGIC)
        return hn_error("%s: not a token shard (bad magic %d) — make shards with `hone prepare`",
                        path, h[0]);
    if (h[1] != 1 && h[1] != 2)
        return hn_error("%s: unsupported shard version %d (1 and 2 are known)", path, h[1]);
    if (h[2] < 0) return hn_error("%s: negative token count", path);
    s->version = h[1];
    s->ntok = (size_t)h[2];
    size_t want = HN_SHARD_HEADER_INTS * 4 + s->ntok * (s->version == 1 ? 2 : 4);
    if (s->map_size != want)
        return hn_error(
            "%s: header says %zu tokens (%zu bytes) but the file has %zu bytes — truncated?", path,
            s->ntok, want, s->map_size);
    return mask_open(s);
}

static void shard_close(HnShard* s) {
    if (s->map) munmap((void*)s->map, s->map_size);
    if (s->mask_map) munmap((void*)s->mask_map, s->mask_map_size);
    if (s->docs_map) munmap((void*)s->docs_map, s->docs_map_size);
    free(s->path);
    memset(s, 0, sizeof *s);
}

static inline int shard_token(const HnShard* s, size_t i) {
    const unsigned char* p = s->map + HN_SHARD_HEADER_INTS * 4;
    if (s->version == 1) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        return v;
    }
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v > (uint32_t)INT32_MAX ? -1 : (int)v;
}

/* every id below the vocabulary, checked once at open (a pass over the mapped shard) so a
 * bad id stops a run before it starts, not hours in when its window comes up */
static int shard_check_ids(const HnShard* s, int vocab) {
    for (size_t i = 0; i < s->ntok; i++) {
        int id = shard_token(s, i);
        if (id < 0 || id >= vocab)
            return hn_error("%s: token %d at position %zu is out of range for a vocabulary of %d",
                            s->path, id, i, vocab);
    }
    return HN_OK;
}

static size_t shard_windows(const HnShard* s, int T) {
    return s->ntok ? (s->ntok - 1) / (size_t)T : 0;
}

static void shuffle_u32(HnRng* rng, uint32_t* a, size_t n) {
    for (size_t i = n; i > 1; i--) {
        size_t j = hn_rng_below(rng, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* set up the window order of shard_order[shard_pos] */
static int enter_shard(HnLoader* ld) {
    ld->rng_at_shard = ld->rng;
    const HnShard* s = &ld->shards[ld->shard_order[ld->shard_pos]];
    size_t n = shard_windows(s, ld->T);
    if (n > UINT32_MAX) return hn_error("%s: too many windows in one shard", s->path);
    uint32_t* order = realloc(ld->window_order, (n ? n : 1) * sizeof *order);
    if (!order) return hn_error("out of memory");
    ld->window_order = order;
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    if (ld->shuffle) shuffle_u32(&ld->rng, order, n);
    ld->nwindows = n;
    ld->window_pos = 0;
    return HN_OK;
}

static int start_epoch(HnLoader* ld) {
    for (int i = 0; i < ld->nshards; i++)
        ld->shard_order[i] = i;
    if (ld->shuffle)
        for (int i = ld->nshards; i > 1; i--) {
            int j = (int)hn_rng_below(&ld->rng, (uint64_t)i);
            int t = ld->shard_order[i - 1];
            ld->shard_order[i - 1] = ld->shard_order[j];
            ld->shard_order[j] = t;
        }
    ld->shard_pos = 0;
    return enter_shard(ld);
}

static int loader_open(HnLoader* ld, const char* pattern, int B, int T, int vocab, int shuffle,
                       uint64_t seed) {
    if (B < 1 || T < 1 || vocab < 1)
        return hn_error("internal: a loader of batch %d, sequence %d, vocabulary %d", B, T, vocab);
    ld->B = B;
    ld->T = T;
    ld->vocab = vocab;
    ld->shuffle = shuffle;
    hn_rng_seed(&ld->rng, seed);
    glob_t g;
    int rc = glob(pattern, 0, NULL, &g);
    if (rc != 0 || g.gl_pathc == 0) {
        if (rc == 0) globfree(&g);
        return hn_error("no data file matches '%s' — make shards with `hone prepare`", pattern);
    }
    ld->shards = calloc(g.gl_pathc, sizeof *ld->shards);
    ld->shard_order = calloc(g.gl_pathc, sizeof *ld->shard_order);
    if (!ld->shards || !ld->shard_order) {
        globfree(&g);
        return hn_error("out of memory");
    }
    for (size_t i = 0; i < g.gl_pathc; i++) {
        ld->nshards++;
        if (shard_open(&ld->shards[i], g.gl_pathv[i]) != HN_OK ||
            (vocab < INT_MAX && shard_check_ids(&ld->shards[i], vocab) != HN_OK)) {
            globfree(&g);
            return HN_ERR;
        }
    }
    globfree(&g);
    if (hn_loader_windows(ld) == 0)
        return hn_error(
            "'%s' has no sequence of %d tokens (seq %d + 1): the data is too small for data.seq",
            pattern, T + 1, T);
    return start_epoch(ld);
}

int hn_loader_open(HnLoader* ld, const char* pattern, int B, int T, int vocab, int shuffle,
                   uint64_t seed) {
    memset(ld, 0, sizeof *ld);
    if (loader_open(ld, pattern, B, T, vocab, shuffle, seed) == HN_OK) return HN_OK;
    hn_loader_close(ld); /* keeps the error message */
    return HN_ERR;
}

int hn_loader_set_vocab(HnLoader* ld, int vocab) {
    if (vocab < 1) return hn_error("internal: a vocabulary of %d", vocab);
    for (int i = 0; i < ld->nshards; i++)
        if (shard_check_ids(&ld->shards[i], vocab) != HN_OK) return HN_ERR;
    ld->vocab = vocab;
    return HN_OK;
}

void hn_loader_close(HnLoader* ld) {
    for (int i = 0; i < ld->nshards; i++)
        shard_close(&ld->shards[i]);
    free(ld->shards);
    free(ld->shard_order);
    free(ld->window_order);
    memset(ld, 0, sizeof *ld);
}

size_t hn_loader_windows(const HnLoader* ld) {
    size_t n = 0;
    for (int i = 0; i < ld->nshards; i++)
        n += shard_windows(&ld->shards[i], ld->T);
    return n;
}

int hn_loader_use_docs(HnLoader* ld) {
    for (int i = 0; i < ld->nshards; i++)
        if (!ld->shards[i].docs_map && docs_open(&ld->shards[i]) != HN_OK) return HN_ERR;
    ld->docs = 1;
    return HN_OK;
}

/* pos[t] for the window of T tokens at start: t minus the latest document start at or
 * before start + t, or minus the window's start when the document began before it */
static void window_positions(const HnShard* s, size_t start, int T, int* pos) {
    /* the first document start after the window's first token */
    size_t lo = 0, hi = s->ndocs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->docs[mid] <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t seg = start, next = lo;
    for (int t = 0; t < T; t++) {
        if (next < s->ndocs && s->docs[next] == start + (size_t)t) {
            seg = start + (size_t)t;
            next++;
        }
        pos[t] = (int)(start + (size_t)t - seg);
    }
}

int hn_loader_next(HnLoader* ld, int* tokens, int* targets) {
    return hn_loader_next_docs(ld, tokens, targets, NULL);
}

int hn_loader_next_docs(HnLoader* ld, int* tokens, int* targets, int* pos) {
    int T = ld->T;
    if (pos && !ld->docs) return hn_error("internal: positions asked of a loader without docs");
    for (int b = 0; b < ld->B; b++) {
        while (ld->window_pos >= ld->nwindows) {
            if (++ld->shard_pos >= ld->nshards) {
                ld->epoch++;
                if (start_epoch(ld) != HN_OK) return HN_ERR;
            } else if (enter_shard(ld) != HN_OK) {
                return HN_ERR;
            }
        }
        const HnShard* s = &ld->shards[ld->shard_order[ld->shard_pos]];
        size_t start = (size_t)ld->window_order[ld->window_pos++] * (size_t)T;
        for (int t = 0; t <= T; t++) {
            int id = shard_token(s, start + (size_t)t);
            if (id < 0 || id >= ld->vocab)
                return hn_error(
                    "%s: token %d at position %zu is out of range for a vocabulary of %d", s->path,
                    id, start + (size_t)t, ld->vocab);
            if (t < T) tokens[b * T + t] = id;
            if (t > 0)
                targets[b * T + t - 1] = s->mask && !s->mask[start + (size_t)t] ? HN_IGNORE : id;
        }
        if (pos) window_positions(s, start, T, pos + b * T);
    }
    return HN_OK;
}

void hn_loader_get_cursor(const HnLoader* ld, int* epoch, int* shard_pos, int64_t* window_pos,
                          HnRng* rng_at_shard, const int** shard_order) {
    *epoch = ld->epoch;
    *shard_pos = ld->shard_pos;
    *window_pos = (int64_t)ld->window_pos;
    *rng_at_shard = ld->rng_at_shard;
    *shard_order = ld->shard_order;
}

int hn_loader_set_cursor(HnLoader* ld, int epoch, int shard_pos, int64_t window_pos,
                         const HnRng* rng_at_shard, const int* shard_order, int nshards) {
    if (nshards != ld->nshards)
        return hn_error("the checkpoint's data cursor is for %d shards, but data.train matches %d",
                        nshards, ld->nshards);
    if (shard_pos < 0 || shard_pos >= nshards || epoch < 0 || window_pos < 0)
        return hn_error("the checkpoint's data cursor is out of range");
    /* everything is checked before the loader changes, so a refused cursor leaves it as it
     * was: the order must be a permutation, the position inside its shard */
    unsigned char* seen = calloc((size_t)nshards, 1);
    if (!seen) return hn_error("out of memory");
    int bad = 0;
    for (int i = 0; i < nshards && !bad; i++) {
        bad = shard_order[i] < 0 || shard_order[i] >= nshards || seen[shard_order[i]];
        if (!bad) seen[shard_order[i]] = 1;
    }
    free(seen);
    if (bad) return hn_error("the checkpoint's shard order is not an order of %d shards", nshards);
    if ((size_t)window_pos > shard_windows(&ld->shards[shard_order[shard_pos]], ld->T))
        return hn_error(
            "the checkpoint's data cursor is past the end of its shard (did the data change?)");
    for (int i = 0; i < nshards; i++)
        ld->shard_order[i] = shard_order[i];
    ld->epoch = epoch;
    ld->shard_pos = shard_pos;
    ld->rng = *rng_at_shard;
    if (enter_shard(ld) != HN_OK) return HN_ERR;
    ld->window_pos = (size_t)window_pos;
    return HN_OK;
}

void hn_loader_reset(HnLoader* ld) {
    ld->epoch = 0;
    start_epoch(ld);
}
