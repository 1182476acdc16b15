/*
 * hone's HDF5 layer (see h5.h). Three things shape it: a file being written only becomes
 * the real file at commit (temporary name, fsync, rename, fsync of the folder), so a crash
 * mid-save never leaves a half checkpoint under the real name; HDF5 never prints, and each
 * failure becomes one hn_error() line with the file, the object and HDF5's innermost reason;
 * and values are checked, not clipped: counts must match, integers must fit, and bf16 is
 * converted by hand so rounding is round-to-nearest-even and reads are exact.
 * Serial HDF5 is not thread-safe: use one file from one thread at a time.
 */
#include "data/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "core/error.h"

#define HN_H5_MAX_RANK 8
#define HN_H5_MAX_NAME 1024
#define HN_H5_SMALL 1024                    /* arrays up to this many elements are not chunked */
#define HN_H5_CHUNK_BYTES ((size_t)1 << 20) /* big enough for deflate, small enough to cache */

struct HnH5 {
    hid_t file;
    char* path; /* the final path, used in every message */
    char* tmp;  /* the temporary file while writing; NULL when opened for reading */
    int deflate;
};

/* ---- errors ---- */

/* called before any HDF5 work: silences HDF5 once, and starts each call with an empty error
 * stack so a failure reports its own reason, not a stale one */
static void h5_init(void) {
    static int quiet;
    if (!quiet) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        quiet = 1;
    }
    H5Eclear2(H5E_DEFAULT);
}

static herr_t h5_innermost(unsigned n, const H5E_error2_t* err, void* why) {
    if (n == 0 && err->desc) snprintf(why, 256, "%s", err->desc);
    return 0;
}

/* record "<file>: <object>: <what> (<HDF5's innermost reason>)" and clear HDF5's stack;
 * returns HN_ERR. The innermost entry is where HDF5 found the problem ("truncated file",
 * "object 'x' doesn't exist"); the outer ones only repeat "unable to open". */
