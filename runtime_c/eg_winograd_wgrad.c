/* eg_winograd_wgrad.c — 3x3 stride-1 weight gradient by Winograd F(3x3, 2x2) (eg_winograd_wgrad.h).
 *
 * Layout: one 16-float vector per 4x4 transformed tile, lane 4*i + j = element (i, j).
 *   U[m][t] = G dy_t G^T        (the 2x2 dy tile t of output channel m; scratch, M_upd x chunk)
 *   V[c][t] = B^T x_t B         (the 4x4 padded-image tile t of channel c; scratch, Cg_upd x chunk)
 * over chunks of whole tile rows (about EG_WG_TB tiles: transformed, then multiplied while in cache),
 *   Z[m][c] = sum_t U[m][t] . V[c][t]    16 GEMMs [M_upd x T] x [T x Cg_upd] run side by side in
 *             the lanes: a register block of R x S accumulator vectors (m x c), per t R + S vector
 *             loads and R*S fused multiply-adds, no broadcasts
 *   dW[m][c] = A^T Z[m][c] A     on the accumulators (lane permutes + FMAs), the 9 results of a
 *             pair packed into lanes 0..8 and the S pairs of a row written as 9*S contiguous floats
 *             (the compact gradient, or w += -lr * dW: the fused SGD step).
 * Transforms are lane permutes of the vector plus FMAs with constant vectors (B^T: a row step and
 * a column step, each z + s * perm(z); G: four broadcasts of dy times constant outer products).
 *
 * Vectors are GCC vector extensions (gcc, clang; any ISA lowers them: 16 floats are one zmm with
 * AVX-512, two ymm with AVX2, four q registers on NEON). The register block is 4 x 6 with AVX-512
 * (24 accumulators of 32 zmm), 2 x 2 elsewhere.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <stddef.h>

#include "eg_winograd_wgrad.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

typedef float eg_wv __attribute__((vector_size(64)));
typedef float eg_wvu __attribute__((vector_size(64), aligned(4), may_alias));
typedef int eg_wvi __attribute__((vector_size(64)));

#define eg_wld(p) (*(const eg_wvu *)(p))
#define eg_wst(p, v) (*(eg_wvu *)(p) = (v))
#define eg_wsplat(s) ((float)(s) - (eg_wv){0})

#if defined(__clang__)
#define EG_WPERM(z, ...) __builtin_shufflevector((z), (z), __VA_ARGS__)
#else
#define EG_WPERM(z, ...) __builtin_shuffle((z), (eg_wvi){__VA_ARGS__})
#endif

#if defined(__AVX512F__)
#define EG_WG_R 4
#define EG_WG_S 6
#else
#define EG_WG_R 2
#define EG_WG_S 2
#endif

/* B^T d B of a 4x4 tile z: rows then columns, each (r0 - r2, r1 + r2, r2 - r1, r3 - r1). */
#define EG_WG_BT(z)                                                                              \
    do {                                                                                         \
        const eg_wv s_ = {-1, -1, -1, -1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1, -1};           \
        const eg_wv c_ = {-1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1};           \
        (z) += s_ * EG_WPERM((z), 8, 9, 10, 11, 8, 9, 10, 11, 4, 5, 6, 7, 4, 5, 6, 7);          \
        (z) += c_ * EG_WPERM((z), 2, 2, 1, 1, 6, 6, 5, 5, 10, 10, 9, 9, 14, 14, 13, 13);        \
    } while (0)

/* The image tiles' transform: V[c][t] for the Cg_upd channels of image n (tiles n*TH*TW ..). */
static void eg_wg_planes(float *restrict planes, const float *restrict xn, int Cg_upd, int H, int W,
                         int pt, int pl, int Hp, int Wp)
{
    for (int c = 0; c < Cg_upd; c++) {
        const float *xc = xn + (ptrdiff_t)c * H * W;
        float *plane = planes + (ptrdiff_t)c * Hp * Wp;
        for (int i = 0; i < Hp * Wp; i++)
            plane[i] = 0.0f;
        for (int h = 0; h < H && h + pt < Hp; h++) {
            float *row = plane + (ptrdiff_t)(h + pt) * Wp + pl;
            const int n = W < Wp - pl ? W : Wp - pl;
            for (int w = 0; w < n; w++)
                row[w] = xc[(ptrdiff_t)h * W + w];
        }
    }
}

