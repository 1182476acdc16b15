/*
 * The evaluation tasks and the sampler:
 *   - ROUGE-L and exact match on hand-computed examples;
 *   - the sampler: greedy is the argmax, top-k = 1 is greedy, top-p keeps exactly the
 *     nucleus (excluded tokens never drawn, frequencies within 5 sigma), plain sampling
 *     follows softmax(logits / T), the same seed gives the same draws;
 *   - scoring against the TRAINING model (train/model.c, an independent forward) with
 *     log-softmax computed here in double: choice log-likelihoods (also when the context
 *     must be cut to its rightmost tokens), windowed NLL with a tail window, and the mc and
 *     gen tasks end to end from JSONL files with the byte tokenizer; each on a tiny GPT-2 and
 *     a tiny Llama (grouped-query attention, untied classifier);
 *   - bad JSONL gives one error naming file:line.
 */
#include "eval/tasks.h"

#include <cjson/cJSON.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/rng.h"
#include "eval/sample.h"
#include "testing.h"
#include "train/model.h"

static int from_train_model(void* ctx, const char* name, float* dst, size_t numel) {
    const HnModel* hm = ctx;
    int i = hn_params_find(&hm->params, name);
    if (i < 0) return hn_error("no row %s", name);
    if (hm->params.rows[i].numel != numel) return hn_error("%s: wrong size", name);
    memcpy(dst, hm->params.data + hm->params.rows[i].offset, numel * sizeof(float));
    return HN_OK;
}

/* a training model with random weights, biases and norms, and the eval model of the same */
static HnEvalModel* make_models(HnModel* hm, HnArch arch, int V, int maxT, uint64_t seed) {
    int llama = arch == HN_ARCH_LLAMA;
    HnModelConfig cfg = {.arch = arch,
                         .L = 2,
                         .C = 32,
                         .NH = 4,
                         .NKV = llama ? 2 : 4,
                         .F = llama ? 48 : 128,
                         .V = V,
                         .Vp = hn_model_padded_vocab(V),
                         .maxT = maxT,
                         .eps = 1e-5f,
                         .rope_theta = 10000.0f,
                         .untied = llama};
    if (hn_model_create(hm, &cfg, 1, maxT) != HN_OK) return NULL;
    hn_model_init(hm, 0.3f, seed);
    HnRng rng;
    hn_rng_seed(&rng, seed + 1);
    for (int i = 0; i < hm->params.n; i++) {
        const HnParamRow* r = &hm->params.rows[i];
        float* x = hm->params.data + r->offset;
        int is_bias = strstr(r->name, ".bias") != NULL, is_norm = strstr(r->name, "norm.") != NULL;
        for (size_t j = 0; j < r->numel && (is_bias || is_norm); j++)
            x[j] = is_bias ? 0.1f * hn_rng_normal(&rng) : 1.0f + 0.2f * hn_rng_normal(&rng);
    }
    HnEvalConfig ec = {.arch = llama ? HN_EVAL_LLAMA : HN_EVAL_GPT2,
                       .L = 2,
                       .C = 32,
                       .NH = 4,
                       .NKV = cfg.NKV,
                       .F = cfg.F,
                       .V = V,
                       .context = maxT,
                       .eps = 1e-5f,
                       .rope_theta = cfg.rope_theta,
                       .untied = cfg.untied};
    return hn_eval_model_new(&ec, 0, from_train_model, hm);
}

/* log softmax(row[:V])[target] in double */
static double log_prob(const float* row, int V, int target) {
    double mx = row[0], s = 0.0;
    for (int v = 1; v < V; v++)
        mx = row[v] > mx ? row[v] : mx;
    for (int v = 0; v < V; v++)
        s += exp(row[v] - mx);
    return row[target] - mx - log(s);
}

/* reference: sum over the choice of log p(choice[j] | ctx, choice[..j]) from one full
 * forward of the training model over ctx + choice */
static double ref_loglik(HnModel* hm, const int* ctx, int nctx, const int* ch, int nch) {
    int seq[256];
    memcpy(seq, ctx, nctx * sizeof(int));
    memcpy(seq + nctx, ch, nch * sizeof(int));
    hn_model_forward(hm, seq, NULL, 1, nctx + nch, 0.0f);
    double ll = 0.0;
    for (int j = 0; j < nch; j++)
        ll += log_prob(hm->act.logits + (size_t)(nctx - 1 + j) * hm->cfg.Vp, hm->cfg.V, ch[j]);
    return ll;
}

