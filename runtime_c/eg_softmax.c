/* eg_softmax.c — softmax forward/backward and the losses that end a training step.
 *
 * Dimension legend
 *   outer   product of the dims before the softmax axis
 *   n       length of the softmax axis (classes for the losses)
 *   inner   product of the dims after it; element (o, i, j) is at o*n*inner + i*inner + j
 *
 * Softmax subtracts the maximum first, so exp never overflows and the largest term is 1.
 */
#include <stddef.h>

#include "eg_math.h"
#include "eg_softmax.h"

void softmax_f32_fw(float *restrict y, const float *restrict x, int outer, int n, int inner)
{
    for (int o = 0; o < outer; o++) {
        for (int j = 0; j < inner; j++) {
            const ptrdiff_t base = (ptrdiff_t)o * n * inner + j; /* element (o, 0, j) */
            const float *xs = x + base;
            float *ys = y + base;
            float mx = xs[0];
            for (int i = 1; i < n; i++)
                mx = xs[(ptrdiff_t)i * inner] > mx ? xs[(ptrdiff_t)i * inner] : mx;
            float sum = 0.0f;
            for (int i = 0; i < n; i++) {
                const float e = eg_expf(xs[(ptrdiff_t)i * inner] - mx);
                ys[(ptrdiff_t)i * inner] = e;
                sum += e;
            }
            for (int i = 0; i < n; i++)
                ys[(ptrdiff_t)i * inner] /= sum;
        }
    }
}

void softmax_f32_bw(float *restrict dx, const float *restrict dy, const float *restrict y,
                    int outer, int n, int inner)
{
    /* forward: y_i = e^{x_i} / sum_k e^{x_k}; Jacobian dy_i/dx_k = y_i (delta_ik - y_k), so
     * dL/dx_k = y_k * (dy_k - sum_i dy_i y_i). */
    for (int o = 0; o < outer; o++) {
        for (int j = 0; j < inner; j++) {
            const ptrdiff_t base = (ptrdiff_t)o * n * inner + j;
            float dot = 0.0f;
            for (int i = 0; i < n; i++) {
                const ptrdiff_t k = base + (ptrdiff_t)i * inner;
                dot += dy[k] * y[k];
            }
            for (int i = 0; i < n; i++) {
                const ptrdiff_t k = base + (ptrdiff_t)i * inner;
                dx[k] = y[k] * (dy[k] - dot);
            }
        }
    }
}

void softmax_xent_f32(float *restrict loss, float *restrict dlogits, const float *restrict logits,
                      int label, int n)
{
    /* forward: loss = log(sum_k e^{z_k}) - z_label = lse(z) - z_label, with
     * lse(z) = max + log(sum_k e^{z_k - max});
     * backward: dloss/dz_k = softmax(z)_k - [k == label]. */
    float mx = logits[0];
    for (int k = 1; k < n; k++)
        mx = logits[k] > mx ? logits[k] : mx;
    float sum = 0.0f;
    for (int k = 0; k < n; k++)
        sum += eg_expf(logits[k] - mx);
    const float log_sum = eg_logf(sum);
    loss[0] = (mx - logits[label]) + log_sum;
    if (dlogits) {
        for (int k = 0; k < n; k++)
            dlogits[k] = eg_expf(logits[k] - mx) / sum;
        dlogits[label] -= 1.0f;
    }
}

void mse_f32(float *restrict loss, float *restrict dy, const float *restrict y,
             const float *restrict target, int n)
{
    /* forward: loss = (1/n) sum (y - t)^2; backward: dloss/dy = 2 (y - t) / n */
    float acc = 0.0f;
    for (int i = 0; i < n; i++) {
        const float d = y[i] - target[i];
        acc += d * d;
    }
    loss[0] = acc / (float)n;
    if (dy) {
        const float k = 2.0f / (float)n;
        for (int i = 0; i < n; i++)
            dy[i] = k * (y[i] - target[i]);
    }
}
