/*
 * A small deterministic random number generator (xoshiro256**, seeded by splitmix64), so
 * runs are reproducible bit for bit from a seed and the state can be saved and restored.
 * Generator from Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2018).
 */
#ifndef HONE_RNG_H
#define HONE_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} HnRng;

static inline uint64_t hn_splitmix64(uint64_t* x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline void hn_rng_seed(HnRng* r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = hn_splitmix64(&seed);
}

static inline uint64_t hn_rng_next(HnRng* r) {
    uint64_t* s = r->s;
    uint64_t x = s[1] * 5, result = ((x << 7) | (x >> 57)) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* uniform in [0, 1) with 24 random bits */
static inline float hn_rng_uniform(HnRng* r) {
    return (float)(hn_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

/* uniform integer in [0, n), n > 0 (Lemire's multiply-shift; the tiny bias is irrelevant here) */
static inline uint64_t hn_rng_below(HnRng* r, uint64_t n) {
    return (uint64_t)(((unsigned __int128)hn_rng_next(r) * n) >> 64);
}

/* standard normal (Box-Muller) */
static inline float hn_rng_normal(HnRng* r) {
    double u1 = ((hn_rng_next(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (hn_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

#endif
