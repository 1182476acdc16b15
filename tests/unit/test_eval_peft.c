/*
 * The inference model (eval/model.c) with the parameter-efficient methods that do not fold
 * into the base, against the training model (train/model.c) as the reference: prefix
 * tuning (with and without its projection MLP), prompt tuning, P-tuning, bottleneck
 * adapters (Pfeiffer, Houlsby, parallel; each activation) and a combination with LoRA, on
 * GPT-2 and on Llama with grouped-query attention. The training model is initialised, then
 * every add-on row (and every bias and norm gain) is set to random values, so each one
 * matters (LoRA's at half the scale of the others: folding it into the base rounds
 * differently from the training model's separate low-rank product, and a large update
 * amplifies that rounding toward the tolerance). The eval model is built two ways: from
 * a checkpoint the training model's table is saved to (hn_eval_model_open reading /peft),
 * and from the table through hn_eval_model_new + hn_eval_model_set_peft (LoRA merged into
 * the base rows first).
 *
 * Each must give the training model's logits at every real position when decoding token by
 * token with the cache, prefilling the whole sequence, prefilling a chunk and then decoding
 * (after rewinds that leave stale cache entries), prefilling a few rows and then one GEMM
 * block, and the block-by-block NLL; the context left to callers is the model's less the
 * prefix and virtual tokens, and a forward beyond it is refused. Error measure: max
 * |eval - train| over the V real logits of every position, divided by max |train logit|;
 * it must be <= 1e-5.
 */
#include "eval/model.h"

#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/h5ckpt.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/model.h"
#include "train/peft/peft.h"

#define TOL 1e-5

static double worst; /* the largest error of any comparison */

/* the eval model's tensor source: rows of the training model's parameter table */
static int from_train_model(void* ctx, const char* name, float* dst, size_t numel) {
    const HnModel* hm = ctx;
    int i = hn_params_find(&hm->params, name);
    if (i < 0) return hn_error("no row %s", name);
    const HnParamRow* r = &hm->params.rows[i];
    if (r->numel != numel) return hn_error("%s: %zu floats, wanted %zu", name, r->numel, numel);
    memcpy(dst, hm->params.data + r->offset, numel * sizeof(float));
    return HN_OK;
}

static const float* row_of(const HnModel* hm, const char* name) {
    int i = hn_params_find(&hm->params, name);
    return i < 0 ? NULL : hm->params.data + hm->params.rows[i].offset;
}

/* biases and norm gains random; add-on rows random: embeddings normal(0, 0.5), other
 * matrices normal(0, 1 / sqrt(fan-in)), vectors normal(0, 0.1) (IA3 / DoRA scales around 1) */
static void randomize(HnModel* hm, uint64_t seed) {
    HnRng rng;
    hn_rng_seed(&rng, seed);
    for (int i = 0; i < hm->params.n; i++) {
        const HnParamRow* r = &hm->params.rows[i];
        float* x = hm->params.data + r->offset;
        const int is_bias = strstr(r->name, ".bias") != NULL;
        const int is_norm = strstr(r->name, "norm.") != NULL;
        if (r->addon) {
            float sd = strstr(r->name, ".embed")   ? 0.5f
                       : strstr(r->name, ".lora_") ? 0.5f / sqrtf((float)r->shape[1])
                       : r->ndim == 2              ? 1.0f / sqrtf((float)r->shape[1])
                                                   : 0.1f;
            float mean = strstr(r->name, ".ia3") || strstr(r->name, "dora_m") ? 1.0f : 0.0f;
            for (size_t j = 0; j < r->numel; j++)
                x[j] = mean + sd * hn_rng_normal(&rng);
        } else if (is_bias || is_norm) {
            for (size_t j = 0; j < r->numel; j++)
                x[j] = is_bias ? 0.1f * hn_rng_normal(&rng) : 1.0f + 0.2f * hn_rng_normal(&rng);
        }
    }
}

/* max |got - want| over the first V of each row's Vp logits, relative to max |want| */
static double rel_error(const float* got, const float* want, int n, int V, int Vp) {
    double err = 0.0, scale = 0.0;
    for (int i = 0; i < n; i++)
        for (int v = 0; v < V; v++) {
            double d = fabs((double)got[(size_t)i * Vp + v] - want[(size_t)i * Vp + v]);
            err = d > err || d != d ? d : err;
            double a = fabs(want[(size_t)i * Vp + v]);
            scale = a > scale ? a : scale;
        }
    double e = err / scale;
    if (!(e <= worst)) worst = e;
    return e;
}

