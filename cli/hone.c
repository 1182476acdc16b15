/*
 * hone: the command line. Each subcommand parses its arguments, calls the library, and
 * turns a failure into one line on stderr. Exit status: 0 success, 1 an error in the input
 * or the run, 2 a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "data/h5.h"
#include "data/prepare.h"
#include "core/config.h"
#include "train/dist.h"
#include "train/trainer.h"

#define HONE_VERSION "0.1.0"

static int fail(void) {
    /* with several ranks, rank 0 speaks for all (a rank's own failure goes through
     * hn_dist_abort, which names it) */
    if (hn_dist_rank() == 0) fprintf(stderr, "hone: error: %s\n", hn_error_message());
    return 1;
}

static int usage_error(const char* cmd, const char* fmt, const char* arg) {
    fprintf(stderr, "hone: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see `hone %s --help`)\n", cmd);
    return 2;
}

static int is_help(const char* a) {
    return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

static const char* TRAIN_HELP =
    "usage: hone train CONFIG.yaml [--set key=value ...] [--resume auto|PATH] [--stop-at N]\n"
    "       hone train --help-config\n"
    "\n"
    "Train (or fine-tune) a model as CONFIG.yaml describes. Keys not in the file keep their\n"
    "defaults; --set overrides any key (e.g. --set optim.lr=1e-4 --set train.steps=500).\n"
    "Progress goes to stderr; RUN/config.yaml and RUN/metrics.jsonl are written to train.out.\n"
    "\n"
    "  --set key=value   override one config key (repeatable)\n"
    "  --resume auto     continue from RUN/latest.h5 if it exists (else start fresh)\n"
    "  --resume PATH     continue from that checkpoint; only steps, logging, evaluation,\n"
    "                    saving, guard (train.max_bad_steps, spike_factor) and optim.lr/clip\n"
    "                    keys may differ from its config\n"
    "  --stop-at N       stop after step N with a checkpoint, as if interrupted\n"
    "  --help-config     print every config key with its default and meaning (Markdown)\n";

static int cmd_train(int argc, char** argv) {
    const char* path = NULL;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    const char* sets[256];
    int nsets = 0;
    HnTrainOptions opts = {0};
    for (int i = 0; i < argc; i++) {
        if (is_help(argv[i])) {
            fputs(TRAIN_HELP, stdout);
            printf("\nSeveral ranks (data parallel): mpirun -np N hone train CONFIG, or srun; "
                   "data.batch\nis per rank. %s\n",
                   hn_dist_available() ? "This build has MPI."
                                       : "This build has no MPI (install libopenmpi-dev).");
            return 0;
        } else if (strcmp(argv[i], "--help-config") == 0) {
            hn_config_write_doc(stdout);
            return 0;
        } else if (strcmp(argv[i], "--set") == 0) {
            if (i + 1 >= argc) return usage_error("train", "%s needs key=value", "--set");
            if (nsets == 256) return usage_error("train", "%s", "too many --set options");
            sets[nsets++] = argv[++i];
        } else if (strncmp(argv[i], "--set=", 6) == 0) {
            if (nsets == 256) return usage_error("train", "%s", "too many --set options");
            sets[nsets++] = argv[i] + 6;
        } else if (strcmp(argv[i], "--resume") == 0) {
            if (i + 1 >= argc)
                return usage_error("train", "%s needs auto or a checkpoint path", "--resume");
            opts.resume = argv[++i];
        } else if (strcmp(argv[i], "--stop-at") == 0) {
            char* end;
            if (i + 1 >= argc) return usage_error("train", "%s needs a step number", "--stop-at");
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 1000000000)
                return usage_error("train", "bad --stop-at '%s'", argv[i]);
            opts.stop_at = (int)v;
        } else if (argv[i][0] == '-') {
            return usage_error("train", "unknown option '%s'", argv[i]);
        } else if (path) {
            return usage_error("train", "unexpected argument '%s' (one config file)", argv[i]);
        } else {
            path = argv[i];
        }
    }
    if (!path) return usage_error("train", "%s", "train needs a config file");
    if (hn_config_load(&cfg, path) != HN_OK) return fail();
    for (int i = 0; i < nsets; i++)
        if (hn_config_set(&cfg, sets[i]) != HN_OK) return fail();
    HnTrainResult res;
    if (hn_train(&cfg, &opts, &res) != HN_OK) return fail();
    return 0;
}

