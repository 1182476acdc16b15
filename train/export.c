/* Exports of a checkpoint: merged hone checkpoint, Hugging Face folder; see export.h. */
#include "train/export.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/gguf.h"
#include "data/h5.h"
#include "data/h5ckpt.h"
#include "data/safetensors.h"
#include "data/tokenizer.h"
#include "train/model.h"
#include "train/names.h"
#include "train/peft/peft.h"

/* a checkpoint loaded whole, its foldable add-ons folded into the base rows */
typedef struct {
    HnConfig cfg;
    HnModel model;
    HnTokenizer* tok;
    int64_t step, tokens;
    int folded;   /* add-ons folded */
    int foldless; /* prefix, prompt / P-tuning or adapters present (they cannot fold) */
} Source;

static void source_free(Source* s) {
    hn_model_free(&s->model);
    if (s->tok) hn_tokenizer_free(s->tok);
}

static int load_source(const char* ckpt, Source* s, int merge) {
    memset(s, 0, sizeof *s);
    char* yaml = NULL;
    HnH5* f = hn_ckpt_open(ckpt, &yaml);
    if (!f) return HN_ERR;
    HnH5* base = NULL;
    hn_config_defaults(&s->cfg);
    int rc = hn_config_load_text(&s->cfg, yaml, ckpt);
    free(yaml);
    if (rc == HN_OK) rc = hn_ckpt_open_base(f, ckpt, &base);
    HnPeft plan;
    memset(&plan, 0, sizeof plan);
    if (rc == HN_OK) rc = hn_peft_plan(&plan, &s->cfg);
    if (rc == HN_OK) {
        s->folded = plan.n;
        s->foldless = plan.prefix.P > 0 || plan.prompt.P > 0 || plan.adapters.on;
        HnModelConfig mc = hn_model_config_of(&s->cfg);
        rc = hn_model_create_peft(&s->model, &mc, &plan, 1, 1);
    }
    HnParamTable* t = &s->model.params;
    if (rc == HN_OK && base) {
        rc = hn_ckpt_read_rows(base, "model", t, t->data, HN_ROWS_BASE);
        if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "model", t, t->data, HN_ROWS_BASE_TRAINABLE);
    } else if (rc == HN_OK) {
        rc = hn_ckpt_read_rows(f, "model", t, t->data, HN_ROWS_BASE);
    }
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "peft", t, t->data, HN_ROWS_ADDON);
    int64_t opt_t;
    if (rc == HN_OK) rc = hn_ckpt_counters(f, &s->step, &s->tokens, &opt_t);
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(f, &s->tok);
    if (rc == HN_OK && !s->tok && base) rc = hn_ckpt_tokenizer(base, &s->tok);
    /* LoRA, DoRA and IA3 into the base rows, exactly as the inference path folds them */
    if (rc == HN_OK && s->folded && merge) rc = hn_peft_merge(&s->model.peft, t);
    if (base) hn_h5_close(base);
    hn_h5_close(f);
    return rc;
}

/* out must not exist unless force; returns the temporary path to write (out.tmp.PID) */
static int prepare_out(const char* out, int force, char* tmp, size_t n) {
    struct stat st;
    if (!force && lstat(out, &st) == 0)
        return hn_error("%s exists — pass --force to replace it", out);
    if (hn_path(tmp, n, "%s.tmp.%d", out, (int)getpid()) != HN_OK) return HN_ERR;
    return hn_remove_tree(tmp);
}

/* move tmp onto out (a file or a folder), replacing what was there */
static int commit_out(const char* tmp, const char* out) {
    struct stat st;
    if (lstat(out, &st) == 0 && S_ISDIR(st.st_mode) && hn_remove_tree(out) != HN_OK) return HN_ERR;
    if (rename(tmp, out) != 0) return hn_error("cannot rename %s to %s", tmp, out);
    return HN_OK;
}

/* a written file tmp becomes out, with OUT.sha256 (sha256sum's format, naming out's base
 * name) beside it; on failure neither is left behind, nor is tmp */
static int commit_file_with_sums(const char* tmp, const char* out) {
    char sums[PATH_MAX], sums_tmp[PATH_MAX], hex[65];
    int rc = hn_path(sums, sizeof sums, "%s.sha256", out);
    if (rc == HN_OK) rc = hn_path(sums_tmp, sizeof sums_tmp, "%s.tmp", sums);
    if (rc == HN_OK) rc = hn_file_sha256(tmp, hex);
    if (rc == HN_OK) {
        const char* slash = strrchr(out, '/');
        FILE* f = fopen(sums_tmp, "w");
        int ok = f && fprintf(f, "%s  %s\n", hex, slash ? slash + 1 : out) > 0;
        if (f) ok = fclose(f) == 0 && ok;
        if (!ok) rc = hn_error("cannot write %s", sums_tmp);
    }
    if (rc == HN_OK) rc = commit_out(tmp, out);
    if (rc == HN_OK && rename(sums_tmp, sums) != 0) rc = hn_error("cannot write %s", sums);
    if (rc != HN_OK) {
        unlink(tmp);
        unlink(sums_tmp);
    }
    return rc;
}

