/*
 * Writing GGUF (llama.cpp's format, version 3): the header, metadata key/values, tensor infos
 * and the tensor data aligned to 32 bytes; see gguf.h. F16 by round-to-nearest-even; Q8_0 as
 * ggml's reference quantizer does it: per block of 32, d = max|x| / 127 stored as F16 and
 * q = round(x / d) with the float d.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "data/gguf.h"
#include "data/safetensors.h"

#define ALIGN 32

typedef struct {
    char* name;
    const float* data;
    int ndim, type;
    int64_t dims[4];
    size_t numel, nbytes, offset;
} OutTensor;

struct HnGgufWriter {
    unsigned char* kv; /* the encoded key/values */
    size_t kv_len, kv_cap;
    uint64_t nkv;
    OutTensor* t;
    int nt, cap;
};

HnGgufWriter* hn_gguf_writer_new(void) {
    HnGgufWriter* w = calloc(1, sizeof *w);
    if (!w) hn_error("out of memory");
    return w;
}

void hn_gguf_writer_free(HnGgufWriter* w) {
    if (!w) return;
    for (int i = 0; i < w->nt; i++)
        free(w->t[i].name);
    free(w->t);
    free(w->kv);
    free(w);
}

static int put(HnGgufWriter* w, const void* p, size_t n) {
    if (w->kv_len + n > w->kv_cap) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap < w->kv_len + n)
            cap *= 2;
        unsigned char* kv = realloc(w->kv, cap);
        if (!kv) return hn_error("out of memory");
        w->kv = kv;
        w->kv_cap = cap;
    }
    memcpy(w->kv + w->kv_len, p, n);
    w->kv_len += n;
    return HN_OK;
}

static int put_string(HnGgufWriter* w, const char* s, size_t n) {
    uint64_t len = n;
    return put(w, &len, 8) == HN_OK && put(w, s, n) == HN_OK ? HN_OK : HN_ERR;
}

static int put_key(HnGgufWriter* w, const char* key, uint32_t type) {
    w->nkv++;
    return put_string(w, key, strlen(key)) == HN_OK && put(w, &type, 4) == HN_OK ? HN_OK : HN_ERR;
}

int hn_gguf_put_str(HnGgufWriter* w, const char* key, const char* s, size_t len) {
    return put_key(w, key, HN_GGUF_STRING) == HN_OK ? put_string(w, s, len) : HN_ERR;
}

int hn_gguf_put_u32(HnGgufWriter* w, const char* key, uint32_t v) {
    return put_key(w, key, HN_GGUF_UINT32) == HN_OK ? put(w, &v, 4) : HN_ERR;
}

int hn_gguf_put_f32(HnGgufWriter* w, const char* key, float v) {
    return put_key(w, key, HN_GGUF_FLOAT32) == HN_OK ? put(w, &v, 4) : HN_ERR;
}

int hn_gguf_put_bool(HnGgufWriter* w, const char* key, int v) {
    unsigned char b = v != 0;
    return put_key(w, key, HN_GGUF_BOOL) == HN_OK ? put(w, &b, 1) : HN_ERR;
}

int hn_gguf_put_strs(HnGgufWriter* w, const char* key, const char* const* strs, const size_t* lens,
                     size_t n) {
    uint32_t et = HN_GGUF_STRING;
    uint64_t count = n;
    if (put_key(w, key, HN_GGUF_ARRAY) != HN_OK || put(w, &et, 4) != HN_OK ||
        put(w, &count, 8) != HN_OK)
        return HN_ERR;
    for (size_t i = 0; i < n; i++)
        if (put_string(w, strs[i], lens[i]) != HN_OK) return HN_ERR;
    return HN_OK;
}

int hn_gguf_put_i32s(HnGgufWriter* w, const char* key, const int32_t* v, size_t n) {
    uint32_t et = HN_GGUF_INT32;
    uint64_t count = n;
    if (put_key(w, key, HN_GGUF_ARRAY) != HN_OK || put(w, &et, 4) != HN_OK ||
        put(w, &count, 8) != HN_OK)
        return HN_ERR;
    return put(w, v, n * 4);
}

