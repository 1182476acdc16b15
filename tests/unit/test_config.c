/*
 * The run configuration: defaults, YAML files, --set overrides, every load error (with its
 * line and suggestion), the YAML round trip, validation, and that docs/CONFIG.md is exactly
 * what hn_config_write_doc() prints.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "testing.h"
#include "core/config.h"

static char tmp_dir[512];

/* write text to a file in the scratch folder; returns its path (valid until the next call) */
static const char* write_yaml(const char* name, const char* text) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, name);
    FILE* f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return path;
}

static int msg_has(const char* part) {
    return strstr(hn_error_message(), part) != NULL;
}

static int one_line(void) {
    return hn_error_message()[0] && !strchr(hn_error_message(), '\n');
}

/* load text on top of the defaults; HN_OK or HN_ERR */
static int load_text(HnConfig* cfg, const char* text) {
    hn_config_defaults(cfg);
    hn_error_clear();
    return hn_config_load(cfg, write_yaml("cfg.yaml", text));
}

/* the config as the text hn_config_write prints (caller frees) */
static char* written(const HnConfig* cfg) {
    char* text = NULL;
    size_t len = 0;
    FILE* f = open_memstream(&text, &len);
    CHECK(hn_config_write(cfg, f) == HN_OK, "%s", hn_error_message());
    fclose(f);
    return text;
}

static void test_defaults_are_the_documented_values(void) {
    HnConfig c;
    hn_config_defaults(&c);
    CHECK(!strcmp(c.model.arch, "gpt2"), "%s", c.model.arch);
    CHECK(c.model.layers == 4 && c.model.channels == 128 && c.model.heads == 4, "model shape");
    CHECK(c.model.vocab == 0 && c.model.context == 256, "vocab/context");
    CHECK(c.model.norm_eps == 1e-5f && c.model.init_std == 0.02f, "norm_eps/init_std");
    CHECK(!strcmp(c.tokenizer.type, "auto") && !c.tokenizer.encoder[0] && !c.tokenizer.merges[0],
          "tokenizer");
    CHECK(!c.data.train[0] && !c.data.val[0] && c.data.batch == 8 && c.data.seq == 128 &&
              c.data.shuffle == 1,
          "data");
    CHECK(c.optim.lr == 3e-4f && c.optim.weight_decay == 0.1f, "lr/wd");
    CHECK(c.optim.betas[0] == 0.9f && c.optim.betas[1] == 0.95f, "betas");
    CHECK(c.optim.eps == 1e-8f && !strcmp(c.optim.schedule, "cosine") && c.optim.warmup == 0,
          "eps/schedule/warmup");
    CHECK(c.optim.min_lr_ratio == 0.1f && c.optim.clip == 1.0f && c.optim.accum == 1, "optim");
    CHECK(c.optim.no_decay.n == 3 && !strcmp(c.optim.no_decay.item[0], "*.bias") &&
              !strcmp(c.optim.no_decay.item[1], "*norm*") &&
              !strcmp(c.optim.no_decay.item[2], "*embed*"),
          "no_decay n=%d", c.optim.no_decay.n);
    CHECK(c.train.steps == 100 && c.train.seed == 1337 && !strcmp(c.train.device, "auto"), "train");
    CHECK(c.train.threads == 0 && !strcmp(c.train.out, "runs/default") && c.train.log_every == 10 &&
              c.train.eval_every == 0 && c.train.eval_batches == 8 && c.train.sample_tokens == 0 &&
              !c.train.sample_prompt[0],
          "train rest");
}

