/*
 * `hone import ADAPTER_DIR --base BASE.h5 -o OUT.h5`: a PEFT adapter (adapter_config.json and
 * adapter_model.safetensors, as peft's save_pretrained writes them) onto a hone base, as a
 * frozen-base checkpoint that names the base by path and hash; see import.h. LoRA, DoRA and
 * IA3 tensors map to hone's add-on rows one by one; prefix, prompt and P-tuning adapters
 * are one tensor each (virtual_config).
 */
#include <cjson/cJSON.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/h5.h"
#include "data/h5ckpt.h"
#include "data/safetensors.h"
#include "train/import.h"
#include "train/model.h"
#include "train/peft/peft.h"

/* transformers' module (after "layers.N." / "h.N.") -> hone's site */
static const struct {
    const char *hf, *site;
} MODULES[] = {
    {"self_attn.q_proj", "attn.q"}, {"self_attn.k_proj", "attn.k"}, {"self_attn.v_proj", "attn.v"},
    {"self_attn.o_proj", "attn.o"}, {"mlp.gate_proj", "mlp.gate"},  {"mlp.up_proj", "mlp.up"},
    {"mlp.down_proj", "mlp.down"},  {"attn.c_attn", "attn.qkv"},    {"attn.c_proj", "attn.o"},
    {"mlp.c_fc", "mlp.up"},         {"mlp.c_proj", "mlp.down"},
};

/* a PEFT key -> layer, hone site and the tensor's part ("lora_A.weight", "ia3_l", ...) */
static int parse_key(const char* key, int* layer, const char** site, const char** part) {
    const char* p = strstr(key, ".layers.");
    int used = 0;
    if (p && sscanf(p, ".layers.%d.%n", layer, &used) == 1 && used > 0) {
        p += used;
    } else if ((p = strstr(key, ".h.")) && sscanf(p, ".h.%d.%n", layer, &used) == 1 && used > 0) {
        p += used;
    } else {
        return hn_error("adapter tensor %s is not in a numbered layer", key);
    }
    for (size_t i = 0; i < sizeof MODULES / sizeof *MODULES; i++) {
        size_t n = strlen(MODULES[i].hf);
        if (!strncmp(p, MODULES[i].hf, n) && p[n] == '.') {
            *site = MODULES[i].site;
            *part = p + n + 1;
            return HN_OK;
        }
    }
    return hn_error("adapter tensor %s targets a module hone does not know", key);
}

static cJSON* read_json_file(const char* path) {
    size_t n;
    char* buf = hn_read_file(path, &n);
    if (!buf) return NULL;
    cJSON* j = NULL;
    if (n >= 1 << 16)
        hn_error("%s is larger than 64 KiB: not an adapter_config.json", path);
    else if (!(j = cJSON_Parse(buf)))
        hn_error("%s is not valid JSON", path);
    free(buf);
    return j;
}

static int json_int(const cJSON* ac, const char* key, int fallback) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(ac, key);
    return cJSON_IsNumber(v) ? v->valueint : cJSON_IsNull(v) || !v ? fallback : INT_MIN;
}

/* prefix tuning, prompt tuning, P-tuning: one tensor, prompt_embeddings, holding the prefix
 * (P, 2 L KV) after any projection, or the virtual tokens (P, C) after any encoder (what
 * PEFT's inference uses). Both become plain rows: a prefix without projection, prompt
 * tuning's virtual tokens (P-tuning's encoder is not saved by PEFT). */
