/* eg_conv_f16_zvfh.c — RVV (zve32f + zvfh) variants of the native fp16 convolutions and GEMM
 * (contract: eg_conv_f16.h, eg_gemm_f16.h; same signatures plus `_zvfh`).
 *
 * The loops are those of eg_conv_rvv.c / eg_gemm_rvv.c with fp16 operands: an fp16 vector is
 * loaded with vle16/vlse16 at LMUL 4 and multiplied into fp32 accumulators at LMUL 8 by the
 * widening vfwmacc (.vf with an fp16 weight scalar read by flh, .vv for the weight gradient),
 * so one instruction covers as many outputs as the fp32 RVV kernels at half the bytes moved.
 * An fp16 output is rounded once (vfncvt.f.f.w, round to nearest even) when its sum is complete:
 * where only part of a chunk sees a tap (the image border), the chunk's fp32 sums go through a
 * 64-float row on the stack instead of being stored and re-read in fp16.
 */
#include <riscv_vector.h>
#include <stddef.h>

#include "eg_f16_zvfh.h"

#define EG_ROW 64

typedef vfloat32m8_t eg_vf;
typedef vfloat16m4_t eg_vh;
typedef _Float16 eg_h;

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

static inline int eg_ceil_div(int a, int b)
{
    return a >= 0 ? (a + b - 1) / b : -((-a) / b);
}

static inline eg_vh eg_vload16(const eg_h *p, ptrdiff_t stride, size_t vl)
{
    return stride == 1 ? __riscv_vle16_v_f16m4(p, vl) : __riscv_vlse16_v_f16m4(p, stride * 2, vl);
}

static inline void eg_vstore16(eg_h *p, eg_vf acc, size_t vl)
{
    __riscv_vse16_v_f16m4(p, __riscv_vfncvt_f_f_w_f16m4(acc, vl), vl);
}

static inline float eg_vsum(eg_vf acc, size_t vlmax)
{
    vfloat32m1_t zero = __riscv_vfmv_s_f_f32m1(0.0f, 1);
    return __riscv_vfmv_f_s_f32m1_f32(__riscv_vfredusum_vs_f32m8_f32m1(acc, zero, vlmax));
}

static inline size_t eg_vl_row(int n)
{
    return __riscv_vsetvl_e32m8((size_t)(n < EG_ROW ? n : EG_ROW));
}

static inline int eg_is_pointwise(int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl)
{
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
}

