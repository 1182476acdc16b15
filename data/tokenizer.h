/*
 * Tokenizers: text bytes <-> token ids.
 *   - byte: ids 0..255 are the bytes themselves, id 256 is <|endoftext|>; needs no files.
 *   - gpt2: GPT-2's byte-level BPE, loaded from its encoder.json and vocab.bpe (the user
 *     passes their paths); the pre-tokenizer regex runs on PCRE2.
 * Encoding never fails on content: any byte sequence, invalid UTF-8 included, has an
 * encoding that decodes back to exactly the same bytes. Special-token strings such as
 * "<|endoftext|>" that appear inside raw text are encoded as ordinary text, never as the
 * special id: a document cannot inject an end-of-text. Callers add special ids explicitly.
 */
#ifndef HONE_TOKENIZER_H
#define HONE_TOKENIZER_H

#include <stddef.h>

typedef struct HnTokenizer HnTokenizer;

/* a growable array of token ids */
typedef struct {
    int* ids;
    size_t n, cap;
} HnTokens;

HnTokenizer* hn_tokenizer_byte(void);
/* NULL on error (missing/malformed file), message in hn_error_message() */
HnTokenizer* hn_tokenizer_gpt2(const char* encoder_json_path, const char* vocab_bpe_path);
/* the same from the two files' bytes (e.g. stored in a checkpoint); the names are used in
 * error messages */
HnTokenizer* hn_tokenizer_gpt2_from_memory(const char* encoder_json, size_t encoder_len,
                                           const char* vocab_bpe, size_t vocab_len,
                                           const char* encoder_name, const char* vocab_name);
void hn_tokenizer_free(HnTokenizer* tok);
/* for gpt2: the bytes of the encoder.json and vocab.bpe it was built from (to store them);
 * HN_ERR for other tokenizers */
int hn_tokenizer_source(const HnTokenizer* tok, const char** encoder_json, size_t* encoder_len,
                        const char** vocab_bpe, size_t* vocab_len);

const char* hn_tokenizer_name(const HnTokenizer* tok); /* "byte" or "gpt2" */
int hn_tokenizer_vocab_size(const HnTokenizer* tok);   /* 257 for byte, 50257 for gpt2 */
int hn_tokenizer_eos(const HnTokenizer* tok);          /* id of <|endoftext|> */

/* append the ids of text[0..len) to out; HN_OK or HN_ERR (only on out of memory) */
int hn_tokenizer_encode(const HnTokenizer* tok, const char* text, size_t len, HnTokens* out);
/* the bytes of one token (a special token's text for special ids); NULL if id is out of range */
const char* hn_tokenizer_token_bytes(const HnTokenizer* tok, int id, size_t* len);
/* decode ids into a newly allocated NUL-terminated buffer (caller frees); *len gets the byte
 * count (the text may contain NUL bytes). NULL with an error if an id is out of range. */
char* hn_tokenizer_decode(const HnTokenizer* tok, const int* ids, size_t n, size_t* len);

/* HN_OK, or HN_ERR when out of memory (t is then unchanged) */
int hn_tokens_push(HnTokens* t, int id);
void hn_tokens_free(HnTokens* t);

#endif