static void copy_row(float* dst, const float* src, int Vp) {
    if (src) memcpy(dst, src, (size_t)Vp * sizeof(float));
}

/* the add-ons of the training model's table as plain arrays; adapters packed into *pack
 * (caller frees) */
static HnEvalPeft peft_of(const HnModel* hm, float** pack) {
    const HnPeft* p = &hm->peft;
    HnEvalPeft e = {0};
    *pack = NULL;
    if (p->prefix.P) {
        e.prefix_len = p->prefix.P;
        e.prefix_hidden = p->prefix.hidden;
        e.prefix_embed = row_of(hm, "prefix.embed");
        e.prefix_w0 = row_of(hm, "prefix.mlp.0.weight");
        e.prefix_b0 = row_of(hm, "prefix.mlp.0.bias");
        e.prefix_w1 = row_of(hm, "prefix.mlp.1.weight");
        e.prefix_b1 = row_of(hm, "prefix.mlp.1.bias");
    }
    if (p->prompt.P) {
        e.prompt_len = p->prompt.P;
        e.prompt_hidden = p->prompt.hidden;
        e.prompt_embed = row_of(hm, "prompt.embed");
        char name[64];
        for (int k = 0; k < 3; k++) {
            snprintf(name, sizeof name, "prompt.mlp.%d.weight", k);
            e.prompt_w[k] = row_of(hm, name);
            snprintf(name, sizeof name, "prompt.mlp.%d.bias", k);
            e.prompt_b[k] = row_of(hm, name);
        }
    }
    const HnAdapters* ad = &p->adapters;
    if (ad->on) {
        e.adapter = ad->kind == HN_ADAPTER_HOULSBY    ? HN_EVAL_ADAPTER_HOULSBY
                    : ad->kind == HN_ADAPTER_PARALLEL ? HN_EVAL_ADAPTER_PARALLEL
                                                      : HN_EVAL_ADAPTER_PFEIFFER;
        e.adapter_act = ad->act;
        e.adapter_dim = ad->R;
        e.adapter_scaling = ad->scaling;
        const int L = hm->cfg.L, C = hm->cfg.C, R = ad->R;
        const size_t A = 2 * (size_t)R * C + R + C, numel[4] = {(size_t)R * C, R, (size_t)C * R, C};
        static const char* const part[4] = {"down.weight", "down.bias", "up.weight", "up.bias"};
        *pack = malloc(2 * (size_t)L * A * sizeof(float));
        for (int pt = 0; pt < 2; pt++) {
            float* at = *pack + (size_t)pt * L * A;
            if (pt == 0 && e.adapter != HN_EVAL_ADAPTER_HOULSBY) continue;
            for (int l = 0; l < L; l++)
                for (int k = 0; k < 4; k++) {
                    char name[96];
                    snprintf(name, sizeof name, "layers.%d.adapter_%s.%s", l, pt ? "mlp" : "attn",
                             part[k]);
                    const float* src = row_of(hm, name);
                    if (src) memcpy(at, src, numel[k] * sizeof(float));
                    at += numel[k];
                }
        }
        e.adapter_attn = e.adapter == HN_EVAL_ADAPTER_HOULSBY ? *pack : NULL;
        e.adapter_mlp = *pack + (size_t)L * A;
    }
    return e;
}

static HnEvalConfig eval_config_of(const HnModelConfig* c) {
    return (HnEvalConfig){.arch = c->arch == HN_ARCH_LLAMA ? HN_EVAL_LLAMA : HN_EVAL_GPT2,
                          .L = c->L,
                          .C = c->C,
                          .NH = c->NH,
                          .NKV = c->NKV,
                          .F = c->F,
                          .V = c->V,
                          .context = c->maxT,
                          .eps = c->eps,
                          .rope_theta = c->rope_theta,
                          .untied = c->untied};
}

