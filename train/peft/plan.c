/*
 * Which add-ons a config asks for and where they go (see peft.h): resolving target
 * patterns to the sites of each block, the add-on rows in the parameter table, the frozen
 * base, PEFT's initialisation, and the count of trainable parameters per method.
 */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/ops.h"
#include "train/peft/internal.h"
#include "train/peft/peft.h"

static const char* const SITE_NAMES[HN_NLIN] = {"attn.qkv", "attn.q", "attn.k",   "attn.v",
                                                "attn.o",   "mlp.up", "mlp.gate", "mlp.down"};

const char* hn_peft_site_name(HnLinear lin) {
    return SITE_NAMES[lin];
}

/* the model's shape, as the plan needs it */
typedef struct {
    int gpt2, L, C, Q, KV, F;
} Shape;

static Shape shape_of(const HnConfig* cfg) {
    Shape s;
    s.gpt2 = strcmp(cfg->model.arch, "llama") != 0;
    s.L = cfg->model.layers;
    s.C = cfg->model.channels;
    int NH = cfg->model.heads, NKV = cfg->model.kv_heads ? cfg->model.kv_heads : NH;
    int HS = NH > 0 ? s.C / NH : 0;
    s.Q = NH * HS;
    s.KV = NKV * HS;
    s.F = cfg->model.ffn ? cfg->model.ffn : 4 * s.C;
    return s;
}

/* A site of the block: the base linear it lives on, its (in, base_out) shape and, for a
 * slice of gpt2's fused projection, its columns. Returns 0 where the architecture has no
 * such site. */
static int site_of(const Shape* s, HnLinear site, HnLinear* lin, int* in, int* base_out, int* off,
                   int* out) {
    int C = s->C;
    *off = 0;
    if (s->gpt2) {
        switch (site) {
        case HN_LIN_QKV:
        case HN_LIN_Q:
        case HN_LIN_K:
        case HN_LIN_V:
            *lin = HN_LIN_QKV;
            *in = C;
            *base_out = 3 * C;
            *off = site == HN_LIN_QKV ? 0 : (site - HN_LIN_Q) * C;
            *out = site == HN_LIN_QKV ? 3 * C : C;
            return 1;
        case HN_LIN_O:
            *lin = site, *in = C, *base_out = *out = C;
            return 1;
        case HN_LIN_UP:
            *lin = site, *in = C, *base_out = *out = s->F;
            return 1;
        case HN_LIN_DOWN:
            *lin = site, *in = s->F, *base_out = *out = C;
            return 1;
        default:
            return 0;
        }
    }
    *lin = site;
    switch (site) {
    case HN_LIN_Q:
        *in = C, *base_out = *out = s->Q;
        return 1;
    case HN_LIN_K:
    case HN_LIN_V:
        *in = C, *base_out = *out = s->KV;
        return 1;
    case HN_LIN_O:
        *in = s->Q, *base_out = *out = C;
        return 1;
    case HN_LIN_UP:
    case HN_LIN_GATE:
        *in = C, *base_out = *out = s->F;
        return 1;
    case HN_LIN_DOWN:
        *in = s->F, *base_out = *out = C;
        return 1;
    default:
        return 0;
    }
}

/* the row names of a base linear */
static void base_rows(const Shape* s, int layer, HnLinear lin, HnAddon* a) {
    snprintf(a->base_w, sizeof a->base_w, "layers.%d.%s.weight", layer, SITE_NAMES[lin]);
    if (s->gpt2)
        snprintf(a->base_b, sizeof a->base_b, "layers.%d.%s.bias", layer, SITE_NAMES[lin]);
    else
        a->base_b[0] = '\0';
}

static int has_wildcard(const char* p) {
    return strpbrk(p, "*?[") != NULL;
}

/* does pattern select `site` of `layer`? A pattern names a site ("attn.q") or a site of
 * some layers ("layers.0.attn.q", "layers.*.mlp.*"). On gpt2 the slices attn.q/k/v of the
 * fused projection are taken only by a pattern without wildcards, so "attn.*" means the
 * whole attn.qkv, not it and its slices. */
