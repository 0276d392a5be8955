/* eg_conv_f16.h — native fp16 convolution kernels for `--dtype fp16` (portable C99 reference).
 *
 * Same dimension arguments, index map and padding rules as eg_conv.h; the operands differ:
 *   activations, their gradients and the weights are binary16 (eg_f16, eg_f16.h) — the weights
 *   are an fp16 copy of the fp32 master parameter (lower_fp16 rounds it before the call, or
 *   stores a frozen constant in fp16 only); the bias is fp32;
 *   every sum is accumulated in fp32 (one fp32 multiply-add per tap, from the exact fp16 values)
 *   and rounded to fp16 once, at the store (round to nearest even);
 *   the weight gradient is written in fp32 (the optimizer updates the fp32 master), or rounded
 *   to fp16 once by the `_y16` variant.
 * No workspace beyond a 64-float accumulator row on the stack; no shape constraints.
 * Variants with the same signatures: rvv/eg_f16_zvfh.h (`_zvfh`, RISC-V zve32f + zvfh).
 */
#ifndef EG_CONV_F16_H
#define EG_CONV_F16_H

#include "eg_f16.h"

/* y[N,M,OH,OW] (fp16) = conv(x[N,C,H,W] fp16, w[M,C/G,KH,KW] fp16) + b[M] (fp32, may be NULL). */
void conv2d_f16_fw(eg_f16 *restrict y, const eg_f16 *restrict x, const eg_f16 *restrict w,
                   const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                   int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

/* dx[N,C,H,W] (fp16) = transposed conv of dy[N,M,OH,OW] (fp16) with w (fp16). */
void conv2d_f16_bw_input(eg_f16 *restrict dx, const eg_f16 *restrict dy, const eg_f16 *restrict w,
                         int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                         int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

/* dwt[M_upd,Cg_upd,KH,KW] (fp32, compact as conv2d_f32_bw_weight) from dy (fp16) and x (fp16,
 * stored [N,Cx,H,W]). */
void conv2d_f16_bw_weight(float *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                          int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                          int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                          int M_upd, int Cg_upd, int Cx);

/* The same weight gradient rounded to fp16 at the store (--dtype fp16 holds the loss-scaled
 * parameter gradients in fp16 until the all-or-nothing update). */
void conv2d_f16_bw_weight_y16(eg_f16 *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                              int M_upd, int Cg_upd, int Cx);

#endif /* EG_CONV_F16_H */
