/* `hone prepare`: tokenize text files into shards with a validation split; see prepare.h. */
#include "data/prepare.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/h5ckpt.h"
#include "data/instruct.h"
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

/* ids (and, for instruction data, their mask) as shards of per_shard tokens, each with its
 * document index (the starts, ndoc increasing positions into ids, that fall in it); a shard
 * written without a mask loses any stale .mask beside it */
static int write_shards(const char* dir, const char* split, const int* ids, const int* mask,
                        size_t n, const size_t* starts, size_t ndoc, size_t per_shard,
                        int* nshards) {
    char path[PATH_MAX], mpath[PATH_MAX + 8], dpath[PATH_MAX + 8];
    *nshards = 0;
    size_t chunk = per_shard < n ? per_shard : (n ? n : 1);
    unsigned char* bytes = mask ? malloc(chunk) : NULL;
    uint32_t* local = malloc(chunk * sizeof *local);
    if ((mask && !bytes) || !local) {
        free(bytes);
        free(local);
        return hn_error("out of memory");
    }
    int rc = HN_OK;
    size_t d = 0; /* the next document start to place */
    for (size_t i = 0; rc == HN_OK && i < n; i += per_shard) {
        size_t k = n - i < per_shard ? n - i : per_shard, nlocal = 0;
        for (; d < ndoc && starts[d] < i + k; d++)
            local[nlocal++] = (uint32_t)(starts[d] - i);
        snprintf(path, sizeof path, "%s/%s_%06d.bin", dir, split, *nshards);
        rc = hn_mask_path(mpath, sizeof mpath, path);
        if (rc == HN_OK) rc = hn_docs_path(dpath, sizeof dpath, path);
        if (rc == HN_OK) rc = hn_shard_write(path, ids + i, k);
        if (rc == HN_OK) rc = hn_docs_write(dpath, local, nlocal, k);
        if (rc == HN_OK && mask) {
            for (size_t j = 0; j < k; j++)
                bytes[j] = (unsigned char)(mask[i + j] != 0);
            rc = hn_mask_write(mpath, bytes, k);
        } else if (rc == HN_OK && unlink(mpath) != 0 && errno != ENOENT) {
            rc = hn_error("cannot remove the stale loss mask %s", mpath);
        }
        if (rc == HN_OK) (*nshards)++;
    }
    free(bytes);
    free(local);
    return rc;
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
    if (opt->instruct) {
        cJSON_AddBoolToObject(j, "instruct", 1);
        cJSON_AddStringToObject(j, "chat_template", st->chat_template);
        cJSON_AddNumberToObject(j, "skipped_lines", st->skipped);
        cJSON_AddNumberToObject(j, "train_targets", (double)st->train_targets);
        cJSON_AddNumberToObject(j, "val_targets", (double)st->val_targets);
    }
    char* text = cJSON_Print(j);
    cJSON_Delete(j);
    FILE* f = fopen(tmp, "w");
    int ok = f && text && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = (fclose(f) == 0) && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) return hn_error("cannot write %s", path);
    return HN_OK;
}

static HnTokenizer* load_tokenizer(const HnPrepareOptions* opt) {
    HnTokenizer* tok = NULL;
    if (strcmp(opt->tokenizer, "byte") == 0) {
        tok = hn_tokenizer_byte();
    } else if (strcmp(opt->tokenizer, "gpt2") == 0) {
        if (!opt->encoder || !opt->merges) {
            hn_error("--tokenizer gpt2 needs --encoder encoder.json and --merges vocab.bpe");
            return NULL;
        }
        tok = hn_tokenizer_gpt2(opt->encoder, opt->merges);
    } else if (strlen(opt->tokenizer) > 3 &&
               strcmp(opt->tokenizer + strlen(opt->tokenizer) - 3, ".h5") == 0) {
        /* the tokenizer a checkpoint carries (an imported model's, say) */
        char* text = NULL;
        HnH5* f = hn_ckpt_open(opt->tokenizer, &text);
        free(text);
        if (!f) return NULL;
        int rc = hn_ckpt_tokenizer(f, &tok);
        hn_h5_close(f);
        if (rc != HN_OK) return NULL;
        if (!tok) hn_error("%s carries no tokenizer", opt->tokenizer);
    } else {
        hn_error("unknown tokenizer '%s' (byte, gpt2, or a checkpoint CKPT.h5)", opt->tokenizer);
    }
    return tok;
}

