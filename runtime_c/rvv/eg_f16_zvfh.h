/* eg_f16_zvfh.h — Zvfh vector variants of the binary16 casts (contract: eg_f16.h; bit-identical
 * to the portable ones except that a NaN becomes the canonical NaN) and of the native fp16
 * convolutions and GEMM (contract: eg_conv_f16.h, eg_gemm_f16.h; eg_conv_f16_zvfh.c: vle16 +
 * widening vfwmacc into fp32 accumulators, no shape constraints; sums in another order than the
 * portable kernels, so an fp16 result may differ from theirs by one rounding), chosen for mcu
 * builds whose extensions include zve32f and zvfh. */
#ifndef EG_F16_ZVFH_H
#define EG_F16_ZVFH_H

#include <stdint.h>

#include "eg_f16.h"

void cast_f32_f16_zvfh(uint16_t *restrict y, const float *restrict x, int n);
void cast_f16_f32_zvfh(float *restrict y, const uint16_t *restrict x, int n);

void conv2d_f16_fw_zvfh(eg_f16 *restrict y, const eg_f16 *restrict x, const eg_f16 *restrict w,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                        int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);
void conv2d_f16_bw_input_zvfh(eg_f16 *restrict dx, const eg_f16 *restrict dy, const eg_f16 *restrict w,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);
void conv2d_f16_bw_weight_zvfh(float *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                               int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                               int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                               int M_upd, int Cg_upd, int Cx);
void conv2d_f16_bw_weight_y16_zvfh(eg_f16 *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                                   int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                                   int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                                   int M_upd, int Cg_upd, int Cx);
void gemm_f16_zvfh(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);
void gemm_f16_y32_zvfh(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                       float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

#endif /* EG_F16_ZVFH_H */
