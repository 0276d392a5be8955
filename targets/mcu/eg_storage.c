/* eg_storage.c — the application's side of the flash: checkpoints of the trained state and the
 * board requests (eg_board_request) a running model answers. Active only when the edgegrad
 * bootloader started the firmware (a0 = EG_BOOT_MAGIC at reset, kept by startup.S in
 * eg_boot_regs); a firmware booted directly with -kernel fw.elf has no flash and answers
 * CHECKPOINT with an error.
 *
 * A checkpoint is every PARAM and STATE buffer (trained parameters, optimizer state), in buffer
 * order, in checkpoint region 2 or 3 (eg_boot.h): the region *not* holding the newest valid
 * checkpoint is erased, the buffers are programmed, and the header (seq + 1, model hash, steps,
 * CRC) is programmed last, so a power cut at any moment leaves the previous checkpoint as the
 * newest valid one. Buffers holding NaN or Inf are never written. At boot the newest valid
 * checkpoint of this model (same hash, same length) is copied into the buffers.
 * Limit: Adam's bias-correction powers are not a buffer, so an Adam run resumes them at 1.
 */
#include <stdint.h>

#include "eg_boot.h"
#include "eg_proto.h"
#include "model.h"

uint32_t eg_boot_regs[3]; /* a0, a1, a2 at reset (startup.S) */

static int have_flash;             /* booted by the bootloader */
static uint32_t ckpt_every;        /* checkpoint every n TRAIN steps (0 = on request only) */
static uint32_t steps_base;        /* steps held by the checkpoint restored at boot */
static uint32_t restored = 0xFFFFFFFFu;
static uint32_t last_seq, last_steps, refused, failed;
static uint32_t total_steps;       /* steps_base + TRAIN steps since boot */
static int pending_reboot = -1;

static int is_state(const eg_buffer_t *b) { return b->kind == EG_BUF_PARAM || b->kind == EG_BUF_STATE; }

static uint32_t state_bytes(void) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < eg_num_buffers; i++)
        if (is_state(&eg_buffers[i])) n += eg_buffers[i].bytes;
    return n;
}

/* Only float32 buffers can hold NaN/Inf; int8 weights and int32 biases (--dtype int8) are any bits. */
static int all_finite(void) {
    for (uint32_t i = 0; i < eg_num_buffers; i++) {
        const eg_buffer_t *b = &eg_buffers[i];
        if (!is_state(b) || b->dtype != EG_DT_F32 || b->bytes % 4u || (uintptr_t)b->data % 4u) continue;
        const uint32_t *w = (const uint32_t *)b->data;
        for (uint32_t k = 0; k < b->bytes / 4u; k++)
            if ((w[k] & 0x7F800000u) == 0x7F800000u) return 0; /* exponent all ones: Inf or NaN */
    }
    return 1;
}

static int newest_of_this_model(eg_slot_header_t *h) {
    int r = -1;
    for (uint32_t reg = EG_REGION_CKPT_0; reg <= EG_REGION_CKPT_1; reg++) {
        eg_slot_header_t x;
        if (eg_slot_state(reg, &x) != EG_SLOT_VALID || x.hash != eg_model_hash || x.length != state_bytes()) continue;
        if (r < 0 || x.seq > h->seq) {
            *h = x;
            r = (int)reg;
        }
    }
    return r;
}

/* 0 written, -1 flash error, -2 NaN/Inf, -3 no flash. */
static int checkpoint_save(void) {
    if (!have_flash) return -3;
    if (!all_finite()) {
        refused++;
        return -2;
    }
    eg_slot_header_t h = {0};
    int cur = newest_of_this_model(&h);
    uint32_t seq = cur < 0 ? 1u : h.seq + 1u;
    /* the other checkpoint region may hold an older model's newer seq: stay above it too */
    for (uint32_t reg = EG_REGION_CKPT_0; reg <= EG_REGION_CKPT_1; reg++) {
        eg_slot_header_t x;
        if (eg_slot_state(reg, &x) == EG_SLOT_VALID && x.seq >= seq) seq = x.seq + 1u;
    }
    uint32_t region = cur == (int)EG_REGION_CKPT_0 ? EG_REGION_CKPT_1 : EG_REGION_CKPT_0;
    uint32_t len = state_bytes(), at = EG_REGION(region) + EG_SLOT_DATA, crc = 0;
    uint8_t word[4]; /* buffers are streamed through one word: int8 buffers need not be word-sized */
    uint32_t fill = 0;
    if (eg_flash_erase(EG_REGION(region), EG_SLOT_DATA + len) != 0) goto fail;
    for (uint32_t i = 0; i < eg_num_buffers; i++) {
        const eg_buffer_t *b = &eg_buffers[i];
        if (!is_state(b)) continue;
        const uint8_t *src = (const uint8_t *)b->data;
        crc = eg_crc32(crc, src, b->bytes);
        if (fill == 0u && b->bytes % 4u == 0u) { /* the common case (float buffers): in one go */
            if (eg_flash_program(at, src, b->bytes) != 0) goto fail;
            at += b->bytes;
            continue;
        }
        for (uint32_t k = 0; k < b->bytes; k++) {
            word[fill++] = src[k];
            if (fill == 4u) {
                if (eg_flash_program(at, word, 4u) != 0) goto fail;
                at += 4u;
                fill = 0;
            }
        }
    }
    if (fill) { /* last partial word: pad with the erased value */
        while (fill < 4u) word[fill++] = 0xFFu;
        if (eg_flash_program(at, word, 4u) != 0) goto fail;
    }
    if (eg_flash_crc(EG_REGION(region) + EG_SLOT_DATA, len) != crc) goto fail;
    h = (eg_slot_header_t){EG_CKPT_MAGIC, seq, len, crc, eg_model_hash, total_steps, ckpt_every, 0};
    if (eg_slot_commit(region, &h) != 0) goto fail;
    last_seq = seq;
    last_steps = total_steps;
    return 0;
fail:
    failed++;
    return -1;
}