/* every way of feeding the T tokens through the cache gives want (T, Vp) */
static void check_paths(const char* what, HnEvalModel* m, const int* tokens, float* want, int T,
                        int V, int Vp) {
    CHECK(m->config.maxT == T, "%s: callers' context %d, want %d", what, m->config.maxT, T);
    float* got = malloc((size_t)T * Vp * sizeof(float));

    /* (a) token by token through the cache */
    for (int t = 0; t < T; t++) {
        const float* l = hn_eval_forward(m, tokens + t, 1, t);
        CHECK(l != NULL, "%s: decode at %d: %s", what, t, hn_error_message());
        copy_row(got + (size_t)t * Vp, l, Vp);
    }
    double e = rel_error(got, want, T, V, Vp);
    printf("%s: decode: %.3g", what, e);
    CHECK(e <= TOL, "%s: decode: %.3g", what, e);

    /* (b) one prefill of all T; and the last row alone */
    CHECK(hn_eval_forward_all(m, tokens, T, 0, got) == HN_OK, "%s: prefill: %s", what,
          hn_error_message());
    e = rel_error(got, want, T, V, Vp);
    printf(", prefill: %.3g", e);
    CHECK(e <= TOL, "%s: prefill: %.3g", what, e);
    const float* l = hn_eval_forward(m, tokens, T, 0);
    e = l ? rel_error(l, want + (size_t)(T - 1) * Vp, 1, V, Vp) : 1.0;
    CHECK(e <= TOL, "%s: last row of a prefill: %.3g", what, e);

    /* (c) prefill a chunk, then decode the rest, each position first with another token
     * and then rewound */
    double ec = 0.0;
    for (int chunk = 1; chunk < T; chunk += 7) {
        CHECK(hn_eval_forward_all(m, tokens, chunk, 0, got) == HN_OK, "%s: chunk: %s", what,
              hn_error_message());
        for (int t = chunk; t < T; t++) {
            int other = (tokens[t] + 1) % V;
            hn_eval_forward(m, &other, 1, t);
            copy_row(got + (size_t)t * Vp, hn_eval_forward(m, tokens + t, 1, t), Vp);
        }
        e = rel_error(got, want, T, V, Vp);
        ec = e > ec ? e : ec;
        CHECK(e <= TOL, "%s: chunk %d then decode: %.3g", what, chunk, e);
    }
    printf(", chunk + decode: %.3g", ec);

    /* (d) four rows, then the rest as one block at pos 4 (the GEMM attention path) */
    hn_eval_forward_all(m, tokens, 4, 0, got);
    CHECK(hn_eval_forward_all(m, tokens + 4, T - 4, 4, got + (size_t)4 * Vp) == HN_OK,
          "%s: block at 4: %s", what, hn_error_message());
    e = rel_error(got, want, T, V, Vp);
    printf(", 4 + block: %.3g", e);
    CHECK(e <= TOL, "%s: block after 4: %.3g", what, e);

    /* (e) the NLL against the same op on the reference logits */
    int* targets = malloc((size_t)T * sizeof *targets);
    float* losses = malloc((size_t)T * sizeof *losses);
    for (int t = 0; t < T; t++)
        targets[t] = (tokens[t] * 7 + 3) % V;
    targets[T / 2] = HN_IGNORE;
    double nll, ref = hn_crossentropy_forward(want, losses, targets, T, V, Vp, 0.0f);
    CHECK(hn_eval_forward_nll(m, tokens, targets, T, 0, &nll) == HN_OK, "%s: nll: %s", what,
          hn_error_message());
    printf(", nll %.6f (ref %.6f)\n", nll, ref);
    CHECK(hn_close(nll, ref, 1e-5, 0), "%s: nll %.6f vs %.6f", what, nll, ref);

    /* (f) the context left to callers ends at T */
    hn_error_clear();
    CHECK(hn_eval_forward(m, tokens, 1, T) == NULL, "%s: pos = maxT accepted", what);
    CHECK(strstr(hn_error_message(), "context") != NULL, "%s: message: %s", what,
          hn_error_message());
    CHECK(hn_eval_forward(m, tokens, 2, T - 1) == NULL, "%s: pos + n = maxT + 1 accepted", what);
    CHECK(hn_eval_forward_all(m, tokens, T + 1, 0, got) == HN_ERR, "%s: n = maxT + 1", what);
    CHECK(hn_eval_forward_nll(m, tokens, targets, T, 1, &nll) == HN_ERR, "%s: nll past", what);
    CHECK(hn_eval_forward(m, tokens, 1, T - 1) != NULL, "%s: the last position: %s", what,
          hn_error_message());

    free(targets);
    free(losses);
    free(got);
}

