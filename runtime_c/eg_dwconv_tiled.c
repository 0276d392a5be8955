/* eg_dwconv_tiled.c — depthwise convolutions over channel blocks: forward (with a clamp epilogue)
 * and both gradients.
 *
 * Dimension legend (as eg_conv.c; depthwise: C == M == G, one filter of KH x KW taps per channel)
 *   L       channels per block: EG_DVW, the vector width (16 with AVX-512, else 8)
 *   R       output rows per band;  Wp columns of the padded input band
 *
 * Channel blocks (see eg_dw_fw_cblock) where a band fits the stack buffers; wider rows take
 * conv2d_f32_fw_tiled's per-channel phase planes. depthwise2d_f32_fw_clip clamps in the
 * channel-block epilogue, or after the planes (a pass over y while it is in cache). The gradients
 * (eg_dw_bw_input_fast, eg_dw_bw_weight_fast) use the same channel blocks.
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

/* ---- pixel-major packing: EG_DVW channels of an NCHW run <-> one vector per pixel ---------
 * eg_dpack:   d[i*L + c] = s[c*cs + i]   (i < n pixels, c < cb channels; lanes >= cb untouched)
 * eg_dunpack: d[c*cs + i] = s[i*L + c]
 * With AVX-512 a full block moves 16 pixels at a time through a 16x16 register transpose (whole
 * 64-byte rows stored, where element-wise stores to 16 channel planes measured 4x slower on the
 * 48x48 input gradient); the rest element by element (gcc vectorises the constant-trip loops). */
#if defined(__AVX512F__)
#include <immintrin.h>
/* d[j*ldd + i] = s[i*lds + j] for i < rin, j < rout (i, j < 16): rows i >= rin read as zero, only
 * the first `lanes` floats of each row are read (lanes of a row past them: zero) and written. */
static inline __attribute__((always_inline)) void
eg_dtr16(float *restrict d, ptrdiff_t ldd, const float *restrict s, ptrdiff_t lds, int rin, int rout,
         int lanes)
{
    const __mmask16 m = (__mmask16)((1u << lanes) - 1u);
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++)
        r[i] = i >= rin ? _mm512_setzero_ps() : lanes == 16 ? _mm512_loadu_ps(s + i * lds)
                                                            : _mm512_maskz_loadu_ps(m, s + i * lds);
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* r[4g + j], 128-bit lane l: column 4l + j of rows 4g..4g+3 */
        const __m512d a = _mm512_castps_pd(t[4 * g]), b = _mm512_castps_pd(t[4 * g + 2]);
        const __m512d c = _mm512_castps_pd(t[4 * g + 1]), e = _mm512_castps_pd(t[4 * g + 3]);
        r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, e));
        r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, e));
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44);
        t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
        t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44);
        t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
    }
    for (int j = 0; j < 4; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
        r[4 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xDD);
        r[8 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
        r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xDD);
    }
    const __mmask16 mo = (__mmask16)((1u << rin) - 1u);
    for (int j = 0; j < rout; j++) {
        if (rin == 16)
            _mm512_storeu_ps(d + j * ldd, r[j]);
        else
            _mm512_mask_storeu_ps(d + j * ldd, mo, r[j]);
    }
}
#endif

static __attribute__((noinline)) void eg_dpack(float *restrict d, const float *restrict s, ptrdiff_t cs,
                                                int cb, int n)
{
    int i = 0;
    if (cb == EG_DVW) {
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            eg_dtr16(d + i * EG_DVW, EG_DVW, s + i, cs, 16, 16, 16);
        if (i < n) /* the last n - i pixels: masked loads of the 16 channel rows */
            eg_dtr16(d + i * EG_DVW, EG_DVW, s + i, cs, 16, n - i, n - i);
        return;
#endif
        for (; i < n; i++)
            for (int c = 0; c < EG_DVW; c++)
                d[i * EG_DVW + c] = s[c * cs + i];
    } else {
        for (; i < n; i++)
            for (int c = 0; c < cb; c++)
                d[i * EG_DVW + c] = s[c * cs + i];
    }
}

