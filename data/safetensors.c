/*
 * The safetensors reader; see safetensors.h. The file is mapped, the JSON header parsed
 * with cJSON and every entry validated once at open, so the read functions only look up,
 * check the caller's expectations and convert. The cJSON tree stays alive: tensor names
 * and metadata strings point into it.
 */
#include "data/safetensors.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/checked.h"
#include "core/error.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the safetensors reader assumes a little-endian host"
#endif

/* the reference implementation's limit; a header beyond it is treated as hostile */
#define HN_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)
/* integers in the header are JSON numbers, parsed as doubles: exact up to 2^53 */
#define HN_ST_MAX_INT 9007199254740992.0

typedef struct {
    HnStTensor info;
    size_t begin; /* byte offset of the data inside the data section */
} Entry;

struct HnSafetensors {
    char* path;
    unsigned char* map;
    size_t map_size;
    const unsigned char* data; /* the data section: after the 8 length bytes and the header */
    size_t data_size;
    cJSON* header;
    const cJSON* metadata; /* NULL if the file has none */
    Entry* entries;        /* in header order */
    Entry** by_name;       /* sorted by name, for lookup */
    int n;
};

static const struct {
    const char* name;
    HnStDtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", HN_ST_F32, 4}, {"F16", HN_ST_F16, 2}, {"BF16", HN_ST_BF16, 2},
    {"I32", HN_ST_I32, 4}, {"I64", HN_ST_I64, 8},
};
#define NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char* hn_safetensors_dtype_name(HnStDtype dtype) {
    for (int i = 0; i < NDTYPES; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].name;
    return "?";
}

static size_t dtype_size(HnStDtype dtype) {
    for (int i = 0; i < NDTYPES; i++)
        if (dtypes[i].dtype == dtype) return dtypes[i].size;
    return 0;
}

/* a JSON number that is a whole number in [0, 2^53] */
static int json_uint(const cJSON* item, uint64_t* out) {
    if (!cJSON_IsNumber(item)) return 0;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= HN_ST_MAX_INT) || (double)(uint64_t)v != v) return 0;
    *out = (uint64_t)v;
    return 1;
}

static int parse_dtype(const HnSafetensors* st, const char* name, const cJSON* item,
                       HnStDtype* dtype) {
    if (!cJSON_IsString(item))
        return hn_error("%s: tensor '%s': \"dtype\" is missing or not a string", st->path, name);
    for (int i = 0; i < NDTYPES; i++) {
        if (strcmp(item->valuestring, dtypes[i].name) == 0) {
            *dtype = dtypes[i].dtype;
            return HN_OK;
        }
    }
    return hn_error("%s: tensor '%s' has dtype '%s', which hone does not read "
                    "(it reads F32, F16, BF16, I32, I64)",
                    st->path, name, item->valuestring);
}

static int parse_shape(const HnSafetensors* st, const char* name, const cJSON* item,
                       HnStTensor* t) {
    if (!cJSON_IsArray(item))
        return hn_error("%s: tensor '%s': \"shape\" is missing or not an array", st->path, name);
    int rank = cJSON_GetArraySize(item);
    if (rank > HN_ST_MAX_RANK)
        return hn_error("%s: tensor '%s' has rank %d, more than %d", st->path, name, rank,
                        HN_ST_MAX_RANK);
    t->rank = 0;
    size_t numel = 1;
    int zero = 0, overflow = 0;
    const cJSON* dim;
    cJSON_ArrayForEach(dim, item) {
        uint64_t d;
        if (!json_uint(dim, &d))
            return hn_error("%s: tensor '%s': shape entry %d is not a non-negative integer",
                            st->path, name, t->rank);
        t->shape[t->rank++] = (int64_t)d;
        /* a zero anywhere makes the count 0, so an overflow only counts without one */
        if (d == 0)
            zero = 1;
        else if (!overflow)
            overflow = hn_mul_overflow(numel, (size_t)d, &numel);
    }
    if (zero)
        numel = 0;
    else if (overflow)
        return hn_error("%s: tensor '%s': the element count of its shape overflows", st->path,
                        name);
    t->numel = numel;
    return HN_OK;
}

