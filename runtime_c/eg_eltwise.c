/* eg_eltwise.c — elementwise kernels; each activation's forward and backward side by side.
 *
 * Dimension legend
 *   n            element count of contiguous tensors
 *   ndim, shape  output (iteration) shape of the strided kernels, up to EG_MAX_NDIM dims
 *   sa, sb, ss   element strides of the inputs a, b / the PReLU slope (0 = broadcast dim)
 *
 * Gradients at the kinks follow PyTorch (see runtime_c/KERNELS.md, Notes):
 *   relu      pass where y > 0            clip       pass where lo <= x <= hi (clamp)
 *   leakyrelu 1 where x > 0, else alpha   hardsigmoid alpha where 0 < alpha*x+beta < 1
 *   hardswish 0 where x <= -3, (2x+3)/6 where -3 < x < 3, 1 where x >= 3
 *   prelu     1 where x > 0, else slope
 */
#include <stddef.h>

#include "eg_eltwise.h"
#include "eg_math.h"
#include "eg_shape.h"

/* ---- binary arithmetic ------------------------------------------------------------------ */

/* Contiguous and broadcasting versions of one binary operator. The broadcasting one walks
 * the output shape row-major; the last dim is a plain loop with the input strides hoisted. */
#define EG_BINARY_KERNELS(name, OP)                                                             \
    void name##_f32(float *y, const float *a, const float *b, int n)                            \
    {                                                                                           \
        for (int i = 0; i < n; i++)                                                             \
            y[i] = a[i] OP b[i];                                                                \
    }                                                                                           \
    void name##_f32_bcast(float *y, const float *a, const float *b,                             \
                          int ndim, const int *shape, const int *sa, const int *sb)             \
    {                                                                                           \
        if (ndim == 0) {                                                                        \
            y[0] = a[0] OP b[0];                                                                \
            return;                                                                             \
        }                                                                                       \
        const int last = ndim - 1, n = shape[last], ta = sa[last], tb = sb[last];              \
        const ptrdiff_t outer = eg_numel(last, shape);                                          \
        int idx[EG_MAX_NDIM] = {0};                                                             \
        ptrdiff_t oa = 0, ob = 0;                                                               \
        for (ptrdiff_t o = 0; o < outer; o++) {                                                 \
            for (int j = 0; j < n; j++)                                                         \
                y[j] = a[oa + (ptrdiff_t)j * ta] OP b[ob + (ptrdiff_t)j * tb];                  \
            y += n;                                                                             \
            eg_index_next(idx, last, shape, sa, &oa, sb, &ob);                                  \
        }                                                                                       \
    }

EG_BINARY_KERNELS(add, +)
EG_BINARY_KERNELS(sub, -)
EG_BINARY_KERNELS(mul, *)
EG_BINARY_KERNELS(div, /)

void scale_f32(float *y, const float *x, int n, float alpha)
{
    for (int i = 0; i < n; i++)
        y[i] = alpha * x[i];
}

void fill_f32(float *y, int n, float value)
{
    for (int i = 0; i < n; i++)
        y[i] = value;
}

void copy_f32(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i];
}

void accumulate_f32(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] += x[i];
}

/* ---- activations ------------------------------------------------------------------------ */