/* The image tiles' transform: V[c][t] for tile rows r0 .. r1 - 1 (t = (ti - r0) * TW + tj) of the
 * Cg_upd zero-padded planes (Hp x Wp each). */
static void eg_wg_input(float *restrict V, const float *restrict planes, int Cg_upd, int Hp, int Wp,
                        int r0, int r1, int TW, ptrdiff_t vs)
{
    for (int c = 0; c < Cg_upd; c++) {
        const float *plane = planes + (ptrdiff_t)c * Hp * Wp;
        float *vc = V + (ptrdiff_t)c * vs;
        for (int ti = r0; ti < r1; ti++)
            for (int tj = 0; tj < TW; tj++) {
                const float *p = plane + (ptrdiff_t)(2 * ti) * Wp + 2 * tj;
                const float *p1 = p + Wp, *p2 = p1 + Wp, *p3 = p2 + Wp;
#if defined(__AVX512F__)
                eg_wv z = (eg_wv)_mm512_insertf32x4(
                    _mm512_insertf32x4(_mm512_insertf32x4(_mm512_castps128_ps512(_mm_loadu_ps(p)),
                                                          _mm_loadu_ps(p1), 1),
                                       _mm_loadu_ps(p2), 2),
                    _mm_loadu_ps(p3), 3);
#else
                eg_wv z = {p[0],  p[1],  p[2],  p[3],  p1[0], p1[1], p1[2], p1[3],
                           p2[0], p2[1], p2[2], p2[3], p3[0], p3[1], p3[2], p3[3]};
#endif
                EG_WG_BT(z);
                eg_wst(vc + (ptrdiff_t)((ti - r0) * TW + tj) * 16, z);
            }
    }
}

/* The dy tiles' transform: U[m][t] = sum_{a,b} dy[a][b] * G[:, a] G[:, b]^T for the M_upd
 * channels of image n, tile rows r0 .. r1 - 1 (zero beyond OH, OW). */
static void eg_wg_dy(float *restrict U, const float *restrict dyn, int M_upd, int OH, int OW,
                     int r0, int r1, int TW, ptrdiff_t us)
{
    const float h = 0.5f, q = 0.25f;
    const eg_wv k00 = {1, h, h, 0, h, q, q, 0, h, q, q, 0, 0, 0, 0, 0};
    const eg_wv k01 = {0, h, -h, 1, 0, q, -q, h, 0, q, -q, h, 0, 0, 0, 0};
    const eg_wv k10 = {0, 0, 0, 0, h, q, q, 0, -h, -q, -q, 0, 1, h, h, 0};
    const eg_wv k11 = {0, 0, 0, 0, 0, q, -q, h, 0, -q, q, -h, 0, h, -h, 1};
    for (int m = 0; m < M_upd; m++) {
        const float *d = dyn + (ptrdiff_t)m * OH * OW;
        float *um = U + (ptrdiff_t)m * us;
        for (int ti = r0; ti < r1; ti++) {
            const float *g0 = d + (ptrdiff_t)(2 * ti) * OW;
            float *ut = um + (ptrdiff_t)(ti - r0) * TW * 16;
            const int has1 = 2 * ti + 1 < OH;
            int tj = 0;
            if (has1) /* whole tiles: no bounds */
                for (; 2 * tj + 1 < OW; tj++) {
                    const float *g = g0 + 2 * tj;
                    eg_wst(ut + (ptrdiff_t)tj * 16,
                           eg_wsplat(g[0]) * k00 + eg_wsplat(g[1]) * k01 + eg_wsplat(g[OW]) * k10 +
                               eg_wsplat(g[OW + 1]) * k11);
                }
            for (; tj < TW; tj++) {
                const int j = 2 * tj, jb = j + 1 < OW;
                const float g00 = g0[j], g01 = jb ? g0[j + 1] : 0.0f;
                const float g10 = has1 ? g0[OW + j] : 0.0f, g11 = has1 && jb ? g0[OW + j + 1] : 0.0f;
                eg_wst(ut + (ptrdiff_t)tj * 16,
                       eg_wsplat(g00) * k00 + eg_wsplat(g01) * k01 + eg_wsplat(g10) * k10 +
                           eg_wsplat(g11) * k11);
            }
        }
    }
}

