/*
 * What the tokenizer harnesses (gguf, tokenizer_gpt2, tokenizer_json, ckpt_schema) do with
 * a tokenizer that loaded: encode and decode text, read token bytes, and check the
 * properties tokenizer.h promises (ids in range, decoding never adds bytes, the JSON form
 * reads back to a tokenizer that writes the same JSON and encodes the same way).
 */
#ifndef HONE_FUZZ_TOK_H
#define HONE_FUZZ_TOK_H

#include "data/instruct.h"
#include "data/tokenizer.h"
#include "fuzz/fuzz_util.h"

static inline void fuzz_encode_check(const HnTokenizer* tok, const char* text, size_t len,
                                     int special, HnTokens* out) {
    out->n = 0;
    int rc = special ? hn_tokenizer_encode_special(tok, text, len, out)
                     : hn_tokenizer_encode(tok, text, len, out);
    FUZZ_CHECK(rc == 0);
    int V = hn_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < out->n; i++)
        FUZZ_CHECK(out->ids[i] >= 0 && out->ids[i] < V);
    size_t n = 0;
    char* back = hn_tokenizer_decode(tok, out->ids, out->n, &n);
    FUZZ_CHECK(back != NULL);
    /* plain encoding only drops bytes the vocabulary lacks, it never adds any */
    if (!special) FUZZ_CHECK(n <= len);
    free(back);
}

static inline void fuzz_tokenizer(const HnTokenizer* tok, const uint8_t* data, size_t size) {
    static const char text[] = "Hello, world! 12345 <|endoftext|><|im_start|>user\n"
                               "caf\xc3\xa9 \xff\xfe\x00 tabs\t\tand  spaces\r\n";
    int V = hn_tokenizer_vocab_size(tok);
    FUZZ_CHECK(V > 0);
    int eos = hn_tokenizer_eos(tok), bos = hn_tokenizer_bos(tok);
    FUZZ_CHECK(eos >= 0 && eos < V);
    FUZZ_CHECK(bos >= -1 && bos < V);
    int ds = hn_tokenizer_doc_start(tok);
    FUZZ_CHECK(ds >= -1 && ds < V);
    (void)hn_tokenizer_name(tok);
    (void)hn_tokenizer_chat_template(tok);
    for (int id = 0; id < V && id < 512; id++) {
        size_t n;
        FUZZ_CHECK(hn_tokenizer_token_bytes(tok, id, &n) != NULL);
    }
    size_t n;
    FUZZ_CHECK(hn_tokenizer_token_bytes(tok, V, &n) == NULL);
    FUZZ_CHECK(hn_tokenizer_token_bytes(tok, -1, &n) == NULL);

    HnTokens a = {0}, b = {0};
    size_t tail = size < 256 ? size : 256;
    fuzz_encode_check(tok, text, sizeof text - 1, 0, &a);
    fuzz_encode_check(tok, text, sizeof text - 1, 1, &a);
    fuzz_encode_check(tok, (const char*)data + size - tail, tail, 0, &a);
    fuzz_encode_check(tok, (const char*)data + size - tail, tail, 1, &a);

    /* the chat template the file carried, recognised and rendered once */
    HnChatTemplate tpl;
    if (hn_chat_template_choose(tok, NULL, &tpl) == 0) {
        static const char ex[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, "
                                 "{\"role\": \"assistant\", \"content\": \"b\"}]}";
        HnTokens ids = {0}, mask = {0};
        (void)hn_instruct_encode(&tpl, tok, ex, sizeof ex - 1, &ids, &mask);
        FUZZ_CHECK(ids.n == mask.n);
        hn_tokens_free(&ids);
        hn_tokens_free(&mask);
        hn_chat_template_free(&tpl);
    }

    char* json = hn_tokenizer_to_json(tok);
    if (strcmp(hn_tokenizer_name(tok), "byte") == 0) {
        FUZZ_CHECK(json == NULL);
    } else {
        FUZZ_CHECK(json != NULL);
        HnTokenizer* again = hn_tokenizer_from_json(json, strlen(json), "roundtrip");
        if (!again) fprintf(stderr, "to_json did not read back: %s\n", hn_error_message());
        FUZZ_CHECK(again != NULL);
        FUZZ_CHECK(hn_tokenizer_vocab_size(again) == V);
        FUZZ_CHECK(hn_tokenizer_eos(again) == eos);
        char* json2 = hn_tokenizer_to_json(again);
        FUZZ_CHECK(json2 && strcmp(json, json2) == 0);
        free(json2);
        fuzz_encode_check(again, text, sizeof text - 1, 0, &b);
        fuzz_encode_check(tok, text, sizeof text - 1, 0, &a);
        FUZZ_CHECK(a.n == b.n && (a.n == 0 || memcmp(a.ids, b.ids, a.n * sizeof *a.ids) == 0));
        hn_tokenizer_free(again);
    }
    free(json);
    hn_tokens_free(&a);
    hn_tokens_free(&b);
}

#endif
