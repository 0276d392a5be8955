/* eg_kernels_rvv.h — the RVV kernel variants (included by model.c of an mcu build with zve32f). */
#ifndef EG_KERNELS_RVV_H
#define EG_KERNELS_RVV_H

#include "eg_conv_rvv.h"
#include "eg_gemm_rvv.h"

#endif /* EG_KERNELS_RVV_H */
