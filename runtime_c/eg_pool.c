/* eg_pool.c — max and average pooling, forward and backward side by side.
 *
 * Dimension legend
 *   N, C      batch, channels (pooling is per (n, c) plane; NC = N*C planes)
 *   H, W      input height / width;  OH, OW output height / width
 *   KH, KW    window;  sh, sw strides;  dil_h, dil_w window dilation (max pool)
 *   pt, pl    top / left padding;  pb, pr bottom / right padding (avg pool divisor only;
 *             otherwise bottom/right padding is implied by OH/OW)
 *
 * Window of output (oh, ow): rows ih = oh*sh - pt + kh*dil_h, kh < KH (columns alike).
 * Each loop runs only over the taps inside the image (eg_pool_first / eg_pool_end).
 */
#include <float.h>
#include <stddef.h>

#include "eg_pool.h"

/* Smallest k >= 0 with off + k*step >= 0. */
static inline int eg_pool_first(int off, int step)
{
    return off >= 0 ? 0 : (-off + step - 1) / step;
}

/* One past the largest k < n with off + k*step < lim. */
static inline int eg_pool_end(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

/* Windows that tile the image without overlap or padding (KH == sh, KW == sw, no padding, no
 * dilation, every window inside): each input cell is in at most one window. */
static inline int eg_pool_tiles(int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                                int pt, int pl, int dil_h, int dil_w)
{
    return KH == sh && KW == sw && pt == 0 && pl == 0 && dil_h == 1 && dil_w == 1 && OH * sh <= H &&
           OW * sw <= W;
}

/* 2x2 stride-2 windows: the four cells in row-major order, the same strict '>' scan. */
static void eg_maxpool2x2_fw(float *restrict y, const float *restrict x, ptrdiff_t NC, int H,
                             int W, int OH, int OW)
{
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const float *xp = x + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = xp + (ptrdiff_t)(2 * oh) * W, *r1 = r0 + W;
            float *restrict yr = y + (p * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) {
                float best = -FLT_MAX * 2.0f;
                best = r0[2 * ow] > best ? r0[2 * ow] : best;
                best = r0[2 * ow + 1] > best ? r0[2 * ow + 1] : best;
                best = r1[2 * ow] > best ? r1[2 * ow] : best;
                best = r1[2 * ow + 1] > best ? r1[2 * ow + 1] : best;
                yr[ow] = best;
            }
        }
    }
}

/* Backward of eg_maxpool2x2_fw, write-first: each cell of a window gets g or 0 (branch-free
 * selects of the same first-maximum scan), cells outside every window 0. */
static void eg_maxpool2x2_bw(float *restrict dx, const float *restrict dy,
                             const float *restrict x, ptrdiff_t NC, int H, int W, int OH, int OW)
{
    const ptrdiff_t HW = (ptrdiff_t)H * W;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const float *xp = x + p * HW;
        float *dxp = dx + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const float *r0 = xp + (ptrdiff_t)(2 * oh) * W, *r1 = r0 + W;
            float *restrict d0 = dxp + (ptrdiff_t)(2 * oh) * W, *restrict d1 = d0 + W;
            const float *restrict g = dy + (p * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) {
                const float v0 = r0[2 * ow], v1 = r0[2 * ow + 1], v2 = r1[2 * ow], v3 = r1[2 * ow + 1];
                float b = v0;
                int a = 0;
                a = v1 > b ? 1 : a;
                b = v1 > b ? v1 : b;
                a = v2 > b ? 2 : a;
                b = v2 > b ? v2 : b;
                a = v3 > b ? 3 : a;
                d0[2 * ow] = a == 0 ? g[ow] : 0.0f;
                d0[2 * ow + 1] = a == 1 ? g[ow] : 0.0f;
                d1[2 * ow] = a == 2 ? g[ow] : 0.0f;
                d1[2 * ow + 1] = a == 3 ? g[ow] : 0.0f;
            }
            for (int c = 2 * OW; c < W; c++) {
                d0[c] = 0.0f;
                d1[c] = 0.0f;
            }
        }
        for (ptrdiff_t i = (ptrdiff_t)(2 * OH) * W; i < HW; i++)
            dxp[i] = 0.0f;
    }
}

void maxpool2d_f32_fw(float *restrict y, const float *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dil_h,
                      int dil_w)
{
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    if (KH == 2 && KW == 2 && eg_pool_tiles(H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w)) {
        eg_maxpool2x2_fw(y, x, NC, H, W, OH, OW);
        return;
    }
    for (ptrdiff_t p = 0; p < NC; p++) {
        const float *xp = x + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, dil_h), kh1 = eg_pool_end(ih0, dil_h, H, KH);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, dil_w), kw1 = eg_pool_end(iw0, dil_w, W, KW);
                float best = -FLT_MAX * 2.0f; /* -inf: padding never wins */
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh * dil_h) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++) {
                        const float v = xp[r + kw * dil_w];
                        best = v > best ? v : best;
                    }
                }
                *y++ = best;
            }
        }
    }
}

