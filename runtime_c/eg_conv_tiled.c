/* eg_conv_tiled.c — fast fp32 convolutions: im2col tiles + the register-blocked GEMM of
 * eg_gemm_tiled.c, and direct vectorised loops for depthwise convolutions.
 *
 * Dimension legend (as eg_conv.c)
 *   N batch;  C, M input / output channels;  G groups;  Cg = C/G, Mg = M/G
 *   H, W / OH, OW input / output size;  P = OH*OW output pixels;  KH, KW kernel
 *   sh, sw strides;  pt, pl top / left padding;  dil_h, dil_w dilation
 *   Kg = Cg*KH*KW   rows of a group's patch matrix ("col"), one per (c, kh, kw)
 *   tile            whole output rows, about PTILE pixels: OW * max(1, PTILE / OW) pixels
 *                   (the scratch holds Kg x tile)
 *
 * Index map: ih = oh*sh - pt + kh*dil_h, iw = ow*sw - pl + kw*dil_w (outside = zero padding).
 * Per image n and group g, with col[Kg, P] the patches of x_g (col[(c,kh,kw), p] = x[c,ih,iw]):
 *   forward     y_g[Mg, P]   = W_g[Mg, Kg] . col + b          (GEMM, tile by tile of P)
 *   bw_input    dcol[Kg, P]  = W_g^T . dy_g[Mg, P];  dx_g = col2im(dcol)  (scatter-add)
 *   bw_weight   dW_g[Mg, Kg] = sum_n dy_g[Mg, P] . col^T      (GEMM with K = pixels)
 * A stride-1 unpadded 1x1 convolution has col == x_g, so it skips the scratch entirely.
 * Depthwise (Cg == Mg == 1) has nothing to share between channels: a band of output rows at a
 * time, from zero-padded phase planes on the stack, every tap one contiguous loop over the band
 * (see "depthwise: phase planes"); direct row loops when a row does not fit the stack buffer.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast") /* see eg_gemm_tiled.c */
#endif

#include <stddef.h>

#include "eg_conv_tiled.h"
#include "eg_dwconv_tiled.h"
#include "eg_gemm_tiled.h"

#define EG_PTILE 256
#ifndef EG_NT_PIXELS
#define EG_NT_PIXELS 512 /* pointwise weight gradients over at least this many pixels: gemm_f32_tiled_nt */
#endif

typedef float eg_v8 __attribute__((vector_size(32)));
typedef float eg_v8u __attribute__((vector_size(32), aligned(4), may_alias));

/* macros, not functions: a function passing vectors by value warns (-Wpsabi) without AVX */
#define eg_ld8(p) (*(const eg_v8u *)(p))
#define eg_st8(p, v) (*(eg_v8u *)(p) = (v))
#define eg_splat8(s) ((eg_v8){(s), (s), (s), (s), (s), (s), (s), (s)})

/* EG_EVEN8(a, b): {a[0], a[2], a[4], a[6], b[1], b[3], b[5], b[7]} (a stride-2 gather of
 * x[0..14] from a = x[0..7], b = x[7..14]); left undefined where neither builtin exists. */
#if defined(__clang__)
#define EG_SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7)                                           \
    __builtin_shufflevector((a), (b), i0, i1, i2, i3, i4, i5, i6, i7)
#elif defined(__GNUC__)
typedef int eg_v8i __attribute__((vector_size(32)));
#define EG_SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7)                                           \
    __builtin_shuffle((a), (b), (eg_v8i){i0, i1, i2, i3, i4, i5, i6, i7})
#endif
#ifdef EG_SHUF8
#define EG_EVEN8(a, b) EG_SHUF8(a, b, 0, 2, 4, 6, 9, 11, 13, 15)

