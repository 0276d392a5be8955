"""Host side of the edgegrad serial protocol (the device side is runtime_c/eg_proto.c).

Frame (both directions), integers little-endian:

    0xEB | type u8 | seq u8 | len u16 | payload[len <= 1024] | CRC32 u32 over type..payload

CRC32 is IEEE (zlib.crc32). Requests and their OK payloads:

    0x01 HELLO     -                               -> u32 version, u32 model hash, u32 n buffers, u16 max payload
    0x02 BUF_INFO  u32 index                       -> u8 kind, u32 bytes, u8 n, name[n]
    0x03 WRITE     u32 index, u32 offset, data     -> -            (ERR for FROZEN / out of range)
    0x04 READ      u32 index, u32 offset, u16 n    -> data[n]
    0x05 INFER     -                               -> u64 instret
    0x06 TRAIN     -                               -> f32 loss, u64 instret of the step
    0x07 STATS     -                               -> u64 last instret, u32 stack never used, u32 TRAIN steps run
    0x08 RESET     -                               -> -            (eg_init: optimizer state)
    0x09 EXIT      [u32 code]                      -> -            (then the device exits)
    0x0A TELEMETRY -                               -> u32 steps, f32 last loss, f32 mean loss, u32 n, u32 scored,
                                                      u32 correct (last 32 SCOREs)
    0x0B SCORE     u32 label                       -> u8 argmax(output 0) == label (after INFER; tallied)
    0x10..0x18     board requests: flash slots, BOOT, REBOOT, checkpoints (tools/flash.py,
                   targets/mcu/eg_boot.h); a board without them answers ERR unknown type

Responses carry the request's seq: 0x80 OK, 0x81 ERR (u8 code, ASCII message), 0x82 NAK
(u8 reason; the device got a damaged frame). Reliability:

  * Every new request gets the next seq (mod 256); responses with another seq are stale
    duplicates and are skipped.
  * On a timeout, a NAK or a damaged response the client re-sends the *same* frame (same seq,
    same bytes). The device recognises it (same seq and CRC as its last request) and replays its
    cached response without executing again, so a retried TRAIN is applied once.
  * Before a re-send after a timeout, the client sends MAX_FRAME zero bytes: they complete a
    truncated request the device may be stuck in (its CRC then fails and it is dropped) and are
    skipped by a device that is hunting for magic.
"""

from __future__ import annotations

import os
import select
import struct
import time
import zlib
from dataclasses import dataclass
from typing import Protocol

MAGIC = 0xEB
VERSION = 1
MAX_PAYLOAD = 1024
HEADER = 5
MAX_FRAME = HEADER + MAX_PAYLOAD + 4

HELLO, BUF_INFO, WRITE, READ, INFER, TRAIN, STATS, RESET, EXIT = range(1, 10)
OK, ERR, NAK = 0x80, 0x81, 0x82
REQUEST_NAMES = {HELLO: "HELLO", BUF_INFO: "BUF_INFO", WRITE: "WRITE", READ: "READ", INFER: "INFER",
                 TRAIN: "TRAIN", STATS: "STATS", RESET: "RESET", EXIT: "EXIT"}

KIND_NAMES = {0: "input", 1: "output", 2: "frozen", 3: "param", 4: "state", 5: "target"}
ERR_UNKNOWN_TYPE, ERR_BAD_PAYLOAD, ERR_RANGE, ERR_FROZEN = 1, 2, 3, 4


def crc32(data: bytes) -> int:
    """IEEE CRC32, identical to eg_crc32() on the device."""
    return zlib.crc32(data) & 0xFFFFFFFF


def encode_frame(ftype: int, seq: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes > {MAX_PAYLOAD}")
    body = struct.pack("<BBH", ftype, seq & 0xFF, len(payload)) + payload
    return bytes([MAGIC]) + body + struct.pack("<I", crc32(body))


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


class ProtocolError(Exception):
    """The link failed: retries exhausted, or the device answered something unexpected."""


class DeviceError(ProtocolError):
    """The device refused a request with an ERR frame (bad index, frozen buffer, ...)."""

    def __init__(self, code: int, message: str):
        super().__init__(f"device error {code}: {message}")
        self.code = code
        self.message = message


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self, n: int, timeout: float) -> bytes:
        """Up to n bytes; fewer only if `timeout` seconds pass first (b'' if none came)."""
        ...

    def close(self) -> None: ...