static __attribute__((noinline)) void eg_dunpack(float *restrict d, ptrdiff_t cs, const float *restrict s,
                                                 int cb, int n)
{
    int i = 0;
    if (cb == EG_DVW) {
#if defined(__AVX512F__)
        for (; i + 16 <= n; i += 16)
            eg_dtr16(d + i, cs, s + i * EG_DVW, EG_DVW, 16, 16, 16);
        if (i < n) /* the last n - i pixels: masked stores to the 16 channel rows */
            eg_dtr16(d + i, cs, s + i * EG_DVW, EG_DVW, n - i, 16, 16);
        return;
#endif
        for (; i < n; i++)
            for (int c = 0; c < EG_DVW; c++)
                d[c * cs + i] = s[i * EG_DVW + c];
    } else {
        for (; i < n; i++)
            for (int c = 0; c < cb; c++)
                d[c * cs + i] = s[i * EG_DVW + c];
    }
}

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
/* Stride-1 outputs up to which the channel blocks are used (the per-channel phase planes of
 * conv2d_f32_fw_tiled beyond). With the register transposes the blocks measured faster on every
 * MobileNetV2 layer, x86-64 AVX-512 (48x48 stride 1, 16 channels: 8.6 us vs 16.7 us), so no limit
 * by default; a band that does not fit the stack buffers still takes the planes. */
#ifndef EG_DWC_PIXELS
#if defined(__AVX512F__)
#define EG_DWC_PIXELS 0x7fffffff
#else
#define EG_DWC_PIXELS 1024 /* as measured before the register transposes (element-wise ones) */
#endif
#endif

/* Rows j < nrows of a padded pixel-major band: d[((j*Wd + off) + i)*L + c] = s[c*cs + j*n + i] for
 * i < n (the rows of s contiguous). Rows shorter than a 16-pixel transpose are packed as one run and
 * moved back to their padded places (last row first: a row's place never starts before its run, so
 * nothing unmoved is overwritten); the padding columns are left for the caller. */
static void eg_dpack_rows(float *restrict d, int Wd, int off, const float *restrict s, ptrdiff_t cs,
                          int cb, int n, int nrows)
{
    enum { L = EG_DVW };
    if (n < 16 && nrows > 1) {
        eg_dpack(d, s, cs, cb, n * nrows);
        for (int j = nrows - 1; j > 0 || (j == 0 && off > 0); j--) {
            float *dst = d + ((ptrdiff_t)j * Wd + off) * L;
            const float *src = d + (ptrdiff_t)j * n * L;
            for (int i = n - 1; i >= 0; i--)
                eg_dst(dst + i * L, eg_dld(src + i * L));
        }
        return;
    }
    for (int j = 0; j < nrows; j++)
        eg_dpack(d + ((ptrdiff_t)j * Wd + off) * L, s + (ptrdiff_t)j * n, cs, cb, n);
}

/* xin[(j*Wp + i)*L + c] = x[c, ih0 + j, i - pl] (0 outside the image) for j < rows, i < Wp, c < cb,
 * from the channel block xb[c*HW + ...]. */
static void eg_dw_pack_band(float *restrict xin, const float *restrict xb, ptrdiff_t HW, int H, int W,
                            int Wp, int pl, int ih0, int rows, int cb)
{
    enum { L = EG_DVW };
    const int i0 = pl < Wp ? pl : Wp, i1 = W + pl < Wp ? W + pl : Wp;
    /* the rows inside the image, [ja, jb) */
    const int ja = ih0 < 0 ? (-ih0 < rows ? -ih0 : rows) : 0;
    const int jb = H - ih0 < rows ? (H - ih0 > ja ? H - ih0 : ja) : rows;
    if (i0 == pl && i1 == W + pl && jb > ja) /* whole image rows: one run */
        eg_dpack_rows(xin + (ptrdiff_t)ja * Wp * L, Wp, pl, xb + (ptrdiff_t)(ih0 + ja) * W, HW, cb, W,
                      jb - ja);
    for (int j = 0; j < rows; j++) {
        float *d = xin + (ptrdiff_t)j * Wp * L;
        const int ih = ih0 + j;
        if (ih < 0 || ih >= H) {
            for (int i = 0; i < Wp; i++)
                eg_dst(d + i * L, eg_dsplat(0.0f));
            continue;
        }
        for (int i = 0; i < i0; i++)
            eg_dst(d + i * L, eg_dsplat(0.0f));
        if (i1 > i0 && !(i0 == pl && i1 == W + pl))
            eg_dpack(d + i0 * L, xb + (ptrdiff_t)ih * W + (i0 - pl), HW, cb, i1 - i0);
        for (int i = i1 > i0 ? i1 : i0; i < Wp; i++)
            eg_dst(d + i * L, eg_dsplat(0.0f));
    }
}

