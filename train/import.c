/*
 * GGUF or Hugging Face folder -> hone checkpoint. The GGUF's metadata (or config.json)
 * becomes the model section of a config, hone's parameter table for that config names the
 * rows to fill, and each row is dequantized (or converted from F32/F16/BF16) from the
 * tensor the source stored it under.
 *
 * The one trap: llama.cpp's converter permutes the rows of Llama's Q and K projections
 * so that its RoPE can rotate adjacent pairs (2i, 2i+1); hone rotates HF's pairs
 * (i, i + HS/2), so the import undoes that permutation. Without it the model would run
 * without error and write fluent garbage (tests/cli/test_import_smollm2.sh compares logits
 * with transformers).
 */
#include "train/import.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/gguf.h"
#include "data/h5ckpt.h"
#include "data/safetensors.h"
#include "data/tokenizer.h"
#include "train/model.h"
#include "train/names.h"

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
        return hn_error("%s: %s = %lld is outside %d..%d", hn_gguf_path(g), full, (long long)v, lo,
                        hi);
    *out = (int)v;
    return HN_OK;
}

/* the model section of a config from the GGUF's metadata */
static int config_from_gguf(const HnGguf* g, HnConfig* cfg) {
    size_t len;
    const char* arch = hn_gguf_get_str(g, "general.architecture", &len);
    if (!arch) return HN_ERR;
    int gpt2 = strcmp(arch, "gpt2") == 0;
    if (!gpt2 && strcmp(arch, "llama") != 0)
        return hn_error("%s: architecture '%s' cannot be imported (llama and gpt2 can)",
                        hn_gguf_path(g), arch);
    hn_config_defaults(cfg);
    snprintf(cfg->model.arch, sizeof cfg->model.arch, "%s", gpt2 ? "gpt2" : "llama");
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
    if (hn_gguf_has(g, key) &&
        get_int(g, arch, "attention.head_count_kv", 1, 1024, &cfg->model.kv_heads) != HN_OK)
        return HN_ERR;
    snprintf(key, sizeof key, "%s.rope.dimension_count", arch);
    int HS = cfg->model.channels / cfg->model.heads;
    if (hn_gguf_has(g, key) &&
        get_int(g, arch, "rope.dimension_count", 1, 1 << 16, &rope_dims) != HN_OK)
        return HN_ERR;
    if (rope_dims && rope_dims != HS)
        return hn_error("%s: RoPE over %d of %d head dimensions is not supported", hn_gguf_path(g),
                        rope_dims, HS);
    double x;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    cfg->model.rope_theta = 10000.0f;
    if (hn_gguf_has(g, key)) {
        if (hn_gguf_get_float(g, key, &x) != HN_OK) return HN_ERR;
        cfg->model.rope_theta = (float)x;
    }
    snprintf(key, sizeof key,
             gpt2 ? "%s.attention.layer_norm_epsilon" : "%s.attention.layer_norm_rms_epsilon",
             arch);
    if (hn_gguf_get_float(g, key, &x) != HN_OK) return HN_ERR;
    cfg->model.norm_eps = (float)x;
    cfg->model.tied = hn_gguf_find_tensor(g, "output.weight") == NULL;
    hn_error_clear();
    if (gpt2 && (!cfg->model.tied || cfg->model.kv_heads != cfg->model.heads))
        return hn_error(
            "%s: a gpt2 model with a separate output.weight or grouped heads is not GPT-2 as hone "
            "knows it",
            hn_gguf_path(g));
    const HnGgufTensor* emb = hn_gguf_find_tensor(g, "token_embd.weight");
    if (!emb) return HN_ERR;
    if (emb->ndim != 2 || emb->dims[0] != cfg->model.channels || emb->dims[1] < 1 ||
        emb->dims[1] > (1 << 24))
        return hn_error("%s: token_embd.weight has an unexpected shape", hn_gguf_path(g));
    cfg->model.vocab = (int)emb->dims[1];
    if (cfg->model.heads % cfg->model.kv_heads != 0 || cfg->model.channels % cfg->model.heads != 0)
        return hn_error("%s: %d heads, %d kv heads and %d channels do not fit together",
                        hn_gguf_path(g), cfg->model.heads, cfg->model.kv_heads,
                        cfg->model.channels);
    cfg->model.init_std = 0.02f;
    return HN_OK;
}

