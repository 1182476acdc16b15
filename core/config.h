/*
 * The run configuration: one struct filled from defaults, then a YAML file, then
 * `--set key=value` overrides, in that order. Every key a user can write is a row of the
 * key table in config.c (name, type, default, meaning); docs/CONFIG.md is generated from
 * that table, so the two cannot drift.
 */
#ifndef HONE_CONFIG_H
#define HONE_CONFIG_H

#include <stdio.h>

#define HN_STR 512     /* longest string value, paths included */
#define HN_MAX_LIST 16 /* longest list value */

typedef struct {
    int n;
    char item[HN_MAX_LIST][HN_STR];
} HnStrList;

typedef struct {
    struct {
        char from[HN_STR]; /* base checkpoint to start from ("" = a fresh model) */
        char arch[32];     /* gpt2 | llama */
        int layers;        /* L */
        int channels;      /* C */
        int heads;         /* NH */
        int kv_heads;      /* NKV (llama: grouped-query attention); 0 = heads */
        int ffn;           /* hidden width of the MLP; 0 = 4 * channels */
        float rope_theta;  /* llama: RoPE base */
        int tied;          /* bool: the classifier reuses the token embedding */
        int vocab;         /* V; 0 = take it from the data's tokenizer */
        int context;       /* maximum sequence length (positions) */
        float norm_eps;    /* LayerNorm epsilon */
        float init_std;    /* std of the normal initialisation of weights */
    } model;
    struct {
        char type[16]; /* auto | byte | gpt2 | none */
        char encoder[HN_STR];
        char merges[HN_STR];
    } tokenizer;
    struct {
        char train[HN_STR]; /* glob of training shards */
        char val[HN_STR];   /* glob of validation shards ("" = none) */
        int batch;          /* micro-batch size per rank */
        int seq;            /* sequence length T */
        int shuffle;        /* bool */
        char packing[16];   /* stream | documents */
    } data;
    struct {
        float lr;
        float weight_decay;
        float betas[2];
        float eps;
        char schedule[16];  /* cosine | linear | constant */
        int warmup;         /* linear warm-up steps */
        float min_lr_ratio; /* lr at the end of the decay, as a fraction of lr */
        float clip;         /* global-norm gradient clipping; 0 = off */
        int accum;          /* micro-batches per optimizer step */
        HnStrList no_decay; /* glob patterns of parameter names that get no weight decay */
    } optim;
    struct {
        HnStrList methods; /* lora | ia3 | bitfit, each at most once; empty = full fine-tuning */
        struct {
            HnStrList targets; /* site patterns; empty = the architecture's default */
            int rank;
            float alpha;
            float dropout;
            int rslora; /* scale alpha / sqrt(rank) instead of alpha / rank */
            int dora;   /* weight-decomposed LoRA (Liu et al. 2024) */
        } lora;
        struct {
            HnStrList targets;     /* site patterns; empty = the architecture's default */
            HnStrList feedforward; /* which targeted sites scale their input, not output */
        } ia3;
        struct {
            int length;     /* virtual key/value positions per layer */
            int projection; /* hidden width of the reparameterisation MLP; 0 = none */
        } prefix;
        struct {
            int length;         /* virtual tokens */
            char init[16];      /* random | vocab | text */
            char text[HN_STR];  /* init text (tokenized by the run's tokenizer) */
            HnStrList text_ids; /* or its token ids */
        } prompt;
        struct {
            int length; /* virtual tokens */
            int hidden; /* width of the prompt encoder MLP; 0 = channels */
        } ptuning;
        struct {
            char kind[16];       /* pfeiffer | houlsby | parallel */
            int reduction;       /* bottleneck width = channels / reduction */
            char activation[16]; /* relu | swish | gelu | tanh */
            char init[16];       /* bert | near_identity */
            float scaling;       /* the parallel adapter's output scale */
        } adapter;
    } peft;
    struct {
        char method[16];    /* none | pattern | magnitude | random | fish | child_f | lt_sft */
        float density;      /* fraction of the eligible entries that train */
        HnStrList patterns; /* rows eligible for training; the others are frozen */
        int fish_examples;  /* windows FISH's Fisher information is averaged over */
        int lt_sft_steps;   /* LT-SFT: steps of the dense fine-tune that picks the entries */
    } mask;
    struct {
        int steps;
        int seed;
        char device[16];  /* auto | cpu | cuda */
        int threads;      /* 0 = all cores */
        char out[HN_STR]; /* run folder */
        int log_every;
        int eval_every;    /* 0 = only at the end */
        int eval_batches;  /* validation batches per evaluation */
        int sample_tokens; /* tokens to generate at the end (0 = none) */
        char sample_prompt[HN_STR];
        int save_every;     /* steps between checkpoints; 0 = only at the end */
        int keep;           /* step checkpoints kept (besides best.h5) */
        char save_dtype[8]; /* f32 | bf16 (weights only; bf16 does not resume bit-exactly) */
        int deflate;        /* zlib level of checkpoint datasets, 0..9 */
        int max_bad_steps;  /* skipped non-finite steps (run total) before the run stops */
        float spike_factor; /* report a loss above this multiple of the recent mean; 0 = off */
    } train;
    struct {
        int zero;      /* 1: ZeRO-1, AdamW state sharded across ranks */
        char nccl[16]; /* auto | always */
    } dist;
    struct {                   /* `hone bench`: every method on this run's model and data */
        char out[HN_STR];      /* results folder */
        HnStrList methods;     /* the methods to run, in order; empty = all */
        char domain[HN_STR];   /* perplexity data of the domain (held out) */
        char general[HN_STR];  /* perplexity data of general text (forgetting) */
        char qa[HN_STR];       /* multiple-choice questions (JSONL) */
        char qa_gen[HN_STR];   /* generation questions (JSONL); "" = none */
        char retrieve[HN_STR]; /* folder the retrieval-augmented method searches */
        int shots;             /* few-shot examples */
        int top_k;             /* retrieved passages */
        int context;           /* positions evaluation serves */
        int gen_tokens;        /* longest generated answer */
        HnStrList lr;          /* method=lr overrides of the learning rates */
    } bench;
} HnConfig;

/* fill every key with its default */
void hn_config_defaults(HnConfig* cfg);
/* read a YAML file on top of cfg; an unknown key is an error that names the closest
 * valid key; HN_OK or HN_ERR (message in hn_error_message()) */
int hn_config_load(HnConfig* cfg, const char* path);
/* the same from YAML text (e.g. the config stored in a checkpoint); name is used in messages */
int hn_config_load_text(HnConfig* cfg, const char* text, const char* name);
/* apply one "section.key=value" override */
int hn_config_set(HnConfig* cfg, const char* assignment);
/* check ranges and combinations (e.g. channels divisible by heads) */
int hn_config_validate(const HnConfig* cfg);
/* the first key (in table order) whose value differs between a and b and is not in
 * `allowed` (full names); NULL if none differs */
const char* hn_config_first_difference(const HnConfig* a, const HnConfig* b,
                                       const char* const* allowed, int nallowed);
/* write the resolved config as YAML that hn_config_load reads back to the same struct */
int hn_config_write(const HnConfig* cfg, FILE* f);
/* the same as a malloc'd string (the caller frees); NULL with an error */
char* hn_config_to_text(const HnConfig* cfg);
/* write the Markdown table of every key (docs/CONFIG.md is this output) */
void hn_config_write_doc(FILE* f);

#endif
