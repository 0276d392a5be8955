/* eg_gemv.c — matrix-vector and outer products for batch-1 linear layers (see eg_gemv.h).
 *
 * Dimension legend (as eg_gemm.c)
 *   M, N    rows / columns of the output y;  K  the contracted dimension
 *   op(a)   M x K, element (m, k) at a[m*am + k*ak];  op(b) K x N, element (k, n) at b[k*bk + n*bn]
 *
 * Three loop shapes, one per memory layout, each streaming the matrix once:
 *   dot   op(b) stored N x K (transB, a Gemm forward): y[n] = a_row . b[n, :], 4 rows of b at a
 *         time against one load of a, 8 lanes x 2 partial sums per row, then the lanes added.
 *   axpy  op(b) stored K x N (an input gradient dy . W): y[n0..] = sum_k a[k] * b[k, n0..], 32
 *         columns of y in registers while k runs.
 *   outer K == 1 (a weight gradient dy^T x): y[m, n] = a[m] * b[n], row by row.
 * The epilogue is gemm_f32's: y = alpha * acc + beta * C (C skipped when beta == 0 or NULL).
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast") /* see eg_gemm_tiled.c */
#endif

#include <stddef.h>

#include "eg_gemv.h"

typedef float eg_gv8 __attribute__((vector_size(32)));
typedef float eg_gv8u __attribute__((vector_size(32), aligned(4), may_alias));

#define eg_gld8(p) (*(const eg_gv8u *)(p))
#define eg_gst8(p, v) (*(eg_gv8u *)(p) = (v))
#define eg_gsplat8(s) ((eg_gv8){(s), (s), (s), (s), (s), (s), (s), (s)})
#define eg_gsum8(v) ((((v)[0] + (v)[4]) + ((v)[1] + (v)[5])) + (((v)[2] + (v)[6]) + ((v)[3] + (v)[7])))

/* y[n] = sum_k x[k] * b[n*ldb + k] for n < N (x and every row of b contiguous over k). */
static void eg_gemv_dot(float *restrict y, const float *restrict x, const float *restrict b,
                        int N, int K, ptrdiff_t ldb)
{
    const int K8 = K & ~7, K16 = K & ~15;
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *b0 = b + n * ldb, *b1 = b0 + ldb, *b2 = b1 + ldb, *b3 = b2 + ldb;
        eg_gv8 s0 = eg_gsplat8(0.0f), s1 = s0, s2 = s0, s3 = s0, t0 = s0, t1 = s0, t2 = s0, t3 = s0;
        int k = 0;
        for (; k < K16; k += 16) {
            const eg_gv8 xa = eg_gld8(x + k), xb = eg_gld8(x + k + 8);
            s0 += xa * eg_gld8(b0 + k);
            s1 += xa * eg_gld8(b1 + k);
            s2 += xa * eg_gld8(b2 + k);
            s3 += xa * eg_gld8(b3 + k);
            t0 += xb * eg_gld8(b0 + k + 8);
            t1 += xb * eg_gld8(b1 + k + 8);
            t2 += xb * eg_gld8(b2 + k + 8);
            t3 += xb * eg_gld8(b3 + k + 8);
        }
        for (; k < K8; k += 8) {
            const eg_gv8 xa = eg_gld8(x + k);
            s0 += xa * eg_gld8(b0 + k);
            s1 += xa * eg_gld8(b1 + k);
            s2 += xa * eg_gld8(b2 + k);
            s3 += xa * eg_gld8(b3 + k);
        }
        s0 += t0;
        s1 += t1;
        s2 += t2;
        s3 += t3;
        float r0 = eg_gsum8(s0), r1 = eg_gsum8(s1), r2 = eg_gsum8(s2), r3 = eg_gsum8(s3);
        for (; k < K; k++) {
            r0 += x[k] * b0[k];
            r1 += x[k] * b1[k];
            r2 += x[k] * b2[k];
            r3 += x[k] * b3[k];
        }
        y[n] = r0;
        y[n + 1] = r1;
        y[n + 2] = r2;
        y[n + 3] = r3;
    }
    for (; n < N; n++) {
        const float *b0 = b + n * ldb;
        eg_gv8 s0 = eg_gsplat8(0.0f);
        int k = 0;
        for (; k < K8; k += 8)
            s0 += eg_gld8(x + k) * eg_gld8(b0 + k);
        float r0 = eg_gsum8(s0);
        for (; k < K; k++)
            r0 += x[k] * b0[k];
        y[n] = r0;
    }
}

