"""Winograd convolutions (runtime_c/eg_winograd.c) against PyTorch autograd (float64) and the
fp32 reference kernels, every element.

The kernels are built with the host target's flags into one library with the reference and
GEMM engine, and called through ctypes (kernel_harness). For every shape, F(2x2,3x3) and
F(4x4,3x3), the forward (with / without bias, ReLU on / off) and the input gradient are compared
with PyTorch float64 results: conv2d for the forward, autograd's gradient of conv2d for dx.

Tolerance: the transforms reassociate the sums (and F4's carry 1/6, 1/24 factors and ×8 terms),
so the error scales with the sum of |terms|, not with the result:
    |wino - torch64| <= TOL[tile] * sum |x||w| + 1e-7   (per element; the |x| (*) |w| conv)
with TOL = 2e-6 for F2 and 2e-5 for F4 (measured worst over these cases: 3e-7 forward / 8e-7
input gradient for F2, 7e-6 for F4; the direct fp32 reference kernel: 2.5e-7). Scratch is exactly winograd_scratch_floats(...),
pre-filled with NaN between guard words; outputs sit between guards too.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from kernel_harness import RUNTIME, Guarded, Kernels
from test_kernels_tiled import HOST_CFLAGS, Scratch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from compiler.kernels_winograd import winograd_applies, winograd_scratch_floats

torch = pytest.importorskip("torch")

FAMILIES = ["conv", "gemm_tiled", "winograd"]
TOL = {2: 2e-6, 4: 2e-5}
ATOL = 1e-7


# native: the host build (16-float vectors with AVX-512); x86-64-v3: AVX2, the 8-float vectors every
# other ISA (aarch64 NEON pairs) gets, so both vector widths' code paths run here
ISAS = {"native": "-march=native", "x86-64-v3": "-march=x86-64-v3"}


@pytest.fixture(scope="module", params=list(ISAS))
def k(request, tmp_path_factory) -> Kernels:
    out = tmp_path_factory.mktemp("egwino")
    lib = out / "libegwino.so"
    flags = [f if f != "-march=native" else ISAS[request.param] for f in HOST_CFLAGS]
    subprocess.run(["gcc", *flags, f"-I{RUNTIME}", *[str(RUNTIME / f"eg_{f}.c") for f in FAMILIES],
                    "-o", str(lib)], check=True, capture_output=True, text=True)
    return Kernels(lib, families=FAMILIES, math_shim=False)



# (N, C, H, W, M, pt, pl, pb, pr): ResNet-8's layers, odd sizes, images smaller than a tile,
# channels that are not multiples of the vector width, every pad 0..2, bands (> 128 tiles)
CASES = [
    (1, 16, 32, 32, 16, 1, 1, 1, 1),
    (1, 32, 16, 16, 32, 1, 1, 1, 1),
    (1, 64, 8, 8, 64, 1, 1, 1, 1),
    (1, 3, 32, 32, 16, 1, 1, 1, 1),
    (2, 5, 9, 7, 11, 1, 1, 1, 1),
    (1, 1, 1, 1, 1, 1, 1, 1, 1),
    (1, 2, 1, 3, 3, 2, 2, 2, 2),
    (1, 7, 2, 2, 17, 0, 1, 2, 0),
    (1, 17, 3, 5, 1, 2, 0, 1, 2),
    (1, 70, 6, 6, 33, 1, 1, 1, 1),
    (1, 33, 5, 4, 70, 2, 2, 0, 0),
    (1, 9, 33, 33, 20, 1, 1, 1, 1),
    (1, 4, 33, 31, 6, 0, 0, 0, 0),
    (1, 6, 19, 17, 5, 2, 1, 0, 2),
    (3, 8, 11, 13, 16, 1, 2, 2, 1),
    (1, 16, 3, 70, 18, 1, 1, 1, 1),
    (1, 12, 40, 40, 8, 1, 1, 1, 1),
    (1, 48, 12, 12, 48, 0, 2, 1, 2),
    # ragged edges where 2 or 4 tile rows share a vector (tile rows of 8 or 4 tiles)
    (1, 5, 15, 15, 6, 1, 1, 1, 1),
    (2, 3, 7, 7, 4, 1, 1, 1, 1),
    (1, 4, 14, 16, 3, 1, 0, 1, 2),
]


def out_size(c) -> tuple[int, int]:
    _, _, H, W, _, pt, pl, pb, pr = c
    return H + pt + pb - 2, W + pl + pr - 2


def torch_ref(x, w, b, dy, c, act):
    """float64 forward y, input gradient dx of conv2d (asymmetric pads by F.pad), and the
    magnitudes sum |x||w| of both."""
    F = torch.nn.functional
    pt, pl, pb, pr = c[5:]
    X = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    Wt = torch.tensor(w, dtype=torch.float64)
    B = None if b is None else torch.tensor(b, dtype=torch.float64)
    y = F.conv2d(F.pad(X, (pl, pr, pt, pb)), Wt, B)
    if act:
        y = torch.relu(y)
    dY = torch.tensor(dy, dtype=torch.float64)
    Xz = torch.tensor(np.abs(x), dtype=torch.float64, requires_grad=True)
    mag = F.conv2d(F.pad(Xz, (pl, pr, pt, pb)), Wt.abs()) + (0 if B is None else B.abs()[:, None, None])
    # dx = d/dx <dy, conv(x)>: autograd on the pre-activation conv (bw_input has no activation)
    y0 = F.conv2d(F.pad(X, (pl, pr, pt, pb)), Wt)
    (dx,) = torch.autograd.grad(y0, X, dY)
    (dmag,) = torch.autograd.grad(F.conv2d(F.pad(Xz, (pl, pr, pt, pb)), Wt.abs()), Xz, dY.abs())
    return y.detach().numpy(), mag.detach().numpy(), dx.numpy(), dmag.numpy()


def check(actual, expected, magnitude, tol, what):
    err = np.abs(actual.astype(np.float64) - expected)
    bound = tol * magnitude + ATOL
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, 1, 0)), err.shape)
        raise AssertionError(f"{what}: {bad.sum()} of {bad.size} off, first at {i}: {actual[i]} vs "
                             f"{expected[i]} (bound {bound[i]}), worst err/mag {(err / magnitude.clip(1e-30)).max():.2e}")
    return float((err / np.maximum(magnitude, 1e-30)).max())


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("case", CASES, ids=["x".join(map(str, c)) for c in CASES])
def test_winograd_matches_torch(k, case, tile):
    N, C, H, W, M, pt, pl, _, _ = case
    OH, OW = out_size(case)
    rng = np.random.default_rng(zlib.crc32(repr((case, tile)).encode()))
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((M, C, 3, 3), dtype=np.float32)
    b = rng.standard_normal(M, dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    sizes = [N, C, H, W, M, OH, OW, 3, 3, 1, 1, pt, pl, 1, 1, 1]
    for kind in ("fw", "bw_input"):
        assert winograd_applies(*sizes[1:], kind=kind)
    g = Guarded()
    for bias, act in ((True, 0), (False, 1), (True, 1)):
        y_ref, mag, dx_ref, dmag = torch_ref(x, w, b if bias else None, dy, case, act)
        s = Scratch(winograd_scratch_floats("fw", C, M, H, W, OH, OW, tile))
        y = g.out(N, M, OH, OW)
        k.conv2d_f32_fw_winograd(y, x, w, b if bias else None, *sizes, tile, s.buf, act)
        s.check()
        check(y, y_ref, mag, TOL[tile], f"fw F{tile} bias={bias} act={act}")
        # the fp32 reference kernel, for the same bound (with the activation applied by hand)
        yr = g.out(N, M, OH, OW)
        k.conv2d_f32_fw(yr, x, w, b if bias else None, *sizes)
        check(np.maximum(yr, 0) if act else yr, y_ref, mag, TOL[tile], "reference fw")
    s = Scratch(winograd_scratch_floats("bw_input", C, M, H, W, OH, OW, tile))
    dx = g.out(N, C, H, W)
    k.conv2d_f32_bw_input_winograd(dx, dy, w, *sizes, tile, s.buf)
    s.check()
    check(dx, dx_ref, dmag, TOL[tile], f"bw_input F{tile}")
    g.check()


def test_tile_choice():
    """The measured table's picks for ResNet-8, the model elsewhere, and no Winograd where its
    scratch would exceed MAX_SCRATCH or the shape is not a stride-1 3x3."""
    from compiler.kernels_winograd import MAX_SCRATCH, winograd_tile

    def sizes(C, M, HW, **kw):
        return {"N": 1, "C": C, "H": HW, "W": HW, "M": M, "OH": HW, "OW": HW, "KH": 3, "KW": 3, "sh": 1, "sw": 1,
                "pt": 1, "pl": 1, "dh": 1, "dw": 1, "G": 1, **kw}

    assert winograd_tile(**sizes(16, 16, 32)) == 4
    assert winograd_tile(**sizes(32, 32, 16), kind="bw_input") == 2
    assert winograd_tile(**sizes(3, 16, 32)) is None  # the stem: implicit measured faster
    assert winograd_tile(**sizes(48, 48, 24)) == 2  # not in the table: the cost model
    assert winograd_tile(**sizes(4, 4, 24)) is None  # few channels: transforms dominate
    assert winograd_scratch_floats("fw", 512, 512, 14, 14, 14, 14, 2) > MAX_SCRATCH
    assert winograd_tile(**sizes(512, 512, 14)) is None
    assert winograd_tile(**sizes(16, 16, 32, sh=2, OH=16, OW=16)) is None
    # frozen weights (the _pre kernels): F4 where the weight transform no longer counts, else the pick stays
    from compiler.kernels_winograd import winograd_tile_frozen
    assert winograd_tile_frozen(2, **sizes(32, 32, 16)) == 4
    assert winograd_tile_frozen(2, **sizes(64, 64, 8), kind="bw_input") == 2
    assert winograd_tile_frozen(2, **sizes(48, 48, 24)) == 2  # not measured: unchanged


def test_applies():
    # stride 2, dilation, groups, 1x1, 5x5, pads beyond 2 are not Winograd F(m, 3) shapes
    base = {"C": 4, "M": 4, "H": 8, "W": 8, "OH": 8, "OW": 8, "KH": 3, "KW": 3, "sh": 1, "sw": 1, "pt": 1, "pl": 1,
            "dh": 1, "dw": 1, "G": 1}
    assert winograd_applies(**base)
    assert winograd_applies(**base, kind="bw_input")
    assert not winograd_applies(**base, kind="bw_weight")
    for bad in ({"sh": 2, "OH": 4, "OW": 4}, {"dh": 2, "OH": 6}, {"G": 2}, {"KH": 1, "KW": 1, "pt": 0, "pl": 0},
                {"pt": 3, "OH": 10}, {"OH": 11, "pt": 2}):
        assert not winograd_applies(**{**base, **bad}), bad


@pytest.mark.parametrize("tile", [2, 4])
def test_resnet8_trains_like_torch_with_winograd(tile, tmp_path, monkeypatch):
    """ResNet-8 host training steps with every applicable conv (forward and input gradient) on
    Winograd F(tile x tile, 3x3), whatever the measured table picks, against PyTorch SGD."""
    from edgegrad import kernels_winograd
    from egtest import compile_host
    from test_zoo_train import LR, assert_trains_like_torch

    from models import ZOO

    def forced(*args, kind="fw", **sizes):
        return tile if kernels_winograd.winograd_applies(*args[1:], **{k: v for k, v in sizes.items() if k not in (
            "N", "M_upd", "Cg_upd", "Cx")}, kind=kind) else None

    monkeypatch.setattr(kernels_winograd, "winograd_tile", forced)
    build = compile_host(ZOO["resnet8"].path, tmp_path / "b", update="all", optimizer="sgd", lr=LR["sgd"])
    src = (build / "model.c").read_text()
    # five 3x3 stride-1 convs (the stem, stacks.0.conv1/conv2, stacks.{1,2}.conv2) in the step and in
    # infer; four input gradients (the stem needs none), three of them masked by the ReLU before them
    assert (src.count("conv2d_f32_fw_winograd("), src.count("conv2d_f32_bw_input_winograd(")) == (10, 1)
    assert src.count("conv2d_f32_bw_input_winograd_mask(") == 3
    assert f", {tile}, " in src.split("conv2d_f32_fw_winograd(")[1].split(";")[0]
    assert_trains_like_torch("resnet8", build, "all", "sgd", LR["sgd"])


# the _pre kernels (frozen weights transformed at compile time, passes/wino_frozen.py): ResNet-8's
# layers, odd sizes and pads
PRE_CASES = [CASES[0], CASES[2], CASES[4], CASES[9]]


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("case", PRE_CASES, ids=["x".join(map(str, c)) for c in PRE_CASES])
def test_winograd_pre_matches_torch(k, case, tile):
    """conv2d_f32_{fw,bw_input}_winograd_pre with U from kernels_winograd.winograd_weights (float64
    transform) against PyTorch float64, every element, at the same bound as the per-call transform;
    scratch exactly winograd_scratch_floats(..., pre=True), U read-only (checked unchanged)."""
    from compiler.kernels_winograd import winograd_weights, winograd_weights_floats

    N, C, H, W, M, pt, pl, _, _ = case
    OH, OW = out_size(case)
    rng = np.random.default_rng(zlib.crc32(repr(("pre", case, tile)).encode()))
    x = rng.standard_normal((N, C, H, W), dtype=np.float32)
    w = rng.standard_normal((M, C, 3, 3), dtype=np.float32)
    b = rng.standard_normal(M, dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    sizes = [N, C, H, W, M, OH, OW, 3, 3, 1, 1, pt, pl, 1, 1, 1]
    y_ref, mag, dx_ref, dmag = torch_ref(x, w, b, dy, case, 1)
    g = Guarded()
    for kind in ("fw", "bw_input"):
        u = winograd_weights(w, kind, tile)
        assert u.size == winograd_weights_floats(kind, C, M, tile)
        u0 = u.copy()
        s = Scratch(winograd_scratch_floats(kind, C, M, H, W, OH, OW, tile, pre=True))
        if kind == "fw":
            out = g.out(N, M, OH, OW)
            k.conv2d_f32_fw_winograd_pre(out, x, u, b, *sizes, tile, s.buf, 1)
            check(out, y_ref, mag, TOL[tile], f"fw_pre F{tile}")
        else:
            out = g.out(N, C, H, W)
            k.conv2d_f32_bw_input_winograd_pre(out, dy, u, *sizes, tile, s.buf)
            check(out, dx_ref, dmag, TOL[tile], f"bw_input_pre F{tile}")
        s.check()
        np.testing.assert_array_equal(u, u0)
    g.check()
    with pytest.raises(ValueError, match="tile"):
        winograd_weights(w, "fw", 3)


def test_resnet8_frozen_winograd_weights_reload(tmp_path):
    """ResNet-8 last:3 (the benchmark scheme): the frozen 3x3 layers run on weights transformed at
    compile time (conv2d_f32_fw_winograd_pre), the trained one keeps the per-call transform. The cached
    transform cannot go stale: writing a frozen weight is refused (ERR_FROZEN, the value unchanged), and
    reloading the trained params to their initial values and repeating the steps reproduces the fresh
    process's run bit for bit; that run matches PyTorch."""
    from edgegrad.pipeline import CompileConfig, frontend_graph
    from edgegrad.run import Session, load_build
    from edgegrad.tools import proto
    from edgegrad.tools.runner import open_device
    from egtest import FP32_ATOL, FP32_RTOL, compile_host
    from test_zoo_train import LR, _samples
    from torch_ref import TorchModel

    from models import ZOO

    build = compile_host(ZOO["resnet8"].path, tmp_path / "b", update="last:3", optimizer="sgd", lr=LR["sgd"])
    src = (build / "model.c").read_text()
    # stacks.0.conv1/conv2 and stacks.1.conv2 frozen, in the step and in infer; stacks.2.conv2 trained
    assert (src.count("conv2d_f32_fw_winograd_pre("), src.count("conv2d_f32_fw_winograd(")) == (6, 2)
    info = load_build(build)
    xs, ys = _samples("resnet8")
    g, updates = frontend_graph(ZOO["resnet8"].path, CompileConfig(update="last:3"))
    with open_device(build / info["binary"], "host") as dev:
        s = Session(dev, info)
        w0 = s.read("stacks.0.conv1.weight", g.tensors["stacks.0.conv1.weight"].shape)
        with pytest.raises(proto.DeviceError) as err:
            s.write("stacks.0.conv1.weight", np.zeros_like(w0))
        assert err.value.code == proto.ERR_FROZEN
        np.testing.assert_array_equal(s.read("stacks.0.conv1.weight", w0.shape), w0)
        runs = []
        for _ in range(2):
            for p in updates:  # (re)load the trained params: the initial values
                s.write(p, g.tensors[p].data.astype(np.float32))
            runs.append(([s.train(x, y) for x, y in zip(xs, ys)], s.trained()))
    assert runs[0][0] == runs[1][0]
    for p in updates:
        np.testing.assert_array_equal(runs[0][1][p], runs[1][1][p], err_msg=p)
    ref_losses, ref = TorchModel(g, list(updates)).train(xs, ys, lr=LR["sgd"], optimizer="sgd")
    np.testing.assert_allclose(runs[0][0], ref_losses, rtol=FP32_RTOL, atol=FP32_ATOL)
    for p in updates:
        np.testing.assert_allclose(runs[0][1][p], ref[p], rtol=FP32_RTOL, atol=FP32_ATOL, err_msg=p)