static void test_text_metrics(void) {
    /* words: the cat sat on the mat / the cat is on the mat; LCS = "the cat on the mat" = 5,
     * P = R = 5/6, F1 = 5/6 */
    CHECK(
        hn_close(hn_rouge_l("the cat sat on the mat", "the cat is on the mat"), 5.0 / 6, 1e-12, 0),
        "rouge cat");
    /* a b c d / b d e: LCS = "b d" = 2, P = 2/4, R = 2/3, F1 = 2PR/(P+R) = 4/7 */
    CHECK(hn_close(hn_rouge_l("a b c d", "b d e"), 4.0 / 7, 1e-12, 0), "rouge abcd");
    /* a a a / a: LCS = 1, P = 1/3, R = 1, F1 = (2/3)/(4/3) = 1/2 */
    CHECK(hn_close(hn_rouge_l("a a a", "a"), 0.5, 1e-12, 0), "rouge repeats");
    /* order matters: c b a / a b c: LCS = 1 (any one word), P = R = 1/3 */
    CHECK(hn_close(hn_rouge_l("c b a", "a b c"), 1.0 / 3, 1e-12, 0), "rouge order");
    /* whitespace only separates words: LCS = 2 of 2 */
    CHECK(hn_rouge_l("  x\t\ny  ", "x y") == 1.0, "rouge whitespace");
    CHECK(hn_rouge_l("x", "y") == 0.0, "rouge disjoint");
    CHECK(hn_rouge_l("", "a") == 0.0 && hn_rouge_l("a", " ") == 0.0, "rouge one empty");
    CHECK(hn_rouge_l("", " \n") == 1.0, "rouge both empty");

    CHECK(hn_exact_match(" Paris\n", "Paris") == 1, "em trims");
    CHECK(hn_exact_match("paris", "Paris") == 0, "em is case-sensitive");
    CHECK(hn_exact_match("Paris France", "Paris  France") == 0, "em keeps inner whitespace");
    CHECK(hn_exact_match("", "  ") == 1, "em empty");
    CHECK(hn_exact_match("Paris", "Paris.") == 0, "em punctuation");
}

