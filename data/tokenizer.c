/*
 * The tokenizers (see tokenizer.h): bytes, and byte-level BPE loaded from GPT-2's files, from
 * a GGUF model's metadata or from a Hugging Face tokenizer.json. The three loaders differ
 * only in how they read; they hand every token and merge to one builder, and one encoder
 * serves them all.
 *
 * Model files spell every ordinary token in GPT-2's printable "byte alphabet" (each byte
 * 0..255 stands for one Unicode character); special tokens are spelled as their raw text.
 * The builder translates every token back to its raw bytes once, so the encoder works on raw
 * bytes throughout: a merge is a pair of token ids, and BPE on a pre-token starts from its
 * single-byte tokens.
 *
 * Pre-tokenizers: "gpt2" is GPT-2's regex on PCRE2. "smollm" first cuts every Unicode
 * numeric character (\p{N}: HF's Digits(individual_digits=True) splits on Rust's
 * char::is_numeric, which is the categories Nd, Nl and No) into a piece of its own, then runs
 * GPT-2's regex on each run between them as on a text of its own (so "\s+(?!\S)" sees the
 * end of the run, as in HF's Sequence pre-tokenizer).
 *
 * Invalid UTF-8: the regexes run with PCRE2_MATCH_INVALID_UTF, under which no invalid
 * sequence can be part of a match. The input is therefore cut into the regex's matches and
 * the runs of bytes between them, and every maximal run of bytes no match covers (only ever
 * ill-formed UTF-8: the regex has a branch for every valid character) is a pre-token of its
 * own, which byte-level BPE encodes like any other. For valid UTF-8 this is exactly GPT-2; for
 * any bytes at all, decode(encode(x)) == x.
 *
 * Special tokens: never made from text by hn_tokenizer_encode (no merge may produce one, and
 * the loaders refuse a vocabulary whose merges would); hn_tokenizer_encode_special cuts the
 * text at their exact strings first, leftmost and then longest, like HF's added vocabulary.
 *
 * Not here: training BPE, normalizers, and tokenizer models other than byte-level BPE.
 */
#include "data/tokenizer.h"

#include "core/error.h"
#include "data/gguf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <cjson/cJSON.h>
#include <pcre2.h>

/* GPT-2's pre-tokenizer (openai/gpt-2 encoder.py; HF's ByteLevel uses the same) */
static const char hn_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char hn_numeric_pattern[] = "\\p{N}";
static const char hn_eos_text[] = "<|endoftext|>";

/* a file larger than this is not a tokenizer file; also keeps every count well inside int */
#define HN_TOKENIZER_FILE_MAX ((size_t)1 << 28)
#define HN_TOKENIZER_VOCAB_MAX (1 << 24)

enum { HN_TOK_BYTE, HN_TOK_BPE };
enum { HN_PRE_GPT2, HN_PRE_SMOLLM };
static const char* const hn_pre_names[] = {"gpt2", "smollm"};

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
    int kind, pre;          /* HN_TOK_*, and for BPE HN_PRE_* */
    int vocab, eos, bos;    /* bos: -1 when the model starts texts with none */
    unsigned char* blob;    /* every token's bytes, back to back */
    size_t* tok_off;        /* (vocab + 1) offsets into blob */
    unsigned char* special; /* (vocab) 1 for a special token */
    int* specials;          /* the special ids, longest text first */
    int nspecial;
    unsigned char special_first[256]; /* 1 for a byte some special token starts with */
    int byte_id[256];       /* the single-byte tokens BPE starts from; -1: none (dropped) */
    PairMap merges;         /* BPE only */
    pcre2_code* re;         /* BPE only: GPT-2's regex */
    pcre2_code* numeric_re; /* "smollm" only */
    char* chat_template;    /* NULL if the model file had none */
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

/* the specials list from tok->special, longest text first (ties: lower id first) */
static int index_specials(HnTokenizer* tok) {
    int n = 0;
    for (int id = 0; id < tok->vocab; id++)
        n += tok->special[id];
    tok->specials = malloc((size_t)(n ? n : 1) * sizeof *tok->specials);
    if (!tok->specials) return hn_error("tokenizer: out of memory");
    tok->nspecial = 0;
    for (int id = 0; id < tok->vocab; id++) {
        if (!tok->special[id]) continue;
        size_t len = tok->tok_off[id + 1] - tok->tok_off[id];
        int at = tok->nspecial++;
        /* insertion sort: a model has a handful of special tokens */
        while (at > 0 &&
               tok->tok_off[tok->specials[at - 1] + 1] - tok->tok_off[tok->specials[at - 1]] <
                   len) {
            tok->specials[at] = tok->specials[at - 1];
            at--;
        }
        tok->specials[at] = id;
        tok->special_first[tok->blob[tok->tok_off[id]]] = 1;
    }
    return HN_OK;
}