void conv2d_f16_fw_zvfh(eg_f16 *restrict y_, const eg_f16 *restrict x_, const eg_f16 *restrict w_,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                        int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    eg_h *y = (eg_h *)(void *)y_;
    const eg_h *x = (const eg_h *)(const void *)x_, *w = (const eg_h *)(const void *)w_;
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    float row[EG_ROW];
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            const int g = m / Mg;
            const eg_h *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW;
            const eg_h *wm = w + (ptrdiff_t)m * Cg * KK;
            eg_h *ym = y + ((ptrdiff_t)n * M + m) * OHW;
            const float bias = b ? b[m] : 0.0f;
            size_t vl;
            if (pointwise) {
                for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                    vl = __riscv_vsetvl_e32m8((size_t)(HW - p));
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(bias, vl);
                    for (int c = 0; c < Cg; c++)
                        acc = __riscv_vfwmacc_vf_f32m8(acc, wm[c], __riscv_vle16_v_f16m4(xg + c * HW + p, vl), vl);
                    eg_vstore16(ym + p, acc, vl);
                }
                continue;
            }
            for (int oh = 0; oh < OH; oh++) {
                const int ih0 = oh * sh - pt;
                const int kh0 = eg_first_in(ih0, dil_h), kh1 = eg_end_in(ih0, dil_h, H, KH);
                eg_h *yr = ym + (ptrdiff_t)oh * OW;
                for (int o0 = 0; o0 < OW; o0 += (int)vl) {
                    vl = eg_vl_row(OW - o0);
                    const int o1 = o0 + (int)vl;
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(bias, vl);
                    int partial = 0;
                    for (int kw = 0; kw < KW; kw++) { /* taps inside the image for the whole chunk */
                        const int offw = kw * dil_w - pl;
                        const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                        const int lo = ow0 > o0 ? ow0 : o0, hi = ow1 < o1 ? ow1 : o1;
                        if (lo >= hi)
                            continue;
                        if (lo != o0 || hi != o1) {
                            partial = 1;
                            continue;
                        }
                        for (int c = 0; c < Cg; c++) {
                            const eg_h *xc = xg + c * HW + (ptrdiff_t)o0 * sw + offw;
                            const eg_h *wc = wm + c * KK + kw;
                            for (int kh = kh0; kh < kh1; kh++)
                                acc = __riscv_vfwmacc_vf_f32m8(acc, wc[kh * KW],
                                                               eg_vload16(xc + (ptrdiff_t)(ih0 + kh * dil_h) * W, sw, vl), vl);
                        }
                    }
                    if (!partial) {
                        eg_vstore16(yr + o0, acc, vl);
                        continue;
                    }
                    __riscv_vse32_v_f32m8(row, acc, vl);
                    for (int kw = 0; kw < KW; kw++) { /* border taps: outputs lo..hi-1 of the chunk */
                        const int offw = kw * dil_w - pl;
                        const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                        const int lo = ow0 > o0 ? ow0 : o0, hi = ow1 < o1 ? ow1 : o1;
                        if (lo >= hi || (lo == o0 && hi == o1))
                            continue;
                        const size_t vp = __riscv_vsetvl_e32m8((size_t)(hi - lo));
                        eg_vf part = __riscv_vle32_v_f32m8(row + (lo - o0), vp);
                        for (int c = 0; c < Cg; c++) {
                            const eg_h *xc = xg + c * HW + (ptrdiff_t)lo * sw + offw;
                            const eg_h *wc = wm + c * KK + kw;
                            for (int kh = kh0; kh < kh1; kh++)
                                part = __riscv_vfwmacc_vf_f32m8(part, wc[kh * KW],
                                                                eg_vload16(xc + (ptrdiff_t)(ih0 + kh * dil_h) * W, sw, vp), vp);
                        }
                        __riscv_vse32_v_f32m8(row + (lo - o0), part, vp);
                    }
                    eg_vstore16(yr + o0, __riscv_vle32_v_f32m8(row, vl), vl);
                }
            }
        }
    }
}

