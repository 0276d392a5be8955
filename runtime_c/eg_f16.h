/* eg_f16.h — fp16 storage and dynamic loss scaling for `--dtype fp16` builds (portable C99).
 *
 * fp16 values are stored as IEEE 754 binary16 bit patterns in uint16_t (no _Float16 needed,
 * so every C99 compiler and every RISC-V core builds them); the compute kernels stay fp32 and
 * accumulate in fp32: compiler/passes/lower_fp16.py puts fp16 tensors in the arena and casts
 * around each kernel call.
 *
 * Loss scaling state ls[3] (a model state, zero at start):
 *   ls[0] log2 of the scale relative to the compiled initial 2^log2_init
 *   ls[1] steps since the last overflow or growth
 *   ls[2] overflow flag of the current step (1: skip every parameter update)
 */
#ifndef EG_F16_H
#define EG_F16_H

#include <stdint.h>

/* y = x rounded to nearest even binary16 (overflow -> +-inf, NaN stays NaN). */
void cast_f32_f16(uint16_t *restrict y, const float *restrict x, int n);

/* y = x (exact). */
void cast_f16_f32(float *restrict y, const uint16_t *restrict x, int n);

/* Start of the backward pass: clears the overflow flag, y = x * 2^(log2_init + ls[0]). */
void loss_scale_f32(float *restrict y, const float *restrict x, int n, float *restrict ls, int log2_init);

/* A parameter gradient, in place: g /= 2^(log2_init + ls[0]); raises ls[2] if any element is inf/NaN. */
void loss_unscale_f32(float *restrict g, int n, float *restrict ls, int log2_init);

/* End of the step: after an overflow halve the scale (ls[0] -= 1, never below 2^-24),
 * else count the step and double the scale every growth_interval clean steps (at most 2^15). */
void loss_scale_update(float *restrict ls, int log2_init, int growth_interval);

#endif /* EG_F16_H */
