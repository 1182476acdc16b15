/*
 * Data parallel across processes: rank, world size and local rank from MPI, and the
 * collectives the trainer needs (sums of floats and doubles, reduce-scatter and all-gather
 * of float ranges, a broadcast). MPI starts only when a launcher started this process
 * (mpirun / mpiexec: OMPI_COMM_WORLD_SIZE or PMI_SIZE; Slurm's srun: PMIX_RANK or
 * SLURM_NTASKS with SLURM_PROCID); otherwise, and in a build without MPI, hone is one
 * process of a world of one and every collective is the identity. The local rank (the
 * process's index on its machine: OMPI_COMM_WORLD_LOCAL_RANK, MPI_LOCALRANKID or
 * SLURM_LOCALID) picks the GPU a rank uses.
 *
 * A rank that fails calls hn_dist_abort, which stops every rank (MPI_Abort) instead of
 * leaving the others waiting in a collective; a rank killed outright is noticed by the
 * launcher, which ends the job.
 */
#ifndef HONE_DIST_H
#define HONE_DIST_H

#include <stddef.h>

/* start MPI when launched by an MPI launcher; HN_ERR if that fails */
int hn_dist_init(int* argc, char*** argv);
void hn_dist_finalize(void);
int hn_dist_rank(void);
int hn_dist_world(void);
int hn_dist_local_rank(void);
/* 1 when this build can run several ranks (MPI found at build time) */
int hn_dist_available(void);

/* x[0..n) = the sum over ranks of x (in place), in bounded chunks */
int hn_dist_sum_floats(float* x, size_t n);
int hn_dist_sum_doubles(double* x, int n);
/* ZeRO: every rank holds x (n floats); rank r receives into out the sum over ranks of
 * x[lo_r, hi_r), the ranges given by hn_dist_shard */
int hn_dist_reduce_scatter(const float* x, float* out, size_t n);
/* every rank contributes x[lo_r, hi_r) (its own shard, in place in x) and receives all */
int hn_dist_all_gather(float* x, size_t n);
/* rank 0's part of x[0..n) (its shard) and everyone's gathered to rank 0 into x */
int hn_dist_gather_to_root(float* x, size_t n);
/* the shard [lo, hi) of n entries that rank r owns: contiguous ranges in rank order,
 * multiples of 16 floats except the last */
void hn_dist_shard(size_t n, int r, size_t* lo, size_t* hi);
/* rank 0's bytes to every rank */
int hn_dist_broadcast(void* x, size_t bytes);
/* wait for every rank */
int hn_dist_barrier(void);
/* GPUs (a build with CUDA and NCCL): an NCCL communicator over the ranks, rank 0's unique
 * id broadcast through MPI (a world of one needs no MPI), on the device the CUDA backend
 * uses (hn_cuda_init(hn_dist_local_rank()) first). HN_ERR without NCCL. */
int hn_dist_nccl_init(void);
/* dev[0..n) (device floats) = their sum over ranks, in place on the backend's stream; returns
 * once the sum is complete */
int hn_dist_nccl_sum(float* dev, size_t n);
void hn_dist_nccl_free(void);

/* print "hone: error: rank R: MSG" and stop every rank with exit status 1 (world > 1);
 * returns only in a world of one */
void hn_dist_abort(const char* msg);

#endif