/* d[j*ldd + i] = s[i*lds + j] for i, j < 8: three butterfly stages of two-vector shuffles. */
static inline void eg_transpose8(float *restrict d, ptrdiff_t ldd, const float *restrict s,
                                 ptrdiff_t lds)
{
    eg_v8 r[8], a[8], b[8];
    for (int i = 0; i < 8; i++)
        r[i] = eg_ld8(s + i * lds);
    for (int k = 0; k < 8; k += 2) {
        a[k] = EG_SHUF8(r[k], r[k + 1], 0, 8, 2, 10, 4, 12, 6, 14);
        a[k + 1] = EG_SHUF8(r[k], r[k + 1], 1, 9, 3, 11, 5, 13, 7, 15);
    }
    for (int k = 0; k < 8; k += (k % 4 == 1 ? 3 : 1)) { /* k = 0, 1, 4, 5 */
        b[k] = EG_SHUF8(a[k], a[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        b[k + 2] = EG_SHUF8(a[k], a[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (int k = 0; k < 4; k++) {
        eg_st8(d + k * ldd, EG_SHUF8(b[k], b[k + 4], 0, 1, 2, 3, 8, 9, 10, 11));
        eg_st8(d + (k + 4) * ldd, EG_SHUF8(b[k], b[k + 4], 4, 5, 6, 7, 12, 13, 14, 15));
    }
}
#endif

/* d[0..n) = s[0..n): vectors, the last one overlapping (no tail loop; rows here are 8-48 floats,
 * where a memcpy call per row costs more than the copy). */
static inline void eg_copy_row(float *restrict d, const float *restrict s, int n)
{
    if (n < 8) {
        for (int i = 0; i < n; i++)
            d[i] = s[i];
        return;
    }
    for (int i = 0; i + 8 < n; i += 8)
        eg_st8(d + i, eg_ld8(s + i));
    eg_st8(d + n - 8, eg_ld8(s + n - 8));
}

/* The epilogue of the fused variants (_act, _mask), applied where a kernel stores its result:
 * EG_EPI_RELU:      d[i] = s[i] > 0 ? s[i] : 0           (a Relu after the forward conv)
 * EG_EPI_RELU6:     d[i] = min(max(s[i], 0), 6)           (a Clip(0, 6) after it)
 * EG_EPI_RELU_MASK: d[i] = y[i] > 0 ? s[i] : 0           (ReluGrad into the input gradient)
 * EG_EPI_CLIP_MASK: d[i] = lo < y[i] < hi ? s[i] : 0     (ClipGrad into the input gradient)
 * the same expressions as relu_f32_fw / clip_f32_fw / relu_f32_bw / clip_f32_bw (eg_eltwise.c), so the fused
 * results are those of the separate passes. y has the output's layout (element off + i). */
enum { EG_EPI_NONE, EG_EPI_RELU, EG_EPI_RELU6, EG_EPI_RELU_MASK, EG_EPI_CLIP_MASK };
typedef struct {
    int kind;
    const float *y;
    float lo, hi;
} eg_epi;

/* The loops of the epilogue, in the form of eg_eltwise.c's (d == s allowed), compiled as theirs:
 * not inlined, and with the bounds as run-time values (GCC's constant-propagated clone of the clamp
 * with lo = 0 compiles to compare/blend/zero-mask instead of max/min, 2.5x slower on AVX-512). */
#if defined(__GNUC__) && !defined(__clang__)
#define EG_EPI_FN __attribute__((noipa))
#else
#define EG_EPI_FN __attribute__((noinline))
#endif
static EG_EPI_FN void eg_epi_relu(float *d, const float *s, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = s[i] > 0.0f ? s[i] : 0.0f;
}

static EG_EPI_FN void eg_epi_clamp(float *d, const float *s, int n, float lo, float hi)
{
    for (int i = 0; i < n; i++) {
        float v = s[i] < lo ? lo : s[i];
        d[i] = v > hi ? hi : v;
    }
}

static EG_EPI_FN void eg_epi_relu_mask(float *d, const float *s, const float *y, int n)
{
    for (int i = 0; i < n; i++)
        d[i] = y[i] > 0.0f ? s[i] : 0.0f;
}

static EG_EPI_FN void eg_epi_clip_mask(float *d, const float *s, const float *y, int n, float lo,
                                       float hi)
{
    for (int i = 0; i < n; i++)
        d[i] = (y[i] > lo && y[i] < hi) ? s[i] : 0.0f;
}

/* d[0..n) = the epilogue of s[0..n) (d == s: in place); d is element off of the output. */
static void eg_epi_row(float *d, const float *s, int n, const eg_epi *e, ptrdiff_t off)
{
    switch (e->kind) {
    case EG_EPI_RELU:
        eg_epi_relu(d, s, n);
        break;
    case EG_EPI_RELU6:
        eg_epi_clamp(d, s, n, 0.0f, 6.0f);
        break;
    case EG_EPI_RELU_MASK:
        eg_epi_relu_mask(d, s, e->y + off, n);
        break;
    case EG_EPI_CLIP_MASK:
        eg_epi_clip_mask(d, s, e->y + off, n, e->lo, e->hi);
        break;
    default:
        if (d != s)
            eg_copy_row(d, s, n);
    }
}

/* The epilogue over a [rows, n] block of the output at element off, rows ld apart, in place
 * (one call when the rows are contiguous). */
static void eg_epi_block(float *d, int rows, int n, ptrdiff_t ld, const eg_epi *e, ptrdiff_t off)
{
    if (ld == n) {
        eg_epi_row(d, d, rows * n, e, off);
        return;
    }
    for (int r = 0; r < rows; r++)
        eg_epi_row(d + r * ld, d + r * ld, n, e, off + r * ld);
}

/* mask 1: ReluGrad, 2: ClipGrad (lo, hi): the epilogue of the _mask variants. */
static eg_epi eg_mask_epi(const float *y, int mask, float lo, float hi)
{
    const eg_epi e = {mask == 1 ? EG_EPI_RELU_MASK : mask == 2 ? EG_EPI_CLIP_MASK : EG_EPI_NONE, y,
                      lo, hi};
    return e;
}

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

static inline int eg_min(int a, int b) { return a < b ? a : b; }
static inline int eg_max(int a, int b) { return a > b ? a : b; }

static inline int eg_is_depthwise(int C, int M, int G) { return C == G && M == G; }

static inline int eg_is_pointwise(int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                                  int pt, int pl)
{
    return KH == 1 && KW == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && OH == H && OW == W;
}

/* Geometry shared by im2col and col2im. */
typedef struct {
    int H, W, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w;
} eg_geom;

/* eg_patches for one patch row when sh == sw == 1 and OW == W: the tile's in-image rows are then
 * one contiguous run of x (shifted by offw), so they move as one block; the a (left) and OW - e
 * (right) columns of each row, which the block fills from the neighbouring image row, are zero
 * patches: zeroed after the copy (im2col) or before the add (col2im: col is scratch). ih0 is the
 * image row of the tile's first output row. The block is clipped to the channel [0, HW). */
static void eg_patch_block(float *restrict d, float *restrict xw, const float *restrict xr_,
                           ptrdiff_t xc, ptrdiff_t HW, int W, int ih0, int H, int offw, int a,
                           int e, int nrows, int to_col)
{
    const int i0 = eg_min(eg_max(-ih0, 0), nrows), i1 = eg_max(i0, eg_min(H - ih0, nrows));
    if (to_col) {
        for (ptrdiff_t j = 0; j < (ptrdiff_t)i0 * W; j++)
            d[j] = 0.0f;
        for (ptrdiff_t j = (ptrdiff_t)i1 * W; j < (ptrdiff_t)nrows * W; j++)
            d[j] = 0.0f;
    } else {
        for (int i = i0; i < i1; i++) {
            float *dr = d + (ptrdiff_t)i * W;
            for (int ow = 0; ow < a; ow++)
                dr[ow] = 0.0f;
            for (int ow = e; ow < W; ow++)
                dr[ow] = 0.0f;
        }
    }
    if (i1 <= i0)
        return;
    /* block element j (from row i0) is x[xc + (ih0 + i0)*W + offw + j] */
    const ptrdiff_t base = (ptrdiff_t)(ih0 + i0) * W + offw, len = (ptrdiff_t)(i1 - i0) * W;
    const ptrdiff_t j0 = base < 0 ? -base : 0, j1 = base + len > HW ? HW - base : len;
    float *db = d + (ptrdiff_t)i0 * W;
    if (to_col) {
        const float *xs = xr_ + xc + base;
        for (ptrdiff_t j = j0; j < j1; j++)
            db[j] = xs[j];
        for (int i = i0; i < i1; i++) {
            float *dr = d + (ptrdiff_t)i * W;
            for (int ow = 0; ow < a; ow++)
                dr[ow] = 0.0f;
            for (int ow = e; ow < W; ow++)
                dr[ow] = 0.0f;
        }
    } else {
        float *xs = xw + xc + base;
        for (ptrdiff_t j = j0; j < j1; j++)
            xs[j] += db[j];
    }
}

/* The patch matrix of output rows [oh0, oh0+nrows) (all OW pixels of each), rows (c, kh, kw)
 * for c < nc. Element (r, j) of the tile, j = (oh-oh0)*OW + ow, lives at col[r*col_rs + j*col_cs].
 * to_col != 0: col = x[c, ih, iw] or 0 (im2col); else x[c, ih, iw] += col (col2im, col_cs 1).
 * The in-image range of ow depends only on kw, so it is found once per patch row. */
static void eg_patches(float *restrict col, ptrdiff_t col_rs, ptrdiff_t col_cs, float *restrict xw,
                       const float *restrict xr_, ptrdiff_t HW, int nc, const eg_geom *gm, int oh0,
                       int nrows, int to_col)
{
    const int W = gm->W, OW = gm->OW, sw = gm->sw;
    const int rowblock = col_cs == 1 && sw == 1 && gm->sh == 1 && OW == W;
    int r = 0;
    for (int c = 0; c < nc; c++) {
        for (int kh = 0; kh < gm->KH; kh++) {
            for (int kw = 0; kw < gm->KW; kw++, r++) {
                const int offw = kw * gm->dil_w - gm->pl; /* iw = ow*sw + offw */
                const int a = eg_min(eg_first_in(offw, sw), OW);
                const int e = eg_max(a, eg_end_in(offw, sw, W, OW));
                if (rowblock) {
                    eg_patch_block(col + r * col_rs, xw, xr_, (ptrdiff_t)c * HW, HW, W,
                                   oh0 - gm->pt + kh * gm->dil_h, gm->H, offw, a, e, nrows,
                                   to_col);
                    continue;
                }
                for (int i = 0; i < nrows; i++) {
                    const int ih = (oh0 + i) * gm->sh - gm->pt + kh * gm->dil_h;
                    float *d = col + r * col_rs + (ptrdiff_t)i * OW * col_cs;
                    const int inside = ih >= 0 && ih < gm->H;
                    const ptrdiff_t xo = (ptrdiff_t)c * HW + (ptrdiff_t)ih * W + offw;
                    if (!to_col) {
                        if (!inside)
                            continue;
                        float *xs = xw + xo;
                        if (sw == 1)
                            for (int ow = a; ow < e; ow++)
                                xs[ow] += d[ow];
                        else
                            for (int ow = a; ow < e; ow++)
                                xs[(ptrdiff_t)ow * sw] += d[ow];
                    } else if (!inside) {
                        for (int ow = 0; ow < OW; ow++)
                            d[ow * col_cs] = 0.0f;
                    } else if (col_cs == 1) {
                        const float *xs = xr_ + xo;
                        for (int ow = 0; ow < a; ow++)
                            d[ow] = 0.0f;
                        if (sw == 1)
                            for (int ow = a; ow < e; ow++)
                                d[ow] = xs[ow];
                        else
                            for (int ow = a; ow < e; ow++)
                                d[ow] = xs[(ptrdiff_t)ow * sw];
                        for (int ow = e; ow < OW; ow++)
                            d[ow] = 0.0f;
                    } else {
                        const float *xs = xr_ + xo;
                        for (int ow = 0; ow < a; ow++)
                            d[ow * col_cs] = 0.0f;
                        for (int ow = a; ow < e; ow++)
                            d[ow * col_cs] = xs[(ptrdiff_t)ow * sw];
                        for (int ow = e; ow < OW; ow++)
                            d[ow * col_cs] = 0.0f;
                    }
                }
            }
        }
    }
}

/* Output rows per im2col tile: whole rows, about EG_PTILE pixels (at least one row). */
static inline int eg_tile_rows(int OW) { return OW <= 0 || OW >= EG_PTILE ? 1 : EG_PTILE / OW; }

/* Wide output rows per band of the implicit-GEMM forward: about EG_PTILE wide pixels. */
static inline int eg_implicit_rows(int OH, int Wp) { return eg_min(OH, eg_tile_rows(Wp)); }

/* ---- depthwise: phase planes ------------------------------------------------------------
 * A depthwise tap touches rows of only OW (3..48) pixels, so a loop per row and tap is mostly
 * overhead. Instead, for a band of R output rows of one channel, the input is copied once
 * (zero padded) into sh*sw "phase planes" on the stack: plane (ph, pw) holds
 *   P[ph,pw][j, i] = x[(oh0 + j)*sh + ph - pt, i*sw + pw - pl]   (0 outside the image)
 * for j < R + halo, i < Wq, rows Wq apart. Tap (kh, kw) (qh = kh*dil_h, qw = kw*dil_w) of
 * output (oh0 + r, ow) is then P[qh%sh, qw%sw][r + qh/sh, ow + qw/sw]: with f = r*Wq + ow,
 * the flat index f + off[tap]. So each tap is one contiguous loop over the whole band
 * (f < R*Wq; columns ow >= OW are junk, dropped on the way out), and all taps of 8 outputs
 * sum in one register. bw_weight and bw_input use the same planes with dy laid out at f. */
#define EG_DW_BUF 4096 /* floats of stack for planes + one band of dy / y (16 KiB) */
#define EG_DW_TAPS 49
#define EG_DW_INF (__builtin_inff()) /* clamp bounds of an unclamped depthwise (eg_dw_fw_fast) */

typedef struct {
    int sh, sw, Wq, halo, R, psz; /* psz: floats per plane, slack included */
    int T, maxoff;
    int off[EG_DW_TAPS];  /* tap t: plane*psz + in-plane offset */
    int offp[EG_DW_TAPS]; /* tap t: in-plane offset (qh/sh)*Wq + qw/sw */
    int plane[EG_DW_TAPS];
} eg_dw_plan;

static inline int eg_ceil8(int v) { return (v + 7) & ~7; }

/* 0 when the taps or a single output row do not fit the stack buffer (use the row loops). */
static int eg_dw_plan_make(eg_dw_plan *p, int OH, int OW, int KH, int KW, int sh, int sw,
                           int dil_h, int dil_w)
{
    const int T = KH * KW;
    if (T > EG_DW_TAPS || OH <= 0 || OW <= 0)
        return 0;
    p->sh = sh;
    p->sw = sw;
    p->T = T;
    p->Wq = OW + ((KW - 1) * dil_w) / sw;
    p->halo = ((KH - 1) * dil_h) / sh;
    p->maxoff = p->halo * p->Wq + p->Wq;
    /* floats(R) = sh*sw*((R + halo)*Wq + Wq + 8) + maxoff + (R + halo)*Wq + 16 */
    const long per = (long)(sh * sw + 1) * p->Wq;
    const long fixed = (long)sh * sw * ((long)p->halo * p->Wq + p->Wq + 8) + p->maxoff +
                       (long)p->halo * p->Wq + 16;
    if (fixed + per > EG_DW_BUF)
        return 0;
    const long R = (EG_DW_BUF - fixed) / per;
    p->R = R < OH ? (int)R : OH;
    p->psz = (p->R + p->halo) * p->Wq + p->Wq + 8;
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            const int t = kh * KW + kw, qh = kh * dil_h, qw = kw * dil_w;
            p->plane[t] = (qh % sh) * sw + qw % sw;
            p->offp[t] = (qh / sh) * p->Wq + qw / sw;
            p->off[t] = p->plane[t] * p->psz + p->offp[t];
        }
    return 1;
}

/* Fill the planes of the band starting at output row oh0 with nb output rows, from one
 * channel xc[H, W] (to_planes), or add them into dxc (col2im, !to_planes). */
static void eg_dw_planes(float *restrict buf, float *restrict dxc, const float *restrict xc,
                         const eg_dw_plan *p, int H, int W, int pt, int pl, int oh0, int nb,
                         int to_planes)
{
    const int Wq = p->Wq, rows = nb + p->halo;
    for (int ph = 0; ph < p->sh; ph++) {
        for (int pw = 0; pw < p->sw; pw++) {
            float *P = buf + (ph * p->sw + pw) * p->psz;
            const int offw = pw - pl; /* iw = i*sw + offw */
            const int i0 = eg_min(eg_first_in(offw, p->sw), Wq);
            const int i1 = eg_max(i0, eg_end_in(offw, p->sw, W, Wq));
            for (int j = 0; j < rows; j++) {
                const int ih = (oh0 + j) * p->sh + ph - pt;
                float *row = P + j * Wq;
                const int inside = ih >= 0 && ih < H;
                if (!to_planes) {
                    if (!inside)
                        continue;
                    float *xr = dxc + (ptrdiff_t)ih * W + offw;
                    if (p->sw == 1)
                        for (int i = i0; i < i1; i++)
                            xr[i] += row[i];
                    else
                        for (int i = i0; i < i1; i++)
                            xr[(ptrdiff_t)i * p->sw] += row[i];
                    continue;
                }
                if (!inside) {
                    for (int i = 0; i < Wq; i++)
                        row[i] = 0.0f;
                    continue;
                }
                const float *xr = xc + (ptrdiff_t)ih * W + offw;
                for (int i = 0; i < i0; i++)
                    row[i] = 0.0f;
                if (p->sw == 1) {
                    for (int i = i0; i < i1; i++)
                        row[i] = xr[i];
                } else {
                    int i = i0;
#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
                    if (p->sw == 2) /* deinterleave 16 floats into the 8 even ones */
                        for (; i + 8 <= i1 && 2 * i + offw + 16 <= W; i += 8) {
                            const eg_v8 lo = eg_ld8(xr + 2 * i), hi = eg_ld8(xr + 2 * i + 8);
                            eg_st8(row + i, __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14));
                        }
#endif
                    for (; i < i1; i++)
                        row[i] = xr[(ptrdiff_t)i * p->sw];
                }
                for (int i = i1; i < Wq; i++)
                    row[i] = 0.0f;
            }
            if (to_planes)
                for (int i = rows * Wq; i < p->psz; i++)
                    P[i] = 0.0f;
        }
    }
}

/* d[r*Wq + ow] = src[(oh0 + r)*OW + ow] for ow < OW, 0 for the junk columns and up to n. */
static void eg_dw_band_in(float *restrict d, const float *restrict src, int Wq, int OW, int oh0,
                          int nb, int n)
{
    for (int r = 0; r < nb; r++) {
        const float *s = src + (ptrdiff_t)(oh0 + r) * OW;
        float *dr = d + r * Wq;
        for (int ow = 0; ow < OW; ow++)
            dr[ow] = s[ow];
        for (int ow = OW; ow < Wq; ow++)
            dr[ow] = 0.0f;
    }
    for (int i = nb * Wq; i < n; i++)
        d[i] = 0.0f;
}

/* yt[f] = bias + sum_t w[t] * buf[off[t] + f] for f < n (a multiple of 8); T taps. */
static inline __attribute__((always_inline)) void
eg_dw_fw_band(const int T, float *restrict yt, const float *restrict buf, const int *off,
              const float *restrict w, float bias, int n)
{
    if (T == 9) { /* 3x3: weights and tap pointers in registers, not reloaded per vector */
        const eg_v8 w0 = eg_splat8(w[0]), w1 = eg_splat8(w[1]), w2 = eg_splat8(w[2]);
        const eg_v8 w3 = eg_splat8(w[3]), w4 = eg_splat8(w[4]), w5 = eg_splat8(w[5]);
        const eg_v8 w6 = eg_splat8(w[6]), w7 = eg_splat8(w[7]), w8 = eg_splat8(w[8]);
        const float *p0 = buf + off[0], *p1 = buf + off[1], *p2 = buf + off[2];
        const float *p3 = buf + off[3], *p4 = buf + off[4], *p5 = buf + off[5];
        const float *p6 = buf + off[6], *p7 = buf + off[7], *p8 = buf + off[8];
        const eg_v8 bv = eg_splat8(bias);
        for (int f = 0; f < n; f += 8) {
            eg_v8 acc = bv + w0 * eg_ld8(p0 + f);
            acc += w1 * eg_ld8(p1 + f);
            acc += w2 * eg_ld8(p2 + f);
            acc += w3 * eg_ld8(p3 + f);
            acc += w4 * eg_ld8(p4 + f);
            acc += w5 * eg_ld8(p5 + f);
            acc += w6 * eg_ld8(p6 + f);
            acc += w7 * eg_ld8(p7 + f);
            acc += w8 * eg_ld8(p8 + f);
            eg_st8(yt + f, acc);
        }
        return;
    }
    for (int f = 0; f < n; f += 8) {
        eg_v8 acc = eg_splat8(bias);
        for (int t = 0; t < T; t++)
            acc += eg_splat8(w[t]) * eg_ld8(buf + off[t] + f);
        eg_st8(yt + f, acc);
    }
}

static void eg_dw_fw_planes(float *restrict y, const float *restrict x, const float *restrict w,
                            const float *restrict b, int N, int C, int H, int W, int OH, int OW,
                            int pt, int pl, const eg_dw_plan *p)
{
    float buf[EG_DW_BUF] __attribute__((aligned(64)));
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const int T = p->T, Wq = p->Wq;
    float *yt = buf + p->sh * p->sw * p->psz;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < C; m++) {
            const float *xc = x + ((ptrdiff_t)n * C + m) * HW;
            float *ym = y + ((ptrdiff_t)n * C + m) * OHW;
            const float *wm = w + (ptrdiff_t)m * T;
            const float bias = b ? b[m] : 0.0f;
            for (int oh0 = 0; oh0 < OH; oh0 += p->R) {
                const int nb = eg_min(p->R, OH - oh0), nf = eg_ceil8(nb * Wq);
                eg_dw_planes(buf, NULL, xc, p, H, W, pt, pl, oh0, nb, 1);
                if (T == 9)
                    eg_dw_fw_band(9, yt, buf, p->off, wm, bias, nf);
                else
                    eg_dw_fw_band(T, yt, buf, p->off, wm, bias, nf);
                for (int r = 0; r < nb; r++) {
                    float *yr = ym + (ptrdiff_t)(oh0 + r) * OW;
                    for (int ow = 0; ow < OW; ow++)
                        yr[ow] = yt[r * Wq + ow];
                }
            }
        }
    }
}

/* s[t] += sum_f dyt[f] * buf[off[t] + f] for f < n (a multiple of 8). */
static inline __attribute__((always_inline)) void
eg_dw_bww_band(const int T, float *restrict s, const float *restrict dyt,
               const float *restrict buf, const int *off, int n)
{
    if (T <= 9) {
        eg_v8 acc[9];
        for (int t = 0; t < T; t++)
            acc[t] = eg_splat8(0.0f);
        for (int f = 0; f < n; f += 8) {
            const eg_v8 d = eg_ld8(dyt + f);
            for (int t = 0; t < T; t++)
                acc[t] += d * eg_ld8(buf + off[t] + f);
        }
        for (int t = 0; t < T; t++)
            s[t] += ((acc[t][0] + acc[t][4]) + (acc[t][1] + acc[t][5])) +
                    ((acc[t][2] + acc[t][6]) + (acc[t][3] + acc[t][7]));
        return;
    }
    for (int t = 0; t < T; t++) {
        eg_v8 acc = eg_splat8(0.0f);
        for (int f = 0; f < n; f += 8)
            acc += eg_ld8(dyt + f) * eg_ld8(buf + off[t] + f);
        s[t] += ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    }
}

static void eg_dw_bw_weight_planes(float *restrict dwt, const float *restrict dy,
                                   const float *restrict x, int N, int C, int H, int W, int OH,
                                   int OW, int pt, int pl, int M_upd, int Cx,
                                   const eg_dw_plan *p)
{
    float buf[EG_DW_BUF] __attribute__((aligned(64)));
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const int T = p->T, Wq = p->Wq;
    float *dyt = buf + p->sh * p->sw * p->psz;
    for (int m = 0; m < M_upd; m++) {
        float *s = dwt + (ptrdiff_t)m * T;
        for (int t = 0; t < T; t++)
            s[t] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *xc = x + ((ptrdiff_t)n * Cx + m) * HW;
            const float *dym = dy + ((ptrdiff_t)n * C + m) * OHW;
            for (int oh0 = 0; oh0 < OH; oh0 += p->R) {
                const int nb = eg_min(p->R, OH - oh0), nf = eg_ceil8(nb * Wq);
                eg_dw_planes(buf, NULL, xc, p, H, W, pt, pl, oh0, nb, 1);
                eg_dw_band_in(dyt, dym, Wq, OW, oh0, nb, nf);
                if (T == 9)
                    eg_dw_bww_band(9, s, dyt, buf, p->off, nf);
                else
                    eg_dw_bww_band(T, s, dyt, buf, p->off, nf);
            }
        }
    }
}