HnTokenizer* hn_tokenizer_byte(void) {
    HnTokenizer* tok = calloc(1, sizeof *tok);
    if (!tok) return hn_error("tokenizer: out of memory"), NULL;
    tok->kind = HN_TOK_BYTE;
    tok->vocab = 257;
    tok->eos = 256;
    tok->bos = -1;
    tok->blob = malloc(256 + sizeof hn_eos_text - 1);
    tok->tok_off = malloc(258 * sizeof *tok->tok_off);
    tok->special = calloc(257, 1);
    if (!tok->blob || !tok->tok_off || !tok->special) {
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
    tok->special[256] = 1;
    if (index_specials(tok) != HN_OK) {
        hn_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

void hn_tokenizer_free(HnTokenizer* tok) {
    if (!tok) return;
    free(tok->blob);
    free(tok->tok_off);
    free(tok->special);
    free(tok->specials);
    free(tok->merges.slots);
    free(tok->chat_template);
    pcre2_code_free(tok->re);
    pcre2_code_free(tok->numeric_re);
    free(tok);
}

const char* hn_tokenizer_name(const HnTokenizer* tok) {
    return tok->kind == HN_TOK_BYTE ? "byte" : hn_pre_names[tok->pre];
}

int hn_tokenizer_vocab_size(const HnTokenizer* tok) {
    return tok->vocab;
}

int hn_tokenizer_eos(const HnTokenizer* tok) {
    return tok->eos;
}

int hn_tokenizer_doc_start(const HnTokenizer* tok) {
    const char* name = hn_tokenizer_name(tok);
    if (strcmp(name, "byte") == 0 || strcmp(name, "gpt2") == 0) return hn_tokenizer_eos(tok);
    return hn_tokenizer_bos(tok);
}

int hn_tokenizer_bos(const HnTokenizer* tok) {
    return tok->bos;
}

const char* hn_tokenizer_chat_template(const HnTokenizer* tok) {
    return tok->chat_template;
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

/* per-call state: the regex match data, a cache of each distinct pre-token's ids, and BPE
 * scratch space */
typedef struct {
    const HnTokenizer* tok;
    pcre2_match_data* md;
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
    /* a byte without a token is dropped, and its neighbours meet (as in HF tokenizers) */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (e->tok->byte_id[p[i]] < 0) continue;
        e->sym[k] = e->tok->byte_id[p[i]];
        e->prev[k] = (int)k - 1;
        e->next[k] = (int)k + 1;
        k++;
    }
    if (k == 0) return HN_OK;
    e->next[k - 1] = -1;
    size_t nheap = 0;
    for (size_t i = 0; i + 1 < k; i++)
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
    if (n == 1)
        return e->tok->byte_id[p[0]] < 0 ? HN_OK : hn_tokens_push(out, e->tok->byte_id[p[0]]);
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
    if (count) memcpy(e->cached + e->ncached, out->ids + start, count * sizeof *e->cached);
    if (strmap_insert(&e->cache, p, n, h, e->ncached, count) != HN_OK) return HN_ERR;
    e->ncached += count;
    return HN_OK;
}

static int encoder_init(Encoder* e, const HnTokenizer* tok) {
    memset(e, 0, sizeof *e);
    e->tok = tok;
    if (tok->kind != HN_TOK_BPE) return HN_OK;
    /* neither pattern has a capture group, so one match data serves both */
    e->md = pcre2_match_data_create_from_pattern(tok->re, NULL);
    return e->md ? HN_OK : hn_error("tokenizer: out of memory");
}

static void encoder_free(Encoder* e) {
    strmap_free(&e->cache);
    free(e->cached);
    free(e->sym);
    free(e->prev);
    free(e->next);
    free(e->heap);
    pcre2_match_data_free(e->md);
}

/* the next match of re in p[pos..n) as [*start, *end); both n if none; HN_ERR if PCRE2 fails */
static int next_match(Encoder* e, const pcre2_code* re, const unsigned char* p, size_t n,
                      size_t pos, size_t* start, size_t* end) {
    int m = pcre2_match(re, p, n, pos, 0, e->md, NULL);
    *start = *end = n;
    if (m >= 0) {
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(e->md);
        *start = ov[0];
        *end = ov[1];
    } else if (m != PCRE2_ERROR_NOMATCH) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(m, msg, sizeof msg);
        return hn_error("tokenizer: pre-tokenizer failed at byte %zu: %s", pos, (char*)msg);
    }
    return HN_OK;
}

/* GPT-2's regex on p[0..n) as a text of its own: its matches, and the runs of bytes between
 * them (see the top of the file) */
static int encode_regex(Encoder* e, const unsigned char* p, size_t n, HnTokens* out) {
    size_t pos = 0, start, end;
    while (pos < n) {
        if (next_match(e, e->tok->re, p, n, pos, &start, &end) != HN_OK) return HN_ERR;
        if (start > pos && encode_piece(e, p + pos, start - pos, out) != HN_OK) return HN_ERR;
        if (end > start && encode_piece(e, p + start, end - start, out) != HN_OK) return HN_ERR;
        /* every branch of the pattern consumes a character, so this always advances */
        pos = end;
    }
    return HN_OK;
}

/* text without special tokens, through the pre-tokenizer and BPE */
static int encode_text(Encoder* e, const unsigned char* p, size_t n, HnTokens* out) {
    if (e->tok->kind == HN_TOK_BYTE) {
        for (size_t i = 0; i < n; i++)
            if (hn_tokens_push(out, e->tok->byte_id[p[i]]) != HN_OK) return HN_ERR;
        return HN_OK;
    }
    if (e->tok->pre == HN_PRE_GPT2) return encode_regex(e, p, n, out);
    /* smollm: every numeric character alone, the runs between them through the regex */
    size_t pos = 0, start, end;
    while (pos < n) {
        if (next_match(e, e->tok->numeric_re, p, n, pos, &start, &end) != HN_OK) return HN_ERR;
        if (start > pos && encode_regex(e, p + pos, start - pos, out) != HN_OK) return HN_ERR;
        if (end > start && encode_piece(e, p + start, end - start, out) != HN_OK) return HN_ERR;
        pos = end;
    }
    return HN_OK;
}

int hn_tokenizer_encode(const HnTokenizer* tok, const char* text, size_t len, HnTokens* out) {
    Encoder e;
    int rc = encoder_init(&e, tok);
    if (rc == HN_OK) rc = encode_text(&e, (const unsigned char*)text, len, out);
    encoder_free(&e);
    return rc;
}

/* the id of the longest special token that p[0..n) starts with, -1 if none */
static int special_at(const HnTokenizer* tok, const unsigned char* p, size_t n) {
    if (!tok->special_first[p[0]]) return -1;
    for (int k = 0; k < tok->nspecial; k++) {
        int id = tok->specials[k];
        size_t len = tok->tok_off[id + 1] - tok->tok_off[id];
        if (len <= n && memcmp(p, tok->blob + tok->tok_off[id], len) == 0) return id;
    }
    return -1;
}

int hn_tokenizer_encode_special(const HnTokenizer* tok, const char* text, size_t len,
                                HnTokens* out) {
    const unsigned char* p = (const unsigned char*)text;
    Encoder e;
    int rc = encoder_init(&e, tok);
    size_t from = 0; /* the start of the text since the last special token */
    for (size_t pos = 0; rc == HN_OK && pos < len;) {
        int id = special_at(tok, p + pos, len - pos);
        if (id < 0) {
            pos++;
            continue;
        }
        rc = encode_text(&e, p + from, pos - from, out);
        if (rc == HN_OK) rc = hn_tokens_push(out, id);
        pos += tok->tok_off[id + 1] - tok->tok_off[id];
        from = pos;
    }
    if (rc == HN_OK) rc = encode_text(&e, p + from, len - from, out);
    encoder_free(&e);
    return rc;
}

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

/* ---- the byte alphabet and text checks ---- */

/*
 * GPT-2's byte alphabet: the printable Latin-1 bytes stand for themselves and the other 68
 * bytes, in order, for U+0100 onwards. u2b maps a code point to its byte (-1: not in the
 * alphabet), b2u a byte to its code point.
 */
static void byte_alphabet(int u2b[512], int b2u[256]) {
    for (int c = 0; c < 512; c++)
        u2b[c] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        b2u[b] = printable ? b : 256 + extra++;
        u2b[b2u[b]] = b;
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

/* valid UTF-8 without NUL bytes: what a special token or a chat template must be to travel
 * through tokenizer.json */
static int is_json_text(const unsigned char* p, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        if (c == 0) return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
        if (k == 0 || n - i <= k) return 0;
        uint32_t cp = c & (0x3F >> k);
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (p[i + j] & 0x3F);
        }
        static const uint32_t min[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += k + 1;
    }
    return 1;
}

/* at most 40 bytes of a string for a message */
#define SHOWN(n) ((int)((n) < 40 ? (n) : 40))

/* ---- building a BPE tokenizer: every loader hands its tokens and merges to this ---- */

typedef struct {
    HnTokenizer* tok;
    const char* name;   /* the source, for messages */
    StrMap map;         /* every token's bytes -> id; its key arena holds the bytes */
    size_t* key_off;    /* (vocab) where each id's bytes sit in map.keys; SIZE_MAX: not given */
    size_t* key_len;    /* (vocab) and how many there are */
    unsigned char* buf; /* scratch for decoding spellings */
    size_t buf_cap;
    int u2b[512], b2u[256];
} Builder;

static void builder_free(Builder* b) {
    strmap_free(&b->map);
    free(b->key_off);
    free(b->key_len);
    free(b->buf);
}

/* a new BPE tokenizer of vocab tokens, none given yet */
static int builder_init(Builder* b, const char* name, long long vocab) {
    memset(b, 0, sizeof *b);
    b->name = name;
    byte_alphabet(b->u2b, b->b2u);
    if (vocab < 257 || vocab > HN_TOKENIZER_VOCAB_MAX)
        return hn_error("%s: %lld tokens; a byte-level vocabulary has 257 to %d", name, vocab,
                        HN_TOKENIZER_VOCAB_MAX);
    HnTokenizer* tok = b->tok = calloc(1, sizeof *tok);
    if (!tok) return hn_error("%s: out of memory", name);
    tok->kind = HN_TOK_BPE;
    tok->vocab = (int)vocab;
    tok->eos = tok->bos = -1;
    tok->tok_off = calloc((size_t)vocab + 1, sizeof *tok->tok_off);
    tok->special = calloc((size_t)vocab, 1);
    b->key_off = malloc((size_t)vocab * sizeof *b->key_off);
    b->key_len = malloc((size_t)vocab * sizeof *b->key_len);
    if (!tok->tok_off || !tok->special || !b->key_off || !b->key_len)
        return hn_error("%s: out of memory", name);
    for (long long id = 0; id < vocab; id++)
        b->key_off[id] = SIZE_MAX;
    return HN_OK;
}

static int builder_scratch(Builder* b, size_t n) {
    if (n <= b->buf_cap) return HN_OK;
    unsigned char* buf = realloc(b->buf, n);
    if (!buf) return hn_error("%s: out of memory", b->name);
    b->buf = buf;
    b->buf_cap = n;
    return HN_OK;
}

/* token id, spelled s[0..n): in the byte alphabet, or its raw text if special */
static int builder_token(Builder* b, long long id, const char* s, size_t n, int special) {
    int vocab = b->tok->vocab;
    if (id < 0 || id >= vocab)
        return hn_error("%s: token \"%.*s\" has id %lld, but %d tokens take the ids 0..%d "
                        "(is a token missing?)",
                        b->name, SHOWN(n), s, id, vocab, vocab - 1);
    if (b->key_off[id] != SIZE_MAX)
        return hn_error("%s: id %lld is given to two tokens", b->name, id);
    const unsigned char* bytes = (const unsigned char*)s;
    size_t nb = n;
    if (special) {
        if (n == 0 || !is_json_text(bytes, n))
            return hn_error("%s: special token %lld \"%.*s\" is empty or not valid UTF-8", b->name,
                            id, SHOWN(n), s);
    } else {
        if (builder_scratch(b, n) != HN_OK) return HN_ERR;
        long long k = alphabet_to_bytes(b->u2b, s, n, b->buf);
        if (k <= 0)
            return hn_error("%s: token %lld \"%.*s\" is not spelled in GPT-2's byte alphabet",
                            b->name, id, SHOWN(n), s);
        bytes = b->buf;
        nb = (size_t)k;
    }
    uint64_t h = hash_bytes(bytes, nb);
    if (strmap_find(&b->map, bytes, nb, h))
        return hn_error("%s: token %lld \"%.*s\" appears twice", b->name, id, SHOWN(n), s);
    b->key_off[id] = b->map.keys_len;
    b->key_len[id] = nb;
    b->tok->special[id] = (unsigned char)special;
    return strmap_insert(&b->map, bytes, nb, h, (size_t)id, 0);
}

/* the id of a raw byte string, -1 if no token has it */
static int builder_id(const Builder* b, const unsigned char* p, size_t n) {
    const StrSlot* s = strmap_find(&b->map, p, n, hash_bytes(p, n));
    return s ? (int)s->value : -1;
}

/* after the last token: every id given, the tokens laid out in id order, the byte tokens */
static int builder_tokens_done(Builder* b) {
    HnTokenizer* tok = b->tok;
    for (int id = 0; id < tok->vocab; id++)
        if (b->key_off[id] == SIZE_MAX)
            return hn_error("%s: no token has id %d, but %d tokens take the ids 0..%d", b->name, id,
                            tok->vocab, tok->vocab - 1);
    tok->blob = malloc(b->map.keys_len ? b->map.keys_len : 1);
    if (!tok->blob) return hn_error("%s: out of memory", b->name);
    size_t at = 0;
    for (int id = 0; id < tok->vocab; id++) {
        memcpy(tok->blob + at, b->map.keys + b->key_off[id], b->key_len[id]);
        tok->tok_off[id] = at;
        at += b->key_len[id];
    }
    tok->tok_off[tok->vocab] = at;
    for (int c = 0; c < 256; c++) {
        unsigned char byte = (unsigned char)c;
        int id = builder_id(b, &byte, 1);
        tok->byte_id[c] = id >= 0 && !tok->special[id] ? id : -1;
        if (tok->byte_id[c] < 0 && c >= 0x20 && c <= 0x7E)
            return hn_error("%s: no token for byte 0x%02x; a byte-level BPE needs one for every "
                            "printable ASCII byte",
                            b->name, c);
    }
    return index_specials(tok);
}

static int builder_merges(Builder* b, long long n) {
    if (n < 1 || n > HN_TOKENIZER_VOCAB_MAX)
        return hn_error("%s: %lld merges; a byte-level BPE has 1 to %d", b->name, n,
                        HN_TOKENIZER_VOCAB_MAX);
    return pairmap_init(&b->tok->merges, (size_t)n);
}

/* the next merge in rank order, its two sides spelled in the byte alphabet: NULL, or what is
 * wrong with it (the caller says where it is) */
static const char* builder_merge(Builder* b, const char* l, size_t ln, const char* r, size_t rn) {
    if (ln == 0 || rn == 0) return "a side is empty";
    if (builder_scratch(b, ln + rn) != HN_OK) return "out of memory";
    long long na = alphabet_to_bytes(b->u2b, l, ln, b->buf);
    long long nb = na < 0 ? -1 : alphabet_to_bytes(b->u2b, r, rn, b->buf + na);
    if (na < 0 || nb < 0) return "a token not spelled in GPT-2's byte alphabet";
    int left = builder_id(b, b->buf, (size_t)na), right = builder_id(b, b->buf + na, (size_t)nb);
    int both = builder_id(b, b->buf, (size_t)(na + nb));
    if (left < 0 || right < 0 || both < 0) return "uses or makes a token the vocabulary lacks";
    const unsigned char* special = b->tok->special;
    if (special[left] || special[right] || special[both])
        return "uses or makes a special token, which text must never become";
    PairMap* m = &b->tok->merges;
    if (pairmap_find(m, left, right)) return "is listed twice";
    pairmap_put(m, (PairSlot){left, right, (int)m->n, both});
    return NULL;
}

/* a merge written "left right": the two sides, or what is wrong with it */
static const char* split_merge(const char* s, size_t n, size_t* left_len) {
    const char* sp = memchr(s, ' ', n);
    if (!sp || sp == s || sp + 1 == s + n || memchr(sp + 1, ' ', (size_t)(s + n - sp - 1)))
        return "expected \"left right\", two tokens and one space";
    *left_len = (size_t)(sp - s);
    return NULL;
}

static int compile_pattern(const char* pattern, pcre2_code** out) {
    int err;
    PCRE2_SIZE at;
    *out = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &at, NULL);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return hn_error("tokenizer: PCRE2 rejects the pattern %s: %s", pattern, (char*)msg);
    }
    /* without JIT (an unsupported platform) the interpreter gives the same matches */
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);
    return HN_OK;
}

