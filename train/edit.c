/* Rank-one knowledge edits (ROME, Meng et al. 2022); see edit.h. */
#include "train/edit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "data/dataset.h"
#include "data/h5.h"
#include "data/h5ckpt.h"
#include "kernels/ops.h"

void hn_edit_defaults(HnEditOptions* o, int nlayers) {
    o->layer = nlayers / 6; /* an early-middle MLP, where ROME finds subjects' facts */
    o->steps = 20;
    o->lr = 0.5f;
    o->kl_weight = 0.0625f;
    o->weight_decay = 0.5f;
    o->clamp = 4.0f;
    o->nprefix = 10;
    o->seed = 1;
}

/* ---- linear algebra ---- */

int hn_edit_cholesky(double* A, int F) {
    for (int j = 0; j < F; j++) {
        double* rj = A + (size_t)j * F;
        double s = rj[j];
        for (int k = 0; k < j; k++)
            s -= rj[k] * rj[k];
        if (!(s > 0)) return hn_error("the key covariance is not positive definite (column %d)", j);
        rj[j] = sqrt(s);
        const double inv = 1.0 / rj[j];
#pragma omp parallel for schedule(static)
        for (int i = j + 1; i < F; i++) {
            double* ri = A + (size_t)i * F;
            double t = ri[j];
            for (int k = 0; k < j; k++)
                t -= ri[k] * rj[k];
            ri[j] = t * inv;
        }
    }
    return HN_OK;
}

void hn_edit_cholesky_solve(const double* L, int F, double* b) {
    for (int i = 0; i < F; i++) { /* L y = b */
        double t = b[i];
        for (int k = 0; k < i; k++)
            t -= L[(size_t)i * F + k] * b[k];
        b[i] = t / L[(size_t)i * F + i];
    }
    for (int i = F - 1; i >= 0; i--) { /* L^T x = y */
        double t = b[i];
        for (int k = i + 1; k < F; k++)
            t -= L[(size_t)k * F + i] * b[k];
        b[i] = t / L[(size_t)i * F + i];
    }
}

void hn_edit_rank_one(float* W, int OC, int F, const float* delta, const double* u,
                      const float* k0) {
    double uk = 0;
    for (int f = 0; f < F; f++)
        uk += u[f] * k0[f];
#pragma omp parallel for schedule(static)
    for (int c = 0; c < OC; c++) {
        const double s = delta[c] / uk;
        float* w = W + (size_t)c * F;
        for (int f = 0; f < F; f++)
            w[f] = (float)(w[f] + s * u[f]);
    }
}

/* ---- loading ---- */

int hn_editor_open(HnEditor* e, const char* ckpt, int maxB, int maxT) {
    memset(e, 0, sizeof *e);
    e->layer = e->row = -1;
    HnH5* f = hn_ckpt_open(ckpt, &e->config_yaml);
    if (!f) return HN_ERR;
    char *bf = NULL, *bs = NULL;
    int rc = hn_ckpt_base_ref(f, &bf, &bs);
    HnConfig cfg;
    hn_config_defaults(&cfg);
    if (rc == HN_OK && bf)
        rc = hn_error("%s holds only a frozen-base run's add-ons (its base is %s): edit a whole "
                      "model",
                      ckpt, bf);
    free(bf);
    free(bs);
    if (rc == HN_OK) rc = hn_config_load_text(&cfg, e->config_yaml, ckpt);
    if (rc == HN_OK && cfg.peft.methods.n > 0)
        rc = hn_error("%s carries parameter-efficient add-ons: edit a whole model", ckpt);
    if (rc == HN_OK) {
        HnModelConfig mc = hn_model_config_of(&cfg);
        if (maxT > mc.maxT) maxT = mc.maxT;
        rc = hn_model_create(&e->model, &mc, maxB, maxT);
    }
    HnParamTable* t = &e->model.params;
    if (rc == HN_OK) rc = hn_ckpt_read_rows(f, "model", t, t->data, HN_ROWS_BASE);
    if (rc == HN_OK) rc = hn_ckpt_tokenizer(f, &e->tok);
    if (rc == HN_OK && !e->tok)
        rc = hn_error("%s carries no tokenizer: edits are written as text", ckpt);
    if (rc == HN_OK) rc = hn_h5_read_attr_str(f, "/", "arch", &e->arch);
    int64_t opt_t = 0;
    if (rc == HN_OK) rc = hn_ckpt_counters(f, &e->step, &e->tokens, &opt_t);
    hn_h5_close(f);
    if (rc != HN_OK) return HN_ERR;
    for (int i = 0; i < t->n; i++)
        t->rows[i].trainable = 0; /* nothing trains: the backward yields the probe's gradient */
    if (hn_model_relayout_grads(&e->model) != HN_OK) return HN_ERR;
    e->maxB = maxB;
    e->maxT = maxT;
    e->F = e->model.cfg.F;
    return HN_OK;
}

