/*
 * The evaluation tasks (see tasks.h): reading their data, building prompts, scoring. The
 * model is only called through hn_eval_forward; log-probabilities come from the trainer's
 * own cross-entropy op, so a perplexity here is computed the way the validation loss is.
 */
#include "eval/tasks.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "eval/generate.h"
#include "eval/sample.h"
#include "kernels/ops.h"

/* ---- files ---- */

static int is_shard(const char* buf, size_t len) {
    int32_t magic;
    if (len < sizeof magic) return 0;
    memcpy(&magic, buf, sizeof magic);
    return magic == HN_SHARD_MAGIC;
}

/* the ids of a token shard (llm.c's format, see data/dataset.h), every size checked */
static int shard_ids(const char* path, const char* buf, size_t len, HnTokens* out) {
    int32_t h[3];
    if (len < HN_SHARD_HEADER_INTS * 4)
        return hn_error("%s: too small to be a token shard (no 1024-byte header)", path);
    memcpy(h, buf, sizeof h);
    if (h[1] != 1 && h[1] != 2)
        return hn_error("%s: unsupported shard version %d (1 and 2 are known)", path, h[1]);
    if (h[2] < 0) return hn_error("%s: negative token count", path);
    size_t ntok = (size_t)h[2], width = h[1] == 1 ? 2 : 4;
    if (len != HN_SHARD_HEADER_INTS * 4 + ntok * width)
        return hn_error("%s: header says %zu tokens but the file has %zu bytes — truncated?", path,
                        ntok, len);
    const unsigned char* p = (const unsigned char*)buf + HN_SHARD_HEADER_INTS * 4;
    for (size_t i = 0; i < ntok; i++) {
        uint32_t v = 0;
        if (width == 2) {
            uint16_t u;
            memcpy(&u, p + 2 * i, 2);
            v = u;
        } else {
            memcpy(&v, p + 4 * i, 4);
        }
        if (v > (uint32_t)INT32_MAX) return hn_error("%s: token id %u out of range", path, v);
        if (hn_tokens_push(out, (int)v) != HN_OK) return hn_error("out of memory");
    }
    return HN_OK;
}

/* put `what: ` in front of the last error (copied first: hn_error writes the same buffer) */
static int error_in(const char* what) {
    char cause[1024];
    snprintf(cause, sizeof cause, "%s", hn_error_message());
    return hn_error("%s: %s", what, cause);
}

static int example_error(const char* path, int i) {
    char what[1024];
    snprintf(what, sizeof what, "%s example %d", path, i + 1);
    return error_in(what);
}

/* ---- scoring ---- */

int hn_eval_nll(HnEvalModel* m, const int* ids, size_t n, double* nll, size_t* count) {
    const int T = m->config.maxT, V = m->config.V;
    *nll = 0.0;
    *count = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return hn_error("token id %d at position %zu is not below the model's vocabulary %d",
                            ids[i], i, V);
    for (size_t start = 0; start + 2 <= n; start += (size_t)T) {
        int len = n - 1 - start < (size_t)T ? (int)(n - 1 - start) : T;
        double window;
        if (hn_eval_forward_nll(m, ids + start, ids + start + 1, len, 0, &window) != HN_OK)
            return HN_ERR;
        *nll += window;
        *count += (size_t)len;
    }
    return HN_OK;
}

