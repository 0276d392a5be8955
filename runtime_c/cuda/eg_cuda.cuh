/* eg_cuda.cuh — fp32 training kernels as CUDA kernels, for the generated model.cu (jetson).
 *
 * Each kernel has a host wrapper with the reference kernel's name and arguments plus `_cuda`
 * (runtime_c/KERNELS.md is the contract); the wrapper launches it on the default stream. Pointer
 * arguments are device pointers; shape/stride arrays are host arrays, passed to the kernel by
 * value (eg_dims). Simple and correct first: one thread per output element (convolutions, GEMM,
 * elementwise, activations, strided copies, batch norm, pooling forward, broadcast, reduce_sum:
 * each sums its own inputs), one thread per softmax row, per batch-norm channel (parameter
 * gradients) and per (n, c) plane where the reference scatters (pooling backward), one thread
 * for the loss.
 * Every output element is written by exactly one thread: no atomics, deterministic results.
 *
 * Without nvcc (__CUDACC__ undefined) the same source compiles as C++ for the host: EG_FOR is a
 * plain loop and a launch a call, so the tests run the generated CUDA step on the CPU against
 * PyTorch (tests/test_jetson_cuda.py); nvcc -arch=sm_87 compiles it for the Orin's GPU.
 */
#ifndef EG_CUDA_CUH
#define EG_CUDA_CUH

#include <float.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EG_MAX_NDIM 6

#ifdef __CUDACC__
#include <cuda_runtime.h>
#define EG_KERNEL __global__ void
#define EG_DEV __device__
#define EG_HD __host__ __device__
#define EG_FOR(i, n)                                                                          \
    for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < (ptrdiff_t)(n); \
         i += (ptrdiff_t)blockDim.x * gridDim.x)
#define EG_THREADS 256
static inline int eg_blocks(ptrdiff_t n)
{
    ptrdiff_t b = (n + EG_THREADS - 1) / EG_THREADS;
    return b < 1 ? 1 : b > 65535 ? 65535 : (int)b;
}
#define EG_LAUNCH(n, kernel, ...) kernel<<<eg_blocks(n), EG_THREADS>>>(__VA_ARGS__)
#define EG_EXPF expf
#define EG_LOGF logf
#define EG_SQRTF sqrtf
#define EG_TANHF tanhf
/* both tails keep their relative accuracy, as eg_sigmoidf (eg_math.h) */
static inline __device__ float eg_sigmoid_dev(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    const float e = expf(x);
    return e / (1.0f + e);
}
#define EG_SIGMOIDF eg_sigmoid_dev