void hn_editor_close(HnEditor* e) {
    hn_model_free(&e->model);
    if (e->tok) hn_tokenizer_free(e->tok);
    free(e->config_yaml);
    free(e->arch);
    free(e->chol);
    free(e->saved);
    memset(e, 0, sizeof *e);
}

/* the document start (where the tokenizer has one) and text */
static int encode(const HnEditor* e, const char* text, size_t len, HnTokens* out) {
    out->n = 0;
    int start = hn_tokenizer_doc_start(e->tok);
    if (start >= 0 && hn_tokens_push(out, start) != HN_OK) return HN_ERR;
    return hn_tokenizer_encode(e->tok, text, len, out);
}

/* ---- the key covariance ---- */

static int read_text(const char* path, char** text, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return hn_error("cannot read %s", path);
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char* bigger = realloc(buf, cap *= 2);
        if (!bigger) free(buf);
        buf = bigger;
    }
    fclose(f);
    if (!buf) return hn_error("out of memory reading %s", path);
    *text = buf;
    *len = n;
    return HN_OK;
}

/* the covariance's tokens: windows of T from shards, or one tokenized text cut into T */
static int covariance_tokens(HnEditor* e, const char* data, size_t max_tokens, HnTokens* ids) {
    const int T = e->maxT;
    size_t n = strlen(data);
    int shards = strpbrk(data, "*?[") || (n >= 4 && strcmp(data + n - 4, ".bin") == 0);
    if (shards) {
        HnLoader ld;
        if (hn_loader_open(&ld, data, 1, T, e->model.cfg.V, 0, 0) != HN_OK) return HN_ERR;
        int* tok = malloc((size_t)2 * T * sizeof(int));
        int rc = tok ? HN_OK : hn_error("out of memory");
        size_t windows = hn_loader_windows(&ld);
        for (size_t w = 0; rc == HN_OK && w < windows && ids->n + T <= max_tokens; w++) {
            rc = hn_loader_next(&ld, tok, tok + T);
            for (int t = 0; rc == HN_OK && t < T; t++)
                rc = hn_tokens_push(ids, tok[t]);
        }
        free(tok);
        hn_loader_close(&ld);
        return rc;
    }
    char* text = NULL;
    size_t len = 0;
    if (read_text(data, &text, &len) != HN_OK) return HN_ERR;
    /* a long text is cut first: tokenizing far past max_tokens is wasted */
    if (len > 16 * max_tokens) len = 16 * max_tokens;
    int rc = encode(e, text, len, ids);
    free(text);
    if (rc == HN_OK && ids->n > max_tokens) ids->n = max_tokens;
    for (size_t i = 0; rc == HN_OK && i < ids->n; i++)
        if (ids->ids[i] >= e->model.cfg.V)
            rc = hn_error("%s: token %d is outside the model's vocabulary", data, ids->ids[i]);
    return rc;
}