/* one model and method: the reference, then the eval model from a checkpoint and from the
 * table */
static void check_case(const char* what, const char* arch, const char* model_yaml,
                       const char* peft_yaml, int check_cap) {
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (hn_config_load_text(&cfg, model_yaml, "model") != HN_OK ||
        hn_config_load_text(&cfg, peft_yaml, "peft") != HN_OK) {
        CHECK(0, "%s: config: %s", what, hn_error_message());
        return;
    }
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnPeft plan;
    HnModel hm;
    memset(&hm, 0, sizeof hm);
    int Px = 0, Pv = 0;
    int rc = hn_peft_plan(&plan, &cfg);
    if (rc == HN_OK) {
        Px = hn_peft_prefix_length(&plan);
        Pv = hn_peft_virtual_tokens(&plan);
        rc = hn_model_create_peft(&hm, &mc, &plan, 1, mc.maxT - Px - Pv);
    }
    CHECK(rc == HN_OK, "%s: training model: %s", what, hn_error_message());
    if (rc != HN_OK) return;
    const int T = mc.maxT - Px - Pv, V = hm.cfg.V, Vp = hm.cfg.Vp;
    hn_model_init(&hm, 0.3f, 42);
    randomize(&hm, 43);
    int* tokens = malloc((size_t)T * sizeof *tokens);
    HnRng rng;
    hn_rng_seed(&rng, 3);
    for (int t = 0; t < T; t++)
        tokens[t] = (int)hn_rng_below(&rng, (uint64_t)V);
    hn_model_forward(&hm, tokens, NULL, 1, T, 0.0f);
    float* want = malloc((size_t)T * Vp * sizeof(float));
    for (int t = 0; t < T; t++)
        memcpy(want + (size_t)t * Vp, hn_model_logits(&hm, 0, t), (size_t)Vp * sizeof(float));
    char name[160];

    /* from a checkpoint: the config and the /peft rows */
    char dir[512], path[700], yaml[1024];
    snprintf(dir, sizeof dir, "%s/eval_peft", hn_test_env("HONE_TEST_TMP"));
    snprintf(path, sizeof path, "%s/ckpt.h5", dir);
    snprintf(yaml, sizeof yaml, "%s\n%s\n", model_yaml, peft_yaml);
    HnCkptSave s = {.config_yaml = yaml,
                    .arch = arch,
                    .params = &hm.params,
                    .best_val_loss = NAN,
                    .deflate = 0};
    HnEvalModel* m = NULL;
    HnTokenizer* tok = NULL;
    rc = hn_mkdirs(dir) == HN_OK && hn_ckpt_save(path, &s) == HN_OK ? HN_OK : HN_ERR;
    if (rc == HN_OK) rc = hn_eval_model_open(path, 0, &m, &tok);
    CHECK(rc == HN_OK, "%s: open: %s", what, hn_error_message());
    if (m) {
        CHECK(m->peft.Px == Px && m->peft.Pv == Pv, "%s: Px %d Pv %d", what, m->peft.Px,
              m->peft.Pv);
        snprintf(name, sizeof name, "%s %s [checkpoint]", arch, what);
        check_paths(name, m, tokens, want, T, V, Vp);
    }
    hn_eval_model_free(m);
    hn_tokenizer_free(tok);

    /* from the table: LoRA merged into the base rows, the rest through set_peft */
    if (hm.peft.n > 0) CHECK(hn_peft_merge(&hm.peft, &hm.params) == HN_OK, "%s: merge", what);
    HnEvalConfig ec = eval_config_of(&hm.cfg);
    m = hn_eval_model_new(&ec, 0, from_train_model, &hm);
    CHECK(m != NULL, "%s: new: %s", what, hn_error_message());
    float* pack = NULL;
    HnEvalPeft e = peft_of(&hm, &pack);
    if (m) {
        CHECK(m->config.maxT == mc.maxT, "%s: maxT before the add-ons", what);
        CHECK(hn_eval_model_set_peft(m, &e) == HN_OK, "%s: set_peft: %s", what, hn_error_message());
        snprintf(name, sizeof name, "%s %s [set_peft]", arch, what);
        check_paths(name, m, tokens, want, T, V, Vp);
        /* set again (replacing): the same */
        CHECK(hn_eval_model_set_peft(m, &e) == HN_OK, "%s: set_peft again", what);
        const float* l = hn_eval_forward(m, tokens, T, 0);
        double err = l ? rel_error(l, want + (size_t)(T - 1) * Vp, 1, V, Vp) : 1.0;
        CHECK(err <= TOL, "%s: after setting twice: %.3g", what, err);
    }
    hn_eval_model_free(m);

    /* a context cap: the cache holds cap positions, the callers get cap - Px - Pv */
    if (check_cap) {
        const int cap = mc.maxT - 5, Tc = cap - Px - Pv;
        m = hn_eval_model_new(&ec, cap, from_train_model, &hm);
        CHECK(m && hn_eval_model_set_peft(m, &e) == HN_OK, "%s: capped: %s", what,
              hn_error_message());
        if (m) {
            CHECK(m->config.maxT == Tc, "%s: capped context %d, want %d", what, m->config.maxT, Tc);
            float* got = malloc((size_t)Tc * Vp * sizeof(float));
            hn_eval_forward_all(m, tokens, Tc - 1, 0, got);
            copy_row(got + (size_t)(Tc - 1) * Vp, hn_eval_forward(m, tokens + Tc - 1, 1, Tc - 1),
                     Vp);
            double err = rel_error(got, want, Tc, V, Vp);
            printf("%s %s: capped at %d (%d to callers): %.3g\n", arch, what, cap, Tc, err);
            CHECK(err <= TOL, "%s: capped: %.3g", what, err);
            hn_error_clear();
            CHECK(hn_eval_forward(m, tokens, 1, Tc) == NULL, "%s: pos = capped maxT", what);
            CHECK(strstr(hn_error_message(), "capped") != NULL, "%s: message: %s", what,
                  hn_error_message());
            free(got);
        }
        hn_eval_model_free(m);
        /* a cap that leaves no position: refused, the model unchanged */
        m = hn_eval_model_new(&ec, Px + Pv, from_train_model, &hm);
        CHECK(m != NULL, "%s: %s", what, hn_error_message());
        if (m) {
            hn_error_clear();
            CHECK(hn_eval_model_set_peft(m, &e) == HN_ERR, "%s: no position left accepted", what);
            CHECK(strstr(hn_error_message(), "leave none") != NULL, "%s: message: %s", what,
                  hn_error_message());
            CHECK(m->config.maxT == Px + Pv && m->peft.virt == 0, "%s: changed by a failed set",
                  what);
        }
        hn_eval_model_free(m);
    }
    free(pack);
    free(want);
    free(tokens);
    hn_model_free(&hm);
}

