/*
 * `hone bench CONFIG.yaml`: every specialization method on one model, one domain and one
 * token budget, side by side. CONFIG is a run config (model.from, data, optim, train.steps:
 * the budget every trained method gets) with a bench section (what the methods are measured
 * on). Each method runs in a child process (so its peak memory is its own): trained ones
 * train into OUT/runs/METHOD/, then every method is evaluated (domain and general
 * perplexity, multiple-choice accuracy, generation ROUGE-L) and OUT/METHOD.json records it.
 * A method whose METHOD.json exists is not run again (resumable); OUT/bench.csv and
 * OUT/bench.md hold the table of all of them, in the order of bench.methods.
 */
#define _DEFAULT_SOURCE /* wait4 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "data/h5.h"
#include "data/h5ckpt.h"
#include "eval/model.h"
#include "eval/retrieve.h"
#include "eval/tasks.h"
#include "train/trainer.h"

typedef enum { EVAL_ONLY, TRAINED } Kind;
typedef struct {
    const char* name;
    Kind kind;
    const char* what;
    const char* lr; /* default learning rate (each method's usual range; bench.lr overrides) */
    const char* sets[6];
} Method;

/* black-box (retrieval), grey-box (prompts: discrete, then learned), white-box (weights) */
static const Method METHODS[] = {
    {"zero-shot", EVAL_ONLY, "the base model, each question alone", NULL, {NULL}},
    {"few-shot", EVAL_ONLY, "the base model, solved questions first (bench.shots)", NULL, {NULL}},
    {"retrieval", EVAL_ONLY, "the base model, BM25 passages first (bench.top_k)", NULL, {NULL}},
    {"prompt",
     TRAINED,
     "prompt tuning, 16 virtual tokens from vocabulary rows",
     "3e-2",
     {"peft.methods=[prompt]", "peft.prompt.length=16", "peft.prompt.init=vocab"}},
    /* with Li & Liang's MLP reparameterization in training: optimizing the prefix itself
     * from PEFT's N(0, 1) start is unstable, as they report; 3e-3 from a sweep on SmolLM2
     * (benchmarks/results/bench_smollm2_prefix_sweep: 3e-4, 1e-3 and 1e-2 end worse than
     * zero-shot after 16 steps) */
    {"prefix",
     TRAINED,
     "prefix tuning, 16 key/value positions (an MLP of width 128 makes them in training)",
     "3e-3",
     {"peft.methods=[prefix]", "peft.prefix.length=16", "peft.prefix.projection=128"}},
    {"ptuning",
     TRAINED,
     "P-tuning, 16 virtual tokens, MLP encoder of width 128",
     "1e-3",
     {"peft.methods=[ptuning]", "peft.ptuning.length=16", "peft.ptuning.hidden=128"}},
    {"lora",
     TRAINED,
     "LoRA r=16 alpha=32 on every linear",
     "1e-3",
     {"peft.methods=[lora]",
      "peft.lora.targets=[attn.q, attn.k, attn.v, attn.o, mlp.gate, mlp.up, mlp.down]",
      "peft.lora.rank=16", "peft.lora.alpha=32"}},
    {"dora",
     TRAINED,
     "DoRA r=16 alpha=32 on every linear",
     "1e-3",
     {"peft.methods=[lora]",
      "peft.lora.targets=[attn.q, attn.k, attn.v, attn.o, mlp.gate, mlp.up, mlp.down]",
      "peft.lora.rank=16", "peft.lora.alpha=32", "peft.lora.dora=true"}},
    {"ia3",
     TRAINED,
     "IA3 on keys, values and the MLP's input to down",
     "3e-3",
     {"peft.methods=[ia3]"}},
    {"houlsby",
     TRAINED,
     "Houlsby adapters (after attention and MLP), reduction 16",
     "1e-3",
     {"peft.methods=[adapter]", "peft.adapter.kind=houlsby", "peft.adapter.reduction=16"}},
    {"pfeiffer",
     TRAINED,
     "Pfeiffer adapters (after the MLP), reduction 16",
     "1e-3",
     {"peft.methods=[adapter]", "peft.adapter.kind=pfeiffer", "peft.adapter.reduction=16"}},
    {"bitfit", TRAINED, "BitFit (biases only)", "1e-3", {"peft.methods=[bitfit]"}},
    {"fish",
     TRAINED,
     "FISH mask: 1% of entries by Fisher information (32 windows)",
     "2e-4",
     {"mask.method=fish", "mask.density=0.01", "mask.fish_examples=32"}},
    {"full", TRAINED, "full fine-tuning (every parameter)", "5e-5", {NULL}},
};
#define NMETHODS ((int)(sizeof METHODS / sizeof *METHODS))