static inline void eg_cuda_check(cudaError_t e, const char *what)
{
    if (e != cudaSuccess) {
        fprintf(stderr, "edgegrad: CUDA error in %s: %s\n", what, cudaGetErrorString(e));
        exit(1);
    }
}
static inline float *eg_dev_alloc(size_t floats)
{
    void *p = NULL;
    eg_cuda_check(cudaMalloc(&p, floats * 4 + 16), "cudaMalloc");
    eg_cuda_check(cudaMemset(p, 0, floats * 4 + 16), "cudaMemset");
    return (float *)p;
}
static inline void eg_h2d(void *dev, const void *host, size_t bytes)
{
    eg_cuda_check(cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice), "cudaMemcpy to the GPU");
}
static inline void eg_d2h(void *host, const void *dev, size_t bytes)
{
    eg_cuda_check(cudaMemcpy(host, dev, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy from the GPU");
}
static inline void eg_dev_sync(void) { eg_cuda_check(cudaDeviceSynchronize(), "a kernel"); }

#else /* host emulation of the same kernels: serial loops, host memory */

#include "eg_math.h"
#define EG_KERNEL static void
#define EG_DEV
#define EG_HD
#define EG_FOR(i, n) for (ptrdiff_t i = 0; i < (ptrdiff_t)(n); i++)
#define EG_LAUNCH(n, kernel, ...) kernel(__VA_ARGS__)
#define EG_EXPF eg_expf
#define EG_LOGF eg_logf
#define EG_SQRTF eg_sqrtf
#define EG_TANHF eg_tanhf
#define EG_SIGMOIDF eg_sigmoidf
static inline float *eg_dev_alloc(size_t floats)
{
    float *p = (float *)calloc(floats + 4, 4); /* once, in eg_init: never in a step */
    if (!p) {
        fprintf(stderr, "edgegrad: out of memory for the device arena\n");
        exit(1);
    }
    return p;
}
static inline void eg_h2d(void *dev, const void *host, size_t bytes) { memcpy(dev, host, bytes); }
static inline void eg_d2h(void *host, const void *dev, size_t bytes) { memcpy(host, dev, bytes); }
static inline void eg_dev_sync(void) {}
#endif

/* shapes and strides by value */
typedef struct { int n; int shape[EG_MAX_NDIM], s0[EG_MAX_NDIM], s1[EG_MAX_NDIM]; } eg_dims;

static inline eg_dims eg_make_dims(int ndim, const int *shape, const int *s0, const int *s1)
{
    eg_dims d;
    memset(&d, 0, sizeof d);
    d.n = ndim;
    for (int i = 0; i < ndim; i++) {
        d.shape[i] = shape[i];
        d.s0[i] = s0 ? s0[i] : 0;
        d.s1[i] = s1 ? s1[i] : 0;
    }
    return d;
}

static inline EG_HD ptrdiff_t eg_numel(int ndim, const int *shape)
{
    ptrdiff_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= shape[i];
    return n;
}

/* ---- convolution: y[N,M,OH,OW], x[N,C,H,W], w[M,C/G,KH,KW] -------------------------------- */

EG_KERNEL eg_k_conv_fw(float *y, const float *x, const float *w, const float *b, int N, int C,
                       int H, int W, int M, int OH, int OW, int KH, int KW, int sh, int sw,
                       int pt, int pl, int dh, int dw, int G)
{
    const int Cg = C / G, Mg = M / G;
    EG_FOR(i, (ptrdiff_t)N * M * OH * OW) {
        const int ow = (int)(i % OW), oh = (int)(i / OW % OH), m = (int)(i / ((ptrdiff_t)OW * OH) % M);
        const int n = (int)(i / ((ptrdiff_t)OW * OH * M)), g = m / Mg;
        float acc = 0.0f;
        for (int c = 0; c < Cg; c++) {
            const float *xc = x + ((ptrdiff_t)n * C + g * Cg + c) * H * W;
            const float *wc = w + ((ptrdiff_t)m * Cg + c) * KH * KW;
            for (int kh = 0; kh < KH; kh++) {
                const int ih = oh * sh - pt + kh * dh;
                if (ih < 0 || ih >= H)
                    continue;
                for (int kw = 0; kw < KW; kw++) {
                    const int iw = ow * sw - pl + kw * dw;
                    if (iw >= 0 && iw < W)
                        acc += xc[(ptrdiff_t)ih * W + iw] * wc[kh * KW + kw];
                }
            }
        }
        y[i] = b ? acc + b[m] : acc;
    }
}

static inline void conv2d_f32_fw_cuda(float *y, const float *x, const float *w, const float *b, int N,
                               int C, int H, int W, int M, int OH, int OW, int KH, int KW, int sh,
                               int sw, int pt, int pl, int dh, int dw, int G)
{
    EG_LAUNCH((ptrdiff_t)N * M * OH * OW, eg_k_conv_fw, y, x, w, b, N, C, H, W, M, OH, OW, KH, KW,
              sh, sw, pt, pl, dh, dw, G);
}

/* dx[n,c,ih,iw] = sum over the outputs (m in c's group, oh, ow) whose window tap (kh, kw)
 * lands on (ih, iw): oh*sh - pt + kh*dh == ih, of dy[n,m,oh,ow] * w[m,c%Cg,kh,kw] */
EG_KERNEL eg_k_conv_bw_input(float *dx, const float *dy, const float *w, int N, int C, int H,
                             int W, int M, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                             int pl, int dh, int dw, int G)
{
    const int Cg = C / G, Mg = M / G;
    EG_FOR(i, (ptrdiff_t)N * C * H * W) {
        const int iw = (int)(i % W), ih = (int)(i / W % H), c = (int)(i / ((ptrdiff_t)W * H) % C);
        const int n = (int)(i / ((ptrdiff_t)W * H * C)), g = c / Cg, cl = c % Cg;
        float acc = 0.0f;
        for (int mm = 0; mm < Mg; mm++) {
            const int m = g * Mg + mm;
            const float *dym = dy + ((ptrdiff_t)n * M + m) * OH * OW;
            const float *wm = w + ((ptrdiff_t)m * Cg + cl) * KH * KW;
            for (int kh = 0; kh < KH; kh++) {
                const int th = ih + pt - kh * dh;
                if (th < 0 || th % sh)
                    continue;
                const int oh = th / sh;
                if (oh >= OH)
                    continue;
                for (int kw = 0; kw < KW; kw++) {
                    const int tw = iw + pl - kw * dw;
                    if (tw < 0 || tw % sw)
                        continue;
                    const int ow = tw / sw;
                    if (ow < OW)
                        acc += dym[(ptrdiff_t)oh * OW + ow] * wm[kh * KW + kw];
                }
            }
        }
        dx[i] = acc;
    }
}

static inline void conv2d_f32_bw_input_cuda(float *dx, const float *dy, const float *w, int N, int C,
                                     int H, int W, int M, int OH, int OW, int KH, int KW, int sh,
                                     int sw, int pt, int pl, int dh, int dw, int G)
{
    EG_LAUNCH((ptrdiff_t)N * C * H * W, eg_k_conv_bw_input, dx, dy, w, N, C, H, W, M, OH, OW, KH,
              KW, sh, sw, pt, pl, dh, dw, G);
}

/* dwt[m,c,kh,kw] (compact [M_upd,Cg_upd,KH,KW]) = sum_{n,oh,ow} dy[n,m,oh,ow] * x[n,ci,ih,iw],
 * ci = g*Cg + c, x stored with Cx channels */
EG_KERNEL eg_k_conv_bw_weight(float *dwt, const float *dy, const float *x, int N, int C, int H,
                              int W, int M, int OH, int OW, int KH, int KW, int sh, int sw,
                              int pt, int pl, int dh, int dw, int G, int M_upd, int Cg_upd,
                              int Cx)
{
    const int Cg = C / G, Mg = M / G;
    EG_FOR(i, (ptrdiff_t)M_upd * Cg_upd * KH * KW) {
        const int kw = (int)(i % KW), kh = (int)(i / KW % KH), c = (int)(i / (KW * KH) % Cg_upd);
        const int m = (int)(i / ((ptrdiff_t)KW * KH * Cg_upd)), ci = (m / Mg) * Cg + c;
        float acc = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *dym = dy + ((ptrdiff_t)n * M + m) * OH * OW;
            const float *xc = x + ((ptrdiff_t)n * Cx + ci) * H * W;
            for (int oh = 0; oh < OH; oh++) {
                const int ih = oh * sh - pt + kh * dh;
                if (ih < 0 || ih >= H)
                    continue;
                for (int ow = 0; ow < OW; ow++) {
                    const int iw = ow * sw - pl + kw * dw;
                    if (iw >= 0 && iw < W)
                        acc += dym[(ptrdiff_t)oh * OW + ow] * xc[(ptrdiff_t)ih * W + iw];
                }
            }
        }
        dwt[i] = acc;
    }
}

static inline void conv2d_f32_bw_weight_cuda(float *dwt, const float *dy, const float *x, int N, int C,
                                      int H, int W, int M, int OH, int OW, int KH, int KW, int sh,
                                      int sw, int pt, int pl, int dh, int dw, int G, int M_upd,
                                      int Cg_upd, int Cx)
{
    EG_LAUNCH((ptrdiff_t)M_upd * Cg_upd * KH * KW, eg_k_conv_bw_weight, dwt, dy, x, N, C, H, W, M,
              OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, G, M_upd, Cg_upd, Cx);
}

/* ---- GEMM: y[i] = alpha * op(a_i) op(b_i) + beta * C ---------------------------------------- */

EG_KERNEL eg_k_gemm(float *y, const float *a, const float *b, const float *c, int batch, int M,
                    int N, int K, int ta, int tb, float alpha, float beta, int a_bs, int b_bs,
                    int c_sm, int c_sn)
{
    EG_FOR(i, (ptrdiff_t)batch * M * N) {
        const int n = (int)(i % N), m = (int)(i / N % M), bi = (int)(i / ((ptrdiff_t)N * M));
        const float *ai = a + (ptrdiff_t)bi * a_bs, *bb = b + (ptrdiff_t)bi * b_bs;
        float acc = 0.0f;
        for (int k = 0; k < K; k++)
            acc += (ta ? ai[(ptrdiff_t)k * M + m] : ai[(ptrdiff_t)m * K + k]) *
                   (tb ? bb[(ptrdiff_t)n * K + k] : bb[(ptrdiff_t)k * N + n]);
        float v = alpha * acc;
        if (c && beta != 0.0f)
            v += beta * c[(ptrdiff_t)m * c_sm + (ptrdiff_t)n * c_sn];
        y[i] = v;
    }
}

static inline void gemm_f32_cuda(float *y, const float *a, const float *b, const float *c, int batch,
                          int M, int N, int K, int ta, int tb, float alpha, float beta, int a_bs,
                          int b_bs, int c_sm, int c_sn)
{
    EG_LAUNCH((ptrdiff_t)batch * M * N, eg_k_gemm, y, a, b, c, batch, M, N, K, ta, tb, alpha, beta,
              a_bs, b_bs, c_sm, c_sn);
}

/* ---- elementwise --------------------------------------------------------------------------- */

#define EG_BINARY(name, expr)                                                            \
    EG_KERNEL eg_k_##name(float *y, const float *a, const float *b, int n)               \
    {                                                                                    \
        EG_FOR(i, n) {                                                                   \
            const float av = a[i], bv = b[i];                                            \
            y[i] = expr;                                                                 \
        }                                                                                \
    }                                                                                    \
    static inline void name##_cuda(float *y, const float *a, const float *b, int n)             \
    {                                                                                    \
        EG_LAUNCH(n, eg_k_##name, y, a, b, n);                                           \
    }                                                                                    \
    EG_KERNEL eg_k_##name##_bcast(float *y, const float *a, const float *b, eg_dims d)   \
    {                                                                                    \
        EG_FOR(i, eg_numel(d.n, d.shape)) {                                              \
            ptrdiff_t r = i, oa = 0, ob = 0;                                             \
            for (int k = d.n - 1; k >= 0; k--) {                                         \
                const int ix = (int)(r % d.shape[k]);                                    \
                r /= d.shape[k];                                                         \
                oa += (ptrdiff_t)ix * d.s0[k];                                           \
                ob += (ptrdiff_t)ix * d.s1[k];                                           \
            }                                                                            \
            const float av = a[oa], bv = b[ob];                                          \
            y[i] = expr;                                                                 \
        }                                                                                \
    }                                                                                    \
    static inline void name##_bcast_cuda(float *y, const float *a, const float *b, int ndim,    \
                                  const int *shape, const int *sa, const int *sb)        \
    {                                                                                    \
        EG_LAUNCH(eg_numel(ndim, shape), eg_k_##name##_bcast, y, a, b,                   \
                  eg_make_dims(ndim, shape, sa, sb));                                    \
    }

EG_BINARY(add_f32, av + bv)
EG_BINARY(sub_f32, av - bv)
EG_BINARY(mul_f32, av * bv)
EG_BINARY(div_f32, av / bv)

#define EG_UNARY(name, params, args, expr)                          \
    EG_KERNEL eg_k_##name(float *y, const float *x, int n params)    \
    {                                                                \
        EG_FOR(i, n) { y[i] = expr; }                                \
    }                                                                \
    static inline void name##_cuda(float *y, const float *x, int n params)  \
    {                                                                \
        EG_LAUNCH(n, eg_k_##name, y, x, n args);                     \
    }

#define EG_COMMA ,
EG_UNARY(scale_f32, EG_COMMA float alpha, EG_COMMA alpha, alpha * x[i])
EG_UNARY(copy_f32, , , x[i])
EG_UNARY(relu_f32_fw, , , x[i] > 0.0f ? x[i] : 0.0f)
EG_UNARY(clip_f32_fw, EG_COMMA float lo EG_COMMA float hi, EG_COMMA lo EG_COMMA hi,
         (x[i] < lo ? lo : x[i]) > hi ? hi : (x[i] < lo ? lo : x[i]))

/* activation gradients: dx = dy * f'(v), v the saved input or output (as the reference kernel) */
#define EG_GRAD(name, params, args, expr)                                              \
    EG_KERNEL eg_k_##name(float *dx, const float *dy, const float *v, int n params)    \
    {                                                                                  \
        EG_FOR(i, n) { dx[i] = expr; }                                                 \
    }                                                                                  \
    static inline void name##_cuda(float *dx, const float *dy, const float *v, int n params) \
    {                                                                                  \
        EG_LAUNCH(n, eg_k_##name, dx, dy, v, n args);                                  \
    }

static inline EG_HD float eg_hardsigmoid(float x, float alpha, float beta)
{
    const float v = alpha * x + beta;
    const float r = v > 0.0f ? v : 0.0f;
    return r < 1.0f ? r : 1.0f;
}
static inline EG_HD float eg_hardswish(float x)
{
    float r = x + 3.0f;
    r = r > 0.0f ? r : 0.0f;
    r = r < 6.0f ? r : 6.0f;
    return x * r / 6.0f;
}

EG_UNARY(leakyrelu_f32_fw, EG_COMMA float alpha, EG_COMMA alpha, x[i] > 0.0f ? x[i] : alpha * x[i])
EG_UNARY(sigmoid_f32_fw, , , EG_SIGMOIDF(x[i]))
EG_UNARY(tanh_f32_fw, , , EG_TANHF(x[i]))
EG_UNARY(hardsigmoid_f32_fw, EG_COMMA float alpha EG_COMMA float beta, EG_COMMA alpha EG_COMMA beta,
         eg_hardsigmoid(x[i], alpha, beta))
EG_UNARY(hardswish_f32_fw, , , eg_hardswish(x[i]))

/* leaky: v = x;  sigmoid, tanh: v = y;  hardsigmoid, hardswish: v = x (torch's branches) */
EG_GRAD(leakyrelu_f32_bw, EG_COMMA float alpha, EG_COMMA alpha, v[i] > 0.0f ? dy[i] : alpha * dy[i])
EG_GRAD(sigmoid_f32_bw, , , dy[i] * v[i] * (1.0f - v[i]))
EG_GRAD(tanh_f32_bw, , , dy[i] * (1.0f - v[i] * v[i]))
EG_GRAD(hardsigmoid_f32_bw, EG_COMMA float alpha EG_COMMA float beta, EG_COMMA alpha EG_COMMA beta,
        (alpha * v[i] + beta > 0.0f && alpha * v[i] + beta < 1.0f) ? alpha * dy[i] : 0.0f)
EG_GRAD(hardswish_f32_bw, , ,
        v[i] <= -3.0f ? 0.0f : (v[i] < 3.0f ? dy[i] * (v[i] / 3.0f + 0.5f) : dy[i]))
/* PReLU's slope gradient terms dy * x where x < 0 (summed onto the slope by reduce_sum) */
EG_GRAD(prelu_f32_bw_slope_terms, , , v[i] < 0.0f ? dy[i] * v[i] : 0.0f)

/* offset of element i (row-major over d.shape) along the strides s */
static inline EG_HD ptrdiff_t eg_offset(ptrdiff_t i, const eg_dims &d, const int *s)
{
    ptrdiff_t o = 0;
    for (int k = d.n - 1; k >= 0; k--) {
        o += (ptrdiff_t)(i % d.shape[k]) * s[k];
        i /= d.shape[k];
    }
    return o;
}

/* PReLU, slope broadcast over x along the strides ss: y = x > 0 ? x : slope * x */
EG_KERNEL eg_k_prelu_fw(float *y, const float *x, const float *slope, eg_dims d)
{
    EG_FOR(i, eg_numel(d.n, d.shape)) {
        y[i] = x[i] > 0.0f ? x[i] : slope[eg_offset(i, d, d.s0)] * x[i];
    }
}
static inline void prelu_f32_fw_cuda(float *y, const float *x, const float *slope, int ndim, const int *shape,
                                     const int *ss)
{
    EG_LAUNCH(eg_numel(ndim, shape), eg_k_prelu_fw, y, x, slope, eg_make_dims(ndim, shape, ss, NULL));
}

/* dx = dy * (x > 0 ? 1 : slope) */
EG_KERNEL eg_k_prelu_bw_input(float *dx, const float *dy, const float *x, const float *slope, eg_dims d)
{
    EG_FOR(i, eg_numel(d.n, d.shape)) {
        dx[i] = x[i] > 0.0f ? dy[i] : slope[eg_offset(i, d, d.s0)] * dy[i];
    }
}
static inline void prelu_f32_bw_input_cuda(float *dx, const float *dy, const float *x, const float *slope, int ndim,
                                           const int *shape, const int *ss)
{
    EG_LAUNCH(eg_numel(ndim, shape), eg_k_prelu_bw_input, dx, dy, x, slope, eg_make_dims(ndim, shape, ss, NULL));
}

/* ---- softmax over the middle axis of [outer, n, inner]: one thread per (o, j) row ----------- */

EG_KERNEL eg_k_softmax_fw(float *y, const float *x, int outer, int n, int inner)
{
    EG_FOR(r, (ptrdiff_t)outer * inner) {
        const ptrdiff_t base = r / inner * n * inner + r % inner; /* element (o, 0, j) */
        const float *xs = x + base;
        float *ys = y + base;
        float mx = xs[0];
        for (int i = 1; i < n; i++)
            mx = xs[(ptrdiff_t)i * inner] > mx ? xs[(ptrdiff_t)i * inner] : mx;
        float sum = 0.0f;
        for (int i = 0; i < n; i++) {
            const float e = EG_EXPF(xs[(ptrdiff_t)i * inner] - mx);
            ys[(ptrdiff_t)i * inner] = e;
            sum += e;
        }
        for (int i = 0; i < n; i++)
            ys[(ptrdiff_t)i * inner] /= sum;
    }
}
static inline void softmax_f32_fw_cuda(float *y, const float *x, int outer, int n, int inner)
{
    EG_LAUNCH((ptrdiff_t)outer * inner, eg_k_softmax_fw, y, x, outer, n, inner);
}

/* dx_k = y_k * (dy_k - sum_i dy_i y_i) */
EG_KERNEL eg_k_softmax_bw(float *dx, const float *dy, const float *y, int outer, int n, int inner)
{
    EG_FOR(r, (ptrdiff_t)outer * inner) {
        const ptrdiff_t base = r / inner * n * inner + r % inner;
        float dot = 0.0f;
        for (int i = 0; i < n; i++)
            dot += dy[base + (ptrdiff_t)i * inner] * y[base + (ptrdiff_t)i * inner];
        for (int i = 0; i < n; i++) {
            const ptrdiff_t k = base + (ptrdiff_t)i * inner;
            dx[k] = y[k] * (dy[k] - dot);
        }
    }
}
static inline void softmax_f32_bw_cuda(float *dx, const float *dy, const float *y, int outer, int n, int inner)
{
    EG_LAUNCH((ptrdiff_t)outer * inner, eg_k_softmax_bw, dx, dy, y, outer, n, inner);
}

/* ---- batch norm with frozen statistics, x/y [N, C, HW] ------------------------------------- */

/* y = (x - mean) * k + bias, k = scale / sqrt(var + eps) */
EG_KERNEL eg_k_bn_fw(float *y, const float *x, const float *scale, const float *bias, const float *mean,
                     const float *var, float eps, int N, int C, int HW)
{
    EG_FOR(i, (ptrdiff_t)N * C * HW) {
        const int c = (int)(i / HW % C);
        const float k = scale[c] / EG_SQRTF(var[c] + eps);
        y[i] = (x[i] - mean[c]) * k + bias[c];
    }
}
static inline void batchnorm_f32_fw_cuda(float *y, const float *x, const float *scale, const float *bias,
                                         const float *mean, const float *var, float eps, int N, int C, int HW)
{
    EG_LAUNCH((ptrdiff_t)N * C * HW, eg_k_bn_fw, y, x, scale, bias, mean, var, eps, N, C, HW);
}

/* dx = dy * k */
EG_KERNEL eg_k_bn_bw_input(float *dx, const float *dy, const float *scale, const float *var, float eps, int N,
                           int C, int HW)
{
    EG_FOR(i, (ptrdiff_t)N * C * HW) {
        const int c = (int)(i / HW % C);
        dx[i] = dy[i] * (scale[c] / EG_SQRTF(var[c] + eps));
    }
}
static inline void batchnorm_f32_bw_input_cuda(float *dx, const float *dy, const float *scale, const float *var,
                                               float eps, int N, int C, int HW)
{
    EG_LAUNCH((ptrdiff_t)N * C * HW, eg_k_bn_bw_input, dx, dy, scale, var, eps, N, C, HW);
}

/* dscale[c] = inv_std * sum dy * (x - mean), dbias[c] = sum dy (either may be NULL): one
 * thread per channel, summing in the reference's order */
EG_KERNEL eg_k_bn_bw_params(float *dscale, float *dbias, const float *dy, const float *x, const float *mean,
                            const float *var, float eps, int N, int C, int HW)
{
    EG_FOR(c, C) {
        const float inv_std = 1.0f / EG_SQRTF(var[c] + eps), mu = mean[c];
        float sum_dy = 0.0f, sum_dy_xc = 0.0f;
        for (int n = 0; n < N; n++) {
            const ptrdiff_t o = ((ptrdiff_t)n * C + c) * HW;
            for (int s = 0; s < HW; s++) {
                sum_dy += dy[o + s];
                sum_dy_xc += dy[o + s] * (x[o + s] - mu);
            }
        }
        if (dscale)
            dscale[c] = sum_dy_xc * inv_std;
        if (dbias)
            dbias[c] = sum_dy;
    }
}
static inline void batchnorm_f32_bw_params_cuda(float *dscale, float *dbias, const float *dy, const float *x,
                                                const float *mean, const float *var, float eps, int N, int C,
                                                int HW)
{
    EG_LAUNCH(C, eg_k_bn_bw_params, dscale, dbias, dy, x, mean, var, eps, N, C, HW);
}

EG_KERNEL eg_k_fill(float *y, int n, float v) { EG_FOR(i, n) { y[i] = v; } }
static inline void fill_f32_cuda(float *y, int n, float v) { EG_LAUNCH(n, eg_k_fill, y, n, v); }

EG_KERNEL eg_k_accumulate(float *y, const float *x, int n) { EG_FOR(i, n) { y[i] += x[i]; } }
static inline void accumulate_f32_cuda(float *y, const float *x, int n) { EG_LAUNCH(n, eg_k_accumulate, y, x, n); }

/* dx = dy * [y > 0] */
EG_KERNEL eg_k_relu_bw(float *dx, const float *dy, const float *y, int n)
{
    EG_FOR(i, n) { dx[i] = y[i] > 0.0f ? dy[i] : 0.0f; }
}
static inline void relu_f32_bw_cuda(float *dx, const float *dy, const float *y, int n)
{
    EG_LAUNCH(n, eg_k_relu_bw, dx, dy, y, n);
}

/* dx = dy * [lo < y < hi], from the output y as clip_f32_bw (torch's hardtanh_backward) */
EG_KERNEL eg_k_clip_bw(float *dx, const float *dy, const float *y, int n, float lo, float hi)
{
    EG_FOR(i, n) { dx[i] = (y[i] > lo && y[i] < hi) ? dy[i] : 0.0f; }
}
static inline void clip_f32_bw_cuda(float *dx, const float *dy, const float *y, int n, float lo, float hi)
{
    EG_LAUNCH(n, eg_k_clip_bw, dx, dy, y, n, lo, hi);
}

/* ---- shapes -------------------------------------------------------------------------------- */

/* y contiguous with shape: y[idx] = alpha * x[idx . sx] */
EG_KERNEL eg_k_broadcast(float *y, const float *x, eg_dims d, float alpha)
{
    EG_FOR(i, eg_numel(d.n, d.shape)) {
        ptrdiff_t r = i, ox = 0;
        for (int k = d.n - 1; k >= 0; k--) {
            ox += (ptrdiff_t)(r % d.shape[k]) * d.s0[k];
            r /= d.shape[k];
        }
        y[i] = alpha * x[ox];
    }
}
static inline void broadcast_f32_cuda(float *y, const float *x, int ndim, const int *shape, const int *sx,
                               float alpha)
{
    EG_LAUNCH(eg_numel(ndim, shape), eg_k_broadcast, y, x, eg_make_dims(ndim, shape, sx, NULL), alpha);
}

/* y[idx . sy] = x[idx . sx] over every idx of shape (slice, transpose, concat, pad) */
EG_KERNEL eg_k_copy_strided(float *y, const float *x, eg_dims d)
{
    EG_FOR(i, eg_numel(d.n, d.shape)) { y[eg_offset(i, d, d.s0)] = x[eg_offset(i, d, d.s1)]; }
}
static inline void copy_strided_f32_cuda(float *y, const float *x, int ndim, const int *shape, const int *sy,
                                         const int *sx)
{
    EG_LAUNCH(eg_numel(ndim, shape), eg_k_copy_strided, y, x, eg_make_dims(ndim, shape, sy, sx));
}

/* y[idx . sy] += x[idx . sx] over every idx of shape, y zeroed first. The dims with sy != 0 are
 * kept (y is row-major over them, ny elements); one thread per element of y walks the reduced
 * dims (sy == 0) in row-major order: the reference's order of terms, no atomics. */
EG_KERNEL eg_k_reduce_sum(float *y, const float *x, eg_dims d, int ny)
{
    int kept[EG_MAX_NDIM], red[EG_MAX_NDIM], nk = 0, nr = 0;
    ptrdiff_t nred = 1;
    for (int k = 0; k < d.n; k++) {
        if (d.s0[k] != 0) {
            kept[nk++] = k;
        } else {
            red[nr++] = k;
            nred *= d.shape[k];
        }
    }
    EG_FOR(t, ny) {
        ptrdiff_t r = t, oy = 0, ox0 = 0;
        for (int j = nk - 1; j >= 0; j--) {
            const int k = kept[j], ix = (int)(r % d.shape[k]);
            r /= d.shape[k];
            oy += (ptrdiff_t)ix * d.s0[k];
            ox0 += (ptrdiff_t)ix * d.s1[k];
        }
        float acc = 0.0f;
        for (ptrdiff_t q = 0; q < nred; q++) {
            ptrdiff_t rq = q, ox = ox0;
            for (int j = nr - 1; j >= 0; j--) {
                const int k = red[j];
                ox += (ptrdiff_t)(rq % d.shape[k]) * d.s1[k];
                rq /= d.shape[k];
            }
            acc += x[ox];
        }
        y[oy] = acc;
    }
}
static inline void reduce_sum_f32_cuda(float *y, const float *x, int ndim, const int *shape, const int *sy,
                                       const int *sx, int ny)
{
    ptrdiff_t nkept = 1;
    for (int k = 0; k < ndim; k++)
        nkept *= sy[k] != 0 ? shape[k] : 1;
    if (nkept != ny) { /* not the layout compiler/lower.py emits */
        fprintf(stderr, "edgegrad: reduce_sum_f32_cuda: %d outputs but %ld kept elements\n", ny, (long)nkept);
        exit(1);
    }
    EG_LAUNCH(ny, eg_k_reduce_sum, y, x, eg_make_dims(ndim, shape, sy, sx), ny);
}

/* ---- pooling: one thread per output (forward) or per (n, c) plane (backward scatter) ------- */

static inline EG_DEV int eg_pool_first(int off, int step) { return off >= 0 ? 0 : (-off + step - 1) / step; }

static inline EG_DEV int eg_pool_end(int off, int step, int lim, int n)
{
    if (off >= lim)
        return 0;
    const int e = (lim - off + step - 1) / step;
    return e < n ? e : n;
}

static inline EG_DEV int eg_pool_count(int i0, int K, int lo, int hi)
{
    const int a = i0 > lo ? i0 : lo, b = i0 + K < hi ? i0 + K : hi;
    return b > a ? b - a : 0;
}

EG_KERNEL eg_k_maxpool_fw(float *y, const float *x, int N, int C, int H, int W, int OH, int OW,
                          int KH, int KW, int sh, int sw, int pt, int pl, int dh, int dw)
{
    EG_FOR(i, (ptrdiff_t)N * C * OH * OW) {
        const int ow = (int)(i % OW), oh = (int)(i / OW % OH);
        const float *xp = x + i / ((ptrdiff_t)OW * OH) * H * W;
        const int ih0 = oh * sh - pt, iw0 = ow * sw - pl;
        const int kh0 = eg_pool_first(ih0, dh), kh1 = eg_pool_end(ih0, dh, H, KH);
        const int kw0 = eg_pool_first(iw0, dw), kw1 = eg_pool_end(iw0, dw, W, KW);
        float best = -FLT_MAX * 2.0f;
        for (int kh = kh0; kh < kh1; kh++)
            for (int kw = kw0; kw < kw1; kw++) {
                const float v = xp[(ptrdiff_t)(ih0 + kh * dh) * W + iw0 + kw * dw];
                best = v > best ? v : best;
            }
        y[i] = best;
    }
}
static inline void maxpool2d_f32_fw_cuda(float *y, const float *x, int N, int C, int H, int W, int OH,
                                  int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dh,
                                  int dw)
{
    EG_LAUNCH((ptrdiff_t)N * C * OH * OW, eg_k_maxpool_fw, y, x, N, C, H, W, OH, OW, KH, KW, sh, sw,
              pt, pl, dh, dw);
}

/* the gradient of each window goes to its first (row-major) maximum, as the reference */
EG_KERNEL eg_k_maxpool_bw(float *dx, const float *dy, const float *x, int N, int C, int H, int W,
                          int OH, int OW, int KH, int KW, int sh, int sw, int pt, int pl, int dh,
                          int dw)
{
    EG_FOR(p, (ptrdiff_t)N * C) {
        const float *xp = x + p * H * W, *dyp = dy + p * OH * OW;
        float *dxp = dx + p * H * W;
        for (ptrdiff_t j = 0; j < (ptrdiff_t)H * W; j++)
            dxp[j] = 0.0f;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, dh), kh1 = eg_pool_end(ih0, dh, H, KH);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, dw), kw1 = eg_pool_end(iw0, dw, W, KW);
                float best = -FLT_MAX * 2.0f;
                ptrdiff_t arg = -1;
                for (int kh = kh0; kh < kh1; kh++)
                    for (int kw = kw0; kw < kw1; kw++) {
                        const ptrdiff_t j = (ptrdiff_t)(ih0 + kh * dh) * W + iw0 + kw * dw;
                        if (xp[j] > best || arg < 0) {
                            best = xp[j];
                            arg = j;
                        }
                    }
                if (arg >= 0)
                    dxp[arg] += dyp[oh * OW + ow];
            }
        }
    }
}
static inline void maxpool2d_f32_bw_cuda(float *dx, const float *dy, const float *x, int N, int C, int H,
                                  int W, int OH, int OW, int KH, int KW, int sh, int sw, int pt,
                                  int pl, int dh, int dw)
{
    EG_LAUNCH((ptrdiff_t)N * C, eg_k_maxpool_bw, dx, dy, x, N, C, H, W, OH, OW, KH, KW, sh, sw, pt,
              pl, dh, dw);
}

