/*
 * Parameter-efficient methods against Hugging Face PEFT 0.13.2 (scripts/make_peft_fixtures.py
 * -> tests/fixtures/peft/): on a tiny GPT-2 and a tiny Llama with grouped-query attention,
 * LoRA, rsLoRA, DoRA, IA3 and LoRA + IA3 on disjoint sites, each with every add-on set to
 * non-zero random values; BitFit against a transformers GPT-2 with only its biases
 * requiring grad. For each: logits, loss and the gradient of every trainable tensor (and
 * that nothing else is trainable: the counts equal PEFT's), then the merge against PEFT's
 * merged weights and merged logits, merged vs unmerged logits, and LoRA's unmerge.
 *
 * Tolerances, relative L2 error per tensor (float32 on both sides; the fixture script
 * prints its float32-vs-float64 differences, at most 2e-6):
 *   logits 1e-5, loss 1e-5, gradients 1e-4 (as the whole-model golden tests),
 *   merged weights 1e-5, merged vs unmerged logits 1e-5, unmerge back to the base 1e-6.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "data/safetensors.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/peft/peft.h"

static HnSafetensors* st;   /* the method's fixture */
static HnSafetensors* base; /* its base weights and inputs */

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static const char* meta(HnSafetensors* f, const char* key) {
    const char* v = hn_safetensors_meta(f, key);
    if (!v) {
        fprintf(stderr, "FAIL: fixture has no metadata '%s'\n", key);
        exit(1);
    }
    return v;
}

static float* load_f32(HnSafetensors* f, const char* name, size_t n) {
    float* x = malloc(n * sizeof(float));
    if (!x || hn_safetensors_read_f32(f, name, x, n) != HN_OK) die();
    return x;
}

static int has(HnSafetensors* f, const char* name) {
    return hn_safetensors_find(f, name) != NULL;
}

