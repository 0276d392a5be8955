/* eg_eltwise_f16.h — native fp16 variants of the activation, residual-add, max-pool and bias-gradient
 * kernels for `--dtype fp16` (portable C99), so that these layers read and write their fp16 tensors
 * in the arena without fp32 staging copies.
 *
 * Same arguments and semantics as the fp32 kernels they stand for (eg_eltwise.h, eg_pool.h,
 * eg_shape.h); each value is computed in fp32 from the exact fp16 operands and rounded once, so
 * the results are bit-identical to "widen, run the fp32 kernel, round" (the path they replace;
 * reduce_sum_f16 up to the order of its fp32 sums):
 *   relu_f16_fw(y, x, n), relu_f16_bw(dx, dy, y, n), clip_f16_fw(y, x, n, lo, hi),
 *   clip_f16_bw(dx, dy, y, n, lo, hi), add_f16(y, a, b, n)      may run in place (no restrict);
 *   maxpool2d_f16_fw(y, x, <maxpool2d_f32_fw sizes>)
 *   maxpool2d_f16_bw(dx, dy, x, <sizes>)  the windows must not overlap (sh > (KH-1)*dil_h and
 *                                         sw > (KW-1)*dil_w: each dx cell gets at most one dy, so
 *                                         nothing is accumulated in fp16);
 *   reduce_sum_f16(y, x, ndim, shape, sy, sx, ny)  x fp16, y fp32 (sums in fp32): bias gradients.
 */
#ifndef EG_ELTWISE_F16_H
#define EG_ELTWISE_F16_H

#include "eg_f16.h"

void relu_f16_fw(eg_f16 *y, const eg_f16 *x, int n);
void relu_f16_bw(eg_f16 *dx, const eg_f16 *dy, const eg_f16 *y, int n);
void clip_f16_fw(eg_f16 *y, const eg_f16 *x, int n, float lo, float hi);
void clip_f16_bw(eg_f16 *dx, const eg_f16 *dy, const eg_f16 *y, int n, float lo, float hi);
void add_f16(eg_f16 *y, const eg_f16 *a, const eg_f16 *b, int n);

void maxpool2d_f16_fw(eg_f16 *restrict y, const eg_f16 *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                      int dil_w);
void maxpool2d_f16_bw(eg_f16 *restrict dx, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                      int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                      int pt, int pl, int dil_h, int dil_w);

void reduce_sum_f16(float *restrict y, const eg_f16 *restrict x, int ndim, const int *shape,
                    const int *sy, const int *sx, int ny);

#endif /* EG_ELTWISE_F16_H */
