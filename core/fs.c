/* File-system helpers; see fs.h. */
#include "core/fs.h"

#define _XOPEN_SOURCE 700 /* nftw */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int hn_path(char* out, size_t n, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(out, n, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= n) return hn_error("path too long: %.80s...", out);
    return HN_OK;
}

static int mkdir_one(const char* path) {
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return HN_OK;
    return hn_error("cannot create %s: %s", path, strerror(errno));
}

int hn_mkdirs(const char* path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return hn_error("path too long: %s", path);
    for (char* p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir_one(buf) != HN_OK) return HN_ERR;
        *p = '/';
    }
    return mkdir_one(buf);
}

int hn_file_sha256(const char* path, char hex[65]) {
    FILE* f = fopen(path, "rb");
    if (!f) return hn_error("cannot read %s", path);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    unsigned char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
        ok = EVP_DigestUpdate(ctx, buf, n);
    ok = ok && !ferror(f);
    unsigned char md[32];
    unsigned len = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &len) && len == 32;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (!ok) return hn_error("cannot hash %s", path);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return HN_OK;
}

int hn_write_atomic(const char* path, const char* data, size_t len) {
    char tmp[PATH_MAX];
    if (hn_path(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) != HN_OK) return HN_ERR;
    FILE* f = fopen(tmp, "w");
    int ok = f && fwrite(data, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (f) ok = fclose(f) == 0 && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) {
        int err = errno;
        unlink(tmp);
        return hn_error("cannot write %s: %s", path, strerror(err));
    }
    return HN_OK;
}

static int remove_one(const char* path, const struct stat* st, int flag, struct FTW* ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int hn_remove_tree(const char* path) {
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? HN_OK : hn_error("cannot stat %s", path);
    if (!S_ISDIR(st.st_mode)) return unlink(path) == 0 ? HN_OK : hn_error("cannot remove %s", path);
    return nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0
               ? HN_OK
               : hn_error("cannot remove %s", path);
}

char* hn_read_file(const char* path, size_t* len) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        hn_error("cannot read %s", path);
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char* buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - 1 - n, f)) > 0;) {
        n += got;
        if (n == cap - 1) {
            char* bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!buf) {
        hn_error("out of memory reading %s", path);
        return NULL;
    }
    if (bad) {
        free(buf);
        hn_error("cannot read %s", path);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
