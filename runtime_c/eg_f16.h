/* eg_f16.h — fp16 storage, conversions and dynamic loss scaling for `--dtype fp16` builds
 * (portable C99; the native fp16 conv/GEMM kernels are in eg_conv_f16.h and eg_gemm_f16.h).
 *
 * fp16 values are stored as IEEE 754 binary16 bit patterns in eg_f16 (= uint16_t in every
 * build: the ABI needs no _Float16, so every C99 compiler and every RISC-V core builds them).
 * eg_ldh/eg_sth read and write one value as fp32: with Zfh/Zfhmin (RISC-V), they are
 * flh + fcvt.s.h / fcvt.h.s + fsh (round to nearest even from frm); elsewhere the bit-exact
 * portable conversions below. compiler/passes/lower_fp16.py puts fp16 tensors in the arena,
 * calls the native fp16 kernels for conv and GEMM, and casts around every other kernel call.
 *
 * Loss scaling state ls[3] (a model state, zero at start):
 *   ls[0] log2 of the scale relative to the compiled initial 2^log2_init
 *   ls[1] steps since the last overflow or growth
 *   ls[2] overflow flag of the current step (1: skip every parameter update)
 */
#ifndef EG_F16_H
#define EG_F16_H

#include <stdint.h>

typedef uint16_t eg_f16; /* binary16 bits */

typedef union {
    float f;
    uint32_t u;
} eg_bits;

/* x rounded to nearest even binary16 (overflow -> +-inf, NaN stays a quiet NaN). */
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

/* The binary16 value h, exactly. */
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

#if defined(__riscv_zfh) || defined(__riscv_zfhmin)
static inline float eg_ldh(const eg_f16 *p)
{
    return (float)*(const _Float16 *)(const void *)p;
}
static inline void eg_sth(eg_f16 *p, float v)
{
    *(_Float16 *)(void *)p = (_Float16)v;
}
#else
static inline float eg_ldh(const eg_f16 *p)
{
    return eg_f16_to_f32(*p);
}
static inline void eg_sth(eg_f16 *p, float v)
{
    *p = eg_f32_to_f16(v);
}
#endif

/* y = x rounded to nearest even binary16 (overflow -> +-inf, NaN stays NaN). */
void cast_f32_f16(uint16_t *restrict y, const float *restrict x, int n);

/* y = x (exact). */
void cast_f16_f32(float *restrict y, const uint16_t *restrict x, int n);

/* Start of the backward pass: clears the overflow flag, y = x * 2^(log2_init + ls[0]). */
void loss_scale_f32(float *restrict y, const float *restrict x, int n, float *restrict ls, int log2_init);

/* A parameter gradient, in place: g /= 2^(log2_init + ls[0]); raises ls[2] if any element is inf/NaN. */
void loss_unscale_f32(float *restrict g, int n, float *restrict ls, int log2_init);

/* An fp16 (loss-scaled) parameter gradient: raises ls[2] if any element is inf/NaN. */
void loss_check_f16(const eg_f16 *restrict g, int n, float *restrict ls);

/* y = g / 2^(log2_init + ls[0]) in fp32 (the gradient an update reads). */
void loss_unscale_f16(float *restrict y, const eg_f16 *restrict g, int n, const float *restrict ls, int log2_init);

/* End of the step: after an overflow halve the scale (ls[0] -= 1, never below 2^-24),
 * else count the step and double the scale every growth_interval clean steps (at most 2^15). */
void loss_scale_update(float *restrict ls, int log2_init, int growth_interval);

#endif /* EG_F16_H */