static void test_yaml_overrides_every_key(void) {
    HnConfig c;
    int rc = load_text(&c, "# a full config\n"
                           "model: {arch: gpt2, layers: 2, channels: 64, heads: 2, vocab: 50257,\n"
                           "        context: 512, norm_eps: 1e-6, init_std: 0.01}\n"
                           "tokenizer:\n"
                           "  type: gpt2\n"
                           "  encoder: tok/encoder.json\n"
                           "  merges: 'tok/vocab.bpe'\n"
                           "data:\n"
                           "  train: \"shards/train_*.bin\"\n"
                           "  val: shards/val_*.bin\n"
                           "  batch: 4\n"
                           "  seq: 64\n"
                           "  shuffle: no\n"
                           "optim:\n"
                           "  lr: 1e-3\n"
                           "  weight_decay: 0\n"
                           "  betas: [0.8, 0.99]\n"
                           "  eps: 1e-6\n"
                           "  schedule: linear\n"
                           "  warmup: 10\n"
                           "  min_lr_ratio: 0.0\n"
                           "  clip: 0\n"
                           "  accum: 2\n"
                           "  no_decay:\n"
                           "    - \"*.bias\"\n"
                           "    - ln_*\n"
                           "train:\n"
                           "  steps: 50\n"
                           "  seed: -7\n"
                           "  device: cpu\n"
                           "  threads: 3\n"
                           "  out: runs/x\n"
                           "  log_every: 1\n"
                           "  eval_every: 25\n"
                           "  eval_batches: 2\n"
                           "  sample_tokens: 16\n"
                           "  sample_prompt: \"Once upon a time\"\n");
    CHECK(rc == HN_OK, "%s", hn_error_message());
    CHECK(c.model.layers == 2 && c.model.channels == 64 && c.model.heads == 2, "model shape");
    CHECK(c.model.vocab == 50257 && c.model.context == 512, "vocab/context");
    CHECK(c.model.norm_eps == 1e-6f && c.model.init_std == 0.01f, "norm_eps/init_std");
    CHECK(!strcmp(c.tokenizer.type, "gpt2") && !strcmp(c.tokenizer.encoder, "tok/encoder.json") &&
              !strcmp(c.tokenizer.merges, "tok/vocab.bpe"),
          "tokenizer");
    CHECK(!strcmp(c.data.train, "shards/train_*.bin") && !strcmp(c.data.val, "shards/val_*.bin"),
          "data paths");
    CHECK(c.data.batch == 4 && c.data.seq == 64 && c.data.shuffle == 0, "data");
    CHECK(c.optim.lr == 1e-3f && c.optim.weight_decay == 0.0f && c.optim.eps == 1e-6f, "optim");
    CHECK(c.optim.betas[0] == 0.8f && c.optim.betas[1] == 0.99f, "betas");
    CHECK(!strcmp(c.optim.schedule, "linear") && c.optim.warmup == 10, "schedule");
    CHECK(c.optim.min_lr_ratio == 0.0f && c.optim.clip == 0.0f && c.optim.accum == 2, "optim");
    CHECK(c.optim.no_decay.n == 2 && !strcmp(c.optim.no_decay.item[0], "*.bias") &&
              !strcmp(c.optim.no_decay.item[1], "ln_*"),
          "no_decay");
    CHECK(c.train.steps == 50 && c.train.seed == -7 && !strcmp(c.train.device, "cpu") &&
              c.train.threads == 3 && !strcmp(c.train.out, "runs/x"),
          "train");
    CHECK(c.train.log_every == 1 && c.train.eval_every == 25 && c.train.eval_batches == 2 &&
              c.train.sample_tokens == 16 && !strcmp(c.train.sample_prompt, "Once upon a time"),
          "train rest");
    CHECK(hn_config_validate(&c) == HN_OK, "%s", hn_error_message());
}

static void test_yaml_leaves_unnamed_keys_alone(void) {
    HnConfig c;
    CHECK(load_text(&c, "optim:\n  lr: 0.5\n") == HN_OK, "%s", hn_error_message());
    CHECK(c.optim.lr == 0.5f && c.model.layers == 4 && c.optim.no_decay.n == 3, "partial");
    CHECK(load_text(&c, "") == HN_OK, "empty file: %s", hn_error_message());
    CHECK(load_text(&c, "# only a comment\n") == HN_OK, "%s", hn_error_message());
    CHECK(load_text(&c, "model:\ndata: {}\n") == HN_OK, "empty sections: %s", hn_error_message());
    CHECK(c.model.layers == 4, "unchanged");
}

