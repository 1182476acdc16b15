/*
 * Causal grouped-query attention on the GPU, fp32, by FlashAttention-2 (Dao, "FlashAttention-2:
 * Faster Attention with Better Parallelism and Work Partitioning", 2023): the (T, T) score
 * matrix is never stored. The forward walks the key tiles of each query tile with an online
 * softmax (a running max m and sum l per row, earlier partial outputs rescaled by
 * exp(m_old - m_new)) and keeps only lse = m + log(l) per row; the backward recomputes the
 * probabilities tile by tile from lse.
 * Shapes, the same as hn_attention_gqa_forward (kernels/ops.h): q, dq (B,T,NH*HS) rows
 * q_stride apart; k, v, dk, dv (B,T,NKV*HS) rows kv_stride apart; out, dout (B,T,NH*HS)
 * contiguous; lse (B,NH,T). Query head h reads kv head h / G, G = NH / NKV. HS <= 128.
 *
 * Every kernel runs the same two-phase step on a (BQ query rows) x (BK keys) tile, with all
 * operands in shared memory:
 *   phase A (scores): warp w owns rows w, w + NWARPS, ... of the tile and lane j owns key j,
 *     so a row's BK = 32 scores sit in one warp and its softmax needs only shuffles;
 *   phase B (products): each thread owns fixed elements of an (rows, HS) result in registers
 *     and adds a (rows, BK) x (BK, HS) product into them, in a fixed order.
 * Each output element has one owner thread that sums in a fixed order, and no kernel uses
 * atomics, so results are bit-identical from run to run. The backward is split so that this
 * holds for the sums over query rows too: one kernel owns a key tile of a kv head and loops
 * over the query rows of every head in its group (dk, dv); another owns a query tile and
 * loops over its key tiles (dq).
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"

#define BQ 32        /* query rows per tile */
#define BK 32        /* keys per tile: one per lane in phase A */
#define NTHREADS 256 /* threads per block */
#define NWARPS (NTHREADS / 32)
#define RPW (BQ / NWARPS) /* query rows per warp in phase A */
#define HS_MAX 128
#define EPT (BQ * HS_MAX / NTHREADS) /* result elements per thread in phase B */

static_assert(BK == 32, "phase A puts one key on each lane of a warp");
static_assert(BQ == BK, "phase B's element count assumes square tiles");
static_assert(BQ % NWARPS == 0 && (BQ * HS_MAX) % NTHREADS == 0, "tiles must split evenly");

/* Shared-memory row stride of a tile read one row per lane (K and V in phase A): odd, so
 * the 32 lanes reading column d of 32 rows hit 32 different banks. */
static __host__ __device__ int padded(int HS) {
    return HS | 1;
}

/* dst (rows, HS) with row stride ld = the rows row0 .. row0 + rows - 1 of src (row r at
 * src + r * stride); rows at or past T are zero, so padded rows never carry NaN or Inf */
static __device__ void load_tile(float* dst, int ld, const float* src, size_t stride, int row0,
                                 int T, int HS) {
    for (int e = threadIdx.x; e < BQ * HS; e += NTHREADS) {
        const int r = e / HS, d = e % HS;
        dst[r * ld + d] = row0 + r < T ? src[(size_t)(row0 + r) * stride + d] : 0.0f;
    }
}

/* phase A: dot[i] = a[row i] . b[row lane] for the warp's rows warp + NWARPS * i;
 * a (BQ, HS) row stride lda is read by broadcast, b (BK, HS) row stride ldb one row a lane */
static __device__ void row_dots(float dot[RPW], const float* a, int lda, const float* b, int ldb,
                                int HS) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int i = 0; i < RPW; i++)
        dot[i] = 0.0f;
    for (int d = 0; d < HS; d++) {
        const float bd = b[lane * ldb + d];
        for (int i = 0; i < RPW; i++)
            dot[i] = fmaf(a[(warp + NWARPS * i) * lda + d], bd, dot[i]);
    }
}

/* phase B: acc[i] += sum_{k < 32} A(m, k) * X[k][c] for the element e = threadIdx.x +
 * NTHREADS * i of the (32, HS) result, m = e / HS, c = e % HS; A(m, k) = a[m * am + k * ak]
 * (so A can be a tile or its transpose), X (32, HS) row stride ldx */