int hn_eval_choices_loglik(HnEvalModel* m, const int* ctx, int nctx, const HnTokens* choices,
                           int nchoices, double* ll) {
    const int T = m->config.maxT, V = m->config.V, Vp = m->config.Vp;
    if (nctx < 1) return hn_error("scoring a choice needs a context of at least one token");
    size_t longest = 0;
    for (int c = 0; c < nchoices; c++)
        longest = choices[c].n > longest ? choices[c].n : longest;
    if (longest >= (size_t)T)
        return hn_error("a choice of %zu tokens does not fit the model's context of %d", longest,
                        T);
    for (int c = 0; c < nchoices; c++)
        for (size_t i = 0; i < choices[c].n; i++)
            if (choices[c].ids[i] < 0 || choices[c].ids[i] >= V)
                return hn_error("token id %d is not below the model's vocabulary %d",
                                choices[c].ids[i], V);
    /* a context too long for context + choice keeps its rightmost tokens: those next to the
     * choice matter most */
    int keep = nctx < T - (int)longest ? nctx : T - (int)longest;
    float* first = malloc((size_t)Vp * sizeof *first); /* logits after the context */
    if (!first) return hn_error("out of memory");
    const float* logits = hn_eval_forward(m, ctx + (nctx - keep), keep, 0);
    int rc = logits ? HN_OK : HN_ERR;
    if (rc == HN_OK) memcpy(first, logits, (size_t)Vp * sizeof *first);
    /* each choice continues the cached context at position keep and overwrites the previous
     * choice's cache entries, so the context is run once */
    for (int c = 0; rc == HN_OK && c < nchoices; c++) {
        const int* ids = choices[c].ids;
        int n = (int)choices[c].n;
        ll[c] = 0.0;
        if (n == 0) continue;
        float loss;
        double nll = hn_crossentropy_forward(first, &loss, ids, 1, V, Vp, 0.0f), rest = 0.0;
        /* the choice's last token is only a target: its own logits are not needed */
        if (n > 1) rc = hn_eval_forward_nll(m, ids, ids + 1, n - 1, keep, &rest);
        ll[c] = -(nll + rest);
    }
    free(first);
    return rc;
}

/* ---- text metrics ---- */

static void trim(const char* s, const char** start, size_t* len) {
    const char* e = s + strlen(s);
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    *start = s;
    *len = (size_t)(e - s);
}

int hn_exact_match(const char* prediction, const char* reference) {
    const char *a, *b;
    size_t na, nb;
    trim(prediction, &a, &na);
    trim(reference, &b, &nb);
    return na == nb && memcmp(a, b, na) == 0;
}

typedef struct {
    const char* s;
    size_t len;
} Word;

/* the whitespace-separated words of s; *n gets their count. NULL only when out of memory
 * (an empty text gives a valid pointer and n = 0) */
static Word* split_words(const char* s, size_t* n) {
    size_t cap = 1;
    for (const char* p = s; *p; p++)
        cap += isspace((unsigned char)*p) != 0;
    Word* w = malloc(cap * sizeof *w);
    *n = 0;
    if (!w) return NULL;
    for (const char* p = s; *p;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char* start = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (p > start) w[(*n)++] = (Word){start, (size_t)(p - start)};
    }
    return w;
}

/* length of the longest common subsequence of two word lists, in two rows of the DP */
static size_t lcs(const Word* a, size_t na, const Word* b, size_t nb, size_t* row) {
    size_t* prev = row;
    size_t* cur = row + nb + 1;
    memset(prev, 0, (nb + 1) * sizeof *prev);
    for (size_t i = 1; i <= na; i++) {
        cur[0] = 0;
        for (size_t j = 1; j <= nb; j++) {
            int same =
                a[i - 1].len == b[j - 1].len && !memcmp(a[i - 1].s, b[j - 1].s, a[i - 1].len);
            cur[j] = same ? prev[j - 1] + 1 : (prev[j] > cur[j - 1] ? prev[j] : cur[j - 1]);
        }
        size_t* t = prev;
        prev = cur;
        cur = t;
    }
    return prev[nb];
}

double hn_rouge_l(const char* prediction, const char* reference) {
    size_t np, nr;
    Word* p = split_words(prediction, &np);
    Word* r = split_words(reference, &nr);
    size_t* row = malloc(2 * (nr + 1) * sizeof *row);
    double f = 0.0;
    if (p && r && row) {
        if (np == 0 && nr == 0) {
            f = 1.0;
        } else if (np > 0 && nr > 0) {
            double common = (double)lcs(p, np, r, nr, row);
            double precision = common / (double)np, recall = common / (double)nr;
            f = common > 0 ? 2.0 * precision * recall / (precision + recall) : 0.0;
        }
    }
    free(p);
    free(r);
    free(row);
    return f;
}

/* ---- JSONL examples ---- */