static void test_sampler(void) {
    enum { V = 4, N = 20000 };
    const float p[V] = {0.5f, 0.25f, 0.15f, 0.1f};
    float logits[V];
    for (int v = 0; v < V; v++)
        logits[v] = logf(p[v]) + 3.0f; /* a shift does not change the softmax */
    HnSampler s;
    HnSampleParams greedy = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f};
    CHECK(hn_sampler_init(&s, V, &greedy, 1) == HN_OK, "init");
    float shuffled[V] = {0.3f, 2.0f, -1.0f, 2.0f};
    CHECK(hn_sampler_next(&s, shuffled) == 1, "greedy: argmax, lowest index among equals");
    hn_sampler_free(&s);

    /* top-k = 1 at temperature 1 is greedy, on random rows */
    HnSampleParams k1 = {.temperature = 1.0f, .top_k = 1, .top_p = 1.0f};
    CHECK(hn_sampler_init(&s, 50, &k1, 2) == HN_OK, "init");
    HnRng rng;
    hn_rng_seed(&rng, 5);
    int same = 1;
    for (int r = 0; r < 100; r++) {
        float row[50];
        for (int v = 0; v < 50; v++)
            row[v] = hn_rng_normal(&rng);
        same &= hn_sampler_next(&s, row) == hn_sample_argmax(row, 50);
    }
    CHECK(same, "top-k 1 differs from greedy");
    hn_sampler_free(&s);

    /* frequencies: counts[v] of N draws against the expected probabilities q (0 = must
     * never appear), within 5 sigma of a binomial */
    struct {
        HnSampleParams sp;
        double q[V];
        const char* what;
    } cases[] = {
        /* p = 0.7: 0.5 < 0.7 <= 0.5 + 0.25, so the nucleus is {0, 1}, renormalised 2/3, 1/3 */
        {{1.0f, 0, 0.7f}, {2.0 / 3, 1.0 / 3, 0, 0}, "top-p 0.7"},
        /* p = 0.8: 0.75 < 0.8 <= 0.9: {0, 1, 2} over 0.9 */
        {{1.0f, 0, 0.8f}, {0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0}, "top-p 0.8"},
        /* p = 0.4: the most likely token alone reaches it */
        {{1.0f, 0, 0.4f}, {1, 0, 0, 0}, "top-p 0.4"},
        /* top-k 2: {0, 1} */
        {{1.0f, 2, 1.0f}, {2.0 / 3, 1.0 / 3, 0, 0}, "top-k 2"},
        /* top-k 3 then top-p 0.8 of the renormalised 0.5/0.9, 0.25/0.9, 0.15/0.9: the first
         * two hold 0.833 >= 0.8, so {0, 1} */
        {{1.0f, 3, 0.8f}, {2.0 / 3, 1.0 / 3, 0, 0}, "top-k 3 + top-p 0.8"},
        /* temperature 0.5 squares the probabilities: 0.25, 0.0625, 0.0225, 0.01 over 0.345 */
        {{0.5f, 0, 1.0f}, {0.25 / 0.345, 0.0625 / 0.345, 0.0225 / 0.345, 0.01 / 0.345}, "T 0.5"},
        {{1.0f, 0, 1.0f}, {0.5, 0.25, 0.15, 0.1}, "plain"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CHECK(hn_sampler_init(&s, V, &cases[c].sp, 1234) == HN_OK, "init %s", cases[c].what);
        int counts[V] = {0};
        for (int i = 0; i < N; i++)
            counts[hn_sampler_next(&s, logits)]++;
        for (int v = 0; v < V; v++) {
            double q = cases[c].q[v], sigma = sqrt(N * q * (1 - q));
            if (q == 0)
                CHECK(counts[v] == 0, "%s: excluded token %d drawn %d times", cases[c].what, v,
                      counts[v]);
            else
                CHECK(fabs(counts[v] - N * q) <= 5 * sigma + 1, "%s: token %d: %d of %d, want %.0f",
                      cases[c].what, v, counts[v], N, N * q);
        }
        hn_sampler_free(&s);
    }

    /* the same seed gives the same draws; another seed other draws */
    HnSampleParams sp = {.temperature = 1.0f, .top_k = 0, .top_p = 0.95f};
    HnSampler a, b, c;
    hn_sampler_init(&a, V, &sp, 99);
    hn_sampler_init(&b, V, &sp, 99);
    hn_sampler_init(&c, V, &sp, 100);
    int equal = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = hn_sampler_next(&a, logits), y = hn_sampler_next(&b, logits);
        equal &= x == y;
        differ |= x != hn_sampler_next(&c, logits);
    }
    CHECK(equal, "same seed, different draws");
    CHECK(differ, "different seeds, same 200 draws");
    hn_sampler_free(&a);
    hn_sampler_free(&b);
    hn_sampler_free(&c);

    HnSampleParams bad[] = {{-1.0f, 0, 1.0f}, {1.0f, -1, 1.0f}, {1.0f, 0, 0.0f}, {1.0f, 0, 1.5f}};
    for (int i = 0; i < 4; i++)
        CHECK(hn_sampler_init(&s, V, &bad[i], 1) == HN_ERR, "bad params %d accepted", i);
}

