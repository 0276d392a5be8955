/* eg_int8.c — int8 forward kernels, int8 <-> fp32 bridges, int8/int32 parameter updates.
 *
 * Dimension legend
 *   N batch, C/M input/output channels, H,W / OH,OW input/output height and width,
 *   KH,KW kernel, sh,sw strides, pt,pl top/left pads, dil_h,dil_w dilations, G groups,
 *   B rows of a linear layer, K its input features.
 * Rounding: requantization is TFLite's, bit for bit (SRDHM rounds to nearest, ties toward +inf;
 * RoundingDivideByPOT rounds to nearest, ties away from zero);
 * quantize_f32_s8 is ONNX QuantizeLinear's (round half to even).
 */
#include <stddef.h>
#include <stdint.h>

#include "eg_int8.h"

int32_t eg_srdhm(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN)
        return INT32_MAX;
    int64_t ab = (int64_t)a * (int64_t)b;
    int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    int64_t t = ab + nudge; /* t / 2^31 truncated toward zero, by shifts (no 64-bit division on rv32) */
    return (int32_t)(t >= 0 ? t >> 31 : -((-t) >> 31));
}

int32_t eg_rdbpot(int32_t x, int exponent)
{
    int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    int32_t remainder = x & mask;
    int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t eg_mbqm(int32_t x, int32_t mult, int shift)
{
    int left = shift > 0 ? shift : 0;
    int right = shift > 0 ? 0 : -shift;
    int64_t xl = (int64_t)x * ((int64_t)1 << left);
    if (xl > INT32_MAX)
        xl = INT32_MAX;
    if (xl < INT32_MIN)
        xl = INT32_MIN;
    return eg_rdbpot(eg_srdhm((int32_t)xl, mult), right);
}

static inline int8_t sat8(int32_t v, int lo, int hi)
{
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

void conv2d_s8_fw(int8_t *restrict y, const int8_t *restrict x, const int8_t *restrict w,
                  const int32_t *restrict b, const int32_t *restrict mult, const int32_t *restrict shift,
                  int N, int C, int H, int W, int M, int OH, int OW, int KH, int KW, int sh, int sw,
                  int pt, int pl, int dil_h, int dil_w, int G, int x_zp, int y_zp, int act_min, int act_max)
{
    int Cg = C / G, Mg = M / G;
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            int g = m / Mg;
            const int8_t *wm = w + (ptrdiff_t)m * Cg * KH * KW;
            int8_t *ym = y + ((ptrdiff_t)n * M + m) * OH * OW;
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    int32_t acc = b ? b[m] : 0;
                    for (int c = 0; c < Cg; c++) {
                        const int8_t *xc = x + ((ptrdiff_t)n * C + g * Cg + c) * H * W;
                        const int8_t *wc = wm + (ptrdiff_t)c * KH * KW;
                        for (int i = 0; i < KH; i++) {
                            int h = oh * sh + i * dil_h - pt;
                            if (h < 0 || h >= H)
                                continue; /* padding is the real value 0, i.e. x_zp: contributes 0 */
                            for (int j = 0; j < KW; j++) {
                                int ww = ow * sw + j * dil_w - pl;
                                if (ww < 0 || ww >= W)
                                    continue;
                                acc += ((int32_t)xc[h * W + ww] - x_zp) * (int32_t)wc[i * KW + j];
                            }
                        }
                    }
                    ym[oh * OW + ow] = sat8(y_zp + eg_mbqm(acc, mult[m], shift[m]), act_min, act_max);
                }
        }
}

void conv_pwdw_s8_fw(int8_t *restrict y, int8_t *restrict plane, const int8_t *restrict x,
                     const int8_t *restrict w1, const int32_t *restrict b1, const int32_t *restrict mult1,
                     const int32_t *restrict shift1, const int8_t *restrict w2, const int32_t *restrict b2,
                     const int32_t *restrict mult2, const int32_t *restrict shift2,
                     int C, int H, int W, int M, int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl,
                     int dil_h, int dil_w, int x_zp, int mid_zp, int act1_min, int act1_max, int y_zp,
                     int act2_min, int act2_max)
{
    int HW = H * W;
    for (int m = 0; m < M; m++) {
        /* the expanded channel m, one plane: a 1x1 conv is a dot product over C per pixel */
        const int8_t *wm = w1 + (ptrdiff_t)m * C;
        for (int p = 0; p < HW; p++) {
            int32_t acc = b1 ? b1[m] : 0;
            for (int c = 0; c < C; c++)
                acc += ((int32_t)x[(ptrdiff_t)c * HW + p] - x_zp) * (int32_t)wm[c];
            plane[p] = sat8(mid_zp + eg_mbqm(acc, mult1[m], shift1[m]), act1_min, act1_max);
        }
        /* its depthwise filter: a single-channel conv of the plane */
        conv2d_s8_fw(y + (ptrdiff_t)m * OH * OW, plane, w2 + (ptrdiff_t)m * KH * KW, b2 ? b2 + m : NULL,
                     mult2 + m, shift2 + m, 1, 1, H, W, 1, OH, OW, KH, KW, sh, sw, pt, pl, dil_h, dil_w, 1,
                     mid_zp, y_zp, act2_min, act2_max);
    }
}