static const char* HELP =
    "usage: hone bench CONFIG.yaml [--set section.key=value ...]\n"
    "\n"
    "Run every specialization method on one model, one domain and one token budget, and\n"
    "tabulate them. CONFIG is a run config: model.from (the base), data (the domain's\n"
    "training shards), optim and train.steps (the same for every trained method; each\n"
    "method has its own learning rate, bench.lr overrides it), and a bench section:\n"
    "bench.domain / bench.general (held-out domain text and general text, perplexity),\n"
    "bench.qa / bench.qa_gen (questions: hone eval mc / gen JSONL), bench.retrieve (the\n"
    "folder retrieval searches), bench.methods (default: all, in this order):\n"
    "  zero-shot, few-shot, retrieval   the base model, questions alone, with solved\n"
    "                                   examples first, with BM25 passages first\n"
    "  prompt, prefix, ptuning          learned soft prompts / prefixes\n"
    "  lora, dora, ia3, houlsby, pfeiffer, bitfit   adapters on a frozen base\n"
    "  fish, full                       a 1% Fisher-masked update; every parameter\n"
    "Writes bench.out/METHOD.json as each method finishes (a method that has one is not run\n"
    "again: delete it to rerun), bench.out/runs/METHOD/ (its training run),\n"
    "bench.out/METHOD.log (its output), and bench.out/bench.csv and bench.md (the table).\n"
    "A method the model cannot take (BitFit without biases) is reported as such.\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const Method* find_method(const char* name) {
    for (int i = 0; i < NMETHODS; i++)
        if (strcmp(METHODS[i].name, name) == 0) return &METHODS[i];
    return NULL;
}

/* a JSON file, or NULL (the error set) */
static cJSON* read_json(const char* path) {
    size_t n;
    char* buf = hn_read_file(path, &n);
    cJSON* j = buf ? cJSON_Parse(buf) : NULL;
    free(buf);
    return j;
}

static int write_json(const char* path, const cJSON* j) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    char* text = cJSON_Print(j);
    FILE* f = text ? fopen(tmp, "w") : NULL;
    int ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f) ok = fclose(f) == 0 && ok;
    free(text);
    if (!ok || rename(tmp, path) != 0) return hn_error("cannot write %s", path);
    return HN_OK;
}

