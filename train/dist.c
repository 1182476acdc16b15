/* Ranks and collectives over MPI (or a world of one); see dist.h. */
#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#ifdef HONE_HAVE_MPI
#include <mpi.h>
#endif
#ifdef HONE_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include "kernels/cuda/ops_cuda.h"
static ncclComm_t g_nccl;
static int g_nccl_on = 0;
#endif

static int g_rank = 0, g_world = 1, g_local = 0, g_mpi = 0;

/* the largest message of one collective call: MPI counts are ints */
#define CHUNK ((size_t)1 << 24)

static int env_int(const char* name, int* out) {
    const char* v = getenv(name);
    if (!v || !*v) return 0;
    *out = atoi(v);
    return 1;
}

int hn_dist_available(void) {
#ifdef HONE_HAVE_MPI
    return 1;
#else
    return 0;
#endif
}

int hn_dist_init(int* argc, char*** argv) {
    int size = 0, procid = 0;
    int launched = env_int("OMPI_COMM_WORLD_SIZE", &size) || env_int("PMI_SIZE", &size) ||
                   getenv("PMIX_RANK") ||
                   (env_int("SLURM_NTASKS", &size) && env_int("SLURM_PROCID", &procid) && size > 1);
    if (!launched) return HN_OK;
#ifdef HONE_HAVE_MPI
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return hn_error("MPI_Init failed");
    g_mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_world);
    if (!env_int("OMPI_COMM_WORLD_LOCAL_RANK", &g_local) && !env_int("MPI_LOCALRANKID", &g_local) &&
        !env_int("SLURM_LOCALID", &g_local)) {
        /* ranks sharing this machine, from MPI itself */
        MPI_Comm node;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &node);
        MPI_Comm_rank(node, &g_local);
        MPI_Comm_free(&node);
    }
    return HN_OK;
#else
    (void)argc;
    (void)argv;
    if (size > 1)
        return hn_error("launched as one of %d ranks, but this hone was built without MPI "
                        "(install libopenmpi-dev and rebuild)",
                        size);
    return HN_OK;
#endif
}

void hn_dist_finalize(void) {
#ifdef HONE_HAVE_MPI
    if (g_mpi) MPI_Finalize();
#endif
    g_mpi = 0;
}

int hn_dist_rank(void) {
    return g_rank;
}
int hn_dist_world(void) {
    return g_world;
}
int hn_dist_local_rank(void) {
    return g_local;
}

void hn_dist_shard(size_t n, int r, size_t* lo, size_t* hi) {
    size_t per = (n + (size_t)g_world - 1) / (size_t)g_world;
    per = (per + 15) / 16 * 16;
    *lo = per * (size_t)r < n ? per * (size_t)r : n;
    *hi = *lo + per < n ? *lo + per : n;
}

