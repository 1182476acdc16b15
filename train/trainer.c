/*
 * The training loop; see trainer.h. One optimizer step draws data.batch x optim.accum
 * windows; its loss is the mean over every counted target of all its micro-batches, so
 * each micro-batch's backward is scaled by 1 / (targets counted in the whole step).
 *
 * Checkpoints (data/h5ckpt.h) go to RUN/ckpt/step_NNNNNN.h5 every train.save_every steps
 * and at the end; RUN/latest.h5 is a symbolic link to the newest and RUN/best.h5 a hard link
 * to the one with the lowest validation loss, both replaced by rename so they are never
 * half-written. A resume restores parameters, AdamW moments and step, and the data cursor,
 * so the rest of the run is bit-identical to an uninterrupted one.
 *
 * Numerical guards: a step whose loss or global gradient norm is not finite (both are
 * reduced over the ranks, so every rank decides alike) is skipped: no update, the AdamW
 * moments and step count t untouched, the gradients zeroed; its batch is consumed and it
 * counts as a step. The schedule's position is t, the updates taken (as Megatron-LM and
 * DeepSpeed do on a skipped fp16 step), so each skip shifts the rest of the schedule by one
 * step. Skips are counted over the whole run as step - t, which a checkpoint holds already,
 * so a resumed run keeps counting; past train.max_bad_steps the run saves (the parameters
 * are still those of the last good step) and stops with an error. A finite loss above
 * train.spike_factor x a moving mean of the recent losses is reported as a spike.
 *
 * With train.device cuda (or auto where a GPU is visible and the CUDA backend is built) the
 * steps and evaluations run on the device model (train/model_cuda.h), which starts from the
 * host model's initialised or resumed state; the host model and optimizer get the
 * parameters and moments back before every save, so checkpoints and sampling are unchanged.
 */
#include "train/trainer.h"

#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/h5ckpt.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "kernels/ops.h"
#ifdef HONE_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#include "kernels/cuda/ops_cuda.h"
#include "train/model_cuda.h"
#endif
#include "train/dist.h"
#include "train/mask.h"
#include "train/model.h"
#include "train/optim.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* the folder of the first file matching the train glob, where `hone prepare` put meta.json */
static void data_dir_of(const char* pattern, char* dir, size_t n) {
    char buf[PATH_MAX];
    snprintf(buf, sizeof buf, "%s", pattern);
    snprintf(dir, n, "%s", dirname(buf));
}

static HnTokenizer* open_tokenizer(const HnConfig* cfg, const HnDataMeta* meta, int have_meta) {
    const char* type = cfg->tokenizer.type;
    const char* enc = cfg->tokenizer.encoder;
    const char* mer = cfg->tokenizer.merges;
    if (strcmp(type, "auto") == 0) {
        if (!have_meta) return NULL;
        type = meta->tokenizer;
        if (!*enc) enc = meta->encoder;
        if (!*mer) mer = meta->merges;
    }
    if (strcmp(type, "byte") == 0) return hn_tokenizer_byte();
    if (strcmp(type, "gpt2") == 0) return hn_tokenizer_gpt2(enc, mer);
    return NULL;
}

static void fmt_duration(char* out, size_t n, double s) {
    if (!(s >= 0) || s > 1e7)
        snprintf(out, n, "?");
    else if (s >= 3600)
        snprintf(out, n, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else if (s >= 60)
        snprintf(out, n, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else
        snprintf(out, n, "%.0fs", s);
}

/* sample continuation tokens after a prompt, streaming the text to stdout */
static int sample(HnModel* m, const HnTokenizer* tok, const char* prompt, int ntokens, int T,
                  uint64_t seed) {
    HnTokens ctx = {0};
    hn_tokens_push(&ctx, hn_tokenizer_eos(tok));
    if (hn_tokenizer_encode(tok, prompt, strlen(prompt), &ctx) != HN_OK) return HN_ERR;
    HnRng rng;
    hn_rng_seed(&rng, seed);
    int V = m->cfg.V;
    fwrite(prompt, 1, strlen(prompt), stdout);
    for (int i = 0; i < ntokens; i++) {
        int len = ctx.n > (size_t)T ? T : (int)ctx.n;
        const int* window = ctx.ids + ctx.n - len;
        hn_model_forward(m, window, NULL, 1, len, 0.0f);
        const float* logits = hn_model_logits(m, 0, len - 1);
        float mx = logits[0];
        for (int v = 1; v < V; v++)
            mx = logits[v] > mx ? logits[v] : mx;
        double total = 0.0;
        for (int v = 0; v < V; v++)
            total += exp((double)(logits[v] - mx));
        double r = hn_rng_uniform(&rng) * total, acc = 0.0;
        int next = V - 1;
        for (int v = 0; v < V; v++) {
            acc += exp((double)(logits[v] - mx));
            if (acc > r) {
                next = v;
                break;
            }
        }
        if (next == hn_tokenizer_eos(tok)) break;
        hn_tokens_push(&ctx, next);
        size_t nb;
        const char* bytes = hn_tokenizer_token_bytes(tok, next, &nb);
        if (bytes) fwrite(bytes, 1, nb, stdout);
    }
    fputc('\n', stdout);
    fflush(stdout);
    hn_tokens_free(&ctx);
    return HN_OK;
}

static HnSchedule schedule_of(const char* s) {
    if (strcmp(s, "linear") == 0) return HN_SCHED_LINEAR;
    if (strcmp(s, "constant") == 0) return HN_SCHED_CONSTANT;
    return HN_SCHED_COSINE;
}

/* everything one run owns */
typedef struct {
    HnConfig cfg; /* resolved: model.vocab filled in */
    HnModel model;
    HnOptimizer opt;
    HnLoader train, val;
    HnTokenizer* tok;
    int* tokens;
    int* targets;
    int* pos; /* data.packing documents: positions within the packed documents, else NULL */
    FILE* metrics;
    int have_val;
    int step;        /* optimizer steps done */
    int64_t ntokens; /* training tokens consumed */
    double best_val; /* NAN until a validation */
    char* config_text;
    int no_folder;     /* set up the model only (hone mask build): no run folder */
    char base_sha[65]; /* model.from with a frozen base: the hash of its weights */
    int base_ref;      /* checkpoints hold only what the run trains and name the base */
    int on_gpu;        /* steps and evaluations run on the device model; the host model gets its
                        * parameters and moments back before every save and at the end */
    /* data parallel (train/dist.h): this rank of world; lead = rank 0, which alone logs,
     * evaluates and writes. Each rank reads the global micro-batch (data.batch x world
     * windows) into g* and trains on its slice. ZeRO-1: the rank updates entries
     * [zlo, zhi) of the gradient layout with moments zm, zv and summed gradients zg */
    int world, rank, lead, zero;
    int nccl; /* GPU ranks: gradients summed by NCCL on the device */
    int *gtok, *gtgt, *gpos;
    size_t zlo, zhi;
    float *zg, *zm, *zv;
    /* the spike report: a moving mean of the finite losses this process has seen (a resumed
     * run warms it up again), and how many */
    double loss_mean;
    int losses_seen;
    /* the test hook HONE_TEST_NAN_STEPS (read_nan_steps): steps whose gradient is poisoned */
    int nan_steps[64], n_nan_steps;
#ifdef HONE_HAVE_CUDA
    HnCudaModel gpu;
#endif
} Run;

/* one forward on the device model or the host model (hn_model_forward's contract) */
static int model_forward(Run* r, const int* tokens, const int* pos, const int* targets, int B,
                         int T, float grad_scale, double* loss_sum) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu)
        return hn_cuda_model_forward(&r->gpu, tokens, targets, B, T, grad_scale, loss_sum);
#endif
    *loss_sum = hn_model_forward_docs(&r->model, tokens, pos, targets, B, T, grad_scale);
    return HN_OK;
}