/* the ids the model file names: eos must be a token; bos is -1 or a token */
static int builder_ids(Builder* b, long long eos, long long bos) {
    int vocab = b->tok->vocab;
    if (eos < 0 || eos >= vocab)
        return hn_error("%s: eos token id %lld is out of range [0, %d)", b->name, eos, vocab);
    if (bos < -1 || bos >= vocab)
        return hn_error("%s: bos token id %lld is out of range [0, %d)", b->name, bos, vocab);
    b->tok->eos = (int)eos;
    b->tok->bos = (int)bos;
    return HN_OK;
}

/* the finished tokenizer with its pre-tokenizer (NULL with the error if rc failed); frees
 * the builder */
static HnTokenizer* builder_done(Builder* b, int rc, int pre) {
    HnTokenizer* tok = b->tok;
    builder_free(b);
    if (rc == HN_OK) {
        tok->pre = pre;
        rc = compile_pattern(hn_gpt2_pattern, &tok->re);
        if (rc == HN_OK && pre == HN_PRE_SMOLLM)
            rc = compile_pattern(hn_numeric_pattern, &tok->numeric_re);
    }
    if (rc != HN_OK) {
        hn_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* a pre-tokenizer's name as GGUF's tokenizer.ggml.pre spells it ("gpt-2" is llama.cpp's
 * spelling of GPT-2's) */
static int pre_by_name(const char* source, const char* s, size_t n, int* pre) {
    if (n == 4 && memcmp(s, "gpt2", 4) == 0)
        *pre = HN_PRE_GPT2;
    else if (n == 5 && memcmp(s, "gpt-2", 5) == 0)
        *pre = HN_PRE_GPT2;
    else if (n == 6 && memcmp(s, "smollm", 6) == 0)
        *pre = HN_PRE_SMOLLM;
    else
        return hn_error("%s: unknown pre-tokenizer \"%.*s\"; hone knows \"gpt2\" and \"smollm\"",
                        source, SHOWN(n), s);
    return HN_OK;
}

/* ---- GPT-2's files: encoder.json and vocab.bpe ---- */

/* an integer an id can be: 1 and *out, or 0 */
static int json_int(const cJSON* v, long long* out) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -1e15 && v->valuedouble <= 1e15)) return 0;
    *out = (long long)v->valuedouble;
    return v->valuedouble == (double)*out;
}

