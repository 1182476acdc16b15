/*
 * `hone eval` and `hone generate`: parse the arguments, load the checkpoint into the
 * inference model (eval/model.h), run a task (eval/tasks.h) or generation
 * (eval/generate.h), and print. Errors become one stderr line and the exit status: 0
 * success, 1 an error in the input or the run, 2 a usage error.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "core/error.h"
#include "eval/generate.h"
#include "eval/model.h"
#include "eval/sample.h"
#include "eval/tasks.h"

static int fail(void) {
    fprintf(stderr, "hone: error: %s\n", hn_error_message());
    return 1;
}

static int usage_error(const char* cmd, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hone: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see `hone %s --help`)\n", cmd);
    va_end(ap);
    return 2;
}

static int is_help(const char* a) {
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static int parse_int(const char* s, long lo, long hi, int* out) {
    char* end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

static int parse_u64(const char* s, uint64_t* out) {
    char* end;
    errno = 0;
    if (*s == '-') return 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno) return 0;
    *out = v;
    return 1;
}

static int parse_float(const char* s, float* out) {
    char* end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || errno) return 0;
    *out = v;
    return 1;
}

/* One option of the form "--name value" or "--name=value": if argv[*i] is `name`, *value
 * gets its value (advancing *i) and the return is 1; 0 if it is another option; -1 if the
 * value is missing. */
static int option(int argc, char** argv, int* i, const char* name, const char** value) {
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *value = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *value = argv[++*i];
    return 1;
}

/* ---- hone eval ---- */

static const char* EVAL_HELP =
    "usage: hone eval CKPT --task ppl|mc|gen --data FILE [--template F] [--shots K]\n"
    "                 [--seed S] [--max-tokens N] [--context N] [--json OUT]\n"
    "                 [--retrieve DIR [--top-k K] [--passage-words W]]\n"
    "\n"
    "Evaluate a checkpoint.\n"
    "  ppl  perplexity of FILE: a token shard (.bin from `hone prepare`, scored as it is) or\n"
    "       text (tokenized, starting with end-of-text like a training document), in\n"
    "       windows of the model's context as the trainer's validation loss is computed.\n"
    "  mc   multiple choice; FILE is JSONL: {\"context\": str, \"choices\": [str, ...],\n"
    "       \"answer\": int}. The choice with the highest log-likelihood given the context\n"
    "       is the model's answer (accuracy; accuracy_norm divides by the choice's bytes).\n"
    "  gen  generation; FILE is JSONL: {\"prompt\": str, \"reference\": str}. Greedy\n"
    "       continuation up to a newline, compared with the reference after trimming\n"
    "       whitespace (exact_match) and by ROUGE-L F1 over words (rouge_l).\n"
    "\n"
    "  --task NAME       ppl, mc or gen\n"
    "  --data FILE       the data to score\n"
    "  --template F      mc/gen: prompt template with {context} (mc) or {prompt} (gen);\n"
    "                    one trailing newline of the file is dropped\n"
    "  --shots K         mc/gen: put K other examples of FILE (with their answers) first,\n"
    "                    separated by blank lines (default 0)\n"
    "  --seed S          chooses the shots (default 1337)\n"
    "  --max-tokens N    gen: longest continuation in tokens (default 64)\n"
    "  --retrieve DIR    mc/gen: retrieval augmentation: the text files under DIR, cut into\n"
    "                    passages, indexed by BM25; the --top-k passages best matching each\n"
    "                    example's context (mc) or prompt (gen) go first in its prompt\n"
    "  --top-k K         passages per prompt (default 3, at most 64)\n"
    "  --passage-words W words per passage (default 64)\n"
    "  --context N       positions the model serves (its KV cache and the ppl window):\n"
    "                    min(N, the model's context) (default 2048)\n"
    "  --json OUT        also write the result as one JSON object to OUT\n"
    "\n"
    "A prompt longer than the model's context keeps its rightmost tokens.\n";

