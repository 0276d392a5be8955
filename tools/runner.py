"""Start a built model where it runs and talk to it: `with open_device(build_dir, target) as dev:`.

    host: spawn the binary (build_dir/model_host) with pipes; the protocol runs over stdin/stdout.
    mcu:  boot build_dir/fw.elf in QEMU (targets/mcu/qemu.py builds the command line):
            qemu-system-riscv32 -M virt -bios none -kernel fw.elf -nographic -icount shift=0
              -monitor none -serial tcp:127.0.0.1:PORT,server=on,wait=on
          then connect with pyserial serial_for_url("socket://127.0.0.1:PORT"). The port is a
          free loopback port; QEMU is killed when the context exits.
    rpi/jetson: the static aarch64 binary over pipes like host: natively on an aarch64 Linux
          machine, else under `qemu-aarch64 -cpu <qemu_cpu of the board> model_rpi` (firmware.json
          names the board's cpu). EDGEGRAD_AARCH64_RUN="ssh pi@raspberrypi ./model_rpi" runs
          that command instead (the real board: see targets/rpi/README.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import platform
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

try:  # imported as part of a package, or with tools/ on sys.path
    from .proto import Device, PipeTransport, ProtocolError, SerialTransport, Transport
except ImportError:
    from proto import Device, PipeTransport, ProtocolError, SerialTransport, Transport

REPO = Path(__file__).resolve().parent.parent
BINARY_NAMES = {"host": "model_host", "mcu": "fw.elf", "rpi": "model_rpi", "jetson": "model_jetson"}
QEMU = "qemu-system-riscv32"
QEMU_AARCH64 = "qemu-aarch64"
AARCH64_TARGETS = ("rpi", "jetson")


def qemu_available() -> bool:
    return shutil.which(QEMU) is not None


def resolve_binary(build_dir_or_binary: str | Path, target: str) -> Path:
    path = Path(build_dir_or_binary)
    if path.is_dir():
        path = path / BINARY_NAMES[target]
    if not path.exists():
        raise FileNotFoundError(f"no {target} binary at {path}")
    return path


@contextlib.contextmanager
def open_device(build_dir_or_binary: str | Path, target: str, *, timeout: float = 1.0, retries: int = 8,
                wrap: Callable[[Transport], Transport] | None = None) -> Iterator[Device]:
    """A connected Device; `wrap` may interpose on the transport (tests inject faults with it)."""
    binary = resolve_binary(build_dir_or_binary, target)
    if target == "mcu":
        cm = _qemu_transport(binary)
    elif target in AARCH64_TARGETS:
        cm = _pipe_transport(binary, aarch64_command(binary))
    else:
        cm = _pipe_transport(binary)
    with cm as transport:
        dev = Device(wrap(transport) if wrap else transport, timeout=timeout, retries=retries)
        try:
            yield dev
        finally:
            dev.close()


@contextlib.contextmanager
def _pipe_transport(binary: Path, command: list[str] | None = None) -> Iterator[Transport]:
    proc = subprocess.Popen(command or [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    transport = PipeTransport(proc)
    try:
        yield transport
    finally:
        transport.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
        if proc.returncode != 0:
            raise ProtocolError(f"{binary.name} exited with {proc.returncode}: {err[-2000:]}")


def qemu_aarch64_available() -> bool:
    return shutil.which(QEMU_AARCH64) is not None


def aarch64_command(binary: Path) -> list[str]:
    """How to start an rpi/jetson binary here: $EDGEGRAD_AARCH64_RUN (e.g. ssh to the board),
    natively on aarch64 Linux, else under qemu-aarch64 with the board's cpu."""
    custom = os.environ.get("EDGEGRAD_AARCH64_RUN")
    if custom:
        return shlex.split(custom)
    if platform.machine() in ("aarch64", "arm64") and platform.system() == "Linux":
        return [str(binary)]
    if not qemu_aarch64_available():
        raise FileNotFoundError(f"{QEMU_AARCH64} not found (tools/setup.sh installs qemu-user)")
    info = binary.parent / "firmware.json"
    cpu = json.loads(info.read_text()).get("qemu_cpu", "max") if info.exists() else "max"
    return [QEMU_AARCH64, "-cpu", cpu, str(binary)]


def _load_qemu_module():
    spec = importlib.util.spec_from_file_location("eg_mcu_qemu", REPO / "targets" / "mcu" / "qemu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def qemu_command_for(elf: Path, port: int) -> list[str]:
    info = elf.parent / "firmware.json"
    extensions = json.loads(info.read_text()).get("extensions", []) if info.exists() else []
    return _load_qemu_module().qemu_command(elf, port, extensions)


@contextlib.contextmanager
def _qemu_transport(elf: Path, attempts: int = 3) -> Iterator[Transport]:
    if not qemu_available():
        raise FileNotFoundError(f"{QEMU} not found (tools/setup.sh installs it)")
    for attempt in range(attempts):  # the free port may be taken between probe and bind
        port = _free_port()
        proc = subprocess.Popen(qemu_command_for(elf, port), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        link = _connect(proc, port)
        if link is not None:
            break
        proc.kill()
        err = proc.communicate()[1].decode(errors="replace")
        if attempt == attempts - 1:
            raise ProtocolError(f"QEMU did not open 127.0.0.1:{port}: {err[-2000:]}")
    try:
        yield SerialTransport(link)
    except ProtocolError as err:
        time.sleep(0.1)  # let a firmware that is exiting finish
        if proc.poll() is not None:  # sifive_test exit: 3 = trap (reported on the UART), else EXIT's code
            raise ProtocolError(f"{err}; QEMU exited with status {proc.returncode}") from err
        raise
    finally:
        with contextlib.suppress(Exception):
            link.close()
        proc.kill()
        proc.communicate()


def _connect(proc: subprocess.Popen, port: int, wait_s: float = 10.0):
    import serial

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            return serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1.0)
        except serial.SerialException:
            time.sleep(0.02)
    return None