EG_KERNEL eg_k_avgpool_fw(float *y, const float *x, int N, int C, int H, int W, int OH, int OW,
                          int KH, int KW, int sh, int sw, int pt, int pl, int pb, int pr, int cip)
{
    const int lo_h = cip ? -pt : 0, hi_h = cip ? H + pb : H, lo_w = cip ? -pl : 0, hi_w = cip ? W + pr : W;
    EG_FOR(i, (ptrdiff_t)N * C * OH * OW) {
        const int ow = (int)(i % OW), oh = (int)(i / OW % OH);
        const float *xp = x + i / ((ptrdiff_t)OW * OH) * H * W;
        const int ih0 = oh * sh - pt, iw0 = ow * sw - pl;
        const int kh0 = eg_pool_first(ih0, 1), kh1 = eg_pool_end(ih0, 1, H, KH);
        const int kw0 = eg_pool_first(iw0, 1), kw1 = eg_pool_end(iw0, 1, W, KW);
        const int cnt = eg_pool_count(ih0, KH, lo_h, hi_h) * eg_pool_count(iw0, KW, lo_w, hi_w);
        float acc = 0.0f;
        for (int kh = kh0; kh < kh1; kh++)
            for (int kw = kw0; kw < kw1; kw++)
                acc += xp[(ptrdiff_t)(ih0 + kh) * W + iw0 + kw];
        y[i] = cnt > 0 ? acc / (float)cnt : 0.0f;
    }
}
static inline void avgpool2d_f32_fw_cuda(float *y, const float *x, int N, int C, int H, int W, int OH,
                                  int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                                  int pr, int cip)
{
    EG_LAUNCH((ptrdiff_t)N * C * OH * OW, eg_k_avgpool_fw, y, x, N, C, H, W, OH, OW, KH, KW, sh, sw,
              pt, pl, pb, pr, cip);
}

