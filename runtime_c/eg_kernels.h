/* eg_kernels.h — every fp32 reference kernel family (contract: runtime_c/KERNELS.md). */
#ifndef EG_KERNELS_H
#define EG_KERNELS_H

#include "eg_math.h"

#include "eg_conv.h"
#include "eg_eltwise.h"
#include "eg_gemm.h"
#include "eg_norm.h"
#include "eg_optim.h"
#include "eg_pool.h"
#include "eg_shape.h"
#include "eg_softmax.h"
#include "eg_conv_tiled.h"
#include "eg_gemm_tiled.h"
#include "eg_gemv.h"
#include "eg_dwconv_tiled.h"
#include "eg_winograd.h"
#include "eg_winograd_wgrad.h"
#include "eg_int8.h"
#include "eg_f16.h"
#include "eg_conv_f16.h"
#include "eg_gemm_f16.h"
#include "eg_eltwise_f16.h"
#include "eg_mask.h"

#endif /* EG_KERNELS_H */