int hn_editor_covariance(HnEditor* e, int layer, const char* data, size_t max_tokens) {
    HnModel* m = &e->model;
    const int F = e->F, T = e->maxT;
    if (layer < 0 || layer >= m->cfg.L)
        return hn_error("layer %d does not exist (the model has %d: 0..%d)", layer, m->cfg.L,
                        m->cfg.L - 1);
    HnTokens ids = {0};
    if (covariance_tokens(e, data, max_tokens, &ids) != HN_OK) {
        hn_tokens_free(&ids);
        return HN_ERR;
    }
    if (ids.n < (size_t)F)
        return hn_tokens_free(&ids),
               hn_error("%s gives %zu tokens; the key covariance of a %d-wide MLP needs at least "
                        "%d (more is better: ROME uses 100000)",
                        data, ids.n, F, 4 * F);
    double* acc = calloc((size_t)F * F, sizeof(double));
    float* part = malloc((size_t)F * F * sizeof(float));
    free(e->chol);
    e->chol = acc;
    e->layer = -1;
    if (!acc || !part) {
        free(part);
        hn_tokens_free(&ids);
        return hn_error("out of memory for a %d x %d covariance", F, F);
    }
    m->stop_blocks = layer + 1;
    size_t count = 0;
    for (size_t at = 0; at < ids.n;) {
        /* up to maxB windows of T (the last may be shorter) */
        int B = 0, Tb = T;
        size_t left = ids.n - at;
        if (left < (size_t)T) {
            Tb = (int)left;
            B = 1;
        } else {
            B = (int)(left / T < (size_t)e->maxB ? left / T : (size_t)e->maxB);
        }
        hn_model_forward(m, ids.ids + at, NULL, B, Tb, 0.0f);
        const int N = B * Tb;
        hn_gemm(1, 0, F, F, N, 1.0f, m->act.layer[layer].fch_gelu, F, m->act.layer[layer].fch_gelu,
                F, 0.0f, part, F);
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < (size_t)F * F; i++)
            acc[i] += part[i];
        count += (size_t)N;
        at += (size_t)N;
    }
    m->stop_blocks = 0;
    free(part);
    hn_tokens_free(&ids);
    double trace = 0;
    for (int i = 0; i < F; i++)
        trace += acc[(size_t)i * F + i];
    const double ridge = 1e-3 * trace / ((double)count * F);
    for (size_t i = 0; i < (size_t)F * F; i++)
        acc[i] /= (double)count;
    for (int i = 0; i < F; i++)
        acc[(size_t)i * F + i] += ridge;
    if (hn_edit_cholesky(acc, F) != HN_OK) return HN_ERR;
    e->cov_n = count;
    e->layer = layer;
    return HN_OK;
}

/* ---- sequences ---- */

char* hn_edit_fill(const char* prompt, const char* subject) {
    const char* at = strstr(prompt, "{}");
    size_t skip = 2;
    if (!at) {
        at = strstr(prompt, subject);
        skip = strlen(subject);
    }
    if (!at || !*subject) {
        hn_error("the prompt \"%s\" holds neither {} nor the subject \"%s\"", prompt, subject);
        return NULL;
    }
    size_t a = (size_t)(at - prompt), s = strlen(subject), b = strlen(at + skip);
    char* out = malloc(a + s + b + 1);
    if (!out) {
        hn_error("out of memory");
        return NULL;
    }
    memcpy(out, prompt, a);
    memcpy(out + a, subject, s);
    memcpy(out + a + s, at + skip, b + 1);
    return out;
}

/* ids of prefix + prompt (subject filled in), and the index of the subject's last token */
static int prompt_ids(const HnEditor* e, const char* prefix, const char* prompt,
                      const char* subject, HnTokens* ids, int* last) {
    char* filled = hn_edit_fill(prompt, subject);
    if (!filled) return HN_ERR;
    const char* mark = strstr(prompt, "{}");
    size_t upto = mark ? (size_t)(mark - prompt) + strlen(subject)
                       : (size_t)(strstr(prompt, subject) - prompt) + strlen(subject);
    size_t pl = strlen(prefix), fl = strlen(filled);
    char* text = malloc(pl + fl + 1);
    int rc = text ? HN_OK : hn_error("out of memory");
    if (rc == HN_OK) {
        memcpy(text, prefix, pl);
        memcpy(text + pl, filled, fl + 1);
    }
    HnTokens head = {0};
    if (rc == HN_OK) rc = encode(e, text, pl + upto, &head);
    if (rc == HN_OK) rc = encode(e, text, pl + fl, ids);
    if (rc == HN_OK && (head.n == 0 || head.n > ids->n))
        rc = hn_error("the subject \"%s\" gives no token", subject);
    if (rc == HN_OK) *last = (int)head.n - 1;
    hn_tokens_free(&head);
    free(text);
    free(filled);
    return rc;
}

/* ROME's context prefixes, sampled once per editor: n texts, half of 5 and half of 10
 * generated tokens after one of five starts, each then followed by ". " */
