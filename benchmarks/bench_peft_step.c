/*
 * One training step of GPT-2 124M (12 layers, 768 channels, 12 heads, vocab 50257, fp32,
 * random weights, B=4 T=64 by default) on the CPU with one parameter-efficient method on a
 * frozen base, or full fine-tuning as the baseline: forward, backward, gradient norm, AdamW
 * (which zeroes the gradients, as in the trainer). One method per process, so the peak RSS
 * (getrusage ru_maxrss) is that method's own. Prints one JSON line: the method, trainable and
 * total parameters, the gradient layout's floats, the median step time over the timed steps
 * (after two warm-up steps) and its forward / backward / optimizer parts, the peak RSS, and,
 * measured afterwards on the same buffers, the base model's GEMMs of such a step alone through
 * the same BLAS (forward and input gradients of every linear, weight gradients of the
 * trainable ones): the floor of a step on this base, whatever the add-ons cost.
 *
 *   full      hn_model_create, every row trainable
 *   lora      LoRA r=8 alpha=16 on attn.qkv
 *   lora_all  LoRA r=8 alpha=16 on attn.qkv, attn.o, mlp.up, mlp.down
 *   ia3       IA3 on its default sites (gpt2: attn.qkv output, mlp.down input)
 *   bitfit    BitFit: only the biases train
 *   dora      DoRA (LoRA r=8 alpha=16 with a learned magnitude) on attn.qkv
 *   prefix       prefix tuning, 16 virtual key/value positions per layer
 *   prefix_proj  the same made by PEFT's projection MLP of width 512 while training
 *   prompt       prompt tuning, 16 virtual tokens prepended (T + 16 positions per sequence)
 *   ptuning      P-tuning, 16 virtual tokens from an MLP prompt encoder of width 768
 *   houlsby      Houlsby adapters after attention and the MLP (reduction 16, swish)
 *   pfeiffer     Pfeiffer adapters after the MLP (reduction 16, relu)
 *   parallel     parallel adapters beside the MLP (reduction 2, relu, scaling 4)
 *
 * --seq counts real tokens: prompt tuning and P-tuning add their virtual positions to it and
 * a prefix adds keys; "T" in the output is the real tokens, "positions" what the model ran
 * over per sequence, "prefix" the prefix's keys.
 *
 * LoRA's B starts at zero in PEFT's initialisation; it is set to small random values here so
 * the add-on's path is the one a model in mid-training takes (no work is skipped by zeros
 * anywhere, but the loss and gradients then look like a trained adapter's).
 *
 * usage: bench_peft_step --method full|lora|lora_all|ia3|bitfit|dora|prefix|prefix_proj|
 *                                 prompt|ptuning|houlsby|pfeiffer|parallel
 *                        [--threads N] [--steps S] [--batch B] [--seq T]
 */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "benchmarks/bench.h"
#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/peft/peft.h"

static const char* const METHODS[] = {"full",    "lora",     "lora_all",    "ia3",    "bitfit",
                                      "dora",    "prefix",   "prefix_proj", "prompt", "ptuning",
                                      "houlsby", "pfeiffer", "parallel"};
#define NMETHODS ((int)(sizeof METHODS / sizeof METHODS[0]))

/* the GEMMs of one base linear, as kernels/cpu/matmul.c issues them: out = inp W^T;
 * dinp = dout W; and dW += dout^T inp only where the weight trains (dw not NULL) */
static void linear_gemms(float* out, const float* inp, const float* w, float* dinp, float* dw,
                         int N, int C, int OC) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, 0.0f, out,
                OC);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, out, OC, w, C, 0.0f,
                dinp, C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, out, OC, inp, C, 1.0f,
                    dw, C);
}

/* the base model's GEMMs of one step on the model's own buffers: every forward and input
 * gradient, and the weight gradients of trainable weights only (the add-ons' own small
 * GEMMs are left out): the floor of a step on this base through this BLAS */
static void base_gemm_step(HnModel* m) {
    int C = m->cfg.C, N = m->B * m->T; /* the last forward's positions, virtual ones included */
    for (int l = 0; l < m->cfg.L; l++) {
        HnLayerActs* a = &m->act.layer[l];
        const HnLayerTensors* w = &m->w.layers[l];
        const HnLayerTensors* g = &m->g.layers[l];
        linear_gemms(a->qkv, a->ln1, w->qkvw, m->act.dln, g->qkvw, N, C, 3 * C);
        linear_gemms(a->res2, a->atty, w->attow, m->act.datty, g->attow, N, C, C);
        linear_gemms(a->fch, a->ln2, w->fcw, m->act.dln, g->fcw, N, C, 4 * C);
        linear_gemms(a->res3, a->fch_gelu, w->fcprojw, m->act.dbig, g->fcprojw, N, 4 * C, C);
    }
    linear_gemms(m->act.logits, m->act.lnf, m->w.lm_head, m->act.dln, m->g.lm_head, N, C,
                 m->cfg.Vp);
}

