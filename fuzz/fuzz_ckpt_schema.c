/*
 * Fuzz target, structure-aware: hone's checkpoint schema (data/h5ckpt.c over data/h5.c).
 * The input does not become the file's bytes; it drives a generator that writes a valid
 * HDF5 file through data/h5.h shaped like a hone checkpoint of a tiny model (GPT-2 or
 * Llama, with or without parameter-efficient add-ons) and mutates it: rows missing, extra,
 * of other shapes or element types, groups instead of datasets; root attributes missing, of the
 * wrong type or value; a config that disagrees with the rows or is not YAML; masks, optimizer rows,
 * the data cursor and the tokenizer damaged. Then it loads the file the two ways hone does:
 *   - the inference path, hn_eval_model_open (and one forward when it loads);
 *   - the trainer's resume checks: the stored config, the parameter table built from it,
 *     every row group, masks, counters, cursor, base reference, weight hash, tokenizer.
 * A bad file must be an error; nothing may crash, leak past the sanitizers or hang.
 */
#include <math.h>

#include "core/config.h"
#include "core/params.h"
#include "data/h5ckpt.h"
#include "eval/model.h"
#include "fuzz/fuzz_tok.h"
#include "train/model.h"
#include "train/peft/peft.h"

#ifndef FUZZ_FIXTURES
#define FUZZ_FIXTURES "tests/fixtures"
#endif

typedef struct {
    int arch; /* 0 gpt2, 1 llama */
    int L, C, NH, NKV, F, V, context, tied;
    int peft;
} Shape;

static const char* const PEFT[] = {
    "",
    "peft:\n  lora: {rank: 2}\n",
    "peft:\n  lora: {rank: 2, dora: true}\n",
    "peft:\n  ia3:\n",
    "peft:\n  bitfit:\n",
    "peft:\n  prefix: {length: 2}\n",
    "peft:\n  prefix: {length: 2, projection: 4}\n",
    "peft:\n  prompt: {length: 2}\n",
    "peft:\n  ptuning: {length: 2, hidden: 4}\n",
    "peft:\n  adapter: {reduction: 2, kind: houlsby}\n",
    "peft:\n  methods: [lora, prefix]\n  lora: {rank: 2}\n  prefix: {length: 2}\n",
};
#define NPEFT ((int)(sizeof PEFT / sizeof PEFT[0]))

static void shape_text(const Shape* s, char* out, size_t cap) {
    int n = snprintf(out, cap,
                     "data:\n  train: shards/train_*.bin\n  seq: 4\n  batch: 1\n"
                     "model:\n  arch: %s\n  layers: %d\n  channels: %d\n  heads: %d\n"
                     "  vocab: %d\n  context: %d\n",
                     s->arch ? "llama" : "gpt2", s->L, s->C, s->NH, s->V, s->context);
    if (s->arch)
        n += snprintf(out + n, cap - (size_t)n, "  kv_heads: %d\n  ffn: %d\n  tied: %s\n", s->NKV,
                      s->F, s->tied ? "true" : "false");
    snprintf(out + n, cap - (size_t)n, "%s", PEFT[s->peft % NPEFT]);
}

static Shape draw_shape(FuzzIn* in) {
    static const int vocabs[4] = {300, 16, 600, 130};
    Shape s = {0};
    s.arch = (int)fuzz_pick(in, 2);
    s.L = 1 + (int)fuzz_pick(in, 2);
    s.C = 8 << fuzz_pick(in, 2);
    s.NH = 2;
    s.NKV = s.arch ? 1 + (int)fuzz_pick(in, 2) : 0;
    s.F = s.arch ? 12 : 0;
    s.V = vocabs[fuzz_pick(in, 4)];
    s.context = 8;
    s.tied = !fuzz_pick(in, 2);
    s.peft = (int)fuzz_pick(in, NPEFT);
    if (s.arch && s.peft == 4) s.peft = 1; /* bitfit needs biases */
    return s;
}