static int selects(const Shape* s, const char* pattern, int layer, HnLinear site) {
    if (s->gpt2 && site >= HN_LIN_Q && site <= HN_LIN_V) {
        const char* dot = strrchr(pattern, '.');
        const char* last = dot ? dot + 1 : pattern;
        if (has_wildcard(last)) return 0;
    }
    char full[64];
    snprintf(full, sizeof full, "layers.%d.%s", layer, SITE_NAMES[site]);
    return fnmatch(pattern, SITE_NAMES[site], 0) == 0 || fnmatch(pattern, full, 0) == 0;
}

static int list_has(const HnStrList* l, const char* s) {
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->item[i], s) == 0) return 1;
    return 0;
}

static int push(HnPeft* p, const HnAddon* a) {
    HnAddon* grown = realloc(p->a, (size_t)(p->n + 1) * sizeof *grown);
    if (!grown) return hn_error("out of memory");
    p->a = grown;
    p->a[p->n++] = *a;
    return HN_OK;
}

static void site_list(const Shape* s, char* out, size_t n) {
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < HN_NLIN; i++) {
        HnLinear lin;
        int in, bo, off, w;
        if (site_of(s, (HnLinear)i, &lin, &in, &bo, &off, &w))
            k += (size_t)snprintf(out + k, n - k, "%s%s", k ? ", " : "", SITE_NAMES[i]);
        if (k >= n) break;
    }
}

/* add the add-ons of one method for every site its targets select */
static int plan_method(HnPeft* p, const Shape* s, const char* method, const HnStrList* targets,
                       const HnConfig* cfg) {
    static const char* const lora_gpt2[] = {"attn.qkv"};
    static const char* const lora_llama[] = {"attn.q", "attn.v"};
    static const char* const ia3_gpt2[] = {"attn.qkv", "mlp.down"};
    static const char* const ia3_llama[] = {"attn.k", "attn.v", "mlp.down"};
    int lora = strcmp(method, "lora") == 0;
    const char* const* pat = NULL;
    int npat = targets->n;
    const char* given[HN_MAX_LIST];
    for (int i = 0; i < npat; i++)
        given[i] = targets->item[i];
    pat = given;
    if (npat == 0) {
        pat = lora ? (s->gpt2 ? lora_gpt2 : lora_llama) : (s->gpt2 ? ia3_gpt2 : ia3_llama);
        npat = lora ? (s->gpt2 ? 1 : 2) : (s->gpt2 ? 2 : 3);
    }
    char sites[160];
    site_list(s, sites, sizeof sites);
    for (int k = 0; k < npat; k++) {
        if (strstr(pat[k], "embed") || strstr(pat[k], "lm_head"))
            return hn_error("peft.%s.targets: '%s' is not a block site — %s on the embedding or "
                            "classifier is not supported (they are tied in these models); "
                            "sites: %s",
                            method, pat[k], method, sites);
        int any = 0;
        for (int l = 0; l < s->L && !any; l++)
            for (int i = 0; i < HN_NLIN && !any; i++) {
                HnLinear lin;
                int in, bo, off, w;
                any = site_of(s, (HnLinear)i, &lin, &in, &bo, &off, &w) &&
                      selects(s, pat[k], l, (HnLinear)i);
            }
        if (!any)
            return hn_error("peft.%s.targets: '%s' matches no site of this %s model (sites: %s)",
                            method, pat[k], s->gpt2 ? "gpt2" : "llama", sites);
    }
    int r = cfg->peft.lora.rank;
    for (int l = 0; l < s->L; l++)
        for (int i = 0; i < HN_NLIN; i++) {
            HnAddon a;
            memset(&a, 0, sizeof a);
            if (!site_of(s, (HnLinear)i, &a.lin, &a.in, &a.base_out, &a.off, &a.out)) continue;
            int hit = 0;
            for (int k = 0; k < npat && !hit; k++)
                hit = selects(s, pat[k], l, (HnLinear)i);
            if (!hit) continue;
            a.layer = l;
            snprintf(a.site, sizeof a.site, "%s", SITE_NAMES[i]);
            base_rows(s, l, a.lin, &a);
            a.row_a = a.row_b = a.row_m = a.row_l = -1;
            int slice = a.out != a.base_out;
            if (lora) {
                a.kind = cfg->peft.lora.dora ? HN_ADD_DORA : HN_ADD_LORA;
                a.rank = r;
                int width = a.in < a.out ? a.in : a.out;
                if (r > width)
                    return hn_error("peft.lora.rank %d is larger than layers.%d.%s (%d x %d)", r, l,
                                    a.site, a.out, a.in);
                a.scale = cfg->peft.lora.rslora ? cfg->peft.lora.alpha / sqrtf((float)r)
                                                : cfg->peft.lora.alpha / (float)r;
                a.dropout = cfg->peft.lora.dropout;
                if (slice && a.kind == HN_ADD_DORA)
                    return hn_error("peft.lora.dora on layers.%d.%s, a slice of attn.qkv, is not "
                                    "supported — target attn.qkv",
                                    l, a.site);
            } else {
                int ff = 0;
                for (int k = 0; k < cfg->peft.ia3.feedforward.n && !ff; k++)
                    ff = selects(s, cfg->peft.ia3.feedforward.item[k], l, (HnLinear)i);
                a.kind = ff ? HN_ADD_IA3_IN : HN_ADD_IA3_OUT;
                if (slice)
                    return hn_error("peft.ia3 on layers.%d.%s, a slice of attn.qkv, is not "
                                    "supported — target attn.qkv (PEFT scales all of it)",
                                    l, a.site);
            }
            /* one method per base linear; several LoRA slices may share gpt2's attn.qkv */
            for (int j = 0; j < p->n; j++) {
                const HnAddon* o = &p->a[j];
                if (o->layer != l || o->lin != a.lin) continue;
                int both_slices = o->kind == HN_ADD_LORA && a.kind == HN_ADD_LORA &&
                                  o->out != o->base_out && slice && o->off != a.off;
                if (!both_slices)
                    return hn_error("layers.%d.%s is targeted twice (%s and %s): one method per "
                                    "linear — give them different sites",
                                    l, SITE_NAMES[a.lin], o->site, a.site);
            }
            if (push(p, &a) != HN_OK) return HN_ERR;
        }
    return HN_OK;
}