static void usage(void) {
    fprintf(stderr, "usage: bench_peft_step --method full|lora|lora_all|ia3|bitfit|dora|prefix|"
                    "prefix_proj|prompt|ptuning|houlsby|pfeiffer|parallel [--threads N] "
                    "[--steps S] [--batch B] [--seq T]\n");
}

/* the peft section's settings of a method, as --set assignments */
static int set_method(HnConfig* cfg, const char* method) {
    static const char* const lora[] = {"peft.methods=lora", "peft.lora.rank=8",
                                       "peft.lora.alpha=16", "peft.lora.targets=attn.qkv", NULL};
    static const char* const lora_all[] = {
        "peft.methods=lora", "peft.lora.rank=8", "peft.lora.alpha=16",
        "peft.lora.targets=[attn.qkv, attn.o, mlp.up, mlp.down]", NULL};
    static const char* const ia3[] = {"peft.methods=ia3", NULL};
    static const char* const bitfit[] = {"peft.methods=bitfit", NULL};
    static const char* const dora[] = {"peft.methods=lora",   "peft.lora.rank=8",
                                       "peft.lora.alpha=16",  "peft.lora.targets=attn.qkv",
                                       "peft.lora.dora=true", NULL};
    static const char* const prefix[] = {"peft.methods=prefix", "peft.prefix.length=16", NULL};
    static const char* const prefix_proj[] = {"peft.methods=prefix", "peft.prefix.length=16",
                                              "peft.prefix.projection=512", NULL};
    static const char* const prompt[] = {"peft.methods=prompt", "peft.prompt.length=16", NULL};
    static const char* const ptuning[] = {"peft.methods=ptuning", "peft.ptuning.length=16",
                                          "peft.ptuning.hidden=768", NULL};
    static const char* const houlsby[] = {"peft.methods=adapter", "peft.adapter.kind=houlsby",
                                          "peft.adapter.reduction=16",
                                          "peft.adapter.activation=swish", NULL};
    static const char* const pfeiffer[] = {"peft.methods=adapter", "peft.adapter.kind=pfeiffer",
                                           "peft.adapter.reduction=16",
                                           "peft.adapter.activation=relu", NULL};
    static const char* const parallel[] = {
        "peft.methods=adapter",         "peft.adapter.kind=parallel", "peft.adapter.reduction=2",
        "peft.adapter.activation=relu", "peft.adapter.scaling=4",     NULL};
    const char* const* set = NULL;
    if (!strcmp(method, "lora")) set = lora;
    if (!strcmp(method, "lora_all")) set = lora_all;
    if (!strcmp(method, "ia3")) set = ia3;
    if (!strcmp(method, "bitfit")) set = bitfit;
    if (!strcmp(method, "dora")) set = dora;
    if (!strcmp(method, "prefix")) set = prefix;
    if (!strcmp(method, "prefix_proj")) set = prefix_proj;
    if (!strcmp(method, "prompt")) set = prompt;
    if (!strcmp(method, "ptuning")) set = ptuning;
    if (!strcmp(method, "houlsby")) set = houlsby;
    if (!strcmp(method, "pfeiffer")) set = pfeiffer;
    if (!strcmp(method, "parallel")) set = parallel;
    for (int i = 0; set && set[i]; i++)
        if (hn_config_set(cfg, set[i]) != HN_OK) return HN_ERR;
    return HN_OK;
}