/* P[g] = sum_t wq[t] * src[t][g] for g < n (a multiple of 8); nt taps. */
static inline __attribute__((always_inline)) void
eg_dw_gather(const int nt, float *restrict P, const float *const *src, const float *wq, int n)
{
    for (int g = 0; g < n; g += 8) {
        eg_v8 acc = eg_splat8(0.0f);
        for (int t = 0; t < nt; t++)
            acc += eg_splat8(wq[t]) * eg_ld8(src[t] + g);
        eg_st8(P + g, acc);
    }
}

/* bw_input: dP[g] = sum over the taps t of plane P of w[t] * dyt[g - offp[t]] (dyt zero outside
 * the band: it starts maxoff floats into dyz, which is zero before), then col2im of the planes. */
static void eg_dw_bw_input_planes(float *restrict dx, const float *restrict dy,
                                  const float *restrict w, int N, int C, int H, int W, int OH,
                                  int OW, int pt, int pl, const eg_dw_plan *p)
{
    float buf[EG_DW_BUF] __attribute__((aligned(64)));
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    const int T = p->T, Wq = p->Wq, L = p->maxoff, np = p->sh * p->sw;
    float *dyz = buf + np * p->psz;
    for (int i = 0; i < L; i++)
        dyz[i] = 0.0f;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < C; m++) {
            float *dxc = dx + ((ptrdiff_t)n * C + m) * HW;
            const float *dym = dy + ((ptrdiff_t)n * C + m) * OHW;
            const float *wm = w + (ptrdiff_t)m * T;
            for (ptrdiff_t i = 0; i < HW; i++)
                dxc[i] = 0.0f;
            for (int oh0 = 0; oh0 < OH; oh0 += p->R) {
                const int nb = eg_min(p->R, OH - oh0), ng = eg_ceil8((nb + p->halo) * Wq);
                eg_dw_band_in(dyz + L, dym, Wq, OW, oh0, nb, ng + 8);
                for (int q = 0; q < np; q++) {
                    float *restrict P = buf + q * p->psz;
                    float wq[EG_DW_TAPS];
                    const float *src[EG_DW_TAPS];
                    int nt = 0;
                    for (int t = 0; t < T; t++)
                        if (p->plane[t] == q) {
                            wq[nt] = wm[t];
                            src[nt++] = dyz + L - p->offp[t];
                        }
                    if (nt == 0) {
                        for (int g = 0; g < ng; g++)
                            P[g] = 0.0f;
                    } else if (nt == 9) {
                        eg_dw_gather(9, P, src, wq, ng);
                    } else {
                        eg_dw_gather(nt, P, src, wq, ng);
                    }
                }
                eg_dw_planes(buf, dxc, NULL, p, H, W, pt, pl, oh0, nb, 0);
            }
        }
    }
}

/* ---- forward ---------------------------------------------------------------------------- */

/* Depthwise: y[n,m] = b[m] + sum_{kh,kw} w[m,0,kh,kw] * x[n,m] shifted. Tap by tap over the
 * whole channel (it stays in L1), so the in-image ranges (divisions) are found once per tap,
 * not per row; each element still sums bias then taps in the reference's order. */
static void eg_dw_fw(float *restrict y, const float *restrict x, const float *restrict w,
                     const float *restrict b, int N, int C, int H, int W, int OH, int OW, int KH,
                     int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w)
{
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < C; m++) {
            const float *xc = x + ((ptrdiff_t)n * C + m) * HW;
            float *restrict ym = y + ((ptrdiff_t)n * C + m) * OHW;
            const float *wm = w + m * KK;
            const float bias = b ? b[m] : 0.0f;
            for (ptrdiff_t i = 0; i < OHW; i++)
                ym[i] = bias;
            for (int kh = 0; kh < KH; kh++) {
                const int offh = kh * dil_h - pt; /* ih = oh*sh + offh */
                const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    const float wv = wm[kh * KW + kw];
                    for (int oh = oh0; oh < oh1; oh++) {
                        float *restrict yr = ym + (ptrdiff_t)oh * OW;
                        const float *restrict xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                        if (sw == 1)
                            for (int ow = ow0; ow < ow1; ow++)
                                yr[ow] += wv * xr[ow];
                        else
                            for (int ow = ow0; ow < ow1; ow++)
                                yr[ow] += wv * xr[(ptrdiff_t)ow * sw];
                    }
                }
            }
        }
    }
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* ---- pointwise forward on a few pixels: channels and pixels share the lanes (AVX-512) -------
 * With the pixels as the vector direction a 3x3 image (P = 9) fills 9 of 16 lanes, and a 6x6 one
 * (36 = 2*16 + 4) leaves a panel of 4 pixels in 16 lanes. Here a run of np pixels (np = 1, 2, 4, 8)
 * shares a vector with cpl = 16 / np channels: lane l*cpl + h holds pixel p0 + l of channel k*cpl + h
 * (xq, packed per call), so one FMA with w[m, k*cpl .. k*cpl + cpl) broadcast to every group of cpl
 * lanes does 16 useful products, and y[m, p0 + l] is the sum of lanes l*cpl .. l*cpl + cpl - 1 (a few
 * shuffles) at the end. eg_pw_fw_small: the whole 16-pixel blocks by the GEMM, the rest as runs of
 * powers of two (9 = 8 + 1, 36 = 32 + 4). Channels past C: zero in xq and a masked load of w. */
#define EG_PW_XQ 8192 /* floats of xq on the stack (32 KiB): C * np */
/* w[0 .. cpl) broadcast to every group of cpl lanes; nv < cpl: only the first nv read (the rest 0) */
static inline __attribute__((always_inline)) __m512 eg_pw_wchunk(const int cpl, const float *wk, int nv)
{
    if (nv >= cpl) { /* whole chunks: one broadcast load */
        double pair;
        switch (cpl) {
        case 1:
            return _mm512_set1_ps(wk[0]);
        case 2:
            __builtin_memcpy(&pair, wk, sizeof pair);
            return _mm512_castpd_ps(_mm512_set1_pd(pair));
        case 4:
            return _mm512_broadcast_f32x4(_mm_loadu_ps(wk));
        case 8:
            return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_loadu_pd((const double *)wk)));
        default:
            return _mm512_loadu_ps(wk);
        }
    }
    const __mmask16 m = (__mmask16)((1u << nv) - 1u);
    switch (cpl) {
    case 1:
        return _mm512_set1_ps(wk[0]);
    case 2:
        return _mm512_castpd_ps(_mm512_broadcastsd_pd(_mm_castps_pd(_mm_maskz_loadu_ps(m & 3, wk))));
    case 4:
        return _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(m & 15, wk));
    case 8:
        return _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_maskz_loadu_ps(m & 255, wk))));
    default:
        return _mm512_maskz_loadu_ps(m, wk);
    }
}

