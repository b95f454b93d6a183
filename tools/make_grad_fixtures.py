#!/usr/bin/env python3
"""Write the PyTorch gradients that the Swift backward kernels are tested against.

Tests/Fixtures/grads/ holds, with fixed seeds, what Tests/Fixtures/kernels/ (tools/make_fixtures.py) lacks
for training: convolutions as the networks pad them (reflection pad, then the conv), at the shapes where
Conv2D picks Winograd or kn2row, the discriminator's 4x4 convs, the three losses with their gradients, and
three steps of torch.optim.Adam.

Needs: torch numpy safetensors        python tools/make_grad_fixtures.py [--out Tests/Fixtures]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from make_fixtures import save

REPO = Path(__file__).resolve().parent.parent
SEED = 20261201


def meta(**fields) -> dict[str, str]:
    out = {"generated_by": "tools/make_grad_fixtures.py", "torch_version": torch.__version__}
    out.update({key: str(value) for key, value in fields.items()})
    return out


def conv2d_case(gen, cin, cout, k, stride, padding, mode, h, w):
    """conv(pad(x)) as the networks run it, then autograd of sum(output * grad_output)."""
    x = torch.randn(1, cin, h, w, generator=gen).requires_grad_(True)
    bound = 1 / math.sqrt(cin * k * k)
    weight = ((torch.rand(cout, cin, k, k, generator=gen) * 2 - 1) * bound).requires_grad_(True)
    bias = ((torch.rand(cout, generator=gen) * 2 - 1) * bound).requires_grad_(True)
    if mode == "reflect":
        y = F.conv2d(F.pad(x, (padding,) * 4, mode="reflect"), weight, bias, stride=stride)
    else:
        y = F.conv2d(x, weight, bias, stride=stride, padding=padding)
    grad_output = torch.randn(y.shape, generator=gen)
    (y * grad_output).sum().backward()
    name = f"conv2d_{mode}_k{k}_s{stride}_p{padding}_c{cin}to{cout}_{h}x{w}"
    tensors = {
        "input": x,
        "weight": weight,
        "bias": bias,
        "output": y,
        "grad_output": grad_output,
        "grad_input": x.grad,
        "grad_weight": weight.grad,
        "grad_bias": bias.grad,
    }
    return name, tensors, meta(op="conv2d", kernel=k, stride=stride, padding=padding, padding_mode=mode)


def loss_case(gen, loss, target, scale, shape):
    """`scale * loss(x, target)` and its gradient; target is a constant label or (L1) a second tensor."""
    x = (torch.randn(shape, generator=gen) * 2).requires_grad_(True)
    tensors = {}
    if loss == "l1":
        y = torch.randn(shape, generator=gen)
        tensors["target"] = y
        # Equal entries, so that sign(0) = 0 is tested too.
        with torch.no_grad():
            x[0, 0, 0, :3] = y[0, 0, 0, :3]
        value = F.l1_loss(x, y)
    elif loss == "mse":
        value = F.mse_loss(x, torch.full(shape, target))
    else:
        value = F.binary_cross_entropy_with_logits(x, torch.full(shape, target))
    (value * scale).backward()
    tensors.update({"input": x, "loss": value.reshape(1), "grad_input": x.grad})
    return f"loss_{loss}_t{target}_s{scale}", tensors, meta(op="loss", loss=loss, target=target, scale=scale)


def adam_case(gen, count, lr, betas, steps=3):
    """`steps` of torch.optim.Adam with its defaults on CPU (single-tensor path) on one parameter."""
    param = torch.randn(count, generator=gen).requires_grad_(True)
    tensors = {"param_0": param.detach().clone()}
    optimizer = torch.optim.Adam([param], lr=lr, betas=betas)
    for step in range(1, steps + 1):
        grad = torch.randn(count, generator=gen) * 10 ** (step - 2)
        param.grad = grad.clone()
        optimizer.step()
        tensors[f"grad_{step}"] = grad
        tensors[f"param_{step}"] = param.detach().clone()
    state = optimizer.state[param]
    tensors["exp_avg"] = state["exp_avg"]
    tensors["exp_avg_sq"] = state["exp_avg_sq"]
    name = f"adam_lr{lr}_b{betas[0]}_{betas[1]}"
    return name, tensors, meta(op="adam", lr=lr, beta1=betas[0], beta2=betas[1], steps=steps)


def cases(gen):
    # The generator: first 7x7 (3 channels in), residual 3x3 (Winograd from 32 channels), last 7x7 (3 out).
    yield conv2d_case(gen, 3, 8, 7, 1, 3, "reflect", 9, 7)
    yield conv2d_case(gen, 16, 3, 7, 1, 3, "reflect", 12, 10)
    yield conv2d_case(gen, 16, 3, 7, 1, 3, "zeros", 9, 8)
    yield conv2d_case(gen, 8, 8, 3, 1, 1, "reflect", 9, 7)
    yield conv2d_case(gen, 8, 8, 3, 1, 1, "reflect", 16, 16)
    yield conv2d_case(gen, 32, 32, 3, 1, 1, "reflect", 16, 16)
    yield conv2d_case(gen, 32, 32, 3, 1, 1, "reflect", 9, 7)
    yield conv2d_case(gen, 32, 40, 3, 1, 0, "zeros", 11, 10)
    # Downsampling and the discriminator.
    yield conv2d_case(gen, 16, 32, 3, 2, 1, "zeros", 16, 16)
    yield conv2d_case(gen, 16, 32, 3, 2, 1, "zeros", 13, 11)
    yield conv2d_case(gen, 3, 16, 4, 2, 1, "zeros", 16, 16)
    yield conv2d_case(gen, 8, 16, 4, 2, 1, "zeros", 11, 9)
    yield conv2d_case(gen, 16, 32, 4, 1, 1, "zeros", 8, 8)
    yield conv2d_case(gen, 32, 1, 4, 1, 1, "zeros", 9, 8)
    yield loss_case(gen, "mse", 1.0, 0.5, (1, 1, 30, 30))
    yield loss_case(gen, "mse", 0.0, 1.0, (1, 1, 7, 9))
    yield loss_case(gen, "bce", 1.0, 0.5, (1, 1, 30, 30))
    yield loss_case(gen, "bce", 0.0, 2.0, (1, 1, 7, 9))
    yield loss_case(gen, "l1", 0.0, 10.0, (1, 3, 16, 12))
    yield adam_case(gen, 1001, 0.0002, (0.5, 0.999))
    yield adam_case(gen, 1001, 0.001, (0.9, 0.999))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "Tests" / "Fixtures")
    args = parser.parse_args()
    torch.use_deterministic_algorithms(True)
    gen = torch.Generator().manual_seed(SEED)
    for name, tensors, metadata in cases(gen):
        save(args.out / "grads" / f"{name}.safetensors", tensors, metadata)
        print(f"grads/{name}.safetensors")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