static int parse_offsets(const HnSafetensors* st, const char* name, const cJSON* item, Entry* e) {
    uint64_t begin, end;
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2 ||
        !json_uint(cJSON_GetArrayItem(item, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(item, 1), &end))
        return hn_error("%s: tensor '%s': \"data_offsets\" is not [begin, end] of "
                        "non-negative integers",
                        st->path, name);
    if (begin > end)
        return hn_error("%s: tensor '%s': data_offsets [%llu, %llu] begin after they end", st->path,
                        name, (unsigned long long)begin, (unsigned long long)end);
    if (end > st->data_size)
        return hn_error("%s: tensor '%s': data_offsets [%llu, %llu] lie outside the %zu data "
                        "bytes of the file",
                        st->path, name, (unsigned long long)begin, (unsigned long long)end,
                        st->data_size);
    size_t elem = dtype_size(e->info.dtype), bytes;
    if (hn_mul_overflow(e->info.numel, elem, &bytes))
        return hn_error("%s: tensor '%s': the byte size of its %zu elements overflows", st->path,
                        name, e->info.numel);
    if (end - begin != bytes)
        return hn_error("%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but %zu "
                        "elements of %s need %zu x %zu",
                        st->path, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), e->info.numel,
                        hn_safetensors_dtype_name(e->info.dtype), e->info.numel, elem);
    e->begin = (size_t)begin;
    return HN_OK;
}

static int parse_entry(const HnSafetensors* st, const cJSON* item, Entry* e) {
    const char* name = item->string;
    if (!cJSON_IsObject(item))
        return hn_error("%s: tensor '%s': its header entry is not a JSON object", st->path, name);
    e->info.name = name;
    if (parse_dtype(st, name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e->info.dtype) ||
        parse_shape(st, name, cJSON_GetObjectItemCaseSensitive(item, "shape"), &e->info) ||
        parse_offsets(st, name, cJSON_GetObjectItemCaseSensitive(item, "data_offsets"), e))
        return HN_ERR;
    return HN_OK;
}

static int parse_metadata(HnSafetensors* st, const cJSON* item) {
    if (st->metadata) return hn_error("%s: the header has \"__metadata__\" twice", st->path);
    if (!cJSON_IsObject(item))
        return hn_error("%s: \"__metadata__\" is not a JSON object", st->path);
    const cJSON* kv;
    cJSON_ArrayForEach(kv, item) {
        if (!cJSON_IsString(kv))
            return hn_error("%s: __metadata__ '%s' is not a string", st->path, kv->string);
    }
    st->metadata = item;
    return HN_OK;
}

static int compare_entries(const void* a, const void* b) {
    return strcmp((*(Entry* const*)a)->info.name, (*(Entry* const*)b)->info.name);
}

static int compare_begins(const void* a, const void* b) {
    size_t x = (*(Entry*const*)a)->begin, y = (*(Entry*const*)b)->begin;
    return (x > y) - (x < y);
}

/* two tensors on the same bytes would alias each other (a write to one changes the other);
 * safetensors' own reader refuses such files too */
static int check_no_overlap(const HnSafetensors* st) {
    Entry** by_begin = malloc(((size_t)st->n + 1) * sizeof *by_begin);
    if (!by_begin) return hn_error("%s: out of memory", st->path);
    memcpy(by_begin, st->by_name, (size_t)st->n * sizeof *by_begin);
    qsort(by_begin, (size_t)st->n, sizeof *by_begin, compare_begins);
    int rc = HN_OK;
    for (int i = 1; rc == HN_OK && i < st->n; i++) {
        const Entry *a = by_begin[i - 1], *b = by_begin[i];
        size_t a_end = a->begin + a->info.numel * dtype_size(a->info.dtype);
        if (b->begin < a_end && b->info.numel > 0)
            rc = hn_error("%s: tensors '%s' and '%s' share bytes (data_offsets overlap at %zu)",
                          st->path, a->info.name, b->info.name, b->begin);
    }
    free(by_begin);
    return rc;
}

static int parse_header(HnSafetensors* st, const char* text, size_t len) {
    const char* end = NULL;
    st->header = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!st->header)
        return hn_error("%s: the header is not valid JSON (error near byte %td of %zu)", st->path,
                        end ? end - text : (ptrdiff_t)0, len);
    for (const char* p = end; p < text + len; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            return hn_error("%s: the header has bytes after its JSON value (at byte %td of %zu)",
                            st->path, p - text, len);
    }
    if (!cJSON_IsObject(st->header))
        return hn_error("%s: the header is not a JSON object", st->path);

    int n = 0;
    const cJSON* item;
    cJSON_ArrayForEach(item, st->header) n += strcmp(item->string, "__metadata__") != 0;
    st->entries = calloc((size_t)n + 1, sizeof *st->entries);
    st->by_name = calloc((size_t)n + 1, sizeof *st->by_name);
    if (!st->entries || !st->by_name)
        return hn_error("%s: out of memory for %d tensor entries", st->path, n);
    cJSON_ArrayForEach(item, st->header) {
        if (strcmp(item->string, "__metadata__") == 0) {
            if (parse_metadata(st, item)) return HN_ERR;
            continue;
        }
        Entry* e = &st->entries[st->n];
        if (parse_entry(st, item, e)) return HN_ERR;
        st->by_name[st->n++] = e;
    }
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, compare_entries);
    for (int i = 1; i < st->n; i++) {
        if (strcmp(st->by_name[i - 1]->info.name, st->by_name[i]->info.name) == 0)
            return hn_error("%s: tensor '%s' appears twice in the header", st->path,
                            st->by_name[i]->info.name);
    }
    return check_no_overlap(st);
}

