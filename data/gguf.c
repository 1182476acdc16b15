/*
 * The GGUF reader; see gguf.h. The file is mapped and parsed once at open: every metadata
 * value and tensor info is validated there (the layout is the GGUF specification's,
 * github.com/ggml-org/ggml docs/gguf.md), so the getters only look up and convert. Reads
 * go through a cursor that checks each one against the bytes that remain, and every count
 * read from the file is checked against what those bytes could hold before it sizes an
 * allocation, so a hostile count fails at once instead of asking for terabytes.
 *
 * Not here: writing GGUF, big-endian files, and quantization types other than those in
 * gguf.h (their tensors open, so they can be listed, but do not dequantize).
 */
#include "data/gguf.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define GGUF_HEADER_BYTES 24 /* magic, version, tensor_count, kv_count */
#define GGUF_DEFAULT_ALIGNMENT 32
/* the fewest bytes a metadata entry (empty key, type, one uint8) and a tensor info (empty
 * name, n_dims, one dim, type, offset) can take: the counts are checked against these */
#define GGUF_MIN_KV_BYTES (8 + 4 + 1)
#define GGUF_MIN_TENSOR_BYTES (8 + 4 + 8 + 4 + 8)
#define GGUF_MIN_ARRAY_BYTES (4 + 8) /* a nested array's element type and count */
/* nested arrays are legal; deeper nesting than this is treated as hostile (it would
 * otherwise recurse once per 12 bytes of file) */
#define GGUF_MAX_DEPTH 8
#define GGUF_MAX_DIMS 4

typedef struct {
    char* key;
    HnGgufType type;
    HnGgufType elem;          /* arrays: the element type */
    uint64_t n;               /* arrays: the element count */
    const unsigned char* val; /* in the mapping: a scalar, or an array's first element */
    /* strings (a scalar string, or the elements of an array of strings): NUL-terminated
     * copies and their lengths, in one allocation */
    char** strs;
    size_t* lens;
} Kv;

struct HnGguf {
    char* path;
    unsigned char* map;
    size_t map_size;
    int version;
    size_t alignment;
    Kv* kvs; /* in file order */
    Kv** kv_by_key;
    int n_kv;
    HnGgufTensor* tensors; /* in file order */
    HnGgufTensor** tensor_by_name;
    int n_tensors;
};

/* ---- the ggml tensor types: block size (elements) and bytes per block ----
 * from ggml's type traits (ggml/src/ggml.c) as mirrored by gguf-py's GGML_QUANT_SIZES;
 * numbers 4 and 5 (Q4_2, Q4_3) were removed from ggml and are unknown here */
static const struct {
    int type;
    const char* name;
    int block;
    int bytes;
} ggml_types[] = {
    {0, "F32", 1, 4},         {1, "F16", 1, 2},         {2, "Q4_0", 32, 18},
    {3, "Q4_1", 32, 20},      {6, "Q5_0", 32, 22},      {7, "Q5_1", 32, 24},
    {8, "Q8_0", 32, 34},      {9, "Q8_1", 32, 40},      {10, "Q2_K", 256, 84},
    {11, "Q3_K", 256, 110},   {12, "Q4_K", 256, 144},   {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},   {15, "Q8_K", 256, 292},   {16, "IQ2_XXS", 256, 66},
    {17, "IQ2_XS", 256, 74},  {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50},
    {20, "IQ4_NL", 32, 18},   {21, "IQ3_S", 256, 110},  {22, "IQ2_S", 256, 82},
    {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},         {25, "I16", 1, 2},
    {26, "I32", 1, 4},        {27, "I64", 1, 8},        {28, "F64", 1, 8},
    {29, "IQ1_M", 256, 56},   {30, "BF16", 1, 2},
};
#define NGGML_TYPES ((int)(sizeof ggml_types / sizeof ggml_types[0]))

static int ggml_type_index(int type) {
    for (int i = 0; i < NGGML_TYPES; i++)
        if (ggml_types[i].type == type) return i;
    return -1;
}

const char* hn_gguf_type_name(int type) {
    int i = ggml_type_index(type);
    return i < 0 ? "unknown" : ggml_types[i].name;
}

