/*
 * GGUF -> hone checkpoint. The GGUF's metadata becomes the model section of a config,
 * hone's parameter table for that config names the rows to fill, and each row is
 * dequantized from the tensor llama.cpp's converter stored it under.
 *
 * The one trap: llama.cpp's converter permutes the rows of Llama's Q and K projections
 * so that its RoPE can rotate adjacent pairs (2i, 2i+1); hone rotates HF's pairs
 * (i, i + HS/2), so the import undoes that permutation. Without it the model would run
 * without error and write fluent garbage (tests/cli/test_import_smollm2.sh compares logits
 * with transformers).
 */
#include "train/import.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "data/gguf.h"
#include "data/h5ckpt.h"
#include "data/tokenizer.h"
#include "train/model.h"

/* the GGUF tensor that holds hone's row `name` of a llama model */
static int gguf_name_of(const char* name, char* out, size_t n) {
    static const struct {
        const char *hone, *gguf;
    } layer_map[] = {
        {"attn_norm.weight", "attn_norm.weight"}, {"attn.q.weight", "attn_q.weight"},
        {"attn.k.weight", "attn_k.weight"},       {"attn.v.weight", "attn_v.weight"},
        {"attn.o.weight", "attn_output.weight"},  {"mlp_norm.weight", "ffn_norm.weight"},
        {"mlp.gate.weight", "ffn_gate.weight"},   {"mlp.up.weight", "ffn_up.weight"},
        {"mlp.down.weight", "ffn_down.weight"},
    };
    if (strcmp(name, "tok_embed.weight") == 0) return snprintf(out, n, "token_embd.weight"), HN_OK;
    if (strcmp(name, "final_norm.weight") == 0) return snprintf(out, n, "output_norm.weight"), HN_OK;
    if (strcmp(name, "lm_head.weight") == 0) return snprintf(out, n, "output.weight"), HN_OK;
    int layer, used = 0;
    if (sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_map / sizeof layer_map[0]; i++)
            if (strcmp(name + used, layer_map[i].hone) == 0)
                return snprintf(out, n, "blk.%d.%s", layer, layer_map[i].gguf), HN_OK;
    return hn_error("internal: no GGUF name for row %s", name);
}

/* undo llama.cpp's Q/K row permutation within each head: its row 2i+j of a head is HF's
 * row j*HS/2 + i (j in {0, 1}); w is (heads*HS, C) */
