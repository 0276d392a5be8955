/* eg_conv.h — 2-D convolution (NCHW, grouped, strided, padded, dilated), fp32 reference.
 *
 * Sizes: N batch, C input channels, H,W input height/width, M output channels, OH,OW output
 * height/width, KH,KW kernel, sh,sw strides, pt,pl top/left padding (bottom/right padding is
 * whatever OH/OW imply), dil_h,dil_w dilation, G groups (C and M multiples of G).
 */
#ifndef EG_CONV_H
#define EG_CONV_H

/* y[N,M,OH,OW] = conv(x[N,C,H,W], w[M,C/G,KH,KW]) + b[M]; b may be NULL. */
void conv2d_f32_fw(float *restrict y, const float *restrict x, const float *restrict w,
                   const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                   int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

/* dx[N,C,H,W] = transposed conv of dy[N,M,OH,OW] with w[M,C/G,KH,KW] (overwrites dx). */
void conv2d_f32_bw_input(float *restrict dx, const float *restrict dy, const float *restrict w,
                         int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                         int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G);

/* dwt[M_upd,Cg_upd,KH,KW] (compact) = gradient of w[m, c] for m < M_upd, c < Cg_upd, from
 * dy[N,M,OH,OW] and x stored as [N,Cx,H,W] (its Cx leading channels; Cx == C normally,
 * Cx == Cg_upd when only a leading input share was kept, G == 1). */
void conv2d_f32_bw_weight(float *restrict dwt, const float *restrict dy, const float *restrict x,
                          int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                          int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                          int M_upd, int Cg_upd, int Cx);

#endif /* EG_CONV_H */
