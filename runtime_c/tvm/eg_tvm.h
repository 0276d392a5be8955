/* eg_tvm.h — calling TVM-generated kernels from the generated C (--backend tvm|auto, rpi/jetson).
 *
 * tools/peers/tvm_kernels.py compiles each chosen kernel with TVM's LLVM backend into one object
 * that exports a tvm-ffi packed function (apache-tvm 0.27):
 *     int __tvm_ffi_<symbol>(void *self, const EgTvmAny *args, int32_t num_args, EgTvmAny *ret);
 * Each argument is a DLTensor passed by pointer (type index kTVMFFIDLTensorPtr = 7); the function
 * checks ranks, shapes, dtype and device, returns 0, or -1 after reporting through
 * TVMFFIErrorSetRaisedFromCStrParts (defined in eg_tvm.c: it prints the message to stderr).
 * The layouts below are the ABI of tvm_ffi/c_api.h and dlpack.h, restated so that no TVM header
 * or runtime library is needed to build a firmware: the objects reference nothing else.
 */
#ifndef EG_TVM_H
#define EG_TVM_H

#include <stdint.h>

typedef struct {
    void *data;
    int32_t device_type; /* kDLCPU = 1 */
    int32_t device_id;
    int32_t ndim;
    uint8_t code; /* kDLFloat = 2 */
    uint8_t bits;
    uint16_t lanes;
    int64_t *shape;
    int64_t *strides; /* NULL: compact row-major */
    uint64_t byte_offset;
} EgDLTensor;

typedef struct {
    int32_t type_index;
    uint32_t zero_padding;
    union {
        int64_t v_int64;
        double v_float64;
        void *v_ptr;
    } v;
} EgTvmAny;

typedef int (*EgTvmFn)(void *self, const EgTvmAny *args, int32_t num_args, EgTvmAny *ret);

/* Call fn on n float32 tensors: data[i] with rank ndim[i] and shape shape[...] (the shapes one
 * after the other). A failing call (a shape the object was not built for) prints TVM's message
 * and the kernel's name and exits: the step must never continue with a half-written output. */
void eg_tvm_call(const char *name, EgTvmFn fn, int n, void *const *data, const int *ndim,
                 const int64_t *shape);

/* Epilogues the TVM functions leave out: y[n, m, :] += b[m] (conv bias) and
 * y[m, n] = alpha * y[m, n] + beta * c[m*c_sm + n*c_sn] (GEMM scale and C term; c may be NULL). */
void eg_tvm_add_bias(float *y, const float *b, int N, int M, int HW);
void eg_tvm_gemm_epilogue(float *y, const float *c, int M, int N, float alpha, float beta, int c_sm,
                          int c_sn);

#endif /* EG_TVM_H */