static double rel_err(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (isnan(num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* the first V of Vp logits of every real position (prompt tuning's virtual ones skipped) */
static float* logits_of(HnModel* m, size_t N) {
    int V = m->cfg.V;
    float* x = malloc(N * V * sizeof(float));
    for (size_t i = 0; i < N; i++)
        memcpy(x + i * V, hn_model_logits(m, (int)(i / m->Treal), (int)(i % m->Treal)),
               V * sizeof(float));
    return x;
}

static void check_method(const char* set, const char* arch, const char* method) {
    char path[1024], key[200];
    const char* dir = hn_test_env("HONE_FIXTURES");
    snprintf(path, sizeof path, "%s/%s/%s_%s.safetensors", dir, set, arch, method);
    if (!(st = hn_safetensors_open(path))) die();
    snprintf(path, sizeof path, "%s/peft/%s", dir, meta(st, "base"));
    if (!(base = hn_safetensors_open(path))) die();
    printf("== %s %s (%s)\n", arch, method, meta(st, "generator"));

    /* the run config hone would read: the model's shape plus the fixture's peft section */
    HnConfig cfg;
    hn_config_defaults(&cfg);
    int llama = strcmp(arch, "llama") == 0;
    snprintf(cfg.model.arch, sizeof cfg.model.arch, "%s", arch);
    cfg.model.layers = atoi(meta(base, "L"));
    cfg.model.channels = atoi(meta(base, "C"));
    cfg.model.heads = atoi(meta(base, "NH"));
    cfg.model.kv_heads = llama ? atoi(meta(base, "NKV")) : 0;
    cfg.model.ffn = llama ? atoi(meta(base, "F")) : 0;
    cfg.model.vocab = atoi(meta(base, "V"));
    cfg.model.context = atoi(meta(base, "maxT"));
    cfg.model.norm_eps = (float)atof(meta(base, "eps"));
    if (llama) cfg.model.rope_theta = (float)atof(meta(base, "rope_theta"));
    if (hn_config_load_text(&cfg, meta(st, "peft_yaml"), "fixture peft_yaml") != HN_OK) die();
    HnModelConfig mc = hn_model_config_of(&cfg);
    int B = atoi(meta(base, "B")), T = atoi(meta(base, "T"));
    size_t N = (size_t)B * T;

    HnPeft plan;
    if (hn_peft_plan(&plan, &cfg) != HN_OK) die();
    HnModel m;
    if (hn_model_create_peft(&m, &mc, &plan, B, T) != HN_OK) die();
    HnParamTable* t = &m.params;

    /* values: base rows from the base file, add-ons from the method file */
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (r->addon) continue;
        snprintf(key, sizeof key, "param.%s", r->name);
        float* x = load_f32(base, key, r->numel);
        memcpy(t->data + r->offset, x, r->numel * sizeof(float));
        free(x);
    }
    /* PEFT's initialisation where the fixture kept it (prompt tuning from a text's ids) */
    hn_peft_init(&m.peft, t, 1);
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        snprintf(key, sizeof key, "init.%s", r->name);
        if (!r->addon || !has(st, key) || strcmp(method, "prompt_text") != 0) continue;
        float* x = load_f32(st, key, r->numel);
        double ie = rel_err(t->data + r->offset, x, r->numel);
        printf("initialisation of %s from the text's ids: %.3g\n", r->name, ie);
        CHECK(ie == 0.0, "%s initialised from ids %s differs from PEFT's (%.3g)", r->name,
              meta(st, "init_ids"), ie);
        free(x);
    }
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (!r->addon) continue;
        snprintf(key, sizeof key, "peft.%s", r->name);
        float* x = load_f32(st, key, r->numel);
        memcpy(t->data + r->offset, x, r->numel * sizeof(float));
        free(x);
    }
    /* nothing in the fixture is left out: every peft.* tensor is a row of hone's table */
    int addons = 0;
    for (int i = 0; i < hn_safetensors_count(st); i++) {
        const char* name = hn_safetensors_tensor(st, i)->name;
        if (strncmp(name, "peft.", 5) != 0) continue;
        addons++;
        CHECK(hn_params_find(t, name + 5) >= 0, "fixture add-on %s has no row in hone", name);
    }
    int hone_addons = 0;
    for (int i = 0; i < t->n; i++)
        hone_addons += t->rows[i].addon;
    CHECK(addons == hone_addons, "%d add-on rows in hone, %d in the fixture", hone_addons, addons);
    size_t trainable = hn_params_trainable_numel(t);
    CHECK(trainable == (size_t)atoll(meta(st, "trainable")), "trainable %zu, PEFT %s", trainable,
          meta(st, "trainable"));
    HnPeftCounts c = hn_peft_counts(t);
    printf("trainable %zu (lora %zu, dora %zu, ia3 %zu, bitfit %zu) of %zu\n", trainable, c.lora,
           c.dora, c.ia3, c.bitfit, t->numel);
    CHECK(t->grad_numel < t->numel / 2, "the gradient layout holds %zu floats: the base is not "
                                        "frozen",
          t->grad_numel);

    /* forward, loss, backward */
    int* tokens = malloc(N * sizeof(int));
    int* targets = malloc(N * sizeof(int));
    if (hn_safetensors_read_i32(base, "input.tokens", (int32_t*)tokens, N) != HN_OK ||
        hn_safetensors_read_i32(base, "input.targets", (int32_t*)targets, N) != HN_OK)
        die();
    size_t counted = 0;
    for (size_t i = 0; i < N; i++)
        counted += targets[i] != HN_IGNORE;
    hn_model_zero_grad(&m);
    double loss =
        hn_model_forward(&m, tokens, targets, B, T, 1.0f / (float)counted) / (double)counted;
    hn_model_backward(&m);
    hn_model_forward(&m, tokens, NULL, B, T, 0.0f);
    float* logits = logits_of(&m, N);
    float* ref = load_f32(st, "out.logits", N * mc.V);
    double e = rel_err(logits, ref, N * mc.V);
    printf("logits relative error %.3g\n", e);
    CHECK(e <= 1e-5, "%s %s logits relative error %.3g > 1e-5", arch, method, e);
    float* ref_loss = load_f32(st, "out.loss", 1);
    CHECK(hn_close(loss, ref_loss[0], 1e-5, 0), "loss %.7f vs PEFT %.7f", loss, ref_loss[0]);

    double worst = 0;
    const char* worst_name = "";
    int grads = 0;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        snprintf(key, sizeof key, "grad.%s", r->name);
        if (!r->trainable) {
            CHECK(!has(st, key), "%s has a reference gradient but is frozen in hone", r->name);
            continue;
        }
        grads++;
        float* g = load_f32(st, key, r->numel);
        double ge = rel_err(m.grads + r->goff, g, r->numel);
        CHECK(ge <= 1e-4, "%s %s gradient of %s: relative error %.3g > 1e-4", arch, method,
              r->name, ge);
        if (ge > worst) worst = ge, worst_name = r->name;
        free(g);
    }
    printf("%d gradients, worst relative error %.3g (%s)\n", grads, worst, worst_name);

    /* merge: PEFT's merged weights and logits, and the unmerged logits */
    if (has(st, "out.merged_logits")) {
        float* before = malloc(t->numel * sizeof(float));
        memcpy(before, t->data, t->numel * sizeof(float));
        if (hn_peft_merge(&m.peft, t) != HN_OK) die();
        double mw = 0;
        int merged_rows = 0;
        for (int i = 0; i < t->n; i++) {
            const HnParamRow* r = &t->rows[i];
            snprintf(key, sizeof key, "merged.%s", r->name);
            int changed = memcmp(before + r->offset, t->data + r->offset, r->numel * 4) != 0;
            if (!has(st, key)) {
                CHECK(!changed || r->addon, "hone's merge changed %s, PEFT's does not", r->name);
                continue;
            }
            merged_rows++;
            float* w = load_f32(st, key, r->numel);
            double we = rel_err(t->data + r->offset, w, r->numel);
            CHECK(we <= 1e-5, "merged %s: relative error %.3g > 1e-5", r->name, we);
            if (we > mw) mw = we;
            free(w);
        }
        hn_model_forward(&m, tokens, NULL, B, T, 0.0f);
        float* merged = logits_of(&m, N);
        float* ref_merged = load_f32(st, "out.merged_logits", N * mc.V);
        double me = rel_err(merged, ref_merged, N * mc.V);
        double mu = rel_err(merged, logits, N * mc.V);
        printf("merged: %d rows, worst %.3g; logits vs PEFT merged %.3g, vs unmerged %.3g\n",
               merged_rows, mw, me, mu);
        CHECK(merged_rows > 0, "the fixture has no merged rows");
        CHECK(me <= 1e-5, "merged logits vs PEFT: %.3g > 1e-5", me);
        CHECK(mu <= 1e-5, "merged vs unmerged logits: %.3g > 1e-5", mu);
        int lora_only = 1;
        for (int j = 0; j < m.peft.n; j++)
            lora_only &= m.peft.a[j].kind == HN_ADD_LORA;
        if (lora_only) {
            CHECK(hn_peft_unmerge(&m.peft, t) == HN_OK, "unmerge: %s", hn_error_message());
            double ue = rel_err(t->data, before, t->numel);
            printf("unmerge back to the base: %.3g\n", ue);
            CHECK(ue <= 1e-6, "unmerge: relative error %.3g > 1e-6", ue);
        } else {
            CHECK(hn_peft_unmerge(&m.peft, t) != HN_OK, "unmerge of DoRA/IA3 should be refused");
        }
        free(before);
        free(merged);
        free(ref_merged);
    }
    free(logits);
    free(ref);
    free(ref_loss);
    free(tokens);
    free(targets);
    hn_model_free(&m);
    hn_safetensors_close(st);
    hn_safetensors_close(base);
}