void conv2d_f16_bw_input_zvfh(eg_f16 *restrict dx_, const eg_f16 *restrict dy_, const eg_f16 *restrict w_,
                              int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                              int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    eg_h *dx = (eg_h *)(void *)dx_;
    const eg_h *dy = (const eg_h *)(const void *)dy_, *w = (const eg_h *)(const void *)w_;
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    float row[EG_ROW];
    size_t vl;
    for (int n = 0; n < N; n++) {
        for (int ci = 0; ci < C; ci++) {
            const int g = ci / Cg, c = ci - g * Cg;
            const eg_h *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW; /* [Mg,OH,OW] */
            const eg_h *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK; /* w[g*Mg, c], m step Cg*KK */
            eg_h *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
            if (pointwise) { /* dx[ci, p] = sum_{m in group} w[m, c] * dy[m, p] */
                for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                    vl = __riscv_vsetvl_e32m8((size_t)(HW - p));
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                    for (int mg = 0; mg < Mg; mg++)
                        acc = __riscv_vfwmacc_vf_f32m8(acc, wg[(ptrdiff_t)mg * Cg], __riscv_vle16_v_f16m4(dyg + mg * OHW + p, vl), vl);
                    eg_vstore16(dxc + p, acc, vl);
                }
                continue;
            }
            for (int ih = 0; ih < H; ih++) {
                eg_h *dxr = dxc + (ptrdiff_t)ih * W;
                for (int i0 = 0; i0 < W; i0 += (int)vl) {
                    vl = eg_vl_row(W - i0);
                    const int i1 = i0 + (int)vl;
                    if (sw != 1 || Mg == 1) { /* scatter each dy row segment into the fp32 row, strided by sw
                                                 * (depthwise too: one vfwmacc per tap does not pay for
                                                 * the gather's bookkeeping, as in eg_conv_rvv.c) */
                        __riscv_vse32_v_f32m8(row, __riscv_vfmv_v_f_f32m8(0.0f, vl), vl);
                        for (int kh = 0; kh < KH; kh++) {
                            const int th = ih + pt - kh * dil_h;
                            if (th < 0 || th % sh != 0 || th / sh >= OH)
                                continue;
                            const eg_h *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                            for (int kw = 0; kw < KW; kw++) {
                                const int offw = kw * dil_w - pl; /* iw = ow*sw + offw in [i0, i1) */
                                int lo, hi;
                                if (sw == 1) {
                                    lo = i0 - offw;
                                    hi = i1 - offw;
                                } else {
                                    lo = eg_ceil_div(i0 - offw, sw);
                                    hi = eg_ceil_div(i1 - offw, sw);
                                }
                                lo = lo > 0 ? lo : 0;
                                hi = hi < OW ? hi : OW;
                                if (lo >= hi)
                                    continue;
                                const size_t vp = __riscv_vsetvl_e32m8((size_t)(hi - lo)); /* <= EG_ROW */
                                float *rp = row + lo * sw + offw - i0;
                                eg_vf part = sw == 1 ? __riscv_vle32_v_f32m8(rp, vp)
                                                     : __riscv_vlse32_v_f32m8(rp, (ptrdiff_t)sw * 4, vp);
                                const eg_h *wk = wg + kh * KW + kw;
                                for (int mg = 0; mg < Mg; mg++)
                                    part = __riscv_vfwmacc_vf_f32m8(part, wk[(ptrdiff_t)mg * Cg * KK],
                                                                    __riscv_vle16_v_f16m4(dyr + mg * OHW + lo, vp), vp);
                                if (sw == 1)
                                    __riscv_vse32_v_f32m8(rp, part, vp);
                                else
                                    __riscv_vsse32_v_f32m8(rp, (ptrdiff_t)sw * 4, part, vp);
                            }
                        }
                        vl = __riscv_vsetvl_e32m8((size_t)(i1 - i0));
                        eg_vstore16(dxr + i0, __riscv_vle32_v_f32m8(row, vl), vl);
                        continue;
                    }
                    /* sw == 1: gathered in registers, tap (kh, kw) reads dy[m, oh, iw - offw] */
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                    int partial = 0;
                    for (int kh = 0; kh < KH; kh++) {
                        const int th = ih + pt - kh * dil_h;
                        if (th < 0 || th % sh != 0 || th / sh >= OH)
                            continue;
                        const eg_h *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                        for (int kw = 0; kw < KW; kw++) {
                            const int offw = kw * dil_w - pl;
                            const int lo = offw > i0 ? offw : i0;
                            const int hi = offw + OW < i1 ? offw + OW : i1;
                            if (lo >= hi)
                                continue;
                            if (lo != i0 || hi != i1) {
                                partial = 1;
                                continue;
                            }
                            const eg_h *wk = wg + kh * KW + kw;
                            for (int mg = 0; mg < Mg; mg++)
                                acc = __riscv_vfwmacc_vf_f32m8(acc, wk[(ptrdiff_t)mg * Cg * KK],
                                                               __riscv_vle16_v_f16m4(dyr + mg * OHW + i0 - offw, vl), vl);
                        }
                    }
                    if (!partial) {
                        eg_vstore16(dxr + i0, acc, vl);
                        continue;
                    }
                    __riscv_vse32_v_f32m8(row, acc, vl);
                    for (int kh = 0; kh < KH; kh++) { /* border taps: part of the chunk only */
                        const int th = ih + pt - kh * dil_h;
                        if (th < 0 || th % sh != 0 || th / sh >= OH)
                            continue;
                        const eg_h *dyr = dyg + (ptrdiff_t)(th / sh) * OW;
                        for (int kw = 0; kw < KW; kw++) {
                            const int offw = kw * dil_w - pl;
                            const int lo = offw > i0 ? offw : i0;
                            const int hi = offw + OW < i1 ? offw + OW : i1;
                            if (lo >= hi || (lo == i0 && hi == i1))
                                continue;
                            const size_t vp = __riscv_vsetvl_e32m8((size_t)(hi - lo));
                            const eg_h *wk = wg + kh * KW + kw;
                            eg_vf part = __riscv_vle32_v_f32m8(row + (lo - i0), vp);
                            for (int mg = 0; mg < Mg; mg++)
                                part = __riscv_vfwmacc_vf_f32m8(part, wk[(ptrdiff_t)mg * Cg * KK],
                                                                __riscv_vle16_v_f16m4(dyr + mg * OHW + lo - offw, vp), vp);
                            __riscv_vse32_v_f32m8(row + (lo - i0), part, vp);
                        }
                    }
                    vl = __riscv_vsetvl_e32m8((size_t)(i1 - i0));
                    eg_vstore16(dxr + i0, __riscv_vle32_v_f32m8(row, vl), vl);
                }
            }
        }
    }
}

