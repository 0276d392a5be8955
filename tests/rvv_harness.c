/* rvv_harness.c — runs each RVV kernel variant and its fp32 reference on the same random inputs
 * and writes both outputs, for tests/test_rvv_kernels.py. A freestanding static riscv32 Linux
 * program (raw syscalls, no libc) run under qemu-riscv32 with the vector unit the kernels need.
 *
 * stdin: records of EG_REC int32 words
 *   [kind, seed, n_out, n_in0, n_in1, n_in2, p0 .. p(EG_NP-1)]
 *   kind 0..2 conv fw / bw_input / bw_weight, params the kernel's ints in order;
 *   kind 3 gemm, params batch,M,N,K,transA,transB,alpha_bits,beta_bits,a_bs,b_bs,c_sm,c_sn.
 *   kinds 4..8 the native fp16 kernels (built with EG_F16: portable reference compiled for Zfh
 *   against the _zvfh variants): conv fw / bw_input / bw_weight, gemm_f16, gemm_f16_y32, same
 *   params; inputs 0 and 1 are rounded to fp16 (the bias / C stay fp32); an fp16 output comes
 *   back widened to fp32 (exact).
 *   An input size 0 passes NULL (conv bias, gemm C).
 * Built with EG_BAREMETAL (the fp16 kinds: qemu-user 7.2 has no Zvfh) it is an mcu firmware instead
 * (targets/mcu startup.S and 16550 UART, run by qemu-system-riscv32 with the UART on stdio): the
 * same records in and results out over the UART, exit through the virt test device.
 * Bare-metal builds also count the instructions of each kernel call (minstret, exact under
 * -icount) and append them to the record's results as two uint32 (reference, variant); a kind
 * with bit 8 set (EG_QUIET) sends only the status and the counts (tools/rvvbench.py). Built with
 * EG_NO_VECTOR (no V extension: the scalar columns of the benchmark) the "variant" is the
 * reference again.
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
#ifdef EG_F16
#include "eg_conv_f16.h"
#include "eg_gemm_f16.h"
#include "eg_f16_zvfh.h"
#endif

#define EG_NP 22
#define EG_REC (6 + EG_NP)
#ifdef EG_BAREMETAL
#define EG_MAXF (1 << 18)
#else
#define EG_MAXF (1 << 20)
#endif
#define EG_GUARD 64
#define EG_SENTINEL 0x7e5a5a5au

static float in0[EG_MAXF], in1[EG_MAXF], in2[EG_MAXF];
static float out_ref[EG_MAXF + 2 * EG_GUARD], out_rvv[EG_MAXF + 2 * EG_GUARD];
#ifdef EG_F16
static eg_f16 h0[EG_MAXF], h1[EG_MAXF];
static eg_f16 out16_ref[EG_MAXF + 2 * EG_GUARD], out16_rvv[EG_MAXF + 2 * EG_GUARD];
#endif

#ifdef EG_BAREMETAL
#include "uart_16550.h"

uint32_t eg_boot_regs[3]; /* startup.S stores the boot hand-off here */

static void eg_exit(int code)
{
    volatile uint32_t *test = (volatile uint32_t *)0x100000u; /* virt sifive_test */
    *test = code == 0 ? 0x5555u : (((uint32_t)code & 0xFFFFu) << 16) | 0x3333u;
    for (;;) {
    }
}

void eg_port_exit(int code)
{
    eg_exit(code);
}

void eg_trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval)
{
    (void)mcause, (void)mepc, (void)mtval;
    eg_exit(3);
}

static int read_all(void *p, long n)
{
    unsigned char *s = p;
    while (n-- > 0)
        *s++ = (unsigned char)uart_getc();
    return 1;
}

static void write_all(const void *p, long n)
{
    const unsigned char *s = p;
    while (n-- > 0)
        uart_putc(*s++);
}
#else
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

static void eg_exit(int code)
{
    sys3(93, code, 0, 0);
}
#endif

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

#ifdef EG_NO_VECTOR
#define EG_V(ref, vec) ref
#else
#define EG_V(ref, vec) (rvv ? vec : ref)
#endif

#ifdef EG_BAREMETAL
static uint32_t eg_instret(void)
{
    uint32_t v;
    __asm__ volatile("csrr %0, minstret" : "=r"(v));
    return v;
}
static uint32_t eg_counts[2];
#define EG_COUNT(i, call) do { const uint32_t t0_ = eg_instret(); call; eg_counts[i] = eg_instret() - t0_; } while (0)
#else
#define EG_COUNT(i, call) call
#endif

static float bits(int32_t v)
{
    union { int32_t i; float f; } u = {v};
    return u.f;
}

static void run(int kind, const int32_t *p, float *y, const float *a, const float *b, const float *c, int rvv)
{
    (void)rvv;
    if (kind == 0)
        EG_V(conv2d_f32_fw, conv2d_f32_fw_rvv)(y, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                                                  p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]);
    else if (kind == 1)
        EG_V(conv2d_f32_bw_input, conv2d_f32_bw_input_rvv)(y, a, b, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                                                              p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                                                              p[14], p[15]);
    else if (kind == 2)
        EG_V(conv2d_f32_bw_weight, conv2d_f32_bw_weight_rvv)(y, a, b, p[0], p[1], p[2], p[3], p[4], p[5],
                                                                p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                                                                p[13], p[14], p[15], p[16], p[17], p[18]);
    else
        EG_V(gemm_f32, gemm_f32_rvv)(y, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], bits(p[6]), bits(p[7]),
                                        p[8], p[9], p[10], p[11]);
}

