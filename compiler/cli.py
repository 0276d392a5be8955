"""edgegrad command line: compile, run, inspect (and more as the targets grow).

Every user error is printed on one line as `edgegrad: error: ...` with a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import EdgegradError


def _size(text: str) -> int:
    t = text.strip().upper().rstrip("B")
    mult = 1
    if t.endswith("K"):
        mult, t = 1024, t[:-1]
    elif t.endswith("M"):
        mult, t = 1024 * 1024, t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 256K, 1M, 65536)")


def _shapes(items: list[str]) -> dict:
    out = {}
    for it in items or []:
        name, _, dims = it.partition("=")
        try:
            out[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise EdgegradError(f"--input-shape expects NAME=1,3,32,32, got {it!r}")
    return out


def _loss_scale(v: str):
    if v == "off":
        return v
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r}: an integer LOG2 or 'off'") from None


def cmd_compile(a) -> int:
    from .pipeline import CompileConfig, compile_model
    cfg = CompileConfig(target=a.target, update=a.update, optimizer=a.optimizer, lr=a.lr, momentum=a.momentum,
                        loss=a.loss, dtype=a.dtype, sram_budget=a.budget_sram, flash_budget=a.budget_flash,
                        input_shapes=_shapes(a.input_shape), sanitize=a.sanitize, verify=a.verify,
                        dump_after=a.dump_after, build=not a.no_build, qas=a.qas == "on",
                        int8_master=a.int8_master,
                        extensions=tuple(e.strip().lower() for e in (a.ext or "").split(",") if e.strip()),
                        loss_scale_log2=10 if a.loss_scale == "off" else a.loss_scale, loss_scaling=a.loss_scale != "off",
                        board=a.board, threads=a.threads, backend=a.backend)
    out = a.output or f"build/{Path(a.model).stem}-{a.target}"
    res = compile_model(a.model, out, cfg)
    print(f"compiled {a.model} for {a.target} -> {res.out_dir}")
    return 0


def cmd_quantize(a) -> int:
    from .quantize import quantize_model
    out = a.output or str(Path(a.model).with_name(Path(a.model).stem + "_int8.onnx"))
    res = quantize_model(a.model, a.calib, out, max_samples=a.samples)
    print(f"quantized {a.model} with {res['samples']} calibration samples -> {out}")
    return 0


def cmd_run(a) -> int:
    from .run import run_training
    run_training(a.build, a.inputs, a.labels, epochs=a.epochs, export=a.export, quiet=a.quiet)
    return 0


def cmd_inspect(a) -> int:
    from .inspect import inspect_build, inspect_model
    p = Path(a.path)
    if p.is_dir():
        print(inspect_build(p))
    else:
        print(inspect_model(p, a.update, _shapes(a.input_shape)))
        if a.memory:
            from .timeline import memory_report
            print(memory_report(p, a.update, _shapes(a.input_shape), png=a.png, budget=a.budget_sram))
    return 0


def cmd_plan(a) -> int:
    from .plan import run_plan
    run_plan(a.model, a.budget_sram, a.output, data=a.data, target=a.target, optimizer=a.optimizer,
             flash_budget=a.budget_flash, steps=a.steps, seed=a.seed, input_shapes=_shapes(a.input_shape),
             gain=a.gain, lr=a.lr, dtype=a.dtype, int8_master=a.int8_master, repeats=a.repeats, holdout=a.holdout)
    return 0


def cmd_demo(a) -> int:
    from .demo import run_demo
    run_demo(a.output, steps=a.steps, n_eval=a.eval, update=a.update, lr=a.lr, seed=a.seed, port=a.port,
             optimizer=a.optimizer, checkpoint_every=a.checkpoint_every)
    return 0


def cmd_board(a) -> int:
    from .device import run_board
    return run_board(a.pflash, a.port)


def cmd_flash(a) -> int:
    from .device import run_flash
    run_flash(a.build, a.port, checkpoint_every=a.checkpoint_every)
    return 0


def cmd_monitor(a) -> int:
    from .device import run_monitor
    run_monitor(a.port, interval=a.interval, count=a.count)
    return 0


def cmd_pull(a) -> int:
    from .device import run_pull
    run_pull(a.port, a.export, build=a.build, search=a.search)
    return 0


def _add_device_commands(sub) -> None:
    b = sub.add_parser("board", help="run an emulated mcu board (QEMU) with persistent flash",
                       description="Start QEMU virt (rv32) with the edgegrad serial bootloader and a 32 MiB CFI "
                                   "flash file (DIR/pflash.bin, created erased) holding the A/B image slots and the "
                                   "two checkpoint slots. Its UART is a TCP server on 127.0.0.1:PORT; the file "
                                   "keeps images and checkpoints across restarts. Runs until Ctrl-C.",
                       epilog="example:\n  edgegrad board --pflash build/board --port 5555 &\n"
                              "  edgegrad flash build/m --port socket://127.0.0.1:5555",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--pflash", required=True, metavar="DIR", help="folder of the flash file (pflash.bin)")
    b.add_argument("--port", type=int, default=5555, help="loopback TCP port of the board's UART (default 5555)")
    b.set_defaults(fn=cmd_board)

    f = sub.add_parser("flash", help="flash an mcu build onto a board over its serial port",
                       description="Write the build's firmware into the board's inactive image slot over the framed "
                                   "serial protocol (CRC32, acks, retries, smaller chunks on a noisy link), verify "
                                   "it in flash, then make it the boot image and boot it. An interrupted flash "
                                   "leaves the previous image booting.",
                       epilog="examples:\n  edgegrad flash build/m --port socket://127.0.0.1:5555\n"
                              "  edgegrad flash build/m --port /dev/ttyUSB0 --checkpoint-every 100",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("build", help="a folder written by edgegrad compile --target mcu")
    f.add_argument("--port", required=True, help="tty path or pyserial URL (socket://127.0.0.1:5555 for edgegrad board)")
    f.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="after booting, checkpoint parameters + optimizer state to flash every N steps (0: on request)")
    f.set_defaults(fn=cmd_flash)

    m = sub.add_parser("monitor", help="print the live loss / accuracy / checkpoints a board reports",
                       description="Poll the running model's telemetry: TRAIN steps, last and mean loss, accuracy "
                                   "over the last labelled samples it scored, and its newest checkpoint.",
                       epilog="example: edgegrad monitor --port socket://127.0.0.1:5555 --interval 2")
    m.add_argument("--port", required=True, help="tty path or pyserial URL")
    m.add_argument("--interval", type=float, default=1.0, help="seconds between lines (default 1)")
    m.add_argument("--count", type=int, help="stop after this many lines (default: until Ctrl-C)")
    m.set_defaults(fn=cmd_monitor)

    pu = sub.add_parser("pull", help="read a board's trained parameters into an ONNX model",
                        description="Read the trained parameters from the running model and write the build's ONNX "
                                    "model with them (same graph and names). The build is --build, or the mcu build "
                                    "under --search whose model hash matches the device's.",
                        epilog="example: edgegrad pull --port socket://127.0.0.1:5555 --export trained.onnx")
    pu.add_argument("--port", required=True, help="tty path or pyserial URL")
    pu.add_argument("--export", required=True, help="where to write the trained ONNX model")
    pu.add_argument("--build", help="the build folder the board was flashed from")
    pu.add_argument("--search", default="build", help="where to look for the build by model hash (default build/)")
    pu.set_defaults(fn=cmd_pull)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edgegrad",
        description="Compile an ONNX model into a static on-device training step (forward, backward, "
                    "optimizer) in C, and run it on a host, an MCU (QEMU) or an edge board.",
        epilog="example: edgegrad compile models/onnx/cnn_fashion.onnx --target host --update last:2 -o build/cnn")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile MODEL.onnx into a trainer for a target",
                       description="Derive the training graph of MODEL.onnx for an update scheme, plan its "
                                   "memory statically and emit and build C for the target.",
                       epilog="examples:\n  edgegrad compile model.onnx --target host -o build/m\n"
                              "  edgegrad compile model.onnx --target mcu --update bias:all,last:1 --lr 0.05\n"
                              "  edgegrad compile model.onnx --update scheme.json --optimizer momentum\n"
                              "  edgegrad compile model.onnx --target mcu --ext zve32f,zvl128b   # RVV kernels\n"
                              "  edgegrad compile model.onnx --target mcu --dtype fp16 --loss-scale 12\n"
                              "  edgegrad compile model.onnx --target rpi --board pi5 -o build/m-pi5   "
                              "# static aarch64 binary\n"
                              "  edgegrad compile model.onnx --target jetson -o build/m-orin   "
                              "# CPU binary + model.cu (sm_87)\n"
                              "  edgegrad compile model.onnx --target rpi --backend auto -o build/m-pi4   "
                              "# per layer: our NEON or TVM kernels",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", help="the ONNX model")
    c.add_argument("--target", default="host", choices=["host", "mcu", "rpi", "jetson"])
    c.add_argument("-o", "--output", help="build folder (default build/MODEL-TARGET)")
    c.add_argument("--update", default="all",
                   help="update scheme: all, none, last:N, bias:all, bias:last:N, weights:last:N@F, in:last:N@F "
                        "(comma-separated union), or a JSON file {tensor: fraction | {\"in\": f}}")
    c.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    c.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    c.add_argument("--momentum", type=float, default=0.9, help="momentum factor (default 0.9)")
    c.add_argument("--loss", default="cross_entropy", choices=["cross_entropy", "mse"],
                   help="loss on graph output 0; labels are int class indices for cross_entropy")
    c.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "int8"],
                   help="fp16: activations and gradients stored in fp16, fp32 compute/params/loss, loss scaling")
    c.add_argument("--loss-scale", type=_loss_scale, default=10, metavar="LOG2|off",
                   help="fp16: initial dynamic loss scale 2^LOG2 (default 10; halved on overflow, a step that "
                        "overflows is skipped); off: no scaling and no overflow skip (an ablation: an overflow "
                        "writes inf/NaN into the parameters)")
    c.add_argument("--qas", default="on", choices=["on", "off"],
                   help="int8: quantization-aware scaling of weight/bias gradients (default on; off = ablation)")
    c.add_argument("--int8-master", default="fp32", choices=["fp32", "none"],
                   help="int8: keep an fp32 master copy of the updated rows and re-quantize after each step "
                        "(default), or round the int8 weights themselves each step (none)")
    c.add_argument("--budget-sram", type=_size, default=256 * 1024, help="SRAM budget (mcu; default 256K)")
    c.add_argument("--budget-flash", type=_size, default=1024 * 1024, help="flash budget (mcu; default 1M)")
    c.add_argument("--ext", metavar="EXT[,EXT...]",
                   help="mcu: ISA extensions of the board beyond rv32imafc (zve32f, zvl128b, zfh, zvfh); "
                        "zve32f selects the RVV conv/GEMM kernels, and `edgegrad run` starts QEMU with them")
    c.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="fix a dynamic input shape (batch is fixed to 1 by default)")
    c.add_argument("--board", help="rpi: pi4 (Cortex-A72, default) or pi5 (Cortex-A76); jetson: orin (Cortex-A78AE)")
    c.add_argument("--threads", type=int, help="rpi/jetson: worker threads of the NEON kernels (default: 4 on a Pi, "
                                               "6 on Orin); results equal 1 thread's")
    c.add_argument("--backend", default="ours", choices=["ours", "tvm", "auto"],
                   help="rpi/jetson: where the conv/Gemm kernels come from: ours (NEON, default), tvm (generated by "
                        "TVM for each layer's shape; needs build/venv-tvm: bash tools/setup_bench.sh tvm), auto (per "
                        "kernel, whichever executes fewer instructions under qemu-aarch64; ours without TVM). "
                        "`edgegrad inspect BUILD` shows the choice")
    c.add_argument("--sanitize", action="store_true", help="host: build with AddressSanitizer + UBSan")
    c.add_argument("--verify", action="store_true", help="check the graph after every pass")
    c.add_argument("--dump-after", metavar="PASS", help="print the graph after PASS (e.g. build_training_graph)")
    c.add_argument("--no-build", action="store_true", help="emit C only, do not build")
    c.set_defaults(fn=cmd_compile)

    q = sub.add_parser("quantize", help="post-training static int8 quantization (QDQ) with calibration data",
                       description="Quantize a float ONNX model for --dtype int8 with onnxruntime's static "
                                   "quantizer: QDQ format, per-channel symmetric int8 weights, int8 activations "
                                   "calibrated (MinMax) on real samples, int32 biases. Needs onnxruntime.",
                       epilog="example:\n  edgegrad quantize models/onnx/cnn_fashion_pre.onnx --calib calib.npz "
                              "-o build/cnn_q.onnx\n  edgegrad compile build/cnn_q.onnx --dtype int8 --update last:2 "
                              "--optimizer momentum",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("model", help="the float ONNX model")
    q.add_argument("--calib", required=True,
                   help=".npz (array 'x', else the first) or .npy of calibration samples [S, *input shape]")
    q.add_argument("-o", "--output", help="quantized model (default MODEL_int8.onnx next to MODEL)")
    q.add_argument("--samples", type=int, default=256, help="calibration samples used at most (default 256)")
    q.set_defaults(fn=cmd_quantize)

    r = sub.add_parser("run", help="train a compiled build on samples, export the trained ONNX",
                       description="Run the compiled trainer where it lives (host natively, mcu in QEMU over "
                                   "the serial link, rpi/jetson under qemu-aarch64 or on the board through "
                                   "EDGEGRAD_AARCH64_RUN='ssh pi@host ./model_rpi'): one optimizer step per "
                                   "sample, in order (batch 1).",
                       epilog="example: edgegrad run build/m --inputs x.npy --labels y.npy --epochs 2 "
                              "--export trained.onnx")
    r.add_argument("build", help="a folder written by edgegrad compile")
    r.add_argument("--inputs", required=True, help=".npy of samples, shape [S, *input shape] (or [S, 1, ...])")
    r.add_argument("--labels", required=True, help=".npy of int class indices [S] (or float targets for mse)")
    r.add_argument("--epochs", type=int, default=1)
    r.add_argument("--export", help="write the trained model here (same graph and names as the input model)")
    r.add_argument("--quiet", action="store_true", help="print only the final summary")
    r.set_defaults(fn=cmd_run)

    d = sub.add_parser("demo", help="on-device class-incremental learning on the emulated MCU",
                       description="Compile a Fashion-MNIST CNN pretrained on classes 0-7 for the mcu target, "
                                   "flash it onto a board (QEMU with the edgegrad bootloader and a flash file, or "
                                   "--port) and teach it classes 8 and 9 from samples streamed over the serial link, "
                                   "checkpointing to flash; report accuracy before/after, power-cycle the board to "
                                   "show the learned weights persist, and plot it.",
                       epilog="example: edgegrad demo --steps 240 -o build/demo")
    d.add_argument("-o", "--output", default="build/demo", help="output folder (build, plot, trained model)")
    d.add_argument("--steps", type=int, default=240, help="samples streamed for training (half new classes)")
    d.add_argument("--eval", type=int, default=100, help="held-out test images (half new classes)")
    d.add_argument("--update", default="last:2", help="update scheme (default last:2)")
    d.add_argument("--lr", type=float, default=0.003)
    d.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--port", help="a real board's serial port (tty path or pyserial URL) running the edgegrad "
                                  "bootloader; default: a QEMU board with a flash file in OUTPUT/board")
    d.add_argument("--checkpoint-every", type=int, default=40, metavar="N",
                   help="checkpoint parameters + optimizer state to flash every N steps (default 40)")
    d.set_defaults(fn=cmd_demo)

    i = sub.add_parser("inspect", help="explain a model (layers, params, MACs) or a build (memory plan)",
                       epilog="examples:\n  edgegrad inspect model.onnx --update last:2\n  edgegrad inspect build/m\n"
                              "  edgegrad inspect build/m-pi4   # with --backend auto: our or TVM's kernel per layer",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("path", help="an ONNX model or a build folder")
    i.add_argument("--update", default="all", help="update scheme to explain (for a model)")
    i.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...")
    i.add_argument("--memory", action="store_true",
                   help="print the memory timeline over the mcu schedule (live bytes and arena high-water per step)")
    i.add_argument("--png", help="with --memory: plot live bytes per step, stacked by kind, to this PNG")
    i.add_argument("--budget-sram", type=_size, help="with --memory: draw/check this SRAM budget (e.g. 256K)")
    i.set_defaults(fn=cmd_inspect)

    pl = sub.add_parser("plan", help="search the sparse update scheme with the most expected gain for an SRAM budget",
                        description="Score every layer's candidates (frozen, bias, leading 1/8..1 of the output "
                                    "channels, or 1/8..1/2 of the input channels): with --data, by a short "
                                    "fine-tuning runs of each candidate with the numpy interpreter and the accuracy "
                                    "(then loss) gained on held-back samples (TTE's contribution analysis); "
                                    "without, by the "
                                    "first-order proxy ||mean grad||^2. Predict each scheme's mcu SRAM exactly as "
                                    "compile does, pick greedily by gain per byte (from several starts), and write "
                                    "the scheme as JSON for compile --update.",
                        epilog="examples:\n  edgegrad plan models/onnx/resnet8.onnx --budget-sram 256K -o scheme.json\n"
                               "  edgegrad plan model.onnx --budget-sram 512K --data calib.npz -o scheme.json\n"
                               "  edgegrad plan models/onnx/cnn_fashion_pre.onnx --budget-sram 96K --data calib.npz --gain "
                               "measured --steps 32 --lr 0.005 -o scheme.json\n"
                               "  edgegrad quantize m.onnx --calib calib.npz -o m_q.onnx\n"
                               "  edgegrad plan m_q.onnx --dtype int8 --budget-sram 256K --data calib.npz -o scheme.json\n"
                               "  edgegrad compile model.onnx --target mcu --update scheme.json",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pl.add_argument("model", help="the ONNX model")
    pl.add_argument("--budget-sram", type=_size, default=256 * 1024, help="SRAM budget (default 256K)")
    pl.add_argument("--budget-flash", type=_size, default=1024 * 1024, help="flash budget (default 1M)")
    pl.add_argument("--data", help=".npz with x [N, ...] and y [N] calibration samples (default: random inputs, "
                                   "and the gains are only a proxy)")
    pl.add_argument("--target", default="mcu", choices=["mcu"])
    pl.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "int8"],
                    help="the dtype the scheme will be compiled with: each candidate's SRAM is that of "
                         "compile --target mcu --dtype D, and the --data fine-tuning runs train in D (fp16 storage "
                         "with loss scaling; int8 needs a quantized model from edgegrad quantize; int8 schemes "
                         "take leading output-channel shares only). Default fp32")
    pl.add_argument("--int8-master", default="fp32", choices=["fp32", "none"],
                    help="with --dtype int8: plan for compile's --int8-master (fp32: an fp32 copy of the updated rows, "
                         "counted in SRAM; none: round the int8 weight each step). Default fp32")
    pl.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"],
                    help="optimizer the scheme will be compiled with (its state counts in SRAM)")
    pl.add_argument("--steps", type=int, default=16,
                    help="calibration samples for the gradient proxy; with --gain measured, the batch-1 "
                         "fine-tuning steps of each run (default 16)")
    pl.add_argument("--gain", choices=["proxy", "measured"],
                    help="measured: short fine-tuning runs per candidate on --data (default with --data); "
                         "proxy: first-order gradient score (default without)")
    pl.add_argument("--lr", type=float, default=0.01, help="lr of the measured fine-tuning runs (default 0.01)")
    pl.add_argument("--repeats", type=int, default=3,
                    help="--gain measured: fine-tuning runs per candidate, each on its own random split of --data "
                         "into --steps training and --steps held-back samples; the gain is their mean held-back "
                         "accuracy increase, ties broken by the loss, less one standard error over the runs "
                         "(default 3)")
    pl.add_argument("--holdout", type=int,
                    help="--gain measured: held-back samples per run (default 4 x --steps, at most what --data has "
                         "beyond the --steps training samples)")
    pl.add_argument("--seed", type=int, default=0)
    pl.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...")
    pl.add_argument("-o", "--output", required=True, help="where to write the scheme JSON")
    pl.set_defaults(fn=cmd_plan)
    _add_device_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.fn(a)
    except EdgegradError as e:
        print(f"edgegrad: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgegrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
