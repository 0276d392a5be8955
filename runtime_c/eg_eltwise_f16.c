/* eg_eltwise_f16.c — native fp16 activations, add, max-pool and bias-gradient sums
 * (contract: eg_eltwise_f16.h; each the fp32 kernel's loop over fp16 storage). */
#include <stddef.h>

#include "eg_eltwise_f16.h"

void relu_f16_fw(eg_f16 *y, const eg_f16 *x, int n)
{
    for (int i = 0; i < n; i++) {
        const float v = eg_ldh(x + i);
        eg_sth(y + i, v > 0.0f ? v : 0.0f);
    }
}

void relu_f16_bw(eg_f16 *dx, const eg_f16 *dy, const eg_f16 *y, int n)
{
    /* forward: y = max(x, 0); dL/dx = dy * [y > 0] */
    for (int i = 0; i < n; i++)
        dx[i] = eg_ldh(y + i) > 0.0f ? dy[i] : (eg_f16)0;
}

void clip_f16_fw(eg_f16 *y, const eg_f16 *x, int n, float lo, float hi)
{
    for (int i = 0; i < n; i++) {
        const float xv = eg_ldh(x + i);
        const float v = xv < lo ? lo : xv;
        eg_sth(y + i, v > hi ? hi : v);
    }
}

void clip_f16_bw(eg_f16 *dx, const eg_f16 *dy, const eg_f16 *y, int n, float lo, float hi)
{
    /* dL/dx = dy * [lo < y < hi] (strict, as clip_f32_bw) */
    for (int i = 0; i < n; i++) {
        const float v = eg_ldh(y + i);
        dx[i] = (v > lo && v < hi) ? dy[i] : (eg_f16)0;
    }
}

void add_f16(eg_f16 *y, const eg_f16 *a, const eg_f16 *b, int n)
{
    for (int i = 0; i < n; i++)
        eg_sth(y + i, eg_ldh(a + i) + eg_ldh(b + i));
}

static inline int eg_pool_first(int off, int step)
{
    return off >= 0 ? 0 : (-off + step - 1) / step;
}

static inline int eg_pool_end(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

void maxpool2d_f16_fw(eg_f16 *restrict y, const eg_f16 *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                      int dil_w)
{
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const eg_f16 *xp = x + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, dil_h), kh1 = eg_pool_end(ih0, dil_h, H, KH);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, dil_w), kw1 = eg_pool_end(iw0, dil_w, W, KW);
                float best = -3.0e38f * 2.0f; /* -inf: padding never wins */
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh * dil_h) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++) {
                        const float v = eg_ldh(xp + r + kw * dil_w);
                        best = v > best ? v : best;
                    }
                }
                eg_sth(y++, best);
            }
        }
    }
}

void maxpool2d_f16_bw(eg_f16 *restrict dx, const eg_f16 *restrict dy, const eg_f16 *restrict x,
                      int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                      int pt, int pl, int dil_h, int dil_w)
{
    /* as maxpool2d_f32_bw: the gradient goes to the window's first (row-major) maximum; the
     * caller guarantees disjoint windows, so each dx cell receives at most one dy (a copy) */
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    for (ptrdiff_t i = 0; i < NC * HW; i++)
        dx[i] = 0;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const eg_f16 *xp = x + p * HW;
        eg_f16 *dxp = dx + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, dil_h), kh1 = eg_pool_end(ih0, dil_h, H, KH);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, dil_w), kw1 = eg_pool_end(iw0, dil_w, W, KW);
                float best = -3.0e38f * 2.0f;
                ptrdiff_t arg = -1;
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh * dil_h) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++) {
                        const ptrdiff_t j = r + kw * dil_w;
                        const float v = eg_ldh(xp + j);
                        if (v > best || arg < 0) {
                            best = v;
                            arg = j;
                        }
                    }
                }
                const eg_f16 g = *dy++;
                if (arg >= 0)
                    dxp[arg] = g;
            }
        }
    }
}

void reduce_sum_f16(float *restrict y, const eg_f16 *restrict x, int ndim, const int *shape,
                    const int *sy, const int *sx, int ny)
{
    for (int i = 0; i < ny; i++)
        y[i] = 0.0f;
    if (ndim == 0) {
        y[0] += eg_ldh(x);
        return;
    }
    /* walk every index of shape (the input's), innermost dim in a loop */
    const int last = ndim - 1, n = shape[last];
    ptrdiff_t outer = 1;
    for (int d = 0; d < last; d++)
        outer *= shape[d];
    int idx[8] = {0};
    ptrdiff_t oy = 0, ox = 0;
    for (ptrdiff_t o = 0; o < outer; o++) {
        if (sy[last] == 0) { /* inner dim reduced: sum it in a register */
            float acc = 0.0f;
            for (int j = 0; j < n; j++)
                acc += eg_ldh(x + ox + (ptrdiff_t)j * sx[last]);
            y[oy] += acc;
        } else {
            for (int j = 0; j < n; j++)
                y[oy + (ptrdiff_t)j * sy[last]] += eg_ldh(x + ox + (ptrdiff_t)j * sx[last]);
        }
        for (int d = last - 1; d >= 0; d--) { /* next outer index */
            oy += sy[d];
            ox += sx[d];
            if (++idx[d] < shape[d])
                break;
            oy -= (ptrdiff_t)sy[d] * shape[d];
            ox -= (ptrdiff_t)sx[d] * shape[d];
            idx[d] = 0;
        }
    }
}