static int unpermute_rows(float* w, int heads, int HS, int C) {
    float* tmp = malloc((size_t)HS * C * sizeof(float));
    if (!tmp) return hn_error("out of memory");
    for (int h = 0; h < heads; h++) {
        float* head = w + (size_t)h * HS * C;
        memcpy(tmp, head, (size_t)HS * C * sizeof(float));
        for (int i = 0; i < HS / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(head + (size_t)(j * HS / 2 + i) * C, tmp + (size_t)(2 * i + j) * C,
                       (size_t)C * sizeof(float));
    }
    free(tmp);
    return HN_OK;
}

static int get_int(const HnGguf* g, const char* arch, const char* key, int lo, int hi, int* out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t v;
    if (hn_gguf_get_int(g, full, &v) != HN_OK) return HN_ERR;
    if (v < lo || v > hi)
        return hn_error("%s: %s = %lld is outside %d..%d", hn_gguf_path(g), full, (long long)v, lo, hi);
    *out = (int)v;
    return HN_OK;
}

/* the model section of a config from the GGUF's metadata */
static int config_from_gguf(const HnGguf* g, HnConfig* cfg) {
    size_t len;
    const char* arch = hn_gguf_get_str(g, "general.architecture", &len);
    if (!arch) return HN_ERR;
    if (strcmp(arch, "llama") != 0)
        return hn_error("%s: architecture '%s' cannot be imported yet (llama can)", hn_gguf_path(g), arch);
    hn_config_defaults(cfg);
    snprintf(cfg->model.arch, sizeof cfg->model.arch, "llama");
    int rope_dims = 0;
    if (get_int(g, arch, "block_count", 1, 1024, &cfg->model.layers) != HN_OK ||
        get_int(g, arch, "embedding_length", 1, 1 << 16, &cfg->model.channels) != HN_OK ||
        get_int(g, arch, "attention.head_count", 1, 1024, &cfg->model.heads) != HN_OK ||
        get_int(g, arch, "feed_forward_length", 1, 1 << 18, &cfg->model.ffn) != HN_OK ||
        get_int(g, arch, "context_length", 1, 1 << 20, &cfg->model.context) != HN_OK)
        return HN_ERR;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.head_count_kv", arch);
    cfg->model.kv_heads = cfg->model.heads;
    if (hn_gguf_has(g, key) && get_int(g, arch, "attention.head_count_kv", 1, 1024, &cfg->model.kv_heads) != HN_OK)
        return HN_ERR;
    snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
    int HS = cfg->model.channels / cfg->model.heads;
    if (hn_gguf_has(g, key) && get_int(g, arch, "rope.dimension_count", 1, 1 << 16, &rope_dims) != HN_OK)
        return HN_ERR;
    if (rope_dims && rope_dims != HS)
        return hn_error("%s: RoPE over %d of %d head dimensions is not supported", hn_gguf_path(g), rope_dims, HS);
    double x;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    cfg->model.rope_theta = 10000.0f;
    if (hn_gguf_has(g, key)) {
        if (hn_gguf_get_float(g, key, &x) != HN_OK) return HN_ERR;
        cfg->model.rope_theta = (float)x;
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if (hn_gguf_get_float(g, key, &x) != HN_OK) return HN_ERR;
    cfg->model.norm_eps = (float)x;
    cfg->model.tied = hn_gguf_find_tensor(g, "output.weight") == NULL;
    hn_error_clear();
    const HnGgufTensor* emb = hn_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return HN_ERR;
    if (emb->ndim != 2 || emb->dims[0] != cfg->model.channels || emb->dims[1] < 1 || emb->dims[1] > (1 << 24))
        return hn_error("%s: token_embd.weight has an unexpected shape", hn_gguf_path(g));
    cfg->model.vocab = (int)emb->dims[1];
    if (cfg->model.heads % cfg->model.kv_heads != 0 || cfg->model.channels % cfg->model.heads != 0)
        return hn_error("%s: %d heads, %d kv heads and %d channels do not fit together", hn_gguf_path(g),
                        cfg->model.heads, cfg->model.kv_heads, cfg->model.channels);
    cfg->model.init_std = 0.02f;
    return HN_OK;
}

/* fill one row from its GGUF tensor, checking the shape (GGUF dims are fastest first) */
static int fill_row(const HnGguf* g, const HnModelConfig* mc, const HnParamRow* r, float* dst) {
    char gname[128];
    if (gguf_name_of(r->name, gname, sizeof gname) != HN_OK) return HN_ERR;
    const HnGgufTensor* t = hn_gguf_find_tensor(g, gname);
    if (!t) return HN_ERR;
    int vocab_rows = strcmp(r->name, "tok_embed.weight") == 0 || strcmp(r->name, "lm_head.weight") == 0;
    int64_t rows = r->ndim == 2 ? r->shape[0] : 1, cols = r->ndim == 2 ? r->shape[1] : r->shape[0];
    if (vocab_rows) rows = mc->V; /* hone pads the vocabulary; the padded rows stay zero */
    int ok = r->ndim == 2 ? t->ndim == 2 && t->dims[0] == cols && t->dims[1] == rows
                          : t->ndim == 1 && t->dims[0] == cols;
    if (!ok)
        return hn_error("%s: tensor %s has shape [%lld, %lld], row %s needs %lld x %lld", hn_gguf_path(g), gname,
                        (long long)t->dims[0], (long long)(t->ndim > 1 ? t->dims[1] : 1), r->name,
                        (long long)rows, (long long)cols);
    size_t n = (size_t)rows * (size_t)cols;
    if (hn_gguf_dequantize(g, t, dst, n) != HN_OK) return HN_ERR;
    int HS = mc->C / mc->NH;
    if (strstr(r->name, "attn.q.weight")) return unpermute_rows(dst, mc->NH, HS, mc->C);
    if (strstr(r->name, "attn.k.weight")) return unpermute_rows(dst, mc->NKV, HS, mc->C);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return hn_error("%s: tensor %s holds a NaN or infinity", hn_gguf_path(g), gname);
    return HN_OK;
}

int hn_import_gguf(const char* src, const char* out, const HnImportOptions* opt) {
    HnGguf* g = hn_gguf_open(src);
    if (!g) return HN_ERR;
    HnConfig cfg;
    HnParamTable t = {0};
    HnTokenizer* tok = NULL;
    char* yaml = NULL;
    size_t ylen = 0;
    int rc = config_from_gguf(g, &cfg);
    HnModelConfig mc = hn_model_config_of(&cfg);
    if (rc == HN_OK) rc = hn_model_table(&t, &mc);
    if (rc == HN_OK) rc = hn_params_alloc(&t);
    mc.NKV = cfg.model.kv_heads;
    for (int i = 0; rc == HN_OK && i < t.n; i++) rc = fill_row(g, &mc, &t.rows[i], t.data + t.rows[i].offset);
    if (rc == HN_OK && !(tok = hn_tokenizer_from_gguf(g))) rc = HN_ERR;
    if (rc == HN_OK) {
        snprintf(cfg.tokenizer.type, sizeof cfg.tokenizer.type, "auto");
        FILE* f = open_memstream(&yaml, &ylen);
        if (!f || hn_config_write(&cfg, f) != HN_OK) rc = hn_error("cannot render the config");
        if (f) fclose(f);
    }
    if (rc == HN_OK) {
        HnCkptSave s = {.config_yaml = yaml, .arch = cfg.model.arch, .params = &t, .best_val_loss = NAN,
                        .tokenizer = tok, .bf16 = opt->bf16, .deflate = opt->deflate};
        rc = hn_ckpt_save(out, &s);
    }
    if (rc == HN_OK) {
        size_t n = 0;
        for (int i = 0; i < t.n; i++) n += t.rows[i].numel;
        fprintf(stderr, "imported %s: llama L=%d C=%d NH=%d NKV=%d F=%d V=%d context=%d, %.1fM parameters -> %s\n",
                src, cfg.model.layers, cfg.model.channels, cfg.model.heads, cfg.model.kv_heads, cfg.model.ffn,
                cfg.model.vocab, cfg.model.context, n / 1e6, out);
    }
    free(yaml);
    hn_tokenizer_free(tok);
    hn_params_free(&t);
    hn_gguf_close(g);
    return rc;
}