static void test_yaml_value_forms(void) {
    HnConfig c;
    CHECK(load_text(&c, "optim: {no_decay: \"*.bias\"}\n") == HN_OK, "%s", hn_error_message());
    CHECK(c.optim.no_decay.n == 1 && !strcmp(c.optim.no_decay.item[0], "*.bias"),
          "a scalar is a one-item list");
    CHECK(load_text(&c, "optim: {no_decay: []}\n") == HN_OK && c.optim.no_decay.n == 0, "[]");
    CHECK(load_text(&c, "optim:\n  no_decay:\n") == HN_OK && c.optim.no_decay.n == 0, "empty");
    static const char* const bools[] = {"true", "yes", "on", "1", "True", "ON"};
    for (int i = 0; i < 6; i++) {
        char text[64];
        snprintf(text, sizeof text, "data:\n  shuffle: %s\n", bools[i]);
        HnConfig d;
        hn_config_defaults(&d);
        d.data.shuffle = 0;
        CHECK(hn_config_load(&d, write_yaml("b.yaml", text)) == HN_OK && d.data.shuffle == 1,
              "%s: %s", bools[i], hn_error_message());
    }
    CHECK(load_text(&c, "data: {shuffle: off}\n") == HN_OK && c.data.shuffle == 0, "off");
    CHECK(load_text(&c, "data: {batch: \"16\"}\n") == HN_OK && c.data.batch == 16, "quoted int");
    CHECK(load_text(&c, "model: &m {layers: 3}\noptim: {lr: 0.5}\n") == HN_OK &&
              c.model.layers == 3,
          "anchors are fine: %s", hn_error_message());
}

static void test_set_overrides(void) {
    HnConfig c;
    hn_config_defaults(&c);
    CHECK(load_text(&c, "optim: {lr: 1e-3}\n") == HN_OK, "%s", hn_error_message());
    CHECK(hn_config_set(&c, "optim.lr=1e-4") == HN_OK && c.optim.lr == 1e-4f, "set after load");
    CHECK(hn_config_set(&c, "model.layers=12") == HN_OK && c.model.layers == 12, "int");
    CHECK(hn_config_set(&c, " data.shuffle = false") == HN_OK && c.data.shuffle == 0, "bool");
    CHECK(hn_config_set(&c, "train.sample_prompt=a=b, c") == HN_OK &&
              !strcmp(c.train.sample_prompt, "a=b, c"),
          "a string keeps everything after the first '='");
    CHECK(hn_config_set(&c, "data.val=") == HN_OK && !c.data.val[0], "empty string");
    CHECK(hn_config_set(&c, "optim.betas=[0.5, 0.9]") == HN_OK && c.optim.betas[0] == 0.5f &&
              c.optim.betas[1] == 0.9f,
          "betas in brackets");
    CHECK(hn_config_set(&c, "optim.betas=0.6,0.7") == HN_OK && c.optim.betas[0] == 0.6f &&
              c.optim.betas[1] == 0.7f,
          "betas bare");
    CHECK(hn_config_set(&c, "optim.no_decay=*.bias,ln_*") == HN_OK && c.optim.no_decay.n == 2 &&
              !strcmp(c.optim.no_decay.item[1], "ln_*"),
          "list bare");
    CHECK(hn_config_set(&c, "optim.no_decay=[\"a, b\", 'it''s', \"q\\\"\"]") == HN_OK &&
              c.optim.no_decay.n == 3 && !strcmp(c.optim.no_decay.item[0], "a, b") &&
              !strcmp(c.optim.no_decay.item[1], "it's") && !strcmp(c.optim.no_decay.item[2], "q\""),
          "quoted list items: %s", hn_error_message());
    CHECK(hn_config_set(&c, "optim.no_decay=[]") == HN_OK && c.optim.no_decay.n == 0, "[]");
    CHECK(hn_config_set(&c, "optim.no_decay=") == HN_OK && c.optim.no_decay.n == 0, "empty");
}