static int virtual_config(const cJSON* ac, const char* path, const HnSafetensors* st, int prefix,
                          HnConfig* cfg) {
    const HnModelConfig mc = hn_model_config_of(cfg);
    const int P = json_int(ac, "num_virtual_tokens", INT_MIN);
    const int sub = json_int(ac, "num_transformer_submodules", 1);
    const int layers = json_int(ac, "num_layers", mc.L);
    if (P < 1 || P > 1 << 16) return hn_error("%s: num_virtual_tokens must be 1..65536", path);
    if (sub != 1)
        return hn_error("%s: num_transformer_submodules %d: hone imports decoder-only adapters (1)",
                        path, sub);
    if (layers != mc.L) return hn_error("%s: num_layers %d; the base has %d", path, layers, mc.L);
    const int NKV = mc.NKV ? mc.NKV : mc.NH, KV = NKV * (mc.C / mc.NH);
    const int64_t cols = prefix ? 2 * (int64_t)mc.L * KV : mc.C;
    const HnStTensor* x = hn_safetensors_find(st, "prompt_embeddings");
    if (!x || hn_safetensors_count(st) != 1)
        return hn_error("%s: the adapter must hold one tensor, prompt_embeddings", path);
    if (x->rank != 2 || x->shape[0] != P || x->shape[1] != cols)
        return hn_error("%s: prompt_embeddings is not (%d, %lld) (num_virtual_tokens, %s) for "
                        "this base",
                        path, P, (long long)cols,
                        prefix ? "2 x layers x key/value width" : "channels");
    if (mc.maxT <= P) return hn_error("%s: %d virtual positions fill the base's context", path, P);
    cfg->peft.methods.n = 1;
    snprintf(cfg->peft.methods.item[0], HN_STR, "%s", prefix ? "prefix" : "prompt");
    if (prefix) {
        cfg->peft.prefix.length = P;
        cfg->peft.prefix.projection = 0;
    } else {
        cfg->peft.prompt.length = P;
    }
    return HN_OK;
}