static int model_backward(Run* r) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu) return hn_cuda_model_backward(&r->gpu);
#endif
    hn_model_backward(&r->model);
    return HN_OK;
}

/* the gradient norm, then clipping and AdamW (optim.c's step, on the device or the host) */
static int model_grad_norm(Run* r, double* norm) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu) return hn_cuda_model_grad_norm(&r->gpu, norm);
#endif
    *norm = hn_optim_grad_norm(&r->model.params, r->model.grads);
    return HN_OK;
}

static int model_optim_step(Run* r, double norm, float* lr) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu) return hn_cuda_model_step(&r->gpu, &r->opt, norm, lr);
#endif
    *lr = hn_optim_step(&r->opt, &r->model.params, r->model.grads, norm);
    return HN_OK;
}

/* bring the device's parameters and AdamW moments into the host model and optimizer, which
 * checkpoints and sampling read (a no-op on the CPU) */
static int sync_host(Run* r) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu) return hn_cuda_model_store(&r->gpu, r->model.params.data, r->opt.m, r->opt.v);
#endif
    (void)r;
    return HN_OK;
}

/* mean loss over up to `batches` validation batches of B windows (fewer if the data has
 * fewer windows; each window is scored once); NAN on an error */
static double evaluate(Run* r, HnLoader* val, int B, int T, int batches, int* tokens, int* targets,
                       int* pos, size_t* counted) {
    hn_loader_reset(val);
    size_t windows = hn_loader_windows(val), want = (size_t)batches * B;
    if (want > windows) want = windows;
    double sum = 0.0;
    *counted = 0;
    for (size_t done = 0; done < want;) {
        int rows = 0;
        for (; rows < B && done < want; rows++, done++)
            if (hn_loader_next_docs(val, tokens + rows * T, targets + rows * T,
                                    pos ? pos + rows * T : NULL) != HN_OK)
                return NAN;
        double loss_sum;
        if (model_forward(r, tokens, pos, targets, rows, T, 0.0f, &loss_sum) != HN_OK) return NAN;
        sum += loss_sum;
        for (int i = 0; i < rows * T; i++) /* loss-masked (instruction) data counts less */
            *counted += targets[i] != HN_IGNORE;
    }
    if (!*counted) {
        hn_error("the validation batches hold no counted target (their loss mask is all 0): "
                 "give more validation data or raise train.eval_batches");
        return NAN;
    }
    return sum / (double)*counted;
}

/* the keys a resumed run may change: how long, how it reports, evaluates and saves, its
 * numerical guards, and the learning rate and clipping, which are how a run that stopped
 * on non-finite steps goes on from its last good state */
static const char* const RESUMABLE_KEYS[] = {
    "train.steps",         "train.log_every",     "train.eval_every",
    "train.eval_batches",  "train.save_every",    "train.keep",
    "train.sample_tokens", "train.sample_prompt", "train.threads",
    "train.out",           "train.deflate",       "data.val",
    "train.max_bad_steps", "train.spike_factor",  "optim.lr",
    "optim.clip",
};

/* replace `link_path` by a new link (symbolic or hard) to `target`, atomically */
static int replace_link(const char* target, const char* link_path, int symbolic) {
    char tmp[PATH_MAX];
    if (hn_path(tmp, sizeof tmp, "%s.tmp.%d", link_path, (int)getpid()) != HN_OK) return HN_ERR;
    unlink(tmp);
    int rc = symbolic ? symlink(target, tmp) : link(target, tmp);
    if (rc != 0 || rename(tmp, link_path) != 0) {
        unlink(tmp);
        return hn_error("cannot update %s", link_path);
    }
    return HN_OK;
}

/* names of RUN/ckpt/step_*.h5, sorted (zero-padded, so by step) */
static int list_step_files(const char* dir, char*** names, int* n) {
    *names = NULL;
    *n = 0;
    DIR* d = opendir(dir);
    if (!d) return HN_OK;
    struct dirent* e;
    int cap = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, "step_", 5) != 0 || len < 8 ||
            strcmp(e->d_name + len - 3, ".h5") != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char** grown = realloc(*names, (size_t)cap * sizeof *grown);
            if (!grown) break;
            *names = grown;
        }
        (*names)[(*n)++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < *n; i++)
        for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char* t = (*names)[j];
            (*names)[j] = (*names)[j - 1];
            (*names)[j - 1] = t;
        }
    return HN_OK;
}

/* a previous run killed during a save leaves temporary files behind: remove them */
static void remove_stale_temporaries(const char* dir) {
    DIR* d = opendir(dir);
    if (!d) return;
    struct dirent* e;
    char path[PATH_MAX];
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) {
            if (hn_path(path, sizeof path, "%s/%s", dir, e->d_name) == HN_OK) unlink(path);
        }
    closedir(d);
}

static int save_checkpoint_lead(Run* r, int improved, const float* m, const float* v);
static int zero_gather_moments(Run* r, float** m, float** v);

/* every rank calls this (ZeRO gathers the moments); rank 0 writes */
static int save_checkpoint(Run* r, int improved) {
    float *m = NULL, *v = NULL;
    int rc = HN_OK;
    if (r->zero) rc = zero_gather_moments(r, &m, &v);
    if (rc == HN_OK && r->lead)
        rc = save_checkpoint_lead(r, improved, r->zero ? m : r->opt.m, r->zero ? v : r->opt.v);
    free(m);
    free(v);
    return rc;
}

static int save_checkpoint_lead(Run* r, int improved, const float* m, const float* v) {
    const HnConfig* cfg = &r->cfg;
    char dir[PATH_MAX], path[PATH_MAX], rel[64], link_path[PATH_MAX];
    snprintf(rel, sizeof rel, "ckpt/step_%06d.h5", r->step);
    if (hn_path(dir, sizeof dir, "%s/ckpt", cfg->train.out) != HN_OK || hn_mkdirs(dir) != HN_OK ||
        hn_path(path, sizeof path, "%s/%s", cfg->train.out, rel) != HN_OK)
        return HN_ERR;
    HnCkptCursor cur = {.nshards = r->train.nshards};
    hn_loader_get_cursor(&r->train, &cur.epoch, &cur.shard_pos, &cur.window_pos, &cur.rng_at_shard,
                         &cur.shard_order);
    HnCkptSave s = {.config_yaml = r->config_text,
                    .arch = cfg->model.arch,
                    .step = r->step,
                    .tokens = r->ntokens,
                    .params = &r->model.params,
                    .m = m,
                    .v = v,
                    .opt_t = r->opt.t,
                    .cursor = &cur,
                    .best_val_loss = r->best_val,
                    .tokenizer = r->tok,
                    .bf16 = strcmp(cfg->train.save_dtype, "bf16") == 0,
                    .deflate = cfg->train.deflate,
                    .base_file = r->base_ref ? cfg->model.from : NULL,
                    .base_sha256 = r->base_ref ? r->base_sha : NULL};
    if (hn_ckpt_save(path, &s) != HN_OK) return HN_ERR;
    if (hn_path(link_path, sizeof link_path, "%s/latest.h5", cfg->train.out) != HN_OK ||
        replace_link(rel, link_path, 1) != HN_OK)
        return HN_ERR;
    if (improved && (hn_path(link_path, sizeof link_path, "%s/best.h5", cfg->train.out) != HN_OK ||
                     replace_link(path, link_path, 0) != HN_OK))
        return HN_ERR;
    char** names;
    int n;
    list_step_files(dir, &names, &n);
    for (int i = 0; i < n; i++) {
        if (i < n - cfg->train.keep) {
            if (hn_path(path, sizeof path, "%s/%s", dir, names[i]) == HN_OK) unlink(path);
        }
        free(names[i]);
    }
    free(names);
    return HN_OK;
}

