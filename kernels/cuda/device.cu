/*
 * Device discovery for the CUDA backend: how many GPUs this process can use. A machine
 * without a driver or a GPU answers 0 rather than failing, so `train.device: auto` can
 * fall back to the CPU.
 */
#include <cuda_runtime.h>

#include "kernels/cuda/cuda.h"

extern "C" int hn_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no driver" error */
        return 0;
    }
    return n;
}
