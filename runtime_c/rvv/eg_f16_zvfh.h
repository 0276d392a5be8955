/* eg_f16_zvfh.h — Zvfh vector variants of the binary16 casts (contract: eg_f16.h), chosen for
 * mcu builds whose extensions include zvfh; bit-identical to the portable ones except that a
 * NaN becomes the canonical NaN. */
#ifndef EG_F16_ZVFH_H
#define EG_F16_ZVFH_H

#include <stdint.h>

void cast_f32_f16_zvfh(uint16_t *restrict y, const float *restrict x, int n);
void cast_f16_f32_zvfh(float *restrict y, const uint16_t *restrict x, int n);

#endif /* EG_F16_ZVFH_H */