/* keep only the metrics lines of steps <= step (a resume rewinds to its checkpoint) */
static int truncate_metrics(const char* path, int step) {
    FILE* f = fopen(path, "r");
    if (!f) return HN_OK;
    char* kept = NULL;
    size_t klen = 0;
    FILE* out = open_memstream(&kept, &klen);
    char line[4096];
    while (out && fgets(line, sizeof line, f)) {
        const char* p = strstr(line, "\"step\":");
        if (p && atoi(p + 7) <= step) fputs(line, out);
    }
    fclose(f);
    if (!out) return hn_error("out of memory");
    fclose(out);
    /* replaced, not rewritten in place: a kill here must not lose the history */
    int rc = hn_write_atomic(path, kept, klen);
    free(kept);
    return rc;
}

/* steps skipped for a non-finite loss or gradient norm so far: every step either updates
 * (t advances) or is skipped */
static int bad_steps(const Run* r) {
    return r->step - r->opt.t;
}

static int resume(Run* r, const char* path) {
    char* text = NULL;
    HnH5* f = hn_ckpt_open(path, &text);
    if (!f) return HN_ERR;
    HnConfig saved;
    hn_config_defaults(&saved);
    int rc = hn_config_load_text(&saved, text, path);
    free(text);
    if (rc == HN_OK) {
        const char* key = hn_config_first_difference(
            &saved, &r->cfg, RESUMABLE_KEYS, (int)(sizeof RESUMABLE_KEYS / sizeof *RESUMABLE_KEYS));
        if (key)
            rc = hn_error(
                "cannot resume from %s: %s differs from the checkpoint's config (only steps, "
                "logging, evaluation, saving, the guards and optim.lr/clip may change)",
                path, key);
    }
    int64_t step = 0, tokens = 0, opt_t = 0;
    HnCkptCursor cur;
    int* order = NULL;
    double best = NAN;
    if (rc == HN_OK) rc = hn_ckpt_counters(f, &step, &tokens, &opt_t);
    char *base_file = NULL, *base_sha = NULL;
    if (rc == HN_OK) rc = hn_ckpt_base_ref(f, &base_file, &base_sha);
    if (rc == HN_OK && (base_sha != NULL) != r->base_ref)
        rc = hn_error("cannot resume from %s: it was %s a frozen base, this run is %s", path,
                      base_sha ? "trained on" : "not trained on", r->base_ref ? "" : "not");
    if (rc == HN_OK && base_sha && strcmp(base_sha, r->base_sha) != 0)
        rc = hn_error("cannot resume from %s: its base %s has changed since (SHA-256 of the "
                      "weights %.12s..., the checkpoint recorded %.12s...)",
                      path, r->cfg.model.from, r->base_sha, base_sha);
    free(base_file);
    free(base_sha);
    HnParamTable* t = &r->model.params;
    if (rc == HN_OK)
        rc = hn_ckpt_read_rows(f, "model", t, t->data,
                               r->base_ref ? HN_ROWS_BASE_TRAINABLE : HN_ROWS_BASE);
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "peft", t, t->data, HN_ROWS_ADDON);
    if (rc == HN_OK) rc = hn_ckpt_same_masks(f, t);
    float *m = r->opt.m, *v = r->opt.v;
    if (rc == HN_OK && r->zero) { /* the whole state, of which this rank keeps its shard */
        m = hn_params_state_buffer(t);
        v = hn_params_state_buffer(t);
        if (!m || !v) rc = HN_ERR;
    }
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "optim/m", t, m, HN_ROWS_STATE);
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "optim/v", t, v, HN_ROWS_STATE);
    if (r->zero) {
        if (rc == HN_OK) {
            memcpy(r->zm, m + r->zlo, (r->zhi - r->zlo) * sizeof(float));
            memcpy(r->zv, v + r->zlo, (r->zhi - r->zlo) * sizeof(float));
        }
        free(m);
        free(v);
    }
    if (rc == HN_OK) rc = hn_ckpt_cursor(f, &cur, &order, &best);
    if (rc == HN_OK)
        rc = hn_loader_set_cursor(&r->train, cur.epoch, cur.shard_pos, cur.window_pos,
                                  &cur.rng_at_shard, cur.shard_order, cur.nshards);
    free(order);
    hn_h5_close(f);
    if (rc != HN_OK) return HN_ERR;
    r->step = (int)step;
    r->ntokens = tokens;
    r->opt.t = (int)opt_t;
    r->best_val = best;
    if (r->lead && bad_steps(r) > 0)
        fprintf(stderr, "resumed from %s at step %d (steps skipped so far: %d)\n", path, r->step,
                bad_steps(r));
    else if (r->lead)
        fprintf(stderr, "resumed from %s at step %d\n", path, r->step);
    return HN_OK;
}

/* the checkpoint a --resume request names, or NULL for a fresh start */
static const char* resume_path(const HnConfig* cfg, const char* resume, char* buf, size_t n) {
    if (!resume) return NULL;
    if (strcmp(resume, "auto") != 0) return resume;
    if (hn_path(buf, n, "%s/latest.h5", cfg->train.out) != HN_OK) return NULL;
    return access(buf, F_OK) == 0 ? buf : NULL;
}

static void run_free(Run* r) {
    if (r->metrics) fclose(r->metrics);
    free(r->tokens);
    free(r->pos);
    free(r->gtok);
    free(r->gtgt);
    free(r->gpos);
    free(r->zg);
    free(r->zm);
    free(r->zv);
    free(r->targets);
    free(r->config_text);
    hn_loader_close(&r->train);
    hn_loader_close(&r->val);
    hn_optim_free(&r->opt);
    hn_model_free(&r->model);
    hn_tokenizer_free(r->tok);
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu) hn_cuda_model_free(&r->gpu);
#endif
    if (r->nccl) hn_dist_nccl_free();
}

/* model.from: the base checkpoint's model section replaces the config's, and its tokenizer
 * (if it has one) is the run's; the checkpoint stays open in *base for its weights */
static int open_base(Run* r, HnH5** base) {
    HnConfig* cfg = &r->cfg;
    char* text = NULL;
    *base = hn_ckpt_open(cfg->model.from, &text);
    if (!*base) return HN_ERR;
    HnConfig b;
    hn_config_defaults(&b);
    int rc = hn_config_load_text(&b, text, cfg->model.from);
    free(text);
    char *file = NULL, *sha = NULL;
    if (rc == HN_OK) rc = hn_ckpt_base_ref(*base, &file, &sha);
    if (rc == HN_OK && file)
        rc = hn_error("model.from %s holds only add-ons on a base (%s) — train from that base, or "
                      "from a merged export of this checkpoint",
                      cfg->model.from, file);
    free(file);
    free(sha);
    if (rc != HN_OK) return HN_ERR;
    char from[HN_STR];
    memcpy(from, cfg->model.from, sizeof from);
    float init_std = cfg->model.init_std;
    cfg->model = b.model;
    memcpy(cfg->model.from, from, sizeof from);
    cfg->model.init_std = init_std;
    if (cfg->data.seq > cfg->model.context)
        return hn_error("data.seq (%d) exceeds the context of %s (%d)", cfg->data.seq, from,
                        cfg->model.context);
    return hn_ckpt_tokenizer(*base, &r->tok);
}