static int plan_all(HnPeft* p, const HnConfig* cfg);

/* on error nothing stays allocated (hn_peft_free is then a no-op) */
int hn_peft_plan(HnPeft* p, const HnConfig* cfg) {
    memset(p, 0, sizeof *p);
    if (plan_all(p, cfg) == HN_OK) return HN_OK;
    hn_peft_free(p);
    return HN_ERR;
}

static int plan_all(HnPeft* p, const HnConfig* cfg) {
    Shape s = shape_of(cfg);
    p->L = s.L;
    p->C = s.C;
    p->V = cfg->model.vocab;
    const HnStrList* methods = &cfg->peft.methods;
    if (methods->n == 0) return HN_OK;
    p->active = 1;
    for (int i = 0; i < methods->n; i++) {
        const char* m = methods->item[i];
        if (strcmp(m, "bitfit") == 0) {
            if (!s.gpt2)
                return hn_error("peft: bitfit trains only biases, and this llama model has none "
                                "— choose lora or ia3");
            p->bitfit = 1;
        } else if (strcmp(m, "lora") == 0) {
            if (plan_method(p, &s, "lora", &cfg->peft.lora.targets, cfg) != HN_OK) return HN_ERR;
        } else if (strcmp(m, "ia3") == 0) {
            if (plan_method(p, &s, "ia3", &cfg->peft.ia3.targets, cfg) != HN_OK) return HN_ERR;
        } else if (strcmp(m, "prefix") == 0) {
            p->prefix.P = cfg->peft.prefix.length;
            p->prefix.hidden = cfg->peft.prefix.projection;
            p->prefix.cols = 2 * s.L * s.KV;
            p->prefix.dim = s.KV;
        } else if (strcmp(m, "prompt") == 0 || strcmp(m, "ptuning") == 0) {
            if (p->prompt.P)
                return hn_error("peft: prompt and ptuning both prepend virtual tokens — choose "
                                "one");
            int pt = strcmp(m, "ptuning") == 0;
            p->prompt.P = pt ? cfg->peft.ptuning.length : cfg->peft.prompt.length;
            p->prompt.hidden = pt ? (cfg->peft.ptuning.hidden ? cfg->peft.ptuning.hidden : s.C) : 0;
            if (!pt && strcmp(cfg->peft.prompt.init, "text") == 0) {
                const HnStrList* ids = &cfg->peft.prompt.text_ids;
                if (ids->n == 0 && !cfg->peft.prompt.text[0])
                    return hn_error("peft.prompt.init is text, but neither peft.prompt.text nor "
                                    "peft.prompt.text_ids is set");
                for (int i = 0; i < ids->n; i++) {
                    char* end;
                    long v = strtol(ids->item[i], &end, 10);
                    if (*end || v < 0 || v >= cfg->model.vocab)
                        return hn_error("peft.prompt.text_ids: '%s' is not a token id below %d",
                                        ids->item[i], cfg->model.vocab);
                    p->init_ids[p->n_init_ids++] = (int)v;
                }
            }
            p->prompt_init = pt                                            ? 0
                             : strcmp(cfg->peft.prompt.init, "vocab") == 0 ? 1
                             : strcmp(cfg->peft.prompt.init, "text") == 0  ? 2
                                                                           : 0;
        } else if (strcmp(m, "adapter") == 0) {
            HnAdapters* ad = &p->adapters;
            ad->on = 1;
            const char* k = cfg->peft.adapter.kind;
            ad->kind = strcmp(k, "houlsby") == 0    ? HN_ADAPTER_HOULSBY
                       : strcmp(k, "parallel") == 0 ? HN_ADAPTER_PARALLEL
                                                    : HN_ADAPTER_PFEIFFER;
            const char* a = cfg->peft.adapter.activation;
            ad->act = strcmp(a, "swish") == 0  ? HN_ACT_SWISH
                      : strcmp(a, "gelu") == 0 ? HN_ACT_GELU
                      : strcmp(a, "tanh") == 0 ? HN_ACT_TANH
                                               : HN_ACT_RELU;
            if (cfg->peft.adapter.reduction > s.C || s.C % cfg->peft.adapter.reduction != 0)
                return hn_error("peft.adapter.reduction %d must divide channels (%d)",
                                cfg->peft.adapter.reduction, s.C);
            ad->R = s.C / cfg->peft.adapter.reduction;
            ad->scaling = cfg->peft.adapter.scaling;
            ad->near_identity = strcmp(cfg->peft.adapter.init, "near_identity") == 0;
        } else {
            return hn_error("peft.methods: unknown method '%s'", m);
        }
    }
    (void)list_has;
    size_t slots = (size_t)s.L * HN_NLIN * HN_PEFT_PER_LINEAR;
    p->index = malloc((slots ? slots : 1) * sizeof(int));
    if (!p->index) return hn_error("out of memory");
    for (size_t i = 0; i < slots; i++)
        p->index[i] = -1;
    for (int j = 0; j < p->n; j++) {
        int* slot = p->index + ((size_t)p->a[j].layer * HN_NLIN + p->a[j].lin) * HN_PEFT_PER_LINEAR;
        int k = 0;
        while (slot[k] >= 0)
            k++;
        slot[k] = j;
    }
    return HN_OK;
}

