/* Small file-system helpers shared by the commands that write folders. */
#ifndef HONE_FS_H
#define HONE_FS_H

#include <stddef.h>

/* format a path into out[n]; HN_ERR ("path too long") instead of silently truncating */
int hn_path(char* out, size_t n, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
/* create path and any missing parents (mkdir -p); HN_OK or HN_ERR */
int hn_mkdirs(const char* path);
/* SHA-256 of a file's bytes as 64 hex digits and a NUL */
int hn_file_sha256(const char* path, char hex[65]);
/* a whole file, NUL-terminated (*len bytes before the NUL), to free(); NULL and one error
 * when it cannot be read */
char* hn_read_file(const char* path, size_t* len);
/* write path whole or not at all: PATH.tmp.<pid>, fsync, rename (a crash leaves the old
 * file, or the new one, and perhaps the temporary) */
int hn_write_atomic(const char* path, const char* data, size_t len);
/* remove a file or a folder and everything in it (rm -rf); missing is fine */
int hn_remove_tree(const char* path);

#endif
