"""The line protocol every benchmark peer speaks (stdlib + numpy only: it runs in the peers' own venvs).

A peer is a script `python PEER.py SPEC.json` whose class has

    setup(spec) -> dict       build the training step; returns {"version": ..., "notes": [...]}
    reset()                   put the trained tensors back to their initial values
    step() -> float           one training step (forward, loss, backward, optimizer update); the loss
    trained() -> dict         name -> np.ndarray of every tensor the scheme trains, as they are now

serve(peer) answers JSON lines on stdin with one JSON line each on stdout:

    {"cmd": "first", "out": PATH}               reset, one step, np.savez(PATH, **trained()) -> {"loss"}
    {"cmd": "time", "steps": N, "warmup": W,    reset, W untimed + N timed steps -> {"median_us", "min_us",
     "clock": "wall" | "cpu"}                   "loss_first"}; cpu: process CPU time (time.process_time_ns)
    {"cmd": "quit"}                             exit 0

Before the first command it prints {"ready": true, ...setup's dict}. Any failure is answered with
{"error": "..."} and exit status 1. The protocol owns the real stdout: whatever the peer's libraries
print (C or Python) goes to stderr.

SPEC.json (written by tools/bench.py): model (ONNX path), trained {name: {"axis", "rows"}} (rows: the
leading rows of that axis the scheme updates), lr, input (.npy path), label (int), work (a scratch
folder), plus peer-specific keys.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from statistics import median

import numpy as np


def serve(peer) -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # library chatter on fd 1 must not corrupt the protocol
    sys.stdout = sys.stderr

    def reply(obj) -> None:
        proto.write(json.dumps(obj) + "\n")

    try:
        with open(sys.argv[1]) as f:
            spec = json.load(f)
        info = peer.setup(spec)
        reply({"ready": True, **info})
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["cmd"] == "quit":
                return 0
            peer.reset()
            if cmd["cmd"] == "first":
                loss = peer.step()
                np.savez(cmd["out"], **peer.trained())
                reply({"loss": float(loss)})
            elif cmd["cmd"] == "time":
                times, first = [], float("nan")
                clock = time.process_time_ns if cmd.get("clock") == "cpu" else time.perf_counter_ns
                for i in range(cmd["warmup"] + cmd["steps"]):
                    t0 = clock()
                    loss = peer.step()
                    t1 = clock()
                    if i == 0:
                        first = float(loss)
                    if i >= cmd["warmup"]:
                        times.append((t1 - t0) / 1e3)
                reply({"median_us": median(times), "min_us": min(times), "loss_first": first})
            else:
                raise ValueError(f"unknown command {cmd['cmd']!r}")
        return 0
    except Exception as e:  # noqa: BLE001 - every failure becomes one protocol line for the parent
        traceback.print_exc()
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