static int write_json_atomic(const char* path, const cJSON* obj) {
    char* text = cJSON_PrintUnformatted(obj);
    if (!text) return hn_error("out of memory");
    size_t n = strlen(path) + 32;
    char* tmp = malloc(n);
    if (!tmp) {
        free(text);
        return hn_error("out of memory");
    }
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE* f = fopen(tmp, "wb");
    int ok = f != NULL;
    if (f) {
        ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
        ok = fflush(f) == 0 && ok;
        ok = fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
    }
    ok = ok && rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    free(tmp);
    free(text);
    return ok ? HN_OK : hn_error("cannot write %s", path);
}

static void print_row(const char* task, const char* metric, double value, size_t count,
                      const char* unit) {
    printf("%-5s %-14s %12.6f %10zu %s\n", task, metric, value, count, unit);
}

static int report(const char* ckpt, const HnEvalOptions* o, const HnEvalResult* r,
                  const char* json_path) {
    int ppl = strcmp(o->task, "ppl") == 0, mc = strcmp(o->task, "mc") == 0;
    const char* unit = ppl ? "tokens" : "examples";
    printf("%-5s %-14s %12s %10s\n", "task", "metric", "value", "count");
    if (ppl) {
        print_row(o->task, "ppl", r->ppl, r->count, unit);
        print_row(o->task, "loss", r->loss, r->count, unit);
    } else if (mc) {
        print_row(o->task, "accuracy", r->accuracy, r->count, unit);
        print_row(o->task, "accuracy_norm", r->accuracy_norm, r->count, unit);
    } else {
        print_row(o->task, "exact_match", r->exact_match, r->count, unit);
        print_row(o->task, "rouge_l", r->rouge_l, r->count, unit);
    }
    fflush(stdout);
    if (!json_path) return HN_OK;
    cJSON* j = cJSON_CreateObject();
    if (!j) return hn_error("out of memory");
    cJSON_AddStringToObject(j, "task", o->task);
    if (ppl) {
        cJSON_AddNumberToObject(j, "ppl", r->ppl);
        cJSON_AddNumberToObject(j, "loss", r->loss);
    } else if (mc) {
        cJSON_AddNumberToObject(j, "accuracy", r->accuracy);
        cJSON_AddNumberToObject(j, "accuracy_norm", r->accuracy_norm);
    } else {
        cJSON_AddNumberToObject(j, "exact_match", r->exact_match);
        cJSON_AddNumberToObject(j, "rouge_l", r->rouge_l);
    }
    cJSON_AddNumberToObject(j, unit, (double)r->count);
    cJSON_AddStringToObject(j, "checkpoint", ckpt);
    cJSON_AddStringToObject(j, "data", o->data);
    if (!ppl) {
        cJSON_AddNumberToObject(j, "shots", o->shots);
        cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        cJSON_AddNumberToObject(j, "retrieved", o->retriever ? o->top_k : 0);
    }
    int rc = write_json_atomic(json_path, j);
    cJSON_Delete(j);
    return rc;
}