void linear_s8_fw(int8_t *restrict y, const int8_t *restrict x, const int8_t *restrict w,
                  const int32_t *restrict b, const int32_t *restrict mult, const int32_t *restrict shift,
                  int B, int N, int K, int x_zp, int y_zp, int act_min, int act_max)
{
    for (int r = 0; r < B; r++)
        for (int n = 0; n < N; n++) {
            const int8_t *xr = x + (ptrdiff_t)r * K;
            const int8_t *wn = w + (ptrdiff_t)n * K;
            int32_t acc = b ? b[n] : 0;
            for (int k = 0; k < K; k++)
                acc += ((int32_t)xr[k] - x_zp) * (int32_t)wn[k];
            y[(ptrdiff_t)r * N + n] = sat8(y_zp + eg_mbqm(acc, mult[n], shift[n]), act_min, act_max);
        }
}

void maxpool2d_s8_fw(int8_t *restrict y, const int8_t *restrict x, int N, int C, int H, int W, int OH, int OW,
                     int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w)
{
    for (int nc = 0; nc < N * C; nc++) {
        const int8_t *xc = x + (ptrdiff_t)nc * H * W;
        int8_t *yc = y + (ptrdiff_t)nc * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int best = -129;
                for (int i = 0; i < KH; i++) {
                    int h = oh * sh + i * dil_h - pt;
                    if (h < 0 || h >= H)
                        continue;
                    for (int j = 0; j < KW; j++) {
                        int ww = ow * sw + j * dil_w - pl;
                        if (ww >= 0 && ww < W && xc[h * W + ww] > best)
                            best = xc[h * W + ww];
                    }
                }
                yc[oh * OW + ow] = (int8_t)(best < -128 ? -128 : best);
            }
    }
}

void global_avgpool_s8_fw(int8_t *restrict y, const int8_t *restrict x, int NC, int HW, int x_zp,
                          int32_t mult, int shift, int y_zp, int act_min, int act_max)
{
    for (int nc = 0; nc < NC; nc++) {
        const int8_t *xc = x + (ptrdiff_t)nc * HW;
        int32_t acc = 0;
        for (int i = 0; i < HW; i++)
            acc += (int32_t)xc[i] - x_zp;
        y[nc] = sat8(y_zp + eg_mbqm(acc, mult, shift), act_min, act_max);
    }
}

void add_s8(int8_t *y, const int8_t *a, const int8_t *b, int n, int a_zp, int32_t a_mult, int a_shift,
            int b_zp, int32_t b_mult, int b_shift, int y_zp, int32_t y_mult, int y_shift, int act_min, int act_max)
{
    for (int i = 0; i < n; i++) {
        int32_t av = eg_mbqm(((int32_t)a[i] - a_zp) * (1 << 20), a_mult, a_shift);
        int32_t bv = eg_mbqm(((int32_t)b[i] - b_zp) * (1 << 20), b_mult, b_shift);
        y[i] = sat8(y_zp + eg_mbqm(av + bv, y_mult, y_shift), act_min, act_max);
    }
}

void clamp_s8(int8_t *y, const int8_t *x, int n, int act_min, int act_max)
{
    for (int i = 0; i < n; i++)
        y[i] = sat8(x[i], act_min, act_max);
}

/* round half to even without libm: float values beyond 2^23 are already integers */
static inline float round_even(float v)
{
    if (v >= 8388608.0f || v <= -8388608.0f)
        return v;
    float r = (float)(int32_t)(v >= 0 ? v + 0.5f : v - 0.5f);
    if (r - v == 0.5f || v - r == 0.5f) { /* a tie: pick the even neighbour */
        int32_t ri = (int32_t)r;
        if (ri & 1)
            r = v >= 0 ? r - 1.0f : r + 1.0f;
    }
    return r;
}

void quantize_f32_s8(int8_t *restrict y, const float *restrict x, int n, float inv_scale, int zp)
{
    for (int i = 0; i < n; i++) {
        float q = round_even(x[i] * inv_scale) + (float)zp;
        y[i] = (int8_t)(q < -128.0f ? -128 : q > 127.0f ? 127 : (int32_t)q);
    }
}

void dequantize_s8_f32(float *restrict y, const int8_t *restrict x, int n, float scale, int zp)
{
    for (int i = 0; i < n; i++)
        y[i] = scale * (float)((int32_t)x[i] - zp);
}

void dequantize_s8_f32_rows(float *restrict y, const int8_t *restrict x, int rows, int inner,
                            const float *restrict scale)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++)
            y[(ptrdiff_t)r * inner + i] = scale[r] * (float)x[(ptrdiff_t)r * inner + i];
}

void qsat_grad_f32(float *dx, const float *dy, const int8_t *y, int n, int lo, int hi)
{
    for (int i = 0; i < n; i++)
        dx[i] = (y[i] > lo && y[i] < hi) ? dy[i] : 0.0f;
}

