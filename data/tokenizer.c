/*
 * The byte and GPT-2 tokenizers (see tokenizer.h).
 *
 * GPT-2's files spell every token in a printable "byte alphabet" (each byte 0..255 stands for
 * one Unicode character). The loader translates every token back to its raw bytes once, so the
 * encoder works on raw bytes throughout: a merge is a pair of token ids, and BPE on a
 * pre-token starts from its single-byte tokens.
 *
 * Invalid UTF-8: the pre-tokenizer regex runs with PCRE2_MATCH_INVALID_UTF, under which no
 * invalid sequence can be part of a match. The input is therefore cut into the regex's matches
 * and the runs of bytes between them, and every maximal run of bytes no match covers (only
 * ever ill-formed UTF-8: the regex has a branch for every valid character) is a pre-token of its
 * own, which byte-level BPE encodes like any other. For valid UTF-8 this is exactly GPT-2; for
 * any bytes at all, decode(encode(x)) == x.
 *
 * Not here: special-token parsing (callers push the eos id themselves) and training BPE.
 */
#include "data/tokenizer.h"

#include "core/error.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>

/* GPT-2's pre-tokenizer (openai/gpt-2 encoder.py) */
static const char hn_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char hn_eos_text[] = "<|endoftext|>";

/* a file larger than this is not a tokenizer file; also keeps every count well inside int */
#define HN_TOKENIZER_FILE_MAX ((size_t)1 << 28)
#define HN_TOKENIZER_VOCAB_MAX (1 << 24)

enum { HN_TOK_BYTE, HN_TOK_GPT2 };

/* ---- hash maps: open addressing, linear probing, capacity a power of two ---- */

static uint64_t hash_bytes(const unsigned char* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a, then a final mix for the low bits */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    return h ? h : 1; /* 0 marks an empty slot */
}

static uint64_t hash_pair(int a, int b) {
    uint64_t h = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 31);
}

/* byte string -> (value, count); the keys live in one arena */
typedef struct {
    uint64_t hash;
    size_t off, len, value, count;
} StrSlot;

typedef struct {
    StrSlot* slots;
    size_t cap, n;
    unsigned char* keys;
    size_t keys_len, keys_cap;
} StrMap;

static void strmap_free(StrMap* m) {
    free(m->slots);
    free(m->keys);
    memset(m, 0, sizeof *m);
}

static StrSlot* strmap_find(const StrMap* m, const unsigned char* key, size_t len, uint64_t h) {
    if (!m->cap) return NULL;
    for (size_t i = h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        StrSlot* s = &m->slots[i];
        if (!s->hash) return NULL;
        if (s->hash == h && s->len == len && memcmp(m->keys + s->off, key, len) == 0) return s;
    }
}

