/*
 * `hone inspect FILE`: what is in a hone checkpoint (config, step, rows with shapes,
 * dtypes and sizes, what is trainable) or a safetensors file (its tensors). A checkpoint
 * whose rows do not match its own config is reported and the command fails, so inspect
 * doubles as a check of a file before a long job uses it.
 */
#include "cli/commands.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/error.h"
#include "data/gguf.h"
#include "data/h5ckpt.h"
#include "data/safetensors.h"
#include "train/model.h"
#include "train/peft/peft.h"

static const char* HELP =
    "usage: hone inspect FILE\n"
    "\n"
    "Summarise a hone checkpoint (.h5), a GGUF or a safetensors file: config, step,\n"
    "every row with its shape, dtype and size, and what is trainable. Exits 1\n"
    "if a checkpoint's rows do not match its config.\n";

static void fmt_shape(char* out, size_t n, int ndim, const int64_t* shape) {
    int k = snprintf(out, n, "(");
    for (int d = 0; d < ndim && k < (int)n; d++)
        k += snprintf(out + k, n - (size_t)k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < (int)n) snprintf(out + k, n - (size_t)k, ")");
}

static int inspect_checkpoint(const char* path) {
    char* text = NULL;
    HnH5* f = hn_ckpt_open(path, &text);
    if (!f) return HN_ERR;
    HnConfig cfg;
    hn_config_defaults(&cfg);
    int rc = hn_config_load_text(&cfg, text, path);
    int64_t step = 0, tokens = 0, opt_t = 0;
    if (rc == HN_OK) rc = hn_ckpt_counters(f, &step, &tokens, &opt_t);
    char* dtype = NULL;
    char* tok = NULL;
    if (rc == HN_OK && hn_h5_read_attr_str(f, "/", "dtype", &dtype) != HN_OK) rc = HN_ERR;
    if (rc == HN_OK && hn_h5_has_attr(f, "/tokenizer", "type"))
        rc = hn_h5_read_attr_str(f, "/tokenizer", "type", &tok);
    HnParamTable t = {0};
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnPeft plan = {0};
    char *base_file = NULL, *base_sha = NULL;
    if (rc == HN_OK && hn_model_table(&t, &mc) != HN_OK) rc = HN_ERR;
    /* the add-on rows the config's peft methods give, and which rows they leave trainable */
    if (rc == HN_OK && hn_peft_plan(&plan, &cfg) != HN_OK) rc = HN_ERR;
    if (rc == HN_OK && plan.active &&
        (hn_peft_add_rows(&plan, &t) != HN_OK || hn_peft_freeze_base(&plan, &t) != HN_OK))
        rc = HN_ERR;
    if (rc == HN_OK) rc = hn_ckpt_base_ref(f, &base_file, &base_sha);
    if (rc != HN_OK) goto done;

    struct stat st;
    double mb = stat(path, &st) == 0 ? st.st_size / 1e6 : NAN;
    printf("file        %s (hone checkpoint, format_version %d, %.1f MB)\n", path,
           HN_CKPT_FORMAT_VERSION, mb);
    printf("step        %lld (%lld tokens)\n", (long long)step, (long long)tokens);
    printf("model       %s L=%d C=%d NH=%d V=%d context=%d, weights %s\n", cfg.model.arch,
           cfg.model.layers, cfg.model.channels, cfg.model.heads, cfg.model.vocab,
           cfg.model.context, dtype);
    printf("tokenizer   %s\n", tok ? tok : "none");
    if (base_file)
        printf("base        %s (SHA-256 of its weights %s): this file holds only the rows the "
               "run trained\n",
               base_file, base_sha);
    double best;
    if (hn_h5_has_attr(f, "/train", "best_val_loss") &&
        hn_h5_read_attr_f64(f, "/train", "best_val_loss", &best) == HN_OK && !isnan(best))
        printf("best val    %.4f\n", best);
    printf("\n%-36s %-16s %-5s %12s  %s\n", "row", "shape", "dtype", "parameters", "trainable");
    size_t total = 0, trainable = 0;
    int bad = 0;
    char path_buf[HN_NAME_MAX + 16], shape_buf[64];
    for (int i = 0; i < t.n; i++) {
        const HnParamRow* r = &t.rows[i];
        snprintf(path_buf, sizeof path_buf, "/%s/%s", r->addon ? "peft" : "model", r->name);
        int ndim;
        int64_t shape[8];
        HnH5Type ty;
        if (base_file && !r->addon && !r->trainable) {
            total += r->numel;
            continue; /* a frozen row of the base: not in this file */
        }
        if (!hn_h5_exists(f, path_buf) || hn_h5_shape(f, path_buf, &ndim, shape) != HN_OK ||
            hn_h5_dtype(f, path_buf, &ty) != HN_OK) {
            printf("%-36s MISSING\n", r->name);
            bad++;
            continue;
        }
        int same = ndim == r->ndim;
        for (int d = 0; same && d < ndim; d++)
            same = shape[d] == r->shape[d];
        snprintf(path_buf, sizeof path_buf, "/optim/m/%s", r->name);
        int has_state = hn_h5_exists(f, path_buf);
        fmt_shape(shape_buf, sizeof shape_buf, ndim, shape);
        printf("%-36s %-16s %-5s %12zu  %s%s\n", r->name, shape_buf, hn_h5_type_name(ty), r->numel,
               has_state ? "yes (AdamW state)" : "no",
               same ? "" : "   <- config needs another shape");
        bad += !same;
        total += r->numel;
        trainable += has_state ? r->numel : 0;
    }
    printf("\n%zu rows, %zu parameters, %zu with optimizer state (t=%lld)\n", (size_t)t.n, total,
           trainable, (long long)opt_t);
    if (plan.active) {
        HnPeftCounts pc = hn_peft_counts(&t);
        printf("trainable   %zu of %zu (%.3f%%): lora %zu, dora %zu, ia3 %zu, bitfit %zu, "
               "prefix %zu, prompt %zu, adapter %zu\n",
               hn_params_trainable_numel(&t), total,
               100.0 * (double)hn_params_trainable_numel(&t) / (double)total, pc.lora, pc.dora,
               pc.ia3, pc.bitfit, pc.prefix, pc.prompt, pc.adapter);
    }
    printf("\nconfig:\n");
    for (const char* line = text; *line;) {
        size_t n = strcspn(line, "\n");
        printf("  %.*s\n", (int)n, line);
        line += n + (line[n] == '\n');
    }
    if (bad) rc = hn_error("%s: %d row(s) do not match the checkpoint's config", path, bad);
done:
    hn_params_free(&t);
    hn_peft_free(&plan);
    free(base_file);
    free(base_sha);
    free(dtype);
    free(tok);
    free(text);
    hn_h5_close(f);
    return rc;
}

