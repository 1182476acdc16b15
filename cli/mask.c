/*
 * `hone mask build CONFIG -o OUT.h5 [--set k=v ...]`: the partial-update masks a run's mask
 * section selects (FISH reads its training windows), without training.
 * `hone mask inspect FILE`: the masks in a mask file or a checkpoint, row by row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/config.h"
#include "core/error.h"
#include "data/h5.h"
#include "train/trainer.h"

static const char* USAGE =
    "usage: hone mask build CONFIG.yaml -o OUT.h5 [--set key=value ...]\n"
    "       hone mask inspect FILE.h5\n"
    "\n"
    "build    set up the run CONFIG describes (model, base, data) and write the masks its\n"
    "         mask section selects (mask.method, mask.density, mask.patterns) to OUT.h5\n"
    "inspect  list the masks of a mask file or a checkpoint: selected entries and density\n"
    "         per row\n";

static int fail(void) {
    fprintf(stderr, "hone: error: %s\n", hn_error_message());
    return 1;
}

static int build(int argc, char** argv) {
    const char *config = NULL, *out = NULL;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    char* sets[64];
    int nsets = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 64)
            sets[nsets++] = argv[++i];
        else if (argv[i][0] != '-' && !config)
            config = argv[i];
        else {
            fprintf(stderr, "hone mask build: unexpected argument '%s'\n%s", argv[i], USAGE);
            return 2;
        }
    }
    if (!config || !out) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    if (hn_config_load(&cfg, config) != HN_OK) return fail();
    for (int i = 0; i < nsets; i++)
        if (hn_config_set(&cfg, sets[i]) != HN_OK) return fail();
    if (hn_train_build_masks(&cfg, out) != HN_OK) return fail();
    printf("masks -> %s\n", out);
    return 0;
}

static int inspect(const char* path) {
    HnH5* f = hn_h5_open(path);
    if (!f) return fail();
    char** names = NULL;
    int n = 0;
    if (!hn_h5_exists(f, "/mask") || hn_h5_list(f, "/mask", &names, &n) != HN_OK) {
        hn_h5_close(f);
        hn_error("%s has no /mask group (not a mask file or a masked run's checkpoint)", path);
        return fail();
    }
    printf("%-40s %12s %10s\n", "row", "selected", "density");
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        char p[512];
        snprintf(p, sizeof p, "/mask/%s", names[i]);
        int ndim;
        int64_t shape[8];
        double density = 0;
        if (hn_h5_shape(f, p, &ndim, shape) != HN_OK || ndim != 1 ||
            (hn_h5_has_attr(f, p, "density") &&
             hn_h5_read_attr_f64(f, p, "density", &density) != HN_OK)) {
            hn_h5_free_names(names, n);
            hn_h5_close(f);
            hn_error("%s: %s is not a mask (1-D indices)", path, p);
            return fail();
        }
        printf("%-40s %12lld %10.6f\n", names[i], (long long)shape[0], density);
        total += (size_t)shape[0];
    }
    printf("\n%d masked rows, %zu selected entries\n", n, total);
    hn_h5_free_names(names, n);
    hn_h5_close(f);
    return 0;
}

int hn_cmd_mask(int argc, char** argv) {
    if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
        printf("%s", USAGE);
        return 0;
    }
    if (argc >= 1 && !strcmp(argv[0], "build")) return build(argc - 1, argv + 1);
    if (argc == 2 && !strcmp(argv[0], "inspect")) return inspect(argv[1]);
    fprintf(stderr, "%s", USAGE);
    return 2;
}
