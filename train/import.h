/*
 * `hone import`: a model from outside (GGUF today) becomes a hone checkpoint holding its
 * config, tokenizer and weights under hone's row names, so every later command needs
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

#endif