static int add_vec(HnParamTable* t, const char* name, int n) {
    return hn_params_add(t, name, 1, &n);
}

int hn_peft_is_addon_name(const char* nm) {
    size_t len = strlen(nm);
    static const char* const suffixes[] = {".lora_A", ".lora_B", ".dora_m", ".ia3"};
    for (int k = 0; k < 4; k++) {
        size_t sl = strlen(suffixes[k]);
        if (len > sl && strcmp(nm + len - sl, suffixes[k]) == 0) return 1;
    }
    return strncmp(nm, "prefix.", 7) == 0 || strncmp(nm, "prompt.", 7) == 0 ||
           strstr(nm, ".adapter_") != NULL;
}

int hn_peft_add_rows(HnPeft* p, HnParamTable* t) {
    char name[HN_NAME_MAX];
    for (int j = 0; j < p->n; j++) {
        HnAddon* a = &p->a[j];
        const char* pre = a->site;
        if (a->kind == HN_ADD_LORA || a->kind == HN_ADD_DORA) {
            int sa[2] = {a->rank, a->in}, sb[2] = {a->out, a->rank};
            snprintf(name, sizeof name, "layers.%d.%s.lora_A", a->layer, pre);
            if ((a->row_a = hn_params_add(t, name, 2, sa)) < 0) return HN_ERR;
            snprintf(name, sizeof name, "layers.%d.%s.lora_B", a->layer, pre);
            if ((a->row_b = hn_params_add(t, name, 2, sb)) < 0) return HN_ERR;
            if (a->kind == HN_ADD_DORA) {
                snprintf(name, sizeof name, "layers.%d.%s.dora_m", a->layer, pre);
                if ((a->row_m = add_vec(t, name, a->out)) < 0) return HN_ERR;
            }
        } else {
            snprintf(name, sizeof name, "layers.%d.%s.ia3", a->layer, pre);
            int n = a->kind == HN_ADD_IA3_IN ? a->in : a->out;
            if ((a->row_l = add_vec(t, name, n)) < 0) return HN_ERR;
        }
    }
    int C = p->C;
    HnPrefix* px = &p->prefix;
    if (px->P) {
        int se[2] = {px->P, px->hidden ? px->dim : px->cols};
        if ((px->row_embed = hn_params_add(t, "prefix.embed", 2, se)) < 0) return HN_ERR;
        if (px->hidden) {
            int w0[2] = {px->hidden, px->dim}, w1[2] = {px->cols, px->hidden};
            if ((px->row_w0 = hn_params_add(t, "prefix.mlp.0.weight", 2, w0)) < 0 ||
                (px->row_b0 = add_vec(t, "prefix.mlp.0.bias", px->hidden)) < 0 ||
                (px->row_w1 = hn_params_add(t, "prefix.mlp.1.weight", 2, w1)) < 0 ||
                (px->row_b1 = add_vec(t, "prefix.mlp.1.bias", px->cols)) < 0)
                return HN_ERR;
        }
    }
    HnPrompt* pr = &p->prompt;
    if (pr->P) {
        int se[2] = {pr->P, C};
        if ((pr->row_embed = hn_params_add(t, "prompt.embed", 2, se)) < 0) return HN_ERR;
        int H = pr->hidden;
        for (int k = 0; H && k < 3; k++) {
            int sw[2] = {k == 2 ? C : H, k == 0 ? C : H};
            snprintf(name, sizeof name, "prompt.mlp.%d.weight", k);
            if ((pr->row_w[k] = hn_params_add(t, name, 2, sw)) < 0) return HN_ERR;
            snprintf(name, sizeof name, "prompt.mlp.%d.bias", k);
            if ((pr->row_b[k] = add_vec(t, name, sw[0])) < 0) return HN_ERR;
        }
    }
    HnAdapters* ad = &p->adapters;
    if (ad->on) {
        ad->rows = malloc((size_t)p->L * 8 * sizeof(int));
        if (!ad->rows) return hn_error("out of memory");
        for (int l = 0; l < p->L; l++)
            for (int pt = 0; pt < 2; pt++) {
                int* r = ad->rows + (l * 2 + pt) * 4;
                r[0] = r[1] = r[2] = r[3] = -1;
                if (pt == HN_POINT_ATTN && ad->kind != HN_ADAPTER_HOULSBY) continue;
                const char* pn = pt ? "mlp" : "attn";
                int dw[2] = {ad->R, C}, uw[2] = {C, ad->R};
                snprintf(name, sizeof name, "layers.%d.adapter_%s.down.weight", l, pn);
                if ((r[0] = hn_params_add(t, name, 2, dw)) < 0) return HN_ERR;
                snprintf(name, sizeof name, "layers.%d.adapter_%s.down.bias", l, pn);
                if ((r[1] = add_vec(t, name, ad->R)) < 0) return HN_ERR;
                snprintf(name, sizeof name, "layers.%d.adapter_%s.up.weight", l, pn);
                if ((r[2] = hn_params_add(t, name, 2, uw)) < 0) return HN_ERR;
                snprintf(name, sizeof name, "layers.%d.adapter_%s.up.bias", l, pn);
                if ((r[3] = add_vec(t, name, C)) < 0) return HN_ERR;
            }
    }
    for (int i = 0; i < t->n; i++) {
        if (hn_peft_is_addon_name(t->rows[i].name)) {
            t->rows[i].addon = 1;
            /* no weight decay on add-ons: it would pull IA3 scales and DoRA magnitudes
             * toward 0, not toward the base */
            t->rows[i].decay = 0;
        }
    }
    return HN_OK;
}