/* the value as a config file line under its section, e.g. expect_load_error("data", "batch:
 * abc", ...) */
static void expect_load_error(const char* text, const char* part1, const char* part2) {
    HnConfig c, before;
    hn_config_defaults(&before);
    int rc = load_text(&c, text);
    CHECK(rc == HN_ERR, "accepted: %s", text);
    CHECK(one_line(), "not one line: '%s'", hn_error_message());
    CHECK(msg_has(part1), "'%s' lacks '%s'", hn_error_message(), part1);
    if (part2) CHECK(msg_has(part2), "'%s' lacks '%s'", hn_error_message(), part2);
    char *a = written(&before), *b = written(&c);
    CHECK(!strcmp(a, b), "a failed load changed the config: %s", text);
    free(a);
    free(b);
}

static void expect_set_error(const char* assignment, const char* part1, const char* part2) {
    HnConfig c;
    hn_config_defaults(&c);
    hn_error_clear();
    CHECK(hn_config_set(&c, assignment) == HN_ERR, "accepted: %s", assignment);
    CHECK(one_line(), "not one line: '%s'", hn_error_message());
    CHECK(msg_has(part1), "'%s' lacks '%s'", hn_error_message(), part1);
    if (part2) CHECK(msg_has(part2), "'%s' lacks '%s'", hn_error_message(), part2);
}