/* fill one row from its GGUF tensor, checking the shape (GGUF dims are fastest first) */
static int fill_row(const HnGguf* g, const HnModelConfig* mc, const HnParamRow* r, float* dst) {
    char gname[128];
    if (hn_gguf_row_name(r->name, gname, sizeof gname) != HN_OK) return HN_ERR;
    const HnGgufTensor* t = hn_gguf_find_tensor(g, gname);
    if (!t) return HN_ERR;
    int vocab_rows =
        strcmp(r->name, "tok_embed.weight") == 0 || strcmp(r->name, "lm_head.weight") == 0;
    int64_t rows = r->ndim == 2 ? r->shape[0] : 1, cols = r->ndim == 2 ? r->shape[1] : r->shape[0];
    if (vocab_rows) rows = mc->V; /* hone pads the vocabulary; the padded rows stay zero */
    int ok = r->ndim == 2 ? t->ndim == 2 && t->dims[0] == cols && t->dims[1] == rows
                          : t->ndim == 1 && t->dims[0] == cols;
    if (!ok)
        return hn_error("%s: tensor %s has shape [%lld, %lld], row %s needs %lld x %lld",
                        hn_gguf_path(g), gname, (long long)t->dims[0],
                        (long long)(t->ndim > 1 ? t->dims[1] : 1), r->name, (long long)rows,
                        (long long)cols);
    size_t n = (size_t)rows * (size_t)cols;
    if (hn_gguf_dequantize(g, t, dst, n) != HN_OK) return HN_ERR;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i]))
            return hn_error("%s: tensor %s holds a NaN or infinity", hn_gguf_path(g), gname);
    int HS = mc->C / mc->NH;
    if (strstr(r->name, "attn.q.weight")) return unpermute_rows(dst, mc->NH, HS, mc->C);
    if (strstr(r->name, "attn.k.weight")) return unpermute_rows(dst, mc->NKV, HS, mc->C);
    return HN_OK;
}

/* the imported model as a checkpoint: config text with the model section, the tokenizer
 * (NULL: "none") and the rows of t; one summary line on stderr */
static int write_checkpoint(HnConfig* cfg, const HnParamTable* t, const HnTokenizer* tok,
                            const char* src, const char* out, const HnImportOptions* opt) {
    snprintf(cfg->tokenizer.type, sizeof cfg->tokenizer.type, tok ? "auto" : "none");
    char* yaml = hn_config_to_text(cfg);
    int rc = yaml ? HN_OK : HN_ERR;
    if (rc == HN_OK) {
        HnCkptSave s = {.config_yaml = yaml,
                        .arch = cfg->model.arch,
                        .params = t,
                        .best_val_loss = NAN,
                        .tokenizer = tok,
                        .bf16 = opt->bf16,
                        .deflate = opt->deflate};
        rc = hn_ckpt_save(out, &s);
    }
    if (rc == HN_OK) {
        size_t n = 0;
        for (int i = 0; i < t->n; i++)
            n += t->rows[i].numel;
        fprintf(
            stderr,
            "imported %s: %s L=%d C=%d NH=%d NKV=%d F=%d V=%d context=%d, %.1fM parameters -> %s\n",
            src, cfg->model.arch, cfg->model.layers, cfg->model.channels, cfg->model.heads,
            cfg->model.kv_heads ? cfg->model.kv_heads : cfg->model.heads,
            cfg->model.ffn ? cfg->model.ffn : 4 * cfg->model.channels, cfg->model.vocab,
            cfg->model.context, n / 1e6, out);
    }
    free(yaml);
    return rc;
}