static const char* PREPARE_HELP =
    "usage: hone prepare TEXT... -o DIR [--tokenizer byte|gpt2|CKPT.h5] [--encoder F --merges F]\n"
    "                    [--val 0.05] [--shard-tokens N] [--seed S]\n"
    "\n"
    "Tokenize text files into token shards (llm.c's format) for `hone train`. Each file is\n"
    "one document and starts with the end-of-text token. A --val fraction of the documents\n"
    "(chosen by --seed) becomes the validation split; with a single file, its tail does.\n"
    "Writes DIR/train_NNNNNN.bin, DIR/val_NNNNNN.bin and DIR/meta.json.\n"
    "\n"
    "  -o, --out DIR        output folder (created if missing)\n"
    "  --tokenizer NAME     byte (default: 256 byte ids + end-of-text), gpt2 (BPE), or a\n"
    "                       checkpoint whose tokenizer to use (e.g. an imported model)\n"
    "  --encoder FILE       GPT-2's encoder.json (with --tokenizer gpt2)\n"
    "  --merges FILE        GPT-2's vocab.bpe (with --tokenizer gpt2)\n"
    "  --val FRACTION       validation share, 0 to 0.5 (default 0.05)\n"
    "  --shard-tokens N     tokens per shard (default 100000000)\n"
    "  --seed S             seed of the validation choice (default 1337)\n"
    "\n"
    "Instruction data: hone prepare --instruct DATA.jsonl... -o DIR [--template T] [--skip-bad]\n"
    "Each line is {\"prompt\": ..., \"response\": ...} or {\"messages\": [{\"role\":\n"
    "\"system|user|assistant\", \"content\": ...}, ...]}; the loss counts the assistant turns'\n"
    "tokens and their end token only (DIR/NAME.mask beside each shard). Examples are split\n"
    "into validation whole.\n"
    "  --instruct           the inputs are JSONL instruction examples\n"
    "  --template T         chatml, llama2 or plain (default: recognised from the tokenizer's\n"
    "                       chat template; plain when it has none, as byte and gpt2)\n"
    "  --skip-bad           leave malformed lines out (reported with their line numbers)\n"
    "                       instead of failing\n";

static void prepare_warn(void* ctx, const char* msg) {
    (void)ctx;
    fprintf(stderr, "hone: warning: %s (skipped)\n", msg);
}

static int parse_number(const char* s, double* out) {
    char* end;
    *out = strtod(s, &end);
    return end != s && *end == '\0';
}

static int cmd_prepare(int argc, char** argv) {
    HnPrepareOptions opt = {
        .tokenizer = "byte", .val_fraction = 0.05, .shard_tokens = 100000000, .seed = 1337};
    const char** inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int n = 0;
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        double x;
        if (is_help(a)) {
            fputs(PREPARE_HELP, stdout);
            free(inputs);
            return 0;
        }
        int takes_value = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--tokenizer") ||
                          !strcmp(a, "--encoder") || !strcmp(a, "--merges") ||
                          !strcmp(a, "--val") || !strcmp(a, "--shard-tokens") ||
                          !strcmp(a, "--seed") || !strcmp(a, "--template");
        if (takes_value && i + 1 >= argc) {
            free(inputs);
            return usage_error("prepare", "%s needs a value", a);
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            opt.out_dir = argv[++i];
        else if (!strcmp(a, "--tokenizer"))
            opt.tokenizer = argv[++i];
        else if (!strcmp(a, "--encoder"))
            opt.encoder = argv[++i];
        else if (!strcmp(a, "--merges"))
            opt.merges = argv[++i];
        else if (!strcmp(a, "--template"))
            opt.chat_template = argv[++i];
        else if (!strcmp(a, "--instruct"))
            opt.instruct = 1;
        else if (!strcmp(a, "--skip-bad"))
            opt.skip_bad = 1;
        else if (takes_value) {
            const char* v = argv[++i];
            if (!parse_number(v, &x) || x < 0) {
                free(inputs);
                return usage_error("prepare", "bad number '%s'", v);
            }
            if (!strcmp(a, "--val"))
                opt.val_fraction = x;
            else if (!strcmp(a, "--shard-tokens"))
                opt.shard_tokens = (size_t)x;
            else
                opt.seed = (unsigned long long)x;
        } else if (a[0] == '-' && a[1] != '\0') {
            free(inputs);
            return usage_error("prepare", "unknown option '%s'", a);
        } else {
            inputs[n++] = a;
        }
    }
    if (!opt.out_dir || n == 0) {
        free(inputs);
        return usage_error("prepare", "%s", "prepare needs text files and -o DIR");
    }
    if (!opt.instruct && (opt.chat_template || opt.skip_bad)) {
        free(inputs);
        return usage_error("prepare", "%s", "--template and --skip-bad go with --instruct");
    }
    opt.warn = prepare_warn;
    opt.inputs = inputs;
    opt.ninputs = n;
    HnPrepareStats st;
    int rc = hn_prepare(&opt, &st);
    free(inputs);
    if (rc != HN_OK) return fail();
    if (opt.instruct) {
        printf("prepared %d examples (template %s, %d malformed line(s) skipped): %zu train "
               "tokens (%zu counted) in %d shard(s), %zu validation tokens (%zu counted) in %d "
               "shard(s) -> %s\n",
               st.documents, st.chat_template, st.skipped, st.train_tokens, st.train_targets,
               st.train_shards, st.val_tokens, st.val_targets, st.val_shards, opt.out_dir);
        return 0;
    }
    printf("prepared %d documents: %zu train tokens in %d shard(s), %zu validation tokens in %d "
           "shard(s) -> %s\n",
           st.documents, st.train_tokens, st.train_shards, st.val_tokens, st.val_shards,
           opt.out_dir);
    return 0;
}

