/* `hone prepare`: tokenize text files into shards with a validation split; see prepare.h. */
#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/h5ckpt.h"
#include "data/tokenizer.h"

/* read a whole file; NULL with an error */
static char* read_file(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        hn_error("cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char* bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        hn_error(buf ? "cannot read %s" : "out of memory reading %s", path);
        return NULL;
    }
    *len = n;
    return buf;
}

static int write_shards(const char* dir, const char* split, const int* ids, size_t n,
                        size_t per_shard, int* nshards) {
    char path[PATH_MAX];
    *nshards = 0;
    for (size_t i = 0; i < n; i += per_shard) {
        size_t k = n - i < per_shard ? n - i : per_shard;
        snprintf(path, sizeof path, "%s/%s_%06d.bin", dir, split, *nshards);
        if (hn_shard_write(path, ids + i, k) != HN_OK) return HN_ERR;
        (*nshards)++;
    }
    return HN_OK;
}

static int write_meta(const HnPrepareOptions* opt, const HnTokenizer* tok,
                      const HnPrepareStats* st) {
    char path[PATH_MAX], tmp[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/meta.json", opt->out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cJSON* j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "format", "hone-shards");
    cJSON_AddStringToObject(j, "tokenizer", hn_tokenizer_name(tok));
    if (strcmp(hn_tokenizer_name(tok), "gpt2") == 0) {
        char abs[PATH_MAX];
        cJSON_AddStringToObject(j, "encoder", realpath(opt->encoder, abs) ? abs : opt->encoder);
        cJSON_AddStringToObject(j, "merges", realpath(opt->merges, abs) ? abs : opt->merges);
    }
    cJSON_AddNumberToObject(j, "vocab_size", hn_tokenizer_vocab_size(tok));
    cJSON_AddNumberToObject(j, "eos", hn_tokenizer_eos(tok));
    cJSON_AddNumberToObject(j, "documents", st->documents);
    cJSON_AddNumberToObject(j, "train_tokens", (double)st->train_tokens);
    cJSON_AddNumberToObject(j, "val_tokens", (double)st->val_tokens);
    char* text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE* f = fopen(tmp, "w");
    int ok = f && text && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) return hn_error("cannot write %s", path);
    return HN_OK;
}