int hn_peft_freeze_base(const HnPeft* p, HnParamTable* t) {
    size_t biases = 0;
    for (int i = 0; i < t->n; i++) {
        HnParamRow* r = &t->rows[i];
        size_t len = strlen(r->name);
        int bias = len > 5 && strcmp(r->name + len - 5, ".bias") == 0;
        r->trainable = r->addon || (p->bitfit && bias);
        if (p->bitfit && bias) biases += r->numel;
    }
    if (p->bitfit && biases == 0)
        return hn_error("peft: bitfit trains only biases, and this model has none");
    hn_params_layout_grads(t);
    return HN_OK;
}

/* the row norms of w + scale * B @ A over the add-on's rows, through tmp (out x in) */
static void dora_norms(const HnAddon* a, const float* w, const float* A, const float* B,
                       float* norm, float* tmp) {
    size_t n = (size_t)a->out * a->in;
    memcpy(tmp, w + (size_t)a->off * a->in, n * sizeof(float));
    hn_gemm(0, 0, a->out, a->in, a->rank, a->scale, B, a->rank, A, a->in, 1.0f, tmp, a->in);
#pragma omp parallel for schedule(static)
    for (int j = 0; j < a->out; j++) {
        const float* v = tmp + (size_t)j * a->in;
        double ss = 0.0;
        for (int i = 0; i < a->in; i++)
            ss += (double)v[i] * v[i];
        norm[j] = (float)sqrt(ss);
    }
}

