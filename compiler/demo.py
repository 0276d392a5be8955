"""edgegrad demo: on-device class-incremental learning on the emulated MCU.

A CNN pretrained on the host on Fashion-MNIST classes 0-7 (models/cnn_fashion_pre.onnx) is
compiled for the mcu target with a sparse update scheme and flashed over the serial link onto a
board (QEMU virt with the edgegrad bootloader and a persistent flash file, or a real board with
--port). It then learns the two classes it never saw (8: bag, 9: ankle boot) from samples
streamed over the serial link, with a replay of old-class samples to limit forgetting,
checkpointing its parameters to flash as it goes. Accuracy on held-out test images is measured
and scored on the device before and after; the QEMU board is then power-cycled to show the
learned parameters come back from flash. A PNG plots accuracy and loss over the stream.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from .errors import EdgegradError

ROOT = Path(__file__).resolve().parent.parent
NEW_CLASSES = (8, 9)


def class_incremental_split(n_train: int, n_eval: int, seed: int):
    """Fashion-MNIST for learning classes 8-9 after pretraining on 0-7: n_train shuffled training
    images, half of them new classes (the rest replay old ones), and held-out (new, old) test sets."""
    sys.path.insert(0, str(ROOT))
    from models.datasets import fashion_mnist
    try:
        xtr, ytr = fashion_mnist("train")
        xte, yte = fashion_mnist("test")
    except FileNotFoundError as e:
        raise EdgegradError(f"Fashion-MNIST not found ({e}); run tools/setup.sh (Debian dataset-fashion-mnist)")
    rng = np.random.default_rng(seed)
    new_tr = rng.permutation(np.flatnonzero(np.isin(ytr, NEW_CLASSES)))[: n_train // 2]
    old_tr = rng.permutation(np.flatnonzero(~np.isin(ytr, NEW_CLASSES)))[: n_train - len(new_tr)]
    order = rng.permutation(np.concatenate([new_tr, old_tr]))
    new_te = rng.permutation(np.flatnonzero(np.isin(yte, NEW_CLASSES)))[: n_eval // 2]
    old_te = rng.permutation(np.flatnonzero(~np.isin(yte, NEW_CLASSES)))[: n_eval - len(new_te)]
    return (xtr[order], ytr[order]), (xte[new_te], yte[new_te]), (xte[old_te], yte[old_te])


def _accuracy(session, xs, ys) -> float:
    """Held-out accuracy as the device scores it (INFER, then SCORE compares argmax with the label)."""
    from .tools.flash import score
    hits = 0
    for x, y in zip(xs, ys):
        session.write(session.info["inputs"][0]["name"], x[None].astype(np.float32))
        session.dev.infer()
        hits += score(session.dev, int(y))
    return hits / max(1, len(xs))


def _fresh_start(session, model_onnx: Path) -> None:
    """A board that kept a checkpoint of this model restored it at boot: start again from the
    pretrained parameters (and zeroed optimizer state) so that before/after mean something."""
    import onnx
    from onnx import numpy_helper
    init = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(model_onnx)).graph.initializer}
    for name in session.info["trainable"]:
        session.write(name, init[name].astype(np.float32))
    session.dev.reset()


def run_demo(out_dir: str | Path = "build/demo", *, steps: int = 240, n_eval: int = 100, update: str = "last:2",
             lr: float = 0.003, seed: int = 0, port: str | None = None, optimizer: str = "sgd",
             target: str = "mcu", checkpoint_every: int = 40) -> dict:
    from tqdm import tqdm

    from .pipeline import CompileConfig, compile_model
    from .run import Session, load_build
    from .tools import flash

    out_dir = Path(out_dir)
    model = ROOT / "models" / "onnx" / "cnn_fashion_pre.onnx"
    print(f"[demo] compile {model.name} for mcu (256 KiB SRAM / 1 MiB flash), update {update!r}, {optimizer} lr={lr}")
    res = compile_model(model, out_dir / "build", CompileConfig(target=target, update=update, optimizer=optimizer,
                                                               lr=lr, quiet=True))
    sec = res.info.get("sections", {})
    print(f"[demo] firmware: SRAM {sec.get('sram_used', 0) / 1024:.1f} KiB, flash {sec.get('flash_used', 0) / 1024:.1f} KiB")
    (xs, ys), (xn, yn), (xo, yo) = class_incremental_split(steps, n_eval, seed)
    info = load_build(res.out_dir)
    image, model_hash = flash.elf_image(res.binary), flash.model_hash(res.out_dir)
    board_dir = out_dir / "board"
    if port is None:  # a new emulated board: erased flash, bootloader only
        (board_dir / "pflash.bin").unlink(missing_ok=True)
        link = flash.open_board(board_dir)
    else:
        link = flash.connect(port)
    t0 = time.time()
    curve = {"step": [], "new": [], "old": [], "loss": []}
    try:
        with link as opened:
            board, dev = opened if port is None else (None, opened)
            where = "the QEMU board (bootloader, flash file " + str(board.pflash) + ")" if board else port
            print(f"[demo] flashing the firmware onto {where} ...")
            fl = flash.flash_image(dev, image, model_hash)
            flash.set_checkpoint_every(dev, checkpoint_every)
            print(f"[demo] flashed {fl['bytes'] / 1024:.1f} KiB into {fl['slot']} in {fl['seconds']:.1f} s, verified, "
                  f"booted; checkpoints to flash every {checkpoint_every} steps")
            s = Session(dev, info)
            restored = flash.checkpoint_status(dev)["restored_steps"]
            if restored is not None:
                print(f"[demo] the board restored its checkpoint of step {restored}: starting from the pretrained "
                      "parameters again")
                _fresh_start(s, res.out_dir / "model.onnx")
            print("[demo] evaluating on the device before training ...")
            before_new, before_old = _accuracy(s, xn, yn), _accuracy(s, xo, yo)
            print(f"[demo] before: new classes {100 * before_new:.1f}%, old classes {100 * before_old:.1f}%")
            curve["step"].append(0)
            curve["new"].append(before_new)
            curve["old"].append(before_old)
            probe = max(1, steps // 4)
            bar = tqdm(total=steps, desc="on-device training", unit="sample", file=sys.stderr,
                       disable=not sys.stderr.isatty())
            for i, (x, y) in enumerate(zip(xs, ys), 1):
                curve["loss"].append(s.train(x[None], int(y)))
                bar.set_postfix(loss=f"{np.mean(curve['loss'][-20:]):.3f}")
                bar.update(1)
                if i % probe == 0 and i < steps:
                    curve["step"].append(i)
                    curve["new"].append(_accuracy(s, xn[:20], yn[:20]))
                    curve["old"].append(_accuracy(s, xo[:20], yo[:20]))
            bar.close()
            after_new, after_old = _accuracy(s, xn, yn), _accuracy(s, xo, yo)
            curve["step"].append(steps)
            curve["new"].append(after_new)
            curve["old"].append(after_old)
            stats = dev.stats()
            ck = flash.checkpoint_status(dev, save=True)
            trained = s.trained()
            print(f"[demo] checkpoint #{ck['last_seq']} of step {ck['last_steps']} written to flash")
        if board is not None:  # unplug and plug in again: the learned parameters come back from flash
            with flash.open_board(board_dir) as (_board, dev):
                flash.attach(dev, "app")
                again = flash.checkpoint_status(dev)["restored_steps"]
                same = all(np.array_equal(v, Session(dev, info).read(k, v.shape)) for k, v in trained.items())
            print(f"[demo] power-cycled the board: it restored the checkpoint of step {again}; trained parameters "
                  f"{'identical' if same else 'DIFFERENT'}")
            if not same or again != ck["last_steps"]:
                raise EdgegradError("the board did not restore its trained parameters from flash")
    except flash.ProtocolError as e:
        raise EdgegradError(f"demo: the board stopped answering: {e}") from None
    from .export import export_trained
    export_trained(res.out_dir / "model.onnx", out_dir / "trained.onnx", trained)
    png = out_dir / "demo.png"
    _plot(curve, png)
    print(f"[demo] after {steps} on-device steps: new classes {100 * before_new:.1f}% -> {100 * after_new:.1f}%, "
          f"old classes {100 * before_old:.1f}% -> {100 * after_old:.1f}%  ({time.time() - t0:.0f} s, "
          f"{stats['instret']} instructions per step, {stats['stack_free']} B of stack never used)")
    print(f"[demo] wrote {png} and {out_dir / 'trained.onnx'}")
    return {"before_new": before_new, "after_new": after_new, "before_old": before_old, "after_old": after_old}


def _plot(curve: dict, png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    a1.plot(curve["step"], [100 * v for v in curve["new"]], "o-", label="new classes (8, 9)")
    a1.plot(curve["step"], [100 * v for v in curve["old"]], "s-", label="old classes (0-7)")
    a1.set_xlabel("samples streamed to the device")
    a1.set_ylabel("accuracy (%)")
    a1.set_ylim(0, 100)
    a1.legend()
    a1.set_title("held-out accuracy, measured on the device")
    loss = np.array(curve["loss"])
    k = max(1, len(loss) // 30)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    a2.plot(np.arange(1, len(loss) + 1), loss, alpha=0.3, label="per step")
    a2.plot(np.arange(k, len(loss) + 1), smooth, label=f"mean of {k}")
    a2.set_xlabel("on-device training step")
    a2.set_ylabel("cross-entropy loss")
    a2.legend()
    a2.set_title("loss reported by the device")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
