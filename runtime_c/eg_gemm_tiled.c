/* eg_gemm_tiled.c — register-blocked fp32 GEMM (the engine behind the _tiled kernels).
 *
 * Dimension legend
 *   M, N    rows / columns of the output;  K  the contracted dimension
 *   MR, NR  the register tile: MR rows x NR = 2*VW columns of out in vector accumulators
 *           (VW = 16 floats with AVX-512: 8 x 32, and 12 x 16 for panels <= 16 columns;
 *            VW = 8 elsewhere: 6 x 16, the build every other ISA gets, e.g. aarch64)
 *   KC      k block: one packed panel of b is KC x NR floats (16 KiB on the stack)
 *
 * Loop nest (BLIS-style, without packing a):
 *   for each k block of KC:
 *     for each panel of NR columns of b: copy b[k block, panel] into bp[KC][NR], zero padded
 *       for each block of MR rows: out[rows, panel] (+)= a[rows, k block] . bp     (eg_tile)
 * eg_tile keeps MR x NR sums in vector registers; per k it loads one row of bp (one or two
 * vectors) and broadcasts MR scalars of a, so a may have any strides (transposed a
 * costs nothing) and only b may need packing: b is read in place when it is contiguous along
 * n and the panel is full (measured: packing a panel that is then used by a few row blocks
 * costs more than it saves, even for rows 4 KiB apart); packed when transposed or at the
 * ragged right edge.
 *
 * Vectors are GCC vector extensions (gcc, clang; x86, aarch64, riscv lower them to whatever
 * the ISA has, or to scalars). GCC with -std=c99 does not contract a*b+c into an FMA
 * (-ffp-contract=off is the ISO default); this file opts in, which halves the arithmetic.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <stddef.h>

#include "eg_gemm_tiled.h"

/* Register tile per ISA: EG_VW floats per vector; the main tile is EG_MR2 rows x 2 vectors,
 * narrow panels (<= EG_VW columns left) use EG_MR1 rows x 1 vector (AVX-512 only: with 8-wide
 * vectors the two-vector tile is kept for every panel, as before). */
#if defined(__AVX512F__)
#define EG_VW 16 /* zmm: 32 registers; 8 x 2 tile = 16 accumulators */
#define EG_MR2 8
#define EG_MR1 12
#define EG_KC 128 /* packed panel KC x 32 floats: 16 KiB */
#else
#define EG_VW 8 /* ymm / 2 x NEON q / scalars: 6 x 2 tile = 12 accumulators */
#define EG_MR2 6
#define EG_MR1 0
#define EG_KC 256 /* packed panel KC x 16 floats: 16 KiB */
#endif
#define EG_NR (2 * EG_VW)
#ifndef EG_SWAP_N /* gemm_f32_tiled_taps computes out^T for N <= EG_SWAP_N columns, M >= EG_SWAP_M rows */
#define EG_SWAP_N 12
#endif
#ifndef EG_SWAP_M
#define EG_SWAP_M 32
#endif
#ifndef EG_KCA
#define EG_KCA 4096 /* k block of gemm_f32_tiled_ataps when b needs no packing */
#endif

typedef float eg_vf __attribute__((vector_size(4 * EG_VW)));
/* the same vector, loadable from any float address */
typedef float eg_vfu __attribute__((vector_size(4 * EG_VW), aligned(4), may_alias));

/* macros, not functions: a function passing vectors by value warns (-Wpsabi) without AVX */
#define eg_ld(p) (*(const eg_vfu *)(p))
#define eg_st(p, v) (*(eg_vfu *)(p) = (v))
#define eg_splat(s) ((float)(s) - (eg_vf){0}) /* x - 0 == x for every x (x + 0 is not: -0) */

