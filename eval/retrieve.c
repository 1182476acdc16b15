/*
 * A BM25 index in memory: passages' text in one arena, a vocabulary in an open-addressing
 * hash table, and postings (passage, count) per term laid out by term (CSR). See retrieve.h.
 */
#include "eval/retrieve.h"

#include <dirent.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/fs.h"

#define MAX_TEXT ((size_t)1 << 30)

typedef struct {
    int passage, tf;
} Posting;

struct HnRetriever {
    char* text; /* passages, each NUL-terminated */
    size_t text_n, text_cap;
    size_t* poff; /* (N) passage offsets into text */
    int* plen;    /* (N) terms in the passage */
    int N, pcap;
    double avgdl;
    /* vocabulary: open addressing, slots hold term id + 1 (0 = empty) */
    int* slots;
    size_t nslots;
    char* terms; /* term strings, NUL-terminated */
    size_t terms_n, terms_cap;
    size_t* toff; /* (V) term offsets into terms */
    int V;
    size_t vcap;
    size_t* post_off; /* (V + 1) CSR offsets */
    Posting* post;
};

typedef struct { /* (term, passage) pairs while indexing, in passage order */
    int* term;
    int* passage;
    size_t n, cap;
} Pairs;

static int grow(void** p, size_t* cap, size_t need, size_t elem) {
    if (need <= *cap) return HN_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void* q = realloc(*p, c * elem);
    if (!q) return hn_error("out of memory: the retrieval index");
    *p = q;
    *cap = c;
    return HN_OK;
}

static int pairs_push(Pairs* p, int term, int passage) {
    if (p->n == p->cap) {
        size_t c = p->cap ? 2 * p->cap : 4096;
        int* t = realloc(p->term, c * sizeof *t);
        if (t) p->term = t;
        int* q = t ? realloc(p->passage, c * sizeof *q) : NULL;
        if (!q) return hn_error("out of memory: the retrieval index");
        p->passage = q;
        p->cap = c;
    }
    p->term[p->n] = term;
    p->passage[p->n++] = passage;
    return HN_OK;
}

static int is_term_byte(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c >= 0x80;
}

static uint64_t fnv(const char* s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* the id of the lowered term s[0..n), or -1 if unknown (add = 0) / out of memory */
static int term_id(HnRetriever* r, const char* s, size_t n, int add) {
    char low[256];
    if (n >= sizeof low) n = sizeof low - 1; /* very long runs: their first 255 bytes */
    for (size_t i = 0; i < n; i++)
        low[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
    low[n] = '\0';
    if (add && 2 * ((size_t)r->V + 1) > r->nslots) { /* keep the load under one half */
        size_t ns = r->nslots ? 2 * r->nslots : 1024;
        int* s2 = calloc(ns, sizeof *s2);
        if (!s2) return hn_error("out of memory: the retrieval index"), -1;
        for (int v = 0; v < r->V; v++) {
            const char* t = r->terms + r->toff[v];
            size_t h = (size_t)fnv(t, strlen(t)) & (ns - 1);
            while (s2[h])
                h = (h + 1) & (ns - 1);
            s2[h] = v + 1;
        }
        free(r->slots);
        r->slots = s2;
        r->nslots = ns;
    }
    if (!r->nslots) return -1;
    size_t h = (size_t)fnv(low, n) & (r->nslots - 1);
    while (r->slots[h]) {
        int v = r->slots[h] - 1;
        if (strcmp(r->terms + r->toff[v], low) == 0) return v;
        h = (h + 1) & (r->nslots - 1);
    }
    if (!add) return -1;
    if (grow((void**)&r->toff, &r->vcap, (size_t)r->V + 1, sizeof *r->toff) != HN_OK ||
        grow((void**)&r->terms, &r->terms_cap, r->terms_n + n + 1, 1) != HN_OK)
        return -1;
    r->toff[r->V] = r->terms_n;
    memcpy(r->terms + r->terms_n, low, n + 1);
    r->terms_n += n + 1;
    r->slots[h] = r->V + 1;
    return r->V++;
}

/* close the passage being built (text since start) if it has words */
static int end_passage(HnRetriever* r, size_t start, int words, int terms) {
    if (!words) return HN_OK;
    r->text[r->text_n - 1] = '\0'; /* the space after the last word */
    if (r->N == r->pcap) {         /* the two per-passage arrays grow together */
        int c = r->pcap ? 2 * r->pcap : 1024;
        size_t* o = realloc(r->poff, (size_t)c * sizeof *o);
        if (o) r->poff = o;
        int* l = o ? realloc(r->plen, (size_t)c * sizeof *l) : NULL;
        if (!l) return hn_error("out of memory: the retrieval index");
        r->plen = l;
        r->pcap = c;
    }
    r->poff[r->N] = start;
    r->plen[r->N] = terms;
    r->N++;
    return HN_OK;
}

static int index_text(HnRetriever* r, Pairs* pairs, const char* s, size_t n, int W) {
    size_t i = 0, start = r->text_n;
    int words = 0, terms = 0;
    while (i < n) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                         s[i] == '\f' || s[i] == '\v'))
            i++;
        if (i == n) break;
        size_t w0 = i;
        while (i < n && !(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r' ||
                          s[i] == '\f' || s[i] == '\v'))
            i++;
        if (words == W) {
            if (end_passage(r, start, words, terms) != HN_OK) return HN_ERR;
            start = r->text_n, words = 0, terms = 0;
        }
        if (grow((void**)&r->text, &r->text_cap, r->text_n + (i - w0) + 1, 1) != HN_OK)
            return HN_ERR;
        memcpy(r->text + r->text_n, s + w0, i - w0);
        r->text_n += i - w0;
        r->text[r->text_n++] = ' ';
        words++;
        for (size_t j = w0; j < i;) { /* the word's terms */
            while (j < i && !is_term_byte((unsigned char)s[j]))
                j++;
            size_t t0 = j;
            while (j < i && is_term_byte((unsigned char)s[j]))
                j++;
            if (j == t0) continue;
            int id = term_id(r, s + t0, j - t0, 1);
            if (id < 0) return HN_ERR;
            if (pairs_push(pairs, id, r->N) != HN_OK) return HN_ERR;
            terms++;
        }
    }
    return end_passage(r, start, words, terms);
}