static int strmap_grow(StrMap* m) {
    size_t cap = m->cap ? m->cap * 2 : 256;
    StrSlot* slots = calloc(cap, sizeof *slots);
    if (!slots) return hn_error("tokenizer: out of memory");
    for (size_t j = 0; j < m->cap; j++) {
        if (!m->slots[j].hash) continue;
        size_t i = m->slots[j].hash & (cap - 1);
        while (slots[i].hash)
            i = (i + 1) & (cap - 1);
        slots[i] = m->slots[j];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return HN_OK;
}

/* the key must not be present yet */
static int strmap_insert(StrMap* m, const unsigned char* key, size_t len, uint64_t h, size_t value,
                         size_t count) {
    if ((m->n + 1) * 2 > m->cap && strmap_grow(m) != HN_OK) return HN_ERR;
    if (m->keys_len + len > m->keys_cap) {
        size_t cap = m->keys_cap ? m->keys_cap : 4096;
        while (cap < m->keys_len + len)
            cap *= 2;
        unsigned char* keys = realloc(m->keys, cap);
        if (!keys) return hn_error("tokenizer: out of memory");
        m->keys = keys;
        m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_len, key, len);
    size_t i = h & (m->cap - 1);
    while (m->slots[i].hash)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (StrSlot){h, m->keys_len, len, value, count};
    m->keys_len += len;
    m->n++;
    return HN_OK;
}

/* merge (left id, right id) -> (rank, id of the merged token); left < 0 marks an empty slot */
typedef struct {
    int left, right, rank, id;
} PairSlot;

typedef struct {
    PairSlot* slots;
    size_t cap, n;
} PairMap;

static const PairSlot* pairmap_find(const PairMap* m, int left, int right) {
    for (size_t i = hash_pair(left, right) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const PairSlot* s = &m->slots[i];
        if (s->left < 0) return NULL;
        if (s->left == left && s->right == right) return s;
    }
}

/* the map is sized once for its final count, so it never grows */
static int pairmap_init(PairMap* m, size_t n) {
    m->cap = 16;
    while (m->cap < 2 * n)
        m->cap *= 2;
    m->slots = malloc(m->cap * sizeof *m->slots);
    if (!m->slots) return hn_error("tokenizer: out of memory");
    for (size_t i = 0; i < m->cap; i++)
        m->slots[i].left = -1;
    m->n = 0;
    return HN_OK;
}

static void pairmap_put(PairMap* m, PairSlot s) {
    size_t i = hash_pair(s.left, s.right) & (m->cap - 1);
    while (m->slots[i].left >= 0)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = s;
    m->n++;
}

/* ---- the tokenizer ---- */

struct HnTokenizer {
    int kind, vocab, eos;
    unsigned char* blob; /* every token's bytes, back to back */
    size_t* tok_off;     /* (vocab + 1) offsets into blob */
    int byte_id[256];    /* the single-byte tokens BPE starts from */
    PairMap merges;      /* gpt2 only */
    pcre2_code* re;      /* gpt2 only */
    char* src[2];        /* gpt2 only: the encoder.json and vocab.bpe bytes it was built from */
    size_t src_len[2];
};

int hn_tokens_push(HnTokens* t, int id) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 1024;
        int* ids = realloc(t->ids, cap * sizeof *ids);
        if (!ids) return hn_error("tokenizer: out of memory for %zu token ids", cap);
        t->ids = ids;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return HN_OK;
}

void hn_tokens_free(HnTokens* t) {
    free(t->ids);
    t->ids = NULL;
    t->n = t->cap = 0;
}

HnTokenizer* hn_tokenizer_byte(void) {
    HnTokenizer* tok = calloc(1, sizeof *tok);
    if (!tok) return hn_error("tokenizer: out of memory"), NULL;
    tok->kind = HN_TOK_BYTE;
    tok->vocab = 257;
    tok->eos = 256;
    tok->blob = malloc(256 + sizeof hn_eos_text - 1);
    tok->tok_off = malloc(258 * sizeof *tok->tok_off);
    if (!tok->blob || !tok->tok_off) {
        hn_tokenizer_free(tok);
        return hn_error("tokenizer: out of memory"), NULL;
    }
    for (int b = 0; b < 256; b++) {
        tok->blob[b] = (unsigned char)b;
        tok->tok_off[b] = (size_t)b;
        tok->byte_id[b] = b;
    }
    memcpy(tok->blob + 256, hn_eos_text, sizeof hn_eos_text - 1);
    tok->tok_off[256] = 256;
    tok->tok_off[257] = 256 + sizeof hn_eos_text - 1;
    return tok;
}

void hn_tokenizer_free(HnTokenizer* tok) {
    if (!tok) return;
    free(tok->src[0]);
    free(tok->src[1]);
    free(tok->blob);
    free(tok->tok_off);
    free(tok->merges.slots);
    pcre2_code_free(tok->re);
    free(tok);
}

int hn_tokenizer_source(const HnTokenizer* tok, const char** encoder_json, size_t* encoder_len,
                        const char** vocab_bpe, size_t* vocab_len) {
    if (tok->kind != HN_TOK_GPT2) return HN_ERR;
    *encoder_json = tok->src[0];
    *encoder_len = tok->src_len[0];
    *vocab_bpe = tok->src[1];
    *vocab_len = tok->src_len[1];
    return HN_OK;
}

const char* hn_tokenizer_name(const HnTokenizer* tok) {
    return tok->kind == HN_TOK_BYTE ? "byte" : "gpt2";
}

int hn_tokenizer_vocab_size(const HnTokenizer* tok) {
    return tok->vocab;
}

