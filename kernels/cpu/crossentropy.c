/*
 * Fused softmax + cross-entropy over the vocabulary, writing the logits' gradient in place.
 * Shapes: logits (N,Vp) of which the first V columns are real; targets, losses (N).
 * Per row: one pass for the max, one computing e = exp(x - max) and its sum (stored in place
 * of the logits when the gradient is wanted), one scaling e into the gradient. A row of Vp
 * floats (200 KB for GPT-2) stays in L2 cache between the passes.
 */
#include "kernels/ops.h"
#include "kernels/cpu/fastmath.h"
#include "kernels/cpu/internal.h"

#include <math.h>
#include <string.h>

double hn_crossentropy_forward(float* logits, float* losses, const int* targets, int N, int V,
                               int Vp, float grad_scale) {
    const int grad = grad_scale != 0.0f;
    const float broken = hn_cpu_broken_op == HN_OP_CROSSENTROPY ? 1.02f : 1.0f;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float* x = logits + (size_t)i * Vp;
        const int target = targets[i];
        if (target == HN_IGNORE) {
            losses[i] = 0.0f;
            if (grad) memset(x, 0, (size_t)Vp * sizeof *x);
            continue;
        }
        const float maxv = hn_max(x, V);
        const float xt = x[target];
        /* a NaN logit is skipped by the max but makes the sum, hence the loss, NaN */
        float acc[HN_LANES] = {0};
        int v = 0;
        if (grad) {
            for (; v + HN_LANES <= V; v += HN_LANES)
                for (int j = 0; j < HN_LANES; j++) {
                    x[v + j] = hn_fast_expf(x[v + j] - maxv);
                    acc[j] += x[v + j];
                }
            for (int j = 0; v + j < V; j++) {
                x[v + j] = hn_fast_expf(x[v + j] - maxv);
                acc[j] += x[v + j];
            }
        } else {
            for (; v + HN_LANES <= V; v += HN_LANES)
                for (int j = 0; j < HN_LANES; j++)
                    acc[j] += hn_fast_expf(x[v + j] - maxv);
            for (int j = 0; v + j < V; j++)
                acc[j] += hn_fast_expf(x[v + j] - maxv);
        }
        const double sum = hn_lanes_sum(acc);
        losses[i] = (float)(log(sum) - ((double)xt - maxv));
        if (grad) {
            const float s = grad_scale / (float)sum;
            for (v = 0; v < V; v++)
                x[v] *= s;
            for (v = V; v < Vp; v++)
                x[v] = 0.0f;
            x[target] -= broken * grad_scale;
        }
    }
    /* in row order, so the total does not depend on how rows were split */
    double total = 0.0;
    for (int i = 0; i < N; i++)
        total += losses[i];
    return total;
}
