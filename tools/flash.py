"""Flash, boot and checkpoint an mcu board over its serial port (the device side is
targets/mcu/boot/boot.c, targets/mcu/eg_storage.c; layout and rules in targets/mcu/eg_boot.h).

    with open_board("build/board") as port_url: ...      # QEMU board with a persistent pflash file
    with connect(port_url) as dev:
        flash_image(dev, elf_image("build/m/fw.elf"), model_hash("build/m"))  # writes the inactive slot
        attach(dev, "app")                                                     # boots the newest image

The flash is QEMU virt's CFI pflash unit 1 (a 32 MiB file, `DIR/pflash.bin`): image slots A and
B, checkpoint slots 0 and 1. A new image goes to the slot that does not hold the image that
boots: erase, program (the device reads every word back), CRC of the flash contents computed by
the device compared with the host's, then COMMIT programs the header; only then does it become
the newest valid image. A flash cut short at any point leaves the previous image booting.

Board requests (same framing, seq and retransmission rules as tools/proto.py); B = bootloader, A = app:

    0x10 FLASH_INFO   -                                 -> u8 role (1 B, 2 A), u8 booted region, u16 0,
                                                           u32 region bytes, u32 block, u32 data offset,
                                                           4 x (u32 state, seq, length, crc, hash, aux0, aux1)
    0x11 FLASH_ERASE  u32 region, u32 bytes             -> -    B: image region that does not boot
    0x12 FLASH_WRITE  u32 region, u32 offset, data[4k]  -> -    B: programmed and read back word by word
    0x13 FLASH_READ   u32 region, u32 offset, u16 n     -> data[n]   (offset 0 = header)
    0x14 FLASH_COMMIT u32 region, length, crc, seq, hash -> -   B: checks the CRC in flash, writes the header
    0x15 BOOT         -                                 -> -    B: boots the newest valid image; A: no-op
    0x16 REBOOT       u32 update                        -> -    machine reset; update != 0: stay in B
    0x17 CHECKPOINT   u32 save (0 query, 1 write now)   -> 8 x u32: flash, every, restored steps,
                                                           steps, last seq, last steps, refused, failed
    0x18 CKPT_EVERY   u32 steps (0 = on request only)   -> u32 steps
"""

from __future__ import annotations

import contextlib
import json
import re
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    from .proto import Device, DeviceError, ProtocolError, SerialTransport, Transport, crc32
    from .runner import REPO, _connect, _free_port, _load_qemu_module, qemu_available
except ImportError:
    from proto import Device, DeviceError, ProtocolError, SerialTransport, Transport, crc32
    from runner import REPO, _connect, _free_port, _load_qemu_module, qemu_available

MCU = REPO / "targets" / "mcu"
BOOT_DIR = MCU / "boot"
RUN_BASE, RUN_BYTES = 0x80000000, 0x400000
REGION_NAMES = ("image A", "image B", "checkpoint 0", "checkpoint 1")
STATE_NAMES = ("empty", "valid", "invalid")
ROLE_BOOTLOADER, ROLE_APP = 1, 2

FLASH_INFO, FLASH_ERASE, FLASH_WRITE, FLASH_READ, FLASH_COMMIT, BOOT, REBOOT, CHECKPOINT, CKPT_EVERY = range(0x10, 0x19)
TELEMETRY, SCORE = 0x0A, 0x0B
WRITE_CHUNK = 1016  # MAX_PAYLOAD - 8 bytes of region/offset, a multiple of 4
MIN_CHUNK = 32     # the flasher halves its chunks down to this on a link that keeps failing


class FlashError(ProtocolError):
    """Flashing or booting failed (the message says what to do)."""


# ---- firmware images ---------------------------------------------------------------------------