/* data, vocabulary, tokenizer, model, optimizer, run folder */
static int run_setup_with(Run* r, HnH5** base) {
    HnConfig* cfg = &r->cfg;
    /* the loader opens first so a missing or damaged shard is the error reported */
    if (hn_loader_open(&r->train, cfg->data.train, cfg->data.batch * r->world, cfg->data.seq,
                       INT_MAX, cfg->data.shuffle, (uint64_t)cfg->train.seed) != HN_OK)
        return HN_ERR;
    int docs = strcmp(cfg->data.packing, "documents") == 0;
    if (docs && hn_loader_use_docs(&r->train) != HN_OK) return HN_ERR;
    char data_dir[PATH_MAX];
    data_dir_of(cfg->data.train, data_dir, sizeof data_dir);
    HnDataMeta meta;
    int have_meta = hn_data_meta_read(data_dir, &meta) == HN_OK;
    char meta_path[PATH_MAX];
    if (!have_meta && hn_path(meta_path, sizeof meta_path, "%s/meta.json", data_dir) == HN_OK &&
        access(meta_path, F_OK) == 0)
        return HN_ERR; /* there but malformed: hn_data_meta_read said how */
    if (cfg->model.from[0] && open_base(r, base) != HN_OK) return HN_ERR;
    if (cfg->model.vocab == 0) {
        if (!have_meta)
            return hn_error("model.vocab is 0 and %s/meta.json is missing — set model.vocab or "
                            "prepare the data with `hone prepare`",
                            data_dir);
        cfg->model.vocab = meta.vocab_size;
    }
    int V = cfg->model.vocab;
    if (!r->tok && strcmp(cfg->tokenizer.type, "none") != 0) {
        r->tok = open_tokenizer(cfg, &meta, have_meta);
        if (!r->tok && strcmp(cfg->tokenizer.type, "auto") != 0) return HN_ERR;
        if (r->tok && hn_tokenizer_vocab_size(r->tok) > V)
            return hn_error("model.vocab %d is smaller than the tokenizer's vocabulary %d", V,
                            hn_tokenizer_vocab_size(r->tok));
    }
    if (hn_loader_set_vocab(&r->train, V) != HN_OK) return HN_ERR;

    int B = cfg->data.batch, T = cfg->data.seq, accum = cfg->optim.accum;
    HnModelConfig mc = hn_model_config_of(cfg);
    HnPeft plan;
    if (hn_peft_plan(&plan, cfg) != HN_OK) return HN_ERR;
    if (plan.prompt.P && plan.prompt_init == 2 && cfg->peft.prompt.text[0]) {
        /* prompt tuning from a text: its tokens, by the run's tokenizer */
        HnTokens ids = {0};
        int ok = r->tok &&
                 hn_tokenizer_encode(r->tok, cfg->peft.prompt.text, strlen(cfg->peft.prompt.text),
                                     &ids) == HN_OK &&
                 ids.n > 0;
        if (ok) hn_peft_set_prompt_ids(&plan, ids.ids, (int)ids.n);
        hn_tokens_free(&ids);
        if (!ok) {
            hn_peft_free(&plan);
            return hn_error("peft.prompt.text needs the run's tokenizer to give at least one "
                            "token (or set peft.prompt.text_ids)");
        }
    }
    if (docs && plan.prompt.P) {
        hn_peft_free(&plan);
        return hn_error("prompt tuning and P-tuning prepend their virtual tokens to a window, not "
                        "to each document: use data.packing: stream with them");
    }
    if (hn_model_create_peft(&r->model, &mc, &plan, B, T) != HN_OK) return HN_ERR;
    hn_model_init(&r->model, cfg->model.init_std, (uint64_t)cfg->train.seed);
    HnParamTable* t = &r->model.params;
    if (*base) {
        /* the base's weights, then the add-ons initialised on them (DoRA's magnitude is the
         * norm of the base's rows) */
        if (hn_ckpt_read_rows(*base, "model", t, t->data, HN_ROWS_BASE) != HN_OK) return HN_ERR;
        hn_peft_init(&r->model.peft, t, (uint64_t)cfg->train.seed);
        r->base_ref = r->model.peft.active;
        if (r->base_ref && hn_ckpt_model_sha256(*base, r->base_sha) != HN_OK) return HN_ERR;
    }
    if (hn_mask_method(cfg->mask.method) != HN_MASK_NONE) {
        /* the partial update's masks, built on the starting weights (FISH and LT-SFT read
         * the training data through a loader of their own) */
        HnLoader fl;
        memset(&fl, 0, sizeof fl);
        HnMaskMethod mm = hn_mask_method(cfg->mask.method);
        int fish = mm == HN_MASK_FISH || mm == HN_MASK_LT_SFT;
        /* FISH: single windows in file order; LT-SFT: the run's batches, its own order */
        if (fish && hn_loader_open(&fl, cfg->data.train, mm == HN_MASK_FISH ? 1 : B, T, V,
                                   mm == HN_MASK_LT_SFT && cfg->data.shuffle,
                                   (uint64_t)cfg->train.seed ^ 0x5bd1e995ULL) != HN_OK)
            return HN_ERR;
        if (fish && docs && hn_loader_use_docs(&fl) != HN_OK) {
            hn_loader_close(&fl);
            return HN_ERR;
        }
        int rc = hn_mask_build(&r->model, cfg, &fl, (uint64_t)cfg->train.seed);
        if (fish) hn_loader_close(&fl);
        if (rc != HN_OK) return HN_ERR;
        size_t k = 0, rows = 0;
        for (int i = 0; i < t->n; i++) {
            if (!t->rows[i].trainable) continue;
            rows++;
            k += t->rows[i].mask ? t->rows[i].mask_k : t->rows[i].numel;
        }
        fprintf(stderr, "mask: %s, %zu entries of %zu rows train (%.4f%% of the model)%s\n",
                cfg->mask.method, k, rows, 100.0 * (double)k / (double)t->numel,
                hn_mask_method(cfg->mask.method) == HN_MASK_CHILD_F
                    ? ", a fresh draw of each step's share"
                    : "");
    }
    const char* patterns[HN_MAX_LIST];
    for (int i = 0; i < cfg->optim.no_decay.n; i++)
        patterns[i] = cfg->optim.no_decay.item[i];
    hn_params_set_no_decay(&r->model.params, patterns, cfg->optim.no_decay.n);
    HnOptimConfig oc = {
        .lr = cfg->optim.lr,
        .beta1 = cfg->optim.betas[0],
        .beta2 = cfg->optim.betas[1],
        .eps = cfg->optim.eps,
        .weight_decay = cfg->optim.weight_decay,
        .clip = cfg->optim.clip,
        .min_lr_ratio = cfg->optim.min_lr_ratio,
        .warmup = cfg->optim.warmup,
        .steps = cfg->train.steps,
        .schedule = schedule_of(cfg->optim.schedule),
        .child_p = hn_mask_method(cfg->mask.method) == HN_MASK_CHILD_F ? cfg->mask.density : 0.0f,
        .child_seed = (uint64_t)cfg->train.seed * 0x2545f4914f6cdd1dULL};
    if (hn_optim_create(&r->opt, &oc, &r->model.params) != HN_OK) return HN_ERR;
    r->have_val = cfg->data.val[0] != '\0';
    if (r->have_val && hn_loader_open(&r->val, cfg->data.val, 1, T, V, 0, 0) != HN_OK)
        return HN_ERR;
    if (r->have_val && docs && hn_loader_use_docs(&r->val) != HN_OK) return HN_ERR;
    size_t n = (size_t)B * T * accum;
    r->tokens = malloc(n * sizeof(int));
    r->targets = malloc(n * sizeof(int));
    r->pos = docs ? malloc(n * sizeof(int)) : NULL;
    if (!r->tokens || !r->targets || (docs && !r->pos)) return hn_error("out of memory");
    if (r->world > 1) { /* the global micro-batch, of which this rank trains a slice */
        size_t g = (size_t)B * T * r->world;
        r->gtok = malloc(g * sizeof(int));
        r->gtgt = malloc(g * sizeof(int));
        r->gpos = docs ? malloc(g * sizeof(int)) : NULL;
        if (!r->gtok || !r->gtgt || (docs && !r->gpos)) return hn_error("out of memory");
    }
    if (r->zero) {
        /* ZeRO-1: moments for this rank's shard of the gradient layout only */
        size_t G = r->model.params.grad_numel;
        hn_dist_shard(G, r->rank, &r->zlo, &r->zhi);
        size_t k = r->zhi - r->zlo ? r->zhi - r->zlo : 1;
        r->zg = calloc(k, sizeof(float));
        r->zm = calloc(k, sizeof(float));
        r->zv = calloc(k, sizeof(float));
        if (!r->zg || !r->zm || !r->zv) return hn_error("out of memory");
        free(r->opt.m);
        free(r->opt.v);
        r->opt.m = r->opt.v = NULL;
    }
    r->best_val = NAN;
    if (!(r->config_text = hn_config_to_text(cfg))) return HN_ERR;
    return r->no_folder || !r->lead ? HN_OK : hn_mkdirs(cfg->train.out);
}