EG_KERNEL eg_k_avgpool_bw(float *dx, const float *dy, int N, int C, int H, int W, int OH, int OW,
                          int KH, int KW, int sh, int sw, int pt, int pl, int pb, int pr, int cip)
{
    const int lo_h = cip ? -pt : 0, hi_h = cip ? H + pb : H, lo_w = cip ? -pl : 0, hi_w = cip ? W + pr : W;
    EG_FOR(p, (ptrdiff_t)N * C) {
        const float *dyp = dy + p * OH * OW;
        float *dxp = dx + p * H * W;
        for (ptrdiff_t j = 0; j < (ptrdiff_t)H * W; j++)
            dxp[j] = 0.0f;
        for (int oh = 0; oh < OH; oh++) {
            const int ih0 = oh * sh - pt;
            const int kh0 = eg_pool_first(ih0, 1), kh1 = eg_pool_end(ih0, 1, H, KH);
            const int cnt_h = eg_pool_count(ih0, KH, lo_h, hi_h);
            for (int ow = 0; ow < OW; ow++) {
                const int iw0 = ow * sw - pl;
                const int kw0 = eg_pool_first(iw0, 1), kw1 = eg_pool_end(iw0, 1, W, KW);
                const int cnt = cnt_h * eg_pool_count(iw0, KW, lo_w, hi_w);
                if (cnt == 0)
                    continue;
                const float share = dyp[oh * OW + ow] / (float)cnt;
                for (int kh = kh0; kh < kh1; kh++)
                    for (int kw = kw0; kw < kw1; kw++)
                        dxp[(ptrdiff_t)(ih0 + kh) * W + iw0 + kw] += share;
            }
        }
    }
}
static inline void avgpool2d_f32_bw_cuda(float *dx, const float *dy, int N, int C, int H, int W, int OH,
                                  int OW, int KH, int KW, int sh, int sw, int pt, int pl, int pb,
                                  int pr, int cip)
{
    EG_LAUNCH((ptrdiff_t)N * C, eg_k_avgpool_bw, dx, dy, N, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl,
              pb, pr, cip);
}