class PipeTransport:
    """The host binary's stdin/stdout."""

    def __init__(self, proc):
        self.proc = proc
        self._rfd = proc.stdout.fileno()

    def write(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError) as err:
            raise ProtocolError(f"device process is gone (exit code {self.proc.poll()})") from err

    def read(self, n: int, timeout: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._rfd], [], [], left)[0]:
                break
            chunk = os.read(self._rfd, n - len(out))
            if not chunk:  # EOF: the process closed stdout
                break
            out += chunk
        return bytes(out)

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except (BrokenPipeError, OSError):
                pass


class SerialTransport:
    """A pyserial port (a tty, or serial_for_url('socket://127.0.0.1:PORT') for QEMU)."""

    def __init__(self, port):
        self.port = port

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, n: int, timeout: float) -> bytes:
        self.port.timeout = max(timeout, 0.0)
        try:
            return bytes(self.port.read(n))
        except Exception as err:  # pyserial's SerialException: the peer (QEMU) went away
            raise ProtocolError(f"serial link closed: {err}") from err

    def close(self) -> None:
        self.port.close()


@dataclass
class LinkStats:
    requests: int = 0
    resends: int = 0     # frames sent again (any cause)
    timeouts: int = 0
    naks: int = 0
    bad_frames: int = 0  # responses that failed CRC or were cut short
    stale: int = 0       # responses with an old seq, skipped


