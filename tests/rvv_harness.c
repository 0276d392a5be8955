/* rvv_harness.c — runs each RVV kernel variant and its fp32 reference on the same random inputs
 * and writes both outputs, for tests/test_rvv_kernels.py. A freestanding static riscv32 Linux
 * program (raw syscalls, no libc) run under qemu-riscv32 with the vector unit the kernels need.
 *
 * stdin: records of EG_REC int32 words
 *   [kind, seed, n_out, n_in0, n_in1, n_in2, p0 .. p(EG_NP-1)]
 *   kind 0..2 conv fw / bw_input / bw_weight, params the kernel's ints in order;
 *   kind 3 gemm, params batch,M,N,K,transA,transB,alpha_bits,beta_bits,a_bs,b_bs,c_sm,c_sn.
 *   An input size 0 passes NULL (conv bias, gemm C).
 * stdout per record: int32 status (bit 0: reference wrote outside its output, bit 1: the RVV
 * variant did), then n_out reference floats, then n_out RVV floats. Outputs are pre-filled
 * with NaN, so an element a kernel does not write shows up as NaN.
 */
#include <stddef.h>
#include <stdint.h>

#include "eg_conv.h"
#include "eg_gemm.h"
#include "eg_conv_rvv.h"
#include "eg_gemm_rvv.h"

#define EG_NP 22
#define EG_REC (6 + EG_NP)
#define EG_MAXF (1 << 20)
#define EG_GUARD 64
#define EG_SENTINEL 0x7e5a5a5au

static float in0[EG_MAXF], in1[EG_MAXF], in2[EG_MAXF];
static float out_ref[EG_MAXF + 2 * EG_GUARD], out_rvv[EG_MAXF + 2 * EG_GUARD];

static long sys3(long n, long a, long b, long c)
{
    register long a0 __asm__("a0") = a, a1 __asm__("a1") = b, a2 __asm__("a2") = c, a7 __asm__("a7") = n;
    __asm__ volatile("ecall" : "+r"(a0) : "r"(a1), "r"(a2), "r"(a7) : "memory");
    return a0;
}

static int read_all(void *p, long n)
{
    char *s = p;
    while (n > 0) {
        long r = sys3(63, 0, (long)s, n);
        if (r <= 0)
            return 0;
        s += r, n -= r;
    }
    return 1;
}

static void write_all(const void *p, long n)
{
    const char *s = p;
    while (n > 0) {
        long r = sys3(64, 1, (long)s, n);
        if (r <= 0)
            break;
        s += r, n -= r;
    }
}

static void fill(float *v, int n, uint32_t *state)
{
    for (int i = 0; i < n; i++) {
        *state = *state * 1664525u + 1013904223u;
        v[i] = (float)((int32_t)(*state >> 8) - (1 << 23)) / (float)(1 << 23); /* [-1, 1) */
    }
}

static float *prepare(float *raw, int n)
{
    union { uint32_t u; float f; } s = {EG_SENTINEL}, q = {0x7fc00000u};
    for (int i = 0; i < n + 2 * EG_GUARD; i++)
        raw[i] = (i < EG_GUARD || i >= EG_GUARD + n) ? s.f : q.f;
    return raw + EG_GUARD;
}

static int guard_broken(const float *raw, int n)
{
    const uint32_t *u = (const uint32_t *)raw;
    for (int i = 0; i < EG_GUARD; i++)
        if (u[i] != EG_SENTINEL || u[EG_GUARD + n + i] != EG_SENTINEL)
            return 1;
    return 0;
}

static float bits(int32_t v)
{
    union { int32_t i; float f; } u = {v};
    return u.f;
}

static void run(int kind, const int32_t *p, float *y, const float *a, const float *b, const float *c, int rvv)
{
    if (kind == 0)
        (rvv ? conv2d_f32_fw_rvv : conv2d_f32_fw)(y, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                                                  p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]);
    else if (kind == 1)
        (rvv ? conv2d_f32_bw_input_rvv : conv2d_f32_bw_input)(y, a, b, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                                                              p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                                                              p[14], p[15]);
    else if (kind == 2)
        (rvv ? conv2d_f32_bw_weight_rvv : conv2d_f32_bw_weight)(y, a, b, p[0], p[1], p[2], p[3], p[4], p[5],
                                                                p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                                                                p[13], p[14], p[15], p[16], p[17], p[18]);
    else
        (rvv ? gemm_f32_rvv : gemm_f32)(y, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], bits(p[6]), bits(p[7]),
                                        p[8], p[9], p[10], p[11]);
}

void _start(void) __attribute__((noreturn));

void _start(void)
{
    int32_t rec[EG_REC];
    while (read_all(rec, sizeof rec)) {
        const int kind = rec[0], n_out = rec[2];
        uint32_t state = (uint32_t)rec[1];
        int32_t status = 0;
        if (n_out > EG_MAXF || rec[3] > EG_MAXF || rec[4] > EG_MAXF || rec[5] > EG_MAXF)
            sys3(93, 2, 0, 0);
        fill(in0, rec[3], &state);
        fill(in1, rec[4], &state);
        fill(in2, rec[5], &state);
        float *yr = prepare(out_ref, n_out), *yv = prepare(out_rvv, n_out);
        run(kind, rec + 6, yr, in0, rec[4] ? in1 : NULL, rec[5] ? in2 : NULL, 0);
        run(kind, rec + 6, yv, in0, rec[4] ? in1 : NULL, rec[5] ? in2 : NULL, 1);
        status |= guard_broken(out_ref, n_out) | guard_broken(out_rvv, n_out) << 1;
        write_all(&status, 4);
        write_all(yr, 4L * n_out);
        write_all(yv, 4L * n_out);
    }
    sys3(93, 0, 0, 0);
    for (;;) {
    }
}

/* clang may lower loops to these even with -ffreestanding */
void *memset(void *d, int v, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)v;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}
