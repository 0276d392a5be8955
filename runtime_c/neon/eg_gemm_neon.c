/* eg_gemm_neon.c — fp32 GEMM for aarch64: an arm_neon.h micro-kernel, optionally threaded.
 *
 * Dimension legend
 *   M, N    rows / columns of the output;  K  the contracted dimension
 *   MR, NR  the register tile: 8 rows x 12 columns of out in 24 q registers (of 32)
 *   KC      k block;  MC  rows of a packed at once (a panel of MC x KC floats per thread)
 *
 * Loop nest (BLIS-style):
 *   for each k block of KC:
 *     for each block of MC rows: pack a[rows, k block] as [MR-row slices][k][MR] (m contiguous,
 *                                zero-padded to MR rows), once, reused by every column panel
 *       for each panel of NR columns: b[k block, panel] read in place when contiguous along n
 *                                and full, else packed into bp[KC][NR] (zero-padded)
 *         for each MR-row slice: out[rows, panel] (+)= ap . bp                     (eg_micro)
 * eg_micro, per k: three 4-float loads of the b row, two of the packed a column, and 24 fmla
 * by element (vfmaq_laneq_f32: no broadcasts). Every output element is the fma chain over k in
 * order within a k block, then added to out: the same arithmetic whichever tile, thread or
 * split computes it.
 *
 * Threads: a GEMM of at least EG_PAR_MIN_MACS multiply-adds is split into EG_NUM_THREADS
 * column ranges (whole NR panels), or row ranges (whole MR slices) when it has too few columns;
 * each thread packs into its own static panel (no malloc, nothing on the heap).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif

#include <arm_neon.h>
#include <stddef.h>

#include "eg_neon.h"
#include "eg_threads.h"

#define EG_MR 8
#define EG_NR 12
#define EG_KC 256
#define EG_MC 128
#define EG_PAR_MIN_MACS (1L << 17)

/* one packed panel of a per thread: MC x KC floats (128 KiB), in .bss */
static float eg_apack[EG_NUM_THREADS][EG_MC * EG_KC] __attribute__((aligned(64)));

#define EG_ROW(i, av, lane)                                        \
    do {                                                           \
        c##i##0 = vfmaq_laneq_f32(c##i##0, b0, av, lane);          \
        c##i##1 = vfmaq_laneq_f32(c##i##1, b1, av, lane);          \
        c##i##2 = vfmaq_laneq_f32(c##i##2, b2, av, lane);          \
    } while (0)

#define EG_INIT(i)                                                                      \
    float32x4_t c##i##0 = vdupq_n_f32(init_row(bias, accumulate, i, mr)), c##i##1 = c##i##0, \
                c##i##2 = c##i##0

