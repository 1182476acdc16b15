/*
 * Fuzz target: Hugging Face tokenizer.json (data/tokenizer.c, hn_tokenizer_from_json),
 * the form checkpoints store every BPE tokenizer in.
 */
#include "fuzz/fuzz_tok.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    HnTokenizer* tok = hn_tokenizer_from_json((const char*)data, size, "tokenizer.json");
    if (!tok) return 0;
    fuzz_tokenizer(tok, data, size);
    hn_tokenizer_free(tok);
    return 0;
}
