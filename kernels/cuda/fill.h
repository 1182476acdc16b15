/*
 * Zeroing device memory on the CUDA backend's stream, in call order with the ops of
 * kernels/cuda/ops_cuda.h (the model's backward clears its residual-stream gradient and
 * the gradient buffer with it). Built only when HONE_HAVE_CUDA.
 */
#ifndef HONE_CUDA_FILL_H
#define HONE_CUDA_FILL_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* x[0 .. n) = 0 (n floats), queued on hn_cuda_stream(); HN_OK or HN_ERR */
int hn_cuda_zero(float* x, size_t n);

#ifdef __cplusplus
}
#endif

#endif