static int sample_prefixes(HnEditor* e, int n, uint64_t seed, char** out) {
    static const char* starts[] = {"The", "Therefore", "Because", "I", "You"};
    HnModel* m = &e->model;
    const int V = m->cfg.V;
    if (n > e->maxB) return hn_error("%d prefixes do not fit %d sequences", n, e->maxB);
    HnTokens* seq = calloc((size_t)n, sizeof *seq);
    int *want = calloc((size_t)n, sizeof *want), *first = calloc((size_t)n, sizeof *first);
    int* tokens = malloc((size_t)e->maxB * e->maxT * sizeof(int));
    int rc = seq && want && first && tokens ? HN_OK : hn_error("out of memory");
    HnRng rng;
    hn_rng_seed(&rng, seed);
    int longest = 0;
    for (int i = 0; rc == HN_OK && i < n; i++) {
        rc = encode(e, starts[i % 5], strlen(starts[i % 5]), &seq[i]);
        first[i] = hn_tokenizer_doc_start(e->tok) >= 0; /* where the text starts */
        want[i] = (int)seq[i].n + (i < (n + 1) / 2 ? 5 : 10);
        if (want[i] > longest) longest = want[i];
    }
    if (rc == HN_OK && longest > e->maxT)
        rc = hn_error("prefixes of %d tokens do not fit %d", longest, e->maxT);
    for (int step = 0; rc == HN_OK; step++) {
        int T = 0, busy = 0;
        for (int i = 0; i < n; i++) {
            if ((int)seq[i].n > T) T = (int)seq[i].n;
            busy |= (int)seq[i].n < want[i];
        }
        if (!busy) break;
        for (int i = 0; i < n; i++)
            for (int t = 0; t < T; t++)
                tokens[i * T + t] = t < (int)seq[i].n ? seq[i].ids[t] : 0;
        hn_model_forward(m, tokens, NULL, n, T, 0.0f);
        for (int i = 0; rc == HN_OK && i < n; i++) {
            if ((int)seq[i].n >= want[i]) continue;
            const float* z = hn_model_logits(m, i, (int)seq[i].n - 1);
            int top[5];
            for (int k = 0; k < 5; k++)
                top[k] = -1;
            for (int v = 0; v < V; v++) /* the five largest logits */
                for (int k = 0; k < 5; k++)
                    if (top[k] < 0 || z[v] > z[top[k]]) {
                        for (int q = 4; q > k; q--)
                            top[q] = top[q - 1];
                        top[k] = v;
                        break;
                    }
            double p[5], sum = 0;
            for (int k = 0; k < 5; k++)
                sum += p[k] = exp((double)z[top[k]] - z[top[0]]);
            double r = hn_rng_uniform(&rng) * sum;
            int pick = 4;
            for (int k = 0; k < 5; k++) {
                if (r < p[k]) {
                    pick = k;
                    break;
                }
                r -= p[k];
            }
            rc = hn_tokens_push(&seq[i], top[pick]);
        }
    }
    for (int i = 0; rc == HN_OK && i < n; i++) {
        size_t len;
        char* text = hn_tokenizer_decode(e->tok, seq[i].ids + first[i], seq[i].n - first[i], &len);
        char* pre = text ? malloc(len + 3) : NULL;
        if (!pre) {
            free(text);
            rc = hn_error("out of memory");
            break;
        }
        for (size_t k = 0; k < len; k++) /* one line: braces and line breaks become spaces */
            pre[k] = text[k] == '{' || text[k] == '}' || text[k] == '\n' || text[k] == '\r'
                         ? ' '
                         : text[k];
        memcpy(pre + len, ". ", 3);
        free(text);
        out[i] = pre;
    }
    for (int i = 0; seq && i < n; i++)
        hn_tokens_free(&seq[i]);
    free(seq);
    free(want);
    free(first);
    free(tokens);
    return rc;
}

/* ---- the edit ---- */

static int row_of(const HnModel* m, int layer, const char* what) {
    char name[96];
    snprintf(name, sizeof name, "layers.%d.mlp.down.%s", layer, what);
    return hn_params_find(&m->params, name);
}

