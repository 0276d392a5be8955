/* eg_winograd.c — Winograd F(2x2,3x3) and F(4x4,3x3) convolutions (contract: eg_winograd.h).
 *
 * Dimension legend
 *   S        output tile side (2 or 4); n = S + 2 the input tile side; NX = n*n products per tile
 *   Ci, Co   input / output channels of the convolution run (bw_input: Ci = M, Co = C)
 *   TH, TW   tile rows / columns; R tile rows per band, NT = R*TW tiles per band
 *   VW       floats per vector (16 with AVX-512, 8 elsewhere)
 *
 * Per call: U[xi][co][ci] = (G g G^T)[xi] for every channel pair (vectorised over ci).
 * Per band of R tile rows:
 *   1. planes: the n + S*(R-1) padded input rows of every input channel, each row split into S
 *      column phases (phase p, index j = padded column S*j + p), so the element (i, j) of the
 *      tiles tw0 .. tw0+VW-1 is one unit-stride vector load (row i, phase j % S, index tw0 + j/S);
 *   2. V[xi][ci][t] = (B^T d B)[xi] for the tiles t of the band, VW tiles of one tile row at a
 *      time (the lanes past the row's last tile are junk, overwritten by the next store);
 *   3. NX GEMMs Mo[xi][co][t] = U[xi] . V[xi] (gemm_f32_tiled_strided);
 *   4. y = act(A^T Mo A + b) per output channel and tile vector, the S column phases zipped
 *      back into rows with two-vector shuffles; at ragged right / bottom edges only the
 *      in-image part is stored.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast") /* see eg_gemm_tiled.c */
/* rows here are 8-70 floats: a memset / memmove call per row (what GCC makes of the zeroing and
 * copy loops otherwise) costs more than the loop */
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

#include <stddef.h>

#include "eg_gemm_tiled.h"
#include "eg_winograd.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#define EG_WVW 16
#else
#define EG_WVW 8
#endif
#define EG_WTILES 128 /* about this many tiles per band (kernels_winograd.BAND_TILES; 64..512
                         * measured the same on ResNet-8's layers) */
/* floats between the NX blocks of U, V and Mo beyond their size: the NX vectors of one tile
 * are a block apart, and blocks of a power-of-two size put all of them in one L1 set */
#define EG_WPAD 16

typedef float eg_wv __attribute__((vector_size(4 * EG_WVW)));
typedef float eg_wvu __attribute__((vector_size(4 * EG_WVW), aligned(4), may_alias));
typedef int eg_wvi __attribute__((vector_size(4 * EG_WVW)));

#define eg_wld(p) (*(const eg_wvu *)(p))
#define eg_wst(p, v) (*(eg_wvu *)(p) = (v))
#define eg_wsplat(s) ((float)(s) - (eg_wv){0})

#if defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 12)
#define EG_WSHUF(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
/* half / quarter vectors, and their concatenation into whole / half vectors: with tile rows of
 * VW/2 or VW/4 tiles, one vector holds 2 or 4 tile rows (eg_wino_input, eg_wino_output) */
typedef float eg_wvh __attribute__((vector_size(2 * EG_WVW)));
typedef float eg_wvhu __attribute__((vector_size(2 * EG_WVW), aligned(4), may_alias));
typedef float eg_wvq __attribute__((vector_size(EG_WVW)));
typedef float eg_wvqu __attribute__((vector_size(EG_WVW), aligned(4), may_alias));
#define eg_wldh(p) (*(const eg_wvhu *)(p))
#define eg_wsth(p, v) (*(eg_wvhu *)(p) = (v))
#define eg_wldq(p) (*(const eg_wvqu *)(p))
#define EG_MULTIROW 1
#if EG_WVW == 16
#define EG_CATH(a, b) EG_WSHUF(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
#define EG_CATQ(a, b) EG_WSHUF(a, b, 0, 1, 2, 3, 4, 5, 6, 7)
#else
#define EG_CATH(a, b) EG_WSHUF(a, b, 0, 1, 2, 3, 4, 5, 6, 7)
#define EG_CATQ(a, b) EG_WSHUF(a, b, 0, 1, 2, 3)
#endif
#if EG_WVW == 16
#define EG_ZIPLO(a, b) EG_WSHUF(a, b, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23)
#define EG_ZIPHI(a, b) EG_WSHUF(a, b, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31)
#define EG_EVEN(a, b) EG_WSHUF(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define EG_ODD(a, b) EG_WSHUF(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#else
#define EG_ZIPLO(a, b) EG_WSHUF(a, b, 0, 8, 1, 9, 2, 10, 3, 11)
#define EG_ZIPHI(a, b) EG_WSHUF(a, b, 4, 12, 5, 13, 6, 14, 7, 15)
#define EG_EVEN(a, b) EG_WSHUF(a, b, 0, 2, 4, 6, 8, 10, 12, 14)
#define EG_ODD(a, b) EG_WSHUF(a, b, 1, 3, 5, 7, 9, 11, 13, 15)
#endif
#endif

