#!/usr/bin/env python3
"""Write the PyTorch reference fixtures that the Swift tests compare against.

PyTorch is the reference: every number in Tests/Fixtures/{kernels,generators,
discriminators,real} comes from this script with fixed seeds, so running it
again gives the same files (up to PyTorch's own run-to-run float noise).

Needs: torch numpy safetensors pillow   (pip install torch numpy safetensors pillow)

    python tools/make_fixtures.py                      # everything
    python tools/make_fixtures.py --only kernels,generators
    python tools/make_fixtures.py --weights weights/vintagify/G_A2B_epoch33.pth

The `real` fixture needs the real vintagify weights (`make model` fetches them);
without them it is skipped with a message unless `--only real` asks for it.
See tools/README.md for what each file holds.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from reference_nets import (
    load_generator,
    NLayerDiscriminator,
    ResnetGenerator,
    reference_names,
    run_padded,
    to_8bit,
    to_model_input,
)

REPO = Path(__file__).resolve().parent.parent
SEED = 20261122


def meta(**fields) -> dict[str, str]:
    """safetensors metadata must be str -> str."""
    out = {"generated_by": "tools/make_fixtures.py", "torch_version": torch.__version__}
    for key, value in fields.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (tuple, list)):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = str(value)
    return out


def save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()}
    save_file(contiguous, str(path), metadata=metadata)
    sort_metadata(path)


def sort_metadata(path: Path) -> None:
    """Rewrite the header with `__metadata__` in sorted order, same length.

    safetensors writes metadata in hash order, so each run would change every file's
    bytes; sorted, a rerun leaves unchanged fixtures unchanged in git.
    """
    with open(path, "r+b") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        text = json.dumps(header, separators=(",", ":")).encode()
        assert len(text) <= length, "re-encoded safetensors header grew"
        f.seek(8)
        f.write(text.ljust(length, b" "))


# ---------------------------------------------------------------------------
# Kernels: each case alone, forward and backward.
# ---------------------------------------------------------------------------


def kernel_case(name, op, fn, inputs, params, gen, **metadata):
    """Run `fn(input, *params)`, then autograd of sum(output * grad_output).

    `inputs` is the input tensor, `params` an ordered dict name -> tensor
    (weight, bias) that gets gradients too.
    """
    x = inputs.clone().requires_grad_(True)
    ps = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    y = fn(x, **ps)
    grad_output = torch.randn(y.shape, generator=gen)
    (y * grad_output).sum().backward()
    tensors = {"input": x, "output": y, "grad_output": grad_output, "grad_input": x.grad}
    for k, p in ps.items():
        tensors[k] = p
        tensors[f"grad_{k}"] = p.grad
    return name, tensors, meta(op=op, **metadata)


def conv2d_case(gen, cin, cout, k, stride, padding, h, w, tag):
    x = torch.randn(1, cin, h, w, generator=gen)
    bound = 1 / math.sqrt(cin * k * k)
    weight = (torch.rand(cout, cin, k, k, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(cout, generator=gen) * 2 - 1) * bound
    return kernel_case(
        f"conv2d_k{k}_s{stride}_p{padding}_c{cin}to{cout}_{h}x{w}{tag}",
        "conv2d",
        lambda x, weight, bias: F.conv2d(x, weight, bias, stride=stride, padding=padding),
        x,
        {"weight": weight, "bias": bias},
        gen,
        kernel=k,
        stride=stride,
        padding=padding,
    )


def conv_transpose2d_case(gen, cin, cout, k, stride, padding, output_padding, h, w, tag=""):
    x = torch.randn(1, cin, h, w, generator=gen)
    bound = 1 / math.sqrt(cout * k * k)
    # PyTorch's ConvTranspose2d weight is [in, out, kH, kW].
    weight = (torch.rand(cin, cout, k, k, generator=gen) * 2 - 1) * bound
    bias = (torch.rand(cout, generator=gen) * 2 - 1) * bound
    return kernel_case(
        f"conv_transpose2d_k{k}_s{stride}_p{padding}_op{output_padding}_c{cin}to{cout}_{h}x{w}{tag}",
        "conv_transpose2d",
        lambda x, weight, bias: F.conv_transpose2d(
            x, weight, bias, stride=stride, padding=padding, output_padding=output_padding
        ),
        x,
        {"weight": weight, "bias": bias},
        gen,
        kernel=k,
        stride=stride,
        padding=padding,
        output_padding=output_padding,
    )


def reflection_pad_case(gen, c, pad, h, w):
    x = torch.randn(1, c, h, w, generator=gen)
    return kernel_case(
        f"reflection_pad2d_p{pad}_{h}x{w}",
        "reflection_pad2d",
        lambda x: F.pad(x, (pad, pad, pad, pad), mode="reflect"),
        x,
        {},
        gen,
        pad=pad,
    )


def instance_norm_case(gen, shape, affine):
    eps = 1e-5
    # An offset and scale per channel, so the normalisation has work to do.
    x = torch.randn(*shape, generator=gen) * 3 + torch.randn(1, shape[1], 1, 1, generator=gen) * 2
    params = {}
    if affine:
        params["weight"] = torch.rand(shape[1], generator=gen) + 0.5
        params["bias"] = torch.randn(shape[1], generator=gen) * 0.5

    def fn(x, weight=None, bias=None):
        # F.instance_norm: biased variance, no running stats (use_input_stats).
        return F.instance_norm(x, weight=weight, bias=bias, eps=eps)

    tag = "affine" if affine else "plain"
    return kernel_case(
        f"instance_norm_{tag}_{shape[1]}x{shape[2]}x{shape[3]}",
        "instance_norm",
        fn,
        x,
        params,
        gen,
        affine=affine,
        eps=eps,
    )


def activation_case(gen, op, fn, **metadata):
    x = torch.randn(1, 4, 5, 6, generator=gen) * 2
    return kernel_case(op, op, fn, x, {}, gen, **metadata)


def kernel_cases(gen):
    yield conv2d_case(gen, 3, 8, 7, 1, 0, 13, 11, "")
    yield conv2d_case(gen, 8, 16, 3, 2, 1, 16, 16, "_even")
    yield conv2d_case(gen, 8, 16, 3, 2, 1, 15, 9, "_odd")
    yield conv2d_case(gen, 8, 8, 3, 1, 0, 10, 12, "")
    yield conv2d_case(gen, 16, 16, 3, 1, 0, 9, 7, "")
    yield conv2d_case(gen, 3, 8, 4, 2, 1, 17, 14, "")
    yield conv2d_case(gen, 8, 16, 4, 1, 1, 9, 8, "")
    yield conv2d_case(gen, 8, 3, 7, 1, 0, 20, 18, "")
    yield conv_transpose2d_case(gen, 16, 8, 3, 2, 1, 1, 8, 8, "_even")
    yield conv_transpose2d_case(gen, 16, 8, 3, 2, 1, 1, 5, 7, "_odd")
    yield conv_transpose2d_case(gen, 8, 4, 4, 2, 1, 0, 6, 5)
    yield conv_transpose2d_case(gen, 8, 4, 3, 1, 1, 0, 7, 6)
    yield conv_transpose2d_case(gen, 8, 4, 5, 3, 2, 1, 4, 5)
    yield reflection_pad_case(gen, 4, 3, 8, 8)
    yield reflection_pad_case(gen, 4, 3, 7, 5)
    yield reflection_pad_case(gen, 4, 1, 2, 3)
    yield instance_norm_case(gen, (1, 8, 9, 7), affine=False)
    yield instance_norm_case(gen, (1, 8, 9, 7), affine=True)
    yield activation_case(gen, "relu", lambda x: F.relu(x))
    yield activation_case(gen, "leaky_relu", lambda x: F.leaky_relu(x, 0.2), slope=0.2)
    yield activation_case(gen, "tanh", lambda x: torch.tanh(x))


def write_kernels(out: Path) -> None:
    gen = torch.Generator().manual_seed(SEED)
    folder = out / "kernels"
    for name, tensors, metadata in kernel_cases(gen):
        save(folder / f"{name}.safetensors", tensors, metadata)
        print(f"kernels/{name}.safetensors  output {tuple(tensors['output'].shape)}")


def randomise_norms(net: nn.Module, gen: torch.Generator) -> None:
    """Affine norms start at weight 1, bias 0; give them values that matter."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d) and module.affine:
                module.weight.copy_(torch.rand(module.weight.shape, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.3)


class CentredInstanceNorm(nn.Module):
    """InstanceNorm2d as (x - mean) / sqrt(var + eps): a constant map gives exactly 0."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        self.norm = norm

    def forward(self, x):
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        y = centred / torch.sqrt((centred * centred).mean(dim=(2, 3), keepdim=True) + self.norm.eps)
        if self.norm.affine:
            y = y * self.norm.weight.view(1, -1, 1, 1) + self.norm.bias.view(1, -1, 1, 1)
        return y


def exact_norms(net: nn.Module) -> nn.Module:
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.InstanceNorm2d):
                setattr(module, name, CentredInstanceNorm(child))
    return net


GENERATOR_SIZES = [(32, 32), (37, 29), (1, 1), (5, 3), (2, 23), (64, 7)]
LAYOUTS = {
    "reference": dict(affine=False, block_key="conv_block"),
    "vintagify": dict(affine=True, block_key="block"),
}


def write_generators(out: Path) -> None:
    folder = out / "generators"
    folder.mkdir(parents=True, exist_ok=True)
    for index, (layout, options) in enumerate(LAYOUTS.items()):
        torch.manual_seed(SEED + 100 + index)
        gen = torch.Generator().manual_seed(SEED + 200 + index)
        net = ResnetGenerator(3, 3, ngf=8, n_blocks=2, **options).eval()
        randomise_norms(net, gen)
        state = net.state_dict()
        torch.save(state, folder / f"{layout}_generator.pth")
        weights_meta = meta(
            layout=layout, kind="resnet_generator", ngf=8, blocks=2, affine=options["affine"], key_names="reference"
        )
        save(folder / f"{layout}_generator.safetensors", reference_names(state), weights_meta)
        print(f"generators/{layout}_generator.{{pth,safetensors}}  {len(state)} tensors")

        # The expected outputs come from the same network in float64 with the instance
        # norm written as (x - mean) / sqrt(var + eps). For ordinary inputs that is
        # PyTorch's float32 result within ~1e-6 (checked below). For a constant image
        # (1x1, padded to 8x8) every norm without affine sees a constant map, whose exact
        # result is 0; PyTorch computes x * rstd - mean * rstd, leaves ~1e-7 of rounding,
        # and each following norm multiplies that by 1/sqrt(eps) ~ 316, so its output
        # there (in float32 and float64 alike) is amplified rounding noise. Here the
        # centred form gives exact zeros and the output is the true one.
        net64 = exact_norms(copy.deepcopy(net).double())
        with torch.inference_mode():
            for h, w in GENERATOR_SIZES:
                x = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
                y = run_padded(net64, x.double()).float()
                tensors = {"input": x, "output": y}
                extra = {}
                if (h, w) == (37, 29):
                    # Plain PyTorch on the top-left 36x28 crop: no padding of ours involved.
                    raw_input = x[:, :, :36, :28]
                    tensors["raw_input"] = raw_input
                    tensors["raw_output"] = net64(raw_input.double()).float()
                    extra = dict(raw="raw_output = network(raw_input), raw_input = input[:, :, :36, :28], no padding")
                name = f"{layout}_{h}x{w}"
                metadata = meta(layout=layout, height=h, width=w, precision="float64, stored as float32", **extra)
                save(folder / f"{name}.safetensors", tensors, metadata)
                gap = (run_padded(net, x) - y).abs().max().item()
                constant = h == 1 and w == 1
                print(f"generators/{name}.safetensors  output {tuple(y.shape)}  |PyTorch float32 - this| {gap:.1e}")
                if not constant and gap > 1e-5:
                    raise SystemExit(f"{name}: float64 reference is {gap} away from PyTorch float32")


DISCRIMINATOR_SIZES = {1: [(70, 70), (45, 37)], 3: [(70, 70), (45, 37)], 5: [(136, 104), (101, 130)]}


def write_discriminators(out: Path) -> None:
    folder = out / "discriminators"
    folder.mkdir(parents=True, exist_ok=True)
    for n_layers, sizes in DISCRIMINATOR_SIZES.items():
        torch.manual_seed(SEED + 300 + n_layers)
        gen = torch.Generator().manual_seed(SEED + 400 + n_layers)
        net = NLayerDiscriminator(3, ndf=8, n_layers=n_layers).eval()
        state = net.state_dict()
        base = f"nlayer{n_layers}"
        torch.save(state, folder / f"{base}_discriminator.pth")
        save(
            folder / f"{base}_discriminator.safetensors",
            state,
            meta(kind="nlayer_discriminator", ndf=8, layers=n_layers, affine=False, key_names="reference"),
        )
        with torch.inference_mode():
            for h, w in sizes:
                x = torch.rand(1, 3, h, w, generator=gen) * 2 - 1
                y = net(x)
                name = f"{base}_{h}x{w}"
                save(
                    folder / f"{name}.safetensors", {"input": x, "output": y}, meta(layers=n_layers, height=h, width=w)
                )
                print(f"discriminators/{name}.safetensors  output {tuple(y.shape)}")


# ---------------------------------------------------------------------------
# The real model on a real photo, 8-bit in and out as the reference maps them.
# ---------------------------------------------------------------------------


def write_real(out: Path, weights: Path, photo: Path) -> None:
    from PIL import Image

    net = load_generator(weights)

    # Centre crop to 4:3, then 320x240: both sides divisible by 4, so no padding is involved.
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    crop_w, crop_h = min(width, height * 4 // 3), min(height, width * 3 // 4)
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    image = image.crop((left, top, left + crop_w, top + crop_h)).resize((320, 240), Image.LANCZOS)
    rgb = np.asarray(image, dtype=np.uint8)

    with torch.inference_mode():
        y = net(to_model_input(rgb))
    folder = out / "real"
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{photo.stem}_320x240"
    Image.fromarray(rgb).save(folder / f"{stem}.png")
    Image.fromarray(to_8bit(y)).save(folder / f"{stem}_vintagify.png")
    save(
        folder / f"{stem}_vintagify.safetensors",
        {"output": y},
        meta(
            model="vintagify 0.1.2 G_A2B_epoch33.pth",
            input=f"{stem}.png",
            mapping="in x/127.5-1; output float32 in [-1,1]",
        ),
    )
    print(f"real/{stem}.png -> real/{stem}_vintagify.png (+ float output .safetensors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "Tests" / "Fixtures")
    parser.add_argument("--only", default="kernels,generators,discriminators,real", help="comma-separated sections")
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "vintagify" / "G_A2B_epoch33.pth")
    parser.add_argument("--photo", type=Path, default=REPO / "examples" / "images" / "chelsea.png")
    args = parser.parse_args()
    sections = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = sections - {"kernels", "generators", "discriminators", "real"}
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")

    torch.use_deterministic_algorithms(True)
    if "kernels" in sections:
        write_kernels(args.out)
    if "generators" in sections:
        write_generators(args.out)
    if "discriminators" in sections:
        write_discriminators(args.out)
    if "real" in sections:
        if args.weights.is_file():
            write_real(args.out, args.weights, args.photo)
        elif sections == {"real"}:
            print(f"error: {args.weights} not found; run `make model` or pass --weights PATH", file=sys.stderr)
            return 1
        else:
            print(f"skipping real: {args.weights} not found (run `make model` or pass --weights PATH)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