/* metadata value types: name and size of a fixed-size value (0 for string and array) */
static const struct {
    const char* name;
    size_t size;
} value_types[] = {
    [HN_GGUF_UINT8] = {"uint8", 1},     [HN_GGUF_INT8] = {"int8", 1},
    [HN_GGUF_UINT16] = {"uint16", 2},   [HN_GGUF_INT16] = {"int16", 2},
    [HN_GGUF_UINT32] = {"uint32", 4},   [HN_GGUF_INT32] = {"int32", 4},
    [HN_GGUF_FLOAT32] = {"float32", 4}, [HN_GGUF_BOOL] = {"bool", 1},
    [HN_GGUF_STRING] = {"string", 0},   [HN_GGUF_ARRAY] = {"array", 0},
    [HN_GGUF_UINT64] = {"uint64", 8},   [HN_GGUF_INT64] = {"int64", 8},
    [HN_GGUF_FLOAT64] = {"float64", 8},
};
#define NVALUE_TYPES ((uint32_t)(sizeof value_types / sizeof value_types[0]))

static const char* value_type_name(HnGgufType t) {
    return (uint32_t)t < NVALUE_TYPES ? value_types[t].name : "?";
}

/* a name from the file, made safe for a one-line message: control bytes become '?' and a
 * long name is cut */
static const char* printable(const char* s, char buf[80]) {
    size_t i = 0;
    for (; s[i] && i < 72; i++)
        buf[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    if (s[i]) {
        memcpy(buf + i, "...", 3);
        i += 3;
    }
    buf[i] = '\0';
    return buf;
}

/* ---- the checked cursor ---- */

typedef struct {
    const HnGguf* g;
    const unsigned char* p;
    size_t left;
} Cursor;

static size_t cur_pos(const Cursor* c) {
    return (size_t)(c->p - c->g->map);
}

static int need(Cursor* c, size_t n, const char* what) {
    if (n <= c->left) return HN_OK;
    return hn_error("%s: truncated: %s at byte %zu needs %zu bytes, only %zu remain", c->g->path,
                    what, cur_pos(c), n, c->left);
}

static int skip(Cursor* c, size_t n, const char* what) {
    if (need(c, n, what)) return HN_ERR;
    c->p += n;
    c->left -= n;
    return HN_OK;
}

static int read_u32(Cursor* c, uint32_t* v, const char* what) {
    if (need(c, 4, what)) return HN_ERR;
    memcpy(v, c->p, 4);
    return skip(c, 4, what);
}

static int read_u64(Cursor* c, uint64_t* v, const char* what) {
    if (need(c, 8, what)) return HN_ERR;
    memcpy(v, c->p, 8);
    return skip(c, 8, what);
}

/* a GGUF string: uint64 length, then the bytes (no NUL); *s points into the mapping */
static int read_str(Cursor* c, const unsigned char** s, size_t* len, const char* what) {
    uint64_t n;
    if (read_u64(c, &n, what)) return HN_ERR;
    if (n > c->left)
        return hn_error("%s: %s at byte %zu claims %llu bytes, but only %zu remain", c->g->path,
                        what, cur_pos(c) - 8, (unsigned long long)n, c->left);
    *s = c->p;
    *len = (size_t)n;
    return skip(c, (size_t)n, what);
}

/* a key or tensor name as a NUL-terminated copy; a NUL inside would make it unreachable by
 * name, so it is an error */
static char* read_name(Cursor* c, const char* what) {
    const unsigned char* s = NULL;
    size_t len = 0;
    if (read_str(c, &s, &len, what)) return NULL;
    if (memchr(s, 0, len)) {
        hn_error("%s: %s at byte %zu contains a NUL byte", c->g->path, what, cur_pos(c) - len);
        return NULL;
    }
    char* copy = malloc(len + 1);
    if (!copy) {
        hn_error("%s: out of memory for a %zu-byte %s", c->g->path, len, what);
        return NULL;
    }
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

static int read_value_type(Cursor* c, HnGgufType* t, const char* key, const char* what) {
    uint32_t v;
    char buf[80];
    if (read_u32(c, &v, what)) return HN_ERR;
    if (v >= NVALUE_TYPES)
        return hn_error("%s: key '%s' has %s %u, which is not a GGUF value type (0..%u)",
                        c->g->path, printable(key, buf), what, v, NVALUE_TYPES - 1);
    *t = (HnGgufType)v;
    return HN_OK;
}

/* ---- metadata ---- */

/* skip one value of type t (arrays nested to any depth up to GGUF_MAX_DEPTH) */
static int skip_value(Cursor* c, HnGgufType t, const char* key, int depth) {
    char buf[80];
    if (t == HN_GGUF_STRING) {
        uint64_t len;
        if (read_u64(c, &len, "a string length")) return HN_ERR;
        if (len > c->left)
            return hn_error("%s: key '%s': a string at byte %zu claims %llu bytes, but only %zu "
                            "remain",
                            c->g->path, printable(key, buf), cur_pos(c) - 8,
                            (unsigned long long)len, c->left);
        return skip(c, (size_t)len, "a string");
    }
    if (t != HN_GGUF_ARRAY) return skip(c, value_types[t].size, "a metadata value");
    if (depth >= GGUF_MAX_DEPTH)
        return hn_error("%s: key '%s' nests arrays more than %d deep", c->g->path,
                        printable(key, buf), GGUF_MAX_DEPTH);
    HnGgufType elem;
    uint64_t n;
    if (read_value_type(c, &elem, key, "array element type") || read_u64(c, &n, "an array count"))
        return HN_ERR;
    size_t min = elem == HN_GGUF_STRING  ? 8
                 : elem == HN_GGUF_ARRAY ? GGUF_MIN_ARRAY_BYTES
                                         : value_types[elem].size;
    if (n > c->left / min)
        return hn_error("%s: key '%s': an array of %llu %s values at byte %zu, more than the "
                        "%zu bytes that remain can hold",
                        c->g->path, printable(key, buf), (unsigned long long)n,
                        value_type_name(elem), cur_pos(c) - 12, c->left);
    if (elem != HN_GGUF_STRING && elem != HN_GGUF_ARRAY)
        return skip(c, (size_t)n * min, "array elements");
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, elem, key, depth + 1)) return HN_ERR;
    return HN_OK;
}

