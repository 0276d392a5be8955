/* eg_gemm_rvv.h — RVV (zve32f) variant of gemm_f32 (same signature and contract as eg_gemm.h). */
#ifndef EG_GEMM_RVV_H
#define EG_GEMM_RVV_H

void gemm_f32_rvv(float *restrict y, const float *restrict a, const float *restrict b,
                  const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
                  float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

#endif /* EG_GEMM_RVV_H */
