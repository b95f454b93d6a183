"""The reference networks in PyTorch, shared by the fixture and benchmark scripts.

ResnetGenerator and NLayerDiscriminator are the classes of pytorch-CycleGAN-and-pix2pix
(models/networks.py) with InstanceNorm, rewritten here; `affine=True, block_key="block"`
gives the layout of the vintagify wheel (the default model). Also here: our defined
padding for sizes the network cannot take as they are, and the reference 8-bit mapping.

Needs: torch numpy (safetensors for .safetensors weights)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


class ResnetBlock(nn.Module):
    """conv_block: pad, conv, norm, relu, pad, conv, norm (no dropout)."""

    def __init__(self, dim: int, affine: bool, key: str):
        super().__init__()
        self.key = key
        layers = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            nn.InstanceNorm2d(dim, affine=affine, track_running_stats=False),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, kernel_size=3, padding=0, bias=True),
            nn.InstanceNorm2d(dim, affine=affine, track_running_stats=False),
        )
        setattr(self, key, layers)

    def forward(self, x):
        return x + getattr(self, self.key)(x)


class ResnetGenerator(nn.Module):
    """The reference ResnetGenerator with InstanceNorm (so every conv has a bias).

    affine=False, block_key="conv_block": pytorch-CycleGAN-and-pix2pix layout.
    affine=True,  block_key="block":      the vintagify wheel's layout.
    """

    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9, affine=False, block_key="conv_block"):
        super().__init__()

        def norm(c):
            return nn.InstanceNorm2d(c, affine=affine, track_running_stats=False)

        model = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, kernel_size=7, padding=0, bias=True),
            norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, kernel_size=3, stride=2, padding=1, bias=True),
                norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        for _ in range(n_blocks):
            model += [ResnetBlock(ngf * 4, affine, block_key)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, kernel_size=3, stride=2, padding=1, output_padding=1, bias=True
                ),
                norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, kernel_size=7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """The reference PatchGAN discriminator with InstanceNorm(affine=False)."""

    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        kw, padw = 4, 1

        def norm(c):
            return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)

        sequence = [nn.Conv2d(input_nc, ndf, kernel_size=kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        nf_mult = 1
        for n in range(1, n_layers):
            nf_mult_prev, nf_mult = nf_mult, min(2**n, 8)
            sequence += [
                nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=2, padding=padw, bias=True),
                norm(ndf * nf_mult),
                nn.LeakyReLU(0.2, True),
            ]
        nf_mult_prev, nf_mult = nf_mult, min(2**n_layers, 8)
        sequence += [
            nn.Conv2d(ndf * nf_mult_prev, ndf * nf_mult, kernel_size=kw, stride=1, padding=padw, bias=True),
            norm(ndf * nf_mult),
            nn.LeakyReLU(0.2, True),
        ]
        sequence += [nn.Conv2d(ndf * nf_mult, 1, kernel_size=kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*sequence)

    def forward(self, x):
        return self.model(x)


def reference_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The vintagify keys `model.N.block.K.*` are `model.N.conv_block.K.*` in the reference."""
    return {k.replace(".block.", ".conv_block."): v for k, v in state.items()}


# ---------------------------------------------------------------------------
# Our defined behaviour for sizes the network cannot take as they are.
# ---------------------------------------------------------------------------


def reflect_index(i: int, n: int) -> int:
    """Reflection without repeating the edge, repeated as often as needed."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j = i % period
    return j if j < n else period - j


def padded_side(n: int) -> int:
    return max((n + 3) // 4 * 4, 8)


def run_padded(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pad bottom/right by repeated reflection to a multiple of 4 (at least 8), run, crop top-left."""
    h, w = x.shape[-2:]
    rows = [reflect_index(i, h) for i in range(padded_side(h))]
    cols = [reflect_index(i, w) for i in range(padded_side(w))]
    padded = x[:, :, rows, :][:, :, :, cols]
    return net(padded)[:, :, :h, :w]


def load_generator(path: Path) -> ResnetGenerator:
    """A ResnetGenerator from a .pth (either layout) or a .safetensors with reference names.

    ngf, block count, affine norms and the block key are read off the keys and shapes.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        # map_location: the vintagify checkpoint was saved from CUDA tensors.
        state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    block_key = "block" if any(".block." in k for k in state) else "conv_block"
    blocks = len({k.split(".")[1] for k in state if f".{block_key}." in k})
    top_level = [k for k in state if k.count(".") == 2 and k.endswith(".weight")]
    last_conv = max(top_level, key=lambda k: int(k.split(".")[1]))
    first = state["model.1.weight"]
    net = ResnetGenerator(
        input_nc=first.shape[1],
        output_nc=state[last_conv].shape[0],
        ngf=first.shape[0],
        n_blocks=blocks,
        affine="model.2.weight" in state,
        block_key=block_key,
    )
    net.load_state_dict(state)
    return net.eval()


# ---------------------------------------------------------------------------
# Pixels in and out, as the reference maps them.
# ---------------------------------------------------------------------------


def to_model_input(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> [1,3,H,W] float32 in [-1, 1]: x / 127.5 - 1."""
    x = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
    return x / 127.5 - 1


def to_8bit(y: torch.Tensor) -> np.ndarray:
    """[1,3,H,W] in [-1, 1] -> uint8 HxWx3: clamp(round((y + 1) * 127.5), 0, 255).

    Rounds half away from zero (floor(v + 0.5) on the non-negative values that
    matter), as Swift's `.rounded()` does.
    """
    v = ((y[0].permute(1, 2, 0).double() + 1) * 127.5).numpy()
    return np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)