void eg_storage_boot(void) {
    have_flash = eg_boot_regs[0] == EG_BOOT_MAGIC;
    if (!have_flash) return;
    eg_slot_header_t h;
    int region = newest_of_this_model(&h);
    if (region < 0) return;
    /* eg_slot_state has checked the data's CRC: copy it in */
    const uint8_t *src = (const uint8_t *)(EG_REGION(region) + EG_SLOT_DATA);
    for (uint32_t i = 0; i < eg_num_buffers; i++) {
        const eg_buffer_t *b = &eg_buffers[i];
        if (!is_state(b)) continue;
        uint8_t *dst = (uint8_t *)b->data;
        for (uint32_t k = 0; k < b->bytes; k++) dst[k] = src[k];
        src += b->bytes;
    }
    restored = steps_base = total_steps = last_steps = h.aux0;
    last_seq = h.seq;
    ckpt_every = h.aux1;
}

void eg_board_after_train(uint32_t steps, float loss) {
    (void)loss;
    total_steps = steps_base + steps;
    if (have_flash && ckpt_every && total_steps % ckpt_every == 0u) (void)checkpoint_save();
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t err(uint8_t *type, uint8_t *out, uint8_t code, const char *msg) {
    uint32_t n = 0;
    *type = EG_RSP_ERR;
    out[n++] = code;
    while (*msg && n < 64u) out[n++] = (uint8_t)*msg++;
    return n;
}

uint32_t eg_board_request(uint8_t req, const uint8_t *in, uint32_t len, uint8_t *out, uint8_t *type) {
    *type = EG_RSP_OK;
    switch (req) {
    case EG_REQ_FLASH_INFO:
        if (!have_flash) return err(type, out, EG_ERR_STATE, "no flash: not started by the bootloader");
        return eg_flash_info(out, EG_ROLE_APP, eg_boot_regs[1]);
    case EG_REQ_FLASH_READ: {
        if (!have_flash) return err(type, out, EG_ERR_STATE, "no flash: not started by the bootloader");
        int32_t n = eg_flash_read_req(in, len, out);
        return n < 0 ? err(type, out, EG_ERR_RANGE, "bad FLASH_READ") : (uint32_t)n;
    }
    case EG_REQ_FLASH_ERASE:
    case EG_REQ_FLASH_WRITE:
    case EG_REQ_FLASH_COMMIT:
        return err(type, out, EG_ERR_STATE, "the application does not write images: REBOOT to the bootloader");
    case EG_REQ_BOOT:
        return 0; /* already running */
    case EG_REQ_REBOOT:
        if (!have_flash) return err(type, out, EG_ERR_STATE, "no bootloader to reboot into");
        pending_reboot = len >= 4u && get_u32(in) != 0u;
        return 0;
    case EG_REQ_CKPT_EVERY:
        if (len != 4u) return err(type, out, EG_ERR_BAD_PAYLOAD, "CKPT_EVERY wants u32 steps");
        ckpt_every = get_u32(in);
        put_u32(out, ckpt_every);
        return 4u;
    case EG_REQ_CHECKPOINT: {
        if (len == 4u && get_u32(in) == 1u) {
            int rc = checkpoint_save();
            if (rc == -3) return err(type, out, EG_ERR_STATE, "no flash: not started by the bootloader");
            if (rc == -2) return err(type, out, EG_ERR_STATE, "parameters hold NaN/Inf: checkpoint not written");
            if (rc == -1) return err(type, out, EG_ERR_FLASH, "flash write failed");
        }
        const uint32_t f[8] = {(uint32_t)have_flash, ckpt_every, restored, total_steps, last_seq, last_steps,
                               refused, failed};
        for (int k = 0; k < 8; k++) put_u32(out + 4 * k, f[k]);
        return 32u;
    }
    default:
        return EG_BOARD_UNKNOWN;
    }
}

void eg_board_after_response(void) {
    if (pending_reboot >= 0) eg_reboot(pending_reboot);
}
