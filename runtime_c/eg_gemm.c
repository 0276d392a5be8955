/* eg_gemm.c — batched GEMM: y = alpha * op(a) op(b) + beta * C.
 *
 * Dimension legend
 *   batch   independent products; y_i is [M,N] at y + i*M*N
 *   M, N    rows / columns of y;  K  the contracted dimension
 *   a_bs, b_bs  element strides between batches of a and b (0 = same matrix for all)
 *   c_sm, c_sn  element strides of C over m and n (0 = broadcast)
 *
 * The training graph uses this one kernel for MatMul/Gemm forward and for their backward:
 *   dA = dY op(B)^T and dB = op(A)^T dY are gemm_f32 calls with the trans flags flipped,
 *   which is why every trans combination has to be fast enough.
 *
 * Loop order: for transB (b_i rows are contiguous over k) every y element is a dot product
 * accumulated in a register. Otherwise b_i is walked row by row (k outer, n inner, the
 * contiguous direction) and a row of y accumulates in place, which the cache likes better
 * than striding down the columns of b. Both sum over k in increasing order.
 */
#include <stddef.h>

#include "eg_gemm.h"

void gemm_f32(float *restrict y, const float *restrict a, const float *restrict b,
              const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
              float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    for (int i = 0; i < batch; i++) {
        const float *ai = a + (ptrdiff_t)i * a_bs;
        const float *bi = b + (ptrdiff_t)i * b_bs;
        float *yi = y + (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            const float *arow = ai + m * am;
            float *yrow = yi + (ptrdiff_t)m * N;
            if (transB) {
                for (int n = 0; n < N; n++) {
                    const float *bcol = bi + n * bn; /* contiguous over k */
                    float acc = 0.0f;
                    for (int k = 0; k < K; k++)
                        acc += arow[k * ak] * bcol[k];
                    yrow[n] = acc;
                }
            } else {
                for (int n = 0; n < N; n++)
                    yrow[n] = 0.0f;
                for (int k = 0; k < K; k++) {
                    const float av = arow[k * ak];
                    const float *brow = bi + k * bk; /* contiguous over n */
                    for (int n = 0; n < N; n++)
                        yrow[n] += av * brow[n];
                }
            }
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
