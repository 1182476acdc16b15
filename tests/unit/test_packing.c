/*
 * Packed documents (data.packing: documents): several documents share a window, but a token
 * attends to its own document only and positions restart at each document start.
 * The reference is the definition itself: every document run on its own. So
 *   - ops: attention with `pos` equals attention over each segment alone (forward, and the
 *     backward's dq, dk, dv; with grouped-query heads and with a prefix, which every segment
 *     sees); RoPE and the position embedding with `pos` equal the same ops on each segment
 *     at positions 0.. (bit for bit: the same table entries);
 *   - the model (GPT-2 and Llama): the logits of a packed window equal those of its
 *     documents run separately, and the loss gradient of the packed window equals the sum
 *     of the documents' gradients — so no document sees another, in either direction;
 *   - data: `hone prepare` writes a document index beside every shard, and the loader's
 *     positions restart exactly where a document's first token (the end-of-text id every
 *     document starts with) sits; a missing, truncated or stale index is one clear error.
 * Tolerances: float32 sums in another order: ops 2e-5 of (1e-6 + |reference|) on outputs,
 * 1e-4 on gradients; the model 2e-4 of (0.01 + |logit|), 1e-3 of (1e-4 + |gradient|).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/peft/peft.h"

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static void fill(float* x, size_t n, HnRng* rng, float s) {
    for (size_t i = 0; i < n; i++)
        x[i] = s * hn_rng_normal(rng);
}

static double max_rel(const float* a, const float* b, size_t n, double atol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + fabs((double)b[i]));
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst;
}

/* ---- ops ---- */

/* one sequence of T = 11 packed as documents [0,4) [4,5) [5,11); q (T,NH*HS), k, v (T,NKV*HS)
 * contiguous; P prefix rows shared by every document */