/* torch.nn.Linear's default initialisation: weight and bias U(-1/sqrt(in), 1/sqrt(in)) */
static void linear_init(HnParamTable* t, int row_w, int row_b, uint64_t seed) {
    HnParamRow* w = &t->rows[row_w];
    HnRng rng;
    hn_rng_seed(&rng, seed ^ (0xa0761d6478bd642fULL * (uint64_t)(row_w + 1)));
    float bound = 1.0f / sqrtf((float)w->shape[1]);
    for (size_t i = 0; i < w->numel; i++)
        t->data[w->offset + i] = bound * (2.0f * hn_rng_uniform(&rng) - 1.0f);
    HnParamRow* b = &t->rows[row_b];
    for (size_t i = 0; i < b->numel; i++)
        t->data[b->offset + i] = bound * (2.0f * hn_rng_uniform(&rng) - 1.0f);
}

static void normal_init(HnParamTable* t, int row, float std, uint64_t seed) {
    HnParamRow* r = &t->rows[row];
    HnRng rng;
    hn_rng_seed(&rng, seed ^ (0xa0761d6478bd642fULL * (uint64_t)(row + 1)));
    for (size_t i = 0; i < r->numel; i++)
        t->data[r->offset + i] = std * hn_rng_normal(&rng);
}

/* prefix, prompt and adapter rows */
static void init_virtual(const HnPeft* p, HnParamTable* t, uint64_t seed) {
    const HnPrefix* px = &p->prefix;
    if (px->P) { /* nn.Embedding: normal(0, 1) */
        normal_init(t, px->row_embed, 1.0f, seed);
        if (px->hidden) {
            linear_init(t, px->row_w0, px->row_b0, seed);
            linear_init(t, px->row_w1, px->row_b1, seed);
        }
    }
    const HnPrompt* pr = &p->prompt;
    if (pr->P) {
        HnParamRow* r = &t->rows[pr->row_embed];
        float* x = t->data + r->offset;
        int wi = hn_params_find(t, "tok_embed.weight");
        const float* wte = wi >= 0 ? t->data + t->rows[wi].offset : NULL;
        if (p->prompt_init == 1 && wte) { /* rows of sampled vocabulary tokens */
            HnRng rng;
            hn_rng_seed(&rng, seed ^ 0x5851f42d4c957f2dULL);
            for (int i = 0; i < pr->P; i++)
                memcpy(x + (size_t)i * p->C,
                       wte + (size_t)hn_rng_below(&rng, (uint64_t)p->V) * p->C,
                       (size_t)p->C * sizeof(float));
        } else if (p->prompt_init == 2 && wte && p->n_init_ids > 0) {
            /* the text's tokens, repeated to fill the prompt (as PEFT) */
            for (int i = 0; i < pr->P; i++)
                memcpy(x + (size_t)i * p->C, wte + (size_t)p->init_ids[i % p->n_init_ids] * p->C,
                       (size_t)p->C * sizeof(float));
        } else {
            normal_init(t, pr->row_embed, 1.0f, seed);
        }
        for (int k = 0; pr->hidden && k < 3; k++)
            linear_init(t, pr->row_w[k], pr->row_b[k], seed);
    }
    const HnAdapters* ad = &p->adapters;
    for (int i = 0; ad->on && i < p->L * 2; i++) {
        const int* r = ad->rows + i * 4;
        if (r[0] < 0) continue;
        for (int k = 0; k < 4; k++)
            memset(t->data + t->rows[r[k]].offset, 0, t->rows[r[k]].numel * sizeof(float));
        if (ad->near_identity) { /* AdapterHub's "mam_adapter": down as nn.Linear, up zero */
            HnParamRow* w = &t->rows[r[0]];
            HnRng rng;
            hn_rng_seed(&rng, seed ^ (0xa0761d6478bd642fULL * (uint64_t)(r[0] + 1)));
            float bound = 1.0f / sqrtf((float)w->shape[1]);
            for (size_t j = 0; j < w->numel; j++)
                t->data[w->offset + j] = bound * (2.0f * hn_rng_uniform(&rng) - 1.0f);
        } else { /* AdapterHub's "bert": normal(0, 0.02) weights, zero biases */
            normal_init(t, r[0], 0.02f, seed);
            normal_init(t, r[2], 0.02f, seed);
        }
    }
}