#ifndef EG_WSTAGE /* -DEG_WSTAGE='static __attribute__((noinline))' to profile the stages */
#define EG_WSTAGE static inline __attribute__((always_inline))
#endif

static inline int eg_wmin(int a, int b) { return a < b ? a : b; }
static inline int eg_wmax(int a, int b) { return a > b ? a : b; }

/* ---- the 1-D transforms: o[i*os] from d[k*ds] (always inlined: constant S) ---------------- */

/* B^T (n x n): the input transform. */
static inline __attribute__((always_inline)) void eg_bt(const int S, eg_wv *o, int os,
                                                         const eg_wv *d, int ds)
{
    if (S == 2) {
        const eg_wv d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
        o[0] = d0 - d2;
        o[os] = d1 + d2;
        o[2 * os] = d2 - d1;
        o[3 * os] = d1 - d3;
    } else {
        const eg_wv d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds],
                    d5 = d[5 * ds];
        const eg_wv four = eg_wsplat(4.0f), two = eg_wsplat(2.0f), five = eg_wsplat(5.0f);
        const eg_wv p = d4 - four * d2, q = d3 - four * d1, r = d4 - d2, s = two * (d3 - d1);
        o[0] = four * d0 - five * d2 + d4;
        o[os] = p + q;
        o[2 * os] = p - q;
        o[3 * os] = r + s;
        o[4 * os] = r - s;
        o[5 * os] = four * d1 - five * d3 + d5;
    }
}

/* A^T (S x n): the output transform. */
static inline __attribute__((always_inline)) void eg_at(const int S, eg_wv *o, int os,
                                                         const eg_wv *d, int ds)
{
    if (S == 2) {
        const eg_wv d1 = d[ds], d2 = d[2 * ds];
        o[0] = d[0] + d1 + d2;
        o[os] = d1 - d2 - d[3 * ds];
    } else {
        const eg_wv two = eg_wsplat(2.0f), four = eg_wsplat(4.0f), eight = eg_wsplat(8.0f);
        const eg_wv a = d[ds] + d[2 * ds], b = d[ds] - d[2 * ds];
        const eg_wv c = d[3 * ds] + d[4 * ds], e = d[3 * ds] - d[4 * ds];
        o[0] = d[0] + a + c;
        o[os] = b + two * e;
        o[2 * os] = a + four * c;
        o[3 * os] = b + eight * e + d[5 * ds];
    }
}

/* G (n x 3): the weight transform. */
static inline __attribute__((always_inline)) void eg_g(const int S, eg_wv *o, int os,
                                                        const eg_wv *d, int ds)
{
    const eg_wv g0 = d[0], g1 = d[ds], g2 = d[2 * ds];
    if (S == 2) {
        const eg_wv h = eg_wsplat(0.5f), s = g0 + g2;
        o[0] = g0;
        o[os] = h * (s + g1);
        o[2 * os] = h * (s - g1);
        o[3 * os] = g2;
    } else {
        const eg_wv s = g0 + g2, m6 = eg_wsplat(-1.0f / 6.0f);
        const eg_wv a = eg_wsplat(1.0f / 24.0f) * g0 + eg_wsplat(1.0f / 6.0f) * g2;
        const eg_wv b = eg_wsplat(1.0f / 12.0f) * g1;
        o[0] = eg_wsplat(0.25f) * g0;
        o[os] = m6 * (s + g1);
        o[2 * os] = m6 * (s - g1);
        o[3 * os] = a + b;
        o[4 * os] = a - b;
        o[5 * os] = g2;
    }
}

#if EG_WVW == 16
/* g[k] lane l = s[9*l + k] (l < 16, k < 9): lane l of g[k] is lane (9l + k) % 32 of the pair of
 * loaded vectors (s[32w ..], s[32w + 16 ..]) with w = (9l + k) / 32, picked by one two-source
 * permute per pair and merged by lane masks. */
static inline __attribute__((always_inline)) void eg_wino_gather9(eg_wv *g, const float *restrict s)
{
    __m512 a[10];
    for (int v = 0; v < 9; v++)
        a[v] = _mm512_loadu_ps(s + 16 * v);
    a[9] = a[8]; /* never picked: 9l + k < 144 */
    const __m512i l9 = _mm512_set_epi32(135, 126, 117, 108, 99, 90, 81, 72, 63, 54, 45, 36, 27, 18, 9, 0);
    for (int k = 0; k < 9; k++) {
        const __m512i f = _mm512_add_epi32(l9, _mm512_set1_epi32(k));
        __m512 o = _mm512_permutex2var_ps(a[0], f, a[1]);
        for (int w = 1; w < 5; w++) {
            const __mmask16 m = _mm512_cmpeq_epi32_mask(_mm512_srli_epi32(f, 5), _mm512_set1_epi32(w));
            o = _mm512_mask_mov_ps(o, m, _mm512_permutex2var_ps(a[2 * w], f, a[2 * w + 1]));
        }
        g[k] = (eg_wv)o;
    }
}
#endif