/* copy the n strings that start at the cursor (already validated by skip_value) */
static int copy_strings(const HnGguf* g, Kv* kv, const unsigned char* p, uint64_t n, size_t total) {
    size_t head = (size_t)n * (sizeof(char*) + sizeof(size_t));
    if (total > SIZE_MAX - head - (size_t)n) return hn_error("%s: out of memory", g->path);
    unsigned char* block = malloc(head + total + (size_t)n);
    if (!block)
        return hn_error("%s: out of memory for the %llu strings of a key", g->path,
                        (unsigned long long)n);
    kv->strs = (char**)block;
    kv->lens = (size_t*)(block + (size_t)n * sizeof(char*));
    char* text = (char*)block + head;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len;
        memcpy(&len, p, 8);
        memcpy(text, p + 8, (size_t)len);
        text[len] = '\0';
        kv->strs[i] = text;
        kv->lens[i] = (size_t)len;
        text += len + 1;
        p += 8 + len;
    }
    return HN_OK;
}

static int parse_kv(Cursor* c, Kv* kv) {
    if (!(kv->key = read_name(c, "a metadata key")) ||
        read_value_type(c, &kv->type, kv->key, "value type"))
        return HN_ERR;
    const unsigned char* start = c->p;
    if (kv->type == HN_GGUF_ARRAY) {
        /* peek at the element type and count, which skip_value checks */
        if (skip_value(c, HN_GGUF_ARRAY, kv->key, 0)) return HN_ERR;
        uint32_t elem;
        memcpy(&elem, start, 4);
        memcpy(&kv->n, start + 4, 8);
        kv->elem = (HnGgufType)elem;
        kv->val = start + 12;
        if (kv->elem == HN_GGUF_STRING)
            return copy_strings(c->g, kv, kv->val, kv->n,
                                (size_t)(c->p - kv->val) - (size_t)kv->n * 8);
        return HN_OK;
    }
    if (skip_value(c, kv->type, kv->key, 0)) return HN_ERR;
    kv->val = start;
    if (kv->type == HN_GGUF_STRING) return copy_strings(c->g, kv, start, 1, c->p - start - 8);
    return HN_OK;
}

static int compare_kv(const void* a, const void* b) {
    return strcmp((*(Kv* const*)a)->key, (*(Kv* const*)b)->key);
}

static int compare_tensor(const void* a, const void* b) {
    return strcmp((*(HnGgufTensor* const*)a)->name, (*(HnGgufTensor* const*)b)->name);
}

static int parse_metadata(HnGguf* g, Cursor* c) {
    char buf[80];
    for (int i = 0; i < g->n_kv; i++) {
        if (parse_kv(c, &g->kvs[i])) return HN_ERR;
        g->kv_by_key[i] = &g->kvs[i];
    }
    qsort(g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, compare_kv);
    for (int i = 1; i < g->n_kv; i++)
        if (strcmp(g->kv_by_key[i - 1]->key, g->kv_by_key[i]->key) == 0)
            return hn_error("%s: metadata key '%s' appears twice", g->path,
                            printable(g->kv_by_key[i]->key, buf));
    return HN_OK;
}