static inline __attribute__((always_inline)) void
eg_pw_fw_run(const int cpl, float *restrict y, float *restrict xq, const float *restrict x,
             const float *restrict w, const float *restrict b, int M, int C, int P, int kg, int p0)
{
    enum { MR = 8 };
    const int np = 16 / cpl, K = (C + cpl - 1) / cpl;
    for (int k = 0; k < K; k++) /* xq[k][l*cpl + h] = x[k*cpl + h, p0 + l] (0 past C) */
        for (int l = 0; l < np; l++)
            for (int h = 0; h < cpl; h++)
                xq[k * 16 + l * cpl + h] = k * cpl + h < C ? x[(ptrdiff_t)(k * cpl + h) * P + p0 + l] : 0.0f;
    __m512i pick = _mm512_setzero_si512(); /* lane l <- lane l*cpl */
    {
        int iv[16] __attribute__((aligned(64)));
        for (int l = 0; l < 16; l++)
            iv[l] = l < np ? l * cpl : 0;
        pick = _mm512_load_si512(iv);
    }
    for (int m0 = 0; m0 < M; m0 += MR) {
        const int mr = M - m0 < MR ? M - m0 : MR;
        __m512 acc[MR];
        const float *wr[MR];
        for (int i = 0; i < MR; i++) {
            acc[i] = _mm512_setzero_ps();
            wr[i] = w + (ptrdiff_t)(m0 + (i < mr ? i : mr - 1)) * kg;
        }
        const int Kf = C / cpl; /* whole chunks of cpl channels, then the tail (K > Kf) */
        for (int k = 0; k < Kf; k++) {
            const __m512 xv = _mm512_load_ps(xq + k * 16);
            for (int i = 0; i < MR; i++)
                acc[i] = _mm512_fmadd_ps(eg_pw_wchunk(cpl, wr[i] + k * cpl, cpl), xv, acc[i]);
        }
        for (int k = Kf; k < K; k++) {
            const __m512 xv = _mm512_load_ps(xq + k * 16);
            for (int i = 0; i < MR; i++)
                acc[i] = _mm512_fmadd_ps(eg_pw_wchunk(cpl, wr[i] + k * cpl, C - k * cpl), xv, acc[i]);
        }
        for (int i = 0; i < mr; i++) {
            __m512 v = acc[i];
            if (cpl >= 2)
                v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));
            if (cpl >= 4)
                v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));
            if (cpl >= 8)
                v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
            if (cpl >= 16)
                v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
            float *yo = y + (ptrdiff_t)(m0 + i) * P + p0;
            const float bi = b ? b[m0 + i] : 0.0f;
            if (cpl == 16) { /* one pixel: the sum is in every lane */
                *yo = _mm512_cvtss_f32(v) + bi;
                continue;
            }
            const __m128 bv = _mm_set1_ps(bi);
            v = _mm512_permutexvar_ps(pick, v);
            if (cpl == 2)
                _mm256_storeu_ps(yo, _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_set1_ps(bi)));
            else if (cpl == 4)
                _mm_storeu_ps(yo, _mm_add_ps(_mm512_castps512_ps128(v), bv));
            else
                _mm_storel_pi((__m64 *)yo, _mm_add_ps(_mm512_castps512_ps128(v), bv));
        }
    }
}

/* y = W x + b on a group's [C, P] x, [M, C] w (rows kg apart): 0 (nothing written) when P is a
 * multiple of 16 (no gain) or xq does not fit. */
static int eg_pw_fw_small(float *restrict y, const float *restrict x, const float *restrict w,
                          const float *restrict b, int M, int C, int P, int kg)
{
    const int P16 = P / 16 * 16;
    if (P == P16 || (ptrdiff_t)C * 8 + 16 * 16 > EG_PW_XQ)
        return 0;
    float xq[EG_PW_XQ] __attribute__((aligned(64)));
    if (P16 > 0)
        gemm_f32_tiled_strided(y, w, x, b, M, P16, C, P, kg, 1, P, 1, 0);
    for (int p0 = P16; p0 < P;) {
        int np = 8;
        while (np > P - p0)
            np /= 2;
        if (np == 1) { /* one pixel: x[:, p0] contiguous, a dot product per row (measured faster than a run) */
            const int Cv = C / 16 * 16;
            const __mmask16 tail = (__mmask16)((1u << (C - Cv)) - 1u);
            for (int c = 0; c < C; c++)
                xq[c] = x[(ptrdiff_t)c * P + p0];
            for (int m = 0; m < M; m++) {
                const float *wm = w + (ptrdiff_t)m * kg;
                __m512 acc = _mm512_setzero_ps();
                for (int c = 0; c < Cv; c += 16)
                    acc = _mm512_fmadd_ps(_mm512_loadu_ps(wm + c), _mm512_load_ps(xq + c), acc);
                if (tail)
                    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, wm + Cv), _mm512_load_ps(xq + Cv), acc);
                y[(ptrdiff_t)m * P + p0] = _mm512_reduce_add_ps(acc) + (b ? b[m] : 0.0f);
            }
            p0++;
            continue;
        }
        const int cpl = 16 / np;
        switch (cpl) {
        case 2: eg_pw_fw_run(2, y, xq, x, w, b, M, C, P, kg, p0); break;
        case 4: eg_pw_fw_run(4, y, xq, x, w, b, M, C, P, kg, p0); break;
        default: eg_pw_fw_run(8, y, xq, x, w, b, M, C, P, kg, p0); break;
        }
        p0 += np;
    }
    return 1;
}
#endif

/* e: the epilogue of conv2d_f32_fw_tiled_act (NULL: none). The depthwise fast paths clamp to
 * [0, inf) or [0, 6] in their store; the others apply it to each tile (or channel) just written. */
static void eg_fw_tiled(float *restrict y, const float *restrict x, const float *restrict w,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH,
                        int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                        int dil_w, int G, float *restrict scratch, const eg_epi *e)
{
    eg_dw_plan dp;
    if (eg_is_depthwise(C, M, G) && eg_dw_fw_fast(y, x, w, b, N, C, H, W, OH, OW, KH, KW, sh, sw, pt,
                                                  pl, dil_h, dil_w, e ? 0.0f : -EG_DW_INF,
                                                  e && e->kind == EG_EPI_RELU6 ? 6.0f : EG_DW_INF))
        return;
    if (eg_is_depthwise(C, M, G) && eg_dw_plan_make(&dp, OH, OW, KH, KW, sh, sw, dil_h, dil_w)) {
        eg_dw_fw_planes(y, x, w, b, N, C, H, W, OH, OW, pt, pl, &dp);
        if (e)
            eg_epi_block(y, 1, N * C * OH * OW, 0, e, 0);
        return;
    }
    if (eg_is_depthwise(C, M, G)) {
        eg_dw_fw(y, x, w, b, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w);
        if (e)
            eg_epi_block(y, 1, N * C * OH * OW, 0, e, 0);
        return;
    }
    const int Cg = C / G, Mg = M / G, Kg = Cg * KH * KW, P = OH * OW;
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    const eg_geom gm = {H, W, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w};
    const int tr = eg_tile_rows(OW);
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW; /* [Cg,H,W] */
            const float *wg = w + (ptrdiff_t)g * Mg * Kg;                      /* [Mg,Kg] */
            float *yg = y + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * P;        /* [Mg,P] */
            const float *bg = b ? b + g * Mg : NULL;
            if (pointwise) {
#if defined(__AVX512F__)
                if (!eg_pw_fw_small(yg, xg, wg, bg, Mg, Cg, P, Kg))
#endif
                    gemm_f32_tiled_strided(yg, wg, xg, bg, Mg, P, Cg, P, Kg, 1, P, 1, 0);
                if (e)
                    eg_epi_block(yg, Mg, P, P, e, yg - y);
                continue;
            }
            for (int oh0 = 0; oh0 < OH; oh0 += tr) {
                const int nrows = eg_min(tr, OH - oh0), p0 = oh0 * OW, np = nrows * OW;
                eg_patches(scratch, np, 1, NULL, xg, HW, Cg, &gm, oh0, nrows, 1);
                gemm_f32_tiled_strided(yg + p0, wg, scratch, bg, Mg, np, Kg, P, Kg, 1, np, 1, 0);
                if (e)
                    eg_epi_block(yg + p0, Mg, np, P, e, yg + p0 - y);
            }
        }
    }
}

void conv2d_f32_fw_tiled(float *restrict y, const float *restrict x, const float *restrict w,
                         const float *restrict b, int N, int C, int H, int W, int M, int OH,
                         int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                         int dil_w, int G, float *restrict scratch)
{
    eg_fw_tiled(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G, scratch,
                NULL);
}

void conv2d_f32_fw_tiled_act(float *restrict y, const float *restrict x, const float *restrict w,
                             const float *restrict b, int N, int C, int H, int W, int M, int OH,
                             int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                             int dil_w, int G, float *restrict scratch, int act)
{
    const eg_epi e = {act == 2 ? EG_EPI_RELU6 : EG_EPI_RELU, NULL, 0.0f, 6.0f};
    eg_fw_tiled(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G, scratch,
                act ? &e : NULL);
}

/* ---- backward to the input -------------------------------------------------------------- */

/* Depthwise: forward y[m, oh, ow] += w[m,kh,kw] * x[m, ih, iw], so dx[m, ih, iw] collects
 * w[m,kh,kw] * dy[m, oh, ow]: each tap scatters the dy channel into the dx rows it read (tap by
 * tap over the channel, as the forward). */
static void eg_dw_bw_input(float *restrict dx, const float *restrict dy, const float *restrict w,
                           int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh,
                           int sw, int pt, int pl, int dil_h, int dil_w)
{
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < C; m++) {
            float *restrict dxc = dx + ((ptrdiff_t)n * C + m) * HW;
            const float *dym = dy + ((ptrdiff_t)n * C + m) * OHW;
            const float *wm = w + m * KK;
            for (ptrdiff_t i = 0; i < HW; i++)
                dxc[i] = 0.0f;
            for (int kh = 0; kh < KH; kh++) {
                const int offh = kh * dil_h - pt;
                const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
                for (int kw = 0; kw < KW; kw++) {
                    const int offw = kw * dil_w - pl;
                    const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                    const float wv = wm[kh * KW + kw];
                    for (int oh = oh0; oh < oh1; oh++) {
                        const float *restrict dyr = dym + (ptrdiff_t)oh * OW;
                        float *restrict xr = dxc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                        if (sw == 1)
                            for (int ow = ow0; ow < ow1; ow++)
                                xr[ow] += wv * dyr[ow];
                        else
                            for (int ow = ow0; ow < ow1; ow++)
                                xr[(ptrdiff_t)ow * sw] += wv * dyr[ow];
                    }
                }
            }
        }
    }
}

/* e: the mask epilogue of conv2d_f32_bw_input_tiled_mask (NULL: none), applied to each group
 * (depthwise: each channel) of dx once it is complete, while it is still in cache. */
