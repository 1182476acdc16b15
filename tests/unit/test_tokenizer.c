/*
 * The tokenizers against an independent reference: GPT-2 ids must equal those of Hugging Face
 * tokenizers built from the same encoder.json/vocab.bpe (scripts/make_tokenizer_fixture.py
 * wrote them), every byte string must survive encode then decode, and every broken file must
 * give NULL with an error line rather than a crash.
 */
#include "data/tokenizer.h"

#include "core/error.h"
#include "testing.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char* slurp(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    for (size_t got; (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void spit(const char* path, const char* data, size_t len) {
    FILE* f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "FAIL: cannot write %s: %s\n", path, strerror(errno));
        exit(1);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static char* path_join(const char* dir, const char* name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char* p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* the ids on one line of text; advances *s past the newline */
static HnTokens parse_ids(const char** s) {
    HnTokens t = {0};
    const char* p = *s;
    while (*p && *p != '\n') {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        hn_tokens_push(&t, (int)v);
        p = end;
        while (*p == ' ')
            p++;
    }
    *s = *p == '\n' ? p + 1 : p;
    return t;
}

static int same_ids(const HnTokens* a, const HnTokens* b) {
    return a->n == b->n && (a->n == 0 || memcmp(a->ids, b->ids, a->n * sizeof *a->ids) == 0);
}

/* encode, decode, and compare with the input; returns 1 on a faithful round trip */
static int roundtrips(const HnTokenizer* tok, const char* text, size_t len) {
    HnTokens t = {0};
    if (hn_tokenizer_encode(tok, text, len, &t) != HN_OK) return 0;
    size_t n = 0;
    char* back = hn_tokenizer_decode(tok, t.ids, t.n, &n);
    int ok = back && n == len && memcmp(back, text, len) == 0;
    free(back);
    hn_tokens_free(&t);
    return ok;
}

static void test_gpt2_ids_equal_reference_per_line(const HnTokenizer* tok, const char* text,
                                                   size_t len, const char* ids, int min_lines) {
    int lines = 0;
    for (const char* line = text; line < text + len; lines++) {
        const char* eol = memchr(line, '\n', (size_t)(text + len - line));
        HnTokens want = parse_ids(&ids), got = {0};
        CHECK(hn_tokenizer_encode(tok, line, (size_t)(eol - line), &got) == HN_OK, "line %d",
              lines + 1);
        CHECK(same_ids(&got, &want), "line %d \"%.*s\": %zu ids, reference has %zu", lines + 1,
              (int)(eol - line), line, got.n, want.n);
        CHECK(roundtrips(tok, line, (size_t)(eol - line)), "line %d does not round-trip",
              lines + 1);
        hn_tokens_free(&want);
        hn_tokens_free(&got);
        line = eol + 1;
    }
    CHECK(lines >= min_lines, "the fixture has only %d lines", lines);
}

static void test_gpt2_ids_equal_reference_whole_text(const HnTokenizer* tok, const char* text,
                                                     size_t len, const char* ids) {
    HnTokens want = parse_ids(&ids), got = {0};
    CHECK(hn_tokenizer_encode(tok, text, len, &got) == HN_OK, "whole text");
    CHECK(same_ids(&got, &want), "whole text: %zu ids, reference has %zu", got.n, want.n);
    CHECK(roundtrips(tok, text, len), "the whole text does not round-trip");
    hn_tokens_free(&want);
    hn_tokens_free(&got);
}

static void test_invalid_utf8_roundtrips(const HnTokenizer* tok) {
    static const struct {
        const char* what;
        const char* bytes;
        size_t len;
    } cases[] = {
        {"lone continuation bytes",
         "\x80\xbf\x80 a\x80"
         "b",
         7},
        {"truncated 2-byte sequence", "caf\xc3", 4},
        {"truncated 3-byte sequence mid-text", "a\xe2\x82 b", 5},
        {"truncated 4-byte sequence then emoji", "\xf0\x9f\x99\xf0\x9f\x99\x82", 7},
        {"overlong slash", "\xc0\xaf and \xe0\x80\xaf", 10},
        {"overlong NUL", "x\xc0\x80y", 4},
        {"0xFF and 0xFE", "\xff\xfe\xff hello \xff", 11},
        {"UTF-16 surrogate encoded", "\xed\xa0\x80\xed\xb0\x80", 6},
        {"beyond U+10FFFF", "\xf4\x90\x80\x80", 4},
        {"invalid bytes inside whitespace", "  \x80  \t\xff\n\n", 9},
        {"NUL bytes", "a\0b\0\0 c", 7},
        {"invalid between letters and digits",
         "word\xffword123\xfe"
         "456",
         16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        CHECK(roundtrips(tok, cases[i].bytes, cases[i].len), "%s", cases[i].what);

    /* every single byte, and a pseudo-random byte soup */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        CHECK(roundtrips(tok, &c, 1), "byte 0x%02x", b);
    }
    size_t n = 1 << 16;
    char* soup = malloc(n);
    uint32_t x = 12345;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        soup[i] = (char)(x >> 24);
    }
    CHECK(roundtrips(tok, soup, n), "64 KiB of random bytes");
    free(soup);
}

/* pre-tokens of a megabyte must not go quadratic (the BPE runs on a heap) */
static void test_long_pre_tokens_are_fast(const HnTokenizer* tok) {
    size_t n = 1 << 20;
    char* buf = malloc(n);
    const char fills[] = {'a', ' ', '\xff', '7'};
    for (size_t k = 0; k < sizeof fills; k++) {
        memset(buf, fills[k], n);
        clock_t t0 = clock();
        CHECK(roundtrips(tok, buf, n), "1 MiB of byte 0x%02x", (unsigned char)fills[k]);
        double s = (double)(clock() - t0) / CLOCKS_PER_SEC;
        CHECK(s < 10.0, "1 MiB of byte 0x%02x took %.1f s", (unsigned char)fills[k], s);
    }
    free(buf);
}

static void test_special_string_is_ordinary_text(const HnTokenizer* tok) {
    CHECK(hn_tokenizer_eos(tok) == 50256, "eos %d", hn_tokenizer_eos(tok));
    CHECK(hn_tokenizer_vocab_size(tok) == 50257, "vocab %d", hn_tokenizer_vocab_size(tok));
    CHECK(strcmp(hn_tokenizer_name(tok), "gpt2") == 0, "name %s", hn_tokenizer_name(tok));
    size_t len = 0;
    const char* eos = hn_tokenizer_token_bytes(tok, 50256, &len);
    CHECK(eos && len == 13 && memcmp(eos, "<|endoftext|>", 13) == 0, "eos token bytes");
    const char* text = "<|endoftext|>x<|endoftext|>";
    HnTokens t = {0};
    CHECK(hn_tokenizer_encode(tok, text, strlen(text), &t) == HN_OK, "encode");
    CHECK(t.n > 2, "%zu ids", t.n);
    for (size_t i = 0; i < t.n; i++)
        CHECK(t.ids[i] != 50256, "id %zu is eos", i);
    hn_tokens_free(&t);
}

/* encode_special: the exact special string becomes its id, the rest is encoded as text */
static void test_special_string_becomes_eos_with_encode_special(const HnTokenizer* tok) {
    const char* text = "<|endoftext|>x<|endoftext|><|endoftext|";
    HnTokens t = {0}, x = {0};
    CHECK(hn_tokenizer_encode_special(tok, text, strlen(text), &t) == HN_OK, "encode_special");
    hn_tokenizer_encode(tok, "x", 1, &x);
    hn_tokenizer_encode(tok, "<|endoftext|", 12, &x);
    int eos = hn_tokenizer_eos(tok);
    int ok = t.n == x.n + 2 && t.ids[0] == eos && t.ids[1] == x.ids[0] && t.ids[2] == eos &&
             memcmp(t.ids + 3, x.ids + 1, (x.n - 1) * sizeof *x.ids) == 0;
    CHECK(ok, "%s: encode_special gave %zu ids", hn_tokenizer_name(tok), t.n);
    size_t n = 0;
    char* back = hn_tokenizer_decode(tok, t.ids, t.n, &n);
    CHECK(back && n == strlen(text) && memcmp(back, text, n) == 0, "decode(encode_special)");
    free(back);
    hn_tokens_free(&t);
    hn_tokens_free(&x);
}

/* GPT-2 through tokenizer.json (how checkpoints store it): the same text back, the same ids */
static void test_gpt2_json_roundtrip(const HnTokenizer* tok, const char* text, size_t len,
                                     const char* ids, const char* tmp) {
    char* json = hn_tokenizer_to_json(tok);
    CHECK(json != NULL, "to_json: %s", hn_error_message());
    if (!json) return;
    HnTokenizer* copy = hn_tokenizer_from_json(json, strlen(json), "gpt2.json");
    CHECK(copy != NULL, "from_json: %s", hn_error_message());
    if (copy) {
        char* again = hn_tokenizer_to_json(copy);
        CHECK(again && strcmp(again, json) == 0, "to_json of the copy differs");
        free(again);
        CHECK(strcmp(hn_tokenizer_name(copy), "gpt2") == 0 && hn_tokenizer_eos(copy) == 50256 &&
                  hn_tokenizer_bos(copy) == -1 && hn_tokenizer_vocab_size(copy) == 50257 &&
                  hn_tokenizer_chat_template(copy) == NULL,
              "the copy's name, eos, bos, vocab or template differ");
        test_gpt2_ids_equal_reference_per_line(copy, text, len, ids, 1000);
        test_special_string_is_ordinary_text(copy);
        test_special_string_becomes_eos_with_encode_special(copy);
    }
    hn_tokenizer_free(copy);
    /* for HF to read: scripts/make_tokenizer_fixture.py --check-json */
    char* path = path_join(tmp, "gpt2_tokenizer.json");
    spit(path, json, strlen(json));
    free(path);
    free(json);
}

static void test_byte_tokenizer_roundtrips_all_bytes(void) {
    HnTokenizer* tok = hn_tokenizer_byte();
    CHECK(tok != NULL, "%s", hn_error_message());
    CHECK(hn_tokenizer_vocab_size(tok) == 257 && hn_tokenizer_eos(tok) == 256, "sizes");
    CHECK(strcmp(hn_tokenizer_name(tok), "byte") == 0, "name");
    char all[256];
    for (int b = 0; b < 256; b++)
        all[b] = (char)b;
    HnTokens t = {0};
    CHECK(hn_tokenizer_encode(tok, all, 256, &t) == HN_OK, "encode");
    int ids_are_bytes = t.n == 256;
    for (size_t i = 0; ids_are_bytes && i < 256; i++)
        ids_are_bytes = t.ids[i] == (int)i;
    CHECK(ids_are_bytes, "ids are not the byte values");
    CHECK(roundtrips(tok, all, 256), "all bytes");
    hn_tokens_free(&t);
    test_special_string_becomes_eos_with_encode_special(tok);
    CHECK(hn_tokenizer_bos(tok) == -1 && hn_tokenizer_chat_template(tok) == NULL, "bos, template");
    size_t len = 0;
    const char* eos = hn_tokenizer_token_bytes(tok, 256, &len);
    CHECK(eos && len == 13 && memcmp(eos, "<|endoftext|>", 13) == 0, "eos token bytes");
    hn_tokenizer_free(tok);
}

static void test_out_of_range_ids_are_rejected(const HnTokenizer* tok) {
    int v = hn_tokenizer_vocab_size(tok);
    int bad[] = {-1, v, v + 1000, -2147483647 - 1};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        size_t len = 0;
        hn_error_clear();
        CHECK(hn_tokenizer_token_bytes(tok, bad[i], &len) == NULL, "token_bytes(%d)", bad[i]);
        CHECK(hn_error_message()[0] != '\0', "token_bytes(%d) left no error", bad[i]);
        int ids[3] = {1, bad[i], 2};
        hn_error_clear();
        CHECK(hn_tokenizer_decode(tok, ids, 3, &len) == NULL, "decode with id %d", bad[i]);
        CHECK(hn_error_message()[0] != '\0', "decode(%d) left no error", bad[i]);
    }
    size_t len = 1;
    char* empty = hn_tokenizer_decode(tok, NULL, 0, &len);
    CHECK(empty && len == 0 && empty[0] == '\0', "decoding no ids gives \"\"");
    free(empty);
}