/* Load a channel block's filters as vectors wt[t] (lane c = channel c0 + c; 0 past cb), through the
 * pixel-major packing (whole vectors stored then loaded: scalar stores then a vector load of the
 * same bytes stall on store forwarding, which measured a quarter of a 3x3-image gradient). */
static void eg_dw_load_taps(eg_dv *wt, const float *restrict w, int c0, int cb, int T)
{
    enum { L = EG_DVW };
    float tmp[EG_DWC_TAPS * L] __attribute__((aligned(64)));
    if (cb == L) {
        eg_dpack(tmp, w + (ptrdiff_t)c0 * T, T, L, T);
    } else {
        for (int i = 0; i < T * L; i += L)
            eg_dst(tmp + i, eg_dsplat(0.0f));
        eg_dpack(tmp, w + (ptrdiff_t)c0 * T, T, cb, T);
    }
    for (int t = 0; t < T; t++)
        wt[t] = eg_dld(tmp + t * L);
}

/* flip: the taps in reverse order (w[c, KH-1-kh, KW-1-kw]: a stride-1 input gradient as a forward) */
static int eg_dw_fw_cblock(float *restrict y, const float *restrict x, const float *restrict w,
                           const float *restrict b, int N, int C, int H, int W, int OH, int OW,
                           int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w,
                           float lo, float hi, int flip)
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
    float btmp[L] __attribute__((aligned(64)));
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
            eg_dw_load_taps(wt, w, c0, cb, T); /* the filters and bias, lane = channel */
            for (int t = 0; flip && t < T - 1 - t; t++) {
                const eg_dv v = wt[t];
                wt[t] = wt[T - 1 - t];
                wt[T - 1 - t] = v;
            }
            eg_dv bv = eg_dsplat(0.0f);
            if (b && cb == L) {
                bv = eg_dld(b + c0);
            } else if (b) {
                for (int c = 0; c < L; c++)
                    btmp[c] = c < cb ? b[c0 + c] : 0.0f;
                bv = eg_dld(btmp);
            }
            if (cb < L) /* lanes past the last channel: zero input, never stored */
                for (int i = 0; i < EG_DWC_IN; i += L)
                    eg_dst(xin + i, eg_dsplat(0.0f));
            for (int oh0 = 0; oh0 < OH; oh0 += R) {
                const int nb = R < OH - oh0 ? R : OH - oh0;
                const int rows = (nb - 1) * sh + (KH - 1) * dil_h + 1;
                eg_dw_pack_band(xin, xb, HW, H, W, Wp, pl, oh0 * sh - pt, rows, cb);
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
                eg_dunpack(yb + (ptrdiff_t)oh0 * OW, OHW, ob, cb, nb * OW);
            }
        }
    }
    return 1;
}

/* ---- channel blocks, backward ------------------------------------------------------------
 * The same pixel-major bands as the forward, for the two gradients of a depthwise convolution.
 *
 * bw_weight: dw[c, t] = sum_{n, oh, ow} dy[n, c, oh, ow] * x[n, c, oh*sh - pt + kh*dil_h, ...]: the
 * x band as the forward's xin, dy's band transposed alongside; T vector accumulators (one per tap,
 * lanes = channels) take one FMA per tap and output pixel; summed over the lanes' channels at the end.
 *
 * bw_input: dx[c, ih, iw] = sum over the taps with ih + pt - kh*dil_h = oh*sh and
 * iw + pl - kw*dil_w = ow*sw (0 <= oh < OH, 0 <= ow < OW) of w[c, t] * dy[c, oh, ow]. A gather per
 * input pixel, so every dx element is written once (no zeroing, no scatter-add): for an input row
 * ih, the taps whose kh lands on a dy row, and for each column phase iw = b + sw*k the taps whose kw
 * lands on a dy column, ow = k + (b + pl - kw*dil_w)/sw; dy rows are transposed into yin with PL
 * zero columns on the left and PR on the right, so no ow needs a bounds test. The tap list of a row
 * and phase is the same for every k: one unrolled vector loop over k. */
#define EG_DWB_IN 8192  /* floats of the pixel-major dy rows of a bw_input band (32 KiB) */
#define EG_DWB_OUT 8192 /* floats of the pixel-major dx rows of a bw_input band (32 KiB) */
#define EG_DWB_INF (__builtin_inff())

