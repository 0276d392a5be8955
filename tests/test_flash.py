"""Flash over the serial link to the QEMU board (bootloader + CFI pflash file), end to end.

- flash + boot + verify: the image lands in the inactive slot, its CRC is checked in flash, the
  board boots it and answers with the flashed model's hash; a second flash goes to the other slot.
- 1% of the bytes flipped (both directions) by a TCP proxy between pyserial and QEMU: the flasher
  still writes a bit-identical image through NAKs, retransmissions and smaller chunks.
- flashes killed at random points (QEMU SIGKILLed; kill times drawn from a seeded RNG over the
  measured length of a flash): the board always boots, and boots the previous image unless the
  COMMIT had been sent.
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))

import flash
from edgegrad.build import build
from proto import Device, SerialTransport

FIXTURES = REPO / "tests" / "fixtures"
TINY_HASH = 0x7E57AB1E



@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Two different small firmware images of the tiny fixture model, and the bootloader."""
    root = tmp_path_factory.mktemp("flash")
    a = build("mcu", root / "a", [FIXTURES / "tiny_model.c"], [FIXTURES])
    b = build("mcu", root / "b", [FIXTURES / "tiny_model.c"], [FIXTURES], extra_cflags=["-Os"])
    boot = flash.build_bootloader(root / "boot")
    ia, ib = flash.elf_image(a), flash.elf_image(b)
    assert ia != ib
    return {"a": ia, "b": ib, "boot": boot, "root": root}


def booted(dev) -> tuple[int, int]:
    """(region booted, CRC of the image in it) as the running application reports it."""
    info = flash.attach(dev, "app")
    region = info["booted"]
    return region, info["regions"][region]["crc"]