typedef struct {
    char* prompt;    /* mc: "context"; gen: "prompt" */
    char** choices;  /* mc */
    int nchoices;    /* mc */
    int answer;      /* mc */
    char* reference; /* gen */
} Example;

static void examples_free(Example* ex, int n) {
    for (int i = 0; i < n; i++) {
        free(ex[i].prompt);
        for (int c = 0; c < ex[i].nchoices; c++)
            free(ex[i].choices[c]);
        free(ex[i].choices);
        free(ex[i].reference);
    }
    free(ex);
}

static char* json_string(const cJSON* obj, const char* key) {
    const cJSON* item = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(item) ? strdup(item->valuestring) : NULL;
}

/* one line's example; the error names file:line */
static int parse_example(const cJSON* o, int mc, const char* path, int line, Example* ex) {
    memset(ex, 0, sizeof *ex);
    if (!cJSON_IsObject(o)) return hn_error("%s:%d: not a JSON object", path, line);
    const char* key = mc ? "context" : "prompt";
    if (!(ex->prompt = json_string(o, key)))
        return hn_error("%s:%d: needs a string \"%s\"", path, line, key);
    if (!mc) {
        if (!(ex->reference = json_string(o, "reference")))
            return hn_error("%s:%d: needs a string \"reference\"", path, line);
        return HN_OK;
    }
    const cJSON* choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
    if (!cJSON_IsArray(choices))
        return hn_error("%s:%d: needs an array \"choices\" of strings", path, line);
    int n = cJSON_GetArraySize(choices);
    if (n < 1) return hn_error("%s:%d: \"choices\" is empty", path, line);
    if (!(ex->choices = calloc((size_t)n, sizeof *ex->choices))) return hn_error("out of memory");
    const cJSON* c;
    cJSON_ArrayForEach(c, choices) {
        if (!cJSON_IsString(c))
            return hn_error("%s:%d: choice %d is not a string", path, line, ex->nchoices);
        if (!c->valuestring[0])
            return hn_error("%s:%d: choice %d is empty", path, line, ex->nchoices);
        if (!(ex->choices[ex->nchoices++] = strdup(c->valuestring)))
            return hn_error("out of memory");
    }
    const cJSON* answer = cJSON_GetObjectItemCaseSensitive(o, "answer");
    if (!cJSON_IsNumber(answer) || answer->valuedouble != floor(answer->valuedouble))
        return hn_error("%s:%d: needs an integer \"answer\"", path, line);
    if (answer->valuedouble < 0 || answer->valuedouble >= n)
        return hn_error("%s:%d: answer %g is out of range for %d choices", path, line,
                        answer->valuedouble, n);
    ex->answer = (int)answer->valuedouble;
    return HN_OK;
}

/* every non-blank line of a JSONL file as one example */
static int read_examples(const char* path, int mc, Example** out, int* count) {
    *out = NULL;
    *count = 0;
    size_t len;
    char* text = hn_read_file(path, &len);
    if (!text) return HN_ERR;
    int rc = HN_OK, cap = 0, line = 0;
    for (char* p = text; rc == HN_OK && p < text + len;) {
        char* end = memchr(p, '\n', (size_t)(text + len - p));
        if (!end) end = text + len;
        line++;
        const char* q = p;
        while (q < end && isspace((unsigned char)*q))
            q++;
        if (q < end) {
            if (*count == cap) {
                cap = cap ? 2 * cap : 64;
                Example* bigger = realloc(*out, (size_t)cap * sizeof **out);
                if (!bigger) {
                    rc = hn_error("out of memory");
                    break;
                }
                *out = bigger;
            }
            cJSON* o = cJSON_ParseWithLength(p, (size_t)(end - p));
            if (!o) {
                rc = hn_error("%s:%d: not valid JSON", path, line);
                break;
            }
            rc = parse_example(o, mc, path, line, &(*out)[(*count)++]);
            cJSON_Delete(o);
        }
        p = end + 1;
    }
    free(text);
    if (rc == HN_OK && *count == 0) rc = hn_error("%s has no examples", path);
    if (rc != HN_OK) {
        examples_free(*out, *count);
        *out = NULL;
        *count = 0;
    }
    return rc;
}