static void eg_bw_input_tiled(float *restrict dx, const float *restrict dy,
                              const float *restrict w, int N, int C, int H, int W, int M, int OH,
                              int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                              int dil_w, int G, float *restrict scratch, const eg_epi *e)
{
    eg_dw_plan dp;
    const int dw = eg_is_depthwise(C, M, G);
    if (dw && eg_dw_bw_input_fast(dx, dy, w, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w)) {
        if (e) /* the channel-block kernel writes dx in one sweep: one masking pass after it */
            eg_epi_block(dx, 1, (int)((ptrdiff_t)N * C * H * W), 0, e, 0);
        return;
    }
    const int planes = dw && eg_dw_plan_make(&dp, OH, OW, KH, KW, sh, sw, dil_h, dil_w);
    if (dw && e) { /* per-channel kernels over blocks of channels (about 32 KiB of dx), each
                    * masked once it is written (the same sums as the whole call) */
        const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
        const int cb = (int)eg_max(1, (int)eg_min(C, (int)(8192 / (HW > 0 ? HW : 1))));
        for (int n = 0; n < N; n++)
            for (int m = 0; m < C; m += cb) {
                const int nc = eg_min(cb, C - m);
                const ptrdiff_t i = (ptrdiff_t)n * C + m;
                if (planes)
                    eg_dw_bw_input_planes(dx + i * HW, dy + i * OHW, w + m * KK, 1, nc, H, W, OH, OW,
                                          pt, pl, &dp);
                else
                    eg_dw_bw_input(dx + i * HW, dy + i * OHW, w + m * KK, 1, nc, H, W, OH, OW, KH,
                                   KW, sh, sw, pt, pl, dil_h, dil_w);
                eg_epi_block(dx + i * HW, 1, (int)(nc * HW), 0, e, i * HW);
            }
        return;
    }
    if (planes) {
        eg_dw_bw_input_planes(dx, dy, w, N, C, H, W, OH, OW, pt, pl, &dp);
        return;
    }
    if (dw) {
        eg_dw_bw_input(dx, dy, w, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w);
        return;
    }
    const int Cg = C / G, Mg = M / G, Kg = Cg * KH * KW, P = OH * OW;
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    const eg_geom gm = {H, W, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w};
    const int tr = eg_tile_rows(OW);
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            float *dxg = dx + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW;       /* [Cg,H,W] */
            const float *wg = w + (ptrdiff_t)g * Mg * Kg;                        /* [Mg,Kg] */
            const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * P;  /* [Mg,P] */
            /* W_g^T[Kg, Mg]: element (r, m) = wg[m*Kg + r] */
            if (pointwise) {
                gemm_f32_tiled_strided(dxg, wg, dyg, NULL, Cg, P, Mg, P, 1, Kg, P, 1, 0);
                if (e)
                    eg_epi_block(dxg, Cg, (int)HW, HW, e, dxg - dx);
                continue;
            }
            for (ptrdiff_t i = 0; i < (ptrdiff_t)Cg * HW; i++)
                dxg[i] = 0.0f;
            for (int oh0 = 0; oh0 < OH; oh0 += tr) {
                const int nrows = eg_min(tr, OH - oh0), p0 = oh0 * OW, np = nrows * OW;
                gemm_f32_tiled_strided(scratch, wg, dyg + p0, NULL, Kg, np, Mg, np, 1, Kg, P, 1, 0);
                eg_patches(scratch, np, 1, dxg, NULL, HW, Cg, &gm, oh0, nrows, 0);
            }
            if (e)
                eg_epi_block(dxg, Cg, (int)HW, HW, e, dxg - dx);
        }
    }
}

void conv2d_f32_bw_input_tiled(float *restrict dx, const float *restrict dy,
                               const float *restrict w, int N, int C, int H, int W, int M, int OH,
                               int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                               int dil_w, int G, float *restrict scratch)
{
    eg_bw_input_tiled(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                      scratch, NULL);
}

void conv2d_f32_bw_input_tiled_mask(float *restrict dx, const float *restrict dy,
                                    const float *restrict w, int N, int C, int H, int W, int M,
                                    int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                    int dil_h, int dil_w, int G, float *restrict scratch,
                                    const float *restrict y, int mask, float lo, float hi)
{
    const eg_epi e = eg_mask_epi(y, mask, lo, hi);
    eg_bw_input_tiled(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                      scratch, &e);
}

/* ---- backward to the weight ------------------------------------------------------------- */

/* Depthwise: dw[m,0,kh,kw] = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,m,ih,iw] over in-image taps;
 * 8 lanes along ow for stride 1, 4 scalar partial sums otherwise. */
static void eg_dw_bw_weight(float *restrict dwt, const float *restrict dy,
                            const float *restrict x, int N, int C, int H, int W, int OH, int OW,
                            int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w,
                            int M_upd, int Cx)
{
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW;
    for (int m = 0; m < M_upd; m++) {
        for (int kh = 0; kh < KH; kh++) {
            const int offh = kh * dil_h - pt; /* ih = oh*sh + offh */
            const int oh0 = eg_first_in(offh, sh), oh1 = eg_end_in(offh, sh, H, OH);
            for (int kw = 0; kw < KW; kw++) {
                const int offw = kw * dil_w - pl; /* iw = ow*sw + offw */
                const int ow0 = eg_first_in(offw, sw), ow1 = eg_end_in(offw, sw, W, OW);
                eg_v8 v = {0, 0, 0, 0, 0, 0, 0, 0};
                float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
                for (int n = 0; n < N; n++) {
                    const float *dym = dy + ((ptrdiff_t)n * C + m) * OHW;
                    const float *xc = x + ((ptrdiff_t)n * Cx + m) * HW;
                    for (int oh = oh0; oh < oh1; oh++) {
                        const float *dyr = dym + (ptrdiff_t)oh * OW;
                        const float *xr = xc + (ptrdiff_t)(oh * sh + offh) * W + offw;
                        int ow = ow0;
                        if (sw == 1)
                            for (; ow + 8 <= ow1; ow += 8)
                                v += eg_ld8(dyr + ow) * eg_ld8(xr + ow);
                        for (; ow + 4 <= ow1; ow += 4) {
                            s0 += dyr[ow] * xr[(ptrdiff_t)ow * sw];
                            s1 += dyr[ow + 1] * xr[(ptrdiff_t)(ow + 1) * sw];
                            s2 += dyr[ow + 2] * xr[(ptrdiff_t)(ow + 2) * sw];
                            s3 += dyr[ow + 3] * xr[(ptrdiff_t)(ow + 3) * sw];
                        }
                        for (; ow < ow1; ow++)
                            s0 += dyr[ow] * xr[(ptrdiff_t)ow * sw];
                    }
                }
                dwt[((ptrdiff_t)m * KH + kh) * KW + kw] =
                    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])) +
                    ((s0 + s1) + (s2 + s3));
            }
        }
    }
}

void conv2d_f32_bw_weight_tiled(float *restrict dwt, const float *restrict dy,
                                const float *restrict x, int N, int C, int H, int W, int M, int OH,
                                int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                                int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                float *restrict scratch)
{
    if (M_upd <= 0 || Cg_upd <= 0)
        return;
    eg_dw_plan dp;
    if (eg_is_depthwise(C, M, G) && eg_dw_bw_weight_fast(dwt, dy, x, N, C, H, W, OH, OW, KH, KW, sh, sw,
                                                         pt, pl, dil_h, dil_w, M_upd, Cx))
        return;
    if (eg_is_depthwise(C, M, G) && eg_dw_plan_make(&dp, OH, OW, KH, KW, sh, sw, dil_h, dil_w)) {
        eg_dw_bw_weight_planes(dwt, dy, x, N, C, H, W, OH, OW, pt, pl, M_upd, Cx, &dp);
        return;
    }
    if (eg_is_depthwise(C, M, G)) {
        eg_dw_bw_weight(dwt, dy, x, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w,
                        M_upd, Cx);
        return;
    }
    const int Cg = C / G, Mg = M / G, Ku = Cg_upd * KH * KW, P = OH * OW;
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    const eg_geom gm = {H, W, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w};
    const int tr = eg_tile_rows(OW);
    for (int g = 0; g < G; g++) {
        const int m0 = g * Mg, rows = eg_min(M_upd, m0 + Mg) - m0;
        if (rows <= 0)
            break;
        float *dwg = dwt + (ptrdiff_t)m0 * Ku; /* [rows, Ku] */
        if (N <= 0 || P <= 0) {                /* no terms: the gradient is zero */
            for (ptrdiff_t i = 0; i < (ptrdiff_t)rows * Ku; i++)
                dwg[i] = 0.0f;
            continue;
        }
        for (int n = 0; n < N; n++) {
            const float *xg = x + ((ptrdiff_t)n * Cx + (ptrdiff_t)g * Cg) * HW; /* [Cg_upd,H,W] */
            const float *dyg = dy + ((ptrdiff_t)n * M + m0) * P;               /* [rows,P] */
            if (pointwise) { /* col^T[P, Cg_upd]: element (p, c) = xg[c*HW + p] */
                if (P >= EG_NT_PIXELS) /* both along the pixels: dot products (eg_gemm_tiled.c) */
                    gemm_f32_tiled_nt(dwg, dyg, xg, rows, Ku, P, Ku, 1, P, (int)HW, n > 0);
                else
                    gemm_f32_tiled_strided(dwg, dyg, xg, NULL, rows, Ku, P, Ku, P, 1, 1, (int)HW,
                                           n > 0);
                continue;
            }
            for (int oh0 = 0; oh0 < OH; oh0 += tr) {
                /* dW_g^T[Ku, rows] += col[Ku, np] . dy_g^T[np, rows], written transposed in
                 * place: the im2col tile stays in its contiguous layout, every row block of
                 * the GEMM is full (Ku rows) and only the small dy panel is packed */
                const int nrows = eg_min(tr, OH - oh0), p0 = oh0 * OW, np = nrows * OW;
                eg_patches(scratch, np, 1, NULL, xg, HW, Cg_upd, &gm, oh0, nrows, 1);
                gemm_f32_tiled_strided_ld(dwg, scratch, dyg + p0, NULL, Ku, rows, np, 1, Ku, np, 1,
                                          1, P, n > 0 || p0 > 0);
            }
        }
    }
}

/* The SGD update fused into the pointwise weight gradient (passes/fuse.py; pointwise only, the fuse
 * pass checks): for m < M_upd and c < Cg_upd, w[m*w_stride + c] -= lr * dW[m, c], the GEMM's sums
 * scaled by -lr and added to w from its registers (per image and k block of 128 pixels: in parts),
 * without a gradient buffer. No scratch. */
void conv2d_f32_bw_weight_sgd_tiled(float *restrict w, const float *restrict dy,
                                    const float *restrict x, int N, int C, int H, int W, int M,
                                    int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                    int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                    int w_stride, float lr, float *restrict scratch)
{
    (void)KH, (void)KW, (void)sh, (void)sw, (void)pt, (void)pl, (void)dil_h, (void)dil_w, (void)scratch;
    if (M_upd <= 0 || Cg_upd <= 0)
        return;
    const int Cg = C / G, Mg = M / G, P = OH * OW;
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    for (int g = 0; g < G; g++) {
        const int m0 = g * Mg, rows = eg_min(M_upd, m0 + Mg) - m0;
        if (rows <= 0)
            break;
        for (int n = 0; n < N; n++) /* w[m, c] += -lr * sum_p dy[m, p] * x[c, p] */
            gemm_f32_tiled_strided_axpy(w + (ptrdiff_t)m0 * w_stride, dy + ((ptrdiff_t)n * M + m0) * P,
                                        x + ((ptrdiff_t)n * Cx + (ptrdiff_t)g * Cg) * HW, rows, Cg_upd, P,
                                        w_stride, P, 1, 1, (int)HW, -lr);
    }
}

/* ---- phase planes: the patch walker of the implicit kernels -----------------------------
 * Output pixel (oh, ow) reads, at tap (kh, kw) with (qh, qw) = (kh*dil_h, kw*dil_w),
 * x[c, oh*sh + qh - pt, ow*sw + qw - pl] = plane (qh % sh, qw % sw) of channel c at row
 * oh + qh / sh, column ow + qw / sw, where plane (ph, pw)[j, i] = x[c, j*sh + ph - pt,
 * i*sw + pw - pl] (0 outside the image) for j < rows = OH + ((KH-1)*dil_h) / sh and
 * i < Wq = OW + ((KW-1)*dil_w) / sw. Over the "wide" pixel index f = oh*Wq + ow, patch row
 * (c, t) is then planes_c + tap[t] + f, one contiguous run: a GEMM reads its patch operand
 * straight from the planes instead of an im2col copy KH*KW times the image. The Wq - OW junk
 * columns of each wide row are dropped (forward) or meet zeros in dy (weight gradient). Only
 * the phases some tap reads are stored (a 1x1 stride-2 layer keeps one plane of four); stride 1
 * is one plane, the zero-padded image. */
#define EG_IMPLICIT_TAPS 64
#define EG_PHASES 16

typedef struct {
    int sh, sw, Wq, rows, np, psz; /* np planes per channel, psz = rows*Wq floats each */
    int slot[EG_PHASES];           /* phase ph*sw + pw -> its plane, -1 when no tap reads it */
    int tap[EG_IMPLICIT_TAPS];     /* tap t: slot*psz + (qh/sh)*Wq + qw/sw */
} eg_planes;

