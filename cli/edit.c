/*
 * `hone edit`: a rank-one knowledge edit (train/edit.h), one request written to a new
 * checkpoint, or a file of requests each applied to the original model and measured.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/error.h"
#include "train/edit.h"

static const char* HELP =
    "usage: hone edit CKPT --subject S --prompt P --target O --cov-data DATA -o OUT.h5\n"
    "                 [--paraphrase P]... [--neighbor P]... [options]\n"
    "       hone edit CKPT --requests FILE.jsonl --cov-data DATA [--json OUT] [options]\n"
    "\n"
    "Rewrite one fact with a rank-one update of one MLP's down-projection (ROME, Meng et al.\n"
    "2022). P holds {} where the subject goes (or the subject itself); O is the new object as\n"
    "it continues the prompt, usually with a leading space (\" Rome\"). The key covariance\n"
    "comes from DATA, token shards (a .bin glob) or a text file. Prints the new object's\n"
    "probability before and after on the prompt and on each paraphrase, and the KL divergence\n"
    "of the next-token distribution (before || after) on each neighbourhood prompt, whose\n"
    "answers should not move. With --requests, every line of FILE is one request\n"
    "{\"subject\", \"prompt\", \"target\", \"true\" (optional: the current object),\n"
    "\"paraphrases\": [...], \"neighborhood\": [...]}, each applied to the original model on\n"
    "its own and measured; nothing is written but --json.\n"
    "\n"
    "  --layer L          the block whose mlp.down changes (default: layers / 6)\n"
    "  --cov-tokens N     tokens of DATA for the covariance (default 40000)\n"
    "  --steps N          Adam steps on the new value (default 20)\n"
    "  --lr X             their learning rate (default 0.5)\n"
    "  --kl X             weight of the KL term that keeps \"{} is a\" (default 0.0625)\n"
    "  --weight-decay X   on the value's change (default 0.5)\n"
    "  --clamp X          the change's norm is at most X times the old value's (default 4)\n"
    "  --prefixes N       context prefixes sampled from the model (default 10)\n"
    "  --seed S           their sampling seed (default 1)\n"
    "  --json OUT         also write the measurements as JSON\n"
    "  -o, --out OUT      the edited checkpoint (single request)\n"
    "  --force            replace OUT if it exists\n"
    "  --deflate N        zlib level 0..9 (default 1)\n";

static int usage(const char* fmt, const char* arg) {
    fprintf(stderr, "hone: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see `hone edit --help`)\n");
    return 2;
}

static int fail(void) {
    fprintf(stderr, "hone: error: %s\n", hn_error_message());
    return 1;
}

enum { MAX_TEXTS = 16 };

/* one request and its test prompts */
typedef struct {
    HnEditRequest r;
    const char* truth; /* or NULL */
    const char* para[MAX_TEXTS];
    int npara;
    const char* neigh[MAX_TEXTS];
    int nneigh;
} Request;

/* what a request measured */
typedef struct {
    double lp_before[MAX_TEXTS + 1], lp_after[MAX_TEXTS + 1]; /* prompt, then paraphrases */
    double lt_before[MAX_TEXTS + 1], lt_after[MAX_TEXTS + 1]; /* the true object's */
    int top_before[MAX_TEXTS + 1], top_after[MAX_TEXTS + 1];
    double kl[MAX_TEXTS];
    int kept[MAX_TEXTS]; /* the neighbourhood prompt's top token did not change */
    HnEditStats st;
} Result;

/* score the prompt and the paraphrases (after = 0 or 1) */
static int score_all(HnEditor* e, const Request* q, Result* res, int after) {
    for (int i = 0; i <= q->npara; i++) {
        const char* p = i == 0 ? q->r.prompt : q->para[i - 1];
        char* text = hn_edit_fill(p, q->r.subject);
        if (!text) return HN_ERR;
        double* lp = after ? res->lp_after : res->lp_before;
        double* lt = after ? res->lt_after : res->lt_before;
        int* top = after ? res->top_after : res->top_before;
        int t2, rc = hn_editor_score(e, text, q->r.target, &lp[i], &top[i]);
        lt[i] = NAN;
        if (rc == HN_OK && q->truth) rc = hn_editor_score(e, text, q->truth, &lt[i], &t2);
        free(text);
        if (rc != HN_OK) return HN_ERR;
    }
    return HN_OK;
}