/* ---- prompts ---- */

typedef struct {
    char* s;
    size_t n, cap;
} Buf;

static int buf_add(Buf* b, const char* s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char* bigger = realloc(b->s, cap);
        if (!bigger) return hn_error("out of memory");
        b->s = bigger;
        b->cap = cap;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = '\0';
    return HN_OK;
}

/* the template with every occurrence of key replaced by value */
static int buf_format(Buf* b, const char* tmpl, const char* key, const char* value) {
    size_t klen = strlen(key);
    for (const char* p = tmpl;;) {
        const char* hit = strstr(p, key);
        if (!hit) return buf_add(b, p, strlen(p));
        if (buf_add(b, p, (size_t)(hit - p)) != HN_OK) return HN_ERR;
        if (buf_add(b, value, strlen(value)) != HN_OK) return HN_ERR;
        p = hit + klen;
    }
}

/* the template file's text without the one trailing newline an editor adds */
static char* read_template(const char* path, const char* key) {
    size_t len;
    char* t = hn_read_file(path, &len);
    if (!t) return NULL;
    if (len > 0 && t[len - 1] == '\n') t[--len] = '\0';
    if (len > 0 && t[len - 1] == '\r') t[--len] = '\0';
    if (!strstr(t, key)) {
        hn_error("template %s has no %s", path, key);
        free(t);
        return NULL;
    }
    return t;
}

/* the passages retrieved for the current example (with a retriever), then K examples
 * other than `cur`, drawn from a stream seeded by (seed, cur) so that one
 * example's shots do not depend on the others'; each formatted and followed by its answer,
 * then "\n\n", then the current example's formatted prompt */
static int build_prompt(Buf* b, const Example* ex, int n, int cur, int mc, const char* tmpl,
                        const HnEvalOptions* opt) {
    const char* key = mc ? "{context}" : "{prompt}";
    const int shots = opt->shots;
    HnRng rng;
    hn_rng_seed(&rng, opt->seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(cur + 1)));
    int chosen[64];
    b->n = 0;
    if (buf_add(b, "", 0) != HN_OK) return HN_ERR;
    if (opt->retriever && opt->top_k > 0) { /* the passages retrieved for this example */
        int ids[64];
        double scores[64];
        int k = opt->top_k < 64 ? opt->top_k : 64;
        int got = hn_retriever_search(opt->retriever, ex[cur].prompt, k, ids, scores);
        if (got < 0) return HN_ERR;
        for (int i = 0; i < got; i++) {
            const char* p = hn_retriever_passage(opt->retriever, ids[i]);
            if (buf_add(b, p, strlen(p)) != HN_OK || buf_add(b, "\n\n", 2) != HN_OK) return HN_ERR;
        }
    }
    for (int k = 0; k < shots; k++) {
        int j, again;
        do { /* rejection: K is small next to n */
            j = (int)hn_rng_below(&rng, (uint64_t)n);
            again = j == cur;
            for (int i = 0; i < k; i++)
                again |= chosen[i] == j;
        } while (again);
        chosen[k] = j;
        const char* answer = mc ? ex[j].choices[ex[j].answer] : ex[j].reference;
        if (buf_format(b, tmpl, key, ex[j].prompt) != HN_OK ||
            buf_add(b, answer, strlen(answer)) != HN_OK || buf_add(b, "\n\n", 2) != HN_OK)
            return HN_ERR;
    }
    return buf_format(b, tmpl, key, ex[cur].prompt);
}

/* the prompt's ids, starting as the model's documents start (hn_tokenizer_doc_start), so
 * the model sees a prompt where it saw documents begin; an empty prompt gets end-of-text
 * so there is always a token to condition on */
static int encode_prompt(const HnTokenizer* tok, const char* text, HnTokens* out) {
    out->n = 0;
    int start = hn_tokenizer_doc_start(tok);
    if (start >= 0 && hn_tokens_push(out, start) != HN_OK) return hn_error("out of memory");
    if (hn_tokenizer_encode(tok, text, strlen(text), out) != HN_OK) return HN_ERR;
    if (out->n == 0 && hn_tokens_push(out, hn_tokenizer_eos(tok)) != HN_OK)
        return hn_error("out of memory");
    return HN_OK;
}

