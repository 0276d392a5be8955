/* eg_proto.c — device side of the framed serial protocol (the wire format is in eg_proto.h).
 *
 * Flow: hunt for magic -> read header -> read payload + CRC -> CRC good? dispatch : NAK and
 * rescan the bytes after the bad magic. A request identical (seq and CRC) to the previous one
 * is a retransmission and gets the cached response; nothing runs twice.
 * Memory: three static frame buffers (rx, rescan queue, cached tx), about 3 KiB; no malloc.
 */
#include "eg_proto.h"
#include "eg_port.h"
#include "model.h"

/* Buffer kinds (model.h documents them); own names so that model.h may use enum or #define. */
#define KIND_OUTPUT 1u
#define KIND_FROZEN 2u

static uint8_t rx[EG_PROTO_MAX_FRAME];   /* the frame being parsed, from its magic on */
static uint8_t pend[EG_PROTO_MAX_FRAME]; /* bytes of a bad frame still to be rescanned */
static uint32_t pend_len, pend_pos;
static uint8_t tx[EG_PROTO_MAX_FRAME];   /* last response, kept for retransmissions */
static uint32_t tx_len;
static int cache_valid;
static uint8_t cache_seq;
static uint32_t cache_crc;

static uint64_t last_instret; /* instructions of the last INFER / TRAIN */
static uint32_t train_steps;  /* TRAIN requests executed since boot (not re-sent ones) */

/* Telemetry: losses of the last EG_WINDOW TRAIN steps and outcomes of the last EG_WINDOW SCOREs. */
#define EG_WINDOW 32u
static float loss_ring[EG_WINDOW];
static float last_loss;
static uint32_t score_bits, scored; /* bit i = outcome of the i-th most recent SCORE */

__attribute__((weak)) uint32_t eg_board_request(uint8_t req, const uint8_t *in, uint32_t len, uint8_t *out,
                                                uint8_t *type) {
    (void)req, (void)in, (void)len, (void)out, (void)type;
    return EG_BOARD_UNKNOWN;
}
__attribute__((weak)) void eg_board_after_response(void) {}
__attribute__((weak)) void eg_board_after_train(uint32_t steps, float loss) { (void)steps, (void)loss; }

/* ---- CRC32 (IEEE, reflected 0xEDB88320), nibble table: 64 bytes of rodata ---------------- */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t eg_crc32(uint32_t crc, const uint8_t *p, uint32_t n) {
    crc = ~crc;
    for (uint32_t i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* ---- little-endian helpers ------------------------------------------------------------- */
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8); }
static void put_u16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_f32(uint8_t *p, float f) {
    union { float f; uint32_t u; } bits;
    bits.f = f;
    put_u32(p, bits.u);
}

/* ---- receive ---------------------------------------------------------------------------- */
static int next_byte(void) {
    if (pend_pos < pend_len) return pend[pend_pos++];
    return eg_port_getc();
}

/* The frame in rx[0..n) is bad: queue rx[1..n) to be scanned again for magic, ahead of any
 * bytes still queued. Bytes are taken from the queue before the port, so if the queue still
 * holds bytes, all of rx came from it and sits just before pend_pos. */
static void rescan_after(uint32_t n) {
    if (pend_pos < pend_len) {
        pend_pos = pend_pos - n + 1u;
    } else {
        for (uint32_t i = 1; i < n; i++) pend[i - 1u] = rx[i];
        pend_len = n - 1u;
        pend_pos = 0;
    }
}

static void send_bytes(const uint8_t *p, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) eg_port_putc(p[i]);
    eg_port_flush();
}

static void send_nak(uint8_t seq, uint8_t reason) {
    uint8_t f[EG_PROTO_HEADER + 1u + 4u];
    f[0] = EG_PROTO_MAGIC;
    f[1] = EG_RSP_NAK;
    f[2] = seq;
    put_u16(f + 3, 1u);
    f[5] = reason;
    put_u32(f + 6, eg_crc32(0, f + 1, 5u));
    send_bytes(f, sizeof f);
}