static const Kv* find_kv(const HnGguf* g, const char* key) {
    Kv probe = {.key = (char*)key};
    const Kv* pprobe = &probe;
    Kv* const* hit =
        bsearch(&pprobe, g->kv_by_key, (size_t)g->n_kv, sizeof *g->kv_by_key, compare_kv);
    return hit ? *hit : NULL;
}

/* an integer or bool at p; 0 if t is not one (or a uint64 beyond int64) */
static int load_int(HnGgufType t, const unsigned char* p, int64_t* out) {
    switch (t) {
    case HN_GGUF_UINT8:
        *out = *p;
        return 1;
    case HN_GGUF_INT8:
        *out = (int8_t)*p;
        return 1;
    case HN_GGUF_BOOL:
        *out = *p != 0;
        return 1;
    case HN_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return 1;
    }
    case HN_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return 1;
    }
    case HN_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return 1;
    }
    case HN_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return 1;
    }
    case HN_GGUF_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        *out = v;
        return 1;
    }
    case HN_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) return 0;
        *out = (int64_t)v;
        return 1;
    }
    default:
        return 0;
    }
}

/* ---- tensor infos ---- */

static int parse_tensor_info(Cursor* c, HnGgufTensor* t, uint64_t* offset) {
    char buf[80];
    if (!(t->name = read_name(c, "a tensor name"))) return HN_ERR;
    const char* name = printable(t->name, buf);
    uint32_t ndim, type;
    if (read_u32(c, &ndim, "a tensor's n_dims")) return HN_ERR;
    if (ndim < 1 || ndim > GGUF_MAX_DIMS)
        return hn_error("%s: tensor '%s' has %u dimensions; GGUF allows 1 to %d", c->g->path, name,
                        ndim, GGUF_MAX_DIMS);
    t->ndim = (int)ndim;
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        uint64_t dim;
        if (read_u64(c, &dim, "a tensor dimension")) return HN_ERR;
        if (dim == 0 || dim > INT64_MAX)
            return hn_error("%s: tensor '%s': dimension %d is %llu, not a positive int64",
                            c->g->path, name, d, (unsigned long long)dim);
        if (hn_mul_overflow(numel, (size_t)dim, &numel))
            return hn_error("%s: tensor '%s': the element count of its shape overflows", c->g->path,
                            name);
        t->dims[d] = (int64_t)dim;
    }
    for (int d = t->ndim; d < GGUF_MAX_DIMS; d++)
        t->dims[d] = 1;
    t->numel = numel;
    if (read_u32(c, &type, "a tensor type") || read_u64(c, offset, "a tensor offset"))
        return HN_ERR;
    if (type > INT_MAX)
        return hn_error("%s: tensor '%s' has type %u, not a ggml type", c->g->path, name, type);
    t->type = (int)type;
    return HN_OK;
}

/* size and place a tensor once the data section is known; an unknown type has nbytes 0 */
static int place_tensor(const HnGguf* g, HnGgufTensor* t, uint64_t offset,
                        const unsigned char* data, size_t data_size) {
    char buf[80];
    const char* name = printable(t->name, buf);
    int k = ggml_type_index(t->type);
    t->nbytes = 0;
    if (k >= 0) {
        size_t block = (size_t)ggml_types[k].block, bytes = (size_t)ggml_types[k].bytes;
        if ((size_t)t->dims[0] % block != 0)
            return hn_error("%s: tensor '%s' is %s with rows of %lld, not a multiple of its "
                            "%zu-element block",
                            g->path, name, ggml_types[k].name, (long long)t->dims[0], block);
        if (hn_mul_overflow(t->numel / block, bytes, &t->nbytes))
            return hn_error("%s: tensor '%s': its byte size overflows", g->path, name);
    }
    if (offset % g->alignment != 0)
        return hn_error("%s: tensor '%s' has offset %llu, not a multiple of the alignment %zu",
                        g->path, name, (unsigned long long)offset, g->alignment);
    if (offset > data_size || t->nbytes > data_size - (size_t)offset)
        return hn_error("%s: tensor '%s' (%zu bytes at data offset %llu) lies beyond the end of "
                        "the file (the data section holds %zu bytes)",
                        g->path, name, t->nbytes, (unsigned long long)offset, data_size);
    t->data = data + offset;
    return HN_OK;
}

