/* eg_winograd.h — Winograd F(2x2,3x3) / F(4x4,3x3) convolutions (host, rpi, jetson).
 *
 * For 3x3 convolutions with stride 1, dilation 1, one group and pads 0..2 per side; the
 * arguments are those of the reference kernels (eg_conv.h) in the same order, then `tile`
 * (S = 2: F(2x2,3x3), 16 products per 2x2 output tile; S = 4: F(4x4,3x3), 36 per 4x4 tile),
 * then `scratch`, a float buffer the kernel overwrites (never read before written); the
 * forward takes one more trailing `act` (0 none, 1 ReLU after the bias).
 *
 * Algorithm (Lavin & Gray 2016): U = G g G^T per (output, input) channel pair (every call:
 * weights change each step), V = B^T d B per input tile, Y = A^T (sum over c of U . V) A per
 * output tile. The channel sums are NX = (S+2)^2 independent GEMMs [Co x Ci] x [Ci x tiles]
 * (gemm_f32_tiled_strided), over bands of R tile rows at a time so V stays in cache.
 * Scratch floats, with Co / Ci the output / input channels of the convolution run (fw: M / C;
 * bw_input: C / M, the image dy [M, OH, OW] and output dx [C, H, W]), OHr x OWr its output
 * size, n = S + 2, NX = n*n, TH = ceil(OHr / S), TW = ceil(OWr / S), Wl = ceil16(TW + 1),
 * R = min(TH, max(1, 128 / TW)) and NT = R * TW:
 *   NX*(Co*Ci + 16) + Pl + 16 + NX*(Ci*(NT + 16) + 16) + max(NX*(Co*NT + 16) + 16, Pl)
 * with Pl = Ci*(S*R + 2)*S*Wl (the planes; the padded rows share the products' space)
 * (compiler/kernels_winograd.py: winograd_scratch_floats). No malloc; stack: the transforms'
 * vector arrays (at most 36 * 3 vectors, 7 KiB with AVX-512) and the GEMM engine's 16 KiB panel.
 *
 * Results: the same sums as the direct convolution in exact arithmetic; in fp32 the
 * transforms add rounding (tests/test_winograd.py states the measured bounds).
 */
#ifndef EG_WINOGRAD_H
#define EG_WINOGRAD_H

/* y[N,M,OH,OW] = act(conv(x[N,C,H,W], w[M,C,3,3]) + b[M]); b may be NULL. */
void conv2d_f32_fw_winograd(float *restrict y, const float *restrict x, const float *restrict w,
                            const float *restrict b, int N, int C, int H, int W, int M, int OH,
                            int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                            int dil_w, int G, int tile, float *restrict scratch, int act);

/* dx[N,C,H,W] = transposed conv of dy[N,M,OH,OW] with w[M,C,3,3] (stride 1): the forward
 * Winograd convolution of dy with the 180-degree-rotated, transposed kernel, pads 2 - pt, 2 - pl. */
void conv2d_f32_bw_input_winograd(float *restrict dx, const float *restrict dy,
                                  const float *restrict w, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, int tile, float *restrict scratch);

/* The same two with the weights transformed beforehand (frozen weights: the compiler emits U, see
 * kernels_winograd.winograd_weights): U[xi][co][ci] at U + xi*(Co*Ci + 16) + co*Ci + ci, Co / Ci
 * those of the convolution run (bw_input: U of the rotated, transposed kernel, Co = C, Ci = M);
 * scratch is the above less its first NX*(Co*Ci + 16) floats (U's part). */
void conv2d_f32_fw_winograd_pre(float *restrict y, const float *restrict x,
                                const float *restrict U, const float *restrict b, int N, int C,
                                int H, int W, int M, int OH, int OW, int KH, int KW, int sh,
                                int sw, int pt, int pl, int dil_h, int dil_w, int G, int tile,
                                float *restrict scratch, int act);

void conv2d_f32_bw_input_winograd_pre(float *restrict dx, const float *restrict dy,
                                      const float *restrict U, int N, int C, int H, int W, int M,
                                      int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                      int pl, int dil_h, int dil_w, int G, int tile,
                                      float *restrict scratch);

/* The input gradient masked by y [N,C,H,W] (the forward output of the activation before this
 * layer, passes/fuse_eltwise.py) as each output row is stored: mask 1 as relu_f32_bw (keep where
 * y > 0), 2 as clip_f32_bw (lo < y < hi), 0 none; bit for bit the plain kernel then the pass. */
void conv2d_f32_bw_input_winograd_mask(float *restrict dx, const float *restrict dy,
                                       const float *restrict w, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int tile,
                                       float *restrict scratch, const float *restrict y, int mask,
                                       float lo, float hi);

/* The _pre input gradient masked as conv2d_f32_bw_input_winograd_mask (frozen weights under a fused
 * ReluGrad/ClipGrad). */
void conv2d_f32_bw_input_winograd_pre_mask(float *restrict dx, const float *restrict dy,
                                           const float *restrict U, int N, int C, int H, int W, int M,
                                           int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                           int pl, int dil_h, int dil_w, int G, int tile,
                                           float *restrict scratch, const float *restrict y, int mask,
                                           float lo, float hi);

#endif /* EG_WINOGRAD_H */
