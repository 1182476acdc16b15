/*
 * The model of train/model.h on the CUDA backend, fp32: the same parameter table, the same
 * ops in the same order (kernels/cuda/ops_cuda.h), on device buffers. It is not a second
 * model definition: it is created from a CPU HnModel, borrows that model's configuration
 * and parameter table (names, offsets, trainable and decay flags), and keeps on the device
 * one buffer each for parameters, gradients and the AdamW moments, laid out exactly like
 * the table, so moving the state between host and device is one copy per buffer.
 *
 * The one difference from the CPU model is attention, which keeps the log-sum-exp of each
 * score row, lse (B, NH, T), instead of the (B, NH, T, T) probabilities, and whose backward
 * reads its own output atty (kept, as on the CPU).
 *
 * Shapes as in model.h. Every function returns HN_OK, or HN_ERR with an hn_error() line.
 * The CUDA backend must be initialised (hn_cuda_init) first. Built only when HONE_HAVE_CUDA.
 */
#ifndef HONE_MODEL_CUDA_H
#define HONE_MODEL_CUDA_H

#ifdef HONE_HAVE_CUDA

#include "train/model.h"
#include "train/optim.h"

typedef struct {
    HnModelConfig cfg;         /* normalised, copied from the CPU model */
    const HnParamTable* table; /* the CPU model's table: rows, offsets, flags (borrowed) */
    float* params;             /* device, laid out like table */
    float* grads;              /* device, mirror of params */
    float* m;                  /* device, AdamW first moments */
    float* v;                  /* device, AdamW second moments */
    HnTensors w;               /* into params */
    HnTensors g;               /* into grads */

    int maxB, maxT;
    int* tokens;  /* device (maxB, maxT) */
    int* targets; /* device (maxB, maxT) */
    float* act_mem;
    HnActivations act; /* model.c's layout on the device; each layer's att holds the
                        * attention log-sum-exp (B, NH, T) instead of the probabilities */

    int B, T; /* of the last forward */
} HnCudaModel;

/* allocate the device model of `host` (created by hn_model_create) for micro-batches of up
 * to maxB x maxT positions; parameters and moments are zero until hn_cuda_model_load.
 * `host` must outlive it: its table is read at every optimizer step. */
int hn_cuda_model_create(HnCudaModel* g, const HnModel* host, int maxB, int maxT);
void hn_cuda_model_free(HnCudaModel* g);
/* copy parameters (and, when m and v are not NULL, the AdamW moments) from host buffers
 * laid out like the table to the device; gradients are zeroed */
int hn_cuda_model_load(HnCudaModel* g, const float* params, const float* m, const float* v);
/* copy parameters (and moments when m, v are not NULL) from the device to host buffers */
int hn_cuda_model_store(const HnCudaModel* g, float* params, float* m, float* v);

/* hn_model_forward on the device: tokens and targets are host arrays (B, T); *loss_sum
 * gets the sum of the counted losses (0 without targets) */
int hn_cuda_model_forward(HnCudaModel* g, const int* tokens, const int* targets, int B, int T,
                          float grad_scale, double* loss_sum);
/* hn_model_backward on the device: accumulate (+=) into g->grads */
int hn_cuda_model_backward(HnCudaModel* g);
int hn_cuda_model_zero_grad(HnCudaModel* g);
/* hn_optim_grad_norm of the device gradients */
int hn_cuda_model_grad_norm(HnCudaModel* g, double* norm);
/* hn_optim_step on the device: o supplies the configuration and the step count (o->t is
 * advanced; o->m, o->v are not touched: the moments live in g->m, g->v); *lr gets the
 * learning rate used */
int hn_cuda_model_step(HnCudaModel* g, HnOptimizer* o, double grad_norm, float* lr);

#endif /* HONE_HAVE_CUDA */

#endif
