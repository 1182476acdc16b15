/*
 * The pieces of a rank-one knowledge edit (train/edit.h), each against an independent
 * reference:
 *   - the model's probe (a vector added to one block's MLP output at one position per
 *     sequence): its gradient, from a backward with every parameter frozen that stops at the
 *     probed block, equals central finite differences of the loss (GPT-2 and Llama);
 *   - the Cholesky factor and solve: A x = b for a random symmetric positive definite A;
 *   - the update W' = W + delta u^T / (u . k0): W' k0 = W k0 + delta, and a key k with
 *     u . k = 0 maps as before;
 *   - filling the prompt: "{}" or the subject itself marks the place, neither is an error.
 * The real-model check (8 of 10 edits on SmolLM2) is tests/cli/test_cli_edit.sh.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "testing.h"
#include "train/edit.h"
#include "train/model.h"

static void die(void) {
    fprintf(stderr, "FAIL: %s\n", hn_error_message());
    exit(1);
}

static void check_probe(const char* name, const char* yaml) {
    enum { B = 2, T = 7, LAYER = 1 };
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (hn_config_load_text(&cfg, yaml, "model") != HN_OK) die();
    HnModelConfig mc = hn_model_config_of(&cfg);
    HnModel m;
    if (hn_model_create(&m, &mc, B, T) != HN_OK) die();
    hn_model_init(&m, 0.3f, 4);
    for (int i = 0; i < m.params.n; i++)
        m.params.rows[i].trainable = 0;
    if (hn_model_relayout_grads(&m) != HN_OK) die();
    const int C = m.cfg.C, V = m.cfg.V;
    HnRng rng;
    hn_rng_seed(&rng, 8);
    int tokens[B * T], targets[B * T], at[B] = {2, 4}, count = 0;
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int)hn_rng_below(&rng, (uint64_t)V);
        targets[i] = i % T >= 3 ? (int)hn_rng_below(&rng, (uint64_t)V) : HN_IGNORE;
        count += targets[i] != HN_IGNORE;
    }
    float delta[64], ddelta[64];
    for (int c = 0; c < C; c++)
        delta[c] = 0.5f * hn_rng_normal(&rng), ddelta[c] = 0;
    m.probe.layer = LAYER;
    m.probe.at = at;
    m.probe.delta = delta;
    m.probe.ddelta = ddelta;
    m.grad_floor = LAYER;
    hn_model_forward(&m, tokens, targets, B, T, 1.0f / (float)count);
    hn_model_backward(&m);
    m.probe.ddelta = NULL;
    double worst = 0;
    for (int c = 0; c < C; c++) {
        const double h = 1e-2;
        const float keep = delta[c];
        delta[c] = keep + (float)h;
        double lp = hn_model_forward(&m, tokens, targets, B, T, 0.0f) / count;
        delta[c] = keep - (float)h;
        double lm = hn_model_forward(&m, tokens, targets, B, T, 0.0f) / count;
        delta[c] = keep;
        double fd = (lp - lm) / (2 * h), err = fabs(fd - ddelta[c]) / (1e-2 * fabs(fd) + 2e-4);
        CHECK(err <= 1.0, "%s: d loss / d delta[%d]: probe %.6g, finite difference %.6g", name, c,
              ddelta[c], fd);
        if (err > worst) worst = err;
    }
    /* the probe moves the loss at all (the test is not blind) and off means off */
    double with = hn_model_forward(&m, tokens, targets, B, T, 0.0f);
    m.probe.layer = -1;
    double without = hn_model_forward(&m, tokens, targets, B, T, 0.0f);
    CHECK(fabs(with - without) > 1e-3, "%s: the probe does not change the loss", name);
    printf("%-6s probe gradient: worst error %.2f of the tolerance over %d entries\n", name, worst,
           C);
    hn_model_free(&m);
}