void hn_editor_restore(HnEditor* e) {
    if (e->row < 0) return;
    const HnParamRow* r = &e->model.params.rows[e->row];
    memcpy(e->model.params.data + r->offset, e->saved, r->numel * sizeof(float));
    e->row = -1;
}

/* log-softmax of z (V) into lp (double) */
static void log_softmax(const float* z, int V, double* lp) {
    double mx = z[0], sum = 0;
    for (int v = 1; v < V; v++)
        if (z[v] > mx) mx = z[v];
    for (int v = 0; v < V; v++)
        sum += exp((double)z[v] - mx);
    const double lse = mx + log(sum);
    for (int v = 0; v < V; v++)
        lp[v] = (double)z[v] - lse;
}

int hn_editor_apply(HnEditor* e, const HnEditRequest* r, const HnEditOptions* o, HnEditStats* st) {
    HnModel* m = &e->model;
    const int C = m->cfg.C, F = e->F, V = m->cfg.V, Vp = m->cfg.Vp, l = o->layer;
    memset(st, 0, sizeof *st);
    if (e->layer != l || !e->chol)
        return hn_error("internal: the key covariance is of layer %d, the edit of layer %d",
                        e->layer, l);
    hn_editor_restore(e);
    const int wrow = row_of(m, l, "weight"), brow = row_of(m, l, "bias");
    if (wrow < 0) return hn_error("the model has no layers.%d.mlp.down.weight", l);
    const int S = 1 + o->nprefix, nseq = S + 1; /* the prompts, then "{} is a" */
    if (nseq > e->maxB)
        return hn_error("%d prefixes need more than %d sequences", o->nprefix, e->maxB - 2);
    char* prefixes[64] = {0};
    if (o->nprefix > 64) return hn_error("at most 64 prefixes");
    if (sample_prefixes(e, o->nprefix, o->seed, prefixes) != HN_OK) return HN_ERR;

    HnTokens target = {0}, seq[66];
    memset(seq, 0, sizeof seq);
    int at[66], ends[66], T = 0, count = 0;
    int rc = hn_tokenizer_encode(e->tok, r->target, strlen(r->target), &target);
    if (rc == HN_OK && target.n == 0) rc = hn_error("the target \"%s\" gives no token", r->target);
    for (int i = 0; rc == HN_OK && i < nseq; i++) {
        const char* prefix = i > 0 && i < S ? prefixes[i - 1] : "";
        rc = prompt_ids(e, prefix, i < S ? r->prompt : "{} is a", r->subject, &seq[i], &at[i]);
        ends[i] = (int)seq[i].n;
        for (size_t j = 0; rc == HN_OK && i < S && j + 1 < target.n; j++)
            rc = hn_tokens_push(&seq[i], target.ids[j]);
        if ((int)seq[i].n > T) T = (int)seq[i].n;
    }
    if (rc == HN_OK && T > e->maxT)
        rc = hn_error("the prompt with its prefixes is %d tokens; at most %d fit", T, e->maxT);
    const size_t N = (size_t)nseq * (size_t)(T > 0 ? T : 1);
    int* tokens = malloc(N * sizeof(int));
    int* targets = malloc(N * sizeof(int));
    float* delta = calloc((size_t)C, sizeof(float));
    float* ddelta = calloc((size_t)C, sizeof(float));
    float* am = calloc((size_t)C, sizeof(float));
    float* av = calloc((size_t)C, sizeof(float));
    float* k0 = malloc((size_t)F * sizeof(float));
    double* u = calloc((size_t)F, sizeof(double));
    double* lp0 = malloc((size_t)V * sizeof(double));
    double* lp = malloc((size_t)V * sizeof(double));
    float* klg = malloc((size_t)V * sizeof(float));
    if (rc == HN_OK &&
        !(tokens && targets && delta && ddelta && am && av && k0 && u && lp0 && lp && klg))
        rc = hn_error("out of memory");
    if (rc == HN_OK) {
        for (int i = 0; i < nseq; i++)
            for (int t = 0; t < T; t++) {
                tokens[i * T + t] = t < (int)seq[i].n ? seq[i].ids[t] : 0;
                int j = t - (ends[i] - 1); /* the target token predicted at t */
                int counted = i < S && j >= 0 && j < (int)target.n;
                targets[i * T + t] = counted ? target.ids[j] : HN_IGNORE;
                count += counted;
            }
        m->probe.layer = l;
        m->probe.at = at;
        m->probe.delta = delta;
        m->probe.ddelta = ddelta;
    }
    double v0n = 0;
    const float* W = m->params.data + m->params.rows[wrow].offset;
    if (rc == HN_OK) {
        /* the unedited model: keys, the essence distribution, the object's loss */
        hn_model_forward(m, tokens, NULL, nseq, T, 0.0f);
        const float* keys = m->act.layer[l].fch_gelu;
        memcpy(k0, keys + (size_t)at[0] * F, (size_t)F * sizeof(float));
        for (int i = 0; i < S; i++)
            for (int f = 0; f < F; f++)
                u[f] += keys[((size_t)i * T + at[i]) * F + f] / (double)S;
        log_softmax(hn_model_logits(m, S, at[S]), V, lp0);
        for (int c = 0; c < C; c++) {
            double v = brow >= 0 ? m->params.data[m->params.rows[brow].offset + c] : 0.0;
            for (int f = 0; f < F; f++)
                v += (double)W[(size_t)c * F + f] * k0[f];
            v0n += v * v;
        }
        v0n = sqrt(v0n);
        st->v0_norm = v0n;
        st->loss_before =
            hn_crossentropy_forward(m->act.logits, m->act.losses, targets, nseq * T, V, Vp, 0.0f) /
            count;
    }
    const int floor = m->grad_floor;
    m->grad_floor = l;
    double nll = st->loss_before;
    for (int s = 0; rc == HN_OK && s < o->steps && nll >= 0.05; s++) {
        memset(ddelta, 0, (size_t)C * sizeof(float));
        hn_model_forward(m, tokens, NULL, nseq, T, 0.0f);
        /* KL(p || p_before) at the subject in "{} is a": dKL/dz_v = p_v (lp_v - lp0_v - KL) */
        const float* ze = hn_model_logits(m, S, at[S]);
        log_softmax(ze, V, lp);
        double kl = 0;
        for (int v = 0; v < V; v++)
            kl += exp(lp[v]) * (lp[v] - lp0[v]);
        for (int v = 0; v < V; v++)
            klg[v] = (float)(o->kl_weight * exp(lp[v]) * (lp[v] - lp0[v] - kl));
        nll = hn_crossentropy_forward(m->act.logits, m->act.losses, targets, nseq * T, V, Vp,
                                      1.0f / (float)count) /
              count;
        memcpy(hn_model_logits(m, S, at[S]), klg, (size_t)V * sizeof(float));
        hn_model_backward(m);
        double dn = 0;
        for (int c = 0; c < C; c++)
            dn += (double)delta[c] * delta[c];
        dn = sqrt(dn);
        /* Adam (beta 0.9, 0.999), then the clamp */
        const double b1 = 0.9, b2 = 0.999, t = s + 1;
        for (int c = 0; c < C; c++) {
            double g = ddelta[c] + (dn > 0 ? o->weight_decay * delta[c] / (dn * v0n * v0n) : 0);
            am[c] = (float)(b1 * am[c] + (1 - b1) * g);
            av[c] = (float)(b2 * av[c] + (1 - b2) * g * g);
            double mh = am[c] / (1 - pow(b1, t)), vh = av[c] / (1 - pow(b2, t));
            delta[c] -= (float)(o->lr * mh / (sqrt(vh) + 1e-8));
        }
        dn = 0;
        for (int c = 0; c < C; c++)
            dn += (double)delta[c] * delta[c];
        dn = sqrt(dn);
        if (dn > o->clamp * v0n)
            for (int c = 0; c < C; c++)
                delta[c] = (float)(delta[c] * (o->clamp * v0n / dn));
        st->steps = s + 1;
    }
    m->grad_floor = floor;
    if (rc == HN_OK) {
        hn_model_forward(m, tokens, NULL, nseq, T, 0.0f);
        st->loss_after =
            hn_crossentropy_forward(m->act.logits, m->act.losses, targets, nseq * T, V, Vp, 0.0f) /
            count;
        double dn = 0;
        for (int c = 0; c < C; c++)
            dn += (double)delta[c] * delta[c];
        st->delta_norm = sqrt(dn);
        /* u = C_k^{-1} k_mean; W += delta u^T / (u . k0) */
        hn_edit_cholesky_solve(e->chol, F, u);
        const HnParamRow* row = &m->params.rows[wrow];
        float* saved = realloc(e->saved, row->numel * sizeof(float));
        if (!saved) {
            rc = hn_error("out of memory");
        } else {
            e->saved = saved;
            memcpy(saved, m->params.data + row->offset, row->numel * sizeof(float));
            e->row = wrow;
            hn_edit_rank_one(m->params.data + row->offset, C, F, delta, u, k0);
        }
    }
    m->probe.layer = -1;
    m->probe.at = NULL;
    m->probe.delta = m->probe.ddelta = NULL;
    for (int i = 0; i < 66; i++)
        hn_tokens_free(&seq[i]);
    hn_tokens_free(&target);
    for (int i = 0; i < 64; i++)
        free(prefixes[i]);
    free(tokens), free(targets), free(delta), free(ddelta), free(am), free(av), free(k0);
    free(u), free(lp0), free(lp), free(klg);
    return rc;
}