static __device__ void tile_product(float acc[EPT], const float* a, int am, int ak, const float* x,
                                    int ldx, int HS) {
    int a_row[EPT], x_col[EPT]; /* where element i's row of A and column of X start */
#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int e = threadIdx.x + NTHREADS * i;
        a_row[i] = e / HS * am;
        x_col[i] = e % HS;
    }
    for (int k = 0; k < BK; k++) {
#pragma unroll
        for (int i = 0; i < EPT; i++)
            if ((int)threadIdx.x + NTHREADS * i < BQ * HS)
                acc[i] = fmaf(a[a_row[i] + k * ak], x[k * ldx + x_col[i]], acc[i]);
    }
}

/* Shared memory of the forward: Q (BQ,HS), K (BK,ld), V (BK,ld), P (BQ,BK), alpha and l
 * (BQ). */
static size_t forward_smem(int HS) {
    return sizeof(float) * ((size_t)BQ * HS + 2 * (size_t)BK * padded(HS) + BQ * BK + 2 * BQ);
}

/* grid (query tiles, NH, B); the last query tiles, which see the most keys, start first */
__global__ void __launch_bounds__(NTHREADS)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k, const float* v,
                             int q_stride, int kv_stride, int T, int NH, int NKV, int HS,
                             float scale) {
    extern __shared__ float smem[];
    const int ld = padded(HS);
    float* sq = smem;             /* (BQ, HS) */
    float* sk = sq + BQ * HS;     /* (BK, ld) */
    float* sv = sk + BK * ld;     /* (BK, ld) */
    float* sp = sv + BK * ld;     /* (BQ, BK) probabilities of the current key tile */
    float* salpha = sp + BQ * BK; /* (BQ) rescale of the earlier partial output */
    float* sl = salpha + BQ;      /* (BQ) final softmax sums */

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV), lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const size_t C = (size_t)NH * HS;
    const float* qh = q + (size_t)b * T * q_stride + (size_t)h * HS; /* row t at + t*q_stride */
    const float* kh = k + (size_t)b * T * kv_stride + (size_t)kvh * HS;
    const float* vh = v + (size_t)b * T * kv_stride + (size_t)kvh * HS;

    load_tile(sq, HS, qh, q_stride, q0, T, HS);

    /* row statistics of the warp's rows, the same in every lane */
    float m[RPW], l[RPW];
    for (int i = 0; i < RPW; i++) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    float acc[EPT] = {0.0f};

    const int last_row = min(q0 + BQ, T) - 1;
    for (int k0 = 0; k0 <= last_row; k0 += BK) {
        __syncthreads(); /* the previous tile's phase B is done with sk, sv, sp */
        load_tile(sk, ld, kh, kv_stride, k0, T, HS);
        load_tile(sv, ld, vh, kv_stride, k0, T, HS);
        __syncthreads();

        float s[RPW];
        row_dots(s, sq, HS, sk, ld, HS);
        for (int i = 0; i < RPW; i++) {
            const int r = warp + NWARPS * i, t = q0 + r, t2 = k0 + lane;
            const bool valid = t < T && t2 <= t;
            const float si = valid ? s[i] * scale : -INFINITY;
            const float m_new = fmaxf(m[i], hn_warp_max(si));
            /* m_new is finite once a row has seen key 0, which is in the first tile */
            const float p = valid ? expf(si - m_new) : 0.0f;
            const float alpha = m[i] == -INFINITY ? 0.0f : expf(m[i] - m_new);
            l[i] = l[i] * alpha + hn_warp_sum(p);
            m[i] = m_new;
            sp[r * BK + lane] = p;
            if (lane == 0) salpha[r] = alpha;
        }
        __syncthreads();

#pragma unroll
        for (int i = 0; i < EPT; i++) {
            const int e = threadIdx.x + NTHREADS * i;
            if (e < BQ * HS) acc[i] *= salpha[e / HS];
        }
        tile_product(acc, sp, BK, 1, sv, ld, HS);
    }

    for (int i = 0; i < RPW; i++) {
        const int r = warp + NWARPS * i, t = q0 + r;
        if (lane == 0) {
            sl[r] = l[i];
            if (t < T) lse[((size_t)b * NH + h) * T + t] = m[i] + logf(l[i]);
        }
    }
    __syncthreads();
#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int e = threadIdx.x + NTHREADS * i, r = e / HS, t = q0 + r;
        if (e < BQ * HS && t < T)
            out[((size_t)b * T + t) * C + (size_t)h * HS + e % HS] = acc[i] / sl[r];
    }
}

/* D[b,h,t] = dout_t . out_t over head h's HS columns: the softmax backward's
 * sum_t2 p[t2] dp[t2], since out_t = sum_t2 p[t2] v_t2. One warp a row (b, t, h). */
