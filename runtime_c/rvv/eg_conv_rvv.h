/* eg_conv_rvv.h — RVV (zve32f) variants of the fp32 convolution kernels.
 *
 * Same signatures and contract as eg_conv.h (reference), plus the `_rvv` suffix. Chosen at
 * compile time by compiler/passes/select_kernels.py when the mcu build lists the zve32f
 * extension; built only then (they need <riscv_vector.h>). No constraints on the sizes: every
 * shape the reference accepts is accepted, results equal the reference up to fp32 rounding
 * (sums run in a different order).
 */
#ifndef EG_CONV_RVV_H
#define EG_CONV_RVV_H

void conv2d_f32_fw_rvv(float *restrict y, const float *restrict x, const float *restrict w,
                       const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                       int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

void conv2d_f32_bw_input_rvv(float *restrict dx, const float *restrict dy, const float *restrict w,
                             int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                             int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

void conv2d_f32_bw_weight_rvv(float *restrict dwt, const float *restrict dy, const float *restrict x,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                              int M_upd, int Cg_upd, int Cx);

#endif /* EG_CONV_RVV_H */