int hn_tokenizer_eos(const HnTokenizer* tok) {
    return tok->eos;
}

const char* hn_tokenizer_token_bytes(const HnTokenizer* tok, int id, size_t* len) {
    if (id < 0 || id >= tok->vocab) {
        hn_error("tokenizer: token id %d is out of range [0, %d)", id, tok->vocab);
        return NULL;
    }
    *len = tok->tok_off[id + 1] - tok->tok_off[id];
    return (const char*)tok->blob + tok->tok_off[id];
}

char* hn_tokenizer_decode(const HnTokenizer* tok, const int* ids, size_t n, size_t* len) {
    size_t total = 0, l;
    for (size_t i = 0; i < n; i++) {
        if (!hn_tokenizer_token_bytes(tok, ids[i], &l)) return NULL;
        total += l;
    }
    char* text = malloc(total + 1);
    if (!text) return hn_error("tokenizer: out of memory decoding %zu bytes", total), NULL;
    char* p = text;
    for (size_t i = 0; i < n; i++) {
        const char* b = hn_tokenizer_token_bytes(tok, ids[i], &l);
        memcpy(p, b, l);
        p += l;
    }
    *p = '\0';
    *len = total;
    return text;
}

/* ---- encoding ---- */

/* a candidate merge of the symbol at pos with the one after it */
typedef struct {
    int rank, pos;
} HeapItem;

/* per-call state: a cache of each distinct pre-token's ids, and BPE scratch space */
typedef struct {
    const HnTokenizer* tok;
    StrMap cache; /* pre-token bytes -> (offset, count) in cached */
    int* cached;
    size_t ncached, cached_cap;
    int *sym, *prev, *next; /* the symbol list of the pre-token being merged */
    HeapItem* heap;
    size_t cap; /* symbols the scratch arrays hold (the heap holds 3x) */
} Encoder;

static int heap_less(HeapItem a, HeapItem b) {
    return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos);
}

