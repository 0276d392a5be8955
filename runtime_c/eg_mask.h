/* eg_mask.h — 1-bit activation masks: where the backward of a ReLU / Clip needs only which
 * elements passed, a bit-packed mask (bit i%8 of byte i/8) is kept instead of the fp32 output. */
#ifndef EG_MASK_H
#define EG_MASK_H

#include <stdint.h>

/* m[(n+7)/8]: bit i = y[i] > 0 (ReLU), or lo < y[i] < hi (Clip, as clip_f32_bw); unused high bits 0. */
void relu_mask_f32(uint8_t *restrict m, const float *restrict y, int n);
void clip_mask_f32(uint8_t *restrict m, const float *restrict y, int n, float lo, float hi);
/* int8 (--dtype int8): bit i = lo < y[i] < hi, QSatGrad's saturation mask (qsat_grad_f32). */
void clip_mask_s8(uint8_t *restrict m, const int8_t *restrict y, int n, int lo, int hi);

/* dx[i] = bit i of m ? dy[i] : 0 (= relu_f32_bw / clip_f32_bw from the mask); dx == dy allowed. */
void mask_f32_bw(float *dx, const float *dy, const uint8_t *restrict m, int n);

#endif /* EG_MASK_H */