int hn_import_gguf(const char* src, const char* out, const HnImportOptions* opt) {
    HnGguf* g = hn_gguf_open(src);
    if (!g) return HN_ERR;
    HnConfig cfg;
    HnParamTable t = {0};
    HnTokenizer* tok = NULL;
    int rc = config_from_gguf(g, &cfg);
    HnModelConfig mc = hn_model_config_of(&cfg);
    if (rc == HN_OK) rc = hn_model_table(&t, &mc);
    if (rc == HN_OK) rc = hn_params_alloc(&t);
    mc.NKV = cfg.model.kv_heads;
    for (int i = 0; rc == HN_OK && i < t.n; i++)
        rc = fill_row(g, &mc, &t.rows[i], t.data + t.rows[i].offset);
    if (rc == HN_OK && !(tok = hn_tokenizer_from_gguf(g))) rc = HN_ERR;
    if (rc == HN_OK) rc = write_checkpoint(&cfg, &t, tok, src, out, opt);
    hn_tokenizer_free(tok);
    hn_params_free(&t);
    hn_gguf_close(g);
    return rc;
}

/* ---- Hugging Face folders: config.json + safetensors ----
 *
 * transformers' own names and layouts: Llama's projections are nn.Linear (out, in), as
 * hone's rows are, and its Q/K rows are already in the rotate_half order hone's RoPE uses;
 * GPT-2's are Conv1D, stored [in, out], so they are transposed. */

#define HF_CONFIG_MAX (16u << 20)
#define HF_MAX_SHARDS 1024

typedef struct {
    char dir[HN_STR];      /* the folder holding config.json */
    HnSafetensors** files; /* the model's safetensors files */
    int nfiles;
    char prefix[16]; /* gpt2: "" or "transformer." before every tensor name */
} HfSource;

/* the whole of a small regular file, NUL-terminated; NULL with an error naming it */
static char* read_small_file(const char* path, size_t max, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return hn_error("%s: cannot open: %s", path, strerror(errno)), NULL;
    struct stat st;
    char* buf = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode))
        hn_error("%s: not a regular file", path);
    else if (st.st_size < 1 || (uint64_t)st.st_size > max)
        hn_error("%s: %lld bytes is not a plausible size (1 to %zu)", path, (long long)st.st_size,
                 max);
    else if (!(buf = malloc((size_t)st.st_size + 1)))
        hn_error("%s: out of memory", path);
    else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        hn_error("%s: short read", path);
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[*len = (size_t)st.st_size] = '\0';
    return buf;
}

static cJSON* read_json(const char* path) {
    size_t len;
    char* text = read_small_file(path, HF_CONFIG_MAX, &len);
    if (!text) return NULL;
    cJSON* root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return hn_error("%s: not a JSON object", path), NULL;
    }
    return root;
}

/* key as an integer in lo..hi; absent or null takes def when def >= lo, else is an error */
static int json_int(const cJSON* o, const char* path, const char* key, long lo, long hi, long def,
                    int* out) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (def < lo) return hn_error("%s: \"%s\" is missing", path, key);
        *out = (int)def;
        return HN_OK;
    }
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || d < lo || d > hi)
        return hn_error("%s: \"%s\" must be an integer in %ld..%ld", path, key, lo, hi);
    *out = (int)d;
    return HN_OK;
}

/* key as a number in (0, hi]; absent or null takes def */
static int json_positive(const cJSON* o, const char* path, const char* key, double hi, double def,
                         float* out) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = def;
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble > 0) || v->valuedouble > hi)
            return hn_error("%s: \"%s\" must be a number in (0, %g]", path, key, hi);
        d = v->valuedouble;
    }
    *out = (float)d;
    return HN_OK;
}