int hn_cmd_eval(int argc, char** argv) {
    const char *ckpt = NULL, *json = NULL, *v;
    HnEvalOptions o = {.shots = 0, .seed = 1337, .max_tokens = 64};
    int shots_given = 0, context = HN_EVAL_DEFAULT_CONTEXT, got, passage_words = 64;
    const char* retrieve = NULL;
    o.top_k = 3;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(EVAL_HELP, stdout);
            return 0;
        }
        if ((got = option(argc, argv, &i, "--task", &o.task)) ||
            (got = option(argc, argv, &i, "--data", &o.data)) ||
            (got = option(argc, argv, &i, "--template", &o.template_path)) ||
            (got = option(argc, argv, &i, "--json", &json)) ||
            (got = option(argc, argv, &i, "--retrieve", &retrieve))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
        } else if ((got = option(argc, argv, &i, "--shots", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_int(v, 0, 64, &o.shots))
                return usage_error("eval", "--shots wants a number 0..64, not '%s'", v);
            shots_given = 1;
        } else if ((got = option(argc, argv, &i, "--seed", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_u64(v, &o.seed))
                return usage_error("eval", "--seed wants a non-negative integer, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--max-tokens", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, INT_MAX, &o.max_tokens))
                return usage_error("eval", "--max-tokens wants a positive integer, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--top-k", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, 64, &o.top_k))
                return usage_error("eval", "--top-k wants a number 1..64, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--passage-words", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, 100000, &passage_words))
                return usage_error("eval", "--passage-words wants a number 1..100000, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--context", &v))) {
            if (got < 0) return usage_error("eval", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, INT_MAX, &context))
                return usage_error("eval", "--context wants a positive integer, not '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("eval", "unknown option '%s'", argv[i]);
        } else if (ckpt) {
            return usage_error("eval", "unexpected argument '%s' (one checkpoint)", argv[i]);
        } else {
            ckpt = argv[i];
        }
    }
    if (!ckpt) return usage_error("eval", "eval needs a checkpoint");
    if (!o.task) return usage_error("eval", "eval needs --task ppl|mc|gen");
    if (strcmp(o.task, "ppl") && strcmp(o.task, "mc") && strcmp(o.task, "gen"))
        return usage_error("eval", "unknown task '%s' (ppl, mc or gen)", o.task);
    if (!o.data) return usage_error("eval", "eval needs --data FILE");
    if (strcmp(o.task, "ppl") == 0 && (shots_given || o.template_path))
        return usage_error("eval", "--shots and --template apply to the mc and gen tasks");
    if (strcmp(o.task, "ppl") == 0 && retrieve)
        return usage_error("eval", "--retrieve applies to the mc and gen tasks");

    HnRetriever* index = NULL;
    if (retrieve && !(index = hn_retriever_open(retrieve, passage_words))) return fail();
    o.retriever = index;
    HnEvalModel* m;
    HnTokenizer* tok;
    if (hn_eval_model_open(ckpt, context, &m, &tok) != HN_OK) {
        hn_retriever_free(index);
        return fail();
    }
    HnEvalResult r;
    int rc = hn_eval_run(m, tok, &o, &r);
    if (rc == HN_OK) rc = report(ckpt, &o, &r, json);
    hn_tokenizer_free(tok);
    hn_eval_model_free(m);
    hn_retriever_free(index);
    return rc == HN_OK ? 0 : fail();
}

/* ---- hone generate ---- */

static const char* GENERATE_HELP =
    "usage: hone generate CKPT --prompt TEXT [--max-tokens N] [--temperature T]\n"
    "                     [--top-k K] [--top-p P] [--seed S] [--context N] [--chat]\n"
    "\n"
    "Continue TEXT with the checkpoint's model and print the continuation as it is\n"
    "generated. Stops at end-of-text or after N tokens.\n"
    "\n"
    "  --prompt TEXT      the text to continue\n"
    "  --max-tokens N     most tokens to generate (default 128)\n"
    "  --temperature T    softmax temperature; 0 = greedy, always the most likely token\n"
    "                     (default 1.0)\n"
    "  --top-k K          sample only among the K most likely tokens (default 0 = off)\n"
    "  --top-p P          sample only from the smallest set of tokens whose probability\n"
    "                     reaches P (nucleus sampling; default 1.0 = off)\n"
    "  --seed S           seed of the sampling (default 1337)\n"
    "  --context N        positions the model serves (its KV cache): min(N, the model's\n"
    "                     context) (default 2048)\n"
    "  --chat             wrap the prompt in the model's chat template\n";

static int on_print_token(void* ctx, int id) {
    size_t len;
    const char* bytes = hn_tokenizer_token_bytes((const HnTokenizer*)ctx, id, &len);
    if (bytes) fwrite(bytes, 1, len, stdout);
    fflush(stdout);
    return 0;
}