/* ---- scoring ---- */

int hn_editor_score(HnEditor* e, const char* text, const char* target, double* logp, int* top) {
    HnModel* m = &e->model;
    const int V = m->cfg.V;
    HnTokens ids = {0}, tg = {0};
    int rc = encode(e, text, strlen(text), &ids);
    if (rc == HN_OK) rc = hn_tokenizer_encode(e->tok, target, strlen(target), &tg);
    if (rc == HN_OK && (tg.n == 0 || ids.n == 0)) rc = hn_error("nothing to score");
    const int n0 = (int)ids.n;
    for (size_t j = 0; rc == HN_OK && j + 1 < tg.n; j++)
        rc = hn_tokens_push(&ids, tg.ids[j]);
    if (rc == HN_OK && (int)ids.n > e->maxT)
        rc = hn_error("\"%s\" is longer than %d tokens", text, e->maxT);
    double* lp = rc == HN_OK ? malloc((size_t)V * sizeof(double)) : NULL;
    if (rc == HN_OK && !lp) rc = hn_error("out of memory");
    if (rc == HN_OK) {
        hn_model_forward(m, ids.ids, NULL, 1, (int)ids.n, 0.0f);
        *logp = 0;
        for (size_t j = 0; j < tg.n; j++) {
            const float* z = hn_model_logits(m, 0, n0 - 1 + (int)j);
            log_softmax(z, V, lp);
            *logp += lp[tg.ids[j]];
            if (j == 0) {
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (z[v] > z[best]) best = v;
                *top = best == tg.ids[0];
            }
        }
    }
    free(lp);
    hn_tokens_free(&ids);
    hn_tokens_free(&tg);
    return rc;
}