int hn_import_peft(const char* dir, const char* base_path, const char* out,
                   const HnImportOptions* opt) {
    char path[PATH_MAX];
    if (hn_path(path, sizeof path, "%s/adapter_config.json", dir) != HN_OK) return HN_ERR;
    cJSON* ac = read_json_file(path);
    if (!ac) return HN_ERR;
    const char* type = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ac, "peft_type"));
    int rc = HN_OK, lora = type && !strcmp(type, "LORA"), ia3 = type && !strcmp(type, "IA3");
    const int prefix = type && !strcmp(type, "PREFIX_TUNING");
    const int prompt = type && (!strcmp(type, "PROMPT_TUNING") || !strcmp(type, "P_TUNING"));
    const int virt = prefix || prompt;
    if (!lora && !ia3 && !virt)
        rc = hn_error("%s: peft_type %s: hone imports LORA, IA3, PREFIX_TUNING, PROMPT_TUNING "
                      "and P_TUNING adapters",
                      path, type ? type : "(none)");
    const cJSON* rp = cJSON_GetObjectItemCaseSensitive(ac, "rank_pattern");
    const cJSON* ap = cJSON_GetObjectItemCaseSensitive(ac, "alpha_pattern");
    if (rc == HN_OK && ((cJSON_IsObject(rp) && rp->child) || (cJSON_IsObject(ap) && ap->child)))
        rc = hn_error("%s: per-module ranks or alphas (rank_pattern, alpha_pattern) are not "
                      "supported: hone uses one rank and alpha",
                      path);
    const char* bias = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ac, "bias"));
    if (rc == HN_OK && bias && strcmp(bias, "none") != 0)
        rc = hn_error("%s: bias \"%s\": hone imports adapters with bias \"none\"", path, bias);
    HnSafetensors* st = NULL;
    if (rc == HN_OK && hn_path(path, sizeof path, "%s/adapter_model.safetensors", dir) == HN_OK)
        st = hn_safetensors_open(path);
    if (rc == HN_OK && !st) rc = HN_ERR;

    /* the base: its config (model section), and the hash the checkpoint will name */
    char* yaml = NULL;
    HnH5* bf = rc == HN_OK ? hn_ckpt_open(base_path, &yaml) : NULL;
    if (rc == HN_OK && !bf) rc = HN_ERR;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (rc == HN_OK) rc = hn_config_load_text(&cfg, yaml, base_path);
    char hex[65];
    if (rc == HN_OK) rc = hn_ckpt_model_sha256(bf, hex);
    if (rc == HN_OK && cfg.peft.methods.n > 0)
        rc = hn_error("%s carries add-ons itself: import adapters onto a whole model", base_path);

    if (rc == HN_OK && virt) {
        snprintf(cfg.model.from, HN_STR, "%s", base_path);
        rc = virtual_config(ac, path, st, prefix, &cfg);
    }
    /* the sites per layer, from the tensor names */
    const int L = cfg.model.layers;
    char sites[16][16];
    int nsites = 0, *have = calloc((size_t)L * 16 + 1, sizeof *have);
    if (rc == HN_OK && !have) rc = hn_error("out of memory");
    int feed[16] = {0};
    for (int i = 0; rc == HN_OK && !virt && i < hn_safetensors_count(st); i++) {
        const HnStTensor* t = hn_safetensors_tensor(st, i);
        int layer;
        const char *site, *part;
        if ((rc = parse_key(t->name, &layer, &site, &part)) != HN_OK) break;
        if (layer < 0 || layer >= L) {
            rc = hn_error("%s: tensor %s is in layer %d; the base has %d", path, t->name, layer, L);
            break;
        }
        int k = 0;
        while (k < nsites && strcmp(sites[k], site) != 0)
            k++;
        if (k == nsites) snprintf(sites[nsites++], sizeof sites[0], "%s", site);
        have[layer * 16 + k] = 1;
        if (ia3 && t->rank == 2 && t->shape[0] == 1) feed[k] = 1; /* (1, in): feed-forward */
    }
    /* the targets: each site on every layer, or layers.N.site one by one */
    HnStrList targets = {0};
    for (int k = 0; rc == HN_OK && k < nsites; k++) {
        int all = 1;
        for (int l = 0; l < L; l++)
            all &= have[l * 16 + k];
        for (int l = 0; rc == HN_OK && l < (all ? 1 : L); l++) {
            if (!all && !have[l * 16 + k]) continue;
            if (targets.n == HN_MAX_LIST) {
                rc = hn_error("%s: the adapter targets more than %d (layer, module) groups "
                              "that hone's config can list",
                              path, HN_MAX_LIST);
                break;
            }
            if (all)
                snprintf(targets.item[targets.n++], HN_STR, "%s", sites[k]);
            else
                snprintf(targets.item[targets.n++], HN_STR, "layers.%d.%s", l, sites[k]);
        }
    }
    if (rc == HN_OK && !virt && nsites == 0) rc = hn_error("%s holds no adapter tensor", path);
    /* the config of the frozen-base run this adapter becomes */
    if (rc == HN_OK && !virt) {
        snprintf(cfg.model.from, HN_STR, "%s", base_path);
        cfg.peft.methods.n = 1;
        snprintf(cfg.peft.methods.item[0], HN_STR, "%s", lora ? "lora" : "ia3");
        if (lora) {
            cfg.peft.lora.targets = targets;
            const cJSON* r = cJSON_GetObjectItemCaseSensitive(ac, "r");
            const cJSON* a = cJSON_GetObjectItemCaseSensitive(ac, "lora_alpha");
            if (!cJSON_IsNumber(r) || r->valueint < 1 || !cJSON_IsNumber(a))
                rc = hn_error("adapter_config.json: needs r >= 1 and lora_alpha");
            else {
                cfg.peft.lora.rank = r->valueint;
                cfg.peft.lora.alpha = (float)a->valuedouble;
                cfg.peft.lora.rslora =
                    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ac, "use_rslora"));
                cfg.peft.lora.dora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ac, "use_dora"));
                const cJSON* d = cJSON_GetObjectItemCaseSensitive(ac, "lora_dropout");
                cfg.peft.lora.dropout = cJSON_IsNumber(d) ? (float)d->valuedouble : 0.0f;
            }
        } else {
            cfg.peft.ia3.targets = targets;
            cfg.peft.ia3.feedforward.n = 0;
            for (int k = 0; k < nsites; k++)
                if (feed[k])
                    snprintf(cfg.peft.ia3.feedforward.item[cfg.peft.ia3.feedforward.n++], HN_STR,
                             "%s", sites[k]);
        }
    }
    if (rc == HN_OK) rc = hn_config_validate(&cfg);
    HnPeft plan;
    memset(&plan, 0, sizeof plan);
    HnModel m;
    memset(&m, 0, sizeof m);
    if (rc == HN_OK) rc = hn_peft_plan(&plan, &cfg);
    if (rc == HN_OK) {
        HnModelConfig mc = hn_model_config_of(&cfg);
        rc = hn_model_create_peft(&m, &mc, &plan, 1, 1);
    }
    HnParamTable* t = &m.params;
    if (rc == HN_OK) rc = hn_ckpt_read_rows(bf, "model", t, t->data, HN_ROWS_BASE);
    /* every add-on row from its PEFT tensor, and every PEFT tensor used */
    int used = 0;
    if (rc == HN_OK && virt) { /* the prefix or the virtual tokens themselves */
        int j = hn_params_find(t, prefix ? "prefix.embed" : "prompt.embed");
        const HnStTensor* x = hn_safetensors_find(st, "prompt_embeddings");
        if (j < 0 || !x || x->numel != t->rows[j].numel)
            rc = hn_error("internal: the %s rows do not match the adapter",
                          prefix ? "prefix" : "prompt");
        else
            rc = hn_safetensors_read_f32(st, x->name, t->data + t->rows[j].offset, x->numel);
        used = 1;
    }
    for (int i = 0; rc == HN_OK && !virt && i < hn_safetensors_count(st); i++) {
        const HnStTensor* x = hn_safetensors_tensor(st, i);
        int layer;
        const char *site, *part;
        parse_key(x->name, &layer, &site, &part);
        const char* hone = !strcmp(part, "lora_A.weight")           ? "lora_A"
                           : !strcmp(part, "lora_B.weight")         ? "lora_B"
                           : !strcmp(part, "lora_magnitude_vector") ? "dora_m"
                           : !strcmp(part, "ia3_l")                 ? "ia3"
                                                                    : NULL;
        if (!hone) {
            rc = hn_error("%s: tensor %s is not a LoRA, DoRA or IA3 weight", path, x->name);
            break;
        }
        char row[128];
        snprintf(row, sizeof row, "layers.%d.%s.%s", layer, site, hone);
        int j = hn_params_find(t, row);
        if (j < 0) {
            rc = hn_error("%s: tensor %s has no place in the adapter hone built (%s)", path,
                          x->name, row);
            break;
        }
        if (x->numel != t->rows[j].numel) {
            rc = hn_error("%s: tensor %s has %zu entries, hone's %s has %zu", path, x->name,
                          x->numel, row, t->rows[j].numel);
            break;
        }
        rc = hn_safetensors_read_f32(st, x->name, t->data + t->rows[j].offset, x->numel);
        used++;
    }
    int addons = 0;
    for (int i = 0; i < t->n; i++)
        addons += t->rows[i].addon;
    if (rc == HN_OK && used != addons)
        rc = hn_error("%s: %d of hone's %d add-on rows were found in the adapter", path, used,
                      addons);
    HnTokenizer* tok = NULL;
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(bf, &tok);
    char* text = NULL;
    if (rc == HN_OK && !(text = hn_config_to_text(&cfg))) rc = HN_ERR;
    if (rc == HN_OK) {
        HnCkptSave sv = {.config_yaml = text,
                         .arch = cfg.model.arch,
                         .params = t,
                         .best_val_loss = NAN,
                         .tokenizer = tok,
                         .bf16 = opt->bf16,
                         .deflate = opt->deflate,
                         .base_file = base_path,
                         .base_sha256 = hex};
        rc = hn_ckpt_save(out, &sv);
    }
    if (rc == HN_OK && virt)
        fprintf(stderr, "imported %s %s adapter (%d virtual %s%s) onto %s -> %s\n", type, dir,
                prefix ? cfg.peft.prefix.length : cfg.peft.prompt.length,
                prefix ? "key/value positions" : "tokens",
                strcmp(type, "P_TUNING") ? ""
                                         : ", as prompt tuning: PEFT saves the encoder's output",
                base_path, out);
    else if (rc == HN_OK)
        fprintf(stderr, "imported %s %s adapter (%d tensors, %d targets) onto %s -> %s\n", type,
                dir, used, targets.n, base_path, out);
    free(text);
    if (tok) hn_tokenizer_free(tok);
    hn_model_free(&m);
    free(have);
    free(yaml);
    if (bf) hn_h5_close(bf);
    if (st) hn_safetensors_close(st);
    cJSON_Delete(ac);
    return rc;
}
