/* eg_f16.c — binary16 conversions and dynamic loss scaling (contract: eg_f16.h). */
#include "eg_f16.h"

typedef union {
    float f;
    uint32_t u;
} eg_bits;

static inline uint16_t eg_f32_to_f16(float v)
{
    eg_bits b = {v};
    const uint32_t sign = (b.u >> 16) & 0x8000u;
    const uint32_t absu = b.u & 0x7fffffffu;
    if (absu >= 0x7f800000u) /* inf or NaN (keep a quiet NaN) */
        return (uint16_t)(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0u));
    if (absu >= 0x477ff000u) /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00u);
    if (absu < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
        if (absu < 0x33000000u) /* < 2^-25 rounds to zero (2^-25 itself ties to even 0) */
            return (uint16_t)sign;
        const uint32_t e = absu >> 23, mant = (absu & 0x7fffffu) | 0x800000u;
        const uint32_t shift = 126u - e; /* value = mant * 2^(e-150); unit 2^-24 */
        uint32_t h = mant >> shift;
        const uint32_t rest = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rest > half || (rest == half && (h & 1u)))
            h++;
        return (uint16_t)(sign | h);
    }
    /* normal: rebias the exponent (127 -> 15), round the 13 dropped mantissa bits to nearest even */
    uint32_t h = ((absu - 0x38000000u) >> 13);
    const uint32_t rest = absu & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* may carry into the exponent: still correct, up to 0x7bff (checked above) */
    return (uint16_t)(sign | h);
}

static inline float eg_f16_to_f32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    eg_bits b;
    if (e == 0x1fu) {
        b.u = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        b.u = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        b.u = sign;
    } else { /* subnormal: m * 2^-24, exact in fp32 */
        b.f = (float)m * 5.9604644775390625e-8f;
        b.u |= sign;
    }
    return b.f;
}

void cast_f32_f16(uint16_t *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = eg_f32_to_f16(x[i]);
}

void cast_f16_f32(float *restrict y, const uint16_t *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = eg_f16_to_f32(x[i]);
}

/* 2^e for an integer e in the fp32 normal range (the scale is kept a power of two: exact) */
static inline float eg_pow2(int e)
{
    eg_bits b;
    b.u = (uint32_t)(e + 127) << 23;
    return b.f;
}

void loss_scale_f32(float *restrict y, const float *restrict x, int n, float *restrict ls, int log2_init)
{
    const float s = eg_pow2(log2_init + (int)ls[0]);
    ls[2] = 0.0f;
    for (int i = 0; i < n; i++)
        y[i] = x[i] * s;
}

void loss_unscale_f32(float *restrict g, int n, float *restrict ls, int log2_init)
{
    const float inv = eg_pow2(-(log2_init + (int)ls[0]));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        eg_bits b = {g[i]};
        bad |= (b.u & 0x7f800000u) == 0x7f800000u; /* inf or NaN */
        g[i] *= inv;
    }
    if (bad)
        ls[2] = 1.0f;
}

void loss_scale_update(float *restrict ls, int log2_init, int growth_interval)
{
    if (ls[2] != 0.0f) {
        if (log2_init + (int)ls[0] > -24) /* never below 2^-24 */
            ls[0] -= 1.0f;
        ls[1] = 0.0f;
    } else if (++ls[1] >= (float)growth_interval) {
        if (log2_init + (int)ls[0] < 15)
            ls[0] += 1.0f;
        ls[1] = 0.0f;
    }
}