/* ---- 1. weights: U[xi][co][ci] ------------------------------------------------------------
 * fw: g = w[co][ci]; flip (bw_input): g = w[ci][co] rotated by 180 degrees. Lanes are VW
 * consecutive ci, gathered into a stack tile first (lane stride 9 for fw, 9*Co for flip). */
EG_WSTAGE void
eg_wino_weights(const int S, float *restrict U, const float *restrict w, int Co, int Ci, int flip)
{
    const int n = S + 2, NX = n * n;
    const ptrdiff_t CC = (ptrdiff_t)Co * Ci + EG_WPAD;
    float gk[9][EG_WVW];
    eg_wv g[9], t[18], u[36];
    for (int co = 0; co < Co; co++) {
        for (int ci0 = 0; ci0 < Ci; ci0 += EG_WVW) {
            const int nl = eg_wmin(EG_WVW, Ci - ci0);
            if (nl == EG_WVW) { /* whole vectors: gathered into the lanes, no stack copy (a vector
                                  * load of scalar stores stalls on store forwarding) */
                const float *src = flip ? w + ((ptrdiff_t)ci0 * Co + co) * 9 + 8
                                        : w + ((ptrdiff_t)co * Ci + ci0) * 9;
                const ptrdiff_t ls = flip ? (ptrdiff_t)Co * 9 : 9, ks = flip ? -1 : 1;
#if EG_WVW == 16
                if (!flip) { /* the 16 x 9 floats are contiguous: 9 loads, transposed by permutes */
                    eg_wino_gather9(g, src);
                    goto gathered;
                }
#endif
                for (int k = 0; k < 9; k++)
                    for (int l = 0; l < EG_WVW; l++)
                        g[k][l] = src[l * ls + k * ks];
            } else {
                for (int l = 0; l < nl; l++) {
                    const float *src = flip ? w + ((ptrdiff_t)(ci0 + l) * Co + co) * 9
                                            : w + ((ptrdiff_t)co * Ci + ci0 + l) * 9;
                    for (int k = 0; k < 9; k++)
                        gk[k][l] = src[flip ? 8 - k : k];
                }
                for (int k = 0; k < 9; k++) {
                    for (int l = nl; l < EG_WVW; l++)
                        gk[k][l] = 0.0f;
                    g[k] = eg_wld(gk[k]);
                }
            }
#if EG_WVW == 16
        gathered:
#endif
            for (int kw = 0; kw < 3; kw++) /* columns: t[i][kw] = G g[., kw] */
                eg_g(S, t + kw, 3, g + kw, 3);
            for (int i = 0; i < n; i++) /* rows: u[i][j] = G t[i][.] */
                eg_g(S, u + i * n, 1, t + i * 3, 1);
            float *dst = U + (ptrdiff_t)co * Ci + ci0;
            if (nl == EG_WVW) {
                for (int xi = 0; xi < NX; xi++)
                    eg_wst(dst + xi * CC, u[xi]);
            } else {
                for (int xi = 0; xi < NX; xi++)
                    for (int l = 0; l < nl; l++)
                        dst[xi * CC + l] = u[xi][l];
            }
        }
    }
}

/* ---- 2. planes of one band: the padded rows of every channel, split into S column phases ----
 * AVX-512: straight from x, per vector of 16 phase-plane columns j0..j0+15: the S*16 image
 * columns S*j0 - pl .. they cover, by masked loads (lanes outside the image read as zeros), then
 * each phase's lanes picked with two-source permutes. Elsewhere: first every padded row into Xp
 * (stores only), then every row of Xp unzipped into its S phases: loading a row right after
 * writing it with shifted vectors stalls on store forwarding. */
#if EG_WVW == 16
static inline __mmask16 eg_wcols(int c0, int W) /* lanes i with 0 <= c0 + i < W */
{
    const int lo = eg_wmax(0, -c0), hi = eg_wmin(16, W - c0);
    return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1u) & ~((1u << lo) - 1u));
}