static void check_attention(int NH, int NKV, int P) {
    enum { T = 11, HS = 8 };
    const int starts[] = {0, 4, 5, T};
    const int nseg = 3;
    const int Q = NH * HS, KV = NKV * HS, L = P + T;
    HnRng rng;
    hn_rng_seed(&rng, 11 + NH + P);
    float *q = malloc(sizeof(float) * T * Q), *k = malloc(sizeof(float) * T * KV),
          *v = malloc(sizeof(float) * T * KV), *pk = malloc(sizeof(float) * (P + 1) * KV),
          *pv = malloc(sizeof(float) * (P + 1) * KV), *dout = malloc(sizeof(float) * T * Q);
    fill(q, (size_t)T * Q, &rng, 1.0f);
    fill(k, (size_t)T * KV, &rng, 1.0f);
    fill(v, (size_t)T * KV, &rng, 1.0f);
    fill(pk, (size_t)(P + 1) * KV, &rng, 1.0f);
    fill(pv, (size_t)(P + 1) * KV, &rng, 1.0f);
    fill(dout, (size_t)T * Q, &rng, 1.0f);
    int pos[T];
    for (int s = 0; s < nseg; s++)
        for (int t = starts[s]; t < starts[s + 1]; t++)
            pos[t] = t - starts[s];

    float *out = calloc((size_t)T * Q, sizeof(float)), *att = calloc((size_t)NH * T * L, 4);
    float *dq = calloc((size_t)T * Q, 4), *dk = calloc((size_t)T * KV, 4),
          *dv = calloc((size_t)T * KV, 4), *dpk = calloc((size_t)P * KV + 1, 4),
          *dpv = calloc((size_t)P * KV + 1, 4);
    hn_attention_prefix_forward(out, att, q, k, v, pk, pv, pos, KV, Q, KV, 1, T, P, NH, NKV, HS);
    hn_attention_prefix_backward(dq, dk, dv, P ? dpk : NULL, P ? dpv : NULL, dout, q, k, v, pk, pv,
                                 att, KV, Q, KV, 1, T, P, NH, NKV, HS);

    /* each document alone */
    float *ref_out = calloc((size_t)T * Q, 4), *ref_dq = calloc((size_t)T * Q, 4),
          *ref_dk = calloc((size_t)T * KV, 4), *ref_dv = calloc((size_t)T * KV, 4),
          *ref_dpk = calloc((size_t)P * KV + 1, 4), *ref_dpv = calloc((size_t)P * KV + 1, 4);
    int zeros_ok = 1;
    for (int s = 0; s < nseg; s++) {
        const int a = starts[s], n = starts[s + 1] - a, Ls = P + n;
        float* satt = calloc((size_t)NH * n * Ls, 4);
        hn_attention_prefix_forward(ref_out + (size_t)a * Q, satt, q + (size_t)a * Q,
                                    k + (size_t)a * KV, v + (size_t)a * KV, pk, pv, NULL, KV, Q, KV,
                                    1, n, P, NH, NKV, HS);
        hn_attention_prefix_backward(
            ref_dq + (size_t)a * Q, ref_dk + (size_t)a * KV, ref_dv + (size_t)a * KV,
            P ? ref_dpk : NULL, P ? ref_dpv : NULL, dout + (size_t)a * Q, q + (size_t)a * Q,
            k + (size_t)a * KV, v + (size_t)a * KV, pk, pv, satt, KV, Q, KV, 1, n, P, NH, NKV, HS);
        free(satt);
        /* the packed probabilities of this document's queries on earlier documents' keys */
        for (int h = 0; h < NH; h++)
            for (int t = a; t < a + n; t++)
                for (int j = 0; j < a; j++)
                    zeros_ok &= att[((size_t)h * T + t) * L + P + j] == 0.0f;
    }
    char what[64];
    snprintf(what, sizeof what, "NH=%d NKV=%d P=%d", NH, NKV, P);
    CHECK(zeros_ok, "%s: a query gives probability to another document's key", what);
    double e = max_rel(out, ref_out, (size_t)T * Q, 1e-6);
    CHECK(e <= 2e-5, "%s: packed attention output differs from per-document (%.3g)", what, e);
    e = max_rel(dq, ref_dq, (size_t)T * Q, 1e-6);
    CHECK(e <= 1e-4, "%s: dq differs from per-document (%.3g)", what, e);
    e = max_rel(dk, ref_dk, (size_t)T * KV, 1e-6);
    CHECK(e <= 1e-4, "%s: dk differs from per-document (%.3g)", what, e);
    e = max_rel(dv, ref_dv, (size_t)T * KV, 1e-6);
    CHECK(e <= 1e-4, "%s: dv differs from per-document (%.3g)", what, e);
    if (P) {
        e = max_rel(dpk, ref_dpk, (size_t)P * KV, 1e-6);
        CHECK(e <= 1e-4, "%s: the prefix's dk differs from the documents' sum (%.3g)", what, e);
        e = max_rel(dpv, ref_dpv, (size_t)P * KV, 1e-6);
        CHECK(e <= 1e-4, "%s: the prefix's dv differs from the documents' sum (%.3g)", what, e);
    }
    /* pos = t is the unpacked attention, bit for bit */
    int ident[T];
    for (int t = 0; t < T; t++)
        ident[t] = t;
    float* out2 = calloc((size_t)T * Q, 4);
    hn_attention_prefix_forward(out2, att, q, k, v, pk, pv, ident, KV, Q, KV, 1, T, P, NH, NKV, HS);
    hn_attention_prefix_forward(out, att, q, k, v, pk, pv, NULL, KV, Q, KV, 1, T, P, NH, NKV, HS);
    CHECK(memcmp(out, out2, sizeof(float) * T * Q) == 0, "%s: pos = t differs from no pos", what);
    free(out2);
    free(q), free(k), free(v), free(pk), free(pv), free(dout), free(out), free(att);
    free(dq), free(dk), free(dv), free(dpk), free(dpv);
    free(ref_out), free(ref_dq), free(ref_dk), free(ref_dv), free(ref_dpk), free(ref_dpv);
}

