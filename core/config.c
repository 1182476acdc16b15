/*
 * The run configuration (see config.h). One static table, KEYS, holds every key a user can
 * write: its full name, type, place in HnConfig, default and meaning. Defaults, the YAML
 * loader, --set overrides, the YAML writer and docs/CONFIG.md all walk that table, and every
 * value, whatever its source, is stored by the one function key_assign(). YAML is parsed by
 * libyaml's document API; this file only walks the node tree it builds.
 *
 * Loading and --set are all-or-nothing: on an error the caller's config is left untouched.
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/error.h"

typedef enum { KEY_INT, KEY_FLOAT, KEY_BOOL, KEY_STR, KEY_STRLIST, KEY_FLOAT2 } KeyType;

typedef struct {
    const char* name; /* "section.key" */
    KeyType type;
    size_t offset;       /* of the field in HnConfig */
    size_t size;         /* of the field, in bytes */
    const char* def;     /* the default, written as a --set value */
    const char* choices; /* "a|b|c" for a string limited to a set (checked by validate), or NULL */
    const char* meaning;
} Key;

/* clang-format off */
#define KEY(sec, field, type, def, choices, meaning) \
    {#sec "." #field, type, offsetof(HnConfig, sec.field), sizeof(((HnConfig*)0)->sec.field), \
     def, choices, meaning}
/* keys of one method inside the peft section are written "peft.<method>.<key>" */
/* clang-format on */