EG_WSTAGE void
eg_wino_planes(const int S, float *restrict P, float *restrict Xp, const float *restrict x, int Ci,
               int H, int W, int pt, int pl, int r0, int rows, int Wl)
{
    const int L = S * Wl;
    const __m512 zero = _mm512_setzero_ps();
    __m512i idx[4]; /* phase p: lane l <- column S*l + p of the (first two) loaded vectors */
    for (int p = 0; p < S; p++)
        idx[p] = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_set1_epi32(S), _mm512_set_epi32(
                                      15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)),
                                  _mm512_set1_epi32(p));
    (void)Xp;
    for (int c = 0; c < Ci; c++) {
        const float *xc = x + (ptrdiff_t)c * H * W;
        for (int r = 0; r < rows; r++) {
            float *Pr = P + ((ptrdiff_t)c * rows + r) * L;
            const int ih = r0 + r - pt;
            if (ih < 0 || ih >= H) {
                for (int i = 0; i < L; i += 16)
                    _mm512_storeu_ps(Pr + i, zero);
                continue;
            }
            const float *xr = xc + (ptrdiff_t)ih * W;
            for (int j0 = 0; j0 < Wl; j0 += 16) {
                const int c0 = S * j0 - pl;
                __m512 a[4] = {zero, zero, zero, zero};
                for (int v = 0; v < S; v++) {
                    const __mmask16 m = eg_wcols(c0 + 16 * v, W);
                    /* masked-off lanes are not read (the address may lie before the row) */
                    a[v] = m ? _mm512_maskz_loadu_ps(m, xr + (c0 + 16 * v)) : zero;
                }
                for (int p = 0; p < S; p++) {
                    __m512 o = _mm512_permutex2var_ps(a[0], idx[p], a[1]);
                    if (S == 4) /* lanes 0-7 from a0:a1, 8-15 from a2:a3 */
                        o = _mm512_shuffle_f32x4(o, _mm512_permutex2var_ps(a[2], idx[p], a[3]), 0x44);
                    _mm512_storeu_ps(Pr + p * Wl + j0, o);
                }
            }
        }
    }
}
#else
EG_WSTAGE void
eg_wino_planes(const int S, float *restrict P, float *restrict Xp, const float *restrict x, int Ci,
               int H, int W, int pt, int pl, int r0, int rows, int Wl)
{
    const int L = S * Wl; /* padded row: column u = x column u - pl; L a multiple of 16 */
    const int u0 = eg_wmax(0, pl), u1 = eg_wmin(L, W + pl); /* in-image columns [u0, u1) */
    const eg_wv zero = eg_wsplat(0.0f);
    for (int c = 0; c < Ci; c++) {
        const float *xc = x + (ptrdiff_t)c * H * W;
        for (int r = 0; r < rows; r++) {
            float *tr = Xp + ((ptrdiff_t)c * rows + r) * L;
            const int ih = r0 + r - pt;
            for (int i = 0; i < L; i += EG_WVW)
                eg_wst(tr + i, zero);
            if (ih < 0 || ih >= H || u1 <= u0)
                continue;
            /* vector loops, not memcpy calls: rows are 8-70 floats */
            const float *xr = xc + (ptrdiff_t)ih * W + (u0 - pl);
            const int nu = u1 - u0;
            int u = 0;
            for (; u + EG_WVW <= nu; u += EG_WVW)
                eg_wst(tr + u0 + u, eg_wld(xr + u));
            for (; u < nu; u++)
                tr[u0 + u] = xr[u];
        }
    }
    for (int q = 0; q < Ci * rows; q++) {
        const float *tr = Xp + (ptrdiff_t)q * L;
        float *Pr = P + (ptrdiff_t)q * L;
#ifdef EG_EVEN
        if (S == 2) {
            for (int j = 0; j < Wl; j += EG_WVW) {
                const eg_wv a = eg_wld(tr + 2 * j), b = eg_wld(tr + 2 * j + EG_WVW);
                eg_wst(Pr + j, EG_EVEN(a, b));
                eg_wst(Pr + Wl + j, EG_ODD(a, b));
            }
        } else {
            for (int j = 0; j < Wl; j += EG_WVW) {
                const float *s = tr + 4 * j;
                const eg_wv a0 = eg_wld(s), a1 = eg_wld(s + EG_WVW);
                const eg_wv a2 = eg_wld(s + 2 * EG_WVW), a3 = eg_wld(s + 3 * EG_WVW);
                const eg_wv e0 = EG_EVEN(a0, a1), o0 = EG_ODD(a0, a1);
                const eg_wv e1 = EG_EVEN(a2, a3), o1 = EG_ODD(a2, a3);
                eg_wst(Pr + j, EG_EVEN(e0, e1));
                eg_wst(Pr + Wl + j, EG_EVEN(o0, o1));
                eg_wst(Pr + 2 * Wl + j, EG_ODD(e0, e1));
                eg_wst(Pr + 3 * Wl + j, EG_ODD(o0, o1));
            }
        }
#else
        for (int p = 0; p < S; p++)
            for (int j = 0; j < Wl; j++)
                Pr[p * Wl + j] = tr[S * j + p];
#endif
    }
}
#endif

/* ---- 3. input transform of one band: V[xi][ci][t], t = th*TW + tw ------------------------- */
/* K tile rows per vector: K == 1 any TW (VW tiles of one row at a time); K == 2 / 4 when
 * TW == VW / K and K divides nr (the K rows' half / quarter vectors concatenated). */