#ifdef EG_F16
static eg_f16 *prepare16(eg_f16 *raw, int n)
{
    for (int i = 0; i < n + 2 * EG_GUARD; i++)
        raw[i] = (i < EG_GUARD || i >= EG_GUARD + n) ? 0x5a5au : 0x7e00u; /* guard / NaN */
    return raw + EG_GUARD;
}

static int guard16_broken(const eg_f16 *raw, int n)
{
    for (int i = 0; i < EG_GUARD; i++)
        if (raw[i] != 0x5a5au || raw[EG_GUARD + n + i] != 0x5a5au)
            return 1;
    return 0;
}

/* kinds 4..8: y16 (fp16 output) or y (fp32 output) */
static void run16(int kind, const int32_t *p, eg_f16 *y16, float *y, const eg_f16 *a, const eg_f16 *b, const float *c,
                  int rvv)
{
    (void)rvv;
    if (kind == 4)
        EG_V(conv2d_f16_fw, conv2d_f16_fw_zvfh)(y16, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7],
                                                   p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15]);
    else if (kind == 5)
        EG_V(conv2d_f16_bw_input, conv2d_f16_bw_input_zvfh)(y16, a, b, p[0], p[1], p[2], p[3], p[4], p[5], p[6],
                                                               p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                                                               p[14], p[15]);
    else if (kind == 6)
        EG_V(conv2d_f16_bw_weight, conv2d_f16_bw_weight_zvfh)(y, a, b, p[0], p[1], p[2], p[3], p[4], p[5],
                                                                 p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                                                                 p[13], p[14], p[15], p[16], p[17], p[18]);
    else if (kind == 7)
        EG_V(gemm_f16, gemm_f16_zvfh)(y16, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], bits(p[6]), bits(p[7]),
                                         p[8], p[9], p[10], p[11]);
    else
        EG_V(gemm_f16_y32, gemm_f16_y32_zvfh)(y, a, b, c, p[0], p[1], p[2], p[3], p[4], p[5], bits(p[6]),
                                                 bits(p[7]), p[8], p[9], p[10], p[11]);
}

static void f16_record(int kind, const int32_t *p, int n_out, int n0, int n1, int n2, int32_t *status)
{
    for (int i = 0; i < n0; i++)
        eg_sth(h0 + i, in0[i]);
    for (int i = 0; i < n1; i++)
        eg_sth(h1 + i, in1[i]);
    const float *c = n2 ? in2 : NULL;
    if (kind == 6 || kind == 8) { /* fp32 output */
        float *yr = prepare(out_ref, n_out), *yv = prepare(out_rvv, n_out);
        EG_COUNT(0, run16(kind, p, NULL, yr, h0, n1 ? h1 : NULL, c, 0));
        EG_COUNT(1, run16(kind, p, NULL, yv, h0, n1 ? h1 : NULL, c, 1));
        *status |= guard_broken(out_ref, n_out) | guard_broken(out_rvv, n_out) << 1;
        return;
    }
    eg_f16 *hr = prepare16(out16_ref, n_out), *hv = prepare16(out16_rvv, n_out);
    EG_COUNT(0, run16(kind, p, hr, NULL, h0, n1 ? h1 : NULL, c, 0));
    EG_COUNT(1, run16(kind, p, hv, NULL, h0, n1 ? h1 : NULL, c, 1));
    *status |= guard16_broken(out16_ref, n_out) | guard16_broken(out16_rvv, n_out) << 1;
    float *yr = out_ref + EG_GUARD, *yv = out_rvv + EG_GUARD;
    for (int i = 0; i < n_out; i++) {
        yr[i] = eg_ldh(hr + i);
        yv[i] = eg_ldh(hv + i);
    }
}
#endif

#ifdef EG_BAREMETAL
int main(void)
#else
void _start(void) __attribute__((noreturn));

void _start(void)
#endif
{
    int32_t rec[EG_REC];
#ifdef EG_BAREMETAL
    uart_init();
#endif
    while (read_all(rec, sizeof rec)) {
        if (rec[0] < 0) /* end of the records (the UART has no end of file) */
            break;
        const int kind = rec[0] & 0xff, quiet = (rec[0] >> 8) & 1, n_out = rec[2];
        uint32_t state = (uint32_t)rec[1];
        int32_t status = 0;
        if (n_out > EG_MAXF || rec[3] > EG_MAXF || rec[4] > EG_MAXF || rec[5] > EG_MAXF)
            eg_exit(2);
        fill(in0, rec[3], &state);
        fill(in1, rec[4], &state);
        fill(in2, rec[5], &state);
        float *yr = out_ref + EG_GUARD, *yv = out_rvv + EG_GUARD;
#ifdef EG_F16
        if (kind >= 4) {
            f16_record(kind, rec + 6, n_out, rec[3], rec[4], rec[5], &status);
        } else
#endif
        {
            yr = prepare(out_ref, n_out), yv = prepare(out_rvv, n_out);
            EG_COUNT(0, run(kind, rec + 6, yr, in0, rec[4] ? in1 : NULL, rec[5] ? in2 : NULL, 0));
            EG_COUNT(1, run(kind, rec + 6, yv, in0, rec[4] ? in1 : NULL, rec[5] ? in2 : NULL, 1));
            status |= guard_broken(out_ref, n_out) | guard_broken(out_rvv, n_out) << 1;
        }
        write_all(&status, 4);
        if (!quiet) {
            write_all(yr, 4L * n_out);
            write_all(yv, 4L * n_out);
        }
#ifdef EG_BAREMETAL
        write_all(eg_counts, sizeof eg_counts);
#endif
    }
    eg_exit(0);
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
