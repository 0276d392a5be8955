/* eg_winograd_wgrad.h — the weight gradient of a 3x3 stride-1 convolution by Winograd F(3x3, 2x2).
 *
 * dW[m, c] (3x3) = sum over pixels of dy[m] x x[c] is a correlation of the zero-padded image with
 * dy, whose output is the 3x3 kernel: split dy into 2x2 tiles (zero beyond OH, OW) and x into the
 * overlapping 4x4 tiles they read, then
 *   dW[m, c] = A^T [ sum_tiles (G dy_t G^T) . (B^T x_t B) ] A        (. elementwise, 4x4)
 * 16 products per tile and channel pair instead of 36 (2.25x fewer multiplies), with
 *   A^T = [1 1 1 0; 0 1 -1 0; 0 1 1 1],  G = [1 0; .5 .5; .5 -.5; 0 1],
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 -1 0 1].
 *
 * Arguments are those of conv2d_f32_bw_weight (eg_conv.h), then scratch. The kernel applies to
 * KH == KW == 3, sh == sw == dil_h == dil_w == 1, G == 1, pads 0..2 (others are not its shapes:
 * the compiler never calls it there; it returns without writing). With TH = (OH + 1) / 2,
 * TW = (OW + 1) / 2, RT = min(TH, max(1, 64 / TW)) tile rows per chunk (EG_WG_TB = 64 tiles) and
 * chunks = N * ceil(TH / RT), scratch floats:
 *   Cg_upd * (2*TH + 2) * (2*TW + 2)          the zero-padded planes of one image
 *   + 16 * RT * TW * (M_upd + Cg_upd)         one chunk of transformed dy and image tiles
 *   + (chunks > 1 ? 16 * M_upd * Cg_upd : 0)  the pairs' partial sums between chunks
 * (compiler/kernels_wgrad.py: winograd_scratch_floats). Results equal the reference up to fp32
 * rounding of the transformed sums: each element within 2e-6 of the largest sum of |terms| among
 * the 9 taps of its (m, c) (tests/test_wgrad.py; measured 3.3e-7).
 */
#ifndef EG_WINOGRAD_WGRAD_H
#define EG_WINOGRAD_WGRAD_H

/* dwt[M_upd, Cg_upd, 3, 3] (compact, as conv2d_f32_bw_weight). */
void conv2d_f32_bw_weight_winograd(float *restrict dwt, const float *restrict dy,
                                   const float *restrict x, int N, int C, int H, int W, int M,
                                   int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                   int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                   float *restrict scratch);

/* The SGD step in the output transform (same scratch): for m < M_upd, j < Cg_upd * 9,
 * w[m * w_stride + j] -= lr * dW[m, j], without a gradient buffer (the arguments of
 * conv2d_f32_bw_weight_sgd_implicit). */
void conv2d_f32_bw_weight_sgd_winograd(float *restrict w, const float *restrict dy,
                                       const float *restrict x, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                       int Cx, int w_stride, float lr, float *restrict scratch);

/* The momentum step in the output transform (same scratch): for m < M_upd, j < Cg_upd * 9,
 * v[m * Cg_upd * 9 + j] = mu * v + dW[m, j], then w[m * w_stride + j] -= lr * v, as momentum_f32,
 * without a gradient buffer (the arguments of conv2d_f32_bw_weight_momentum_implicit). */
void conv2d_f32_bw_weight_momentum_winograd(float *restrict w, float *restrict v,
                                            const float *restrict dy, const float *restrict x,
                                            int N, int C, int H, int W, int M, int OH, int OW,
                                            int KH, int KW, int sh, int sw, int pt, int pl,
                                            int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                            int Cx, int w_stride, float lr, float mu,
                                            float *restrict scratch);

#endif /* EG_WINOGRAD_WGRAD_H */