EG_WSTAGE void
eg_wino_input(const int S, const int K, float *restrict V, const float *restrict P, int Ci,
              int rows, int Wl, int nr, int TW, ptrdiff_t LDV)
{
    const int n = S + 2, L = S * Wl;
    const ptrdiff_t VS = (ptrdiff_t)Ci * LDV + EG_WPAD, RS = (ptrdiff_t)S * L;
    eg_wv d[6], t[36], v[6];
    for (int c = 0; c < Ci; c++) {
        const float *Pc = P + (ptrdiff_t)c * rows * L;
        float *Vc = V + (ptrdiff_t)c * LDV;
        for (int th = 0; th < nr; th += K) {
            for (int tw0 = 0; tw0 < TW; tw0 += EG_WVW) {
                const float *base = Pc + (ptrdiff_t)S * th * L + tw0;
                /* row by row: load row i's n elements and transform them along j at once (fewer
                 * live vectors than loading the whole tile first), then down the columns */
                for (int i = 0; i < n; i++) {
                    for (int j = 0; j < n; j++) {
                        const float *e = base + i * L + (j % S) * Wl + j / S;
#ifdef EG_MULTIROW
                        if (K == 2)
                            d[j] = EG_CATH(eg_wldh(e), eg_wldh(e + RS));
                        else if (K == 4)
                            d[j] = EG_CATH(EG_CATQ(eg_wldq(e), eg_wldq(e + RS)),
                                           EG_CATQ(eg_wldq(e + 2 * RS), eg_wldq(e + 3 * RS)));
                        else
#endif
                            d[j] = eg_wld(e);
                    }
                    eg_bt(S, t + i * n, 1, d, 1);
                }
                float *dst = Vc + th * TW + tw0;
                for (int j = 0; j < n; j++) { /* columns, stored as they come */
                    eg_bt(S, v, 1, t + j, n);
                    for (int i = 0; i < n; i++)
                        eg_wst(dst + (i * n + j) * VS, v[i]);
                }
            }
        }
    }
}

/* The input gradient's fused mask (conv2d_f32_bw_input_winograd_mask): kind 1 ReluGrad (keep
 * where y > 0), 2 ClipGrad (keep where lo < y < hi), as relu_f32_bw / clip_f32_bw; y has the
 * output's layout. Applied to each output row right after the output transform stores it. */
typedef struct {
    int kind;
    const float *y;
    float lo, hi;
} eg_wmask;

static void eg_wmask_row(float *restrict d, const float *restrict y, int n, const eg_wmask *mk)
{
    if (mk->kind == 1) {
        for (int i = 0; i < n; i++)
            d[i] = y[i] > 0.0f ? d[i] : 0.0f;
    } else {
        const float lo = mk->lo, hi = mk->hi;
        for (int i = 0; i < n; i++)
            d[i] = (y[i] > lo && y[i] < hi) ? d[i] : 0.0f;
    }
}

