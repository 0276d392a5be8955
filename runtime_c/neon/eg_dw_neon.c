/* eg_dw_neon.c — depthwise convolutions for aarch64 with arm_neon.h (contract: eg_dw_neon.h).
 *
 * Dimension legend (as eg_conv.c)
 *   N batch;  C = M = G channels;  H, W / OH, OW input / output size;  KH, KW filter;  T = KH*KW
 *   sh, sw strides (sw 1 or 2);  pt, pl top / left padding
 *   P       one channel copied into the scratch with its zero padding: P[r, c] = x[r - pt, c - pl]
 *   cols    row pitch of the plane, with slack so a block of 8 outputs never reads past a row
 *
 * A depthwise layer has nothing to share between channels, so each channel is one small 2-D
 * correlation: per channel, copy the image into the plane (its borders and slack are zeroed
 * once per call), then run the taps over it branch-free, 8 outputs (two q registers) or 4 dy
 * values at a time:
 *   forward      y[oh, ow]  = b + sum_t w[t] * P[oh*sh + kh, ow*sw + kw]       (fmla by scalar)
 *   bw_weight    dw[t]      = sum_{n, oh, ow} dy[oh, ow] * P[oh*sh + kh, ow*sw + kw]
 *                             (one q-register partial sum per tap, added across lanes at the end)
 *   bw_input     stride 1: dx = the forward on the padded dy with the filter flipped (a gather,
 *                no read-modify-write); other strides: each dy value scattered into a padded dx
 *                plane (ld2/st2 interleave the even and odd columns when sw = 2), then cropped.
 * Stride 2 along the width loads with vld2q: its first register holds the even columns, the
 * second the odd ones, so tap kw of 4 outputs is vld2q(row + 2*ow + (kw & ~1)).val[kw & 1].
 * 3x3 filters (every depthwise layer of the zoo) get the taps unrolled at compile time.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <arm_neon.h>
#include <stddef.h>

#include "eg_dw_neon.h"

#define EG_INLINE static inline __attribute__((always_inline))

static inline int eg_ceil8(int v) { return (v + 7) & ~7; }

static void eg_zero(float *restrict p, int n)
{
    int i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(p + i, vdupq_n_f32(0.0f));
    for (; i < n; i++)
        p[i] = 0.0f;
}

/* P[r, c] = src[r - top, c - left] for the rows and columns inside src [h, w]; r < rows,
 * c < cols (top and left may be negative: the plane then starts inside src). Everything else
 * of the plane is left as it is: zero, from eg_zero once per call, since every channel's image
 * lands on the same rectangle. */
static void eg_fill_plane(float *restrict P, int rows, int cols, const float *restrict src, int h,
                          int w, int top, int left)
{
    const int c0 = left > 0 ? left : 0, c1 = left + w < cols ? left + w : cols;
    const int r0 = top > 0 ? top : 0, r1 = top + h < rows ? top + h : rows;
    for (int r = r0; r < r1; r++) {
        float *restrict pr = P + (ptrdiff_t)r * cols;
        const float *restrict s = src + (ptrdiff_t)(r - top) * w - left; /* s[c]: column c of P */
        int c = c0;
        for (; c + 4 <= c1; c += 4)
            vst1q_f32(pr + c, vld1q_f32(s + c));
        for (; c < c1; c++)
            pr[c] = s[c];
    }
}

/* 4 floats of a row of n from column ow, lanes past n zero. `room`: floats of the array from
 * r + ow on; where 4 fit, the row is read whole, the lanes past n masked. */
EG_INLINE float32x4_t eg_load4(const float *restrict r, int ow, int n, ptrdiff_t room)
{
    if (ow + 4 <= n)
        return vld1q_f32(r + ow);
    if (room >= 4) {
        static const uint32_t lane[4] = {0, 1, 2, 3};
        const uint32x4_t keep = vcltq_u32(vld1q_u32(lane), vdupq_n_u32((uint32_t)(n - ow)));
        return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(vld1q_f32(r + ow)), keep));
    }
    float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int j = 0; ow + j < n; j++)
        t[j] = r[ow + j];
    return vld1q_f32(t);
}