/* text as JSON, or NULL with an error naming the line where it stops being JSON */
static cJSON* parse_json(const char* name, const char* text, size_t len) {
    const char* end = NULL;
    cJSON* root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        size_t at = end ? (size_t)(end - text) : 0, line = 1;
        for (size_t i = 0; i < at && i < len; i++)
            line += text[i] == '\n';
        hn_error("%s:%zu: not valid JSON (at byte %zu)", name, line, at);
    }
    return root;
}

/* encoder.json: {token spelled in the byte alphabet: id}; "<|endoftext|>" is the special one */
static int load_encoder(Builder* b, const char* path, const char* text, size_t len) {
    memset(b, 0, sizeof *b);
    cJSON* root = parse_json(path, text, len);
    if (!root) return HN_ERR;
    int rc = cJSON_IsObject(root) ? builder_init(b, path, cJSON_GetArraySize(root))
                                  : hn_error("%s: expected a JSON object of token -> id", path);
    const cJSON* it;
    cJSON_ArrayForEach(it, root) {
        if (rc != HN_OK) break;
        long long id;
        if (!cJSON_IsNumber(it))
            rc = hn_error("%s: token \"%.40s\" has an id that is not a number", path, it->string);
        else if (!json_int(it, &id))
            rc = hn_error("%s: token \"%.40s\" has id %g, not an integer an id can be", path,
                          it->string, it->valuedouble);
        else
            rc = builder_token(b, id, it->string, strlen(it->string),
                               strcmp(it->string, hn_eos_text) == 0);
    }
    cJSON_Delete(root);
    if (rc == HN_OK) rc = builder_tokens_done(b);
    if (rc == HN_OK) {
        int eos = builder_id(b, (const unsigned char*)hn_eos_text, sizeof hn_eos_text - 1);
        rc = eos < 0 ? hn_error("%s: no \"%s\" token", path, hn_eos_text) : builder_ids(b, eos, -1);
    }
    return rc;
}

/* vocab.bpe: an optional "#version" first line, then one merge "left right" a line in rank
 * order */