/* key as a boolean; absent or null takes def */
static int json_bool(const cJSON* o, const char* path, const char* key, int def, int* out) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return *out = def, HN_OK;
    if (!cJSON_IsBool(v)) return hn_error("%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(v);
    return HN_OK;
}

/* key, when present and not null, must be the string want (the one variant hone computes) */
static int json_expect_str(const cJSON* o, const char* path, const char* key, const char* want,
                           const char* also) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) return HN_OK;
    const char* s = cJSON_GetStringValue(v);
    if (s && (strcmp(s, want) == 0 || (also && strcmp(s, also) == 0))) return HN_OK;
    return hn_error("%s: \"%s\" is %s%s%s; hone computes only \"%s\"", path, key,
                    s ? "\"" : "a non-string", s ? s : "", s ? "\"" : "", want);
}

static int gpt2_config(const cJSON* o, const char* path, HnConfig* cfg) {
    int tied = 1, scale = 1, by_layer = 0;
    snprintf(cfg->model.arch, sizeof cfg->model.arch, "gpt2");
    if (json_int(o, path, "n_layer", 1, 1024, -1, &cfg->model.layers) != HN_OK ||
        json_int(o, path, "n_embd", 1, 1 << 16, -1, &cfg->model.channels) != HN_OK ||
        json_int(o, path, "n_head", 1, 1024, -1, &cfg->model.heads) != HN_OK ||
        json_int(o, path, "vocab_size", 1, 1 << 24, -1, &cfg->model.vocab) != HN_OK ||
        json_int(o, path, "n_positions", 1, 1 << 20, -1, &cfg->model.context) != HN_OK ||
        json_int(o, path, "n_inner", 1, 1 << 18, 4L * cfg->model.channels, &cfg->model.ffn) !=
            HN_OK ||
        json_positive(o, path, "layer_norm_epsilon", 1.0, 1e-5, &cfg->model.norm_eps) != HN_OK ||
        json_expect_str(o, path, "activation_function", "gelu_new", "gelu_pytorch_tanh") != HN_OK ||
        json_bool(o, path, "tie_word_embeddings", 1, &tied) != HN_OK ||
        json_bool(o, path, "scale_attn_weights", 1, &scale) != HN_OK ||
        json_bool(o, path, "scale_attn_by_inverse_layer_idx", 0, &by_layer) != HN_OK)
        return HN_ERR;
    if (!tied || !scale || by_layer)
        return hn_error(
            "%s: %s is not supported (hone's GPT-2 ties the classifier and scales attention "
            "by 1/sqrt(head size))",
            path,
            !tied    ? "tie_word_embeddings false"
            : !scale ? "scale_attn_weights false"
                     : "scale_attn_by_inverse_layer_idx");
    cfg->model.kv_heads = cfg->model.heads;
    cfg->model.tied = 1;
    return HN_OK;
}