static void check_positions(void) {
    enum { B = 2, T = 37, NH = 3, HS = 16, C = 8, V = 50 };
    /* sequence 0: documents at 0, 20 (long enough to cross RoPE's 16-position blocks);
     * sequence 1: one document that began before the window, then documents at 5 and 6 */
    int pos[B * T];
    const int starts0[] = {0, 20}, starts1[] = {0, 5, 6};
    for (int t = 0, s = 0; t < T; t++) {
        if (s < 2 && starts0[s] == t) s++;
        pos[t] = t - starts0[s - 1];
    }
    for (int t = 0, s = 0; t < T; t++) {
        if (s < 3 && starts1[s] == t) s++;
        pos[T + t] = t - starts1[s - 1];
    }
    HnRng rng;
    hn_rng_seed(&rng, 5);
    const int stride = NH * HS + 3;
    float *x = malloc(sizeof(float) * B * T * stride), *y = malloc(sizeof(float) * B * T * stride);
    fill(x, (size_t)B * T * stride, &rng, 1.0f);
    memcpy(y, x, sizeof(float) * B * T * stride);
    const int pos0 = 4;
    hn_rope_forward(x, pos, B, T, NH, HS, stride, pos0, 10000.0f);
    /* each segment alone, positions pos0.. */
    int same = 1;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T;) {
            int n = 1;
            while (t + n < T && pos[b * T + t + n] != 0)
                n++;
            float* seg = malloc(sizeof(float) * n * stride);
            memcpy(seg, y + ((size_t)b * T + t) * stride, sizeof(float) * n * stride);
            hn_rope_forward(seg, NULL, 1, n, NH, HS, stride, pos0, 10000.0f);
            same &= memcmp(seg, x + ((size_t)b * T + t) * stride, sizeof(float) * n * stride) == 0;
            free(seg);
            t += n;
        }
    CHECK(same, "RoPE with pos differs from RoPE on each document at positions 0..");
    hn_rope_backward(x, pos, B, T, NH, HS, stride, pos0, 10000.0f);
    CHECK(max_rel(x, y, (size_t)B * T * stride, 1.0) <= 1e-5,
          "RoPE's backward with pos does not undo its forward");

    /* GPT-2's position rows */
    int tokens[B * T];
    for (int i = 0; i < B * T; i++)
        tokens[i] = (int)hn_rng_below(&rng, V);
    float *wte = malloc(sizeof(float) * V * C), *wpe = malloc(sizeof(float) * T * C);
    fill(wte, (size_t)V * C, &rng, 1.0f);
    fill(wpe, (size_t)T * C, &rng, 1.0f);
    float *out = malloc(sizeof(float) * B * T * C), *dwpe = calloc((size_t)T * C, 4),
          *ref = calloc((size_t)T * C, 4);
    hn_encoder_forward(out, tokens, pos, wte, wpe, B, T, C);
    int ok = 1;
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            ok &= out[i * C + c] == wte[tokens[i] * C + c] + wpe[pos[i] * C + c];
    CHECK(ok, "the position embedding with pos takes row pos[b,t]");
    hn_encoder_backward(NULL, dwpe, out, tokens, pos, B, T, C);
    for (int i = 0; i < B * T; i++)
        for (int c = 0; c < C; c++)
            ref[pos[i] * C + c] += out[i * C + c];
    CHECK(max_rel(dwpe, ref, (size_t)T * C, 1e-6) <= 1e-6,
          "the position embedding's gradient with pos goes to row pos[b,t]");
    free(x), free(y), free(wte), free(wpe), free(out), free(dwpe), free(ref);
}

/* ---- the model ---- */