/* ---- 4. output transform of one band into y rows [S*th0, ...) ----------------------------- */
EG_WSTAGE void
eg_wino_output(const int S, const int K, float *restrict y, const float *restrict Mo,
               const float *restrict b, int act, const eg_wmask *mk, int Co, int OH, int OW, int th0,
               int nr, int TW, int nt)
{
    const int n = S + 2;
    const ptrdiff_t MS = (ptrdiff_t)Co * nt + EG_WPAD, P = (ptrdiff_t)OH * OW;
    eg_wv mm[6], t[24], o[16], z[4];
    for (int m = 0; m < Co; m++) {
        const eg_wv bias = eg_wsplat(b ? b[m] : 0.0f), zero = eg_wsplat(0.0f);
        float *ym = y + (ptrdiff_t)m * P;
        for (int th = 0; th < nr; th += K) {
            for (int tw0 = 0; tw0 < TW; tw0 += EG_WVW) {
                const float *src = Mo + (ptrdiff_t)m * nt + th * TW + tw0;
                for (int i = 0; i < n; i++) { /* row i of the products, along j: t[i][b] */
                    for (int j = 0; j < n; j++)
                        mm[j] = eg_wld(src + (i * n + j) * MS);
                    eg_at(S, t + i * S, 1, mm, 1);
                }
                for (int bb = 0; bb < S; bb++) /* down the columns: o[a][b] */
                    eg_at(S, o + bb, S, t + bb, S);
                for (int k = 0; k < S * S; k++) {
                    o[k] += bias;
                    if (act)
                        o[k] = (eg_wv)((eg_wvi)o[k] & (eg_wvi)(o[k] > zero));
                }
                const int ow0 = S * tw0, nv = eg_wmin(S * EG_WVW, OW - ow0);
                for (int a = 0; a < S; a++) {
                    const int oh = S * (th0 + th) + a;
                    if (oh >= OH && K == 1)
                        break;
                    const eg_wv *oa = o + a * S;
#ifdef EG_ZIPLO
                    if (S == 2) {
                        z[0] = EG_ZIPLO(oa[0], oa[1]);
                        z[1] = EG_ZIPHI(oa[0], oa[1]);
                    } else {
                        const eg_wv lo02 = EG_ZIPLO(oa[0], oa[2]), hi02 = EG_ZIPHI(oa[0], oa[2]);
                        const eg_wv lo13 = EG_ZIPLO(oa[1], oa[3]), hi13 = EG_ZIPHI(oa[1], oa[3]);
                        z[0] = EG_ZIPLO(lo02, lo13);
                        z[1] = EG_ZIPHI(lo02, lo13);
                        z[2] = EG_ZIPLO(hi02, hi13);
                        z[3] = EG_ZIPHI(hi02, hi13);
                    }
#else
                    float buf[4 * EG_WVW];
                    for (int l = 0; l < EG_WVW; l++)
                        for (int bb = 0; bb < S; bb++)
                            buf[S * l + bb] = oa[bb][l];
                    for (int k = 0; k < S; k++)
                        z[k] = eg_wld(buf + k * EG_WVW);
#endif
#ifdef EG_MULTIROW
                    if (K > 1) { /* z: K tile rows of S*TW floats each; row r -> y row oh + S*r */
                        const int seg = S * TW, nw = eg_wmin(seg, OW);
                        float zf[4 * EG_WVW];
                        for (int k = 0; k < S; k++)
                            eg_wst(zf + k * EG_WVW, z[k]);
                        for (int r = 0; r < K && oh + S * r < OH; r++) {
                            float *yr = ym + (ptrdiff_t)(oh + S * r) * OW;
                            const float *zr = zf + r * seg;
                            int i = 0;
                            if (seg >= EG_WVW)
                                for (; i + EG_WVW <= nw; i += EG_WVW)
                                    eg_wst(yr + i, eg_wld(zr + i));
                            else if (nw == seg)
                                for (; i < nw; i += seg)
                                    eg_wsth(yr + i, eg_wldh(zr + i));
                            for (; i < nw; i++)
                                yr[i] = zr[i];
                            if (mk)
                                eg_wmask_row(yr, mk->y + (yr - y), nw, mk);
                        }
                        continue;
                    }
#endif
                    float *yr = ym + (ptrdiff_t)oh * OW + ow0;
                    /* whole vectors inside the row, then the ragged rest lane by lane */
                    int k = 0;
                    for (; (k + 1) * EG_WVW <= nv; k++)
                        eg_wst(yr + k * EG_WVW, z[k]);
                    for (int i = k * EG_WVW; i < nv; i++)
                        yr[i] = z[k][i - k * EG_WVW];
                    if (mk)
                        eg_wmask_row(yr, mk->y + (yr - y), nv, mk);
                }
            }
        }
    }
}

/* ---- 3b. narrow element products (AVX-512): Mo[co][t] = sum_ci U[co][ci] V[ci][t], nt <= 16 ---
 * Bands of at most 16 tiles (images up to 8x8 on F2): the GEMM engine's setup per call costs
 * more than these [Co x Ci] x [Ci x 1 vector] products, so straight from U (broadcast) and V
 * (one vector per row), MR rows of accumulators per pass over Ci. A row's vector is stored whole:
 * its lanes past nt (junk) land in the next row, stored afterwards (rows in ascending order), or
 * in the EG_WPAD floats after the last row. */
#if EG_WVW == 16
#define EG_WGEMM1 1
static inline __attribute__((always_inline)) void
eg_wgemm1_tile(const int MR, float *restrict Mo, const float *restrict U, const float *restrict V,
               int Ci, ptrdiff_t LDV, int nt)
{
    eg_wv acc[12];
    for (int i = 0; i < MR; i++)
        acc[i] = eg_wsplat(0.0f);
    for (int k = 0; k < Ci; k++) {
        const eg_wv v = eg_wld(V + k * LDV);
        for (int i = 0; i < MR; i++)
            acc[i] += eg_wsplat(U[i * Ci + k]) * v;
    }
    for (int i = 0; i < MR; i++)
        eg_wst(Mo + (ptrdiff_t)i * nt, acc[i]);
}

static void eg_wgemm1(float *restrict Mo, const float *restrict U, const float *restrict V, int Co,
                      int nt, int Ci, ptrdiff_t LDV)
{
    int m = 0;
    for (; m + 12 <= Co; m += 12)
        eg_wgemm1_tile(12, Mo + (ptrdiff_t)m * nt, U + (ptrdiff_t)m * Ci, V, Ci, LDV, nt);
    for (; m + 4 <= Co; m += 4)
        eg_wgemm1_tile(4, Mo + (ptrdiff_t)m * nt, U + (ptrdiff_t)m * Ci, V, Ci, LDV, nt);
    for (; m < Co; m++)
        eg_wgemm1_tile(1, Mo + (ptrdiff_t)m * nt, U + (ptrdiff_t)m * Ci, V, Ci, LDV, nt);
}
#endif