/* grouped by section, in SECTIONS order: the writer and the doc print them as listed */
static const Key KEYS[] = {
    KEY(model, from, KEY_STR, "", NULL,
        "base checkpoint (hone import / hone train output) to start from; its shape and "
        "tokenizer replace the model keys below"),
    KEY(model, arch, KEY_STR, "gpt2", "gpt2|llama",
        "gpt2 (LayerNorm, GELU, learned positions) or llama (RMSNorm, SwiGLU, RoPE, GQA)"),
    KEY(model, layers, KEY_INT, "4", NULL, "transformer blocks (L)"),
    KEY(model, channels, KEY_INT, "128", NULL, "width of the residual stream (C)"),
    KEY(model, heads, KEY_INT, "4", NULL, "attention heads (NH); must divide model.channels"),
    KEY(model, kv_heads, KEY_INT, "0", NULL,
        "key/value heads (llama grouped-query attention); must divide model.heads; 0 = heads"),
    KEY(model, ffn, KEY_INT, "0", NULL, "hidden width of the MLP; 0 = 4 x model.channels"),
    KEY(model, rope_theta, KEY_FLOAT, "10000", NULL, "llama: base of the rotary position angles"),
    KEY(model, tied, KEY_BOOL, "true", NULL, "the classifier reuses the token embedding matrix"),
    KEY(model, vocab, KEY_INT, "0", NULL, "vocabulary size (V); 0 = from the data's tokenizer"),
    KEY(model, context, KEY_INT, "256", NULL, "longest sequence the model can see (positions)"),
    KEY(model, norm_eps, KEY_FLOAT, "1e-5", NULL, "epsilon of the LayerNorms"),
    KEY(model, init_std, KEY_FLOAT, "0.02", NULL,
        "standard deviation of the normal initialisation of weights"),

    KEY(tokenizer, type, KEY_STR, "auto", "auto|byte|gpt2|none",
        "auto = the tokenizer recorded by `hone prepare` in the data folder"),
    KEY(tokenizer, encoder, KEY_STR, "", NULL, "path of a GPT-2 encoder.json (for type gpt2)"),
    KEY(tokenizer, merges, KEY_STR, "", NULL,
        "path of a GPT-2 vocab.bpe merges file (for type gpt2)"),

    KEY(data, train, KEY_STR, "", NULL, "glob of the training shards (required)"),
    KEY(data, val, KEY_STR, "", NULL, "glob of the validation shards (\"\" = none)"),
    KEY(data, batch, KEY_INT, "8", NULL, "micro-batch size per rank (B)"),
    KEY(data, seq, KEY_INT, "128", NULL, "sequence length (T); at most model.context"),
    KEY(data, shuffle, KEY_BOOL, "true", NULL, "visit the training windows in a shuffled order"),
    KEY(data, packing, KEY_STR, "stream", "stream|documents",
        "a window packs consecutive documents; stream: it attends across them (GPT-2 "
        "pretraining); documents: a token attends to its own document only and positions "
        "restart at each document (needs the .docs index `hone prepare` writes)"),

    KEY(optim, lr, KEY_FLOAT, "3e-4", NULL, "peak learning rate"),
    KEY(optim, weight_decay, KEY_FLOAT, "0.1", NULL, "AdamW decoupled weight decay"),
    KEY(optim, betas, KEY_FLOAT2, "0.9, 0.95", NULL, "AdamW beta1 and beta2, each in [0, 1)"),
    KEY(optim, eps, KEY_FLOAT, "1e-8", NULL, "AdamW epsilon"),
    KEY(optim, schedule, KEY_STR, "cosine", "cosine|linear|constant",
        "learning-rate decay after the warm-up"),
    KEY(optim, warmup, KEY_INT, "0", NULL, "steps of linear warm-up; fewer than train.steps"),
    KEY(optim, min_lr_ratio, KEY_FLOAT, "0.1", NULL,
        "learning rate at the end of the decay, as a fraction of optim.lr"),
    KEY(optim, clip, KEY_FLOAT, "1.0", NULL, "clip the global gradient norm to this; 0 = off"),
    KEY(optim, accum, KEY_INT, "1", NULL, "micro-batches per optimizer step"),
    KEY(optim, no_decay, KEY_STRLIST, "\"*.bias\", \"*norm*\", \"*embed*\"", NULL,
        "fnmatch patterns of parameter names that get no weight decay"),

    KEY(peft, methods, KEY_STRLIST, "", NULL,
        "parameter-efficient methods (lora, ia3, bitfit), each at most once; their base is "
        "frozen; empty = full fine-tuning. YAML also takes the list form `- lora: {rank: 8}`"),
    KEY(peft, lora.targets, KEY_STRLIST, "", NULL,
        "LoRA sites (attn.qkv, attn.q, attn.k, attn.v, attn.o, mlp.up, mlp.gate, mlp.down; "
        "fnmatch patterns, optionally layers.N.-prefixed); empty = gpt2 attn.qkv, llama attn.q, "
        "attn.v"),
    KEY(peft, lora.rank, KEY_INT, "8", NULL, "LoRA rank r"),
    KEY(peft, lora.alpha, KEY_FLOAT, "8", NULL, "LoRA alpha: the update is scaled by alpha / r"),
    KEY(peft, lora.dropout, KEY_FLOAT, "0", NULL,
        "dropout on the LoRA branch's input while training, in [0, 1)"),
    KEY(peft, lora.rslora, KEY_BOOL, "false", NULL,
        "rank-stabilised scaling alpha / sqrt(r) (Kalajdzievski 2023)"),
    KEY(peft, lora.dora, KEY_BOOL, "false", NULL,
        "DoRA: a learned magnitude per output over the LoRA-updated direction (Liu et al. 2024)"),
    KEY(peft, ia3.targets, KEY_STRLIST, "", NULL,
        "IA3 sites; empty = gpt2 attn.qkv, mlp.down; llama attn.k, attn.v, mlp.down"),
    KEY(peft, ia3.feedforward, KEY_STRLIST, "mlp.down", NULL,
        "IA3 sites among the targets that scale their input instead of their output"),
    KEY(peft, prefix.length, KEY_INT, "16", NULL,
        "prefix tuning: virtual key/value positions per layer (Li & Liang 2021)"),
    KEY(peft, prefix.projection, KEY_INT, "0", NULL,
        "prefix tuning: hidden width of the training-time MLP (embedding -> Linear -> tanh -> "
        "Linear); 0 = none"),
    KEY(peft, prompt.length, KEY_INT, "8", NULL,
        "prompt tuning: virtual tokens prepended to the input (Lester et al. 2021)"),
    KEY(peft, prompt.init, KEY_STR, "random", "random|vocab|text",
        "prompt tuning: normal(0, 1) rows, rows of sampled vocabulary tokens, or a text's tokens"),
    KEY(peft, prompt.text, KEY_STR, "", NULL, "prompt tuning init text (tokenized, repeated)"),
    KEY(peft, prompt.text_ids, KEY_STRLIST, "", NULL,
        "prompt tuning init as token ids instead of a text"),
    KEY(peft, ptuning.length, KEY_INT, "8", NULL,
        "P-tuning: virtual tokens made by an MLP prompt encoder (Liu et al. 2021)"),
    KEY(peft, ptuning.hidden, KEY_INT, "0", NULL, "P-tuning: the encoder's width; 0 = channels"),
    KEY(peft, adapter.kind, KEY_STR, "pfeiffer", "pfeiffer|houlsby|parallel",
        "bottleneck adapters: after the MLP (Pfeiffer), after attention and the MLP (Houlsby), "
        "or beside the MLP (parallel, He et al. 2022)"),
    KEY(peft, adapter.reduction, KEY_INT, "16", NULL, "adapter bottleneck = channels / reduction"),
    KEY(peft, adapter.activation, KEY_STR, "relu", "relu|swish|gelu|tanh", "adapter non-linearity"),
    KEY(peft, adapter.init, KEY_STR, "bert", "bert|near_identity",
        "AdapterHub's default normal(0, 0.02) weights, or a near-identity start (up-projection "
        "zero)"),
    KEY(peft, adapter.scaling, KEY_FLOAT, "1", NULL, "the parallel adapter's output scale"),

    KEY(mask, method, KEY_STR, "none", "none|pattern|magnitude|random|fish|child_f|lt_sft",
        "partial knowledge update: train only some entries — whole rows by mask.patterns, the "
        "largest |w|, a seeded random set, the largest empirical Fisher information (FISH, Sung "
        "et al. 2021), a fresh Bernoulli mask each step (Child-Tuning-F, Xu et al. 2021), or the "
        "entries a dense fine-tune changed most, reset to the start (LT-SFT, Ansell et al. 2022)"),
    KEY(mask, density, KEY_FLOAT, "0.01", NULL,
        "fraction of the eligible entries that train (child_f: the keep probability)"),
    KEY(mask, patterns, KEY_STRLIST, "\"*\"", NULL,
        "fnmatch patterns of the rows eligible for training; the other rows are frozen"),
    KEY(mask, fish_examples, KEY_INT, "64", NULL,
        "FISH: training windows the Fisher information is averaged over"),
    KEY(mask, lt_sft_steps, KEY_INT, "20", NULL,
        "LT-SFT: optimizer steps of the dense fine-tune whose largest changes pick the entries"),

    KEY(train, steps, KEY_INT, "100", NULL, "optimizer steps"),
    KEY(train, seed, KEY_INT, "1337", NULL, "seed of the initialisation, shuffling and sampling"),
    KEY(train, device, KEY_STR, "auto", "auto|cpu|cuda",
        "compute device; auto = cuda when the CUDA backend is built and a GPU is visible"),
    KEY(train, threads, KEY_INT, "0", NULL, "CPU threads; 0 = all cores"),
    KEY(train, out, KEY_STR, "runs/default", NULL,
        "run folder: the resolved config and metrics.jsonl"),
    KEY(train, log_every, KEY_INT, "10", NULL, "steps between training-loss log lines"),
    KEY(train, eval_every, KEY_INT, "0", NULL, "steps between evaluations; 0 = only at the end"),
    KEY(train, eval_batches, KEY_INT, "8", NULL, "validation batches per evaluation"),
    KEY(train, sample_tokens, KEY_INT, "0", NULL, "tokens to generate at the end; 0 = none"),
    KEY(train, sample_prompt, KEY_STR, "", NULL, "text the end-of-run sample continues"),
    KEY(train, save_every, KEY_INT, "0", NULL,
        "steps between checkpoints (RUN/ckpt/step_N.h5); 0 = only at the end"),
    KEY(train, keep, KEY_INT, "3", NULL, "step checkpoints kept, newest first (best.h5 is extra)"),
    KEY(train, save_dtype, KEY_STR, "f32", "f32|bf16",
        "weights in checkpoints; only f32 resumes bit-exactly"),
    KEY(train, deflate, KEY_INT, "1", NULL, "zlib level of checkpoint datasets, 0 (off) to 9"),
    KEY(train, max_bad_steps, KEY_INT, "8", NULL,
        "steps skipped for a non-finite loss or gradient norm (no update; counted over the "
        "whole run, resumes included) before the run saves the last good state and stops with "
        "an error; 0 = stop at the first"),
    KEY(train, spike_factor, KEY_FLOAT, "2", NULL,
        "report a loss spike (a warning, \"spike\" in metrics.jsonl) when a step's loss exceeds "
        "this multiple of the recent mean (a moving average over about 10 steps, which the "
        "first 10 steps of a run or a resume only build); 0 = off"),

    KEY(dist, zero, KEY_INT, "0", NULL,
        "several ranks (mpirun / srun): 1 = ZeRO-1, each rank keeps the AdamW moments of its "
        "shard only; 0 = every rank keeps all of them"),
    KEY(dist, nccl, KEY_STR, "auto", "auto|always",
        "GPU ranks sum gradients with NCCL; auto = when there are several ranks, always = "
        "with one too (a check of the NCCL path)"),

    KEY(bench, out, KEY_STR, "benchmarks/results/bench", NULL,
        "hone bench: results folder (METHOD.json per finished method, bench.csv, bench.md, "
        "runs/METHOD/)"),
    KEY(bench, methods, KEY_STRLIST, "", NULL,
        "hone bench: methods in order (zero-shot, few-shot, retrieval, prompt, prefix, ptuning, "
        "lora, dora, ia3, houlsby, pfeiffer, bitfit, fish, full); empty = all"),
    KEY(bench, domain, KEY_STR, "", NULL, "hone bench: held-out domain text or shard (perplexity)"),
    KEY(bench, general, KEY_STR, "", NULL,
        "hone bench: general text or shard, never trained on (perplexity: forgetting)"),
    KEY(bench, qa, KEY_STR, "", NULL, "hone bench: multiple-choice questions (JSONL, hone eval mc)"),
    KEY(bench, qa_gen, KEY_STR, "", NULL,
        "hone bench: generation questions (JSONL, hone eval gen); \"\" = none"),
    KEY(bench, retrieve, KEY_STR, "", NULL,
        "hone bench: the folder the retrieval method searches (BM25)"),
    KEY(bench, shots, KEY_INT, "3", NULL, "hone bench: examples in front of each few-shot question"),
    KEY(bench, top_k, KEY_INT, "2", NULL, "hone bench: passages retrieved per question"),
    KEY(bench, context, KEY_INT, "1024", NULL, "hone bench: positions evaluation serves"),
    KEY(bench, gen_tokens, KEY_INT, "16", NULL, "hone bench: longest generated answer in tokens"),
    KEY(bench, lr, KEY_STRLIST, "", NULL,
        "hone bench: METHOD=LR learning rates replacing the defaults (e.g. \"lora=5e-4\")"),
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const struct {
    const char* name;
    const char* meaning;
} SECTIONS[] = {
    {"model", "the network's shape and initialisation"},
    {"tokenizer", "how text becomes token ids"},
    {"data", "the shards and how they are cut into batches"},
    {"optim", "AdamW and its learning-rate schedule"},
    {"peft", "parameter-efficient methods on a frozen base"},
    {"mask", "partial knowledge updates: which entries of the model train"},
    {"train", "the run: its length, device, output, logging, evaluation and sampling"},
    {"dist", "data parallel across ranks (launched by mpirun or srun)"},
    {"bench", "hone bench: the methods compared and what they are measured on"},
};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

/* ---- small helpers ---- */

/* record "LOC: message" */
static int fail(const char* loc, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(const char* loc, const char* fmt, ...) {
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return hn_error("%s: %s", loc, text);
}

/* a user's text made safe to quote in a one-line message: control bytes become '?', long
 * text is cut */
static const char* shown(const char* s, char out[64]) {
    size_t i = 0;
    for (; s[i] && i < 48; i++)
        out[i] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
    if (s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

static size_t section_len(const char* name) {
    const char* dot = strchr(name, '.');
    return dot ? (size_t)(dot - name) : strlen(name);
}

static const char* leaf(const char* name) {
    const char* dot = strchr(name, '.');
    return dot ? dot + 1 : name;
}

static const Key* key_find(const char* name) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return &KEYS[i];
    return NULL;
}

static int section_find(const char* name) {
    for (int i = 0; i < NSECTIONS; i++)
        if (strcmp(SECTIONS[i].name, name) == 0) return i;
    return -1;
}

/* Levenshtein distance; names longer than 127 bytes are compared by their first 127 */
static int edit_distance(const char* a, const char* b) {
    enum { MAXLEN = 127 };
    int row[MAXLEN + 1];
    int na = (int)strlen(a), nb = (int)strlen(b);
    if (na > MAXLEN) na = MAXLEN;
    if (nb > MAXLEN) nb = MAXLEN;
    for (int j = 0; j <= nb; j++)
        row[j] = j;
    for (int i = 1; i <= na; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

/* The valid key closest to an unknown one: by edit distance over full names, where a bare
 * name ("lrr") is also compared with each key's own part, a known key name under the wrong
 * section ("train.lr") counts as one edit away from the right one, and the start of a key's
 * own part ("sample") as two. */
static const Key* key_closest(const char* name) {
    const Key* best = &KEYS[0];
    int best_d = INT_MAX;
    int bare = strchr(name, '.') == NULL;
    for (int i = 0; i < NKEYS; i++) {
        int d = edit_distance(name, KEYS[i].name);
        int dl = edit_distance(leaf(name), leaf(KEYS[i].name));
        if (bare && dl < d) d = dl;
        if (!bare && dl == 0 && d > 1) d = 1;
        size_t nl = strlen(leaf(name));
        if (nl >= 3 && !strncmp(leaf(name), leaf(KEYS[i].name), nl) && d > 2) d = 2;
        if (d < best_d) {
            best_d = d;
            best = &KEYS[i];
        }
    }
    return best;
}

static int section_closest(const char* name) {
    int best = 0, best_d = INT_MAX;
    for (int i = 0; i < NSECTIONS; i++) {
        int d = edit_distance(name, SECTIONS[i].name);
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

static int unknown_key(const char* loc, const char* name) {
    char s[64];
    return fail(loc, "unknown key '%s' (did you mean '%s'?)", shown(name, s),
                key_closest(name)->name);
}

/* ---- parsing one value ---- */

static const char* skip_space(const char* s) {
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

static int parse_int(const Key* k, const char* text, int* out, const char* loc) {
    char s[64];
    char* end;
    const char* p = skip_space(text);
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || *skip_space(end))
        return fail(loc, "%s: expected an integer, got '%s'", k->name, shown(text, s));
    if (errno == ERANGE || v < INT_MIN || v > INT_MAX)
        return fail(loc, "%s: integer out of range, got '%s'", k->name, shown(text, s));
    *out = (int)v;
    return HN_OK;
}

/* "nan", "inf", YAML's ".inf" and the like, in any case */
static int names_inf_or_nan(const char* text) {
    for (const char* p = text; *p; p++) {
        char a = (char)tolower((unsigned char)p[0]);
        if (!p[1] || !p[2]) break;
        char b = (char)tolower((unsigned char)p[1]), c = (char)tolower((unsigned char)p[2]);
        if ((a == 'i' && b == 'n' && c == 'f') || (a == 'n' && b == 'a' && c == 'n')) return 1;
    }
    return 0;
}

static float float_from_text(const char* p, char** end) {
    return (float)strtod(p, end);
}

static int parse_float(const Key* k, const char* text, float* out, const char* loc) {
    char s[64];
    char* end;
    const char* p = skip_space(text);
    errno = 0;
    double v = strtod(p, &end);
    int parsed = end != p && !*skip_space(end);
    if (parsed && ((errno == ERANGE && fabs(v) > 1.0) || (isfinite(v) && fabs(v) > FLT_MAX)))
        return fail(loc, "%s: number out of range, got '%s'", k->name, shown(text, s));
    if ((parsed && !isfinite(v)) || (!parsed && names_inf_or_nan(text)))
        return fail(loc, "%s: expected a finite number, got '%s'", k->name, shown(text, s));
    if (!parsed) return fail(loc, "%s: expected a number, got '%s'", k->name, shown(text, s));
    *out = (float)v;
    return HN_OK;
}

static int parse_bool(const Key* k, const char* text, int* out, const char* loc) {
    static const char* const yes[] = {"true", "yes", "on", "1"};
    static const char* const no[] = {"false", "no", "off", "0"};
    char s[64], word[8];
    const char* p = skip_space(text);
    size_t n = 0;
    while (p[n] && !isspace((unsigned char)p[n]) && n < sizeof word - 1) {
        word[n] = (char)tolower((unsigned char)p[n]);
        n++;
    }
    word[n] = '\0';
    if (!*skip_space(p + n)) {
        for (int i = 0; i < 4; i++) {
            if (strcmp(word, yes[i]) == 0) return *out = 1, HN_OK;
            if (strcmp(word, no[i]) == 0) return *out = 0, HN_OK;
        }
    }
    return fail(loc, "%s: expected true or false (or yes/no, on/off, 1/0), got '%s'", k->name,
                shown(text, s));
}

/* 1 if s is UTF-8 that a written config (YAML, double-quoted) gives back unchanged: no
 * invalid or overlong sequence, surrogate, C1 control, line or paragraph separator (YAML
 * would fold them), U+FFFE or U+FFFF; C0 controls are fine, the writer escapes them */
static int yaml_text(const unsigned char* s) {
    while (*s) {
        unsigned c = *s;
        int len = c < 0x80             ? 1
                  : (c & 0xE0) == 0xC0 ? 2
                  : (c & 0xF0) == 0xE0 ? 3
                  : (c & 0xF8) == 0xF0 ? 4
                                       : 0;
        if (!len) return 0;
        unsigned cp = len == 1 ? c : c & (0x7Fu >> len);
        for (int i = 1; i < len; i++) {
            if ((s[i] & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (s[i] & 0x3Fu);
        }
        static const unsigned least[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ||
            (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0xFFFE ||
            cp == 0xFFFF)
            return 0;
        s += len;
    }
    return 1;
}

static int copy_str(const Key* k, const char* text, char* dst, size_t size, const char* loc) {
    size_t n = strlen(text);
    if (n >= size)
        return fail(loc, "%s: value too long (%zu bytes, at most %zu)", k->name, n, size - 1);
    if (!yaml_text((const unsigned char*)text))
        return fail(loc,
                    "%s: the value is not UTF-8 text a config can hold (invalid UTF-8, or "
                    "a C1 control or line separator character)",
                    k->name);
    memcpy(dst, text, n + 1);
    return HN_OK;
}

static const char* type_name(KeyType t) {
    switch (t) {
    case KEY_INT:
        return "an integer";
    case KEY_FLOAT:
        return "a number";
    case KEY_BOOL:
        return "true or false";
    case KEY_STR:
        return "a string";
    case KEY_STRLIST:
        return "a list of strings";
    case KEY_FLOAT2:
        return "a list of 2 numbers";
    }
    return "?";
}

/* Store one value of key k: n items, given as a list (is_list) or as one scalar. Every
 * source (defaults, YAML, --set) ends here, so a value means the same wherever it is written.
 * A string list also takes a scalar as a one-item list. */
static int key_assign(HnConfig* cfg, const Key* k, const char* const* item, int n, int is_list,
                      const char* loc) {
    char* field = (char*)cfg + k->offset;
    char s[64];
    if (is_list && k->type != KEY_STRLIST && k->type != KEY_FLOAT2)
        return fail(loc, "%s: expected %s, got a list", k->name, type_name(k->type));
    switch (k->type) {
    case KEY_INT:
        return parse_int(k, item[0], (int*)field, loc);
    case KEY_FLOAT:
        return parse_float(k, item[0], (float*)field, loc);
    case KEY_BOOL:
        return parse_bool(k, item[0], (int*)field, loc);
    case KEY_STR:
        return copy_str(k, item[0], field, k->size, loc);
    case KEY_STRLIST: {
        HnStrList* list = (HnStrList*)field;
        if (n > HN_MAX_LIST)
            return fail(loc, "%s: list too long (%d items, at most %d)", k->name, n, HN_MAX_LIST);
        for (int i = 0; i < n; i++) {
            if (!item[i][0]) return fail(loc, "%s: item %d is empty", k->name, i + 1);
            if (copy_str(k, item[i], list->item[i], HN_STR, loc)) return HN_ERR;
        }
        list->n = n;
        return HN_OK;
    }
    case KEY_FLOAT2: {
        float v[2];
        if (!is_list)
            return fail(loc, "%s: expected a list of 2 numbers, got '%s'", k->name,
                        shown(item[0], s));
        if (n != 2) return fail(loc, "%s: expected a list of 2 numbers, got %d", k->name, n);
        if (parse_float(k, item[0], &v[0], loc) || parse_float(k, item[1], &v[1], loc))
            return HN_ERR;
        memcpy(field, v, sizeof v);
        return HN_OK;
    }
    }
    return fail(loc, "%s: unsupported key type", k->name);
}

/* ---- values written as text: defaults and --set ---- */

/* Cut list text ("[a, 'b c', \"d\"]" or "a,b") into items, in place. Items may be quoted
 * as in YAML flow style: "..." with \" and \\ escapes, '...' with '' for a quote. Returns
 * the count (items beyond max are counted, not stored) or -1 after an error. */
static int split_list(char* text, char** item, int max, const Key* k, const char* loc) {
    char* p = (char*)skip_space(text);
    char* end = p + strlen(p);
    while (end > p && isspace((unsigned char)end[-1]))
        end--;
    if (*p == '[') {
        if (end == p + 1 || end[-1] != ']')
            return fail(loc, "%s: list opened with '[' is not closed with ']'", k->name), -1;
        p++;
        end--;
    }
    *end = '\0';
    if (!*skip_space(p)) return 0;
    int n = 0;
    for (;;) {
        p = (char*)skip_space(p);
        char* start = p; /* the unquoted item is written over the text from here */
        char* w = p;
        if (*p == '"' || *p == '\'') {
            char q = *p++;
            for (;;) {
                if (!*p) return fail(loc, "%s: unclosed quote in list", k->name), -1;
                if (q == '"' && *p == '\\' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                else if (*p == q && q == '\'' && p[1] == '\'')
                    p++;
                else if (*p == q)
                    break;
                *w++ = *p++;
            }
            p = (char*)skip_space(p + 1);
            if (*p && *p != ',')
                return fail(loc, "%s: expected ',' after a quoted list item", k->name), -1;
        } else {
            while (*p && *p != ',')
                *w++ = *p++;
            while (w > start && isspace((unsigned char)w[-1]))
                w--;
            if (w == start) return fail(loc, "%s: item %d is empty", k->name, n + 1), -1;
        }
        char next = *p;
        *w = '\0';
        if (n < max) item[n] = start;
        n++;
        if (!next) return n;
        p++;
    }
}

static int key_assign_text(HnConfig* cfg, const Key* k, const char* text, const char* loc) {
    if (k->type != KEY_STRLIST && k->type != KEY_FLOAT2)
        return key_assign(cfg, k, &text, 1, 0, loc);
    char* item[HN_MAX_LIST];
    char* copy = strdup(text);
    if (!copy) return fail(loc, "%s: out of memory", k->name);
    /* a count above HN_MAX_LIST stores only the first items; key_assign rejects it unread */
    int n = split_list(copy, item, HN_MAX_LIST, k, loc);
    int rc = n < 0 ? HN_ERR : key_assign(cfg, k, (const char* const*)item, n, 1, loc);
    free(copy);
    return rc;
}

void hn_config_defaults(HnConfig* cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NKEYS; i++)
        key_assign_text(cfg, &KEYS[i], KEYS[i].def, "default");
}

int hn_config_set(HnConfig* cfg, const char* assignment) {
    char s[64], name[64];
    const char* eq = strchr(assignment, '=');
    if (!eq) return hn_error("--set '%s': expected section.key=value", shown(assignment, s));
    const char* a = skip_space(assignment);
    const char* b = eq;
    while (b > a && isspace((unsigned char)b[-1]))
        b--;
    size_t n = (size_t)(b - a);
    if (n == 0) return hn_error("--set '%s': the key before '=' is empty", shown(assignment, s));
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, a, n);
    name[n] = '\0';
    const Key* k = key_find(name);
    if (!k) return unknown_key("--set", name);
    HnConfig next = *cfg;
    if (key_assign_text(&next, k, eq + 1, "--set")) return HN_ERR;
    *cfg = next;
    return HN_OK;
}

/* ---- YAML files ---- */

typedef struct {
    const char* path;
    yaml_document_t* doc;
    HnConfig* cfg;
    int key_line[NKEYS];         /* where each key was set; 0 = not yet */
    int section_line[NSECTIONS]; /* where each section was opened; 0 = not yet */
} Loader;

static int line_of(const yaml_node_t* node) {
    return (int)node->start_mark.line + 1;
}

static void where(const Loader* L, const yaml_node_t* node, char* loc, size_t size) {
    snprintf(loc, size, "%s:%d", L->path, line_of(node));
}

static int is_empty_plain(const yaml_node_t* node) {
    return node->type == YAML_SCALAR_NODE && node->data.scalar.length == 0 &&
           node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* a scalar node's text, or NULL after an error when the node is no scalar or holds a NUL */
static const char* scalar_text(const Loader* L, const yaml_node_t* node, const char* what) {
    char loc[600];
    where(L, node, loc, sizeof loc);
    if (node->type != YAML_SCALAR_NODE) {
        fail(loc, "%s must be a plain value, got a %s", what,
             node->type == YAML_MAPPING_NODE ? "mapping" : "list");
        return NULL;
    }
    const char* text = (const char*)node->data.scalar.value;
    if (strlen(text) != node->data.scalar.length) {
        fail(loc, "%s contains a NUL character", what);
        return NULL;
    }
    return text;
}

static int load_value(Loader* L, const Key* k, yaml_node_t* node) {
    char loc[600];
    where(L, node, loc, sizeof loc);
    if (node->type == YAML_MAPPING_NODE)
        return fail(loc, "%s: expected %s, got a mapping", k->name, type_name(k->type));
    if (node->type == YAML_SCALAR_NODE) {
        const char* text = scalar_text(L, node, k->name);
        if (!text) return HN_ERR;
        int n = (k->type == KEY_STRLIST && is_empty_plain(node)) ? 0 : 1;
        return key_assign(L->cfg, k, &text, n, 0, loc);
    }
    yaml_node_item_t* first = node->data.sequence.items.start;
    int n = (int)(node->data.sequence.items.top - first);
    const char** item = malloc((size_t)(n + 1) * sizeof *item);
    if (!item) return fail(loc, "%s: out of memory", k->name);
    int rc = HN_OK;
    for (int i = 0; i < n && rc == HN_OK; i++) {
        char what[80];
        snprintf(what, sizeof what, "item %d of %s", i + 1, k->name);
        item[i] = scalar_text(L, yaml_document_get_node(L->doc, first[i]), what);
        if (!item[i]) rc = HN_ERR;
    }
    if (rc == HN_OK) rc = key_assign(L->cfg, k, item, n, 1, loc);
    free(item);
    return rc;
}

static int load_section(Loader* L, const char* section, yaml_node_t* node) {
    char loc[600], full[160];
    where(L, node, loc, sizeof loc);
    if (is_empty_plain(node)) return HN_OK; /* "model:" with nothing under it */
    if (node->type != YAML_MAPPING_NODE)
        return fail(loc, "section '%s' must be a mapping of keys to values", section);
    for (yaml_node_pair_t* pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t* key = yaml_document_get_node(L->doc, pair->key);
        const char* name = scalar_text(L, key, "a key");
        if (!name) return HN_ERR;
        where(L, key, loc, sizeof loc);
        snprintf(full, sizeof full, "%s.%s", section, name);
        const Key* k = key_find(full);
        if (!k) return unknown_key(loc, full);
        int i = (int)(k - KEYS);
        if (L->key_line[i])
            return fail(loc, "duplicate key '%s' (first set at line %d)", k->name, L->key_line[i]);
        L->key_line[i] = line_of(key);
        if (load_value(L, k, yaml_document_get_node(L->doc, pair->value))) return HN_ERR;
    }
    return HN_OK;
}

/* ---- the peft section: a list of methods, or a mapping ----
 *
 *   peft:                                  peft:
 *     - lora: {rank: 8, targets: [attn.q]}   methods: [lora, bitfit]
 *     - bitfit                               lora: {rank: 8}
 *
 * In the list form the items name the methods in order. In the mapping form `methods`
 * decides when it is given; otherwise each method written as a key is enabled. */

static const char* const PEFT_METHODS[] = {"lora",   "ia3",     "bitfit", "prefix",
                                           "prompt", "ptuning", "adapter"};
#define NPEFT_METHODS ((int)(sizeof PEFT_METHODS / sizeof PEFT_METHODS[0]))

static int peft_method_index(const char* name) {
    for (int i = 0; i < NPEFT_METHODS; i++)
        if (strcmp(PEFT_METHODS[i], name) == 0) return i;
    return -1;
}

static int unknown_method(const char* loc, const char* name) {
    char s[64];
    return fail(loc,
                "unknown peft method '%s' (hone has lora, ia3, bitfit, prefix, prompt, "
                "ptuning and adapter; DoRA and rsLoRA are lora options)",
                shown(name, s));
}

/* a method's options: a mapping of its keys, or nothing (null, "", true) */
static int load_method_options(Loader* L, const char* method, yaml_node_t* node) {
    char loc[600], sub[64];
    where(L, node, loc, sizeof loc);
    if (node->type == YAML_SCALAR_NODE) {
        const char* v = (const char*)node->data.scalar.value;
        if (is_empty_plain(node) || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
            strcmp(v, "true") == 0 || strcmp(v, "{}") == 0)
            return HN_OK;
        return fail(loc, "peft method %s: expected a mapping of its options", method);
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail(loc, "peft method %s: expected a mapping of its options, got a list", method);
    snprintf(sub, sizeof sub, "peft.%s", method);
    return load_section(L, sub, node);
}

static int peft_list_add(Loader* L, const char* method, const char* loc) {
    HnStrList* list = &L->cfg->peft.methods;
    if (peft_method_index(method) < 0) return unknown_method(loc, method);
    for (int i = 0; i < list->n; i++)
        if (strcmp(list->item[i], method) == 0)
            return fail(loc, "peft method %s is listed twice", method);
    if (list->n == HN_MAX_LIST) return fail(loc, "too many peft methods");
    snprintf(list->item[list->n++], HN_STR, "%s", method);
    return HN_OK;
}

static int load_peft(Loader* L, yaml_node_t* node) {
    char loc[600], full[160];
    where(L, node, loc, sizeof loc);
    if (is_empty_plain(node)) return HN_OK;
    int mi = (int)(key_find("peft.methods") - KEYS);
    if (node->type == YAML_SEQUENCE_NODE) {
        L->cfg->peft.methods.n = 0;
        L->key_line[mi] = line_of(node);
        for (yaml_node_item_t* it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            yaml_node_t* item = yaml_document_get_node(L->doc, *it);
            where(L, item, loc, sizeof loc);
            if (item->type == YAML_SCALAR_NODE) {
                const char* name = scalar_text(L, item, "a peft method");
                if (!name || peft_list_add(L, name, loc) != HN_OK) return HN_ERR;
                continue;
            }
            if (item->type != YAML_MAPPING_NODE ||
                item->data.mapping.pairs.top - item->data.mapping.pairs.start != 1)
                return fail(loc, "each peft item is one method: `- lora: {rank: 8}` or `- bitfit`");
            yaml_node_pair_t* pair = item->data.mapping.pairs.start;
            const char* name =
                scalar_text(L, yaml_document_get_node(L->doc, pair->key), "a peft method");
            if (!name || peft_list_add(L, name, loc) != HN_OK ||
                load_method_options(L, name, yaml_document_get_node(L->doc, pair->value)) != HN_OK)
                return HN_ERR;
        }
        return HN_OK;
    }
    if (node->type != YAML_MAPPING_NODE)
        return fail(loc, "section 'peft' must be a list of methods or a mapping");
    int explicit_methods = 0, seen[NPEFT_METHODS] = {0};
    for (yaml_node_pair_t* pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t* key = yaml_document_get_node(L->doc, pair->key);
        yaml_node_t* value = yaml_document_get_node(L->doc, pair->value);
        const char* name = scalar_text(L, key, "a key");
        if (!name) return HN_ERR;
        where(L, key, loc, sizeof loc);
        int m = peft_method_index(name);
        if (m >= 0) {
            if (seen[m]) return fail(loc, "duplicate key 'peft.%s'", name);
            seen[m] = 1;
            if (load_method_options(L, name, value) != HN_OK) return HN_ERR;
            continue;
        }
        snprintf(full, sizeof full, "peft.%s", name);
        const Key* k = key_find(full);
        if (!k) return unknown_key(loc, full);
        int i = (int)(k - KEYS);
        if (L->key_line[i])
            return fail(loc, "duplicate key '%s' (first set at line %d)", k->name, L->key_line[i]);
        L->key_line[i] = line_of(key);
        explicit_methods |= i == mi;
        if (load_value(L, k, value)) return HN_ERR;
    }
    HnStrList* list = &L->cfg->peft.methods;
    for (int i = 0; i < list->n; i++)
        if (peft_method_index(list->item[i]) < 0) return unknown_method(loc, list->item[i]);
    if (!explicit_methods) {
        list->n = 0;
        for (int m = 0; m < NPEFT_METHODS; m++)
            if (seen[m] && peft_list_add(L, PEFT_METHODS[m], loc) != HN_OK) return HN_ERR;
    }
    return HN_OK;
}

static int load_document(Loader* L) {
    char loc[600], s[64];
    yaml_node_t* root = yaml_document_get_root_node(L->doc);
    if (!root) return HN_OK; /* an empty file changes nothing */
    where(L, root, loc, sizeof loc);
    if (root->type != YAML_MAPPING_NODE)
        return fail(loc,
                    "the top level must be a mapping of sections (model:, data:, optim:, ...)");
    for (yaml_node_pair_t* pair = root->data.mapping.pairs.start;
         pair < root->data.mapping.pairs.top; pair++) {
        yaml_node_t* key = yaml_document_get_node(L->doc, pair->key);
        yaml_node_t* value = yaml_document_get_node(L->doc, pair->value);
        const char* name = scalar_text(L, key, "a section name");
        if (!name) return HN_ERR;
        where(L, key, loc, sizeof loc);
        int sec = section_find(name);
        if (sec < 0) {
            /* name the first key under it, so the suggestion can be a whole key */
            if (value->type == YAML_MAPPING_NODE &&
                value->data.mapping.pairs.top > value->data.mapping.pairs.start) {
                yaml_node_t* k =
                    yaml_document_get_node(L->doc, value->data.mapping.pairs.start->key);
                const char* kname = scalar_text(L, k, "a key");
                if (!kname) return HN_ERR;
                char full[160];
                snprintf(full, sizeof full, "%s.%s", name, kname);
                where(L, k, loc, sizeof loc);
                return unknown_key(loc, full);
            }
            return fail(loc, "unknown section '%s' (did you mean '%s'?)", shown(name, s),
                        SECTIONS[section_closest(name)].name);
        }
        if (L->section_line[sec])
            return fail(loc, "duplicate section '%s' (first at line %d)", name,
                        L->section_line[sec]);
        L->section_line[sec] = line_of(key);
        if (strcmp(name, "peft") == 0 ? load_peft(L, value) : load_section(L, name, value))
            return HN_ERR;
    }
    return HN_OK;
}

static int syntax_error(const char* path, const yaml_parser_t* p) {
    const char* problem = p->problem ? p->problem : "cannot parse";
    if (p->context)
        return hn_error("%s:%d: YAML syntax error: %s %s", path, (int)p->problem_mark.line + 1,
                        problem, p->context);
    return hn_error("%s:%d: YAML syntax error: %s", path, (int)p->problem_mark.line + 1, problem);
}

/* parse one YAML document from a parser whose input is set; name is used in messages */
static int load_from_parser(HnConfig* cfg, const char* name, yaml_parser_t* parser) {
    yaml_document_t doc;
    HnConfig next = *cfg;
    int rc = HN_ERR;
    if (!yaml_parser_load(parser, &doc)) {
        syntax_error(name, parser);
    } else {
        Loader L = {.path = name, .doc = &doc, .cfg = &next};
        rc = load_document(&L);
        int has_root = yaml_document_get_root_node(&doc) != NULL;
        yaml_document_delete(&doc);
        if (rc == HN_OK && has_root) { /* a second document would be silently ignored */
            if (!yaml_parser_load(parser, &doc)) {
                rc = syntax_error(name, parser);
            } else {
                yaml_node_t* extra = yaml_document_get_root_node(&doc);
                if (extra)
                    rc = hn_error("%s:%d: more than one YAML document", name, line_of(extra));
                yaml_document_delete(&doc);
            }
        }
        if (rc == HN_OK) *cfg = next;
    }
    return rc;
}

int hn_config_load(HnConfig* cfg, const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) return hn_error("cannot open config '%s': %s", path, strerror(errno));
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        fclose(f);
        return hn_error("%s: cannot start the YAML parser (out of memory)", path);
    }
    yaml_parser_set_input_file(&parser, f);
    int rc = load_from_parser(cfg, path, &parser);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

int hn_config_load_text(HnConfig* cfg, const char* text, const char* name) {
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return hn_error("%s: cannot start the YAML parser (out of memory)", name);
    yaml_parser_set_input_string(&parser, (const unsigned char*)text, strlen(text));
    int rc = load_from_parser(cfg, name, &parser);
    yaml_parser_delete(&parser);
    return rc;
}

const char* hn_config_first_difference(const HnConfig* a, const HnConfig* b,
                                       const char* const* allowed, int nallowed) {
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) {
        const Key* k = &KEYS[i];
        int ok = 0;
        for (int j = 0; j < nallowed && !ok; j++)
            ok = strcmp(allowed[j], k->name) == 0;
        if (ok) continue;
        const char* pa = (const char*)a + k->offset;
        const char* pb = (const char*)b + k->offset;
        /* strings compare as text: bytes after the terminator are not part of the value */
        int same = k->type == KEY_STR ? strcmp(pa, pb) == 0 : memcmp(pa, pb, k->size) == 0;
        if (k->type == KEY_STRLIST) {
            const HnStrList *la = (const HnStrList*)pa, *lb = (const HnStrList*)pb;
            same = la->n == lb->n;
            for (int j = 0; same && j < la->n; j++)
                same = strcmp(la->item[j], lb->item[j]) == 0;
        }
        if (!same) return k->name;
    }
    return NULL;
}

/* ---- checking ---- */

static int in_choices(const char* value, const char* choices) {
    size_t n = strlen(value);
    for (const char* c = choices; *c;) {
        size_t m = strcspn(c, "|");
        if (m == n && strncmp(c, value, n) == 0) return 1;
        c += m + (c[m] == '|');
    }
    return 0;
}

#define NEED(cond, ...)                                                                            \
    do {                                                                                           \
        if (!(cond)) return hn_error(__VA_ARGS__);                                                 \
    } while (0)
#define POSITIVE(v, name) NEED((v) > 0, name " must be positive, got %d", (v))
#define NOT_NEGATIVE(v, name) NEED((v) >= 0, name " must be >= 0, got %d", (v))

int hn_config_validate(const HnConfig* cfg) {
    char s[64];
    for (int i = 0; i < NKEYS; i++) {
        const Key* k = &KEYS[i];
        const char* v = (const char*)cfg + k->offset;
        if (k->choices && !in_choices(v, k->choices)) {
            char list[128];
            size_t j = 0;
            for (const char* c = k->choices; *c && j + 3 < sizeof list; c++) {
                if (*c == '|')
                    list[j++] = ',', list[j++] = ' ';
                else
                    list[j++] = *c;
            }
            list[j] = '\0';
            return hn_error("%s must be one of %s; got '%s'", k->name, list, shown(v, s));
        }
    }
    POSITIVE(cfg->model.layers, "model.layers");
    POSITIVE(cfg->model.channels, "model.channels");
    POSITIVE(cfg->model.heads, "model.heads");
    POSITIVE(cfg->model.context, "model.context");
    NEED(cfg->model.channels % cfg->model.heads == 0,
         "model.channels (%d) must be divisible by model.heads (%d)", cfg->model.channels,
         cfg->model.heads);
    NOT_NEGATIVE(cfg->model.vocab, "model.vocab");
    NOT_NEGATIVE(cfg->model.kv_heads, "model.kv_heads");
    NOT_NEGATIVE(cfg->model.ffn, "model.ffn");
    NEED(cfg->model.kv_heads == 0 || cfg->model.heads % cfg->model.kv_heads == 0,
         "model.kv_heads (%d) must divide model.heads (%d)", cfg->model.kv_heads, cfg->model.heads);
    NEED(strcmp(cfg->model.arch, "gpt2") != 0 || cfg->model.kv_heads == 0 ||
             cfg->model.kv_heads == cfg->model.heads,
         "model.kv_heads (%d) must equal model.heads for gpt2", cfg->model.kv_heads);
    NEED(strcmp(cfg->model.arch, "gpt2") != 0 || cfg->model.tied,
         "gpt2 models tie their classifier to the embedding (model.tied: true)%s", "");
    NEED(cfg->model.rope_theta > 0, "model.rope_theta must be positive, got %g",
         (double)cfg->model.rope_theta);
    NEED(strcmp(cfg->model.arch, "llama") != 0 || cfg->model.heads <= 0 ||
             (cfg->model.channels / cfg->model.heads) % 2 == 0,
         "llama head size (channels / heads = %d) must be even for RoPE",
         cfg->model.heads > 0 ? cfg->model.channels / cfg->model.heads : 0);
    NEED(cfg->model.norm_eps > 0, "model.norm_eps must be positive, got %g", cfg->model.norm_eps);
    NEED(cfg->model.init_std > 0, "model.init_std must be positive, got %g", cfg->model.init_std);

    NEED(cfg->data.train[0], "data.train is empty: set it to the glob of the training shards");
    POSITIVE(cfg->data.batch, "data.batch");
    POSITIVE(cfg->data.seq, "data.seq");
    NEED(cfg->data.seq <= cfg->model.context, "data.seq (%d) must not exceed model.context (%d)",
         cfg->data.seq, cfg->model.context);

    NEED(cfg->optim.lr > 0, "optim.lr must be positive, got %g", cfg->optim.lr);
    NEED(cfg->optim.weight_decay >= 0, "optim.weight_decay must be >= 0, got %g",
         cfg->optim.weight_decay);
    for (int i = 0; i < 2; i++)
        NEED(cfg->optim.betas[i] >= 0 && cfg->optim.betas[i] < 1,
             "optim.betas[%d] must be in [0, 1), got %g", i, cfg->optim.betas[i]);
    NEED(cfg->optim.eps > 0, "optim.eps must be positive, got %g", cfg->optim.eps);
    NEED(cfg->optim.min_lr_ratio >= 0 && cfg->optim.min_lr_ratio <= 1,
         "optim.min_lr_ratio must be in [0, 1], got %g", cfg->optim.min_lr_ratio);
    NEED(cfg->optim.clip >= 0, "optim.clip must be >= 0 (0 = off), got %g", cfg->optim.clip);
    POSITIVE(cfg->optim.accum, "optim.accum");

    for (int i = 0; i < cfg->peft.methods.n; i++) {
        NEED(peft_method_index(cfg->peft.methods.item[i]) >= 0,
             "peft.methods: unknown method '%s' (hone has lora, ia3, bitfit, prefix, prompt, "
             "ptuning and adapter)",
             shown(cfg->peft.methods.item[i], s));
        for (int j = 0; j < i; j++)
            NEED(strcmp(cfg->peft.methods.item[i], cfg->peft.methods.item[j]) != 0,
                 "peft.methods lists %s twice", cfg->peft.methods.item[i]);
    }
    NEED(cfg->peft.lora.rank > 0, "peft.lora.rank must be positive, got %d", cfg->peft.lora.rank);
    NEED(cfg->peft.lora.alpha > 0, "peft.lora.alpha must be positive, got %g",
         cfg->peft.lora.alpha);
    NEED(cfg->peft.lora.dropout >= 0 && cfg->peft.lora.dropout < 1,
         "peft.lora.dropout must be in [0, 1), got %g", cfg->peft.lora.dropout);

    POSITIVE(cfg->peft.prefix.length, "peft.prefix.length");
    NOT_NEGATIVE(cfg->peft.prefix.projection, "peft.prefix.projection");
    POSITIVE(cfg->peft.prompt.length, "peft.prompt.length");
    POSITIVE(cfg->peft.ptuning.length, "peft.ptuning.length");
    NOT_NEGATIVE(cfg->peft.ptuning.hidden, "peft.ptuning.hidden");
    POSITIVE(cfg->peft.adapter.reduction, "peft.adapter.reduction");
    NEED(isfinite(cfg->peft.adapter.scaling), "peft.adapter.scaling must be finite%s", "");

    NEED(cfg->mask.density > 0 && cfg->mask.density <= 1, "mask.density must be in (0, 1], got %g",
         cfg->mask.density);
    POSITIVE(cfg->mask.fish_examples, "mask.fish_examples");
    NEED(cfg->dist.zero == 0 || cfg->dist.zero == 1, "dist.zero must be 0 or 1, got %d",
         cfg->dist.zero);
    NEED(!cfg->dist.zero || strcmp(cfg->train.device, "cuda") != 0,
         "dist.zero: 1 runs on the CPU backend only for now (train.device: cpu)");
    NEED(!cfg->dist.zero || strcmp(cfg->mask.method, "none") == 0,
         "dist.zero: 1 does not combine with mask.method %s (its moments follow the mask)",
         cfg->mask.method);
    POSITIVE(cfg->mask.lt_sft_steps, "mask.lt_sft_steps");
    NEED(strcmp(cfg->mask.method, "none") == 0 || cfg->peft.methods.n == 0,
         "mask.method %s and peft methods together are not supported: a mask selects entries of "
         "the model itself",
         cfg->mask.method);

    POSITIVE(cfg->train.steps, "train.steps");
    NOT_NEGATIVE(cfg->optim.warmup, "optim.warmup");
    NEED(cfg->optim.warmup == 0 || cfg->optim.warmup < cfg->train.steps,
         "optim.warmup (%d) must be less than train.steps (%d)", cfg->optim.warmup,
         cfg->train.steps);
    NOT_NEGATIVE(cfg->train.threads, "train.threads");
    NEED(cfg->train.log_every >= 1, "train.log_every must be >= 1, got %d", cfg->train.log_every);
    NOT_NEGATIVE(cfg->train.eval_every, "train.eval_every");
    NEED(cfg->train.eval_batches >= 1, "train.eval_batches must be >= 1, got %d",
         cfg->train.eval_batches);
    NOT_NEGATIVE(cfg->train.sample_tokens, "train.sample_tokens");
    NOT_NEGATIVE(cfg->train.save_every, "train.save_every");
    NEED(cfg->train.keep >= 1, "train.keep must be >= 1, got %d", cfg->train.keep);
    NEED(cfg->train.deflate >= 0 && cfg->train.deflate <= 9, "train.deflate must be 0..9, got %d",
         cfg->train.deflate);
    NEED(cfg->train.out[0], "train.out is empty: set it to the run folder");
    NOT_NEGATIVE(cfg->train.max_bad_steps, "train.max_bad_steps");
    NEED(cfg->train.spike_factor == 0 || cfg->train.spike_factor > 1,
         "train.spike_factor must be 0 (off) or above 1, got %g", cfg->train.spike_factor);
    return HN_OK;
}

/* ---- writing ---- */

/* the shortest %g form that reads back, through the loader's own parse, to the same float */
static void write_float(FILE* f, float v) {
    char buf[32];
    for (int digits = 6; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
        if (float_from_text(buf, NULL) == v) break;
    }
    fputs(buf, f);
}

/* a YAML double-quoted string */
static void write_quoted(FILE* f, const char* s) {
    fputc('"', f);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(f, "\\x%02x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

static void write_value(FILE* f, const HnConfig* cfg, const Key* k) {
    const char* field = (const char*)cfg + k->offset;
    switch (k->type) {
    case KEY_INT:
        fprintf(f, "%d", *(const int*)field);
        break;
    case KEY_FLOAT:
        write_float(f, *(const float*)field);
        break;
    case KEY_BOOL:
        fputs(*(const int*)field ? "true" : "false", f);
        break;
    case KEY_STR:
        write_quoted(f, field);
        break;
    case KEY_STRLIST: {
        const HnStrList* list = (const HnStrList*)field;
        fputc('[', f);
        for (int i = 0; i < list->n; i++) {
            if (i) fputs(", ", f);
            write_quoted(f, list->item[i]);
        }
        fputc(']', f);
        break;
    }
    case KEY_FLOAT2: {
        const float* v = (const float*)field;
        fputc('[', f);
        write_float(f, v[0]);
        fputs(", ", f);
        write_float(f, v[1]);
        fputc(']', f);
        break;
    }
    }
}

/* the peft section in its mapping form: methods first, then every method's options (so a
 * config read back is the same struct, options of methods not enabled included) */
static void write_peft(const HnConfig* cfg, FILE* f) {
    fputs("peft:\n  methods: ", f);
    write_value(f, cfg, key_find("peft.methods"));
    fputc('\n', f);
    const char* open = NULL;
    for (int i = 0; i < NKEYS; i++) {
        const char* name = KEYS[i].name;
        if (strncmp(name, "peft.", 5) != 0 || !strchr(name + 5, '.')) continue;
        const char* method = name + 5;
        size_t mlen = (size_t)(strchr(method, '.') - method);
        if (!open || strncmp(open, method, mlen) != 0 || open[mlen] != '.') {
            fprintf(f, "  %.*s:\n", (int)mlen, method);
            open = method;
        }
        fprintf(f, "    %s: ", method + mlen + 1);
        write_value(f, cfg, &KEYS[i]);
        fputc('\n', f);
    }
}

int hn_config_write(const HnConfig* cfg, FILE* f) {
    for (int s = 0; s < NSECTIONS; s++) {
        size_t n = strlen(SECTIONS[s].name);
        if (strcmp(SECTIONS[s].name, "peft") == 0) {
            write_peft(cfg, f);
            continue;
        }
        fprintf(f, "%s:\n", SECTIONS[s].name);
        for (int i = 0; i < NKEYS; i++) {
            if (section_len(KEYS[i].name) != n || strncmp(KEYS[i].name, SECTIONS[s].name, n))
                continue;
            fprintf(f, "  %s: ", leaf(KEYS[i].name));
            write_value(f, cfg, &KEYS[i]);
            fputc('\n', f);
        }
    }
    if (fflush(f) || ferror(f)) return hn_error("cannot write the config: %s", strerror(errno));
    return HN_OK;
}

/* ---- documentation ---- */

/* text for a Markdown table cell: '|' would end the cell */
static void write_cell(FILE* f, const char* s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static void write_type(FILE* f, const Key* k) {
    if (k->choices) {
        fputs("one of ", f);
        for (const char* c = k->choices; *c;) {
            size_t m = strcspn(c, "|");
            fprintf(f, "%s`%.*s`", c == k->choices ? "" : ", ", (int)m, c);
            c += m + (c[m] == '|');
        }
        return;
    }
    switch (k->type) {
    case KEY_INT:
        fputs("integer", f);
        break;
    case KEY_FLOAT:
        fputs("number", f);
        break;
    case KEY_BOOL:
        fputs("bool", f);
        break;
    case KEY_STR:
        fprintf(f, "string (at most %zu bytes)", k->size - 1);
        break;
    case KEY_STRLIST:
        fprintf(f, "list of strings (at most %d)", HN_MAX_LIST);
        break;
    case KEY_FLOAT2:
        fputs("list of 2 numbers", f);
        break;
    }
}

static const char DOC_INTRO[] =
    "# Configuration\n"
    "\n"
    "<!-- Generated by hn_config_write_doc() from the key table in core/config.c; "
    "edit the table, not this file. -->\n"
    "\n"
    "A run is configured by a YAML file whose top level is a mapping of sections, each a\n"
    "mapping of keys to values; list values may be written in flow (`[a, b]`) or block style.\n"
    "\n"
    "```yaml\n"
    "model: {arch: gpt2, layers: 2}\n"
    "optim:\n"
    "  lr: 1e-3\n"
    "  betas: [0.9, 0.99]\n"
    "  no_decay: [\"*.bias\"]\n"
    "```\n"
    "\n"
    "Each key takes its value from the last of, in order of precedence: its default (below),\n"
    "the YAML file, and `--set section.key=value` on the command line (a list there as\n"
    "`[a, b]` or `a,b`). An unknown section or key is an error that names the closest valid\n"
    "key, and so is a key given twice or a value of the wrong type. Booleans are written\n"
    "true/false, yes/no, on/off or 1/0. The values are then checked together (for example,\n"
    "`model.channels` must be divisible by `model.heads`).\n";

void hn_config_write_doc(FILE* f) {
    HnConfig def;
    char* text = NULL;
    size_t len = 0;
    hn_config_defaults(&def);
    fputs(DOC_INTRO, f);
    for (int s = 0; s < NSECTIONS; s++) {
        size_t n = strlen(SECTIONS[s].name);
        fprintf(f, "\n## %s\n\n%c%s.\n\n", SECTIONS[s].name, toupper(SECTIONS[s].meaning[0]),
                SECTIONS[s].meaning + 1);
        fputs("| key | type | default | meaning |\n|---|---|---|---|\n", f);
        for (int i = 0; i < NKEYS; i++) {
            const Key* k = &KEYS[i];
            if (section_len(k->name) != n || strncmp(k->name, SECTIONS[s].name, n)) continue;
            fprintf(f, "| `%s` | ", k->name);
            write_type(f, k);
            fputs(" | `", f);
            FILE* m = open_memstream(&text, &len);
            if (m) {
                write_value(m, &def, k);
                fclose(m);
                write_cell(f, text);
                free(text);
                text = NULL;
            } else {
                write_cell(f, k->def);
            }
            fputs("` | ", f);
            write_cell(f, k->meaning);
            fputs(" |\n", f);
        }
    }
}

char* hn_config_to_text(const HnConfig* cfg) {
    char* buf = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&buf, &len);
    if (!f) {
        hn_error("out of memory rendering the config");
        return NULL;
    }
    int rc = hn_config_write(cfg, f);
    if (fclose(f) != 0 || rc != HN_OK) {
        free(buf);
        hn_error("cannot render the config");
        return NULL;
    }
    return buf;
}
