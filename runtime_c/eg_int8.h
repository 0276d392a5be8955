/* eg_int8.h — int8 forward kernels (int32 accumulation, TFLite/CMSIS-NN fixed-point
 * requantization), the int8 <-> fp32 bridges of the backward pass and the int8/int32 parameter
 * updates (QAS-scaled gradient, optional fp32 master copy). Contract: runtime_c/KERNELS.md.
 *
 * An int8 tensor q stands for s * (q - zp). Weights are symmetric (zp 0), per output channel;
 * biases are int32 with scale s_x * s_w[m]. Requantization of an int32 accumulator:
 *   y = clamp(y_zp + eg_mbqm(acc, mult[m], shift[m]), act_min, act_max)
 * with mult in [2^30, 2^31) and real multiplier = mult * 2^(shift - 31), both computed by the
 * compiler. act_min/act_max carry a fused ReLU / ReLU6 (and are -128/127 otherwise).
 */
#ifndef EG_INT8_H
#define EG_INT8_H

#include <stdint.h>

/* SaturatingRoundingDoublingHighMul, RoundingDivideByPOT and their composition
 * MultiplyByQuantizedMultiplier, bit-exact with TFLite's reference. */
int32_t eg_srdhm(int32_t a, int32_t b);
int32_t eg_rdbpot(int32_t x, int exponent);
int32_t eg_mbqm(int32_t x, int32_t mult, int shift);

/* y[N,M,OH,OW] (int8) = requant(conv(x[N,C,H,W] - x_zp, w[M,C/G,KH,KW]) + b[M]); b may be NULL. */
void conv2d_s8_fw(int8_t *restrict y, const int8_t *restrict x, const int8_t *restrict w,
                  const int32_t *restrict b, const int32_t *restrict mult, const int32_t *restrict shift,
                  int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW, int sh, int sw,
                  int pt, int pl, int dil_h, int dil_w, int G, int x_zp, int y_zp, int act_min, int act_max);

/* MobileNetV2's expansion + depthwise pair without the expanded tensor: for each of the M expanded
 * channels, plane[H,W] = requant(1x1 conv of x[1,C,H,W] with w1[M,C]) (mult1/shift1, mid_zp,
 * [act1_min, act1_max]), then y[m] = depthwise KHxKW conv of the plane with w2[M,1,KH,KW]
 * (mult2/shift2, y_zp, [act2_min, act2_max]). plane is scratch of H*W bytes. b1, b2 may be NULL. */
void conv_pwdw_s8_fw(int8_t *restrict y, int8_t *restrict plane, const int8_t *restrict x,
                     const int8_t *restrict w1, const int32_t *restrict b1, const int32_t *restrict mult1,
                     const int32_t *restrict shift1, const int8_t *restrict w2, const int32_t *restrict b2,
                     const int32_t *restrict mult2, const int32_t *restrict shift2,
                     int C, int H, int W, int M, int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                     int dil_h, int dil_w, int x_zp, int mid_zp, int act1_min, int act1_max, int y_zp,
                     int act2_min, int act2_max);

/* y[B,N] (int8) = requant((x[B,K] - x_zp) w[N,K]^T + b[N]); b may be NULL. */
void linear_s8_fw(int8_t *restrict y, const int8_t *restrict x, const int8_t *restrict w,
                  const int32_t *restrict b, const int32_t *restrict mult, const int32_t *restrict shift,
                  int B, int N, int K, int x_zp, int y_zp, int act_min, int act_max);

/* Max over each window (same scale in and out); padding never wins. */
void maxpool2d_s8_fw(int8_t *restrict y, const int8_t *restrict x, int N, int C, int H, int W, int OH, int OW,
                     int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w);

/* y[N,C] = requant(sum over HW of (x - x_zp), mult, shift) (mult/shift include 1/HW and the scales). */
void global_avgpool_s8_fw(int8_t *restrict y, const int8_t *restrict x, int NC, int HW, int x_zp,
                          int32_t mult, int shift, int y_zp, int act_min, int act_max);

/* TFLite int8 Add: y = clamp(y_zp + mbqm(mbqm((a-a_zp)<<20, am, ash) + mbqm((b-b_zp)<<20, bm, bsh), ym, ysh)). */
void add_s8(int8_t *y, const int8_t *a, const int8_t *b, int n, int a_zp, int32_t a_mult, int a_shift,
            int b_zp, int32_t b_mult, int b_shift, int y_zp, int32_t y_mult, int y_shift, int act_min, int act_max);

/* y = clamp(x, act_min, act_max) (ReLU / ReLU6 on int8, same scale in and out); may run in place. */
void clamp_s8(int8_t *y, const int8_t *x, int n, int act_min, int act_max);

/* y = sat(round_half_even(x / scale) + zp): the float graph input to int8. */
void quantize_f32_s8(int8_t *restrict y, const float *restrict x, int n, float inv_scale, int zp);
/* y = scale * (x - zp). */
void dequantize_s8_f32(float *restrict y, const int8_t *restrict x, int n, float scale, int zp);
/* y[r, i] = scale[r] * x[r, i] for rows of `inner` elements (symmetric per-channel weights). */
void dequantize_s8_f32_rows(float *restrict y, const int8_t *restrict x, int rows, int inner,
                            const float *restrict scale);

/* Backward of the saturating requantization: dx = (lo < y < hi) ? dy : 0; may run in place (dx == dy). */
void qsat_grad_f32(float *dx, const float *dy, const int8_t *y, int n, int lo, int hi);

/* Input gradients read straight from the int8 weights (per-output-channel scale), so the backward
 * pass never holds a dequantized fp32 copy of a weight:
 *   conv2d_s8w_f32_bw_input: dx[N,C,H,W] = transposed conv of dy[N,M,OH,OW] with scale[m] * w[M,C/G,KH,KW]
 *   linear_s8w_f32_bw_input: dx[B,K] = dy[B,N] (scale[n] * w[N,K]) */
void conv2d_s8w_f32_bw_input(float *restrict dx, const float *restrict dy, const int8_t *restrict w,
                             const float *restrict scale, int N, int C, int H, int W, int M, int OH, int OW,
                             int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);
void linear_s8w_f32_bw_input(float *restrict dx, const float *restrict dy, const int8_t *restrict w,
                             const float *restrict scale, int B, int N, int K);

/* Parameter update of an int8 weight (or int32 bias) block in integer units.
 * Element (r, i) is w[r*w_stride + i]; g, v and master are compact [rows*inner].
 *   t = gscale[r] * g            (QAS: 1/s_w for weights, 1/(s_x s_w) for biases; --qas off: s_w, s_x s_w)
 *   v = mu*v + t; t = v          (momentum; v == NULL for plain SGD)
 *   m = (master ? master : w) - lr*t;  if master: master = m;  w = sat(round(m))
 * master == NULL writes the update straight back into the integer weight (rounded). */
void qupdate_s8(int8_t *w, float *master, float *v, const float *g, const float *gscale, int rows, int inner,
                int w_stride, float lr, float mu);
void qupdate_s32(int32_t *w, float *master, float *v, const float *g, const float *gscale, int rows, int inner,
                 int w_stride, float lr, float mu);

#endif /* EG_INT8_H */