/* ---- the tasks ---- */

static int task_ppl(HnEvalModel* m, const HnTokenizer* tok, const char* path, HnEvalResult* r) {
    size_t len;
    char* buf = hn_read_file(path, &len);
    if (!buf) return HN_ERR;
    HnTokens ids = {0};
    int rc;
    if (is_shard(buf, len)) {
        rc = shard_ids(path, buf, len, &ids); /* scored as they are: no BOS added */
    } else if (memchr(buf, 0, len)) {
        /* text never holds NUL bytes: a damaged shard is not scored as text */
        rc = hn_error("%s: neither a token shard (its first int32 is not the magic %d) nor "
                      "text (it holds NUL bytes)",
                      path, HN_SHARD_MAGIC);
    } else if (!tok) {
        rc = hn_error("%s is text but the checkpoint has no tokenizer: give a token shard (.bin)",
                      path);
    } else {
        int start = hn_tokenizer_doc_start(tok); /* as training documents start */
        rc = start >= 0 ? hn_tokens_push(&ids, start) : HN_OK;
        if (rc == HN_OK) rc = hn_tokenizer_encode(tok, buf, len, &ids);
    }
    free(buf);
    double nll = 0.0;
    if (rc == HN_OK && ids.n < 2)
        rc = hn_error("%s has %zu tokens: perplexity needs at least 2", path, ids.n);
    if (rc == HN_OK && hn_eval_nll(m, ids.ids, ids.n, &nll, &r->count) != HN_OK)
        rc = error_in(path);
    hn_tokens_free(&ids);
    if (rc != HN_OK) return HN_ERR;
    r->loss = nll / (double)r->count;
    r->ppl = exp(r->loss);
    return HN_OK;
}

static int task_mc(HnEvalModel* m, const HnTokenizer* tok, const Example* ex, int n,
                   const char* tmpl, const HnEvalOptions* opt, HnEvalResult* r) {
    Buf prompt = {0};
    HnTokens ctx = {0};
    HnTokens* choices = NULL;
    double* ll = NULL;
    int rc = HN_OK, maxc = 0, right = 0, right_norm = 0;
    for (int i = 0; i < n; i++)
        maxc = ex[i].nchoices > maxc ? ex[i].nchoices : maxc;
    choices = calloc((size_t)maxc, sizeof *choices);
    ll = calloc((size_t)maxc, sizeof *ll);
    if (!choices || !ll) rc = hn_error("out of memory");
    for (int i = 0; rc == HN_OK && i < n; i++) {
        rc = build_prompt(&prompt, ex, n, i, 1, tmpl, opt);
        if (rc == HN_OK) rc = encode_prompt(tok, prompt.s, &ctx);
        for (int c = 0; rc == HN_OK && c < ex[i].nchoices; c++) {
            choices[c].n = 0;
            rc = hn_tokenizer_encode(tok, ex[i].choices[c], strlen(ex[i].choices[c]), &choices[c]);
        }
        if (rc == HN_OK)
            rc = hn_eval_choices_loglik(m, ctx.ids, (int)ctx.n, choices, ex[i].nchoices, ll);
        if (rc != HN_OK) {
            rc = example_error(opt->data, i);
            break;
        }
        int best = 0, best_norm = 0;
        for (int c = 1; c < ex[i].nchoices; c++) {
            if (ll[c] > ll[best]) best = c;
            if (ll[c] / (double)strlen(ex[i].choices[c]) >
                ll[best_norm] / (double)strlen(ex[i].choices[best_norm]))
                best_norm = c;
        }
        right += best == ex[i].answer;
        right_norm += best_norm == ex[i].answer;
    }
    for (int c = 0; c < maxc; c++)
        hn_tokens_free(&choices[c]);
    free(choices);
    free(ll);
    free(prompt.s);
    hn_tokens_free(&ctx);
    if (rc != HN_OK) return HN_ERR;
    r->accuracy = (double)right / n;
    r->accuracy_norm = (double)right_norm / n;
    r->count = (size_t)n;
    return HN_OK;
}