/* Read one frame whose CRC checks into rx. Returns its payload length, or -1 if the link closed. */
static int32_t read_frame(void) {
    for (;;) {
        int c = next_byte();
        if (c < 0) return -1;
        if (c != (int)EG_PROTO_MAGIC) continue;
        uint32_t n = 0;
        rx[n++] = (uint8_t)c;
        while (n < EG_PROTO_HEADER) {
            if ((c = next_byte()) < 0) return -1;
            rx[n++] = (uint8_t)c;
        }
        uint32_t len = get_u16(rx + 3);
        if (len > EG_PROTO_MAX_PAYLOAD) {
            send_nak(rx[2], EG_NAK_TOO_LONG);
            rescan_after(n);
            continue;
        }
        uint32_t total = EG_PROTO_HEADER + len + 4u;
        while (n < total) {
            if ((c = next_byte()) < 0) return -1;
            rx[n++] = (uint8_t)c;
        }
        if (eg_crc32(0, rx + 1, 4u + len) != get_u32(rx + EG_PROTO_HEADER + len)) {
            send_nak(rx[2], EG_NAK_CRC);
            rescan_after(n);
            continue;
        }
        return (int32_t)len;
    }
}

/* ---- respond ---------------------------------------------------------------------------- */
static uint8_t *const out = tx + EG_PROTO_HEADER; /* response payload */

static void finish(uint8_t type, uint8_t seq, uint32_t len) {
    tx[0] = EG_PROTO_MAGIC;
    tx[1] = type;
    tx[2] = seq;
    put_u16(tx + 3, len);
    put_u32(tx + EG_PROTO_HEADER + len, eg_crc32(0, tx + 1, 4u + len));
    tx_len = EG_PROTO_HEADER + len + 4u;
}

static uint32_t error(uint8_t *type, uint8_t code, const char *msg) {
    uint32_t n = 0;
    *type = EG_RSP_ERR;
    out[n++] = code;
    while (msg[n - 1u] != '\0' && n < 64u) {
        out[n] = (uint8_t)msg[n - 1u];
        n++;
    }
    return n;
}

/* Execute request `req` with payload in[0..len); fills out[], returns the response payload
 * length. EXIT sets *exit_code (otherwise left at -1). */