static int parse_alignment(HnGguf* g) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const Kv* kv = find_kv(g, "general.alignment");
    if (!kv) return HN_OK;
    int64_t a;
    if (!load_int(kv->type, kv->val, &a) || kv->type == HN_GGUF_BOOL)
        return hn_error("%s: general.alignment is a %s, not an integer", g->path,
                        value_type_name(kv->type));
    if (a <= 0 || (a & (a - 1)) != 0 || (uint64_t)a > SIZE_MAX)
        return hn_error("%s: general.alignment is %lld, not a positive power of two", g->path,
                        (long long)a);
    g->alignment = (size_t)a;
    return HN_OK;
}

static int parse_tensors(HnGguf* g, Cursor* c) {
    char buf[80];
    uint64_t* offsets = calloc((size_t)g->n_tensors + 1, sizeof *offsets);
    if (!offsets) return hn_error("%s: out of memory for %d tensor infos", g->path, g->n_tensors);
    int rc = HN_OK;
    for (int i = 0; i < g->n_tensors && rc == HN_OK; i++) {
        rc = parse_tensor_info(c, &g->tensors[i], &offsets[i]);
        g->tensor_by_name[i] = &g->tensors[i];
    }
    if (rc == HN_OK) rc = parse_alignment(g);
    if (rc == HN_OK) {
        /* the data section starts at the end of the infos, rounded up to the alignment; a
         * start past the end of the file leaves an empty data section */
        size_t pos = cur_pos(c), pad = (g->alignment - pos % g->alignment) % g->alignment;
        size_t start = pad <= g->map_size - pos ? pos + pad : g->map_size;
        for (int i = 0; i < g->n_tensors && rc == HN_OK; i++)
            rc = place_tensor(g, &g->tensors[i], offsets[i], g->map + start, g->map_size - start);
    }
    free(offsets);
    if (rc) return HN_ERR;
    qsort(g->tensor_by_name, (size_t)g->n_tensors, sizeof *g->tensor_by_name, compare_tensor);
    for (int i = 1; i < g->n_tensors; i++)
        if (strcmp(g->tensor_by_name[i - 1]->name, g->tensor_by_name[i]->name) == 0)
            return hn_error("%s: tensor '%s' appears twice", g->path,
                            printable(g->tensor_by_name[i]->name, buf));
    return HN_OK;
}

/* ---- open and close ---- */

static int map_file(HnGguf* g) {
    int fd = open(g->path, O_RDONLY);
    if (fd < 0) return hn_error("%s: cannot open the file", g->path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return hn_error("%s: not a regular file", g->path);
    }
    if (sb.st_size < GGUF_HEADER_BYTES) {
        close(fd);
        return hn_error("%s: the file is %lld bytes, too short for a GGUF header (%d bytes)",
                        g->path, (long long)sb.st_size, GGUF_HEADER_BYTES);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return hn_error("%s: the file is too large to map", g->path);
    }
    g->map_size = (size_t)sb.st_size;
    void* p = mmap(NULL, g->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return hn_error("%s: cannot map the file", g->path);
    g->map = p;
    return HN_OK;
}

static int parse_header(HnGguf* g, Cursor* c) {
    if (memcmp(g->map, "GGUF", 4) != 0)
        return hn_error("%s: not a GGUF file (it does not start with the bytes \"GGUF\")", g->path);
    uint32_t version;
    uint64_t n_tensors, n_kv;
    if (skip(c, 4, "the magic") || read_u32(c, &version, "the version")) return HN_ERR;
    if (version == 1)
        return hn_error("%s: GGUF version 1 (32-bit counts) is not supported; convert the model "
                        "again with a current llama.cpp",
                        g->path);
    if (version != 2 && version != 3) {
        if ((version & 0xffffu) == 0)
            return hn_error("%s: GGUF version %u: a big-endian file? hone reads little-endian "
                            "GGUF versions 2 and 3",
                            g->path, version);
        return hn_error("%s: GGUF version %u is not supported (hone reads versions 2 and 3)",
                        g->path, version);
    }
    g->version = (int)version;
    if (read_u64(c, &n_tensors, "the tensor count") || read_u64(c, &n_kv, "the metadata count"))
        return HN_ERR;
    if (n_kv > c->left / GGUF_MIN_KV_BYTES || n_kv > INT_MAX ||
        n_tensors > (c->left - n_kv * GGUF_MIN_KV_BYTES) / GGUF_MIN_TENSOR_BYTES ||
        n_tensors > INT_MAX)
        return hn_error("%s: the header claims %llu tensors and %llu metadata keys, more than the "
                        "%zu bytes after it can hold (truncated or corrupt)",
                        g->path, (unsigned long long)n_tensors, (unsigned long long)n_kv, c->left);
    g->n_kv = (int)n_kv;
    g->n_tensors = (int)n_tensors;
    g->kvs = calloc((size_t)g->n_kv + 1, sizeof *g->kvs);
    g->kv_by_key = calloc((size_t)g->n_kv + 1, sizeof *g->kv_by_key);
    g->tensors = calloc((size_t)g->n_tensors + 1, sizeof *g->tensors);
    g->tensor_by_name = calloc((size_t)g->n_tensors + 1, sizeof *g->tensor_by_name);
    if (!g->kvs || !g->kv_by_key || !g->tensors || !g->tensor_by_name)
        return hn_error("%s: out of memory for %d keys and %d tensors", g->path, g->n_kv,
                        g->n_tensors);
    return HN_OK;
}

HnGguf* hn_gguf_open(const char* path) {
    HnGguf* g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) {
        free(g);
        hn_error("%s: out of memory", path);
        return NULL;
    }
    if (map_file(g)) goto fail;
    Cursor c = {g, g->map, g->map_size};
    if (parse_header(g, &c) || parse_metadata(g, &c) || parse_tensors(g, &c)) goto fail;
    return g;

fail:
    hn_gguf_close(g);
    return NULL;
}

