/*
 * Fuzz target: the GGUF reader (data/gguf.c) on a whole file, then every metadata getter,
 * the dequantization of each small tensor, and the tokenizer the metadata may carry
 * (hn_tokenizer_from_gguf).
 */
#include "data/gguf.h"
#include "fuzz/fuzz_tok.h"

static void read_metadata(const HnGguf* g) {
    int n = hn_gguf_key_count(g);
    for (int i = 0; i < n; i++) {
        HnGgufType type;
        const char* key = hn_gguf_key(g, i, &type);
        FUZZ_CHECK(key != NULL);
        FUZZ_CHECK(hn_gguf_has(g, key));
        int64_t v;
        double d;
        size_t len;
        (void)hn_gguf_get_int(g, key, &v);
        (void)hn_gguf_get_float(g, key, &d);
        (void)hn_gguf_get_str(g, key, &len);
        HnGgufType elem;
        uint64_t count;
        if (hn_gguf_get_arr(g, key, &elem, &count) == 0) {
            FUZZ_CHECK(type == HN_GGUF_ARRAY);
            for (uint64_t k = 0; k < count && k < 64; k++) {
                (void)hn_gguf_arr_str(g, key, k, &len);
                (void)hn_gguf_arr_int(g, key, k, &v);
            }
            (void)hn_gguf_arr_str(g, key, count, &len);
            (void)hn_gguf_arr_int(g, key, count, &v);
        }
    }
    (void)hn_gguf_key(g, n, NULL);
}

static void read_tensors(const HnGguf* g) {
    int n = hn_gguf_tensor_count(g);
    for (int i = 0; i < n; i++) {
        const HnGgufTensor* t = hn_gguf_tensor(g, i);
        FUZZ_CHECK(t && t->name);
        FUZZ_CHECK(hn_gguf_find_tensor(g, t->name) == t);
        FUZZ_CHECK(t->ndim >= 1 && t->ndim <= 4);
        (void)hn_gguf_type_name(t->type);
        if (t->numel == 0 || t->numel > (1 << 16)) continue;
        float* dst = malloc(t->numel * sizeof *dst);
        if (!dst) abort();
        (void)hn_gguf_dequantize(g, t, dst, t->numel);
        /* a wrong count is an error, never a write past dst */
        FUZZ_CHECK(hn_gguf_dequantize(g, t, dst, t->numel - 1) != 0);
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    HnGguf* g = hn_gguf_open(fuzz_write(0, "in.gguf", data, size));
    if (!g) return 0;
    FUZZ_CHECK(hn_gguf_version(g) == 2 || hn_gguf_version(g) == 3);
    read_metadata(g);
    read_tensors(g);
    HnTokenizer* tok = hn_tokenizer_from_gguf(g);
    if (tok) {
        fuzz_tokenizer(tok, data, size);
        hn_tokenizer_free(tok);
    }
    hn_gguf_close(g);
    return 0;
}