def elf_image(elf: str | Path) -> bytes:
    """The bytes the bootloader copies to 0x80000000: every loaded segment of the ELF, placed at
    its load (physical) address, gaps zero, padded to a whole word. All must lie in the run window."""
    data = Path(elf).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise FlashError(f"{elf}: not a 32-bit little-endian ELF (an mcu fw.elf)")
    phoff, = struct.unpack_from("<I", data, 0x1C)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    segments = []
    for i in range(phnum):
        p_type, p_offset, _vaddr, p_paddr, p_filesz = struct.unpack_from("<IIIII", data, phoff + i * phentsize)
        if p_type == 1 and p_filesz:  # PT_LOAD with bytes in the file
            if not (RUN_BASE <= p_paddr and p_paddr + p_filesz <= RUN_BASE + RUN_BYTES):
                raise FlashError(f"{elf}: segment at 0x{p_paddr:08x} is outside the flash window "
                                 f"0x{RUN_BASE:08x}..0x{RUN_BASE + RUN_BYTES:08x}")
            segments.append((p_paddr - RUN_BASE, data[p_offset:p_offset + p_filesz]))
    if not segments:
        raise FlashError(f"{elf}: no loadable segments")
    image = bytearray(max(off + len(seg) for off, seg in segments))
    for off, seg in segments:
        image[off:off + len(seg)] = seg
    image += bytes(-len(image) % 4)
    return bytes(image)


def model_hash(build: str | Path) -> int:
    """The model hash a build's firmware reports in HELLO (eg_model_hash in model.c)."""
    m = re.search(r"eg_model_hash = 0x([0-9a-f]{8})u", (Path(build) / "model.c").read_text())
    if not m:
        raise FlashError(f"{build}: model.c has no eg_model_hash")
    return int(m.group(1), 16)


def build_bootloader(out_dir: str | Path) -> Path:
    """Compile targets/mcu/boot into out_dir/boot.elf (skipped when it is newer than its sources)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    elf = out / "boot.elf"
    sources = [BOOT_DIR / "startup.S", BOOT_DIR / "boot.c", MCU / "eg_flash.c", MCU / "uart_16550.c",
               REPO / "runtime_c" / "eg_proto.c"]
    deps = sources + [BOOT_DIR / "link.ld", BOOT_DIR / "model.h", MCU / "eg_boot.h", REPO / "runtime_c" / "eg_proto.h"]
    if elf.exists() and elf.stat().st_mtime > max(p.stat().st_mtime for p in deps):
        return elf
    spec = json.loads((MCU / "target.json").read_text())
    cc = [a.format(python=sys.executable) for a in spec["cc"]]
    cflags = [f for f in spec["cflags"] if f != "-O2"] + ["-Os", f"-mcpu={spec['mcpu']}+zifencei"]
    cmd = [*cc, *cflags, f"-I{BOOT_DIR}", f"-I{MCU}", f"-I{REPO / 'runtime_c'}", *map(str, sources),
           *spec.get("ldflags", []), "-T", str(BOOT_DIR / "link.ld"), "-o", str(elf)]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise FlashError(f"bootloader build failed: {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return elf


# ---- the board (QEMU with persistent flash) -----------------------------------------------------


def pflash_file(pflash_dir: str | Path) -> Path:
    """DIR/pflash.bin, created erased (all 0xFF, 32 MiB) when missing."""
    d = Path(pflash_dir)
    d.mkdir(parents=True, exist_ok=True)
    f = d / "pflash.bin"
    size = _load_qemu_module().PFLASH_BYTES
    if not f.exists():
        tmp = f.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            block = b"\xff" * (1 << 20)
            fh.writelines(block for _ in range(size >> 20))
        tmp.replace(f)
    elif f.stat().st_size != size:
        raise FlashError(f"{f}: {f.stat().st_size} bytes, QEMU virt pflash needs exactly {size}")
    return f


def _die_with_parent() -> None:
    """In the QEMU child: SIGKILL it when the process that started it dies (Linux prctl), so a
    board never outlives an interrupted flash, test or demo."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


