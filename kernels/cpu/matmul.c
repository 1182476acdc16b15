/*
 * Linear layers on OpenBLAS: out = inp @ weight^T + bias, the PyTorch nn.Linear layout.
 * Shapes: inp, dinp (N,C); weight, dweight (OC,C); bias, dbias (OC); out, dout (N,OC).
 */
#include "kernels/ops.h"
#include "kernels/cpu/internal.h"

#include <cblas.h>

void hn_matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int N,
                       int C, int OC) {
    float beta = 0.0f;
    if (bias) {
        /* start from the bias and let the GEMM add to it: no second pass over out */
#pragma omp parallel for schedule(static)
        for (int i = 0; i < N; i++)
            for (int o = 0; o < OC; o++)
                out[(size_t)i * OC + o] = bias[o];
        beta = 1.0f;
    }
    if (N == 1) {
        /* one row (decoding): a matrix-vector product streams the weights once, where a
         * GEMM of one row runs about 3x slower in OpenBLAS */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, OC, C, 1.0f, weight, C, inp, 1, beta, out, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, beta,
                out, OC);
}

void hn_matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout,
                        const float* inp, const float* weight, int N, int C, int OC) {
    const float broken = hn_cpu_broken_op == HN_OP_MATMUL ? 1.02f : 1.0f;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
                    0.0f, dinp, C);
    if (dweight)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, broken, dout, OC, inp, C,
                    1.0f, dweight, C);
    if (dbias) {
        /* column sums, split by columns so each is summed over rows in row order */
        const int chunk = 128;
        const int nchunks = (OC + chunk - 1) / chunk;
#pragma omp parallel for schedule(static)
        for (int k = 0; k < nchunks; k++) {
            const int o0 = k * chunk, w = o0 + chunk < OC ? chunk : OC - o0;
            float* db = dbias + o0;
            for (int i = 0; i < N; i++) {
                const float* d = dout + (size_t)i * OC + o0;
                for (int j = 0; j < w; j++)
                    db[j] += d[j];
            }
        }
    }
}

void hn_gemm(int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
             const float* B, int ldb, float beta, float* C, int ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M,
                N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
