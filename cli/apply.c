/*
 * `hone apply BASE.h5 DELTA.h5 [DELTA.h5 ...] -o OUT.h5 [--force]`: a full checkpoint from a
 * base and sparse deltas made against it (`hone export --format delta`; data/delta.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/error.h"
#include "data/delta.h"

static const char* HELP =
    "usage: hone apply BASE.h5 DELTA.h5 [DELTA.h5 ...] -o OUT.h5 [--force] [--deflate N]\n"
    "\n"
    "Write OUT as a whole hone checkpoint: BASE with the entries of each delta set (as\n"
    "`hone export CKPT --format delta --base BASE` wrote them), BASE's config and tokenizer,\n"
    "no optimizer state. Every delta must have been made against BASE (checked by the SHA-256\n"
    "of its weights). Several deltas of the same base apply together when they change\n"
    "disjoint entries, in any order.\n"
    "\n"
    "  -o, --out OUT  the checkpoint to write (atomically)\n"
    "  --force        replace OUT if it exists\n"
    "  --deflate N    zlib level 0..9 (default 1)\n";

static int usage(const char* fmt, const char* arg) {
    fprintf(stderr, "hone: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see `hone apply --help`)\n");
    return 2;
}

static int same_file(const char* a, const char* b) {
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

int hn_cmd_apply(int argc, char** argv) {
    const char* out = NULL;
    const char** files = calloc((size_t)argc + 1, sizeof *files);
    int n = 0, force = 0, deflate = 1, rc = 0;
    if (!files) {
        fprintf(stderr, "hone: error: out of memory\n");
        return 1;
    }
    for (int i = 0; i < argc && rc == 0; i++) {
        const char* a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(HELP, stdout);
            free(files);
            return 0;
        }
        int value = !strcmp(a, "-o") || !strcmp(a, "--out") || !strcmp(a, "--deflate");
        if (value && i + 1 >= argc)
            rc = usage("%s needs a value", a);
        else if (!strcmp(a, "-o") || !strcmp(a, "--out"))
            out = argv[++i];
        else if (!strcmp(a, "--deflate")) {
            const char* d = argv[++i];
            if (strlen(d) != 1 || d[0] < '0' || d[0] > '9')
                rc = usage("--deflate is 0..9, not '%s'", d);
            else
                deflate = d[0] - '0';
        } else if (!strcmp(a, "--force"))
            force = 1;
        else if (a[0] == '-')
            rc = usage("unknown option '%s'", a);
        else
            files[n++] = a;
    }
    if (rc == 0 && n < 2) rc = usage("%s", "apply needs a base checkpoint and a delta");
    if (rc == 0 && !out) rc = usage("%s", "apply needs -o OUT.h5");
    for (int i = 0; rc == 0 && i < n; i++)
        if (same_file(out, files[i])) {
            fprintf(stderr, "hone: error: %s is one of the inputs — write elsewhere\n", out);
            rc = 1;
        }
    struct stat so;
    if (rc == 0 && !force && stat(out, &so) == 0) {
        fprintf(stderr, "hone: error: %s exists — pass --force to replace it\n", out);
        rc = 1;
    }
    HnDeltaStats st;
    if (rc == 0 && hn_delta_apply(files[0], files + 1, n - 1, out, deflate, &st) != HN_OK) {
        fprintf(stderr, "hone: error: %s\n", hn_error_message());
        rc = 1;
    }
    if (rc == 0) {
        struct stat sb;
        long long ob = stat(out, &so) == 0 ? (long long)so.st_size : 0;
        long long bb = stat(files[0], &sb) == 0 ? (long long)sb.st_size : 0;
        printf("applied %d delta%s: %d of %d rows changed, %lld of %lld entries\n", n - 1,
               n == 2 ? "" : "s", st.rows_changed, st.rows, (long long)st.entries,
               (long long)st.numel);
        printf("wrote %s: %lld bytes (the base %s: %lld bytes)\n", out, ob, files[0], bb);
    }
    free(files);
    return rc;
}
