/*
 * Reading safetensors files (the format of Hugging Face checkpoints and of hone's test
 * fixtures): an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and byte range, then the raw little-endian data.
 *
 * The file is mapped read-only and every header field is checked against the bytes that
 * are really there before anything is trusted, so a truncated or hostile file is one clear
 * error naming the file (and the tensor), never a crash. Reading converts on the way out:
 * F32/F16/BF16 to float, I32/I64 to int. Writing (hn_safetensors_write) converts float to
 * F32, F16 or BF16 (round to nearest even; F16 overflows to infinity as IEEE rounding does).
 */
#ifndef HONE_SAFETENSORS_H
#define HONE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define HN_ST_MAX_RANK 8

typedef enum { HN_ST_F32, HN_ST_F16, HN_ST_BF16, HN_ST_I32, HN_ST_I64 } HnStDtype;

typedef struct {
    const char* name;
    HnStDtype dtype;
    int rank;                      /* 0 for a scalar */
    int64_t shape[HN_ST_MAX_RANK]; /* rank entries used */
    size_t numel;                  /* product of shape; 1 for a scalar */
} HnStTensor;

typedef struct HnSafetensors HnSafetensors;

/* NULL on error (unreadable, malformed or inconsistent file), message in hn_error_message() */
HnSafetensors* hn_safetensors_open(const char* path);
void hn_safetensors_close(HnSafetensors* st);

/* tensors in the order of the file's header; 0 <= i < count */
int hn_safetensors_count(const HnSafetensors* st);
const HnStTensor* hn_safetensors_tensor(const HnSafetensors* st, int i);
/* the tensor called name; NULL (with an error recorded) if there is none */
const HnStTensor* hn_safetensors_find(const HnSafetensors* st, const char* name);

/* copy tensor name into dst as float; its dtype must be F32, F16 or BF16 and it must have
 * exactly numel elements. HN_OK or HN_ERR. */
int hn_safetensors_read_f32(const HnSafetensors* st, const char* name, float* dst, size_t numel);
/* the same for int; its dtype must be I32 or I64 (I64 values must fit in int32) */
int hn_safetensors_read_i32(const HnSafetensors* st, const char* name, int32_t* dst, size_t numel);

/* the "__metadata__" string stored under key; NULL (with an error recorded) if there is none */
const char* hn_safetensors_meta(const HnSafetensors* st, const char* key);

/* one tensor to write: data (numel floats, row-major for shape); a rank-2 tensor with
 * transpose set is stored as its transpose (shape gives the stored shape) */
typedef struct {
    const char* name;
    const float* data;
    int rank;
    int64_t shape[HN_ST_MAX_RANK];
    int transpose;
} HnStOut;

/* write the tensors (in order) as dtype (F32, F16 or BF16) with __metadata__ {"format":
 * "pt"} to path (written whole; the caller renames). HN_OK or HN_ERR */
int hn_safetensors_write(const char* path, const HnStOut* t, int n, HnStDtype dtype);
/* float to IEEE half / bfloat16 bits, round to nearest even, NaN kept NaN */
uint16_t hn_f32_to_f16(float x);
uint16_t hn_f32_to_bf16(float x);

/* "F32", "F16", ... as the header spells it */
const char* hn_safetensors_dtype_name(HnStDtype dtype);

#endif
