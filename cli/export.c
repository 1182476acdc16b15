/*
 * `hone export CKPT --format FORMAT -o OUT`: a fine-tune as what it changed against its base
 * (delta, data/delta.h), as one whole hone checkpoint (hdf5-merged) or as a Hugging Face
 * folder (hf), a PEFT adapter (peft) or a llama.cpp file (gguf); train/export.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/error.h"
#include "data/delta.h"
#include "train/export.h"

static const char* HELP =
    "usage: hone export CKPT.h5 --format delta --base BASE.h5 -o OUT.h5 [--force] [--deflate N]\n"
    "       hone export CKPT.h5 --format hdf5-merged -o OUT.h5 [--force] [--deflate N]\n"
    "       hone export CKPT.h5 --format hf|peft -o OUT_DIR [--dtype f32|f16|bf16] [--force]\n"
    "       hone export CKPT.h5 --format gguf -o OUT.gguf [--dtype f32|f16|q8_0] [--force]\n"
    "\n"
    "Write a fine-tuned checkpoint in another form. Formats:\n"
    "  delta         the entries of CKPT's model that differ (bit for bit) from BASE's, with\n"
    "                their new values and the SHA-256 of BASE's weights: a small file for a\n"
    "                partial update (a mask: run) that `hone apply BASE DELTA -o OUT` turns\n"
    "                back into CKPT's model exactly\n"
    "  hdf5-merged   one whole hone checkpoint: a frozen-base run's base read in, LoRA, DoRA\n"
    "                and IA3 folded into it; prefix, prompt and adapter rows kept as they are;\n"
    "                no optimizer state; OUT.h5.sha256 beside it\n"
    "  hf            a Hugging Face folder transformers loads (GPT2LMHeadModel or\n"
    "                LlamaForCausalLM): model.safetensors, config.json, generation_config.json,\n"
    "                tokenizer.json and tokenizer_config.json (BPE tokenizers), SHA256SUMS;\n"
    "                add-ons must fold\n"
    "  peft          a PEFT adapter folder (adapter_config.json, adapter_model.safetensors)\n"
    "                for PeftModel.from_pretrained on the hf export of the base: LoRA (with\n"
    "                rsLoRA, DoRA), IA3, prefix tuning, prompt tuning or P-tuning (the\n"
    "                prefix and virtual tokens as PEFT saves them: projections applied)\n"
    "  gguf          a GGUF v3 file for llama.cpp (Llama-family models with their own BPE\n"
    "                tokenizer): --dtype f32 (default), f16 or q8_0; OUT.sha256 beside it\n"
    "\n"
    "  --format F     the format (required)\n"
    "  --base BASE    delta: the checkpoint CKPT was fine-tuned from (same model shape)\n"
    "  -o, --out OUT  the file or folder to write (complete or not at all)\n"
    "  --dtype D      hf, peft: f32 (default), f16 or bf16; gguf: f32, f16 or q8_0\n"
    "  --force        replace OUT if it exists\n"
    "  --deflate N    zlib level 0..9 (default 4)\n";

static int usage(const char* fmt, const char* arg) {
    fprintf(stderr, "hone: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see `hone export --help`)\n");
    return 2;
}

static void human(char* buf, size_t n, double bytes) {
    const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024 && u < 4)
        bytes /= 1024, u++;
    snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", bytes, unit[u]);
}

static int same_file(const char* a, const char* b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int hn_cmd_export(int argc, char** argv) {
    const char *ckpt = NULL, *format = NULL, *base = NULL, *out = NULL, *dtype = NULL;
    int force = 0, deflate = 4;
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 0;
        }
        int value = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--format") ||
                    !strcmp(a, "--base") || !strcmp(a, "--deflate") || !strcmp(a, "--dtype");
        if (value && i + 1 >= argc) return usage("%s needs a value", a);
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = argv[++i];
        else if (!strcmp(a, "--format"))
            format = argv[++i];
        else if (!strcmp(a, "--base"))
            base = argv[++i];
        else if (!strcmp(a, "--dtype"))
            dtype = argv[++i];
        else if (!strcmp(a, "--deflate")) {
            const char* d = argv[++i];
            if (strlen(d) != 1 || d[0] < '0' || d[0] > '9')
                return usage("--deflate is 0..9, not '%s'", d);
            deflate = d[0] - '0';
        } else if (!strcmp(a, "--force"))
            force = 1;
        else if (a[0] == '-')
            return usage("unknown option '%s'", a);
        else if (ckpt)
            return usage("unexpected argument '%s' (export takes one checkpoint)", a);
        else
            ckpt = a;
    }
    if (!ckpt) return usage("%s", "export needs a checkpoint");
    if (!format) return usage("%s", "export needs --format (delta, hdf5-merged or hf)");
    if (!strcmp(format, "gguf")) {
        HnGgufDtype dt = HN_GGUF_OUT_F32;
        if (dtype && !strcmp(dtype, "f16"))
            dt = HN_GGUF_OUT_F16;
        else if (dtype && !strcmp(dtype, "q8_0"))
            dt = HN_GGUF_OUT_Q8_0;
        else if (dtype && strcmp(dtype, "f32") != 0)
            return usage("gguf: --dtype is f32, f16 or q8_0, not '%s'", dtype);
        if (base) return usage("%s", "--base goes with --format delta");
        if (!out) return usage("%s", "export needs -o OUT.gguf");
        if (same_file(out, ckpt)) {
            fprintf(stderr, "hone: error: %s is the input — write elsewhere\n", out);
            return 1;
        }
        HnExportStats st;
        if (hn_export_gguf(ckpt, out, dt, force, &st) != HN_OK) {
            fprintf(stderr, "hone: error: %s\n", hn_error_message());
            return 1;
        }
        printf("gguf: %d tensors, %lld parameters (%d add-ons folded in) -> %s\n", st.rows,
               st.numel, st.folded, out);
        return 0;
    }
    if (!strcmp(format, "hdf5-merged") || !strcmp(format, "hf") || !strcmp(format, "peft")) {
        int hf = !strcmp(format, "hf") || !strcmp(format, "peft");
        HnExportDtype dt = HN_EXPORT_F32;
        if (dtype && !strcmp(dtype, "f16"))
            dt = HN_EXPORT_F16;
        else if (dtype && !strcmp(dtype, "bf16"))
            dt = HN_EXPORT_BF16;
        else if (dtype && strcmp(dtype, "f32") != 0)
            return usage("--dtype is f32, f16 or bf16, not '%s'", dtype);
        if (dtype && !hf) return usage("%s", "--dtype goes with --format hf or peft");
        if (base) return usage("%s", "--base goes with --format delta");
        if (!out) return usage("%s", "export needs -o OUT");
        if (same_file(out, ckpt)) {
            fprintf(stderr, "hone: error: %s is the input — write elsewhere\n", out);
            return 1;
        }
        HnExportStats st;
        int rc = !strcmp(format, "peft") ? hn_export_peft(ckpt, out, dt, force, &st)
                 : hf                    ? hn_export_hf(ckpt, out, dt, force, &st)
                                         : hn_export_merged(ckpt, out, deflate, force, &st);
        if (rc != HN_OK) {
            fprintf(stderr, "hone: error: %s\n", hn_error_message());
            return 1;
        }
        printf("%s: %d rows, %lld parameters (%d add-ons folded in, %d add-on rows kept) -> %s\n",
               format, st.rows, st.numel, st.folded, st.kept, out);
        return 0;
    }
    if (strcmp(format, "delta") != 0) {
        const char* later[] = {"gguf"};
        for (int i = 0; i < 1; i++)
            if (!strcmp(format, later[i])) {
                fprintf(stderr,
                        "hone: error: export --format %s is not yet implemented (delta, "
                        "hdf5-merged, hf and peft are)\n",
                        format);
                return 1;
            }
        return usage("unknown --format '%s' (delta, hdf5-merged, hf, peft; gguf not yet)", format);
    }
    if (!base)
        return usage("%s", "--format delta needs --base BASE.h5 (the checkpoint it was "
                           "fine-tuned from)");
    if (!out) return usage("%s", "export needs -o OUT.h5");
    if (same_file(out, ckpt) || same_file(out, base)) {
        fprintf(stderr, "hone: error: %s is one of the inputs — write the delta elsewhere\n", out);
        return 1;
    }
    struct stat so;
    if (!force && stat(out, &so) == 0) {
        fprintf(stderr, "hone: error: %s exists — pass --force to replace it\n", out);
        return 1;
    }
    HnDeltaStats st;
    if (hn_delta_export(ckpt, base, out, deflate, &st) != HN_OK) {
        fprintf(stderr, "hone: error: %s\n", hn_error_message());
        return 1;
    }
    struct stat sd, sc;
    char dsz[32], csz[32], msz[32];
    double dbytes = stat(out, &sd) == 0 ? (double)sd.st_size : 0;
    double cbytes = stat(ckpt, &sc) == 0 ? (double)sc.st_size : 0;
    human(dsz, sizeof dsz, dbytes);
    human(csz, sizeof csz, cbytes);
    human(msz, sizeof msz, (double)st.model_bytes);
    printf("delta: %d of %d rows changed, %lld of %lld entries (%.4f%%)\n", st.rows_changed,
           st.rows, (long long)st.entries, (long long)st.numel,
           st.numel ? 100.0 * (double)st.entries / (double)st.numel : 0.0);
    printf("wrote %s: %s (%.0f bytes) — the full checkpoint %s is %s (%.0f bytes), its weights "
           "alone %s in f32; the delta is %.2f%% of the checkpoint\n",
           out, dsz, dbytes, ckpt, csz, cbytes, msz, cbytes > 0 ? 100.0 * dbytes / cbytes : 0.0);
    return 0;
}