static void heap_push(HeapItem* h, size_t* n, HeapItem it) {
    size_t i = (*n)++;
    while (i > 0 && heap_less(it, h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static HeapItem heap_pop(HeapItem* h, size_t* n) {
    HeapItem top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && heap_less(h[c + 1], h[c])) c++;
        if (!heap_less(h[c], last)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static void push_candidate(Encoder* e, size_t* nheap, int pos) {
    if (pos < 0 || e->next[pos] < 0) return;
    const PairSlot* m = pairmap_find(&e->tok->merges, e->sym[pos], e->sym[e->next[pos]]);
    if (m) heap_push(e->heap, nheap, (HeapItem){m->rank, pos});
}

static int encoder_reserve(Encoder* e, size_t n) {
    if (n <= e->cap) return HN_OK;
    size_t cap = e->cap ? e->cap : 64;
    while (cap < n)
        cap *= 2;
    free(e->sym);
    free(e->prev);
    free(e->next);
    free(e->heap);
    e->sym = malloc(cap * sizeof *e->sym);
    e->prev = malloc(cap * sizeof *e->prev);
    e->next = malloc(cap * sizeof *e->next);
    e->heap = malloc(3 * cap * sizeof *e->heap);
    e->cap = cap;
    if (!e->sym || !e->prev || !e->next || !e->heap) {
        e->cap = 0;
        return hn_error("tokenizer: out of memory for a %zu-byte pre-token", n);
    }
    return HN_OK;
}

/*
 * BPE on one pre-token: repeatedly merge the adjacent pair of lowest rank, leftmost first.
 * Stale heap entries (a side already merged away) are skipped on pop; an entry is still valid
 * exactly when the pair now at its position has its rank, as ranks are unique per pair.
 * A heap keeps a long pre-token (a megabyte of letters or spaces) at O(n log n).
 */
static int bpe_append(Encoder* e, const unsigned char* p, size_t n, HnTokens* out) {
    if (n > (size_t)INT32_MAX)
        return hn_error("tokenizer: a pre-token of %zu bytes is too long", n);
    if (encoder_reserve(e, n) != HN_OK) return HN_ERR;
    for (size_t i = 0; i < n; i++) {
        e->sym[i] = e->tok->byte_id[p[i]];
        e->prev[i] = (int)i - 1;
        e->next[i] = i + 1 < n ? (int)i + 1 : -1;
    }
    size_t nheap = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_candidate(e, &nheap, (int)i);
    while (nheap) {
        HeapItem it = heap_pop(e->heap, &nheap);
        int a = it.pos;
        if (e->sym[a] < 0 || e->next[a] < 0) continue;
        int b = e->next[a];
        const PairSlot* m = pairmap_find(&e->tok->merges, e->sym[a], e->sym[b]);
        if (!m || m->rank != it.rank) continue;
        e->sym[a] = m->id;
        e->sym[b] = -1;
        e->next[a] = e->next[b];
        if (e->next[b] >= 0) e->prev[e->next[b]] = a;
        push_candidate(e, &nheap, e->prev[a]);
        push_candidate(e, &nheap, a);
    }
    for (int i = 0; i >= 0; i = e->next[i])
        if (hn_tokens_push(out, e->sym[i]) != HN_OK) return HN_ERR;
    return HN_OK;
}

static int encode_piece(Encoder* e, const unsigned char* p, size_t n, HnTokens* out) {
    if (n == 1) return hn_tokens_push(out, e->tok->byte_id[p[0]]);
    uint64_t h = hash_bytes(p, n);
    const StrSlot* hit = strmap_find(&e->cache, p, n, h);
    if (hit) {
        for (size_t i = 0; i < hit->count; i++)
            if (hn_tokens_push(out, e->cached[hit->value + i]) != HN_OK) return HN_ERR;
        return HN_OK;
    }
    size_t start = out->n;
    if (bpe_append(e, p, n, out) != HN_OK) return HN_ERR;
    size_t count = out->n - start;
    if (e->ncached + count > e->cached_cap) {
        size_t cap = e->cached_cap ? e->cached_cap : 4096;
        while (cap < e->ncached + count)
            cap *= 2;
        int* c = realloc(e->cached, cap * sizeof *c);
        if (!c) return hn_error("tokenizer: out of memory");
        e->cached = c;
        e->cached_cap = cap;
    }
    memcpy(e->cached + e->ncached, out->ids + start, count * sizeof *e->cached);
    if (strmap_insert(&e->cache, p, n, h, e->ncached, count) != HN_OK) return HN_ERR;
    e->ncached += count;
    return HN_OK;
}

static void encoder_free(Encoder* e) {
    strmap_free(&e->cache);
    free(e->cached);
    free(e->sym);
    free(e->prev);
    free(e->next);
    free(e->heap);
}

/* the regex's matches, and the runs of bytes between them (see the top of the file) */
static int encode_gpt2(const HnTokenizer* tok, const unsigned char* text, size_t len,
                       HnTokens* out) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    if (!md) return hn_error("tokenizer: out of memory");
    Encoder e = {.tok = tok};
    int rc = HN_OK;
    size_t pos = 0;
    while (pos < len && rc == HN_OK) {
        int m = pcre2_match(tok->re, text, len, pos, 0, md, NULL);
        size_t start = len, end = len;
        if (m >= 0) {
            const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
            start = ov[0];
            end = ov[1];
        } else if (m != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(m, msg, sizeof msg);
            rc = hn_error("tokenizer: pre-tokenizer failed at byte %zu: %s", pos, (char*)msg);
            break;
        }
        if (start > pos) rc = encode_piece(&e, text + pos, start - pos, out);
        if (rc == HN_OK && end > start) rc = encode_piece(&e, text + start, end - start, out);
        /* every branch of the pattern consumes a character, so this always advances */
        pos = end;
    }
    encoder_free(&e);
    pcre2_match_data_free(md);
    return rc;
}

int hn_tokenizer_encode(const HnTokenizer* tok, const char* text, size_t len, HnTokens* out) {
    if (tok->kind == HN_TOK_GPT2) return encode_gpt2(tok, (const unsigned char*)text, len, out);
    for (size_t i = 0; i < len; i++)
        if (hn_tokens_push(out, tok->byte_id[(unsigned char)text[i]]) != HN_OK) return HN_ERR;
    return HN_OK;
}

/* ---- loading GPT-2's files ---- */

/* the whole of a regular file, NUL-terminated; NULL with an error naming it */
static char* read_file(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return hn_error("%s: cannot open: %s", path, strerror(errno)), NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return hn_error("%s: not a regular file", path), NULL;
    }
    if (st.st_size == 0 || (uint64_t)st.st_size > HN_TOKENIZER_FILE_MAX) {
        fclose(f);
        return hn_error("%s: size %lld bytes is not that of a tokenizer file (1 to %zu)", path,
                        (long long)st.st_size, HN_TOKENIZER_FILE_MAX),
               NULL;
    }
    size_t n = (size_t)st.st_size;
    char* buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return hn_error("%s: out of memory reading %zu bytes", path, n), NULL;
    }
    size_t got = fread(buf, 1, n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return hn_error("%s: read %zu of %zu bytes", path, got, n), NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

/*
 * GPT-2's byte alphabet: the printable Latin-1 bytes stand for themselves and the other 68
 * bytes, in order, for U+0100 onwards. unicode_to_byte inverts it (-1: not in the alphabet).
 */
static void byte_alphabet(int unicode_to_byte[512]) {
    for (int c = 0; c < 512; c++)
        unicode_to_byte[c] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unicode_to_byte[printable ? b : 256 + extra++] = b;
    }
}

/* a token spelled in the byte alphabet -> its raw bytes in out (at least n bytes); -1 if some
 * character is outside the alphabet */
static long long alphabet_to_bytes(const int u2b[512], const char* s, size_t n,
                                   unsigned char* out) {
    const unsigned char* p = (const unsigned char*)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int cp = -1;
        if (p[i] < 0x80) {
            cp = p[i];
            i += 1;
        } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < n && (p[i + 1] & 0xC0) == 0x80) {
            cp = (p[i] & 0x1F) << 6 | (p[i + 1] & 0x3F);
            i += 2;
        }
        if (cp < 0 || cp >= 512 || u2b[cp] < 0) return -1;
        out[k++] = (unsigned char)u2b[cp];
    }
    return (long long)k;
}