static void test_scoring(HnArch arch) {
    enum { V = 83, T = 24 };
    HnModel hm;
    HnEvalModel* m = make_models(&hm, arch, V, T, 11);
    CHECK(m != NULL, "%s", hn_error_message());
    if (!m) return;
    HnRng rng;
    hn_rng_seed(&rng, 8);
    int ctx[40];
    for (int i = 0; i < 40; i++)
        ctx[i] = (int)hn_rng_below(&rng, V);
    HnTokens choices[3] = {{0}};
    int lens[3] = {1, 3, 5};
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < lens[c]; j++)
            hn_tokens_push(&choices[c], (int)hn_rng_below(&rng, V));

    /* a context that fits, then one of 40 > T - 5 tokens, cut to its rightmost 19 */
    int nctxs[2] = {7, 40};
    for (int k = 0; k < 2; k++) {
        double ll[3];
        int nctx = nctxs[k];
        CHECK(hn_eval_choices_loglik(m, ctx, nctx, choices, 3, ll) == HN_OK, "%s",
              hn_error_message());
        int keep = nctx < T - 5 ? nctx : T - 5;
        for (int c = 0; c < 3; c++) {
            double want = ref_loglik(&hm, ctx + nctx - keep, keep, choices[c].ids, lens[c]);
            CHECK(hn_close(ll[c], want, 0, 1e-4), "context %d, choice %d: %.6f vs %.6f", nctx, c,
                  ll[c], want);
        }
    }
    HnTokens too_long = {0};
    for (int j = 0; j < T; j++)
        hn_tokens_push(&too_long, 1);
    double ll1;
    CHECK(hn_eval_choices_loglik(m, ctx, 3, &too_long, 1, &ll1) == HN_ERR, "choice of T accepted");
    hn_tokens_free(&too_long);

    /* windowed NLL: 2 full windows of T targets and a tail of 5 targets (2T + 6 ids) */
    int ids[2 * T + 6];
    for (int i = 0; i < 2 * T + 6; i++)
        ids[i] = (int)hn_rng_below(&rng, V);
    double nll;
    size_t count;
    CHECK(hn_eval_nll(m, ids, 2 * T + 6, &nll, &count) == HN_OK, "%s", hn_error_message());
    double want = 0.0;
    for (int start = 0; start < 2 * T + 5; start += T) {
        int len = 2 * T + 5 - start < T ? 2 * T + 5 - start : T;
        hn_model_forward(&hm, ids + start, NULL, 1, len, 0.0f);
        for (int t = 0; t < len; t++)
            want -= log_prob(hm.act.logits + (size_t)t * hm.cfg.Vp, V, ids[start + t + 1]);
    }
    CHECK(count == 2 * T + 5, "targets scored %zu, want %d", count, 2 * T + 5);
    CHECK(hn_close(nll, want, 1e-5, 0), "nll %.6f vs %.6f", nll, want);
    /* exactly 2T + 1 ids: two windows, no tail */
    CHECK(hn_eval_nll(m, ids, 2 * T + 1, &nll, &count) == HN_OK && count == 2 * T, "count %zu",
          count);
    CHECK(hn_eval_nll(m, ids, 1, &nll, &count) == HN_OK && count == 0, "one id scores nothing");
    ids[5] = V;
    CHECK(hn_eval_nll(m, ids, 10, &nll, &count) == HN_ERR, "id V accepted");
    CHECK(strstr(hn_error_message(), "position 5") != NULL, "message: %s", hn_error_message());

    for (int c = 0; c < 3; c++)
        hn_tokens_free(&choices[c]);
    hn_eval_model_free(m);
    hn_model_free(&hm);
}

static char path_buf[4][1024];
static const char* tmp_path(int slot, const char* name) {
    const char* dir = hn_test_env("HONE_TEST_TMP");
    if (hn_mkdirs(dir) != HN_OK) {
        fprintf(stderr, "FAIL: %s\n", hn_error_message());
        exit(1);
    }
    snprintf(path_buf[slot], sizeof path_buf[slot], "%s/%s", dir, name);
    return path_buf[slot];
}

static FILE* open_or_die(const char* path) {
    FILE* f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    return f;
}

static void write_text(const char* path, const char* text) {
    FILE* f = open_or_die(path);
    fputs(text, f);
    fclose(f);
}

