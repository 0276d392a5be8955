"""Build a compiled model (model.c + runtime) into a host binary or an MCU firmware image.

    build("host", out, sources, includes, sram_budget=..., flash_budget=...)  -> out/model_host
    build("mcu",  out, sources, includes, sram_budget=..., flash_budget=...)  -> out/fw.elf
    build("rpi",  out, sources, includes, board="pi4")                      -> out/model_rpi
    build("jetson", out, sources, includes)                                 -> out/model_jetson

Board support (targets/<target>/) and the protocol loop (runtime_c/eg_proto.c) are added here;
`c_sources` is the model and its kernels. For the mcu the linker script is rendered from
targets/mcu/link.ld.j2 with the budgets, and the section sizes are read back from the ELF;
a firmware that does not fit raises BudgetError naming every part in bytes. The aarch64 targets
(rpi, jetson) are static Linux binaries from aarch64-linux-gnu-gcc; their target.json lists boards
(`-mcpu`, the qemu-aarch64 `-cpu` that stands in for it, worker threads). firmware.json next to
the binary records the target, the board, the extensions and the sizes (tools/runner.py reads it).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jinja2

from .errors import BudgetError, EdgegradError

REPO = Path(__file__).resolve().parent.parent
RUNTIME_DIR = REPO / "runtime_c"
TARGETS_DIR = REPO / "targets"
PROTO_SOURCES = [RUNTIME_DIR / "eg_proto.c"]


class BuildError(EdgegradError):
    """The C compiler or linker failed; the message carries the command and its output."""


def load_target(target: str) -> dict:
    path = TARGETS_DIR / target / "target.json"
    if not path.exists():
        known = sorted(p.parent.name for p in TARGETS_DIR.glob("*/target.json"))
        raise EdgegradError(f"unknown target {target!r} (known: {', '.join(known)})")
    return json.loads(path.read_text())


def build(
    target: str,
    out_dir: str | os.PathLike,
    c_sources: Iterable[str | os.PathLike],
    include_dirs: Iterable[str | os.PathLike],
    *,
    sram_budget: int | None = None,
    flash_budget: int | None = None,
    extra_cflags: Sequence[str] = (),
    sanitize: bool = False,
    stack_bytes: int | None = None,
    extensions: Sequence[str] | None = None,
    board: str | None = None,
    threads: int | None = None,
) -> Path:
    """Compile and link; returns the path of the binary. Budgets and stack default to target.json;
    `board` and `threads` (aarch64 targets) default to the target's default board."""
    spec = load_target(target)
    if (board is not None or threads is not None) and "boards" not in spec:
        raise EdgegradError(f"--board/--threads apply to the rpi and jetson targets, not {target}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    board_dir = TARGETS_DIR / target
    sources = [Path(s) for s in c_sources] + PROTO_SOURCES + [board_dir / s for s in spec["sources"]]
    includes = ["-I" + str(Path(d)) for d in include_dirs] + [f"-I{RUNTIME_DIR}", f"-I{board_dir}"]
    binary = out / spec["binary"]
    info: dict = {"target": target}
    if target == "mcu":
        ext = list(spec.get("extensions", [])) if extensions is None else list(extensions)
        info["extensions"] = ext
        info["sizes"] = _build_mcu(spec, out, binary, sources, includes, list(extra_cflags), ext,
                                   sram_budget, flash_budget, stack_bytes)
    else:
        if sanitize and target != "host":
            raise EdgegradError("sanitize=True is only supported for the host target")
        flags = list(spec["cflags"]) + (list(spec["sanitize_cflags"]) if sanitize else [])
        if "boards" in spec:
            name, b = resolve_board(spec, board)
            n_threads = b["threads"] if threads is None else threads
            if n_threads < 1:
                raise EdgegradError(f"--threads must be at least 1, got {n_threads}")
            flags += [f"-mcpu={b['mcpu']}", f"-DEG_NUM_THREADS={n_threads}"]
            info.update(board=name, mcpu=b["mcpu"], qemu_cpu=b["qemu_cpu"], threads=n_threads)
        if shutil.which(spec["cc"][0]) is None:
            raise EdgegradError(f"{spec['cc'][0]} not found: the {target} target needs it (tools/setup.sh installs it)")
        objects = compile_objects(spec["cc"], [*flags, *extra_cflags], includes, sources, out)
        _run([*spec["cc"], *flags, *list(extra_cflags), *objects, *spec.get("ldflags", []), "-o", str(binary)])
        info["sanitize"] = sanitize
    if "cuda" in spec and (out / "model.cu").exists():
        info["cuda"] = check_cuda(out, spec["cuda"])
    (out / "firmware.json").write_text(json.dumps(info, indent=2) + "\n")
    return binary


# ---- jetson GPU step (model.cu) -------------------------------------------------------------


def cuda_includes() -> list[str]:
    return [f"-I{RUNTIME_DIR / 'cuda'}", f"-I{RUNTIME_DIR}"]


def check_cuda(out: Path, cuda: dict) -> dict:
    """Compile model.cu with nvcc for the board's GPU (-arch=sm_87): x86-64 host code and sm_87
    device code, model_cuda.o. An aarch64 GPU binary needs the aarch64 CUDA runtime, which this
    machine lacks: on the Jetson, build it with the command recorded here (targets/jetson/README.md)."""
    nvcc = shutil.which(cuda["nvcc"])
    board_cmd = (f"nvcc -arch={cuda['arch']} -O3 -Iruntime_c/cuda -Iruntime_c -IBUILD BUILD/model.cu "
                 "runtime_c/eg_proto.c targets/host/port_host.c -o BUILD/model_jetson_gpu  (BUILD: this folder)")
    result = {"arch": cuda["arch"], "build_on_board": board_cmd}
    if nvcc is None:
        result["nvcc"] = "not found: model.cu not compiled"
        return result
    _run([nvcc, f"-arch={cuda['arch']}", "-std=c++17", "-O3", *cuda_includes(), f"-I{out}", "-c",
          str(out / "model.cu"), "-o", str(out / "model_cuda.o")])
    result["object"] = "model_cuda.o"
    return result


def build_cuda_emulation(build_dir: str | os.PathLike) -> Path:
    """The generated CUDA step built as plain C++ for this host (eg_cuda.cuh without nvcc: each
    launch a loop), with the stdin/stdout port: build_dir/model_cuda_emu. Tests train it against
    PyTorch through the protocol, like any host build."""
    out = Path(build_dir)
    if not (out / "model.cu").exists():
        raise EdgegradError(f"{out}: no model.cu (compile with --target jetson)")
    binary = out / "model_cuda_emu"
    objs = []
    for src in [RUNTIME_DIR / "eg_proto.c", TARGETS_DIR / "host" / "port_host.c"]:
        obj = out / (src.stem + ".emu.o")
        _run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{RUNTIME_DIR}", f"-I{out}", "-c", str(src),
              "-o", str(obj)])
        objs.append(str(obj))
    _run(["g++", "-x", "c++", "-std=c++17", "-O2", "-fno-math-errno", "-Wall", "-Wextra", "-Werror",
          *cuda_includes(), f"-I{out}", str(out / "model.cu"), "-x", "none", *objs, "-o", str(binary)])
    return binary


