"""Arena vs lower bound for every zoo model and update scheme (host target, no build).

    python -m edgegrad.tools.arena [--models a,b] [--schemes all,last:2,...] [--target host]

The lower bound is the largest sum of simultaneously live bytes over the final schedule
(compiler/passes/plan_memory.py); the arena is what the greedy planner places, scratch included.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from edgegrad.pipeline import CompileConfig, compile_model

REPO = Path(__file__).resolve().parent.parent
MODELS = "mlp_har,cnn_fashion,dscnn,resnet8,mobilenetv2_w035_96,mobilenetv2_w035_128"
SCHEMES = "all,last:2,last:3,bias:all,weights:last:1@0.5"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edgegrad.tools.arena", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--schemes", default=SCHEMES)
    ap.add_argument("--target", default="host", choices=["host", "mcu", "rpi", "jetson"])
    a = ap.parse_args(argv)
    print("| model | scheme | arena KiB | lower bound KiB | arena / LB |\n|---|---|---:|---:|---:|")
    worst = 0.0
    for m in a.models.split(","):
        for s in a.schemes.split(","):
            with tempfile.TemporaryDirectory() as d:
                cfg = CompileConfig(target=a.target, update=s, build=False, quiet=True,
                                    sram_budget=1 << 30, flash_budget=1 << 30)
                info = compile_model(REPO / "models" / "onnx" / f"{m}.onnx", Path(d) / "b", cfg).info
            ratio = info["arena_bytes"] / info["arena_lower_bound"]
            worst = max(worst, ratio)
            print(f"| {m} | `{s}` | {info['arena_bytes'] / 1024:,.1f} | {info['arena_lower_bound'] / 1024:,.1f} "
                  f"| {ratio:.3f} |")
    print(f"\nworst arena / lower bound: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
