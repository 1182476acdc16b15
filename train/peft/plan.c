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

static const char* const SITE_NAMES[HN_NLIN] = {"attn.qkv", "attn.q",  "attn.k",    "attn.v",
                                                "attn.o",   "mlp.up",  "mlp.gate",  "mlp.down"};

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

int hn_peft_plan(HnPeft* p, const HnConfig* cfg) {
    memset(p, 0, sizeof *p);
    Shape s = shape_of(cfg);
    p->L = s.L;
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
    for (int i = 0; i < t->n; i++) {
        const char* nm = t->rows[i].name;
        size_t len = strlen(nm);
        int addon = 0;
        static const char* const suffixes[] = {".lora_A", ".lora_B", ".dora_m", ".ia3"};
        for (int k = 0; k < 4 && !addon; k++) {
            size_t sl = strlen(suffixes[k]);
            addon = len > sl && strcmp(nm + len - sl, suffixes[k]) == 0;
        }
        if (addon) {
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

void hn_peft_init(const HnPeft* p, HnParamTable* t, uint64_t seed) {
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
    free(p->mem);
    free(p->keep_mem);
    free(p->scratch);
    memset(p, 0, sizeof *p);
}

HnPeftCounts hn_peft_counts(const HnParamTable* t) {
    HnPeftCounts c = {0, 0, 0, 0};
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
        else if (len > 5 && strcmp(nm + len - 5, ".bias") == 0)
            c.bitfit += r->numel;
    }
    return c;
}

void hn_peft_dora_norms(const HnAddon* a, const float* w, const float* A, const float* B,
                        float* norm, float* tmp) {
    dora_norms(a, w, A, B, norm, tmp);
}
