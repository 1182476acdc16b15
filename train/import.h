/*
 * `hone import`: a model from outside (GGUF, or a Hugging Face folder) becomes a hone checkpoint
 * holding its config, tokenizer and weights under hone's row names, so every later command needs
 * only that .h5.
 */
#ifndef HONE_IMPORT_H
#define HONE_IMPORT_H

typedef struct {
    int bf16;    /* store weights as bf16 */
    int deflate; /* 0..9 */
} HnImportOptions;

/* GGUF (llama or gpt2 architecture) -> checkpoint at out; HN_OK or HN_ERR */
int hn_import_gguf(const char* src, const char* out, const HnImportOptions* opt);

/* A Hugging Face model -> checkpoint at out: src is a folder (config.json with model_type
 * gpt2 or llama, and model.safetensors or the shards model.safetensors.index.json names)
 * or one .safetensors file with config.json beside it. Tensors may be F32, F16 or BF16;
 * each is checked against the shape config.json implies. The tokenizer is the folder's
 * tokenizer.json, else GPT-2's vocab.json + merges.txt, else none (a note on stderr).
 * HN_OK or HN_ERR */
int hn_import_hf(const char* src, const char* out, const HnImportOptions* opt);

/* A PEFT adapter folder (adapter_config.json + adapter_model.safetensors; LORA with rsLoRA
 * and DoRA, IA3, PREFIX_TUNING, PROMPT_TUNING, or P_TUNING as the prompt tuning its saved
 * virtual tokens are; the module paths of the base's hf form, train/export.h) onto the hone
 * checkpoint base: out is a frozen-base checkpoint naming base by path and SHA-256, which
 * eval, generate, export and further training read. HN_OK or HN_ERR */
int hn_import_peft(const char* dir, const char* base, const char* out, const HnImportOptions* opt);

#endif