class Board:
    """A QEMU board process: bootloader + pflash file; its UART is a TCP server on loopback."""

    def __init__(self, pflash_dir: str | Path, *, port: int | None = None, boot_elf: str | Path | None = None,
                 wait: bool = True):
        if not qemu_available():
            raise FlashError("qemu-system-riscv32 not found (tools/setup.sh installs it)")
        self.pflash = pflash_file(pflash_dir)
        self.boot_elf = Path(boot_elf) if boot_elf else build_bootloader(Path(pflash_dir))
        self.port = port or _free_port()
        self.argv = _load_qemu_module().board_command(self.boot_elf, self.pflash, self.port, wait=wait)
        self._lock, self._reaped = threading.Lock(), False
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, preexec_fn=_die_with_parent)  # noqa: PLW1509 (prctl only)

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Power cut: SIGKILL, nothing flushed beyond what QEMU already wrote to the pflash file."""
        with self._lock:  # a test's timer thread and the context exit may both pull the plug
            if self.proc.poll() is None:
                self.proc.kill()
            if not self._reaped:
                self.proc.communicate()
                self._reaped = True


@contextlib.contextmanager
def open_board(pflash_dir: str | Path, *, timeout: float = 2.0, retries: int = 8,
               wrap: Callable[[Transport], Transport] | None = None,
               boot_elf: str | Path | None = None) -> Iterator[tuple[Board, Device]]:
    """Start a board and connect to it: yields (board, device); the board is killed on exit."""
    board = Board(pflash_dir, boot_elf=boot_elf)
    try:
        link = _connect(board.proc, board.port)
        if link is None:
            raise FlashError(f"QEMU board did not start: {board.proc.communicate()[1].decode(errors='replace')[-2000:]}")
        transport = SerialTransport(link)
        dev = Device(wrap(transport) if wrap else transport, timeout=timeout, retries=retries)
        try:
            yield board, dev
        finally:
            dev.close()
    finally:
        board.kill()


@contextlib.contextmanager
def connect(port: str, *, timeout: float = 2.0, retries: int = 8, baudrate: int = 115200) -> Iterator[Device]:
    """A Device on a serial port: a tty path (/dev/ttyUSB0) or any pyserial URL (socket://host:port)."""
    import serial
    try:
        link = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, ValueError) as err:
        raise FlashError(f"cannot open {port}: {err}") from err
    dev = Device(SerialTransport(link), timeout=timeout, retries=retries)
    try:
        yield dev
    finally:
        dev.close()


# ---- requests --------------------------------------------------------------------------------


def flash_info(dev: Device) -> dict:
    """Role (bootloader/app), booted region, and the state of the four flash regions."""
    try:
        p = dev.request(FLASH_INFO)
    except DeviceError as err:
        raise FlashError(f"the device has no flash to manage ({err.message}); start it with the "
                         "edgegrad bootloader (edgegrad board --pflash DIR)") from err
    role, booted = p[0], p[1]
    region_bytes, block, data_off = struct.unpack_from("<III", p, 4)
    regions = []
    for r in range(4):
        st, seq, length, crc, h, aux0, aux1 = struct.unpack_from("<7I", p, 16 + 28 * r)
        regions.append({"region": r, "name": REGION_NAMES[r], "state": STATE_NAMES[st] if st < 3 else str(st),
                        "seq": seq, "length": length, "crc": crc, "hash": h, "aux0": aux0, "aux1": aux1})
    return {"role": {ROLE_BOOTLOADER: "bootloader", ROLE_APP: "app"}.get(role, str(role)),
            "booted": None if booted == 0xFF else booted, "region_bytes": region_bytes, "block": block,
            "data_offset": data_off, "regions": regions}


def newest_image(info: dict) -> dict | None:
    valid = [r for r in info["regions"][:2] if r["state"] == "valid"]
    return max(valid, key=lambda r: r["seq"]) if valid else None


def attach(dev: Device, role: str = "app", wait_s: float = 30.0) -> dict:
    """Bring the device into `role` ("app" or "bootloader") and return its FLASH_INFO.

    app -> bootloader: REBOOT into update mode (a machine reset; the bootloader sees the flag).
    bootloader -> app: BOOT (the newest valid image)."""
    info = _info_retrying(dev, wait_s)
    if info["role"] == role:
        return info
    if role == "bootloader":
        dev.request(REBOOT, struct.pack("<I", 1))
    else:
        if newest_image(info) is None:
            raise FlashError("no valid image on the board: flash one first (edgegrad flash BUILD --port PORT)")
        dev.request(BOOT)
    dev._buffers = None  # another program answers now
    info = _info_retrying(dev, wait_s)
    if info["role"] != role:
        raise FlashError(f"device is still the {info['role']} after asking for the {role}")
    return info


def _info_retrying(dev: Device, wait_s: float) -> dict:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return flash_info(dev)
        except FlashError:
            raise
        except ProtocolError:
            if time.monotonic() > deadline:
                raise


