/*
 * Tokenizers: text bytes <-> token ids.
 *   - byte: ids 0..255 are the bytes themselves, id 256 is <|endoftext|>; needs no files.
 *   - gpt2: GPT-2's byte-level BPE, loaded from its encoder.json and vocab.bpe (the user
 *     passes their paths); the pre-tokenizer regex runs on PCRE2.
 *   - byte-level BPE from a model file (GGUF metadata or HF tokenizer.json), below; GPT-2
 *     and these share one BPE core.
 * Encoding never fails on content: any byte sequence, invalid UTF-8 included, has an
 * encoding that decodes back to exactly the same bytes -- when the vocabulary has a token
 * for every byte, as GPT-2's does. A model's vocabulary may lack some (it must have every
 * printable ASCII byte): bytes without a token are dropped, as HF tokenizers and llama.cpp
 * drop them (SmolLM2 lacks 21: 0xC0, 0xC1, 0xF5..0xFF, which UTF-8 never uses, and 0xF1,
 * 0xF2, 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D). Special-token strings such as "<|endoftext|>"
 * that appear inside raw text are encoded as ordinary text by hn_tokenizer_encode, never as
 * the special id: a document cannot inject an end-of-text. Callers add special ids
 * explicitly, or use hn_tokenizer_encode_special for trusted text such as a chat prompt.
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

/* "byte", or a BPE tokenizer's pre-tokenizer: "gpt2" or "smollm" */
const char* hn_tokenizer_name(const HnTokenizer* tok);
int hn_tokenizer_vocab_size(const HnTokenizer* tok); /* 257 for byte, 50257 for gpt2 */
/* the id that ends a text: <|endoftext|> for byte and gpt2, the model file's eos otherwise */
int hn_tokenizer_eos(const HnTokenizer* tok);

/* append the ids of text[0..len) to out; HN_OK or HN_ERR (only on out of memory) */
int hn_tokenizer_encode(const HnTokenizer* tok, const char* text, size_t len, HnTokens* out);
/* the bytes of one token (a special token's text for special ids); NULL if id is out of range */
const char* hn_tokenizer_token_bytes(const HnTokenizer* tok, int id, size_t* len);
/* decode ids into a newly allocated NUL-terminated buffer (caller frees); *len gets the byte
 * count (the text may contain NUL bytes). NULL with an error if an id is out of range. */
char* hn_tokenizer_decode(const HnTokenizer* tok, const int* ids, size_t n, size_t* len);

/* ---- tokenizers from model files (byte-level BPE with a named pre-tokenizer) ----
 * Known pre-tokenizers: "gpt2" (GPT-2's regex) and "smollm" (SmolLM2: every digit split
 * off on its own, then GPT-2's regex: HF's Sequence[Digits(individual_digits=True),
 * ByteLevel]); an unknown one is an error. Special tokens (GGUF token_type 3 = control,
 * HF added_tokens with special=true) are never produced from raw text by
 * hn_tokenizer_encode; hn_tokenizer_encode_special also turns their exact strings in the
 * text into their ids (as HF tokenizers does by default), for prompts and chat templates. */
typedef struct HnGguf HnGguf;
/* from GGUF metadata: tokenizer.ggml.model ("gpt2"), .pre ("gpt2", llama.cpp's "gpt-2", or
 * "smollm"), .tokens, .merges, .token_type (1 normal, 3 control; others are refused),
 * .eos_token_id, .bos_token_id and .add_bos_token, tokenizer.chat_template; .unknown_token_id
 * and .padding_token_id are only checked. NULL with an error naming the file and the key. */
HnTokenizer* hn_tokenizer_from_gguf(const HnGguf* g);
/* from a Hugging Face tokenizer.json: model BPE (merges as "a b" strings or [a, b] pairs),
 * special added_tokens, pre_tokenizer ByteLevel(add_prefix_space=false) alone or after
 * Digits(individual_digits=true), decoder and post_processor ByteLevel or null, no
 * normalizer. eos, bos and the chat template come from "model": {"hone": {"eos": id, "bos":
 * id or null, "chat_template": text or null}} (HF keeps them outside tokenizer.json, and
 * ignores unknown keys inside "model"); without it eos is the special "<|endoftext|>".
 * name is used in messages. */
HnTokenizer* hn_tokenizer_from_json(const char* json, size_t len, const char* name);
/* the tokenizer as tokenizer.json text (malloc'd, caller frees) that hn_tokenizer_from_json
 * reads back to the same tokenizer, and to_json of that gives the same text: how checkpoints
 * store every tokenizer but byte (NULL with an error for byte). HF tokenizers' Tokenizer.
 * from_str reads it too and gives the same ids. */
char* hn_tokenizer_to_json(const HnTokenizer* tok);
/* as hn_tokenizer_encode, but each exact special-token string in the text (leftmost, then
 * longest) becomes its id and the text between them is encoded on its own, as HF does */
int hn_tokenizer_encode_special(const HnTokenizer* tok, const char* text, size_t len,
                                HnTokens* out);
/* the id a model wants at the start of a text: GGUF's bos_token_id unless add_bos_token is
 * false (SmolLM2: false, so -1); -1 if none */
int hn_tokenizer_bos(const HnTokenizer* tok);
/* the id a document starts with, or -1 for none: end-of-text for hone's own byte and GPT-2
 * tokenizers (`hone prepare` starts every document with it, as GPT-2 was trained), the
 * model's BOS for tokenizers from model files that add one, else none */
int hn_tokenizer_doc_start(const HnTokenizer* tok);
/* the Jinja chat template the model file carried, or NULL */
const char* hn_tokenizer_chat_template(const HnTokenizer* tok);

/* HN_OK, or HN_ERR when out of memory (t is then unchanged) */
int hn_tokens_push(HnTokens* t, int id);
void hn_tokens_free(HnTokens* t);

#endif
