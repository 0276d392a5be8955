"""QEMU command line for the mcu target (used by tools/runner.py).

    qemu-system-riscv32 -M virt -bios none -kernel fw.elf -nographic -icount shift=0
        -monitor none -serial tcp:127.0.0.1:PORT,server=on,wait=on [-cpu rv32,...]

-icount shift=0 makes minstret count instructions exactly (deterministic figures); the serial
port is a loopback-only TCP server that holds the guest until the host connects, so no byte
of the first request can be lost.
"""

from __future__ import annotations

import json
from pathlib import Path

TARGET_JSON = Path(__file__).with_name("target.json")

# ISA extensions (target.json "extensions" / build(extensions=...)) -> QEMU rv32 cpu properties.
CPU_PROPERTIES = {
    "zfh": ["zfh=true"],
    "v": ["v=true", "vlen=128"],
    # QEMU 10.0 keeps mstatus.VS read-only zero unless misa.V is set, so a Zve32f-only cpu traps
    # on its first vector instruction (csrr vlenb): emulate the board with full V, a superset;
    # the firmware is compiled for zve32f and cannot use the rest.
    "zve32f": ["v=true"],
    "zvfh": ["zvfh=true"],
    "zvl128b": ["vlen=128"],
}


def qemu_command(elf: str | Path, port: int, extensions: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The argv that boots `elf` with its UART on 127.0.0.1:`port`."""
    spec = json.loads(TARGET_JSON.read_text())
    argv = [arg.format(elf=str(elf), port=port) for arg in spec["qemu"]]
    props: list[str] = []
    for ext in extensions:
        for prop in CPU_PROPERTIES.get(ext.lower(), [f"{ext.lower()}=true"]):
            if prop not in props:
                props.append(prop)
    if props:
        argv += ["-cpu", ",".join(["rv32", *props])]
    return argv


# The board with persistent flash (tools/flash.py): the bootloader boots from -kernel, the image
# slots and checkpoints live in CFI pflash unit 1 (0x22000000, a 32 MiB raw file). Unit 0 stays
# empty: with it present QEMU resets into flash instead of DRAM.
PFLASH_BYTES = 32 * 1024 * 1024


def board_command(boot_elf: str | Path, pflash_file: str | Path, port: int, *, wait: bool = True) -> list[str]:
    """The argv of a board: bootloader + persistent flash, UART on 127.0.0.1:`port`."""
    spec = json.loads(TARGET_JSON.read_text())
    argv = [arg.format(elf=str(boot_elf), port=port) for arg in spec["qemu"]]
    if not wait:
        argv = [a.replace("wait=on", "wait=off") for a in argv]
    return argv + ["-drive", f"if=pflash,unit=1,format=raw,file={pflash_file}"]