#if defined(__AVX512F__)
/* Lanes 16q .. 16q + 15 of a row of 9-float pairs: pair eg_wg_pair0[q] + (0, 1, 2); idx1 takes
 * the first two (lane k of the first, 16 + k of the second), idx2 keeps those and adds the third. */
static const int eg_wg_pair0[4] = {0, 1, 3, 5};
static const int eg_wg_idx1[4][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 17, 18, 19, 20, 21, 22},
    {7, 8, 16, 17, 18, 19, 20, 21, 22, 23, 24, 0, 0, 0, 0, 0},
    {5, 6, 7, 8, 16, 17, 18, 19, 20, 21, 22, 23, 24, 0, 0, 0},
    {3, 4, 5, 6, 7, 8, 16, 17, 18, 19, 20, 21, 22, 23, 24, 0}};
static const int eg_wg_idx2[4][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 16, 17, 18, 19, 20},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17, 18},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16}};
#endif

/* The momentum step at the store (conv2d_f32_bw_weight_momentum_winograd): out is v; each stored
 * dW element becomes v = mu * v + dW, then w -= lr * v (w: the block's weights, rows ldw apart). */
typedef struct {
    float *w;
    ptrdiff_t ldw;
    float lr, mu;
} eg_wg_mom;

/* out rows m0 + i (i < R), pairs c0 + j (j < S): Z by the lane-parallel GEMM over T tiles, then
 * alpha * A^T Z A packed into 9 lanes; acc: out += that (SGD), else out = that; mom: the momentum
 * step (above). Always inlined with constant R, S so the accumulators live in registers. */