void relu_f32_fw(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_f32_bw(float *dx, const float *dy, const float *y, int n)
{
    /* forward: y = max(x, 0); dL/dx = dy * [y > 0] (x == 0 gets 0, as torch) */
    for (int i = 0; i < n; i++)
        dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void clip_f32_fw(float *y, const float *x, int n, float lo, float hi)
{
    for (int i = 0; i < n; i++) {
        float v = x[i] < lo ? lo : x[i];
        y[i] = v > hi ? hi : v;
    }
}

void clip_f32_bw(float *dx, const float *dy, const float *y, int n,
                 float lo, float hi)
{
    /* forward: y = min(max(x, lo), hi); dL/dx = dy * [lo < x < hi], read from the output:
     * lo < y < hi exactly when lo < x < hi. Strict at the kinks, as torch's hardtanh_backward
     * (F.relu6, nn.Hardtanh); the input x need not be kept, so Clip can run in place. */
    for (int i = 0; i < n; i++)
        dx[i] = (y[i] > lo && y[i] < hi) ? dy[i] : 0.0f;
}

void leakyrelu_f32_fw(float *y, const float *x, int n, float alpha)
{
    for (int i = 0; i < n; i++)
        y[i] = x[i] > 0.0f ? x[i] : alpha * x[i];
}

void leakyrelu_f32_bw(float *dx, const float *dy, const float *x, int n,
                      float alpha)
{
    /* forward: y = x > 0 ? x : alpha*x; dL/dx = dy * (x > 0 ? 1 : alpha) */
    for (int i = 0; i < n; i++)
        dx[i] = x[i] > 0.0f ? dy[i] : alpha * dy[i];
}

void sigmoid_f32_fw(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = eg_sigmoidf(x[i]);
}

void sigmoid_f32_bw(float *dx, const float *dy, const float *y, int n)
{
    /* forward: y = 1/(1+e^-x); dL/dx = dy * y * (1 - y) */
    for (int i = 0; i < n; i++)
        dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void tanh_f32_fw(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = eg_tanhf(x[i]);
}

void tanh_f32_bw(float *dx, const float *dy, const float *y, int n)
{
    /* forward: y = tanh(x); dL/dx = dy * (1 - y^2) */
    for (int i = 0; i < n; i++)
        dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

void hardsigmoid_f32_fw(float *y, const float *x, int n, float alpha,
                        float beta)
{
    for (int i = 0; i < n; i++) {
        float v = alpha * x[i] + beta;
        v = v > 0.0f ? v : 0.0f;
        y[i] = v < 1.0f ? v : 1.0f;
    }
}

void hardsigmoid_f32_bw(float *dx, const float *dy, const float *x,
                        int n, float alpha, float beta)
{
    /* forward: y = clamp(alpha*x + beta, 0, 1); dL/dx = dy * alpha inside the open ramp */
    for (int i = 0; i < n; i++) {
        const float v = alpha * x[i] + beta;
        dx[i] = (v > 0.0f && v < 1.0f) ? alpha * dy[i] : 0.0f;
    }
}

void hardswish_f32_fw(float *y, const float *x, int n)
{
    for (int i = 0; i < n; i++) {
        float r = x[i] + 3.0f;
        r = r > 0.0f ? r : 0.0f;
        r = r < 6.0f ? r : 6.0f;
        y[i] = x[i] * r / 6.0f;
    }
}

void hardswish_f32_bw(float *dx, const float *dy, const float *x,
                      int n)
{
    /* forward: y = x * relu6(x + 3) / 6;
     * dL/dx = dy * (0 if x <= -3; x/3 + 1/2 if -3 < x < 3; 1 if x >= 3)  (torch's branches) */
    for (int i = 0; i < n; i++) {
        const float v = x[i];
        dx[i] = v <= -3.0f ? 0.0f : (v < 3.0f ? dy[i] * (v / 3.0f + 0.5f) : dy[i]);
    }
}

/* ---- PReLU (slope broadcast over x) ------------------------------------------------------ */

void prelu_f32_fw(float *y, const float *x, const float *slope,
                  int ndim, const int *shape, const int *ss)
{
    if (ndim == 0) {
        y[0] = x[0] > 0.0f ? x[0] : slope[0] * x[0];
        return;
    }
    const int last = ndim - 1, n = shape[last], ts = ss[last];
    const ptrdiff_t outer = eg_numel(last, shape);
    int idx[EG_MAX_NDIM] = {0};
    ptrdiff_t os = 0, unused = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        for (int j = 0; j < n; j++)
            y[j] = x[j] > 0.0f ? x[j] : slope[os + (ptrdiff_t)j * ts] * x[j];
        x += n;
        y += n;
        eg_index_next(idx, last, shape, ss, &os, ss, &unused);
    }
}

void prelu_f32_bw_input(float *dx, const float *dy, const float *x,
                        const float *slope, int ndim, const int *shape, const int *ss)
{
    /* forward: y = x > 0 ? x : slope*x; dL/dx = dy * (x > 0 ? 1 : slope) */
    if (ndim == 0) {
        dx[0] = x[0] > 0.0f ? dy[0] : slope[0] * dy[0];
        return;
    }
    const int last = ndim - 1, n = shape[last], ts = ss[last];
    const ptrdiff_t outer = eg_numel(last, shape);
    int idx[EG_MAX_NDIM] = {0};
    ptrdiff_t os = 0, unused = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        for (int j = 0; j < n; j++)
            dx[j] = x[j] > 0.0f ? dy[j] : slope[os + (ptrdiff_t)j * ts] * dy[j];
        x += n;
        dy += n;
        dx += n;
        eg_index_next(idx, last, shape, ss, &os, ss, &unused);
    }
}

void prelu_f32_bw_slope_terms(float *t, const float *dy,
                              const float *x, int n)
{
    /* forward: y = slope*x where x <= 0; dL/dslope = sum dy * x over those elements (the sum
     * onto slope's shape is a separate reduce_sum_f32) */
    for (int i = 0; i < n; i++)
        t[i] = x[i] < 0.0f ? dy[i] * x[i] : 0.0f;
}
