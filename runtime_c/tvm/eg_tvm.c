/* eg_tvm.c — the little runtime TVM-generated kernel objects need (see eg_tvm.h). */
#include "eg_tvm.h"

#include <stdio.h>
#include <stdlib.h>

#define EG_TVM_MAX_ARGS 8

/* The only runtime function the generated objects call: their error path. */
void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **parts, int32_t num_parts)
{
    fprintf(stderr, "tvm kernel: %s:", kind ? kind : "Error");
    for (int32_t i = 0; i < num_parts; i++)
        if (parts[i])
            fputs(parts[i], stderr);
    fputc('\n', stderr);
}

/* The objects also define (weak, NULL) the function pointers TVMBackendAllocWorkspace and
 * TVMBackendFreeWorkspace would be called through; tools/peers/tvm_kernels.py writes every
 * kernel without intermediate buffers, so they are never called. */

void eg_tvm_call(const char *name, EgTvmFn fn, int n, void *const *data, const int *ndim,
                 const int64_t *shape)
{
    EgDLTensor t[EG_TVM_MAX_ARGS];
    EgTvmAny args[EG_TVM_MAX_ARGS];
    const int64_t *s = shape;
    if (n > EG_TVM_MAX_ARGS) {
        fprintf(stderr, "%s: %d tensors, at most %d\n", name, n, EG_TVM_MAX_ARGS);
        exit(3);
    }
    for (int i = 0; i < n; i++) {
        t[i] = (EgDLTensor){data[i], 1, 0, ndim[i], 2, 32, 1, (int64_t *)s, NULL, 0};
        s += ndim[i];
        args[i].type_index = 7; /* kTVMFFIDLTensorPtr */
        args[i].zero_padding = 0;
        args[i].v.v_ptr = &t[i];
    }
    EgTvmAny ret = {0, 0, {0}};
    if (fn(NULL, args, n, &ret) != 0) {
        fprintf(stderr, "%s: the TVM kernel refused its arguments\n", name);
        exit(3);
    }
}

void eg_tvm_add_bias(float *y, const float *b, int N, int M, int HW)
{
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            float *p = y + ((long)n * M + m) * HW;
            for (int i = 0; i < HW; i++)
                p[i] += b[m];
        }
}

void eg_tvm_gemm_epilogue(float *y, const float *c, int M, int N, float alpha, float beta, int c_sm,
                          int c_sn)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float v = alpha * y[(long)m * N + n];
            if (c && beta != 0.0f)
                v += beta * c[(long)m * c_sm + (long)n * c_sn];
            y[(long)m * N + n] = v;
        }
}
