/*
 * hone's row names in the other formats it reads and writes: llama.cpp's GGUF tensor names
 * and transformers' parameter names (train/import.c reads them, train/export.c writes them).
 */
#ifndef HONE_NAMES_H
#define HONE_NAMES_H

#include <stddef.h>

/* llama.cpp's name of a row (llama and gpt2 architectures); HN_ERR for a row it has none for */
int hn_gguf_row_name(const char* row, char* out, size_t n);
/* transformers' name of a row of a GPT-2 (gpt2 != 0; gpt2_prefix "" or "transformer.") or
 * Llama model, and whether the matrix is stored transposed (GPT-2's Conv1D) */
int hn_hf_row_name(int gpt2, const char* gpt2_prefix, const char* row, char* out, size_t n,
                   int* transposed);

#endif
