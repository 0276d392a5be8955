/* eg_conv_tiled.h — fast fp32 2-D convolution: the contract of eg_conv.h plus a scratch buffer.
 *
 * Arguments are those of the reference kernels (eg_conv.h) in the same order, then `scratch`,
 * a float buffer the kernel may overwrite (not read before written; may be NULL when its size
 * is 0). Its size in floats, with Cg = C/G, Mg = M/G and T the pixels of an im2col tile of
 * whole output rows, T = min(OH, max(1, 256 / OW)) * OW (integer division):
 *
 *   depthwise    = (Cg == 1 && Mg == 1)                       direct loops, no scratch
 *   pointwise    = (KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0
 *                   && OH == H && OW == W)                    a plain GEMM over pixels
 *   fw:          depthwise || pointwise ? 0 : Cg * KH * KW * T
 *   bw_input:    depthwise || pointwise ? 0 : Cg * KH * KW * T
 *   bw_weight:   depthwise || pointwise ? 0 : Cg_upd * KH * KW * T
 *
 * (compiler/kernels_tiled.py: conv_scratch_floats computes the same numbers.) The scratch is
 * an im2col tile: the Cg*KH*KW patch rows of T output pixels (whole rows) at a time. The kernels
 * also use up to 16 KiB of stack (the GEMM's packed panel, eg_gemm_tiled.c, or the depthwise
 * kernels' zero-padded phase planes of a band of rows, eg_conv_tiled.c); a pointwise forward over
 * 8 to 16 pixels on AVX-512, 32 KiB (its packing of x with channels in the lanes, eg_pw_fw_small).
 *
 * Results equal the reference up to fp32 summation order (blocked sums, FMAs): within
 * rtol 1e-5 of the sum of |terms| (tests/test_kernels_tiled.py).
 */
#ifndef EG_CONV_TILED_H
#define EG_CONV_TILED_H

/* y[N,M,OH,OW] = conv(x[N,C,H,W], w[M,C/G,KH,KW]) + b[M]; b may be NULL. */
void conv2d_f32_fw_tiled(float *restrict y, const float *restrict x, const float *restrict w,
                         const float *restrict b, int N, int C, int H, int W, int M, int OH,
                         int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                         int dil_w, int G, float *restrict scratch);

/* dx[N,C,H,W] = transposed conv of dy[N,M,OH,OW] with w[M,C/G,KH,KW] (overwrites dx). */
void conv2d_f32_bw_input_tiled(float *restrict dx, const float *restrict dy,
                               const float *restrict w, int N, int C, int H, int W, int M, int OH,
                               int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                               int dil_w, int G, float *restrict scratch);

/* dwt[M_upd,Cg_upd,KH,KW] (compact) = gradient of w[m, c] for m < M_upd, c < Cg_upd, from
 * dy[N,M,OH,OW] and x stored as [N,Cx,H,W] (see conv2d_f32_bw_weight). */
void conv2d_f32_bw_weight_tiled(float *restrict dwt, const float *restrict dy,
                                const float *restrict x, int N, int C, int H, int W, int M, int OH,
                                int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                                int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                float *restrict scratch);

/* conv2d_f32_fw for KH*KW <= 64, sh*sw <= 16, as an implicit GEMM on zero-padded planes of each
 * image group. Stride 1: the padded image, Hp = OH + (KH-1)*dil_h rows of Wp = OW + (KW-1)*dil_w,
 * a band of R = min(OH, max(1, 256 / Wp)) wide rows at a time; scratch floats
 *   Cg * Hp * Wp + 16 + (Wp == OW ? 0 : Mg * ceil16(R * Wp))   (ceil16: to a multiple of 16)
 * (Wp == OW: no junk columns, y is written in place). Stride > 1: one plane per row phase
 * (kh*dil_h) % sh some tap reads (nph of them) and kernel column, OW wide, y written in place:
 *   Cg * KW * nph * (OH + ((KH-1)*dil_h) / sh) * OW
 * (compiler/kernels_tiled.py: implicit_scratch_floats). Chosen at compile time by select_kernels
 * (use_implicit). */
void conv2d_f32_fw_implicit(float *restrict y, const float *restrict x, const float *restrict w,
                            const float *restrict b, int N, int C, int H, int W, int M, int OH,
                            int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                            int dil_w, int G, float *restrict scratch);

/* conv2d_f32_bw_input for KH*KW <= 64, sh*sw <= 16, not depthwise. Stride 1: the same implicit
 * GEMM on dy (the forward layer's roles swapped, taps flipped), after the group's transposed
 * weights. Scratch floats:
 *   Cg * Mg * KH * KW + (the fw_implicit formula with C <-> M, OH <-> H, OW <-> W swapped)
 * Stride > 1: the phase decomposition (one stride-1 implicit GEMM per phase (ih % sh, iw % sw)
 * of dx on zero-padded dy planes, nco of Hd x Wq per dy channel, Wq = ceil(W/sw), see
 * eg_conv_tiled.c), with R = min(ceil(H/sh), max(1, 256 / Wq)) rows per band:
 *   (KH*KW > 1 ? Cg * Mg * KH * KW : 0) + (direct ? 0 : Mg * nco * Hd * Wq + 16)
 *   + nb * Cg * ceil16(R * Wq)
 * nb the column phases (kw*dil_w - pl) % sw some tap reaches (compiler/kernels_tiled.py:
 * implicit_kind_scratch; phase_geometry gives Hd, nco and direct). */
