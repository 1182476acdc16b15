/*
 * Fuzz target: GPT-2's tokenizer files (data/tokenizer.c, hn_tokenizer_gpt2_from_memory).
 * The input is encoder.json, a NUL byte, then vocab.bpe.
 */
#include "fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const uint8_t* nul = size ? memchr(data, 0, size) : NULL;
    size_t n1 = nul ? (size_t)(nul - data) : size;
    size_t n2 = nul ? size - n1 - 1 : 0;
    const char* enc = (const char*)data;
    const char* bpe = nul ? (const char*)nul + 1 : (const char*)data + size;
    HnTokenizer* tok = hn_tokenizer_gpt2_from_memory(enc, n1, bpe, n2, "encoder.json", "vocab.bpe");
    if (!tok) return 0;
    fuzz_tokenizer(tok, data, size);
    hn_tokenizer_free(tok);
    return 0;
}