/* SHA256SUMS lines for the named files of dir (sha256sum -c reads them) */
static int write_manifest(const char* dir, const char* manifest, const char* const* files, int n) {
    FILE* f = fopen(manifest, "w");
    if (!f) return hn_error("cannot write %s", manifest);
    int rc = HN_OK;
    for (int i = 0; rc == HN_OK && i < n; i++) {
        char path[PATH_MAX], hex[65];
        rc = hn_path(path, sizeof path, "%s/%s", dir, files[i]);
        if (rc == HN_OK) rc = hn_file_sha256(path, hex);
        if (rc == HN_OK && fprintf(f, "%s  %s\n", hex, files[i]) < 0)
            rc = hn_error("cannot write %s", manifest);
    }
    if (fclose(f) != 0 && rc == HN_OK) rc = hn_error("cannot write %s", manifest);
    return rc;
}

/* ---- hdf5-merged ---- */

int hn_export_merged(const char* ckpt, const char* out, int deflate, int force, HnExportStats* st) {
    memset(st, 0, sizeof *st);
    char tmp[PATH_MAX];
    if (prepare_out(out, force, tmp, sizeof tmp) != HN_OK) return HN_ERR;
    Source s;
    int rc = load_source(ckpt, &s, 1);
    /* the output's config: the whole model, only the add-ons that did not fold */
    HnConfig cfg = s.cfg;
    cfg.model.from[0] = '\0';
    cfg.peft.methods.n = 0;
    for (int i = 0; i < s.cfg.peft.methods.n; i++) {
        const char* m = s.cfg.peft.methods.item[i];
        if (!strcmp(m, "prefix") || !strcmp(m, "prompt") || !strcmp(m, "ptuning") ||
            !strcmp(m, "adapter"))
            memcpy(cfg.peft.methods.item[cfg.peft.methods.n++], m, HN_STR);
    }
    HnModel out_model;
    memset(&out_model, 0, sizeof out_model);
    HnPeft plan;
    memset(&plan, 0, sizeof plan);
    if (rc == HN_OK) rc = hn_peft_plan(&plan, &cfg);
    if (rc == HN_OK) {
        HnModelConfig mc = hn_model_config_of(&cfg);
        rc = hn_model_create_peft(&out_model, &mc, &plan, 1, 1);
    }
    /* every row of the output from the source's row of the same name */
    HnParamTable* t = &out_model.params;
    for (int i = 0; rc == HN_OK && i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        int j = hn_params_find(&s.model.params, r->name);
        if (j < 0 || s.model.params.rows[j].numel != r->numel) {
            rc = hn_error("internal: merged row %s has no source", r->name);
            break;
        }
        memcpy(t->data + r->offset, s.model.params.data + s.model.params.rows[j].offset,
               r->numel * sizeof(float));
        st->rows++;
        st->kept += r->addon;
        st->numel += (long long)r->numel;
    }
    st->folded = s.folded;
    char* text = NULL;
    if (rc == HN_OK && !(text = hn_config_to_text(&cfg))) rc = HN_ERR;
    if (rc == HN_OK) {
        HnCkptSave sv = {.config_yaml = text,
                         .arch = cfg.model.arch,
                         .step = s.step,
                         .tokens = s.tokens,
                         .params = t,
                         .best_val_loss = NAN,
                         .tokenizer = s.tok,
                         .deflate = deflate};
        rc = hn_ckpt_save(tmp, &sv);
    }
    if (rc == HN_OK)
        rc = commit_file_with_sums(tmp, out);
    else
        unlink(tmp);
    free(text);
    hn_model_free(&out_model);
    source_free(&s);
    return rc;
}

/* ---- hf ---- */

