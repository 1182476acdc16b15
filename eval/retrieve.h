/*
 * Retrieval for retrieval-augmented evaluation (`hone eval --retrieve DIR`): a BM25 index
 * over the text files of a folder, cut into passages of a few dozen words, and a top-k
 * search. BM25 as Robertson & Zaragoza (2009) give it, with Lucene's non-negative idf:
 *
 *   score(q, p) = sum over distinct query terms t of
 *                 idf(t) * f(t,p) (k1 + 1) / (f(t,p) + k1 (1 - b + b |p| / avgdl))
 *   idf(t)      = ln(1 + (N - n(t) + 0.5) / (n(t) + 0.5))
 *
 * N passages, n(t) of them holding t, f(t,p) the count of t in p, |p| its terms, avgdl
 * the mean |p|; k1 = 1.2, b = 0.75. Terms are maximal runs of ASCII letters, digits, '_'
 * and non-ASCII bytes, ASCII letters lowered. A passage's text is its words joined by
 * single spaces; passages never cross files. Not here: putting passages into prompts
 * (eval/tasks.c).
 */
#ifndef HONE_EVAL_RETRIEVE_H
#define HONE_EVAL_RETRIEVE_H

#include <stddef.h>

#define HN_BM25_K1 1.2
#define HN_BM25_B 0.75

typedef struct HnRetriever HnRetriever;

/* Index every regular file under dir (recursively, names starting with '.' left out, in
 * sorted path order), cut into passages of at most passage_words words. NULL and one error
 * on failure (no such folder, no text, too much: 1 GiB of text at most). */
HnRetriever* hn_retriever_open(const char* dir, int passage_words);
void hn_retriever_free(HnRetriever* r);

int hn_retriever_passages(const HnRetriever* r);
/* passage i's text (NUL-terminated, valid while r lives) */
const char* hn_retriever_passage(const HnRetriever* r, int i);

/* The k best passages for query, best first (ties: the earlier passage first), only those
 * with a positive score; ids and scores get up to k entries. Returns how many, or -1 and
 * one error (out of memory). */
int hn_retriever_search(const HnRetriever* r, const char* query, int k, int* ids, double* scores);

#endif