def resolve_board(spec: dict, board: str | None) -> tuple[str, dict]:
    """(name, description) of a board of an aarch64 target; None picks the target's default."""
    name = board or spec["default_board"]
    if name not in spec["boards"]:
        raise EdgegradError(f"unknown board {name!r} for target {spec['name']} (known: {', '.join(spec['boards'])})")
    return name, spec["boards"][name]


# ---- mcu ------------------------------------------------------------------------------------


def _build_mcu(spec: dict, out: Path, binary: Path, sources: list[Path], includes: list[str],
               extra_cflags: list[str], extensions: list[str], sram_budget: int | None,
               flash_budget: int | None, stack_bytes: int | None) -> dict:
    mem = spec["memory"]
    layout = {
        "flash_origin": int(mem["flash_origin"], 0),
        "flash_length": int(mem["flash_window"]),
        "sram_origin": int(mem["sram_origin"], 0),
        "sram_length": int(mem["sram_window"]),
        "flash_budget": int(flash_budget if flash_budget is not None else mem["flash_budget"]),
        "sram_budget": int(sram_budget if sram_budget is not None else mem["sram_budget"]),
        "stack_size": int(stack_bytes if stack_bytes is not None else mem["stack_bytes"]),
    }
    if layout["flash_budget"] > layout["flash_length"] or layout["sram_budget"] > layout["sram_length"]:
        raise BudgetError(f"budgets exceed the mcu memory map: flash {layout['flash_budget']} > "
                          f"{layout['flash_length']} or SRAM {layout['sram_budget']} > {layout['sram_length']}")
    mcpu = spec["mcpu"] + "".join("+" + e.lower() for e in extensions)
    cc = [a.format(python=sys.executable) for a in spec["cc"]]
    # One zig cc call: zig keeps its own cache of compiled objects.
    compile_cmd = [*cc, *spec["cflags"], f"-mcpu={mcpu}", *extra_cflags, *includes, *map(str, sources),
                   *spec.get("ldflags", [])]

    script = out / "link.ld"
    script.write_text(render_linker_script(**layout, enforce=True))
    try:
        _run([*compile_cmd, "-T", str(script), "-o", str(binary)])
    except BuildError as err:
        if "edgegrad:" not in str(err):  # not one of our budget ASSERTs
            raise
        # Link again without the ASSERTs only to measure, so the error can give the numbers.
        measure = out / "fw.measure.elf"
        (out / "link.measure.ld").write_text(render_linker_script(**layout, enforce=False))
        _run([*compile_cmd, "-T", str(out / "link.measure.ld"), "-o", str(measure)])
        sizes = section_sizes(measure, layout)
        binary.unlink(missing_ok=True)
        raise BudgetError(budget_report(sizes)) from None
    sizes = section_sizes(binary, layout)
    (out / "sizes.json").write_text(json.dumps(sizes, indent=2) + "\n")
    return sizes


