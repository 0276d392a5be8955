/* eg_conv_rvv.c — RVV (zve32f, LMUL 8) variants of the three convolution kernels.
 *
 * Same dimension legend, index map and contract as eg_conv.c; only the loop structure differs:
 * the vector runs along an output (or input) row, whose elements are sw floats apart in x,
 * so every inner statement is one unit-stride or strided vector load plus one vfmacc for up to
 * VLMAX (32 at VLEN 128) outputs.
 *
 *   fw         per output row chunk: accumulate in registers the taps kw that are inside the
 *              image for the whole chunk, store, then add the border taps (valid for only part
 *              of the chunk) with a shorter vl straight into y.
 *   bw_input   sw == 1 and several output channels per group: per dx row chunk, the taps
 *              gathered in registers like fw (dy rows are contiguous under the chunk), border taps
 *              added after the store; otherwise (strided, or depthwise, where one vfmacc per tap
 *              does not pay for the gather's bookkeeping: measured on DS-CNN) a scatter of each dy
 *              row into the dx row of every tap (dx row segment += w * dy, strided by sw).
 *   bw_weight  per weight element, a vector of partial sums over (n, oh, ow) reduced once.
 *   pointwise  (1x1, stride 1, no padding, same size): the whole H*W plane is one vector run.
 */
#include <riscv_vector.h>
#include <stddef.h>

#include "eg_conv_rvv.h"

typedef vfloat32m8_t eg_vf;

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

static inline eg_vf eg_vload(const float *p, int stride, size_t vl)
{
    return stride == 1 ? __riscv_vle32_v_f32m8(p, vl) : __riscv_vlse32_v_f32m8(p, (ptrdiff_t)stride * 4, vl);
}

static inline void eg_vstore(float *p, int stride, eg_vf v, size_t vl)
{
    if (stride == 1)
        __riscv_vse32_v_f32m8(p, v, vl);
    else
        __riscv_vsse32_v_f32m8(p, (ptrdiff_t)stride * 4, v, vl);
}

static inline float eg_vsum(eg_vf acc, size_t vlmax)
{
    vfloat32m1_t zero = __riscv_vfmv_s_f_f32m1(0.0f, 1);
    return __riscv_vfmv_f_s_f32m1_f32(__riscv_vfredusum_vs_f32m8_f32m1(acc, zero, vlmax));
}

static inline int eg_is_pointwise(int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl)
{
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
}

void conv2d_f32_fw_rvv(float *restrict y, const float *restrict x, const float *restrict w,
                       const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                       int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            const int g = m / Mg;
            const float *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW; /* [Cg,H,W] */
            const float *wm = w + (ptrdiff_t)m * Cg * KK;                      /* [Cg,KH,KW] */
            float *ym = y + ((ptrdiff_t)n * M + m) * OHW;
            const float bias = b ? b[m] : 0.0f;
            if (pointwise) { /* y[m, p] = b[m] + sum_c w[m, c] * x[c, p] over the flat plane */
                size_t vl;
                for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                    vl = __riscv_vsetvl_e32m8((size_t)(HW - p));
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(bias, vl);
                    for (int c = 0; c < Cg; c++)
                        acc = __riscv_vfmacc_vf_f32m8(acc, wm[c], __riscv_vle32_v_f32m8(xg + c * HW + p, vl), vl);
                    __riscv_vse32_v_f32m8(ym + p, acc, vl);
                }
                continue;
            }
            for (int oh = 0; oh < OH; oh++) {
                const int ih0 = oh * sh - pt;
                const int kh0 = eg_first_in(ih0, dil_h), kh1 = eg_end_in(ih0, dil_h, H, KH);
                float *yr = ym + (ptrdiff_t)oh * OW;
                size_t vl;
                for (int o0 = 0; o0 < OW; o0 += (int)vl) {
                    vl = __riscv_vsetvl_e32m8((size_t)(OW - o0));
                    const int o1 = o0 + (int)vl;
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(bias, vl);
                    int partial = 0;
                    /* taps inside the image for every output of the chunk: in registers */
                    for (int kw = 0; kw < KW; kw++) {
                        const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                        const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                        const int lo = ow0 > o0 ? ow0 : o0, hi = ow1 < o1 ? ow1 : o1;
                        if (lo >= hi)
                            continue;
                        if (lo != o0 || hi != o1) {
                            partial = 1;
                            continue;
                        }
                        for (int c = 0; c < Cg; c++) {
                            const float *xc = xg + c * HW + (ptrdiff_t)o0 * sw + offw;
                            const float *wc = wm + c * KK + kw;
                            for (int kh = kh0; kh < kh1; kh++) {
                                const eg_vf xv = eg_vload(xc + (ptrdiff_t)(ih0 + kh * dil_h) * W, sw, vl);
                                acc = __riscv_vfmacc_vf_f32m8(acc, wc[kh * KW], xv, vl);
                            }
                        }
                    }
                    __riscv_vse32_v_f32m8(yr + o0, acc, vl);
                    if (!partial)
                        continue;
                    /* border taps: only outputs lo..hi-1 of the chunk see the image */
                    for (int kw = 0; kw < KW; kw++) {
                        const int offw = kw * dil_w - pl;
                        const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                        const int lo = ow0 > o0 ? ow0 : o0, hi = ow1 < o1 ? ow1 : o1;
                        if (lo >= hi || (lo == o0 && hi == o1))
                            continue;
                        const size_t vp = __riscv_vsetvl_e32m8((size_t)(hi - lo));
                        eg_vf part = __riscv_vle32_v_f32m8(yr + lo, vp);
                        for (int c = 0; c < Cg; c++) {
                            const float *xc = xg + c * HW + (ptrdiff_t)lo * sw + offw;
                            const float *wc = wm + c * KK + kw;
                            for (int kh = kh0; kh < kh1; kh++) {
                                const eg_vf xv = eg_vload(xc + (ptrdiff_t)(ih0 + kh * dil_h) * W, sw, vp);
                                part = __riscv_vfmacc_vf_f32m8(part, wc[kh * KW], xv, vp);
                            }
                        }
                        __riscv_vse32_v_f32m8(yr + lo, part, vp);
                    }
                }
            }
        }
    }
}