/* Store 8 outputs at y[ow..] of a row of n; `room`: floats of the array from y + ow on. Where 8
 * fit they are stored whole: the extra lanes land on the next rows, which are written after. */
EG_INLINE void eg_store8(float *restrict y, int ow, int n, ptrdiff_t room, float32x4_t a0,
                         float32x4_t a1)
{
    if (ow + 8 <= n || room >= 8) {
        vst1q_f32(y + ow, a0);
        vst1q_f32(y + ow + 4, a1);
        return;
    }
    float t[8];
    vst1q_f32(t, a0);
    vst1q_f32(t + 4, a1);
    for (int j = 0; ow + j < n; j++)
        y[ow + j] = t[j];
}

/* Tap kw of 4 outputs whose window starts at p (SW = 2: every other column). */
EG_INLINE float32x4_t eg_tap(const int SW, const float *restrict p, int kw)
{
    if (SW == 1)
        return vld1q_f32(p + kw);
    return vld2q_f32(p + (kw & ~1)).val[kw & 1];
}

/* ---- forward (and the stride-1 input gradient) ------------------------------------------- */

/* y[oh, ow] = bias + sum_{kh,kw} w[kh*KW + kw] * P[oh*sh + kh, ow*SW + kw] */
EG_INLINE void eg_dw_fw_plane(const int KH, const int KW, const int SW, float *restrict y,
                              const float *restrict P, int cols, const float *restrict w,
                              float bias, int OH, int OW, int sh)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *restrict pr = P + (ptrdiff_t)oh * sh * cols;
        float *restrict yr = y + (ptrdiff_t)oh * OW;
        for (int ow = 0; ow < OW; ow += 8) {
            float32x4_t a0 = vdupq_n_f32(bias), a1 = a0;
            for (int kh = 0; kh < KH; kh++) {
                const float *restrict p = pr + (ptrdiff_t)kh * cols + ow * SW;
                const float *restrict wk = w + kh * KW;
                for (int kw = 0; kw < KW; kw++) {
                    a0 = vfmaq_n_f32(a0, eg_tap(SW, p, kw), wk[kw]);
                    a1 = vfmaq_n_f32(a1, eg_tap(SW, p + 4 * SW, kw), wk[kw]);
                }
            }
            eg_store8(yr, ow, OW, (ptrdiff_t)(OH - oh) * OW - ow, a0, a1);
        }
    }
}

static void eg_dw_fw_any(float *restrict y, const float *restrict P, int cols,
                         const float *restrict w, float bias, int OH, int OW, int KH, int KW,
                         int sh, int sw)
{
    if (KH == 3 && KW == 3 && sw == 1)
        eg_dw_fw_plane(3, 3, 1, y, P, cols, w, bias, OH, OW, sh);
    else if (KH == 3 && KW == 3)
        eg_dw_fw_plane(3, 3, 2, y, P, cols, w, bias, OH, OW, sh);
    else if (sw == 1)
        eg_dw_fw_plane(KH, KW, 1, y, P, cols, w, bias, OH, OW, sh);
    else
        eg_dw_fw_plane(KH, KW, 2, y, P, cols, w, bias, OH, OW, sh);
}

void conv2d_f32_fw_dw_neon(float *restrict y, const float *restrict x, const float *restrict w,
                           const float *restrict b, int N, int C, int H, int W, int M, int OH,
                           int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                           int dil_w, int G, float *restrict scratch)
{
    (void)M, (void)G, (void)dil_h, (void)dil_w; /* M == G == C, dilation 1 (kernels_neon.py) */
    if (OH <= 0 || OW <= 0)
        return;
    const int rows = (OH - 1) * sh + KH, cols = sw * eg_ceil8(OW) + KW + 8, T = KH * KW;
    eg_zero(scratch, rows * cols);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const ptrdiff_t nc = (ptrdiff_t)n * C + c;
            eg_fill_plane(scratch, rows, cols, x + nc * H * W, H, W, pt, pl);
            eg_dw_fw_any(y + nc * OH * OW, scratch, cols, w + (ptrdiff_t)c * T, b ? b[c] : 0.0f, OH,
                         OW, KH, KW, sh, sw);
        }
}

