/*
 * Hugging Face folders imported by hone give transformers' logits: tiny random GPT-2 (F16,
 * Conv1D weights transposed on import), Llama with an untied lm_head (F32, GQA) and Llama
 * tied (BF16), written by scripts/make_hf_fixtures.py with save_pretrained, together with
 * transformers' float32 logits for 32 ids at every position (tests/fixtures/hf/).
 * The tokenizer each folder carries comes along: hone's encoding of the reference sentence
 * equals HF tokenizers' ids.
 *
 * Tolerance: both sides compute in float32 from the same (F16/BF16-rounded) weights; the
 * differences are summation order and hone's tanh approximation inside GELU, so we require
 * max |hone - transformers| <= 1e-4 over all 32 x 300 logits (of order 1..10).
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

#define TOL 1e-4

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static void check_model(HnSafetensors* ref, const char* name, int has_tokenizer) {
    char src[1024], ckpt[1024], key[64];
    snprintf(src, sizeof src, "%s/hf/%s", hn_test_env("HONE_FIXTURES"), name);
    snprintf(ckpt, sizeof ckpt, "%s/import_hf", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(ckpt) != HN_OK) die();
    snprintf(ckpt, sizeof ckpt, "%s/import_hf/%s.h5", hn_test_env("HONE_TEST_TMP"), name);
    HnImportOptions io = {.bf16 = 0, .deflate = 0};
    CHECK(hn_import_hf(src, ckpt, &io) == HN_OK, "%s: import failed: %s", name, hn_error_message());

    HnEvalModel* m;
    HnTokenizer* tok;
    if (hn_eval_model_open(ckpt, 0, &m, &tok) != HN_OK) die();
    snprintf(key, sizeof key, "%s.ids", name);
    const HnStTensor* t = hn_safetensors_find(ref, key);
    if (!t) die();
    int T = (int)t->numel, V = m->config.V, Vp = m->config.Vp;
    int* ids = malloc((size_t)T * sizeof(int));
    float* want = malloc((size_t)T * V * sizeof(float));
    float* got = malloc((size_t)T * Vp * sizeof(float));
    if (hn_safetensors_read_i32(ref, key, ids, (size_t)T) != HN_OK) die();
    snprintf(key, sizeof key, "%s.logits", name);
    if (hn_safetensors_read_f32(ref, key, want, (size_t)T * V) != HN_OK) die();
    if (hn_eval_forward_all(m, ids, T, 0, got) != HN_OK) die();
    double worst = 0, scale = 0;
    for (int i = 0; i < T; i++)
        for (int v = 0; v < V; v++) {
            double d = fabs((double)got[(size_t)i * Vp + v] - want[(size_t)i * V + v]);
            if (!(d <= worst)) worst = d; /* a NaN becomes the worst */
            if (fabs(want[(size_t)i * V + v]) > scale) scale = fabs(want[(size_t)i * V + v]);
        }
    CHECK(worst <= TOL, "%s: max |logit difference| %.3g", name, worst);
    printf("%s: %d x %d logits (largest %.2f), max |hone - transformers| %.2e (tolerance %.0e)\n",
           name, T, V, scale, worst, TOL);

    CHECK((tok != NULL) == has_tokenizer, "%s: tokenizer %s", name, tok ? "present" : "missing");
    if (tok) {
        const char* text = hn_safetensors_meta(ref, "text");
        if (!text) die();
        HnTokens enc = {0};
        if (hn_tokenizer_encode(tok, text, strlen(text), &enc) != HN_OK) die();
        int same = enc.n <= (size_t)T;
        for (size_t i = 0; same && i < enc.n; i++)
            same = enc.ids[i] == ids[i];
        CHECK(same, "%s: hone's tokenizer encodes the reference text differently (%zu ids)", name,
              enc.n);
        hn_tokens_free(&enc);
    }
    free(ids), free(want), free(got);
    hn_eval_model_free(m);
    hn_tokenizer_free(tok);
    unlink(ckpt);
}

int main(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/hf/reference.safetensors", hn_test_env("HONE_FIXTURES"));
    HnSafetensors* ref = hn_safetensors_open(path);
    if (!ref) die();
    check_model(ref, "gpt2_tiny", 1);
    check_model(ref, "llama_tiny", 1);
    check_model(ref, "llama_tied", 0);
    hn_safetensors_close(ref);
    return hn_test_finish("test_import_hf");
}