/* out[mr, nr] (+)= bias + alpha * a[mr, kc] . bp[kc, nv*VW]; row k of bp at bp + boff[k] (boff not
 * NULL: an implicit GEMM's taps) or bp + k*bp_rs (boff NULL); row i of a at a + aoff[i] with
 * unit column stride (aoff not NULL: the patch rows of a weight gradient) or a + i*a_rs, mr <= MR,
 * nr <= nv*VW; out element (i, j) at out[i*ldc + j*ldn].
 * Always inlined with constant mr and nv so the accumulator arrays live in registers. */
static inline __attribute__((always_inline)) void
eg_tile(const int mr, const int nv, float *restrict out, ptrdiff_t ldc, ptrdiff_t ldn, int nr,
        const float *restrict a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float *restrict bp,
        ptrdiff_t bp_rs, const int *restrict boff, const int *restrict aoff, int kc,
        const float *restrict bias, int accumulate, const float alpha)
{
    eg_vf c[12][2];
    const float *ar[12]; /* aoff: row i of a at a + aoff[i] (a_cs 1) */
    if (aoff)
        for (int i = 0; i < mr; i++)
            ar[i] = a + aoff[i];
    for (int i = 0; i < mr; i++) {
        const float init = !accumulate && bias ? bias[i] : 0.0f;
        for (int v = 0; v < nv; v++)
            c[i][v] = eg_splat(init);
    }
    for (int k = 0; k < kc; k++) {
        eg_vf b[2];
        const float *bk = boff ? bp + boff[k] : bp + k * bp_rs;
        for (int v = 0; v < nv; v++)
            b[v] = eg_ld(bk + v * EG_VW);
        const float *ak = a + k * a_cs;
        for (int i = 0; i < mr; i++) {
            const eg_vf av = eg_splat(aoff ? ar[i][k] : ak[i * a_rs]);
            for (int v = 0; v < nv; v++)
                c[i][v] += av * b[v];
        }
    }
    if (alpha != 1.0f)
        for (int i = 0; i < mr; i++)
            for (int v = 0; v < nv; v++)
                c[i][v] *= eg_splat(alpha);
    if (nr == nv * EG_VW && ldn == 1) {
        for (int i = 0; i < mr; i++) {
            float *oi = out + i * ldc;
            for (int v = 0; v < nv; v++) {
                if (accumulate)
                    c[i][v] += eg_ld(oi + v * EG_VW);
                eg_st(oi + v * EG_VW, c[i][v]);
            }
        }
    } else {
        float t[EG_NR];
        for (int i = 0; i < mr; i++) {
            float *oi = out + i * ldc;
            for (int v = 0; v < nv; v++)
                eg_st(t + v * EG_VW, c[i][v]);
            for (int j = 0; j < nr; j++)
                oi[j * ldn] = accumulate ? oi[j * ldn] + t[j] : t[j];
        }
    }
}

/* bp[kc][width] = b[row k + j*b_cs] for j < nr, zero for nr <= j < width; row k at boff[k]
 * (boff not NULL) or k*b_rs. */
static void eg_pack_b(float *restrict bp, const float *restrict b, int kc, int nr, int width,
                      const int *restrict boff, ptrdiff_t b_rs, ptrdiff_t b_cs)
{
    if (b_cs == 1) {
        for (int k = 0; k < kc; k++) {
            const float *src = b + (boff ? boff[k] : k * b_rs);
            float *dst = bp + k * width;
            for (int j = 0; j < nr; j++)
                dst[j] = src[j];
            for (int j = nr; j < width; j++)
                dst[j] = 0.0f;
        }
        return;
    }
    for (int j = 0; j < nr; j++) { /* b transposed: read down its contiguous direction */
        const float *src = b + j * b_cs;
        if (boff)
            for (int k = 0; k < kc; k++)
                bp[k * width + j] = src[boff[k]];
        else
            for (int k = 0; k < kc; k++)
                bp[k * width + j] = src[k * b_rs];
    }
    if (nr < width)
        for (int k = 0; k < kc; k++)
            for (int j = nr; j < width; j++)
                bp[k * width + j] = 0.0f;
}