static int run_setup(Run* r, const HnConfig* user_cfg) {
    r->cfg = *user_cfg;
    HnH5* base = NULL;
    int rc = run_setup_with(r, &base);
    if (base) hn_h5_close(base);
    return rc;
}

static int open_run_files(Run* r, int resumed) {
    char path[PATH_MAX], dir[PATH_MAX];
    if (hn_path(dir, sizeof dir, "%s/ckpt", r->cfg.train.out) != HN_OK) return HN_ERR;
    remove_stale_temporaries(dir);
    remove_stale_temporaries(r->cfg.train.out);
    if (hn_path(path, sizeof path, "%s/config.yaml", r->cfg.train.out) != HN_OK ||
        hn_write_atomic(path, r->config_text, strlen(r->config_text)) != HN_OK)
        return HN_ERR;
    if (hn_path(path, sizeof path, "%s/metrics.jsonl", r->cfg.train.out) != HN_OK) return HN_ERR;
    if (resumed && truncate_metrics(path, r->step) != HN_OK) return HN_ERR;
    if (!(r->metrics = fopen(path, resumed ? "a" : "w"))) return hn_error("cannot write %s", path);
    /* what trains and what its optimizer holds (AdamW: two f32 moments per trained entry) */
    size_t nparams = 0, trained = 0;
    for (int i = 0; i < r->model.params.n; i++) {
        const HnParamRow* row = &r->model.params.rows[i];
        nparams += row->numel;
        if (row->trainable) trained += row->mask ? row->mask_k : row->numel;
    }
    char text[256];
    snprintf(text, sizeof text,
             "{\"parameters\":%zu,\"trainable\":%zu,\"optimizer_bytes\":%zu,"
             "\"tokens_per_step\":%lld}\n",
             nparams, trained, 2 * trained * sizeof(float),
             (long long)r->cfg.data.batch * r->cfg.data.seq * r->cfg.optim.accum * r->world);
    if (hn_path(path, sizeof path, "%s/run.json", r->cfg.train.out) != HN_OK ||
        hn_write_atomic(path, text, strlen(text)) != HN_OK)
        return HN_ERR;
    return HN_OK;
}

/* the end of a step whose loss or gradient norm is not finite: no update (parameters,
 * moments and t stay), the gradients zeroed, the batch consumed; *lr gets the rate the next
 * update will use */
static int skip_step(Run* r, size_t tokens, float* lr) {
#ifdef HONE_HAVE_CUDA
    if (r->on_gpu && hn_cuda_model_zero_grad(&r->gpu) != HN_OK) return HN_ERR;
#endif
    if (!r->on_gpu) memset(r->model.grads, 0, r->model.params.grad_numel * sizeof(float));
    if (r->zero) memset(r->zg, 0, (r->zhi - r->zlo) * sizeof(float));
    *lr = hn_optim_lr(&r->opt.cfg, r->opt.t);
    r->step++;
    r->ntokens += (int64_t)tokens;
    return HN_OK;
}

/* Test hook: HONE_TEST_NAN_STEPS=5,6,9 makes those steps non-finite, as a bad batch or a
 * diverging run would, so that tests reach the guards (real data cannot be NaN). Read once
 * per run; the last rank alone poisons, so a run of several ranks shows that one rank's
 * non-finite value skips the step on every rank. */
static int read_nan_steps(Run* r) {
    const char* s = getenv("HONE_TEST_NAN_STEPS");
    if (!s) return HN_OK;
    while (*s) {
        char* end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > INT_MAX || (*end && *end != ',') ||
            r->n_nan_steps == (int)(sizeof r->nan_steps / sizeof *r->nan_steps))
            return hn_error("HONE_TEST_NAN_STEPS (a test hook) must list at most 64 steps, "
                            "comma-separated: %s",
                            getenv("HONE_TEST_NAN_STEPS"));
        r->nan_steps[r->n_nan_steps++] = (int)v;
        s = *end ? end + 1 : end;
    }
    return HN_OK;
}

/* the hook's poison for the step being taken: NaN in the first trained gradient entry
 * (before the ranks sum them), or in the loss on the device, whose gradients the host
 * does not hold */
static void poison_step(Run* r, double* loss_sum) {
    int hit = 0;
    for (int i = 0; i < r->n_nan_steps; i++)
        hit |= r->nan_steps[i] == r->step + 1;
    if (!hit || r->rank != r->world - 1) return;
    if (r->on_gpu) {
        *loss_sum = NAN;
        return;
    }
    const HnParamTable* t = &r->model.params;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* row = &t->rows[i];
        if (!row->trainable || (row->mask && !row->mask_k)) continue;
        r->model.grads[row->goff + (row->mask ? row->mask[0] : 0)] = NAN;
        return;
    }
}

/* ZeRO-1's end of a step: reduce-scatter the gradients, the global norm from the shards,
 * AdamW on this rank's shard, then all-gather the updated entries (through the gradient
 * buffer, in the gradient layout) into every rank's parameters */
static int zero_step(Run* r, double loss, double* loss_out, double* norm_out, float* lr_out,
                     int* skipped, size_t tokens) {
    HnParamTable* t = &r->model.params;
    const size_t G = t->grad_numel, k = r->zhi - r->zlo;
    float* g = r->model.grads;
    if (hn_dist_reduce_scatter(g, r->zg, G) != HN_OK) return HN_ERR;
    double ss = hn_sum_squares(r->zg, k);
    if (hn_dist_sum_doubles(&ss, 1) != HN_OK) return HN_ERR;
    double norm = sqrt(ss);
    *loss_out = loss;
    *norm_out = norm;
    if ((*skipped = !isfinite(loss) || !isfinite(norm))) return skip_step(r, tokens, lr_out);
    *lr_out = hn_optim_step_range(&r->opt, t, r->zg, r->zm, r->zv, r->zlo, r->zhi, norm);
    for (int i = 0; i < t->n; i++) { /* this rank's updated entries, in the gradient layout */
        const HnParamRow* row = &t->rows[i];
        if (!row->trainable) continue;
        size_t a = row->goff > r->zlo ? row->goff : r->zlo;
        size_t b = row->goff + row->numel < r->zhi ? row->goff + row->numel : r->zhi;
        if (a < b) memcpy(g + a, t->data + row->offset + (a - row->goff), (b - a) * sizeof(float));
    }
    if (hn_dist_all_gather(g, G) != HN_OK) return HN_ERR;
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* row = &t->rows[i];
        if (row->trainable)
            memcpy(t->data + row->offset, g + row->goff, row->numel * sizeof(float));
    }
    memset(g, 0, G * sizeof(float));
    r->step++;
    r->ntokens += (int64_t)tokens;
    return HN_OK;
}

