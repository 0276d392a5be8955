/* eg_flash.c — CFI (Intel command set) driver for QEMU virt's pflash unit 1 and the slot
 * helpers shared by the bootloader and the application (layout and rules in eg_boot.h).
 *
 * The bank is 32 bits wide: two x16 devices side by side, so every command is written to
 * both halves (CMD(x) = x | x << 16) and status bits are checked in both.
 *   program word: 0x40, then the data word; poll status until bit 7 (ready); check bits 4/3/1
 *   erase block:  0x20, then 0xD0 at any address in the block; poll; check bits 5/3/1
 *   read array:   0xFF (after every operation, so code and data reads see the array again)
 */
#include <stdint.h>

#include "eg_boot.h"
#include "eg_proto.h"
#include "uart_16550.h"

#define CMD(x) ((uint32_t)(x) | ((uint32_t)(x) << 16))
#define ST_READY CMD(0x80u)
#define ST_ERRORS CMD(0x3Au) /* erase error, program error, voltage, block locked */
#define SIFIVE_TEST 0x00100000u
#define SIFIVE_TEST_RESET 0x7777u

static volatile uint32_t *word(uint32_t addr) { return (volatile uint32_t *)addr; }

/* Poll the status register (the bank answers reads with status while a command is active)
 * until both devices are ready; -1 on an error bit (cleared again). Stays in status mode:
 * switching back to read-array mode after every word would cost QEMU a memory-map update each. */
static int wait_ready(volatile uint32_t *p) {
    uint32_t st;
    while (((st = *p) & ST_READY) != ST_READY) {
    }
    if (st & ST_ERRORS) {
        *p = CMD(0x50u); /* clear status */
        return -1;
    }
    return 0;
}

int eg_flash_erase(uint32_t addr, uint32_t bytes) {
    uint32_t end = addr + bytes;
    int rc = 0;
    for (uint32_t b = addr & ~(EG_PFLASH_BLOCK - 1u); b < end && rc == 0; b += EG_PFLASH_BLOCK) {
        volatile uint32_t *p = word(b);
        *p = CMD(0x20u);
        *p = CMD(0xD0u);
        rc = wait_ready(p);
        *p = CMD(0xFFu);
        for (uint32_t a = b; a < b + EG_PFLASH_BLOCK && rc == 0; a += 4u) /* blank check */
            if (*word(a) != 0xFFFFFFFFu) rc = -1;
    }
    return rc;
}

int eg_flash_program(uint32_t addr, const uint8_t *src, uint32_t bytes) {
    int rc = 0;
    for (uint32_t k = 0; k < bytes && rc == 0; k += 4u) {
        uint32_t v = (uint32_t)src[k] | ((uint32_t)src[k + 1u] << 8) | ((uint32_t)src[k + 2u] << 16) |
                     ((uint32_t)src[k + 3u] << 24);
        volatile uint32_t *p = word(addr + k);
        *p = CMD(0x40u);
        *p = v;
        rc = wait_ready(p);
    }
    *word(addr) = CMD(0xFFu); /* read array again, then read every word back */
    for (uint32_t k = 0; k < bytes && rc == 0; k += 4u) {
        uint32_t v = (uint32_t)src[k] | ((uint32_t)src[k + 1u] << 8) | ((uint32_t)src[k + 2u] << 16) |
                     ((uint32_t)src[k + 3u] << 24);
        if (*word(addr + k) != v) rc = -1;
    }
    return rc;
}

uint32_t eg_flash_crc(uint32_t addr, uint32_t bytes) { return eg_crc32(0, (const uint8_t *)addr, bytes); }

static uint32_t header_crc(const eg_slot_header_t *h) { return eg_crc32(0, (const uint8_t *)h, 28u); }