static void check_model(const char* name, const char* model_yaml, const char* peft_yaml) {
    enum { T = 24 };
    const int starts[] = {0, 7, 8, 19, T}, nseg = 4;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (hn_config_load_text(&cfg, model_yaml, "model") != HN_OK ||
        (peft_yaml && hn_config_load_text(&cfg, peft_yaml, "peft") != HN_OK))
        die();
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnPeft plan;
    HnModel m;
    if (hn_peft_plan(&plan, &cfg) != HN_OK || hn_model_create_peft(&m, &mc, &plan, 1, T) != HN_OK)
        die();
    hn_model_init(&m, 0.3f, 9);
    HnRng rng;
    hn_rng_seed(&rng, 21);
    for (int i = 0; i < m.params.n; i++) { /* add-ons away from their identity start */
        const HnParamRow* r = &m.params.rows[i];
        if (r->addon) fill(m.params.data + r->offset, r->numel, &rng, 0.3f);
    }
    const int V = m.cfg.V, Vp = m.cfg.Vp;
    int tokens[T], targets[T], pos[T];
    for (int t = 0; t < T; t++) {
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)V);
        targets[t] = t % 6 == 5 ? HN_IGNORE : (int)hn_rng_below(&rng, (uint64_t)V);
    }
    for (int s = 0; s < nseg; s++)
        for (int t = starts[s]; t < starts[s + 1]; t++)
            pos[t] = t - starts[s];
    size_t G = m.params.grad_numel;
    float* packed_logits = malloc(sizeof(float) * T * Vp);
    float* packed_grad = malloc(sizeof(float) * G);
    float* sum_grad = calloc(G, sizeof(float));
    float* ref_logits = malloc(sizeof(float) * T * Vp);

    hn_model_forward_docs(&m, tokens, pos, NULL, 1, T, 0.0f);
    for (int t = 0; t < T; t++)
        memcpy(packed_logits + (size_t)t * Vp, hn_model_logits(&m, 0, t), sizeof(float) * Vp);
    hn_model_zero_grad(&m);
    double packed_loss = hn_model_forward_docs(&m, tokens, pos, targets, 1, T, 1.0f);
    hn_model_backward(&m);
    memcpy(packed_grad, m.grads, sizeof(float) * G);

    double sum_loss = 0;
    for (int s = 0; s < nseg; s++) {
        const int a = starts[s], n = starts[s + 1] - a;
        hn_model_forward(&m, tokens + a, NULL, 1, n, 0.0f);
        for (int t = 0; t < n; t++)
            memcpy(ref_logits + (size_t)(a + t) * Vp, hn_model_logits(&m, 0, t),
                   sizeof(float) * Vp);
        hn_model_zero_grad(&m);
        sum_loss += hn_model_forward(&m, tokens + a, targets + a, 1, n, 1.0f);
        hn_model_backward(&m);
        for (size_t i = 0; i < G; i++)
            sum_grad[i] += m.grads[i];
    }
    double e = 0;
    for (int t = 0; t < T; t++) {
        double et = max_rel(packed_logits + (size_t)t * Vp, ref_logits + (size_t)t * Vp, V, 1e-2);
        if (et > e) e = et;
    }
    CHECK(e <= 2e-4, "%s: packed logits differ from each document alone (%.3g)", name, e);
    CHECK(hn_close(packed_loss, sum_loss, 1e-5, 1e-6), "%s: packed loss %.8g, documents' sum %.8g",
          name, packed_loss, sum_loss);
    double eg = max_rel(packed_grad, sum_grad, G, 1e-4);
    CHECK(eg <= 1e-3, "%s: packed gradient differs from the documents' sum (%.3g)", name, eg);
    /* and the packing matters: without pos the later documents see the earlier ones */
    hn_model_forward(&m, tokens, NULL, 1, T, 0.0f);
    double en = max_rel(hn_model_logits(&m, 0, T - 1), ref_logits + (size_t)(T - 1) * Vp, V, 1e-4);
    CHECK(en > 1e-2, "%s: the unpacked window gave the same last logits (the test is blind)", name);
    printf("%-24s logits error %.2g (tolerance 2e-4), gradient %.2g (1e-3), unpacked %.2g\n", name,
           e, eg, en);
    free(packed_logits), free(packed_grad), free(sum_grad), free(ref_logits);
    hn_model_free(&m);
}

/* ---- data ---- */

static char dir[1024];

static void write_text(const char* name, const char* text) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE* f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) die();
}