__global__ void attention_rowdot_kernel(float* D, const float* dout, const float* out, int B, int T,
                                        int NH, int HS) {
    const size_t rows = (size_t)B * T * NH;
    const int lane = threadIdx.x % 32;
    for (size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; row < rows;
         row += (size_t)gridDim.x * blockDim.x / 32) {
        const float* dr = dout + row * HS; /* row = (b * T + t) * NH + h */
        const float* orow = out + row * HS;
        float sum = 0.0f;
        for (int d = lane; d < HS; d += 32)
            sum = fmaf(dr[d], orow[d], sum);
        sum = hn_warp_sum(sum);
        const size_t h = row % NH, bt = row / NH, b = bt / T, t = bt % T;
        if (lane == 0) D[(b * NH + h) * T + t] = sum;
    }
}

/* Shared memory of both backward kernels: Q, dO (BQ,HS); K, V (BK,ld); P, dS (BQ,BK);
 * lse, D (BQ). */
static size_t backward_smem(int HS) {
    return sizeof(float) *
           (2 * (size_t)BQ * HS + 2 * (size_t)BK * padded(HS) + 2 * BQ * BK + 2 * BQ);
}

/* Phase A of the backward for the tile (query rows q0.., keys k0..): with s the scaled score,
 *   p = exp(s - lse),  dp = dout_t . v_t2,  ds = p * (dp - D)
 * into sp and sds (BQ, BK), 0 where the key is after the row or past T. */
static __device__ void backward_scores(float* sp, float* sds, const float* sq, const float* sdo,
                                       const float* sk, const float* sv, const float* slse,
                                       const float* sD, int ld, int q0, int k0, int T, int HS,
                                       float scale) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float s[RPW], dp[RPW];
    row_dots(s, sq, HS, sk, ld, HS);
    row_dots(dp, sdo, HS, sv, ld, HS);
    for (int i = 0; i < RPW; i++) {
        const int r = warp + NWARPS * i, t = q0 + r, t2 = k0 + lane;
        const bool valid = t < T && t2 <= t;
        const float p = valid ? expf(s[i] * scale - slse[r]) : 0.0f;
        sp[r * BK + lane] = p;
        sds[r * BK + lane] = p * (dp[i] - sD[r]);
    }
}

/* lse and D of the query rows q0.. of one head into shared memory, 0 past T */
static __device__ void load_row_stats(float* slse, float* sD, const float* lse, const float* D,
                                      int q0, int T) {
    for (int r = threadIdx.x; r < BQ; r += NTHREADS) {
        slse[r] = q0 + r < T ? lse[q0 + r] : 0.0f;
        sD[r] = q0 + r < T ? D[q0 + r] : 0.0f;
    }
}

/* dk, dv of one key tile of one kv head: grid (key tiles, NKV, B). Sums over the group's
 * query heads in head order, each head's query tiles in order from the diagonal:
 *   dv_t2 = sum p dout_t,  dk_t2 = scale * sum ds q_t */