static inline void eg_bw_weight_zvfh(float *restrict dwt, eg_h *restrict dwt16, const eg_f16 *restrict dy_,
                                     const eg_f16 *restrict x_, int N, int C, int H, int W, int M, int OH, int OW,
                                     int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                                     int M_upd, int Cg_upd, int Cx)
{
    const eg_h *dy = (const eg_h *)(const void *)dy_, *x = (const eg_h *)(const void *)x_;
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const size_t vlmax = __riscv_vsetvlmax_e32m8();
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    size_t vl;
    for (int m = 0; m < M_upd; m++) {
        const int g = m / Mg;
        for (int c = 0; c < Cg_upd; c++) {
            const int ci = g * Cg + c;
            if (pointwise) {
                eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                for (int n = 0; n < N; n++) {
                    const eg_h *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                    const eg_h *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                    for (ptrdiff_t p = 0; p < HW; p += (ptrdiff_t)vl) {
                        vl = __riscv_vsetvl_e16m4((size_t)(HW - p));
                        acc = __riscv_vfwmacc_vv_f32m8_tu(acc, __riscv_vle16_v_f16m4(dym + p, vl),
                                                          __riscv_vle16_v_f16m4(xc + p, vl), vl);
                    }
                }
                const float sum = eg_vsum(acc, vlmax);
                if (dwt16)
                    dwt16[(ptrdiff_t)m * Cg_upd + c] = (eg_h)sum;
                else
                    dwt[(ptrdiff_t)m * Cg_upd + c] = sum;
                continue;
            }
            for (int kh = 0; kh < KH; kh++) {
                const int offh = kh * dil_h - pt;
                const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl;
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                    for (int n = 0; n < N; n++) {
                        const eg_h *dym = dy + ((ptrdiff_t)n * M + m) * OHW;
                        const eg_h *xc = x + ((ptrdiff_t)n * Cx + ci) * HW;
                        for (int oh = oh0; oh < oh1; oh++) {
                            const eg_h *dyr = dym + (ptrdiff_t)oh * OW;
                            const eg_h *xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                            for (int o = ow0; o < ow1; o += (int)vl) {
                                vl = __riscv_vsetvl_e16m4((size_t)(ow1 - o));
                                acc = __riscv_vfwmacc_vv_f32m8_tu(acc, __riscv_vle16_v_f16m4(dyr + o, vl),
                                                                  eg_vload16(xr + (ptrdiff_t)o * sw, sw, vl), vl);
                            }
                        }
                    }
                    const ptrdiff_t o = (((ptrdiff_t)m * Cg_upd + c) * KH + kh) * KW + kw;
                    const float sum = eg_vsum(acc, vlmax);
                    if (dwt16)
                        dwt16[o] = (eg_h)sum;
                    else
                        dwt[o] = sum;
                }
            }
        }
    }
}

void conv2d_f16_bw_weight_zvfh(float *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                               int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                               int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                               int M_upd, int Cg_upd, int Cx)
{
    eg_bw_weight_zvfh(dwt, NULL, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                      M_upd, Cg_upd, Cx);
}

