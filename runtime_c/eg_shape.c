/* eg_shape.c — data movement over strided views.
 *
 * Dimension legend
 *   ndim        number of dims (0..EG_MAX_NDIM; 0 is a scalar: one element)
 *   shape[d]    extent of dim d of the iteration space
 *   sy, sx      element strides of the output / input over each dim (0 = broadcast/reduced)
 *   ny          elements of y to zero before reduce_sum accumulates
 *
 * Every kernel walks the iteration space in row-major order: the last dim is a plain inner
 * loop with its strides hoisted, the outer dims advance with eg_index_next.
 *
 * Backward pairs (the compiler emits them, the kernels are the same):
 *   copy_strided (slice/transpose/pad)  <->  copy_strided with sy/sx swapped (+ fill for pad)
 *   broadcast (expand)                  <->  reduce_sum over the broadcast dims
 */
#include <stddef.h>

#include "eg_math.h"
#include "eg_shape.h"

void copy_strided_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                      const int *sy, const int *sx)
{
    if (ndim == 0) {
        y[0] = x[0];
        return;
    }
    const int last = ndim - 1, n = shape[last], ty = sy[last], tx = sx[last];
    const ptrdiff_t outer = eg_numel(last, shape);
    int idx[EG_MAX_NDIM] = {0};
    ptrdiff_t oy = 0, ox = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        for (int j = 0; j < n; j++)
            y[oy + (ptrdiff_t)j * ty] = x[ox + (ptrdiff_t)j * tx];
        eg_index_next(idx, last, shape, sy, &oy, sx, &ox);
    }
}

/* sum of xr[0..n): 16 partial sums in two 8-lane vectors when n is long enough (the adds then do
 * not wait on one another; e.g. a bias gradient over the pixels), one chain otherwise. */
typedef float eg_sv8 __attribute__((vector_size(32)));
typedef float eg_sv8u __attribute__((vector_size(32), aligned(4), may_alias));

static float eg_row_sum(const float *restrict xr, int n)
{
    float tail = 0.0f;
    int j = 0;
    if (n >= 32) {
        eg_sv8 s0 = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, s1 = s0;
        for (; j + 16 <= n; j += 16) {
            s0 += *(const eg_sv8u *)(xr + j);
            s1 += *(const eg_sv8u *)(xr + j + 8);
        }
        s0 += s1;
        tail = ((s0[0] + s0[4]) + (s0[1] + s0[5])) + ((s0[2] + s0[6]) + (s0[3] + s0[7]));
    }
    for (; j < n; j++)
        tail += xr[j];
    return tail;
}

void reduce_sum_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                    const int *sy, const int *sx, int ny)
{
    for (int i = 0; i < ny; i++)
        y[i] = 0.0f;
    if (ndim == 0) {
        y[0] += x[0];
        return;
    }
    const int last = ndim - 1, n = shape[last], ty = sy[last], tx = sx[last];
    const ptrdiff_t outer = eg_numel(last, shape);
    if (ndim == 2 && ty == 0 && tx == 1) { /* row sums (bias gradients): no index walk */
        for (int r = 0; r < shape[0]; r++)
            y[(ptrdiff_t)r * sy[0]] += eg_row_sum(x + (ptrdiff_t)r * sx[0], n);
        return;
    }
    int idx[EG_MAX_NDIM] = {0};
    ptrdiff_t oy = 0, ox = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        if (ty == 0 && tx == 1) {
            y[oy] += eg_row_sum(x + ox, n);
        } else if (ty == 0) { /* inner dim reduced: sum it in a register */
            float acc = y[oy];
            for (int j = 0; j < n; j++)
                acc += x[ox + (ptrdiff_t)j * tx];
            y[oy] = acc;
        } else {
            for (int j = 0; j < n; j++)
                y[oy + (ptrdiff_t)j * ty] += x[ox + (ptrdiff_t)j * tx];
        }
        eg_index_next(idx, last, shape, sy, &oy, sx, &ox);
    }
}

/* The row sums of reduce_sum_f32 (a bias gradient: dy[k] summed over its n pixels) fed
 * straight into an optimizer update of the block (rows, inner, w_stride) of eg_optim.c: gradient
 * element k = r*inner + i is 0 + the sum of x[k*n .. k*n + n), as reduce_sum_f32 computes it, and
 * the update is the formula of sgd_f32 / momentum_f32 / adam_f32, so the results are theirs. */
void reduce_rows_sgd_f32(float *restrict w, const float *restrict x, int rows, int inner,
                         int w_stride, int n, float lr)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++) {
            const ptrdiff_t k = (ptrdiff_t)r * inner + i;
            w[(ptrdiff_t)r * w_stride + i] -= lr * (0.0f + eg_row_sum(x + k * n, n));
        }
}

void reduce_rows_momentum_f32(float *restrict w, float *restrict v, const float *restrict x,
                              int rows, int inner, int w_stride, int n, float lr, float mu)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++) {
            const ptrdiff_t k = (ptrdiff_t)r * inner + i;
            const float vi = mu * v[k] + (0.0f + eg_row_sum(x + k * n, n));
            v[k] = vi;
            w[(ptrdiff_t)r * w_stride + i] -= lr * vi;
        }
}

void reduce_rows_adam_f32(float *restrict w, float *restrict m, float *restrict v,
                          const float *restrict x, int rows, int inner, int w_stride, int n,
                          float lr, float beta1, float beta2, float eps, float bc1, float bc2)
{
    const float step = lr / bc1;
    const float inv_sqrt_bc2 = 1.0f / eg_sqrtf(bc2);
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++) {
            const ptrdiff_t k = (ptrdiff_t)r * inner + i;
            const float gi = 0.0f + eg_row_sum(x + k * n, n);
            const float mi = beta1 * m[k] + (1.0f - beta1) * gi;
            const float vi = beta2 * v[k] + (1.0f - beta2) * gi * gi;
            m[k] = mi;
            v[k] = vi;
            w[(ptrdiff_t)r * w_stride + i] -= step * mi / (eg_sqrtf(vi) * inv_sqrt_bc2 + eps);
        }
}

void broadcast_f32(float *restrict y, const float *restrict x, int ndim, const int *shape,
                   const int *sx, float alpha)
{
    if (ndim == 0) {
        y[0] = alpha * x[0];
        return;
    }
    const int last = ndim - 1, n = shape[last], tx = sx[last];
    const ptrdiff_t outer = eg_numel(last, shape);
    int idx[EG_MAX_NDIM] = {0};
    ptrdiff_t ox = 0, unused = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        for (int j = 0; j < n; j++)
            y[j] = alpha * x[ox + (ptrdiff_t)j * tx];
        y += n;
        eg_index_next(idx, last, shape, sx, &ox, sx, &unused);
    }
}