static void test_load_errors_name_file_line_and_key(void) {
    HnConfig c;
    hn_config_defaults(&c);
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no_such_config.yaml", tmp_dir);
    CHECK(hn_config_load(&c, missing) == HN_ERR && msg_has("no_such_config.yaml") &&
              msg_has("cannot open"),
          "%s", hn_error_message());

    expect_load_error("model:\n  layers: 2\n channels: [\n", "cfg.yaml:3:", "YAML syntax error");
    expect_load_error("model: {layers: 2\n", "cfg.yaml:", "YAML syntax error");
    expect_load_error("- model\n- data\n", "cfg.yaml:1:", "top level must be a mapping");
    expect_load_error("just a scalar\n", "cfg.yaml:1:", "top level must be a mapping");
    expect_load_error("model: {layers: 2}\n---\nmodel: {layers: 3}\n",
                      "cfg.yaml:3:", "more than one YAML document");

    expect_load_error("model:\n  layers: 2\noptim:\n  eps: 1e-8\n  lrr: 1e-3\n",
                      "cfg.yaml:5: unknown key 'optim.lrr'", "did you mean 'optim.lr'?");
    expect_load_error("modle:\n  layers: 2\n", "cfg.yaml:2: unknown key 'modle.layers'",
                      "did you mean 'model.layers'?");
    expect_load_error("train:\n  lr: 1\n", "unknown key 'train.lr'", "did you mean 'optim.lr'?");
    expect_load_error("optimizer: 3\n", "cfg.yaml:1: unknown section 'optimizer'",
                      "did you mean 'optim'?");
    expect_load_error("model: 3\n", "cfg.yaml:1:", "section 'model' must be a mapping");

    expect_load_error("data:\n  batch: abc\n", "cfg.yaml:2: data.batch: expected an integer",
                      "got 'abc'");
    expect_load_error("data: {batch: 1.5}\n", "data.batch: expected an integer", "'1.5'");
    expect_load_error("data: {batch: 99999999999}\n", "data.batch: integer out of range",
                      "99999999999");
    expect_load_error("data: {batch: [1, 2]}\n", "data.batch: expected an integer", "got a list");
    expect_load_error("data: {batch: {a: 1}}\n", "data.batch", "got a mapping");
    expect_load_error("optim: {lr: .nan}\n", "optim.lr: expected a finite number", "'.nan'");
    expect_load_error("optim: {lr: nan}\n", "optim.lr: expected a finite number", "'nan'");
    expect_load_error("optim: {lr: -inf}\n", "optim.lr: expected a finite number", "'-inf'");
    expect_load_error("optim: {lr: 1e39}\n", "optim.lr: number out of range", "1e39");
    expect_load_error("optim: {lr: fast}\n", "optim.lr: expected a number", "'fast'");
    expect_load_error("data: {shuffle: maybe}\n", "data.shuffle: expected true or false",
                      "'maybe'");
    expect_load_error("optim: {betas: 0.9}\n", "optim.betas: expected a list of 2 numbers", "0.9");
    expect_load_error("optim: {betas: [0.9, 0.95, 0.99]}\n",
                      "optim.betas: expected a list of 2 numbers", "got 3");
    expect_load_error("optim: {betas: [0.9, x]}\n", "optim.betas: expected a number", "'x'");
    expect_load_error("optim: {no_decay: [a, [b]]}\n", "item 2 of optim.no_decay", "got a list");
    expect_load_error("optim: {no_decay: [a, \"\"]}\n", "optim.no_decay: item 2 is empty", NULL);

    char big[2048];
    int n = snprintf(big, sizeof big, "train:\n  out: ");
    for (int i = 0; i < 600; i++)
        big[n++] = 'x';
    snprintf(big + n, sizeof big - n, "\n");
    expect_load_error(big, "cfg.yaml:2: train.out: value too long", "at most 511");
    expect_load_error("model: {arch: a_very_long_architecture_name_of_40_chars}\n",
                      "model.arch: value too long", "at most 31");

    n = snprintf(big, sizeof big, "optim:\n  no_decay: [");
    for (int i = 0; i < 17; i++)
        n += snprintf(big + n, sizeof big - n, "%sp%d", i ? ", " : "", i);
    snprintf(big + n, sizeof big - n, "]\n");
    expect_load_error(big, "optim.no_decay: list too long (17 items", "at most 16");

    expect_load_error("model:\n  layers: 2\n  heads: 2\n  layers: 3\n",
                      "cfg.yaml:4: duplicate key 'model.layers'", "line 2");
    expect_load_error("model: {layers: 2}\noptim: {lr: 1}\nmodel: {heads: 2}\n",
                      "cfg.yaml:3: duplicate section 'model'", "line 1");
    expect_load_error("data:\n  train: \"bad\\x00nul\"\n", "data.train contains a NUL", NULL);
    expect_load_error("data:\n  val: \"line\\nbreak\"\n  batch: \"a\\nb\"\n",
                      "data.batch: expected an integer", "'a?b'");
}

static void test_set_errors(void) {
    expect_set_error("optim.lr", "expected section.key=value", "optim.lr");
    expect_set_error("=3", "key before '=' is empty", NULL);
    expect_set_error("optim.lrr=1e-4", "unknown key 'optim.lrr'", "did you mean 'optim.lr'?");
    expect_set_error("modle.layers=2", "unknown key 'modle.layers'",
                     "did you mean 'model.layers'?");
    expect_set_error("lr=1e-4", "unknown key 'lr'", "did you mean 'optim.lr'?");
    expect_set_error("model.head=2", "unknown key 'model.head'", "did you mean 'model.heads'?");
    expect_set_error("sample=2", "unknown key 'sample'", "did you mean 'train.sample_tokens'?");
    expect_set_error("data.batch=abc", "--set: data.batch: expected an integer", "got 'abc'");
    expect_set_error("data.batch=", "data.batch: expected an integer", NULL);
    expect_set_error("optim.eps=inf", "optim.eps: expected a finite number", NULL);
    expect_set_error("data.shuffle=2", "data.shuffle: expected true or false", NULL);
    expect_set_error("optim.betas=0.9", "optim.betas: expected a list of 2 numbers", "got 1");
    expect_set_error("optim.betas=[0.9, 0.95", "optim.betas", "not closed");
    expect_set_error("optim.no_decay=a,,b", "optim.no_decay: item 2 is empty", NULL);
    expect_set_error("optim.no_decay=[\"a\", \"b]", "unclosed quote", NULL);
    expect_set_error("optim.no_decay=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r",
                     "list too long (18 items", "at most 16");

    HnConfig c;
    hn_config_defaults(&c);
    CHECK(hn_config_set(&c, "model.layers=x") == HN_ERR && c.model.layers == 4,
          "a failed --set leaves the config alone");
}