static double num(const cJSON* j, const char* key) {
    const cJSON* v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* seconds per step between the first and the last logged step of metrics.jsonl (the first
 * step's setup left out) */
static double step_seconds(const char* run) {
    char path[4200];
    hn_path(path, sizeof path, "%s/metrics.jsonl", run);
    FILE* f = fopen(path, "r");
    if (!f) return NAN;
    char line[1024];
    double s0 = NAN, e0 = NAN, s1 = NAN, e1 = NAN;
    while (fgets(line, sizeof line, f)) {
        cJSON* j = cJSON_Parse(line);
        double s = num(j, "step"), e = num(j, "elapsed_s");
        if (!isnan(s) && !isnan(e)) {
            if (isnan(s0)) s0 = s, e0 = e;
            s1 = s, e1 = e;
        }
        cJSON_Delete(j);
    }
    fclose(f);
    return s1 > s0 ? (e1 - e0) / (s1 - s0) : (s1 > 0 ? e1 / s1 : NAN);
}

/* the evaluation of one checkpoint as the method asks, into j */
static int evaluate(const HnConfig* cfg, const Method* me, const char* ckpt, cJSON* j) {
    HnEvalModel* m = NULL;
    HnTokenizer* tok = NULL;
    HnRetriever* index = NULL;
    if (hn_eval_model_open(ckpt, cfg->bench.context, &m, &tok) != HN_OK) return HN_ERR;
    int rc = HN_OK;
    HnEvalResult r;
    HnEvalOptions o = {.task = "ppl", .seed = 1337, .max_tokens = cfg->bench.gen_tokens};
    o.data = cfg->bench.domain;
    if ((rc = hn_eval_run(m, tok, &o, &r)) == HN_OK)
        cJSON_AddNumberToObject(j, "domain_ppl", r.ppl);
    o.data = cfg->bench.general;
    if (rc == HN_OK && (rc = hn_eval_run(m, tok, &o, &r)) == HN_OK)
        cJSON_AddNumberToObject(j, "general_ppl", r.ppl);
    if (strcmp(me->name, "few-shot") == 0) o.shots = cfg->bench.shots;
    if (rc == HN_OK && strcmp(me->name, "retrieval") == 0) {
        if (!(index = hn_retriever_open(cfg->bench.retrieve, 64))) rc = HN_ERR;
        o.retriever = index;
        o.top_k = cfg->bench.top_k;
    }
    o.task = "mc";
    o.data = cfg->bench.qa;
    if (rc == HN_OK && (rc = hn_eval_run(m, tok, &o, &r)) == HN_OK) {
        cJSON_AddNumberToObject(j, "qa_accuracy", r.accuracy);
        cJSON_AddNumberToObject(j, "qa_accuracy_norm", r.accuracy_norm);
        cJSON_AddNumberToObject(j, "qa_questions", (double)r.count);
    }
    o.task = "gen";
    o.data = cfg->bench.qa_gen;
    if (rc == HN_OK && cfg->bench.qa_gen[0] && (rc = hn_eval_run(m, tok, &o, &r)) == HN_OK) {
        cJSON_AddNumberToObject(j, "qa_gen_rouge_l", r.rouge_l);
        cJSON_AddNumberToObject(j, "qa_gen_exact", r.exact_match);
    }
    hn_retriever_free(index);
    hn_tokenizer_free(tok);
    hn_eval_model_free(m);
    return rc;
}

/* whether the base checkpoint (model.from) is a GPT-2 */
static int base_is_gpt2(const HnConfig* cfg, int* gpt2) {
    char* yaml = NULL;
    HnH5* f = hn_ckpt_open(cfg->model.from, &yaml);
    if (!f) return HN_ERR;
    HnConfig* base = malloc(sizeof *base);
    int rc = base ? HN_OK : hn_error("out of memory");
    if (rc == HN_OK) {
        hn_config_defaults(base);
        rc = hn_config_load_text(base, yaml, cfg->model.from);
    }
    if (rc == HN_OK) *gpt2 = strcmp(base->model.arch, "gpt2") == 0;
    free(base);
    free(yaml);
    hn_h5_close(f);
    return rc;
}

/* the child's work: train (if the method trains) and evaluate; writes OUT/METHOD.part */
static int run_method(const HnConfig* base, const Method* me, const char* part) {
    cJSON* j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "method", me->name);
    cJSON_AddStringToObject(j, "what", me->what);
    cJSON_AddStringToObject(j, "status", "ok");
    const char* ckpt = base->model.from;
    char run[4200], ckbuf[4300];
    int rc = HN_OK;
    if (me->kind == TRAINED) {
        HnConfig cfg = *base;
        const char* lr = me->lr;
        for (int i = 0; i < base->bench.lr.n; i++) {
            const char* it = base->bench.lr.item[i];
            size_t n = strlen(me->name);
            if (strncmp(it, me->name, n) == 0 && it[n] == '=') lr = it + n + 1;
        }
        char set[HN_STR + 64];
        hn_path(run, sizeof run, "%s/runs/%s", base->bench.out, me->name);
        hn_path(set, sizeof set, "optim.lr=%s", lr);
        rc = hn_config_set(&cfg, set);
        hn_path(set, sizeof set, "train.out=%s", run);
        if (rc == HN_OK) rc = hn_config_set(&cfg, set);
        for (int i = 0; rc == HN_OK && i < 6 && me->sets[i]; i++)
            rc = hn_config_set(&cfg, me->sets[i]);
        /* "every linear" of a GPT-2 block: its fused attn.qkv, attn.o and the MLP's two */
        int gpt2 = 0;
        if (rc == HN_OK && cfg.peft.lora.targets.n > 0 &&
            (rc = base_is_gpt2(&cfg, &gpt2)) == HN_OK && gpt2)
            rc = hn_config_set(&cfg, "peft.lora.targets=[attn.qkv, attn.o, mlp.up, mlp.down]");
        if (rc == HN_OK) rc = hn_config_validate(&cfg);
        cJSON_AddNumberToObject(j, "lr", strtod(lr, NULL));
        cJSON_AddNumberToObject(j, "steps", cfg.train.steps);
        HnTrainResult res;
        HnTrainOptions opts = {0};
        hn_remove_tree(run);
        double t0 = now_s();
        if (rc == HN_OK) rc = hn_train(&cfg, &opts, &res);
        if (rc != HN_OK && strcmp(me->name, "bitfit") == 0 && strstr(hn_error_message(), "bias")) {
            cJSON_ReplaceItemInObject(j, "status", cJSON_CreateString("not applicable"));
            cJSON_AddStringToObject(j, "note", hn_error_message());
            fprintf(stderr, "bench: %s: %s\n", me->name, hn_error_message());
            rc = write_json(part, j);
            cJSON_Delete(j);
            return rc;
        }
        cJSON_AddNumberToObject(j, "train_seconds", now_s() - t0);
        if (rc == HN_OK) {
            cJSON_AddNumberToObject(j, "last_loss", res.last_loss);
            if (!isnan(res.val_loss)) cJSON_AddNumberToObject(j, "val_loss", res.val_loss);
            hn_path(ckbuf, sizeof ckbuf, "%s/run.json", run);
            cJSON* info = read_json(ckbuf);
            double tps = num(info, "tokens_per_step"), step = step_seconds(run);
            cJSON_AddNumberToObject(j, "trainable", num(info, "trainable"));
            cJSON_AddNumberToObject(j, "parameters", num(info, "parameters"));
            cJSON_AddNumberToObject(j, "optimizer_mib", num(info, "optimizer_bytes") / (1 << 20));
            cJSON_AddNumberToObject(j, "tokens", tps * cfg.train.steps);
            if (!isnan(step)) {
                cJSON_AddNumberToObject(j, "step_seconds", step);
                cJSON_AddNumberToObject(j, "tokens_per_s", tps / step);
            }
            cJSON_Delete(info);
            hn_path(ckbuf, sizeof ckbuf, "%s/latest.h5", run);
            ckpt = ckbuf;
        }
    } else {
        cJSON_AddNumberToObject(j, "trainable", 0);
        cJSON_AddNumberToObject(j, "optimizer_mib", 0);
    }
    double t0 = now_s();
    if (rc == HN_OK) rc = evaluate(base, me, ckpt, j);
    cJSON_AddNumberToObject(j, "eval_seconds", now_s() - t0);
    if (rc == HN_OK) rc = write_json(part, j);
    cJSON_Delete(j);
    return rc;
}

static void fmt(char* buf, size_t n, const char* f, double v) {
    if (isnan(v))
        snprintf(buf, n, "-");
    else
        snprintf(buf, n, f, v);
}

/* bench.csv and bench.md from every finished method's JSON, in run order */
static int write_table(const HnConfig* cfg, const Method** list, int n) {
    char path[4200];
    hn_path(path, sizeof path, "%s/bench.csv", cfg->bench.out);
    FILE* csv = fopen(path, "w");
    hn_path(path, sizeof path, "%s/bench.md", cfg->bench.out);
    FILE* md = fopen(path, "w");
    if (!csv || !md) {
        if (csv) fclose(csv);
        if (md) fclose(md);
        return hn_error("cannot write the tables in %s", cfg->bench.out);
    }
    double base_general = NAN, base_domain = NAN;
    cJSON* rows[64] = {0};
    for (int i = 0; i < n && i < 64; i++) {
        hn_path(path, sizeof path, "%s/%s.json", cfg->bench.out, list[i]->name);
        rows[i] = read_json(path);
        if (rows[i] && strcmp(list[i]->name, "zero-shot") == 0) {
            base_general = num(rows[i], "general_ppl");
            base_domain = num(rows[i], "domain_ppl");
        }
    }
    fprintf(csv, "method,status,trainable,optimizer_mib,peak_mib,step_s,tokens_per_s,lr,"
                 "domain_ppl,qa_accuracy,qa_gen_rouge_l,general_ppl,general_change_pct,"
                 "train_s,eval_s\n");
    fprintf(md, "| method | trainable | optimizer MiB | peak MiB | step s | tokens/s | lr | "
                "domain ppl | QA acc (mc) | QA ROUGE-L (gen) | general ppl | general change |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n && i < 64; i++) {
        const cJSON* r = rows[i];
        if (!r) continue;
        const char* status = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "status"));
        int ok = status && strcmp(status, "ok") == 0;
        double g = num(r, "general_ppl"), chg = 100.0 * (g / base_general - 1.0);
        char c[12][32];
        fmt(c[0], 32, "%.0f", num(r, "trainable"));
        fmt(c[1], 32, "%.1f", num(r, "optimizer_mib"));
        fmt(c[2], 32, "%.0f", num(r, "peak_mib"));
        fmt(c[3], 32, "%.2f", num(r, "step_seconds"));
        fmt(c[4], 32, "%.0f", num(r, "tokens_per_s"));
        fmt(c[5], 32, "%g", num(r, "lr"));
        fmt(c[6], 32, "%.3f", num(r, "domain_ppl"));
        fmt(c[7], 32, "%.3f", num(r, "qa_accuracy"));
        fmt(c[8], 32, "%.3f", num(r, "qa_gen_rouge_l"));
        fmt(c[9], 32, "%.3f", g);
        fmt(c[10], 32, "%+.1f%%", chg);
        fmt(c[11], 32, "%.0f", num(r, "train_seconds"));
        char ev[32];
        fmt(ev, sizeof ev, "%.0f", num(r, "eval_seconds"));
        fprintf(csv, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", list[i]->name,
                ok ? "ok" : "n/a", ok ? c[0] : "", ok ? c[1] : "", ok ? c[2] : "", ok ? c[3] : "",
                ok ? c[4] : "", ok ? c[5] : "", ok ? c[6] : "", ok ? c[7] : "", ok ? c[8] : "",
                ok ? c[9] : "", ok ? c[10] : "", ok ? c[11] : "", ok ? ev : "");
        if (ok)
            fprintf(md, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
                    list[i]->name, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9],
                    c[10]);
        else
            fprintf(md, "| %s | not applicable: %s |||||||||||\n", list[i]->name,
                    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "note")));
    }
    fprintf(md, "\nMethods:\n\n");
    for (int i = 0; i < n; i++)
        fprintf(md, "- **%s**: %s\n", list[i]->name, list[i]->what);
    if (!isnan(base_domain))
        fprintf(md,
                "\nZero-shot domain perplexity %.3f; general change is against zero-shot's "
                "%.3f.\n",
                base_domain, base_general);
    for (int i = 0; i < 64; i++)
        cJSON_Delete(rows[i]);
    int ok = fclose(csv) == 0;
    ok = fclose(md) == 0 && ok;
    return ok ? HN_OK : hn_error("cannot write the tables in %s", cfg->bench.out);
}