void conv2d_f32_bw_input_implicit(float *restrict dx, const float *restrict dy,
                                  const float *restrict w, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, float *restrict scratch);

/* conv2d_f32_bw_weight (same arguments) as an implicit GEMM on the phase planes of x (no
 * im2col), for KH*KW <= 64 and sh*sw <= 16, not depthwise. With rows = min(M/G, M_upd),
 * Wq = OW + ((KW-1)*dil_w) / sw, F = (OH-1)*Wq + OW and np the phases (ph, pw) some tap reads
 * (1 for stride 1), scratch floats:
 *   pointwise ? F * rows : Cg_upd * np * (OH + ((KH-1)*dil_h) / sh) * Wq + F * rows
 * (compiler/kernels_tiled.py: implicit_kind_scratch). */
void conv2d_f32_bw_weight_implicit(float *restrict dwt, const float *restrict dy,
                                   const float *restrict x, int N, int C, int H, int W, int M,
                                   int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                   int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                   float *restrict scratch);

/* The SGD update fused into conv2d_f32_bw_weight_implicit (same scratch): for m < M_upd and
 * j < Cg_upd*KH*KW, w[m*w_stride + j] -= lr * dW[m, j] (w_stride: the floats between rows of w,
 * C/G*KH*KW), without a gradient buffer. The sum reaches w in parts (per image and k block of
 * 4096 wide pixels), so w agrees with the unfused update to fp32 rounding. */
void conv2d_f32_bw_weight_sgd_implicit(float *restrict w, const float *restrict dy,
                                       const float *restrict x, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                       int Cx, int w_stride, float lr, float *restrict scratch);

/* The SGD update fused into a pointwise weight gradient (KH = KW = 1, stride 1, no padding, OH = H,
 * OW = W: passes/fuse.py checks), same arguments as conv2d_f32_bw_weight_sgd_implicit, no scratch
 * (scratch may be NULL): w[m*w_stride + c] -= lr * dW[m, c] from the GEMM's registers. */
void conv2d_f32_bw_weight_sgd_tiled(float *restrict w, const float *restrict dy,
                                    const float *restrict x, int N, int C, int H, int W, int M,
                                    int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                    int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                    int w_stride, float lr, float *restrict scratch);

/* The momentum update fused likewise (same scratch): v[m*Cg_upd*KH*KW + j] = mu * v + dW[m, j],
 * w[m*w_stride + j] -= lr * v, as momentum_f32 but with dW's parts added to mu * v one by one. */
void conv2d_f32_bw_weight_momentum_implicit(float *restrict w, float *restrict v,
                                            const float *restrict dy, const float *restrict x,
                                            int N, int C, int H, int W, int M, int OH, int OW,
                                            int KH, int KW, int sh, int sw, int pt, int pl,
                                            int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                            int Cx, int w_stride, float lr, float mu,
                                            float *restrict scratch);

/* The fused variants (passes/fuse_eltwise.py), same arguments and scratch as the kernels above
 * plus trailing ones; their results are those of the plain kernel followed by the separate pass,
 * element for element, with the pass applied to each tile as it is stored:
 * _act, act 1: y = relu(conv + b) as relu_f32_fw, act 2: ReLU6, clip_f32_fw(.., 0, 6) (act 0: no
 *   activation); a depthwise layer's fast path clamps to [0, inf) for act 1, which differs from
 *   relu_f32_fw only on NaN. (conv2d_f32_fw_winograd takes act 0 or 1.)
 * _mask: dx = the input gradient masked by the forward output y of the activation before this
 *   layer ([N,C,H,W], as dx): mask 1 as relu_f32_bw (y > 0), 2 as clip_f32_bw (lo < y < hi).
 *   conv2d_f32_bw_input_implicit_mask with stride > 1 masks each dx row as its phases are zipped
 *   into it (every element is written once there). */
void conv2d_f32_fw_tiled_act(float *restrict y, const float *restrict x, const float *restrict w,
                             const float *restrict b, int N, int C, int H, int W, int M, int OH,
                             int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                             int dil_w, int G, float *restrict scratch, int act);
void conv2d_f32_fw_implicit_act(float *restrict y, const float *restrict x, const float *restrict w,
                                const float *restrict b, int N, int C, int H, int W, int M, int OH,
                                int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                                int dil_w, int G, float *restrict scratch, int act);
void conv2d_f32_bw_input_tiled_mask(float *restrict dx, const float *restrict dy,
                                    const float *restrict w, int N, int C, int H, int W, int M,
                                    int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                    int dil_h, int dil_w, int G, float *restrict scratch,
                                    const float *restrict y, int mask, float lo, float hi);
void conv2d_f32_bw_input_implicit_mask(float *restrict dx, const float *restrict dy,
                                       const float *restrict w, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G,
                                       float *restrict scratch, const float *restrict y, int mask,
                                       float lo, float hi);

#endif /* EG_CONV_TILED_H */