static void test_write_then_load_gives_the_same_config(void) {
    HnConfig a, b, scrambled;
    hn_config_defaults(&a);
    static const char* const sets[] = {
        "optim.lr=0.1",
        "optim.eps=1e-8",
        "model.norm_eps=3.3333333e-7",
        "model.init_std=0.0123456789",
        "optim.betas=[0.9, 0.999]",
        "optim.min_lr_ratio=0",
        "train.seed=-2147483648",
        "model.vocab=2147483647",
        "data.shuffle=no",
        "data.train=shards/*.bin",
        "train.sample_prompt=He said \"hi\\there\"\n\tand: left # not a comment",
        "tokenizer.encoder=  spaced  ",
        "train.out=r\xc3\xa9sum\xc3\xa9/run 1",
        "optim.no_decay=['*.bias', \"a\\\"b\", 'c\\d', '- dash', '[x]']",
    };
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        CHECK(hn_config_set(&a, sets[i]) == HN_OK, "%s: %s", sets[i], hn_error_message());
    char* text = written(&a);
    /* load on top of a config where every key differs, so a key the writer forgot shows */
    hn_config_defaults(&scrambled);
    static const char* const other[] = {
        "model.arch=x",
        "model.layers=1",
        "model.channels=1",
        "model.heads=1",
        "model.vocab=1",
        "model.context=1",
        "model.norm_eps=1",
        "model.init_std=1",
        "tokenizer.type=x",
        "tokenizer.merges=x",
        "data.val=x",
        "data.batch=1",
        "data.seq=1",
        "optim.weight_decay=1",
        "optim.schedule=x",
        "optim.warmup=1",
        "optim.clip=7",
        "optim.accum=9",
        "train.steps=1",
        "train.device=x",
        "train.threads=1",
        "train.log_every=2",
        "train.eval_every=1",
        "train.eval_batches=1",
        "train.sample_tokens=1",
        "optim.no_decay=z",
    };
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
        CHECK(hn_config_set(&scrambled, other[i]) == HN_OK, "%s", other[i]);
    b = scrambled;
    CHECK(hn_config_load(&b, write_yaml("round.yaml", text)) == HN_OK, "%s\n%s", hn_error_message(),
          text);
    char* again = written(&b);
    CHECK(!strcmp(text, again), "written twice differs:\n%s\n---\n%s", text, again);
    CHECK(b.optim.lr == a.optim.lr && b.model.norm_eps == a.model.norm_eps &&
              b.model.init_std == a.model.init_std && b.optim.betas[1] == a.optim.betas[1],
          "floats");
    CHECK(b.train.seed == a.train.seed && b.model.vocab == a.model.vocab && !b.data.shuffle,
          "ints");
    CHECK(!strcmp(b.train.sample_prompt, a.train.sample_prompt) &&
              !strcmp(b.tokenizer.encoder, "  spaced  ") && !strcmp(b.train.out, a.train.out),
          "strings '%s'", b.train.sample_prompt);
    CHECK(b.optim.no_decay.n == 5 && !strcmp(b.optim.no_decay.item[1], "a\"b") &&
              !strcmp(b.optim.no_decay.item[2], "c\\d") && !strcmp(b.optim.no_decay.item[4], "[x]"),
          "list");
    CHECK(strstr(text, "lr: 0.1\n") && strstr(text, "eps: 1e-08\n"),
          "floats are written in their shortest exact form:\n%s", text);
    free(text);
    free(again);

    /* the defaults round-trip too, and an empty list stays empty */
    hn_config_defaults(&a);
    CHECK(hn_config_set(&a, "optim.no_decay=[]") == HN_OK, "%s", hn_error_message());
    text = written(&a);
    b = scrambled;
    CHECK(hn_config_load(&b, write_yaml("round2.yaml", text)) == HN_OK, "%s", hn_error_message());
    again = written(&b);
    CHECK(!strcmp(text, again) && b.optim.no_decay.n == 0, "defaults:\n%s\n---\n%s", text, again);
    free(text);
    free(again);
}