int hn_cmd_generate(int argc, char** argv) {
    const char *ckpt = NULL, *prompt = NULL, *v;
    HnSampleParams sp = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f};
    int max_tokens = 128, context = HN_EVAL_DEFAULT_CONTEXT, chat = 0, got;
    uint64_t seed = 1337;
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(GENERATE_HELP, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--chat") == 0) {
            chat = 1;
        } else if ((got = option(argc, argv, &i, "--prompt", &prompt))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
        } else if ((got = option(argc, argv, &i, "--max-tokens", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, INT_MAX, &max_tokens))
                return usage_error("generate", "--max-tokens wants a positive integer, not '%s'",
                                   v);
        } else if ((got = option(argc, argv, &i, "--temperature", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_float(v, &sp.temperature) || !(sp.temperature >= 0.0f))
                return usage_error("generate", "--temperature wants a number >= 0, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--top-k", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_int(v, 0, INT_MAX, &sp.top_k))
                return usage_error("generate", "--top-k wants an integer >= 0, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--top-p", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_float(v, &sp.top_p) || !(sp.top_p > 0.0f && sp.top_p <= 1.0f))
                return usage_error("generate", "--top-p wants a number in (0, 1], not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--seed", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_u64(v, &seed))
                return usage_error("generate", "--seed wants a non-negative integer, not '%s'", v);
        } else if ((got = option(argc, argv, &i, "--context", &v))) {
            if (got < 0) return usage_error("generate", "%s needs a value", argv[i]);
            if (!parse_int(v, 1, INT_MAX, &context))
                return usage_error("generate", "--context wants a positive integer, not '%s'", v);
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            return usage_error("generate", "unknown option '%s'", argv[i]);
        } else if (ckpt) {
            return usage_error("generate", "unexpected argument '%s' (one checkpoint)", argv[i]);
        } else {
            ckpt = argv[i];
        }
    }
    if (!ckpt) return usage_error("generate", "generate needs a checkpoint");
    if (!prompt) return usage_error("generate", "generate needs --prompt TEXT");
    /* GPT-2 family checkpoints carry no chat template; the flag is here so scripts written
     * for chat models fail clearly instead of getting a raw continuation */
    if (chat) {
        hn_error("this model has no chat template");
        return fail();
    }

    HnEvalModel* m;
    HnTokenizer* tok;
    if (hn_eval_model_open(ckpt, context, &m, &tok) != HN_OK) return fail();
    int rc = HN_OK;
    if (!tok)
        rc = hn_error("%s has no tokenizer: generation needs one to turn text into tokens "
                      "(score token shards with `hone eval --task ppl`)",
                      ckpt);
    HnSampler s = {0};
    if (rc == HN_OK) rc = hn_sampler_init(&s, m->config.V, &sp, seed);
    HnTokens ids = {0};
    /* start as documents start; special-token strings the user typed (a chat turn's
     * <|im_start|>) become the special tokens */
    int start = rc == HN_OK ? hn_tokenizer_doc_start(tok) : -1;
    if (start >= 0 && hn_tokens_push(&ids, start) != HN_OK) rc = hn_error("out of memory");
    if (rc == HN_OK) rc = hn_tokenizer_encode_special(tok, prompt, strlen(prompt), &ids);
    if (rc == HN_OK && ids.n == 0)
        rc = hn_error("the prompt is empty and the model has no start token");
    if (rc == HN_OK)
        rc = hn_eval_generate(m, &s, ids.ids, ids.n, max_tokens, hn_tokenizer_eos(tok),
                              on_print_token, tok, NULL);
    if (rc == HN_OK) {
        fputc('\n', stdout);
        fflush(stdout);
    }
    hn_tokens_free(&ids);
    hn_sampler_free(&s);
    hn_tokenizer_free(tok);
    hn_eval_model_free(m);
    return rc == HN_OK ? 0 : fail();
}