/* one JSONL line with proper escaping */
static void add_line(FILE* f, cJSON* o) {
    char* s = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* [eos] + bytes of s: the task's prompt encoding with the byte tokenizer */
static int byte_ids(const char* s, int* out) {
    int n = 0;
    out[n++] = 256;
    for (; *s; s++)
        out[n++] = (unsigned char)*s;
    return n;
}

/* the training model's greedy continuation of prompt (full recompute per token), cut at
 * eos, at a newline or after max tokens */
static void ref_greedy(HnModel* hm, const char* prompt, int max, char* out) {
    int seq[256], n = byte_ids(prompt, seq), k = 0;
    for (int i = 0; i < max; i++) {
        hn_model_forward(hm, seq, NULL, 1, n, 0.0f);
        const float* row = hm->act.logits + (size_t)(n - 1) * hm->cfg.Vp;
        int best = 0;
        for (int v = 1; v < hm->cfg.V; v++)
            if (row[v] > row[best]) best = v;
        if (best == 256 || best == '\n') break;
        out[k++] = (char)best;
        seq[n++] = best;
    }
    out[k] = '\0';
}

static void test_tasks_end_to_end(HnArch arch) {
    enum { V = 257, T = 64 };
    HnModel hm;
    HnEvalModel* m = make_models(&hm, arch, V, T, 21);
    HnTokenizer* tok = hn_tokenizer_byte();
    CHECK(m && tok, "%s", hn_error_message());
    if (!m || !tok) return;
    HnEvalResult r;

    /* mc: accuracy against the argmax of the reference log-likelihoods */
    const char* contexts[3] = {"The sky is", "", "1 + 1 ="};
    const char* opts[3][3] = {
        {" blue", " green", " loud"}, {"yes", "no", "maybe"}, {" 2", " 3", " eleven"}};
    int answers[3] = {0, 1, 2};
    const char* mc_path = tmp_path(0, "eval_mc.jsonl");
    FILE* f = open_or_die(mc_path);
    double want_acc = 0, want_norm = 0;
    for (int i = 0; i < 3; i++) {
        cJSON* o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "context", contexts[i]);
        cJSON_AddItemToObject(o, "choices", cJSON_CreateStringArray(opts[i], 3));
        cJSON_AddNumberToObject(o, "answer", answers[i]);
        add_line(f, o);
        if (i == 0) fputs("   \n", f); /* blank lines are skipped */
        int ctx[128], nctx = byte_ids(contexts[i], ctx), best = 0, best_norm = 0;
        double ll[3];
        for (int c = 0; c < 3; c++) {
            int ch[32], n = byte_ids(opts[i][c], ch) - 1;
            ll[c] = ref_loglik(&hm, ctx, nctx, ch + 1, n);
            if (ll[c] > ll[best]) best = c;
            if (ll[c] / n > ll[best_norm] / strlen(opts[i][best_norm])) best_norm = c;
        }
        want_acc += (best == answers[i]) / 3.0;
        want_norm += (best_norm == answers[i]) / 3.0;
    }
    fclose(f);
    HnEvalOptions o = {.task = "mc", .data = mc_path, .seed = 1, .max_tokens = 8};
    CHECK(hn_eval_run(m, tok, &o, &r) == HN_OK, "mc: %s", hn_error_message());
    CHECK(r.count == 3, "mc examples %zu", r.count);
    CHECK(hn_close(r.accuracy, want_acc, 0, 1e-12), "mc accuracy %g, want %g", r.accuracy,
          want_acc);
    CHECK(hn_close(r.accuracy_norm, want_norm, 0, 1e-12), "mc accuracy_norm %g, want %g",
          r.accuracy_norm, want_norm);
    o.shots = 2;
    CHECK(hn_eval_run(m, tok, &o, &r) == HN_OK && r.count == 3, "mc 2 shots: %s",
          hn_error_message());
    o.shots = 3;
    CHECK(hn_eval_run(m, tok, &o, &r) == HN_ERR && strstr(hn_error_message(), "shots"),
          "3 shots of 3 examples: %s", hn_error_message());

    /* gen: the first reference is the training model's own greedy continuation */
    char pred[64];
    ref_greedy(&hm, "Q: hi\nA:", 6, pred);
    const char* gen_path = tmp_path(1, "eval_gen.jsonl");
    f = open_or_die(gen_path);
    cJSON* g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "prompt", "hi");
    cJSON_AddStringToObject(g, "reference", pred);
    add_line(f, g);
    g = cJSON_CreateObject();
    cJSON_AddStringToObject(g, "prompt", "bye");
    cJSON_AddStringToObject(g, "reference", "zzz qqq");
    add_line(f, g);
    fclose(f);
    const char* tmpl = tmp_path(2, "eval_tmpl.txt");
    write_text(tmpl, "Q: {prompt}\nA:\n"); /* the trailing newline is dropped */
    HnEvalOptions go = {.task = "gen", .data = gen_path, .template_path = tmpl, .max_tokens = 6};
    CHECK(hn_eval_run(m, tok, &go, &r) == HN_OK, "gen: %s", hn_error_message());
    CHECK(r.count == 2, "gen examples %zu", r.count);
    char pred_b[64];
    ref_greedy(&hm, "Q: bye\nA:", 6, pred_b);
    double want_em = 0.5 + 0.5 * hn_exact_match(pred_b, "zzz qqq");
    double want_rouge = 0.5 * hn_rouge_l(pred, pred) + 0.5 * hn_rouge_l(pred_b, "zzz qqq");
    CHECK(hn_close(r.exact_match, want_em, 0, 1e-12), "gen exact_match %g, want %g (pred '%s')",
          r.exact_match, want_em, pred);
    CHECK(hn_close(r.rouge_l, want_rouge, 0, 1e-12), "gen rouge_l %g, want %g", r.rouge_l,
          want_rouge);
    go.shots = 1;
    CHECK(hn_eval_run(m, tok, &go, &r) == HN_OK && r.count == 2, "gen 1 shot: %s",
          hn_error_message());
    write_text(tmpl, "no placeholder\n");
    CHECK(hn_eval_run(m, tok, &go, &r) == HN_ERR && strstr(hn_error_message(), "{prompt}"),
          "template without {prompt}: %s", hn_error_message());

    /* bad JSONL: one error naming file:line */
    struct {
        const char* text;
        const char* want;
    } bad[] = {
        {"{\"context\": \"a\", \"choices\": [\"x\"], \"answer\": 0}\n{\"context\": \"a\",\n",
         "eval_bad.jsonl:2: not valid JSON"},
        {"{\"context\": \"a\", \"choices\": [\"x\", \"y\"], \"answer\": 2}\n",
         ":1: answer 2 is out"},
        {"{\"context\": \"a\", \"choices\": [], \"answer\": 0}\n", ":1: \"choices\" is empty"},
        {"{\"context\": \"a\", \"choices\": [\"x\", \"\"], \"answer\": 0}\n",
         ":1: choice 1 is empty"},
        {"{\"choices\": [\"x\"], \"answer\": 0}\n", ":1: needs a string \"context\""},
        {"[1, 2]\n", ":1: not a JSON object"},
        {"\n\n", "has no examples"},
    };
    const char* bad_path = tmp_path(3, "eval_bad.jsonl");
    HnEvalOptions bo = {.task = "mc", .data = bad_path, .max_tokens = 8};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(bad_path, bad[i].text);
        CHECK(hn_eval_run(m, tok, &bo, &r) == HN_ERR && strstr(hn_error_message(), bad[i].want),
              "bad input %zu: '%s' lacks '%s'", i, hn_error_message(), bad[i].want);
    }
    bo.data = tmp_path(3, "does_not_exist.jsonl");
    CHECK(hn_eval_run(m, tok, &bo, &r) == HN_ERR && strstr(hn_error_message(), "cannot read"),
          "missing file: %s", hn_error_message());

    /* ppl on text: end-of-text first, then the bytes */
    const char* text_path = tmp_path(3, "eval_text.txt");
    write_text(text_path, "hello hello hello");
    HnEvalOptions po = {.task = "ppl", .data = text_path};
    CHECK(hn_eval_run(m, tok, &po, &r) == HN_OK, "ppl text: %s", hn_error_message());
    int ids[32], n = byte_ids("hello hello hello", ids);
    double nll;
    size_t count;
    hn_eval_nll(m, ids, (size_t)n, &nll, &count);
    CHECK(r.count == 17 && hn_close(r.loss, nll / 17, 1e-12, 0) &&
              hn_close(r.ppl, exp(nll / 17), 1e-12, 0),
          "ppl text: %zu tokens, loss %g", r.count, r.loss);

    hn_tokenizer_free(tok);
    hn_eval_model_free(m);
    hn_model_free(&hm);
}

int main(void) {
    test_text_metrics();
    test_sampler();
    test_scoring(HN_ARCH_GPT2);
    test_scoring(HN_ARCH_LLAMA);
    test_tasks_end_to_end(HN_ARCH_GPT2);
    test_tasks_end_to_end(HN_ARCH_LLAMA);
    return hn_test_finish("test_eval_tasks");
}