/* GPT-2's byte alphabet, so the test can write small encoders of its own */
static void alphabet_char(int b, char out[3]) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    int cp = b, extra = 0;
    if (!printable) {
        for (int c = 0; c < b; c++)
            extra += !((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE);
        cp = 256 + extra;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

/* an encoder of the 256 bytes (but skip_byte, if in range), "ab" = 256 and eos = 257 */
static char* small_encoder(int skip_byte) {
    size_t cap = 1 << 14, n = 0;
    char* s = malloc(cap);
    n += (size_t)snprintf(s + n, cap - n, "{");
    int id = 0;
    for (int b = 0; b < 256; b++) {
        if (b == skip_byte) continue;
        char c[3];
        alphabet_char(b, c);
        /* '"' and '\\' stand for themselves and must be escaped in JSON */
        const char* esc = b == '"' ? "\\\"" : b == '\\' ? "\\\\" : c;
        n += (size_t)snprintf(s + n, cap - n, "\"%s\": %d, ", esc, id++);
    }
    n += (size_t)snprintf(s + n, cap - n, "\"ab\": %d, \"<|endoftext|>\": %d}", id, id + 1);
    return s;
}

/* NULL and a non-empty error naming the offending file */
static void expect_load_error(const char* enc, const char* bpe, const char* names,
                              const char* what) {
    hn_error_clear();
    HnTokenizer* tok = hn_tokenizer_gpt2(enc, bpe);
    CHECK(tok == NULL, "%s: loaded", what);
    const char* msg = hn_error_message();
    CHECK(msg[0] != '\0', "%s: no error message", what);
    CHECK(strstr(msg, names) != NULL, "%s: error \"%s\" does not name %s", what, msg, names);
    hn_tokenizer_free(tok);
}

static void test_hostile_files_give_errors(const char* enc_path, const char* bpe_path) {
    const char* tmp = hn_test_env("HONE_TEST_TMP");
    char* dir = path_join(tmp, "tokenizer");
    mkdir(dir, 0777);
    char* bad = path_join(dir, "bad.json");
    char* bad_bpe = path_join(dir, "bad.bpe");
    char* good = path_join(dir, "small.json");
    char* good_bpe = path_join(dir, "small.bpe");

    /* a small well-formed pair first, so the failures below are about what each breaks */
    char* small = small_encoder(-1);
    spit(good, small, strlen(small));
    const char* merges = "#version: 0.2\na b\n";
    spit(good_bpe, merges, strlen(merges));
    HnTokenizer* tok = hn_tokenizer_gpt2(good, good_bpe);
    CHECK(tok != NULL, "small tokenizer: %s", hn_error_message());
    if (tok) {
        HnTokens t = {0};
        hn_tokenizer_encode(tok, "abab ab", 7, &t);
        int want[] = {256, 256, ' ', 256};
        CHECK(t.n == 4 && memcmp(t.ids, want, sizeof want) == 0, "small encode: %zu ids", t.n);
        hn_tokens_free(&t);
        hn_tokenizer_free(tok);
    }

    size_t len = 0;
    char* real = slurp(enc_path, &len);
    spit(bad, real, len / 2);
    expect_load_error(bad, bpe_path, bad, "truncated JSON");
    free(real);
    spit(bad, "", 0);
    expect_load_error(bad, bpe_path, bad, "empty encoder");
    spit(bad, "[1, 2, 3]", 9);
    expect_load_error(bad, bpe_path, bad, "JSON array");
    spit(bad, "\"string\"", 8);
    expect_load_error(bad, bpe_path, bad, "JSON string");
    expect_load_error("/nonexistent/encoder.json", bpe_path, "/nonexistent/encoder.json",
                      "missing encoder");
    expect_load_error(dir, bpe_path, dir, "a directory as encoder");

    char* missing_byte = small_encoder(0x41);
    spit(bad, missing_byte, strlen(missing_byte));
    expect_load_error(bad, good_bpe, bad, "encoder without byte 0x41");
    free(missing_byte);

    const struct {
        const char *from, *to, *what;
    } edits[] = {
        {"\"ab\": 256", "\"ab\": 9999", "id out of range"},
        {"\"ab\": 256", "\"ab\": 1", "duplicate id"},
        {"\"ab\": 256", "\"ab\": \"256\"", "id not a number"},
        {"\"ab\": 256", "\"ab\": 2.5", "fractional id"},
        {"\"ab\": 256", "\"a b\": 256", "token outside the byte alphabet"},
        {", \"<|endoftext|>\": 257", "", "no eos token"},
    };
    for (size_t i = 0; i < sizeof edits / sizeof *edits; i++) {
        char* at = strstr(small, edits[i].from);
        size_t head = (size_t)(at - small), from = strlen(edits[i].from);
        size_t to = strlen(edits[i].to), total = strlen(small) - from + to;
        char* e = malloc(total);
        memcpy(e, small, head);
        memcpy(e + head, edits[i].to, to);
        memcpy(e + head + to, at + from, strlen(at + from));
        spit(bad, e, total);
        expect_load_error(bad, good_bpe, bad, edits[i].what);
        free(e);
    }

    const struct {
        const char *text, *what, *names;
    } bad_merges[] = {
        {"", "empty merges", ""},
        {"#version: 0.2\n", "no merges", ""},
        {"#version: 0.2\na b\nab\n", "one token on a line", ":3:"},
        {"#version: 0.2\na b c\n", "three tokens on a line", ":2:"},
        {"#version: 0.2\na  b\n", "two spaces", ":2:"},
        {"#version: 0.2\na b\n\na b\n", "empty line inside", ":3:"},
        {"#version: 0.2\nb a\n", "merge result not in encoder", ":2:"},
        {"#version: 0.2\na b\na b\n", "merge listed twice", ":3:"},
        {"#version: 0.2\na \xe4\xb8\x80\n", "token outside the byte alphabet", ":2:"},
    };
    for (size_t i = 0; i < sizeof bad_merges / sizeof *bad_merges; i++) {
        spit(bad_bpe, bad_merges[i].text, strlen(bad_merges[i].text));
        char* names = malloc(strlen(bad_bpe) + 8);
        sprintf(names, "%s%s", bad_bpe, bad_merges[i].names);
        expect_load_error(good, bad_bpe, names, bad_merges[i].what);
        free(names);
    }
    expect_load_error(good, "/nonexistent/vocab.bpe", "/nonexistent/vocab.bpe", "missing merges");

    free(small);
    free(bad);
    free(bad_bpe);
    free(good);
    free(good_bpe);
    free(dir);
}

int main(void) {
    const char* fixtures = hn_test_env("HONE_FIXTURES");
    const char* shared = hn_test_env("HONE_SHARED_DIR");
    char* enc_path = path_join(shared, "data/gpt2/encoder.json");
    char* bpe_path = path_join(shared, "data/gpt2/vocab.bpe");
    char* lines_path = path_join(fixtures, "tokenizer/gpt2_lines.txt");
    char* ids_path = path_join(fixtures, "tokenizer/gpt2_ids.txt");
    char* text_ids_path = path_join(fixtures, "tokenizer/gpt2_text_ids.txt");
    char* man_path = path_join(fixtures, "tokenizer/man_lines.txt");
    char* man_ids_path = path_join(fixtures, "tokenizer/gpt2_man_ids.txt");
    const char* tmp = hn_test_env("HONE_TEST_TMP");
    mkdir(tmp, 0777);

    test_byte_tokenizer_roundtrips_all_bytes();

    HnTokenizer* tok = hn_tokenizer_gpt2(enc_path, bpe_path);
    CHECK(tok != NULL, "loading GPT-2: %s", hn_error_message());
    size_t text_len = 0, ids_len = 0, text_ids_len = 0;
    char* text = slurp(lines_path, &text_len);
    char* ids = slurp(ids_path, &ids_len);
    char* text_ids = slurp(text_ids_path, &text_ids_len);
    size_t man_len = 0, man_ids_len = 0;
    char* man = slurp(man_path, &man_len);
    char* man_ids = slurp(man_ids_path, &man_ids_len);
    CHECK(text && ids && text_ids && man && man_ids, "fixture files missing under %s/tokenizer",
          fixtures);
    if (tok && text && ids && text_ids && man && man_ids) {
        test_gpt2_ids_equal_reference_per_line(tok, text, text_len, ids, 250);
        test_gpt2_ids_equal_reference_per_line(tok, man, man_len, man_ids, 1000);
        test_gpt2_json_roundtrip(tok, man, man_len, man_ids, tmp);
        test_special_string_becomes_eos_with_encode_special(tok);
        test_gpt2_ids_equal_reference_whole_text(tok, text, text_len, text_ids);
        test_invalid_utf8_roundtrips(tok);
        test_long_pre_tokens_are_fast(tok);
        test_special_string_is_ordinary_text(tok);
        test_out_of_range_ids_are_rejected(tok);
    }
    HnTokenizer* byte = hn_tokenizer_byte();
    test_out_of_range_ids_are_rejected(byte);
    hn_tokenizer_free(byte);
    test_hostile_files_give_errors(enc_path, bpe_path);

    hn_tokenizer_free(tok);
    free(text);
    free(ids);
    free(text_ids);
    free(enc_path);
    free(bpe_path);
    free(lines_path);
    free(ids_path);
    free(text_ids_path);
    free(man);
    free(man_ids);
    free(man_path);
    free(man_ids_path);
    return hn_test_finish("test_tokenizer");
}
