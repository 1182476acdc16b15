/*
 * The real model against transformers: SmolLM2-135M-Instruct imported by hone from its Q4_1
 * GGUF gives the same logits as transformers loading the same GGUF
 * (scripts/make_smollm2_fixture.py -> tests/fixtures/smollm2/reference.safetensors), for
 * 5 prompts at every position, the same argmax everywhere, and the same 32 greedy tokens.
 * The model comes from scripts/get_model.sh (models/, git-ignored); without it the test
 * skips (exit 77), or fails when HONE_REQUIRE_ALL=1.
 *
 * Tolerance: both sides dequantize the same blocks exactly; the rest is float32 arithmetic
 * in different orders through 30 layers, so logits may differ by a few 1e-4. We require
 * max |hone - transformers| <= 5e-4 (logits are of order 10; we see about 5e-5).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/safetensors.h"
#include "eval/model.h"
#include "testing.h"
#include "train/import.h"

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static int* ints(HnSafetensors* st, const char* name, size_t* n) {
    const HnStTensor* t = hn_safetensors_find(st, name);
    if (!t) die();
    int* x = malloc(t->numel * sizeof(int));
    if (hn_safetensors_read_i32(st, name, x, t->numel) != HN_OK) die();
    *n = t->numel;
    return x;
}

int main(void) {
    char gguf[1024], ckpt[1100], fixture[1100], name[64];
    snprintf(gguf, sizeof gguf, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", hn_test_env("HONE_SOURCE_DIR"));
    if (access(gguf, R_OK) != 0) {
        const char* req = getenv("HONE_REQUIRE_ALL");
        fprintf(stderr, "%s: %s is missing (scripts/get_model.sh fetches it)\n",
                req && !strcmp(req, "1") ? "FAIL" : "SKIP", gguf);
        return req && !strcmp(req, "1") ? 1 : 77;
    }
    snprintf(fixture, sizeof fixture, "%s/smollm2/reference.safetensors", hn_test_env("HONE_FIXTURES"));
    HnSafetensors* st = hn_safetensors_open(fixture);
    if (!st) die();
    snprintf(ckpt, sizeof ckpt, "%s/smollm2_ref", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(ckpt) != HN_OK) die();
    snprintf(ckpt, sizeof ckpt, "%s/smollm2_ref/smollm2.h5", hn_test_env("HONE_TEST_TMP"));
    HnImportOptions io = {.bf16 = 0, .deflate = 0};
    if (hn_import_gguf(gguf, ckpt, &io) != HN_OK) die();
    HnEvalModel* m;
    HnTokenizer* tok;
    if (hn_eval_model_open(ckpt, 512, &m, &tok) != HN_OK) die();
    int Vp = m->config.Vp;

    double worst = 0;
    for (int p = 0; p < 5; p++) {
        size_t T, nsub, narg, ng;
        snprintf(name, sizeof name, "prompt.%d.ids", p);
        int* ids = ints(st, name, &T);
        snprintf(name, sizeof name, "prompt.%d.sub_ids", p);
        int* sub_ids = ints(st, name, &nsub);
        snprintf(name, sizeof name, "prompt.%d.argmax", p);
        int* argmax = ints(st, name, &narg);
        snprintf(name, sizeof name, "prompt.%d.greedy", p);
        int* greedy = ints(st, name, &ng);
        float* sub = malloc(nsub * sizeof(float));
        snprintf(name, sizeof name, "prompt.%d.sub", p);
        if (hn_safetensors_read_f32(st, name, sub, nsub) != HN_OK) die();
        size_t per = nsub / T;

        float* logits = malloc((T + ng) * (size_t)Vp * sizeof(float));
        if (hn_eval_forward_all(m, ids, (int)T, 0, logits) != HN_OK) die();
        double e = 0;
        int same_argmax = 1;
        for (size_t t = 0; t < T; t++) {
            const float* l = logits + t * Vp;
            for (size_t k = 0; k < per; k++) {
                double d = fabs((double)l[sub_ids[t * per + k]] - sub[t * per + k]);
                if (d > e) e = d;
            }
            int best = 0;
            for (int v = 1; v < m->config.V; v++)
                if (l[v] > l[best]) best = v;
            same_argmax &= best == argmax[t];
        }
        CHECK(same_argmax, "prompt %d: argmax differs from transformers at some position", p);
        CHECK(e <= 5e-4, "prompt %d: max |logit difference| %.3g", p, e);
        if (e > worst) worst = e;

        /* greedy, 32 tokens, through the KV cache one token at a time */
        int pos = (int)T, next = argmax[T - 1], same = 1;
        for (size_t i = 0; i < ng; i++) {
            same &= next == greedy[i];
            const float* l = hn_eval_forward(m, &next, 1, pos++);
            if (!l) die();
            int best = 0;
            for (int v = 1; v < m->config.V; v++)
                if (l[v] > l[best]) best = v;
            next = best;
        }
        CHECK(same, "prompt %d: greedy generation differs from transformers", p);
        printf("prompt %d: %zu ids, max |logit diff| %.2e over %zu logits per position, argmax %s, greedy %s\n", p,
               T, e, per, same_argmax ? "same" : "DIFFERENT", same ? "same" : "DIFFERENT");
        free(ids), free(sub_ids), free(argmax), free(greedy), free(sub), free(logits);
    }
    printf("worst |logit difference| vs transformers: %.2e (tolerance 5e-4)\n", worst);
    unlink(ckpt);
    hn_eval_model_free(m);
    hn_tokenizer_free(tok);
    hn_safetensors_close(st);
    return hn_test_finish("test_smollm2_reference");
}
