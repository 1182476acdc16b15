/*
 * `hone export CKPT --format delta --base BASE.h5 -o OUT.h5 [--force]`: share a fine-tune as
 * what it changed against its base (data/delta.h). The other formats are planned.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/error.h"
#include "data/delta.h"

static const char* HELP =
    "usage: hone export CKPT.h5 --format delta --base BASE.h5 -o OUT.h5 [--force] [--deflate N]\n"
    "\n"
    "Write a fine-tuned checkpoint in another form. Formats:\n"
    "  delta         the entries of CKPT's model that differ (bit for bit) from BASE's, with\n"
    "                their new values and the SHA-256 of BASE's weights: a small file for a\n"
    "                partial update (a mask: run) that `hone apply BASE DELTA -o OUT` turns\n"
    "                back into CKPT's model exactly\n"
    "  hdf5-merged, hf, peft, gguf   not yet\n"
    "\n"
    "  --format F     the format (required)\n"
    "  --base BASE    the checkpoint CKPT was fine-tuned from (same model shape)\n"
    "  -o, --out OUT  the file to write (atomically)\n"
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
    const char *ckpt = NULL, *format = NULL, *base = NULL, *out = NULL;
    int force = 0, deflate = 4;
    for (int i = 0; i < argc; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            return 0;
        }
        int value = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--format") ||
                    !strcmp(a, "--base") || !strcmp(a, "--deflate");
        if (value && i + 1 >= argc) return usage("%s needs a value", a);
        if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = argv[++i];
        else if (!strcmp(a, "--format"))
            format = argv[++i];
        else if (!strcmp(a, "--base"))
            base = argv[++i];
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
    if (!format) return usage("%s", "export needs --format (delta)");
    if (strcmp(format, "delta") != 0) {
        const char* later[] = {"hdf5-merged", "hf", "peft", "gguf"};
        for (int i = 0; i < 4; i++)
            if (!strcmp(format, later[i])) {
                fprintf(stderr,
                        "hone: error: export --format %s is not yet implemented (only "
                        "--format delta is)\n",
                        format);
                return 1;
            }
        return usage("unknown --format '%s' (delta; hdf5-merged, hf, peft and gguf not yet)",
                     format);
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