/* data parallel keeps every rank's parameters identical: checked at the end of a run by a
 * hash of the parameter bytes (FNV-1a, 64 bits) that every rank compares with rank 0's */
static int check_ranks_agree(Run* r) {
    const unsigned char* p = (const unsigned char*)r->model.params.data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < r->model.params.numel * sizeof(float); i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    uint64_t h0 = h;
    if (hn_dist_broadcast(&h0, sizeof h0) != HN_OK) return HN_ERR;
    double differ = h != h0;
    if (hn_dist_sum_doubles(&differ, 1) != HN_OK) return HN_ERR;
    if (differ > 0)
        return hn_error("the parameters of %d of %d ranks differ from rank 0's after step %d",
                        (int)differ, r->world, r->step);
    if (r->lead)
        fprintf(stderr, "data parallel: parameters identical on all %d ranks (FNV-1a %016llx)\n",
                r->world, (unsigned long long)h);
    return HN_OK;
}

/* ZeRO-1: whole-layout moments from the shards (gathered to rank 0 into fresh buffers the
 * caller frees; NULL on the other ranks, which take part all the same) */
static int zero_gather_moments(Run* r, float** m, float** v) {
    const size_t G = r->model.params.grad_numel, k = r->zhi - r->zlo;
    *m = calloc(G ? G : 1, sizeof(float));
    *v = calloc(G ? G : 1, sizeof(float));
    if (!*m || !*v) return hn_error("out of memory gathering the optimizer state");
    memcpy(*m + r->zlo, r->zm, k * sizeof(float));
    memcpy(*v + r->zlo, r->zv, k * sizeof(float));
    if (hn_dist_gather_to_root(*m, G) != HN_OK || hn_dist_gather_to_root(*v, G) != HN_OK)
        return HN_ERR;
    return HN_OK;
}

/* one optimizer step: accum micro-batches, clip, AdamW; or, when the loss or the gradient
 * norm is not finite, a skipped step (*skipped, skip_step) */
static int train_step(Run* r, double* loss_out, double* norm_out, float* lr_out, int* skipped) {
    const HnConfig* cfg = &r->cfg;
    int B = cfg->data.batch, T = cfg->data.seq, accum = cfg->optim.accum;
    size_t per_micro = (size_t)B * T, counted = 0;
    for (int k = 0; k < accum; k++) {
        int* tok = r->tokens + k * per_micro;
        int* tgt = r->targets + k * per_micro;
        int* pos = r->pos ? r->pos + k * per_micro : NULL;
        if (r->world == 1) {
            if (hn_loader_next_docs(&r->train, tok, tgt, pos) != HN_OK) return HN_ERR;
            continue;
        }
        /* every rank reads the global micro-batch and keeps its slice of B windows */
        if (hn_loader_next_docs(&r->train, r->gtok, r->gtgt, r->gpos) != HN_OK) return HN_ERR;
        size_t off = (size_t)r->rank * per_micro;
        memcpy(tok, r->gtok + off, per_micro * sizeof(int));
        memcpy(tgt, r->gtgt + off, per_micro * sizeof(int));
        if (pos) memcpy(pos, r->gpos + off, per_micro * sizeof(int));
    }
    for (size_t i = 0; i < per_micro * accum; i++)
        counted += r->targets[i] != HN_IGNORE;
    if (r->world > 1) { /* the step's mean runs over the counted targets of every rank */
        double c = (double)counted;
        if (hn_dist_sum_doubles(&c, 1) != HN_OK) return HN_ERR;
        counted = (size_t)c;
    }
    double loss_sum = 0.0;
    /* a step whose targets are all masked still needs the (zero) gradient: scale 0 would
     * mean "no gradient" to the forward */
    float scale = counted ? 1.0f / (float)counted : 1.0f;
    for (int k = 0; k < accum; k++) {
        double micro_sum;
        /* LoRA dropout's masks: a function of the seed, the step and the micro-batch, so a
         * resumed run draws the same ones */
        uint64_t x = (uint64_t)cfg->train.seed * 0x9e3779b97f4a7c15ULL + (uint64_t)r->step;
        x = x * 0xbf58476d1ce4e5b9ULL + (uint64_t)k;
        r->model.peft.dropout_seed = hn_splitmix64(&x);
        if (model_forward(r, r->tokens + k * per_micro, r->pos ? r->pos + k * per_micro : NULL,
                          r->targets + k * per_micro, B, T, scale, &micro_sum) != HN_OK ||
            model_backward(r) != HN_OK)
            return HN_ERR;
        loss_sum += micro_sum;
    }
    poison_step(r, &loss_sum);
    if (r->world > 1 && hn_dist_sum_doubles(&loss_sum, 1) != HN_OK) return HN_ERR;
    double loss = counted ? loss_sum / (double)counted : 0.0, norm;
    if (r->zero) return zero_step(r, loss, loss_out, norm_out, lr_out, skipped, per_micro * accum);
        /* data parallel: the sum of every rank's gradients (each scaled by 1 / the global count) */
#ifdef HONE_HAVE_CUDA
    if (r->nccl && hn_dist_nccl_sum(r->gpu.grads, r->model.params.grad_numel) != HN_OK)
        return HN_ERR;
#endif
    if (!r->on_gpu && r->world > 1 &&
        hn_dist_sum_floats(r->model.grads, r->model.params.grad_numel) != HN_OK)
        return HN_ERR;
    if (model_grad_norm(r, &norm) != HN_OK) return HN_ERR;
    *loss_out = loss;
    *norm_out = norm;
    if ((*skipped = !isfinite(loss) || !isfinite(norm)))
        return skip_step(r, per_micro * accum, lr_out);
    if (model_optim_step(r, norm, lr_out) != HN_OK) return HN_ERR;
    r->step++;
    r->ntokens += (int64_t)(per_micro * accum);
    return HN_OK;
}

/* the spike report: is this finite loss above train.spike_factor x the moving mean of the
 * losses before it (*mean)? The first SPIKE_WARMUP losses only build the mean, which then
 * follows every loss, spikes included, so a lasting change of level stops being reported
 * after a few steps */
#define SPIKE_WARMUP 10
#define SPIKE_DECAY 0.9
static int loss_spike(Run* r, double loss, double* mean) {
    double factor = r->cfg.train.spike_factor;
    *mean = r->loss_mean;
    int spike = factor > 0 && r->losses_seen >= SPIKE_WARMUP && r->loss_mean > 0 &&
                loss > factor * r->loss_mean;
    r->loss_mean = r->losses_seen ? SPIKE_DECAY * r->loss_mean + (1 - SPIKE_DECAY) * loss : loss;
    r->losses_seen++;
    return spike;
}

/* what made a skipped step non-finite, for its messages */
static void bad_value(char* out, size_t n, double loss, double norm) {
    if (!isfinite(loss))
        snprintf(out, n, "non-finite loss (%g)", loss);
    else
        snprintf(out, n, "non-finite gradient norm (%g)", norm);
}

