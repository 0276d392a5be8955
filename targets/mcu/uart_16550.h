/* uart_16550.h — polled driver for the NS16550A UART of QEMU virt (base 0x10000000). */
#ifndef UART_16550_H
#define UART_16550_H

void uart_init(void);
int uart_getc(void);  /* blocking: waits for LSR.DR */
void uart_putc(int c); /* blocking: waits for LSR.THRE */
int uart_ready(void);  /* a received byte is waiting */
void uart_fifo_on(void); /* see uart_16550.c: only while no byte is in flight */
void uart_drain(void); /* wait until the last byte has left the transmitter */
void uart_puts(const char *s);
void uart_puthex(unsigned long v);

#endif