/* One panel of nv vectors: every block of rows, constant tile sizes for the compiler. */
#define EG_TILE_CASE(R, NV)                                                                    \
    case R:                                                                                    \
        eg_tile(R, NV, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, poff, NULL, kc, bm, acc, alpha);\
        break
#define EG_TILE_CASE_A(R, NV)                                                                  \
    case R:                                                                                    \
        eg_tile(R, NV, o, ldc, ldn, nr, a, 0, 1, panel, prs, NULL, ao, kc, NULL, acc, alpha);  \
        break

static void eg_panel2(float *restrict out, const float *restrict ak, const float *restrict panel,
                      ptrdiff_t prs, const int *restrict poff, const float *restrict bias,
                      int M, int nr, int kc,
                      ptrdiff_t ldc, ptrdiff_t ldn, ptrdiff_t a_rs, ptrdiff_t a_cs, int acc,
                      float alpha)
{
    for (int m0 = 0, mr = 0; m0 < M; m0 += mr) {
        float *o = out + (ptrdiff_t)m0 * ldc;
        const float *am = ak + (ptrdiff_t)m0 * a_rs;
        const float *bm = bias ? bias + m0 : NULL;
        mr = M - m0 < EG_MR2 ? M - m0 : EG_MR2;
#if EG_MR2 >= 8 /* 9 or 10 rows left: one tile of 20 accumulators, not a second pass over the panel for 1 or 2 */
        if (M - m0 <= EG_MR2 + 2)
            mr = M - m0;
#endif
        switch (mr) {
#if EG_MR2 >= 8
        EG_TILE_CASE(10, 2);
        EG_TILE_CASE(9, 2);
        EG_TILE_CASE(8, 2);
        EG_TILE_CASE(7, 2);
#endif
        EG_TILE_CASE(6, 2);
        EG_TILE_CASE(5, 2);
        EG_TILE_CASE(4, 2);
        EG_TILE_CASE(3, 2);
        EG_TILE_CASE(2, 2);
        EG_TILE_CASE(1, 2);
        }
    }
}

#if EG_MR1 > 0
static void eg_panel1(float *restrict out, const float *restrict ak, const float *restrict panel,
                      ptrdiff_t prs, const int *restrict poff, const float *restrict bias,
                      int M, int nr, int kc,
                      ptrdiff_t ldc, ptrdiff_t ldn, ptrdiff_t a_rs, ptrdiff_t a_cs, int acc,
                      float alpha)
{
    for (int m0 = 0; m0 < M; m0 += EG_MR1) {
        float *o = out + (ptrdiff_t)m0 * ldc;
        const float *am = ak + (ptrdiff_t)m0 * a_rs;
        const float *bm = bias ? bias + m0 : NULL;
        switch (M - m0 < EG_MR1 ? M - m0 : EG_MR1) {
        EG_TILE_CASE(12, 1);
        EG_TILE_CASE(11, 1);
        EG_TILE_CASE(10, 1);
        EG_TILE_CASE(9, 1);
        EG_TILE_CASE(8, 1);
        EG_TILE_CASE(7, 1);
        EG_TILE_CASE(6, 1);
        EG_TILE_CASE(5, 1);
        EG_TILE_CASE(4, 1);
        EG_TILE_CASE(3, 1);
        EG_TILE_CASE(2, 1);
        EG_TILE_CASE(1, 1);
        }
    }
}
#endif

/* The panel loops over rows of a at tap offsets (gemm_f32_tiled_ataps): row m of the k block at
 * a + (m / T)*a_rs + tap[m % T] + k0. */