typedef struct {
    char** path;
    size_t n, cap;
} Paths;

static int walk(const char* dir, Paths* out, int depth) {
    if (depth > 16) return hn_error("%s: folders nested deeper than 16", dir);
    DIR* d = opendir(dir);
    if (!d) return hn_error("cannot read the folder %s", dir);
    int rc = HN_OK;
    struct dirent* e;
    while (rc == HN_OK && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) {
            rc = hn_error("%s/%s: path too long", dir, e->d_name);
            break;
        }
        struct stat st;
        if (stat(path, &st) != 0) continue; /* a dangling link */
        if (S_ISDIR(st.st_mode)) {
            rc = walk(path, out, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            rc = grow((void**)&out->path, &out->cap, out->n + 1, sizeof *out->path);
            if (rc == HN_OK && !(out->path[out->n++] = strdup(path)))
                rc = hn_error("out of memory");
        }
    }
    closedir(d);
    return rc;
}

static int cmp_str(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

static int build_postings(HnRetriever* r, const Pairs* pairs) {
    r->post_off = calloc((size_t)r->V + 1, sizeof *r->post_off);
    size_t* fill = calloc((size_t)r->V + 1, sizeof *fill);
    int* last = malloc(((size_t)r->V + 1) * sizeof *last);
    if (!r->post_off || !fill || !last) {
        free(fill), free(last);
        return hn_error("out of memory: the retrieval index");
    }
    /* distinct (term, passage) pairs per term: pairs come in passage order */
    for (int v = 0; v < r->V; v++)
        last[v] = -1;
    for (size_t i = 0; i < pairs->n; i++) {
        int t = pairs->term[i];
        if (last[t] != pairs->passage[i]) r->post_off[t + 1]++, last[t] = pairs->passage[i];
    }
    for (int v = 0; v < r->V; v++)
        r->post_off[v + 1] += r->post_off[v];
    r->post = malloc((r->post_off[r->V] + 1) * sizeof *r->post);
    if (!r->post) {
        free(fill), free(last);
        return hn_error("out of memory: the retrieval index");
    }
    for (int v = 0; v < r->V; v++)
        last[v] = -1;
    for (size_t i = 0; i < pairs->n; i++) {
        int t = pairs->term[i], p = pairs->passage[i];
        if (last[t] != p) {
            r->post[r->post_off[t] + fill[t]++] = (Posting){p, 0};
            last[t] = p;
        }
        r->post[r->post_off[t] + fill[t] - 1].tf++;
    }
    free(fill);
    free(last);
    return HN_OK;
}

HnRetriever* hn_retriever_open(const char* dir, int passage_words) {
    if (passage_words < 1 || passage_words > 100000) {
        hn_error("passage words must be 1..100000, not %d", passage_words);
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        hn_error("%s is not a folder", dir);
        return NULL;
    }
    HnRetriever* r = calloc(1, sizeof *r);
    Paths paths = {0};
    Pairs pairs = {0};
    int rc = r ? walk(dir, &paths, 0) : hn_error("out of memory");
    if (rc == HN_OK && paths.n) qsort(paths.path, paths.n, sizeof *paths.path, cmp_str);
    size_t total = 0;
    for (size_t i = 0; rc == HN_OK && i < paths.n; i++) {
        size_t n = 0;
        char* buf = hn_read_file(paths.path[i], &n);
        if (!buf) {
            rc = HN_ERR;
            break;
        }
        if ((total += n) > MAX_TEXT)
            rc = hn_error("%s holds more than 1 GiB of text: too much to index", dir);
        if (rc == HN_OK) rc = index_text(r, &pairs, buf, n, passage_words);
        free(buf);
    }
    if (rc == HN_OK && r->N == 0) rc = hn_error("%s has no text to retrieve from", dir);
    if (rc == HN_OK) rc = build_postings(r, &pairs);
    if (rc == HN_OK) {
        double sum = 0.0;
        for (int p = 0; p < r->N; p++)
            sum += r->plen[p];
        r->avgdl = sum / r->N;
    }
    for (size_t i = 0; i < paths.n; i++)
        free(paths.path[i]);
    free(paths.path);
    free(pairs.term);
    free(pairs.passage);
    if (rc != HN_OK) {
        hn_retriever_free(r);
        return NULL;
    }
    return r;
}

void hn_retriever_free(HnRetriever* r) {
    if (!r) return;
    free(r->text);
    free(r->poff);
    free(r->plen);
    free(r->slots);
    free(r->terms);
    free(r->toff);
    free(r->post_off);
    free(r->post);
    free(r);
}

int hn_retriever_passages(const HnRetriever* r) {
    return r->N;
}

const char* hn_retriever_passage(const HnRetriever* r, int i) {
    return r->text + r->poff[i];
}

int hn_retriever_search(const HnRetriever* r, const char* query, int k, int* ids, double* scores) {
    if (k < 1) return 0;
    double* score = calloc((size_t)r->N, sizeof *score);
    int* qt = NULL;
    size_t nq = 0, qcap = 0;
    if (!score) return hn_error("out of memory"), -1;
    size_t n = strlen(query);
    for (size_t j = 0; j < n;) { /* the query's distinct known terms */
        while (j < n && !is_term_byte((unsigned char)query[j]))
            j++;
        size_t t0 = j;
        while (j < n && is_term_byte((unsigned char)query[j]))
            j++;
        if (j == t0) continue;
        int id = term_id((HnRetriever*)r, query + t0, j - t0, 0);
        int seen = id < 0;
        for (size_t q = 0; !seen && q < nq; q++)
            seen = qt[q] == id;
        if (seen) continue;
        if (grow((void**)&qt, &qcap, nq + 1, sizeof *qt) != HN_OK) {
            free(score);
            return -1;
        }
        qt[nq++] = id;
    }
    const double k1 = HN_BM25_K1, b = HN_BM25_B;
    for (size_t q = 0; q < nq; q++) {
        int t = qt[q];
        double df = (double)(r->post_off[t + 1] - r->post_off[t]);
        double idf = log(1.0 + (r->N - df + 0.5) / (df + 0.5));
        for (size_t i = r->post_off[t]; i < r->post_off[t + 1]; i++) {
            const Posting* p = &r->post[i];
            double norm = k1 * (1.0 - b + b * r->plen[p->passage] / r->avgdl);
            score[p->passage] += idf * p->tf * (k1 + 1.0) / (p->tf + norm);
        }
    }
    int got = 0;
    for (int p = 0; p < r->N; p++) { /* insertion into the sorted top k */
        if (score[p] <= 0.0 || (got == k && score[p] <= scores[k - 1])) continue;
        int at = got < k ? got++ : k - 1;
        while (at > 0 && scores[at - 1] < score[p]) {
            scores[at] = scores[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        scores[at] = score[p];
        ids[at] = p;
    }
    free(score);
    free(qt);
    return got;
}
