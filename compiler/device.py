"""edgegrad board / flash / monitor / pull: living with a board over its serial port.

    edgegrad board --pflash build/board --port 5555    # QEMU board with persistent flash (foreground)
    edgegrad flash build/m --port socket://127.0.0.1:5555 --checkpoint-every 50
    edgegrad monitor --port socket://127.0.0.1:5555    # live loss / accuracy / checkpoints
    edgegrad pull --port socket://127.0.0.1:5555 --build build/m --export trained.onnx

PORT is a tty path (/dev/ttyUSB0) or any pyserial URL. The protocol, the bootloader and the flash
layout are described in tools/flash.py and targets/mcu/eg_boot.h.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

from .errors import EdgegradError


def _flash_module():
    from .tools import flash
    return flash


@contextlib.contextmanager
def _open(port: str, timeout: float = 2.0):
    flash = _flash_module()
    cm = flash.connect(port, timeout=timeout)
    try:
        dev = cm.__enter__()
    except flash.FlashError as e:
        raise EdgegradError(str(e)) from None
    try:
        yield dev
    finally:
        cm.__exit__(None, None, None)


def run_board(pflash: str | Path, port: int) -> int:
    """Run a QEMU board in the foreground until Ctrl-C (or until QEMU exits)."""
    flash = _flash_module()
    try:
        board = flash.Board(pflash, port=port, wait=False)
    except flash.FlashError as e:
        raise EdgegradError(str(e)) from None
    def _power_off(signum, frame):  # SIGTERM: still kill QEMU (the finally below)
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, _power_off)
    print(f"board: QEMU virt rv32, bootloader {board.boot_elf}, flash {board.pflash}")
    print(f"board: serial port {board.url}   (Ctrl-C powers it off; the flash file keeps images and checkpoints)")
    try:
        rc = board.proc.wait()
        err = board.proc.stderr.read().decode(errors="replace")
        if rc != 0:
            raise EdgegradError(f"QEMU exited with {rc}: {err[-1000:]}")
        return 0
    finally:
        board.kill()


def _build_info(build: str | Path) -> dict:
    from .run import load_build
    info = load_build(build)
    if info["config"]["target"] != "mcu":
        raise EdgegradError(f"{build}: built for {info['config']['target']}; flash takes an mcu build "
                            f"(edgegrad compile MODEL --target mcu)")
    return info


def run_flash(build: str | Path, port: str, *, checkpoint_every: int | None = None, quiet: bool = False) -> dict:
    flash = _flash_module()
    build = Path(build)
    info = _build_info(build)
    try:
        image = flash.elf_image(build / info["binary"])
        model_hash = flash.model_hash(build)
    except (flash.FlashError, OSError) as e:
        raise EdgegradError(str(e)) from None
    with _open(port) as dev:
        try:
            res = flash.flash_image(dev, image, model_hash)
            if checkpoint_every is not None:
                flash.set_checkpoint_every(dev, checkpoint_every)
            ck = flash.checkpoint_status(dev)
        except flash.ProtocolError as e:
            raise EdgegradError(f"flash failed: {e}") from None
    if not quiet:
        print(f"flashed {build} ({res['bytes']} B, CRC32 {res['crc']:08x}) into {res['slot']} as image #{res['seq']} "
              f"in {res['seconds']:.1f} s; verified in flash, booted model 0x{model_hash:08x}")
        restored = ck["restored_steps"]
        print("checkpoints: " + (f"restored the one of step {restored}" if restored is not None else "none restored")
              + (f", every {ck['every']} steps" if ck["every"] else ", on request only"))
    return res


def run_monitor(port: str, *, interval: float = 1.0, count: int | None = None) -> list[dict]:
    """Print one line per interval: what the device reports about its training."""
    flash = _flash_module()
    lines = []
    with _open(port) as dev:
        try:
            info = flash.attach(dev, "app")
            hello = dev.hello()
            print(f"monitor: model 0x{hello['model_hash']:08x} running from {flash.REGION_NAMES[info['booted']]}")
            n = 0
            while count is None or n < count:
                t = flash.telemetry(dev)
                ck = flash.checkpoint_status(dev)
                acc = (f"{t['correct']}/{t['scored']} = {100 * t['accuracy']:.1f}%" if t["scored"] else "-")
                line = (f"step {ck['steps']:6d}  loss {t['last_loss']:.4f} (mean of last {t['window']}: "
                        f"{t['mean_loss']:.4f})  accuracy (last {t['scored']} scored) {acc}  "
                        f"checkpoint #{ck['last_seq']} @ step {ck['last_steps']}"
                        + (f"  refused NaN/Inf {ck['refused_nonfinite']}" if ck["refused_nonfinite"] else ""))
                print(line, flush=True)
                lines.append({**t, "checkpoint": ck})
                n += 1
                if count is None or n < count:
                    time.sleep(interval)
        except flash.ProtocolError as e:
            raise EdgegradError(f"monitor: {e}") from None
    return lines


def _find_build(model_hash: int, search: Path) -> Path:
    flash = _flash_module()
    for f in sorted(search.rglob("build.json")):
        try:
            if json.loads(f.read_text()).get("config", {}).get("target") == "mcu" and \
                    flash.model_hash(f.parent) == model_hash:
                return f.parent
        except (OSError, ValueError, flash.FlashError):
            continue
    raise EdgegradError(f"no mcu build under {search} has model hash 0x{model_hash:08x}; pass --build DIR")


def run_pull(port: str, export: str | Path, *, build: str | Path | None = None, search: str | Path = "build") -> Path:
    """Read the device's trained parameters into export (the build's ONNX model, same graph and names)."""
    from .export import export_trained
    from .run import Session
    flash = _flash_module()
    with _open(port) as dev:
        try:
            flash.attach(dev, "app")
            device_hash = dev.hello()["model_hash"]
            build_dir = Path(build) if build else _find_build(device_hash, Path(search))
            info = _build_info(build_dir)
            if flash.model_hash(build_dir) != device_hash:
                raise EdgegradError(f"{build_dir} is model 0x{flash.model_hash(build_dir):08x}, the device runs "
                                    f"0x{device_hash:08x}")
            trained = Session(dev, info).trained()
            steps = flash.checkpoint_status(dev)["steps"]
        except flash.ProtocolError as e:
            raise EdgegradError(f"pull: {e}") from None
    export_trained(build_dir / "model.onnx", export, trained)
    print(f"pulled {len(trained)} trained tensors (after {steps} steps) of {build_dir} -> {export}")
    return Path(export)