/* the config the file claims: usually the true one, sometimes one field off */
static Shape mutate_shape(FuzzIn* in, Shape s) {
    unsigned op = fuzz_u8(in);
    if (op < 200) return s;
    int v = (int)fuzz_u8(in) - 2; /* small values and a few negative ones */
    switch (op % 10) {
    case 0:
        s.L = v;
        break;
    case 1:
        s.C = v;
        break;
    case 2:
        s.NH = v;
        break;
    case 3:
        s.NKV = v;
        break;
    case 4:
        s.F = v;
        break;
    case 5:
        s.V = v * 7;
        break;
    case 6:
        s.context = v;
        break;
    case 7:
        s.arch = !s.arch;
        break;
    case 8:
        s.peft = (s.peft + 3 + v) % NPEFT; /* v >= -2, so the index stays >= 0 */
        break;
    default:
        s.tied = !s.tied;
        break;
    }
    return s;
}

/* the rows of a model of this shape, with its add-ons; HN_ERR for a shape hone refuses */
static int table_of(const char* yaml, HnParamTable* t, HnPeft* plan, HnConfig* cfg) {
    memset(t, 0, sizeof *t);
    memset(plan, 0, sizeof *plan);
    hn_config_defaults(cfg);
    if (hn_config_load_text(cfg, yaml, "fuzz.yaml") != 0 || hn_config_validate(cfg) != 0 ||
        cfg->model.vocab < 1)
        return -1;
    HnModelConfig mc = hn_model_config_of(cfg);
    if (hn_model_table(t, &mc) != 0) return -1;
    if (hn_peft_plan(plan, cfg) != 0 || hn_peft_add_rows(plan, t) != 0) return -1;
    if (plan->active && hn_peft_freeze_base(plan, t) != 0) return -1;
    if (t->numel > ((size_t)1 << 22)) return -1;
    return 0;
}

static void free_table(HnParamTable* t, HnPeft* plan) {
    hn_peft_free(plan);
    hn_params_free(t);
}

static const char* const STRAY[] = {
    "layers.0.attn.q.weight", "layers.9.mlp.up.weight",   "tok_embed.weight/x", "lm_head.weight",
    "pos_embed.weight",       "layers.0.attn.qkv.lora_A", "prefix.embed",       "x"};

/* write group/<row> for every row sel takes, each perhaps mutated */
static int write_rows(FuzzIn* in, HnH5* f, const char* group, const HnParamTable* t, int state,
                      int bf16) {
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        if (state ? !r->trainable : (strcmp(group, "/peft") == 0) != !!r->addon) continue;
        char path[HN_NAME_MAX + 32];
        snprintf(path, sizeof path, "%s/%s", group, r->name);
        int64_t shape[8];
        int ndim = r->ndim;
        for (int d = 0; d < ndim; d++)
            shape[d] = r->shape[d];
        if (state && r->mask) ndim = 1, shape[0] = (int64_t)r->mask_k;
        HnH5Type type = bf16 && !state ? HN_H5_BF16 : HN_H5_F32;
        unsigned op = fuzz_u8(in);
        if (op >= 200 && op < 205) continue; /* missing */
        if (op >= 205 && op < 210) {         /* a group where the row should be */
            if (hn_h5_group(f, path) != 0) return -1;
            continue;
        }
        if (op >= 210 && op < 220) shape[0] += (int64_t)fuzz_pick(in, 3) - 1;
        if (op >= 220 && op < 228 && ndim < 8) shape[ndim++] = 1 + fuzz_pick(in, 2);
        if (op >= 228 && op < 234) {
            int64_t n = 1;
            for (int d = 0; d < ndim; d++)
                n *= shape[d];
            ndim = 1, shape[0] = n;
        }
        if (op >= 234 && op < 240) ndim = 0;
        if (op >= 240 && op < 246) type = HN_H5_I32;
        if (op >= 246 && op < 250) type = HN_H5_U8;
        if (op >= 250) type = type == HN_H5_F32 ? HN_H5_BF16 : HN_H5_F32;
        size_t numel = 1;
        for (int d = 0; d < ndim; d++)
            numel *= (size_t)(shape[d] > 0 ? shape[d] : 0);
        void* buf = calloc(numel ? numel : 1, 8);
        if (!buf) abort();
        if (type == HN_H5_F32 || type == HN_H5_BF16)
            for (size_t k = 0; k < numel; k++)
                ((float*)buf)[k] = (float)((int)(k % 7) - 3) * 0.01f;
        int rc = hn_h5_write(f, path, type, buf, ndim, shape);
        free(buf);
        if (rc != 0) return -1;
    }
    for (unsigned extra = fuzz_pick(in, 3) == 2 ? 1 + fuzz_pick(in, 2) : 0; extra; extra--) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s", group, STRAY[fuzz_pick(in, 8)]);
        int64_t shape[2] = {1 + fuzz_pick(in, 16), 1 + fuzz_pick(in, 16)};
        float buf[256] = {0};
        if (!hn_h5_exists(f, path)) (void)hn_h5_write(f, path, HN_H5_F32, buf, 2, shape);
    }
    return 0;
}

