/* startup.S — the bootloader's reset path. QEMU starts at 0x80000000, the application's run
 * address, so only a 3-instruction stub lives there (.text.reset); the bootloader itself runs
 * from 0x87001000 (link.ld), out of the way of the image it copies to 0x80000000.
 * No PMP: the application's own startup sets up everything it needs. */
    .section .text.reset, "ax", @progbits
    .globl _reset
_reset:
    lui     t0, %hi(_boot)
    addi    t0, t0, %lo(_boot)
    jr      t0

    .section .text.init, "ax", @progbits
    .globl _boot
_boot:
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, __stack_top
    la      t0, boot_trap
    csrw    mtvec, t0
    li      t0, 1 << 13                     /* mstatus.FS: the compiler may spill FP registers */
    csrs    mstatus, t0
    la      a1, __bss_start                 /* .bss = 0 (.data is loaded by QEMU with the ELF) */
    la      a2, __bss_end
1:  bgeu    a1, a2, 2f
    sw      zero, 0(a1)
    addi    a1, a1, 4
    j       1b
2:  call    main
3:  j       3b

    .align  2
boot_trap:                                  /* any trap: report mcause on the UART and stop */
    la      sp, __stack_top
    csrr    a0, mcause
    csrr    a1, mepc
    call    boot_trap_handler
4:  j       4b