static void check_linear_algebra(void) {
    enum { F = 37, OC = 5 };
    HnRng rng;
    hn_rng_seed(&rng, 3);
    double X[2 * F][F], A[F * F], L[F * F], b[F], x[F];
    for (int i = 0; i < 2 * F; i++)
        for (int j = 0; j < F; j++)
            X[i][j] = hn_rng_normal(&rng);
    for (int i = 0; i < F; i++)
        for (int j = 0; j < F; j++) {
            double s = i == j ? 0.1 : 0.0;
            for (int k = 0; k < 2 * F; k++)
                s += X[k][i] * X[k][j];
            A[i * F + j] = L[i * F + j] = s;
        }
    CHECK(hn_edit_cholesky(L, F) == HN_OK, "%s", hn_error_message());
    for (int i = 0; i < F; i++)
        b[i] = x[i] = hn_rng_normal(&rng);
    hn_edit_cholesky_solve(L, F, x);
    double worst = 0;
    for (int i = 0; i < F; i++) {
        double s = 0;
        for (int j = 0; j < F; j++)
            s += A[i * F + j] * x[j];
        if (fabs(s - b[i]) > worst) worst = fabs(s - b[i]);
    }
    CHECK(worst < 1e-9, "A x - b = %.3g after the Cholesky solve", worst);
    double notpd[4] = {1, 2, 2, 1};
    CHECK(hn_edit_cholesky(notpd, 2) == HN_ERR, "an indefinite matrix must be refused");

    /* the rank-one update */
    float W[OC * F], W0[OC * F], k0[F], k1[F], delta[OC];
    double u[F];
    for (int i = 0; i < OC * F; i++)
        W[i] = W0[i] = hn_rng_normal(&rng);
    for (int f = 0; f < F; f++)
        k0[f] = hn_rng_normal(&rng), u[f] = hn_rng_normal(&rng), k1[f] = hn_rng_normal(&rng);
    for (int c = 0; c < OC; c++)
        delta[c] = hn_rng_normal(&rng);
    double uk1 = 0, uu = 0; /* k1 made orthogonal to u */
    for (int f = 0; f < F; f++)
        uk1 += u[f] * k1[f], uu += u[f] * u[f];
    for (int f = 0; f < F; f++)
        k1[f] = (float)(k1[f] - uk1 / uu * u[f]);
    hn_edit_rank_one(W, OC, F, delta, u, k0);
    double e0 = 0, e1 = 0;
    for (int c = 0; c < OC; c++) {
        double y0 = 0, y = 0, z0 = 0, z = 0;
        for (int f = 0; f < F; f++) {
            y0 += (double)W0[c * F + f] * k0[f], y += (double)W[c * F + f] * k0[f];
            z0 += (double)W0[c * F + f] * k1[f], z += (double)W[c * F + f] * k1[f];
        }
        if (fabs(y - (y0 + delta[c])) > e0) e0 = fabs(y - (y0 + delta[c]));
        if (fabs(z - z0) > e1) e1 = fabs(z - z0);
    }
    CHECK(e0 < 1e-4, "W' k0 - (W k0 + delta) = %.3g", e0);
    CHECK(e1 < 1e-4, "a key orthogonal to u moved by %.3g", e1);
}

static void check_fill(void) {
    char* s = hn_edit_fill("The {} is in", "Eiffel Tower");
    CHECK(s && !strcmp(s, "The Eiffel Tower is in"), "fill {}: %s", s ? s : "(null)");
    free(s);
    s = hn_edit_fill("The Eiffel Tower is in", "Eiffel Tower");
    CHECK(s && !strcmp(s, "The Eiffel Tower is in"), "fill verbatim: %s", s ? s : "(null)");
    free(s);
    s = hn_edit_fill("It is in", "Eiffel Tower");
    CHECK(!s && strstr(hn_error_message(), "neither {} nor the subject"), "no subject: %s",
          hn_error_message());
}

int main(void) {
    check_probe("gpt2", "model: {layers: 3, channels: 16, heads: 2, vocab: 40, context: 8}");
    check_probe("llama", "model: {arch: llama, layers: 3, channels: 16, heads: 4, kv_heads: 2, "
                         "ffn: 24, vocab: 40, context: 8}");
    check_linear_algebra();
    check_fill();
    return hn_test_finish("test_edit");
}
