/*
 * Helpers the fuzz harnesses share: a per-process scratch folder for parsers that only take
 * a path, splitting one input into parts, and a small byte reader that turns the input into
 * choices (the structure-aware checkpoint generator). Header-only: each harness is one
 * translation unit, built either against libFuzzer or against standalone.c.
 */
#ifndef HONE_FUZZ_UTIL_H
#define HONE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

/* a harness's own check failed: a semantic bug, reported as a crash */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* the scratch folder: $TMPDIR (or /dev/shm, else /tmp)/hone_fuzz.<pid>, made once */
static inline const char* fuzz_dir(void) {
    static char dir[512];
    if (dir[0]) return dir;
    const char* base = getenv("TMPDIR");
    struct stat st;
    if (!base || !*base) base = stat("/dev/shm", &st) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/hone_fuzz.%ld", base, (long)getpid());
    if (mkdir(dir, 0700) != 0 && stat(dir, &st) != 0) {
        perror(dir);
        abort();
    }
    return dir;
}

/* dir/name, in a static buffer per slot (0..7) */
static inline const char* fuzz_path(int slot, const char* name) {
    static char paths[8][600];
    snprintf(paths[slot & 7], sizeof paths[0], "%s/%s", fuzz_dir(), name);
    return paths[slot & 7];
}

/* write bytes to dir/name and return the path */
static inline const char* fuzz_write(int slot, const char* name, const void* data, size_t size) {
    const char* path = fuzz_path(slot, name);
    FILE* f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

/* split data at the first occurrence of sep: part 1 is [0, *n1), part 2 follows sep (the
 * whole input is part 1 and part 2 empty when sep does not occur) */
static inline const uint8_t* fuzz_split(const uint8_t* data, size_t size, const char* sep,
                                        size_t* n1, size_t* n2) {
    size_t k = strlen(sep);
    for (size_t i = 0; i + k <= size; i++)
        if (memcmp(data + i, sep, k) == 0) {
            *n1 = i;
            *n2 = size - i - k;
            return data + i + k;
        }
    *n1 = size;
    *n2 = 0;
    return data + size;
}

/* a NUL-terminated copy (caller frees) */
static inline char* fuzz_cstr(const uint8_t* data, size_t size) {
    char* s = malloc(size + 1);
    if (!s) abort();
    memcpy(s, data, size);
    s[size] = 0;
    return s;
}

/* choices drawn from the input; an exhausted input gives zeros (the unmutated default) */
typedef struct {
    const uint8_t* p;
    size_t n;
} FuzzIn;

static inline unsigned fuzz_u8(FuzzIn* in) {
    if (!in->n) return 0;
    in->n--;
    return *in->p++;
}

/* a value in [0, n) */
static inline unsigned fuzz_pick(FuzzIn* in, unsigned n) {
    return n ? fuzz_u8(in) % n : 0;
}

/* up to max bytes of the input (length first); *len gets the count */
static inline const uint8_t* fuzz_bytes(FuzzIn* in, size_t max, size_t* len) {
    size_t k = fuzz_u8(in);
    if (k > max) k = max;
    if (k > in->n) k = in->n;
    const uint8_t* p = in->p;
    in->p += k;
    in->n -= k;
    *len = k;
    return p;
}

#endif