/* a root attribute: as it should be, missing, of the other type, or a wrong value */
static int attr_str(FuzzIn* in, HnH5* f, const char* obj, const char* name, const char* value,
                    const char* wrong) {
    unsigned op = fuzz_u8(in);
    if (op < 220) return hn_h5_attr_str(f, obj, name, value);
    if (op < 235) return 0;
    if (op < 245) return hn_h5_attr_i64(f, obj, name, 7);
    return hn_h5_attr_str(f, obj, name, wrong);
}

static int attr_i64(FuzzIn* in, HnH5* f, const char* obj, const char* name, int64_t value) {
    unsigned op = fuzz_u8(in);
    if (op < 220) return hn_h5_attr_i64(f, obj, name, value);
    if (op < 235) return 0;
    if (op < 245) return hn_h5_attr_str(f, obj, name, "1");
    if (op < 250) return hn_h5_attr_f64(f, obj, name, 1.5);
    static const int64_t odd[4] = {-1, INT64_MAX, (int64_t)1 << 40, 2};
    return hn_h5_attr_i64(f, obj, name, odd[op % 4]);
}

static int write_cursor(FuzzIn* in, HnH5* f) {
    unsigned op = fuzz_u8(in);
    if (op >= 200 && op < 210) return 0;
    int64_t n = 1 + fuzz_pick(in, 3), three = 3, four = 4;
    int64_t cursor[4] = {fuzz_pick(in, 3), fuzz_pick(in, 4), fuzz_pick(in, 9), 0};
    uint64_t rng[5] = {1, 2, 3, 4, 5};
    int32_t order[4] = {0, 1, 2, 3};
    if (op >= 210 && op < 220) cursor[op % 3] = op & 1 ? -1 : INT64_MAX;
    if (op >= 220 && op < 225) three = 2 + (op & 1) * 2;
    if (op >= 225 && op < 230) four = 3 + (op & 1) * 2;
    if (op >= 230 && op < 235) n = op & 1 ? 0 : 4;
    if (op >= 235 && op < 240) order[0] = -5;
    HnH5Type ot = op >= 240 && op < 245 ? HN_H5_F32 : HN_H5_I32;
    if (hn_h5_write(f, "/train/cursor", HN_H5_I64, cursor, 1, &three) != 0 ||
        hn_h5_write(f, "/train/rng", HN_H5_U64, rng, 1, &four) != 0 ||
        hn_h5_write(f, "/train/shard_order", ot, order, 1, &n) != 0)
        return -1;
    return 0;
}

