/*
 * BM25 retrieval (eval/retrieve.h) on a folder small enough to score by hand: passages cut
 * at 4 words, files in sorted path order, hidden files left out, terms lowered and split
 * at punctuation; the expected scores are the formula worked out from the counts below.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "eval/retrieve.h"
#include "testing.h"

static void put(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

int main(void) {
    const char* tmp = hn_test_env("HONE_TEST_TMP");
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/retrieve", tmp);
    mkdir(tmp, 0755);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/sub", dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/b.txt", dir);
    put(path, "Beta, beta!\n\n  zeta\n");
    snprintf(path, sizeof path, "%s/a.txt", dir);
    put(path, "alpha beta gamma\tdelta epsilon alpha");
    snprintf(path, sizeof path, "%s/sub/c.txt", dir);
    put(path, "gamma_ray x9 \xc3\xbc"
              "ber");
    snprintf(path, sizeof path, "%s/.hidden", dir);
    put(path, "alpha alpha alpha");

    HnRetriever* r = hn_retriever_open(dir, 4);
    CHECK(r != NULL, "open");
    if (!r) return hn_test_finish("test_retrieve");
    /* P0 "alpha beta gamma delta" (4 terms), P1 "epsilon alpha" (2), P2 "Beta, beta! zeta"
     * (3), P3 "gamma_ray x9 über" (3): N = 4, avgdl = 3 */
    CHECK(hn_retriever_passages(r) == 4, "%d passages", hn_retriever_passages(r));
    CHECK(strcmp(hn_retriever_passage(r, 0), "alpha beta gamma delta") == 0, "P0 '%s'",
          hn_retriever_passage(r, 0));
    CHECK(strcmp(hn_retriever_passage(r, 1), "epsilon alpha") == 0, "P1");
    CHECK(strcmp(hn_retriever_passage(r, 2), "Beta, beta! zeta") == 0, "P2 '%s'",
          hn_retriever_passage(r, 2));

    /* "BETA alpha? beta": terms beta (in P0, P2) and alpha (P0, P1), each idf ln 2;
     * tf part f (k1+1) / (f + k1 (1 - b + b dl/3)) */
    int ids[4];
    double sc[4];
    int n = hn_retriever_search(r, "BETA alpha? beta", 4, ids, sc);
    const double l2 = log(2.0);
    const double p0 = l2 * 2 * (2.2 / (1 + 1.2 * (0.25 + 0.75 * 4 / 3.0)));
    const double p1 = l2 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / 3.0));
    const double p2 = l2 * 2 * 2.2 / (2 + 1.2);
    CHECK(n == 3, "%d hits", n);
    CHECK(n == 3 && ids[0] == 0 && ids[1] == 2 && ids[2] == 1, "order %d %d %d", ids[0], ids[1],
          ids[2]);
    CHECK(n == 3 && hn_close(sc[0], p0, 1e-12, 0) && hn_close(sc[1], p2, 1e-12, 0) &&
              hn_close(sc[2], p1, 1e-12, 0),
          "scores %.12f %.12f %.12f, want %.12f %.12f %.12f", sc[0], sc[1], sc[2], p0, p2, p1);
    CHECK(hn_retriever_search(r, "beta alpha", 1, ids, sc) == 1 && ids[0] == 0, "top 1");
    /* gamma is its own term, not a part of gamma_ray; non-ASCII bytes are term bytes */
    CHECK(hn_retriever_search(r, "gamma", 4, ids, sc) == 1 && ids[0] == 0, "gamma");
    CHECK(hn_retriever_search(r,
                              "\xc3\xbc"
                              "ber",
                              4, ids, sc) == 1 &&
              ids[0] == 3,
          "über");
    CHECK(hn_retriever_search(r, "unknown words only", 4, ids, sc) == 0, "no hit");
    hn_retriever_free(r);

    snprintf(path, sizeof path, "%s/a.txt", dir);
    CHECK(hn_retriever_open(path, 4) == NULL, "a file is not a folder");
    snprintf(path, sizeof path, "%s/empty", tmp);
    mkdir(path, 0755);
    CHECK(hn_retriever_open(path, 4) == NULL, "an empty folder");
    CHECK(hn_retriever_open(dir, 0) == NULL, "0 words per passage");
    return hn_test_finish("test_retrieve");
}