static int h5_fail(const char* file, const char* obj, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int h5_fail(const char* file, const char* obj, const char* fmt, ...) {
    char what[512], why[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost, why);
    H5Eclear2(H5E_DEFAULT);
    for (char* c = why; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    char where[1200];
    if (obj)
        snprintf(where, sizeof where, "%s: %s", file, obj);
    else
        snprintf(where, sizeof where, "%s", file);
    if (why[0]) return hn_error("%s: %s (%s)", where, what, why);
    return hn_error("%s: %s", where, what);
}

/* an object path or attribute name: non-empty, at most HN_H5_MAX_NAME characters */
static int h5_check_name(const HnH5* f, const char* name, const char* kind) {
    if (!name || !name[0]) return h5_fail(f->path, NULL, "empty %s", kind);
    if (strlen(name) > HN_H5_MAX_NAME)
        return h5_fail(f->path, NULL, "%s longer than %d characters", kind, HN_H5_MAX_NAME);
    return HN_OK;
}

/* the checks every entry point on an object starts with */
static int h5_ready(const HnH5* f, const char* obj, int writing) {
    h5_init();
    if (!f) return hn_error("h5: no file (NULL handle)");
    if (h5_check_name(f, obj, "object path") != HN_OK) return HN_ERR;
    if (writing && !f->tmp) return h5_fail(f->path, obj, "file is open read-only");
    return HN_OK;
}

/* closes any kind of id this file opens, so cleanup is one call per id; -1 is skipped.
 * Every HDF5 call but the H5E ones clears the error stack on entry, so a pending error is set
 * aside around the close: cleanup may then run before the failure is reported. */
static void h5_close(hid_t id) {
    if (id < 0) return;
    hid_t pending = H5Eget_num(H5E_DEFAULT) > 0 ? H5Eget_current_stack() : H5I_INVALID_HID;
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        H5Fclose(id);
        break;
    case H5I_GROUP:
        H5Gclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        break;
    }
    if (pending >= 0) H5Eset_current_stack(pending);
}

/* ---- element types ---- */

const char* hn_h5_type_name(HnH5Type t) {
    switch (t) {
    case HN_H5_F32:
        return "f32";
    case HN_H5_BF16:
        return "bf16";
    case HN_H5_I32:
        return "i32";
    case HN_H5_U32:
        return "u32";
    case HN_H5_I64:
        return "i64";
    case HN_H5_U64:
        return "u64";
    case HN_H5_U8:
        return "u8";
    }
    return "?";
}

/* bytes per element of the caller's buffer (bf16 travels as float); 0 for a bad type */
static size_t h5_elem_size(HnH5Type t) {
    switch (t) {
    case HN_H5_F32:
    case HN_H5_BF16:
    case HN_H5_I32:
    case HN_H5_U32:
        return 4;
    case HN_H5_I64:
    case HN_H5_U64:
        return 8;
    case HN_H5_U8:
        return 1;
    }
    return 0;
}

/* bfloat16 as an HDF5 float, so other readers (h5py) see numbers, not raw uint16. HDF5
 * checks each call against the current state: the fields must fit the precision before the
 * precision shrinks to 16 bits, and the precision must fit the size before it shrinks. */
static hid_t h5_bf16_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    if (t < 0) return t;
    if (H5Tset_fields(t, 15, 7, 8, 0, 7) < 0 || H5Tset_precision(t, 16) < 0 ||
        H5Tset_offset(t, 0) < 0 || H5Tset_size(t, 2) < 0 || H5Tset_ebias(t, 127) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* a new type id (the caller closes it): the little-endian file type, or the native memory
 * type; bf16 is the same in both, so HDF5 never converts it */
static hid_t h5_type(HnH5Type t, int native) {
    switch (t) {
    case HN_H5_F32:
        return H5Tcopy(native ? H5T_NATIVE_FLOAT : H5T_IEEE_F32LE);
    case HN_H5_BF16:
        return h5_bf16_type();
    case HN_H5_I32:
        return H5Tcopy(native ? H5T_NATIVE_INT32 : H5T_STD_I32LE);
    case HN_H5_U32:
        return H5Tcopy(native ? H5T_NATIVE_UINT32 : H5T_STD_U32LE);
    case HN_H5_I64:
        return H5Tcopy(native ? H5T_NATIVE_INT64 : H5T_STD_I64LE);
    case HN_H5_U64:
        return H5Tcopy(native ? H5T_NATIVE_UINT64 : H5T_STD_U64LE);
    case HN_H5_U8:
        return H5Tcopy(native ? H5T_NATIVE_UINT8 : H5T_STD_U8LE);
    }
    return H5I_INVALID_HID;
}

/* a stored type in words for messages: "float32", "int16", "uint64", "string" */
static void h5_describe(hid_t type, char* out, size_t n) {
    H5T_class_t cls = H5Tget_class(type);
    size_t bits = H5Tget_size(type) * 8;
    if (cls == H5T_FLOAT)
        snprintf(out, n, "float%zu", bits);
    else if (cls == H5T_INTEGER)
        snprintf(out, n, "%s%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "uint" : "int", bits);
    else if (cls == H5T_STRING)
        snprintf(out, n, "string");
    else
        snprintf(out, n, "HDF5 type class %d", (int)cls);
}

static int h5_is_bf16(hid_t type) {
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 2) return 0;
    if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    return spos == 15 && epos == 7 && esize == 8 && mpos == 0 && msize == 7 &&
           H5Tget_ebias(type) == 127 && H5Tget_order(type) == H5T_ORDER_LE;
}

/* the HnH5Type of a stored type, or HN_ERR for types hone does not write */
static int h5_classify(hid_t type, HnH5Type* out) {
    H5T_class_t cls = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    if (cls == H5T_FLOAT && size == 4) {
        *out = HN_H5_F32;
        return HN_OK;
    }
    if (h5_is_bf16(type)) {
        *out = HN_H5_BF16;
        return HN_OK;
    }
    if (cls != H5T_INTEGER) return HN_ERR;
    int is_signed = H5Tget_sign(type) != H5T_SGN_NONE;
    if (size == 4)
        *out = is_signed ? HN_H5_I32 : HN_H5_U32;
    else if (size == 8)
        *out = is_signed ? HN_H5_I64 : HN_H5_U64;
    else if (size == 1 && !is_signed)
        *out = HN_H5_U8;
    else
        return HN_ERR;
    return HN_OK;
}

/* float -> bf16 bits, round to nearest, ties to even. Adding 0x7fff plus the lowest kept bit
 * carries into the kept bits exactly when the dropped half is above the tie, or at the tie
 * with an odd kept part; a carry out of the mantissa bumps the exponent, which is right too
 * (and turns values above the largest bf16 into inf). NaN is kept apart: the carry could turn
 * it into inf, so its top payload bits are kept and the quiet bit set. */
static uint16_t h5_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* ---- the seal ----
 * libhdf5 is not hardened against hostile files, so it only sees a file hone can vouch for:
 * every file hn_h5_create makes starts with a user block of HN_H5_SEAL bytes (HDF5 skips
 * it; h5py and h5dump read such files as usual) that holds, once the file is closed, the
 * SHA-256 and the length of everything after it:
 *     "hone-h5-seal 1\nsha256 <64 hex digits>\nbytes <decimal>\n" and NULs
 * hn_h5_open checks both before libhdf5 opens the file. A file without a seal (made
 * elsewhere) or with one that does not match (changed or damaged since) is refused unless
 * hn_h5_allow_unverified(1) was called (the command line's --allow-unverified). */

#define HN_H5_SEAL 512
static const char SEAL_MAGIC[] = "hone-h5-seal 1\n";
static int g_allow_unverified;

void hn_h5_allow_unverified(int yes) {
    g_allow_unverified = yes;
}

/* SHA-256 of the bytes of fd from offset `from` to its end (read with pread), as hex;
 * *len gets their count */
static int h5_hash_tail(int fd, const char* path, char hex[65], long long* len) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const size_t cap = (size_t)1 << 20;
    unsigned char* buf = malloc(cap);
    int ok = buf && ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    off_t at = HN_H5_SEAL;
    for (;;) {
        if (!ok) break;
        ssize_t n = pread(fd, buf, cap, at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) ok = 0;
        if (n <= 0) break;
        ok = EVP_DigestUpdate(ctx, buf, (size_t)n);
        at += n;
    }
    unsigned char md[32];
    unsigned mdlen = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    free(buf);
    if (!ok) return hn_error("%s: cannot read it to check its seal: %s", path, strerror(errno));
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    *len = (long long)(at - HN_H5_SEAL);
    return HN_OK;
}

/* write the seal of a closed file (its user block was reserved at creation) */
static int h5_seal(const char* tmp, const char* path) {
    int fd = open(tmp, O_RDWR);
    if (fd < 0) return hn_error("%s: cannot reopen %s to seal it: %s", path, tmp, strerror(errno));
    char hex[65];
    long long len = 0;
    int rc = h5_hash_tail(fd, path, hex, &len);
    char block[HN_H5_SEAL] = {0};
    if (rc == HN_OK) {
        snprintf(block, sizeof block, "%ssha256 %s\nbytes %lld\n", SEAL_MAGIC, hex, len);
        if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block)
            rc = hn_error("%s: cannot write its seal: %s", path, strerror(errno));
    }
    close(fd);
    return rc;
}

/* 1 if the HDF5 signature is where libhdf5 looks for it (offset 0, 512, 1024, ...) */
static int h5_signed(int fd, off_t size) {
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    for (off_t at = 0; at + 8 <= size; at = at ? 2 * at : 512) {
        unsigned char b[8];
        if (pread(fd, b, 8, at) == 8 && memcmp(b, sig, 8) == 0) return 1;
    }
    return 0;
}

/* HN_OK when path carries a seal that matches its bytes, or when unverified files are
 * allowed and it is at least an HDF5 file; else one error saying which */
static int h5_verify(const char* path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return hn_error("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    char block[HN_H5_SEAL + 1] = {0};
    if (fstat(fd, &st) != 0 || pread(fd, block, HN_H5_SEAL, 0) < 0) {
        int err = errno;
        close(fd);
        return hn_error("%s: cannot read: %s", path, strerror(err));
    }
    char want[65] = {0};
    long long want_len = -1;
    int sealed = memcmp(block, SEAL_MAGIC, sizeof SEAL_MAGIC - 1) == 0 &&
                 sscanf(block + sizeof SEAL_MAGIC - 1, "sha256 %64[0-9a-f]\nbytes %lld", want,
                        &want_len) == 2;
    int rc = HN_OK;
    if (!sealed && !h5_signed(fd, st.st_size)) {
        rc = hn_error("%s: not an HDF5 file", path);
    } else if (!sealed) {
        if (!g_allow_unverified)
            rc = hn_error("%s: an HDF5 file hone did not write (no seal); libhdf5 is not "
                          "hardened against hostile files, so it is read only with "
                          "--allow-unverified",
                          path);
    } else if (!g_allow_unverified) {
        char hex[65];
        long long len = 0;
        rc = h5_hash_tail(fd, path, hex, &len);
        if (rc == HN_OK && len != want_len)
            rc = hn_error("%s: damaged: %lld bytes follow its seal, which was written for %lld "
                          "(truncated or appended to; --allow-unverified reads it anyway)",
                          path, len, want_len);
        else if (rc == HN_OK && strcmp(hex, want) != 0)
            rc = hn_error("%s: damaged: its SHA-256 does not match the seal hone wrote with it "
                          "(changed since it was saved; --allow-unverified reads it anyway)",
                          path);
    }
    close(fd);
    return rc;
}

/* ---- files ---- */

static hid_t h5_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* STRONG: closing the file closes any object left open, so a close really closes;
     * file locking stays on but is skipped where the file system cannot lock */
    if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0 || H5Pset_file_locking(fapl, 1, 1) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

static void h5_free(HnH5* f) {
    free(f->path);
    free(f->tmp);
    free(f);
}

HnH5* hn_h5_create(const char* path, int deflate_level) {
    h5_init();
    if (!path || !path[0]) {
        hn_error("h5: empty file path");
        return NULL;
    }
    if (deflate_level < 0 || deflate_level > 9) {
        hn_error("%s: deflate level %d is outside 0..9", path, deflate_level);
        return NULL;
    }
    HnH5* f = calloc(1, sizeof *f);
    size_t tmp_len = strlen(path) + 32;
    if (f) f->path = strdup(path);
    if (f) f->tmp = malloc(tmp_len);
    if (!f || !f->path || !f->tmp) {
        if (f) h5_free(f);
        hn_error("%s: out of memory", path);
        return NULL;
    }
    snprintf(f->tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    f->deflate = deflate_level;
    /* HDF5's own reason for a missing folder is a long driver dump; this one reads better */
    char* dir = strdup(path);
    int dir_ok = dir && access(dirname(dir), W_OK) == 0;
    int err = errno;
    free(dir);
    if (!dir_ok) {
        hn_error("%s: cannot write in its folder: %s", path, strerror(err));
        h5_free(f);
        return NULL;
    }
    hid_t fapl = h5_fapl();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (fcpl >= 0 && H5Pset_userblock(fcpl, HN_H5_SEAL) < 0) {
        H5Pclose(fcpl);
        fcpl = H5I_INVALID_HID;
    }
    f->file = fapl < 0 || fcpl < 0 ? H5I_INVALID_HID : H5Fcreate(f->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    h5_close(fapl);
    h5_close(fcpl);
    if (f->file < 0) {
        /* the temporary file is not removed here: if the failure is another open handle on
         * the same name, it is that handle's file */
        h5_fail(path, NULL, "cannot create the temporary file %s", f->tmp);
        h5_free(f);
        return NULL;
    }
    return f;
}

/* make the closed temporary file's bytes durable before it gets the real name */
static int h5_sync_file(const HnH5* f) {
    int fd = open(f->tmp, O_RDONLY);
    if (fd < 0)
        return hn_error("%s: cannot reopen %s to sync it: %s", f->path, f->tmp, strerror(errno));
    int rc = fsync(fd);
    int err = errno;
    close(fd);
    if (rc != 0) return hn_error("%s: cannot sync %s: %s", f->path, f->tmp, strerror(err));
    return HN_OK;
}

/* make the rename durable. Some file systems cannot sync a folder (EINVAL); the rename is
 * then as durable as they make it, which is not an error of the save. */
static int h5_sync_dir(const char* path) {
    char* copy = strdup(path);
    if (!copy) return hn_error("%s: out of memory", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    int rc = fd < 0 ? -1 : fsync(fd);
    int err = errno;
    if (fd >= 0) close(fd);
    free(copy);
    if (rc != 0 && err != EINVAL)
        return hn_error("%s: cannot sync its folder after the rename: %s", path, strerror(err));
    return HN_OK;
}

int hn_h5_commit(HnH5* f) {
    h5_init();
    if (!f) return hn_error("h5: commit of no file (NULL handle)");
    int rc = HN_OK;
    if (!f->tmp) {
        rc = h5_fail(f->path, NULL, "file is open read-only, nothing to commit");
        h5_close(f->file);
        h5_free(f);
        return rc;
    }
    if (H5Fflush(f->file, H5F_SCOPE_GLOBAL) < 0) rc = h5_fail(f->path, NULL, "cannot flush");
    if (H5Fclose(f->file) < 0 && rc == HN_OK) rc = h5_fail(f->path, NULL, "cannot close");
    if (rc == HN_OK) rc = h5_seal(f->tmp, f->path);
    if (rc == HN_OK) rc = h5_sync_file(f);
    if (rc == HN_OK && rename(f->tmp, f->path) != 0)
        rc = hn_error("%s: cannot rename %s onto it: %s", f->path, f->tmp, strerror(errno));
    if (rc != HN_OK)
        unlink(f->tmp);
    else
        rc = h5_sync_dir(f->path);
    h5_free(f);
    return rc;
}

void hn_h5_abort(HnH5* f) {
    h5_init();
    if (!f) return;
    h5_close(f->file);
    if (f->tmp) unlink(f->tmp);
    h5_free(f);
    H5Eclear2(H5E_DEFAULT);
}

HnH5* hn_h5_open(const char* path) {
    h5_init();
    if (!path || !path[0]) {
        hn_error("h5: empty file path");
        return NULL;
    }
    struct stat st;
    if (stat(path, &st) != 0) {
        hn_error("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        hn_error("%s: is a folder, not an HDF5 file", path);
        return NULL;
    }
    if (h5_verify(path) != HN_OK) return NULL;
    /* asked first so that "not HDF5 at all" and "HDF5 but unreadable" read differently */
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0) {
        if (is_h5 == 0)
            hn_error("%s: not an HDF5 file", path);
        else
            h5_fail(path, NULL, "cannot read the file");
        H5Eclear2(H5E_DEFAULT);
        return NULL;
    }
    HnH5* f = calloc(1, sizeof *f);
    if (f) f->path = strdup(path);
    if (!f || !f->path) {
        free(f);
        hn_error("%s: out of memory", path);
        return NULL;
    }
    hid_t fapl = h5_fapl();
    f->file = fapl < 0 ? H5I_INVALID_HID : H5Fopen(path, H5F_ACC_RDONLY, fapl);
    h5_close(fapl);
    if (f->file < 0) {
        h5_fail(path, NULL, "cannot open the HDF5 file");
        h5_free(f);
        return NULL;
    }
    return f;
}

void hn_h5_close(HnH5* f) {
    hn_h5_abort(f);
}

const char* hn_h5_path(const HnH5* f) {
    return f ? f->path : "";
}

/* ---- objects ---- */

/* 1 if every component of path exists, else 0; never an error. Each prefix is checked with
 * H5Lexists because it fails rather than answers when an intermediate group is missing. */
static int h5_exists(hid_t file, const char* path) {
    char prefix[HN_H5_MAX_NAME + 1];
    size_t len = strlen(path);
    if (len > HN_H5_MAX_NAME) return 0;
    int found = 1;
    for (size_t i = 1; i <= len && found; i++) {
        if ((path[i] == '/' || path[i] == '\0') && path[i - 1] != '/') {
            memcpy(prefix, path, i);
            prefix[i] = '\0';
            found = H5Lexists(file, prefix, H5P_DEFAULT) > 0;
        }
    }
    /* the link may exist and point nowhere (a dangling soft link) */
    if (found) found = H5Oexists_by_name(file, path, H5P_DEFAULT) > 0;
    H5Eclear2(H5E_DEFAULT);
    return found;
}

int hn_h5_exists(HnH5* f, const char* path) {
    h5_init();
    if (!f || !path || !path[0]) return 0;
    return h5_exists(f->file, path);
}

static hid_t h5_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        H5Pclose(lcpl);
        return H5I_INVALID_HID;
    }
    return lcpl;
}

int hn_h5_group(HnH5* f, const char* path) {
    if (h5_ready(f, path, 1) != HN_OK) return HN_ERR;
    hid_t g;
    if (h5_exists(f->file, path)) {
        g = H5Gopen2(f->file, path, H5P_DEFAULT);
        if (g < 0) return h5_fail(f->path, path, "exists and is not a group");
    } else {
        hid_t lcpl = h5_lcpl();
        g = lcpl < 0 ? lcpl : H5Gcreate2(f->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
        h5_close(lcpl);
        if (g < 0) return h5_fail(f->path, path, "cannot create group");
    }
    h5_close(g);
    return HN_OK;
}

static hid_t h5_open_dataset(const HnH5* f, const char* path) {
    if (!h5_exists(f->file, path)) {
        h5_fail(f->path, path, "no such dataset");
        return H5I_INVALID_HID;
    }
    hid_t d = H5Dopen2(f->file, path, H5P_DEFAULT);
    if (d < 0) h5_fail(f->path, path, "cannot open dataset");
    return d;
}

/* ---- datasets ---- */

/* chunks of about HN_H5_CHUNK_BYTES: trailing dims whole while they fit, then as many steps
 * of the next dim as fit, leading dims 1. For the usual (rows, C) matrix that is a split of
 * the first dim; rows bigger than a chunk are split too, so no chunk is ever huge. */
static void h5_chunk_dims(int ndim, const hsize_t* dims, size_t elem_bytes, hsize_t* chunk) {
    hsize_t inner = elem_bytes;
    int i = ndim - 1;
    for (; i >= 0 && dims[i] <= HN_H5_CHUNK_BYTES / inner; i--) {
        chunk[i] = dims[i];
        inner *= dims[i];
    }
    if (i < 0) return;
    chunk[i] = HN_H5_CHUNK_BYTES / inner;
    for (int j = 0; j < i; j++)
        chunk[j] = 1;
}

static hid_t h5_dcpl(const HnH5* f, int ndim, const hsize_t* dims, size_t numel, hid_t ftype,
                     hsize_t* rows_per_write) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    *rows_per_write = ndim > 0 ? dims[0] : 1;
    /* no modification times: the same state saved twice gives the same bytes */
    if (dcpl >= 0 && H5Pset_obj_track_times(dcpl, 0) < 0) {
        H5Pclose(dcpl);
        return H5I_INVALID_HID;
    }
    if (dcpl < 0 || numel <= HN_H5_SMALL) return dcpl;
    hsize_t chunk[HN_H5_MAX_RANK];
    h5_chunk_dims(ndim, dims, H5Tget_size(ftype), chunk);
    *rows_per_write = chunk[0];
    if (H5Pset_chunk(dcpl, ndim, chunk) < 0 ||
        (f->deflate > 0 &&
         (H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, (unsigned)f->deflate) < 0))) {
        H5Pclose(dcpl);
        return H5I_INVALID_HID;
    }
    return dcpl;
}

/* bf16 is converted by hand a slab of rows at a time; a slab is whole chunks (rows_per is
 * the chunk's first dim), so HDF5 never has to read back and recompress a partial chunk */
static herr_t h5_write_bf16(hid_t dset, hid_t type, const float* src, int ndim, const hsize_t* dims,
                            size_t numel, hsize_t rows_per) {
    hsize_t rows = ndim > 0 ? dims[0] : 1;
    size_t row = numel / rows;
    uint16_t* buf = malloc((size_t)(rows_per < rows ? rows_per : rows) * row * sizeof *buf);
    hid_t fspace = H5Dget_space(dset);
    herr_t rc = buf && fspace >= 0 ? 0 : -1;
    for (hsize_t r = 0; r < rows && rc >= 0; r += rows_per) {
        hsize_t n = rows - r < rows_per ? rows - r : rows_per;
        hsize_t m = n * row;
        for (hsize_t i = 0; i < m; i++)
            buf[i] = h5_f32_to_bf16(src[r * row + i]);
        hsize_t start[HN_H5_MAX_RANK] = {r}, count[HN_H5_MAX_RANK] = {n};
        for (int d = 1; d < ndim; d++)
            count[d] = dims[d];
        hid_t mspace = H5Screate_simple(1, &m, NULL);
        rc = mspace < 0 ? -1 : 0;
        if (rc >= 0 && ndim > 0)
            rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
        if (rc >= 0) rc = H5Dwrite(dset, type, mspace, fspace, H5P_DEFAULT, buf);
        h5_close(mspace);
    }
    h5_close(fspace);
    free(buf);
    return rc;
}

int hn_h5_write(HnH5* f, const char* path, HnH5Type type, const void* data, int ndim,
                const int64_t* shape) {
    if (h5_ready(f, path, 1) != HN_OK) return HN_ERR;
    size_t esize = h5_elem_size(type);
    if (!esize) return h5_fail(f->path, path, "unknown element type %d", (int)type);
    if (ndim < 0 || ndim > HN_H5_MAX_RANK)
        return h5_fail(f->path, path, "rank %d is outside 0..%d", ndim, HN_H5_MAX_RANK);
    if (ndim > 0 && !shape) return h5_fail(f->path, path, "no shape given");
    hsize_t dims[HN_H5_MAX_RANK];
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return h5_fail(f->path, path, "dimension %d is negative", i);
        if (numel && (uint64_t)shape[i] > SIZE_MAX / esize / numel)
            return h5_fail(f->path, path, "too many elements");
        numel *= (size_t)shape[i];
        dims[i] = (hsize_t)shape[i];
    }
    if (numel && !data) return h5_fail(f->path, path, "no data given");

    int rc = HN_OK;
    hsize_t rows_per = 1;
    hid_t ftype = h5_type(type, 0);
    hid_t mtype = h5_type(type, 1);
    hid_t space = ndim > 0 ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = h5_lcpl();
    hid_t dcpl = ftype < 0 ? ftype : h5_dcpl(f, ndim, dims, numel, ftype, &rows_per);
    hid_t dset = H5I_INVALID_HID;
    if (ftype < 0 || mtype < 0 || space < 0 || lcpl < 0 || dcpl < 0)
        rc = h5_fail(f->path, path, "cannot set up the dataset");
    if (rc == HN_OK) {
        dset = H5Dcreate2(f->file, path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
        if (dset < 0) rc = h5_fail(f->path, path, "cannot create dataset");
    }
    /* an empty dataset has no storage to write */
    if (rc == HN_OK && numel > 0) {
        herr_t w = type == HN_H5_BF16
                       ? h5_write_bf16(dset, ftype, data, ndim, dims, numel, rows_per)
                       : H5Dwrite(dset, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
        if (w < 0)
            rc = h5_fail(f->path, path, "cannot write %zu %s values", numel, hn_h5_type_name(type));
    }
    h5_close(dset);
    h5_close(dcpl);
    h5_close(lcpl);
    h5_close(space);
    h5_close(mtype);
    h5_close(ftype);
    return rc;
}

int hn_h5_shape(HnH5* f, const char* path, int* ndim, int64_t* shape) {
    if (h5_ready(f, path, 0) != HN_OK) return HN_ERR;
    hid_t dset = h5_open_dataset(f, path);
    if (dset < 0) return HN_ERR;
    hid_t space = H5Dget_space(dset);
    int rank = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    hsize_t dims[HN_H5_MAX_RANK];
    int rc = HN_OK;
    if (rank < 0)
        rc = h5_fail(f->path, path, "cannot read the dataset's shape");
    else if (rank > HN_H5_MAX_RANK)
        rc = h5_fail(f->path, path, "rank %d is above %d", rank, HN_H5_MAX_RANK);
    else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0)
        rc = h5_fail(f->path, path, "cannot read the dataset's shape");
    for (int i = 0; rc == HN_OK && i < rank; i++) {
        if (dims[i] > (hsize_t)INT64_MAX) rc = h5_fail(f->path, path, "dimension %d too large", i);
        shape[i] = (int64_t)dims[i];
    }
    if (rc == HN_OK) *ndim = rank;
    h5_close(space);
    h5_close(dset);
    return rc;
}

int hn_h5_dtype(HnH5* f, const char* path, HnH5Type* type) {
    if (h5_ready(f, path, 0) != HN_OK) return HN_ERR;
    hid_t dset = h5_open_dataset(f, path);
    if (dset < 0) return HN_ERR;
    hid_t ftype = H5Dget_type(dset);
    int rc = HN_OK;
    char desc[64];
    if (ftype < 0) {
        rc = h5_fail(f->path, path, "cannot read the dataset's type");
    } else if (h5_classify(ftype, type) != HN_OK) {
        h5_describe(ftype, desc, sizeof desc);
        rc = h5_fail(f->path, path, "unsupported dtype %s", desc);
    }
    h5_close(ftype);
    h5_close(dset);
    return rc;
}

/* turns an integer that does not fit the destination into a failed read instead of HDF5's
 * default of clipping it to the nearest representable value */
static H5T_conv_ret_t h5_on_overflow(H5T_conv_except_t except, hid_t src, hid_t dst, void* src_buf,
                                     void* dst_buf, void* overflowed) {
    (void)src, (void)dst, (void)src_buf, (void)dst_buf;
    if (except != H5T_CONV_EXCEPT_RANGE_HI && except != H5T_CONV_EXCEPT_RANGE_LOW)
        return H5T_CONV_UNHANDLED;
    *(int*)overflowed = 1;
    return H5T_CONV_ABORT;
}

/* bf16 storage read as its own type (no conversion), then widened in place: float i takes
 * bytes 4i..4i+3, which only hold bf16 values at index >= i, already widened when going down */
static herr_t h5_read_bf16(hid_t dset, hid_t ftype, float* dst, size_t numel) {
    if (H5Dread(dset, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) return -1;
    unsigned char* bytes = (unsigned char*)dst;
    for (size_t i = numel; i-- > 0;) {
        uint16_t h;
        memcpy(&h, bytes + 2 * i, sizeof h);
        uint32_t u = (uint32_t)h << 16;
        memcpy(bytes + 4 * i, &u, sizeof u);
    }
    return 0;
}

static int h5_read_data(const HnH5* f, const char* path, hid_t dset, hid_t ftype, HnH5Type type,
                        void* dst, size_t numel) {
    char desc[64];
    h5_describe(ftype, desc, sizeof desc);
    H5T_class_t cls = H5Tget_class(ftype);
    int want_float = type == HN_H5_F32 || type == HN_H5_BF16;
    HnH5Type stored = HN_H5_F32;
    if (want_float && cls != H5T_FLOAT)
        return h5_fail(f->path, path, "stored as %s, cannot be read as float", desc);
    if (want_float && h5_classify(ftype, &stored) != HN_OK)
        return h5_fail(f->path, path, "unsupported dtype %s", desc);
    if (!want_float && (cls != H5T_INTEGER || H5Tget_size(ftype) > 8))
        return h5_fail(f->path, path, "stored as %s, cannot be read as %s", desc,
                       hn_h5_type_name(type));
    if (numel == 0) return HN_OK;
    if (!dst) return h5_fail(f->path, path, "no buffer to read into");
    if (want_float) {
        herr_t r = stored == HN_H5_BF16
                       ? h5_read_bf16(dset, ftype, dst, numel)
                       : H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst);
        return r < 0 ? h5_fail(f->path, path, "cannot read %zu values", numel) : HN_OK;
    }
    int overflowed = 0;
    hid_t mtype = h5_type(type, 1);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    herr_t r = mtype < 0 || dxpl < 0 ? -1 : H5Pset_type_conv_cb(dxpl, h5_on_overflow, &overflowed);
    if (r >= 0) r = H5Dread(dset, mtype, H5S_ALL, H5S_ALL, dxpl, dst);
    h5_close(dxpl);
    h5_close(mtype);
    if (r >= 0) return HN_OK;
    if (overflowed) {
        H5Eclear2(H5E_DEFAULT);
        return h5_fail(f->path, path, "a stored %s value does not fit in %s", desc,
                       hn_h5_type_name(type));
    }
    return h5_fail(f->path, path, "cannot read %zu values", numel);
}

int hn_h5_read(HnH5* f, const char* path, HnH5Type type, void* dst, size_t numel) {
    if (h5_ready(f, path, 0) != HN_OK) return HN_ERR;
    if (!h5_elem_size(type)) return h5_fail(f->path, path, "unknown element type %d", (int)type);
    hid_t dset = h5_open_dataset(f, path);
    if (dset < 0) return HN_ERR;
    hid_t space = H5Dget_space(dset);
    hid_t ftype = H5Dget_type(dset);
    hssize_t count = space < 0 ? -1 : H5Sget_simple_extent_npoints(space);
    int rc;
    if (count < 0 || ftype < 0)
        rc = h5_fail(f->path, path, "cannot read the dataset's shape and type");
    else if ((uint64_t)count != (uint64_t)numel)
        rc = h5_fail(f->path, path, "has %lld elements, expected %zu", (long long)count, numel);
    else
        rc = h5_read_data(f, path, dset, ftype, type, dst, numel);
    h5_close(ftype);
    h5_close(space);
    h5_close(dset);
    return rc;
}

/* ---- attributes ---- */

/* "<obj>: attribute '<name>'" for messages */
static const char* h5_attr_where(char* buf, size_t n, const char* obj, const char* name) {
    snprintf(buf, n, "%s: attribute '%s'", obj, name);
    return buf;
}

/* replaces an existing attribute of the same name, so a value can be updated */
static int h5_attr_write(HnH5* f, const char* obj, const char* name, hid_t ftype, hid_t mtype,
                         const void* value) {
    if (h5_ready(f, obj, 1) != HN_OK || h5_check_name(f, name, "attribute name") != HN_OK)
        return HN_ERR;
    char where[1200];
    h5_attr_where(where, sizeof where, obj, name);
    if (ftype < 0 || mtype < 0) return h5_fail(f->path, where, "cannot set up the type");
    if (!h5_exists(f->file, obj)) return h5_fail(f->path, obj, "no such object");
    hid_t o = H5Oopen(f->file, obj, H5P_DEFAULT);
    if (o < 0) return h5_fail(f->path, obj, "cannot open object");
    int rc = HN_OK;
    if (H5Aexists(o, name) > 0 && H5Adelete(o, name) < 0)
        rc = h5_fail(f->path, where, "cannot replace");
    hid_t space = rc == HN_OK ? H5Screate(H5S_SCALAR) : H5I_INVALID_HID;
    hid_t a = space < 0 ? space : H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT);
    if (rc == HN_OK && (a < 0 || H5Awrite(a, mtype, value) < 0))
        rc = h5_fail(f->path, where, "cannot write");
    h5_close(a);
    h5_close(space);
    h5_close(o);
    return rc;
}

/* a variable-length UTF-8 string on a scalar space: what h5py reads back as str */
static hid_t h5_vlen_str_type(H5T_cset_t cset) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, cset) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

