/* uart_16550.c — polled NS16550A driver. Registers are byte-wide at UART_BASE + n:
 * RBR/THR 0, IER 1, FCR 2, LCR 3, LSR 5 (bit 0 data ready, bit 5 THR empty). Init masks interrupts
 * and sets the fastest divisor. It must not write FCR: any write that changes the FIFO-enable bit
 * clears the receive FIFO, losing a request the host sent during boot (measured: turning the FIFOs
 * on bought no throughput; the link's latency was TCP delayed ACKs, fixed by nodelay=on). */
#include "uart_16550.h"

#include <stdint.h>

#define UART_BASE 0x10000000u
#define REG(n) (*(volatile uint8_t *)(UART_BASE + (n)))
#define RBR 0
#define THR 0
#define IER 1
#define FCR 2
#define LCR 3
#define DLL 0
#define DLM 1
#define LSR 5
#define LSR_DR 0x01u
#define LSR_THRE 0x20u
#define LSR_TEMT 0x40u

void uart_init(void) {
    REG(IER) = 0x00; /* polled: no interrupts */
    /* QEMU paces transmission at the programmed baud rate: divisor 1 is the fastest the
     * virt machine's 16550 clock allows (the reset divisor makes it a 9600-baud-class link). */
    REG(LCR) = 0x80; /* DLAB: expose the divisor latch */
    REG(DLL) = 0x01;
    REG(DLM) = 0x00;
    REG(LCR) = 0x03; /* 8N1, DLAB off */
}

int uart_getc(void) {
    while ((REG(LSR) & LSR_DR) == 0) {
    }
    return REG(RBR);
}

void uart_putc(int c) {
    while ((REG(LSR) & LSR_THRE) == 0) {
    }
    REG(THR) = (uint8_t)c;
}

void uart_puts(const char *s) {
    while (*s) uart_putc(*s++);
}

void uart_puthex(unsigned long v) {
    for (int i = (int)(2 * sizeof v) - 1; i >= 0; i--) uart_putc("0123456789abcdef"[(v >> (4 * i)) & 15u]);
}

void uart_drain(void) {
    while ((REG(LSR) & LSR_TEMT) == 0) {
    }
}

int uart_ready(void) { return (REG(LSR) & LSR_DR) != 0; }

/* FIFOs on, receive trigger level 14: QEMU then hands over up to 14 received bytes at a time
 * instead of one, which is what makes a firmware upload fast. Writing FCR clears the receive
 * FIFO, so call it only while the host is waiting for a response (nothing in flight). */
void uart_fifo_on(void) { REG(FCR) = 0xC7; }
