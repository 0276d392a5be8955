/* eg_shape.h — strided copy, reduction and broadcast over up to EG_MAX_NDIM dims, fp32.
 *
 * Shapes and strides are `const int *` arrays of length ndim (strides in elements, 0 means
 * the dim is broadcast / reduced). Transpose, Slice, Concat, Pad, Expand, ReduceSum and the
 * broadcast-reduction of gradients all lower to these three kernels.
 */
#ifndef EG_SHAPE_H
#define EG_SHAPE_H

#include <stddef.h>

#define EG_MAX_NDIM 6

/* Odometer over the dims [0, nd) of shape, last dim fastest: advance idx by one and move
 * the two offsets *o0, *o1 by their strides s0, s1 (carrying into slower dims).
 * Shared by the strided kernels here and in eg_eltwise.c. */
static inline void eg_index_next(int *idx, int nd, const int *shape, const int *s0,
                                 ptrdiff_t *o0, const int *s1, ptrdiff_t *o1)
{
    for (int d = nd - 1; d >= 0; d--) {
        idx[d]++;
        *o0 += s0[d];
        *o1 += s1[d];
        if (idx[d] < shape[d])
            return;
        *o0 -= (ptrdiff_t)s0[d] * shape[d];
        *o1 -= (ptrdiff_t)s1[d] * shape[d];
        idx[d] = 0;
    }
}

/* Number of elements of shape[0..ndim) (1 for ndim == 0). */
static inline ptrdiff_t eg_numel(int ndim, const int *shape)
{
    ptrdiff_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

/* For every index idx of shape: y[idx . sy] = x[idx . sx]. */
void copy_strided_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                      const int *sy, const int *sx);

/* Zero y[0..ny), then for every index idx of shape (the input's shape):
 * y[idx . sy] += x[idx . sx]; reduced dims have sy = 0. */
void reduce_sum_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                    const int *sy, const int *sx, int ny);

/* reduce_sum_f32's row sums (gradient element k = the sum of x[k*n .. k*n + n)) fed into
 * sgd_f32 / momentum_f32 / adam_f32 of the block (rows, inner, w_stride) in one pass, without the
 * gradient buffer (passes/fuse.py: a bias gradient and its update); same results as the two calls. */
void reduce_rows_sgd_f32(float *restrict w, const float *restrict x, int rows, int inner,
                         int w_stride, int n, float lr);
void reduce_rows_momentum_f32(float *restrict w, float *restrict v, const float *restrict x,
                              int rows, int inner, int w_stride, int n, float lr, float mu);
void reduce_rows_adam_f32(float *restrict w, float *restrict m, float *restrict v,
                          const float *restrict x, int rows, int inner, int w_stride, int n,
                          float lr, float beta1, float beta2, float eps, float bc1, float bc2);

/* y contiguous with shape: y[idx] = alpha * x[idx . sx]. */
void broadcast_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                   const int *sx, float alpha);

#endif /* EG_SHAPE_H */
