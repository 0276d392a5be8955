/* startup.S — reset path for the RISC-V MCU target (QEMU virt, -bios none, M-mode, hart 0).
 *
 *   1. gp, sp, mtvec (trap -> eg_trap_handler, which reports on the UART and exits)
 *   2. mstatus.FS = Initial (bit 13) and mstatus.VS = Initial (bit 9) before any FP/vector
 *      instruction: the compiler may emit them anywhere (auto-vectorised loops). VS is WARL
 *      and reads 0 on a hart without V, so setting it there is harmless.
 *   3. copy .data from its load address (flash) to SRAM; lock the flash window read+execute
 *      with PMP entry 0 (QEMU runs "flash" from DRAM, this makes it behave like flash); zero .bss
 *   4. paint the unused stack with EG_STACK_PAINT so eg_port_stack_free() can find the
 *      high-water mark
 *   5. keep a0-a2 as given at reset in eg_boot_regs (the bootloader's hand-off, eg_boot.h)
 *   6. main(); its return value is the exit code.
 * Symbols come from link.ld (rendered from link.ld.j2).
 */
#define EG_STACK_PAINT 0xA5A5A5A5

    .section .text.init, "ax", @progbits
    .globl _start
_start:
    mv      s0, a0                          /* boot hand-off (eg_boot.h): a0 magic, a1 region, */
    mv      s1, a1                          /* a2 seq; kept in s0-s2 until .bss is zeroed */
    mv      s2, a2
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top
    la      t0, eg_trap_entry
    csrw    mtvec, t0
    li      t0, (1 << 13) | (1 << 9)        /* mstatus.FS = 1, mstatus.VS = 1 */
    csrs    mstatus, t0
    csrw    fcsr, zero

    la      a0, __data_load                 /* .data: flash -> SRAM */
    la      a1, __data_start
    la      a2, __data_end
1:  bgeu    a1, a2, 2f
    lw      t0, 0(a0)
    sw      t0, 0(a1)
    addi    a0, a0, 4
    addi    a1, a1, 4
    j       1b
2:  la      t0, __pmp_flash_napot           /* flash window: read + execute only, locked so */
    csrw    pmpaddr0, t0                    /* that M-mode obeys it: a store to a frozen */
    li      t0, 0x9D                        /* param traps (L | NAPOT | X | R) */
    csrw    pmpcfg0, t0
    la      a1, __bss_start                 /* .bss = 0 */
    la      a2, __bss_end
3:  bgeu    a1, a2, 4f
    sw      zero, 0(a1)
    addi    a1, a1, 4
    j       3b
4:  la      t0, eg_boot_regs                /* eg_storage.c */
    sw      s0, 0(t0)
    sw      s1, 4(t0)
    sw      s2, 8(t0)
    la      a1, __stack_bottom              /* paint [stack bottom, sp) */
    li      t0, EG_STACK_PAINT
5:  bgeu    a1, sp, 6f
    sw      t0, 0(a1)
    addi    a1, a1, 4
    j       5b
6:  call    main
    call    eg_port_exit                    /* a0 = main's return value; never returns */
7:  j       7b

/* Any trap is fatal here (no interrupts are enabled): take a fresh stack, report, exit. */
    .align  2
    .globl  eg_trap_entry
eg_trap_entry:
    la      sp, __stack_top
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    eg_trap_handler
8:  j       8b
