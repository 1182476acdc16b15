/*
 * Fused softmax + cross-entropy on the GPU, as kernels/cpu/crossentropy.c.
 * Shapes: logits (N,Vp) of which the first V columns are real; targets, losses (N).
 *
 * One block per row: a block max, then e = exp(x - max) (kept in place of the logits when
 * the gradient is wanted) and its block sum, then the loss and the scaled gradient. Block
 * reductions have a fixed order, and the losses are summed on the device by one block in
 * a fixed order (in double), so the loss repeats bit for bit from run to run.
 * A target outside [0, V) that is not HN_IGNORE gives a NaN loss (and a zero gradient
 * row) instead of a read out of bounds: the NaN reaches the host's loss sum.
 */
#include "kernels/cuda/internal.cuh"
#include "kernels/cuda/ops_cuda.h"
/* for HN_IGNORE; ops.h has no extern "C" guard of its own */
extern "C" {
#include "kernels/ops.h"
}

#define CE_BLOCK 512   /* threads per row: ~100 logits each at GPT-2's vocabulary */
#define SUM_BLOCK 1024 /* threads of the single block that adds the losses */

__device__ static double g_loss_sum;

__global__ static void crossentropy_kernel(float* logits, float* losses, const int* targets, int V,
                                           int Vp, float grad_scale) {
    const int row = blockIdx.x, tid = threadIdx.x;
    float* x = logits + (size_t)row * Vp;
    const int target = targets[row];
    const bool grad = grad_scale != 0.0f;
    if (target < 0 || target >= V) { /* the whole block takes this branch: no barrier inside */
        if (grad)
            for (int v = tid; v < Vp; v += blockDim.x)
                x[v] = 0.0f;
        if (tid == 0) losses[row] = target == HN_IGNORE ? 0.0f : NAN;
        return;
    }
    /* read before the barriers below: after them another thread may overwrite x[target] */
    const float xt = x[target];
    /* fmaxf skips a NaN logit, which still makes the sum, hence the loss, NaN */
    float m = -INFINITY;
    for (int v = tid; v < V; v += blockDim.x)
        m = fmaxf(m, x[v]);
    m = hn_block_max(m);
    float s = 0.0f;
    for (int v = tid; v < V; v += blockDim.x) {
        const float e = expf(x[v] - m);
        if (grad) x[v] = e;
        s += e;
    }
    s = hn_block_sum(s);
    if (tid == 0) losses[row] = (float)(log((double)s) - ((double)xt - m));
    if (!grad) return;
    /* each thread rescales the same columns it wrote above, so no barrier is needed */
    const float scale = grad_scale / s;
    for (int v = tid; v < Vp; v += blockDim.x) {
        float d = 0.0f; /* padded columns never get probability */
        if (v < V) d = x[v] * scale - (v == target ? grad_scale : 0.0f);
        x[v] = d;
    }
}

/* g_loss_sum = sum of losses[0..N), by one block in a fixed order (ignored rows hold 0) */
__global__ static void sum_losses_kernel(const float* losses, int N) {
    double acc = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x)
        acc += losses[i];
    acc = hn_block_sum_d(acc);
    if (threadIdx.x == 0) g_loss_sum = acc;
}

/* loss_sum may be NULL: the losses are then left on the device and nothing waits */
extern "C" int hn_cuda_crossentropy_forward(float* logits, float* losses, const int* targets, int N,
                                            int V, int Vp, float grad_scale, double* loss_sum) {
    if (N < 0 || V < 1 || Vp < V)
        return hn_error("hn_cuda_crossentropy_forward: bad sizes N=%d V=%d Vp=%d", N, V, Vp);
    if (loss_sum) *loss_sum = 0.0;
    if (!N) return HN_OK;
    cudaStream_t st = hn_cuda_stream();
    crossentropy_kernel<<<N, CE_BLOCK, 0, st>>>(logits, losses, targets, V, Vp, grad_scale);
    HN_CUDA_CHECK_LAUNCH();
    if (!loss_sum) return HN_OK;
    sum_losses_kernel<<<1, SUM_BLOCK, 0, st>>>(losses, N);
    HN_CUDA_CHECK_LAUNCH();
    HN_CUDA_CHECK(cudaMemcpyFromSymbolAsync(loss_sum, g_loss_sum, sizeof(double), 0,
                                            cudaMemcpyDeviceToHost, st));
    HN_CUDA_CHECK(cudaStreamSynchronize(st));
    return HN_OK;
}
