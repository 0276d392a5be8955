/* boot.c — the edgegrad serial bootloader for the mcu target (QEMU virt). Layout, slot rules
 * and the hand-off are in ../eg_boot.h; the wire protocol is runtime_c/eg_proto.c's.
 *
 * At reset:
 *   - the boot flag says "update" (an application asked for REBOOT into update mode), or no
 *     image slot is valid  ->  update mode: serve requests until BOOT;
 *   - else wait EG_BOOT_WINDOW UART polls: a byte from the host  ->  update mode;
 *   - else copy the newest valid image (highest seq, CRC checked) to 0x80000000 and jump to it.
 * In update mode the host may erase/program/verify/commit the image slot that does *not* hold
 * the image that boots (FLASH_*), then BOOT. A slot only becomes bootable once COMMIT has
 * checked the CRC of its data in flash and programmed its header, so an update cut short at any
 * point leaves the previous image booting.
 */
#include <stdint.h>

#include "eg_boot.h"
#include "eg_proto.h"
#include "model.h"
#include "uart_16550.h"

#define EG_BOOT_WINDOW 200000u /* UART polls before autoboot (~1 ms of guest time) */

const eg_buffer_t eg_buffers[1] = {{"", 0, 0u, 0u, 0u}};
const uint32_t eg_num_buffers = 0u;
const uint32_t eg_model_hash = 0u;
void eg_init(void) {}
void eg_infer(void) {}
void eg_train_step(float *loss) { *loss = 0.0f; }

int eg_port_getc(void) { return uart_getc(); }
void eg_port_putc(int c) { uart_putc(c); }
void eg_port_flush(void) {}
uint64_t eg_port_instret(void) { return 0; }
uint32_t eg_port_stack_free(void) { return 0; }
void eg_port_exit(int code) {
    *(volatile uint32_t *)0x00100000u = code == 0 ? 0x5555u : (((uint32_t)code & 0xFFFFu) << 16) | 0x3333u;
    for (;;) {
    }
}

void boot_trap_handler(uint32_t mcause, uint32_t mepc) {
    uart_puts("\r\nEG_BOOT_TRAP mcause=0x");
    uart_puthex(mcause);
    uart_puts(" mepc=0x");
    uart_puthex(mepc);
    uart_puts("\r\n");
    eg_port_exit(3);
}