static uint32_t execute(uint8_t req, const uint8_t *in, uint32_t len, uint8_t *type, int *exit_code) {
    *type = EG_RSP_OK;
    switch (req) {
    case EG_REQ_HELLO:
        put_u32(out, EG_PROTO_VERSION);
        put_u32(out + 4, eg_model_hash);
        put_u32(out + 8, eg_num_buffers);
        put_u16(out + 12, EG_PROTO_MAX_PAYLOAD);
        return 14u;
    case EG_REQ_BUF_INFO: {
        if (len != 4u) return error(type, EG_ERR_BAD_PAYLOAD, "BUF_INFO wants u32 index");
        uint32_t i = get_u32(in);
        if (i >= eg_num_buffers) return error(type, EG_ERR_RANGE, "no such buffer");
        const eg_buffer_t *b = &eg_buffers[i];
        uint32_t n = 0;
        while (b->name[n] != '\0' && n < 255u) {
            out[6u + n] = (uint8_t)b->name[n];
            n++;
        }
        out[0] = b->kind;
        put_u32(out + 1, b->bytes);
        out[5] = (uint8_t)n;
        return 6u + n;
    }
    case EG_REQ_WRITE:
    case EG_REQ_READ: {
        if (len < 8u || (req == EG_REQ_READ && len != 10u))
            return error(type, EG_ERR_BAD_PAYLOAD, "bad WRITE/READ payload");
        uint32_t i = get_u32(in), off = get_u32(in + 4);
        uint32_t n = req == EG_REQ_READ ? get_u16(in + 8) : len - 8u;
        if (i >= eg_num_buffers) return error(type, EG_ERR_RANGE, "no such buffer");
        const eg_buffer_t *b = &eg_buffers[i];
        if (off > b->bytes || n > b->bytes - off || n > EG_PROTO_MAX_PAYLOAD)
            return error(type, EG_ERR_RANGE, "offset/length out of range");
        uint8_t *data = (uint8_t *)b->data + off;
        if (req == EG_REQ_READ) {
            for (uint32_t k = 0; k < n; k++) out[k] = data[k];
            return n;
        }
        if (b->kind == KIND_FROZEN) return error(type, EG_ERR_FROZEN, "buffer is frozen (flash)");
        for (uint32_t k = 0; k < n; k++) data[k] = in[8u + k];
        return 0;
    }
    case EG_REQ_INFER: {
        uint64_t t0 = eg_port_instret();
        eg_infer();
        last_instret = eg_port_instret() - t0;
        put_u64(out, last_instret);
        return 8u;
    }
    case EG_REQ_TRAIN: {
        float loss = 0.0f;
        uint64_t t0 = eg_port_instret();
        eg_train_step(&loss);
        last_instret = eg_port_instret() - t0;
        loss_ring[train_steps % EG_WINDOW] = loss;
        last_loss = loss;
        train_steps++;
        eg_board_after_train(train_steps, loss);
        put_f32(out, loss);
        put_u64(out + 4, last_instret);
        return 12u;
    }
    case EG_REQ_TELEMETRY: {
        uint32_t n = train_steps < EG_WINDOW ? train_steps : EG_WINDOW, correct = 0;
        float sum = 0.0f;
        for (uint32_t k = 0; k < n; k++) sum += loss_ring[k];
        for (uint32_t k = 0; k < scored; k++) correct += (score_bits >> k) & 1u;
        put_u32(out, train_steps);
        put_f32(out + 4, last_loss);
        put_f32(out + 8, n ? sum / (float)n : 0.0f);
        put_u32(out + 12, n);
        put_u32(out + 16, scored);
        put_u32(out + 20, correct);
        return 24u;
    }
    case EG_REQ_SCORE: {
        if (len != 4u) return error(type, EG_ERR_BAD_PAYLOAD, "SCORE wants u32 label");
        const eg_buffer_t *o = 0;
        for (uint32_t i = 0; i < eg_num_buffers && !o; i++)
            if (eg_buffers[i].kind == KIND_OUTPUT) o = &eg_buffers[i];
        if (!o) return error(type, EG_ERR_RANGE, "no output buffer");
        const float *logits = (const float *)o->data;
        uint32_t best = 0;
        for (uint32_t k = 1; k < o->bytes / 4u; k++)
            if (logits[k] > logits[best]) best = k;
        uint32_t hit = best == get_u32(in);
        score_bits = (score_bits << 1) | hit;
        if (scored < EG_WINDOW) scored++;
        out[0] = (uint8_t)hit;
        return 1u;
    }
    case EG_REQ_STATS:
        put_u64(out, last_instret);
        put_u32(out + 8, eg_port_stack_free());
        put_u32(out + 12, train_steps);
        return 16u;
    case EG_REQ_RESET:
        eg_init();
        return 0;
    case EG_REQ_EXIT:
        *exit_code = len >= 4u ? (int)(get_u32(in) & 0xFFu) : 0; /* 0..255 */
        return 0;
    default: {
        uint32_t n = eg_board_request(req, in, len, out, type);
        if (n != EG_BOARD_UNKNOWN) return n;
        return error(type, EG_ERR_UNKNOWN_TYPE, "unknown request type");
    }
    }
}

void eg_serve(void) {
    for (;;) {
        int32_t len = read_frame();
        if (len < 0) return;
        uint8_t req = rx[1], seq = rx[2];
        uint32_t crc = get_u32(rx + EG_PROTO_HEADER + (uint32_t)len);
        if (cache_valid && seq == cache_seq && crc == cache_crc) { /* retransmission */
            send_bytes(tx, tx_len);
            continue;
        }
        uint8_t type;
        int exit_code = -1;
        uint32_t n = execute(req, rx + EG_PROTO_HEADER, (uint32_t)len, &type, &exit_code);
        finish(type, seq, n);
        cache_valid = 1;
        cache_seq = seq;
        cache_crc = crc;
        send_bytes(tx, tx_len);
        if (exit_code >= 0) eg_port_exit(exit_code);
        eg_board_after_response();
    }
}