static int load_merges(Builder* b, const char* path, const char* text, size_t len) {
    long long nlines = 1;
    for (size_t i = 0; i < len; i++)
        nlines += text[i] == '\n';
    if (builder_merges(b, nlines) != HN_OK) return HN_ERR;
    size_t lineno = 0;
    for (const char* line = text; line < text + len;) {
        const char* eol = memchr(line, '\n', (size_t)(text + len - line));
        if (!eol) eol = text + len;
        const char* next = eol + 1;
        lineno++;
        if (eol > line && eol[-1] == '\r') eol--;
        size_t n = (size_t)(eol - line), left;
        if (lineno == 1 && n >= 8 && memcmp(line, "#version", 8) == 0) {
            line = next;
            continue;
        }
        const char* problem = split_merge(line, n, &left);
        if (!problem) problem = builder_merge(b, line, left, line + left + 1, n - left - 1);
        if (problem)
            return hn_error("%s:%zu: merge \"%.*s\": %s", path, lineno, SHOWN(n), line, problem);
        line = next;
    }
    if (b->tok->merges.n == 0) return hn_error("%s: no merges", path);
    return HN_OK;
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

/* p[0..n) and a NUL */
static char* copy_text(const char* p, size_t n) {
    char* c = malloc(n + 1);
    if (c) {
        memcpy(c, p, n);
        c[n] = '\0';
    }
    return c;
}

HnTokenizer* hn_tokenizer_gpt2_from_memory(const char* encoder_json, size_t encoder_len,
                                           const char* vocab_bpe, size_t vocab_len,
                                           const char* encoder_name, const char* vocab_name) {
    Builder b;
    int rc = load_encoder(&b, encoder_name, encoder_json, encoder_len);
    if (rc == HN_OK) rc = load_merges(&b, vocab_name, vocab_bpe, vocab_len);
    return builder_done(&b, rc, HN_PRE_GPT2);
}

/* ---- GGUF metadata (llama.cpp's tokenizer.ggml.* keys) ---- */

/* an optional integer key: *out keeps its default when the key is absent */
static int gguf_opt_int(const HnGguf* g, const char* key, int64_t* out) {
    return hn_gguf_has(g, key) ? hn_gguf_get_int(g, key, out) : HN_OK;
}

/* an optional token id key must name a token */
static int gguf_opt_id(const HnGguf* g, const char* key, int vocab, int64_t* out) {
    if (gguf_opt_int(g, key, out) != HN_OK) return HN_ERR;
    if (*out < -1 || *out >= vocab)
        return hn_error("%s: %s %lld is out of range [0, %d)", hn_gguf_path(g), key,
                        (long long)*out, vocab);
    return HN_OK;
}

/* the model and pre-tokenizer, and the array lengths, before anything is allocated */
static int gguf_header(const HnGguf* g, int* pre, uint64_t* ntok, uint64_t* nmerge) {
    const char* name = hn_gguf_path(g);
    size_t n;
    const char* model = hn_gguf_get_str(g, "tokenizer.ggml.model", &n);
    if (!model) return HN_ERR;
    if (n != 4 || memcmp(model, "gpt2", 4) != 0)
        return hn_error("%s: tokenizer.ggml.model is \"%.*s\"; hone reads byte-level BPE "
                        "(\"gpt2\")",
                        name, SHOWN(n), model);
    const char* pre_name = hn_gguf_get_str(g, "tokenizer.ggml.pre", &n);
    if (!pre_name || pre_by_name(name, pre_name, n, pre) != HN_OK) return HN_ERR;
    HnGgufType et;
    uint64_t ntype;
    if (hn_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, ntok) != HN_OK) return HN_ERR;
    if (et != HN_GGUF_STRING) return hn_error("%s: tokenizer.ggml.tokens is not strings", name);
    if (hn_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &ntype) != HN_OK) return HN_ERR;
    if (ntype != *ntok)
        return hn_error("%s: tokenizer.ggml.token_type has %llu entries, tokenizer.ggml.tokens "
                        "%llu",
                        name, (unsigned long long)ntype, (unsigned long long)*ntok);
    if (hn_gguf_get_arr(g, "tokenizer.ggml.merges", &et, nmerge) != HN_OK) return HN_ERR;
    if (et != HN_GGUF_STRING) return hn_error("%s: tokenizer.ggml.merges is not strings", name);
    if (*ntok > HN_TOKENIZER_VOCAB_MAX || *nmerge > HN_TOKENIZER_VOCAB_MAX)
        return hn_error("%s: %llu tokens and %llu merges; a byte-level BPE has at most %d", name,
                        (unsigned long long)*ntok, (unsigned long long)*nmerge,
                        HN_TOKENIZER_VOCAB_MAX);
    return HN_OK;
}

/* tokens of type 1 (normal) are spelled in the byte alphabet, of type 3 (control) are the
 * special tokens' text */
static int gguf_tokens(Builder* b, const HnGguf* g, uint64_t ntok) {
    for (uint64_t i = 0; i < ntok; i++) {
        size_t n;
        int64_t type;
        const char* s = hn_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &n);
        if (!s || hn_gguf_arr_int(g, "tokenizer.ggml.token_type", i, &type) != HN_OK) return HN_ERR;
        if (type != 1 && type != 3)
            return hn_error("%s: token %llu \"%.*s\" has token_type %lld; hone reads normal (1) "
                            "and control (3) tokens",
                            b->name, (unsigned long long)i, SHOWN(n), s, (long long)type);
        if (builder_token(b, (long long)i, s, n, type == 3) != HN_OK) return HN_ERR;
    }
    return builder_tokens_done(b);
}

static int gguf_merges(Builder* b, const HnGguf* g, uint64_t nmerge) {
    if (builder_merges(b, (long long)nmerge) != HN_OK) return HN_ERR;
    for (uint64_t i = 0; i < nmerge; i++) {
        size_t n, left;
        const char* s = hn_gguf_arr_str(g, "tokenizer.ggml.merges", i, &n);
        if (!s) return HN_ERR;
        const char* problem = split_merge(s, n, &left);
        if (!problem) problem = builder_merge(b, s, left, s + left + 1, n - left - 1);
        if (problem)
            return hn_error("%s: tokenizer.ggml.merges[%llu] \"%.*s\": %s", b->name,
                            (unsigned long long)i, SHOWN(n), s, problem);
    }
    return HN_OK;
}

/* eos (required), bos (unless add_bos_token is false), unk and pad (checked only), and the
 * chat template */