void conv2d_f32_bw_input_rvv(float *restrict dx, const float *restrict dy, const float *restrict w,
                             int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                             int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    /* Forward: y[n,m,oh,ow] += x[n,g*Cg+c,ih,iw] * w[m,c,kh,kw], ih = oh*sh - pt + kh*dil_h,
     * iw = ow*sw - pl + kw*dil_w. Chain rule: dx[n,ci,ih,iw] += dy[n,m,oh,ow] * w[m,c,kh,kw]
     * for every such pair; here scattered row segment by row segment (dx zeroed first). */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    size_t vl;
    if (eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl)) {
        /* dx[ci, p] = sum_{m in group} w[m, c] * dy[m, p] */
        for (int n = 0; n < N; n++) {
            for (int ci = 0; ci < C; ci++) {
                const int g = ci / Cg, c = ci - g * Cg;
                const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW;
                const float *wg = w + (ptrdiff_t)g * Mg * Cg + c; /* w[g*Mg + mg, c] at mg*Cg */
                float *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
                for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                    vl = __riscv_vsetvl_e32m8((size_t)(HW - p));
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                    for (int mg = 0; mg < Mg; mg++)
                        acc = __riscv_vfmacc_vf_f32m8(acc, wg[mg * Cg], __riscv_vle32_v_f32m8(dyg + mg * OHW + p, vl), vl);
                    __riscv_vse32_v_f32m8(dxc + p, acc, vl);
                }
            }
        }
        return;
    }
    if (sw == 1 && Mg > 1) {
        /* Gathered per dx row chunk, in registers: tap (kh, kw) reads dy[m, oh, iw - offw] with
         * oh = (ih + pt - kh*dil_h) / sh when that divides, offw = kw*dil_w - pl. */
        for (int n = 0; n < N; n++) {
            for (int ci = 0; ci < C; ci++) {
                const int g = ci / Cg, c = ci - g * Cg;
                const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW; /* [Mg,OH,OW] */
                const float *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK; /* w[g*Mg, c], m step Cg*KK */
                float *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
                for (int ih = 0; ih < H; ih++) {
                    float *dxr = dxc + (ptrdiff_t)ih * W;
                    for (int i0 = 0; i0 < W; i0 += (int)vl) {
                        vl = __riscv_vsetvl_e32m8((size_t)(W - i0));
                        const int i1 = i0 + (int)vl;
                        eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                        int partial = 0;
                        for (int kh = 0; kh < KH; kh++) {
                            const int th = ih + pt - kh * dil_h;
                            if (th < 0 || th % sh != 0 || th / sh >= OH)
                                continue;
                            const float *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                            for (int kw = 0; kw < KW; kw++) {
                                const int offw = kw * dil_w - pl; /* iw = ow + offw */
                                const int lo = offw > i0 ? offw : i0;
                                const int hi = offw + OW < i1 ? offw + OW : i1;
                                if (lo >= hi)
                                    continue;
                                if (lo != i0 || hi != i1) {
                                    partial = 1;
                                    continue;
                                }
                                const float *wk = wg + kh * KW + kw;
                                for (int mg = 0; mg < Mg; mg++)
                                    acc = __riscv_vfmacc_vf_f32m8(acc, wk[(ptrdiff_t)mg * Cg * KK],
                                                                  __riscv_vle32_v_f32m8(dyr + mg * OHW + i0 - offw, vl), vl);
                            }
                        }
                        __riscv_vse32_v_f32m8(dxr + i0, acc, vl);
                        if (!partial)
                            continue;
                        for (int kh = 0; kh < KH; kh++) { /* border taps: part of the chunk only */
                            const int th = ih + pt - kh * dil_h;
                            if (th < 0 || th % sh != 0 || th / sh >= OH)
                                continue;
                            const float *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                            for (int kw = 0; kw < KW; kw++) {
                                const int offw = kw * dil_w - pl;
                                const int lo = offw > i0 ? offw : i0;
                                const int hi = offw + OW < i1 ? offw + OW : i1;
                                if (lo >= hi || (lo == i0 && hi == i1))
                                    continue;
                                const size_t vp = __riscv_vsetvl_e32m8((size_t)(hi - lo));
                                const float *wk = wg + kh * KW + kw;
                                eg_vf part = __riscv_vle32_v_f32m8(dxr + lo, vp);
                                for (int mg = 0; mg < Mg; mg++)
                                    part = __riscv_vfmacc_vf_f32m8(part, wk[(ptrdiff_t)mg * Cg * KK],
                                                                   __riscv_vle32_v_f32m8(dyr + mg * OHW + lo - offw, vp), vp);
                                __riscv_vse32_v_f32m8(dxr + lo, part, vp);
                            }
                        }
                    }
                }
            }
        }
        return;
    }
    /* scatter each dy row segment into the dx row of every tap (strided by sw) */
    const ptrdiff_t total = (ptrdiff_t)N * C * HW;
    for (ptrdiff_t p = 0; p < total; p += (ptrdiff_t)vl) {
        vl = __riscv_vsetvl_e32m8((size_t)(total - p));
        __riscv_vse32_v_f32m8(dx + p, __riscv_vfmv_v_f_f32m8(0.0f, vl), vl);
    }
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            const int g = m / Mg;
            const float *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
            for (int c = 0; c < Cg; c++) {
                float *dxc = dx + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg + c) * HW;
                const float *wmc = w + ((ptrdiff_t)m * Cg + c) * KK;
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    if (ow0 >= ow1)
                        continue;
                    for (int oh = 0; oh < OH; oh++) {
                        const int ih0 = oh * sh - pt;
                        const int kh0 = eg_first_in(ih0, dil_h), kh1 = eg_end_in(ih0, dil_h, H, KH);
                        const float *dyr = dym + (ptrdiff_t)oh * OW;
                        for (int kh = kh0; kh < kh1; kh++) {
                            const float wv = wmc[kh * KW + kw];
                            float *dxr = dxc + (ptrdiff_t)(ih0 + kh * dil_h) * W + offw;
                            for (int o = ow0; o < ow1; o += (int)vl) {
                                vl = __riscv_vsetvl_e32m8((size_t)(ow1 - o));
                                eg_vf acc = eg_vload(dxr + (ptrdiff_t)o * sw, sw, vl);
                                acc = __riscv_vfmacc_vf_f32m8(acc, wv, __riscv_vle32_v_f32m8(dyr + o, vl), vl);
                                eg_vstore(dxr + (ptrdiff_t)o * sw, sw, acc, vl);
                            }
                        }
                    }
                }
            }
        }
    }
}