static void expect_invalid(const char* assignment, const char* part1, const char* part2) {
    HnConfig c;
    hn_config_defaults(&c);
    CHECK(hn_config_set(&c, "data.train=shards/*.bin") == HN_OK, "%s", hn_error_message());
    CHECK(hn_config_set(&c, assignment) == HN_OK, "%s: %s", assignment, hn_error_message());
    hn_error_clear();
    CHECK(hn_config_validate(&c) == HN_ERR, "accepted %s", assignment);
    CHECK(one_line(), "not one line: '%s'", hn_error_message());
    CHECK(msg_has(part1), "%s: '%s' lacks '%s'", assignment, hn_error_message(), part1);
    if (part2) CHECK(msg_has(part2), "%s: '%s' lacks '%s'", assignment, hn_error_message(), part2);
}

static void test_validate_catches_bad_values(void) {
    HnConfig c;
    hn_config_defaults(&c);
    CHECK(hn_config_validate(&c) == HN_ERR && msg_has("data.train"), "%s", hn_error_message());
    CHECK(hn_config_set(&c, "data.train=shards/*.bin") == HN_OK, "%s", hn_error_message());
    CHECK(hn_config_validate(&c) == HN_OK, "defaults + data.train: %s", hn_error_message());
    CHECK(hn_config_set(&c, "optim.warmup=99") == HN_OK && hn_config_validate(&c) == HN_OK,
          "warmup just under steps: %s", hn_error_message());
    CHECK(hn_config_set(&c, "data.seq=256") == HN_OK && hn_config_validate(&c) == HN_OK,
          "seq == context: %s", hn_error_message());

    expect_invalid("model.layers=0", "model.layers must be positive", "0");
    expect_invalid("model.channels=-1", "model.channels must be positive", NULL);
    expect_invalid("model.heads=0", "model.heads must be positive", NULL);
    expect_invalid("model.context=0", "model.context must be positive", NULL);
    expect_invalid("model.heads=3", "model.channels (128) must be divisible by model.heads (3)",
                   NULL);
    expect_invalid("model.vocab=-1", "model.vocab", ">= 0");
    expect_invalid("model.norm_eps=0", "model.norm_eps must be positive", NULL);
    expect_invalid("model.init_std=-0.1", "model.init_std must be positive", NULL);
    expect_invalid("model.arch=bert", "model.arch must be one of gpt2, llama", "'bert'");
    expect_invalid("model.kv_heads=3", "model.kv_heads (3) must divide model.heads (4)", NULL);
    expect_invalid("model.kv_heads=2", "must equal model.heads for gpt2", NULL);
    expect_invalid("tokenizer.type=bpe", "tokenizer.type must be one of auto, byte, gpt2, none",
                   "'bpe'");
    expect_invalid("data.train=", "data.train is empty", NULL);
    expect_invalid("data.batch=0", "data.batch must be positive", NULL);
    expect_invalid("data.seq=0", "data.seq must be positive", NULL);
    expect_invalid("data.seq=257", "data.seq (257) must not exceed model.context (256)", NULL);
    expect_invalid("optim.lr=0", "optim.lr must be positive", NULL);
    expect_invalid("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0", NULL);
    expect_invalid("optim.betas=[1, 0.9]", "optim.betas[0] must be in [0, 1)", NULL);
    expect_invalid("optim.betas=[0.9, -0.1]", "optim.betas[1] must be in [0, 1)", NULL);
    expect_invalid("optim.eps=0", "optim.eps must be positive", NULL);
    expect_invalid("optim.schedule=cos", "optim.schedule must be one of cosine, linear, constant",
                   "'cos'");
    expect_invalid("optim.warmup=-1", "optim.warmup must be >= 0", NULL);
    expect_invalid("optim.warmup=100", "optim.warmup (100) must be less than train.steps (100)",
                   NULL);
    expect_invalid("optim.min_lr_ratio=1.5", "optim.min_lr_ratio must be in [0, 1]", NULL);
    expect_invalid("optim.min_lr_ratio=-0.5", "optim.min_lr_ratio must be in [0, 1]", NULL);
    expect_invalid("optim.clip=-1", "optim.clip must be >= 0", NULL);
    expect_invalid("optim.accum=0", "optim.accum must be positive", NULL);
    expect_invalid("train.steps=0", "train.steps must be positive", NULL);
    expect_invalid("train.device=gpu", "train.device must be one of auto, cpu, cuda", "'gpu'");
    expect_invalid("train.threads=-1", "train.threads must be >= 0", NULL);
    expect_invalid("train.log_every=0", "train.log_every must be >= 1", NULL);
    expect_invalid("train.eval_every=-1", "train.eval_every must be >= 0", NULL);
    expect_invalid("train.eval_batches=0", "train.eval_batches must be >= 1", NULL);
    expect_invalid("train.sample_tokens=-1", "train.sample_tokens must be >= 0", NULL);
    expect_invalid("train.out=", "train.out is empty", NULL);
}

