/* eg_dw_neon.h — depthwise convolutions (C == M == G, one 2-D filter per channel) for aarch64,
 * chosen at compile time by compiler/passes/select_kernels.py for rpi and jetson where
 * compiler/kernels_neon.py says they apply: width stride 1 or 2, no dilation, at most
 * EG_DW_NEON_TAPS taps; any height stride, kernel size and padding.
 *
 * Same arguments as the reference kernels (eg_conv.h) plus the scratch the compiler sizes with
 * kernels_neon.dw_neon_scratch_floats: one zero-padded plane of one channel, so the inner loops
 * never test a border:
 *   fw, bw_weight   P[r, c] = x[r - pt, c - pl]     r < (OH-1)*sh + KH, c < sw*ceil8(OW) + KW + 8
 *   bw_input, stride 1 both ways: Q[r, c] = dy[r - (KH-1-pt), c - (KW-1-pl)],
 *                   r < H + KH - 1, c < ceil8(W) + KW + 8   (a correlation with the flipped filter)
 *   bw_input, otherwise: DX[r, c] accumulates the taps in plane coordinates (as P), then
 *                   dx[ih, iw] = DX[ih + pt, iw + pl]
 * Results equal the reference up to fp32 summation order.
 */
#ifndef EG_DW_NEON_H
#define EG_DW_NEON_H

#define EG_DW_NEON_TAPS 64

void conv2d_f32_fw_dw_neon(float *restrict y, const float *restrict x, const float *restrict w,
                           const float *restrict b, int N, int C, int H, int W, int M, int OH,
                           int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                           int dil_w, int G, float *restrict scratch);
void conv2d_f32_bw_input_dw_neon(float *restrict dx, const float *restrict dy,
                                 const float *restrict w, int N, int C, int H, int W, int M,
                                 int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                 int dil_h, int dil_w, int G, float *restrict scratch);
void conv2d_f32_bw_weight_dw_neon(float *restrict dwt, const float *restrict dy,
                                  const float *restrict x, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                  float *restrict scratch);

#endif /* EG_DW_NEON_H */