static int gguf_specials(Builder* b, const HnGguf* g) {
    int vocab = b->tok->vocab;
    int64_t eos = -1, bos = -1, add_bos = 1, other = -1;
    if (hn_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos) != HN_OK ||
        gguf_opt_id(g, "tokenizer.ggml.bos_token_id", vocab, &bos) != HN_OK ||
        gguf_opt_int(g, "tokenizer.ggml.add_bos_token", &add_bos) != HN_OK ||
        gguf_opt_id(g, "tokenizer.ggml.unknown_token_id", vocab, &other) != HN_OK ||
        gguf_opt_id(g, "tokenizer.ggml.padding_token_id", vocab, &other) != HN_OK)
        return HN_ERR;
    if (builder_ids(b, eos, add_bos ? bos : -1) != HN_OK) return HN_ERR;
    if (!hn_gguf_has(g, "tokenizer.chat_template")) return HN_OK;
    size_t n;
    const char* t = hn_gguf_get_str(g, "tokenizer.chat_template", &n);
    if (!t) return HN_ERR;
    if (!is_json_text((const unsigned char*)t, n))
        return hn_error("%s: tokenizer.chat_template is not valid UTF-8 text", b->name);
    b->tok->chat_template = copy_text(t, n);
    return b->tok->chat_template ? HN_OK : hn_error("%s: out of memory", b->name);
}

HnTokenizer* hn_tokenizer_from_gguf(const HnGguf* g) {
    Builder b;
    memset(&b, 0, sizeof b);
    int pre = HN_PRE_GPT2;
    uint64_t ntok = 0, nmerge = 0;
    int rc = gguf_header(g, &pre, &ntok, &nmerge);
    if (rc == HN_OK) rc = builder_init(&b, hn_gguf_path(g), (long long)ntok);
    if (rc == HN_OK) rc = gguf_tokens(&b, g, ntok);
    if (rc == HN_OK) rc = gguf_merges(&b, g, nmerge);
    if (rc == HN_OK) rc = gguf_specials(&b, g);
    return builder_done(&b, rc, pre);
}

/* ---- Hugging Face tokenizer.json ----
 * The subset hone reads and writes: model BPE (vocab, merges as "a b" strings or [a, b]
 * pairs), added_tokens that are special, pre_tokenizer ByteLevel alone ("gpt2") or after
 * Digits(individual_digits=true) ("smollm"), decoder and post_processor ByteLevel or null, no
 * normalizer. HF has no place in tokenizer.json for eos, bos and the chat template (they live
 * in tokenizer_config.json), so hone keeps them in "model": {"hone": {...}}: HF ignores
 * unknown keys there, but refuses them at the top level. Without that object, eos is the
 * special "<|endoftext|>". */

