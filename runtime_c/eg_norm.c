/* eg_norm.c — batch normalization with frozen statistics, forward and backward side by side.
 *
 * Dimension legend
 *   N    batch;  C channels;  HW spatial elements per channel (H*W, 1 after a Linear)
 *   element (n, c, s) of x / y / dx / dy is at (n*C + c)*HW + s
 *
 * The statistics are inputs (running mean/var, as in inference and in on-device fine-tuning
 * of a frozen-statistics BN), so the backward has no batch-statistics terms.
 * inv_std[c] = 1 / sqrt(var[c] + eps) is computed once per channel.
 */
#include <stddef.h>

#include "eg_math.h"
#include "eg_norm.h"

void batchnorm_f32_fw(float *restrict y, const float *restrict x, const float *restrict scale,
                      const float *restrict bias, const float *restrict mean,
                      const float *restrict var, float eps, int N, int C, int HW)
{
    for (int c = 0; c < C; c++) {
        const float k = scale[c] / eg_sqrtf(var[c] + eps);
        const float mu = mean[c], b = bias[c];
        for (int n = 0; n < N; n++) {
            const ptrdiff_t o = ((ptrdiff_t)n * C + c) * HW;
            for (int s = 0; s < HW; s++)
                y[o + s] = (x[o + s] - mu) * k + b;
        }
    }
}

void batchnorm_f32_bw_input(float *restrict dx, const float *restrict dy,
                            const float *restrict scale, const float *restrict var, float eps,
                            int N, int C, int HW)
{
    /* forward: y = (x - mean) * k + bias, k = scale * inv_std; dL/dx = dy * k */
    for (int c = 0; c < C; c++) {
        const float k = scale[c] / eg_sqrtf(var[c] + eps);
        for (int n = 0; n < N; n++) {
            const ptrdiff_t o = ((ptrdiff_t)n * C + c) * HW;
            for (int s = 0; s < HW; s++)
                dx[o + s] = dy[o + s] * k;
        }
    }
}

void batchnorm_f32_bw_params(float *restrict dscale, float *restrict dbias,
                             const float *restrict dy, const float *restrict x,
                             const float *restrict mean, const float *restrict var, float eps,
                             int N, int C, int HW)
{
    /* forward: y = scale * xhat + bias, xhat = (x - mean) * inv_std;
     * dL/dscale = sum_{n,s} dy * xhat = inv_std * sum dy * (x - mean);  dL/dbias = sum dy */
    for (int c = 0; c < C; c++) {
        const float inv_std = 1.0f / eg_sqrtf(var[c] + eps);
        const float mu = mean[c];
        float sum_dy = 0.0f, sum_dy_xc = 0.0f;
        for (int n = 0; n < N; n++) {
            const ptrdiff_t o = ((ptrdiff_t)n * C + c) * HW;
            for (int s = 0; s < HW; s++) {
                sum_dy += dy[o + s];
                sum_dy_xc += dy[o + s] * (x[o + s] - mu);
            }
        }
        if (dscale)
            dscale[c] = sum_dy_xc * inv_std;
        if (dbias)
            dbias[c] = sum_dy;
    }
}
