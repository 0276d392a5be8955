"""PyTorch reference for any imported IR forward graph: every op re-implemented with torch
functions, gradients from torch.autograd, updates from torch.optim. Independent of the
compiler's numpy references and of the generated C; this is the oracle the tests trust."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from edgegrad.ir import Graph


def _pad_hw(x, pads, value=0.0):
    pt, pl, pb, pr = pads
    return F.pad(x, (pl, pr, pt, pb), value=value)


def _conv(x, w, b, a):
    one_d = x.dim() == 3
    if one_d:
        x, w = x.unsqueeze(2), w.unsqueeze(2)
    y = F.conv2d(_pad_hw(x, a["pads"]), w, b, stride=a["strides"], dilation=a["dilations"], groups=a["group"])
    return y.squeeze(2) if one_d else y


def _pool(x, a, kind):
    one_d = x.dim() == 3
    if one_d:
        x = x.unsqueeze(2)
    pt, pl, pb, pr = a["pads"]
    oh, ow = a["out_hw"]
    (kh, kw), (sh, sw) = a["kernel"], a["strides"]
    if kind == "max":
        dh, dw = a["dilations"]
        eh = max(0, (oh - 1) * sh + (kh - 1) * dh + 1 - (x.shape[2] + pt))
        ew = max(0, (ow - 1) * sw + (kw - 1) * dw + 1 - (x.shape[3] + pl))
        xp = F.pad(x, (pl, ew, pt, eh), value=float("-inf"))
        y = F.max_pool2d(xp, (kh, kw), (sh, sw), dilation=(dh, dw))
    else:
        eh = max(0, (oh - 1) * sh + kh - (x.shape[2] + pt))
        ew = max(0, (ow - 1) * sw + kw - (x.shape[3] + pl))
        xp = F.pad(x, (pl, ew, pt, eh))
        s = F.avg_pool2d(xp, (kh, kw), (sh, sw)) * (kh * kw)
        ones = torch.ones(1, 1, x.shape[2], x.shape[3], dtype=x.dtype)
        if a.get("count_include_pad", 0):
            ones = F.pad(ones, (pl, pr, pt, pb), value=1.0)
            ones = F.pad(ones, (0, max(0, ew - pr), 0, max(0, eh - pb)))
        else:
            ones = F.pad(ones, (pl, ew, pt, eh))
        cnt = F.avg_pool2d(ones, (kh, kw), (sh, sw)) * (kh * kw)
        y = s / cnt
    y = y[:, :, :oh, :ow]
    return y.squeeze(2) if one_d else y


def run_op(n, v):
    a = n.attrs
    x = [v[i] if i else None for i in n.inputs]
    op = n.op
    if op == "Conv":
        return _conv(x[0], x[1], x[2] if len(x) > 2 else None, a)
    if op == "Gemm":
        A = x[0].T if a.get("transA") else x[0]
        B = x[1].T if a.get("transB") else x[1]
        y = a.get("alpha", 1.0) * (A @ B)
        return y + a.get("beta", 1.0) * x[2] if len(x) > 2 and x[2] is not None else y
    if op == "MatMul":
        return torch.matmul(x[0], x[1])
    if op in ("Add", "Sub", "Mul", "Div"):
        return {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x[0], x[1])
    if op == "Relu":
        return F.relu(x[0])
    if op == "Clip":  # nn.ReLU6 / F.hardtanh: the gradient is 0 at the kinks (torch.clamp's passes it)
        if a["lo"] <= a["hi"]:
            return F.hardtanh(x[0], float(a["lo"]), float(a["hi"]))
        return torch.clamp(x[0], a["lo"] if np.isfinite(a["lo"]) else None, a["hi"] if np.isfinite(a["hi"]) else None)
    if op == "LeakyRelu":
        return F.leaky_relu(x[0], a.get("alpha", 0.01))
    if op == "PRelu":
        s = x[1]
        if s.dim() == 1 and x[0].dim() > 2 and s.shape[0] == x[0].shape[1] and s.shape[0] != x[0].shape[-1]:
            s = s.reshape(-1, *([1] * (x[0].dim() - 2)))
        return torch.where(x[0] >= 0, x[0], x[0] * s)
    if op == "Sigmoid":
        return torch.sigmoid(x[0])
    if op == "Tanh":
        return torch.tanh(x[0])
    if op == "HardSigmoid":
        return torch.clamp(a.get("alpha", 0.2) * x[0] + a.get("beta", 0.5), 0, 1)
    if op == "HardSwish":
        return F.hardswish(x[0])
    if op == "Softmax":
        return torch.softmax(x[0], a["axis"])
    if op == "MaxPool":
        return _pool(x[0], a, "max")
    if op == "AveragePool":
        return _pool(x[0], a, "avg")
    if op == "GlobalAveragePool":
        return x[0].mean(dim=tuple(range(2, x[0].dim())), keepdim=True)
    if op == "ReduceMean":
        return x[0].mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
    if op == "ReduceSum":
        return x[0].sum(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))
    if op == "Reshape":
        return x[0].reshape(a["shape"])
    if op == "Transpose":
        return x[0].permute(*a["perm"])
    if op == "Concat":
        return torch.cat(x, dim=a["axis"])
    if op == "Slice":
        sl = [slice(None)] * x[0].dim()
        for s, e, ax, st in zip(a["starts"], a["ends"], a["axes"], a["steps"]):
            if st < 0:
                idx = torch.arange(s, -1 if e is None else e, st)
                return x[0].index_select(ax, idx)
            sl[ax] = slice(s, e, st)
        return x[0][tuple(sl)]
    if op == "Pad":
        p = a["pads"]
        nd = x[0].dim()
        tp = []
        for i in reversed(range(nd)):
            tp += [p[i], p[nd + i]]
        return F.pad(x[0], tp, value=a.get("value", 0.0))
    if op == "BatchNormalization":
        return F.batch_norm(x[0], x[3], x[4], x[1], x[2], training=False, eps=a.get("epsilon", 1e-5))
    raise NotImplementedError(op)


class TorchModel:
    """The forward IR graph as a differentiable torch function with its params as leaves."""

    def __init__(self, g: Graph, trainable: list[str]):
        self.g = g
        self.params = {n: torch.tensor(t.data.copy(), requires_grad=n in trainable)
                       for n, t in g.tensors.items() if t.role in ("param", "const") and t.data is not None}
        self.trainable = trainable

    def forward(self, xs: list[np.ndarray]) -> list[torch.Tensor]:
        v = dict(self.params)
        for name, x in zip(self.g.inputs, xs):
            v[name] = torch.tensor(np.asarray(x, np.float32).reshape(self.g.tensors[name].shape))
        for n in self.g.nodes:
            v[n.outputs[0]] = run_op(n, v)
        return [v[o] for o in self.g.outputs]

    def train(self, xs, ys, *, lr, optimizer="sgd", loss="ce", momentum=0.9, slices=None):
        """One step per sample; ``slices`` {param: (axis, k)} keeps only the leading k of axis."""
        ps = [self.params[n] for n in self.trainable]
        opt = {"sgd": lambda: torch.optim.SGD(ps, lr=lr),
               "momentum": lambda: torch.optim.SGD(ps, lr=lr, momentum=momentum),
               "adam": lambda: torch.optim.Adam(ps, lr=lr)}[optimizer]()
        losses = []
        for x, y in zip(xs, ys):
            opt.zero_grad()
            out = self.forward([x])[0]
            if loss == "ce":
                lt = F.cross_entropy(out.reshape(1, -1), torch.tensor([int(y)]))
            else:
                lt = F.mse_loss(out, torch.tensor(np.asarray(y, np.float32)).reshape(out.shape))
            lt.backward()
            for n, (axis, k) in (slices or {}).items():
                g = self.params[n].grad
                idx = [slice(None)] * g.dim()
                idx[axis] = slice(k, None)
                g[tuple(idx)] = 0
            opt.step()
            losses.append(float(lt.detach()))
        return losses, {n: self.params[n].detach().numpy().copy() for n in self.trainable}