/* y[n] = sum_k x[k*xs] * b[k*ldb + n] for n < N (rows of b contiguous over n). */
static void eg_gemv_axpy(float *restrict y, const float *restrict x, ptrdiff_t xs,
                         const float *restrict b, int N, int K, ptrdiff_t ldb)
{
    int n = 0;
    for (; n + 32 <= N; n += 32) {
        eg_gv8 s0 = eg_gsplat8(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (int k = 0; k < K; k++) {
            const eg_gv8 xv = eg_gsplat8(x[k * xs]);
            const float *br = b + k * ldb + n;
            s0 += xv * eg_gld8(br);
            s1 += xv * eg_gld8(br + 8);
            s2 += xv * eg_gld8(br + 16);
            s3 += xv * eg_gld8(br + 24);
        }
        eg_gst8(y + n, s0);
        eg_gst8(y + n + 8, s1);
        eg_gst8(y + n + 16, s2);
        eg_gst8(y + n + 24, s3);
    }
    for (; n + 8 <= N; n += 8) {
        eg_gv8 s0 = eg_gsplat8(0.0f);
        for (int k = 0; k < K; k++)
            s0 += eg_gsplat8(x[k * xs]) * eg_gld8(b + k * ldb + n);
        eg_gst8(y + n, s0);
    }
    for (; n < N; n++) {
        float s = 0.0f;
        for (int k = 0; k < K; k++)
            s += x[k * xs] * b[k * ldb + n];
        y[n] = s;
    }
}

/* One output row: y[n] = sum_k arow[k*ak] * op(b)[k, n]. */
static void eg_gemv_row(float *restrict y, const float *restrict arow, ptrdiff_t ak,
                        const float *restrict b, int N, int K, int transB)
{
    if (transB && ak == 1) {
        eg_gemv_dot(y, arow, b, N, K, K);
    } else if (transB) { /* a strided: gather it once per call would need scratch; plain loop */
        for (int n = 0; n < N; n++) {
            const float *bn = b + (ptrdiff_t)n * K;
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += arow[k * ak] * bn[k];
            y[n] = s;
        }
    } else {
        eg_gemv_axpy(y, arow, ak, b, N, K, N);
    }
}

/* The fused epilogues (passes/fuse_eltwise.py), after alpha/beta, on one output row:
 * act 1 ReLU, 2 ReLU6 (as relu_f32_fw / clip_f32_fw(0, 6)); mask 1 ReluGrad (keep where
 * mrow > 0), 2 ClipGrad (keep where lo < mrow < hi), as relu_f32_bw / clip_f32_bw. */
static void eg_gemv_epi(float *restrict yrow, int N, int act, const float *restrict mrow, int mask,
                        float lo, float hi)
{
    if (act == 1) {
        for (int n = 0; n < N; n++)
            yrow[n] = yrow[n] > 0.0f ? yrow[n] : 0.0f;
    } else if (act == 2) {
        for (int n = 0; n < N; n++) {
            const float v = yrow[n] < 0.0f ? 0.0f : yrow[n];
            yrow[n] = v > 6.0f ? 6.0f : v;
        }
    }
    if (mask == 1) {
        for (int n = 0; n < N; n++)
            yrow[n] = mrow[n] > 0.0f ? yrow[n] : 0.0f;
    } else if (mask == 2) {
        for (int n = 0; n < N; n++)
            yrow[n] = (mrow[n] > lo && mrow[n] < hi) ? yrow[n] : 0.0f;
    }
}

static void eg_gemv_run(float *restrict y, const float *restrict a, const float *restrict b,
                        const float *restrict c, int batch, int M, int N, int K, int transA,
                        int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn,
                        int act, const float *restrict mk, int mask, float lo, float hi)
{
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    for (int i = 0; i < batch; i++) {
        const float *ai = a + (ptrdiff_t)i * a_bs;
        const float *bi = b + (ptrdiff_t)i * b_bs;
        float *yi = y + (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            float *restrict yrow = yi + (ptrdiff_t)m * N;
            if (K == 1) { /* outer product: row m is a[m] times the one row of op(b) */
                const float av = ai[m * am];
                int n = 0;
                if (bn == 1)
                    for (; n + 8 <= N; n += 8)
                        eg_gst8(yrow + n, eg_gsplat8(av) * eg_gld8(bi + n));
                for (; n < N; n++)
                    yrow[n] = av * bi[n * bn];
            } else if (K == 0) {
                for (int n = 0; n < N; n++)
                    yrow[n] = 0.0f;
            } else {
                eg_gemv_row(yrow, ai + m * am, ak, bi, N, K, transB);
            }
            if (use_c) {
                const float *crow = c + (ptrdiff_t)m * c_sm;
                for (int n = 0; n < N; n++)
                    yrow[n] = alpha * yrow[n] + beta * crow[(ptrdiff_t)n * c_sn];
            } else if (alpha != 1.0f) {
                for (int n = 0; n < N; n++)
                    yrow[n] *= alpha;
            }
            if (act | mask)
                eg_gemv_epi(yrow, N, act, mk ? mk + (yrow - y) : NULL, mask, lo, hi);
        }
    }
}

void gemm_f32_gemv(float *restrict y, const float *restrict a, const float *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA,
                   int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemv_run(y, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn, 0, NULL, 0,
                0.0f, 0.0f);
}

void gemm_f32_gemv_act(float *restrict y, const float *restrict a, const float *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA,
                       int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn, int act)
{
    eg_gemv_run(y, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn, act, NULL, 0,
                0.0f, 0.0f);
}

void gemm_f32_gemv_mask(float *restrict y, const float *restrict a, const float *restrict b,
                        const float *restrict c, int batch, int M, int N, int K, int transA,
                        int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn,
                        const float *restrict ym, int mask, float lo, float hi)
{
    eg_gemv_run(y, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn, 0, ym, mask,
                lo, hi);
}