static inline __attribute__((always_inline)) void
eg_panel_a(const int nv, float *restrict out, const float *restrict a,
                       const float *restrict panel, ptrdiff_t prs, int M, int nr, int kc,
                       ptrdiff_t ldc, ptrdiff_t ldn, ptrdiff_t a_rs, int T,
                       const int *restrict tap, int acc, float alpha)
{
    const int MR = nv == 1 && EG_MR1 > 0 ? EG_MR1 : EG_MR2;
    for (int m0 = 0, q = 0, t = 0; m0 < M; m0 += MR) {
        int ao[12];
        const int mr = M - m0 < MR ? M - m0 : MR;
        for (int i = 0; i < mr; i++) {
            ao[i] = (int)(q * a_rs) + tap[t];
            if (++t == T) {
                t = 0;
                q++;
            }
        }
        float *o = out + (ptrdiff_t)m0 * ldc;
        if (nv == 2) {
            switch (mr) {
#if EG_MR2 >= 8
            EG_TILE_CASE_A(8, 2);
            EG_TILE_CASE_A(7, 2);
#endif
            EG_TILE_CASE_A(6, 2);
            EG_TILE_CASE_A(5, 2);
            EG_TILE_CASE_A(4, 2);
            EG_TILE_CASE_A(3, 2);
            EG_TILE_CASE_A(2, 2);
            EG_TILE_CASE_A(1, 2);
            }
        }
#if EG_MR1 > 0
        else {
            switch (mr) {
            EG_TILE_CASE_A(12, 1);
            EG_TILE_CASE_A(11, 1);
            EG_TILE_CASE_A(10, 1);
            EG_TILE_CASE_A(9, 1);
            EG_TILE_CASE_A(8, 1);
            EG_TILE_CASE_A(7, 1);
            EG_TILE_CASE_A(6, 1);
            EG_TILE_CASE_A(5, 1);
            EG_TILE_CASE_A(4, 1);
            EG_TILE_CASE_A(3, 1);
            EG_TILE_CASE_A(2, 1);
            EG_TILE_CASE_A(1, 1);
            }
        }
#endif
    }
}

void gemm_f32_tiled_ataps(float *restrict out, const float *restrict a, const float *restrict b,
                          int M, int N, int K, int ldc, int ldn, int a_rs, int T,
                          const int *restrict tap, int b_rs, float alpha, int accumulate)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    out[(ptrdiff_t)m * ldc + (ptrdiff_t)n * ldn] = 0.0f;
        return;
    }
    float bp[EG_KC * EG_NR] __attribute__((aligned(64)));
    /* out is usually written transposed (ldn > 1: scalar stores), once per k block: when every
     * panel of b is read in place, blocks of EG_KCA rows of b instead of EG_KC */
    const int KB = N % EG_VW == 0 ? EG_KCA : EG_KC;
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kc = K - k0 < KB ? K - k0 : KB;
        const int acc = accumulate || k0 > 0;
        for (int n0 = 0; n0 < N; n0 += EG_NR) {
            const int nr = N - n0 < EG_NR ? N - n0 : EG_NR;
            const int nv = EG_MR1 > 0 && nr <= EG_VW ? 1 : 2;
            const float *bn = b + n0 + (ptrdiff_t)k0 * b_rs;
            const float *panel = bp;
            ptrdiff_t prs = nv * EG_VW;
            if (nr == nv * EG_VW) {
                panel = bn;
                prs = b_rs;
            } else {
                eg_pack_b(bp, bn, kc, nr, nv * EG_VW, NULL, b_rs, 1);
            }
            float *o = out + (ptrdiff_t)n0 * ldn;
            if (nv == 1)
                eg_panel_a(1, o, a + k0, panel, prs, M, nr, kc, ldc, ldn, a_rs, T, tap, acc, alpha);
            else
                eg_panel_a(2, o, a + k0, panel, prs, M, nr, kc, ldc, ldn, a_rs, T, tap, acc, alpha);
        }
    }
}

void gemm_f32_tiled_strided(float *restrict out, const float *restrict a, const float *restrict b,
                            const float *restrict bias, int M, int N, int K, int ldc, int a_rs,
                            int a_cs, int b_rs, int b_cs, int accumulate)
{
    gemm_f32_tiled_strided_ld(out, a, b, bias, M, N, K, ldc, 1, a_rs, a_cs, b_rs, b_cs,
                              accumulate);
}

