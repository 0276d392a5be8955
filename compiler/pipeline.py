"""The compile pipeline, one readable list of named steps:

    import_onnx -> fold_frozen -> fold_batchnorm -> build_training_graph -> relu_mask -> recompute
    -> select_kernels -> wino_frozen -> fuse_eltwise -> fuse -> plan_memory -> emit_c -> build

Options travel in one CompileConfig. ``verify`` checks the graph after every pass;
``dump_after`` prints it after the named pass.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__
from .autodiff import TrainConfig, build_training_graph
from .codegen import emit_c
from .errors import EdgegradError
from .frontend import import_onnx, load_onnx
from .ir import Graph
from .memory import check_budgets, predict
from .passes.fold_batchnorm import fold_batchnorm
from .passes.fold_frozen import fold_frozen
from .passes.fuse import fuse, fused_summary
from .passes.fuse_eltwise import fuse_eltwise
from .passes.fuse_int8 import fold_weight_dequantize, fuse_pointwise_depthwise, int8_input
from .passes.lower_fp16 import lower_fp16
from .passes.plan_memory import plan_memory
from .passes.qoperator_to_qdq import is_qoperator, qoperator_to_qdq
from .passes.quantize_lower import quantize_lower
from .passes.quantize_qas import quantize_qas
from .passes.recompute import recompute
from .passes.relu_mask import relu_mask
from .passes.select_kernels import MCU_EXTENSIONS, RVV_SOURCES, select_kernels
from .passes.wino_frozen import wino_frozen
from .scheme import Update, parse_scheme

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = ROOT / "runtime_c"
TARGETS = ("host", "mcu", "rpi", "jetson")
AARCH64_TARGETS = ("rpi", "jetson")


@dataclass
class CompileConfig:
    target: str = "host"
    update: str = "all"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    loss: str = "cross_entropy"
    dtype: str = "fp32"
    qas: bool = True  # int8: quantization-aware scaling of the gradients (off = the ablation)
    int8_master: str = "fp32"  # int8: "fp32" master copy of the updated rows, or "none" (round each step)
    sram_budget: int = 256 * 1024
    flash_budget: int = 1024 * 1024
    input_shapes: dict = field(default_factory=dict)
    sanitize: bool = False
    verify: bool = False
    dump_after: str | None = None
    build: bool = True
    quiet: bool = False
    recompute: bool | None = None  # recompute kept activations in the backward when it lowers the peak; None: mcu only
    relu_mask: bool | None = None  # keep 1-bit ReLU/Clip masks where the backward needs only them; None: mcu only
    extra_cflags: tuple[str, ...] = ()  # appended to the target's flags (tests pass -O0 for fast builds)
    loss_scale_log2: int = 10  # --dtype fp16: initial dynamic loss scale 2^N
    loss_scaling: bool = True  # --dtype fp16: off = the ablation without scaling or overflow skip (--loss-scale off)
    extensions: tuple[str, ...] = ()  # mcu ISA extensions beyond rv32imafc (`--ext`): kernels and QEMU follow them
    board: str | None = None  # rpi: pi4 (default) | pi5; jetson: orin (targets/<target>/target.json)
    threads: int | None = None  # rpi/jetson worker threads of the NEON kernels (default: the board's cores)
    backend: str = "ours"  # rpi/jetson: ours | tvm | auto, where conv/Gemm kernels come from (compiler/tvm_backend.py)
    fuse: bool = True  # passes/fuse_eltwise.py + fuse.py: fused kernels where the target has them (off: the unfused ablation)
    wino_pre: bool = True  # passes/wino_frozen.py: frozen Winograd weights transformed at compile time (off: per call)


@dataclass
class Compiled:
    graph: Graph
    updates: dict[str, Update]
    out_dir: Path
    binary: Path | None
    info: dict


def frontend_graph(model_path: str | Path, cfg: CompileConfig) -> tuple[Graph, dict[str, Update]]:
    """import_onnx and the scheme: the forward graph and the updates, before any training pass."""
    model = load_onnx(model_path)
    if is_qoperator(model):  # QLinearConv & co: read as the equivalent QDQ graph
        if cfg.dtype != "int8":
            raise EdgegradError(f"{Path(model_path).name} is a quantized (QLinearConv) model: compile it with "
                                f"--dtype int8")
        model = qoperator_to_qdq(model)
    g = import_onnx(model, cfg.input_shapes)
    quantized = any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in g.nodes)
    if cfg.dtype == "int8":
        if not quantized:
            raise EdgegradError(f"{Path(model_path).name} is a float model; --dtype int8 compiles a quantized (QDQ) "
                                f"model: run `edgegrad quantize {Path(model_path).name} --calib DATA.npz -o q.onnx` "
                                f"first")
        g = quantize_lower(g)
    elif quantized:
        raise EdgegradError(f"{Path(model_path).name} is a quantized (QDQ) model: compile it with --dtype int8")
    return g, parse_scheme(cfg.update, g)


def int8_training_steps(updates: dict[str, Update], tcfg: TrainConfig, cfg: CompileConfig) -> list:
    """The --dtype int8 passes after quantize_lower, as (name, Graph -> Graph)."""
    return [("build_training_graph", lambda g: build_training_graph(g, updates, tcfg)),
            ("relu_mask", lambda g: relu_mask(g) if use_relu_mask(cfg) else g),
            ("quantize_qas", lambda g: quantize_qas(g, qas=cfg.qas, master=cfg.int8_master)),
            ("int8_input", int8_input),
            ("fuse_pointwise_depthwise", fuse_pointwise_depthwise),
            ("fold_weight_dequantize", fold_weight_dequantize)]


def training_steps(updates: dict[str, Update], tcfg: TrainConfig, cfg: CompileConfig) -> list:
    """The passes from the frontend's graph to the training graph (before select_kernels), as
    (name, Graph -> Graph), for cfg.dtype: what compile_model runs and edgegrad plan predicts."""
    if cfg.dtype == "int8":  # import_onnx -> quantize_lower (in frontend_graph) -> ...
        return int8_training_steps(updates, tcfg, cfg)
    trainable = set(updates)
    steps = [
        ("fold_frozen", lambda g: fold_frozen(g, trainable)),
        ("fold_batchnorm", lambda g: fold_batchnorm(g, trainable)),
        ("build_training_graph", lambda g: build_training_graph(g, updates, tcfg)),
        ("relu_mask", lambda g: relu_mask(g) if use_relu_mask(cfg) else g),
        ("recompute", lambda g: recompute(g) if use_recompute(cfg) else g),
    ]
    if cfg.dtype == "fp16":
        steps.append(("lower_fp16", lambda g: lower_fp16(g, cfg.loss_scale_log2, loss_scaling=cfg.loss_scaling)))
    return steps


def memory_info(g: Graph, updates: dict[str, Update], plan) -> dict:
    """The byte counts memory.predict needs, from the final training graph and its plan."""
    masters = g.meta.get("masters", [])
    return {
        "arena_bytes": plan.arena_bytes,
        "arena_lower_bound": plan.lower_bound,
        "state_bytes": sum(g.tensors[s].nbytes for s in g.meta["state"]),
        "trainable_bytes": sum(g.tensors[p].nbytes for p in list(updates) + masters),
        "frozen_bytes": sum(t.nbytes for t in g.tensors.values()
                            if t.role in ("param", "const") and t.name not in updates and t.name not in masters
                            and (t.dtype == "f32" or g.meta.get("dtype") == "int8")),
    }


def is_quantized(model_path: str | Path) -> bool:
    """True for a QDQ model (what edgegrad quantize writes): it compiles with --dtype int8."""
    m = load_onnx(model_path)
    return is_qoperator(m) or any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in m.graph.node)


def compile_model(model_path: str | Path, out_dir: str | Path, cfg: CompileConfig) -> Compiled:
    if cfg.target not in TARGETS:
        raise EdgegradError(f"unknown target {cfg.target!r} (choose from {', '.join(TARGETS)})")
    if cfg.dtype not in ("fp32", "fp16", "int8"):
        raise EdgegradError(f"--dtype {cfg.dtype} is not implemented yet (fp32, fp16 and int8 in this build)")
    if cfg.dtype == "int8" and cfg.optimizer not in ("sgd", "momentum"):
        raise EdgegradError("--dtype int8 trains with --optimizer sgd or momentum (the QAS setting)")
    _check_extensions(cfg)
    _check_backend(cfg)
    model_path = Path(model_path)
    if cfg.board is not None or cfg.threads is not None or cfg.target in AARCH64_TARGETS:
        _check_board(cfg)
    log = (lambda *a: None) if cfg.quiet else (lambda *a: print(*a, file=sys.stderr))
    tcfg = TrainConfig(loss=cfg.loss, optimizer=cfg.optimizer, lr=cfg.lr, momentum=cfg.momentum)

    g, updates = frontend_graph(model_path, cfg)
    trainable = set(updates)
    steps = training_steps(updates, tcfg, cfg)
    _after("import_onnx", g, cfg, log)
    for name, fn in steps:
        g = fn(g)
        _after(name, g, cfg, log)
    g = select_kernels(g, cfg.target, cfg.extensions, backend=cfg.backend, board=cfg.board, log=log)
    _after("select_kernels", g, cfg, log)
    if cfg.wino_pre:
        g = wino_frozen(g, trainable | set(g.meta.get("masters", [])))
        _after("wino_frozen", g, cfg, log)
    if cfg.fuse:
        g = fuse_eltwise(g, cfg.target)
        _after("fuse_eltwise", g, cfg, log)
        g = fuse(g, cfg.target)
        _after("fuse", g, cfg, log)
    plan = plan_memory(g)
    _after("plan_memory", g, cfg, log)
    summary = _scheme_summary(g, updates)
    emitted = emit_c(g, trainable | set(g.meta.get("masters", [])), model_path.stem, model_path.name, summary)
    out_dir = Path(out_dir)
    info = _build_info(g, updates, cfg, plan, model_path)
    if g.meta.get("backend"):
        from .tvm_backend import summary as backend_summary
        info["backend"] = backend_summary(g)
    if cfg.target == "jetson":  # the GPU step (model.cu) next to the CPU one
        emitted.files.update(_emit_cuda(g, trainable, model_path, summary, info, log))
    if cfg.target == "mcu":
        from .build import load_target
        pred = predict(info, load_target("mcu")["memory"]["stack_bytes"])
        info["predicted"] = pred
        check_budgets(pred, cfg.sram_budget, cfg.flash_budget)
    # Write everything into a temporary folder first: a failed compile leaves no half-written build.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".eg-build-", dir=str(out_dir.parent)))
    try:
        for fname, text in emitted.files.items():
            (tmp / fname).write_text(text)
        shutil.copyfile(model_path, tmp / "model.onnx")
        tvm_sources = []
        if cfg.backend != "ours":  # the TVM kernels' objects (tvm/*.o), their C wrappers and runtime_c/tvm/eg_tvm.c
            from .tvm_backend import emit
            tvm_sources = emit(g, tmp)
        binary = None
        if cfg.build:
            from .build import build
            log(f"[edgegrad] build for {cfg.target}")
            kernels, includes = kernel_sources(cfg.target, cfg.extensions)
            if tvm_sources:
                from .tvm_backend import TVM_RUNTIME
                kernels, includes = kernels + tvm_sources, includes + [TVM_RUNTIME]
            binary = build(cfg.target, tmp, [tmp / "model.c"] + kernels, [tmp, *includes],
                           sram_budget=cfg.sram_budget, flash_budget=cfg.flash_budget, sanitize=cfg.sanitize,
                           extra_cflags=cfg.extra_cflags, board=cfg.board, threads=cfg.threads,
                           extensions=list(cfg.extensions) if cfg.target == "mcu" else None)
            info["binary"] = Path(binary).name
            sizes = tmp / "sizes.json"
            if sizes.exists():
                info["sections"] = json.loads(sizes.read_text())
        (tmp / "build.json").write_text(json.dumps(info, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"[edgegrad] {summary}; arena {plan.arena_bytes} B (lower bound {plan.lower_bound} B) -> {out_dir}")
    return Compiled(g, updates, out_dir, out_dir / info["binary"] if cfg.build else None, info)


def use_recompute(cfg: CompileConfig) -> bool:
    """fp32 only for now (fp16 and int8 rewrite the graph after it, untested together); mcu by default."""
    if cfg.dtype != "fp32":
        return False
    return cfg.target == "mcu" if cfg.recompute is None else cfg.recompute


def use_relu_mask(cfg: CompileConfig) -> bool:
    """fp32 and int8 (fp16 keeps its own casts, untested together); mcu by default, like recompute."""
    if cfg.dtype == "fp16":
        return False
    return cfg.target == "mcu" if cfg.relu_mask is None else cfg.relu_mask


def _check_extensions(cfg: CompileConfig) -> None:
    if not cfg.extensions:
        return
    if cfg.target != "mcu":
        raise EdgegradError(f"--ext {','.join(cfg.extensions)}: ISA extensions apply to the mcu target only")
    unknown = [e for e in cfg.extensions if e not in MCU_EXTENSIONS]
    if unknown:
        raise EdgegradError(f"--ext: unknown mcu extension {unknown[0]!r} (known: {', '.join(MCU_EXTENSIONS)})")
    if "zvfh" in cfg.extensions and "zve32f" not in cfg.extensions:
        raise EdgegradError("--ext zvfh needs zve32f (the fp16 vector extension builds on the fp32 one)")


def _check_backend(cfg: CompileConfig) -> None:
    from .tvm_backend import BACKENDS, require_tvm
    if cfg.backend not in BACKENDS:
        raise EdgegradError(f"--backend {cfg.backend}: unknown (choose from {', '.join(BACKENDS)})")
    if cfg.backend != "ours" and cfg.target not in AARCH64_TARGETS:
        raise EdgegradError(f"--backend {cfg.backend}: TVM kernels are for the rpi and jetson targets, not {cfg.target}")
    if cfg.backend == "tvm":
        require_tvm()


def _emit_cuda(g: Graph, trainable: set[str], model_path: Path, summary: str, info: dict, log) -> dict[str, str]:
    from .codegen_cuda import emit_cuda
    from .errors import UnsupportedModelError
    if info["config"]["dtype"] != "fp32":
        info["cuda"] = {"skipped": f"the CUDA step is fp32 only (--dtype {info['config']['dtype']})"}
        log(f"[edgegrad] jetson: CPU build only, model.cu skipped: {info['cuda']['skipped']}")
        return {}
    try:
        text = emit_cuda(g, trainable, model_path.stem, model_path.name, summary)
    except UnsupportedModelError as e:
        info["cuda"] = {"skipped": str(e)}
        log(f"[edgegrad] jetson: CPU build only, model.cu skipped: {e}")
        return {}
    info["cuda"] = {"source": "model.cu", "arch": "sm_87"}
    return {"model.cu": text}


def kernel_sources(target: str, extensions: tuple[str, ...] = ()) -> tuple[list[Path], list[Path]]:
    """The kernel .c files and include folders a target links: the reference and tiled kernels
    everywhere, runtime_c/neon/ for the aarch64 targets (select_kernels picks _neon there), and
    runtime_c/rvv/ for an mcu whose extensions include the vector unit (zve32f; zvfh casts too)."""
    kernels = [f for f in sorted(RUNTIME.glob("eg_*.c")) if f.name != "eg_proto.c"]
    includes = [RUNTIME]
    if target in AARCH64_TARGETS:
        kernels += sorted((RUNTIME / "neon").glob("eg_*.c"))
        includes.append(RUNTIME / "neon")
    if target == "mcu" and "zve32f" in extensions:  # the RVV variants only build where the vector unit exists
        kernels += sorted(RVV_SOURCES.glob("eg_*_rvv.c"))
        kernels += sorted(RVV_SOURCES.glob("eg_*_zvfh.c")) if "zvfh" in extensions else []
        includes.append(RVV_SOURCES)
    return kernels, includes


def _check_board(cfg: CompileConfig) -> None:
    from .build import load_target, resolve_board
    spec = load_target(cfg.target)
    if "boards" not in spec:
        raise EdgegradError(f"--board/--threads apply to the rpi and jetson targets, not {cfg.target}")
    resolve_board(spec, cfg.board)
    if cfg.threads is not None and cfg.threads < 1:
        raise EdgegradError(f"--threads must be at least 1, got {cfg.threads}")


def _after(name: str, g: Graph, cfg: CompileConfig, log) -> None:
    if cfg.verify:
        g.verify()
    if cfg.dump_after == name:
        print(f"--- after {name}\n{g.dump()}")


def _scheme_summary(g: Graph, updates: dict[str, Update]) -> str:
    n_params = sum(t.size for t in g.params())
    upd = sum(u.rows(g.tensors[p].shape) * g.tensors[p].size // g.tensors[p].shape[u.axis]
              if g.tensors[p].shape else 1 for p, u in updates.items())
    return f"{len(updates)} tensors updated, {upd}/{n_params} parameters"


def _build_info(g: Graph, updates: dict[str, Update], cfg: CompileConfig, plan, model_path: Path) -> dict:
    return {
        "edgegrad": __version__,
        "source": model_path.name,
        "config": asdict(cfg),
        "inputs": [dict({"name": n, "shape": list(g.tensors[n].shape), "dtype": g.tensors[n].dtype},
                        **g.meta.get("input_quant", {}).get(n, {})) for n in g.inputs],
        "outputs": [{"name": n, "shape": list(g.tensors[n].shape)} for n in g.outputs],
        "target_dtype": g.tensors["target"].dtype,
        "target_shape": list(g.tensors["target"].shape),
        "trainable": {p: {"shape": list(g.tensors[p].shape), "axis": u.axis, "k": u.rows(g.tensors[p].shape),
                          "dtype": g.tensors[p].dtype} for p, u in updates.items()},
        **memory_info(g, updates, plan),
        "fused": fused_summary(g),
        "binary": None,
    }