/* the encoder's token bytes go to tok->blob/tok_off; map gets bytes -> id for the merges */
static int load_encoder(HnTokenizer* tok, const char* path, const char* text, size_t len,
                        const int u2b[512], StrMap* map) {
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int rc = HN_OK;
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += text[i] == '\n';
        rc = hn_error("%s:%zu: not valid JSON (at byte %zu)", path, line, at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        rc = hn_error("%s: expected a JSON object of token -> id", path);
        goto done;
    }
    int n = cJSON_GetArraySize(root);
    if (n < 257 || n > HN_TOKENIZER_VOCAB_MAX) {
        rc = hn_error("%s: %d tokens; a byte-level vocabulary has 257 to %d", path, n,
                      HN_TOKENIZER_VOCAB_MAX);
        goto done;
    }
    tok->vocab = n;
    tok->tok_off = calloc((size_t)n + 1, sizeof *tok->tok_off);
    size_t* tok_len = calloc((size_t)n, sizeof *tok_len);
    tok->blob = malloc(len); /* token bytes are never longer than their spelling */
    if (!tok->tok_off || !tok_len || !tok->blob) {
        free(tok_len);
        rc = hn_error("%s: out of memory", path);
        goto done;
    }
    /* each token's bytes go where the entry is; tok_off is rebuilt in id order below */
    unsigned char* bytes = tok->blob;
    size_t used = 0;
    const cJSON* it;
    cJSON_ArrayForEach(it, root) {
        size_t klen = strlen(it->string);
        long long nb = alphabet_to_bytes(u2b, it->string, klen, bytes + used);
        if (nb <= 0) {
            rc = hn_error("%s: token \"%.40s\" is not spelled in GPT-2's byte alphabet", path,
                          it->string);
            break;
        }
        double v = it->valuedouble;
        if (!cJSON_IsNumber(it)) {
            rc = hn_error("%s: token \"%.40s\" has an id that is not a number", path, it->string);
            break;
        }
        if (!(v >= 0 && v < n)) {
            rc = hn_error("%s: token \"%.40s\" has id %.0f, but %d tokens take the ids 0..%d "
                          "(is a token missing?)",
                          path, it->string, v, n, n - 1);
            break;
        }
        if (v != (double)(int)v) {
            rc = hn_error("%s: token \"%.40s\" has id %g, not an integer", path, it->string, v);
            break;
        }
        int id = (int)v;
        if (tok_len[id] || tok->tok_off[id]) {
            rc = hn_error("%s: id %d is given to two tokens", path, id);
            break;
        }
        uint64_t h = hash_bytes(bytes + used, (size_t)nb);
        if (strmap_find(map, bytes + used, (size_t)nb, h)) {
            rc = hn_error("%s: token \"%.40s\" appears twice", path, it->string);
            break;
        }
        if (strmap_insert(map, bytes + used, (size_t)nb, h, (size_t)id, 0) != HN_OK) {
            rc = HN_ERR;
            break;
        }
        tok->tok_off[id] = used + 1; /* +1: 0 marks an id not seen yet */
        tok_len[id] = (size_t)nb;
        used += (size_t)nb;
    }
    if (rc == HN_OK) {
        /* n distinct ids in [0, n): every id is present; lay the tokens out in id order */
        unsigned char* blob = malloc(used ? used : 1);
        if (!blob) {
            rc = hn_error("%s: out of memory", path);
        } else {
            size_t at = 0;
            for (int id = 0; id < n; id++) {
                memcpy(blob + at, tok->blob + tok->tok_off[id] - 1, tok_len[id]);
                tok->tok_off[id] = at;
                at += tok_len[id];
            }
            tok->tok_off[n] = at;
            free(tok->blob);
            tok->blob = blob;
        }
    }
    free(tok_len);
done:
    cJSON_Delete(root);
    return rc;
}