__global__ void __launch_bounds__(NTHREADS)
    attention_backward_dkdv_kernel(float* dk, float* dv, const float* dout, const float* lse,
                                   const float* D, const float* q, const float* k, const float* v,
                                   int q_stride, int kv_stride, int T, int NH, int NKV, int HS,
                                   float scale) {
    extern __shared__ float smem[];
    const int ld = padded(HS);
    float* sq = smem;            /* (BQ, HS) */
    float* sdo = sq + BQ * HS;   /* (BQ, HS) */
    float* sk = sdo + BQ * HS;   /* (BK, ld) */
    float* sv = sk + BK * ld;    /* (BK, ld) */
    float* sp = sv + BK * ld;    /* (BQ, BK) */
    float* sds = sp + BQ * BK;   /* (BQ, BK) */
    float* slse = sds + BQ * BK; /* (BQ) */
    float* sD = slse + BQ;       /* (BQ) */

    const int k0 = blockIdx.x * BK, kvh = blockIdx.y, b = blockIdx.z, G = NH / NKV;
    const size_t C = (size_t)NH * HS;
    const size_t kv_off = (size_t)b * T * kv_stride + (size_t)kvh * HS;
    load_tile(sk, ld, k + kv_off, kv_stride, k0, T, HS);
    load_tile(sv, ld, v + kv_off, kv_stride, k0, T, HS);

    float dk_acc[EPT] = {0.0f}, dv_acc[EPT] = {0.0f}; /* element e = key e / HS, dim e % HS */
    for (int h = kvh * G; h < (kvh + 1) * G; h++) {
        const float* qh = q + (size_t)b * T * q_stride + (size_t)h * HS;
        const float* doh = dout + (size_t)b * T * C + (size_t)h * HS;
        const size_t stat_off = ((size_t)b * NH + h) * T;
        /* query rows before k0 see none of these keys */
        for (int q0 = k0 / BQ * BQ; q0 < T; q0 += BQ) {
            __syncthreads(); /* the previous tile's phase B is done with sq, sdo, sp, sds */
            load_tile(sq, HS, qh, q_stride, q0, T, HS);
            load_tile(sdo, HS, doh, C, q0, T, HS);
            load_row_stats(slse, sD, lse + stat_off, D + stat_off, q0, T);
            __syncthreads();
            backward_scores(sp, sds, sq, sdo, sk, sv, slse, sD, ld, q0, k0, T, HS, scale);
            __syncthreads();
            tile_product(dv_acc, sp, 1, BK, sdo, HS, HS); /* P^T dO */
            tile_product(dk_acc, sds, 1, BK, sq, HS, HS); /* dS^T Q */
        }
    }

#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int e = threadIdx.x + NTHREADS * i, t2 = k0 + e / HS;
        if (e < BK * HS && t2 < T) {
            const size_t o = kv_off + (size_t)t2 * kv_stride + e % HS;
            dk[o] = dk_acc[i] * scale;
            dv[o] = dv_acc[i];
        }
    }
}

/* dq of one query tile of one head: grid (query tiles, NH, B), key tiles in order up to
 * the diagonal: dq_t = scale * sum ds k_t2 */
__global__ void __launch_bounds__(NTHREADS)
    attention_backward_dq_kernel(float* dq, const float* dout, const float* lse, const float* D,
                                 const float* q, const float* k, const float* v, int q_stride,
                                 int kv_stride, int T, int NH, int NKV, int HS, float scale) {
    extern __shared__ float smem[];
    const int ld = padded(HS);
    float* sq = smem;            /* (BQ, HS) */
    float* sdo = sq + BQ * HS;   /* (BQ, HS) */
    float* sk = sdo + BQ * HS;   /* (BK, ld) */
    float* sv = sk + BK * ld;    /* (BK, ld) */
    float* sp = sv + BK * ld;    /* (BQ, BK) */
    float* sds = sp + BQ * BK;   /* (BQ, BK) */
    float* slse = sds + BQ * BK; /* (BQ) */
    float* sD = slse + BQ;       /* (BQ) */

    const int q0 = (gridDim.x - 1 - blockIdx.x) * BQ, h = blockIdx.y, b = blockIdx.z;
    const int kvh = h / (NH / NKV);
    const size_t C = (size_t)NH * HS;
    const size_t q_off = (size_t)b * T * q_stride + (size_t)h * HS;
    const size_t kv_off = (size_t)b * T * kv_stride + (size_t)kvh * HS;
    const size_t stat_off = ((size_t)b * NH + h) * T;
    load_tile(sq, HS, q + q_off, q_stride, q0, T, HS);
    load_tile(sdo, HS, dout + (size_t)b * T * C + (size_t)h * HS, C, q0, T, HS);
    load_row_stats(slse, sD, lse + stat_off, D + stat_off, q0, T);

    float dq_acc[EPT] = {0.0f}; /* element e = row e / HS, dim e % HS */
    const int last_row = min(q0 + BQ, T) - 1;
    for (int k0 = 0; k0 <= last_row; k0 += BK) {
        __syncthreads(); /* the previous tile's phase B is done with sk, sds */
        load_tile(sk, ld, k + kv_off, kv_stride, k0, T, HS);
        load_tile(sv, ld, v + kv_off, kv_stride, k0, T, HS);
        __syncthreads();
        backward_scores(sp, sds, sq, sdo, sk, sv, slse, sD, ld, q0, k0, T, HS, scale);
        __syncthreads();
        tile_product(dq_acc, sds, BK, 1, sk, ld, HS); /* dS K */
    }

#pragma unroll
    for (int i = 0; i < EPT; i++) {
        const int e = threadIdx.x + NTHREADS * i, t = q0 + e / HS;
        if (e < BQ * HS && t < T) dq[q_off + (size_t)t * q_stride + e % HS] = dq_acc[i] * scale;
    }
}

