/* eg_gemm_tiled.c — register-blocked fp32 GEMM (the engine behind the _tiled kernels).
 *
 * Dimension legend
 *   M, N    rows / columns of the output;  K  the contracted dimension
 *   MR, NR  the register tile: EG_MR rows x EG_NR columns of out held in vector accumulators
 *   KC      k block: one packed panel of b is KC x NR floats (16 KiB on the stack)
 *
 * Loop nest (BLIS-style, without packing a):
 *   for each k block of KC:
 *     for each panel of NR columns of b: copy b[k block, panel] into bp[KC][NR], zero padded
 *       for each block of MR rows: out[rows, panel] (+)= a[rows, k block] . bp     (eg_tile)
 * eg_tile keeps MR x NR sums in 2*MR vector registers; per k it loads one row of bp (two
 * 8-float vectors) and broadcasts MR scalars of a, so a may have any strides (transposed a
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

#define EG_MR 6
#define EG_NR 16
#define EG_KC 256

typedef float eg_v8 __attribute__((vector_size(32)));
/* the same vector, loadable from any float address */
typedef float eg_v8u __attribute__((vector_size(32), aligned(4), may_alias));

/* macros, not functions: a function passing vectors by value warns (-Wpsabi) without AVX */
#define eg_ld8(p) (*(const eg_v8u *)(p))
#define eg_st8(p, v) (*(eg_v8u *)(p) = (v))
#define eg_splat8(s) ((eg_v8){(s), (s), (s), (s), (s), (s), (s), (s)})

/* out[mr, nr] (+)= bias + a[mr, kc] . bp[kc, NR]; bp rows are bp_rs apart, mr <= MR; out
 * element (i, j) at out[i*ldc + j*ldn].
 * Always inlined with a constant mr so the accumulator arrays live in registers. */
static inline __attribute__((always_inline)) void
eg_tile(const int mr, float *restrict out, ptrdiff_t ldc, ptrdiff_t ldn, int nr,
        const float *restrict a,
        ptrdiff_t a_rs, ptrdiff_t a_cs, const float *restrict bp, ptrdiff_t bp_rs, int kc,
        const float *restrict bias, int accumulate)
{
    eg_v8 c0[EG_MR], c1[EG_MR];
    for (int i = 0; i < mr; i++) {
        const float init = !accumulate && bias ? bias[i] : 0.0f;
        c0[i] = eg_splat8(init);
        c1[i] = c0[i];
    }
    for (int k = 0; k < kc; k++) {
        const eg_v8 b0 = eg_ld8(bp + k * bp_rs), b1 = eg_ld8(bp + k * bp_rs + 8);
        const float *ak = a + k * a_cs;
        for (int i = 0; i < mr; i++) {
            const float as = ak[i * a_rs];
            const eg_v8 av = eg_splat8(as);
            c0[i] += av * b0;
            c1[i] += av * b1;
        }
    }
    if (nr == EG_NR && ldn == 1) {
        for (int i = 0; i < mr; i++) {
            float *oi = out + i * ldc;
            if (accumulate) {
                c0[i] += eg_ld8(oi);
                c1[i] += eg_ld8(oi + 8);
            }
            eg_st8(oi, c0[i]);
            eg_st8(oi + 8, c1[i]);
        }
    } else {
        float t[EG_NR];
        for (int i = 0; i < mr; i++) {
            float *oi = out + i * ldc;
            eg_st8(t, c0[i]);
            eg_st8(t + 8, c1[i]);
            for (int j = 0; j < nr; j++)
                oi[j * ldn] = accumulate ? oi[j * ldn] + t[j] : t[j];
        }
    }
}

/* bp[kc][NR] = b[k*b_rs + j*b_cs] for j < nr, zero for nr <= j < NR. */
static void eg_pack_b(float *restrict bp, const float *restrict b, int kc, int nr, ptrdiff_t b_rs,
                      ptrdiff_t b_cs)
{
    if (b_cs == 1) {
        for (int k = 0; k < kc; k++) {
            const float *src = b + k * b_rs;
            float *dst = bp + k * EG_NR;
            for (int j = 0; j < nr; j++)
                dst[j] = src[j];
            for (int j = nr; j < EG_NR; j++)
                dst[j] = 0.0f;
        }
        return;
    }
    for (int j = 0; j < nr; j++) { /* b transposed: read down its contiguous direction */
        const float *src = b + j * b_cs;
        for (int k = 0; k < kc; k++)
            bp[k * EG_NR + j] = src[k * b_rs];
    }
    if (nr < EG_NR)
        for (int k = 0; k < kc; k++)
            for (int j = nr; j < EG_NR; j++)
                bp[k * EG_NR + j] = 0.0f;
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
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    out[(ptrdiff_t)m * ldc + (ptrdiff_t)n * ldn] = bias ? bias[m] : 0.0f;
        return;
    }
    float bp[EG_KC * EG_NR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < K; k0 += EG_KC) {
        const int kc = K - k0 < EG_KC ? K - k0 : EG_KC;
        const int acc = accumulate || k0 > 0;
        const float *ak = a + (ptrdiff_t)k0 * a_cs;
        for (int n0 = 0; n0 < N; n0 += EG_NR) {
            const int nr = N - n0 < EG_NR ? N - n0 : EG_NR;
            const float *bk = b + (ptrdiff_t)k0 * b_rs + (ptrdiff_t)n0 * b_cs;
            const float *panel = bp;
            ptrdiff_t prs = EG_NR;
            if (b_cs == 1 && nr == EG_NR) {
                panel = bk;
                prs = b_rs;
            } else {
                eg_pack_b(bp, bk, kc, nr, b_rs, b_cs);
            }
            for (int m0 = 0; m0 < M; m0 += EG_MR) {
                float *o = out + (ptrdiff_t)m0 * ldc + (ptrdiff_t)n0 * ldn;
                const float *am = ak + (ptrdiff_t)m0 * a_rs;
                const float *bm = bias ? bias + m0 : NULL;
                switch (M - m0 < EG_MR ? M - m0 : EG_MR) {
                case 6: eg_tile(6, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                case 5: eg_tile(5, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                case 4: eg_tile(4, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                case 3: eg_tile(3, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                case 2: eg_tile(2, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                case 1: eg_tile(1, o, ldc, ldn, nr, am, a_rs, a_cs, panel, prs, kc, bm, acc); break;
                }
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