/* a model without add-ons: set_peft(NULL) and a set-then-cleared model give the same bits
 * as never setting, and the whole context */
static void check_plain(const char* model_yaml) {
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (hn_config_load_text(&cfg, model_yaml, "model") != HN_OK) {
        CHECK(0, "config: %s", hn_error_message());
        return;
    }
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnModel hm;
    if (hn_model_create(&hm, &mc, 1, mc.maxT) != HN_OK) {
        CHECK(0, "model: %s", hn_error_message());
        return;
    }
    hn_model_init(&hm, 0.3f, 7);
    randomize(&hm, 8);
    HnEvalConfig ec = eval_config_of(&hm.cfg);
    HnEvalModel* a = hn_eval_model_new(&ec, 0, from_train_model, &hm);
    HnEvalModel* b = hn_eval_model_new(&ec, 0, from_train_model, &hm);
    CHECK(a && b, "%s", hn_error_message());
    if (a && b) {
        const int T = mc.maxT, Vp = a->config.Vp;
        int* tokens = malloc((size_t)T * sizeof *tokens);
        for (int t = 0; t < T; t++)
            tokens[t] = (t * 31 + 5) % mc.V;
        float prompt[4 * 512];
        for (int i = 0; i < 4 * mc.C; i++)
            prompt[i] = 0.01f * (float)(i % 17);
        HnEvalPeft some = {.prompt_len = 4, .prompt_embed = prompt};
        CHECK(hn_eval_model_set_peft(b, &some) == HN_OK && b->config.maxT == T - 4,
              "set a prompt: %s", hn_error_message());
        CHECK(hn_eval_model_set_peft(b, NULL) == HN_OK && b->config.maxT == T &&
                  b->peft.virt == 0 && b->peft.mem == NULL,
              "cleared: %s", hn_error_message());
        float* la = malloc((size_t)T * Vp * sizeof(float));
        float* lb = malloc((size_t)T * Vp * sizeof(float));
        hn_eval_forward_all(a, tokens, T, 0, la);
        hn_eval_forward_all(b, tokens, T, 0, lb);
        CHECK(memcmp(la, lb, (size_t)T * Vp * sizeof(float)) == 0,
              "a cleared model differs from a plain one");
        /* bad add-ons are refused */
        HnEvalPeft bad = {.prefix_len = 2};
        CHECK(hn_eval_model_set_peft(a, &bad) == HN_ERR, "prefix without rows accepted");
        bad = (HnEvalPeft){.prompt_len = -1};
        CHECK(hn_eval_model_set_peft(a, &bad) == HN_ERR, "negative length accepted");
        bad = (HnEvalPeft){
            .adapter = HN_EVAL_ADAPTER_PFEIFFER, .adapter_dim = 0, .adapter_mlp = prompt};
        CHECK(hn_eval_model_set_peft(a, &bad) == HN_ERR, "bottleneck 0 accepted");
        bad = (HnEvalPeft){
            .adapter = HN_EVAL_ADAPTER_HOULSBY, .adapter_dim = 2, .adapter_mlp = prompt};
        CHECK(hn_eval_model_set_peft(a, &bad) == HN_ERR, "houlsby without attn rows accepted");
        CHECK(a->config.maxT == T && a->peft.virt == 0, "a failed set changed the model");
        free(la);
        free(lb);
        free(tokens);
    }
    hn_eval_model_free(a);
    hn_eval_model_free(b);
    hn_model_free(&hm);
}

