#!/usr/bin/env python3
"""Writes the checkpoint and safetensors fixtures that Tests/ModelsTests read.

Requirements: a venv with `pip install torch numpy safetensors` (tested with
torch 2.13, safetensors 0.8). Deterministic: run it again and the files
(except the zip timestamps torch does not write anyway) come out the same.

    python tools/make_checkpoint_fixtures.py [OUT_DIR]   # default Tests/Fixtures/checkpoints

The network classes below are copies of pytorch-CycleGAN-and-pix2pix's
ResnetGenerator / ResnetBlock / NLayerDiscriminator (BSD licence, Jun-Yan Zhu
and Taesung Park), trimmed to what the checkpoints depend on: the module
structure and therefore the state_dict names.
"""
import functools
import io
import json
import os
import sys
from collections import OrderedDict

import torch
import torch.nn as nn
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Tests", "Fixtures", "checkpoints")


# --- reference networks -----------------------------------------------------

class ResnetBlock(nn.Module):
    def __init__(self, dim, norm_layer, use_dropout, use_bias):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim)]
        self.conv_block = nn.Sequential(*block)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm_layer=nn.InstanceNorm2d, use_dropout=False, n_blocks=9):
        super().__init__()
        use_bias = True  # InstanceNorm: the reference passes use_bias = (norm_layer == InstanceNorm2d)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=use_bias), norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        for i in range(n_blocks):
            model += [ResnetBlock(ngf * mult, norm_layer, use_dropout, use_bias)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=use_bias),
                      norm_layer(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3, norm_layer=nn.InstanceNorm2d):
        super().__init__()
        use_bias = True
        kw, padw = 4, 1
        seq = [nn.Conv2d(input_nc, ndf, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=2, padding=padw, bias=use_bias),
                    norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kw, stride=1, padding=padw, bias=use_bias),
                norm_layer(ndf * mult), nn.LeakyReLU(0.2, True)]
        seq += [nn.Conv2d(ndf * mult, 1, kw, stride=1, padding=padw)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def plain_norm(c):
    return nn.InstanceNorm2d(c, affine=False, track_running_stats=False)


def affine_norm(c):
    return nn.InstanceNorm2d(c, affine=True)


def randomize(net, seed):
    """Non-trivial weights (affine norms too, so a mix-up of gamma and beta shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("bias") and p.dim() == 1:
                p.copy_(torch.rand(p.shape, generator=g) * 0.2 - 0.1)
            elif p.dim() == 1:
                p.copy_(1 + torch.rand(p.shape, generator=g) * 0.4 - 0.2)
            else:
                fan_in = p[0].numel()
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * (3.0 / fan_in) ** 0.5)
    return net


# --- safetensors interop -------------------------------------------------------

def arange(shape, scale=0.25, dtype=torch.float32):
    n = 1
    for d in shape:
        n *= d
    return (torch.arange(n, dtype=torch.float64) * scale - 1).reshape(shape).to(dtype)


def write_safetensors():
    # One metadata key: Python writes __metadata__ from a hash map, so only a
    # single key gives a byte order our writer can be compared with.
    tensors = {"model.1.weight": arange([2, 3, 1, 1]), "model.1.bias": arange([2]), "b": arange([3, 2], 0.5),
               "scalar": torch.tensor(3.5)}
    save_file(tensors, os.path.join(OUT, "python_written.safetensors"), metadata={"format": "pt"})
    save_file({"half": arange([5], dtype=torch.float16), "bf16": arange([4], dtype=torch.bfloat16),
               "double": arange([3], 0.1, torch.float64), "float": arange([2, 2])},
              os.path.join(OUT, "python_mixed_dtypes.safetensors"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    write_safetensors()


if __name__ == "__main__":
    main()
