/* Row names in GGUF and in transformers; see names.h. */
#include "train/names.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

int hn_gguf_row_name(const char* name, char* out, size_t n) {
    static const struct {
        const char *hone, *gguf;
    } layer_map[] = {
        {"attn_norm.weight", "attn_norm.weight"}, {"attn.q.weight", "attn_q.weight"},
        {"attn.k.weight", "attn_k.weight"},       {"attn.v.weight", "attn_v.weight"},
        {"attn.o.weight", "attn_output.weight"},  {"mlp_norm.weight", "ffn_norm.weight"},
        {"mlp.gate.weight", "ffn_gate.weight"},   {"mlp.up.weight", "ffn_up.weight"},
        {"mlp.down.weight", "ffn_down.weight"},   {"attn_norm.bias", "attn_norm.bias"},
        {"attn.qkv.weight", "attn_qkv.weight"},   {"attn.qkv.bias", "attn_qkv.bias"},
        {"attn.o.bias", "attn_output.bias"},      {"mlp_norm.bias", "ffn_norm.bias"},
        {"mlp.up.bias", "ffn_up.bias"},           {"mlp.down.bias", "ffn_down.bias"},
    };
    if (strcmp(name, "tok_embed.weight") == 0) return snprintf(out, n, "token_embd.weight"), HN_OK;
    if (strcmp(name, "pos_embed.weight") == 0)
        return snprintf(out, n, "position_embd.weight"), HN_OK;
    if (strcmp(name, "final_norm.weight") == 0)
        return snprintf(out, n, "output_norm.weight"), HN_OK;
    if (strcmp(name, "final_norm.bias") == 0) return snprintf(out, n, "output_norm.bias"), HN_OK;
    if (strcmp(name, "lm_head.weight") == 0) return snprintf(out, n, "output.weight"), HN_OK;
    int layer, used = 0;
    if (sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0)
        for (size_t i = 0; i < sizeof layer_map / sizeof layer_map[0]; i++)
            if (strcmp(name + used, layer_map[i].hone) == 0)
                return snprintf(out, n, "blk.%d.%s", layer, layer_map[i].gguf), HN_OK;
    return hn_error("row %s has no GGUF name", name);
}

typedef struct {
    const char *hone, *hf;
    int transposed;
} HfName;

static const HfName GPT2_NAMES[] = {
    {"attn_norm.weight", "ln_1.weight", 0},       {"attn_norm.bias", "ln_1.bias", 0},
    {"attn.qkv.weight", "attn.c_attn.weight", 1}, {"attn.qkv.bias", "attn.c_attn.bias", 0},
    {"attn.o.weight", "attn.c_proj.weight", 1},   {"attn.o.bias", "attn.c_proj.bias", 0},
    {"mlp_norm.weight", "ln_2.weight", 0},        {"mlp_norm.bias", "ln_2.bias", 0},
    {"mlp.up.weight", "mlp.c_fc.weight", 1},      {"mlp.up.bias", "mlp.c_fc.bias", 0},
    {"mlp.down.weight", "mlp.c_proj.weight", 1},  {"mlp.down.bias", "mlp.c_proj.bias", 0},
    {"tok_embed.weight", "wte.weight", 0},        {"pos_embed.weight", "wpe.weight", 0},
    {"final_norm.weight", "ln_f.weight", 0},      {"final_norm.bias", "ln_f.bias", 0},
};

static const HfName LLAMA_NAMES[] = {
    {"attn_norm.weight", "input_layernorm.weight", 0},
    {"attn.q.weight", "self_attn.q_proj.weight", 0},
    {"attn.k.weight", "self_attn.k_proj.weight", 0},
    {"attn.v.weight", "self_attn.v_proj.weight", 0},
    {"attn.o.weight", "self_attn.o_proj.weight", 0},
    {"mlp_norm.weight", "post_attention_layernorm.weight", 0},
    {"mlp.gate.weight", "mlp.gate_proj.weight", 0},
    {"mlp.up.weight", "mlp.up_proj.weight", 0},
    {"mlp.down.weight", "mlp.down_proj.weight", 0},
    {"tok_embed.weight", "embed_tokens.weight", 0},
    {"final_norm.weight", "norm.weight", 0},
};

int hn_hf_row_name(int gpt2, const char* gpt2_prefix, const char* name, char* out, size_t n,
                   int* transposed) {
    const char* top = gpt2 ? gpt2_prefix : "model.";
    const HfName* names = gpt2 ? GPT2_NAMES : LLAMA_NAMES;
    size_t count = gpt2 ? sizeof GPT2_NAMES / sizeof GPT2_NAMES[0]
                        : sizeof LLAMA_NAMES / sizeof LLAMA_NAMES[0];
    if (!gpt2 && strcmp(name, "lm_head.weight") == 0)
        return *transposed = 0, snprintf(out, n, "lm_head.weight"), HN_OK;
    int layer = -1, used = 0;
    const char* suffix = name;
    if (sscanf(name, "layers.%d.%n", &layer, &used) == 1 && used > 0) suffix = name + used;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(suffix, names[i].hone) != 0) continue;
        *transposed = names[i].transposed;
        if (layer >= 0)
            snprintf(out, n, "%s%s.%d.%s", top, gpt2 ? "h" : "layers", layer, names[i].hf);
        else
            snprintf(out, n, "%s%s", top, names[i].hf);
        return HN_OK;
    }
    return hn_error("row %s has no Hugging Face name", name);
}