/* 0 when the layer does not fit (too many taps or phases, empty output). flip: tap (kh, kw)
 * reads (KH-1-kh, KW-1-kw) (the flipped kernel of bw_input). */
static int eg_planes_make(eg_planes *p, int OH, int OW, int KH, int KW, int sh, int sw,
                          int dil_h, int dil_w, int flip)
{
    if (KH * KW > EG_IMPLICIT_TAPS || sh * sw > EG_PHASES || OH <= 0 || OW <= 0)
        return 0;
    p->sh = sh;
    p->sw = sw;
    p->Wq = OW + ((KW - 1) * dil_w) / sw;
    p->rows = OH + ((KH - 1) * dil_h) / sh;
    p->psz = p->rows * p->Wq;
    p->np = 0;
    for (int q = 0; q < sh * sw; q++)
        p->slot[q] = -1;
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++) {
            const int qh = (flip ? KH - 1 - kh : kh) * dil_h, qw = (flip ? KW - 1 - kw : kw) * dil_w;
            const int q = (qh % sh) * sw + qw % sw;
            if (p->slot[q] < 0)
                p->slot[q] = p->np++;
            p->tap[kh * KW + kw] = p->slot[q] * p->psz + (qh / sh) * p->Wq + qw / sw;
        }
    return 1;
}

/* The planes of one channel xc[H, W] at dst (np * psz floats). pt, pl may be negative (a crop:
 * bw_input with pads beyond the kernel). */
static void eg_planes_fill(float *restrict dst, const float *restrict xc, const eg_planes *p,
                           int H, int W, int pt, int pl)
{
    const int Wq = p->Wq, sw = p->sw;
    for (int ph = 0; ph < p->sh; ph++) {
        for (int pw = 0; pw < sw; pw++) {
            if (p->slot[ph * sw + pw] < 0)
                continue;
            float *P = dst + (ptrdiff_t)p->slot[ph * sw + pw] * p->psz;
            /* zero the plane in one go, then copy the in-image part of the in-image rows: rows
             * are short (8-48 floats), so per-row zeroing of the padding costs more than this */
            for (int i = 0; i < p->psz; i++)
                P[i] = 0.0f;
            const int offh = ph - pt, offw = pw - pl; /* ih = j*sh + offh, iw = i*sw + offw */
            const int j0 = eg_first_in(offh, p->sh), j1 = eg_end_in(offh, p->sh, H, p->rows);
            const int i0 = eg_min(eg_first_in(offw, sw), Wq);
            const int i1 = eg_max(i0, eg_end_in(offw, sw, W, Wq)), n = i1 - i0;
            for (int j = j0; j < j1; j++) {
                float *row = P + (ptrdiff_t)j * Wq + i0;
                const float *xr = xc + (ptrdiff_t)(j * p->sh + offh) * W + offw + (ptrdiff_t)i0 * sw;
                if (sw == 1) {
                    eg_copy_row(row, xr, n);
#ifdef EG_EVEN8
                } else if (sw == 2 && n >= 8) { /* even lanes of xr[2i .. 2i+14] */
                    for (int i = 0; i + 8 < n; i += 8)
                        eg_st8(row + i, EG_EVEN8(eg_ld8(xr + 2 * i), eg_ld8(xr + 2 * i + 7)));
                    eg_st8(row + n - 8, EG_EVEN8(eg_ld8(xr + 2 * (n - 8)), eg_ld8(xr + 2 * (n - 8) + 7)));
#endif
                } else {
                    for (int i = 0; i < n; i++)
                        row[i] = xr[(ptrdiff_t)i * sw];
                }
            }
        }
    }
}

/* ---- forward: implicit GEMM on the phase planes ------------------------------------------
 * y_g[Mg, f] = sum over k = (c, t) of a_g[m, k] * planes_c[tap t + f]: gemm_f32_tiled_taps (row
 * k of b = channel k / T, tap k % T), a band of R wide output rows at a time; the junk columns
 * of each wide row are dropped when the band is copied out of yw into y. */
/* The core, for one image group at a time, a_g = a + g*a_gs with rows Kg apart; flip: the
 * flipped kernel (bw_input, stride 1); prep(g) is called before group g (bw_input: the
 * transposed weights of group g into a). */
typedef void (*eg_implicit_prep)(float *restrict wt, const float *restrict w, int g, int Cg,
                                 int Mg, int T);

static void eg_implicit(float *restrict y, const float *restrict x, float *restrict a,
                        const float *restrict w, eg_implicit_prep prep, ptrdiff_t a_gs,
                        const float *restrict b, int N, int C, int H, int W, int M, int OH,
                        int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                        int dil_w, int G, int flip, const eg_epi *e, float *restrict scratch)
{
    const int Cg = C / G, Mg = M / G, T = KH * KW, Kg = Cg * T, P = OH * OW;
    eg_planes p;
    if (!eg_planes_make(&p, OH, OW, KH, KW, sh, sw, dil_h, dil_w, flip))
        return;
    const int Wq = p.Wq, R = eg_implicit_rows(OH, Wq);
    const ptrdiff_t HW = (ptrdiff_t)H * W, cs = (ptrdiff_t)p.np * p.psz;
    /* wide rows computed per band: a multiple of 16, so every GEMM panel is full and read in
     * place (the columns past the band are junk, from the 16 slack floats after the planes) */
    const int LD = (R * Wq + 15) & ~15;
    float *xp = scratch, *yw = scratch + (ptrdiff_t)Cg * cs + 16;
    for (int i = 0; i < 16; i++)
        xp[(ptrdiff_t)Cg * cs + i] = 0.0f;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW;
            float *yg = y + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * P;
            if (prep)
                prep(a, w, g, Mg, Cg, T);
            const float *wg = a + (ptrdiff_t)g * a_gs;
            const float *bg = b ? b + (ptrdiff_t)g * Mg : NULL;
            for (int c = 0; c < Cg; c++)
                eg_planes_fill(xp + c * cs, xg + c * HW, &p, H, W, pt, pl);
            if (Wq == OW) { /* no junk columns (a 1x1 strided layer): the GEMM writes y in place */
                gemm_f32_tiled_taps(yg, wg, xp, bg, Mg, P, Kg, P, 1, Kg, 1, (int)cs, 1, T, p.tap, 0);
                if (e)
                    eg_epi_block(yg, 1, Mg * P, 0, e, yg - y);
                continue;
            }
            for (int oh0 = 0; oh0 < OH; oh0 += R) {
                const int nr = eg_min(R, OH - oh0), nn = ((nr - 1) * Wq + OW + 15) & ~15;
                gemm_f32_tiled_taps(yw, wg, xp + (ptrdiff_t)oh0 * Wq, bg, Mg, nn, Kg, LD, 1, Kg,
                                    1, (int)cs, 1, T, p.tap, 0);
                for (int m = 0; m < Mg; m++)
                    for (int r = 0; r < nr; r++) {
                        float *d = yg + (ptrdiff_t)m * P + (ptrdiff_t)(oh0 + r) * OW;
                        if (e)
                            eg_epi_row(d, yw + (ptrdiff_t)m * LD + (ptrdiff_t)r * Wq, OW, e, d - y);
                        else
                            eg_copy_row(d, yw + (ptrdiff_t)m * LD + (ptrdiff_t)r * Wq, OW);
                    }
            }
        }
    }
}

/* ---- forward, stride > 1: column-tap planes ---------------------------------------------
 * The phase planes above are Wq = OW + ((KW-1)*dil_w) / sw wide, so a strided layer's wide rows
 * carry junk columns (1 in 9 at 8 outputs) the GEMM computes and the band copy drops. Here
 * channel c keeps one plane per row phase ph and kernel column kw, exactly OW wide:
 *   P[ph, kw][j, i] = x[c, j*sh + ph - pt, i*sw + kw*dil_w - pl]  (0 outside the image)
 * for j < rows = OH + ((KH-1)*dil_h) / sh, i < OW, so tap (kh, kw) of output pixel p = oh*OW + ow
 * reads P[(kh*dil_h) % sh, kw][p + ((kh*dil_h) / sh)*OW]: the GEMM's columns are the output
 * pixels and it writes y in place (no band, no junk; np row phases times KW planes a channel). */
/* Plane P[j, i] = xc[j*sh + offh, i*sw + offw] for the in-image (j, i), j < rows, i < n (the rest
 * of P is left as it was: the caller zeroes the planes first, in one pass). */
static void eg_cols_fill(float *restrict P, const float *restrict xc, int H, int W, int sh, int sw,
                         int rows, int n, int offh, int offw)
{
    const int i0 = eg_min(eg_first_in(offw, sw), n), i1 = eg_max(i0, eg_end_in(offw, sw, W, n));
    const int j0 = eg_first_in(offh, sh), j1 = eg_end_in(offh, sh, H, rows);
    for (int j = j0; j < j1; j++) {
        float *row = P + (ptrdiff_t)j * n;
        const float *xr = xc + (ptrdiff_t)(j * sh + offh) * W + offw;
        int i = i0;
        if (i1 - i0 >= 8 && sw == 1) { /* vectors, the last one overlapping */
            for (; i + 8 < i1; i += 8)
                eg_st8(row + i, eg_ld8(xr + i));
            eg_st8(row + i1 - 8, eg_ld8(xr + i1 - 8));
            i = i1;
        }
#ifdef EG_EVEN8
        if (i1 - i0 >= 8 && sw == 2) { /* even lanes of xr[2i .. 2i+14], no further than 2*i1 - 2 */
            for (; i + 8 < i1; i += 8)
                eg_st8(row + i, EG_EVEN8(eg_ld8(xr + 2 * i), eg_ld8(xr + 2 * i + 7)));
            eg_st8(row + i1 - 8, EG_EVEN8(eg_ld8(xr + 2 * (i1 - 8)), eg_ld8(xr + 2 * (i1 - 8) + 7)));
            i = i1;
        }
#endif
        for (; i < i1; i++)
            row[i] = xr[(ptrdiff_t)i * sw];
    }
}

static void eg_fw_cols(float *restrict y, const float *restrict x, const float *restrict w,
                       const float *restrict b, int N, int C, int H, int W, int M, int OH, int OW,
                       int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G,
                       float *restrict scratch)
{
    const int Cg = C / G, Mg = M / G, T = KH * KW, Kg = Cg * T, P = OH * OW;
    if (T > EG_IMPLICIT_TAPS || sh * sw > EG_PHASES || OH <= 0 || OW <= 0)
        return;
    eg_planes pk; /* the planes of one kernel column: row phases only (pw = 0, columns shifted) */
    pk.sh = sh;
    pk.sw = sw;
    pk.Wq = OW;
    pk.rows = OH + ((KH - 1) * dil_h) / sh;
    pk.psz = pk.rows * OW;
    pk.np = 0;
    for (int q = 0; q < sh * sw; q++)
        pk.slot[q] = -1;
    for (int kh = 0; kh < KH; kh++)
        if (pk.slot[((kh * dil_h) % sh) * sw] < 0)
            pk.slot[((kh * dil_h) % sh) * sw] = pk.np++;
    const ptrdiff_t ks = (ptrdiff_t)pk.np * pk.psz, cs = (ptrdiff_t)KW * ks, HW = (ptrdiff_t)H * W;
    int tap[EG_IMPLICIT_TAPS];
    for (int kh = 0; kh < KH; kh++)
        for (int kw = 0; kw < KW; kw++)
            tap[kh * KW + kw] = (int)(kw * ks) + pk.slot[((kh * dil_h) % sh) * sw] * pk.psz +
                                ((kh * dil_h) / sh) * OW;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW;
            for (ptrdiff_t i = 0; i < (ptrdiff_t)Cg * cs; i++)
                scratch[i] = 0.0f;
            for (int c = 0; c < Cg; c++)
                for (int kw = 0; kw < KW; kw++)
                    for (int ph = 0; ph < sh; ph++)
                        if (pk.slot[ph * sw] >= 0)
                            eg_cols_fill(scratch + c * cs + kw * ks + pk.slot[ph * sw] * pk.psz,
                                         xg + c * HW, H, W, sh, sw, pk.rows, OW, ph - pt,
                                         kw * dil_w - pl);
            gemm_f32_tiled_taps(y + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * P,
                                w + (ptrdiff_t)g * Mg * Kg, scratch, b ? b + (ptrdiff_t)g * Mg : NULL,
                                Mg, P, Kg, P, 1, Kg, 1, (int)cs, 1, T, tap, 0);
        }
    }
}

