/* File-system helpers; see fs.h. */
#include "core/fs.h"

#include <errno.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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
