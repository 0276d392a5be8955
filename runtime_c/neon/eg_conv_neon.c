/* eg_conv_neon.c — the tiled convolutions over the NEON GEMM core.
 *
 * The algorithms (im2col tiles of whole output rows, pointwise as a plain GEMM, depthwise on
 * zero-padded phase planes) and therefore the scratch sizes are exactly those of
 * ../eg_conv_tiled.c (compiler/kernels_tiled.py computes them): that file is compiled a second
 * time here with its entry points renamed to _neon and its GEMM engine swapped for
 * gemm_f32_neon_strided(_ld) (eg_gemm_neon.c). One source, so a fix to the tiled algorithms
 * reaches the aarch64 targets too.
 */
#include "eg_neon.h"

#define gemm_f32_tiled_strided gemm_f32_neon_strided
#define gemm_f32_tiled_strided_ld gemm_f32_neon_strided_ld
#define conv2d_f32_fw_tiled conv2d_f32_fw_neon
#define conv2d_f32_bw_input_tiled conv2d_f32_bw_input_neon
#define conv2d_f32_bw_weight_tiled conv2d_f32_bw_weight_neon
#define conv2d_f32_fw_implicit conv2d_f32_fw_implicit_neon /* host-only variants: unused here */
#define conv2d_f32_bw_input_implicit conv2d_f32_bw_input_implicit_neon
#define conv2d_f32_bw_weight_implicit conv2d_f32_bw_weight_implicit_neon
#define conv2d_f32_bw_weight_sgd_implicit conv2d_f32_bw_weight_sgd_implicit_neon
#define conv2d_f32_bw_weight_sgd_tiled conv2d_f32_bw_weight_sgd_neon
#define conv2d_f32_bw_weight_momentum_implicit conv2d_f32_bw_weight_momentum_implicit_neon
#define conv2d_f32_fw_tiled_act conv2d_f32_fw_neon_act /* fused epilogues (host fuse passes): unused here */
#define conv2d_f32_bw_input_tiled_mask conv2d_f32_bw_input_neon_mask
#define conv2d_f32_fw_implicit_act conv2d_f32_fw_implicit_neon_act
#define conv2d_f32_bw_input_implicit_mask conv2d_f32_bw_input_implicit_neon_mask
#define EG_NT_PIXELS 0x7fffffff /* pointwise weight gradients stay on the threaded NEON engine */

#include "../eg_conv_tiled.c"