int main(int argc, char** argv) {
    int threads = 2, steps = 5, B = 4, T = 64;
    const char* method = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--method"))
            method = argv[i + 1];
        else if (!strcmp(argv[i], "--threads"))
            threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps"))
            steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch"))
            B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--seq"))
            T = atoi(argv[i + 1]);
        else {
            usage();
            return 2;
        }
    }
    int known = 0;
    for (int i = 0; method && i < NMETHODS; i++)
        known |= !strcmp(method, METHODS[i]);
    if (argc % 2 == 0 || !known) {
        usage();
        return 2;
    }
    if (steps < 1 || steps > 1000 || threads < 1 || B < 1 || T < 1 || T > 1024) {
        fprintf(stderr, "bench_peft_step: bad arguments\n");
        return 2;
    }
    omp_set_num_threads(threads);

    HnConfig cfg;
    hn_config_defaults(&cfg);
    static const char* const model[] = {
        "model.arch=gpt2",   "model.layers=12",    "model.channels=768",  "model.heads=12",
        "model.vocab=50257", "model.context=1024", "model.norm_eps=1e-5", "model.tied=true"};
    for (size_t i = 0; i < sizeof model / sizeof model[0]; i++)
        if (hn_config_set(&cfg, model[i]) != HN_OK) {
            fprintf(stderr, "bench_peft_step: %s\n", hn_error_message());
            return 1;
        }
    if (set_method(&cfg, method) != HN_OK) {
        fprintf(stderr, "bench_peft_step: %s\n", hn_error_message());
        return 1;
    }
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnModel m;
    HnPeft plan;
    memset(&plan, 0, sizeof plan);
    int full = !strcmp(method, "full");
    if (full) {
        if (hn_model_create(&m, &mc, B, T) != HN_OK) {
            fprintf(stderr, "bench_peft_step: %s\n", hn_error_message());
            return 1;
        }
    } else if (hn_peft_plan(&plan, &cfg) != HN_OK ||
               hn_model_create_peft(&m, &mc, &plan, B, T) != HN_OK) {
        fprintf(stderr, "bench_peft_step: %s\n", hn_error_message());
        return 1;
    }
    hn_model_init(&m, 0.02f, 1337);
    /* LoRA B away from PEFT's zeros, so the adapter's path carries real values */
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        size_t len = strlen(r->name);
        if (len < 7 || strcmp(r->name + len - 7, ".lora_B") != 0) continue;
        HnRng rng;
        hn_rng_seed(&rng, 4242 + (uint64_t)i);
        float* x = m.params.data + r->offset;
        for (size_t j = 0; j < r->numel; j++)
            x[j] = 0.02f * hn_rng_normal(&rng);
    }
    const char* no_decay[] = {"*.bias", "*norm*", "*embed*"};
    hn_params_set_no_decay(&m.params, no_decay, 3);
    HnOptimizer opt;
    HnOptimConfig oc = {.lr = 1e-4f,
                        .beta1 = 0.9f,
                        .beta2 = 0.95f,
                        .eps = 1e-8f,
                        .weight_decay = 0.1f,
                        .clip = 1.0f,
                        .min_lr_ratio = 0.1f,
                        .warmup = 0,
                        .steps = 1000,
                        .schedule = HN_SCHED_COSINE};
    if (hn_optim_create(&opt, &oc, &m.params) != HN_OK) {
        fprintf(stderr, "bench_peft_step: %s\n", hn_error_message());
        return 1;
    }
    int* tokens = malloc((size_t)B * T * sizeof(int));
    int* targets = malloc((size_t)B * T * sizeof(int));
    double* ms = malloc((size_t)steps * 4 * sizeof *ms);
    if (!tokens || !targets || !ms) {
        fprintf(stderr, "bench_peft_step: out of memory\n");
        return 1;
    }
    double *fwd = ms + steps, *bwd = fwd + steps, *upd = bwd + steps;
    srand(1);
    for (int i = 0; i < B * T; i++)
        tokens[i] = rand() % mc.V, targets[i] = rand() % mc.V;

    int warmup = 2;
    double loss = 0;
    hn_model_zero_grad(&m); /* afterwards hn_optim_step leaves the gradients zeroed */
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        loss = hn_model_forward(&m, tokens, targets, B, T, 1.0f / (float)(B * T)) / (B * T);
        double t1 = now_ms();
        hn_model_backward(&m);
        double t2 = now_ms();
        double norm = hn_optim_grad_norm(&m.params, m.grads);
        hn_optim_step(&opt, &m.params, m.grads, norm);
        double t3 = now_ms();
        if (s >= 0) ms[s] = t3 - t0, fwd[s] = t1 - t0, bwd[s] = t2 - t1, upd[s] = t3 - t2;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_mb = ru.ru_maxrss / 1024.0;
    double* gemm_ms = malloc((size_t)steps * sizeof *gemm_ms);
    if (!gemm_ms) {
        fprintf(stderr, "bench_peft_step: out of memory\n");
        return 1;
    }
    for (int s = -warmup; s < steps; s++) {
        double t0 = now_ms();
        base_gemm_step(&m);
        if (s >= 0) gemm_ms[s] = now_ms() - t0;
    }
    double gemm_med = median(gemm_ms, steps);
    free(gemm_ms);
    printf("{\"impl\":\"hone\",\"method\":\"%s\",\"threads\":%d,\"B\":%d,\"T\":%d,"
           "\"positions\":%d,\"prefix\":%d,\"trainable_params\":%zu,\"total_params\":%zu,"
           "\"grad_floats\":%zu,\"all_ms\":[",
           method, threads, B, T, m.T, hn_peft_prefix_length(&m.peft),
           hn_params_trainable_numel(&m.params), m.params.numel, m.params.grad_numel);
    for (int s = 0; s < steps; s++)
        printf("%s%.1f", s ? "," : "", ms[s]);
    /* median() sorts, so the list is printed first */
    double step_min = ms[0];
    for (int s = 1; s < steps; s++)
        step_min = ms[s] < step_min ? ms[s] : step_min;
    double step_med = median(ms, steps);
    printf("],\"median_ms\":%.1f,\"min_ms\":%.1f,\"forward_ms\":%.1f,\"backward_ms\":%.1f,"
           "\"optim_ms\":%.1f,\"gemm_floor_ms\":%.1f,\"ratio_to_floor\":%.3f,\"peak_rss_mb\":%.0f,"
           "\"tokens_per_s\":%.0f,\"loss\":%.4f}\n",
           step_med, step_min, median(fwd, steps), median(bwd, steps), median(upd, steps), gemm_med,
           step_med / gemm_med, peak_mb, 1e3 * B * T / step_med, loss);
    free(ms), free(tokens), free(targets);
    hn_optim_free(&opt);
    hn_model_free(&m);
    return 0;
}