static int llama_config(const cJSON* o, const char* path, HnConfig* cfg) {
    int attn_bias = 0, mlp_bias = 0, head_dim = 0;
    snprintf(cfg->model.arch, sizeof cfg->model.arch, "llama");
    if (json_int(o, path, "num_hidden_layers", 1, 1024, -1, &cfg->model.layers) != HN_OK ||
        json_int(o, path, "hidden_size", 1, 1 << 16, -1, &cfg->model.channels) != HN_OK ||
        json_int(o, path, "num_attention_heads", 1, 1024, -1, &cfg->model.heads) != HN_OK ||
        json_int(o, path, "num_key_value_heads", 1, 1024, cfg->model.heads, &cfg->model.kv_heads) !=
            HN_OK ||
        json_int(o, path, "intermediate_size", 1, 1 << 18, -1, &cfg->model.ffn) != HN_OK ||
        json_int(o, path, "vocab_size", 1, 1 << 24, -1, &cfg->model.vocab) != HN_OK ||
        json_int(o, path, "max_position_embeddings", 1, 1 << 20, -1, &cfg->model.context) !=
            HN_OK ||
        json_positive(o, path, "rms_norm_eps", 1.0, 1e-6, &cfg->model.norm_eps) != HN_OK ||
        json_positive(o, path, "rope_theta", 1e12, 10000.0, &cfg->model.rope_theta) != HN_OK ||
        json_bool(o, path, "tie_word_embeddings", 0, &cfg->model.tied) != HN_OK ||
        json_bool(o, path, "attention_bias", 0, &attn_bias) != HN_OK ||
        json_bool(o, path, "mlp_bias", 0, &mlp_bias) != HN_OK ||
        json_expect_str(o, path, "hidden_act", "silu", NULL) != HN_OK)
        return HN_ERR;
    const cJSON* scaling = cJSON_GetObjectItemCaseSensitive(o, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling))
        return hn_error(
            "%s: rope_scaling is set; hone's RoPE has no scaling (only rope_scaling null imports)",
            path);
    if (attn_bias || mlp_bias)
        return hn_error("%s: %s is true; hone's Llama has no biases", path,
                        attn_bias ? "attention_bias" : "mlp_bias");
    if (cfg->model.channels % cfg->model.heads != 0 || cfg->model.heads % cfg->model.kv_heads != 0)
        return hn_error("%s: %d heads, %d kv heads and hidden size %d do not fit together", path,
                        cfg->model.heads, cfg->model.kv_heads, cfg->model.channels);
    if (json_int(o, path, "head_dim", 1, 1 << 16, cfg->model.channels / cfg->model.heads,
                 &head_dim) != HN_OK)
        return HN_ERR;
    if (head_dim != cfg->model.channels / cfg->model.heads)
        return hn_error(
            "%s: head_dim %d is not hidden_size / num_attention_heads = %d; hone cannot run it",
            path, head_dim, cfg->model.channels / cfg->model.heads);
    return HN_OK;
}

/* the model section of a config from config.json */
static int config_from_hf(const char* dir, HnConfig* cfg) {
    char path[HN_STR + 16];
    if (hn_path(path, sizeof path, "%s/config.json", dir) != HN_OK) return HN_ERR;
    cJSON* o = read_json(path);
    if (!o) return HN_ERR;
    hn_config_defaults(cfg);
    const char* type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "model_type"));
    int rc;
    if (!type)
        rc = hn_error("%s: no \"model_type\" string", path);
    else if (strcmp(type, "gpt2") == 0)
        rc = gpt2_config(o, path, cfg);
    else if (strcmp(type, "llama") == 0)
        rc = llama_config(o, path, cfg);
    else
        rc = hn_error("%s: model_type \"%.64s\" cannot be imported (gpt2 and llama can)", path,
                      type);
    cJSON_Delete(o);
    if (rc == HN_OK && cfg->model.channels % cfg->model.heads != 0)
        rc = hn_error("%s: %d channels do not divide into %d heads", path, cfg->model.channels,
                      cfg->model.heads);
    cfg->model.init_std = 0.02f;
    return rc;
}

/* open the safetensors files: the one given, or the folder's model.safetensors, or the
 * shards its model.safetensors.index.json names */
