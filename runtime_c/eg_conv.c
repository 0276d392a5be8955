/* eg_conv.c — 2-D convolution, forward and both backward kernels side by side.
 *
 * Dimension legend
 *   N       batch
 *   C, M    input / output channels;  G groups;  Cg = C/G, Mg = M/G channels per group
 *   H, W    input height / width;     OH, OW output height / width
 *   KH, KW  kernel height / width
 *   sh, sw  strides;  pt, pl top / left padding;  dil_h, dil_w dilation
 *   Cx      channels stored in the saved x given to bw_weight (<= C)
 *
 * Index map shared by all three kernels:
 *   ih = oh*sh - pt + kh*dil_h,   iw = ow*sw - pl + kw*dil_w
 *   y[n, m, oh, ow] = b[m] + sum_{c<Cg, kh, kw} x[n, g*Cg + c, ih, iw] * w[m, c, kh, kw],
 *   g = m / Mg; taps with ih or iw outside the image read zero padding.
 *
 * Instead of testing every tap against the image border, each loop computes the range of
 * its index that lands inside the image (eg_first_in / eg_end_in) and runs only over it.
 */
#include <stddef.h>

#include "eg_conv.h"

/* Smallest i >= 0 with off + i*step >= 0 (step > 0). */
static inline int eg_first_in(int off, int step)
{
    return off >= 0 ? 0 : (-off + step - 1) / step;
}

/* One past the largest i < n with off + i*step < lim (step > 0); may be <= eg_first_in. */
static inline int eg_end_in(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

void conv2d_f32_fw(float *restrict y, const float *restrict x, const float *restrict w,
                   const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                   int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            const int g = m / Mg;
            const float *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW; /* [Cg,H,W] */
            const float *wm = w + (ptrdiff_t)m * Cg * KK;                      /* [Cg,KH,KW] */
            float *ym = y + ((ptrdiff_t)n * M + m) * OHW;
            const float bias = b ? b[m] : 0.0f;
            for (int oh = 0; oh < OH; oh++) {
                const int ih0 = oh * sh - pt;
                const int kh0 = eg_first_in(ih0, dil_h), kh1 = eg_end_in(ih0, dil_h, H, KH);
                for (int ow = 0; ow < OW; ow++) {
                    const int iw0 = ow * sw - pl;
                    const int kw0 = eg_first_in(iw0, dil_w), kw1 = eg_end_in(iw0, dil_w, W, KW);
                    float acc = bias;
                    for (int c = 0; c < Cg; c++) {
                        const float *xc = xg + c * HW;
                        const float *wc = wm + c * KK;
                        for (int kh = kh0; kh < kh1; kh++) {
                            /* row offset of tap kw = 0 (may sit left of the row) */
                            const ptrdiff_t xr = (ptrdiff_t)(ih0 + kh * dil_h) * W + iw0;
                            const float *wr = wc + kh * KW;
                            for (int kw = kw0; kw < kw1; kw++)
                                acc += xc[xr + kw * dil_w] * wr[kw];
                        }
                    }
                    ym[(ptrdiff_t)oh * OW + ow] = acc;
                }
            }
        }
    }
}

void conv2d_f32_bw_input(float *restrict dx, const float *restrict dy, const float *restrict w,
                         int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                         int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    /* Forward: y[n,m,oh,ow] += x[n,g*Cg+c,ih,iw] * w[m,c,kh,kw] with ih = oh*sh - pt + kh*dil_h.
     * Chain rule: dL/dx[n,ci,ih,iw] = sum over (m in group, kh, kw, oh, ow) that hit (ih, iw)
     * of dy[n,m,oh,ow] * w[m,c,kh,kw]. Gathered per dx element so it is written once:
     * a tap kh hits ih when t = ih + pt - kh*dil_h is a non-negative multiple of sh, oh = t/sh. */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    for (int n = 0; n < N; n++) {
        for (int ci = 0; ci < C; ci++) {
            const int g = ci / Cg, c = ci - g * Cg;
            const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW; /* [Mg,OH,OW] */
            const float *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK; /* w[g*Mg, c], m step Cg*KK */
            float *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
            for (int ih = 0; ih < H; ih++) {
                for (int iw = 0; iw < W; iw++) {
                    float acc = 0.0f;
                    for (int kh = 0; kh < KH; kh++) {
                        const int th = ih + pt - kh * dil_h;
                        if (th < 0 || th % sh != 0 || th / sh >= OH)
                            continue;
                        const int oh = th / sh;
                        for (int kw = 0; kw < KW; kw++) {
                            const int tw = iw + pl - kw * dil_w;
                            if (tw < 0 || tw % sw != 0 || tw / sw >= OW)
                                continue;
                            const ptrdiff_t o = (ptrdiff_t)oh * OW + tw / sw;
                            const float *wk = wg + kh * KW + kw;
                            for (int mg = 0; mg < Mg; mg++)
                                acc += dyg[mg * OHW + o] * wk[mg * Cg * KK];
                        }
                    }
                    dxc[(ptrdiff_t)ih * W + iw] = acc;
                }
            }
        }
    }
}

void conv2d_f32_bw_weight(float *restrict dwt, const float *restrict dy, const float *restrict x,
                          int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                          int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                          int M_upd, int Cg_upd, int Cx)
{
    /* Forward: y[n,m,oh,ow] += x[n,g*Cg+c,ih,iw] * w[m,c,kh,kw].
     * Chain rule: dL/dw[m,c,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,g*Cg+c,ih,iw], over the
     * (oh, ow) whose tap (kh, kw) lands inside the image. Only m < M_upd, c < Cg_upd are
     * computed, into the compact dwt[M_upd,Cg_upd,KH,KW]; x rows are Cx channels apart. */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    for (int m = 0; m < M_upd; m++) {
        const int g = m / Mg;
        for (int c = 0; c < Cg_upd; c++) {
            const int ci = g * Cg + c; /* channel in x; < Cx by the caller's contract */
            for (int kh = 0; kh < KH; kh++) {
                const int offh = kh * dil_h - pt; /* ih = oh*sh + offh */
                const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    float acc = 0.0f;
                    for (int n = 0; n < N; n++) {
                        const float *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                        const float *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                        for (int oh = oh0; oh < oh1; oh++) {
                            const float *dyr = dym + (ptrdiff_t)oh * OW;
                            const ptrdiff_t xr = (ptrdiff_t)(oh * sh + offh) * W + offw;
                            for (int ow = ow0; ow < ow1; ow++)
                                acc += dyr[ow] * xc[xr + (ptrdiff_t)ow * sw];
                        }
                    }
                    dwt[(((ptrdiff_t)m * Cg_upd + c) * KH + kh) * KW + kw] = acc;
                }
            }
        }
    }
}