static inline __attribute__((always_inline)) void
eg_wg_block(const int R, const int S, float *restrict out, ptrdiff_t ldw, const float *restrict U,
            const float *restrict V, ptrdiff_t ts, int t0, int t1, float *restrict z, ptrdiff_t zs,
            int first, int last, float alpha, int acc, const eg_wg_mom *mom)
{
    eg_wv c[EG_WG_R][EG_WG_S];
    for (int i = 0; i < R; i++)
        for (int j = 0; j < S; j++)
            c[i][j] = first ? eg_wsplat(0.0f) : (eg_wv)eg_wld(z + i * zs + 16 * j);
    for (int t = t0; t < t1; t++) {
        eg_wv u[EG_WG_R];
        for (int i = 0; i < R; i++) {
            u[i] = eg_wld(U + i * ts + 16 * t);
#if defined(__AVX512F__)
            __asm__("" : "+v"(u[i]));
#endif
        }
        for (int j = 0; j < S; j++) {
            eg_wv v = eg_wld(V + j * ts + 16 * t);
#if defined(__AVX512F__)
            __asm__("" : "+v"(v)); /* one load into a register, not R memory operands: the loads,
                                      not the FMAs, bound the loop when gcc folds them */
#endif
            for (int i = 0; i < R; i++)
                c[i][j] += u[i] * v;
        }
    }
    if (!last) { /* a k block of the tiles: the partial sums wait in z */
        for (int i = 0; i < R; i++)
            for (int j = 0; j < S; j++)
                eg_wst(z + i * zs + 16 * j, c[i][j]);
        return;
    }
    /* rows of A^T Z: (z0 + z1 + z2, z1 - z2, z1 + z2 + z3, 0); columns likewise, with the 3x3
     * result packed into lanes 0..8 (alpha folded into the column constants, lanes 9..15 zero) */
    const eg_wv sb = {1, 1, 1, 1, -1, -1, -1, -1, 1, 1, 1, 1, 0, 0, 0, 0};
    const eg_wv sc = {1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0};
    const eg_wv ta = alpha * (eg_wv){1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    const eg_wv tb = alpha * (eg_wv){1, -1, 1, 1, -1, 1, 1, -1, 1, 0, 0, 0, 0, 0, 0, 0};
    const eg_wv tc = alpha * (eg_wv){1, 0, 1, 1, 0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    for (int i = 0; i < R; i++) {
#if defined(__AVX512F__)
        __m512 ov[EG_WG_S];
#else
        float buf[9 * EG_WG_S + 7];
#endif
        for (int j = 0; j < S; j++) {
            const eg_wv z = c[i][j];
            const eg_wv w = EG_WPERM(z, 0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 12, 13, 14, 15) +
                            sb * EG_WPERM(z, 4, 5, 6, 7, 8, 9, 10, 11, 8, 9, 10, 11, 0, 1, 2, 3) +
                            sc * EG_WPERM(z, 8, 9, 10, 11, 0, 1, 2, 3, 12, 13, 14, 15, 0, 1, 2, 3);
            const eg_wv o = ta * EG_WPERM(w, 0, 1, 1, 4, 5, 5, 8, 9, 9, 0, 0, 0, 0, 0, 0, 0) +
                            tb * EG_WPERM(w, 1, 2, 2, 5, 6, 6, 9, 10, 10, 0, 0, 0, 0, 0, 0, 0) +
                            tc * EG_WPERM(w, 2, 3, 3, 6, 7, 7, 10, 11, 11, 0, 0, 0, 0, 0, 0, 0);
#if defined(__AVX512F__)
            ov[j] = (__m512)o;
#else
            if (j + 1 < S) {
                eg_wst(buf + 9 * j, o); /* lanes 9..15 are overwritten by the next pair */
            } else {
                float last[16];
                eg_wst(last, o);
                for (int k = 0; k < 9; k++)
                    buf[9 * j + k] = last[k];
            }
#endif
        }
        float *d = out + i * ldw;
        if (mom) { /* v = mu * v + dW, w -= lr * v, as momentum_f32 */
            float pk[9 * EG_WG_S + 16];
            float *wr = mom->w + i * mom->ldw;
            const float mu = mom->mu, lr = mom->lr;
#if defined(__AVX512F__)
            for (int j = 0; j < S; j++)
                _mm512_storeu_ps(pk + 9 * j, ov[j]); /* lanes 9..15 are overwritten by the next pair */
#else
            for (int k = 0; k < 9 * S; k++)
                pk[k] = buf[k];
#endif
            for (int k = 0; k < 9 * S; k++) {
                const float vk = mu * d[k] + pk[k];
                d[k] = vk;
                wr[k] -= lr * vk;
            }
            continue;
        }
#if defined(__AVX512F__)
        /* the S pairs' 9*S floats as whole vectors (two-source permutes), so no store overlaps a
         * later load (a masked or overlapping store would stall the next pair's load) */
        for (int q = 0; 16 * q < 9 * S; q++) {
            const int ja = eg_wg_pair0[q], jb = ja + 1 < S ? ja + 1 : S - 1;
            const int jc = ja + 2 < S ? ja + 2 : S - 1;
            __m512 v = _mm512_permutex2var_ps(ov[ja], _mm512_loadu_si512(eg_wg_idx1[q]), ov[jb]);
            if (q > 0)
                v = _mm512_permutex2var_ps(v, _mm512_loadu_si512(eg_wg_idx2[q]), ov[jc]);
            if (16 * q + 16 <= 9 * S) {
                _mm512_storeu_ps(d + 16 * q, acc ? _mm512_add_ps(_mm512_loadu_ps(d + 16 * q), v) : v);
            } else {
                float tmp[16];
                _mm512_storeu_ps(tmp, v);
                for (int k = 0; k < 9 * S - 16 * q; k++)
                    d[16 * q + k] = acc ? d[16 * q + k] + tmp[k] : tmp[k];
            }
        }
#else
        if (acc)
            for (int k = 0; k < 9 * S; k++)
                d[k] += buf[k];
        else
            for (int k = 0; k < 9 * S; k++)
                d[k] = buf[k];
#endif
    }
}

#define EG_WG_CASE(r, s)                                                                         \
    case (r) * 8 + (s):                                                                          \
        eg_wg_block(r, s, o, ldw, um, vc, ts, t0, t1, zb, zs, first, last, alpha, acc, mb);      \
        break

/* The GEMM over one chunk of nt tiles (rows of U and V ts floats apart): the partial sums of every
 * pair wait in z (16 * M_upd * Cg_upd floats) between chunks; the last chunk writes out. The
 * m blocks pass over one block of V rows while it is in L1. */
static void eg_wg_gemm(float *restrict out, const float *restrict U, const float *restrict V,
                       float *restrict z, int M_upd, int Cg_upd, int nt, ptrdiff_t ts, int first,
                       int last, ptrdiff_t ldw, float alpha, int acc, const eg_wg_mom *mom)
{
    const ptrdiff_t zs = (ptrdiff_t)Cg_upd * 16;
    const int t0 = 0, t1 = nt;
    {
        for (int c0 = 0; c0 < Cg_upd; c0 += EG_WG_S) {
            const int ss = Cg_upd - c0 < EG_WG_S ? Cg_upd - c0 : EG_WG_S;
            const float *vc = V + c0 * ts;
            for (int m0 = 0; m0 < M_upd; m0 += EG_WG_R) {
                const int rr = M_upd - m0 < EG_WG_R ? M_upd - m0 : EG_WG_R;
                const float *um = U + m0 * ts;
                float *o = out + m0 * ldw + 9 * c0, *zb = z ? z + m0 * zs + 16 * c0 : z;
                eg_wg_mom mblk;
                const eg_wg_mom *mb = NULL;
                if (mom) {
                    mblk = *mom;
                    mblk.w += m0 * mom->ldw + 9 * c0;
                    mb = &mblk;
                }
            switch (rr * 8 + ss) {
#if EG_WG_R == 4 && EG_WG_S == 6
            EG_WG_CASE(4, 6); EG_WG_CASE(4, 5); EG_WG_CASE(4, 4); EG_WG_CASE(4, 3); EG_WG_CASE(4, 2);
            EG_WG_CASE(4, 1); EG_WG_CASE(3, 6); EG_WG_CASE(3, 5); EG_WG_CASE(3, 4); EG_WG_CASE(3, 3);
            EG_WG_CASE(3, 2); EG_WG_CASE(3, 1); EG_WG_CASE(2, 6); EG_WG_CASE(2, 5); EG_WG_CASE(2, 4);
            EG_WG_CASE(2, 3); EG_WG_CASE(1, 6); EG_WG_CASE(1, 5); EG_WG_CASE(1, 4); EG_WG_CASE(1, 3);
#endif
            EG_WG_CASE(2, 2); EG_WG_CASE(2, 1); EG_WG_CASE(1, 2); EG_WG_CASE(1, 1);
            default:
                break;
            }
            }
        }
    }
}

static int eg_wg_applies(int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w,
                         int G)
{
    return KH == 3 && KW == 3 && sh == 1 && sw == 1 && dil_h == 1 && dil_w == 1 && G == 1 &&
           pt >= 0 && pt <= 2 && pl >= 0 && pl <= 2;
}

/* Tile rows per chunk: about EG_WG_TB tiles, so the chunk's U and V stay in cache between their
 * transform and the GEMM (compiler/kernels_wgrad.py: TILE_BLOCK). */
#ifndef EG_WG_TB
#define EG_WG_TB 64
#endif

static void eg_wg(float *restrict out, const float *restrict dy, const float *restrict x, int N,
                  int H, int W, int M, int OH, int OW, int pt, int pl, int M_upd, int Cg_upd,
                  int Cx, ptrdiff_t ldw, float alpha, int acc, const eg_wg_mom *mom,
                  float *restrict scratch)
{
    if (M_upd <= 0 || Cg_upd <= 0)
        return;
    if (N <= 0 || OH <= 0 || OW <= 0) { /* no terms: the gradient is zero */
        for (int m = 0; m < M_upd && (!acc || mom); m++)
            for (int i = 0; i < 9 * Cg_upd; i++) {
                if (!mom) {
                    out[m * ldw + i] = 0.0f;
                    continue;
                }
                const float vk = mom->mu * out[m * ldw + i];
                out[m * ldw + i] = vk;
                mom->w[m * mom->ldw + i] -= mom->lr * vk;
            }
        return;
    }
    const int TH = (OH + 1) / 2, TW = (OW + 1) / 2, Hp = 2 * TH + 2, Wp = 2 * TW + 2;
    int RT = EG_WG_TB / TW;
    RT = RT < 1 ? 1 : RT > TH ? TH : RT;
    const int chunks = N * ((TH + RT - 1) / RT);
    const ptrdiff_t ts = (ptrdiff_t)RT * TW * 16;
    float *planes = scratch, *U = planes + (ptrdiff_t)Cg_upd * Hp * Wp, *V = U + M_upd * ts;
    float *z = chunks > 1 ? V + Cg_upd * ts : NULL;
    for (int n = 0, k = 0; n < N; n++) {
        eg_wg_planes(planes, x + (ptrdiff_t)n * Cx * H * W, Cg_upd, H, W, pt, pl, Hp, Wp);
        for (int r0 = 0; r0 < TH; r0 += RT, k++) {
            const int r1 = r0 + RT < TH ? r0 + RT : TH;
            eg_wg_dy(U, dy + (ptrdiff_t)n * M * OH * OW, M_upd, OH, OW, r0, r1, TW, ts);
            eg_wg_input(V, planes, Cg_upd, Hp, Wp, r0, r1, TW, ts);
            eg_wg_gemm(out, U, V, z, M_upd, Cg_upd, (r1 - r0) * TW, ts, k == 0, k == chunks - 1, ldw,
                       alpha, acc, mom);
        }
    }
}

void conv2d_f32_bw_weight_winograd(float *restrict dwt, const float *restrict dy,
                                   const float *restrict x, int N, int C, int H, int W, int M,
                                   int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                                   int dil_h, int dil_w, int G, int M_upd, int Cg_upd, int Cx,
                                   float *restrict scratch)
{
    (void)C;
    if (!eg_wg_applies(KH, KW, sh, sw, pt, pl, dil_h, dil_w, G))
        return;
    eg_wg(dwt, dy, x, N, H, W, M, OH, OW, pt, pl, M_upd, Cg_upd, Cx, (ptrdiff_t)Cg_upd * 9, 1.0f,
          0, NULL, scratch);
}

void conv2d_f32_bw_weight_sgd_winograd(float *restrict w, const float *restrict dy,
                                       const float *restrict x, int N, int C, int H, int W, int M,
                                       int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                       int pl, int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                       int Cx, int w_stride, float lr, float *restrict scratch)
{
    (void)C;
    if (!eg_wg_applies(KH, KW, sh, sw, pt, pl, dil_h, dil_w, G))
        return;
    eg_wg(w, dy, x, N, H, W, M, OH, OW, pt, pl, M_upd, Cg_upd, Cx, w_stride, -lr, 1, NULL, scratch);
}

/* The momentum step where the output transform stores each dW element (v = mu*v + dW, then
 * w -= lr * v, as momentum_f32): no gradient buffer and no extra pass over v or w. */
void conv2d_f32_bw_weight_momentum_winograd(float *restrict w, float *restrict v,
                                            const float *restrict dy, const float *restrict x,
                                            int N, int C, int H, int W, int M, int OH, int OW,
                                            int KH, int KW, int sh, int sw, int pt, int pl,
                                            int dil_h, int dil_w, int G, int M_upd, int Cg_upd,
                                            int Cx, int w_stride, float lr, float mu,
                                            float *restrict scratch)
{
    (void)C;
    if (!eg_wg_applies(KH, KW, sh, sw, pt, pl, dil_h, dil_w, G))
        return;
    const eg_wg_mom mom = {w, w_stride, lr, mu};
    eg_wg(v, dy, x, N, H, W, M, OH, OW, pt, pl, M_upd, Cg_upd, Cx, (ptrdiff_t)Cg_upd * 9, 1.0f, 1, &mom,
          scratch);
}