void conv2d_s8w_f32_bw_input(float *restrict dx, const float *restrict dy, const int8_t *restrict w,
                             const float *restrict scale, int N, int C, int H, int W, int M, int OH, int OW,
                             int KH, int KW, int sh, int sw, int pt, int pl, int dil_h, int dil_w, int G)
{
    /* As conv2d_f32_bw_input (eg_conv.c) with the real weight scale[m] * w[m,c,kh,kw]:
     * dL/dx[n,ci,ih,iw] = sum over (m in group, kh, kw) hitting (ih, iw) of dy[n,m,oh,ow] * scale[m] * w. */
    const int Cg = C / G, Mg = M / G;
    const ptrdiff_t HW = (ptrdiff_t)H * W, OHW = (ptrdiff_t)OH * OW, KK = (ptrdiff_t)KH * KW;
    for (int n = 0; n < N; n++)
        for (int ci = 0; ci < C; ci++) {
            const int g = ci / Cg, c = ci - g * Cg;
            const float *dyg = dy + ((ptrdiff_t)n * M + (ptrdiff_t)g * Mg) * OHW;
            const int8_t *wg = w + ((ptrdiff_t)g * Mg * Cg + c) * KK;
            const float *sg = scale + g * Mg;
            float *dxc = dx + ((ptrdiff_t)n * C + ci) * HW;
            for (int ih = 0; ih < H; ih++)
                for (int iw = 0; iw < W; iw++) {
                    float acc = 0.0f;
                    for (int kh = 0; kh < KH; kh++) {
                        const int th = ih + pt - kh * dil_h;
                        if (th < 0 || th % sh != 0 || th / sh >= OH)
                            continue;
                        const int oh = th / sh;
                        for (int kw = 0; kw < KW; kw++) {
                            const int tw = iw + pl - kw * dil_w;
                            if (tw < 0 || tw % sw != 0 || tw / sw >= OW)
                                continue;
                            const ptrdiff_t o = (ptrdiff_t)oh * OW + tw / sw;
                            const int8_t *wk = wg + kh * KW + kw;
                            for (int mg = 0; mg < Mg; mg++)
                                acc += dyg[mg * OHW + o] * (sg[mg] * (float)wk[mg * Cg * KK]);
                        }
                    }
                    dxc[(ptrdiff_t)ih * W + iw] = acc;
                }
        }
}

void linear_s8w_f32_bw_input(float *restrict dx, const float *restrict dy, const int8_t *restrict w,
                             const float *restrict scale, int B, int N, int K)
{
    for (int r = 0; r < B; r++) {
        float *dxr = dx + (ptrdiff_t)r * K;
        for (int k = 0; k < K; k++)
            dxr[k] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float g = dy[(ptrdiff_t)r * N + n] * scale[n];
            const int8_t *wn = w + (ptrdiff_t)n * K;
            for (int k = 0; k < K; k++)
                dxr[k] += g * (float)wn[k];
        }
    }
}

/* round half away from zero, saturating to [lo, hi] (both well inside int32) */
static inline int32_t round_sat(float v, float lo, float hi)
{
    if (v <= lo)
        return (int32_t)lo;
    if (v >= hi)
        return (int32_t)hi;
    return (int32_t)(v >= 0 ? v + 0.5f : v - 0.5f);
}

/* t = gscale*g (+ momentum); m = base - lr*t; returns m (the caller rounds and saturates) */
static inline float qstep(float base, float *v, float g, float gscale, float lr, float mu)
{
    float t = gscale * g;
    if (v) {
        *v = mu * *v + t;
        t = *v;
    }
    return base - lr * t;
}

void qupdate_s8(int8_t *w, float *master, float *v, const float *g, const float *gscale, int rows, int inner,
                int w_stride, float lr, float mu)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++) {
            ptrdiff_t k = (ptrdiff_t)r * inner + i;
            int8_t *wi = w + (ptrdiff_t)r * w_stride + i;
            float m = qstep(master ? master[k] : (float)*wi, v ? v + k : NULL, g[k], gscale[r], lr, mu);
            if (master)
                master[k] = m;
            *wi = (int8_t)round_sat(m, -127.0f, 127.0f); /* the symmetric weight range */
        }
}

void qupdate_s32(int32_t *w, float *master, float *v, const float *g, const float *gscale, int rows, int inner,
                 int w_stride, float lr, float mu)
{
    for (int r = 0; r < rows; r++)
        for (int i = 0; i < inner; i++) {
            ptrdiff_t k = (ptrdiff_t)r * inner + i;
            int32_t *wi = w + (ptrdiff_t)r * w_stride + i;
            float m = qstep(master ? master[k] : (float)*wi, v ? v + k : NULL, g[k], gscale[r], lr, mu);
            if (master)
                master[k] = m;
            *wi = round_sat(m, -2147483520.0f, 2147483520.0f); /* largest floats inside int32 */
        }
}
