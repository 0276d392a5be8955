/* eg_proto.h — the framed serial protocol between a host (tools/proto.py) and a compiled model.
 *
 * Frame (both directions):
 *
 *   +------+------+-----+-----------+-----------------+---------------+
 *   | 0xEB | type | seq | len u16LE | payload[len]    | CRC32 u32 LE  |
 *   +------+------+-----+-----------+-----------------+---------------+
 *   len <= EG_PROTO_MAX_PAYLOAD (1024). CRC32 is IEEE 802.3 (poly 0xEDB88320 reflected, init and
 *   final xor 0xFFFFFFFF, the zlib/binascii crc32) over type, seq, len and payload.
 *   All integers are little-endian; floats are IEEE-754 binary32.
 *
 * Requests (host -> device)          payload                      OK payload
 *   0x01 HELLO                        -                            u32 version, u32 model hash,
 *                                                                  u32 buffer count, u16 max payload
 *   0x02 BUF_INFO                     u32 index                    u8 kind, u32 bytes, u8 n, name[n]
 *   0x03 WRITE                        u32 index, u32 offset, data  -
 *   0x04 READ                         u32 index, u32 offset, u16 n data[n]
 *   0x05 INFER                        -                            u64 instret of eg_infer
 *   0x06 TRAIN                        -                            f32 loss, u64 instret of the step
 *   0x07 STATS                        -                            u64 instret of the last INFER/TRAIN,
 *                                                                  u32 stack bytes never used,
 *                                                                  u32 TRAIN steps executed since boot
 *   0x08 RESET                        -                            -   (eg_init(): optimizer state)
 *   0x09 EXIT                         [u32 code]                   -   (sent, then the device exits)
 *   0x0A TELEMETRY                    -                            u32 TRAIN steps since boot, f32 last loss,
 *                                                                  f32 mean loss of the last n steps, u32 n,
 *                                                                  u32 scored, u32 correct (last 32 SCOREs)
 *   0x0B SCORE                        u32 label                    u8 1 if argmax(output 0) == label, else 0
 *                                                                  (after an INFER; tallied for TELEMETRY)
 *   0x10..0x1F                        board requests (flash, boot, checkpoints): the board's
 *                                     eg_board_request() answers them (targets/mcu/eg_boot.h)
 * Responses (device -> host) carry the request's seq:
 *   0x80 OK   payload as above
 *   0x81 ERR  u8 code (EG_ERR_*), short ASCII message
 *   0x82 NAK  u8 reason (1 bad CRC, 2 length > max); seq is whatever the damaged header held
 *
 * Rules that make retries safe:
 *   - The device acts only on frames whose CRC checks; anything else is answered with NAK and
 *     the receiver resynchronises by rescanning the bytes after the bad frame's magic.
 *   - The device keeps its last response. A request with the same seq and the same CRC as the
 *     previous one is a retransmission: the cached response is re-sent and nothing is executed
 *     again (a retried TRAIN never applies two steps). The host moves seq on (mod 256) for every
 *     new request and ignores responses whose seq is not the one it waits for.
 *   - A truncated request leaves the device waiting for the rest; after a timeout the host sends
 *     EG_PROTO_MAX_FRAME zero bytes (which complete any pending frame, which then fails its CRC,
 *     and are otherwise skipped while hunting for magic) and retransmits.
 */
#ifndef EG_PROTO_H
#define EG_PROTO_H

#include <stdint.h>

#define EG_PROTO_VERSION 1u
#define EG_PROTO_MAGIC 0xEBu
#define EG_PROTO_MAX_PAYLOAD 1024u
#define EG_PROTO_HEADER 5u /* magic, type, seq, len */
#define EG_PROTO_MAX_FRAME (EG_PROTO_HEADER + EG_PROTO_MAX_PAYLOAD + 4u)

enum {
    EG_REQ_HELLO = 0x01,
    EG_REQ_BUF_INFO = 0x02,
    EG_REQ_WRITE = 0x03,
    EG_REQ_READ = 0x04,
    EG_REQ_INFER = 0x05,
    EG_REQ_TRAIN = 0x06,
    EG_REQ_STATS = 0x07,
    EG_REQ_RESET = 0x08,
    EG_REQ_EXIT = 0x09,
    EG_REQ_TELEMETRY = 0x0A,
    EG_REQ_SCORE = 0x0B,
    EG_RSP_OK = 0x80,
    EG_RSP_ERR = 0x81,
    EG_RSP_NAK = 0x82
};

enum {
    EG_ERR_UNKNOWN_TYPE = 1, /* request type not in the table above */
    EG_ERR_BAD_PAYLOAD = 2,  /* payload too short or too long for the request */
    EG_ERR_RANGE = 3,        /* buffer index, offset or length out of range */
    EG_ERR_FROZEN = 4        /* WRITE to a frozen (read-only, in flash) buffer */
};

enum { EG_NAK_CRC = 1, EG_NAK_TOO_LONG = 2 };

/* CRC32 (IEEE) of n bytes continuing from crc (start with 0). Same as zlib's crc32(). */
uint32_t eg_crc32(uint32_t crc, const uint8_t *p, uint32_t n);

/* Board hooks. eg_proto.c has weak defaults (no board requests, nothing after a response or
 * a step); a board that stores images or checkpoints (targets/mcu/eg_storage.c, the bootloader)
 * overrides them. eg_board_request() answers request `req` (payload in[0..len)) into out[] and
 * returns the payload length, setting *type to EG_RSP_OK or EG_RSP_ERR; EG_BOARD_UNKNOWN if it
 * does not know `req`. eg_board_after_response() runs once the response is on the wire (a
 * reboot must not cut it short); eg_board_after_train() runs after every executed TRAIN. */
#define EG_BOARD_UNKNOWN 0xFFFFFFFFu
uint32_t eg_board_request(uint8_t req, const uint8_t *in, uint32_t len, uint8_t *out, uint8_t *type);
void eg_board_after_response(void);
void eg_board_after_train(uint32_t steps, float loss);

/* Serve requests until the link closes (eg_port_getc() returns -1) or EXIT arrives.
 * The caller has run eg_init() once before. */
void eg_serve(void);

#endif /* EG_PROTO_H */