int main(void) {
    const char* gpt2 = "model: {arch: gpt2, layers: 2, channels: 48, heads: 4, vocab: 83, "
                       "context: 32}";
    const char* llama = "model: {arch: llama, layers: 2, channels: 64, heads: 4, kv_heads: 2, "
                        "ffn: 96, vocab: 300, context: 40, tied: false}";
    static const struct {
        const char *what, *peft;
    } methods[] = {
        {"prefix", "peft: [{prefix: {length: 3}}]"},
        {"prefix projection", "peft: [{prefix: {length: 3, projection: 8}}]"},
        {"prompt", "peft: [{prompt: {length: 4}}]"},
        {"ptuning", "peft: [{ptuning: {length: 3, hidden: 10}}]"},
        {"ptuning hidden C", "peft: [{ptuning: {length: 2}}]"},
        {"prompt 18 (GEMM prime)", "peft: [{prompt: {length: 18}}]"},
        {"adapter pfeiffer relu", "peft: [{adapter: {kind: pfeiffer, reduction: 4}}]"},
        {"adapter houlsby swish",
         "peft: [{adapter: {kind: houlsby, reduction: 4, activation: swish}}]"},
        {"adapter parallel gelu",
         "peft: [{adapter: {kind: parallel, reduction: 2, scaling: 4, activation: gelu}}]"},
        {"prefix+prompt+houlsby tanh+lora",
         "peft: [{prefix: {length: 2}}, {prompt: {length: 3}}, {adapter: {kind: houlsby, "
         "reduction: 8, activation: tanh}}, {lora: {targets: [attn.o, mlp.up], rank: 2, alpha: "
         "4}}]"},
        {"prefix projection+ptuning+parallel",
         "peft: [{prefix: {length: 2, projection: 6}}, {ptuning: {length: 2, hidden: 5}}, "
         "{adapter: {kind: parallel, reduction: 4, scaling: 0.5, activation: tanh}}]"},
    };
    const int n = (int)(sizeof methods / sizeof methods[0]);
    for (int i = 0; i < n; i++) {
        check_case(methods[i].what, "gpt2", gpt2, methods[i].peft, i == n - 2);
        check_case(methods[i].what, "llama", llama, methods[i].peft, i == n - 2);
    }
    /* more virtual tokens than one pass through the layers takes (HN_EVAL_ROWS) */
    check_case("prefix 5 + prompt 260", "llama",
               "model: {arch: llama, layers: 1, channels: 32, heads: 4, kv_heads: 1, ffn: 48, "
               "vocab: 50, context: 290}",
               "peft: [{prefix: {length: 5}}, {prompt: {length: 260}}]", 0);
    check_plain(gpt2);
    check_plain(llama);
    printf("largest relative error: %.3g\n", worst);
    return hn_test_finish("test_eval_peft");
}