def render_linker_script(*, enforce: bool, **layout: int) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TARGETS_DIR / "mcu")),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    return env.get_template("link.ld.j2").render(enforce=enforce, **layout)


def section_sizes(elf: Path, layout: dict) -> dict:
    """Sizes in bytes of the firmware's parts, plus totals and budgets."""
    sections = read_elf_sections(elf)
    sizes = {name.lstrip("."): sections.get(name, 0) for name in (".text", ".rodata", ".data", ".bss", ".stack")}
    sizes["flash_used"] = sizes["text"] + sizes["rodata"] + sizes["data"]
    sizes["sram_used"] = sizes["data"] + sizes["bss"] + sizes["stack"]
    sizes["flash_budget"] = layout["flash_budget"]
    sizes["sram_budget"] = layout["sram_budget"]
    return sizes


def budget_report(s: dict) -> str:
    parts = []
    if s["sram_used"] > s["sram_budget"]:
        parts.append(f"SRAM needs {s['sram_used']} bytes > budget {s['sram_budget']} "
                     f"(.data {s['data']} + .bss {s['bss']} + stack {s['stack']}; "
                     f"over by {s['sram_used'] - s['sram_budget']})")
    if s["flash_used"] > s["flash_budget"]:
        parts.append(f"flash needs {s['flash_used']} bytes > budget {s['flash_budget']} "
                     f"(.text {s['text']} + .rodata {s['rodata']} + .data {s['data']}; "
                     f"over by {s['flash_used'] - s['flash_budget']})")
    if not parts:  # the ASSERT fired but the measure says it fits: report everything
        parts.append(f"sizes {s}")
    return "mcu firmware does not fit: " + "; ".join(parts)