static const HnTokenizer* fixture_tokenizer(void) {
    static HnTokenizer* tok;
    static int tried;
    if (tried) return tok;
    tried = 1;
    FILE* fp = fopen(FUZZ_FIXTURES "/hf/llama_tiny/tokenizer.json", "rb");
    if (!fp) return NULL;
    static char buf[1 << 15];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    tok = hn_tokenizer_from_json(buf, n, "llama_tiny/tokenizer.json");
    return tok;
}

static int write_tokenizer(FuzzIn* in, HnH5* f) {
    unsigned op = fuzz_pick(in, 8);
    if (op == 7) return 0;
    if (hn_h5_group(f, "/tokenizer") != 0) return -1;
    static const char* const types[7] = {"none", "byte", "bpe", "bpe", "bpe", "bpe", "word"};
    if (hn_h5_attr_str(f, "/tokenizer", "type", types[op]) != 0) return -1;
    const HnTokenizer* tok = fixture_tokenizer();
    if (op == 2 && tok) {
        char* json = hn_tokenizer_to_json(tok);
        int64_t n = (int64_t)strlen(json);
        int rc = hn_h5_write(f, "/tokenizer/json", HN_H5_U8, json, 1, &n);
        free(json);
        return rc;
    }
    if (op == 3) { /* the rest of the input as the JSON */
        int64_t n = (int64_t)in->n;
        int rc = hn_h5_write(f, "/tokenizer/json", HN_H5_U8, in->p, 1, &n);
        in->n = 0;
        return rc;
    }
    if (op == 4) {
        float x[3] = {1, 2, 3};
        int64_t n = 3;
        return hn_h5_write(f, "/tokenizer/json", HN_H5_F32, x, 1, &n);
    }
    return 0;
}

/* the partial-update mask of this input's model: k entries 0, 2, 4, ... of the first
 * trainable row, or none (row -1) */
static struct {
    char name[HN_NAME_MAX];
    size_t k;
} mask_of_run;

static unsigned* mask_indices(size_t k) {
    unsigned* idx = malloc(k * sizeof *idx);
    if (!idx) abort();
    for (size_t j = 0; j < k; j++)
        idx[j] = (unsigned)j * 2;
    return idx;
}

static void draw_mask(FuzzIn* in, HnParamTable* t) {
    mask_of_run.name[0] = 0;
    if (fuzz_pick(in, 4) != 3) return;
    for (int i = 0; i < t->n; i++)
        if (t->rows[i].trainable && t->rows[i].numel >= 8) {
            snprintf(mask_of_run.name, sizeof mask_of_run.name, "%s", t->rows[i].name);
            mask_of_run.k = 1 + fuzz_pick(in, 3);
            FUZZ_CHECK(hn_params_set_mask(t, i, mask_indices(mask_of_run.k), mask_of_run.k) == 0);
            return;
        }
}

/* the run's mask on a table built from the stored config (the trainer builds its own) */
static void apply_mask(HnParamTable* t) {
    int i = mask_of_run.name[0] ? hn_params_find(t, mask_of_run.name) : -1;
    if (i >= 0 && t->rows[i].numel >= 8)
        (void)hn_params_set_mask(t, i, mask_indices(mask_of_run.k), mask_of_run.k);
}

