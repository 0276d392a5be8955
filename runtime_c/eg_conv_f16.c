/* eg_conv_f16.c — native fp16 convolutions, fp32 accumulation (contract: eg_conv_f16.h; legend
 * and index map: eg_conv.c).
 *
 * The outputs are fp16, so a sum cannot be built up in y itself: each kernel keeps an fp32
 * accumulator row of up to EG_F16_ROW outputs on the stack, adds every tap into it (the tap's
 * weight converted once, then one multiply-add per output) and rounds the row to fp16 once.
 *   fw         per output row chunk: acc = bias; for each (c, kh, kw) the outputs whose tap lands
 *              inside the image get w * x[ih, ow*sw + offw].
 *   bw_input   per dx row chunk: for each (m, kh, kw) whose tap row hits ih, the dy row scatters
 *              into the chunk at iw = ow*sw + offw (every stride, every group size).
 *   bw_weight  one fp32 sum per weight element, as eg_conv.c, written fp32.
 */
#include <stddef.h>

#include "eg_conv_f16.h"

#define EG_F16_ROW 64

static inline int eg_first_in(int off, int step)
{
    return off >= 0 ? 0 : (-off + step - 1) / step;
}

static inline int eg_end_in(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

/* ceil(a / b) for b > 0 and any sign of a */
static inline int eg_ceil_div(int a, int b)
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

void conv2d_f16_fw(eg_f16 *restrict y, const eg_f16 *restrict x, const eg_f16 *restrict w,
                   const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                   int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    float acc[EG_F16_ROW];
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            const int g = m / Mg;
            const eg_f16 *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW; /* [Cg,H,W] */
            const eg_f16 *wm = w + (ptrdiff_t)m * Cg * KK;                      /* [Cg,KH,KW] */
            eg_f16 *ym = y + ((ptrdiff_t)n * M + m) * OHW;
            const float bias = b ? b[m] : 0.0f;
            for (int oh = 0; oh < OH; oh++) {
                const int ih0 = oh * sh - pt;
                const int kh0 = eg_first_in(ih0, dil_h), kh1 = eg_end_in(ih0, dil_h, H, KH);
                for (int o0 = 0; o0 < OW; o0 += EG_F16_ROW) {
                    const int o1 = OW - o0 < EG_F16_ROW ? OW : o0 + EG_F16_ROW;
                    for (int o = 0; o < o1 - o0; o++)
                        acc[o] = bias;
                    for (int kw = 0; kw < KW; kw++) {
                        const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                        int lo = eg_first_in(offw, sw), hi = eg_end_in(offw, sw, W, OW);
                        lo = lo > o0 ? lo : o0;
                        hi = hi < o1 ? hi : o1;
                        if (lo >= hi)
                            continue;
                        for (int c = 0; c < Cg; c++) {
                            for (int kh = kh0; kh < kh1; kh++) {
                                const float wv = eg_ldh(wm + c * KK + kh * KW + kw);
                                const eg_f16 *xr = xg + c * HW + (ptrdiff_t)(ih0 + kh * dil_h) * W + offw;
                                for (int ow = lo; ow < hi; ow++)
                                    acc[ow - o0] += wv * eg_ldh(xr + (ptrdiff_t)ow * sw);
                            }
                        }
                    }
                    eg_f16 *yr = ym + (ptrdiff_t)oh * OW + o0;
                    for (int o = 0; o < o1 - o0; o++)
                        eg_sth(yr + o, acc[o]);
                }
            }
        }
    }
}

void conv2d_f16_bw_input(eg_f16 *restrict dx, const eg_f16 *restrict dy, const eg_f16 *restrict w,
                         int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                         int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    /* dx[n,ci,ih,iw] = sum over (m in group, kh, kw, oh, ow) with ih = oh*sh - pt + kh*dil_h and
     * iw = ow*sw - pl + kw*dil_w of dy[n,m,oh,ow] * w[m,c,kh,kw] (chain rule of the forward). */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    float acc[EG_F16_ROW];
    for (int n = 0; n < N; n++) {
        for (int ci = 0; ci < C; ci++) {
            const int g = ci / Cg, c = ci - g * Cg;
            const eg_f16 *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW; /* [Mg,OH,OW] */
            const eg_f16 *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK; /* w[g*Mg, c], m step Cg*KK */
            eg_f16 *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
            for (int ih = 0; ih < H; ih++) {
                for (int i0 = 0; i0 < W; i0 += EG_F16_ROW) {
                    const int i1 = W - i0 < EG_F16_ROW ? W : i0 + EG_F16_ROW;
                    for (int i = 0; i < i1 - i0; i++)
                        acc[i] = 0.0f;
                    for (int kh = 0; kh < KH; kh++) {
                        const int th = ih + pt - kh * dil_h;
                        if (th < 0 || th % sh != 0 || th / sh >= OH)
                            continue;
                        const eg_f16 *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                        for (int kw = 0; kw < KW; kw++) {
                            const int offw = kw * dil_w - pl; /* iw = ow*sw + offw in [i0, i1) */
                            int lo = eg_ceil_div(i0 - offw, sw), hi = eg_ceil_div(i1 - offw, sw);
                            lo = lo > 0 ? lo : 0;
                            hi = hi < OW ? hi : OW;
                            if (lo >= hi)
                                continue;
                            float *ar = acc + offw - i0;
                            for (int mg = 0; mg < Mg; mg++) {
                                const float wv = eg_ldh(wg + (ptrdiff_t)mg * Cg * KK + kh * KW + kw);
                                const eg_f16 *d = dyr + mg * OHW;
                                for (int ow = lo; ow < hi; ow++)
                                    ar[ow * sw] += wv * eg_ldh(d + ow);
                            }
                        }
                    }
                    eg_f16 *dxr = dxc + (ptrdiff_t)ih * W + i0;
                    for (int i = 0; i < i1 - i0; i++)
                        eg_sth(dxr + i, acc[i]);
                }
            }
        }
    }
}

static inline void eg_bw_weight_f16(float *restrict dwt, eg_f16 *restrict dwt16, const eg_f16 *restrict dy,
                                    const eg_f16 *restrict x, int N, int C, int H, int W, int M, int OH, int OW,
                                    int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                                    int M_upd, int Cg_upd, int Cx)
{
    /* dw[m,c,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,g*Cg+c,ih,iw] over the taps inside the image */
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
                        const eg_f16 *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                        const eg_f16 *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                        for (int oh = oh0; oh < oh1; oh++) {
                            const eg_f16 *dyr = dym + (ptrdiff_t)oh * OW;
                            const eg_f16 *xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                            for (int ow = ow0; ow < ow1; ow++)
                                acc += eg_ldh(dyr + ow) * eg_ldh(xr + (ptrdiff_t)ow * sw);
                        }
                    }
                    const ptrdiff_t o = (((ptrdiff_t)m * Cg_upd + c) * KH + kh) * KW + kw;
                    if (dwt16)
                        eg_sth(dwt16 + o, acc);
                    else
                        dwt[o] = acc;
                }
            }
        }
    }
}

void conv2d_f16_bw_weight(float *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                          int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                          int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                          int M_upd, int Cg_upd, int Cx)
{
    eg_bw_weight_f16(dwt, NULL, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                     M_upd, Cg_upd, Cx);
}

void conv2d_f16_bw_weight_y16(eg_f16 *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                              int M_upd, int Cg_upd, int Cx)
{
    eg_bw_weight_f16(NULL, dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                     M_upd, Cg_upd, Cx);
}