/* ---- losses (one thread: n is the number of classes) ---------------------------------------- */

EG_KERNEL eg_k_softmax_xent(float *loss, float *dlogits, const float *logits, int label, int n)
{
    EG_FOR(t, 1) {
        float mx = logits[0];
        for (int k = 1; k < n; k++)
            mx = logits[k] > mx ? logits[k] : mx;
        float sum = 0.0f;
        for (int k = 0; k < n; k++)
            sum += EG_EXPF(logits[k] - mx);
        loss[0] = (mx - logits[label]) + EG_LOGF(sum);
        if (dlogits) {
            for (int k = 0; k < n; k++)
                dlogits[k] = EG_EXPF(logits[k] - mx) / sum;
            dlogits[label] -= 1.0f;
        }
    }
}
static inline void softmax_xent_f32_cuda(float *loss, float *dlogits, const float *logits, int label, int n)
{
    EG_LAUNCH(1, eg_k_softmax_xent, loss, dlogits, logits, label, n);
}

EG_KERNEL eg_k_mse(float *loss, float *dy, const float *y, const float *target, int n)
{
    EG_FOR(t, 1) {
        float acc = 0.0f;
        for (int i = 0; i < n; i++) {
            const float d = y[i] - target[i];
            acc += d * d;
            if (dy)
                dy[i] = 2.0f * d / (float)n;
        }
        loss[0] = acc / (float)n;
    }
}
static inline void mse_f32_cuda(float *loss, float *dy, const float *y, const float *target, int n)
{
    EG_LAUNCH(1, eg_k_mse, loss, dy, y, target, n);
}