/* one more skip than train.max_bad_steps allows: save the last good state (a skipped step
 * changed nothing) at this step, whose batch is consumed, and stop with the error */
static int stop_on_bad_steps(Run* r, double loss, double norm) {
    if (sync_host(r) != HN_OK || save_checkpoint(r, 0) != HN_OK) return HN_ERR;
    char what[64];
    bad_value(what, sizeof what, loss, norm);
    return hn_error("step %d: %s, bad step %d where train.max_bad_steps is %d; the last good "
                    "state is saved in %s/ckpt/step_%06d.h5 (lower optim.lr or set optim.clip, "
                    "then --resume auto)",
                    r->step, what, bad_steps(r), r->cfg.train.max_bad_steps, r->cfg.train.out,
                    r->step);
}

/* a JSON number, or null for what JSON cannot hold (nan, inf) */
static void json_number(char* out, size_t n, const char* fmt, double v) {
    if (isfinite(v))
        snprintf(out, n, fmt, v);
    else
        snprintf(out, n, "null");
}

int hn_train_build_masks(const HnConfig* user_cfg, const char* out) {
    if (hn_config_validate(user_cfg) != HN_OK) return HN_ERR;
    if (strcmp(user_cfg->mask.method, "none") == 0)
        return hn_error("mask.method is none: set the mask section (see hone train --help-config)");
    int threads = user_cfg->train.threads > 0 ? user_cfg->train.threads : omp_get_num_procs();
    omp_set_num_threads(threads);
    Run run;
    memset(&run, 0, sizeof run);
    run.no_folder = 1;
    run.world = 1;
    run.lead = 1;
    int rc = run_setup(&run, user_cfg);
    HnH5* f = rc == HN_OK ? hn_h5_create(out, run.cfg.train.deflate) : NULL;
    if (rc == HN_OK && !f) rc = HN_ERR;
    if (rc == HN_OK)
        rc = hn_h5_attr_str(f, "/", "format", "hone-mask") != HN_OK ||
                     hn_h5_attr_str(f, "/", "config", run.config_text) != HN_OK ||
                     hn_h5_group(f, "/mask") != HN_OK
                 ? HN_ERR
                 : HN_OK;
    const HnParamTable* t = &run.model.params;
    for (int i = 0; rc == HN_OK && i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        char path[HN_NAME_MAX + 8];
        snprintf(path, sizeof path, "/mask/%s", r->name);
        /* as a checkpoint stores them: rows that train in part (whole rows and frozen ones
         * have no mask) */
        if (!r->mask) continue;
        int64_t n = (int64_t)r->mask_k;
        if (hn_h5_write(f, path, HN_H5_U32, r->mask, 1, &n) != HN_OK ||
            hn_h5_attr_f64(f, path, "density", (double)r->mask_k / (double)r->numel) != HN_OK)
            rc = HN_ERR;
    }
    if (rc == HN_OK) {
        size_t whole = 0, frozen = 0, part = 0;
        for (int i = 0; i < t->n; i++)
            if (!t->rows[i].trainable)
                frozen++;
            else if (t->rows[i].mask)
                part++;
            else
                whole++;
        fprintf(stderr, "mask: %zu rows train in part, %zu whole, %zu are frozen\n", part, whole,
                frozen);
    }
    if (f) rc = rc == HN_OK ? hn_h5_commit(f) : (hn_h5_abort(f), HN_ERR);
    run_free(&run);
    return rc;
}

