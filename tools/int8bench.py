"""int8 fine-tuning accuracy on real data: fp32 vs int8 + QAS vs int8 without QAS, same sparse scheme.

Task: Fashion-MNIST class-incremental fine-tuning. ``models/onnx/cnn_fashion_pre.onnx`` was pretrained
on classes 0-7 only; it is quantized (``edgegrad quantize``, calibration on classes 0-7 training images
that are not in the stream), then every variant is compiled for the host with the same scheme,
optimizer and learning rate, trained by the generated C on the same stream (half new classes 8-9,
half replayed old classes; one step per sample, batch 1) and evaluated on the same held-out test
images (half new classes). Rows:

- fp32: the float model, fp32 training (the reference);
- int8 + QAS (fp32 master): the int8 graph, QAS-scaled gradients, fp32 master copy of the updated rows;
- int8 + QAS (int8 write-back): the same, rounding the int8 weights themselves after each step;
- int8, no QAS: the int8 graph with the raw integer-domain gradients (the ablation).

    python -m edgegrad.tools.int8bench --steps 2000 --eval 2000 --update last:2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NEW_CLASSES = (8, 9)


def data(n_train: int, n_eval: int, n_calib: int, seed: int):
    sys.path.insert(0, str(ROOT))
    from models.datasets import fashion_mnist
    xtr, ytr = fashion_mnist("train")
    xte, yte = fashion_mnist("test")
    rng = np.random.default_rng(seed)
    new_tr = rng.permutation(np.flatnonzero(np.isin(ytr, NEW_CLASSES)))
    old_tr = rng.permutation(np.flatnonzero(~np.isin(ytr, NEW_CLASSES)))
    stream = rng.permutation(np.concatenate([new_tr[: n_train // 2], old_tr[: n_train - n_train // 2]]))
    calib = old_tr[n_train: n_train + n_calib]  # the deployed model was calibrated before new classes existed
    new_te = rng.permutation(np.flatnonzero(np.isin(yte, NEW_CLASSES)))[: n_eval // 2]
    old_te = rng.permutation(np.flatnonzero(~np.isin(yte, NEW_CLASSES)))[: n_eval - len(new_te)]
    ev = np.concatenate([new_te, old_te])
    return (xtr[stream], ytr[stream]), xtr[calib], (xte[ev], yte[ev], np.isin(yte[ev], NEW_CLASSES))


def evaluate(s, xs, ys, new_mask) -> dict:
    pred = np.array([int(np.argmax(s.infer(x[None]))) for x in xs])
    hit = pred == ys
    return {"all": hit.mean(), "new": hit[new_mask].mean(), "old": hit[~new_mask].mean()}


def run_variant(model: Path, out: Path, stream, ev, *, dtype: str, update: str, optimizer: str, lr: float,
                epochs: int, qas: bool = True, master: str = "fp32") -> dict:
    from edgegrad.pipeline import CompileConfig, compile_model
    from edgegrad.run import Session, load_build
    from edgegrad.tools.runner import open_device
    res = compile_model(model, out, CompileConfig(target="host", update=update, optimizer=optimizer, lr=lr,
                                                  dtype=dtype, qas=qas, int8_master=master, quiet=True))
    info = load_build(res.out_dir)
    xs, ys = stream
    t0 = time.perf_counter()
    with open_device(res.binary, "host") as dev:
        s = Session(dev, info)
        before = evaluate(s, *ev)
        losses = [s.train(x[None], int(y)) for _ in range(epochs) for x, y in zip(xs, ys)]
        after = evaluate(s, *ev)
    return {"before": before, "after": after, "loss_first": float(np.mean(losses[:100])),
            "loss_last": float(np.mean(losses[-100:])), "seconds": time.perf_counter() - t0,
            "arena": res.info["arena_bytes"], "trainable_bytes": res.info["trainable_bytes"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="example: python -m edgegrad.tools.int8bench --steps 2000 --eval 2000")
    p.add_argument("--steps", type=int, default=2000, help="training samples in the stream (default 2000)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--eval", type=int, default=2000, help="held-out test images (default 2000)")
    p.add_argument("--calib", type=int, default=256, help="calibration images (default 256)")
    p.add_argument("--update", default="last:2", help="sparse update scheme, the same for every row")
    p.add_argument("--optimizer", default="momentum", choices=["sgd", "momentum"])
    p.add_argument("--lr", type=float, default=0.003)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rows", default="fp32,qas,qas-int8,noqas", help="which rows to run")
    p.add_argument("--mcu", action="store_true",
                   help=f"instead: {MCU_MODEL} int8 with sparse schemes on the emulated MCU (QEMU), memory from "
                        f"the ELF and the painted stack")
    p.add_argument("--mcu-steps", type=int, default=2, help="training steps on the MCU (default 2)")
    a = p.parse_args(argv)
    if a.mcu:
        return main_mcu(a.mcu_steps)
    from edgegrad.quantize import quantize_model
    stream, calib, ev = data(a.steps, a.eval, a.calib, a.seed)
    model = ROOT / "models" / "onnx" / "cnn_fashion_pre.onnx"
    rows = {
        "fp32": ("fp32", {"dtype": "fp32"}),
        "qas": ("int8 + QAS (fp32 master)", {"dtype": "int8", "qas": True, "master": "fp32"}),
        "qas-int8": ("int8 + QAS (int8 write-back)", {"dtype": "int8", "qas": True, "master": "none"}),
        "noqas": ("int8, no QAS (fp32 master)", {"dtype": "int8", "qas": False, "master": "fp32"}),
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        np.save(tmp / "calib.npy", calib)
        qmodel = tmp / "cnn_fashion_pre_int8.onnx"
        quantize_model(model, tmp / "calib.npy", qmodel)
        for key in a.rows.split(","):
            label, kw = rows[key]
            r = run_variant(model if kw["dtype"] == "fp32" else qmodel, tmp / key, stream, ev, update=a.update,
                            optimizer=a.optimizer, lr=a.lr, epochs=a.epochs, **kw)
            results.append((label, r))
            print(f"[int8bench] {label}: {100 * r['after']['all']:.1f}% ({r['seconds']:.1f} s)", file=sys.stderr)
    print(f"\ncnn_fashion_pre, Fashion-MNIST new classes {NEW_CLASSES}: {a.steps} streamed samples x {a.epochs} "
          f"epoch(s) (half new), scheme `{a.update}`, {a.optimizer} lr {a.lr}, {a.eval} held-out test images "
          f"(half new), calibration {a.calib} old-class images\n")
    print("| training | accuracy before | after: all | new classes | old classes | loss first/last 100 |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in results:
        b, f = r["before"], r["after"]
        print(f"| {label} | {100 * b['all']:.1f}% | {100 * f['all']:.1f}% | {100 * f['new']:.1f}% | "
              f"{100 * f['old']:.1f}% | {r['loss_first']:.3f} / {r['loss_last']:.3f} |")
    return 0




# ---- MobileNetV2-w0.35 at 128x128, int8, sparse, on the emulated MCU -----------------------------

MCU_MODEL = "mobilenetv2_w035_128"


def mcu_scheme(g, n_bias: int = 16, partial: dict[str, float] | None = None) -> dict:
    """TTE-style sparse scheme: the classifier, the biases of the last ``n_bias`` layers, and a leading
    share of the output channels of the named weights."""
    from edgegrad.scheme import layers
    ls = layers(g)
    scheme = {ls[-1][1]: 1.0, ls[-1][2]: 1.0}
    for _, _, b in ls[-n_bias:]:
        if b:
            scheme[b] = 1.0
    for w, f in (partial or {}).items():
        scheme[w] = f
    return scheme


def run_mcu(work: Path, steps: int, n_bias: int, partial: dict[str, float], master: str, log=print) -> dict:
    import json

    from edgegrad.pipeline import CompileConfig, compile_model, frontend_graph
    from edgegrad.quantize import quantize_model
    from edgegrad.run import Session
    from edgegrad.tools.runner import open_device

    from models import ZOO
    entry = ZOO[MCU_MODEL]
    rng = np.random.default_rng(0)
    # the zoo MobileNetV2 is randomly initialised: calibrate on seeded normal images (memory and
    # instruction counts do not depend on the values)
    np.save(work / "calib.npy", rng.standard_normal((16,) + tuple(entry.input_shape[1:])).astype(np.float32))
    qmodel = work / f"{MCU_MODEL}_int8.onnx"
    quantize_model(entry.path, work / "calib.npy", qmodel)
    g, _ = frontend_graph(qmodel, CompileConfig(dtype="int8"))
    scheme_file = work / "scheme.json"
    scheme_file.write_text(json.dumps(mcu_scheme(g, n_bias, partial), indent=1))
    cfg = CompileConfig(target="mcu", dtype="int8", update=str(scheme_file), optimizer="sgd", lr=0.01,
                        int8_master=master, quiet=True)
    c = compile_model(qmodel, work / "build", cfg)
    info, sec, pred = c.info, c.info["sections"], c.info["predicted"]
    xs = [rng.standard_normal(entry.input_shape).astype(np.float32) for _ in range(steps)]
    losses, instrets = [], []
    with open_device(c.binary, "mcu") as dev:
        s = Session(dev, info)
        for i, x in enumerate(xs):
            losses.append(s.train(x, i % entry.num_classes, timeout=3600.0))
            instrets.append(dev.last_instret)
        stats = dev.stats()
    n_upd = sum(u.rows(c.graph.tensors[p].shape) * c.graph.tensors[p].size // c.graph.tensors[p].shape[0]
                for p, u in c.updates.items())
    return {"scheme": scheme_file.read_text(), "tensors": len(c.updates), "updated_params": n_upd,
            "sram_pred": pred["sram_total"], "sram_elf": sec["sram_used"],
            "sram_touched": sec["data"] + sec["bss"] + sec["stack"] - stats["stack_free"],
            "stack_used": sec["stack"] - stats["stack_free"], "flash_pred": pred["flash_total"],
            "flash_elf": sec["flash_used"], "arena": info["arena_bytes"], "instret": instrets, "losses": losses}


MCU_SCHEMES = (
    ("classifier + biases of the last 16 layers", 16, {}),
    ("... + 25% of the output channels of the first 1x1 conv of blocks 16 and 17", 16,
     {"features.16.conv.0.0.weight_quantized": 0.25, "features.17.conv.0.0.weight_quantized": 0.25}),
)


def main_mcu(steps: int) -> int:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, n_bias, partial) in enumerate(MCU_SCHEMES):
            work = Path(tmp) / str(i)
            work.mkdir()
            r = run_mcu(work, steps, n_bias, partial, master="none")
            rows.append((label, r))
            print(f"[int8bench] {label}: SRAM {r['sram_elf']} B, flash {r['flash_elf']} B", file=sys.stderr)
    print(f"\n{MCU_MODEL} (int8, 128x128x3), SGD lr 0.01, int8 write-back (no fp32 master), emulated RV32 MCU "
          f"(QEMU -icount shift=0), 256 KiB SRAM / 1 MiB flash budgets, {steps} steps\n")
    print("| scheme | tensors | params updated | SRAM pred / ELF KiB | SRAM used KiB | flash ELF KiB | instr/step | "
          "loss step 1 -> last |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        print(f"| {label} | {r['tensors']} | {r['updated_params']:,} | {r['sram_pred'] / 1024:.1f} / "
              f"{r['sram_elf'] / 1024:.1f} | {r['sram_touched'] / 1024:.1f} | {r['flash_elf'] / 1024:.1f} | "
              f"{int(np.median(r['instret'])):,} | {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
