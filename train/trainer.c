/*
 * The training loop; see trainer.h. One optimizer step draws data.batch x optim.accum
 * windows; its loss is the mean over every counted target of all its micro-batches, so
 * each micro-batch's backward is scaled by 1 / (targets counted in the whole step).
 */
#include "train/trainer.h"

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
#include "core/rng.h"
#include "data/dataset.h"
#include "data/prepare.h"
#include "data/tokenizer.h"
#include "kernels/ops.h"
#ifdef HONE_HAVE_CUDA
#include "kernels/cuda/cuda.h"
#endif
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

/* mean loss over up to `batches` validation batches of B windows (fewer if the data has
 * fewer windows; each window is scored once) */
static double evaluate(HnModel* m, HnLoader* val, int B, int T, int batches, int* tokens,
                       int* targets, size_t* counted) {
    hn_loader_reset(val);
    size_t windows = hn_loader_windows(val), want = (size_t)batches * B;
    if (want > windows) want = windows;
    double sum = 0.0;
    *counted = 0;
    for (size_t done = 0; done < want;) {
        int rows = 0;
        for (; rows < B && done < want; rows++, done++)
            if (hn_loader_next(val, tokens + rows * T, targets + rows * T) != HN_OK) return NAN;
        sum += hn_model_forward(m, tokens, targets, rows, T, 0.0f);
        *counted += (size_t)rows * T;
    }
    return *counted ? sum / (double)*counted : NAN;
}