void maxpool2d_f32_bw(float *restrict dx, const float *restrict dy, const float *restrict x,
                      int N, int C, int H, int W, int OH, int OW, int KH, int KW, int sh, int sw,
                      int pt, int pl, int dil_h, int dil_w)
{
    /* forward: y[oh,ow] = x[argmax of the window]; dL/dx[i] = sum of dy over the windows whose
     * first (row-major) maximum is i. The argmax is recomputed from x with the same strict '>'
     * scan as the forward, so ties go to the first cell, as PyTorch. */
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    if (KH == 2 && KW == 2 && eg_pool_tiles(H, W, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w)) {
        eg_maxpool2x2_bw(dx, dy, x, NC, H, W, OH, OW);
        return;
    }
    for (ptrdiff_t i = 0; i < NC * HW; i++)
        dx[i] = 0.0f;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const float *xp = x + p * HW;
        float *dxp = dx + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, dil_h), kh1 = eg_pool_end(ih0, dil_h, H, KH);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, dil_w), kw1 = eg_pool_end(iw0, dil_w, W, KW);
                float best = -FLT_MAX * 2.0f;
                ptrdiff_t arg = -1;
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh * dil_h) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++) {
                        const ptrdiff_t j = r + kw * dil_w;
                        if (xp[j] > best || arg < 0) {
                            best = xp[j];
                            arg = j;
                        }
                    }
                }
                const float g = *dy++;
                if (arg >= 0)
                    dxp[arg] += g;
            }
        }
    }
}

/* Cells of the window starting at i0 (stride-1 taps, KH of them) inside [lo, hi). */
static inline int eg_pool_count(int i0, int K, int lo, int hi)
{
    int a = i0 > lo ? i0 : lo;
    int b = i0 + K < hi ? i0 + K : hi;
    return b > a ? b - a : 0;
}

/* One window covering the whole unpadded image (a global average pool written as AveragePool). */
static inline int eg_pool_global(int H, int W, int OH, int OW, int KH, int KW, int pt, int pl,
                                 int pb, int pr)
{
    return OH == 1 && OW == 1 && KH == H && KW == W && pt == 0 && pl == 0 && pb == 0 && pr == 0;
}

void avgpool2d_f32_fw(float *restrict y, const float *restrict x, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                      int pr, int count_include_pad)
{
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    if (eg_pool_global(H, W, OH, OW, KH, KW, pt, pl, pb, pr) && HW > 0) {
        /* 8 partial sums (independent adds, one vector where the ISA has them), then one division */
        for (ptrdiff_t p = 0; p < NC; p++) {
            const float *xp = x + p * HW;
            float s[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
            ptrdiff_t i = 0;
            for (; i + 8 <= HW; i += 8)
                for (int j = 0; j < 8; j++)
                    s[j] += xp[i + j];
            float acc = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
            for (; i < HW; i++)
                acc += xp[i];
            y[p] = acc / (float)HW;
        }
        return;
    }
    const int lo_h = count_include_pad ? -pt : 0, hi_h = count_include_pad ? H + pb : H;
    const int lo_w = count_include_pad ? -pl : 0, hi_w = count_include_pad ? W + pr : W;
    for (ptrdiff_t p = 0; p < NC; p++) {
        const float *xp = x + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, 1), kh1 = eg_pool_end(ih0, 1, H, KH);
            const int cnt_h = eg_pool_count(ih0, KH, lo_h, hi_h);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, 1), kw1 = eg_pool_end(iw0, 1, W, KW);
                const int cnt = cnt_h * eg_pool_count(iw0, KW, lo_w, hi_w);
                float acc = 0.0f;
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++)
                        acc += xp[r + kw];
                }
                *y++ = cnt > 0 ? acc / (float)cnt : 0.0f;
            }
        }
    }
}

void avgpool2d_f32_bw(float *restrict dx, const float *restrict dy, int N, int C, int H, int W,
                      int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                      int pr, int count_include_pad)
{
    /* forward: y[oh,ow] = sum(window) / cnt; dL/dx[i] = sum over windows covering i of
     * dy[oh,ow] / cnt(oh,ow), scattered window by window. */
    const ptrdiff_t NC = (ptrdiff_t)N * C, HW = (ptrdiff_t)H * W;
    if (eg_pool_global(H, W, OH, OW, KH, KW, pt, pl, pb, pr) && HW > 0) {
        for (ptrdiff_t p = 0; p < NC; p++) { /* every cell gets the one share: write, no zeroing */
            const float share = dy[p] / (float)HW;
            float *dxp = dx + p * HW;
            for (ptrdiff_t i = 0; i < HW; i++)
                dxp[i] = share;
        }
        return;
    }
    const int lo_h = count_include_pad ? -pt : 0, hi_h = count_include_pad ? H + pb : H;
    const int lo_w = count_include_pad ? -pl : 0, hi_w = count_include_pad ? W + pr : W;
    for (ptrdiff_t i = 0; i < NC * HW; i++)
        dx[i] = 0.0f;
    for (ptrdiff_t p = 0; p < NC; p++) {
        float *dxp = dx + p * HW;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, 1), kh1 = eg_pool_end(ih0, 1, H, KH);
            const int cnt_h = eg_pool_count(ih0, KH, lo_h, hi_h);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, 1), kw1 = eg_pool_end(iw0, 1, W, KW);
                const int cnt = cnt_h * eg_pool_count(iw0, KW, lo_w, hi_w);
                const float g = *dy++;
                if (cnt == 0)
                    continue;
                const float share = g / (float)cnt;
                for (int kh = kh0; kh < kh1; kh++) {
                    const ptrdiff_t r = (ptrdiff_t)(ih0 + kh) * W + iw0;
                    for (int kw = kw0; kw < kw1; kw++)
                        dxp[r + kw] += share;
                }
            }
        }
    }
}
