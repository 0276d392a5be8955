"""Shared torch helpers for the zoo scripts: export, parameter and MAC counts, BN statistics.

torch is used only here and in the model scripts (never by the compiler at run time).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
import torch.nn.utils.fusion
from torch import nn

from models.onnx_utils import rename_folded_initializers

DEFAULT_OPSET = 13


def export_onnx(
    module: nn.Module,
    path: str | Path,
    input_shape: tuple[int, ...],
    opset: int = DEFAULT_OPSET,
    fold_constants: bool = True,
    keep_batchnorm: bool = False,
) -> Path:
    """Write ``module`` as ONNX with the legacy (TorchScript) exporter, in eval mode.

    Input batch 1, fixed shape, input named "input", output "logits".
    keep_batchnorm=True exports BatchNormalization nodes (inference form) instead of folding
    them into the preceding Conv: the exporter is told to preserve the module's training mode
    (eval here), which skips its eval-time Conv+BN fusion.
    Folded weights get their module's name (see onnx_utils.rename_folded_initializers).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    example = torch.zeros(input_shape, dtype=torch.float32)
    training = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    with torch.no_grad():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            do_constant_folding=fold_constants,
            training=training,
            input_names=["input"],
            output_names=["logits"],
        )
        output_shape = tuple(module(example).shape)
    model = rename_folded_initializers(onnx.load(str(path)))
    _set_static_output_shape(model, output_shape)
    onnx.save(model, str(path))
    return path


def _set_static_output_shape(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    """Write the known logits shape into the graph output.

    torch's exporter leaves it symbolic after some ops (an explicit Pad) even with fixed
    input shapes; the zoo contract is a fully static graph.
    """
    dims = model.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dims.add().dim_value = size


def export_onnx_dynamo(module: nn.Module, path: str | Path, input_shape: tuple[int, ...],
                       opset: int = 18) -> Path:
    """Write ``module`` with the dynamo (torch.export) exporter; needs onnxscript, works offline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    example = torch.zeros(input_shape, dtype=torch.float32)
    with torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["input"],
            output_names=["logits"],
            optimize=True,
            verbose=False,
        )
    program.save(str(path), external_data=False)
    return path


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass (Conv and Linear only; batch 1)."""
    total = 0

    def conv_hook(layer: nn.Conv2d | nn.Conv1d, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = layer.weight[0].numel()  # (Cin/groups) * kh * kw
        total += output.numel() * kernel

    def linear_hook(layer: nn.Linear, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += output.numel() * layer.in_features

    handles = []
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            handles.append(layer.register_forward_hook(conv_hook))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(linear_hook))
    was_training = module.training
    module.eval()
    with torch.no_grad():
        module(torch.zeros((1, *input_shape[1:])))
    module.train(was_training)
    for handle in handles:
        handle.remove()
    return total


def randomize_batchnorm(module: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters.

    Fresh BN layers are the identity in eval mode (mean 0, var 1, gamma 1, beta 0), which
    would hide folding mistakes in the frontend; these draws keep activations well scaled.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = layer.num_features
            with torch.no_grad():
                layer.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                layer.weight.copy_(0.8 + 0.4 * torch.rand(n, generator=generator))
                layer.bias.copy_(0.1 * torch.randn(n, generator=generator))


def fuse_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d just before it in a Sequential (eval statistics), in
    place: the conv gets a bias, the BN becomes Identity. The state_dict names are then the folded
    initializer names of the zoo's exports (``features.1.conv.0.0.weight``, ``.bias``)."""
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv.eval(), bn.eval())
                seq[i + 1] = nn.Identity()
    return module.eval()


def seeded(seed: int) -> torch.Generator:
    """Seed torch's global RNG (used by default layer init) and return a generator for extras."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit(model: nn.Module, xt: torch.Tensor, yt: torch.Tensor, *, epochs: int, batch: int, lr: float,
        seed: int, transform=None) -> None:
    """Deterministic pretraining: Adam on cross-entropy, shuffled mini-batches; leaves the model in eval mode.

    transform: applied to each mini-batch of inputs (e.g. a resize, so the full-size set never exists)."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(order), batch):
            idx = order[start:start + batch]
            optimizer.zero_grad()
            xb = xt[idx] if transform is None else transform(xt[idx])
            loss_fn(model(xb), yt[idx]).backward()
            optimizer.step()
    model.eval()