void hn_gguf_close(HnGguf* g) {
    if (!g) return;
    if (g->map) munmap(g->map, g->map_size);
    for (int i = 0; g->kvs && i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].strs);
    }
    for (int i = 0; g->tensors && i < g->n_tensors; i++)
        free((char*)g->tensors[i].name);
    free(g->kvs);
    free(g->kv_by_key);
    free(g->tensors);
    free(g->tensor_by_name);
    free(g->path);
    free(g);
}

const char* hn_gguf_path(const HnGguf* g) {
    return g->path;
}

int hn_gguf_version(const HnGguf* g) {
    return g->version;
}

/* ---- metadata getters ---- */

int hn_gguf_has(const HnGguf* g, const char* key) {
    return find_kv(g, key) != NULL;
}

/* the key, or NULL with an error */
static const Kv* need_kv(const HnGguf* g, const char* key) {
    const Kv* kv = find_kv(g, key);
    if (!kv) hn_error("%s: no metadata key '%s'", g->path, key);
    return kv;
}

static int wrong_type(const HnGguf* g, const Kv* kv, const char* wanted) {
    return hn_error("%s: metadata key '%s' is %s, expected %s", g->path, kv->key,
                    value_type_name(kv->type), wanted);
}

int hn_gguf_get_int(const HnGguf* g, const char* key, int64_t* out) {
    const Kv* kv = need_kv(g, key);
    if (!kv) return HN_ERR;
    if (!load_int(kv->type, kv->val, out)) {
        if (kv->type == HN_GGUF_UINT64)
            return hn_error("%s: metadata key '%s' (uint64) is beyond the int64 range", g->path,
                            key);
        return wrong_type(g, kv, "an integer");
    }
    return HN_OK;
}

int hn_gguf_get_float(const HnGguf* g, const char* key, double* out) {
    const Kv* kv = need_kv(g, key);
    if (!kv) return HN_ERR;
    if (kv->type == HN_GGUF_FLOAT32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
    } else if (kv->type == HN_GGUF_FLOAT64) {
        memcpy(out, kv->val, 8);
    } else if (kv->type == HN_GGUF_UINT64) {
        uint64_t v;
        memcpy(&v, kv->val, 8);
        *out = (double)v;
    } else {
        int64_t v;
        if (kv->type == HN_GGUF_BOOL || !load_int(kv->type, kv->val, &v))
            return wrong_type(g, kv, "a number");
        *out = (double)v;
    }
    return HN_OK;
}

const char* hn_gguf_get_str(const HnGguf* g, const char* key, size_t* len) {
    const Kv* kv = need_kv(g, key);
    if (!kv) return NULL;
    if (kv->type != HN_GGUF_STRING) {
        wrong_type(g, kv, "a string");
        return NULL;
    }
    if (len) *len = kv->lens[0];
    return kv->strs[0];
}

int hn_gguf_get_arr(const HnGguf* g, const char* key, HnGgufType* elem, uint64_t* n) {
    const Kv* kv = need_kv(g, key);
    if (!kv) return HN_ERR;
    if (kv->type != HN_GGUF_ARRAY) return wrong_type(g, kv, "an array");
    if (elem) *elem = kv->elem;
    if (n) *n = kv->n;
    return HN_OK;
}