static int generate(FuzzIn* in, const char* path, HnParamTable* t, const Shape* truth,
                    const char* yaml_true) {
    Shape claimed = mutate_shape(in, *truth);
    char yaml[1024];
    shape_text(&claimed, yaml, sizeof yaml);
    (void)yaml_true;
    unsigned cop = fuzz_u8(in);
    size_t glen = 0;
    const uint8_t* garbage = cop >= 240 ? fuzz_bytes(in, 200, &glen) : NULL;
    char* config = garbage ? fuzz_cstr(garbage, glen) : strdup(yaml);
    if (garbage)
        for (size_t i = 0; i < glen; i++)
            if (!config[i]) config[i] = ' ';
    int bf16 = fuzz_pick(in, 4) == 0;
    HnH5* f = hn_h5_create(path, (int)fuzz_pick(in, 2));
    if (!f) {
        free(config);
        return -1;
    }
    int rc = 0;
    rc |= attr_str(in, f, "/", "format", "hone", "hone2");
    rc |= attr_i64(in, f, "/", "format_version", HN_CKPT_FORMAT_VERSION);
    rc |= attr_str(in, f, "/", "config", config, "model: [1, 2");
    rc |= attr_str(in, f, "/", "arch", claimed.arch ? "llama" : "gpt2", "gpt3");
    rc |= attr_i64(in, f, "/", "step", 3);
    rc |= attr_i64(in, f, "/", "tokens", 96);
    rc |= attr_str(in, f, "/", "dtype", bf16 ? "bf16" : "f32", "f16");
    unsigned base = fuzz_pick(in, 8);
    if (base >= 6) {
        rc |= hn_h5_attr_str(f, "/", "base_file", base == 6 ? "/nonexistent/base.h5" : path);
        rc |= hn_h5_attr_str(f, "/", "base_sha256", "00");
    }
    rc |= hn_h5_group(f, "/model") | hn_h5_group(f, "/peft") | hn_h5_group(f, "/mask");
    rc |= hn_h5_group(f, "/optim") | hn_h5_group(f, "/train");
    if (rc == 0) rc = write_rows(in, f, "/model", t, 0, bf16);
    if (rc == 0) rc = write_rows(in, f, "/peft", t, 0, bf16);
    int mrow = mask_of_run.name[0] ? hn_params_find(t, mask_of_run.name) : -1;
    unsigned op = fuzz_u8(in);
    if (rc == 0 && mrow >= 0 && !(op >= 200 && op < 210)) { /* else: the mask is missing */
        size_t k = mask_of_run.k;
        unsigned* idx = mask_indices(k);
        char mpath[HN_NAME_MAX + 16];
        snprintf(mpath, sizeof mpath, "/mask/%s", mask_of_run.name);
        int64_t n = (int64_t)k - (op >= 210 && op < 220);
        if (op >= 220) idx[op % k] = op & 1 ? 0xffffffffu : (unsigned)t->rows[mrow].numel;
        rc = hn_h5_write(f, mpath, HN_H5_U32, idx, 1, &n);
        free(idx);
    }
    if (rc == 0 && fuzz_pick(in, 2)) {
        rc = attr_i64(in, f, "/optim", "t", 3);
        hn_params_layout_grads(t);
        if (rc == 0) rc = write_rows(in, f, "/optim/m", t, 1, 0);
        if (rc == 0) rc = write_rows(in, f, "/optim/v", t, 1, 0);
    }
    if (rc == 0 && fuzz_pick(in, 4)) rc = write_cursor(in, f);
    if (rc == 0) rc = hn_h5_attr_f64(f, "/train", "best_val_loss", fuzz_pick(in, 2) ? 1.5 : NAN);
    if (rc == 0) rc = write_tokenizer(in, f);
    free(config);
    if (rc != 0) {
        hn_h5_abort(f);
        return -1;
    }
    return hn_h5_commit(f);
}

static void load_eval(const char* path) {
    HnEvalModel* m = NULL;
    HnTokenizer* tok = NULL;
    if (hn_eval_model_open(path, 16, &m, &tok) != 0) {
        if (getenv("HONE_FUZZ_VERBOSE")) fprintf(stderr, "eval: %s\n", hn_error_message());
        return;
    }
    if (getenv("HONE_FUZZ_VERBOSE")) fprintf(stderr, "eval: loaded\n");
    int ids[2] = {0, 1};
    if (m->config.maxT >= 2) FUZZ_CHECK(hn_eval_forward(m, ids, 2, 0) != NULL);
    if (tok) FUZZ_CHECK(hn_tokenizer_vocab_size(tok) <= m->config.V);
    hn_tokenizer_free(tok);
    hn_eval_model_free(m);
}

