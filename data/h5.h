/*
 * A small layer over HDF5 for hone's files: create a file under a temporary name and
 * commit it atomically (flush, fsync, rename, fsync the folder), write and read datasets
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
 * as floats; data given to or read from it is float (rounded to nearest even on write). */
typedef enum { HN_H5_F32, HN_H5_BF16, HN_H5_I32, HN_H5_U32, HN_H5_I64, HN_H5_U64, HN_H5_U8 } HnH5Type;

/* a new file that becomes `path` only at hn_h5_commit; it is written as `path.tmp.<pid>` in
 * the same folder, so an existing `path` is untouched until the rename. deflate 0..9. */
HnH5* hn_h5_create(const char* path, int deflate_level);
/* close, fsync, rename onto the final path, fsync the folder; frees f. HN_OK or HN_ERR
 * (on error the temporary file is removed and the old file is intact) */
int hn_h5_commit(HnH5* f);
/* close and delete the temporary file; frees f */
void hn_h5_abort(HnH5* f);

/* open an existing file read-only; NULL with an error if missing or not HDF5 */
HnH5* hn_h5_open(const char* path);
void hn_h5_close(HnH5* f);
const char* hn_h5_path(const HnH5* f); /* the final path, for messages */

/* create a group and any missing parents ("/optim/m") */
int hn_h5_group(HnH5* f, const char* path);
/* write a dataset of ndim dims (0 = scalar); parent groups are created as needed.
 * Arrays of more than 1024 elements are chunked (about 1 MiB chunks) with shuffle+deflate. */
int hn_h5_write(HnH5* f, const char* path, HnH5Type type, const void* data, int ndim,
                const int64_t* shape);
/* attributes on an object ("/" for the root) */
int hn_h5_attr_str(HnH5* f, const char* obj, const char* name, const char* value);
int hn_h5_attr_i64(HnH5* f, const char* obj, const char* name, int64_t value);
int hn_h5_attr_f64(HnH5* f, const char* obj, const char* name, double value);

/* 1 if the object (group or dataset) exists, else 0 */
int hn_h5_exists(HnH5* f, const char* path);
/* a dataset's rank (<= 8) and dims; HN_ERR if it is missing */
int hn_h5_shape(HnH5* f, const char* path, int* ndim, int64_t* shape);
/* read a dataset of exactly numel elements, converting to `type` (float from f32 or bf16
 * storage; integers from any integer storage whose values fit) */
int hn_h5_read(HnH5* f, const char* path, HnH5Type type, void* dst, size_t numel);
/* the stored element type of a dataset */
int hn_h5_dtype(HnH5* f, const char* path, HnH5Type* type);
/* read attributes; a string comes back malloc'd (caller frees) */
int hn_h5_read_attr_str(HnH5* f, const char* obj, const char* name, char** value);
int hn_h5_read_attr_i64(HnH5* f, const char* obj, const char* name, int64_t* value);
int hn_h5_read_attr_f64(HnH5* f, const char* obj, const char* name, double* value);
int hn_h5_has_attr(HnH5* f, const char* obj, const char* name);
/* names of a group's direct children, sorted; *names is an array of malloc'd strings
 * (free with hn_h5_free_names) */
int hn_h5_list(HnH5* f, const char* group, char*** names, int* n);
void hn_h5_free_names(char** names, int n);

#endif