/* sample continuation tokens after a prompt, streaming the text to stdout */
static int sample(HnModel* m, const HnTokenizer* tok, const char* prompt, int ntokens, int T,
                  uint64_t seed) {
    HnTokens ctx = {0};
    hn_tokens_push(&ctx, hn_tokenizer_eos(tok));
    if (hn_tokenizer_encode(tok, prompt, strlen(prompt), &ctx) != HN_OK) return HN_ERR;
    HnRng rng;
    hn_rng_seed(&rng, seed);
    int V = m->cfg.V, Vp = m->cfg.Vp;
    fwrite(prompt, 1, strlen(prompt), stdout);
    for (int i = 0; i < ntokens; i++) {
        int len = ctx.n > (size_t)T ? T : (int)ctx.n;
        const int* window = ctx.ids + ctx.n - len;
        hn_model_forward(m, window, NULL, 1, len, 0.0f);
        const float* logits = m->logits + (size_t)(len - 1) * Vp;
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

int hn_train(const HnConfig* cfg, HnTrainResult* result) {
    memset(result, 0, sizeof *result);
    result->val_loss = NAN;
    if (hn_config_validate(cfg) != HN_OK) return HN_ERR;
    if (strcmp(cfg->train.device, "cuda") == 0) {
#ifdef HONE_HAVE_CUDA
        if (hn_cuda_device_count() == 0)
            return hn_error(
                "train.device is cuda, but no CUDA device is visible — use train.device: cpu");
        return hn_error("train.device is cuda, but hone's CUDA backend cannot train yet — use "
                        "train.device: cpu");
#else
        return hn_error("train.device is cuda, but this hone was built without CUDA (HONE_CUDA=OFF "
                        "or no nvcc)");
#endif
    }
    int threads = cfg->train.threads > 0 ? cfg->train.threads : omp_get_num_procs();
    omp_set_num_threads(threads);

    /* the data decides the vocabulary and tokenizer unless the config says otherwise;
     * the loader opens first so a missing or damaged shard is the error reported */
    HnLoader train = {0}, val = {0};
    if (hn_loader_open(&train, cfg->data.train, cfg->data.batch, cfg->data.seq, INT_MAX,
                       cfg->data.shuffle, (uint64_t)cfg->train.seed) != HN_OK) {
        hn_loader_close(&train);
        return HN_ERR;
    }
    char data_dir[PATH_MAX];
    data_dir_of(cfg->data.train, data_dir, sizeof data_dir);
    HnDataMeta meta;
    int have_meta = hn_data_meta_read(data_dir, &meta) == HN_OK;
    int V = cfg->model.vocab;
    if (V == 0) {
        if (!have_meta) {
            hn_loader_close(&train);
            return hn_error("model.vocab is 0 and %s/meta.json is missing — set model.vocab or "
                            "prepare the data with `hone prepare`",
                            data_dir);
        }
        V = meta.vocab_size;
    }
    HnTokenizer* tok = NULL;
    if (strcmp(cfg->tokenizer.type, "none") != 0) {
        tok = open_tokenizer(cfg, &meta, have_meta);
        int rc = HN_OK;
        if (!tok && strcmp(cfg->tokenizer.type, "auto") != 0) rc = HN_ERR;
        if (tok && hn_tokenizer_vocab_size(tok) > V)
            rc = hn_error("model.vocab %d is smaller than the tokenizer's vocabulary %d", V,
                          hn_tokenizer_vocab_size(tok));
        if (rc != HN_OK) {
            hn_tokenizer_free(tok);
            hn_loader_close(&train);
            return rc;
        }
    }
    train.vocab = V;

    int B = cfg->data.batch, T = cfg->data.seq, accum = cfg->optim.accum;
    HnModelConfig mc = {.L = cfg->model.layers,
                        .C = cfg->model.channels,
                        .NH = cfg->model.heads,
                        .V = V,
                        .Vp = hn_model_padded_vocab(V),
                        .maxT = cfg->model.context,
                        .eps = cfg->model.norm_eps};
    HnModel model;
    HnOptimizer opt = {0};
    int *tokens = NULL, *targets = NULL;
    FILE* metrics = NULL;
    int rc = hn_model_create(&model, &mc, B, T);
    if (rc == HN_OK) {
        hn_model_init(&model, cfg->model.init_std, (uint64_t)cfg->train.seed);
        const char* patterns[HN_MAX_LIST];
        for (int i = 0; i < cfg->optim.no_decay.n; i++)
            patterns[i] = cfg->optim.no_decay.item[i];
        hn_params_set_no_decay(&model.params, patterns, cfg->optim.no_decay.n);
        HnOptimConfig oc = {.lr = cfg->optim.lr,
                            .beta1 = cfg->optim.betas[0],
                            .beta2 = cfg->optim.betas[1],
                            .eps = cfg->optim.eps,
                            .weight_decay = cfg->optim.weight_decay,
                            .clip = cfg->optim.clip,
                            .min_lr_ratio = cfg->optim.min_lr_ratio,
                            .warmup = cfg->optim.warmup,
                            .steps = cfg->train.steps,
                            .schedule = schedule_of(cfg->optim.schedule)};
        rc = hn_optim_create(&opt, &oc, &model.params);
    }
    int have_val = cfg->data.val[0] != '\0';
    if (rc == HN_OK && have_val) rc = hn_loader_open(&val, cfg->data.val, 1, T, V, 0, 0);
    size_t per_micro = (size_t)B * T;
    if (rc == HN_OK) {
        tokens = malloc(per_micro * accum * sizeof(int));
        targets = malloc(per_micro * accum * sizeof(int));
        if (!tokens || !targets) rc = hn_error("out of memory");
    }
    if (rc == HN_OK) rc = hn_mkdirs(cfg->train.out);
    if (rc == HN_OK) {
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/config.yaml", cfg->train.out);
        FILE* f = fopen(path, "w");
        if (!f || hn_config_write(cfg, f) != HN_OK) rc = hn_error("cannot write %s", path);
        if (f && fclose(f) != 0) rc = hn_error("cannot write %s", path);
        snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->train.out);
        if (rc == HN_OK && !(metrics = fopen(path, "w"))) rc = hn_error("cannot write %s", path);
    }
    if (rc == HN_OK) {
        size_t nparams = 0;
        for (int i = 0; i < model.params.n; i++)
            nparams += model.params.rows[i].numel;
        fprintf(
            stderr,
            "model: gpt2 L=%d C=%d NH=%d V=%d (%.2fM parameters), B=%d T=%d accum=%d, %d threads\n",
            mc.L, mc.C, mc.NH, V, nparams / 1e6, B, T, accum, threads);
    }

    int tty = isatty(fileno(stderr));
    double t_start = now_s(), t_last = t_start;
    size_t tok_since = 0;
    for (int step = 0; rc == HN_OK && step < cfg->train.steps; step++) {
        size_t counted = 0;
        for (int k = 0; rc == HN_OK && k < accum; k++)
            rc = hn_loader_next(&train, tokens + k * per_micro, targets + k * per_micro);
        if (rc != HN_OK) break;
        for (size_t i = 0; i < per_micro * accum; i++)
            counted += targets[i] != HN_IGNORE;
        double loss_sum = 0.0;
        float scale = counted ? 1.0f / (float)counted : 0.0f;
        for (int k = 0; k < accum; k++) {
            loss_sum += hn_model_forward(&model, tokens + k * per_micro, targets + k * per_micro, B,
                                         T, scale);
            hn_model_backward(&model);
        }
        double loss = counted ? loss_sum / (double)counted : 0.0;
        double norm = hn_optim_grad_norm(&model.params, model.grads);
        if (!isfinite(loss) || !isfinite(norm)) {
            rc = hn_error("training diverged at step %d (loss %g, gradient norm %g) — lower "
                          "optim.lr or set optim.clip",
                          step + 1, loss, norm);
            break;
        }
        float lr = hn_optim_step(&opt, &model.params, model.grads, norm);
        result->steps_done = step + 1;
        result->last_loss = loss;
        tok_since += per_micro * accum;

        int last = step + 1 == cfg->train.steps;
        if ((step + 1) % cfg->train.log_every == 0 || last || tty) {
            double t = now_s(), dt = t - t_last, elapsed = t - t_start;
            double tps = dt > 0 ? tok_since / dt : 0.0;
            if ((step + 1) % cfg->train.log_every == 0 || last) {
                fprintf(metrics,
                        "{\"step\":%d,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.6g,\"tokens_per_"
                        "s\":%.1f,\"elapsed_s\":%.3f}\n",
                        step + 1, loss, lr, norm, tps, elapsed);
                fflush(metrics);
                result->tokens_per_s = tps;
                t_last = t;
                tok_since = 0;
            }
            char eta[32];
            fmt_duration(eta, sizeof eta, elapsed / (step + 1) * (cfg->train.steps - step - 1));
            fprintf(stderr, "%sstep %d/%d | loss %.4f | lr %.2e | %.0f tok/s | ETA %s%s",
                    tty ? "\r\033[K" : "", step + 1, cfg->train.steps, loss, lr,
                    result->tokens_per_s, eta, tty && !last ? "" : "\n");
        }
        int do_eval =
            have_val &&
            (last || (cfg->train.eval_every > 0 && (step + 1) % cfg->train.eval_every == 0));
        if (do_eval) {
            size_t n;
            double vl = evaluate(&model, &val, B, T, cfg->train.eval_batches, tokens, targets, &n);
            if (isnan(vl)) {
                rc = HN_ERR;
                break;
            }
            result->val_loss = vl;
            fprintf(metrics, "{\"step\":%d,\"val_loss\":%.6f,\"val_tokens\":%zu}\n", step + 1, vl,
                    n);
            fflush(metrics);
            fprintf(stderr, "%sstep %d/%d | val loss %.4f (%zu tokens)\n", tty ? "\r\033[K" : "",
                    step + 1, cfg->train.steps, vl, n);
        }
    }
    if (rc == HN_OK) {
        printf("trained %d steps: loss %.4f", result->steps_done, result->last_loss);
        if (!isnan(result->val_loss))
            printf(", val loss %.4f (perplexity %.2f)", result->val_loss, exp(result->val_loss));
        printf("\n");
        if (cfg->train.sample_tokens > 0 && tok) {
            printf("--- sample ---\n");
            rc = sample(&model, tok, cfg->train.sample_prompt, cfg->train.sample_tokens, T,
                        (uint64_t)cfg->train.seed + 1);
        }
    }
    if (metrics) fclose(metrics);
    free(tokens);
    free(targets);
    hn_loader_close(&train);
    hn_loader_close(&val);
    hn_optim_free(&opt);
    hn_model_free(&model);
    hn_tokenizer_free(tok);
    return rc;
}