/* the array called key with element i in range, or NULL with an error */
static const Kv* need_elem(const HnGguf* g, const char* key, uint64_t i) {
    const Kv* kv = need_kv(g, key);
    if (!kv) return NULL;
    if (kv->type != HN_GGUF_ARRAY) {
        wrong_type(g, kv, "an array");
        return NULL;
    }
    if (i >= kv->n) {
        hn_error("%s: metadata array '%s' has %llu elements, no index %llu", g->path, key,
                 (unsigned long long)kv->n, (unsigned long long)i);
        return NULL;
    }
    return kv;
}

const char* hn_gguf_arr_str(const HnGguf* g, const char* key, uint64_t i, size_t* len) {
    const Kv* kv = need_elem(g, key, i);
    if (!kv) return NULL;
    if (kv->elem != HN_GGUF_STRING) {
        hn_error("%s: metadata array '%s' holds %s, expected strings", g->path, key,
                 value_type_name(kv->elem));
        return NULL;
    }
    if (len) *len = kv->lens[i];
    return kv->strs[i];
}

int hn_gguf_arr_int(const HnGguf* g, const char* key, uint64_t i, int64_t* out) {
    const Kv* kv = need_elem(g, key, i);
    if (!kv) return HN_ERR;
    size_t size = value_types[kv->elem].size;
    if (size == 0 || !load_int(kv->elem, kv->val + i * size, out))
        return hn_error("%s: metadata array '%s' element %llu (%s) is not an int64 integer",
                        g->path, key, (unsigned long long)i, value_type_name(kv->elem));
    return HN_OK;
}

int hn_gguf_key_count(const HnGguf* g) {
    return g->n_kv;
}

const char* hn_gguf_key(const HnGguf* g, int i, HnGgufType* type) {
    if (i < 0 || i >= g->n_kv) {
        hn_error("%s: no metadata key number %d (it has %d)", g->path, i, g->n_kv);
        return NULL;
    }
    if (type) *type = g->kvs[i].type;
    return g->kvs[i].key;
}

/* ---- tensors ---- */

int hn_gguf_tensor_count(const HnGguf* g) {
    return g->n_tensors;
}

