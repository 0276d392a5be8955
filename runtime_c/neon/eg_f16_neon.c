/* eg_f16_neon.c — NEON variants of the native fp16 convolutions and GEMM (contract:
 * eg_f16_neon.h; algorithms and legend: ../eg_conv_f16.c, ../eg_gemm_f16.c).
 *
 * The loops are the reference ones; their inner loops, which run along a contiguous row, are
 * NEON: 8 fp16 values per load (vld1q_u16, or vld2q_u16 for every other one at stride 2),
 * widened to two fp32 registers (fcvtl, fcvtl2), multiply-added into fp32 row accumulators on
 * the stack (fmla by a scalar weight) or into fp32 dot-product registers (the weight gradient
 * and transB GEMM), and a finished row narrowed back to fp16 once (fcvtn, fcvtn2; round to
 * nearest even, as eg_sth). Other strides keep the reference's scalar loop (hardware scalar
 * conversions).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <arm_neon.h>
#include <stddef.h>

#include "eg_f16_neon.h"

#define EG_F16_ROW 64
#define EG_INLINE static inline __attribute__((always_inline))

EG_INLINE float eg_h2f(const eg_f16 *p) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_dup_u16(p))), 0); }

EG_INLINE void eg_f2h(eg_f16 *p, float v)
{
    vst1_lane_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(vdupq_n_f32(v))), 0);
}

/* 8 fp16 at p, widened: lo = p[0..3], hi = p[4..7] */
#define EG_LD8(p, lo, hi)                                                  \
    do {                                                                   \
        const float16x8_t h_ = vreinterpretq_f16_u16(vld1q_u16(p));        \
        lo = vcvt_f32_f16(vget_low_f16(h_));                               \
        hi = vcvt_high_f32_f16(h_);                                        \
    } while (0)

/* acc[i] += wv * x[i * s] for i < n (s = 1 or 2 vectorized) */
EG_INLINE void eg_axpy_h(float *restrict acc, float wv, const eg_f16 *restrict x, ptrdiff_t s, int n)
{
    int i = 0;
    if (s == 1) {
        for (; i + 8 <= n; i += 8) {
            float32x4_t lo, hi;
            EG_LD8(x + i, lo, hi);
            vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), lo, wv));
            vst1q_f32(acc + i + 4, vfmaq_n_f32(vld1q_f32(acc + i + 4), hi, wv));
        }
        if (i + 4 <= n) {
            const float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
            vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), v, wv));
            i += 4;
        }
    } else if (s == 2) {
        for (; i + 8 <= n; i += 8) {
            const float16x8_t h = vreinterpretq_f16_u16(vld2q_u16(x + 2 * i).val[0]);
            vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), vcvt_f32_f16(vget_low_f16(h)), wv));
            vst1q_f32(acc + i + 4, vfmaq_n_f32(vld1q_f32(acc + i + 4), vcvt_high_f32_f16(h), wv));
        }
        if (i + 4 <= n) {
            const float32x4_t v = vcvt_f32_f16(vreinterpret_f16_u16(vld2_u16(x + 2 * i).val[0]));
            vst1q_f32(acc + i, vfmaq_n_f32(vld1q_f32(acc + i), v, wv));
            i += 4;
        }
    }
    for (; i < n; i++)
        acc[i] += wv * eg_h2f(x + i * s);
}

/* sum_i a[i] * b[i * sb] (a contiguous; sb = 1 vectorized) */
EG_INLINE float eg_dot_h(const eg_f16 *restrict a, const eg_f16 *restrict b, ptrdiff_t sb, int n)
{
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
    int i = 0;
    if (sb == 1)
        for (; i + 8 <= n; i += 8) {
            float32x4_t alo, ahi, blo, bhi;
            EG_LD8(a + i, alo, ahi);
            EG_LD8(b + i, blo, bhi);
            s0 = vfmaq_f32(s0, alo, blo);
            s1 = vfmaq_f32(s1, ahi, bhi);
        }
    if (sb == 1 && i + 4 <= n) {
        s0 = vfmaq_f32(s0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(a + i))),
                       vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(b + i))));
        i += 4;
    }
    float s = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++)
        s += eg_h2f(a + i) * eg_h2f(b + i * sb);
    return s;
}

