/* uart_16550.h — polled driver for the NS16550A UART of QEMU virt (base 0x10000000). */
#ifndef UART_16550_H
#define UART_16550_H

void uart_init(void);
int uart_getc(void);  /* blocking: waits for LSR.DR */
void uart_putc(int c); /* blocking: waits for LSR.THRE */
void uart_puts(const char *s);
void uart_puthex(unsigned long v);

#endif