/* ---- the driver: y[N, Co, OH, OW] from x[N, Ci, H, W] and U (already in scratch) ----------- */
static inline int eg_wino_rows_per_vector(int TW, int nr)
{
#ifdef EG_MULTIROW
    if (2 * TW == EG_WVW && nr % 2 == 0)
        return 2;
    if (4 * TW == EG_WVW && nr % 4 == 0)
        return 4;
#endif
    (void)TW;
    (void)nr;
    return 1;
}

static inline int eg_wino_rows(int TH, int TW) { return eg_wmin(TH, eg_wmax(1, EG_WTILES / TW)); }

static inline __attribute__((always_inline)) void
eg_wino_run(const int S, float *restrict y, const float *restrict x, const float *restrict b,
            int act, const eg_wmask *mask, int N, int Ci, int H, int W, int Co, int OH, int OW, int pt, int pl,
            const float *restrict U, float *restrict scratch)
{
    const int n = S + 2, NX = n * n;
    const int TH = (OH + S - 1) / S, TW = (OW + S - 1) / S, Wl = (TW + 1 + 15) & ~15;
    const int R = eg_wino_rows(TH, TW), NT = R * TW, L = S * Wl;
    const ptrdiff_t LDV = NT + 16;
    float *P = scratch; /* after U (the _pre kernels: U given, scratch starts here) */
    float *V = P + (ptrdiff_t)Ci * (S * R + 2) * L + 16;
    float *Mo = V + (ptrdiff_t)NX * (Ci * LDV + EG_WPAD);
    float *Xp = Mo; /* the padded rows are dead once unzipped into P, before the GEMMs write Mo */
    for (int i = 0; i < 16; i++) /* vector over-reads of the last plane row: junk lanes only */
        P[(ptrdiff_t)Ci * (S * R + 2) * L + i] = 0.0f;
    for (int bn = 0; bn < N; bn++) {
        const float *xn = x + (ptrdiff_t)bn * Ci * H * W;
        float *yn = y + (ptrdiff_t)bn * Co * OH * OW;
        eg_wmask mn; /* the mask of image bn */
        if (mask) {
            mn = *mask;
            mn.y += (ptrdiff_t)bn * Co * OH * OW;
        }
        const eg_wmask *mk = mask ? &mn : NULL;
        for (int th0 = 0; th0 < TH; th0 += R) {
            const int nr = eg_wmin(R, TH - th0), nt = nr * TW, rows = S * nr + 2;
            eg_wino_planes(S, P, Xp, xn, Ci, H, W, pt, pl, S * th0, rows, Wl);
            /* 2 or 4 tile rows per vector where the rows are VW/2 or VW/4 tiles */
            const int K = eg_wino_rows_per_vector(TW, nr);
            if (K == 4)
                eg_wino_input(S, 4, V, P, Ci, rows, Wl, nr, TW, LDV);
            else if (K == 2)
                eg_wino_input(S, 2, V, P, Ci, rows, Wl, nr, TW, LDV);
            else
                eg_wino_input(S, 1, V, P, Ci, rows, Wl, nr, TW, LDV);
            for (int xi = 0; xi < NX; xi++)
#ifdef EG_WGEMM1
                if (nt <= 16)
                    eg_wgemm1(Mo + (ptrdiff_t)xi * (Co * nt + EG_WPAD), U + (ptrdiff_t)xi * (Co * Ci + EG_WPAD),
                              V + (ptrdiff_t)xi * (Ci * LDV + EG_WPAD), Co, nt, Ci, LDV);
                else
#endif
                gemm_f32_tiled_strided(Mo + (ptrdiff_t)xi * (Co * nt + EG_WPAD),
                                       U + (ptrdiff_t)xi * (Co * Ci + EG_WPAD),
                                       V + (ptrdiff_t)xi * (Ci * LDV + EG_WPAD), NULL, Co, nt, Ci, nt, Ci, 1,
                                       (int)LDV, 1, 0);
            /* the output transform reads whole vectors: the lanes past nt are junk */
            if (K == 4)
                eg_wino_output(S, 4, yn, Mo, b, act, mk, Co, OH, OW, th0, nr, TW, nt);
            else if (K == 2)
                eg_wino_output(S, 2, yn, Mo, b, act, mk, Co, OH, OW, th0, nr, TW, nt);
            else
                eg_wino_output(S, 1, yn, Mo, b, act, mk, Co, OH, OW, th0, nr, TW, nt);
        }
    }
}