/* the id of a raw byte string in the encoder, -1 if absent */
static int encoder_id(const StrMap* map, const unsigned char* p, size_t n) {
    const StrSlot* s = strmap_find(map, p, n, hash_bytes(p, n));
    return s ? (int)s->value : -1;
}

/* the encoder's ids for the 256 bytes and for <|endoftext|> */
static int find_base_tokens(HnTokenizer* tok, const char* path, const StrMap* map) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        tok->byte_id[b] = encoder_id(map, &c, 1);
        if (tok->byte_id[b] < 0)
            return hn_error("%s: no token for byte 0x%02x; a byte-level BPE needs all 256", path,
                            b);
    }
    tok->eos = encoder_id(map, (const unsigned char*)hn_eos_text, sizeof hn_eos_text - 1);
    if (tok->eos < 0) return hn_error("%s: no \"%s\" token", path, hn_eos_text);
    return HN_OK;
}

/*
 * vocab.bpe: an optional "#version" first line, then one merge "left right" a line in rank
 * order (both sides in the byte alphabet). Each side and their concatenation must be tokens.
 */
static int load_merges(HnTokenizer* tok, const char* path, const char* src, size_t len,
                       const int u2b[512], const StrMap* map) {
    char* text = malloc(len + 1);
    if (!text) return hn_error("%s: out of memory", path);
    memcpy(text, src, len);
    text[len] = '\0';
    size_t nlines = 1;
    for (size_t i = 0; i < len; i++)
        nlines += text[i] == '\n';
    if (nlines > HN_TOKENIZER_VOCAB_MAX) {
        free(text);
        return hn_error("%s: %zu lines; a merges file has at most %d", path, nlines,
                        HN_TOKENIZER_VOCAB_MAX);
    }
    unsigned char* buf = malloc(len);
    int rc = buf ? pairmap_init(&tok->merges, nlines) : hn_error("%s: out of memory", path);
    size_t lineno = 0;
    for (char* line = text; rc == HN_OK && line < text + len;) {
        char* eol = memchr(line, '\n', (size_t)(text + len - line));
        if (!eol) eol = text + len;
        char* next = eol + 1;
        lineno++;
        if (eol > line && eol[-1] == '\r') eol--;
        *eol = '\0';
        if (lineno == 1 && strncmp(line, "#version", 8) == 0) {
            line = next;
            continue;
        }
        char* sp = memchr(line, ' ', (size_t)(eol - line));
        if (!sp || sp == line || sp + 1 == eol || memchr(sp + 1, ' ', (size_t)(eol - sp - 1)) ||
            strlen(line) != (size_t)(eol - line)) {
            rc =
                hn_error("%s:%zu: expected \"left right\", two tokens and one space", path, lineno);
            break;
        }
        long long na = alphabet_to_bytes(u2b, line, (size_t)(sp - line), buf);
        long long nb =
            na < 0 ? -1 : alphabet_to_bytes(u2b, sp + 1, (size_t)(eol - sp - 1), buf + na);
        if (na < 0 || nb < 0) {
            rc = hn_error("%s:%zu: a token not spelled in GPT-2's byte alphabet", path, lineno);
            break;
        }
        int a = encoder_id(map, buf, (size_t)na), b = encoder_id(map, buf + na, (size_t)nb);
        int ab = encoder_id(map, buf, (size_t)(na + nb));
        if (a < 0 || b < 0 || ab < 0) {
            rc = hn_error("%s:%zu: merge \"%.40s\" uses or makes a token the encoder lacks", path,
                          lineno, line);
            break;
        }
        if (ab == tok->eos) {
            rc = hn_error("%s:%zu: merge makes \"%s\", which text must never become", path, lineno,
                          hn_eos_text);
            break;
        }
        if (pairmap_find(&tok->merges, a, b)) {
            rc = hn_error("%s:%zu: merge \"%.40s\" is listed twice", path, lineno, line);
            break;
        }
        pairmap_put(&tok->merges, (PairSlot){a, b, (int)tok->merges.n, ab});
        line = next;
    }
    if (rc == HN_OK && tok->merges.n == 0) rc = hn_error("%s: no merges", path);
    free(buf);
    free(text);
    return rc;
}