static int open_weights(HfSource* s, const char* src, int is_dir) {
    char path[2 * HN_STR];
    s->files = calloc(HF_MAX_SHARDS, sizeof *s->files);
    if (!s->files) return hn_error("out of memory");
    if (!is_dir) return (s->files[s->nfiles++] = hn_safetensors_open(src)) ? HN_OK : HN_ERR;
    if (hn_path(path, sizeof path, "%s/model.safetensors", s->dir) != HN_OK) return HN_ERR;
    if (access(path, F_OK) == 0)
        return (s->files[s->nfiles++] = hn_safetensors_open(path)) ? HN_OK : HN_ERR;
    if (hn_path(path, sizeof path, "%s/model.safetensors.index.json", s->dir) != HN_OK)
        return HN_ERR;
    if (access(path, F_OK) != 0)
        return hn_error("%s: no model.safetensors or model.safetensors.index.json in the folder",
                        s->dir);
    cJSON* index = read_json(path);
    if (!index) return HN_ERR;
    const cJSON* map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
    int rc = cJSON_IsObject(map) ? HN_OK : hn_error("%s: no \"weight_map\" object", path);
    char** names = calloc(HF_MAX_SHARDS, sizeof *names);
    if (rc == HN_OK && !names) rc = hn_error("out of memory");
    int nnames = 0;
    const cJSON* it;
    cJSON_ArrayForEach(it, map) {
        if (rc != HN_OK) break;
        const char* file = cJSON_GetStringValue(it);
        if (!file || !*file || strchr(file, '/') || strcmp(file, "..") == 0) {
            rc = hn_error("%s: tensor %.64s maps to a file that is not a plain name in the folder",
                          path, it->string);
            break;
        }
        int seen = 0;
        for (int i = 0; i < nnames && !seen; i++)
            seen = strcmp(names[i], file) == 0;
        if (seen) continue;
        if (nnames == HF_MAX_SHARDS)
            rc = hn_error("%s: more than %d shards", path, HF_MAX_SHARDS);
        else
            names[nnames++] = (char*)file;
    }
    char shard[2 * HN_STR];
    for (int i = 0; rc == HN_OK && i < nnames; i++) {
        rc = hn_path(shard, sizeof shard, "%s/%s", s->dir, names[i]);
        if (rc == HN_OK && !(s->files[s->nfiles++] = hn_safetensors_open(shard))) rc = HN_ERR;
    }
    if (rc == HN_OK && nnames == 0) rc = hn_error("%s: the weight_map is empty", path);
    free(names);
    cJSON_Delete(index);
    return rc;
}

/* the tensor called name in any of the files, or NULL (no error recorded) */
static const HnStTensor* hf_lookup(const HfSource* s, const char* name, const HnSafetensors** in) {
    for (int f = 0; f < s->nfiles; f++)
        for (int i = 0; i < hn_safetensors_count(s->files[f]); i++) {
            const HnStTensor* t = hn_safetensors_tensor(s->files[f], i);
            if (strcmp(t->name, name) == 0) return *in = s->files[f], t;
        }
    return NULL;
}

/* HF's name of hone's row, and whether its matrix is stored transposed (GPT-2's Conv1D) */
static int hf_name_of(const HfSource* s, HnArch arch, const char* name, char* out, size_t n,
                      int* transposed) {
    return hn_hf_row_name(arch == HN_ARCH_GPT2, s->prefix, name, out, n, transposed);
}

static void shape_text(const HnStTensor* t, char* out, size_t n) {
    size_t used = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < t->rank && used < n; d++)
        used +=
            (size_t)snprintf(out + used, n - used, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (used < n) snprintf(out + used, n - used, "]");
}

/* fill one row from its tensor: shape checked against the config, transposed from [in, out]
 * when stored that way, every value finite */
