/* eg_optim.c — optimizer updates (SGD, SGD with momentum, Adam), PyTorch's formulas.
 *
 * Dimension legend
 *   rows      rows of the updated block
 *   inner     contiguous elements per row
 *   w_stride  elements between row starts in w (>= inner)
 *   element (r, i) is w[r*w_stride + i] and g/m/v[r*inner + i]
 */
#include <stddef.h>

#include "eg_math.h"
#include "eg_optim.h"

void sgd_f32(float *restrict w, const float *restrict g, int rows, int inner, int w_stride,
             float lr)
{
    for (int r = 0; r < rows; r++) {
        float *wr = w + (ptrdiff_t)r * w_stride;
        const float *gr = g + (ptrdiff_t)r * inner;
        for (int i = 0; i < inner; i++)
            wr[i] -= lr * gr[i];
    }
}

void momentum_f32(float *restrict w, float *restrict v, const float *restrict g, int rows,
                  int inner, int w_stride, float lr, float mu)
{
    for (int r = 0; r < rows; r++) {
        float *wr = w + (ptrdiff_t)r * w_stride;
        float *vr = v + (ptrdiff_t)r * inner;
        const float *gr = g + (ptrdiff_t)r * inner;
        for (int i = 0; i < inner; i++) {
            const float vi = mu * vr[i] + gr[i];
            vr[i] = vi;
            wr[i] -= lr * vi;
        }
    }
}

void adam_f32(float *restrict w, float *restrict m, float *restrict v, const float *restrict g,
              int rows, int inner, int w_stride, float lr, float beta1, float beta2, float eps,
              float bc1, float bc2)
{
    const float step = lr / bc1;
    const float inv_sqrt_bc2 = 1.0f / eg_sqrtf(bc2);
    for (int r = 0; r < rows; r++) {
        float *wr = w + (ptrdiff_t)r * w_stride;
        float *mr = m + (ptrdiff_t)r * inner;
        float *vr = v + (ptrdiff_t)r * inner;
        const float *gr = g + (ptrdiff_t)r * inner;
        for (int i = 0; i < inner; i++) {
            const float gi = gr[i];
            const float mi = beta1 * mr[i] + (1.0f - beta1) * gi;
            const float vi = beta2 * vr[i] + (1.0f - beta2) * gi * gi;
            mr[i] = mi;
            vr[i] = vi;
            wr[i] -= step * mi / (eg_sqrtf(vi) * inv_sqrt_bc2 + eps);
        }
    }
}