static int fail(void) {
    fprintf(stderr, "hone: %s\n", hn_error_message());
    return 1;
}

int hn_cmd_bench(int argc, char** argv) {
    const char* path = NULL;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    const char* sets[64];
    int nsets = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            fputs(HELP, stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc || nsets == 64) {
                fprintf(stderr, "hone: --set needs section.key=value (see `hone bench --help`)\n");
                return 2;
            }
            sets[nsets++] = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "hone: unknown option '%s' (see `hone bench --help`)\n", argv[i]);
            return 2;
        } else if (path) {
            fprintf(stderr, "hone: one config, not '%s' too (see `hone bench --help`)\n", argv[i]);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        fprintf(stderr, "hone: bench needs a config (see `hone bench --help`)\n");
        return 2;
    }
    if (hn_config_load(&cfg, path) != HN_OK) return fail();
    for (int i = 0; i < nsets; i++)
        if (hn_config_set(&cfg, sets[i]) != HN_OK) return fail();
    if (hn_config_validate(&cfg) != HN_OK) return fail();
    const HnConfig* c = &cfg;
    if (!c->model.from[0]) return hn_error("bench: model.from must name the base"), fail();
    if (!c->bench.domain[0] || !c->bench.general[0] || !c->bench.qa[0])
        return hn_error("bench: bench.domain, bench.general and bench.qa are required"), fail();
    const Method* list[64];
    int n = 0;
    if (c->bench.methods.n == 0)
        for (int i = 0; i < NMETHODS; i++)
            list[n++] = &METHODS[i];
    for (int i = 0; i < c->bench.methods.n; i++) {
        const Method* me = find_method(c->bench.methods.item[i]);
        if (!me)
            return hn_error("bench.methods: unknown method '%s' (hone bench --help lists them)",
                            c->bench.methods.item[i]),
                   fail();
        list[n++] = me;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(list[i]->name, "retrieval") == 0 && !c->bench.retrieve[0])
            return hn_error("bench: the retrieval method needs bench.retrieve (a folder)"), fail();
    char dir[4200];
    hn_path(dir, sizeof dir, "%s/runs", c->bench.out);
    if (hn_mkdirs(dir) != HN_OK) return fail();

    int failed = 0;
    for (int i = 0; i < n; i++) {
        const Method* me = list[i];
        char done[4200], part[4200], log[4200];
        hn_path(done, sizeof done, "%s/%s.json", c->bench.out, me->name);
        hn_path(part, sizeof part, "%s/%s.part", c->bench.out, me->name);
        hn_path(log, sizeof log, "%s/%s.log", c->bench.out, me->name);
        struct stat st;
        if (stat(done, &st) == 0) {
            printf("bench: %-10s done before (%s)\n", me->name, done);
            continue;
        }
        printf("bench: %-10s running (log: %s)\n", me->name, log);
        fflush(stdout);
        fflush(stderr);
        double t0 = now_s();
        pid_t pid = fork();
        if (pid < 0) return hn_error("bench: cannot fork: %s", strerror(errno)), fail();
        if (pid == 0) { /* the child: its output into the method's log */
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
            int rc = run_method(c, me, part);
            if (rc != HN_OK) fprintf(stderr, "hone: %s\n", hn_error_message());
            fflush(stdout);
            fflush(stderr);
            _exit(rc == HN_OK ? 0 : 1);
        }
        int status = 0;
        struct rusage ru;
        while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
        }
        cJSON* j = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? read_json(part) : NULL;
        unlink(part);
        if (!j) {
            fprintf(stderr, "bench: %s failed (see %s)\n", me->name, log);
            failed++;
            continue;
        }
        cJSON_AddNumberToObject(j, "peak_mib", ru.ru_maxrss / 1024.0); /* Linux: KiB */
        cJSON_AddNumberToObject(j, "wall_seconds", now_s() - t0);
        int rc = write_json(done, j);
        double dp = num(j, "domain_ppl"), acc = num(j, "qa_accuracy");
        const char* note = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "note"));
        if (rc == HN_OK && note)
            printf("bench: %-10s not applicable: %s\n", me->name, note);
        else if (rc == HN_OK)
            printf("bench: %-10s domain ppl %.3f, QA accuracy %.3f (%.0f s)\n", me->name, dp, acc,
                   now_s() - t0);
        cJSON_Delete(j);
        if (rc != HN_OK) return fail();
        fflush(stdout);
    }
    if (write_table(c, list, n) != HN_OK) return fail();
    printf("bench: %s/bench.md, %s/bench.csv\n", c->bench.out, c->bench.out);
    if (failed) {
        fprintf(stderr, "hone: bench: %d method(s) failed; rerun to retry them\n", failed);
        return 1;
    }
    return 0;
}