int hn_dist_sum_floats(float* x, size_t n) {
#ifdef HONE_HAVE_MPI
    if (g_world > 1)
        for (size_t at = 0; at < n; at += CHUNK) {
            int k = (int)(n - at < CHUNK ? n - at : CHUNK);
            if (MPI_Allreduce(MPI_IN_PLACE, x + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
                MPI_SUCCESS)
                return hn_error("MPI_Allreduce failed");
        }
#else
    (void)x;
    (void)n;
#endif
    return HN_OK;
}

int hn_dist_sum_doubles(double* x, int n) {
#ifdef HONE_HAVE_MPI
    if (g_world > 1 &&
        MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return hn_error("MPI_Allreduce failed");
#else
    (void)x;
    (void)n;
#endif
    return HN_OK;
}

#ifdef HONE_HAVE_MPI
/* per-rank counts and displacements of one chunk [at, at + k) of the shards of n */
static void chunk_layout(size_t n, size_t at, size_t k, int* counts, int* displs) {
    for (int r = 0; r < g_world; r++) {
        size_t lo, hi;
        hn_dist_shard(n, r, &lo, &hi);
        size_t a = lo > at ? lo : at, b = hi < at + k ? hi : at + k;
        counts[r] = b > a ? (int)(b - a) : 0;
        displs[r] = b > a ? (int)(a - at) : 0;
    }
}
#endif

typedef enum { SHARD_REDUCE_SCATTER, SHARD_ALL_GATHER, SHARD_GATHER_TO_ROOT } ShardOp;

/* one of the three sharded collectives over x (n floats), in chunks of at most CHUNK so
 * MPI's int counts hold; out is this rank's shard (reduce-scatter only) */
static int sharded(ShardOp op, float* x, float* out, size_t n) {
    size_t lo, hi;
    hn_dist_shard(n, g_rank, &lo, &hi);
#ifdef HONE_HAVE_MPI
    if (g_world > 1) {
        int* counts = malloc((size_t)g_world * 2 * sizeof(int));
        if (!counts) return hn_error("out of memory");
        int *displs = counts + g_world, rc = HN_OK, ok = MPI_SUCCESS;
        for (size_t at = 0; rc == HN_OK && at < n; at += CHUNK) {
            size_t k = n - at < CHUNK ? n - at : CHUNK;
            chunk_layout(n, at, k, counts, displs);
            if (op == SHARD_REDUCE_SCATTER) {
                size_t mine = lo > at ? lo : at;
                ok = MPI_Reduce_scatter(x + at, out + (mine - lo), counts, MPI_FLOAT, MPI_SUM,
                                        MPI_COMM_WORLD);
            } else if (op == SHARD_ALL_GATHER) {
                ok = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x + at, counts, displs,
                                    MPI_FLOAT, MPI_COMM_WORLD);
            } else {
                void* send = g_rank == 0 ? MPI_IN_PLACE : (void*)(x + at + displs[g_rank]);
                ok = MPI_Gatherv(send, counts[g_rank], MPI_FLOAT, x + at, counts, displs, MPI_FLOAT,
                                 0, MPI_COMM_WORLD);
            }
            if (ok != MPI_SUCCESS) rc = hn_error("MPI collective (sharded op %d) failed", op);
        }
        free(counts);
        return rc;
    }
#endif
    if (op == SHARD_REDUCE_SCATTER) memcpy(out, x + lo, (hi - lo) * sizeof(float));
    return HN_OK;
}

int hn_dist_reduce_scatter(const float* x, float* out, size_t n) {
    return sharded(SHARD_REDUCE_SCATTER, (float*)x, out, n); /* x is only read */
}

int hn_dist_all_gather(float* x, size_t n) {
    return sharded(SHARD_ALL_GATHER, x, NULL, n);
}

int hn_dist_gather_to_root(float* x, size_t n) {
    return sharded(SHARD_GATHER_TO_ROOT, x, NULL, n);
}

int hn_dist_broadcast(void* x, size_t bytes) {
#ifdef HONE_HAVE_MPI
    if (g_world > 1)
        for (size_t at = 0; at < bytes; at += CHUNK) {
            int k = (int)(bytes - at < CHUNK ? bytes - at : CHUNK);
            if (MPI_Bcast((char*)x + at, k, MPI_BYTE, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
                return hn_error("MPI_Bcast failed");
        }
#else
    (void)x;
    (void)bytes;
#endif
    return HN_OK;
}

int hn_dist_barrier(void) {
#ifdef HONE_HAVE_MPI
    if (g_world > 1 && MPI_Barrier(MPI_COMM_WORLD) != MPI_SUCCESS)
        return hn_error("MPI_Barrier failed");
#endif
    return HN_OK;
}

int hn_dist_nccl_init(void) {
#ifdef HONE_HAVE_NCCL
    if (g_nccl_on) return HN_OK;
    ncclUniqueId id;
    if (g_rank == 0 && ncclGetUniqueId(&id) != ncclSuccess)
        return hn_error("ncclGetUniqueId failed");
    if (hn_dist_broadcast(&id, sizeof id) != HN_OK) return HN_ERR;
    ncclResult_t r = ncclCommInitRank(&g_nccl, g_world, id, g_rank);
    if (r != ncclSuccess) return hn_error("ncclCommInitRank failed: %s", ncclGetErrorString(r));
    g_nccl_on = 1;
    return HN_OK;
#else
    return hn_error("this hone was built without NCCL: several GPU ranks need it");
#endif
}

int hn_dist_nccl_sum(float* dev, size_t n) {
#ifdef HONE_HAVE_NCCL
    if (!g_nccl_on) return hn_error("internal: NCCL is not initialised");
    cudaStream_t stream = (cudaStream_t)hn_cuda_stream_handle();
    ncclResult_t r = ncclAllReduce(dev, dev, n, ncclFloat, ncclSum, g_nccl, stream);
    if (r != ncclSuccess) return hn_error("ncclAllReduce failed: %s", ncclGetErrorString(r));
    cudaError_t e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) return hn_error("ncclAllReduce: %s", cudaGetErrorString(e));
    return HN_OK;
#else
    (void)dev;
    (void)n;
    return hn_error("this hone was built without NCCL");
#endif
}

void hn_dist_nccl_free(void) {
#ifdef HONE_HAVE_NCCL
    if (g_nccl_on) ncclCommDestroy(g_nccl);
    g_nccl_on = 0;
#endif
}

void hn_dist_abort(const char* msg) {
    if (g_world <= 1) return;
    fprintf(stderr, "hone: error: rank %d: %s\n", g_rank, msg);
    fflush(stderr);
#ifdef HONE_HAVE_MPI
    MPI_Abort(MPI_COMM_WORLD, 1);
#endif
    exit(1);
}
