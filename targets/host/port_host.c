/* port_host.c — host board: the protocol runs over stdin/stdout as raw bytes (the runner
 * spawns this binary with pipes). Diagnostics go to stderr only: stdout carries frames. */
#include <stdio.h>
#include <stdlib.h>

#include "eg_port.h"
#include "eg_proto.h"
#include "model.h"

int eg_port_getc(void) {
    int c = getchar();
    return c == EOF ? -1 : c;
}

void eg_port_putc(int c) { putchar(c & 0xFF); }

void eg_port_flush(void) { fflush(stdout); }

uint64_t eg_port_instret(void) { return 0; }

void eg_port_exit(int code) {
    fflush(stdout);
    exit(code);
}

uint32_t eg_port_stack_free(void) { return 0; }

int main(void) {
    eg_init();
    eg_serve();
    return 0;
}