static int hf_fill_row(const HfSource* s, const HnModelConfig* mc, const HnParamRow* r, float* dst,
                       float* tmp, const char* src) {
    char name[HN_NAME_MAX + 32], have[160];
    int transposed;
    if (hf_name_of(s, mc->arch, r->name, name, sizeof name, &transposed) != HN_OK) return HN_ERR;
    const HnSafetensors* file;
    const HnStTensor* t = hf_lookup(s, name, &file);
    if (!t) return hn_error("%s: tensor %s is missing", src, name);
    int vocab_rows =
        strcmp(r->name, "tok_embed.weight") == 0 || strcmp(r->name, "lm_head.weight") == 0;
    int64_t rows = r->shape[0], cols = r->ndim == 2 ? r->shape[1] : 1;
    if (vocab_rows) rows = mc->V; /* hone pads the vocabulary; the padded rows stay zero */
    int64_t want0 = transposed ? cols : rows, want1 = transposed ? rows : cols;
    int ok = r->ndim == 2 ? t->rank == 2 && t->shape[0] == want0 && t->shape[1] == want1
                          : t->rank == 1 && t->shape[0] == rows;
    if (!ok) {
        shape_text(t, have, sizeof have);
        if (r->ndim == 2)
            return hn_error("%s: tensor %s has shape %s; this config.json needs [%lld, %lld]", src,
                            name, have, (long long)want0, (long long)want1);
        return hn_error("%s: tensor %s has shape %s; this config.json needs [%lld]", src, name,
                        have, (long long)rows);
    }
    size_t n = (size_t)rows * (size_t)cols;
    if (hn_safetensors_read_f32(file, name, transposed ? tmp : dst, n) != HN_OK) return HN_ERR;
    if (transposed) /* tmp is [cols, rows]: dst[i][j] = tmp[j][i] */
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                dst[i * cols + j] = tmp[j * rows + i];
    for (size_t i = 0; i < n; i++)
        if (!isfinite(dst[i])) return hn_error("%s: tensor %s holds a NaN or infinity", src, name);
    return HN_OK;
}

/* A classifier stored beside a tied embedding is ignored, as transformers ignores it when
 * it ties the two; say so when it differs. Tensors hone has no row for are an error (a
 * layer count that disagrees with config.json shows up here), except the buffers
 * transformers keeps in older files. */
static int hf_check_rest(const HfSource* s, const HnParamTable* t, const HnModelConfig* mc,
                         const char* src) {
    static const char* buffers[] = {".attn.bias", ".attn.masked_bias", ".rotary_emb.inv_freq"};
    char name[HN_NAME_MAX + 32];
    int transposed;
    for (int f = 0; f < s->nfiles; f++)
        for (int i = 0; i < hn_safetensors_count(s->files[f]); i++) {
            const HnStTensor* st = hn_safetensors_tensor(s->files[f], i);
            size_t len = strlen(st->name);
            int known = 0;
            for (size_t b = 0; b < sizeof buffers / sizeof buffers[0] && !known; b++) {
                size_t bl = strlen(buffers[b]);
                known = len > bl && strcmp(st->name + len - bl, buffers[b]) == 0;
            }
            for (int r = 0; r < t->n && !known; r++)
                known = hf_name_of(s, mc->arch, t->rows[r].name, name, sizeof name, &transposed) ==
                            HN_OK &&
                        strcmp(name, st->name) == 0;
            if (known) continue;
            if (strcmp(st->name, "lm_head.weight") != 0)
                return hn_error(
                    "%s: tensor %s is not part of a %s model as config.json describes it", src,
                    st->name, mc->arch == HN_ARCH_GPT2 ? "gpt2" : "llama");
            const float* wte = t->data + t->rows[hn_params_find(t, "tok_embed.weight")].offset;
            size_t n = (size_t)mc->V * mc->C;
            float* head = st->numel == n ? malloc(n * sizeof(float)) : NULL;
            int same = head && hn_safetensors_read_f32(s->files[f], st->name, head, n) == HN_OK &&
                       memcmp(head, wte, n * sizeof(float)) == 0;
            free(head);
            hn_error_clear();
            if (!same)
                fprintf(
                    stderr,
                    "note: %s: lm_head.weight differs from the token embedding and is ignored: the "
                    "classifier is tied, as config.json says (transformers ignores it too)\n",
                    src);
        }
    return HN_OK;
}

