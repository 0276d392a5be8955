/* eg_gemm.h — batched general matrix multiply, fp32 reference. */
#ifndef EG_GEMM_H
#define EG_GEMM_H

/* For each i < batch: y_i[M,N] = alpha * op(a_i) @ op(b_i) + beta * C, y_i = y + i*M*N,
 * a_i = a + i*a_bs, b_i = b + i*b_bs (a_bs, b_bs may be 0: broadcast).
 * op(a) is M x K: a_i stored [M,K], or [K,M] if transA.
 * op(b) is K x N: b_i stored [K,N], or [N,K] if transB.
 * C (c may be NULL) element (m, n) is c[m*c_sm + n*c_sn] (stride 0 broadcasts); the C term
 * is skipped when beta == 0 (as BLAS: a NaN/inf in C does not leak through). */
void gemm_f32(float *restrict y, const float *restrict a, const float *restrict b,
              const float *restrict c, int batch, int M, int N, int K, int transA, int transB,
              float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

#endif /* EG_GEMM_H */