static void test_committed_doc_is_the_generated_doc(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/CONFIG.md", hn_test_env("HONE_SOURCE_DIR"));
    FILE* f = fopen(path, "rb");
    CHECK(f != NULL, "cannot open %s", path);
    if (!f) return;
    char* committed = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) committed = realloc(committed, cap = 2 * cap + 8192);
        size_t got = fread(committed + len, 1, 4096, f);
        len += got;
        if (got == 0) break;
    }
    committed[len] = '\0';
    fclose(f);
    char* generated = NULL;
    size_t glen = 0;
    FILE* m = open_memstream(&generated, &glen);
    hn_config_write_doc(m);
    fclose(m);
    CHECK(len == glen && !memcmp(committed, generated, len),
          "docs/CONFIG.md differs from hn_config_write_doc(); regenerate it (%zu vs %zu bytes)",
          len, glen);
    CHECK(strstr(generated, "| `optim.lr` | number | `0.0003` | peak learning rate |"),
          "a row of the table:\n%s", generated);
    free(committed);
    free(generated);
}

int main(void) {
    snprintf(tmp_dir, sizeof tmp_dir, "%s", hn_test_env("HONE_TEST_TMP"));
    if (mkdir(tmp_dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "FAIL: cannot create %s\n", tmp_dir);
        return 1;
    }
    test_defaults_are_the_documented_values();
    test_yaml_overrides_every_key();
    test_yaml_leaves_unnamed_keys_alone();
    test_yaml_value_forms();
    test_set_overrides();
    test_load_errors_name_file_line_and_key();
    test_set_errors();
    test_write_then_load_gives_the_same_config();
    test_validate_catches_bad_values();
    test_committed_doc_is_the_generated_doc();
    return hn_test_finish("test_config");
}
