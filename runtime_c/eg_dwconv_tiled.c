/* eg_dwconv_tiled.c — depthwise convolution forward for small images, and with a clamp epilogue.
 *
 * Dimension legend (as eg_conv.c; depthwise: C == M == G, one filter of KH x KW taps per channel)
 *   L       channels per block: EG_DVW, the vector width (16 with AVX-512, else 8)
 *   R       output rows per band;  Wp columns of the padded input band
 *
 * Channel blocks (see eg_dw_fw_cblock) for strided layers and stride-1 outputs of up to
 * EG_DWC_PIXELS pixels; larger images take conv2d_f32_fw_tiled's per-channel phase planes. depthwise2d_f32_fw_clip clamps in the
 * channel-block epilogue, or after the planes (a pass over y while it is in cache).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast") /* see eg_gemm_tiled.c */
#endif

#include <stddef.h>

#include "eg_conv_tiled.h"
#include "eg_dwconv_tiled.h"

#define EG_DWC_TAPS 49

static inline float eg_dclamp1(float v, float lo, float hi)
{
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

/* Vector width: 16 floats where the ISA has 512-bit registers, 8 elsewhere. */
#if defined(__AVX512F__)
#define EG_DVW 16
#else
#define EG_DVW 8
#endif
typedef float eg_dv __attribute__((vector_size(EG_DVW * 4)));
typedef float eg_dvu __attribute__((vector_size(EG_DVW * 4), aligned(4), may_alias));
typedef int eg_di __attribute__((vector_size(EG_DVW * 4)));
#define eg_dld(p) (*(const eg_dvu *)(p))
#define eg_dst(p, v) (*(eg_dvu *)(p) = (v))
#define eg_dsplat(s) ((eg_dv){0} + (s))
#define eg_dclamp(v, lov, hiv)                                                                    \
    do {                                                                                          \
        eg_di m_ = (v) < (lov);                                                                   \
        (v) = (eg_dv)(((eg_di)(lov) & m_) | ((eg_di)(v) & ~m_));                                 \
        m_ = (v) > (hiv);                                                                         \
        (v) = (eg_dv)(((eg_di)(hiv) & m_) | ((eg_di)(v) & ~m_));                                 \
    } while (0)

/* ---- channel blocks: a band of rows of EG_DVW channels transposed to pixel-major -----------
 * For small images (MobileNetV2: 3x3 .. 24x24 pixels, 48 .. 336 channels) the per-channel phase
 * planes are mostly overhead, and strided planes are filled element by element. Instead EG_DVW channels at a time
 * are transposed into a zero-padded pixel-major band xin[j][i][lane] (j input rows, i = iw + pl
 * columns), so one vector holds the same pixel of EG_DVW channels and every tap of every output
 * pixel is one vector FMA, whatever the stride; the outputs, a pixel-major band too, are
 * transposed back into y. The transposes are two strided copies per element; the FMAs are
 * T per output pixel and channel block. */
#define EG_DWC_IN 8192  /* floats of the pixel-major input band (32 KiB) */
#define EG_DWC_OUT 2048 /* floats of the pixel-major output band (8 KiB) */
/* Stride-1 outputs up to which the channel blocks beat the per-channel phase planes (measured on
 * MobileNetV2's layers, x86-64: 6x6 outputs 2.2x, 12x12 1.7x, 24x24 1.1x faster; 48x48 1.2x
 * slower: with few channels and wide rows the planes' overhead is small and the two transposes
 * are not). Strided layers always take the channel blocks (1.6-4.8x: the planes' strided fill). */
#ifndef EG_DWC_PIXELS
#define EG_DWC_PIXELS 1024
#endif

static int eg_dw_fw_cblock(float *restrict y, const float *restrict x, const float *restrict w,
                           const float *restrict b, int N, int C, int H, int W, int OH, int OW,
                           int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w,
                           float lo, float hi)
{
    enum { L = EG_DVW };
    const int T = KH * KW;
    if (C < 8 || T > EG_DWC_TAPS || OH <= 0 || OW <= 0)
        return 0;
    /* columns i = iw + pl of the band: every tap of every output column, iw in [-pl, Wp - pl) */
    const int Wp = (OW - 1) * sw + (KW - 1) * dil_w + 1;
    const int per_row = Wp * L;
    const int max_in_rows = EG_DWC_IN / per_row;
    /* output rows per band: input rows (nb - 1)*sh + (KH - 1)*dil_h + 1 <= max_in_rows */
    int R = (max_in_rows - 1 - (KH - 1) * dil_h) / sh + 1;
    if (max_in_rows < 1 || R < 1)
        return 0;
    if (R * OW * L > EG_DWC_OUT)
        R = EG_DWC_OUT / (OW * L);
    if (R < 1)
        return 0;
    R = R < OH ? R : OH;
    float xin[EG_DWC_IN] __attribute__((aligned(64)));
    float ob[EG_DWC_OUT] __attribute__((aligned(64)));
    eg_dv wt[EG_DWC_TAPS];
    float wtmp[(EG_DWC_TAPS + 1) * L] __attribute__((aligned(64)));
    int toff[EG_DWC_TAPS];
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++)
            toff[kh * KW + kw] = (kh * dil_h * Wp + kw * dil_w) * L;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const eg_dv lov = eg_dsplat(lo), hiv = eg_dsplat(hi);
    for (int n = 0; n < N; n++) {
        for (int c0 = 0; c0 < C; c0 += L) {
            const int cb = C - c0 < L ? C - c0 : L;
            const float *xb = x + ((ptrdiff_t)n * C + c0) * HW;
            float *yb = y + ((ptrdiff_t)n * C + c0) * OHW;
            for (int t = 0; t <= T; t++) /* the filters and bias (row T), lane = channel */
                for (int c = 0; c < L; c++)
                    wtmp[t * L + c] = c >= cb ? 0.0f : t < T ? w[(ptrdiff_t)(c0 + c) * T + t] : b ? b[c0 + c] : 0.0f;
            for (int t = 0; t < T; t++)
                wt[t] = eg_dld(wtmp + t * L);
            const eg_dv bv = eg_dld(wtmp + T * L);
            if (cb < L) /* lanes past the last channel: zero input, never stored */
                for (int i = 0; i < EG_DWC_IN; i += L)
                    eg_dst(xin + i, eg_dsplat(0.0f));
            for (int oh0 = 0; oh0 < OH; oh0 += R) {
                const int nb = R < OH - oh0 ? R : OH - oh0;
                const int rows = (nb - 1) * sh + (KH - 1) * dil_h + 1, ih0 = oh0 * sh - pt;
                /* transpose in: xin[(j*Wp + i)*L + c] = x[c, ih0 + j, i - pl] (0 outside); pixel
                 * by pixel, the L channels innermost (a constant trip count when the block is full) */
                const int i0 = pl < Wp ? pl : Wp, i1 = W + pl < Wp ? W + pl : Wp;
                for (int j = 0; j < rows; j++) {
                    float *d = xin + (ptrdiff_t)j * per_row;
                    const int ih = ih0 + j;
                    if (ih < 0 || ih >= H) {
                        for (int i = 0; i < Wp; i++)
                            eg_dst(d + i * L, eg_dsplat(0.0f));
                        continue;
                    }
                    const float *xr = xb + (ptrdiff_t)ih * W - pl;
                    for (int i = 0; i < i0; i++)
                        eg_dst(d + i * L, eg_dsplat(0.0f));
                    if (cb == L)
                        for (int i = i0; i < i1; i++)
                            for (int c = 0; c < L; c++)
                                d[i * L + c] = xr[c * HW + i];
                    else
                        for (int i = i0; i < i1; i++)
                            for (int c = 0; c < cb; c++)
                                d[i * L + c] = xr[c * HW + i];
                    for (int i = i1; i < Wp; i++)
                        eg_dst(d + i * L, eg_dsplat(0.0f));
                }
                /* every output pixel: T vector FMAs over the channel block */
                for (int r = 0; r < nb; r++) {
                    const float *xr = xin + (ptrdiff_t)r * sh * per_row;
                    float *orow = ob + (ptrdiff_t)r * OW * L;
                    if (T == 9) {
                        const eg_dv w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3], w4 = wt[4];
                        const eg_dv w5 = wt[5], w6 = wt[6], w7 = wt[7], w8 = wt[8];
                        const int o1 = toff[1], o2 = toff[2], o3 = toff[3], o4 = toff[4];
                        const int o5 = toff[5], o6 = toff[6], o7 = toff[7], o8 = toff[8];
                        for (int ow = 0; ow < OW; ow++) {
                            const float *p = xr + ow * sw * L;
                            eg_dv acc = bv + w0 * eg_dld(p);
                            acc += w1 * eg_dld(p + o1);
                            acc += w2 * eg_dld(p + o2);
                            acc += w3 * eg_dld(p + o3);
                            acc += w4 * eg_dld(p + o4);
                            acc += w5 * eg_dld(p + o5);
                            acc += w6 * eg_dld(p + o6);
                            acc += w7 * eg_dld(p + o7);
                            acc += w8 * eg_dld(p + o8);
                            eg_dclamp(acc, lov, hiv);
                            eg_dst(orow + ow * L, acc);
                        }
                    } else {
                        for (int ow = 0; ow < OW; ow++) {
                            const float *p = xr + ow * sw * L;
                            eg_dv acc = bv;
                            for (int t = 0; t < T; t++)
                                acc += wt[t] * eg_dld(p + toff[t]);
                            eg_dclamp(acc, lov, hiv);
                            eg_dst(orow + ow * L, acc);
                        }
                    }
                }
                /* transpose out: y[c, oh0 + r, ow] = ob[(r*OW + ow)*L + c] */
                const int np = nb * OW;
                float *yq = yb + (ptrdiff_t)oh0 * OW;
                if (cb == L)
                    for (int q = 0; q < np; q++)
                        for (int c = 0; c < L; c++)
                            yq[c * OHW + q] = ob[q * L + c];
                else
                    for (int q = 0; q < np; q++)
                        for (int c = 0; c < cb; c++)
                            yq[c * OHW + q] = ob[q * L + c];
            }
        }
    }
    return 1;
}

int eg_dw_fw_fast(float *restrict y, const float *restrict x, const float *restrict w,
                  const float *restrict b, int N, int C, int H, int W, int OH, int OW, int KH,
                  int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, float lo,
                  float hi)
{
    if (sh == 1 && sw == 1 && (ptrdiff_t)OH * OW > EG_DWC_PIXELS) /* the phase planes (eg_conv_tiled.c) */
        return 0;
    return eg_dw_fw_cblock(y, x, w, b, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, lo,
                           hi);
}

void depthwise2d_f32_fw_clip(float *restrict y, const float *restrict x, const float *restrict w,
                             const float *restrict b, int N, int C, int H, int W, int M, int OH,
                             int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                             int dil_w, int G, float lo, float hi)
{
    if (eg_dw_fw_fast(y, x, w, b, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, lo, hi))
        return;
    conv2d_f32_fw_tiled(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                        NULL);
    const ptrdiff_t n = (ptrdiff_t)N * M * OH * OW;
    for (ptrdiff_t i = 0; i < n; i++)
        y[i] = eg_dclamp1(y[i], lo, hi);
}