class Device:
    """A model behind the protocol. All calls block; failures raise ProtocolError."""

    def __init__(self, transport: Transport, *, timeout: float = 1.0, retries: int = 8):
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.seq = 0
        self.link = LinkStats()
        self.noise = bytearray()  # bytes that were not frames (e.g. a trap report), for diagnostics
        self._buffers: list[dict] | None = None

    # ---- requests ----------------------------------------------------------------------
    def hello(self) -> dict:
        p = self.request(HELLO)
        version, model_hash, count, max_payload = struct.unpack("<IIIH", p[:14])
        if version != VERSION:
            raise ProtocolError(f"device speaks protocol {version}, this client {VERSION}")
        return {"version": version, "model_hash": model_hash, "buffers": count, "max_payload": max_payload}

    def buffers(self) -> list[dict]:
        """[{index, name, bytes, kind, kind_name}] in the model's order (cached)."""
        if self._buffers is None:
            out = []
            for i in range(self.hello()["buffers"]):
                p = self.request(BUF_INFO, struct.pack("<I", i))
                kind, nbytes, n = struct.unpack("<BIB", p[:6])
                out.append({"index": i, "name": p[6:6 + n].decode(), "bytes": nbytes, "kind": kind,
                            "kind_name": KIND_NAMES.get(kind, str(kind))})
            self._buffers = out
        return self._buffers

    def index(self, name: str) -> int:
        for b in self.buffers():
            if b["name"] == name:
                return b["index"]
        raise KeyError(f"no buffer named {name!r}")

    def write_buffer(self, i: int, data: bytes, offset: int = 0) -> None:
        data = bytes(data)
        step = MAX_PAYLOAD - 8
        for at in range(0, len(data), step) or [0]:
            self.request(WRITE, struct.pack("<II", i, offset + at) + data[at:at + step])

    def read_buffer(self, i: int, offset: int = 0, nbytes: int | None = None) -> bytes:
        if nbytes is None:
            nbytes = self.buffers()[i]["bytes"] - offset
        out = bytearray()
        while len(out) < nbytes:
            n = min(MAX_PAYLOAD, nbytes - len(out))
            chunk = self.request(READ, struct.pack("<IIH", i, offset + len(out), n))
            if len(chunk) != n:
                raise ProtocolError(f"READ returned {len(chunk)} bytes, asked {n}")
            out += chunk
        return bytes(out)

    def infer(self) -> int:
        """Runs eg_infer(); returns its instruction count (0 where the board has no counter)."""
        return struct.unpack("<Q", self.request(INFER))[0]

    def train_step(self, timeout: float | None = None) -> float:
        """One optimizer step. `timeout` (seconds) replaces the link's reply timeout for this request
        only: an emulated step can take seconds where every other request answers at once."""
        saved = self.timeout
        if timeout is not None:
            self.timeout = timeout
        try:
            loss, self.last_instret = struct.unpack("<fQ", self.request(TRAIN))
        finally:
            self.timeout = saved
        return loss

    def stats(self) -> dict:
        instret, stack_free, steps = struct.unpack("<QII", self.request(STATS))
        return {"instret": instret, "stack_free": stack_free, "train_steps": steps}

    def reset(self) -> None:
        self.request(RESET)

    def exit(self, code: int = 0) -> None:
        self.request(EXIT, struct.pack("<I", code))

    def close(self) -> None:
        self.transport.close()

    # ---- reliable request/response --------------------------------------------------------
    def request(self, ftype: int, payload: bytes = b"") -> bytes:
        """Send one request, return the OK payload; retransmits the same frame on trouble."""
        self.seq = (self.seq + 1) & 0xFF
        frame = encode_frame(ftype, self.seq, payload)
        self.link.requests += 1
        self.transport.write(frame)
        problems = []
        for attempt in range(self.retries + 1):
            reply, problem = self._await(self.seq)
            if reply is not None:
                if reply.type == OK:
                    return reply.payload
                if reply.type == ERR:
                    code = reply.payload[0] if reply.payload else 0
                    raise DeviceError(code, reply.payload[1:].decode(errors="replace"))
                raise ProtocolError(f"unexpected response type 0x{reply.type:02x}")
            problems.append(problem)
            if attempt == self.retries:
                break
            self.link.resends += 1
            if problem == "timeout":
                self.transport.write(bytes(MAX_FRAME))  # flush a half-received request out of the device
            self.transport.write(frame)
        noise = bytes(self.noise[-200:]).decode(errors="replace")
        raise ProtocolError(f"{REQUEST_NAMES.get(ftype, ftype)} seq {self.seq} failed after "
                            f"{self.retries + 1} tries ({', '.join(problems)})"
                            + (f"; device said: {noise!r}" if noise.strip() else ""))

    def _await(self, seq: int) -> tuple[Frame | None, str]:
        """Next response for `seq`, or (None, why) on timeout / NAK / damaged frame."""
        while True:
            frame, problem = self._read_frame()
            if frame is None:
                return None, problem
            if frame.type == NAK:
                self.link.naks += 1
                return None, "nak"
            if frame.seq != seq:
                self.link.stale += 1
                continue
            return frame, ""

    def _read_frame(self) -> tuple[Frame | None, str]:
        deadline = time.monotonic() + self.timeout
        while True:  # hunt for magic
            b = self.transport.read(1, deadline - time.monotonic())
            if not b:
                self.link.timeouts += 1
                return None, "timeout"
            if b[0] == MAGIC:
                break
            self.noise += b
            del self.noise[:-4096]
        head = self._read_exact(4, deadline)
        if head is None:
            return None, "timeout"
        ftype, seq, n = struct.unpack("<BBH", head)
        if n > MAX_PAYLOAD:
            self.link.bad_frames += 1
            return None, "bad length"
        rest = self._read_exact(n + 4, deadline)
        if rest is None:
            return None, "timeout"
        body = head + rest[:n]
        if crc32(body) != struct.unpack("<I", rest[n:])[0]:
            self.link.bad_frames += 1
            return None, "bad crc"
        return Frame(ftype, seq, rest[:n]), ""

    def _read_exact(self, n: int, deadline: float) -> bytes | None:
        data = self.transport.read(n, max(deadline - time.monotonic(), 0.0))
        if len(data) < n:
            self.link.timeouts += 1
            self.link.bad_frames += 1
            return None
        return data