static const char* MAIN_HELP =
    "usage: hone <command> [options]\n"
    "\n"
    "hone specializes language models to a domain.\n"
    "\n"
    "commands:\n"
    "  prepare   tokenize text files into token shards\n"
    "  train     train or fine-tune a model from a YAML config\n"
    "  eval      evaluate a checkpoint: perplexity, multiple choice, generation\n"
    "  generate  continue a prompt with a checkpoint\n"
    "  import    turn a GGUF model into a hone checkpoint\n"
    "  inspect   summarise a checkpoint, GGUF or safetensors file\n"
    "  mask      build or inspect partial-update masks\n"
    "  export    write a checkpoint as a sparse delta against its base\n"
    "  apply     rebuild a checkpoint from a base and sparse deltas\n"
    "  edit      rewrite one fact with a rank-one update (ROME)\n"
    "  bench     every specialization method on one model and domain, side by side\n"
    "\n"
    "`hone <command> --help` describes each command. `hone --version` prints the version.\n"
    "\n"
    "Every command also takes --allow-unverified: read HDF5 files that hone did not write,\n"
    "or that changed since (their seal, a SHA-256 hone writes into each file, is missing or\n"
    "does not match). libhdf5 is not hardened against hostile files: use it for files you\n"
    "trust.\n";

/* --allow-unverified may stand anywhere after the command: taken out of argv here so that
 * no command's own parser needs to know it */
static void take_global_options(int* argc, char** argv) {
    int n = 0;
    for (int i = 0; i < *argc; i++) {
        if (i >= 2 && strcmp(argv[i], "--allow-unverified") == 0)
            hn_h5_allow_unverified(1);
        else
            argv[n++] = argv[i];
    }
    argv[n] = NULL;
    *argc = n;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "hone: no command given (see `hone --help`)\n");
        return 2;
    }
    const char* cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        fputs(MAIN_HELP, stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("hone %s\n", HONE_VERSION);
        return 0;
    }
    take_global_options(&argc, argv);
    if (strcmp(cmd, "train") == 0) {
        /* several ranks when an MPI launcher started this process (train/dist.h) */
        if (hn_dist_init(&argc, &argv) != HN_OK) return fail();
        int rc = cmd_train(argc - 2, argv + 2);
        if (rc == 0) hn_dist_finalize();
        return rc;
    }
    if (strcmp(cmd, "prepare") == 0) return cmd_prepare(argc - 2, argv + 2);
    if (strcmp(cmd, "inspect") == 0) return hn_cmd_inspect(argc - 2, argv + 2);
    if (strcmp(cmd, "mask") == 0) return hn_cmd_mask(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0) return hn_cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "apply") == 0) return hn_cmd_apply(argc - 2, argv + 2);
    if (strcmp(cmd, "edit") == 0) return hn_cmd_edit(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return hn_cmd_bench(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0) return hn_cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return hn_cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "generate") == 0) return hn_cmd_generate(argc - 2, argv + 2);
    fprintf(stderr, "hone: unknown command '%s' (see `hone --help`)\n", cmd);
    return 2;
}