static int run_one(HnEditor* e, const Request* q, const HnEditOptions* o, Result* res) {
    memset(res, 0, sizeof *res);
    const int V = e->model.cfg.V;
    float* before = malloc((size_t)(q->nneigh ? q->nneigh : 1) * V * sizeof(float));
    float* after = malloc((size_t)V * sizeof(float));
    int rc = before && after ? HN_OK : hn_error("out of memory");
    int top_b[MAX_TEXTS], top_a;
    if (rc == HN_OK) rc = score_all(e, q, res, 0);
    for (int i = 0; rc == HN_OK && i < q->nneigh; i++)
        rc = hn_editor_next(e, q->neigh[i], before + (size_t)i * V, &top_b[i]);
    if (rc == HN_OK) rc = hn_editor_apply(e, &q->r, o, &res->st);
    if (rc == HN_OK) rc = score_all(e, q, res, 1);
    for (int i = 0; rc == HN_OK && i < q->nneigh; i++) {
        rc = hn_editor_next(e, q->neigh[i], after, &top_a);
        const float* pb = before + (size_t)i * V;
        double kl = 0;
        for (int v = 0; v < V; v++)
            if (pb[v] > 0) kl += pb[v] * (log(pb[v]) - log(after[v] > 0 ? after[v] : 1e-45));
        res->kl[i] = kl;
        res->kept[i] = top_a == top_b[i];
    }
    free(before);
    free(after);
    return rc;
}

static void print_result(const Request* q, const Result* res, int index) {
    char head[32] = "";
    if (index >= 0) snprintf(head, sizeof head, "request %d: ", index + 1);
    char* filled = hn_edit_fill(q->r.prompt, q->r.subject);
    printf("%s\"%s\" -> \"%s\" (%d steps, object loss %.3f -> %.3f)\n", head,
           filled ? filled : q->r.prompt, q->r.target, res->st.steps, res->st.loss_before,
           res->st.loss_after);
    free(filled);
    for (int i = 0; i <= q->npara; i++) {
        char label[32];
        if (i == 0)
            snprintf(label, sizeof label, "prompt");
        else
            snprintf(label, sizeof label, "paraphrase %d", i);
        printf("  %-14s p(new) %.4f -> %.4f  top-1 %s -> %s", label, exp(res->lp_before[i]),
               exp(res->lp_after[i]), res->top_before[i] ? "yes" : "no",
               res->top_after[i] ? "yes" : "no");
        if (q->truth)
            printf("  p(true) %.4f -> %.4f", exp(res->lt_before[i]), exp(res->lt_after[i]));
        printf("\n");
    }
    if (q->nneigh) {
        double kl = 0;
        int kept = 0;
        for (int i = 0; i < q->nneigh; i++)
            kl += res->kl[i], kept += res->kept[i];
        printf("  %-14s KL %.4f (mean of %d prompts), top-1 unchanged %d/%d\n", "neighbourhood",
               kl / q->nneigh, q->nneigh, kept, q->nneigh);
    }
}

static cJSON* result_json(const Request* q, const Result* res) {
    cJSON* j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "subject", q->r.subject);
    cJSON_AddStringToObject(j, "target", q->r.target);
    cJSON_AddNumberToObject(j, "steps", res->st.steps);
    cJSON_AddNumberToObject(j, "p_new_before", exp(res->lp_before[0]));
    cJSON_AddNumberToObject(j, "p_new_after", exp(res->lp_after[0]));
    cJSON_AddBoolToObject(j, "top1_after", res->top_after[0]);
    cJSON* pa = cJSON_AddArrayToObject(j, "paraphrases");
    for (int i = 1; i <= q->npara; i++) {
        cJSON* p = cJSON_CreateObject();
        cJSON_AddNumberToObject(p, "p_new_before", exp(res->lp_before[i]));
        cJSON_AddNumberToObject(p, "p_new_after", exp(res->lp_after[i]));
        cJSON_AddBoolToObject(p, "top1_after", res->top_after[i]);
        cJSON_AddItemToArray(pa, p);
    }
    cJSON* nb = cJSON_AddArrayToObject(j, "neighborhood_kl");
    for (int i = 0; i < q->nneigh; i++)
        cJSON_AddItemToArray(nb, cJSON_CreateNumber(res->kl[i]));
    return j;
}