int hn_editor_next(HnEditor* e, const char* text, float* probs, int* top) {
    HnModel* m = &e->model;
    const int V = m->cfg.V;
    HnTokens ids = {0};
    int rc = encode(e, text, strlen(text), &ids);
    if (rc == HN_OK && (ids.n == 0 || (int)ids.n > e->maxT))
        rc = hn_error("\"%s\" does not fit %d tokens", text, e->maxT);
    double* lp = rc == HN_OK ? malloc((size_t)V * sizeof(double)) : NULL;
    if (rc == HN_OK && !lp) rc = hn_error("out of memory");
    if (rc == HN_OK) {
        hn_model_forward(m, ids.ids, NULL, 1, (int)ids.n, 0.0f);
        log_softmax(hn_model_logits(m, 0, (int)ids.n - 1), V, lp);
        *top = 0;
        for (int v = 0; v < V; v++) {
            probs[v] = (float)exp(lp[v]);
            if (lp[v] > lp[*top]) *top = v;
        }
    }
    free(lp);
    hn_tokens_free(&ids);
    return rc;
}

int hn_editor_save(HnEditor* e, const char* out, int deflate) {
    HnCkptSave s = {.config_yaml = e->config_yaml,
                    .arch = e->arch,
                    .step = e->step,
                    .tokens = e->tokens,
                    .params = &e->model.params,
                    .best_val_loss = NAN,
                    .tokenizer = e->tok,
                    .deflate = deflate};
    return hn_ckpt_save(out, &s);
}
