/* eg_math.h — the few fp32 transcendental functions the kernels need, without libm.
 *
 * Each function reduces its argument to a small interval and evaluates a polynomial there
 * (Cephes-style coefficients, float arithmetic only: the MCU targets have an F unit but no D).
 * Measured against float64 over dense sweeps (tests/test_kernels.py) the relative error is
 * below 2 ulp for expf/logf/tanhf and about 2.5 ulp for sigmoidf.
 *
 *   eg_expf     overflow (x > 88.72) -> +inf, underflow (x < -103.97) -> +0, subnormal results
 *               rounded once; NaN -> NaN.
 *   eg_logf     x < 0 or NaN -> NaN, +0/-0 -> -inf, +inf -> +inf, subnormal inputs exact.
 *   eg_tanhf    odd; |x| > 9.02 -> +-1 exactly.
 *   eg_sigmoidf 1/(1+e^-x) for x >= 0 and e^x/(1+e^x) for x < 0, so both tails keep their
 *               relative accuracy (down to the subnormal range).
 *   eg_sqrtf    the hardware square root: fsqrt.s on RISC-V F (inline asm, so no libm call is
 *               emitted even under -fmath-errno), __builtin_sqrtf elsewhere (on x86 gcc it emits
 *               sqrtss and calls sqrtf only for negative inputs when -fmath-errno is on).
 */
#ifndef EG_MATH_H
#define EG_MATH_H

#include <float.h>
#include <stdint.h>

/* Reinterpret float <-> bits. A union is the C99 way that is not undefined behaviour and
 * needs no <string.h>. */
static inline uint32_t eg_f2u(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}

static inline float eg_u2f(uint32_t u)
{
    union { float f; uint32_t u; } v;
    v.u = u;
    return v.f;
}

/* 2^k as a float for a normal exponent, k in [-126, 127]. */
static inline float eg_pow2i(int k)
{
    return eg_u2f((uint32_t)(k + 127) << 23);
}

/* exp(x) = 2^k * exp(r), k = round(x / ln2), r = x - k*ln2 in [-ln2/2, ln2/2].
 * ln2 is split in two (Cody-Waite): k*EG_LN2_HI is exact for |k| < 2^15, so r carries no
 * cancellation error. exp(r) = 1 + r + r^2 * P(r), P degree 5. */
#define EG_LN2_HI 0.693359375f
#define EG_LN2_LO -2.12194440e-4f
#define EG_LOG2E 1.44269504088896341f

static inline float eg_expf(float x)
{
    if (x != x)
        return x + x;
    if (x > 88.72283905206835f)
        return FLT_MAX * 2.0f; /* +inf; overflow */
    if (x < -103.97208f)
        return 0.0f; /* below half the smallest subnormal */
    float t = x * EG_LOG2E;
    int k = (int)(t + (t < 0.0f ? -0.5f : 0.5f));
    float kf = (float)k;
    float r = (x - kf * EG_LN2_HI) - kf * EG_LN2_LO;
    float r2 = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float e = p * r2 + r + 1.0f;
    /* Scale by 2^k in steps that keep each factor a normal float: 2^128 is not one, and a
     * subnormal result must be rounded only once (by the last multiply). */
    if (k > 127)
        return e * eg_pow2i(127) * 2.0f;
    if (k < -126)
        return (e * eg_pow2i(k + 100)) * eg_pow2i(-100);
    return e * eg_pow2i(k);
}

/* log(x) = e*ln2 + log(m), x = m * 2^e with m in [sqrt(1/2), sqrt(2)); with f = m - 1
 * (exact), log(1+f) = f - f^2/2 + f^3 * P(f), P degree 8. */
static inline float eg_logf(float x)
{
    uint32_t u = eg_f2u(x);
    if (x != x || x < 0.0f)
        return (x - x) / (x - x); /* NaN */
    if (x == 0.0f)
        return -FLT_MAX * 2.0f; /* -inf */
    if (u >= 0x7f800000u)
        return x; /* +inf */
    int e = 0;
    if (u < 0x00800000u) { /* subnormal: scale into the normal range first */
        x *= 8388608.0f; /* 2^23 */
        u = eg_f2u(x);
        e = -23;
    }
    e += (int)(u >> 23) - 126;
    float m = eg_u2f((u & 0x007fffffu) | 0x3f000000u); /* m in [0.5, 1) */
    float f;
    if (m < 0.707106781186547524f) {
        e -= 1;
        f = m + m - 1.0f;
    } else {
        f = m - 1.0f;
    }
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    float y = p * f * z;
    float ef = (float)e;
    y += ef * EG_LN2_LO;
    y += -0.5f * z;
    return (f + y) + ef * EG_LN2_HI;
}

/* tanh(x): odd polynomial x + x^3 * P(x^2) for |x| < 0.625, else 1 - 2/(e^{2|x|} + 1). */
static inline float eg_tanhf(float x)
{
    float a = x < 0.0f ? -x : x;
    float r;
    if (x != x)
        return x + x;
    if (a < 0x1p-12f) {
        return x; /* x^3/3 is below half an ulp of x; keeps the sign of -0 */
    } else if (a > 9.02f) {
        r = 1.0f;
    } else if (a >= 0.625f) {
        r = 1.0f - 2.0f / (eg_expf(a + a) + 1.0f);
    } else {
        float z = a * a;
        float p = -5.70498872745e-3f;
        p = p * z + 2.06390887954e-2f;
        p = p * z - 5.37397155531e-2f;
        p = p * z + 1.33314422036e-1f;
        p = p * z - 3.33332819422e-1f;
        r = p * z * a + a;
    }
    return x < 0.0f ? -r : r;
}

static inline float eg_sigmoidf(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + eg_expf(-x));
    float e = eg_expf(x); /* x < 0 (or NaN, which propagates) */
    return e / (1.0f + e);
}

static inline float eg_sqrtf(float x)
{
#if defined(__riscv_flen) && __riscv_flen >= 32
    float r;
    __asm__("fsqrt.s %0, %1" : "=f"(r) : "f"(x));
    return r;
#else
    return __builtin_sqrtf(x);
#endif
}

#endif /* EG_MATH_H */