def _mask_y(rng, shape):
    """Forward outputs with exact kinks: zeros, the ReLU6 bound 6, values inside and outside."""
    return rng.choice(np.array([0.0, 6.0, 0.5, 3.0, 7.0, -1.0], np.float32), shape)


# ResNet-8's three layer sizes, ragged edges, rows where 2 or 4 tile rows share a vector, batch 2, bands
MASK_CASES = [CASES[i] for i in (0, 1, 2, 4, 11, 14, 18, 19)]


@pytest.mark.parametrize("case", MASK_CASES, ids=["x".join(map(str, c)) for c in MASK_CASES])
def test_bw_input_mask_is_the_unfused_pair(k, case):
    """conv2d_f32_bw_input_winograd_mask (passes/fuse_eltwise.py) = conv2d_f32_bw_input_winograd, then
    relu_f32_bw / clip_f32_bw by y, bit for bit (F2 and F4, both vector widths); the same for the _pre
    twin (frozen weights transformed at compile time)."""
    from compiler.kernels_winograd import winograd_weights

    N, C, H, W, M, pt, pl, _, _ = case
    OH, OW = out_size(case)
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()) + 3)
    w = rng.standard_normal((M, C, 3, 3), dtype=np.float32)
    dy = rng.standard_normal((N, M, OH, OW), dtype=np.float32)
    y = _mask_y(rng, (N, C, H, W))
    sizes = [N, C, H, W, M, OH, OW, 3, 3, 1, 1, pt, pl, 1, 1, 1]
    g = Guarded()
    for tile in (2, 4):
        s = Scratch(winograd_scratch_floats("bw_input", C, M, H, W, OH, OW, tile))
        plain = g.out(N, C, H, W)
        k.conv2d_f32_bw_input_winograd(plain, dy, w, *sizes, tile, s.buf)
        for mask, lo, hi, keep in ((1, 0.0, 0.0, y > 0), (2, 0.0, 6.0, (y > 0) & (y < 6)), (0, 0.0, 0.0, True)):
            out = g.out(N, C, H, W)
            k.conv2d_f32_bw_input_winograd_mask(out, dy, w, *sizes, tile, s.buf, y, mask, lo, hi)
            s.check()
            np.testing.assert_array_equal(out, np.where(keep, plain, np.float32(0)),
                                          err_msg=f"bw_input_winograd_mask F{tile} {mask} {case}")
        u = winograd_weights(w, "bw_input", tile)
        sp = Scratch(winograd_scratch_floats("bw_input", C, M, H, W, OH, OW, tile, pre=True))
        plain = g.out(N, C, H, W)
        k.conv2d_f32_bw_input_winograd_pre(plain, dy, u, *sizes, tile, sp.buf)
        out = g.out(N, C, H, W)
        k.conv2d_f32_bw_input_winograd_pre_mask(out, dy, u, *sizes, tile, sp.buf, y, 2, 0.0, 6.0)
        sp.check()
        np.testing.assert_array_equal(out, np.where((y > 0) & (y < 6), plain, np.float32(0)),
                                      err_msg=f"bw_input_winograd_pre_mask F{tile} {case}")
    g.check()