/* the strings of a JSON array into out (at most MAX_TEXTS) */
static int strings_of(const cJSON* a, const char** out, int* n, const char* what, long line) {
    *n = 0;
    if (!a) return HN_OK;
    if (!cJSON_IsArray(a))
        return hn_error("line %ld: \"%s\" must be a list of strings", line, what);
    const cJSON* it;
    cJSON_ArrayForEach(it, a) {
        if (!cJSON_IsString(it) || *n >= MAX_TEXTS)
            return hn_error("line %ld: \"%s\" must be at most %d strings", line, what, MAX_TEXTS);
        out[(*n)++] = it->valuestring;
    }
    return HN_OK;
}

/* one line of a requests file into q (its strings point into *j, which the caller frees) */
static int parse_request(const char* path, long lineno, const char* line, cJSON** j, Request* q) {
    memset(q, 0, sizeof *q);
    *j = cJSON_Parse(line);
    if (!*j) return hn_error("%s:%ld: not valid JSON", path, lineno);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(*j, "subject"),
                *p = cJSON_GetObjectItemCaseSensitive(*j, "prompt"),
                *t = cJSON_GetObjectItemCaseSensitive(*j, "target"),
                *tr = cJSON_GetObjectItemCaseSensitive(*j, "true");
    if (!cJSON_IsObject(*j)) return hn_error("%s:%ld: not a JSON object", path, lineno);
    if (!cJSON_IsString(s) || !cJSON_IsString(p) || !cJSON_IsString(t))
        return hn_error("%s:%ld: needs strings \"subject\", \"prompt\" and \"target\"", path,
                        lineno);
    q->r.subject = s->valuestring;
    q->r.prompt = p->valuestring;
    q->r.target = t->valuestring;
    q->truth = cJSON_IsString(tr) ? tr->valuestring : NULL;
    if (strings_of(cJSON_GetObjectItemCaseSensitive(*j, "paraphrases"), q->para, &q->npara,
                   "paraphrases", lineno) != HN_OK)
        return HN_ERR;
    return strings_of(cJSON_GetObjectItemCaseSensitive(*j, "neighborhood"), q->neigh, &q->nneigh,
                      "neighborhood", lineno);
}

/* every line of a requests file parsed once before the minutes of the covariance pass, so
 * a bad file fails at once; HN_ERR names the first bad line */
