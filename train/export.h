/*
 * Exporting a checkpoint for use elsewhere (`hone export`; the sparse delta format lives in
 * data/delta.h):
 *   hdf5-merged  one hone checkpoint holding the whole model: a frozen-base run's base read
 *                from the file it names (its hash checked), LoRA, DoRA and IA3 folded into
 *                the base rows (exactly, as the inference path folds them); prefix, prompt,
 *                P-tuning and adapter rows, which cannot fold, stay as /peft rows with their
 *                config. No optimizer state.
 *   hf           a Hugging Face folder: model.safetensors (F32, F16 or BF16) with
 *                transformers' names (GPT2LMHeadModel: Conv1D matrices transposed; tied
 *                lm_head left out as transformers ties it; LlamaForCausalLM), config.json,
 *                generation_config.json, and the tokenizer (tokenizer.json and
 *                tokenizer_config.json) when the checkpoint has a BPE one. Add-ons must fold.
 *   peft         a PEFT adapter folder (adapter_config.json, adapter_model.safetensors with
 *                PEFT's key names) that peft's PeftModel.from_pretrained loads onto the hf
 *                export of the base, one method per adapter: LoRA (rsLoRA, DoRA), IA3,
 *                prefix tuning, prompt tuning or P-tuning. The last three are one tensor,
 *                prompt_embeddings, as peft's save_pretrained writes it: the prefix after
 *                its projection, the virtual tokens after P-tuning's encoder (PEFT saves no
 *                encoder; it loads these rows into the embedding its inference uses).
 *   gguf         a GGUF v3 file for llama.cpp (Llama-family models with their BPE tokenizer):
 *                llama.* metadata, tokenizer.ggml.* (tokens, types, merges, specials, chat
 *                template, SmolLM2's "smollm" pre-tokenizer), tensors under llama.cpp's
 *                names with its Q/K row order; matrices F32, F16 or Q8_0, norms F32.
 * Every export writes a manifest, SHA256SUMS (sha256sum's format), beside its files. Output
 * goes to a temporary name first and is renamed when complete, so a failure leaves nothing;
 * an existing output is replaced only with force.
 */
#ifndef HONE_EXPORT_H
#define HONE_EXPORT_H

typedef enum { HN_EXPORT_F32, HN_EXPORT_F16, HN_EXPORT_BF16 } HnExportDtype;
typedef enum { HN_GGUF_OUT_F32, HN_GGUF_OUT_F16, HN_GGUF_OUT_Q8_0 } HnGgufDtype;

typedef struct {
    int rows;        /* rows written */
    int folded;      /* add-ons folded into base rows */
    int kept;        /* add-on rows kept as they are (prefix, prompt, adapters) */
    long long numel; /* parameters written */
} HnExportStats;

/* OUT.h5 (the file) and OUT.h5.sha256 */
int hn_export_merged(const char* ckpt, const char* out, int deflate, int force, HnExportStats* st);
/* OUT/ (a folder) */
int hn_export_hf(const char* ckpt, const char* out, HnExportDtype dtype, int force,
                 HnExportStats* st);

/* OUT.gguf (a file) and OUT.gguf.sha256 */
int hn_export_gguf(const char* ckpt, const char* out, HnGgufDtype dtype, int force,
                   HnExportStats* st);
/* OUT/ (a folder) */
int hn_export_peft(const char* ckpt, const char* out, HnExportDtype dtype, int force,
                   HnExportStats* st);

#endif
