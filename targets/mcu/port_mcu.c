/* port_mcu.c — board support for the RISC-V MCU target on QEMU virt: the protocol over the
 * 16550 UART, minstret for exact instruction counts (-icount shift=0), exit through the
 * sifive_test device, painted-stack high-water mark, a fatal-trap reporter, and the few
 * libc functions the compiler may call in freestanding mode. */
#include <stddef.h>
#include <stdint.h>

#include "eg_port.h"
#include "eg_proto.h"
#include "model.h"
#include "uart_16550.h"

#define SIFIVE_TEST 0x00100000u
#define SIFIVE_TEST_PASS 0x5555u
#define SIFIVE_TEST_FAIL 0x3333u
#define EG_STACK_PAINT 0xA5A5A5A5u /* same value as startup.S */

extern uint32_t __stack_bottom[], __stack_top[]; /* link.ld */

int eg_port_getc(void) { return uart_getc(); }

void eg_port_putc(int c) { uart_putc(c); }

void eg_port_flush(void) {} /* uart_putc waits for THR empty: nothing is held back */

uint64_t eg_port_instret(void) {
    uint32_t hi, lo, hi2;
    do { /* read the 64-bit counter as two halves without tearing */
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi));
        __asm__ volatile("csrr %0, minstret" : "=r"(lo));
        __asm__ volatile("csrr %0, minstreth" : "=r"(hi2));
    } while (hi != hi2);
    return ((uint64_t)hi << 32) | lo;
}

void eg_port_exit(int code) {
    volatile uint32_t *test = (volatile uint32_t *)SIFIVE_TEST;
    *test = code == 0 ? SIFIVE_TEST_PASS : (((uint32_t)code & 0xFFFFu) << 16) | SIFIVE_TEST_FAIL;
    for (;;) {
    }
}

uint32_t eg_port_stack_free(void) {
    const uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == EG_STACK_PAINT) p++;
    return (uint32_t)((const uint8_t *)p - (const uint8_t *)__stack_bottom);
}

/* Called from eg_trap_entry (startup.S) on any exception; never returns. */
void eg_trap_handler(uint32_t mcause, uint32_t mepc, uint32_t mtval) {
    uart_puts("\r\nEG_TRAP mcause=0x");
    uart_puthex(mcause);
    uart_puts(" mepc=0x");
    uart_puthex(mepc);
    uart_puts(" mtval=0x");
    uart_puthex(mtval);
    uart_puts("\r\n");
    eg_port_exit(3);
}

void eg_storage_boot(void); /* eg_storage.c: restore the newest checkpoint when booted from flash */

int main(void) {
    uart_init();
    eg_init();
    eg_storage_boot();
    eg_serve();
    return 0;
}

/* clang lowers copy/zero loops and struct copies to these calls even with -ffreestanding. */
void *memcpy(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
    const uint8_t *p = a, *q = b;
    for (; n; n--, p++, q++)
        if (*p != *q) return *p - *q;
    return 0;
}