void gemm_f32_tiled_strided_ld(float *restrict out, const float *restrict a,
                               const float *restrict b, const float *restrict bias, int M, int N,
                               int K, int ldc, int ldn, int a_rs, int a_cs, int b_rs, int b_cs,
                               int accumulate)
{
    static const int tap0[1] = {0};
    gemm_f32_tiled_taps(out, a, b, bias, M, N, K, ldc, ldn, a_rs, a_cs, b_rs, b_cs, 1, tap0,
                        accumulate);
}

/* gemm_f32_tiled_taps with out (+)= alpha * the product (bias only when alpha == 1) */
static void eg_gemm_taps(float *restrict out, const float *restrict a, const float *restrict b,
                         const float *restrict bias, int M, int N, int K, int ldc, int ldn,
                         int a_rs, int a_cs, int b_rs, int b_cs, int T, const int *restrict tap,
                         int accumulate, float alpha)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    out[(ptrdiff_t)m * ldc + (ptrdiff_t)n * ldn] = bias ? bias[m] : 0.0f;
        return;
    }
    if (N <= EG_SWAP_N && M >= EG_SWAP_M && a_rs == 1 && !bias && T == 1 && tap[0] == 0) {
        /* a few columns (a pointwise input gradient on a 3x3 image: N = 9 pixels) and a stored
         * transposed (a_rs 1): out^T = b^T . a^T, whose b operand is a read in place and whose
         * register tiles run along M, not along the N columns that fill half a vector */
        eg_gemm_taps(out, b, a, NULL, N, M, K, ldn, ldc, b_cs, b_rs, a_cs, 1, 1, tap, accumulate, alpha);
        return;
    }
    float bp[EG_KC * EG_NR] __attribute__((aligned(64)));
    int koff[EG_KC]; /* T > 1: row k of the k block of b, from b + n0*b_cs */
    const int *boff = T > 1 || tap[0] != 0 ? koff : NULL;
    for (int k0 = 0; k0 < K; k0 += EG_KC) {
        const int kc = K - k0 < EG_KC ? K - k0 : EG_KC;
        const int acc = accumulate || k0 > 0;
        const float *ak = a + (ptrdiff_t)k0 * a_cs;
        if (boff)
            for (int k = 0, q = k0 / T, t = k0 % T; k < kc; k++) {
                koff[k] = q * b_rs + tap[t];
                if (++t == T) {
                    t = 0;
                    q++;
                }
            }
        for (int n0 = 0; n0 < N; n0 += EG_NR) {
            const int nr = N - n0 < EG_NR ? N - n0 : EG_NR;
            const int nv = EG_MR1 > 0 && nr <= EG_VW ? 1 : 2;
            const float *bn = b + (ptrdiff_t)n0 * b_cs + (boff ? 0 : (ptrdiff_t)k0 * b_rs);
            const float *panel = bp;
            ptrdiff_t prs = nv * EG_VW;
            const int *off = NULL;
            if (b_cs == 1 && nr == nv * EG_VW) {
                panel = bn;
                prs = b_rs;
                off = boff;
            } else {
                eg_pack_b(bp, bn, kc, nr, nv * EG_VW, boff, b_rs, b_cs);
            }
            float *o = out + (ptrdiff_t)n0 * ldn;
#if EG_MR1 > 0
            if (nv == 1) {
                eg_panel1(o, ak, panel, prs, off, bias, M, nr, kc, ldc, ldn, a_rs, a_cs, acc, alpha);
                continue;
            }
#endif
            eg_panel2(o, ak, panel, prs, off, bias, M, nr, kc, ldc, ldn, a_rs, a_cs, acc, alpha);
        }
    }
}

