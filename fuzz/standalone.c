/*
 * A main for the fuzz harnesses without libFuzzer (gcc builds, ctest): every file named on
 * the command line, and every regular file in a named folder, goes through the harness
 * once. A crash or abort ends the run (the test fails); a harness's return value is
 * ignored, as libFuzzer ignores it.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static int run_file(const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    uint8_t* buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t* bigger = realloc(buf, cap *= 2);
            if (!bigger) free(buf);
            buf = bigger;
        }
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    fprintf(stderr, "running %s (%zu bytes)\n", path, n);
    /* a copy of exactly n bytes, so that ASan sees a read past the input */
    uint8_t* exact = malloc(n ? n : 1);
    if (!exact) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

static int run_dir(const char* dir, int* count) {
    DIR* d = opendir(dir);
    if (!d) {
        perror(dir);
        return 1;
    }
    char** names = NULL;
    int n = 0, bad = 0;
    for (struct dirent* e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char** more = realloc(names, (size_t)(n + 1) * sizeof *names);
        if (!more || !(more[n] = strdup(e->d_name))) {
            fprintf(stderr, "%s: out of memory\n", dir);
            exit(1);
        }
        names = more;
        n++;
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, cmp);
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            bad |= run_file(path);
            ++*count;
        }
        free(names[i]);
    }
    free(names);
    return bad;
}

int main(int argc, char** argv) {
    int bad = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            bad = 1;
        } else if (S_ISDIR(st.st_mode)) {
            bad |= run_dir(argv[i], &count);
        } else {
            bad |= run_file(argv[i]);
            count++;
        }
    }
    if (count == 0) {
        fprintf(stderr, "usage: %s FILE|DIR... (no inputs found)\n", argv[0]);
        return 1;
    }
    fprintf(stderr, "%d inputs ran without a crash\n", count);
    return bad;
}
