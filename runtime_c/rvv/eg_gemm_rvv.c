/* eg_gemm_rvv.c — RVV (zve32f, LMUL 8) variant of gemm_f32 (legend and contract: eg_gemm.c).
 *
 * Two loop shapes, picked per call from the sizes by their vector instruction counts:
 *   rows  a vector of up to VLMAX outputs y[m, n0..] accumulates a[m,k] * b[k, n0..] over k
 *         (b loaded unit-stride, or strided by K when transB);
 *   dots  when transB and K is long against N, each y[m,n] is a dot product over k with
 *         unit-stride b and a vector of partial sums reduced once.
 */
#include <riscv_vector.h>
#include <stddef.h>

#include "eg_gemm_rvv.h"

typedef vfloat32m8_t eg_vf;

static inline eg_vf eg_vload(const float *p, ptrdiff_t stride, size_t vl)
{
    return stride == 1 ? __riscv_vle32_v_f32m8(p, vl) : __riscv_vlse32_v_f32m8(p, stride * 4, vl);
}

void gemm_f32_rvv(float *restrict y, const float *restrict a, const float *restrict b,
                  const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                  float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn)
{
    /* element (m, k) of op(a) is a_i[m*am + k*ak]; (k, n) of op(b) is b_i[k*bk + n*bn] */
    const ptrdiff_t am = transA ? 1 : K, ak = transA ? M : 1;
    const ptrdiff_t bk = transB ? 1 : N, bn = transB ? K : 1;
    const int use_c = c != NULL && beta != 0.0f;
    const size_t vlmax = __riscv_vsetvlmax_e32m8();
    /* about 3 vector+scalar instructions per (chunk, k) for rows, per (n, chunk) plus a
     * reduction (about 6) for dots */
    const long rows_cost = (long)((N + (int)vlmax - 1) / (int)vlmax) * K * 3;
    const long dots_cost = (long)N * (((K + (int)vlmax - 1) / (int)vlmax) * 3 + 6);
    const int dots = transB && dots_cost < rows_cost;
    size_t vl;
    for (int i = 0; i < batch; i++) {
        const float *ai = a + (ptrdiff_t)i * a_bs;
        const float *bi = b + (ptrdiff_t)i * b_bs;
        float *yi = y + (ptrdiff_t)i * M * N;
        for (int m = 0; m < M; m++) {
            const float *arow = ai + m * am;
            float *yrow = yi + (ptrdiff_t)m * N;
            const float *crow = use_c ? c + (ptrdiff_t)m * c_sm : NULL;
            if (dots) {
                for (int n = 0; n < N; n++) {
                    const float *bcol = bi + n * bn; /* contiguous over k */
                    eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vlmax);
                    for (int k = 0; k < K; k += (int)vl) {
                        vl = __riscv_vsetvl_e32m8((size_t)(K - k));
                        acc = __riscv_vfmacc_vv_f32m8_tu(acc, eg_vload(arow + k * ak, ak, vl),
                                                         __riscv_vle32_v_f32m8(bcol + k, vl), vl);
                    }
                    vfloat32m1_t zero = __riscv_vfmv_s_f_f32m1(0.0f, 1);
                    const float s = __riscv_vfmv_f_s_f32m1_f32(__riscv_vfredusum_vs_f32m8_f32m1(acc, zero, vlmax));
                    yrow[n] = use_c ? alpha * s + beta * crow[(ptrdiff_t)n * c_sn] : alpha * s;
                }
                continue;
            }
            for (int n0 = 0; n0 < N; n0 += (int)vl) {
                vl = __riscv_vsetvl_e32m8((size_t)(N - n0));
                eg_vf acc = __riscv_vfmv_v_f_f32m8(0.0f, vl);
                for (int k = 0; k < K; k++)
                    acc = __riscv_vfmacc_vf_f32m8(acc, arow[k * ak], eg_vload(bi + k * bk + n0 * bn, bn, vl), vl);
                if (use_c) {
                    const eg_vf cv = __riscv_vlse32_v_f32m8(crow + (ptrdiff_t)n0 * c_sn, (ptrdiff_t)c_sn * 4, vl);
                    acc = __riscv_vfmacc_vf_f32m8(__riscv_vfmul_vf_f32m8(acc, alpha, vl), beta, cv, vl);
                } else if (alpha != 1.0f) {
                    acc = __riscv_vfmul_vf_f32m8(acc, alpha, vl);
                }
                __riscv_vse32_v_f32m8(yrow + n0, acc, vl);
            }
        }
    }
}