static inline int eg_dfloor_div(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* acc[t] += sum over the nb x OW output pixels of dyt[p] * xin[pixel p's tap t] (T taps). */
static inline __attribute__((always_inline)) void
eg_dw_bww_cb_band(const int T, eg_dv *restrict acc, const float *restrict dyt, const float *restrict xin,
                  const int *toff, int nb, int OW, int sh, int sw, int per_row)
{
    enum { L = EG_DVW };
    eg_dv a[EG_DWC_TAPS];
    for (int t = 0; t < T; t++)
        a[t] = acc[t];
    for (int r = 0; r < nb; r++) {
        const float *xr = xin + (ptrdiff_t)r * sh * per_row;
        const float *dr = dyt + (ptrdiff_t)r * OW * L;
        for (int ow = 0; ow < OW; ow++) {
            const eg_dv d = eg_dld(dr + ow * L);
            const float *p = xr + ow * sw * L;
            for (int t = 0; t < T; t++)
                a[t] += d * eg_dld(p + toff[t]);
        }
    }
    for (int t = 0; t < T; t++)
        acc[t] = a[t];
}

static int eg_dw_bww_cblock(float *restrict dwt, const float *restrict dy, const float *restrict x,
                            int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh,
                            int sw, int pt, int pl, int dil_h, int dil_w, int M_upd, int Cx)
{
    enum { L = EG_DVW };
    const int T = KH * KW;
    if (T > EG_DWC_TAPS || OH <= 0 || OW <= 0)
        return 0;
    const int Wp = (OW - 1) * sw + (KW - 1) * dil_w + 1, per_row = Wp * L;
    const int max_in_rows = EG_DWC_IN / per_row;
    int R = max_in_rows < 1 ? 0 : (max_in_rows - 1 - (KH - 1) * dil_h) / sh + 1;
    if (R * OW * L > EG_DWC_OUT)
        R = EG_DWC_OUT / (OW * L);
    if (max_in_rows < 1 || R < 1)
        return 0;
    R = R < OH ? R : OH;
    float xin[EG_DWC_IN] __attribute__((aligned(64)));
    float dyt[EG_DWC_OUT] __attribute__((aligned(64)));
    eg_dv acc[EG_DWC_TAPS];
    float sum[L] __attribute__((aligned(64)));
    int toff[EG_DWC_TAPS];
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++)
            toff[kh * KW + kw] = (kh * dil_h * Wp + kw * dil_w) * L;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    for (int c0 = 0; c0 < M_upd; c0 += L) {
        const int cb = M_upd - c0 < L ? M_upd - c0 : L;
        for (int t = 0; t < T; t++)
            acc[t] = eg_dsplat(0.0f);
        if (cb < L) /* lanes past the last channel: zero, never stored */
            for (int i = 0; i < EG_DWC_IN; i += L)
                eg_dst(xin + i, eg_dsplat(0.0f));
        if (cb < L)
            for (int i = 0; i < EG_DWC_OUT; i += L)
                eg_dst(dyt + i, eg_dsplat(0.0f));
        for (int n = 0; n < N; n++) {
            const float *xb = x + ((ptrdiff_t)n * Cx + c0) * HW;
            const float *dyb = dy + ((ptrdiff_t)n * C + c0) * OHW;
            for (int oh0 = 0; oh0 < OH; oh0 += R) {
                const int nb = R < OH - oh0 ? R : OH - oh0;
                eg_dw_pack_band(xin, xb, HW, H, W, Wp, pl, oh0 * sh - pt, (nb - 1) * sh + (KH - 1) * dil_h + 1,
                                cb);
                eg_dpack(dyt, dyb + (ptrdiff_t)oh0 * OW, OHW, cb, nb * OW);
                if (T == 9)
                    eg_dw_bww_cb_band(9, acc, dyt, xin, toff, nb, OW, sh, sw, per_row);
                else
                    eg_dw_bww_cb_band(T, acc, dyt, xin, toff, nb, OW, sh, sw, per_row);
            }
        }
        for (int t = 0; t < T; t++) {
            eg_dst(sum, acc[t]);
            for (int c = 0; c < cb; c++)
                dwt[(ptrdiff_t)(c0 + c) * T + t] = sum[c];
        }
    }
    return 1;
}

/* o[k*ostep] = sum_{j < nt} wv[j] * src[j][k*L] for k < nk (nt taps, 0 when none). */
static inline __attribute__((always_inline)) void
eg_dw_bwi_run(const int nt, float *restrict o, int ostep, const float *const *src, const eg_dv *wv, int nk)
{
    enum { L = EG_DVW };
    eg_dv wr[9];
    const float *s[9];
    for (int j = 0; j < nt && j < 9; j++) {
        wr[j] = wv[j];
        s[j] = src[j];
    }
    for (int k = 0; k < nk; k++) {
        eg_dv acc = eg_dsplat(0.0f);
        if (nt <= 9)
            for (int j = 0; j < nt; j++)
                acc += wr[j] * eg_dld(s[j] + k * L);
        else
            for (int j = 0; j < nt; j++)
                acc += wv[j] * eg_dld(src[j] + k * L);
        eg_dst(o + (ptrdiff_t)k * ostep, acc);
    }
}

static int eg_dw_bwi_cblock(float *restrict dx, const float *restrict dy, const float *restrict w,
                            int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh,
                            int sw, int pt, int pl, int dil_h, int dil_w)
{
    enum { L = EG_DVW };
    const int T = KH * KW;
    if (T > EG_DWC_TAPS || OH <= 0 || OW <= 0 || H <= 0 || W <= 0)
        return 0;
    /* dy columns read: ow in [floor((pl - (KW-1)*dil_w)/sw), floor((W - 1 + pl)/sw)] */
    const int owlo = eg_dfloor_div(pl - (KW - 1) * dil_w, sw), owhi = eg_dfloor_div(W - 1 + pl, sw);
    const int PL = owlo < 0 ? -owlo : 0, PR = owhi > OW - 1 ? owhi - (OW - 1) : 0;
    const int Wd = PL + OW + PR;
    /* dx rows per band RX: dy rows read ((RX - 1) + (KH - 1)*dil_h)/sh + 2 at most */
    const int max_dy_rows = EG_DWB_IN / (Wd * L);
    int RX = EG_DWB_OUT / (W * L);
    const int need1 = ((KH - 1) * dil_h) / sh + 2;
    if (max_dy_rows < need1 || RX < 1)
        return 0;
    if (((RX - 1) + (KH - 1) * dil_h) / sh + 2 > max_dy_rows)
        RX = (max_dy_rows - 2) * sh - (KH - 1) * dil_h + 1;
    if (RX < 1)
        return 0;
    RX = RX < H ? RX : H;
    float yin[EG_DWB_IN] __attribute__((aligned(64)));
    float ob[EG_DWB_OUT] __attribute__((aligned(64)));
    eg_dv wt[EG_DWC_TAPS];
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    for (int n = 0; n < N; n++) {
        for (int c0 = 0; c0 < C; c0 += L) {
            const int cb = C - c0 < L ? C - c0 : L;
            const float *dyb = dy + ((ptrdiff_t)n * C + c0) * OHW;
            float *dxb = dx + ((ptrdiff_t)n * C + c0) * HW;
            eg_dw_load_taps(wt, w, c0, cb, T);
            if (cb < L) /* lanes past the last channel: zero, never stored */
                for (int i = 0; i < EG_DWB_IN; i += L)
                    eg_dst(yin + i, eg_dsplat(0.0f));
            for (int ih0 = 0; ih0 < H; ih0 += RX) {
                const int nbx = RX < H - ih0 ? RX : H - ih0;
                /* dy rows of this band: [oh0, oh1] within [0, OH) */
                int oh0 = eg_dfloor_div(ih0 + pt - (KH - 1) * dil_h + sh - 1, sh);
                int oh1 = eg_dfloor_div(ih0 + nbx - 1 + pt, sh);
                oh0 = oh0 < 0 ? 0 : oh0;
                oh1 = oh1 > OH - 1 ? OH - 1 : oh1;
                if (oh1 >= oh0)
                    eg_dpack_rows(yin, Wd, PL, dyb + (ptrdiff_t)oh0 * OW, OHW, cb, OW, oh1 - oh0 + 1);
                for (int oh = oh0; oh <= oh1; oh++) { /* the zero columns */
                    float *d = yin + (ptrdiff_t)(oh - oh0) * Wd * L;
                    for (int i = 0; i < PL; i++)
                        eg_dst(d + i * L, eg_dsplat(0.0f));
                    for (int i = PL + OW; i < Wd; i++)
                        eg_dst(d + i * L, eg_dsplat(0.0f));
                }
                for (int b = 0; b < sw && b < W; b++) {
                    /* the taps whose kw lands on a dy column for iw = b + sw*k: ow = k + q */
                    int kwv[EG_DWC_TAPS], qv[EG_DWC_TAPS], nkw = 0;
                    for (int kw = 0; kw < KW; kw++) {
                        const int nw = b + pl - kw * dil_w, q = eg_dfloor_div(nw, sw);
                        if (q * sw == nw) {
                            kwv[nkw] = kw;
                            qv[nkw++] = q + PL;
                        }
                    }
                    const int nk = (W - b + sw - 1) / sw, os = sw * L;
                    for (int r = 0; r < nbx; r++) {
                        const int ih = ih0 + r;
                        float *o = ob + ((ptrdiff_t)r * W + b) * L;
                        const float *src[EG_DWC_TAPS];
                        eg_dv wv[EG_DWC_TAPS];
                        int nt = 0;
                        for (int kh = 0; kh < KH; kh++) {
                            const int num = ih + pt - kh * dil_h;
                            if (num < 0 || num % sh != 0 || num / sh > oh1)
                                continue;
                            const float *yr = yin + (ptrdiff_t)(num / sh - oh0) * Wd * L;
                            for (int j = 0; j < nkw; j++) {
                                src[nt] = yr + (ptrdiff_t)qv[j] * L;
                                wv[nt++] = wt[kh * KW + kwv[j]];
                            }
                        }
                        switch (nt) {
                        case 0: eg_dw_bwi_run(0, o, os, src, wv, nk); break;
                        case 1: eg_dw_bwi_run(1, o, os, src, wv, nk); break;
                        case 2: eg_dw_bwi_run(2, o, os, src, wv, nk); break;
                        case 3: eg_dw_bwi_run(3, o, os, src, wv, nk); break;
                        case 4: eg_dw_bwi_run(4, o, os, src, wv, nk); break;
                        case 6: eg_dw_bwi_run(6, o, os, src, wv, nk); break;
                        case 9: eg_dw_bwi_run(9, o, os, src, wv, nk); break;
                        default: eg_dw_bwi_run(nt, o, os, src, wv, nk); break;
                        }
                    }
                }
                eg_dunpack(dxb + (ptrdiff_t)ih0 * W, HW, ob, cb, nbx * W);
            }
        }
    }
    return 1;
}

int eg_dw_bw_input_fast(float *restrict dx, const float *restrict dy, const float *restrict w, int N,
                        int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                        int pl, int dil_h, int dil_w)
{
    /* stride 1: dx[ih, iw] = sum_t w[t] * dy[ih + pt - kh*dil_h, iw + pl - kw*dil_w] is the forward
     * over dy with the flipped filter and pads (KH-1)*dil_h - pt, (KW-1)*dil_w - pl (when not negative):
     * no tap lists per row */
    const int ft = (KH - 1) * dil_h - pt, fl = (KW - 1) * dil_w - pl;
    if (sh == 1 && sw == 1 && ft >= 0 && fl >= 0 &&
        eg_dw_fw_cblock(dx, dy, w, NULL, N, C, OH, OW, H, W, KH, KW, 1, 1, ft, fl, dil_h, dil_w, -EG_DWB_INF,
                        EG_DWB_INF, 1))
        return 1;
    return eg_dw_bwi_cblock(dx, dy, w, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w);
}

int eg_dw_bw_weight_fast(float *restrict dwt, const float *restrict dy, const float *restrict x, int N,
                         int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                         int pl, int dil_h, int dil_w, int M_upd, int Cx)
{
    return eg_dw_bww_cblock(dwt, dy, x, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, M_upd,
                            Cx);
}

int eg_dw_fw_fast(float *restrict y, const float *restrict x, const float *restrict w,
                  const float *restrict b, int N, int C, int H, int W, int OH, int OW, int KH,
                  int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, float lo,
                  float hi)
{
    if (sh == 1 && sw == 1 && (ptrdiff_t)OH * OW > EG_DWC_PIXELS) /* the phase planes (eg_conv_tiled.c) */
        return 0;
    return eg_dw_fw_cblock(y, x, w, b, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, lo,
                           hi, 0);
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