/* LoRA on gpt2's attn.q and attn.v slices (the LoRA paper's placement, which PEFT cannot
 * express) equals LoRA of rank 2r on the whole attn.qkv with A = [A_q; A_v] and B block-
 * diagonal (zero on k's rows): the same logits, and the slices' gradients equal the
 * matching blocks of the whole projection's. */
static void slice_model(HnModel* out, HnSafetensors* b, const char* yaml, int B, int T) {
    HnConfig cfg;
    hn_config_defaults(&cfg);
    cfg.model.layers = atoi(meta(b, "L"));
    cfg.model.channels = atoi(meta(b, "C"));
    cfg.model.heads = atoi(meta(b, "NH"));
    cfg.model.vocab = atoi(meta(b, "V"));
    cfg.model.context = atoi(meta(b, "maxT"));
    if (hn_config_load_text(&cfg, yaml, "slice test") != HN_OK) die();
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnPeft plan;
    HnModel* m = out; /* created in place: the add-ons keep a pointer to its table */
    if (hn_peft_plan(&plan, &cfg) != HN_OK || hn_model_create_peft(m, &mc, &plan, B, T) != HN_OK)
        die();
    for (int i = 0; i < m->params.n; i++) {
        const HnParamRow* r = &m->params.rows[i];
        if (r->addon) continue;
        char key[200];
        snprintf(key, sizeof key, "param.%s", r->name);
        float* x = load_f32(b, key, r->numel);
        memcpy(m->params.data + r->offset, x, r->numel * sizeof(float));
        free(x);
    }
}

static float* row(HnModel* m, const char* name, int grad) {
    int i = hn_params_find(&m->params, name);
    if (i < 0) {
        fprintf(stderr, "FAIL: no row %s\n", name);
        exit(1);
    }
    return grad ? m->grads + m->params.rows[i].goff : m->params.data + m->params.rows[i].offset;
}