/* y[i] = acc[i] rounded to fp16 */
EG_INLINE void eg_store_row_h(eg_f16 *restrict y, const float *restrict acc, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x4_t lo = vcvt_f16_f32(vld1q_f32(acc + i));
        vst1q_u16(y + i, vreinterpretq_u16_f16(vcvt_high_f16_f32(lo, vld1q_f32(acc + i + 4))));
    }
    if (i + 4 <= n) {
        vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(acc + i))));
        i += 4;
    }
    for (; i < n; i++)
        eg_f2h(y + i, acc[i]);
}

static inline int eg_first_in(int off, int step) { return off >= 0 ? 0 : (-off + step - 1) / step; }

static inline int eg_end_in(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

static inline int eg_ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/* A pointwise convolution (1x1, stride 1, no padding) is the same sum over one image row of
 * H*W pixels: the kernels then run on H = OH = 1, W = OW = H*W, so the row loops are long
 * (64-output chunks) instead of one per image row (DS-CNN's rows are 5 pixels). */
static inline int eg_pointwise(int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl)
{
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W && H > 1;
}

/* ---- convolutions ------------------------------------------------------------------------ */

void conv2d_f16_fw_neon(eg_f16 *restrict y, const eg_f16 *restrict x, const eg_f16 *restrict w,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                        int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    if (eg_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl)) {
        conv2d_f16_fw_neon(y, x, w, b, N, C, 1, H * W, M, 1, H * W, 1, 1, 1, 1, 0, 0, dil_h, dil_w, G);
        return;
    }
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    float acc[EG_F16_ROW] __attribute__((aligned(16)));
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
                        for (int c = 0; c < Cg; c++)
                            for (int kh = kh0; kh < kh1; kh++) {
                                const float wv = eg_h2f(wm + c * KK + kh * KW + kw);
                                const eg_f16 *xr = xg + c * HW + (ptrdiff_t)(ih0 + kh * dil_h) * W + offw;
                                eg_axpy_h(acc + lo - o0, wv, xr + (ptrdiff_t)lo * sw, sw, hi - lo);
                            }
                    }
                    eg_store_row_h(ym + (ptrdiff_t)oh * OW + o0, acc, o1 - o0);
                }
            }
        }
    }
}

void conv2d_f16_bw_input_neon(eg_f16 *restrict dx, const eg_f16 *restrict dy,
                              const eg_f16 *restrict w, int N, int C, int H, int W, int M, int OH,
                              int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                              int dil_w, int G)
{
    /* dx[n,ci,ih,iw] = sum over (m in group, kh, kw) with ih = oh*sh - pt + kh*dil_h and
     * iw = ow*sw - pl + kw*dil_w of dy[n,m,oh,ow] * w[m,c,kh,kw] */
    if (eg_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl)) {
        conv2d_f16_bw_input_neon(dx, dy, w, N, C, 1, H * W, M, 1, H * W, 1, 1, 1, 1, 0, 0, dil_h, dil_w, G);
        return;
    }
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    float acc[EG_F16_ROW] __attribute__((aligned(16)));
    for (int n = 0; n < N; n++) {
        for (int ci = 0; ci < C; ci++) {
            const int g = ci / Cg, c = ci - g * Cg;
            const eg_f16 *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW;
            const eg_f16 *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK;
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
                            float *ar = acc + offw - i0; /* ar[ow*sw] is dx column ow*sw + offw */
                            for (int mg = 0; mg < Mg; mg++) {
                                const float wv = eg_h2f(wg + (ptrdiff_t)mg * Cg * KK + kh * KW + kw);
                                const eg_f16 *d = dyr + mg * OHW;
                                if (sw == 1) {
                                    eg_axpy_h(ar + lo, wv, d + lo, 1, hi - lo);
                                } else {
                                    for (int ow = lo; ow < hi; ow++)
                                        ar[ow * sw] += wv * eg_h2f(d + ow);
                                }
                            }
                        }
                    }
                    eg_store_row_h(dxc + (ptrdiff_t)ih * W + i0, acc, i1 - i0);
                }
            }
        }
    }
}

