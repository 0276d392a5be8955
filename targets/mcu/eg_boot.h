/* eg_boot.h — what the bootloader (targets/mcu/boot/) and the application firmware agree on:
 * the flash layout, the slot header, the boot hand-off and the board request numbers.
 *
 * Persistent flash is QEMU virt's CFI pflash *unit 1* (0x22000000, 32 MiB, 256 KiB erase
 * blocks, 32-bit bus of two x16 devices). Unit 0 is left empty on purpose: when it is present,
 * QEMU's reset vector jumps into it instead of DRAM, bypassing -kernel.
 *
 *   0x22000000  region 0  image slot A      8 MiB  (header, then the image from +EG_SLOT_DATA)
 *   0x22800000  region 1  image slot B      8 MiB
 *   0x23000000  region 2  checkpoint slot 0 8 MiB  (header, then PARAM + STATE buffers)
 *   0x23800000  region 3  checkpoint slot 1 8 MiB
 *
 * A slot is valid when its header has the magic, its header CRC checks, and the CRC32 of its
 * `length` data bytes matches. Writers erase the slot, program the data, verify it, and program
 * the header last: a slot torn at any point has no valid header and is ignored. The newest valid
 * slot (highest seq) wins; the other is the fallback, and is the one the next write replaces.
 *
 * Boot: QEMU starts the bootloader at 0x80000000 (-kernel boot.elf). It copies the newest valid
 * image into the RAM "flash" window 0x80000000..0x80400000 (the application's link address)
 * and jumps to it with a0 = EG_BOOT_MAGIC, a1 = region booted, a2 = the image's seq.
 * A firmware started directly with -kernel fw.elf sees a0 = hart id (0) and uses no flash.
 */
#ifndef EG_BOOT_H
#define EG_BOOT_H

#include <stdint.h>

#define EG_PFLASH_BASE 0x22000000u
#define EG_PFLASH_BYTES 0x02000000u
#define EG_PFLASH_BLOCK 0x00040000u
#define EG_REGION_BYTES 0x00800000u
#define EG_REGION(i) (EG_PFLASH_BASE + (uint32_t)(i) * EG_REGION_BYTES)
#define EG_SLOT_DATA 256u /* data offset inside a region; the header sits at offset 0 */
#define EG_REGION_IMAGE_A 0u
#define EG_REGION_IMAGE_B 1u
#define EG_REGION_CKPT_0 2u
#define EG_REGION_CKPT_1 3u
#define EG_NUM_REGIONS 4u

#define EG_RUN_BASE 0x80000000u  /* where images run (the app's FLASH window) */
#define EG_RUN_BYTES 0x00400000u /* largest image */

#define EG_IMAGE_MAGIC 0x4D494745u /* "EGIM" */
#define EG_CKPT_MAGIC 0x4B434745u  /* "EGCK" */

/* Slot header: 8 words at the start of a region; hcrc = CRC32 of the first 7 words. */
typedef struct {
    uint32_t magic;
    uint32_t seq;    /* larger = newer */
    uint32_t length; /* data bytes */
    uint32_t crc;    /* CRC32 of the data */
    uint32_t hash;   /* model hash of the image / of the model the checkpoint belongs to */
    uint32_t aux0;   /* image: load address; checkpoint: TRAIN steps it holds */
    uint32_t aux1;   /* image: 0; checkpoint: checkpoint period in steps (0 = on request only) */
    uint32_t hcrc;
} eg_slot_header_t;

enum { EG_SLOT_EMPTY = 0, EG_SLOT_VALID = 1, EG_SLOT_INVALID = 2 };

#define EG_BOOT_MAGIC 0xEB0B0070u
/* A RAM word outside every loaded image and the FDT: survives the sifive_test reset. */
#define EG_BOOT_FLAG_ADDR 0x87000000u
#define EG_BOOT_FLAG_UPDATE 0x54445055u /* "UPDT": stay in the bootloader after the reset */

#define EG_ROLE_BOOTLOADER 1u
#define EG_ROLE_APP 2u

/* Board requests (eg_board_request); payloads are documented where the host builds them, tools/flash.py. */
enum {
    EG_REQ_FLASH_INFO = 0x10,
    EG_REQ_FLASH_ERASE = 0x11,
    EG_REQ_FLASH_WRITE = 0x12,
    EG_REQ_FLASH_READ = 0x13,
    EG_REQ_FLASH_COMMIT = 0x14,
    EG_REQ_BOOT = 0x15,
    EG_REQ_REBOOT = 0x16,
    EG_REQ_CHECKPOINT = 0x17,
    EG_REQ_CKPT_EVERY = 0x18
};

#define EG_ERR_FLASH 5u /* flash program/erase failed or read back wrong */
#define EG_ERR_STATE 6u /* not possible now (no flash, no valid image, NaN/Inf parameters...) */

/* ---- CFI flash driver and slot helpers (eg_flash.c) ------------------------------------ */
int eg_flash_erase(uint32_t addr, uint32_t bytes);                      /* 0 ok, -1 error */
int eg_flash_program(uint32_t addr, const uint8_t *src, uint32_t bytes); /* word-aligned; verifies */
uint32_t eg_flash_crc(uint32_t addr, uint32_t bytes);
/* Validity of region i; fills *h (may be NULL). */
int eg_slot_state(uint32_t region, eg_slot_header_t *h);
/* Program the header of region i last, after its data (hcrc computed here). */
int eg_slot_commit(uint32_t region, eg_slot_header_t *h);
/* The region (among a, b) with the newest valid slot, or -1. */
int eg_slot_newest(uint32_t a, uint32_t b, eg_slot_header_t *h);
/* FLASH_INFO payload for this role into out; returns its length. */
uint32_t eg_flash_info(uint8_t *out, uint32_t role, uint32_t booted_region);
/* FLASH_READ: u32 region, u32 offset, u16 n -> data. Returns length or EG_BOARD_UNKNOWN-style error -1. */
int32_t eg_flash_read_req(const uint8_t *in, uint32_t len, uint8_t *out);
/* Drain the UART and reset the machine (sifive_test 0x7777); with update != 0 the bootloader stays
 * in update mode. Never returns. */
void eg_reboot(int update);

#endif /* EG_BOOT_H */