static void check_slices(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/peft/gpt2_base.safetensors", hn_test_env("HONE_FIXTURES"));
    HnSafetensors* b = hn_safetensors_open(path);
    if (!b) die();
    int B = atoi(meta(b, "B")), T = atoi(meta(b, "T")), C = atoi(meta(b, "C")), r = 3;
    size_t N = (size_t)B * T;
    HnModel sl, wh;
    slice_model(&sl, b, "peft: [{lora: {targets: [attn.q, attn.v], rank: 3, alpha: 6}}]", B, T);
    slice_model(&wh, b, "peft: [{lora: {targets: [attn.qkv], rank: 6, alpha: 12}}]", B, T);
    HnRng rng;
    hn_rng_seed(&rng, 99);
    char name[96];
    for (int l = 0; l < sl.cfg.L; l++) {
        float* Aw = row(&wh, (snprintf(name, sizeof name, "layers.%d.attn.qkv.lora_A", l), name), 0);
        float* Bw = row(&wh, (snprintf(name, sizeof name, "layers.%d.attn.qkv.lora_B", l), name), 0);
        memset(Bw, 0, (size_t)3 * C * 2 * r * sizeof(float));
        for (int s = 0; s < 2; s++) { /* s = 0: q (rows 0..C), s = 1: v (rows 2C..3C) */
            const char* site = s ? "v" : "q";
            float* As = row(&sl, (snprintf(name, sizeof name, "layers.%d.attn.%s.lora_A", l, site), name), 0);
            float* Bs = row(&sl, (snprintf(name, sizeof name, "layers.%d.attn.%s.lora_B", l, site), name), 0);
            for (int i = 0; i < r * C; i++)
                Aw[s * r * C + i] = As[i] = 0.2f * hn_rng_normal(&rng);
            for (int j = 0; j < C; j++)
                for (int k = 0; k < r; k++)
                    Bw[(size_t)(2 * s * C + j) * 2 * r + s * r + k] = Bs[j * r + k] =
                        0.2f * hn_rng_normal(&rng);
        }
    }
    int* tokens = malloc(N * sizeof(int));
    int* targets = malloc(N * sizeof(int));
    if (hn_safetensors_read_i32(b, "input.tokens", (int32_t*)tokens, N) != HN_OK ||
        hn_safetensors_read_i32(b, "input.targets", (int32_t*)targets, N) != HN_OK)
        die();
    HnModel* ms[2] = {&sl, &wh};
    for (int k = 0; k < 2; k++) {
        hn_model_zero_grad(ms[k]);
        hn_model_forward(ms[k], tokens, targets, B, T, 0.01f);
        hn_model_backward(ms[k]);
        hn_model_forward(ms[k], tokens, NULL, B, T, 0.0f);
    }
    float* ls = logits_of(&sl, N);
    float* lw = logits_of(&wh, N);
    double e = rel_err(ls, lw, N * sl.cfg.V), worst = 0;
    for (int l = 0; l < sl.cfg.L; l++) {
        float* dAw = row(&wh, (snprintf(name, sizeof name, "layers.%d.attn.qkv.lora_A", l), name), 1);
        float* dBw = row(&wh, (snprintf(name, sizeof name, "layers.%d.attn.qkv.lora_B", l), name), 1);
        for (int s = 0; s < 2; s++) {
            const char* site = s ? "v" : "q";
            float* dAs = row(&sl, (snprintf(name, sizeof name, "layers.%d.attn.%s.lora_A", l, site), name), 1);
            float* dBs = row(&sl, (snprintf(name, sizeof name, "layers.%d.attn.%s.lora_B", l, site), name), 1);
            double ea = rel_err(dAs, dAw + s * r * C, (size_t)r * C);
            float* blk = malloc((size_t)C * r * sizeof(float));
            for (int j = 0; j < C; j++)
                for (int k = 0; k < r; k++)
                    blk[j * r + k] = dBw[(size_t)(2 * s * C + j) * 2 * r + s * r + k];
            double eb = rel_err(dBs, blk, (size_t)C * r);
            free(blk);
            worst = ea > worst ? ea : worst;
            worst = eb > worst ? eb : worst;
        }
    }
    printf("== gpt2 LoRA on attn.q + attn.v slices vs rank-2r attn.qkv: logits %.3g, gradients "
           "%.3g\n",
           e, worst);
    CHECK(e <= 1e-5, "slice logits differ from the whole projection's: %.3g", e);
    CHECK(worst <= 1e-4, "slice gradients differ from the whole projection's blocks: %.3g", worst);
    free(ls);
    free(lw);
    free(tokens);
    free(targets);
    hn_model_free(&sl);
    hn_model_free(&wh);
    hn_safetensors_close(b);
}

int main(void) {
    check_slices();
    static const char* const methods[] = {"lora", "rslora", "dora", "ia3", "lora_ia3"};
    for (int i = 0; i < 5; i++) {
        check_method("peft", "gpt2", methods[i]);
        check_method("peft", "llama", methods[i]);
    }
    check_method("peft", "gpt2", "bitfit");
    /* issue 7's methods: virtual tokens, virtual keys, adapters, and two combinations */
    static const char* const methods2[] = {
        "prefix",           "prefix_proj",     "prompt_random",    "prompt_text", "ptuning",
        "adapter_pfeiffer", "adapter_houlsby", "adapter_parallel", "lora_prefix", "prompt_adapter"};
    for (int i = 0; i < 10; i++) {
        check_method("peft2", "gpt2", methods2[i]);
        check_method("peft2", "llama", methods2[i]);
    }
    return hn_test_finish("test_peft_golden");
}
