/*
 * The CUDA backend's entry points visible to C code. Built only when CMake finds nvcc
 * (HONE_CUDA=AUTO/ON); HONE_HAVE_CUDA is defined for the rest of hone then.
 */
#ifndef HONE_CUDA_H
#define HONE_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

/* number of usable CUDA devices (0 when there is no driver or no GPU) */
int hn_cuda_device_count(void);

#ifdef __cplusplus
}
#endif

#endif
