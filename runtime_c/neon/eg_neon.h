/* eg_neon.h — fp32 kernels for aarch64 (rpi, jetson), chosen at compile time by
 * compiler/passes/select_kernels.py in place of the _tiled kernels.
 *
 * Same arguments, results (up to fp32 summation order) and scratch sizes as the _tiled kernels
 * (eg_conv_tiled.h, eg_gemm_tiled.h); only the suffix differs. The GEMM core is an arm_neon.h
 * micro-kernel (8 x 12 register tile, fmla by element) and large GEMMs are split over
 * EG_NUM_THREADS threads (eg_threads.h) by output columns or rows: every output element is
 * summed in the same order whatever the split, so results are bit-identical to one thread.
 */
#ifndef EG_NEON_H
#define EG_NEON_H

#include "eg_f16_neon.h" /* the native fp16 conv/GEMM variants (--dtype fp16) */

/* Same contract as gemm_f32 (eg_gemm.h). */
void gemm_f32_neon(float *restrict y, const float *restrict a, const float *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

/* The engines, same contracts as gemm_f32_tiled_strided(_ld) (eg_gemm_tiled.h). */
void gemm_f32_neon_strided(float *restrict out, const float *restrict a, const float *restrict b,
                           const float *restrict bias, int M, int N, int K, int ldc, int a_rs,
                           int a_cs, int b_rs, int b_cs, int accumulate);
void gemm_f32_neon_strided_ld(float *restrict out, const float *restrict a,
                              const float *restrict b, const float *restrict bias, int M, int N,
                              int K, int ldc, int ldn, int a_rs, int a_cs, int b_rs, int b_cs,
                              int accumulate);

/* Same contracts (and scratch sizes) as the _tiled convolutions (eg_conv_tiled.h). */
void conv2d_f32_fw_neon(float *restrict y, const float *restrict x, const float *restrict w,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                        int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                        float *restrict scratch);
void conv2d_f32_bw_input_neon(float *restrict dx, const float *restrict dy,
                              const float *restrict w, int N, int C, int H, int W, int M, int OH,
                              int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                              int dil_w, int G, float *restrict scratch);
void conv2d_f32_bw_weight_neon(float *restrict dwt, const float *restrict dy,
                               const float *restrict x, int N, int C, int H, int W, int M, int OH,
                               int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                               int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                               float *restrict scratch);

#endif /* EG_NEON_H */
