/* eg_mask.c — 1-bit activation masks (contract: eg_mask.h, KERNELS.md). */
#include "eg_mask.h"

void relu_mask_f32(uint8_t *restrict m, const float *restrict y, int n)
{
    for (int i = 0; i < n; i += 8) {
        const int k_end = n - i < 8 ? n - i : 8;
        unsigned b = 0;
        for (int k = 0; k < k_end; k++)
            b |= (unsigned)(y[i + k] > 0.0f) << k;
        m[i >> 3] = (uint8_t)b;
    }
}

void clip_mask_f32(uint8_t *restrict m, const float *restrict y, int n, float lo, float hi)
{
    for (int i = 0; i < n; i += 8) {
        const int k_end = n - i < 8 ? n - i : 8;
        unsigned b = 0;
        for (int k = 0; k < k_end; k++)
            b |= (unsigned)(y[i + k] > lo && y[i + k] < hi) << k;
        m[i >> 3] = (uint8_t)b;
    }
}

void clip_mask_s8(uint8_t *restrict m, const int8_t *restrict y, int n, int lo, int hi)
{
    for (int i = 0; i < n; i += 8) {
        const int k_end = n - i < 8 ? n - i : 8;
        unsigned b = 0;
        for (int k = 0; k < k_end; k++)
            b |= (unsigned)(y[i + k] > lo && y[i + k] < hi) << k;
        m[i >> 3] = (uint8_t)b;
    }
}

void mask_f32_bw(float *dx, const float *dy, const uint8_t *restrict m, int n)
{
    for (int i = 0; i < n; i++)
        dx[i] = (m[i >> 3] >> (i & 7)) & 1u ? dy[i] : 0.0f;
}