void hn_peft_init(const HnPeft* p, HnParamTable* t, uint64_t seed) {
    init_virtual(p, t, seed);
    for (int j = 0; j < p->n; j++) {
        const HnAddon* a = &p->a[j];
        if (a->row_a >= 0) {
            /* kaiming_uniform_(a = sqrt 5): bound = sqrt(6 / ((1 + 5) fan_in)) = 1 / sqrt(in) */
            HnParamRow* r = &t->rows[a->row_a];
            HnRng rng;
            hn_rng_seed(&rng, seed ^ (0xa0761d6478bd642fULL * (uint64_t)(a->row_a + 1)));
            float bound = 1.0f / sqrtf((float)a->in), *x = t->data + r->offset;
            for (size_t i = 0; i < r->numel; i++)
                x[i] = bound * (2.0f * hn_rng_uniform(&rng) - 1.0f);
            memset(t->data + t->rows[a->row_b].offset, 0, t->rows[a->row_b].numel * sizeof(float));
        }
        if (a->row_m >= 0) {
            int wi = hn_params_find(t, a->base_w);
            float* tmp = malloc((size_t)a->out * a->in * sizeof(float));
            if (tmp)
                dora_norms(a, t->data + t->rows[wi].offset, t->data + t->rows[a->row_a].offset,
                           t->data + t->rows[a->row_b].offset, t->data + t->rows[a->row_m].offset,
                           tmp);
            free(tmp);
        }
        if (a->row_l >= 0) {
            HnParamRow* r = &t->rows[a->row_l];
            for (size_t i = 0; i < r->numel; i++)
                t->data[r->offset + i] = 1.0f;
        }
    }
}

void hn_peft_free(HnPeft* p) {
    free(p->a);
    free(p->index);
    free(p->adapters.rows);
    free(p->adapters.mem);
    free(p->virt_mem);
    free(p->mem);
    free(p->keep_mem);
    free(p->scratch);
    memset(p, 0, sizeof *p);
}

HnPeftCounts hn_peft_counts(const HnParamTable* t) {
    HnPeftCounts c = {0};
    for (int i = 0; i < t->n; i++) {
        const HnParamRow* r = &t->rows[i];
        const char* nm = r->name;
        size_t len = strlen(nm);
        if (!r->trainable) continue;
        if (strstr(nm, ".lora_A") || strstr(nm, ".lora_B"))
            c.lora += r->numel;
        else if (strstr(nm, ".dora_m"))
            c.dora += r->numel;
        else if (len > 4 && strcmp(nm + len - 4, ".ia3") == 0)
            c.ia3 += r->numel;
        else if (strncmp(nm, "prefix.", 7) == 0)
            c.prefix += r->numel;
        else if (strncmp(nm, "prompt.", 7) == 0)
            c.prompt += r->numel;
        else if (strstr(nm, ".adapter_"))
            c.adapter += r->numel;
        else if (len > 5 && strcmp(nm + len - 5, ".bias") == 0)
            c.bitfit += r->numel;
    }
    return c;
}

void hn_peft_dora_norms(const HnAddon* a, const float* w, const float* A, const float* B,
                        float* norm, float* tmp) {
    dora_norms(a, w, A, B, norm, tmp);
}
