/* eg_gemm_f16.c — native fp16 GEMM, fp32 accumulation (contract: eg_gemm_f16.h; legend: eg_gemm.c).
 *
 * transB: each y[m,n] is one fp32 dot product over k (both operands contiguous or a strided);
 * otherwise a row of up to EG_F16_ROW outputs accumulates a[m,k] * b[k, n0..] in fp32 on the stack.
 * The result alpha * sum + beta * C is rounded once, at the store.
 */
#include <stddef.h>

#include "eg_gemm_f16.h"

#define EG_F16_ROW 64

static inline void eg_gemm_f16_any(eg_f16 *restrict y16, float *restrict y32, const eg_f16 *restrict a,
                                   const eg_f16 *restrict b, const float *restrict c, int batch, int M, int N,
                                   int K, int transA, int transB, float alpha, float beta, int a_bs, int b_bs,
                                   int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    float acc[EG_F16_ROW];
    for (int i = 0; i < batch; i++) {
        const eg_f16 *ai = a + (ptrdiff_t)i * a_bs;
        const eg_f16 *bi = b + (ptrdiff_t)i * b_bs;
        const ptrdiff_t yi = (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            const eg_f16 *arow = ai + m * am;
            const ptrdiff_t yrow = yi + (ptrdiff_t)m * N;
            const float *crow = use_c ? c + (ptrdiff_t)m * c_sm : NULL;
            for (int n0 = 0; n0 < N; n0 += EG_F16_ROW) {
                const int n1 = N - n0 < EG_F16_ROW ? N : n0 + EG_F16_ROW;
                if (transB) {
                    for (int n = n0; n < n1; n++) {
                        const eg_f16 *bcol = bi + n * bn; /* contiguous over k */
                        float s = 0.0f;
                        for (int k = 0; k < K; k++)
                            s += eg_ldh(arow + k * ak) * eg_ldh(bcol + k);
                        acc[n - n0] = s;
                    }
                } else {
                    for (int n = 0; n < n1 - n0; n++)
                        acc[n] = 0.0f;
                    for (int k = 0; k < K; k++) {
                        const float av = eg_ldh(arow + k * ak);
                        const eg_f16 *brow = bi + k * bk + n0; /* contiguous over n */
                        for (int n = 0; n < n1 - n0; n++)
                            acc[n] += av * eg_ldh(brow + n);
                    }
                }
                for (int n = n0; n < n1; n++) {
                    float v = acc[n - n0];
                    if (use_c)
                        v = alpha * v + beta * crow[(ptrdiff_t)n * c_sn];
                    else if (alpha != 1.0f)
                        v *= alpha;
                    if (y16)
                        eg_sth(y16 + yrow + n, v);
                    else
                        y32[yrow + n] = v;
                }
            }
        }
    }
}

void gemm_f16(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
              const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
              float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_any(y, NULL, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn);
}

void gemm_f16_y32(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                  const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                  float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    eg_gemm_f16_any(NULL, y, a, b, c, batch, M, N, K, transA, transB, alpha, beta, a_bs, b_bs, c_sm, c_sn);
}
