/*
 * A small layer over HDF5 for hone's files: create a file under a temporary name and
 * commit it atomically (flush, seal with its SHA-256, fsync, rename, fsync the folder),
 * write and read datasets
 * and attributes by path, with chunking + shuffle + deflate for arrays. HDF5's own error
 * printing is off; every failure is one hn_error() line naming the file and the object.
 * Nothing here knows the checkpoint schema (train/checkpoint.c does).
 */
#ifndef HONE_H5_H
#define HONE_H5_H

#include <stddef.h>
#include <stdint.h>

typedef struct HnH5 HnH5;

/* element types of datasets. HN_H5_BF16 is bfloat16 stored as an HDF5 float type defined
 * with H5Tset_fields (sign 15, exponent 7..14, mantissa 0..6, bias 127), so h5py reads it
 * as floats; data given to or read from it is float (rounded to nearest even on write, NaN
 * stays NaN; widened exactly on read). Everything else is stored little-endian. */
typedef enum {
    HN_H5_F32,
    HN_H5_BF16,
    HN_H5_I32,
    HN_H5_U32,
    HN_H5_I64,
    HN_H5_U64,
    HN_H5_U8
} HnH5Type;

/* a new file that becomes `path` only at hn_h5_commit; it is written as `path.tmp.<pid>` in
 * the same folder, so an existing `path` is untouched until the rename. deflate 0..9 (0: big
 * arrays are still chunked, but not compressed). One process can have one file being
 * written per path at a time (they would share the temporary name). */
HnH5* hn_h5_create(const char* path, int deflate_level);
/* close, fsync, rename onto the final path, fsync the folder; frees f. HN_OK or HN_ERR
 * (on error the temporary file is removed and the old file is intact) */
int hn_h5_commit(HnH5* f);
/* close and delete the temporary file; frees f */
void hn_h5_abort(HnH5* f);

/* open an existing file read-only; NULL with an error if missing, not HDF5, or damaged.
 * Files hn_h5_commit wrote carry a seal (a SHA-256 of their bytes in a 512-byte HDF5 user
 * block) that is checked before libhdf5 reads anything: a file without one, or changed
 * since, is refused unless hn_h5_allow_unverified(1) was called. */
HnH5* hn_h5_open(const char* path);
/* let hn_h5_open read HDF5 files without a matching seal (from elsewhere, or changed); the
 * command line's --allow-unverified. Process-wide. */
void hn_h5_allow_unverified(int yes);
/* close a file from hn_h5_open (on a file from hn_h5_create it is hn_h5_abort); NULL is fine */
void hn_h5_close(HnH5* f);
const char* hn_h5_path(const HnH5* f); /* the final path, for messages */

/* Object paths and attribute names are at most 1024 characters ("/model/wte"; the leading
 * "/" may be left out). The int functions below return HN_OK, or HN_ERR with one hn_error()
 * line naming the file and the object; a NULL handle, a bad name and a write to a file
 * opened read-only are errors too. */

/* create a group and any missing parents ("/optim/m"); an existing group is fine */
int hn_h5_group(HnH5* f, const char* path);
/* write a new dataset of ndim <= 8 dims (0 = scalar; a dim may be 0, then data may be NULL);
 * parent groups are created as needed; writing an existing path is an error. Arrays of more
 * than 1024 elements are chunked (about 1 MiB chunks) with shuffle+deflate. */
int hn_h5_write(HnH5* f, const char* path, HnH5Type type, const void* data, int ndim,
                const int64_t* shape);
/* attributes on an existing object ("/" for the root), one scalar value each, replacing an
 * attribute of the same name; strings are stored as variable-length UTF-8 */
int hn_h5_attr_str(HnH5* f, const char* obj, const char* name, const char* value);
int hn_h5_attr_i64(HnH5* f, const char* obj, const char* name, int64_t value);
int hn_h5_attr_f64(HnH5* f, const char* obj, const char* name, double value);

/* 1 if the object (group or dataset) exists, else 0, also for a missing parent group or a
 * bad name: never an error */
int hn_h5_exists(HnH5* f, const char* path);
/* a dataset's rank (<= 8) and dims; HN_ERR if it is missing */
int hn_h5_shape(HnH5* f, const char* path, int* ndim, int64_t* shape);
/* read a dataset of exactly numel elements (else an error naming both counts), converting
 * to `type`: HN_H5_F32 and HN_H5_BF16 both mean "into floats", from f32 or bf16 storage
 * only; the integer types from any integer storage whose values all fit (a value that does
 * not fit is an error, never clipped). Floats are never read as integers or the reverse.
 * numel 0 (an empty dataset) reads nothing and dst may be NULL. */
int hn_h5_read(HnH5* f, const char* path, HnH5Type type, void* dst, size_t numel);
/* the stored element type of a dataset; other types (f64, f16, i16...) are an error */
int hn_h5_dtype(HnH5* f, const char* path, HnH5Type* type);
/* "f32", "bf16", "i32", ... (for messages and listings) */
const char* hn_h5_type_name(HnH5Type type);
/* read one-value attributes; a string (variable or fixed length) comes back malloc'd
 * (caller frees); an i64 may be stored as any integer type whose value fits, an f64 as any
 * float type */
int hn_h5_read_attr_str(HnH5* f, const char* obj, const char* name, char** value);
int hn_h5_read_attr_i64(HnH5* f, const char* obj, const char* name, int64_t* value);
int hn_h5_read_attr_f64(HnH5* f, const char* obj, const char* name, double* value);
/* 1 if obj exists and has the attribute, else 0 (never an error) */
int hn_h5_has_attr(HnH5* f, const char* obj, const char* name);
/* names of a group's direct children, sorted by strcmp; *names is an array of malloc'd
 * strings (free with hn_h5_free_names; NULL with *n 0 for an empty group) */
int hn_h5_list(HnH5* f, const char* group, char*** names, int* n);
void hn_h5_free_names(char** names, int n);

#endif