static int inspect_safetensors(const char* path) {
    HnSafetensors* st = hn_safetensors_open(path);
    if (!st) return HN_ERR;
    int n = hn_safetensors_count(st);
    size_t total = 0;
    char shape_buf[96];
    printf("file        %s (safetensors, %d tensors)\n\n", path, n);
    printf("%-48s %-20s %-5s %12s\n", "tensor", "shape", "dtype", "elements");
    for (int i = 0; i < n; i++) {
        const HnStTensor* t = hn_safetensors_tensor(st, i);
        fmt_shape(shape_buf, sizeof shape_buf, t->rank, t->shape);
        printf("%-48s %-20s %-5s %12zu\n", t->name, shape_buf, hn_safetensors_dtype_name(t->dtype),
               t->numel);
        total += t->numel;
    }
    printf("\n%zu elements\n", total);
    hn_safetensors_close(st);
    return HN_OK;
}

static const char* gguf_type_name(HnGgufType t) {
    static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static int inspect_gguf(const char* path) {
    HnGguf* g = hn_gguf_open(path);
    if (!g) return HN_ERR;
    printf("file        %s (GGUF v%d, %d metadata keys, %d tensors)\n\n", path, hn_gguf_version(g),
           hn_gguf_key_count(g), hn_gguf_tensor_count(g));
    for (int i = 0; i < hn_gguf_key_count(g); i++) {
        HnGgufType type;
        const char* key = hn_gguf_key(g, i, &type);
        printf("  %-44s %-7s ", key, gguf_type_name(type));
        int64_t iv;
        double fv;
        size_t len;
        HnGgufType elem;
        uint64_t n;
        if (type == HN_GGUF_STRING) {
            const char* sv = hn_gguf_get_str(g, key, &len);
            size_t show = strcspn(sv, "\n");
            printf("\"%.*s\"%s\n", (int)(show < 60 ? show : 60), sv, show < len ? "..." : "");
        } else if (type == HN_GGUF_ARRAY && hn_gguf_get_arr(g, key, &elem, &n) == HN_OK) {
            printf("[%llu x %s]\n", (unsigned long long)n, gguf_type_name(elem));
        } else if ((type == HN_GGUF_FLOAT32 || type == HN_GGUF_FLOAT64) &&
                   hn_gguf_get_float(g, key, &fv) == HN_OK) {
            printf("%g\n", fv);
        } else if (hn_gguf_get_int(g, key, &iv) == HN_OK) {
            printf("%lld\n", (long long)iv);
        } else {
            printf("?\n");
        }
    }
    printf("\n%-40s %-22s %-6s %12s\n", "tensor", "dims (fastest first)", "type", "elements");
    size_t total = 0;
    for (int i = 0; i < hn_gguf_tensor_count(g); i++) {
        const HnGgufTensor* t = hn_gguf_tensor(g, i);
        int64_t dims[4];
        for (int d = 0; d < t->ndim; d++)
            dims[d] = t->dims[d];
        char shape[64];
        fmt_shape(shape, sizeof shape, t->ndim, dims);
        printf("%-40s %-22s %-6s %12zu\n", t->name, shape, hn_gguf_type_name(t->type), t->numel);
        total += t->numel;
    }
    printf("\n%zu elements; `hone import` turns this file into a hone checkpoint\n", total);
    hn_gguf_close(g);
    return HN_OK;
}

int hn_cmd_inspect(int argc, char** argv) {
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(HELP, stdout);
        return 0;
    }
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "hone: inspect takes one file (see `hone inspect --help`)\n");
        return 2;
    }
    const char* path = argv[0];
    size_t len = strlen(path);
    int rc;
    if (len > 12 && strcmp(path + len - 12, ".safetensors") == 0)
        rc = inspect_safetensors(path);
    else if (len > 5 && strcmp(path + len - 5, ".gguf") == 0)
        rc = inspect_gguf(path);
    else
        rc = inspect_checkpoint(path);
    if (rc != HN_OK) {
        fflush(stdout);
        fprintf(stderr, "hone: error: %s\n", hn_error_message());
        return 1;
    }
    return 0;
}
