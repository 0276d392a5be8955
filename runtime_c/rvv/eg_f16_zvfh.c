/* eg_f16_zvfh.c — binary16 casts with Zvfh's vfncvt.f.f.w / vfwcvt.f.f.v (round to nearest
 * even from frm, which startup leaves at RNE; overflow gives inf as IEEE 754 says). */
#include <riscv_vector.h>
#include <stddef.h>

#include "eg_f16_zvfh.h"

void cast_f32_f16_zvfh(uint16_t *restrict y, const float *restrict x, int n)
{
    size_t vl;
    for (int i = 0; i < n; i += (int)vl) {
        vl = __riscv_vsetvl_e32m8((size_t)(n - i));
        const vfloat16m4_t h = __riscv_vfncvt_f_f_w_f16m4(__riscv_vle32_v_f32m8(x + i, vl), vl);
        __riscv_vse16_v_u16m4(y + i, __riscv_vreinterpret_v_f16m4_u16m4(h), vl);
    }
}

void cast_f16_f32_zvfh(float *restrict y, const uint16_t *restrict x, int n)
{
    size_t vl;
    for (int i = 0; i < n; i += (int)vl) {
        vl = __riscv_vsetvl_e16m4((size_t)(n - i));
        const vfloat16m4_t h = __riscv_vreinterpret_v_u16m4_f16m4(__riscv_vle16_v_u16m4(x + i, vl));
        __riscv_vse32_v_f32m8(y + i, __riscv_vfwcvt_f_f_v_f32m8(h, vl), vl);
    }
}
