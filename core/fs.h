/* Small file-system helpers shared by the commands that write folders. */
#ifndef HONE_FS_H
#define HONE_FS_H

#include <stddef.h>

/* format a path into out[n]; HN_ERR ("path too long") instead of silently truncating */
int hn_path(char* out, size_t n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
/* create path and any missing parents (mkdir -p); HN_OK or HN_ERR */
int hn_mkdirs(const char* path);

#endif