/* ---- backward to the weight -------------------------------------------------------------- */

/* s[t] += sum_{oh, ow} dy[oh, ow] * P[oh*sh + kh, ow*SW + kw], t = kh*KW + kw: one q-register
 * partial sum per tap (T <= 9: the taps unrolled, all in registers) */
EG_INLINE void eg_dw_bww_plane(const int KH, const int KW, const int SW, float *restrict s,
                               const float *restrict dy, const float *restrict P, int cols, int OH,
                               int OW, int sh)
{
    float32x4_t acc[EG_DW_NEON_TAPS];
    for (int t = 0; t < KH * KW; t++)
        acc[t] = vdupq_n_f32(0.0f);
    for (int oh = 0; oh < OH; oh++) {
        const float *restrict pr = P + (ptrdiff_t)oh * sh * cols;
        const float *restrict dr = dy + (ptrdiff_t)oh * OW;
        for (int ow = 0; ow < OW; ow += 4) {
            const float32x4_t d = eg_load4(dr, ow, OW, (ptrdiff_t)(OH - oh) * OW - ow);
            for (int kh = 0; kh < KH; kh++) {
                const float *restrict p = pr + (ptrdiff_t)kh * cols + ow * SW;
                for (int kw = 0; kw < KW; kw++)
                    acc[kh * KW + kw] = vfmaq_f32(acc[kh * KW + kw], d, eg_tap(SW, p, kw));
            }
        }
    }
    for (int t = 0; t < KH * KW; t++)
        s[t] += vaddvq_f32(acc[t]);
}

void conv2d_f32_bw_weight_dw_neon(float *restrict dwt, const float *restrict dy,
                                  const float *restrict x, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                  float *restrict scratch)
{
    (void)M, (void)G, (void)dil_h, (void)dil_w, (void)Cg_upd; /* Cg_upd == Cg == 1 */
    const int T = KH * KW, rows = (OH - 1) * sh + KH, cols = sw * eg_ceil8(OW) + KW + 8;
    if (OH > 0 && OW > 0)
        eg_zero(scratch, rows * cols);
    for (int m = 0; m < M_upd; m++) {
        float *restrict s = dwt + (ptrdiff_t)m * T;
        for (int t = 0; t < T; t++)
            s[t] = 0.0f;
        if (OH <= 0 || OW <= 0)
            continue;
        for (int n = 0; n < N; n++) {
            const float *dym = dy + ((ptrdiff_t)n * C + m) * OH * OW;
            eg_fill_plane(scratch, rows, cols, x + ((ptrdiff_t)n * Cx + m) * H * W, H, W, pt, pl);
            if (KH == 3 && KW == 3 && sw == 1)
                eg_dw_bww_plane(3, 3, 1, s, dym, scratch, cols, OH, OW, sh);
            else if (KH == 3 && KW == 3)
                eg_dw_bww_plane(3, 3, 2, s, dym, scratch, cols, OH, OW, sh);
            else if (sw == 1)
                eg_dw_bww_plane(KH, KW, 1, s, dym, scratch, cols, OH, OW, sh);
            else
                eg_dw_bww_plane(KH, KW, 2, s, dym, scratch, cols, OH, OW, sh);
        }
    }
}

/* ---- backward to the input --------------------------------------------------------------- */

/* forward y[oh, ow] += w[t] * P[oh*sh + kh, ow*SW + kw], so DX[oh*sh + kh, ow*SW + kw] collects
 * w[t] * dy[oh, ow]: 4 dy values at a time, each tap a load-fmla-store of the plane (SW = 2:
 * ld2/st2, taps kw and kw + 1 in the even and odd registers of one pair). */