int hn_h5_attr_str(HnH5* f, const char* obj, const char* name, const char* value) {
    h5_init();
    if (f && !value) return h5_fail(f->path, obj ? obj : "?", "attribute value is NULL");
    hid_t t = h5_vlen_str_type(H5T_CSET_UTF8);
    int rc = h5_attr_write(f, obj, name, t, t, &value);
    h5_close(t);
    return rc;
}

int hn_h5_attr_i64(HnH5* f, const char* obj, const char* name, int64_t value) {
    h5_init();
    hid_t ft = H5Tcopy(H5T_STD_I64LE), mt = H5Tcopy(H5T_NATIVE_INT64);
    int rc = h5_attr_write(f, obj, name, ft, mt, &value);
    h5_close(ft);
    h5_close(mt);
    return rc;
}

int hn_h5_attr_f64(HnH5* f, const char* obj, const char* name, double value) {
    h5_init();
    hid_t ft = H5Tcopy(H5T_IEEE_F64LE), mt = H5Tcopy(H5T_NATIVE_DOUBLE);
    int rc = h5_attr_write(f, obj, name, ft, mt, &value);
    h5_close(ft);
    h5_close(mt);
    return rc;
}

/* opens a one-value attribute and its type; HN_ERR (recorded) if missing or not one value */
static int h5_attr_open(const HnH5* f, const char* obj, const char* name, char* where,
                        size_t where_n, hid_t* attr, hid_t* type, hid_t* space) {
    *attr = *type = *space = H5I_INVALID_HID;
    if (h5_ready(f, obj, 0) != HN_OK || h5_check_name(f, name, "attribute name") != HN_OK)
        return HN_ERR;
    h5_attr_where(where, where_n, obj, name);
    if (!h5_exists(f->file, obj)) return h5_fail(f->path, obj, "no such object");
    htri_t has = H5Aexists_by_name(f->file, obj, name, H5P_DEFAULT);
    if (has < 0) return h5_fail(f->path, where, "cannot look it up");
    if (has == 0) return h5_fail(f->path, where, "missing");
    *attr = H5Aopen_by_name(f->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    if (*attr < 0) return h5_fail(f->path, where, "cannot open");
    *type = H5Aget_type(*attr);
    *space = H5Aget_space(*attr);
    hssize_t count = *space < 0 ? -1 : H5Sget_simple_extent_npoints(*space);
    if (*type < 0 || count < 0) return h5_fail(f->path, where, "cannot read its type and shape");
    if (count != 1)
        return h5_fail(f->path, where, "holds %lld values, expected 1", (long long)count);
    return HN_OK;
}

static void h5_attr_close(hid_t attr, hid_t type, hid_t space) {
    h5_close(space);
    h5_close(type);
    h5_close(attr);
}

static int h5_read_str(const HnH5* f, const char* where, hid_t attr, hid_t type, hid_t space,
                       char** value) {
    if (H5Tis_variable_str(type) > 0) {
        char* s = NULL;
        hid_t mt = h5_vlen_str_type(H5Tget_cset(type));
        if (mt < 0 || H5Aread(attr, mt, &s) < 0) {
            h5_close(mt);
            return h5_fail(f->path, where, "cannot read");
        }
        *value = strdup(s ? s : "");
        H5Dvlen_reclaim(mt, space, H5P_DEFAULT, &s);
        h5_close(mt);
        return *value ? HN_OK : h5_fail(f->path, where, "out of memory");
    }
    /* fixed length: read the raw bytes with the stored type, then cut at the padding */
    size_t n = H5Tget_size(type);
    char* buf = n < SIZE_MAX ? calloc(n + 1, 1) : NULL;
    if (!buf) return h5_fail(f->path, where, "out of memory for %zu bytes", n);
    if (H5Aread(attr, type, buf) < 0) {
        free(buf);
        return h5_fail(f->path, where, "cannot read");
    }
    if (H5Tget_strpad(type) == H5T_STR_SPACEPAD)
        while (n > 0 && buf[n - 1] == ' ')
            buf[--n] = '\0';
    *value = buf;
    return HN_OK;
}

int hn_h5_read_attr_str(HnH5* f, const char* obj, const char* name, char** value) {
    char where[1200];
    hid_t attr, type, space;
    int rc = h5_attr_open(f, obj, name, where, sizeof where, &attr, &type, &space);
    if (rc == HN_OK && H5Tget_class(type) != H5T_STRING) {
        char desc[64];
        h5_describe(type, desc, sizeof desc);
        rc = h5_fail(f->path, where, "stored as %s, not a string", desc);
    }
    if (rc == HN_OK) rc = h5_read_str(f, where, attr, type, space, value);
    h5_attr_close(attr, type, space);
    return rc;
}

/* H5Aread takes no transfer list, so no overflow callback: the one integer that may not fit
 * an int64 (a uint64 above INT64_MAX) is read as uint64 and checked here */
int hn_h5_read_attr_i64(HnH5* f, const char* obj, const char* name, int64_t* value) {
    char where[1200], desc[64];
    hid_t attr, type, space;
    int rc = h5_attr_open(f, obj, name, where, sizeof where, &attr, &type, &space);
    if (rc == HN_OK) h5_describe(type, desc, sizeof desc);
    if (rc == HN_OK && (H5Tget_class(type) != H5T_INTEGER || H5Tget_size(type) > 8))
        rc = h5_fail(f->path, where, "stored as %s, not an integer of at most 64 bits", desc);
    if (rc == HN_OK && H5Tget_sign(type) == H5T_SGN_NONE && H5Tget_size(type) == 8) {
        uint64_t u;
        if (H5Aread(attr, H5T_NATIVE_UINT64, &u) < 0)
            rc = h5_fail(f->path, where, "cannot read");
        else if (u > (uint64_t)INT64_MAX)
            rc = h5_fail(f->path, where, "value %llu does not fit in i64", (unsigned long long)u);
        else
            *value = (int64_t)u;
    } else if (rc == HN_OK && H5Aread(attr, H5T_NATIVE_INT64, value) < 0) {
        rc = h5_fail(f->path, where, "cannot read");
    }
    h5_attr_close(attr, type, space);
    return rc;
}

int hn_h5_read_attr_f64(HnH5* f, const char* obj, const char* name, double* value) {
    char where[1200];
    hid_t attr, type, space;
    int rc = h5_attr_open(f, obj, name, where, sizeof where, &attr, &type, &space);
    if (rc == HN_OK && H5Tget_class(type) != H5T_FLOAT) {
        char desc[64];
        h5_describe(type, desc, sizeof desc);
        rc = h5_fail(f->path, where, "stored as %s, not a float", desc);
    }
    if (rc == HN_OK && H5Aread(attr, H5T_NATIVE_DOUBLE, value) < 0)
        rc = h5_fail(f->path, where, "cannot read");
    h5_attr_close(attr, type, space);
    return rc;
}

int hn_h5_has_attr(HnH5* f, const char* obj, const char* name) {
    h5_init();
    if (!f || !obj || !obj[0] || !name || !name[0] || strlen(name) > HN_H5_MAX_NAME) return 0;
    if (!h5_exists(f->file, obj)) return 0;
    htri_t has = H5Aexists_by_name(f->file, obj, name, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    return has > 0;
}

/* ---- listing ---- */

typedef struct {
    char** names;
    int n, cap;
} HnH5Names;

static herr_t h5_list_one(hid_t group, const char* name, const H5L_info_t* info, void* data) {
    (void)group, (void)info;
    HnH5Names* l = data;
    if (l->n == l->cap) {
        if (l->cap > INT_MAX / 2) return -1;
        int cap = l->cap ? l->cap * 2 : 16;
        char** grown = realloc(l->names, (size_t)cap * sizeof *grown);
        if (!grown) return -1;
        l->names = grown;
        l->cap = cap;
    }
    l->names[l->n] = strdup(name);
    return l->names[l->n++] ? 0 : -1;
}

int hn_h5_list(HnH5* f, const char* group, char*** names, int* n) {
    if (h5_ready(f, group, 0) != HN_OK) return HN_ERR;
    *names = NULL;
    *n = 0;
    if (!h5_exists(f->file, group)) return h5_fail(f->path, group, "no such group");
    hid_t g = H5Gopen2(f->file, group, H5P_DEFAULT);
    if (g < 0) return h5_fail(f->path, group, "cannot open group");
    /* the name index in increasing order is sorted by strcmp */
    HnH5Names l = {0};
    hsize_t idx = 0;
    herr_t r = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, h5_list_one, &l);
    h5_close(g);
    if (r < 0) {
        int count = l.n && !l.names[l.n - 1] ? l.n - 1 : l.n;
        hn_h5_free_names(l.names, count);
        return h5_fail(f->path, group, "cannot list the group");
    }
    *names = l.names;
    *n = l.n;
    return HN_OK;
}

void hn_h5_free_names(char** names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}