HnTokenizer* hn_tokenizer_gpt2(const char* encoder_json_path, const char* vocab_bpe_path) {
    size_t enc_len, merges_len;
    char* enc = read_file(encoder_json_path, &enc_len);
    if (!enc) return NULL;
    char* merges = read_file(vocab_bpe_path, &merges_len);
    if (!merges) {
        free(enc);
        return NULL;
    }
    HnTokenizer* tok = hn_tokenizer_gpt2_from_memory(enc, enc_len, merges, merges_len,
                                                     encoder_json_path, vocab_bpe_path);
    free(enc);
    free(merges);
    return tok;
}

static char* copy_bytes(const char* p, size_t n) {
    char* c = malloc(n ? n : 1);
    if (c) memcpy(c, p, n);
    return c;
}

HnTokenizer* hn_tokenizer_gpt2_from_memory(const char* encoder_json, size_t encoder_len,
                                           const char* vocab_bpe, size_t vocab_len,
                                           const char* encoder_name, const char* vocab_name) {
    HnTokenizer* tok = calloc(1, sizeof *tok);
    if (!tok) return hn_error("tokenizer: out of memory"), NULL;
    tok->kind = HN_TOK_GPT2;
    int u2b[512];
    byte_alphabet(u2b);
    StrMap map = {0};
    tok->src[0] = copy_bytes(encoder_json, encoder_len);
    tok->src[1] = copy_bytes(vocab_bpe, vocab_len);
    tok->src_len[0] = encoder_len;
    tok->src_len[1] = vocab_len;
    int rc = tok->src[0] && tok->src[1] ? HN_OK : hn_error("tokenizer: out of memory");
    if (rc == HN_OK) rc = load_encoder(tok, encoder_name, encoder_json, encoder_len, u2b, &map);
    if (rc == HN_OK) rc = find_base_tokens(tok, encoder_name, &map);
    if (rc == HN_OK) rc = load_merges(tok, vocab_name, vocab_bpe, vocab_len, u2b, &map);
    strmap_free(&map);
    if (rc == HN_OK) {
        int err;
        PCRE2_SIZE at;
        tok->re = pcre2_compile((PCRE2_SPTR)hn_gpt2_pattern, PCRE2_ZERO_TERMINATED,
                                PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
        if (!tok->re) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(err, msg, sizeof msg);
            rc = hn_error("tokenizer: PCRE2 rejects the GPT-2 pattern: %s", (char*)msg);
        } else {
            /* without JIT (an unsupported platform) the interpreter gives the same matches */
            pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE);
        }
    }
    if (rc != HN_OK) {
        hn_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}