/* the checks the trainer's resume makes, on a table built from the stored config */
static void load_resume(const char* path) {
    char* yaml = NULL;
    HnH5* f = hn_ckpt_open(path, &yaml);
    if (!f) {
        if (getenv("HONE_FUZZ_VERBOSE")) fprintf(stderr, "resume: %s\n", hn_error_message());
        return;
    }
    HnParamTable t;
    HnPeft plan;
    HnConfig* cfg = malloc(sizeof *cfg);
    if (!cfg) abort();
    int64_t step, tokens, opt_t;
    (void)hn_ckpt_counters(f, &step, &tokens, &opt_t);
    HnCkptCursor cur;
    int* order = NULL;
    double best;
    if (hn_ckpt_cursor(f, &cur, &order, &best) == 0) {
        FUZZ_CHECK(cur.nshards >= 1 && cur.shard_pos >= 0 && cur.shard_pos < cur.nshards);
        free(order);
    }
    char *bfile = NULL, *bsha = NULL, hex[65];
    if (hn_ckpt_base_ref(f, &bfile, &bsha) == 0) {
        free(bfile);
        free(bsha);
    }
    HnH5* base = NULL;
    int brc = hn_ckpt_open_base(f, path, &base);
    FUZZ_CHECK(brc == 0 || base == NULL);
    if (base) hn_h5_close(base);
    if (hn_ckpt_model_sha256(f, hex) == 0) FUZZ_CHECK(strlen(hex) == 64);
    HnTokenizer* tok = NULL;
    if (hn_ckpt_tokenizer(f, &tok) == 0 && tok) hn_tokenizer_free(tok);
    if (table_of(yaml, &t, &plan, cfg) == 0 && hn_params_alloc(&t) == 0) {
        apply_mask(&t);
        hn_params_layout_grads(&t);
        int rc = hn_ckpt_read_rows(f, "model", &t, t.data, HN_ROWS_BASE);
        if (rc == 0) rc = hn_ckpt_read_rows(f, "peft", &t, t.data, HN_ROWS_ADDON);
        if (rc == 0) rc = hn_ckpt_same_masks(f, &t);
        if (getenv("HONE_FUZZ_VERBOSE"))
            fprintf(stderr, "resume: rows %s\n", rc == 0 ? "read" : hn_error_message());
        float* m = hn_params_state_buffer(&t);
        if (m) (void)hn_ckpt_read_rows(f, "optim/m", &t, m, HN_ROWS_STATE);
        free(m);
        float probe[4];
        (void)hn_ckpt_read_tensor(f, "final_norm.weight", probe, 4);
    }
    free_table(&t, &plan);
    free(cfg);
    free(yaml);
    hn_h5_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        hn_h5_allow_unverified(1);
    }
    FuzzIn in = {data, size};
    Shape truth = draw_shape(&in);
    char yaml[1024];
    shape_text(&truth, yaml, sizeof yaml);
    HnParamTable t;
    HnPeft plan;
    HnConfig* cfg = malloc(sizeof *cfg);
    if (!cfg) abort();
    if (table_of(yaml, &t, &plan, cfg) != 0) {
        fprintf(stderr, "generator config refused: %s\n%s", hn_error_message(), yaml);
        abort();
    }
    FUZZ_CHECK(hn_params_alloc(&t) == 0);
    draw_mask(&in, &t);
    const char* path = fuzz_path(0, "ckpt.h5");
    int made = generate(&in, path, &t, &truth, yaml);
    if (getenv("HONE_FUZZ_VERBOSE"))
        fprintf(stderr, "generate: %s\n", made == 0 ? "ok" : hn_error_message());
    if (made == 0) {
        load_eval(path);
        load_resume(path);
    }
    free_table(&t, &plan);
    free(cfg);
    return 0;
}