void conv2d_f16_bw_weight_neon(float *restrict dwt, const eg_f16 *restrict dy,
                               const eg_f16 *restrict x, int N, int C, int H, int W, int M, int OH,
                               int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                               int dil_w, int G, int M_upd, int Cg_upd, int Cx)
{
    /* dw[m,c,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,g*Cg+c,ih,iw] over the taps inside the image */
    if (eg_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl)) {
        conv2d_f16_bw_weight_neon(dwt, dy, x, N, C, 1, H * W, M, 1, H * W, 1, 1, 1, 1, 0, 0, dil_h, dil_w, G,
                                  M_upd, Cg_upd, Cx);
        return;
    }
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    for (int m = 0; m < M_upd; m++) {
        const int g = m / Mg;
        for (int c = 0; c < Cg_upd; c++) {
            const int ci = g * Cg + c;
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
                        for (int oh = oh0; oh < oh1 && ow0 < ow1; oh++) {
                            const eg_f16 *dyr = dym + (ptrdiff_t)oh * OW;
                            const eg_f16 *xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                            acc += eg_dot_h(dyr + ow0, xr + (ptrdiff_t)ow0 * sw, sw, ow1 - ow0);
                        }
                    }
                    dwt[(((ptrdiff_t)m * Cg_upd + c) * KH + kh) * KW + kw] = acc;
                }
            }
        }
    }
}

/* ---- GEMM -------------------------------------------------------------------------------- */

static void eg_gemm_f16_neon_any(eg_f16 *restrict y16, float *restrict y32, const eg_f16 *restrict a,
                                 const eg_f16 *restrict b, const float *restrict c, int batch, int M,
                                 int N, int K, int transA, int transB, float alpha, float beta,
                                 int a_bs, int b_bs, int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    float acc[EG_F16_ROW] __attribute__((aligned(16)));
    for (int i = 0; i < batch; i++) {
        const eg_f16 *ai = a + (ptrdiff_t)i * a_bs;
        const eg_f16 *bi = b + (ptrdiff_t)i * b_bs;
        const ptrdiff_t yi = (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            const eg_f16 *arow = ai + m * am;
            const ptrdiff_t yrow = yi + (ptrdiff_t)m * N;
            const float *crow = use_c ? c + (ptrdiff_t)m * c_sm : NULL;
            for (int n0 = 0; n0 < N; n0 += EG_F16_ROW) {
                const int n1 = N - n0 < EG_F16_ROW ? N : n0 + EG_F16_ROW;
                if (transB) { /* b column n contiguous over k: a dot product (a strided by ak) */
                    for (int n = n0; n < n1; n++)
                        acc[n - n0] = ak == 1 ? eg_dot_h(bi + n * bn, arow, 1, K)
                                              : eg_dot_h(bi + n * bn, arow, ak, K);
                } else {
                    for (int n = 0; n < n1 - n0; n++)
                        acc[n] = 0.0f;
                    for (int k = 0; k < K; k++)
                        eg_axpy_h(acc, eg_h2f(arow + k * ak), bi + k * bk + n0, 1, n1 - n0);
                }
                if (use_c)
                    for (int n = n0; n < n1; n++)
                        acc[n - n0] = alpha * acc[n - n0] + beta * crow[(ptrdiff_t)n * c_sn];
                else if (alpha != 1.0f)
                    for (int n = 0; n < n1 - n0; n++)
                        acc[n] *= alpha;
                if (y16)
                    eg_store_row_h(y16 + yrow + n0, acc, n1 - n0);
                else
                    for (int n = n0; n < n1; n++)
                        y32[yrow + n] = acc[n - n0];
            }
        }
    }
}

void gemm_f16_neon(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_neon_any(y, NULL, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs,
                         c_sm, c_sn);
}

void gemm_f16_y32_neon(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA,
                       int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_neon_any(NULL, y, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs,
                         c_sm, c_sn);
}