static int check_requests(const char* path) {
    FILE* f = fopen(path, "r");
    if (!f) return hn_error("cannot read %s", path);
    char line[16384];
    long lineno = 0;
    int n = 0, rc = HN_OK;
    while (rc == HN_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        if (!strchr(line, '\n') && !feof(f))
            rc = hn_error("%s:%ld: a line longer than %zu bytes", path, lineno, sizeof line - 1);
        cJSON* j = NULL;
        Request q;
        if (rc == HN_OK) rc = parse_request(path, lineno, line, &j, &q);
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    if (rc == HN_OK && n == 0) rc = hn_error("%s holds no request", path);
    return rc;
}

static int run_requests(HnEditor* e, const char* path, const HnEditOptions* o, const char* json) {
    FILE* f = fopen(path, "r");
    if (!f) return hn_error("cannot read %s", path);
    char line[16384];
    long lineno = 0;
    int n = 0, eff = 0, para = 0, npara = 0, beats = 0, nbeats = 0, kept = 0, nkept = 0;
    double kl = 0;
    int rc = HN_OK;
    cJSON* all = cJSON_CreateArray();
    while (rc == HN_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        cJSON* j = NULL;
        Request q;
        rc = parse_request(path, lineno, line, &j, &q);
        Result res;
        if (rc == HN_OK) rc = run_one(e, &q, o, &res);
        if (rc == HN_OK) {
            print_result(&q, &res, n);
            fflush(stdout);
            cJSON_AddItemToArray(all, result_json(&q, &res));
            n++;
            eff += res.top_after[0];
            for (int i = 1; i <= q.npara; i++)
                para += res.top_after[i], npara++;
            for (int i = 0; q.truth && i <= q.npara; i++)
                beats += res.lp_after[i] > res.lt_after[i], nbeats++;
            for (int i = 0; i < q.nneigh; i++)
                kl += res.kl[i], kept += res.kept[i], nkept++;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    if (rc == HN_OK && n == 0) rc = hn_error("%s holds no request", path);
    if (rc == HN_OK) {
        printf("edits: %d; new object top-1 on the prompt %d/%d; on paraphrases %d/%d (%.0f%%)", n,
               eff, n, para, npara, npara ? 100.0 * para / npara : 0.0);
        if (nbeats) printf("; p(new) > p(true) %d/%d", beats, nbeats);
        if (nkept)
            printf("; neighbourhood KL %.4f (mean), top-1 unchanged %d/%d", kl / nkept, kept,
                   nkept);
        printf("\n");
    }
    if (rc == HN_OK && json) {
        cJSON* j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "layer", o->layer);
        cJSON_AddNumberToObject(j, "requests", n);
        cJSON_AddNumberToObject(j, "efficacy_top1", eff);
        cJSON_AddNumberToObject(j, "paraphrase_top1_rate", npara ? (double)para / npara : 0);
        if (nbeats) cJSON_AddNumberToObject(j, "new_beats_true_rate", (double)beats / nbeats);
        if (nkept) {
            cJSON_AddNumberToObject(j, "neighborhood_kl", kl / nkept);
            cJSON_AddNumberToObject(j, "neighborhood_top1_kept_rate", (double)kept / nkept);
        }
        cJSON_AddItemToObject(j, "edits", all);
        all = NULL;
        char* text = cJSON_Print(j);
        cJSON_Delete(j);
        FILE* out = fopen(json, "w");
        int ok = out && text && fputs(text, out) >= 0;
        if (out) ok = fclose(out) == 0 && ok;
        free(text);
        if (!ok) rc = hn_error("cannot write %s", json);
    }
    cJSON_Delete(all);
    return rc;
}

static int parse_int(const char* s, long lo, long hi, long* out) {
    char* end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char* s, float* out) {
    char* end;
    float v = strtof(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0) return 0;
    *out = v;
    return 1;
}

int hn_cmd_edit(int argc, char** argv) {
    const char *ckpt = NULL, *out = NULL, *cov = NULL, *requests = NULL, *json = NULL;
    Request q;
    memset(&q, 0, sizeof q);
    long layer = -1, cov_tokens = 40000, steps = -1, prefixes = -1, seed = -1, deflate = 1;
    float lr = -1, kl = -1, wd = -1, clamp = -1;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 0;
        }
        if (!strcmp(a, "--force")) {
            force = 1;
            continue;
        }
        if (a[0] != '-') {
            if (ckpt) return usage("unexpected argument '%s'", a);
            ckpt = a;
            continue;
        }
        if (i + 1 >= argc) return usage("%s needs a value", a);
        const char* v = argv[++i];
        if (!strcmp(a, "--subject"))
            q.r.subject = v;
        else if (!strcmp(a, "--prompt"))
            q.r.prompt = v;
        else if (!strcmp(a, "--target"))
            q.r.target = v;
        else if (!strcmp(a, "--paraphrase")) {
            if (q.npara >= MAX_TEXTS) return usage("at most 16 %ss", "--paraphrase");
            q.para[q.npara++] = v;
        } else if (!strcmp(a, "--neighbor") || !strcmp(a, "--neighbour")) {
            if (q.nneigh >= MAX_TEXTS) return usage("at most 16 %ss", "--neighbor");
            q.neigh[q.nneigh++] = v;
        } else if (!strcmp(a, "--true"))
            q.truth = v;
        else if (!strcmp(a, "--cov-data"))
            cov = v;
        else if (!strcmp(a, "--requests"))
            requests = v;
        else if (!strcmp(a, "--json"))
            json = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--layer")) {
            if (!parse_int(v, 0, 100000, &layer))
                return usage("--layer needs a layer number, not '%s'", v);
        } else if (!strcmp(a, "--cov-tokens")) {
            if (!parse_int(v, 1, 1L << 30, &cov_tokens)) return usage("--cov-tokens: '%s'", v);
        } else if (!strcmp(a, "--steps")) {
            if (!parse_int(v, 0, 100000, &steps)) return usage("--steps: '%s'", v);
        } else if (!strcmp(a, "--prefixes")) {
            if (!parse_int(v, 0, 30, &prefixes)) return usage("--prefixes is 0..30, not '%s'", v);
        } else if (!strcmp(a, "--seed")) {
            if (!parse_int(v, 0, 1L << 62, &seed)) return usage("--seed: '%s'", v);
        } else if (!strcmp(a, "--deflate")) {
            if (!parse_int(v, 0, 9, &deflate)) return usage("--deflate is 0..9, not '%s'", v);
        } else if (!strcmp(a, "--lr")) {
            if (!parse_float(v, &lr)) return usage("--lr: '%s'", v);
        } else if (!strcmp(a, "--kl")) {
            if (!parse_float(v, &kl)) return usage("--kl: '%s'", v);
        } else if (!strcmp(a, "--weight-decay")) {
            if (!parse_float(v, &wd)) return usage("--weight-decay: '%s'", v);
        } else if (!strcmp(a, "--clamp")) {
            if (!parse_float(v, &clamp) || clamp <= 0) return usage("--clamp: '%s'", v);
        } else {
            return usage("unknown option '%s'", a);
        }
    }
    if (!ckpt) return usage("%s", "edit needs a checkpoint");
    if (!cov) return usage("%s", "edit needs --cov-data (token shards or a text file)");
    if (requests && (q.r.subject || q.r.prompt || q.r.target || out))
        return usage("%s", "--requests goes without --subject, --prompt, --target and -o");
    if (!requests && (!q.r.subject || !q.r.prompt || !q.r.target))
        return usage("%s", "edit needs --subject, --prompt and --target (or --requests)");
    if (!requests && !out) return usage("%s", "edit needs -o OUT.h5");
    struct stat so;
    if (out && !force && stat(out, &so) == 0) {
        fprintf(stderr, "hone: error: %s exists — pass --force to replace it\n", out);
        return 1;
    }
    if (out) {
        struct stat si;
        if (stat(ckpt, &si) == 0 && stat(out, &so) == 0 && si.st_ino == so.st_ino &&
            si.st_dev == so.st_dev) {
            fprintf(stderr, "hone: error: %s is the input — write elsewhere\n", out);
            return 1;
        }
    }

    if (requests && check_requests(requests) != HN_OK) return fail();
    HnEditor e;
    HnEditOptions o;
    int np = prefixes >= 0 ? (int)prefixes : 10;
    if (hn_editor_open(&e, ckpt, np + 2, 128) != HN_OK) {
        hn_editor_close(&e);
        return fail();
    }
    hn_edit_defaults(&o, e.model.cfg.L);
    o.nprefix = np;
    if (layer >= 0) o.layer = (int)layer;
    if (steps >= 0) o.steps = (int)steps;
    if (seed >= 0) o.seed = (uint64_t)seed;
    if (lr >= 0) o.lr = lr;
    if (kl >= 0) o.kl_weight = kl;
    if (wd >= 0) o.weight_decay = wd;
    if (clamp > 0) o.clamp = clamp;
    fprintf(stderr, "edit: layer %d mlp.down; key covariance from %s ...\n", o.layer, cov);
    int rc = hn_editor_covariance(&e, o.layer, cov, (size_t)cov_tokens);
    if (rc == HN_OK) fprintf(stderr, "edit: key covariance of %zu tokens\n", e.cov_n);
    if (rc == HN_OK && requests) {
        rc = run_requests(&e, requests, &o, json);
    } else if (rc == HN_OK) {
        Result res;
        rc = run_one(&e, &q, &o, &res);
        if (rc == HN_OK) {
            print_result(&q, &res, -1);
            rc = hn_editor_save(&e, out, (int)deflate);
        }
        if (rc == HN_OK && json) {
            cJSON* j = result_json(&q, &res);
            char* text = cJSON_Print(j);
            cJSON_Delete(j);
            FILE* f = fopen(json, "w");
            int ok = f && text && fputs(text, f) >= 0;
            if (f) ok = fclose(f) == 0 && ok;
            free(text);
            if (!ok) rc = hn_error("cannot write %s", json);
        }
        if (rc == HN_OK) printf("wrote %s\n", out);
    }
    hn_editor_close(&e);
    return rc == HN_OK ? 0 : fail();
}