/* the checks both directions share; HN_OK or HN_ERR with the reason */
static int check_sizes(const char* fn, int q_stride, int kv_stride, int B, int T, int NH, int NKV,
                       int HS) {
    if (B < 1 || T < 1 || NH < 1 || NKV < 1 || HS < 1)
        return hn_error("%s: sizes must be positive (B %d, T %d, NH %d, NKV %d, HS %d)", fn, B, T,
                        NH, NKV, HS);
    if (NH % NKV != 0) return hn_error("%s: NH %d is not a multiple of NKV %d", fn, NH, NKV);
    if (HS > HS_MAX)
        return hn_error("%s: head size %d is over the %d this kernel supports", fn, HS, HS_MAX);
    if ((long long)q_stride < (long long)NH * HS || (long long)kv_stride < (long long)NKV * HS)
        return hn_error("%s: row strides %d, %d are shorter than the heads (%d, %d floats)", fn,
                        q_stride, kv_stride, NH * HS, NKV * HS);
    if (B > 65535 || NH > 65535)
        return hn_error("%s: B %d or NH %d is over the grid limit 65535", fn, B, NH);
    return HN_OK;
}

/* lets `kernel` use `bytes` of dynamic shared memory; above 48 KiB that must be asked for */
static int allow_smem(const void* kernel, size_t bytes) {
    HN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    return HN_OK;
}

extern "C" int hn_cuda_attention_forward(float* out, float* lse, const float* q, const float* k,
                                         const float* v, int q_stride, int kv_stride, int B, int T,
                                         int NH, int NKV, int HS) {
    if (check_sizes("hn_cuda_attention_forward", q_stride, kv_stride, B, T, NH, NKV, HS) != HN_OK)
        return HN_ERR;
    const size_t smem = forward_smem(HS);
    if (allow_smem((const void*)attention_forward_kernel, smem) != HN_OK) return HN_ERR;
    const dim3 grid((T + BQ - 1) / BQ, NH, B);
    attention_forward_kernel<<<grid, NTHREADS, smem, hn_cuda_stream()>>>(
        out, lse, q, k, v, q_stride, kv_stride, T, NH, NKV, HS, 1.0f / sqrtf((float)HS));
    HN_CUDA_CHECK_LAUNCH();
    return HN_OK;
}

extern "C" int hn_cuda_attention_backward(float* dq, float* dk, float* dv, const float* dout,
                                          const float* out, const float* lse, const float* q,
                                          const float* k, const float* v, int q_stride,
                                          int kv_stride, int B, int T, int NH, int NKV, int HS) {
    if (check_sizes("hn_cuda_attention_backward", q_stride, kv_stride, B, T, NH, NKV, HS) != HN_OK)
        return HN_ERR;
    const size_t smem = backward_smem(HS);
    if (allow_smem((const void*)attention_backward_dkdv_kernel, smem) != HN_OK ||
        allow_smem((const void*)attention_backward_dq_kernel, smem) != HN_OK)
        return HN_ERR;
    cudaStream_t stream = hn_cuda_stream();
    const float scale = 1.0f / sqrtf((float)HS);
    const size_t rows = (size_t)B * NH * T;

    /* D (B, NH, T): stream-ordered scratch, freed behind the kernels that read it */
    float* D = NULL;
    HN_CUDA_CHECK(cudaMallocAsync((void**)&D, rows * sizeof(float), stream));
    attention_rowdot_kernel<<<hn_cuda_grid(rows * 32, NTHREADS), NTHREADS, 0, stream>>>(
        D, dout, out, B, T, NH, HS);
    cudaError_t err = cudaGetLastError();
    if (err == cudaSuccess) {
        const dim3 grid_kv((T + BK - 1) / BK, NKV, B);
        attention_backward_dkdv_kernel<<<grid_kv, NTHREADS, smem, stream>>>(
            dk, dv, dout, lse, D, q, k, v, q_stride, kv_stride, T, NH, NKV, HS, scale);
        err = cudaGetLastError();
    }
    if (err == cudaSuccess) {
        const dim3 grid_q((T + BQ - 1) / BQ, NH, B);
        attention_backward_dq_kernel<<<grid_q, NTHREADS, smem, stream>>>(
            dq, dout, lse, D, q, k, v, q_stride, kv_stride, T, NH, NKV, HS, scale);
        err = cudaGetLastError();
    }
    const cudaError_t free_err = cudaFreeAsync(D, stream);
    HN_CUDA_CHECK(err);
    HN_CUDA_CHECK(free_err);
    return HN_OK;
}