void conv2d_f32_bw_weight_rvv(float *restrict dwt, const float *restrict dy, const float *restrict x,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                              int M_upd, int Cg_upd, int Cx)
{
    /* Forward: y[n,m,oh,ow] += x[n,g*Cg+c,ih,iw] * w[m,c,kh,kw].
     * Chain rule: dw[m,c,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,g*Cg+c,ih,iw] over the taps
     * inside the image: lane-wise partial sums in one vector, reduced once per weight. */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const size_t vlmax = __riscv_vsetvlmax_e32m8();
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    size_t vl;
    for (int m = 0; m < M_upd; m++) {
        const int g = m / Mg;
        for (int c = 0; c < Cg_upd; c++) {
            const int ci = g * Cg + c; /* channel in x; < Cx by the caller's contract */
            if (pointwise) {
                eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                for (int n = 0; n < N; n++) {
                    const float *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                    const float *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                    for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                        vl = __riscv_vsetvl_e32m8((size_t)(HW - p));
                        acc = __riscv_vfmacc_vv_f32m8_tu(acc, __riscv_vle32_v_f32m8(dym + p, vl),
                                                         __riscv_vle32_v_f32m8(xc + p, vl), vl);
                    }
                }
                dwt[(ptrdiff_t)m * Cg_upd + c] = eg_vsum(acc, vlmax);
                continue;
            }
            for (int kh = 0; kh < KH; kh++) {
                const int offh = kh * dil_h - pt; /* ih = oh*sh + offh */
                const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                    for (int n = 0; n < N; n++) {
                        const float *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                        const float *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                        for (int oh = oh0; oh < oh1; oh++) {
                            const float *dyr = dym + (ptrdiff_t)oh * OW;
                            const float *xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                            for (int o = ow0; o < ow1; o += (int)vl) {
                                vl = __riscv_vsetvl_e32m8((size_t)(ow1 - o));
                                acc = __riscv_vfmacc_vv_f32m8_tu(acc, __riscv_vle32_v_f32m8(dyr + o, vl),
                                                                 eg_vload(xr + (ptrdiff_t)o * sw, sw, vl), vl);
                            }
                        }
                    }
                    dwt[(((ptrdiff_t)m * Cg_upd + c) * KH + kh) * KW + kw] = eg_vsum(acc, vlmax);
                }
            }
        }
    }
}
