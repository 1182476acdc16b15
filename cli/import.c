/* `hone import SRC -o OUT.h5`: a model from outside becomes a hone checkpoint. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/error.h"
#include "train/import.h"

static const char* HELP =
    "usage: hone import SRC -o OUT.h5 [--dtype f32|bf16] [--deflate N]\n"
    "       hone import ADAPTER_DIR --base BASE.h5 -o OUT.h5\n"
    "\n"
    "Turn a model from outside into a hone checkpoint with its config and tokenizer, which\n"
    "`hone eval`, `hone generate`, `hone inspect` and fine-tuning runs then read. SRC is:\n"
    "  - a GGUF file (.gguf; llama or gpt2 architecture; F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K "
    "and\n"
    "    Q6_K tensors are dequantized), or\n"
    "  - a Hugging Face model folder (config.json with model_type gpt2 or llama, and\n"
    "    model.safetensors or sharded model-*.safetensors with model.safetensors.index.json;\n"
    "    F32, F16 and BF16 tensors), or one .safetensors file with config.json beside it.\n"
    "    The tokenizer comes from tokenizer.json, else vocab.json + merges.txt, else none.\n"
    "  - with --base: a PEFT adapter folder (adapter_config.json, adapter_model.safetensors;\n"
    "    LORA with rsLoRA or DoRA, IA3, PREFIX_TUNING, PROMPT_TUNING or P_TUNING, the last\n"
    "    as prompt tuning) made for the Hugging Face form of BASE.h5 (what\n"
    "    `hone export BASE.h5 --format hf` writes); OUT names BASE by path and hash.\n"
    "\n"
    "  -o, --out OUT.h5   the checkpoint to write (replaced atomically)\n"
    "  --dtype f32|bf16   how the weights are stored (default f32)\n"
    "  --deflate N        zlib level 0..9 (default 1)\n";

int hn_cmd_import(int argc, char** argv) {
    const char *src = NULL, *out = NULL, *base = NULL;
    HnImportOptions opt = {.bf16 = 0, .deflate = 1};
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 0;
        }
        int value = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--dtype") ||
                    !strcmp(a, "--deflate") || !strcmp(a, "--base");
        if (value && i + 1 >= argc) {
            fprintf(stderr, "hone: %s needs a value (see `hone import --help`)\n", a);
            return 2;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            out = argv[++i];
        } else if (!strcmp(a, "--base")) {
            base = argv[++i];
        } else if (!strcmp(a, "--dtype")) {
            const char* d = argv[++i];
            if (strcmp(d, "f32") != 0 && strcmp(d, "bf16") != 0) {
                fprintf(stderr,
                        "hone: --dtype is f32 or bf16, not '%s' (see `hone import --help`)\n", d);
                return 2;
            }
            opt.bf16 = strcmp(d, "bf16") == 0;
        } else if (!strcmp(a, "--deflate")) {
            const char* d = argv[++i];
            if (strlen(d) != 1 || d[0] < '0' || d[0] > '9') {
                fprintf(stderr, "hone: --deflate is 0..9, not '%s' (see `hone import --help`)\n",
                        d);
                return 2;
            }
            opt.deflate = d[0] - '0';
        } else if (a[0] == '-') {
            fprintf(stderr, "hone: unknown option '%s' (see `hone import --help`)\n", a);
            return 2;
        } else if (src) {
            fprintf(stderr, "hone: import takes one source (see `hone import --help`)\n");
            return 2;
        } else {
            src = a;
        }
    }
    if (!src || !out) {
        fprintf(stderr, "hone: import needs a source and -o OUT.h5 (see `hone import --help`)\n");
        return 2;
    }
    size_t n = strlen(src);
    int gguf = n >= 5 && strcmp(src + n - 5, ".gguf") == 0;
    int rc = base   ? hn_import_peft(src, base, out, &opt)
             : gguf ? hn_import_gguf(src, out, &opt)
                    : hn_import_hf(src, out, &opt);
    if (rc != HN_OK) {
        fprintf(stderr, "hone: error: %s\n", hn_error_message());
        return 1;
    }
    return 0;
}
