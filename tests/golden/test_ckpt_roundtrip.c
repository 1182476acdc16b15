/*
 * Checkpoints keep every value: the golden fixture's GPT-2 parameters (and made-up AdamW
 * moments and a data cursor) saved with hn_ckpt_save read back bit for bit in f32, and
 * within bf16 rounding (relative 2^-8) in bf16. The f32 file is left in
 * $HONE_TEST_TMP/ckpt_golden/golden.h5 for tests/cli/test_cli_h5py.sh, which reads it with
 * h5py and compares it to the fixture independently of hone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/fs.h"
#include "data/h5ckpt.h"
#include "data/safetensors.h"
#include "testing.h"
#include "train/model.h"

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

int main(void) {
    char path[1100], dir[1024];
    snprintf(path, sizeof path, "%s/gpt2_tiny.safetensors", hn_test_env("HONE_FIXTURES"));
    HnSafetensors* st = hn_safetensors_open(path);
    if (!st) die();
    HnModelConfig cfg = {.L = 2, .C = 64, .NH = 4, .V = 300, .Vp = 384, .maxT = 32, .eps = 1e-5f};
    CHECK(atoi(hn_safetensors_meta(st, "C")) == cfg.C &&
              atoi(hn_safetensors_meta(st, "L")) == cfg.L,
          "fixture shape changed");
    HnModel m;
    if (hn_model_create(&m, &cfg, 1, 16) != HN_OK) die();
    char key[160];
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        snprintf(key, sizeof key, "param.%s", r->name);
        if (hn_safetensors_read_f32(st, key, m.params.data + r->offset, r->numel) != HN_OK) die();
    }
    size_t n = m.params.numel;
    float* mom = malloc(n * sizeof(float));
    float* vel = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        mom[i] = (float)sin((double)i), vel[i] = (float)(1e-3 * i / n);
    int order[3] = {2, 0, 1};
    HnCkptCursor cur = {
        .epoch = 3, .shard_pos = 1, .window_pos = 77, .nshards = 3, .shard_order = order};
    hn_rng_seed(&cur.rng_at_shard, 42);
    const char* yaml =
        "model:\n  layers: 2\n  channels: 64\n  heads: 4\n  vocab: 300\n  context: 32\n";
    HnTokenizer* tok = hn_tokenizer_byte();
    HnCkptSave s = {.config_yaml = yaml,
                    .arch = "gpt2",
                    .step = 123,
                    .tokens = 4567,
                    .params = &m.params,
                    .m = mom,
                    .v = vel,
                    .opt_t = 123,
                    .cursor = &cur,
                    .best_val_loss = 2.5,
                    .tokenizer = tok,
                    .bf16 = 0,
                    .deflate = 1};
    snprintf(dir, sizeof dir, "%s/ckpt_golden", hn_test_env("HONE_TEST_TMP"));
    if (hn_mkdirs(dir) != HN_OK) die();
    snprintf(path, sizeof path, "%s/golden.h5", dir);
    if (hn_ckpt_save(path, &s) != HN_OK) die();

    /* read back into zeroed buffers */
    float* back = calloc(n, sizeof(float));
    float* mback = calloc(n, sizeof(float));
    char* text = NULL;
    HnH5* f = hn_ckpt_open(path, &text);
    if (!f) die();
    CHECK(strcmp(text, yaml) == 0, "config text changed");
    CHECK(hn_ckpt_read_rows(f, "model", &m.params, back, 0) == HN_OK, "%s", hn_error_message());
    CHECK(hn_ckpt_read_rows(f, "optim/m", &m.params, mback, 1) == HN_OK, "%s", hn_error_message());
    int same = 1, msame = 1;
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        same &= memcmp(back + r->offset, m.params.data + r->offset, r->numel * 4) == 0;
        msame &= memcmp(mback + r->offset, mom + r->offset, r->numel * 4) == 0;
    }
    CHECK(same, "f32 weights did not round-trip bit for bit");
    CHECK(msame, "AdamW moments did not round-trip bit for bit");
    int64_t step, tokens, opt_t;
    CHECK(hn_ckpt_counters(f, &step, &tokens, &opt_t) == HN_OK && step == 123 && tokens == 4567 &&
              opt_t == 123,
          "counters %lld %lld %lld", (long long)step, (long long)tokens, (long long)opt_t);
    HnCkptCursor c2;
    int* order2;
    double best;
    CHECK(hn_ckpt_cursor(f, &c2, &order2, &best) == HN_OK, "%s", hn_error_message());
    CHECK(c2.epoch == 3 && c2.shard_pos == 1 && c2.window_pos == 77 && c2.nshards == 3 &&
              order2[0] == 2 && order2[2] == 1 &&
              memcmp(&c2.rng_at_shard, &cur.rng_at_shard, sizeof cur.rng_at_shard) == 0 &&
              best == 2.5,
          "cursor did not round-trip");
    free(order2);
    HnTokenizer* tok2 = NULL;
    CHECK(hn_ckpt_tokenizer(f, &tok2) == HN_OK && tok2 &&
              strcmp(hn_tokenizer_name(tok2), "byte") == 0,
          "tokenizer did not round-trip");
    hn_tokenizer_free(tok2);
    hn_h5_close(f);
    free(text);

    /* bf16 weights: within half a bf16 ulp of each value (relative 2^-8: 8 significant bits) */
    s.bf16 = 1;
    char path16[1100];
    snprintf(path16, sizeof path16, "%s/golden_bf16.h5", dir);
    if (hn_ckpt_save(path16, &s) != HN_OK) die();
    f = hn_ckpt_open(path16, &text);
    if (!f) die();
    CHECK(hn_ckpt_read_rows(f, "model", &m.params, back, 0) == HN_OK, "%s", hn_error_message());
    double worst = 0;
    for (int i = 0; i < m.params.n; i++) {
        const HnParamRow* r = &m.params.rows[i];
        for (size_t j = 0; j < r->numel; j++) {
            double a = back[r->offset + j], b = m.params.data[r->offset + j];
            double e = b != 0 ? fabs(a - b) / fabs(b) : fabs(a);
            if (e > worst) worst = e;
        }
    }
    printf("bf16 worst relative rounding error %.3g (bound 2^-8 = %.3g)\n", worst, ldexp(1, -8));
    CHECK(worst <= ldexp(1, -8), "bf16 rounding error %.3g", worst);
    struct stat s32, s16;
    CHECK(stat(path, &s32) == 0 && stat(path16, &s16) == 0 && s16.st_size < s32.st_size,
          "bf16 checkpoint is not smaller");
    hn_h5_close(f);
    free(text);

    free(back), free(mback), free(mom), free(vel);
    hn_tokenizer_free(tok);
    hn_model_free(&m);
    hn_safetensors_close(st);
    return hn_test_finish("test_ckpt_roundtrip");
}