/* the decoded continuation, cut at its first newline */
typedef struct {
    const HnTokenizer* tok;
    Buf text;
    int failed;
} GenText;

static int on_gen_token(void* ctx, int id) {
    GenText* g = ctx;
    size_t len;
    const char* bytes = hn_tokenizer_token_bytes(g->tok, id, &len);
    if (!bytes) len = 0; /* a padded-vocabulary id the tokenizer does not know */
    const char* nl = memchr(bytes ? bytes : "", '\n', len);
    if (buf_add(&g->text, bytes ? bytes : "", nl ? (size_t)(nl - bytes) : len) != HN_OK)
        g->failed = 1;
    return nl != NULL || g->failed;
}

static int task_gen(HnEvalModel* m, const HnTokenizer* tok, const Example* ex, int n,
                    const char* tmpl, const HnEvalOptions* opt, HnEvalResult* r) {
    Buf prompt = {0};
    HnTokens ids = {0};
    GenText g = {.tok = tok};
    HnSampler greedy;
    HnSampleParams sp = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    int rc = hn_sampler_init(&greedy, m->config.V, &sp, 0);
    double em = 0.0, rouge = 0.0;
    for (int i = 0; rc == HN_OK && i < n; i++) {
        rc = build_prompt(&prompt, ex, n, i, 0, tmpl, opt);
        if (rc == HN_OK) rc = encode_prompt(tok, prompt.s, &ids);
        g.text.n = 0;
        if (rc == HN_OK) rc = buf_add(&g.text, "", 0);
        if (rc == HN_OK)
            rc = hn_eval_generate(m, &greedy, ids.ids, ids.n, opt->max_tokens,
                                  hn_tokenizer_eos(tok), on_gen_token, &g, NULL);
        if (rc == HN_OK && g.failed) rc = hn_error("out of memory");
        if (rc != HN_OK) {
            rc = example_error(opt->data, i);
            break;
        }
        em += hn_exact_match(g.text.s, ex[i].reference);
        rouge += hn_rouge_l(g.text.s, ex[i].reference);
    }
    hn_sampler_free(&greedy);
    free(prompt.s);
    free(g.text.s);
    hn_tokens_free(&ids);
    if (rc != HN_OK) return HN_ERR;
    r->exact_match = em / n;
    r->rouge_l = rouge / n;
    r->count = (size_t)n;
    return HN_OK;
}

int hn_eval_run(HnEvalModel* m, const HnTokenizer* tok, const HnEvalOptions* opt, HnEvalResult* r) {
    memset(r, 0, sizeof *r);
    if (strcmp(opt->task, "ppl") == 0) return task_ppl(m, tok, opt->data, r);
    int mc = strcmp(opt->task, "mc") == 0;
    if (!mc && strcmp(opt->task, "gen") != 0)
        return hn_error("unknown task '%s' (ppl, mc or gen)", opt->task);
    if (!tok)
        return hn_error("the %s task needs a tokenizer and the checkpoint has none", opt->task);
    if (opt->shots < 0 || opt->shots > 64) return hn_error("shots must be 0..64");
    if (!mc && opt->max_tokens < 1) return hn_error("max-tokens must be at least 1");
    const char* key = mc ? "{context}" : "{prompt}";
    char* tmpl = opt->template_path ? read_template(opt->template_path, key) : strdup(key);
    if (!tmpl) return opt->template_path ? HN_ERR : hn_error("out of memory");
    Example* ex;
    int n, rc = read_examples(opt->data, mc, &ex, &n);
    if (rc == HN_OK && opt->shots > n - 1)
        rc = hn_error("%d shots need at least %d examples in %s (it has %d)", opt->shots,
                      opt->shots + 1, opt->data, n);
    if (rc == HN_OK)
        rc = mc ? task_mc(m, tok, ex, n, tmpl, opt, r) : task_gen(m, tok, ex, n, tmpl, opt, r);
    if (n > 0) examples_free(ex, n);
    free(tmpl);
    return rc;
}