void gemm_f32_tiled_taps(float *restrict out, const float *restrict a, const float *restrict b,
                         const float *restrict bias, int M, int N, int K, int ldc, int ldn,
                         int a_rs, int a_cs, int b_rs, int b_cs, int T, const int *restrict tap,
                         int accumulate)
{
    eg_gemm_taps(out, a, b, bias, M, N, K, ldc, ldn, a_rs, a_cs, b_rs, b_cs, T, tap, accumulate, 1.0f);
}

void gemm_f32_tiled_strided_axpy(float *restrict out, const float *restrict a, const float *restrict b,
                                 int M, int N, int K, int ldc, int a_rs, int a_cs, int b_rs, int b_cs,
                                 float alpha)
{
    static const int tap0[1] = {0};
    if (K > 0)
        eg_gemm_taps(out, a, b, NULL, M, N, K, ldc, 1, a_rs, a_cs, b_rs, b_cs, 1, tap0, 1, alpha);
}

/* ---- both operands contiguous along k (gemm_f32_tiled_nt) --------------------------------
 * A pointwise weight gradient dW[M, C] = dy[M, P] . x[C, P]^T contracts over the pixels, the
 * contiguous direction of both operands: the engine above packs x transposed element by element
 * and, with C = 8 or 16 columns, fills half a register tile. Here each of NT_MR x NT_NR outputs
 * is a dot product in one vector accumulator along k (VW pixels per FMA). Per k block of EG_KCN,
 * the NT_NR rows of b (16 KiB) stay in L1 while the rows of a stream past once; the accumulators
 * go to a stack buffer between k blocks (a chunk of rows at a time) and are reduced across their
 * lanes once, at the end. Rows past M / N repeat the last one (computed, never stored). */
#if defined(EG_NT_MR)
#elif defined(__AVX512F__)
#define EG_NT_MR 2
#define EG_NT_NR 8
#else
#define EG_NT_MR 1
#define EG_NT_NR 6
#endif
#define EG_KCN 512
#define EG_NT_BUF 8192 /* floats of partial sums: (rows of a chunk) x (N rounded up) x VW */

static inline __attribute__((always_inline)) void
eg_tile_nt(float *restrict part, const float *const *ar, const float *const *br, int kc, int first)
{
    eg_vf c[EG_NT_MR][EG_NT_NR];
    for (int i = 0; i < EG_NT_MR; i++)
        for (int j = 0; j < EG_NT_NR; j++)
            c[i][j] = first ? eg_splat(0.0f) : (eg_vf)eg_ld(part + (i * EG_NT_NR + j) * EG_VW);
    for (int k = 0; k < kc; k += EG_VW) {
        eg_vf av[EG_NT_MR];
        for (int i = 0; i < EG_NT_MR; i++)
            av[i] = eg_ld(ar[i] + k);
        for (int j = 0; j < EG_NT_NR; j++) {
            eg_vf bv = eg_ld(br[j] + k);
#if defined(__GNUC__) && defined(__AVX__) /* the vector fits one register */
            __asm__("" : "+v"(bv)); /* one load per vector of b, not one folded into each FMA */
#endif
            for (int i = 0; i < EG_NT_MR; i++)
                c[i][j] += av[i] * bv;
        }
    }
    for (int i = 0; i < EG_NT_MR; i++)
        for (int j = 0; j < EG_NT_NR; j++)
            eg_st(part + (i * EG_NT_NR + j) * EG_VW, c[i][j]);
}