@pytest.mark.parametrize("args,message", [
    (["flash", "{tmp}", "--port", "socket://127.0.0.1:9"], "not an edgegrad build folder"),
    (["flash", "{host}", "--port", "socket://127.0.0.1:9"], "flash takes an mcu build"),
    (["monitor", "--port", "socket://127.0.0.1:9"], "cannot open socket://127.0.0.1:9"),
    (["pull", "--port", "/dev/nonexistent-tty", "--export", "{tmp}/x.onnx"], "cannot open /dev/nonexistent-tty"),
])
def test_cli_errors_are_one_line(args, message, tmp_path, capsys):
    from edgegrad.cli import main
    host = tmp_path / "host"
    host.mkdir()
    (host / "build.json").write_text('{"binary": "model_host", "config": {"target": "host"}}')
    argv = [a.format(tmp=tmp_path, host=host) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgegrad: error: ") and message in err[0], err


def test_elf_image_rejects_what_is_not_an_mcu_image(tmp_path):
    (tmp_path / "x.elf").write_bytes(b"not an elf")
    with pytest.raises(flash.FlashError, match="not a 32-bit"):
        flash.elf_image(tmp_path / "x.elf")


@pytest.mark.qemu
def test_elf_image_places_segments_at_their_load_address(images):
    image = images["a"]
    assert len(image) % 4 == 0 and len(image) < 64 * 1024
    # the reset vector of the application (startup.S: first instruction at 0x80000000) is at offset 0
    assert image[:4] != bytes(4)


@pytest.mark.qemu
def test_flash_boot_verify_and_ab_slots(images, tmp_path):
    with flash.open_board(tmp_path, boot_elf=images["boot"]) as (_board, dev):
        info = flash.flash_info(dev)
        assert info["role"] == "bootloader"  # nothing to boot on an erased flash: update mode
        assert [r["state"] for r in info["regions"]] == ["empty"] * 4
        with pytest.raises(flash.FlashError, match="no valid image"):
            flash.attach(dev, "app")
        first = flash.flash_image(dev, images["a"], TINY_HASH, progress=False)
        assert first["region"] == 0 and first["seq"] == 1
        assert booted(dev) == (0, flash.crc32(images["a"]))
        assert dev.hello()["model_hash"] == TINY_HASH
        # the flashed application trains: a step changes W
        w0 = dev.read_buffer(dev.index("W"))
        dev.write_buffer(dev.index("x"), struct.pack("<4f", 0.5, -1.25, 0.75, 2.0))
        dev.train_step()
        assert dev.read_buffer(dev.index("W")) != w0
        # a second image goes to the other slot, from the running application (REBOOT into update mode)
        second = flash.flash_image(dev, images["b"], TINY_HASH, progress=False)
        assert second["region"] == 1 and second["seq"] == 2
        assert booted(dev) == (1, flash.crc32(images["b"]))
        # read-back through FLASH_READ: the slot holds exactly the image
        data = b"".join(dev.request(flash.FLASH_READ, struct.pack("<IIH", 1, 256 + at, min(1024, len(images["b"]) - at)))
                        for at in range(0, len(images["b"]), 1024))
        assert data == images["b"]
    # power off and on: the same image boots from the pflash file
    with flash.open_board(tmp_path, boot_elf=images["boot"]) as (_board, dev):
        assert booted(dev) == (1, flash.crc32(images["b"]))
        # the bootloader refuses to touch the slot that boots
        flash.attach(dev, "bootloader")
        with pytest.raises(flash.DeviceError, match="boots"):
            dev.request(flash.FLASH_ERASE, struct.pack("<II", 1, 1024))


class FlipProxy:
    """A loopback TCP proxy that flips one random bit in `rate` of the bytes, both directions."""

    def __init__(self, target_port: int, rate: float, seed: int):
        self.target_port, self.rate, self.rng = target_port, rate, random.Random(seed)
        self.flipped = self.relayed = 0
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        client, _ = self.server.accept()
        deadline = time.monotonic() + 10
        while True:  # QEMU may still be starting
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    client.close()
                    return
                time.sleep(0.05)
        for sock in (client, upstream):  # like QEMU's nodelay=on: no Nagle stalls on small frames
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for src, dst in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(4096):
                buf = bytearray(data)
                with self.lock:
                    for i in range(len(buf)):
                        if self.rng.random() < self.rate:
                            buf[i] ^= 1 << self.rng.randrange(8)
                            self.flipped += 1
                    self.relayed += len(buf)
                dst.sendall(bytes(buf))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.mark.qemu
def test_flash_through_a_link_that_flips_one_percent_of_bytes(images, tmp_path):
    import serial
    board = flash.Board(tmp_path, boot_elf=images["boot"], wait=False)  # erased flash: it waits in update mode
    try:
        proxy = FlipProxy(board.port, rate=0.01, seed=7)
        link = serial.serial_for_url(f"socket://127.0.0.1:{proxy.port}", timeout=0.3)
        dev = Device(SerialTransport(link), timeout=0.3, retries=60)
        res = flash.flash_image(dev, images["a"], TINY_HASH, progress=False)
        assert res["crc"] == flash.crc32(images["a"])
        assert booted(dev) == (0, flash.crc32(images["a"]))
        assert proxy.flipped > 0.005 * proxy.relayed, (proxy.flipped, proxy.relayed)
        assert dev.link.resends > 10  # the damage was real and the retries repaired it
        print(f"flipped {proxy.flipped} of {proxy.relayed} bytes; {len(images['a'])} B image in {res['seconds']:.1f} s; "
              f"link {vars(dev.link)}")
        dev.close()
    finally:
        board.kill()
    # the slot holds exactly the image (checked on a clean link)
    with flash.open_board(tmp_path, boot_elf=images["boot"]) as (board, dev):
        info = flash.flash_info(dev)
        slot = info["regions"][0]
        assert slot["state"] == "valid" and slot["length"] == len(images["a"])
        assert slot["crc"] == flash.crc32(images["a"])


@pytest.mark.qemu
def test_interrupted_flash_still_boots_the_previous_image(images, tmp_path):
    """Kill points: just before request n of the flash (erase, each chunk, commit, boot) plus a
    random 0-3 ms, so that QEMU dies while that request is on the wire or being executed."""
    rng = random.Random(2026)
    with flash.open_board(tmp_path, boot_elf=images["boot"]) as (board, dev):
        flash.flash_image(dev, images["a"], TINY_HASH, progress=False)
        current = booted(dev)
    n_requests = 3 + -(-len(images["b"]) // flash.WRITE_CHUNK)  # erase, chunks, commit, + a little after
    outcomes = {"old": 0, "new": 0}
    for trial in range(8):
        new = images["a"] if current[1] == flash.crc32(images["b"]) else images["b"]
        kill_before = rng.randrange(n_requests)
        delay = rng.uniform(0.0, 0.003)
        with flash.open_board(tmp_path, boot_elf=images["boot"]) as (board, dev):
            flash.attach(dev, "bootloader")
            sent = []
            real_request = dev.request

            def request(ftype, payload=b"", _real=real_request, _sent=sent, _board=board, _at=kill_before,
                        _delay=delay):
                if ftype in (flash.FLASH_ERASE, flash.FLASH_WRITE, flash.FLASH_COMMIT, flash.BOOT):
                    if len(_sent) == _at:
                        threading.Timer(_delay, _board.kill).start()
                    _sent.append(ftype)
                return _real(ftype, payload)

            dev.request = request
            try:
                flash.flash_image(dev, new, TINY_HASH, progress=False)
                finished = True
            except (flash.ProtocolError, OSError):  # the link dies with QEMU
                finished = False
        with flash.open_board(tmp_path, boot_elf=images["boot"]) as (_board, dev):
            now = booted(dev)
        if now == current:
            outcomes["old"] += 1
        else:
            assert flash.FLASH_COMMIT in sent, f"trial {trial}: new image booted but COMMIT was never sent"
            assert now[1] == flash.crc32(new) and now[0] != current[0], f"trial {trial}: booted {now}"
            outcomes["new"] += 1
        if finished:
            assert now[1] == flash.crc32(new)
        current = now
    assert outcomes["old"] >= 3, outcomes  # most kill points lie before the commit