void conv2d_f16_bw_weight_y16_zvfh(eg_f16 *restrict dwt, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                                   int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW,
                                   int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                                   int M_upd, int Cg_upd, int Cx)
{
    eg_bw_weight_zvfh(NULL, (eg_h *)(void *)dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h,
                      dil_w, G, M_upd, Cg_upd, Cx);
}

/* GEMM: rows (a vector of outputs y[m, n0..] accumulates a[m,k] * b[k, n0..]) or, when transB
 * and K is long against N, dots (each y[m,n] a vector of partial sums over k, reduced once). */
static inline void eg_gemm_f16_zvfh(eg_h *restrict y16, float *restrict y32, const eg_h *restrict a,
                                    const eg_h *restrict b, const float *restrict c, int batch, int M, int N,
                                    int K, int transA, int transB, float alpha, float beta, int a_bs, int b_bs,
                                    int c_sm, int c_sn)
{
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    const size_t vlmax = __riscv_vsetvlmax_e32m8();
    const long rows_cost = (long)((N + (int)vlmax - 1) / (int)vlmax) * K * 3;
    const long dots_cost = (long)N * (((K + (int)vlmax - 1) / (int)vlmax) * 3 + 6);
    const int dots = transB && dots_cost < rows_cost;
    size_t vl;
    for (int i = 0; i < batch; i++) {
        const eg_h *ai = a + (ptrdiff_t)i * a_bs;
        const eg_h *bi = b + (ptrdiff_t)i * b_bs;
        const ptrdiff_t yi = (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            const eg_h *arow = ai + m * am;
            const ptrdiff_t yrow = yi + (ptrdiff_t)m * N;
            const float *crow = use_c ? c + (ptrdiff_t)m * c_sm : NULL;
            if (dots) {
                for (int n = 0; n < N; n++) {
                    const eg_h *bcol = bi + n * bn;
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                    for (int k = 0; k < K; k += (int)vl) {
                        vl = __riscv_vsetvl_e16m4((size_t)(K - k));
                        acc = __riscv_vfwmacc_vv_f32m8_tu(acc, eg_vload16(arow + k * ak, ak, vl),
                                                          __riscv_vle16_v_f16m4(bcol + k, vl), vl);
                    }
                    const float s = eg_vsum(acc, vlmax);
                    const float v = use_c ? alpha * s + beta * crow[(ptrdiff_t)n * c_sn] : alpha * s;
                    if (y16)
                        y16[yrow + n] = (eg_h)v;
                    else
                        y32[yrow + n] = v;
                }
                continue;
            }
            for (int n0 = 0; n0 < N; n0 += (int)vl) {
                vl = __riscv_vsetvl_e32m8((size_t)(N - n0));
                eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                for (int k = 0; k < K; k++)
                    acc = __riscv_vfwmacc_vf_f32m8(acc, arow[k * ak], eg_vload16(bi + k * bk + n0 * bn, bn, vl), vl);
                if (use_c) {
                    const eg_vf cv = __riscv_vlse32_v_f32m8(crow + (ptrdiff_t)n0 * c_sn, (ptrdiff_t)c_sn * 4, vl);
                    acc = __riscv_vfmacc_vf_f32m8(__riscv_vfmul_vf_f32m8(acc, alpha, vl), beta, cv, vl);
                } else if (alpha != 1.0f) {
                    acc = __riscv_vfmul_vf_f32m8(acc, alpha, vl);
                }
                if (y16)
                    eg_vstore16(y16 + yrow + n0, acc, vl);
                else
                    __riscv_vse32_v_f32m8(y32 + yrow + n0, acc, vl);
            }
        }
    }
}

void gemm_f16_zvfh(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_zvfh((eg_h *)(void *)y, NULL, (const eg_h *)(const void *)a, (const eg_h *)(const void *)b, c,
                     batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn);
}

void gemm_f16_y32_zvfh(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                       float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_zvfh(NULL, y, (const eg_h *)(const void *)a, (const eg_h *)(const void *)b, c,
                     batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn);
}
