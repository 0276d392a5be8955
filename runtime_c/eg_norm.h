/* eg_norm.h — inference-mode batch normalization (running statistics), fp32.
 * x, y, dx, dy are [N, C, HW]; scale, bias, mean, var, dscale, dbias are [C]. */
#ifndef EG_NORM_H
#define EG_NORM_H

/* y = (x - mean) * scale / sqrt(var + eps) + bias, per channel. */
void batchnorm_f32_fw(float *restrict y, const float *restrict x, const float *restrict scale,
                      const float *restrict bias, const float *restrict mean,
                      const float *restrict var, float eps, int N, int C, int HW);
/* dx = dy * scale / sqrt(var + eps). */
void batchnorm_f32_bw_input(float *restrict dx, const float *restrict dy,
                            const float *restrict scale, const float *restrict var, float eps,
                            int N, int C, int HW);
/* dscale = sum_{n,hw} dy * (x - mean) / sqrt(var + eps); dbias = sum_{n,hw} dy.
 * Either output may be NULL. */
void batchnorm_f32_bw_params(float *restrict dscale, float *restrict dbias,
                             const float *restrict dy, const float *restrict x,
                             const float *restrict mean, const float *restrict var, float eps,
                             int N, int C, int HW);

#endif /* EG_NORM_H */
