/* eg_f16.c — binary16 conversions and dynamic loss scaling (contract: eg_f16.h). */
#include "eg_f16.h"

void cast_f32_f16(uint16_t *restrict y, const float *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        eg_sth(y + i, x[i]);
}

void cast_f16_f32(float *restrict y, const uint16_t *restrict x, int n)
{
    for (int i = 0; i < n; i++)
        y[i] = eg_ldh(x + i);
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

void loss_check_f16(const eg_f16 *restrict g, int n, float *restrict ls)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad |= (g[i] & 0x7c00u) == 0x7c00u; /* inf or NaN */
    if (bad)
        ls[2] = 1.0f;
}

void loss_unscale_f16(float *restrict y, const eg_f16 *restrict g, int n, const float *restrict ls, int log2_init)
{
    const float inv = eg_pow2(-(log2_init + (int)ls[0]));
    for (int i = 0; i < n; i++)
        y[i] = eg_ldh(g + i) * inv;
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