/* tokenizer.json, else GPT-2's vocab.json + merges.txt, else none (*tok NULL) */
static int hf_tokenizer(const char* dir, int vocab, HnTokenizer** tok) {
    char path[HN_STR + 32], merges[HN_STR + 32];
    *tok = NULL;
    if (hn_path(path, sizeof path, "%s/tokenizer.json", dir) != HN_OK) return HN_ERR;
    if (access(path, F_OK) == 0) {
        size_t len;
        char* json = read_small_file(path, 1u << 30, &len);
        if (!json) return HN_ERR;
        *tok = hn_tokenizer_from_json(json, len, path);
        free(json);
    } else {
        if (hn_path(path, sizeof path, "%s/vocab.json", dir) != HN_OK ||
            hn_path(merges, sizeof merges, "%s/merges.txt", dir) != HN_OK)
            return HN_ERR;
        if (access(path, F_OK) != 0 || access(merges, F_OK) != 0) {
            fprintf(
                stderr,
                "note: %s has no tokenizer.json and no vocab.json + merges.txt: the checkpoint's "
                "tokenizer is \"none\" (token shards still evaluate)\n",
                dir);
            return HN_OK;
        }
        *tok = hn_tokenizer_gpt2(path, merges);
    }
    if (!*tok) return HN_ERR;
    if (hn_tokenizer_vocab_size(*tok) > vocab) {
        int n = hn_tokenizer_vocab_size(*tok);
        hn_tokenizer_free(*tok);
        *tok = NULL;
        return hn_error("%s: the tokenizer has %d tokens, more than the model's vocab_size %d", dir,
                        n, vocab);
    }
    return HN_OK;
}

int hn_import_hf(const char* src, const char* out, const HnImportOptions* opt) {
    HfSource s = {0};
    struct stat sb;
    if (stat(src, &sb) != 0) return hn_error("%s: cannot open: %s", src, strerror(errno));
    int is_dir = S_ISDIR(sb.st_mode);
    size_t len = strlen(src);
    if (!is_dir && (len < 12 || strcmp(src + len - 12, ".safetensors") != 0))
        return hn_error("%s: neither a Hugging Face model folder nor a .safetensors file", src);
    if (is_dir) {
        if (hn_path(s.dir, sizeof s.dir, "%s", src) != HN_OK) return HN_ERR;
    } else {
        const char* slash = strrchr(src, '/');
        if (!slash)
            snprintf(s.dir, sizeof s.dir, ".");
        else if (hn_path(s.dir, sizeof s.dir, "%.*s", (int)(slash - src + (slash == src)), src) !=
                 HN_OK)
            return HN_ERR;
    }
    HnConfig cfg;
    HnParamTable t = {0};
    HnTokenizer* tok = NULL;
    float* tmp = NULL;
    int rc = config_from_hf(s.dir, &cfg);
    HnModelConfig mc = hn_model_config_of(&cfg);
    if (rc == HN_OK) rc = open_weights(&s, src, is_dir);
    const HnSafetensors* unused;
    if (rc == HN_OK && mc.arch == HN_ARCH_GPT2 && hf_lookup(&s, "transformer.wte.weight", &unused))
        snprintf(s.prefix, sizeof s.prefix, "transformer.");
    if (rc == HN_OK) rc = hn_model_table(&t, &mc);
    if (rc == HN_OK) rc = hn_params_alloc(&t);
    size_t largest = 0;
    for (int i = 0; rc == HN_OK && i < t.n; i++)
        if (t.rows[i].numel > largest) largest = t.rows[i].numel;
    if (rc == HN_OK && !(tmp = malloc(largest * sizeof(float)))) rc = hn_error("out of memory");
    for (int i = 0; rc == HN_OK && i < t.n; i++)
        rc = hf_fill_row(&s, &mc, &t.rows[i], t.data + t.rows[i].offset, tmp, src);
    if (rc == HN_OK) rc = hf_check_rest(&s, &t, &mc, src);
    if (rc == HN_OK) rc = hf_tokenizer(s.dir, cfg.model.vocab, &tok);
    if (rc == HN_OK) rc = write_checkpoint(&cfg, &t, tok, src, out, opt);
    free(tmp);
    hn_tokenizer_free(tok);
    hn_params_free(&t);
    for (int i = 0; i < s.nfiles; i++)
        hn_safetensors_close(s.files[i]);
    free(s.files);
    return rc;
}