static const cJSON* json_get(const cJSON* obj, const char* key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static int json_absent(const cJSON* v) {
    return !v || cJSON_IsNull(v);
}

/* key is absent, null, or false/""/0: an option hone does not implement is off */
static int json_off(const cJSON* obj, const char* key) {
    const cJSON* v = json_get(obj, key);
    return json_absent(v) || cJSON_IsFalse(v) || (cJSON_IsString(v) && !v->valuestring[0]) ||
           (cJSON_IsNumber(v) && v->valuedouble == 0);
}

static int json_is_type(const cJSON* v, const char* type) {
    const cJSON* t = json_get(v, "type");
    return cJSON_IsObject(v) && cJSON_IsString(t) && strcmp(t->valuestring, type) == 0;
}

static const char* json_type_name(const cJSON* v) {
    const cJSON* t = json_get(v, "type");
    return cJSON_IsString(t) ? t->valuestring : "?";
}

/* ByteLevel as GPT-2 has it: no prefix space, the regex on */
static int json_byte_level(const cJSON* v) {
    const cJSON* regex = json_get(v, "use_regex");
    return json_is_type(v, "ByteLevel") && json_off(v, "add_prefix_space") &&
           (json_absent(regex) || cJSON_IsTrue(regex));
}

static int json_pre(const char* name, const cJSON* root, int* pre) {
    const cJSON* p = json_get(root, "pre_tokenizer");
    if (json_byte_level(p)) {
        *pre = HN_PRE_GPT2;
        return HN_OK;
    }
    const cJSON* seq = json_get(p, "pretokenizers");
    if (json_is_type(p, "Sequence") && cJSON_GetArraySize(seq) == 2) {
        const cJSON* digits = cJSON_GetArrayItem(seq, 0);
        if (json_is_type(digits, "Digits") && cJSON_IsTrue(json_get(digits, "individual_digits")) &&
            json_byte_level(cJSON_GetArrayItem(seq, 1))) {
            *pre = HN_PRE_SMOLLM;
            return HN_OK;
        }
    }
    return hn_error("%s: pre_tokenizer %s is not one hone knows: ByteLevel(add_prefix_space="
                    "false), alone or after Digits(individual_digits=true)",
                    name, json_absent(p) ? "null" : json_type_name(p));
}

/* the parts around the model that would change the ids or the text: none, or ByteLevel */
static int json_frame(const char* name, const cJSON* root, const cJSON* model) {
    const cJSON* type = json_get(model, "type");
    if (!cJSON_IsObject(model) || !cJSON_IsString(type))
        return hn_error("%s: no \"model\" object with a \"type\"", name);
    if (strcmp(type->valuestring, "BPE") != 0)
        return hn_error("%s: model type \"%s\" is not supported; hone reads byte-level BPE", name,
                        type->valuestring);
    static const char* const off[] = {"dropout", "continuing_subword_prefix", "end_of_word_suffix",
                                      "byte_fallback", "ignore_merges"};
    for (size_t i = 0; i < sizeof off / sizeof *off; i++)
        if (!json_off(model, off[i]))
            return hn_error("%s: model.%s is set; hone's BPE does not implement it", name, off[i]);
    if (!json_absent(json_get(root, "normalizer")))
        return hn_error("%s: a normalizer (%s); hone's BPE has none", name,
                        json_type_name(json_get(root, "normalizer")));
    static const char* const level[] = {"decoder", "post_processor"};
    for (size_t i = 0; i < 2; i++) {
        const cJSON* v = json_get(root, level[i]);
        if (!json_absent(v) && !json_is_type(v, "ByteLevel"))
            return hn_error("%s: %s %s; hone reads ByteLevel or null", name, level[i],
                            json_type_name(v));
    }
    return HN_OK;
}

/* added_tokens: each {id, content, special: true}, none stripping or single-word */
static int json_added(const char* name, const cJSON* added, long long* max_id) {
    if (json_absent(added)) return HN_OK;
    if (!cJSON_IsArray(added)) return hn_error("%s: added_tokens is not an array", name);
    int i = 0;
    const cJSON* a;
    cJSON_ArrayForEach(a, added) {
        long long id;
        const cJSON* content = json_get(a, "content");
        if (!json_int(json_get(a, "id"), &id) || !cJSON_IsString(content))
            return hn_error("%s: added_tokens[%d] has no integer id and string content", name, i);
        if (!cJSON_IsTrue(json_get(a, "special")))
            return hn_error("%s: added token \"%.40s\" is not special; hone reads only special "
                            "added tokens",
                            name, content->valuestring);
        if (!json_off(a, "lstrip") || !json_off(a, "rstrip") || !json_off(a, "single_word"))
            return hn_error("%s: added token \"%.40s\" strips or matches single words; hone "
                            "matches the exact text",
                            name, content->valuestring);
        if (id > *max_id) *max_id = id;
        i++;
    }
    return HN_OK;
}

static int json_tokens(Builder* b, const cJSON* model, const cJSON* added) {
    const cJSON* vocab = json_get(model, "vocab");
    if (!cJSON_IsObject(vocab)) return hn_error("%s: model.vocab is not an object", b->name);
    long long max_id = -1, id = -1;
    const cJSON* v;
    cJSON_ArrayForEach(v, vocab) {
        if (!json_int(v, &id))
            return hn_error("%s: model.vocab: token \"%.40s\" has an id that is not an integer",
                            b->name, v->string);
        if (id > max_id) max_id = id;
    }
    if (json_added(b->name, added, &max_id) != HN_OK) return HN_ERR;
    if (builder_init(b, b->name, max_id + 1) != HN_OK) return HN_ERR;
    cJSON_ArrayForEach(v, added) {
        json_int(json_get(v, "id"), &id);
        const char* s = json_get(v, "content")->valuestring;
        if (builder_token(b, id, s, strlen(s), 1) != HN_OK) return HN_ERR;
    }
    /* HF lists the added tokens in the vocab too, under their ids */
    cJSON_ArrayForEach(v, vocab) {
        json_int(v, &id);
        if (id >= 0 && b->tok->special[id]) continue;
        if (builder_token(b, id, v->string, strlen(v->string), 0) != HN_OK) return HN_ERR;
    }
    return builder_tokens_done(b);
}

static int json_merges(Builder* b, const cJSON* model) {
    const cJSON* merges = json_get(model, "merges");
    if (!cJSON_IsArray(merges)) return hn_error("%s: model.merges is not an array", b->name);
    if (builder_merges(b, cJSON_GetArraySize(merges)) != HN_OK) return HN_ERR;
    int i = 0;
    const cJSON* m;
    cJSON_ArrayForEach(m, merges) {
        const char* problem = "expected \"left right\" or [left, right]";
        const char* shown = "";
        if (cJSON_IsString(m)) {
            size_t n = strlen(m->valuestring), left;
            shown = m->valuestring;
            problem = split_merge(shown, n, &left);
            if (!problem) problem = builder_merge(b, shown, left, shown + left + 1, n - left - 1);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            const char *l = m->child->valuestring, *r = m->child->next->valuestring;
            shown = l;
            problem = builder_merge(b, l, strlen(l), r, strlen(r));
        }
        if (problem)
            return hn_error("%s: model.merges[%d] \"%.40s\": %s", b->name, i, shown, problem);
        i++;
    }
    return HN_OK;
}

/* model.hone: {"eos": id, "bos": id or null, "chat_template": text or null} */
static int json_hone(Builder* b, const cJSON* model) {
    const cJSON* hone = json_get(model, "hone");
    long long eos = -1, bos = -1;
    if (json_absent(hone)) {
        eos = builder_id(b, (const unsigned char*)hn_eos_text, sizeof hn_eos_text - 1);
        if (eos < 0 || !b->tok->special[eos])
            return hn_error("%s: no eos: neither model.hone.eos nor a special \"%s\"", b->name,
                            hn_eos_text);
        return builder_ids(b, eos, -1);
    }
    const cJSON* jbos = json_get(hone, "bos");
    const cJSON* tmpl = json_get(hone, "chat_template");
    if (!cJSON_IsObject(hone) || !json_int(json_get(hone, "eos"), &eos) ||
        !(json_absent(jbos) || json_int(jbos, &bos)) ||
        !(json_absent(tmpl) || cJSON_IsString(tmpl)))
        return hn_error("%s: model.hone is not {\"eos\": id, \"bos\": id or null, "
                        "\"chat_template\": text or null}",
                        b->name);
    if (builder_ids(b, eos, bos) != HN_OK) return HN_ERR;
    if (cJSON_IsString(tmpl) &&
        !(b->tok->chat_template = copy_text(tmpl->valuestring, strlen(tmpl->valuestring))))
        return hn_error("%s: out of memory", b->name);
    return HN_OK;
}

HnTokenizer* hn_tokenizer_from_json(const char* json, size_t len, const char* name) {
    Builder b;
    memset(&b, 0, sizeof b);
    b.name = name;
    int pre = HN_PRE_GPT2, rc = HN_ERR;
    cJSON* root = parse_json(name, json, len);
    const cJSON* model = json_get(root, "model");
    if (root && !cJSON_IsObject(root))
        hn_error("%s: not a tokenizer.json object", name);
    else if (root)
        rc = json_frame(name, root, model);
    if (rc == HN_OK) rc = json_pre(name, root, &pre);
    if (rc == HN_OK) rc = json_tokens(&b, model, json_get(root, "added_tokens"));
    if (rc == HN_OK) rc = json_merges(&b, model);
    if (rc == HN_OK) rc = json_hone(&b, model);
    cJSON_Delete(root);
    return builder_done(&b, rc, pre);
}

/* ---- writing tokenizer.json ---- */

/* item added to obj under key (to an array if key is NULL); *ok drops to 0 if it is NULL */
static cJSON* json_put(cJSON* obj, const char* key, cJSON* item, int* ok) {
    if (!item) {
        *ok = 0;
        return NULL;
    }
    if (key ? cJSON_AddItemToObject(obj, key, item) : cJSON_AddItemToArray(obj, item)) return item;
    cJSON_Delete(item);
    *ok = 0;
    return NULL;
}

/* a token's bytes spelled in the byte alphabet, NUL-terminated, into out (2n + 1 bytes) */
static void spell(const int b2u[256], const unsigned char* p, size_t n, char* out) {
    for (size_t i = 0; i < n; i++) {
        int cp = b2u[p[i]];
        if (cp < 0x80) {
            *out++ = (char)cp;
        } else {
            *out++ = (char)(0xC0 | cp >> 6);
            *out++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    *out = '\0';
}

static cJSON* json_byte_level_new(int add_prefix_space, int* ok) {
    cJSON* v = cJSON_CreateObject();
    json_put(v, "type", cJSON_CreateString("ByteLevel"), ok);
    json_put(v, "add_prefix_space", cJSON_CreateBool(add_prefix_space), ok);
    json_put(v, "trim_offsets", cJSON_CreateTrue(), ok);
    json_put(v, "use_regex", cJSON_CreateTrue(), ok);
    return v;
}

static cJSON* json_pre_new(int pre, int* ok) {
    if (pre == HN_PRE_GPT2) return json_byte_level_new(0, ok);
    cJSON* seq = cJSON_CreateObject();
    json_put(seq, "type", cJSON_CreateString("Sequence"), ok);
    cJSON* list = json_put(seq, "pretokenizers", cJSON_CreateArray(), ok);
    cJSON* digits = json_put(list, NULL, cJSON_CreateObject(), ok);
    json_put(digits, "type", cJSON_CreateString("Digits"), ok);
    json_put(digits, "individual_digits", cJSON_CreateTrue(), ok);
    json_put(list, NULL, json_byte_level_new(0, ok), ok);
    return seq;
}

static cJSON* json_added_new(const HnTokenizer* tok, int* ok) {
    cJSON* added = cJSON_CreateArray();
    for (int id = 0; id < tok->vocab && *ok; id++) {
        if (!tok->special[id]) continue;
        size_t n = tok->tok_off[id + 1] - tok->tok_off[id];
        cJSON* a = json_put(added, NULL, cJSON_CreateObject(), ok);
        char* content = copy_text((const char*)tok->blob + tok->tok_off[id], n);
        json_put(a, "id", cJSON_CreateNumber(id), ok);
        json_put(a, "content", content ? cJSON_CreateString(content) : NULL, ok);
        free(content);
        static const char* const no[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (size_t i = 0; i < 4; i++)
            json_put(a, no[i], cJSON_CreateFalse(), ok);
        json_put(a, "special", cJSON_CreateTrue(), ok);
    }
    return added;
}

/* vocab in id order (specials under their text) and merges in rank order */
static void json_model_fill(const HnTokenizer* tok, cJSON* model, int* ok) {
    int u2b[512], b2u[256];
    byte_alphabet(u2b, b2u);
    size_t longest = 0;
    for (int id = 0; id < tok->vocab; id++)
        if (tok->tok_off[id + 1] - tok->tok_off[id] > longest)
            longest = tok->tok_off[id + 1] - tok->tok_off[id];
    char* buf = malloc(4 * longest + 2);
    PairSlot* byrank = malloc(tok->merges.n * sizeof *byrank);
    if (!buf || !byrank) *ok = 0;
    cJSON* vocab = json_put(model, "vocab", cJSON_CreateObject(), ok);
    for (int id = 0; id < tok->vocab && *ok; id++) {
        const unsigned char* p = tok->blob + tok->tok_off[id];
        size_t n = tok->tok_off[id + 1] - tok->tok_off[id];
        if (tok->special[id]) {
            memcpy(buf, p, n);
            buf[n] = '\0';
        } else {
            spell(b2u, p, n, buf);
        }
        json_put(vocab, buf, cJSON_CreateNumber(id), ok);
    }
    cJSON* merges = json_put(model, "merges", cJSON_CreateArray(), ok);
    for (size_t i = 0; i < tok->merges.cap && *ok; i++)
        if (tok->merges.slots[i].left >= 0)
            byrank[tok->merges.slots[i].rank] = tok->merges.slots[i];
    for (size_t r = 0; r < tok->merges.n && *ok; r++) {
        const PairSlot* m = &byrank[r];
        size_t nl = tok->tok_off[m->left + 1] - tok->tok_off[m->left];
        size_t nr = tok->tok_off[m->right + 1] - tok->tok_off[m->right];
        spell(b2u, tok->blob + tok->tok_off[m->left], nl, buf);
        size_t at = strlen(buf);
        buf[at] = ' ';
        spell(b2u, tok->blob + tok->tok_off[m->right], nr, buf + at + 1);
        json_put(merges, NULL, cJSON_CreateString(buf), ok);
    }
    free(buf);
    free(byrank);
}

char* hn_tokenizer_to_json(const HnTokenizer* tok) {
    if (tok->kind != HN_TOK_BPE)
        return hn_error("tokenizer: the %s tokenizer has no tokenizer.json form",
                        hn_tokenizer_name(tok)),
               NULL;
    int ok = 1;
    cJSON* root = cJSON_CreateObject();
    if (!root) return hn_error("tokenizer: out of memory"), NULL;
    json_put(root, "version", cJSON_CreateString("1.0"), &ok);
    json_put(root, "truncation", cJSON_CreateNull(), &ok);
    json_put(root, "padding", cJSON_CreateNull(), &ok);
    json_put(root, "added_tokens", json_added_new(tok, &ok), &ok);
    json_put(root, "normalizer", cJSON_CreateNull(), &ok);
    json_put(root, "pre_tokenizer", json_pre_new(tok->pre, &ok), &ok);
    json_put(root, "post_processor", cJSON_CreateNull(), &ok);
    json_put(root, "decoder", json_byte_level_new(1, &ok), &ok);
    cJSON* model = json_put(root, "model", cJSON_CreateObject(), &ok);
    json_put(model, "type", cJSON_CreateString("BPE"), &ok);
    static const char* const nulls[] = {"dropout", "unk_token", "continuing_subword_prefix",
                                        "end_of_word_suffix"};
    for (size_t i = 0; i < 4; i++)
        json_put(model, nulls[i], cJSON_CreateNull(), &ok);
    static const char* const no[] = {"fuse_unk", "byte_fallback", "ignore_merges"};
    for (size_t i = 0; i < 3; i++)
        json_put(model, no[i], cJSON_CreateFalse(), &ok);
    if (ok) json_model_fill(tok, model, &ok);
    cJSON* hone = json_put(model, "hone", cJSON_CreateObject(), &ok);
    json_put(hone, "eos", cJSON_CreateNumber(tok->eos), &ok);
    json_put(hone, "bos", tok->bos >= 0 ? cJSON_CreateNumber(tok->bos) : cJSON_CreateNull(), &ok);
    json_put(hone, "chat_template",
             tok->chat_template ? cJSON_CreateString(tok->chat_template) : cJSON_CreateNull(), &ok);
    char* text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text) hn_error("tokenizer: out of memory writing tokenizer.json");
    return text;
}