static int write_json(const char* path, cJSON* j) {
    char* text = cJSON_Print(j);
    FILE* f = text ? fopen(path, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    return ok ? HN_OK : hn_error("cannot write %s", path);
}

/* a float config value as its shortest decimal (1e-05, not 9.99999974737875e-06) */
static double decimal(float x) {
    char buf[32];
    snprintf(buf, sizeof buf, "%.7g", (double)x);
    return strtod(buf, NULL);
}

static cJSON* hf_config(const Source* s, const char* torch_dtype) {
    const HnModelConfig* c = &s->model.cfg;
    int gpt2 = c->arch == HN_ARCH_GPT2;
    cJSON* j = cJSON_CreateObject();
    cJSON* arch = cJSON_AddArrayToObject(j, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString(gpt2 ? "GPT2LMHeadModel" : "LlamaForCausalLM"));
    cJSON_AddStringToObject(j, "model_type", gpt2 ? "gpt2" : "llama");
    cJSON_AddNumberToObject(j, "vocab_size", c->V);
    int eos = s->tok ? hn_tokenizer_eos(s->tok) : c->V - 1;
    int bos = s->tok && hn_tokenizer_bos(s->tok) >= 0 ? hn_tokenizer_bos(s->tok) : eos;
    cJSON_AddNumberToObject(j, "bos_token_id", bos);
    cJSON_AddNumberToObject(j, "eos_token_id", eos);
    if (gpt2) {
        cJSON_AddNumberToObject(j, "n_embd", c->C);
        cJSON_AddNumberToObject(j, "n_layer", c->L);
        cJSON_AddNumberToObject(j, "n_head", c->NH);
        cJSON_AddNumberToObject(j, "n_positions", c->maxT);
        cJSON_AddNumberToObject(j, "n_ctx", c->maxT);
        cJSON_AddNumberToObject(j, "n_inner", c->F);
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", decimal(c->eps));
        cJSON_AddBoolToObject(j, "tie_word_embeddings", 1);
        cJSON_AddNumberToObject(j, "resid_pdrop", 0);
        cJSON_AddNumberToObject(j, "embd_pdrop", 0);
        cJSON_AddNumberToObject(j, "attn_pdrop", 0);
    } else {
        cJSON_AddNumberToObject(j, "hidden_size", c->C);
        cJSON_AddNumberToObject(j, "intermediate_size", c->F);
        cJSON_AddNumberToObject(j, "num_hidden_layers", c->L);
        cJSON_AddNumberToObject(j, "num_attention_heads", c->NH);
        cJSON_AddNumberToObject(j, "num_key_value_heads", c->NKV);
        cJSON_AddNumberToObject(j, "max_position_embeddings", c->maxT);
        cJSON_AddNumberToObject(j, "rms_norm_eps", decimal(c->eps));
        cJSON_AddNumberToObject(j, "rope_theta", decimal(c->rope_theta));
        cJSON_AddStringToObject(j, "hidden_act", "silu");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", !c->untied);
        cJSON_AddBoolToObject(j, "attention_bias", 0);
        cJSON_AddBoolToObject(j, "mlp_bias", 0);
        cJSON_AddNumberToObject(j, "attention_dropout", 0);
        cJSON_AddNullToObject(j, "rope_scaling");
    }
    cJSON_AddStringToObject(j, "torch_dtype", torch_dtype);
    cJSON_AddBoolToObject(j, "use_cache", 1);
    return j;
}

/* tokenizer.json as transformers' tokenizers reads it (hone's own extra object removed) and
 * tokenizer_config.json with the special tokens and chat template hone keeps beside it */
static int hf_tokenizer(const HnTokenizer* tok, const char* dir, const char** files, int* nfiles) {
    char* text = hn_tokenizer_to_json(tok);
    if (!text) return HN_ERR;
    cJSON* j = cJSON_Parse(text);
    free(text);
    if (!j) return hn_error("internal: the tokenizer's JSON does not parse");
    cJSON_DeleteItemFromObjectCaseSensitive(j, "hone");
    char path[PATH_MAX];
    int rc = hn_path(path, sizeof path, "%s/tokenizer.json", dir);
    if (rc == HN_OK) rc = write_json(path, j);
    cJSON_Delete(j);
    if (rc != HN_OK) return rc;
    files[(*nfiles)++] = "tokenizer.json";
    cJSON* c = cJSON_CreateObject();
    size_t len;
    int eos = hn_tokenizer_eos(tok), bos = hn_tokenizer_bos(tok);
    const char* e = hn_tokenizer_token_bytes(tok, eos, &len);
    char buf[256];
    snprintf(buf, sizeof buf, "%.*s", (int)(len < 255 ? len : 255), e ? e : "");
    cJSON_AddStringToObject(c, "eos_token", buf);
    if (bos >= 0) {
        const char* b = hn_tokenizer_token_bytes(tok, bos, &len);
        snprintf(buf, sizeof buf, "%.*s", (int)(len < 255 ? len : 255), b ? b : "");
        cJSON_AddStringToObject(c, "bos_token", buf);
    }
    cJSON_AddBoolToObject(c, "add_bos_token", 0);
    cJSON_AddStringToObject(c, "tokenizer_class", "PreTrainedTokenizerFast");
    if (hn_tokenizer_chat_template(tok))
        cJSON_AddStringToObject(c, "chat_template", hn_tokenizer_chat_template(tok));
    rc = hn_path(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (rc == HN_OK) rc = write_json(path, c);
    cJSON_Delete(c);
    if (rc == HN_OK) files[(*nfiles)++] = "tokenizer_config.json";
    return rc;
}

int hn_export_hf(const char* ckpt, const char* out, HnExportDtype dtype, int force,
                 HnExportStats* st) {
    memset(st, 0, sizeof *st);
    char tmp[PATH_MAX];
    if (prepare_out(out, force, tmp, sizeof tmp) != HN_OK) return HN_ERR;
    Source s;
    int rc = load_source(ckpt, &s, 1);
    if (rc == HN_OK && s.foldless)
        rc = hn_error("%s has prefix, prompt or adapter rows, which do not fold into a plain "
                      "transformers model: export it as --format hdf5-merged",
                      ckpt);
    const HnParamTable* t = &s.model.params;
    const int gpt2 = s.model.cfg.arch == HN_ARCH_GPT2;
    HnStOut* outs = rc == HN_OK ? calloc((size_t)t->n, sizeof *outs) : NULL;
    char(*names)[160] = rc == HN_OK ? calloc((size_t)t->n, sizeof *names) : NULL;
    if (rc == HN_OK && (!outs || !names)) rc = hn_error("out of memory");
    int n = 0;
    for (int i = 0; rc == HN_OK && i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (r->addon) continue; /* folded into the base rows */
        int transposed = 0;
        rc = hn_hf_row_name(gpt2, "transformer.", r->name, names[n], sizeof names[n], &transposed);
        if (rc != HN_OK) break;
        HnStOut* o = &outs[n++];
        o->name = names[n - 1];
        o->data = t->data + r->offset;
        o->rank = r->ndim;
        for (int d = 0; d < r->ndim; d++)
            o->shape[d] = r->shape[d];
        if (!strcmp(r->name, "tok_embed.weight") || !strcmp(r->name, "lm_head.weight"))
            o->shape[0] = s.model.cfg.V; /* hone pads the vocabulary rows; HF does not */
        if (transposed && r->ndim == 2) {
            o->transpose = 1;
            o->shape[0] = r->shape[1];
            o->shape[1] = r->shape[0];
        }
        st->rows++;
        st->numel += (long long)r->numel;
    }
    st->folded = s.folded;
    static const char* dtype_names[] = {"float32", "float16", "bfloat16"};
    static const HnStDtype st_types[] = {HN_ST_F32, HN_ST_F16, HN_ST_BF16};
    const char* files[8];
    int nfiles = 0;
    char path[PATH_MAX];
    if (rc == HN_OK) rc = hn_mkdirs(tmp);
    if (rc == HN_OK) rc = hn_path(path, sizeof path, "%s/model.safetensors", tmp);
    if (rc == HN_OK) rc = hn_safetensors_write(path, outs, n, st_types[dtype]);
    if (rc == HN_OK) files[nfiles++] = "model.safetensors";
    if (rc == HN_OK) {
        cJSON* j = hf_config(&s, dtype_names[dtype]);
        rc = hn_path(path, sizeof path, "%s/config.json", tmp);
        if (rc == HN_OK) rc = write_json(path, j);
        cJSON_Delete(j);
        if (rc == HN_OK) files[nfiles++] = "config.json";
    }
    if (rc == HN_OK) {
        cJSON* g = cJSON_CreateObject();
        int eos = s.tok ? hn_tokenizer_eos(s.tok) : s.model.cfg.V - 1;
        cJSON_AddNumberToObject(g, "eos_token_id", eos);
        cJSON_AddNumberToObject(g, "bos_token_id",
                                s.tok && hn_tokenizer_bos(s.tok) >= 0 ? hn_tokenizer_bos(s.tok)
                                                                      : eos);
        rc = hn_path(path, sizeof path, "%s/generation_config.json", tmp);
        if (rc == HN_OK) rc = write_json(path, g);
        cJSON_Delete(g);
        if (rc == HN_OK) files[nfiles++] = "generation_config.json";
    }
    /* a BPE tokenizer travels as tokenizer.json (the byte tokenizer has no HF form) */
    if (rc == HN_OK && s.tok && strcmp(hn_tokenizer_name(s.tok), "byte") != 0)
        rc = hf_tokenizer(s.tok, tmp, files, &nfiles);
    if (rc == HN_OK) rc = hn_path(path, sizeof path, "%s/SHA256SUMS", tmp);
    if (rc == HN_OK) rc = write_manifest(tmp, path, files, nfiles);
    if (rc == HN_OK) rc = commit_out(tmp, out);
    if (rc != HN_OK) hn_remove_tree(tmp);
    free(outs);
    free(names);
    source_free(&s);
    return rc;
}

/* ---- peft ---- */

/* transformers' module path of a linear site in layer l (no "base_model.model." prefix) */
static int hf_module(int gpt2, int layer, HnLinear lin, char* out, size_t n) {
    static const char* gpt2_mod[] = {[HN_LIN_QKV] = "attn.c_attn",
                                     [HN_LIN_O] = "attn.c_proj",
                                     [HN_LIN_UP] = "mlp.c_fc",
                                     [HN_LIN_DOWN] = "mlp.c_proj"};
    static const char* llama_mod[] = {
        [HN_LIN_Q] = "self_attn.q_proj", [HN_LIN_K] = "self_attn.k_proj",
        [HN_LIN_V] = "self_attn.v_proj", [HN_LIN_O] = "self_attn.o_proj",
        [HN_LIN_GATE] = "mlp.gate_proj", [HN_LIN_UP] = "mlp.up_proj",
        [HN_LIN_DOWN] = "mlp.down_proj"};
    const char* m = NULL;
    if (gpt2 && lin < (int)(sizeof gpt2_mod / sizeof *gpt2_mod)) m = gpt2_mod[lin];
    if (!gpt2 && lin < (int)(sizeof llama_mod / sizeof *llama_mod)) m = llama_mod[lin];
    if (!m) return hn_error("a linear of layer %d has no transformers module to target", layer);
    snprintf(out, n, gpt2 ? "transformer.h.%d.%s" : "model.layers.%d.%s", layer, m);
    return HN_OK;
}

/* LoRA (DoRA) or IA3: PEFT's tensors under transformers' module names, and their config */
static int adapter_tensors(const Source* s, const char* ckpt, HnStOut* outs, char (*names)[192],
                           int* n, cJSON* cfgj, HnExportStats* st) {
    const HnPeft* p = &s->model.peft;
    const HnParamTable* t = &s->model.params;
    const int gpt2 = s->model.cfg.arch == HN_ARCH_GPT2;
    int lora = 0, rc = HN_OK;
    for (int i = 0; i < p->n; i++)
        lora |= p->a[i].kind == HN_ADD_LORA || p->a[i].kind == HN_ADD_DORA;
    cJSON* targets = cJSON_AddArrayToObject(cfgj, "target_modules");
    cJSON* ff = cJSON_CreateArray();
    char mod[128], row[160];
    for (int i = 0; rc == HN_OK && i < p->n; i++) {
        const HnAddon* a = &p->a[i];
        if (a->off != 0 || a->out != a->base_out) {
            rc = hn_error("%s: LoRA on %s, a slice of GPT-2's fused attn.qkv, has no PEFT form "
                          "(PEFT adapts whole modules: target attn.qkv)",
                          ckpt, a->site);
            break;
        }
        if ((rc = hf_module(gpt2, a->layer, a->lin, mod, sizeof mod)) != HN_OK) break;
        cJSON_AddItemToArray(targets, cJSON_CreateString(mod));
        if (a->kind == HN_ADD_IA3_IN) cJSON_AddItemToArray(ff, cJSON_CreateString(mod));
        const char* parts[3] = {"lora_A", "lora_B", "dora_m"};
        const char* peft_parts[3] = {"lora_A.weight", "lora_B.weight", "lora_magnitude_vector"};
        int nparts = a->kind == HN_ADD_DORA ? 3 : a->kind == HN_ADD_LORA ? 2 : 1;
        for (int k = 0; rc == HN_OK && k < nparts; k++) {
            snprintf(row, sizeof row, "layers.%d.%s.%s", a->layer, a->site,
                     lora ? parts[k] : "ia3");
            int j = hn_params_find(t, row);
            if (j < 0) {
                rc = hn_error("internal: no row %s", row);
                break;
            }
            const HnParamRow* r = &t->rows[j];
            HnStOut* o = &outs[*n];
            snprintf(names[*n], sizeof names[0], "base_model.model.%s.%s", mod,
                     lora ? peft_parts[k] : "ia3_l");
            o->name = names[*n];
            o->data = t->data + r->offset;
            if (!lora) { /* PEFT keeps (out, 1), or (1, in) on feed-forward modules */
                o->rank = 2;
                o->shape[0] = a->kind == HN_ADD_IA3_IN ? 1 : (int64_t)r->numel;
                o->shape[1] = a->kind == HN_ADD_IA3_IN ? (int64_t)r->numel : 1;
            } else {
                o->rank = r->ndim;
                for (int d = 0; d < r->ndim; d++)
                    o->shape[d] = r->shape[d];
            }
            (*n)++;
            st->rows++;
            st->numel += (long long)r->numel;
        }
    }
    const HnConfig* c = &s->cfg;
    cJSON_AddStringToObject(cfgj, "peft_type", lora ? "LORA" : "IA3");
    cJSON_AddBoolToObject(cfgj, "fan_in_fan_out", gpt2); /* GPT-2's Conv1D */
    if (lora) {
        cJSON_AddNumberToObject(cfgj, "r", c->peft.lora.rank);
        cJSON_AddNumberToObject(cfgj, "lora_alpha", decimal(c->peft.lora.alpha));
        cJSON_AddNumberToObject(cfgj, "lora_dropout", decimal(c->peft.lora.dropout));
        cJSON_AddBoolToObject(cfgj, "use_rslora", c->peft.lora.rslora);
        cJSON_AddBoolToObject(cfgj, "use_dora", c->peft.lora.dora);
        cJSON_AddStringToObject(cfgj, "bias", "none");
        cJSON_AddBoolToObject(cfgj, "init_lora_weights", 1);
        cJSON_Delete(ff);
    } else {
        cJSON_AddItemToObject(cfgj, "feedforward_modules", ff);
        cJSON_AddBoolToObject(cfgj, "init_ia3_weights", 1);
    }
    return rc;
}

/* prefix tuning, prompt tuning or P-tuning: one tensor, prompt_embeddings, holding what
 * peft's save_pretrained holds (the prefix after its projection, the virtual tokens after
 * P-tuning's encoder: PEFT loads these into the embedding it uses for inference) */
static int virtual_tensors(const Source* s, float** values, HnStOut* o, cJSON* cfgj,
                           HnExportStats* st) {
    const HnPeft* p = &s->model.peft;
    const HnModelConfig* mc = &s->model.cfg;
    const int prefix = p->prefix.P > 0;
    const int P = prefix ? p->prefix.P : p->prompt.P;
    const int cols = prefix ? p->prefix.cols : mc->C;
    float* v = malloc((size_t)P * cols * sizeof(float));
    if (!v) return hn_error("out of memory");
    *values = v;
    int rc = prefix ? hn_peft_prefix_values(p, &s->model.params, v)
                    : hn_peft_prompt_values(p, &s->model.params, v);
    o->name = "prompt_embeddings";
    o->data = v;
    o->rank = 2;
    o->shape[0] = P;
    o->shape[1] = cols;
    st->rows = 1;
    st->numel = (long long)P * cols;
    const char* type = prefix ? "PREFIX_TUNING" : p->prompt.hidden ? "P_TUNING" : "PROMPT_TUNING";
    cJSON_AddStringToObject(cfgj, "peft_type", type);
    cJSON_AddNumberToObject(cfgj, "num_virtual_tokens", P);
    cJSON_AddNumberToObject(cfgj, "num_transformer_submodules", 1);
    cJSON_AddNumberToObject(cfgj, "num_layers", mc->L);
    /* a prefix is KV wide: PEFT takes token_dim and heads from the key/value heads */
    const int HS = mc->C / mc->NH, NKV = mc->NKV ? mc->NKV : mc->NH;
    cJSON_AddNumberToObject(cfgj, "token_dim", prefix ? NKV * HS : mc->C);
    cJSON_AddNumberToObject(cfgj, "num_attention_heads", prefix ? NKV : mc->NH);
    if (prefix) {
        cJSON_AddBoolToObject(cfgj, "prefix_projection", p->prefix.hidden > 0);
        cJSON_AddNumberToObject(cfgj, "encoder_hidden_size",
                                p->prefix.hidden ? p->prefix.hidden : mc->C);
    } else if (p->prompt.hidden) {
        cJSON_AddStringToObject(cfgj, "encoder_reparameterization_type", "MLP");
        cJSON_AddNumberToObject(cfgj, "encoder_hidden_size", p->prompt.hidden);
        cJSON_AddNumberToObject(cfgj, "encoder_num_layers", 2);
        cJSON_AddNumberToObject(cfgj, "encoder_dropout", 0.0);
    } else {
        cJSON_AddStringToObject(cfgj, "prompt_tuning_init", "RANDOM");
    }
    return rc;
}

int hn_export_peft(const char* ckpt, const char* out, HnExportDtype dtype, int force,
                   HnExportStats* st) {
    memset(st, 0, sizeof *st);
    char tmp[PATH_MAX];
    if (prepare_out(out, force, tmp, sizeof tmp) != HN_OK) return HN_ERR;
    Source s;
    int rc = load_source(ckpt, &s, 0);
    const HnPeft* p = &s.model.peft;
    int lora = 0, ia3 = 0;
    for (int i = 0; rc == HN_OK && i < p->n; i++) {
        lora |= p->a[i].kind == HN_ADD_LORA || p->a[i].kind == HN_ADD_DORA;
        ia3 |= p->a[i].kind == HN_ADD_IA3_OUT || p->a[i].kind == HN_ADD_IA3_IN;
    }
    const int prefix = rc == HN_OK && p->prefix.P > 0, prompt = rc == HN_OK && p->prompt.P > 0;
    if (rc == HN_OK && (p->adapters.on || p->bitfit))
        rc = hn_error("%s: %s has no PEFT form (use --format hdf5-merged)", ckpt,
                      p->adapters.on ? "a bottleneck adapter" : "BitFit");
    if (rc == HN_OK && lora + ia3 + prefix + prompt != 1)
        rc = hn_error("%s: a PEFT adapter holds one method; this checkpoint has %s", ckpt,
                      lora + ia3 + prefix + prompt ? "several" : "none");
    const int n_max = 3 * (rc == HN_OK ? p->n : 0) + 1; /* lora_A, lora_B, magnitude; or one */
    HnStOut* outs = rc == HN_OK ? calloc((size_t)n_max, sizeof *outs) : NULL;
    char(*names)[192] = rc == HN_OK ? calloc((size_t)n_max, sizeof *names) : NULL;
    if (rc == HN_OK && (!outs || !names)) rc = hn_error("out of memory");
    cJSON* cfgj = cJSON_CreateObject();
    cJSON_AddStringToObject(cfgj, "task_type", "CAUSAL_LM");
    cJSON_AddStringToObject(cfgj, "base_model_name_or_path", "");
    cJSON_AddBoolToObject(cfgj, "inference_mode", 1);
    int n = 0;
    float* values = NULL;
    if (rc == HN_OK && (prefix || prompt)) {
        rc = virtual_tensors(&s, &values, &outs[0], cfgj, st);
        n = 1;
    } else if (rc == HN_OK) {
        rc = adapter_tensors(&s, ckpt, outs, names, &n, cfgj, st);
    }
    static const HnStDtype st_types[] = {HN_ST_F32, HN_ST_F16, HN_ST_BF16};
    const char* files[3];
    int nfiles = 0;
    char path[PATH_MAX];
    if (rc == HN_OK) rc = hn_mkdirs(tmp);
    if (rc == HN_OK) rc = hn_path(path, sizeof path, "%s/adapter_model.safetensors", tmp);
    if (rc == HN_OK) rc = hn_safetensors_write(path, outs, n, st_types[dtype]);
    if (rc == HN_OK) files[nfiles++] = "adapter_model.safetensors";
    if (rc == HN_OK) rc = hn_path(path, sizeof path, "%s/adapter_config.json", tmp);
    if (rc == HN_OK) rc = write_json(path, cfgj);
    if (rc == HN_OK) files[nfiles++] = "adapter_config.json";
    cJSON_Delete(cfgj);
    if (rc == HN_OK) rc = hn_path(path, sizeof path, "%s/SHA256SUMS", tmp);
    if (rc == HN_OK) rc = write_manifest(tmp, path, files, nfiles);
    if (rc == HN_OK) rc = commit_out(tmp, out);
    if (rc != HN_OK) hn_remove_tree(tmp);
    st->folded = 0;
    st->kept = n;
    free(values);
    free(outs);
    free(names);
    source_free(&s);
    return rc;
}

/* ---- gguf ---- */

/* llama.cpp's Q/K row order within each head: its row 2i+j is HF's row j*HS/2 + i (the
 * inverse of train/import.c's unpermute) */
static float* permute_rows(const float* w, int heads, int HS, int C) {
    float* out = malloc((size_t)heads * HS * C * sizeof(float));
    if (!out) {
        hn_error("out of memory");
        return NULL;
    }
    for (int h = 0; h < heads; h++)
        for (int i = 0; i < HS / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(out + ((size_t)h * HS + 2 * i + j) * C,
                       w + ((size_t)h * HS + j * HS / 2 + i) * C, (size_t)C * sizeof(float));
    return out;
}

/* the tokenizer as GGUF metadata (tokenizer.ggml.*), from its tokenizer.json form */
static int gguf_tokenizer(HnGgufWriter* w, const HnTokenizer* tok) {
    char* text = hn_tokenizer_to_json(tok);
    cJSON* j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) return hn_error("internal: the tokenizer's JSON does not parse");
    const cJSON* model = cJSON_GetObjectItemCaseSensitive(j, "model");
    const cJSON* vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON* merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON* added = cJSON_GetObjectItemCaseSensitive(j, "added_tokens");
    const cJSON* pre = cJSON_GetObjectItemCaseSensitive(j, "pre_tokenizer");
    int V = hn_tokenizer_vocab_size(tok), rc = HN_OK;
    const char** strs = calloc((size_t)V, sizeof *strs);
    size_t* lens = calloc((size_t)V, sizeof *lens);
    int32_t* types = calloc((size_t)V, sizeof *types);
    int nm = cJSON_GetArraySize(merges);
    const char** mstrs = calloc((size_t)nm + 1, sizeof *mstrs);
    size_t* mlens = calloc((size_t)nm + 1, sizeof *mlens);
    char** joined = calloc((size_t)nm + 1, sizeof *joined);
    if (!strs || !lens || !types || !mstrs || !mlens || !joined) rc = hn_error("out of memory");
    const cJSON* it;
    if (rc == HN_OK && !cJSON_IsObject(vocab)) rc = hn_error("internal: no BPE vocabulary");
    cJSON_ArrayForEach(it, vocab) {
        int id = (int)cJSON_GetNumberValue(it);
        if (rc == HN_OK && (id < 0 || id >= V)) rc = hn_error("internal: vocabulary id %d", id);
        if (rc != HN_OK) break;
        strs[id] = it->string;
        lens[id] = strlen(it->string);
        types[id] = 1;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON* id = cJSON_GetObjectItemCaseSensitive(it, "id");
        const cJSON* content = cJSON_GetObjectItemCaseSensitive(it, "content");
        int k = (int)cJSON_GetNumberValue(id);
        if (rc == HN_OK && cJSON_IsString(content) && k >= 0 && k < V) {
            strs[k] = content->valuestring;
            lens[k] = strlen(content->valuestring);
            types[k] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special")) ? 3 : 1;
        }
    }
    for (int i = 0; rc == HN_OK && i < V; i++)
        if (!strs[i]) rc = hn_error("internal: token %d has no text", i);
    int m = 0;
    cJSON_ArrayForEach(it, merges) {
        if (rc != HN_OK) break;
        if (cJSON_IsString(it)) {
            mstrs[m] = it->valuestring;
        } else if (cJSON_GetArraySize(it) == 2) { /* [left, right] */
            const char* a = cJSON_GetStringValue(cJSON_GetArrayItem(it, 0));
            const char* b = cJSON_GetStringValue(cJSON_GetArrayItem(it, 1));
            size_t la = a ? strlen(a) : 0, lb = b ? strlen(b) : 0;
            if (!(joined[m] = malloc(la + lb + 2))) {
                rc = hn_error("out of memory");
                break;
            }
            snprintf(joined[m], la + lb + 2, "%s %s", a ? a : "", b ? b : "");
            mstrs[m] = joined[m];
        } else {
            rc = hn_error("internal: a merge is neither \"a b\" nor [a, b]");
            break;
        }
        mlens[m] = strlen(mstrs[m]);
        m++;
    }
    /* Digits(individual) before ByteLevel is SmolLM2's pre-tokenizer */
    char* pre_text = pre ? cJSON_PrintUnformatted(pre) : NULL;
    const char* pre_name = pre_text && strstr(pre_text, "\"Digits\"") ? "smollm" : "gpt2";
    int eos = hn_tokenizer_eos(tok), bos = hn_tokenizer_bos(tok);
    if (rc == HN_OK) rc = hn_gguf_put_str(w, "tokenizer.ggml.model", "gpt2", 4);
    if (rc == HN_OK) rc = hn_gguf_put_str(w, "tokenizer.ggml.pre", pre_name, strlen(pre_name));
    if (rc == HN_OK) rc = hn_gguf_put_strs(w, "tokenizer.ggml.tokens", strs, lens, (size_t)V);
    if (rc == HN_OK) rc = hn_gguf_put_i32s(w, "tokenizer.ggml.token_type", types, (size_t)V);
    if (rc == HN_OK) rc = hn_gguf_put_strs(w, "tokenizer.ggml.merges", mstrs, mlens, (size_t)m);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
    if (rc == HN_OK && bos >= 0)
        rc = hn_gguf_put_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    if (rc == HN_OK) rc = hn_gguf_put_bool(w, "tokenizer.ggml.add_bos_token", bos >= 0);
    if (rc == HN_OK) rc = hn_gguf_put_bool(w, "tokenizer.ggml.add_space_prefix", 0);
    const char* tmpl = hn_tokenizer_chat_template(tok);
    if (rc == HN_OK && tmpl) rc = hn_gguf_put_str(w, "tokenizer.chat_template", tmpl, strlen(tmpl));
    free(pre_text);
    for (int i = 0; joined && i < nm; i++)
        free(joined[i]);
    free(joined), free(mstrs), free(mlens), free(strs), free(lens), free(types);
    cJSON_Delete(j);
    return rc;
}

int hn_export_gguf(const char* ckpt, const char* out, HnGgufDtype dtype, int force,
                   HnExportStats* st) {
    memset(st, 0, sizeof *st);
    char tmp[PATH_MAX];
    if (prepare_out(out, force, tmp, sizeof tmp) != HN_OK) return HN_ERR;
    Source s;
    int rc = load_source(ckpt, &s, 1);
    const HnModelConfig* c = &s.model.cfg;
    if (rc == HN_OK && c->arch != HN_ARCH_LLAMA)
        rc = hn_error("%s: GGUF export covers Llama-family models (this one is GPT-2)", ckpt);
    if (rc == HN_OK && s.foldless)
        rc = hn_error("%s has prefix, prompt or adapter rows, which do not fold into a GGUF "
                      "model: export it as --format hdf5-merged",
                      ckpt);
    if (rc == HN_OK && (!s.tok || strcmp(hn_tokenizer_name(s.tok), "byte") == 0 ||
                        strcmp(hn_tokenizer_name(s.tok), "gpt2") == 0))
        rc = hn_error("%s: GGUF export needs the model's own BPE tokenizer (an imported "
                      "model's); this checkpoint has %s",
                      ckpt, s.tok ? hn_tokenizer_name(s.tok) : "none");
    HnGgufWriter* w = rc == HN_OK ? hn_gguf_writer_new() : NULL;
    if (rc == HN_OK && !w) rc = HN_ERR;
    const int HS = rc == HN_OK ? c->C / c->NH : 0; /* c is zeroed when the load failed */
    const char* slash = strrchr(ckpt, '/');
    const char* base = slash ? slash + 1 : ckpt;
    static const int file_type[] = {0, 1, 7}; /* llama.cpp: ALL_F32, MOSTLY_F16, MOSTLY_Q8_0 */
    if (rc == HN_OK) rc = hn_gguf_put_str(w, "general.architecture", "llama", 5);
    if (rc == HN_OK) rc = hn_gguf_put_str(w, "general.name", base, strlen(base));
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "general.file_type", (uint32_t)file_type[dtype]);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "general.quantization_version", 2);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.block_count", (uint32_t)c->L);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.context_length", (uint32_t)c->maxT);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.embedding_length", (uint32_t)c->C);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.feed_forward_length", (uint32_t)c->F);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.attention.head_count", (uint32_t)c->NH);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.attention.head_count_kv", (uint32_t)c->NKV);
    if (rc == HN_OK) rc = hn_gguf_put_f32(w, "llama.rope.freq_base", c->rope_theta);
    if (rc == HN_OK) rc = hn_gguf_put_f32(w, "llama.attention.layer_norm_rms_epsilon", c->eps);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.vocab_size", (uint32_t)c->V);
    if (rc == HN_OK) rc = hn_gguf_put_u32(w, "llama.rope.dimension_count", (uint32_t)HS);
    if (rc == HN_OK) rc = gguf_tokenizer(w, s.tok);
    /* tensors: matrices in the chosen type, vectors (the norms) in F32 as llama.cpp keeps
     * them; Q and K rows in llama.cpp's order */
    static const int mtype[] = {HN_GGML_F32, HN_GGML_F16, HN_GGML_Q8_0};
    const HnParamTable* t = &s.model.params;
    float* owned[256] = {0};
    int nowned = 0;
    for (int i = 0; rc == HN_OK && i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (r->addon) continue;
        char name[128];
        rc = hn_gguf_row_name(r->name, name, sizeof name);
        if (rc != HN_OK) break;
        const float* data = t->data + r->offset;
        int64_t dims[2] = {r->ndim == 2 ? r->shape[1] : r->shape[0],
                           r->ndim == 2 ? r->shape[0] : 1};
        if (!strcmp(r->name, "tok_embed.weight") || !strcmp(r->name, "lm_head.weight"))
            dims[1] = c->V; /* hone's padded rows stay home */
        int layer, used = 0;
        if (sscanf(r->name, "layers.%d.%n", &layer, &used) == 1 &&
            (!strcmp(r->name + used, "attn.q.weight") ||
             !strcmp(r->name + used, "attn.k.weight"))) {
            int heads = !strcmp(r->name + used, "attn.q.weight") ? c->NH : c->NKV;
            float* p = nowned < 256 ? permute_rows(data, heads, HS, c->C) : NULL;
            if (!p) {
                rc = nowned < 256 ? HN_ERR : hn_error("internal: too many permuted rows");
                break;
            }
            owned[nowned++] = p;
            data = p;
        }
        int type = r->ndim == 2 ? mtype[dtype] : HN_GGML_F32;
        rc = hn_gguf_put_tensor(w, name, data, r->ndim, dims, type);
        st->rows++;
        st->numel += (long long)(dims[0] * dims[1]);
    }
    st->folded = s.folded;
    if (rc == HN_OK) rc = hn_gguf_write(w, tmp);
    if (rc == HN_OK)
        rc = commit_file_with_sums(tmp, out);
    else
        unlink(tmp);
    for (int i = 0; i < nowned; i++)
        free(owned[i]);
    hn_gguf_writer_free(w);
    source_free(&s);
    return rc;
}