EG_INLINE void eg_dw_bwi_scatter(const int KH, const int KW, const int SW, float *restrict DX,
                                 int cols, const float *restrict dy, const float *restrict w,
                                 int OH, int OW, int sh)
{
    for (int oh = 0; oh < OH; oh++) {
        const float *restrict dr = dy + (ptrdiff_t)oh * OW;
        for (int ow = 0; ow < OW; ow += 4) {
            const float32x4_t d = eg_load4(dr, ow, OW, (ptrdiff_t)(OH - oh) * OW - ow); /* zero lanes add nothing */
            for (int kh = 0; kh < KH; kh++) {
                float *restrict p = DX + (ptrdiff_t)(oh * sh + kh) * cols + ow * SW;
                const float *restrict wk = w + kh * KW;
                if (SW == 1) {
                    for (int kw = 0; kw < KW; kw++)
                        vst1q_f32(p + kw, vfmaq_n_f32(vld1q_f32(p + kw), d, wk[kw]));
                    continue;
                }
                for (int kw = 0; kw < KW; kw += 2) {
                    float32x4x2_t q = vld2q_f32(p + kw);
                    q.val[0] = vfmaq_n_f32(q.val[0], d, wk[kw]);
                    if (kw + 1 < KW)
                        q.val[1] = vfmaq_n_f32(q.val[1], d, wk[kw + 1]);
                    vst2q_f32(p + kw, q);
                }
            }
        }
    }
}

void conv2d_f32_bw_input_dw_neon(float *restrict dx, const float *restrict dy,
                                 const float *restrict w, int N, int C, int H, int W, int M,
                                 int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                 int dil_h, int dil_w, int G, float *restrict scratch)
{
    (void)M, (void)G, (void)dil_h, (void)dil_w;
    const int T = KH * KW;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    if (sh == 1 && sw == 1) { /* dx[ih, iw] = sum_t w[T-1-t] * Q[ih + kh, iw + kw] */
        const int rows = H + KH - 1, cols = eg_ceil8(W) + KW + 8;
        eg_zero(scratch, rows * cols);
        for (int c = 0; c < C; c++) {
            const float *wc = w + (ptrdiff_t)c * T;
            float wf[EG_DW_NEON_TAPS];
            for (int t = 0; t < T; t++)
                wf[t] = wc[T - 1 - t];
            for (int n = 0; n < N; n++) {
                const ptrdiff_t nc = (ptrdiff_t)n * C + c;
                eg_fill_plane(scratch, rows, cols, dy + nc * OHW, OH, OW, KH - 1 - pt, KW - 1 - pl);
                eg_dw_fw_any(dx + nc * HW, scratch, cols, wf, 0.0f, H, W, KH, KW, 1, 1);
            }
        }
        return;
    }
    const int rows = OH > 0 ? (OH - 1) * sh + KH : 0, cols = sw * eg_ceil8(OW) + KW + 8;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            const ptrdiff_t nc = (ptrdiff_t)n * C + c;
            const float *wc = w + (ptrdiff_t)c * T;
            eg_zero(scratch, rows * cols);
            if (KH == 3 && KW == 3 && sw == 2)
                eg_dw_bwi_scatter(3, 3, 2, scratch, cols, dy + nc * OHW, wc, OH, OW, sh);
            else if (sw == 2)
                eg_dw_bwi_scatter(KH, KW, 2, scratch, cols, dy + nc * OHW, wc, OH, OW, sh);
            else
                eg_dw_bwi_scatter(KH, KW, 1, scratch, cols, dy + nc * OHW, wc, OH, OW, sh);
            float *restrict dxc = dx + nc * HW;
            for (int ih = 0; ih < H; ih++) { /* dx[ih, iw] = DX[ih + pt, iw + pl] */
                const int r = ih + pt;
                float *restrict xr = dxc + (ptrdiff_t)ih * W;
                if (r >= rows) {
                    eg_zero(xr, W);
                    continue;
                }
                const float *restrict sr = scratch + (ptrdiff_t)r * cols + pl;
                const int n_in = cols - pl < W ? cols - pl : W;
                int iw = 0;
                for (; iw + 4 <= n_in; iw += 4)
                    vst1q_f32(xr + iw, vld1q_f32(sr + iw));
                for (; iw < n_in; iw++)
                    xr[iw] = sr[iw];
                eg_zero(xr + iw, W - iw);
            }
        }
}
