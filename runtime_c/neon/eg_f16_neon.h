/* eg_f16_neon.h — the native fp16 conv/GEMM kernels of `--dtype fp16` for aarch64 (rpi, jetson),
 * chosen at compile time by compiler/passes/select_kernels.py for nodes lower_fp16 marks "f16".
 *
 * Same contracts as eg_conv_f16.h / eg_gemm_f16.h (fp16 operands as binary16 bits, fp32
 * accumulation, one rounding at the store, fp32 weight gradients), suffix _neon, no scratch.
 * fp16 operands are loaded 8 at a time and widened with fcvtl/fcvtl2 (vcvt_f32_f16,
 * vcvt_high_f32_f16), outputs narrowed with fcvtn/fcvtn2: base ARMv8-A SIMD, so the same code
 * runs on the Pi 4 (Cortex-A72) and the Pi 5 (Cortex-A76, whose FEAT_FP16 arithmetic is not
 * used: the sums stay fp32). Results equal the references up to fp32 summation order.
 */
#ifndef EG_F16_NEON_H
#define EG_F16_NEON_H

#include "eg_f16.h"

void conv2d_f16_fw_neon(eg_f16 *restrict y, const eg_f16 *restrict x, const eg_f16 *restrict w,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                        int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);
void conv2d_f16_bw_input_neon(eg_f16 *restrict dx, const eg_f16 *restrict dy,
                              const eg_f16 *restrict w, int N, int C, int H, int W, int M, int OH,
                              int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                              int dil_w, int G);
void conv2d_f16_bw_weight_neon(float *restrict dwt, const eg_f16 *restrict dy,
                               const eg_f16 *restrict x, int N, int C, int H, int W, int M, int OH,
                               int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                               int dil_w, int G, int M_upd, int Cg_upd, int Cx);
void gemm_f16_neon(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);
void gemm_f16_y32_neon(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA,
                       int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

#endif /* EG_F16_NEON_H */
