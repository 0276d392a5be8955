/* eg_gemm_tiled.h — register-blocked fp32 GEMM: same contract as gemm_f32 (eg_gemm.h), plus the
 * strided GEMM engine the tiled convolutions (eg_conv_tiled.c) are built on.
 *
 * Portable C99 + GCC vector extensions (gcc and clang, any ISA); no malloc; at most 16 KiB of
 * stack (one packed panel of b; gemm_f32_tiled_nt: 32 KiB of partial sums). Sums in a different order from the reference (k blocked,
 * fused multiply-adds where the ISA has them): results agree to fp32 rounding of the sums.
 */
#ifndef EG_GEMM_TILED_H
#define EG_GEMM_TILED_H

/* Same arguments and result as gemm_f32 in eg_gemm.h. */
void gemm_f32_tiled(float *restrict y, const float *restrict a, const float *restrict b,
                    const float *restrict c, int batch, int M, int N, int K, int transA,
                    int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

/* The engine: for m < M, n < N
 *   out[m*ldc + n] (+)= bias[m] + sum_{k<K} a[m*a_rs + k*a_cs] * b[k*b_rs + n*b_cs]
 * "+=" when accumulate != 0 (bias is then ignored), "=" otherwise; bias may be NULL (0).
 * Any element strides for a and b (a transposed operand is just swapped strides);
 * out must not overlap a or b. */
void gemm_f32_tiled_strided(float *restrict out, const float *restrict a, const float *restrict b,
                            const float *restrict bias, int M, int N, int K, int ldc, int a_rs,
                            int a_cs, int b_rs, int b_cs, int accumulate);

/* The engine with out element (m, n) at out[m*ldc + n*ldn] (ldn == 1: gemm_f32_tiled_strided),
 * e.g. a transposed result written in place. */
void gemm_f32_tiled_strided_ld(float *restrict out, const float *restrict a,
                               const float *restrict b, const float *restrict bias, int M, int N,
                               int K, int ldc, int ldn, int a_rs, int a_cs, int b_rs, int b_cs,
                               int accumulate);

/* out[m*ldc + n] += alpha * sum_{k<K} a[m*a_rs + k*a_cs] * b[k*b_rs + n*b_cs]: the engine always
 * accumulating a scaled product (no bias), added to out per k block of 128 (in parts); with
 * alpha = -lr an SGD step on out (a weight gradient fused with its update, conv2d_f32_bw_weight_sgd_tiled). */
void gemm_f32_tiled_strided_axpy(float *restrict out, const float *restrict a, const float *restrict b,
                                 int M, int N, int K, int ldc, int a_rs, int a_cs, int b_rs, int b_cs,
                                 float alpha);

/* The engine with row k of b at b + (k / T)*b_rs + tap[k % T] (T >= 1 entries in tap): an
 * implicit-GEMM convolution reads its patch rows straight from a padded image (row k = channel
 * k / T, tap k % T). T == 1 with tap[0] == 0 is gemm_f32_tiled_strided_ld. */
void gemm_f32_tiled_taps(float *restrict out, const float *restrict a, const float *restrict b,
                         const float *restrict bias, int M, int N, int K, int ldc, int ldn,
                         int a_rs, int a_cs, int b_rs, int b_cs, int T, const int *restrict tap,
                         int accumulate);

/* out[m*ldc + n*ldn] (+)= alpha * sum_k a[(m / T)*a_rs + tap[m % T] + k] * b[k*b_rs + n]: the
 * engine with the rows of a at tap offsets (unit column stride), b contiguous along n, no bias:
 * a weight gradient's patch rows read straight from a padded image (row m = channel m / T, tap
 * m % T; conv2d_f32_bw_weight_implicit). alpha = -lr with accumulate != 0 is an SGD step on out
 * (applied per k block of 4096: the sum is added to out in parts). */
void gemm_f32_tiled_ataps(float *restrict out, const float *restrict a, const float *restrict b,
                          int M, int N, int K, int ldc, int ldn, int a_rs, int T,
                          const int *restrict tap, int b_rs, float alpha, int accumulate);

/* out[m*ldc + n*ldn] (+)= sum_{k<K} a[m*a_rs + k] * b[n*b_rs + k]: both operands contiguous along k
 * (a . b^T; a pointwise convolution's weight gradient over its pixels), dot products in vector
 * accumulators along k. "+=" when accumulate != 0. */
void gemm_f32_tiled_nt(float *restrict out, const float *restrict a, const float *restrict b, int M,
                       int N, int K, int ldc, int ldn, int a_rs, int b_rs, int accumulate);

#endif /* EG_GEMM_TILED_H */
