/*
 * Fuzz target: the safetensors reader (data/safetensors.c) on a whole file, then every
 * tensor read as float or int (whichever its dtype allows) and the metadata.
 */
#include "data/safetensors.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    HnSafetensors* st = hn_safetensors_open(fuzz_write(0, "in.safetensors", data, size));
    if (!st) return 0;
    int n = hn_safetensors_count(st);
    for (int i = 0; i < n; i++) {
        const HnStTensor* t = hn_safetensors_tensor(st, i);
        FUZZ_CHECK(t && t->name);
        FUZZ_CHECK(hn_safetensors_find(st, t->name) != NULL);
        FUZZ_CHECK(t->rank >= 0 && t->rank <= HN_ST_MAX_RANK);
        (void)hn_safetensors_dtype_name(t->dtype);
        if (t->numel > (1 << 16)) continue;
        size_t k = t->numel ? t->numel : 1;
        float* f = malloc(k * sizeof *f);
        int32_t* v = malloc(k * sizeof *v);
        if (!f || !v) abort();
        int isf = t->dtype == HN_ST_F32 || t->dtype == HN_ST_F16 || t->dtype == HN_ST_BF16;
        int rf = hn_safetensors_read_f32(st, t->name, f, t->numel);
        (void)hn_safetensors_read_i32(st, t->name, v, t->numel);
        if (isf) FUZZ_CHECK(rf == 0);
        if (t->numel) FUZZ_CHECK(hn_safetensors_read_f32(st, t->name, f, t->numel - 1) != 0);
        free(f);
        free(v);
    }
    (void)hn_safetensors_meta(st, "format");
    (void)hn_safetensors_find(st, "no.such.tensor");
    hn_safetensors_close(st);
    return 0;
}
