/*
 * Reading GGUF files (llama.cpp's model format, versions 2 and 3): the header, every
 * metadata value type (arrays included), general.alignment, the tensor infos, and the
 * dequantization of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K tensors to float.
 *
 * The file is mapped read-only. Every read is checked against the bytes that remain and
 * every count before it becomes an allocation, so a truncated or hostile file is one clear
 * error (hn_error) naming the file and what is wrong, never a crash or a huge allocation.
 */
#ifndef HONE_GGUF_H
#define HONE_GGUF_H

#include <stddef.h>
#include <stdint.h>

/* metadata value types, numbered as in the GGUF specification */
typedef enum {
    HN_GGUF_UINT8 = 0,
    HN_GGUF_INT8 = 1,
    HN_GGUF_UINT16 = 2,
    HN_GGUF_INT16 = 3,
    HN_GGUF_UINT32 = 4,
    HN_GGUF_INT32 = 5,
    HN_GGUF_FLOAT32 = 6,
    HN_GGUF_BOOL = 7,
    HN_GGUF_STRING = 8,
    HN_GGUF_ARRAY = 9,
    HN_GGUF_UINT64 = 10,
    HN_GGUF_INT64 = 11,
    HN_GGUF_FLOAT64 = 12
} HnGgufType;

/* tensor types, numbered as ggml numbers them (only these can be dequantized) */
enum {
    HN_GGML_F32 = 0,
    HN_GGML_F16 = 1,
    HN_GGML_Q4_0 = 2,
    HN_GGML_Q4_1 = 3,
    HN_GGML_Q8_0 = 8,
    HN_GGML_Q4_K = 12,
    HN_GGML_Q6_K = 14,
    HN_GGML_BF16 = 30
};

typedef struct {
    const char* name; /* NUL-terminated copy */
    int ndim;         /* 1..4 */
    int64_t dims[4];  /* GGUF order: dims[0] is the fastest-varying (a row's length);
                         entries from ndim on are 1 */
    int type;         /* HN_GGML_* (or another ggml type, which cannot be dequantized) */
    size_t numel;
    size_t nbytes;    /* bytes of its data in the file (0 for a type hone does not know) */
    const void* data; /* into the mapping */
} HnGgufTensor;

typedef struct HnGguf HnGguf;

HnGguf* hn_gguf_open(const char* path); /* NULL with an error */
void hn_gguf_close(HnGguf* g);
const char* hn_gguf_path(const HnGguf* g);
int hn_gguf_version(const HnGguf* g);

/* metadata; each getter is HN_ERR (with an error naming the key) if the key is missing or
 * has an incompatible type */
int hn_gguf_has(const HnGguf* g, const char* key);
int hn_gguf_get_int(const HnGguf* g, const char* key, int64_t* out);  /* any integer or bool */
int hn_gguf_get_float(const HnGguf* g, const char* key, double* out); /* float32/64 or integer */
/* strings are NUL-terminated copies owned by g, valid until hn_gguf_close; *len (if len is
 * not NULL) is the byte length, which is what counts: GGUF strings may contain NUL bytes */
const char* hn_gguf_get_str(const HnGguf* g, const char* key, size_t* len);
/* arrays: element type and count (an array of arrays has elem HN_GGUF_ARRAY; its elements
 * are validated at open but not readable here); then elements by index: arr_str for arrays
 * of strings, arr_int for arrays of integers or bools */
int hn_gguf_get_arr(const HnGguf* g, const char* key, HnGgufType* elem, uint64_t* n);
const char* hn_gguf_arr_str(const HnGguf* g, const char* key, uint64_t i, size_t* len);
int hn_gguf_arr_int(const HnGguf* g, const char* key, uint64_t i, int64_t* out);
/* the number of metadata keys and the i-th key's name and type, in file order (for inspect) */
int hn_gguf_key_count(const HnGguf* g);
const char* hn_gguf_key(const HnGguf* g, int i, HnGgufType* type);

/* tensors in file order; names are unique (a duplicate is an error at open) */
int hn_gguf_tensor_count(const HnGguf* g);
const HnGgufTensor* hn_gguf_tensor(const HnGguf* g, int i);
const HnGgufTensor* hn_gguf_find_tensor(const HnGguf* g, const char* name); /* NULL + error */
/* dequantize a whole tensor into dst (numel floats, in the file's element order);
 * an unsupported type is an error naming it */
int hn_gguf_dequantize(const HnGguf* g, const HnGgufTensor* t, float* dst, size_t numel);
const char* hn_gguf_type_name(int type); /* "Q4_K", ...; "unknown" if ggml has no such type */

/* ---- writing (data/gguf_write.c): GGUF version 3, alignment 32 ---- */

typedef struct HnGgufWriter HnGgufWriter;

HnGgufWriter* hn_gguf_writer_new(void); /* NULL with an error */
void hn_gguf_writer_free(HnGgufWriter* w);
/* metadata, in the order given; keys and strings are copied */
int hn_gguf_put_str(HnGgufWriter* w, const char* key, const char* s, size_t len);
int hn_gguf_put_u32(HnGgufWriter* w, const char* key, uint32_t v);
int hn_gguf_put_f32(HnGgufWriter* w, const char* key, float v);
int hn_gguf_put_bool(HnGgufWriter* w, const char* key, int v);
/* an array of n strings (strs[i] of lens[i] bytes) or of n int32 */
int hn_gguf_put_strs(HnGgufWriter* w, const char* key, const char* const* strs, const size_t* lens,
                     size_t n);
int hn_gguf_put_i32s(HnGgufWriter* w, const char* key, const int32_t* v, size_t n);
/* a tensor of ndim dims in GGUF order (dims[0] fastest: a row's length), from data (numel
 * floats, kept by pointer until the write), stored as HN_GGML_F32, _F16 or _Q8_0 (rows of a
 * multiple of 32 for Q8_0) */
int hn_gguf_put_tensor(HnGgufWriter* w, const char* name, const float* data, int ndim,
                       const int64_t* dims, int type);
/* the whole file to path (the caller renames it into place) */
int hn_gguf_write(HnGgufWriter* w, const char* path);

#endif