int hn_gguf_put_tensor(HnGgufWriter* w, const char* name, const float* data, int ndim,
                       const int64_t* dims, int type) {
    if (ndim < 1 || ndim > 4) return hn_error("gguf: tensor %s has %d dims", name, ndim);
    if (type != HN_GGML_F32 && type != HN_GGML_F16 && type != HN_GGML_Q8_0)
        return hn_error("gguf: cannot write tensor type %d", type);
    if (w->nt == w->cap) {
        int cap = w->cap ? 2 * w->cap : 64;
        OutTensor* t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t) return hn_error("out of memory");
        w->t = t;
        w->cap = cap;
    }
    OutTensor* t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    t->numel = 1;
    for (int d = 0; d < ndim; d++) {
        t->dims[d] = dims[d];
        t->numel *= (size_t)dims[d];
    }
    if (type == HN_GGML_Q8_0 && dims[0] % 32 != 0)
        return hn_error("gguf: Q8_0 needs rows of a multiple of 32 (%s has %lld)", name,
                        (long long)dims[0]);
    t->nbytes = type == HN_GGML_F32   ? 4 * t->numel
                : type == HN_GGML_F16 ? 2 * t->numel
                                      : t->numel / 32 * 34;
    if (!(t->name = strdup(name))) return hn_error("out of memory");
    t->data = data;
    t->ndim = ndim;
    t->type = type;
    w->nt++;
    return HN_OK;
}

/* one Q8_0 block of 32 */
static void quantize_q8_0(const float* x, unsigned char* out) {
    float amax = 0;
    for (int i = 0; i < 32; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
    const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
    uint16_t h = hn_f32_to_f16(d);
    memcpy(out, &h, 2);
    for (int i = 0; i < 32; i++)
        out[2 + i] = (unsigned char)(int8_t)roundf(x[i] * id);
}

static int pad(FILE* f, long long at) {
    static const unsigned char zeros[ALIGN] = {0};
    size_t n = (size_t)((ALIGN - at % ALIGN) % ALIGN);
    return n == 0 || fwrite(zeros, 1, n, f) == n;
}

int hn_gguf_write(HnGgufWriter* w, const char* path) {
    FILE* f = fopen(path, "wb");
    if (!f) return hn_error("cannot write %s", path);
    uint32_t version = 3;
    uint64_t nt = (uint64_t)w->nt, nkv = w->nkv;
    int ok = fwrite("GGUF", 1, 4, f) == 4 && fwrite(&version, 4, 1, f) == 1 &&
             fwrite(&nt, 8, 1, f) == 1 && fwrite(&nkv, 8, 1, f) == 1 &&
             (w->kv_len == 0 || fwrite(w->kv, 1, w->kv_len, f) == w->kv_len);
    size_t off = 0;
    for (int i = 0; ok && i < w->nt; i++) {
        OutTensor* t = &w->t[i];
        t->offset = off;
        off += (t->nbytes + ALIGN - 1) / ALIGN * ALIGN;
        uint64_t len = strlen(t->name), offset = t->offset;
        uint32_t nd = (uint32_t)t->ndim, type = (uint32_t)t->type;
        ok = fwrite(&len, 8, 1, f) == 1 && fwrite(t->name, 1, len, f) == len &&
             fwrite(&nd, 4, 1, f) == 1;
        for (int d = 0; ok && d < t->ndim; d++) {
            uint64_t dim = (uint64_t)t->dims[d];
            ok = fwrite(&dim, 8, 1, f) == 1;
        }
        ok = ok && fwrite(&type, 4, 1, f) == 1 && fwrite(&offset, 8, 1, f) == 1;
    }
    ok = ok && pad(f, ftell(f));
    unsigned char buf[34 * 256];
    for (int i = 0; ok && i < w->nt; i++) {
        const OutTensor* t = &w->t[i];
        if (t->type == HN_GGML_F32) {
            ok = fwrite(t->data, 4, t->numel, f) == t->numel;
        } else if (t->type == HN_GGML_F16) {
            for (size_t at = 0; ok && at < t->numel; at += 4096) {
                size_t k = t->numel - at < 4096 ? t->numel - at : 4096;
                for (size_t j = 0; j < k; j++) {
                    uint16_t h = hn_f32_to_f16(t->data[at + j]);
                    memcpy(buf + 2 * j, &h, 2);
                }
                ok = fwrite(buf, 2, k, f) == k;
            }
        } else {
            for (size_t b = 0; ok && b < t->numel / 32; b += 256) {
                size_t k = t->numel / 32 - b < 256 ? t->numel / 32 - b : 256;
                for (size_t j = 0; j < k; j++)
                    quantize_q8_0(t->data + (b + j) * 32, buf + 34 * j);
                ok = fwrite(buf, 34, k, f) == k;
            }
        }
        ok = ok && pad(f, (long long)t->nbytes);
    }
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    return ok ? HN_OK : hn_error("cannot write %s (disk full?)", path);
}