static int map_file(HnSafetensors* st) {
    int fd = open(st->path, O_RDONLY);
    if (fd < 0) return hn_error("%s: cannot open the file", st->path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return hn_error("%s: not a regular file", st->path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return hn_error("%s: the file is %lld bytes, too short for a safetensors header", st->path,
                        (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return hn_error("%s: the file is too large to map", st->path);
    }
    st->map_size = (size_t)sb.st_size;
    void* p = mmap(NULL, st->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return hn_error("%s: cannot map the file", st->path);
    st->map = p;
    return HN_OK;
}

HnSafetensors* hn_safetensors_open(const char* path) {
    HnSafetensors* st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(path))) {
        free(st);
        hn_error("%s: out of memory", path);
        return NULL;
    }
    if (map_file(st)) goto fail;

    uint64_t header_len;
    memcpy(&header_len, st->map, 8);
    size_t rest = st->map_size - 8;
    if (header_len > rest) {
        hn_error("%s: the header length %llu exceeds the %zu bytes after it (truncated or not "
                 "a safetensors file?)",
                 path, (unsigned long long)header_len, rest);
        goto fail;
    }
    if (header_len > HN_ST_MAX_HEADER) {
        hn_error("%s: the header length %llu is over the %llu-byte limit", path,
                 (unsigned long long)header_len, (unsigned long long)HN_ST_MAX_HEADER);
        goto fail;
    }
    st->data = st->map + 8 + header_len;
    st->data_size = rest - (size_t)header_len;
    if (parse_header(st, (const char*)st->map + 8, (size_t)header_len)) goto fail;
    return st;

fail:
    hn_safetensors_close(st);
    return NULL;
}

void hn_safetensors_close(HnSafetensors* st) {
    if (!st) return;
    if (st->map) munmap(st->map, st->map_size);
    cJSON_Delete(st->header);
    free(st->entries);
    free(st->by_name);
    free(st->path);
    free(st);
}

int hn_safetensors_count(const HnSafetensors* st) {
    return st->n;
}

const HnStTensor* hn_safetensors_tensor(const HnSafetensors* st, int i) {
    return i >= 0 && i < st->n ? &st->entries[i].info : NULL;
}

static const Entry* find_entry(const HnSafetensors* st, const char* name) {
    Entry key = {.info.name = name};
    const Entry* pkey = &key;
    Entry* const* hit =
        bsearch(&pkey, st->by_name, (size_t)st->n, sizeof *st->by_name, compare_entries);
    if (!hit) {
        hn_error("%s: no tensor '%s'", st->path, name);
        return NULL;
    }
    return *hit;
}

const HnStTensor* hn_safetensors_find(const HnSafetensors* st, const char* name) {
    const Entry* e = find_entry(st, name);
    return e ? &e->info : NULL;
}

/* the entry called name, if it has numel elements */
static const Entry* find_sized(const HnSafetensors* st, const char* name, size_t numel) {
    const Entry* e = find_entry(st, name);
    if (e && e->info.numel != numel) {
        hn_error("%s: tensor '%s' has %zu elements, expected %zu", st->path, name, e->info.numel,
                 numel);
        return NULL;
    }
    return e;
}

/* IEEE half to float; exact, subnormals, infinities and NaNs included */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        float f = (float)man * 0x1p-24f;
        return sign ? -f : f;
    }
    if (exp == 0x1f)
        bits = sign | 0x7f800000u | (man << 13);
    else
        bits = sign | ((exp + 112) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int hn_safetensors_read_f32(const HnSafetensors* st, const char* name, float* dst, size_t numel) {
    const Entry* e = find_sized(st, name, numel);
    if (!e) return HN_ERR;
    const unsigned char* src = st->data + e->begin;
    switch (e->info.dtype) {
    case HN_ST_F32:
        if (numel) memcpy(dst, src, numel * sizeof *dst);
        return HN_OK;
    case HN_ST_F16:
    case HN_ST_BF16:
        for (size_t i = 0; i < numel; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = e->info.dtype == HN_ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        return HN_OK;
    default:
        return hn_error("%s: tensor '%s' is %s, expected a float dtype (F32, F16, BF16)", st->path,
                        name, hn_safetensors_dtype_name(e->info.dtype));
    }
}

int hn_safetensors_read_i32(const HnSafetensors* st, const char* name, int32_t* dst, size_t numel) {
    const Entry* e = find_sized(st, name, numel);
    if (!e) return HN_ERR;
    const unsigned char* src = st->data + e->begin;
    switch (e->info.dtype) {
    case HN_ST_I32:
        if (numel) memcpy(dst, src, numel * sizeof *dst);
        return HN_OK;
    case HN_ST_I64:
        for (size_t i = 0; i < numel; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v < INT32_MIN || v > INT32_MAX)
                return hn_error("%s: tensor '%s': element %zu (%lld) does not fit in int32",
                                st->path, name, i, (long long)v);
            dst[i] = (int32_t)v;
        }
        return HN_OK;
    default:
        return hn_error("%s: tensor '%s' is %s, expected an integer dtype (I32, I64)", st->path,
                        name, hn_safetensors_dtype_name(e->info.dtype));
    }
}

const char* hn_safetensors_meta(const HnSafetensors* st, const char* key) {
    const cJSON* v = st->metadata ? cJSON_GetObjectItemCaseSensitive(st->metadata, key) : NULL;
    if (!v) {
        hn_error("%s: no __metadata__ '%s'", st->path, key);
        return NULL;
    }
    return v->valuestring;
}

/* ---- writing ---- */

uint16_t hn_f32_to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

uint16_t hn_f32_to_f16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00u;  /* NaN */
    if (a >= 0x477ff000u) return sign | 0x7c00u; /* rounds past 65504: infinity */
    if (a < 0x33000001u) return sign;            /* below half the smallest subnormal */
    int e = (int)(a >> 23) - 127;
    uint32_t mant = (a & 0x7fffffu) | 0x800000u;
    if (e < -14) { /* subnormal: shift the 24-bit significand into 10 bits */
        int shift = -14 - e + 13;
        uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t q = mant >> 13, rem = mant & 0x1fffu;
    uint32_t h = ((uint32_t)(e + 15) << 10) | (q & 0x3ffu);
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* a carry may reach the exponent */
    return sign | (uint16_t)h;
}

int hn_safetensors_write(const char* path, const HnStOut* t, int n, HnStDtype dtype) {
    if (dtype != HN_ST_F32 && dtype != HN_ST_F16 && dtype != HN_ST_BF16)
        return hn_error("safetensors: can write F32, F16 or BF16 only");
    const size_t esize = dtype == HN_ST_F32 ? 4 : 2;
    cJSON* h = cJSON_CreateObject();
    cJSON* meta = cJSON_AddObjectToObject(h, "__metadata__");
    cJSON_AddStringToObject(meta, "format", "pt");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].rank; d++)
            numel *= (size_t)t[i].shape[d];
        cJSON* e = cJSON_AddObjectToObject(h, t[i].name);
        cJSON_AddStringToObject(e, "dtype", hn_safetensors_dtype_name(dtype));
        cJSON* shape = cJSON_AddArrayToObject(e, "shape");
        for (int d = 0; d < t[i].rank; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON* range = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(range, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(range, cJSON_CreateNumber((double)(off + numel * esize)));
        off += numel * esize;
    }
    char* text = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    if (!text) return hn_error("out of memory");
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    FILE* f = fopen(path, "wb");
    if (!f) {
        free(text);
        return hn_error("cannot write %s", path);
    }
    unsigned char len8[8];
    for (int b = 0; b < 8; b++)
        len8[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    int ok = fwrite(len8, 8, 1, f) == 1 && fwrite(text, 1, hl, f) == hl;
    for (size_t k = hl; ok && k < padded; k++)
        ok = fputc(' ', f) != EOF;
    free(text);
    enum { CHUNK = 1 << 14 };
    unsigned char buf[CHUNK * 4];
    for (int i = 0; ok && i < n; i++) {
        const HnStOut* x = &t[i];
        size_t numel = 1;
        for (int d = 0; d < x->rank; d++)
            numel *= (size_t)x->shape[d];
        const size_t rows = x->rank == 2 ? (size_t)x->shape[0] : 1,
                     cols = numel / (rows ? rows : 1);
        for (size_t at = 0; ok && at < numel; at += CHUNK) {
            size_t k = numel - at < CHUNK ? numel - at : CHUNK;
            for (size_t j = 0; j < k; j++) {
                size_t idx = at + j;
                /* stored (rows, cols) element (r, c) is the source's (c, r) */
                float v = x->transpose ? x->data[(idx % cols) * rows + idx / cols] : x->data[idx];
                if (dtype == HN_ST_F32) {
                    memcpy(buf + 4 * j, &v, 4);
                } else {
                    uint16_t b = dtype == HN_ST_F16 ? hn_f32_to_f16(v) : hn_f32_to_bf16(v);
                    buf[2 * j] = (unsigned char)(b & 0xff);
                    buf[2 * j + 1] = (unsigned char)(b >> 8);
                }
            }
            ok = fwrite(buf, esize, k, f) == k;
        }
    }
    ok = (fflush(f) == 0) && ok;
    ok = (fclose(f) == 0) && ok;
    return ok ? HN_OK : hn_error("cannot write %s (disk full?)", path);
}