int hn_train(const HnConfig* user_cfg, const HnTrainOptions* opts, HnTrainResult* result) {
    memset(result, 0, sizeof *result);
    result->val_loss = NAN;
    if (hn_config_validate(user_cfg) != HN_OK) return HN_ERR;
    int use_gpu = 0;
    if (strcmp(user_cfg->train.device, "cuda") == 0) {
#ifdef HONE_HAVE_CUDA
        if (hn_cuda_device_count() == 0)
            return hn_error(
                "train.device is cuda, but no CUDA device is visible — use train.device: cpu");
        use_gpu = 1;
#else
        return hn_error("train.device is cuda, but this hone was built without CUDA (HONE_CUDA=OFF "
                        "or no nvcc)");
#endif
    }
#ifdef HONE_HAVE_CUDA
    if (strcmp(user_cfg->train.device, "auto") == 0) use_gpu = hn_cuda_device_count() > 0;
#endif
    if (use_gpu && strcmp(user_cfg->mask.method, "none") != 0) {
        if (strcmp(user_cfg->train.device, "cuda") == 0)
            return hn_error("partial-update masks run on the CPU backend only for now — use "
                            "train.device: cpu");
        fprintf(stderr, "masks run on the CPU backend only for now: training on the CPU\n");
        use_gpu = 0;
    }
    if (use_gpu && strcmp(user_cfg->data.packing, "documents") == 0) {
        if (strcmp(user_cfg->train.device, "cuda") == 0)
            return hn_error("data.packing: documents runs on the CPU backend only for now — use "
                            "train.device: cpu");
        fprintf(stderr, "packed documents run on the CPU backend only for now: training on the "
                        "CPU\n");
        use_gpu = 0;
    }
    if (use_gpu && user_cfg->peft.methods.n > 0) {
        if (strcmp(user_cfg->train.device, "cuda") == 0)
            return hn_error("peft methods run on the CPU backend only for now — use "
                            "train.device: cpu");
        fprintf(stderr, "peft methods run on the CPU backend only for now: training on the CPU\n");
        use_gpu = 0;
    }
    if (opts->stop_at < 0) return hn_error("--stop-at must be a positive step");
    int threads = user_cfg->train.threads > 0 ? user_cfg->train.threads : omp_get_num_procs();
    omp_set_num_threads(threads);

    Run run;
    memset(&run, 0, sizeof run);
    Run* r = &run;
    r->world = hn_dist_world();
    r->rank = hn_dist_rank();
    r->lead = r->rank == 0;
    r->zero = r->world > 1 && user_cfg->dist.zero;
    if (use_gpu && r->zero) {
        fprintf(stderr, "ZeRO-1 runs on the CPU backend only for now: training on the CPU\n");
        use_gpu = 0;
    }
    r->nccl = use_gpu && (r->world > 1 || strcmp(user_cfg->dist.nccl, "always") == 0);
    int rc = read_nan_steps(r);
    if (rc == HN_OK) rc = run_setup(r, user_cfg);
    char buf[PATH_MAX];
    const char* from = rc == HN_OK ? resume_path(&r->cfg, opts->resume, buf, sizeof buf) : NULL;
    if (rc == HN_OK && from) rc = resume(r, from);
#ifdef HONE_HAVE_CUDA
    /* the device model starts from the host's initialised or resumed state */
    if (rc == HN_OK && use_gpu) {
        rc = hn_cuda_init(hn_dist_local_rank()); /* each rank on its machine's next GPU */
        if (rc == HN_OK && r->nccl) rc = hn_dist_nccl_init();
        if (rc == HN_OK)
            rc = hn_cuda_model_create(&r->gpu, &r->model, r->cfg.data.batch, r->cfg.data.seq);
        r->on_gpu = 1; /* from here run_free releases the device model, even half-made */
        if (rc == HN_OK) rc = hn_cuda_model_load(&r->gpu, r->model.params.data, r->opt.m, r->opt.v);
    }
#else
    (void)use_gpu;
#endif
    if (rc == HN_OK && r->lead) rc = open_run_files(r, from != NULL);
    const HnConfig* cfg = &r->cfg;
    if (rc == HN_OK && r->lead) {
        size_t nparams = 0;
        for (int i = 0; i < r->model.params.n; i++)
            nparams += r->model.params.rows[i].numel;
        fprintf(stderr,
                "model: %s L=%d C=%d NH=%d V=%d (%.2fM parameters), B=%d T=%d accum=%d, %d "
                "threads\n",
                cfg->model.arch, cfg->model.layers, cfg->model.channels, cfg->model.heads,
                cfg->model.vocab, nparams / 1e6, cfg->data.batch, cfg->data.seq, cfg->optim.accum,
                threads);
        if (r->model.peft.active) {
            HnPeftCounts pc = hn_peft_counts(&r->model.params);
            size_t tn = hn_params_trainable_numel(&r->model.params);
            fprintf(stderr,
                    "peft: %zu trainable parameters (%.3f%%): lora %zu, dora %zu, ia3 %zu, "
                    "bitfit %zu, prefix %zu, prompt %zu, adapter %zu; the base is frozen\n",
                    tn, 100.0 * (double)tn / (double)nparams, pc.lora, pc.dora, pc.ia3, pc.bitfit,
                    pc.prefix, pc.prompt, pc.adapter);
        }
        if (r->on_gpu) fprintf(stderr, "device: cuda 0 (fp32)\n");
        if (r->world > 1)
            fprintf(stderr,
                    "data parallel: %d ranks x batch %d x accum %d = %d sequences per step; "
                    "%s of %.3f MiB of gradients per step%s\n",
                    r->world, cfg->data.batch, cfg->optim.accum,
                    r->world * cfg->data.batch * cfg->optim.accum,
                    r->zero ? "reduce-scatter + all-gather" : "a sum",
                    (double)r->model.params.grad_numel * sizeof(float) / (1 << 20),
                    r->zero ? "; ZeRO-1: AdamW state sharded" : "");
    }

    int tty = isatty(fileno(stderr));
    int steps = cfg->train.steps, first = r->step, stopped = 0;
    double t_start = now_s(), t_last = t_start;
    size_t tok_since = 0;
    while (rc == HN_OK && r->step < steps) {
        double loss = 0, norm = 0, mean = 0;
        float lr = 0;
        int skipped = 0, spike = 0;
        if ((rc = train_step(r, &loss, &norm, &lr, &skipped)) != HN_OK) break;
        int step = r->step, last = step == steps;
        int give_up = skipped && bad_steps(r) > cfg->train.max_bad_steps;
        stopped = opts->stop_at > 0 && step == opts->stop_at && !last;
        result->steps_done = step;
        if (!skipped) {
            result->last_loss = loss;
            spike = loss_spike(r, loss, &mean);
        }
        tok_since += (size_t)cfg->data.batch * cfg->data.seq * cfg->optim.accum * r->world;

        const char* clear = tty ? "\r\033[K" : "";
        if (r->lead && skipped && !give_up) {
            char what[64];
            bad_value(what, sizeof what, loss, norm);
            fprintf(stderr, "%shone: warning: step %d: %s, step skipped (%d of at most %d)\n",
                    clear, step, what, bad_steps(r), cfg->train.max_bad_steps);
        } else if (r->lead && spike) {
            fprintf(stderr,
                    "%shone: warning: step %d: loss spike %.4f (%.1fx the recent mean %.4f)\n",
                    clear, step, loss, loss / mean, mean);
        }
        /* skipped steps and spikes always get their metrics record */
        int log_now = step % cfg->train.log_every == 0 || last || skipped || spike;
        if (r->lead && (log_now || tty)) {
            double t = now_s(), dt = t - t_last, elapsed = t - t_start;
            if (log_now) {
                result->tokens_per_s = dt > 0 ? tok_since / dt : 0.0;
                char lossj[32], normj[32], flags[64] = "";
                json_number(lossj, sizeof lossj, "%.6f", loss);
                json_number(normj, sizeof normj, "%.6g", norm);
                if (skipped)
                    snprintf(flags, sizeof flags, ",\"skipped\":true,\"bad_steps\":%d",
                             bad_steps(r));
                else if (spike)
                    snprintf(flags, sizeof flags, ",\"spike\":true");
                fprintf(r->metrics,
                        "{\"step\":%d,\"loss\":%s,\"lr\":%.6g,\"grad_norm\":%s%s,\"tokens_per_"
                        "s\":%.1f,\"elapsed_s\":%.3f}\n",
                        step, lossj, lr, normj, flags, result->tokens_per_s, elapsed);
                fflush(r->metrics);
                t_last = t;
                tok_since = 0;
            }
            char eta[32];
            fmt_duration(eta, sizeof eta, elapsed / (step - first) * (steps - step));
            if (!skipped) /* a skipped step has had its warning line */
                fprintf(stderr, "%sstep %d/%d | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s", clear,
                        step, steps, loss, lr, result->tokens_per_s, eta,
                        tty && !last && !stopped ? "" : "\n");
        }
        if (give_up) {
            rc = stop_on_bad_steps(r, loss, norm);
            break;
        }
        int improved = 0;
        if (r->have_val && r->lead &&
            (last || (cfg->train.eval_every > 0 && step % cfg->train.eval_every == 0))) {
            size_t n;
            double vl = evaluate(r, &r->val, cfg->data.batch, cfg->data.seq,
                                 cfg->train.eval_batches, r->tokens, r->targets, r->pos, &n);
            if (isnan(vl)) {
                rc = HN_ERR;
                break;
            }
            result->val_loss = vl;
            improved = isnan(r->best_val) || vl < r->best_val;
            if (improved) r->best_val = vl;
            fprintf(r->metrics, "{\"step\":%d,\"val_loss\":%.6f,\"val_tokens\":%zu}\n", step, vl,
                    n);
            fflush(r->metrics);
            fprintf(stderr, "%sstep %d/%d | val loss %.4f (%zu tokens)\n", clear, step, steps, vl,
                    n);
        }
        int save =
            last || stopped || (cfg->train.save_every > 0 && step % cfg->train.save_every == 0);
        if (save && ((rc = sync_host(r)) != HN_OK || (rc = save_checkpoint(r, improved)) != HN_OK))
            break;
        if (stopped) break;
    }
    if (rc == HN_OK && r->world > 1) rc = check_ranks_agree(r);
    /* the host model is current here: the last step and a stop both saved, after sync_host */
    if (rc != HN_OK && r->world > 1) hn_dist_abort(hn_error_message()); /* stop every rank */
    if (rc == HN_OK && !r->lead) {
        /* the lead reports */
    } else if (rc == HN_OK && stopped) {
        printf("stopped at step %d of %d: %s/ckpt/step_%06d.h5 (continue with --resume auto)\n",
               r->step, steps, cfg->train.out, r->step);
    } else if (rc == HN_OK) {
        if (r->step == first && first > 0)
            printf("nothing to do: the checkpoint is at step %d of %d\n", first, steps);
        printf("trained %d steps", r->step);
        if (bad_steps(r) > 0) printf(" (%d skipped: non-finite)", bad_steps(r));
        printf(": loss %.4f", result->last_loss);
        if (!isnan(result->val_loss))
            printf(", val loss %.4f (perplexity %.2f)", result->val_loss, exp(result->val_loss));
        printf(" -> %s/latest.h5\n", cfg->train.out);
        if (cfg->train.sample_tokens > 0 && r->tok && r->step > first) {
            printf("--- sample ---\n");
            rc = sample(&r->model, r->tok, cfg->train.sample_prompt, cfg->train.sample_tokens,
                        cfg->data.seq, (uint64_t)cfg->train.seed + 1);
        }
    }
    run_free(r);
    return rc;
}
