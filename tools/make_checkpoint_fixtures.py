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
    def __init__(self, dim, norm_layer, use_dropout, use_bias, block_key="conv_block"):
        super().__init__()
        block = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim), nn.ReLU(True)]
        if use_dropout:
            block += [nn.Dropout(0.5)]
        block += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=use_bias), norm_layer(dim)]
        # The reference calls it conv_block; the vintagify wheel's copy calls it block.
        self.block_key = block_key
        setattr(self, block_key, nn.Sequential(*block))

    def forward(self, x):
        return x + getattr(self, self.block_key)(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, norm_layer=nn.InstanceNorm2d, use_dropout=False, n_blocks=9,
                 block_key="conv_block"):
        super().__init__()
        use_bias = True  # InstanceNorm: the reference passes use_bias = (norm_layer == InstanceNorm2d)
        model = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, bias=use_bias), norm_layer(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2 ** i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=use_bias),
                      norm_layer(ngf * mult * 2), nn.ReLU(True)]
        mult = 4
        for i in range(n_blocks):
            model += [ResnetBlock(ngf * mult, norm_layer, use_dropout, use_bias, block_key)]
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


# --- checkpoints ----------------------------------------------------------------

NGF, NDF, BLOCKS = 4, 4, 2


def generator(seed, **kw):
    kw.setdefault("norm_layer", plain_norm)
    return randomize(ResnetGenerator(ngf=NGF, n_blocks=BLOCKS, **kw), seed).eval()


def discriminator(seed, n_layers=3, norm_layer=plain_norm):
    return randomize(NLayerDiscriminator(ndf=NDF, n_layers=n_layers, norm_layer=norm_layer), seed).eval()


def image(seed, h, w):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 3, h, w), generator=g) * 2 - 1


def save_io(net, x, name):
    """The network's input and PyTorch's output, for parity tests of the loaded weights."""
    with torch.no_grad():
        y = net(x)
    save_file({"input": x.contiguous(), "output": y.contiguous()}, os.path.join(OUT, name + ".io.safetensors"),
              metadata={"generated_by": "tools/make_checkpoint_fixtures.py"})


def save(obj, name, legacy=False):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def with_norm_leftovers(net):
    """What InstanceNorm layers of PyTorch < 0.4 left in state dicts."""
    sd = OrderedDict()
    for k, v in net.state_dict().items():
        sd[k] = v
    for name, m in net.named_modules():
        if isinstance(m, nn.InstanceNorm2d):
            sd[name + ".running_mean"] = torch.zeros(m.num_features)
            sd[name + ".running_var"] = torch.ones(m.num_features)
            sd[name + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
    return sd


def with_views(net):
    """A state dict whose tensors are non-contiguous or offset views of shared storages."""
    sd = OrderedDict()
    for k, v in net.state_dict().items():
        if v.dim() == 4:
            sd[k] = v.transpose(0, 1).contiguous().transpose(0, 1)  # same values, strides permuted
        elif v.dim() == 1:
            big = torch.cat([torch.full((3,), 7.0), v, torch.full((2,), -7.0)])
            sd[k] = big[3:3 + v.numel()]  # storage offset 3 into a larger storage
        else:
            sd[k] = v
    return sd


def write_deflated(source, name, expected):
    """The same archive repacked with compression, which torch.load still reads."""
    import zipfile
    path = os.path.join(OUT, name)
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            out = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            out.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(out, src.read(info.filename))
    loaded = torch.load(path, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in expected.items())


def write_generators():
    x = image(1, 24, 24)
    plain = generator(10)
    save(plain.state_dict(), "gen_zip.pth")
    save(plain.state_dict(), "gen_legacy.pth", legacy=True)
    save(OrderedDict(("module." + k, v) for k, v in plain.state_dict().items()), "gen_module_prefix.pth")
    save(with_norm_leftovers(plain), "gen_norm_leftovers.pth", legacy=True)
    save({"epoch": 7, "state_dict": plain.state_dict(), "note": "wrapped"}, "gen_wrapped.pth")
    save(with_views(plain), "gen_views.pth")
    save(OrderedDict((k, v.half()) for k, v in plain.state_dict().items()), "gen_half.pth")
    write_deflated(os.path.join(OUT, "gen_zip.pth"), "gen_deflated.pth", plain.state_dict())
    save_io(plain, x, "gen_zip")

    dropout = generator(11, use_dropout=True)
    save(dropout.state_dict(), "gen_dropout.pth")
    save_io(dropout, x, "gen_dropout")

    vintagify = generator(12, norm_layer=affine_norm, block_key="block")
    save(vintagify.state_dict(), "gen_vintagify_layout.pth")
    save_io(vintagify, x, "gen_vintagify_layout")

    six = randomize(ResnetGenerator(ngf=8, n_blocks=6, norm_layer=plain_norm), 13).eval()
    save(six.state_dict(), "gen_ngf8_6blocks.pth")
    save_io(six, x, "gen_ngf8_6blocks")


def write_discriminators():
    sizes = {1: 16, 2: 24, 3: 32, 4: 64, 5: 128}
    for n, side in sizes.items():
        net = discriminator(20 + n, n_layers=n)
        save(net.state_dict(), "disc_n%d.pth" % n)
        save_io(net, image(2, side, side), "disc_n%d" % n)
    affine = discriminator(30, 3, norm_layer=affine_norm)
    save(affine.state_dict(), "disc_affine.pth", legacy=True)
    save_io(affine, image(2, 32, 32), "disc_affine")


def write_reference_set():
    """A training run's checkpoint folder: latest plus epoch 5 (different weights)."""
    x = image(3, 24, 24)
    d = image(4, 32, 32)
    for prefix, seed in (("latest", 40), ("5", 50)):
        nets = {"G_A": generator(seed + 1), "G_B": generator(seed + 2), "D_A": discriminator(seed + 3),
                "D_B": discriminator(seed + 4)}
        for role, net in nets.items():
            save(net.state_dict(), "reference_set/%s_net_%s.pth" % (prefix, role))
            if prefix == "latest":
                save_io(net, x if role.startswith("G") else d, "reference_set_%s" % role)


def write_broken():
    good = open(os.path.join(OUT, "gen_zip.pth"), "rb").read()
    with open(os.path.join(OUT, "truncated.pth"), "wb") as f:
        f.write(good[: len(good) * 2 // 3])
    flipped = bytearray(good)
    flipped[100] ^= 0xFF  # inside data.pkl: its CRC no longer matches
    with open(os.path.join(OUT, "corrupt_pickle.pth"), "wb") as f:
        f.write(flipped)
    g = torch.Generator().manual_seed(60)
    unknown = OrderedDict([("encoder.0.weight", torch.rand((8, 3, 3, 3), generator=g)),
                           ("encoder.0.bias", torch.rand((8,), generator=g)),
                           ("head.weight", torch.rand((10, 8), generator=g))])
    save(unknown, "unknown_layout.pth")

    # A pickle with an arbitrary global: what weights_only=True refuses too.
    torch.save({"object": torch.nn.ReLU()}, os.path.join(OUT, "not_a_state_dict.pth"))


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    write_safetensors()
    write_generators()
    write_discriminators()
    write_reference_set()
    write_broken()


if __name__ == "__main__":
    main()