def flash_image(dev: Device, image: bytes, hash_: int, *, progress: bool | None = None,
                on_chunk: Callable[[int], None] | None = None) -> dict:
    """Write `image` to the inactive slot, verify it, commit it, boot it. Returns a summary."""
    from tqdm import tqdm

    if len(image) > RUN_BYTES or len(image) % 4:
        raise FlashError(f"image of {len(image)} bytes: must be a whole number of words <= {RUN_BYTES}")
    info = attach(dev, "bootloader")
    current = newest_image(info)
    region = 1 - current["region"] if current else 0
    seq = max([r["seq"] for r in info["regions"][:2] if r["state"] == "valid"], default=0) + 1
    t0 = time.monotonic()
    dev.request(FLASH_ERASE, struct.pack("<II", region, len(image)))
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(image), unit="B", unit_scale=True, desc=f"flash {REGION_NAMES[region]}", file=sys.stderr,
               disable=not show)
    # Chunks adapt to the link: a chunk that needed resends halves the next one (down to MIN_CHUNK);
    # 16 clean chunks in a row double it again. Big frames rarely survive a noisy link whole, so a
    # chunk gets only a few tries before it is split, and the full retry budget only at MIN_CHUNK.
    at, chunk_size, clean, retries = 0, WRITE_CHUNK, 0, dev.retries
    while at < len(image):
        chunk = image[at:at + chunk_size]
        resends = dev.link.resends
        dev.retries = retries if chunk_size <= MIN_CHUNK else min(retries, 3)
        try:
            dev.request(FLASH_WRITE, struct.pack("<II", region, at) + chunk)
        except DeviceError:
            raise
        except ProtocolError:
            if chunk_size <= MIN_CHUNK:
                raise
            chunk_size = max(MIN_CHUNK, chunk_size // 8 * 4)
            continue
        finally:
            dev.retries = retries
        # (a word programmed twice with the same value is harmless, so re-sending a chunk is safe)
        if dev.link.resends - resends >= 2:
            chunk_size, clean = max(MIN_CHUNK, chunk_size // 8 * 4), 0
        elif dev.link.resends == resends:
            clean += 1
            if clean >= 16 and chunk_size < WRITE_CHUNK:
                chunk_size, clean = min(WRITE_CHUNK, chunk_size * 2), 0
        if on_chunk:
            on_chunk(at)
        at += len(chunk)
        bar.update(len(chunk))
    bar.close()
    crc = crc32(image)
    try:  # the device computes the CRC of what is in flash and refuses a mismatch
        dev.request(FLASH_COMMIT, struct.pack("<IIIII", region, len(image), crc, seq, hash_))
    except DeviceError as err:
        raise FlashError(f"verification failed: {err.message}; the previous image still boots") from err
    info = flash_info(dev)
    slot = info["regions"][region]
    if slot["state"] != "valid" or slot["crc"] != crc or newest_image(info)["region"] != region:
        raise FlashError(f"slot {REGION_NAMES[region]} did not verify after commit: {slot}")
    seconds = time.monotonic() - t0
    info = attach(dev, "app")
    hello = dev.hello()
    if hello["model_hash"] != hash_:
        raise FlashError(f"booted model hash 0x{hello['model_hash']:08x}, flashed 0x{hash_:08x}")
    return {"region": region, "slot": REGION_NAMES[region], "seq": seq, "bytes": len(image), "crc": crc,
            "seconds": seconds, "link": vars(dev.link).copy()}


def checkpoint_status(dev: Device, save: bool = False) -> dict:
    """The device's checkpoint state; with save=True it writes a checkpoint first."""
    p = dev.request(CHECKPOINT, struct.pack("<I", 1 if save else 0))
    f = struct.unpack("<8I", p)
    return {"flash": bool(f[0]), "every": f[1], "restored_steps": None if f[2] == 0xFFFFFFFF else f[2],
            "steps": f[3], "last_seq": f[4], "last_steps": f[5], "refused_nonfinite": f[6], "failed": f[7]}


def set_checkpoint_every(dev: Device, steps: int) -> int:
    return struct.unpack("<I", dev.request(CKPT_EVERY, struct.pack("<I", steps)))[0]


def telemetry(dev: Device) -> dict:
    steps, last, mean, n, scored, correct = struct.unpack("<IffIII", dev.request(TELEMETRY))
    return {"steps": steps, "last_loss": last, "mean_loss": mean, "window": n, "scored": scored, "correct": correct,
            "accuracy": correct / scored if scored else None}


def score(dev: Device, label: int) -> bool:
    """After an INFER: the device compares argmax(output 0) with label and tallies it for TELEMETRY."""
    return dev.request(SCORE, struct.pack("<I", label))[0] == 1