/* document boundaries: doc i is [v[i], v[i + 1]) */
typedef struct {
    size_t* v;
    int n, cap; /* n documents once a final boundary is pushed: v has n + 1 entries */
} Bounds;

static int bounds_push(Bounds* b, size_t at) {
    if (b->n + 1 >= b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        size_t* v = realloc(b->v, (size_t)cap * sizeof *v);
        if (!v) return hn_error("out of memory");
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = at;
    return HN_OK;
}

/* every non-blank line of a JSONL file is one example */
static int read_examples(const HnPrepareOptions* opt, const HnChatTemplate* tpl,
                         const HnTokenizer* tok, const char* path, HnTokens* all, HnTokens* mask,
                         Bounds* docs, HnPrepareStats* st) {
    size_t len;
    char* text = read_file(path, &len);
    if (!text) return HN_ERR;
    int rc = HN_OK;
    long line = 0;
    for (size_t at = 0; rc == HN_OK && at < len;) {
        const char* p = text + at;
        const char* nl = memchr(p, '\n', len - at);
        size_t n = nl ? (size_t)(nl - p) : len - at;
        at += n + 1;
        line++;
        size_t k = 0;
        while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
            k++;
        if (k == n) continue; /* blank */
        size_t start = all->n;
        if (hn_instruct_encode(tpl, tok, p, n, all, mask) == HN_OK) {
            rc = bounds_push(docs, start);
            continue;
        }
        char msg[1200];
        snprintf(msg, sizeof msg, "%s:%ld: %s", path, line, hn_error_message());
        if (!opt->skip_bad) {
            rc = hn_error("%s (--skip-bad leaves such lines out)", msg);
        } else {
            st->skipped++;
            if (opt->warn) opt->warn(opt->warn_ctx, msg);
        }
    }
    free(text);
    return rc;
}

int hn_prepare(const HnPrepareOptions* opt, HnPrepareStats* st) {
    memset(st, 0, sizeof *st);
    if (opt->ninputs < 1)
        return hn_error(opt->instruct ? "no input JSONL files given" : "no input text files given");
    if (opt->val_fraction < 0 || opt->val_fraction > 0.5)
        return hn_error("--val must be between 0 and 0.5 (got %g)", opt->val_fraction);
    if (opt->shard_tokens < 1024) return hn_error("shards must hold at least 1024 tokens");
    if (!opt->instruct && (opt->chat_template || opt->skip_bad))
        return hn_error("--template and --skip-bad go with --instruct");
    HnTokenizer* tok = load_tokenizer(opt);
    if (!tok) return HN_ERR;
    HnChatTemplate tpl = {0};
    int rc = HN_OK;
    if (opt->instruct) {
        rc = hn_chat_template_choose(tok, opt->chat_template, &tpl);
        snprintf(st->chat_template, sizeof st->chat_template, "%s",
                 hn_chat_template_name(tpl.kind));
    }

    /* tokenize every document (a text file, or an example), remembering where each starts */
    HnTokens all = {0}, mask = {0};
    Bounds docs = {0};
    for (int i = 0; rc == HN_OK && i < opt->ninputs; i++) {
        if (opt->instruct) {
            rc = read_examples(opt, &tpl, tok, opt->inputs[i], &all, &mask, &docs, st);
            continue;
        }
        size_t len;
        char* text = read_file(opt->inputs[i], &len);
        if (!text) {
            rc = HN_ERR;
            break;
        }
        if (len > 0) {
            rc = bounds_push(&docs, all.n);
            if (rc == HN_OK) rc = hn_tokens_push(&all, hn_tokenizer_eos(tok));
            if (rc == HN_OK) rc = hn_tokenizer_encode(tok, text, len, &all);
        }
        free(text);
    }
    int ndocs = docs.n;
    if (rc == HN_OK) rc = bounds_push(&docs, all.n);
    if (rc == HN_OK && all.n == 0)
        rc = opt->instruct ? hn_error("no examples: the input files hold no usable line")
                           : hn_error("the corpus is empty: the input files hold no text");

    int *ids_train = NULL, *ids_val = NULL, *mask_train = NULL, *mask_val = NULL;
    size_t ntrain = 0, nval = 0;
    Bounds starts_train = {0}, starts_val = {0}; /* where each split's documents start */
    if (rc == HN_OK) {
        st->documents = ndocs;
        ids_train = malloc(all.n * sizeof(int));
        ids_val = malloc(all.n * sizeof(int));
        if (opt->instruct) {
            mask_train = malloc(all.n * sizeof(int));
            mask_val = malloc(all.n * sizeof(int));
        }
        if (!ids_train || !ids_val || (opt->instruct && (!mask_train || !mask_val)))
            rc = hn_error("out of memory");
    }
    /* choose validation documents: a seeded shuffle */
    if (rc == HN_OK) {
        if (ndocs >= 2) {
            int nv = (int)(opt->val_fraction * ndocs + 0.5);
            if (opt->val_fraction > 0 && nv < 1) nv = 1;
            if (nv > ndocs - 1) nv = ndocs - 1;
            int* order = malloc((size_t)ndocs * sizeof *order);
            char* is_val = calloc((size_t)ndocs, 1);
            if (!order || !is_val) rc = hn_error("out of memory");
            for (int i = 0; order && i < ndocs; i++)
                order[i] = i;
            HnRng rng;
            hn_rng_seed(&rng, opt->seed);
            for (int i = ndocs; order && i > 1; i--) {
                int j = (int)hn_rng_below(&rng, (uint64_t)i), t = order[i - 1];
                order[i - 1] = order[j];
                order[j] = t;
            }
            for (int k = 0; rc == HN_OK && k < nv; k++)
                is_val[order[k]] = 1;
            for (int i = 0; rc == HN_OK && i < ndocs; i++) {
                size_t a = docs.v[i], n = docs.v[i + 1] - a;
                int* ids_to = is_val[i] ? ids_val : ids_train;
                int* mask_to = is_val[i] ? mask_val : mask_train;
                size_t* at = is_val[i] ? &nval : &ntrain;
                if (n) rc = bounds_push(is_val[i] ? &starts_val : &starts_train, *at);
                memcpy(ids_to + *at, all.ids + a, n * sizeof(int));
                if (opt->instruct) memcpy(mask_to + *at, mask.ids + a, n * sizeof(int));
                *at += n;
            }
            free(order);
            free(is_val);
        } else if (opt->instruct) {
            /* one example: it trains; there is nothing to split by example */
            ntrain = all.n;
            memcpy(ids_train, all.ids, ntrain * sizeof(int));
            memcpy(mask_train, mask.ids, ntrain * sizeof(int));
            rc = bounds_push(&starts_train, 0);
        } else {
            /* one document: the validation tail continues it (its windows start fresh) */
            nval = (size_t)(opt->val_fraction * (double)all.n);
            ntrain = all.n - nval;
            if (ntrain) rc = bounds_push(&starts_train, 0);
            memcpy(ids_train, all.ids, ntrain * sizeof(int));
            memcpy(ids_val, all.ids + ntrain, nval * sizeof(int));
        }
    }
    if (rc == HN_OK) rc = hn_mkdirs(opt->out_dir);
    if (rc == HN_OK)
        rc = write_shards(opt->out_dir, "train", ids_train, mask_train, ntrain, starts_train.v,
                          (size_t)starts_train.n, opt->shard_tokens, &st->train_shards);
    if (rc == HN_OK)
        rc = write_shards(opt->out_dir, "val", ids_val, mask_val, nval, starts_val.v,
                          (size_t)starts_val.n, opt->shard_tokens, &st->val_shards);
    st->train_tokens = ntrain;
    st->val_tokens = nval;
    for (size_t i = 0; mask_train && i < ntrain; i++)
        st->train_targets += mask_train[i] != 0;
    for (size_t i = 0; mask_val && i < nval; i++)
        st->val_targets += mask_val[i] != 0;
    if (rc == HN_OK) rc = write_meta(opt, tok, st);
    free(ids_train);
    free(ids_val);
    free(mask_train);
    free(mask_val);
    free(docs.v);
    free(starts_train.v);
    free(starts_val.v);
    hn_tokens_free(&all);
    hn_tokens_free(&mask);
    hn_chat_template_free(&tpl);
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