/* ---- optimizers: a block of rows x inner elements, rows w_stride apart in w ------------------ */

EG_KERNEL eg_k_sgd(float *w, const float *g, int rows, int inner, int w_stride, float lr)
{
    EG_FOR(i, (ptrdiff_t)rows * inner) { w[i / inner * w_stride + i % inner] -= lr * g[i]; }
}
static inline void sgd_f32_cuda(float *w, const float *g, int rows, int inner, int w_stride, float lr)
{
    EG_LAUNCH((ptrdiff_t)rows * inner, eg_k_sgd, w, g, rows, inner, w_stride, lr);
}

EG_KERNEL eg_k_momentum(float *w, float *v, const float *g, int rows, int inner, int w_stride,
                        float lr, float mu)
{
    EG_FOR(i, (ptrdiff_t)rows * inner) {
        const float vi = mu * v[i] + g[i];
        v[i] = vi;
        w[i / inner * w_stride + i % inner] -= lr * vi;
    }
}
static inline void momentum_f32_cuda(float *w, float *v, const float *g, int rows, int inner, int w_stride,
                              float lr, float mu)
{
    EG_LAUNCH((ptrdiff_t)rows * inner, eg_k_momentum, w, v, g, rows, inner, w_stride, lr, mu);
}

EG_KERNEL eg_k_adam(float *w, float *m, float *v, const float *g, int rows, int inner, int w_stride,
                    float lr, float beta1, float beta2, float eps, float bc1, float bc2)
{
    const float step = lr / bc1, inv_sqrt_bc2 = 1.0f / EG_SQRTF(bc2);
    EG_FOR(i, (ptrdiff_t)rows * inner) {
        const float gi = g[i];
        const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
        const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i / inner * w_stride + i % inner] -= step * mi / (EG_SQRTF(vi) * inv_sqrt_bc2 + eps);
    }
}
static inline void adam_f32_cuda(float *w, float *m, float *v, const float *g, int rows, int inner,
                          int w_stride, float lr, float beta1, float beta2, float eps, float bc1,
                          float bc2)
{
    EG_LAUNCH((ptrdiff_t)rows * inner, eg_k_adam, w, m, v, g, rows, inner, w_stride, lr, beta1, beta2,
              eps, bc1, bc2);
}

#endif /* EG_CUDA_CUH */