void gemm_f32_tiled_nt(float *restrict out, const float *restrict a, const float *restrict b, int M,
                       int N, int K, int ldc, int ldn, int a_rs, int b_rs, int accumulate)
{
    if (M <= 0 || N <= 0)
        return;
    float part[EG_NT_BUF] __attribute__((aligned(64)));
    const int Nt = (N + EG_NT_NR - 1) / EG_NT_NR, tile = EG_NT_MR * EG_NT_NR * EG_VW;
    int MC = EG_NT_BUF / (Nt * tile) * EG_NT_MR; /* rows of a per chunk */
    if (MC < EG_NT_MR) {                         /* N too large for the buffer: columns in parts */
        const int Nc = EG_NT_BUF / tile * EG_NT_NR;
        for (int n0 = 0; n0 < N; n0 += Nc)
            gemm_f32_tiled_nt(out + (ptrdiff_t)n0 * ldn, a, b + (ptrdiff_t)n0 * b_rs, M,
                              N - n0 < Nc ? N - n0 : Nc, K, ldc, ldn, a_rs, b_rs, accumulate);
        return;
    }
    const int Kv = K / EG_VW * EG_VW; /* vector part; the k tail is added per output */
    for (int m0c = 0; m0c < M; m0c += MC) {
        const int mc = M - m0c < MC ? M - m0c : MC;
        for (int k0 = 0; k0 < Kv; k0 += EG_KCN) {
            const int kc = Kv - k0 < EG_KCN ? Kv - k0 : EG_KCN;
            for (int n0 = 0, nt = 0; n0 < N; n0 += EG_NT_NR, nt++) {
                const float *br[EG_NT_NR];
                for (int j = 0; j < EG_NT_NR; j++)
                    br[j] = b + (ptrdiff_t)(n0 + j < N ? n0 + j : N - 1) * b_rs + k0;
                for (int i0 = 0; i0 < mc; i0 += EG_NT_MR) {
                    const float *ar[EG_NT_MR];
                    for (int i = 0; i < EG_NT_MR; i++)
                        ar[i] = a + (ptrdiff_t)(m0c + (i0 + i < mc ? i0 + i : mc - 1)) * a_rs + k0;
                    eg_tile_nt(part + ((ptrdiff_t)(i0 / EG_NT_MR) * Nt + nt) * tile, ar, br, kc, k0 == 0);
                }
            }
        }
        for (int i = 0; i < mc; i++) {
            const int m = m0c + i;
            for (int n = 0; n < N; n++) {
                float s = 0.0f;
                if (Kv > 0) { /* a tree over the lanes: dependent chains of log2(VW) adds */
                    float *v = part + ((ptrdiff_t)(i / EG_NT_MR) * Nt + n / EG_NT_NR) * tile +
                               ((i % EG_NT_MR) * EG_NT_NR + n % EG_NT_NR) * EG_VW;
                    for (int w = EG_VW / 2; w >= 1; w /= 2)
                        for (int l = 0; l < w; l++)
                            v[l] += v[l + w];
                    s = v[0];
                }
                const float *am = a + (ptrdiff_t)m * a_rs, *bn = b + (ptrdiff_t)n * b_rs;
                for (int k = Kv; k < K; k++)
                    s += am[k] * bn[k];
                float *o = out + (ptrdiff_t)m * ldc + (ptrdiff_t)n * ldn;
                *o = accumulate ? *o + s : s;
            }
        }
    }
}

void gemm_f32_tiled(float *restrict y, const float *restrict a, const float *restrict b,
                    const float *restrict c, int batch, int M, int N, int K, int transA,
                    int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const int am = transA ? 1 : K, ak = transA ? M : 1;
    const int bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    for (int i = 0; i < batch; i++) {
        float *yi = y + (ptrdiff_t)i * M * N;
        gemm_f32_tiled_strided(yi, a + (ptrdiff_t)i * a_bs, b + (ptrdiff_t)i * b_bs, NULL, M, N, K,
                               N, am, ak, bk, bn, 0);
        /* epilogue exactly as gemm_f32 */
        for (int m = 0; m < M; m++) {
            float *yrow = yi + (ptrdiff_t)m * N;
            if (use_c) {
                const float *crow = c + (ptrdiff_t)m * c_sm;
                for (int n = 0; n < N; n++)
                    yrow[n] = alpha * yrow[n] + beta * crow[(ptrdiff_t)n * c_sn];
            } else if (alpha != 1.0f) {
                for (int n = 0; n < N; n++)
                    yrow[n] *= alpha;
            }
        }
    }
}