/* y from x and U, the weights transformed beforehand (frozen weights: kernels_winograd.winograd_weights) */
static void eg_wino_pre(int S, float *restrict y, const float *restrict x, const float *restrict U,
                        const float *restrict b, int act, const eg_wmask *mk, int N, int Ci, int H, int W,
                        int Co, int OH, int OW, int pt, int pl, float *restrict scratch)
{
    if (N <= 0 || OH <= 0 || OW <= 0 || Co <= 0)
        return;
    if (S == 4)
        eg_wino_run(4, y, x, b, act, mk, N, Ci, H, W, Co, OH, OW, pt, pl, U, scratch);
    else
        eg_wino_run(2, y, x, b, act, mk, N, Ci, H, W, Co, OH, OW, pt, pl, U, scratch);
}

/* the same from w, transformed into the head of scratch on each call */
static void eg_wino(int S, float *restrict y, const float *restrict x, const float *restrict w,
                    const float *restrict b, int act, const eg_wmask *mk, int flip, int N, int Ci, int H, int W, int Co,
                    int OH, int OW, int pt, int pl, float *restrict scratch)
{
    if (N <= 0 || OH <= 0 || OW <= 0 || Co <= 0)
        return;
    if (S == 4)
        eg_wino_weights(4, scratch, w, Co, Ci, flip);
    else
        eg_wino_weights(2, scratch, w, Co, Ci, flip);
    eg_wino_pre(S, y, x, scratch, b, act, mk, N, Ci, H, W, Co, OH, OW, pt, pl,
                scratch + (ptrdiff_t)(S + 2) * (S + 2) * (Co * Ci + EG_WPAD));
}

/* the entry points' fixed arguments: 3x3, stride 1, no dilation, one group (kernels_winograd.py checks) */
#define EG_WINO_FIXED() ((void)KH, (void)KW, (void)sh, (void)sw, (void)dil_h, (void)dil_w, (void)G)

void conv2d_f32_fw_winograd(float *restrict y, const float *restrict x, const float *restrict w,
                            const float *restrict b, int N, int C, int H, int W, int M, int OH,
                            int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                            int dil_w, int G, int tile, float *restrict scratch, int act)
{
    EG_WINO_FIXED();
    eg_wino(tile, y, x, w, b, act, NULL, 0, N, C, H, W, M, OH, OW, pt, pl, scratch);
}

void conv2d_f32_bw_input_winograd(float *restrict dx, const float *restrict dy,
                                  const float *restrict w, int N, int C, int H, int W, int M,
                                  int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                  int dil_h, int dil_w, int G, int tile, float *restrict scratch)
{
    EG_WINO_FIXED();
    /* roles swap: dy [N, M, OH, OW] is the image, dx [N, C, H, W] the output, pads 2 - p */
    eg_wino(tile, dx, dy, w, NULL, 0, NULL, 1, N, M, OH, OW, C, H, W, 2 - pt, 2 - pl, scratch);
}

void conv2d_f32_bw_input_winograd_mask(float *restrict dx, const float *restrict dy,
                                       const float *restrict w, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int tile,
                                       float *restrict scratch, const float *restrict y, int mask,
                                       float lo, float hi)
{
    EG_WINO_FIXED();
    const eg_wmask mk = {mask, y, lo, hi};
    eg_wino(tile, dx, dy, w, NULL, 0, mask == 1 || mask == 2 ? &mk : NULL, 1, N, M, OH, OW, C, H, W, 2 - pt,
            2 - pl, scratch);
}

void conv2d_f32_fw_winograd_pre(float *restrict y, const float *restrict x,
                                const float *restrict U, const float *restrict b, int N, int C,
                                int H, int W, int M, int OH, int OW, int KH, int KW, int sh,
                                int sw, int pt, int pl, int dil_h, int dil_w, int G, int tile,
                                float *restrict scratch, int act)
{
    EG_WINO_FIXED();
    eg_wino_pre(tile, y, x, U, b, act, NULL, N, C, H, W, M, OH, OW, pt, pl, scratch);
}

void conv2d_f32_bw_input_winograd_pre(float *restrict dx, const float *restrict dy,
                                      const float *restrict U, int N, int C, int H, int W, int M,
                                      int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                      int pl, int dil_h, int dil_w, int G, int tile,
                                      float *restrict scratch)
{
    EG_WINO_FIXED();
    eg_wino_pre(tile, dx, dy, U, NULL, 0, NULL, N, M, OH, OW, C, H, W, 2 - pt, 2 - pl, scratch);
}

void conv2d_f32_bw_input_winograd_pre_mask(float *restrict dx, const float *restrict dy,
                                           const float *restrict U, int N, int C, int H, int W, int M,
                                           int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                           int pl, int dil_h, int dil_w, int G, int tile,
                                           float *restrict scratch, const float *restrict y, int mask,
                                           float lo, float hi)
{
    EG_WINO_FIXED();
    const eg_wmask mk = {mask, y, lo, hi};
    eg_wino_pre(tile, dx, dy, U, NULL, 0, mask == 1 || mask == 2 ? &mk : NULL, N, M, OH, OW, C, H, W, 2 - pt,
                2 - pl, scratch);
}