void conv2d_f32_fw_implicit(float *restrict y, const float *restrict x, const float *restrict w,
                            const float *restrict b, int N, int C, int H, int W, int M, int OH,
                            int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                            int dil_w, int G, float *restrict scratch)
{
    if (sh != 1 || sw != 1) {
        eg_fw_cols(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                   scratch);
        return;
    }
    eg_implicit(y, x, (float *)w, NULL, NULL, (ptrdiff_t)(M / G) * (C / G) * KH * KW, b, N, C, H,
                W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G, 0, NULL, scratch);
}

void conv2d_f32_fw_implicit_act(float *restrict y, const float *restrict x, const float *restrict w,
                                const float *restrict b, int N, int C, int H, int W, int M, int OH,
                                int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                                int dil_w, int G, float *restrict scratch, int act)
{
    const eg_epi e = {act == 1 ? EG_EPI_RELU : act == 2 ? EG_EPI_RELU6 : EG_EPI_NONE, NULL, 0.0f, 6.0f};
    if (sh != 1 || sw != 1) { /* the strided path of conv2d_f32_fw_implicit, then one pass */
        eg_fw_cols(y, x, w, b, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G,
                   scratch);
        eg_epi_block(y, 1, (int)((ptrdiff_t)N * M * OH * OW), 0, &e, 0);
        return;
    }
    eg_implicit(y, x, (float *)w, NULL, NULL, (ptrdiff_t)(M / G) * (C / G) * KH * KW, b, N, C, H,
                W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, G, 0, &e, scratch);
}

/* wt[c, m, t] = w[g*Mg + m, c, t] for the Cg x (Mg*T) transposed weights of group g (the
 * arguments are named for the forward layer: w is [M, Cg, T]). */
static void eg_transpose_w(float *restrict wt, const float *restrict w, int g, int Cg, int Mg,
                           int T)
{
    const float *wg = w + (ptrdiff_t)g * Mg * Cg * T;
    for (int c = 0; c < Cg; c++)
        for (int m = 0; m < Mg; m++)
            for (int t = 0; t < T; t++)
                wt[((ptrdiff_t)c * Mg + m) * T + t] = wg[((ptrdiff_t)m * Cg + c) * T + t];
}

/* ---- backward to the input, stride > 1: phase (sub-pixel) decomposition ------------------
 * dx[c, ih, iw] collects w[m, c, kh, kw] * dy[m, oh, ow] over ih = oh*sh - pt + kh*dil_h (and
 * the same along w). Split dx into its sh*sw phases (ph, pw) = (ih % sh, iw % sw): row j of
 * phase ph (ih = j*sh + ph) receives exactly the taps kh with (ph + pt - kh*dil_h) % sh == 0,
 * each from dy row oh = j + (ph + pt - kh*dil_h) / sh. So a phase is a stride-1 correlation of
 * dy with its sub-kernel: an implicit GEMM (gemm_f32_tiled_taps) straight on one zero-padded
 * plane per dy channel, every dx element written once (no col2im scatter-add):
 *   D_m,o[i, j] = dy[m, i + lo_h, j + lo_w + o] (0 outside dy),  i < Hd = Hq + hi_h - lo_h,
 *   j < Wq,  Hq = ceil(H / sh), Wq = ceil(W / sw),  o <= hi_w - lo_w,
 * lo / hi the least / largest row (column) offset of any tap: one plane per column offset, Wq
 * wide, so a phase's pixels (j, i) are f = j*Wq + i (no junk columns but a ragged phase's last)
 * and tap (kh, kw) reads D_m,(offw - lo_w)[f + (offh - lo_h)*Wq]. A band of R rows of a phase at
 * a time goes through yw[Cg, ceil16(R*Wq)] (one per column phase) into every sh-th row of dx,
 * the column phases interleaved; a phase no tap reaches (a 1x1 stride-2 layer's odd pixels) is
 * zeroed. When the planes would be dy itself (no padding, no crop) the GEMM reads dy in place. */
typedef struct {
    int lo, hi;
    int start[EG_PHASES + 1]; /* phase p: taps k[start[p] .. start[p+1]) */
    int k[EG_IMPLICIT_TAPS], off[EG_IMPLICIT_TAPS];
} eg_phase_taps;

static void eg_phase_taps_make(eg_phase_taps *t, int K, int s, int pad, int dil)
{
    int n = 0;
    t->lo = 0;
    t->hi = 0;
    for (int p = 0; p < s; p++) {
        t->start[p] = n;
        for (int k = 0; k < K; k++) {
            if (((k * dil - pad) % s + s) % s != p)
                continue;
            t->k[n] = k;
            t->off[n] = (p + pad - k * dil) / s; /* exact */
            if (n == 0 || t->off[n] < t->lo)
                t->lo = t->off[n];
            if (n == 0 || t->off[n] > t->hi)
                t->hi = t->off[n];
            n++;
        }
    }
    t->start[s] = n;
}

/* The sub-kernels of the phases of group g's weights wg[Mg][Cg][T]: phase q at wt + wofs[q],
 * tap-major [Cg][Tp][Mg] (so the GEMM's k = t*Mg + m has unit stride): element (m, c, i) of wg
 * (tap i = kh*KW + kw) goes to wt[base[i] + c*step[i] + m]. 8 x 8 blocks of (m, (c, i)) are
 * transposed in registers: a block of 8 m rows and 8 consecutive (c, i) columns of wg is 8
 * contiguous runs. */
static void eg_phase_weights(float *restrict wt, const float *restrict wg, int Cg, int Mg, int T,
                             const int *base, const int *step)
{
    const int CT = Cg * T;
    int m0 = 0;
#ifdef EG_SHUF8
    for (; m0 + 8 <= Mg; m0 += 8) {
        int u0 = 0, c = 0, i = 0; /* column u0 = (c, i) */
        for (; u0 + 8 <= CT; u0 += 8) {
            float blk[64] __attribute__((aligned(32)));
            eg_transpose8(blk, 8, wg + (ptrdiff_t)m0 * CT + u0, CT);
            for (int k = 0; k < 8; k++) {
                eg_st8(wt + base[i] + (ptrdiff_t)c * step[i] + m0, eg_ld8(blk + 8 * k));
                if (++i == T) {
                    i = 0;
                    c++;
                }
            }
        }
        for (; u0 < CT; u0++) {
            for (int m = m0; m < m0 + 8; m++)
                wt[base[i] + (ptrdiff_t)c * step[i] + m] = wg[(ptrdiff_t)m * CT + u0];
            if (++i == T) {
                i = 0;
                c++;
            }
        }
    }
#endif
    for (int c = 0; c < Cg; c++)
        for (int i = 0; i < T; i++)
            for (int m = m0; m < Mg; m++)
                wt[base[i] + (ptrdiff_t)c * step[i] + m] = wg[(ptrdiff_t)m * CT + c * T + i];
}

/* yw[c*LD + f] = sum over taps t < Tp, m < Mg of wq[c][t][m] * b[m*cs + tap[t] + f], f < nn:
 * gemm_f32_tiled_taps with an explicit row table (k = t*Mg + m), up to 512 rows of b per call
 * (one tap per call when Mg is larger). */
static void eg_phase_gemm(float *restrict yw, int LD, const float *restrict wq,
                          const float *restrict b, ptrdiff_t cs, int Cg, int Mg, int Tp,
                          const int *tap, int nn)
{
    int tab[512];
    const int per = eg_max(1, 512 / Mg);
    for (int t0 = 0; t0 < Tp; t0 += per) {
        const int nt = eg_min(per, Tp - t0);
        const float *a = wq + (ptrdiff_t)t0 * Mg;
        if (nt == 1) {
            gemm_f32_tiled_taps(yw, a, b, NULL, Cg, nn, Mg, LD, 1, Tp * Mg, 1, (int)cs, 1, 1,
                                tap + t0, t0 > 0);
            continue;
        }
        for (int t = 0; t < nt; t++)
            for (int m = 0; m < Mg; m++)
                tab[t * Mg + m] = m * (int)cs + tap[t0 + t];
        gemm_f32_tiled_taps(yw, a, b, NULL, Cg, nn, nt * Mg, LD, 1, Tp * Mg, 1, 0, 1, nt * Mg, tab,
                            t0 > 0);
    }
}

/* Row ih of dx (W floats) from its sw column phases: row[i*sw + pw] = src[pw][i] (0 where
 * src[pw] is NULL: no tap reaches that phase). */
static void eg_phase_row(float *restrict row, int W, int sw, const float *const *src)
{
    int i = 0;
#ifdef EG_SHUF8
    if (sw == 2) { /* 16 floats from 8 of each phase */
        const float *s0 = src[0], *s1 = src[1];
        const eg_v8 z = eg_splat8(0.0f);
        for (; 2 * i + 16 <= W; i += 8) {
            eg_v8 a = z, b = z;
            if (s0)
                a = eg_ld8(s0 + i);
            if (s1)
                b = eg_ld8(s1 + i);
            eg_st8(row + 2 * i, EG_SHUF8(a, b, 0, 8, 1, 9, 2, 10, 3, 11));
            eg_st8(row + 2 * i + 8, EG_SHUF8(a, b, 4, 12, 5, 13, 6, 14, 7, 15));
        }
    }
#endif
    for (int pw = 0; pw < sw; pw++) {
        const float *s = src[pw];
        for (int j = i; j * sw + pw < W; j++)
            row[j * sw + pw] = s ? s[j] : 0.0f;
    }
}