void *memcpy(void *dst, const void *src, unsigned n) {
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}
void *memset(void *dst, int c, unsigned n) {
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

static int pending; /* after the response: 1 boot, 2 reboot, 3 reboot into update mode */

static void boot_newest(void) {
    eg_slot_header_t h;
    int region = eg_slot_newest(EG_REGION_IMAGE_A, EG_REGION_IMAGE_B, &h);
    if (region < 0 || h.length > EG_RUN_BYTES || h.aux0 != EG_RUN_BASE) return;
    const uint32_t *src = (const uint32_t *)(EG_REGION((uint32_t)region) + EG_SLOT_DATA);
    uint32_t *dst = (uint32_t *)EG_RUN_BASE;
    for (uint32_t k = 0; k < (h.length + 3u) / 4u; k++) dst[k] = src[k];
    uart_drain();
    register uint32_t a0 __asm__("a0") = EG_BOOT_MAGIC;
    register uint32_t a1 __asm__("a1") = (uint32_t)region;
    register uint32_t a2 __asm__("a2") = h.seq;
    __asm__ volatile("fence.i\n\tjr %3" : : "r"(a0), "r"(a1), "r"(a2), "r"(EG_RUN_BASE) : "memory");
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint32_t err(uint8_t *type, uint8_t *out, uint8_t code, const char *msg) {
    uint32_t n = 0;
    *type = EG_RSP_ERR;
    out[n++] = code;
    while (*msg && n < 64u) out[n++] = (uint8_t)*msg++;
    return n;
}

/* Image regions that may be written: A or B, but never the one holding the image that boots. */
static int writable(uint32_t region) {
    if (region > EG_REGION_IMAGE_B) return 0;
    return eg_slot_newest(EG_REGION_IMAGE_A, EG_REGION_IMAGE_B, 0) != (int)region;
}

uint32_t eg_board_request(uint8_t req, const uint8_t *in, uint32_t len, uint8_t *out, uint8_t *type) {
    *type = EG_RSP_OK;
    uint32_t region = len >= 4u ? get_u32(in) : 0xFFFFFFFFu;
    switch (req) {
    case EG_REQ_FLASH_INFO:
        return eg_flash_info(out, EG_ROLE_BOOTLOADER, 0xFFu);
    case EG_REQ_FLASH_READ: {
        int32_t n = eg_flash_read_req(in, len, out);
        return n < 0 ? err(type, out, EG_ERR_RANGE, "bad FLASH_READ") : (uint32_t)n;
    }
    case EG_REQ_FLASH_ERASE: /* u32 region, u32 data bytes */
        if (len != 8u || get_u32(in + 4) > EG_RUN_BYTES) return err(type, out, EG_ERR_BAD_PAYLOAD, "bad FLASH_ERASE");
        if (!writable(region)) return err(type, out, EG_ERR_STATE, "region holds the image that boots");
        if (eg_flash_erase(EG_REGION(region), EG_SLOT_DATA + get_u32(in + 4)) != 0)
            return err(type, out, EG_ERR_FLASH, "erase failed");
        uart_fifo_on(); /* the host waits for this response before it streams the image */
        return 0;
    case EG_REQ_FLASH_WRITE: { /* u32 region, u32 data offset, data[4k] */
        uint32_t off = len >= 8u ? get_u32(in + 4) : 1u, n = len - 8u;
        if (len < 8u || (off | n) & 3u || off > EG_RUN_BYTES || n > EG_RUN_BYTES - off)
            return err(type, out, EG_ERR_BAD_PAYLOAD, "bad FLASH_WRITE (word-aligned, inside the slot)");
        if (!writable(region)) return err(type, out, EG_ERR_STATE, "region holds the image that boots");
        if (eg_flash_program(EG_REGION(region) + EG_SLOT_DATA + off, in + 8, n) != 0)
            return err(type, out, EG_ERR_FLASH, "program failed or read back wrong");
        return 0;
    }
    case EG_REQ_FLASH_COMMIT: { /* u32 region, u32 length, u32 crc, u32 seq, u32 hash */
        if (len != 20u || get_u32(in + 4) > EG_RUN_BYTES) return err(type, out, EG_ERR_BAD_PAYLOAD, "bad FLASH_COMMIT");
        if (!writable(region)) return err(type, out, EG_ERR_STATE, "region holds the image that boots");
        const uint32_t *hw = (const uint32_t *)EG_REGION(region);
        for (uint32_t k = 0; k < sizeof(eg_slot_header_t) / 4u; k++)
            if (hw[k] != 0xFFFFFFFFu) return err(type, out, EG_ERR_STATE, "header not erased: erase the slot first");
        eg_slot_header_t h = {EG_IMAGE_MAGIC, get_u32(in + 12), get_u32(in + 4), get_u32(in + 8), get_u32(in + 16),
                              EG_RUN_BASE, 0u, 0u};
        if (eg_flash_crc(EG_REGION(region) + EG_SLOT_DATA, h.length) != h.crc)
            return err(type, out, EG_ERR_FLASH, "CRC of the data in flash does not match");
        if (eg_slot_commit(region, &h) != 0 || eg_slot_state(region, 0) != EG_SLOT_VALID)
            return err(type, out, EG_ERR_FLASH, "header program failed");
        return 0;
    }
    case EG_REQ_BOOT:
        if (eg_slot_newest(EG_REGION_IMAGE_A, EG_REGION_IMAGE_B, 0) < 0)
            return err(type, out, EG_ERR_STATE, "no valid image");
        pending = 1;
        uart_fifo_on(); /* the host waits for this response: nothing is in flight */
        return 0;
    case EG_REQ_REBOOT:
        pending = len >= 4u && get_u32(in) != 0u ? 3 : 2;
        return 0;
    case EG_REQ_CHECKPOINT:
    case EG_REQ_CKPT_EVERY:
        return err(type, out, EG_ERR_STATE, "bootloader: BOOT the application first");
    default:
        return EG_BOARD_UNKNOWN;
    }
}

void eg_board_after_response(void) {
    if (pending == 1) boot_newest(); /* returns only if the image vanished */
    if (pending >= 2) eg_reboot(pending == 3);
    pending = 0;
}

int main(void) {
    uart_init();
    volatile uint32_t *flag = (volatile uint32_t *)EG_BOOT_FLAG_ADDR;
    int update = *flag == EG_BOOT_FLAG_UPDATE;
    *flag = 0u;
    if (!update && eg_slot_newest(EG_REGION_IMAGE_A, EG_REGION_IMAGE_B, 0) >= 0) {
        for (uint32_t i = 0; i < EG_BOOT_WINDOW && !uart_ready(); i++) {
        }
        if (!uart_ready()) {
            /* Receive FIFO on for the application too (its own init leaves FCR alone). A byte
             * landing between the check above and this write would be dropped; the host's
             * retransmission recovers it. */
            uart_fifo_on();
            boot_newest();
        }
    }
    eg_serve(); /* update mode */
    return 0;
}
