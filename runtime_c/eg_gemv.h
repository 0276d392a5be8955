/* eg_gemv.h — fp32 products whose output is one row or whose contraction is one term (batch-1
 * linear layers: forward and input gradient are matrix-vector products, the weight gradient an
 * outer product). Same contract as gemm_f32 (eg_gemm.h).
 *
 * Portable C99 + GCC vector extensions (gcc, clang; any ISA); no scratch, no malloc. The dot
 * products sum in a different order from the reference (8 lanes, 2 partial sums per row, fused
 * multiply-adds where the ISA has them): results agree to fp32 rounding of the sums.
 */
#ifndef EG_GEMV_H
#define EG_GEMV_H

/* Same arguments and result as gemm_f32; fast when M == 1 or K == 1 (any other shape is
 * computed too, row by row as M products of one row). */
void gemm_f32_gemv(float *restrict y, const float *restrict a, const float *restrict b,
                   const float *restrict c, int batch, int M, int N, int K, int transA,
                   int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn);

/* Fused epilogues (passes/fuse_eltwise.py), applied to each output element after alpha/beta:
 * _act: act 1 ReLU, 2 ReLU6 (Gemm + bias + activation, the relu_f32_fw / clip_f32_fw(0, 6) result);
 * _mask: y is kept where ym (the forward activation, same shape as y) has mask 1 ym > 0
 * (ReluGrad), 2 lo < ym < hi (ClipGrad), else 0 (relu_f32_bw / clip_f32_bw). Same sums, same bits. */
void gemm_f32_gemv_act(float *restrict y, const float *restrict a, const float *restrict b,
                       const float *restrict c, int batch, int M, int N, int K, int transA,
                       int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn, int act);
void gemm_f32_gemv_mask(float *restrict y, const float *restrict a, const float *restrict b,
                        const float *restrict c, int batch, int M, int N, int K, int transA,
                        int transB, float alpha, float beta, int a_bs, int b_bs, int c_sm, int c_sn,
                        const float *restrict ym, int mask, float lo, float hi);

#endif /* EG_GEMV_H */