#define EG_SAVE(i)                      \
    do {                                \
        vst1q_f32(t + i * EG_NR, c##i##0);     \
        vst1q_f32(t + i * EG_NR + 4, c##i##1); \
        vst1q_f32(t + i * EG_NR + 8, c##i##2); \
    } while (0)

static inline float init_row(const float *bias, int accumulate, int i, int mr)
{
    return !accumulate && bias && i < mr ? bias[i] : 0.0f;
}

/* out[mr, nr] (+)= bias + ap[kc][MR] . bp[kc][NR] (bp rows bp_rs apart); element (i, j) of out
 * at out[i*ldc + j*ldn]; rows mr.. and columns nr.. of the tile are computed and dropped. */
static void eg_micro(float *restrict out, ptrdiff_t ldc, ptrdiff_t ldn, int mr, int nr,
                     const float *restrict ap, const float *restrict bp, ptrdiff_t bp_rs, int kc,
                     const float *restrict bias, int accumulate)
{
    EG_INIT(0); EG_INIT(1); EG_INIT(2); EG_INIT(3);
    EG_INIT(4); EG_INIT(5); EG_INIT(6); EG_INIT(7);
    for (int k = 0; k < kc; k++) {
        const float *bk = bp + k * bp_rs;
        const float32x4_t b0 = vld1q_f32(bk), b1 = vld1q_f32(bk + 4), b2 = vld1q_f32(bk + 8);
        const float32x4_t a0 = vld1q_f32(ap + k * EG_MR), a1 = vld1q_f32(ap + k * EG_MR + 4);
        EG_ROW(0, a0, 0); EG_ROW(1, a0, 1); EG_ROW(2, a0, 2); EG_ROW(3, a0, 3);
        EG_ROW(4, a1, 0); EG_ROW(5, a1, 1); EG_ROW(6, a1, 2); EG_ROW(7, a1, 3);
    }
    float t[EG_MR * EG_NR];
    EG_SAVE(0); EG_SAVE(1); EG_SAVE(2); EG_SAVE(3);
    EG_SAVE(4); EG_SAVE(5); EG_SAVE(6); EG_SAVE(7);
    if (ldn == 1 && nr == EG_NR) {
        for (int i = 0; i < mr; i++) {
            float *oi = out + i * ldc;
            for (int j = 0; j < EG_NR; j += 4) {
                float32x4_t v = vld1q_f32(t + i * EG_NR + j);
                if (accumulate)
                    v = vaddq_f32(v, vld1q_f32(oi + j));
                vst1q_f32(oi + j, v);
            }
        }
        return;
    }
    for (int i = 0; i < mr; i++) {
        float *oi = out + i * ldc;
        for (int j = 0; j < nr; j++)
            oi[j * ldn] = accumulate ? oi[j * ldn] + t[i * EG_NR + j] : t[i * EG_NR + j];
    }
}

/* ap = a[m0.., k0..] for mc rows and kc columns as slices of MR rows: slice s holds
 * ap[s*kc*MR + k*MR + i] = a[(s*MR + i)*a_rs + k*a_cs], zero for rows past mc. */
static void eg_pack_a(float *restrict ap, const float *restrict a, int mc, int kc, ptrdiff_t a_rs,
                      ptrdiff_t a_cs)
{
    for (int s = 0; s * EG_MR < mc; s++) {
        float *d = ap + (ptrdiff_t)s * kc * EG_MR;
        const int rows = mc - s * EG_MR < EG_MR ? mc - s * EG_MR : EG_MR;
        const float *as = a + (ptrdiff_t)s * EG_MR * a_rs;
        if (a_cs == 1) { /* rows contiguous along k: read each row once */
            for (int i = 0; i < rows; i++)
                for (int k = 0; k < kc; k++)
                    d[k * EG_MR + i] = as[i * a_rs + k];
        } else {
            for (int k = 0; k < kc; k++)
                for (int i = 0; i < rows; i++)
                    d[k * EG_MR + i] = as[i * a_rs + k * a_cs];
        }
        for (int i = rows; i < EG_MR; i++)
            for (int k = 0; k < kc; k++)
                d[k * EG_MR + i] = 0.0f;
    }
}

/* bp[kc][NR] = b[k*b_rs + j*b_cs] for j < nr, zero for nr <= j < NR. */
static void eg_pack_b(float *restrict bp, const float *restrict b, int kc, int nr, ptrdiff_t b_rs,
                      ptrdiff_t b_cs)
{
    for (int k = 0; k < kc; k++) {
        float *d = bp + k * EG_NR;
        for (int j = 0; j < nr; j++)
            d[j] = b[k * b_rs + j * b_cs];
        for (int j = nr; j < EG_NR; j++)
            d[j] = 0.0f;
    }
}

/* One output row (M == 1, a linear layer at batch 1): out[n*ldn] (+)= bias[0] +
 * sum_k a[k*a_cs] * b[k*b_rs + n*b_cs]. An 8 x 12 tile would leave 7 of its 8 rows idle, so
 * vectorize over n (b rows contiguous) or over k (b columns contiguous: dot products). Each
 * element's arithmetic does not depend on which n range a call covers (thread splits). */
static void eg_gemv(float *restrict out, const float *restrict a, const float *restrict b,
                    const float *restrict bias, int N, int K, ptrdiff_t ldn, ptrdiff_t a_cs,
                    ptrdiff_t b_rs, ptrdiff_t b_cs, int accumulate)
{
    const float init = !accumulate && bias ? bias[0] : 0.0f;
    int n = 0;
    if (b_cs == 1) { /* 16 columns at a time: the fma chain over k of each column, in order */
        for (; n + 16 <= N; n += 16) {
            float32x4_t c0 = vdupq_n_f32(init), c1 = c0, c2 = c0, c3 = c0;
            for (int k = 0; k < K; k++) {
                const float *bk = b + k * b_rs + n;
                const float32x4_t av = vdupq_n_f32(a[k * a_cs]);
                c0 = vfmaq_f32(c0, vld1q_f32(bk), av);
                c1 = vfmaq_f32(c1, vld1q_f32(bk + 4), av);
                c2 = vfmaq_f32(c2, vld1q_f32(bk + 8), av);
                c3 = vfmaq_f32(c3, vld1q_f32(bk + 12), av);
            }
            float t[16];
            vst1q_f32(t, c0);
            vst1q_f32(t + 4, c1);
            vst1q_f32(t + 8, c2);
            vst1q_f32(t + 12, c3);
            for (int j = 0; j < 16; j++)
                out[(n + j) * ldn] = accumulate ? out[(n + j) * ldn] + t[j] : t[j];
        }
        for (; n < N; n++) { /* the same fused chain, one lane */
            float acc = init;
            for (int k = 0; k < K; k++)
                acc = __builtin_fmaf(a[k * a_cs], b[k * b_rs + n], acc);
            out[n * ldn] = accumulate ? out[n * ldn] + acc : acc;
        }
        return;
    }
    for (; n < N; n++) { /* column n of b contiguous along k when b_rs == 1: a dot product */
        const float *bn = b + n * b_cs;
        float acc;
        int k = 0;
        if (b_rs == 1 && a_cs == 1 && K >= 16) {
            float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
            for (; k + 16 <= K; k += 16) {
                s0 = vfmaq_f32(s0, vld1q_f32(a + k), vld1q_f32(bn + k));
                s1 = vfmaq_f32(s1, vld1q_f32(a + k + 4), vld1q_f32(bn + k + 4));
                s2 = vfmaq_f32(s2, vld1q_f32(a + k + 8), vld1q_f32(bn + k + 8));
                s3 = vfmaq_f32(s3, vld1q_f32(a + k + 12), vld1q_f32(bn + k + 12));
            }
            acc = init + vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
        } else {
            acc = init;
        }
        for (; k < K; k++)
            acc = __builtin_fmaf(a[k * a_cs], bn[k * b_rs], acc);
        out[n * ldn] = accumulate ? out[n * ldn] + acc : acc;
    }
}

static void eg_engine(float *restrict out, const float *restrict a, const float *restrict b,
                      const float *restrict bias, int M, int N, int K, ptrdiff_t ldc, ptrdiff_t ldn,
                      ptrdiff_t a_rs, ptrdiff_t a_cs, ptrdiff_t b_rs, ptrdiff_t b_cs, int accumulate,
                      float *restrict ap)
{
    if (M <= 0 || N <= 0)
        return;
    if (K <= 0) {
        if (!accumulate)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++)
                    out[m * ldc + n * ldn] = bias ? bias[m] : 0.0f;
        return;
    }
    if (M == 1) {
        eg_gemv(out, a, b, bias, N, K, ldn, a_cs, b_rs, b_cs, accumulate);
        return;
    }
    float bp[EG_KC * EG_NR] __attribute__((aligned(64)));
    for (int k0 = 0; k0 < K; k0 += EG_KC) {
        const int kc = K - k0 < EG_KC ? K - k0 : EG_KC;
        const int acc = accumulate || k0 > 0;
        for (int m0 = 0; m0 < M; m0 += EG_MC) {
            const int mc = M - m0 < EG_MC ? M - m0 : EG_MC;
            eg_pack_a(ap, a + m0 * a_rs + k0 * a_cs, mc, kc, a_rs, a_cs);
            for (int n0 = 0; n0 < N; n0 += EG_NR) {
                const int nr = N - n0 < EG_NR ? N - n0 : EG_NR;
                const float *bk = b + k0 * b_rs + n0 * b_cs;
                const float *panel = bp;
                ptrdiff_t prs = EG_NR;
                if (b_cs == 1 && nr == EG_NR) {
                    panel = bk;
                    prs = b_rs;
                } else {
                    eg_pack_b(bp, bk, kc, nr, b_rs, b_cs);
                }
                for (int s = 0; s * EG_MR < mc; s++) {
                    const int r0 = m0 + s * EG_MR;
                    const int mr = M - r0 < EG_MR ? M - r0 : EG_MR;
                    eg_micro(out + r0 * ldc + n0 * ldn, ldc, ldn, mr, nr,
                             ap + (ptrdiff_t)s * kc * EG_MR, panel, prs, kc,
                             bias ? bias + r0 : NULL, acc);
                }
            }
        }
    }
}

typedef struct {
    float *out;
    const float *a, *b, *bias;
    int M, N, K, split_n, chunk, accumulate;
    ptrdiff_t ldc, ldn, a_rs, a_cs, b_rs, b_cs;
} eg_gemm_job;

static void eg_gemm_task(void *ctx, int t)
{
    const eg_gemm_job *j = ctx;
    const int total = j->split_n ? j->N : j->M;
    const int lo = t * j->chunk, hi = lo + j->chunk < total ? lo + j->chunk : total;
    if (lo >= hi)
        return;
    if (j->split_n)
        eg_engine(j->out + lo * j->ldn, j->a, j->b + lo * j->b_cs, j->bias, j->M, hi - lo, j->K,
                  j->ldc, j->ldn, j->a_rs, j->a_cs, j->b_rs, j->b_cs, j->accumulate, eg_apack[t]);
    else
        eg_engine(j->out + lo * j->ldc, j->a + lo * j->a_rs, j->b, j->bias ? j->bias + lo : NULL,
                  hi - lo, j->N, j->K, j->ldc, j->ldn, j->a_rs, j->a_cs, j->b_rs, j->b_cs,
                  j->accumulate, eg_apack[t]);
}

/* ceil(total / parts) rounded up to a multiple of unit */
static int eg_chunk(int total, int parts, int unit)
{
    const int units = (total + unit - 1) / unit;
    return (units + parts - 1) / parts * unit;
}

void gemm_f32_neon_strided_ld(float *restrict out, const float *restrict a,
                              const float *restrict b, const float *restrict bias, int M, int N,
                              int K, int ldc, int ldn, int a_rs, int a_cs, int b_rs, int b_cs,
                              int accumulate)
{
    if (N == 1 && M > 1 && bias == NULL) { /* one output column: the row of out^T = b^T a^T */
        gemm_f32_neon_strided_ld(out, b, a, NULL, 1, M, K, 1, ldc, b_cs, b_rs, a_cs, a_rs, accumulate);
        return;
    }
    if (ldc == 1 && ldn != 1 && bias == NULL) {
        /* a transposed result (out column-major): compute out^T = b^T a^T instead, whose rows
         * are contiguous, so the tiles store whole vectors; every element keeps its sum order */
        gemm_f32_neon_strided_ld(out, b, a, NULL, N, M, K, ldn, 1, b_cs, b_rs, a_cs, a_rs, accumulate);
        return;
    }
    eg_gemm_job j = {out, a, b, bias, M, N, K, 1, 0, accumulate, ldc, ldn, a_rs, a_cs, b_rs, b_cs};
    int tasks = 1;
    if (EG_NUM_THREADS > 1 && (long)M * N * K >= EG_PAR_MIN_MACS) {
        if (N >= 2 * EG_NR) { /* by columns: whole panels */
            j.chunk = eg_chunk(N, EG_NUM_THREADS, EG_NR);
            tasks = (N + j.chunk - 1) / j.chunk;
        } else if (M >= 2 * EG_MR) { /* by rows: whole register tiles */
            j.split_n = 0;
            j.chunk = eg_chunk(M, EG_NUM_THREADS, EG_MR);
            tasks = (M + j.chunk - 1) / j.chunk;
        }
    }
    if (tasks <= 1) {
        eg_engine(out, a, b, bias, M, N, K, ldc, ldn, a_rs, a_cs, b_rs, b_cs, accumulate, eg_apack[0]);
        return;
    }
    eg_parallel_run(tasks, eg_gemm_task, &j);
}

void gemm_f32_neon_strided(float *restrict out, const float *restrict a, const float *restrict b,
                           const float *restrict bias, int M, int N, int K, int ldc, int a_rs,
                           int a_cs, int b_rs, int b_cs, int accumulate)
{
    gemm_f32_neon_strided_ld(out, a, b, bias, M, N, K, ldc, 1, a_rs, a_cs, b_rs, b_cs, accumulate);
}

void gemm_f32_neon(float *restrict y, const float *restrict a, const float *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                   float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const int am = transA ? 1 : K, ak = transA ? M : 1;
    const int bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    for (int i = 0; i < batch; i++) {
        float *yi = y + (ptrdiff_t)i * M * N;
        gemm_f32_neon_strided(yi, a + (ptrdiff_t)i * a_bs, b + (ptrdiff_t)i * b_bs, NULL, M, N, K,
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