int eg_slot_state(uint32_t region, eg_slot_header_t *out) {
    const eg_slot_header_t *h = (const eg_slot_header_t *)EG_REGION(region);
    if (out) *out = *h;
    if (h->magic == 0xFFFFFFFFu && h->hcrc == 0xFFFFFFFFu && *word(EG_REGION(region) + EG_SLOT_DATA) == 0xFFFFFFFFu)
        return EG_SLOT_EMPTY;
    uint32_t magic = region < EG_REGION_CKPT_0 ? EG_IMAGE_MAGIC : EG_CKPT_MAGIC;
    if (h->magic != magic || h->hcrc != header_crc(h) || h->length > EG_REGION_BYTES - EG_SLOT_DATA)
        return EG_SLOT_INVALID;
    if (eg_flash_crc(EG_REGION(region) + EG_SLOT_DATA, h->length) != h->crc) return EG_SLOT_INVALID;
    return EG_SLOT_VALID;
}

int eg_slot_commit(uint32_t region, eg_slot_header_t *h) {
    h->hcrc = header_crc(h);
    return eg_flash_program(EG_REGION(region), (const uint8_t *)h, sizeof *h);
}

int eg_slot_newest(uint32_t a, uint32_t b, eg_slot_header_t *h) {
    eg_slot_header_t ha, hb;
    int va = eg_slot_state(a, &ha) == EG_SLOT_VALID, vb = eg_slot_state(b, &hb) == EG_SLOT_VALID;
    if (va && (!vb || ha.seq >= hb.seq)) {
        if (h) *h = ha;
        return (int)a;
    }
    if (vb) {
        if (h) *h = hb;
        return (int)b;
    }
    return -1;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* FLASH_INFO: u8 role, u8 booted region (0xFF none), u16 0, u32 region bytes, u32 block bytes,
 * u32 data offset, then per region: u32 state, u32 seq, u32 length, u32 crc, u32 hash, u32 aux0, u32 aux1. */
uint32_t eg_flash_info(uint8_t *out, uint32_t role, uint32_t booted_region) {
    out[0] = (uint8_t)role;
    out[1] = (uint8_t)booted_region;
    out[2] = out[3] = 0;
    put_u32(out + 4, EG_REGION_BYTES);
    put_u32(out + 8, EG_PFLASH_BLOCK);
    put_u32(out + 12, EG_SLOT_DATA);
    uint32_t n = 16;
    for (uint32_t r = 0; r < EG_NUM_REGIONS; r++) {
        eg_slot_header_t h;
        uint32_t st = (uint32_t)eg_slot_state(r, &h);
        const uint32_t f[7] = {st, h.seq, h.length, h.crc, h.hash, h.aux0, h.aux1};
        for (int k = 0; k < 7; k++, n += 4u) put_u32(out + n, f[k]);
    }
    return n;
}

int32_t eg_flash_read_req(const uint8_t *in, uint32_t len, uint8_t *out) {
    if (len != 10u) return -1;
    uint32_t region = (uint32_t)in[0] | ((uint32_t)in[1] << 8) | ((uint32_t)in[2] << 16) | ((uint32_t)in[3] << 24);
    uint32_t off = (uint32_t)in[4] | ((uint32_t)in[5] << 8) | ((uint32_t)in[6] << 16) | ((uint32_t)in[7] << 24);
    uint32_t n = (uint32_t)in[8] | ((uint32_t)in[9] << 8);
    if (region >= EG_NUM_REGIONS || off > EG_REGION_BYTES || n > EG_REGION_BYTES - off || n > EG_PROTO_MAX_PAYLOAD)
        return -1;
    const uint8_t *src = (const uint8_t *)(EG_REGION(region) + off);
    for (uint32_t k = 0; k < n; k++) out[k] = src[k];
    return (int32_t)n;
}

void eg_reboot(int update) {
    uart_drain();
    *(volatile uint32_t *)EG_BOOT_FLAG_ADDR = update ? EG_BOOT_FLAG_UPDATE : 0u;
    *(volatile uint32_t *)SIFIVE_TEST = SIFIVE_TEST_RESET;
    for (;;) {
    }
}