int hn_prepare(const HnPrepareOptions* opt, HnPrepareStats* st) {
    memset(st, 0, sizeof *st);
    if (opt->ninputs < 1) return hn_error("no input text files given");
    if (opt->val_fraction < 0 || opt->val_fraction > 0.5)
        return hn_error("--val must be between 0 and 0.5 (got %g)", opt->val_fraction);
    if (opt->shard_tokens < 1024) return hn_error("shards must hold at least 1024 tokens");
    HnTokenizer* tok = NULL;
    if (strcmp(opt->tokenizer, "byte") == 0) {
        tok = hn_tokenizer_byte();
    } else if (strcmp(opt->tokenizer, "gpt2") == 0) {
        if (!opt->encoder || !opt->merges)
            return hn_error("--tokenizer gpt2 needs --encoder encoder.json and --merges vocab.bpe");
        tok = hn_tokenizer_gpt2(opt->encoder, opt->merges);
    } else if (strlen(opt->tokenizer) > 3 &&
               strcmp(opt->tokenizer + strlen(opt->tokenizer) - 3, ".h5") == 0) {
        /* the tokenizer a checkpoint carries (an imported model's, say) */
        char* text = NULL;
        HnH5* f = hn_ckpt_open(opt->tokenizer, &text);
        free(text);
        if (!f) return HN_ERR;
        int rc = hn_ckpt_tokenizer(f, &tok);
        hn_h5_close(f);
        if (rc != HN_OK) return HN_ERR;
        if (!tok) return hn_error("%s carries no tokenizer", opt->tokenizer);
    } else {
        return hn_error("unknown tokenizer '%s' (byte, gpt2, or a checkpoint CKPT.h5)",
                        opt->tokenizer);
    }
    if (!tok) return HN_ERR;

    /* tokenize every document, remembering where each starts */
    HnTokens all = {0};
    size_t* starts = calloc((size_t)opt->ninputs + 1, sizeof *starts);
    int rc = starts ? HN_OK : hn_error("out of memory");
    for (int i = 0; rc == HN_OK && i < opt->ninputs; i++) {
        size_t len;
        char* text = read_file(opt->inputs[i], &len);
        if (!text) {
            rc = HN_ERR;
            break;
        }
        starts[i] = all.n;
        if (len > 0) {
            hn_tokens_push(&all, hn_tokenizer_eos(tok));
            rc = hn_tokenizer_encode(tok, text, len, &all);
        }
        free(text);
    }
    if (rc == HN_OK) starts[opt->ninputs] = all.n;
    if (rc == HN_OK && all.n == 0)
        rc = hn_error("the corpus is empty: the input files hold no text");

    /* choose validation documents: a seeded shuffle of the non-empty ones */
    int* ndoc = NULL;
    int ndocs = 0;
    if (rc == HN_OK) {
        ndoc = malloc((size_t)opt->ninputs * sizeof *ndoc);
        for (int i = 0; ndoc && i < opt->ninputs; i++)
            if (starts[i + 1] > starts[i]) ndoc[ndocs++] = i;
        if (!ndoc) rc = hn_error("out of memory");
    }
    int *ids_train = NULL, *ids_val = NULL;
    size_t ntrain = 0, nval = 0;
    if (rc == HN_OK) {
        st->documents = ndocs;
        ids_train = malloc(all.n * sizeof(int));
        ids_val = malloc(all.n * sizeof(int));
        if (!ids_train || !ids_val) rc = hn_error("out of memory");
    }
    if (rc == HN_OK) {
        if (ndocs >= 2) {
            int nv = (int)(opt->val_fraction * ndocs + 0.5);
            if (opt->val_fraction > 0 && nv < 1) nv = 1;
            if (nv > ndocs - 1) nv = ndocs - 1;
            HnRng rng;
            hn_rng_seed(&rng, opt->seed);
            for (int i = ndocs; i > 1; i--) {
                int j = (int)hn_rng_below(&rng, (uint64_t)i), t = ndoc[i - 1];
                ndoc[i - 1] = ndoc[j];
                ndoc[j] = t;
            }
            char* is_val = calloc((size_t)opt->ninputs, 1);
            if (!is_val) rc = hn_error("out of memory");
            for (int k = 0; is_val && k < nv; k++)
                is_val[ndoc[k]] = 1;
            for (int i = 0; is_val && i < opt->ninputs; i++) {
                size_t a = starts[i], n = starts[i + 1] - a;
                if (is_val[i]) {
                    memcpy(ids_val + nval, all.ids + a, n * sizeof(int));
                    nval += n;
                } else {
                    memcpy(ids_train + ntrain, all.ids + a, n * sizeof(int));
                    ntrain += n;
                }
            }
            free(is_val);
        } else {
            nval = (size_t)(opt->val_fraction * (double)all.n);
            ntrain = all.n - nval;
            memcpy(ids_train, all.ids, ntrain * sizeof(int));
            memcpy(ids_val, all.ids + ntrain, nval * sizeof(int));
        }
    }
    if (rc == HN_OK) rc = hn_mkdirs(opt->out_dir);
    if (rc == HN_OK)
        rc = write_shards(opt->out_dir, "train", ids_train, ntrain, opt->shard_tokens,
                          &st->train_shards);
    if (rc == HN_OK)
        rc = write_shards(opt->out_dir, "val", ids_val, nval, opt->shard_tokens, &st->val_shards);
    st->train_tokens = ntrain;
    st->val_tokens = nval;
    if (rc == HN_OK) rc = write_meta(opt, tok, st);
    free(ids_train);
    free(ids_val);
    free(ndoc);
    free(starts);
    hn_tokens_free(&all);
    hn_tokenizer_free(tok);
    return rc;
}

int hn_data_meta_read(const char* dir, HnDataMeta* meta) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    size_t len;
    char* text = read_file(path, &len);
    if (!text) return hn_error("%s is missing — was this folder made by `hone prepare`?", path);
    cJSON* j = cJSON_ParseWithLength(text, len);
    free(text);
    memset(meta, 0, sizeof *meta);
    const cJSON* tk = cJSON_GetObjectItemCaseSensitive(j, "tokenizer");
    const cJSON* vs = cJSON_GetObjectItemCaseSensitive(j, "vocab_size");
    const cJSON* eos = cJSON_GetObjectItemCaseSensitive(j, "eos");
    const cJSON* enc = cJSON_GetObjectItemCaseSensitive(j, "encoder");
    const cJSON* mer = cJSON_GetObjectItemCaseSensitive(j, "merges");
    int rc = HN_OK;
    if (!cJSON_IsObject(j) || !cJSON_IsString(tk) || !cJSON_IsNumber(vs) || !cJSON_IsNumber(eos) ||
        vs->valuedouble < 1 || vs->valuedouble > 1 << 24 ||
        strlen(tk->valuestring) >= sizeof meta->tokenizer)
        rc = hn_error("%s is malformed (needs tokenizer, vocab_size, eos)", path);
    if (rc == HN_OK) {
        strcpy(meta->tokenizer, tk->valuestring);
        meta->vocab_size = vs->valueint;
        meta->eos = eos->valueint;
        if (cJSON_IsString(enc))
            snprintf(meta->encoder, sizeof meta->encoder, "%s", enc->valuestring);
        if (cJSON_IsString(mer))
            snprintf(meta->merges, sizeof meta->merges, "%s", mer->valuestring);
    }
    cJSON_Delete(j);
    return rc;
}
