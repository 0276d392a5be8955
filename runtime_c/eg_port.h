/* eg_port.h — what a board provides to the serving loop (runtime_c/eg_proto.c).
 *
 * One implementation per target: targets/host/port_host.c (stdin/stdout pipes),
 * targets/mcu/port_mcu.c (16550 UART, minstret, sifive_test exit, painted stack).
 * The board also provides main(), which calls eg_init() and then eg_serve().
 */
#ifndef EG_PORT_H
#define EG_PORT_H

#include <stdint.h>

/* Next byte from the link (0..255), blocking. Returns -1 when the link is closed for good
 * (host: end of stdin); eg_serve() then returns. */
int eg_port_getc(void);

/* Queue one byte (the low 8 bits of c) for the link. */
void eg_port_putc(int c);

/* Push queued bytes out; called once at the end of every response frame. */
void eg_port_flush(void);

/* Retired-instruction counter (minstret), or 0 where the board has none. Under QEMU with
 * -icount shift=0 it is exact and deterministic. */
uint64_t eg_port_instret(void);

/* Leave the program with status code (0 = success). Never returns. */
void eg_port_exit(int code);

/* Bytes of the stack never touched since boot (painted-stack high-water mark), or 0 where
 * the board does not paint its stack. */
uint32_t eg_port_stack_free(void);

#endif /* EG_PORT_H */