static void eg_bw_input_phases(float *restrict dx, const float *restrict dy,
                               const float *restrict w, int N, int C, int H, int W, int M,
                               int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                               int dil_h, int dil_w, int G, const eg_epi *e, float *restrict scratch)
{
    if (KH * KW > EG_IMPLICIT_TAPS || sh > EG_PHASES || sw > EG_PHASES || H <= 0 || W <= 0)
        return;
    eg_phase_taps th, tw;
    eg_phase_taps_make(&th, KH, sh, pt, dil_h);
    eg_phase_taps_make(&tw, KW, sw, pl, dil_w);
    const int Cg = C / G, Mg = M / G, T = KH * KW;
    const int Hq = (H + sh - 1) / sh, Wq = (W + sw - 1) / sw;
    const int Hd = Hq + th.hi - th.lo, nco = tw.hi - tw.lo + 1;
    const int R = eg_implicit_rows(Hq, Wq), LD = (R * Wq + 15) & ~15;
    const ptrdiff_t HW = (ptrdiff_t)H * W, P = (ptrdiff_t)OH * OW;
    /* the planes are dy itself: read in place (cs = OH*OW), the last band not rounded up */
    const int direct = nco == 1 && th.lo == 0 && tw.lo == 0 && Hd == OH && Wq == OW;
    const ptrdiff_t ps = (ptrdiff_t)Hd * Wq, cs = nco * ps; /* per column offset, per channel */
    float *wt = scratch, *planes = wt + (T > 1 ? (ptrdiff_t)Cg * Mg * T : 0);
    float *yw = planes + (direct ? 0 : (ptrdiff_t)Mg * cs + 16); /* one band per column phase with taps */
    /* phase (ph, pw): its sub-kernel at wt + wofs[ph*sw + pw], tap-major [Cg][Tp][Mg] */
    int wofs[EG_PHASES * EG_PHASES], ybuf[EG_PHASES], base[EG_IMPLICIT_TAPS], step[EG_IMPLICIT_TAPS];
    for (int ph = 0, o = 0; ph < sh; ph++)
        for (int pw = 0; pw < sw; pw++) {
            const int nh = th.start[ph + 1] - th.start[ph], nw = tw.start[pw + 1] - tw.start[pw];
            wofs[ph * sw + pw] = o;
            o += Cg * Mg * nh * nw;
            for (int a = 0; a < nh; a++)
                for (int e = 0; e < nw; e++) {
                    const int i = th.k[th.start[ph] + a] * KW + tw.k[tw.start[pw] + e];
                    base[i] = wofs[ph * sw + pw] + (a * nw + e) * Mg;
                    step[i] = nh * nw * Mg;
                }
        }
    for (int pw = 0, nb = 0; pw < sw; pw++)
        ybuf[pw] = tw.start[pw + 1] > tw.start[pw] ? nb++ : -1;
    for (int g = 0; g < G; g++) {
        const float *wg = w + (ptrdiff_t)g * Mg * Cg * T;
        if (T > 1)
            eg_phase_weights(wt, wg, Cg, Mg, T, base, step);
        for (int n = 0; n < N; n++) {
            float *dxg = dx + ((ptrdiff_t)n * C + (ptrdiff_t)g * Cg) * HW;
            const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * P;
            const float *b = dyg;
            if (!direct) {
                for (ptrdiff_t i = 0; i < (ptrdiff_t)Mg * cs + 16; i++)
                    planes[i] = 0.0f;
                for (int m = 0; m < Mg; m++)
                    for (int o = 0; o < nco; o++)
                        eg_cols_fill(planes + m * cs + o * ps, dyg + m * P, OH, OW, 1, 1, Hd, Wq,
                                     th.lo, tw.lo + o);
                b = planes;
            }
            for (int ph = 0; ph < sh && ph < H; ph++) {
                const int Hph = (H - ph + sh - 1) / sh;
                const int h0 = th.start[ph], nh = th.start[ph + 1] - h0;
                if (nh == 0) { /* no tap reaches these rows */
                    for (int c = 0; c < Cg; c++)
                        for (int j = 0; j < Hph; j++) {
                            float *row = dxg + c * HW + (ptrdiff_t)(j * sh + ph) * W;
                            for (int i = 0; i < W; i++)
                                row[i] = 0.0f;
                        }
                    continue;
                }
                for (int j0 = 0; j0 < Hph; j0 += R) {
                    const int nr = eg_min(R, Hph - j0);
                    for (int pw = 0; pw < sw && pw < W; pw++) {
                        const int w0 = tw.start[pw], nw = tw.start[pw + 1] - w0, Tp = nh * nw;
                        if (Tp == 0)
                            continue;
                        const int Wph = (W - pw + sw - 1) / sw, nv = (nr - 1) * Wq + Wph;
                        int tap[EG_IMPLICIT_TAPS];
                        for (int a = 0; a < nh; a++)
                            for (int e = 0; e < nw; e++)
                                tap[a * nw + e] = (int)((tw.off[w0 + e] - tw.lo) * ps) +
                                                  (th.off[h0 + a] - th.lo) * Wq;
                        float *ywp = yw + (ptrdiff_t)ybuf[pw] * Cg * LD;
                        const int nn = direct ? nv : (nv + 15) & ~15;
                        if (T == 1) /* 1x1: a = W_g^T read in place */
                            gemm_f32_tiled_taps(ywp, wg, b + (ptrdiff_t)j0 * Wq, NULL, Cg, nn, Mg,
                                                LD, 1, 1, Cg, (int)cs, 1, 1, tap, 0);
                        else
                            eg_phase_gemm(ywp, LD, wt + wofs[ph * sw + pw], b + (ptrdiff_t)j0 * Wq,
                                          cs, Cg, Mg, Tp, tap, nn);
                    }
                    const float *src[EG_PHASES];
                    for (int c = 0; c < Cg; c++)
                        for (int r = 0; r < nr; r++) {
                            for (int pw = 0; pw < sw; pw++)
                                src[pw] = ybuf[pw] < 0 ? NULL
                                        : yw + ((ptrdiff_t)ybuf[pw] * Cg + c) * LD + (ptrdiff_t)r * Wq;
                            float *row = dxg + c * HW + (ptrdiff_t)((j0 + r) * sh + ph) * W;
                            eg_phase_row(row, W, sw, src);
                            if (e) /* each dx element is written once, here: the mask at its store */
                                eg_epi_row(row, row, W, e, row - dx);
                        }
                }
            }
        }
    }
}

/* bw_input, stride 1: dx is the stride-1 convolution of dy (padded by (K-1)*dil - pad) with the
 * flipped, transposed kernel: the same implicit GEMM with taps flipped and a = wt[C_g, Mg*T]
 * (the transposed weights of a group, at the start of scratch). */
void conv2d_f32_bw_input_implicit(float *restrict dx, const float *restrict dy,
                                  const float *restrict w, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, float *restrict scratch)
{
    if (sh != 1 || sw != 1) {
        eg_bw_input_phases(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h,
                           dil_w, G, NULL, scratch);
        return;
    }
    const int Cg = C / G, Mg = M / G, T = KH * KW;
    float *wt = scratch;
    /* roles swap: dy [N, M, OH, OW] is the input, dx [N, C, H, W] the output; groups read wt
     * (rewritten per group by prep), so the group stride of a is 0 */
    eg_implicit(dx, dy, wt, w, eg_transpose_w, 0, NULL, N, M, OH, OW, C, H, W, KH, KW, 1, 1,
                (KH - 1) * dil_h - pt, (KW - 1) * dil_w - pl, dil_h, dil_w, G, 1, NULL,
                scratch + (ptrdiff_t)Cg * Mg * T);
}

void conv2d_f32_bw_input_implicit_mask(float *restrict dx, const float *restrict dy,
                                       const float *restrict w, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G,
                                       float *restrict scratch, const float *restrict y, int mask,
                                       float lo, float hi)
{
    const int Cg = C / G, Mg = M / G, T = KH * KW;
    const eg_epi e = eg_mask_epi(y, mask, lo, hi);
    if (sh != 1 || sw != 1) {
        eg_bw_input_phases(dx, dy, w, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h,
                           dil_w, G, &e, scratch);
        return;
    }
    eg_implicit(dx, dy, scratch, w, eg_transpose_w, 0, NULL, N, M, OH, OW, C, H, W, KH, KW, 1, 1,
                (KH - 1) * dil_h - pt, (KW - 1) * dil_w - pl, dil_h, dil_w, G, 1, &e,
                scratch + (ptrdiff_t)Cg * Mg * T);
}

/* ---- backward to the weight: implicit GEMM on the phase planes ---------------------------
 * dW_g^T[(c, t), m] = sum over wide pixels f of planes_c[tap t + f] * dyT[f, m], with
 * dyT[f = oh*Wq + ow, m] = dy[m, oh, ow] (0 in the junk columns ow >= OW), f < (OH-1)*Wq + OW:
 * gemm_f32_tiled_ataps reads the patch rows in place as its a operand (broadcast), dyT is its
 * contiguous b panel, and the result is written transposed into dW[m, (c, t)]. A pointwise layer
 * reads x itself (its one plane). */
/* The core: out[m*ldw + (c, t)] (+)= alpha * dW[m, (c, t)]; sgd: out is the weight (always
 * accumulated, nothing when there are no terms), else the gradient itself (ldw = Ku, alpha 1). */
static void eg_bw_weight_implicit(float *restrict dwt, const float *restrict dy,
                                  const float *restrict x, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                  int ldw, float alpha, int sgd, float *restrict scratch)
{
    eg_planes p;
    if (M_upd <= 0 || Cg_upd <= 0 ||
        !eg_planes_make(&p, OH, OW, KH, KW, sh, sw, dil_h, dil_w, 0))
        return;
    const int Cg = C / G, Mg = M / G, T = KH * KW, Ku = Cg_upd * T, P = OH * OW, Wq = p.Wq;
    const int F = (OH - 1) * Wq + OW;
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    const int pointwise = eg_is_pointwise(H, W, OH, OW, KH, KW, sh, sw, pt, pl);
    const ptrdiff_t cs = pointwise ? HW : (ptrdiff_t)p.np * p.psz;
    float *planes = scratch, *dyT = scratch + (pointwise ? 0 : (ptrdiff_t)Cg_upd * cs);
    for (int g = 0; g < G; g++) {
        const int m0 = g * Mg, rows = eg_min(M_upd, m0 + Mg) - m0;
        if (rows <= 0)
            break;
        float *dwg = dwt + (ptrdiff_t)m0 * ldw; /* [rows, Ku], rows ldw apart */
        if (N <= 0) {                           /* no terms: the gradient is zero */
            for (int m = 0; m < rows && !sgd; m++)
                for (int i = 0; i < Ku; i++)
                    dwg[(ptrdiff_t)m * ldw + i] = 0.0f;
            continue;
        }
        for (int n = 0; n < N; n++) {
            const float *xg = x + ((ptrdiff_t)n * Cx + (ptrdiff_t)g * Cg) * HW;
            const float *dyg = dy + ((ptrdiff_t)n * M + m0) * P; /* [rows, P] */
            const float *a = xg;
            if (!pointwise) {
                for (int c = 0; c < Cg_upd; c++)
                    eg_planes_fill(planes + c * cs, xg + c * HW, &p, H, W, pt, pl);
                a = planes;
            }
            for (int oh = 0; oh < OH; oh++) {
                float *d = dyT + (ptrdiff_t)oh * Wq * rows;
                const float *src = dyg + (ptrdiff_t)oh * OW;
                int m = 0;
#ifdef EG_SHUF8
                if (OW >= 8) /* 8 x 8 blocks, the last one of a row overlapping */
                    for (; m + 8 <= rows; m += 8)
                        for (int ow0 = 0; ow0 < OW; ow0 += 8) {
                            const int o = eg_min(ow0, OW - 8);
                            eg_transpose8(d + o * rows + m, rows, src + (ptrdiff_t)m * P + o, P);
                        }
#endif
                for (; m < rows; m++)
                    for (int ow = 0; ow < OW; ow++)
                        d[ow * rows + m] = src[(ptrdiff_t)m * P + ow];
                if (oh + 1 < OH)
                    for (int i = OW * rows; i < Wq * rows; i++)
                        d[i] = 0.0f;
            }
            gemm_f32_tiled_ataps(dwg, a, dyT, Ku, rows, F, 1, ldw, (int)cs, T, p.tap, rows,
                                 alpha, sgd || n > 0);
        }
    }
}

void conv2d_f32_bw_weight_implicit(float *restrict dwt, const float *restrict dy,
                                   const float *restrict x, int N, int C, int H, int W, int M,
                                   int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                   int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                   float *restrict scratch)
{
    eg_bw_weight_implicit(dwt, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w,
                          G, M_upd, Cg_upd, Cx, Cg_upd * KH * KW, 1.0f, 0, scratch);
}

void conv2d_f32_bw_weight_sgd_implicit(float *restrict w, const float *restrict dy,
                                       const float *restrict x, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                       int Cx, int w_stride, float lr, float *restrict scratch)
{
    eg_bw_weight_implicit(w, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w,
                          G, M_upd, Cg_upd, Cx, w_stride, -lr, 1, scratch);
}

/* Momentum is linear in dW too: v = mu*v + dW accumulates the GEMM's parts in v (scaled by mu
 * first), then w -= lr * v over the block, as momentum_f32 (no gradient buffer). */
void conv2d_f32_bw_weight_momentum_implicit(float *restrict w, float *restrict v,
                                            const float *restrict dy, const float *restrict x,
                                            int N, int C, int H, int W, int M, int OH, int OW,
                                            int KH, int KW, int sh, int sw, int pt, int pl,
                                            int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                            int Cx, int w_stride, float lr, float mu,
                                            float *restrict scratch)
{
    const int Ku = Cg_upd * KH * KW;
    if (M_upd <= 0 || Cg_upd <= 0)
        return;
    for (ptrdiff_t i = 0; i < (ptrdiff_t)M_upd * Ku; i++)
        v[i] *= mu;
    eg_bw_weight_implicit(v, dy, x, N, C, H, W, M, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w,
                          G, M_upd, Cg_upd, Cx, Ku, 1.0f, 1, scratch);
    for (int m = 0; m < M_upd; m++)
        for (int j = 0; j < Ku; j++)
            w[(ptrdiff_t)m * w_stride + j] -= lr * v[(ptrdiff_t)m * Ku + j];
}