const HnGgufTensor* hn_gguf_tensor(const HnGguf* g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const HnGgufTensor* hn_gguf_find_tensor(const HnGguf* g, const char* name) {
    HnGgufTensor probe = {.name = name};
    const HnGgufTensor* pprobe = &probe;
    HnGgufTensor* const* hit = bsearch(&pprobe, g->tensor_by_name, (size_t)g->n_tensors,
                                       sizeof *g->tensor_by_name, compare_tensor);
    if (!hit) {
        hn_error("%s: no tensor '%s'", g->path, name);
        return NULL;
    }
    return *hit;
}

/* ---- dequantization ----
 * Block layouts from ggml (ggml/src/ggml-common.h, dequantize_row_* in ggml-quants.c),
 * checked against gguf-py's quants.py by tests/unit/test_gguf.c. Every product and sum is
 * its own statement, in ggml's order, so that a compiler allowed to contract a*b+c into
 * one fused multiply-add cannot change the result: values match gguf-py bit for bit. */

static float half_to_float(const unsigned char* p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float */
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 0x1f) /* inf and NaN (the payload kept) */
        bits = sign | 0x7f800000u | (man << 13);
    else /* rebias the exponent from 15 to 127 */
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(const unsigned char* p) {
    uint16_t h;
    memcpy(&h, p, 2);
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Q8_0, 34 bytes per 32: half d, int8 qs[32]; x = d * q */
static void dequant_q8_0(const unsigned char* b, float* y) {
    float d = half_to_float(b);
    for (int j = 0; j < 32; j++)
        y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q4_0, 18 bytes per 32: half d, qs[16]; element j < 16 is the low nibble of qs[j], element
 * j + 16 the high nibble; x = d * (q - 8) */
static void dequant_q4_0(const unsigned char* b, float* y) {
    float d = half_to_float(b);
    const unsigned char* qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = (float)((qs[j] & 0x0f) - 8) * d;
        y[j + 16] = (float)((qs[j] >> 4) - 8) * d;
    }
}

/* Q4_1, 20 bytes per 32: half d, half m, qs[16] in Q4_0's nibble order; x = d * q + m */
static void dequant_q4_1(const unsigned char* b, float* y) {
    float d = half_to_float(b), m = half_to_float(b + 2);
    const unsigned char* qs = b + 4;
    for (int j = 0; j < 16; j++) {
        float lo = (float)(qs[j] & 0x0f) * d;
        float hi = (float)(qs[j] >> 4) * d;
        y[j] = lo + m;
        y[j + 16] = hi + m;
    }
}

/* Q4_K's 12 scale bytes hold eight 6-bit scales and eight 6-bit mins (ggml's
 * get_scale_min_k4): for j < 4 the low 6 bits of bytes j and j + 4; for j >= 4 the low
 * nibble (scale) or high nibble (min) of byte j + 4, with the top 2 bits taken from the
 * spare high bits of bytes j - 4 (scale) and j (min) */
static void scale_min_k4(int j, const unsigned char* s, int* sc, int* mn) {
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K, 144 bytes per 256: half d, half dmin, scales[12], qs[128]. Eight sub-blocks of 32,
 * each x = (d * scale) * q - (dmin * min); qs holds them in pairs: 32 bytes give sub-block
 * 2i in their low nibbles and 2i + 1 in their high nibbles */
static void dequant_q4_k(const unsigned char* b, float* y) {
    float d = half_to_float(b), dmin = half_to_float(b + 2);
    const unsigned char* scales = b + 4;
    const unsigned char* q = b + 16;
    for (int pair = 0; pair < 4; pair++, q += 32, y += 64) {
        int sc0, m0, sc1, m1;
        scale_min_k4(2 * pair, scales, &sc0, &m0);
        scale_min_k4(2 * pair + 1, scales, &sc1, &m1);
        float d0 = d * (float)sc0, min0 = dmin * (float)m0;
        float d1 = d * (float)sc1, min1 = dmin * (float)m1;
        for (int l = 0; l < 32; l++) {
            float lo = d0 * (float)(q[l] & 0x0f);
            float hi = d1 * (float)(q[l] >> 4);
            y[l] = lo - min0;
            y[l + 32] = hi - min1;
        }
    }
}

/* Q6_K, 210 bytes per 256: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16],
 * half d; x = (d * scale) * (q - 32), one scale per 16 elements. Each half of 128 elements
 * uses 64 ql bytes and 32 qh bytes: element l + 32k (l < 32, k < 4) takes the low (k even)
 * or high (k odd) nibble of ql[l + 32 * (k & 1)] and bits 2k..2k+1 of qh[l] */
static void dequant_q6_k(const unsigned char* b, float* y) {
    const unsigned char* ql = b;
    const unsigned char* qh = b + 128;
    const int8_t* sc = (const int8_t*)(b + 192);
    float d = half_to_float(b + 208);
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, y += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            float s1 = d * (float)sc[is], s2 = d * (float)sc[is + 2];
            float s3 = d * (float)sc[is + 4], s4 = d * (float)sc[is + 6];
            y[l] = s1 * (float)q1;
            y[l + 32] = s2 * (float)q2;
            y[l + 64] = s3 * (float)q3;
            y[l + 96] = s4 * (float)q4;
        }
    }
}

int hn_gguf_dequantize(const HnGguf* g, const HnGgufTensor* t, float* dst, size_t numel) {
    char buf[80];
    const char* name = printable(t->name, buf);
    if (numel != t->numel)
        return hn_error("%s: tensor '%s' has %zu elements, the caller expected %zu", g->path, name,
                        t->numel, numel);
    const unsigned char* src = t->data;
    void (*block_fn)(const unsigned char*, float*) = NULL;
    switch (t->type) {
    case HN_GGML_F32:
        memcpy(dst, src, numel * sizeof *dst);
        return HN_OK;
    case HN_GGML_F16:
        for (size_t i = 0; i < numel; i++)
            dst[i] = half_to_float(src + 2 * i);
        return HN_OK;
    case HN_GGML_BF16:
        for (size_t i = 0; i < numel; i++)
            dst[i] = bf16_to_float(src + 2 * i);
        return HN_OK;
    case HN_GGML_Q8_0:
        block_fn = dequant_q8_0;
        break;
    case HN_GGML_Q4_0:
        block_fn = dequant_q4_0;
        break;
    case HN_GGML_Q4_1:
        block_fn = dequant_q4_1;
        break;
    case HN_GGML_Q4_K:
        block_fn = dequant_q4_k;
        break;
    case HN_GGML_Q6_K:
        block_fn = dequant_q6_k;
        break;
    default:
        return hn_error("%s: tensor '%s': unsupported quantization type %d (%s); hone "
                        "dequantizes F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and Q6_K",
                        g->path, name, t->type, hn_gguf_type_name(t->type));
    }
    int k = ggml_type_index(t->type);
    size_t block = (size_t)ggml_types[k].block, bytes = (size_t)ggml_types[k].bytes;
    for (size_t i = 0; i < numel / block; i++)
        block_fn(src + i * bytes, dst + i * block);
    return HN_OK;
}
