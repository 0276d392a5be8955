/* eg_gemm_f16.h — native fp16 GEMM for `--dtype fp16` (portable C99 reference).
 *
 * Same arguments and semantics as gemm_f32 (eg_gemm.h): y[i] = alpha * op(a_i) op(b_i) + beta * C,
 * with a and b binary16 (eg_f16), C fp32 (a bias; may be NULL), products accumulated in fp32 and
 * the result rounded once at the store. Two output types:
 *   gemm_f16      y fp16 (activations and input gradients)
 *   gemm_f16_y32  y fp32 (weight gradients for the fp32 master update, fp32 graph outputs)
 * Variants with the same signatures: rvv/eg_f16_zvfh.h (`_zvfh`).
 */
#ifndef EG_GEMM_F16_H
#define EG_GEMM_F16_H

#include "eg_f16.h"

void gemm_f16(eg_f16 *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
              const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
              float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

void gemm_f16_y32(float *restrict y, const eg_f16 *restrict a, const eg_f16 *restrict b,
                  const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                  float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

#endif /* EG_GEMM_F16_H */
