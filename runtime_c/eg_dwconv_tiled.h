/* eg_dwconv_tiled.h — depthwise convolutions over channel blocks: the forward, with an optional
 * clamp epilogue (a Clip / ReLU6 / ReLU fused into the convolution), and both gradients.
 *
 * depthwise2d_f32_fw_clip: y[n,c] = clamp(b[c] + sum_{kh,kw} w[c,0,kh,kw] * x[n,c] shifted, lo, hi)
 * with the arguments of conv2d_f32_fw (eg_conv.h; C == M == G) then lo, hi: the result is
 * clip_f32_fw's clamp of conv2d_f32_fw_tiled's output (lo = -INFINITY, hi = INFINITY: no clamp).
 * No scratch (up to 44 KiB of stack). Sums in a different order from the reference (bias first,
 * then the taps in row-major order, FMAs): within rtol 1e-5 of the sum of |terms|.
 */
#ifndef EG_DWCONV_TILED_H
#define EG_DWCONV_TILED_H

void depthwise2d_f32_fw_clip(float *restrict y, const float *restrict x, const float *restrict w,
                             const float *restrict b, int N, int C, int H, int W, int M, int OH,
                             int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                             int dil_w, int G, float lo, float hi);

/* The fast paths of the above, used by conv2d_f32_fw_tiled too: returns 0 (and writes nothing)
 * when the shape is not one they take. */
int eg_dw_fw_fast(float *restrict y, const float *restrict x, const float *restrict w,
                  const float *restrict b, int N, int C, int H, int W, int OH, int OW, int KH,
                  int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, float lo,
                  float hi);

/* Depthwise gradients over channel blocks (conv2d_f32_bw_input_tiled / conv2d_f32_bw_weight_tiled take
 * them first for a depthwise layer): the arguments of those kernels less M, G and the scratch;
 * returns 0 (and writes nothing) when the shape is not one they take. Up to 72 KiB of stack. */
int eg_dw_bw_input_fast(float *restrict dx, const float *restrict dy, const float *restrict w, int N,
                        int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                        int pl, int dil_h, int dil_w);
int eg_dw_bw_weight_fast(float *restrict dwt, const float *restrict dy, const float *restrict x, int N,
                         int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                         int pl, int dil_h, int dil_w, int M_upd, int Cx);

#endif /* EG_DWCONV_TILED_H */