def read_elf_sections(path: Path) -> dict[str, int]:
    """{section name: size} from a 32- or 64-bit little-endian ELF (a tiny reader, no dependency)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise BuildError(f"{path}: not a little-endian ELF file")
    is64 = data[4] == 2
    if is64:
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    else:
        shoff, = struct.unpack_from("<I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)

    def header(i: int) -> tuple[int, int, int]:  # (name offset, file offset, size)
        base = shoff + i * shentsize
        if is64:
            name, = struct.unpack_from("<I", data, base)
            offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        else:
            name, = struct.unpack_from("<I", data, base)
            offset, size = struct.unpack_from("<II", data, base + 0x10)
        return name, offset, size

    _, strtab, _ = header(shstrndx)
    result = {}
    for i in range(1, shnum):
        name_off, _, size = header(i)
        end = data.index(b"\0", strtab + name_off)
        result[data[strtab + name_off:end].decode()] = size
    return result


# ---- object cache ---------------------------------------------------------------------------


def object_cache_dir() -> Path | None:
    """Where compiled runtime objects are kept between builds (EDGEGRAD_OBJ_CACHE; `off` disables)."""
    env = os.environ.get("EDGEGRAD_OBJ_CACHE")
    if env == "off":
        return None
    return Path(env) if env else REPO / "build" / "obj-cache"


OBJ_CACHE_KEEP = 2000  # objects kept; the least recently used go first


def compile_objects(cc: Sequence[str], cflags: Sequence[str], includes: Sequence[str], sources: Sequence[Path],
                    out: Path) -> list[str]:
    """Compile each source on its own (in parallel) and return the objects to link, in order.

    The runtime's kernels are the bulk of a build (-O3 over a dozen large files) and the same for
    every model, so their objects are cached: the key is the compiler's resolved command line
    (`-###`: -march=native expanded to this CPU's flags), the flags and the preprocessed source, so
    an edited header, another define or another CPU compiles afresh. Sources in the build folder
    (model.c) and objects (.o) are never cached."""
    cache = object_cache_dir()
    if cache is not None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only checkout: build without the cache
            cache = None
    out = Path(out).resolve()
    ident = _compiler_identity(tuple(cc), tuple(cflags))
    misses = []

    def one(i_src: tuple[int, Path]) -> str:
        i, src = i_src
        if src.suffix == ".o":
            return str(src)
        obj = out / f"{i:02d}_{src.stem}.o"
        compile_cmd = [*cc, *cflags, *includes, "-c", str(src)]
        if cache is None or src.resolve().is_relative_to(out):
            _run([*compile_cmd, "-o", str(obj)])
            return str(obj)
        pre = _run([*cc, *cflags, *includes, "-E", "-P", str(src)], capture=True)
        key = hashlib.sha256("\0".join([ident, *cflags, src.suffix, pre]).encode()).hexdigest()[:40]
        cached = cache / f"{key}.o"
        if cached.exists():
            os.utime(cached)
        else:
            tmp = cache / f".{key}.{os.getpid()}.{i}.tmp.o"
            try:
                _run([*compile_cmd, "-o", str(tmp)])
                os.replace(tmp, cached)  # atomic: parallel builds may race on the same key
            finally:
                tmp.unlink(missing_ok=True)
            misses.append(cached)
        return str(cached)

    jobs = list(enumerate(Path(s) for s in sources))
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        objects = list(pool.map(one, jobs))
    if misses:
        _prune(cache, keep=set(objects))
    return objects


@functools.cache
def _compiler_identity(cc: tuple[str, ...], cflags: tuple[str, ...]) -> str:
    proc = subprocess.run([*cc, *cflags, "-###", "-x", "c", "-c", os.devnull, "-o", os.devnull],
                          check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        proc = subprocess.run([*cc, "--version"], check=False, capture_output=True, text=True)
    return re.sub(r"\S*/cc\w{6}\.\w+", "", proc.stdout + proc.stderr)  # gcc's temporary file names


def _prune(cache: Path, keep: set[str]) -> None:
    """Drop the least recently used objects once there are more than OBJ_CACHE_KEEP (never `keep`, the
    objects of the build being linked)."""
    objs = [p for p in cache.glob("*.o") if str(p) not in keep]
    if len(objs) <= OBJ_CACHE_KEEP:
        return
    def mtime(p: Path) -> float:
        try:
            return p.stat().st_mtime
        except FileNotFoundError:  # pruned by a parallel build
            return 0.0
    for p in sorted(objs, key=mtime)[: len(objs) - OBJ_CACHE_KEEP * 3 // 4]:
        p.unlink(missing_ok=True)


def _run(cmd: list[str], capture: bool = False) -> str:
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return proc.stdout if capture else ""