static void check_loader(void) {
    snprintf(dir, sizeof dir, "%s/packing", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(dir) != HN_OK) die();
    /* five documents of different lengths, the byte tokenizer: each starts with id 256 */
    const char* texts[] = {"alpha beta", "g", "the third document is longer than the others",
                           "four", "fifth and last"};
    char names[5][1200];
    const char* inputs[5];
    for (int i = 0; i < 5; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "doc%d.txt", i);
        write_text(nm, texts[i]);
        snprintf(names[i], sizeof names[i], "%s/%s", dir, nm);
        inputs[i] = names[i];
    }
    char out[1200];
    snprintf(out, sizeof out, "%s/shards", dir);
    HnPrepareOptions opt = {.inputs = inputs,
                            .ninputs = 5,
                            .out_dir = out,
                            .tokenizer = "byte",
                            .val_fraction = 0.0,
                            .shard_tokens = 1024,
                            .seed = 1};
    HnPrepareStats st;
    if (hn_prepare(&opt, &st) != HN_OK) die();
    char pat[1300], docs[1300];
    snprintf(pat, sizeof pat, "%s/train_000000.bin", out);
    snprintf(docs, sizeof docs, "%s/train_000000.docs", out);
    CHECK(access(docs, R_OK) == 0, "hone prepare wrote no document index beside its shard");

    enum { T = 9 };
    HnLoader ld;
    if (hn_loader_open(&ld, pat, 1, T, 257, 0, 0) != HN_OK) die();
    CHECK(hn_loader_use_docs(&ld) == HN_OK, "%s", hn_error_message());
    size_t nw = hn_loader_windows(&ld);
    int ok = 1, starts = 0;
    for (size_t w = 0; w < nw; w++) {
        int tok[T], tgt[T], pos[T];
        if (hn_loader_next_docs(&ld, tok, tgt, pos) != HN_OK) die();
        for (int t = 0; t < T; t++) {
            /* a document starts at its end-of-text id (no text holds byte 256) */
            int want = tok[t] == 256 ? 0 : t == 0 ? 0 : pos[t - 1] + 1;
            ok &= pos[t] == want;
            starts += tok[t] == 256;
        }
    }
    CHECK(ok, "the loader's positions do not restart exactly at document starts");
    CHECK(starts >= 4, "the windows hold %d document starts; the test needs several", starts);
    hn_loader_close(&ld);

    /* a damaged index is one clear error; the shard itself still loads without it */
    FILE* f = fopen(docs, "r+b");
    if (!f || ftruncate(fileno(f), 1024 + 6) != 0) die();
    fclose(f);
    if (hn_loader_open(&ld, pat, 1, T, 257, 0, 0) != HN_OK) die();
    CHECK(hn_loader_use_docs(&ld) == HN_ERR && strstr(hn_error_message(), "truncated"),
          "a truncated index: %s", hn_error_message());
    hn_loader_close(&ld);
    int32_t h[256] = {HN_DOCS_MAGIC, HN_DOCS_VERSION, 1, 12345}, zero = 0;
    f = fopen(docs, "wb");
    if (!f || fwrite(h, 4, 256, f) != 256 || fwrite(&zero, 4, 1, f) != 1 || fclose(f) != 0) die();
    if (hn_loader_open(&ld, pat, 1, T, 257, 0, 0) != HN_OK) die();
    CHECK(hn_loader_use_docs(&ld) == HN_ERR && strstr(hn_error_message(), "stale"),
          "an index for another shard: %s", hn_error_message());
    hn_loader_close(&ld);
    unlink(docs);
    if (hn_loader_open(&ld, pat, 1, T, 257, 0, 0) != HN_OK) die();
    CHECK(hn_loader_use_docs(&ld) == HN_ERR && strstr(hn_error_message(), "no document index"),
          "a missing index: %s", hn_error_message());
    int tok[T], tgt[T];
    CHECK(hn_loader_next(&ld, tok, tgt) == HN_OK, "the shard still loads as a stream");
    hn_loader_close(&ld);
}

int main(void) {
    check_attention(4, 4, 0);
    check_attention(4, 2, 0);
    check_attention(4, 1, 3);
    check_positions();
    check_model("gpt2", "model: {layers: 2, channels: 16, heads: 2, vocab: 40, context: 32}", NULL);
    check_model("llama",
                "model: {arch: llama, layers: 2, channels: 16, heads: 4, kv_heads: 2, ffn: 24, "
                "vocab: 40, context: 32, tied: false}",
                NULL);
    check_model("llama + prefix + lora",
                "model: {arch: llama, layers: 2, channels: 16, heads: 4, kv_heads: 2, ffn: 24, "
                "vocab: 40, context: 32}",
                "peft: [{lora: {rank: 2}}, {prefix: {length: 3}}]");
    check_model("gpt2 + prefix",
                "model: {layers: 2, channels: 16, heads: 2, vocab: 40, context: 32}",
                "peft: [{prefix: {length: 2}}]");
    check_loader();
    return hn_test_finish("test_packing");
}
