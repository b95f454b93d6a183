#!/usr/bin/env python3
"""Writes the training parity fixtures in Tests/Fixtures/training/.

A few iterations of the reference CycleGAN step (`CycleGAN.optimize_parameters` in
tools/torch_train.py, pytorch-CycleGAN-and-pix2pix's cycle_gan_model semantics) from a
checkpoint set written as the reference's `save_networks` writes one, so that `cyclegand train`
can start from the same weights, take the same steps and be compared loss by loss and
parameter by parameter. See tools/README.md for the files and what the Swift test leaves out.

    python tools/make_training_fixtures.py [OUT_DIR]   # default Tests/Fixtures/training

Deterministic: one thread, deterministic algorithms, fixed seeds.

Needs: torch numpy safetensors
"""

from __future__ import annotations

import copy
import json
import random
import sys
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

from make_fixtures import sort_metadata
from torch_train import LOSS_NAMES, CycleGAN, Options, define_D, define_G, init_weights

REPO = Path(__file__).resolve().parent.parent
OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "Tests" / "Fixtures" / "training"
SEED = 20261201
ROLES = ["G_A", "G_B", "D_A", "D_B"]

OPTIONS = Options(netG="resnet_6blocks", ngf=8, netD="basic", n_layers_D=3, ndf=8, norm="instance",
                  gan_mode="lsgan", pool_size=0, no_flip=True, preprocess="none")
# fixture name -> (gan_mode, iterations, G_A with affine norms, checkpoint folder, networks stored)
# The affine fixture stores only G_A's parameters (its point is the norms' weights and biases;
# its losses still depend on all four networks), to keep the folder small.
FIXTURES = {
    "parity": ("lsgan", 3, False, "parity_set", ROLES),
    "parity_vanilla": ("vanilla", 2, False, "parity_set", ROLES),
    "parity_affine": ("lsgan", 2, True, "parity_affine_set", ["G_A"]),
}


def meta(**fields) -> dict[str, str]:
    out = {"generated_by": "tools/make_training_fixtures.py", "torch_version": torch.__version__}
    out.update({k: str(v) for k, v in fields.items()})
    return out


def write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_file({k: v.detach().to(torch.float32).contiguous().clone() for k, v in tensors.items()}, str(path),
              metadata=metadata)
    sort_metadata(path)


def perturbed_biases(net: nn.Module, g: torch.Generator) -> nn.Module:
    """After the reference init (conv biases 0): every conv bias moved by a small random amount,
    so that none is trivially 0 (those before a norm too)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and m.bias is not None:
                m.bias.add_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * 0.05)
    return net


def reference_nets() -> dict[str, nn.Module]:
    """G_A, G_B, D_A, D_B initialised as the reference's init_net does (in that order), perturbed."""
    torch.manual_seed(SEED)
    nets = {"G_A": define_G(OPTIONS), "G_B": define_G(OPTIONS), "D_A": define_D(OPTIONS), "D_B": define_D(OPTIONS)}
    for net in nets.values():
        init_weights(net, OPTIONS.init_gain)
    g = torch.Generator().manual_seed(SEED + 1)
    return {role: perturbed_biases(net, g) for role, net in nets.items()}


def with_affine_norms(plain: nn.Module) -> nn.Module:
    """The same generator with affine instance norms (the vintagify wheel's kind): convs copied
    from `plain`, norm weights and biases drawn near 1 and 0 (not the init's exact 1 and 0)."""
    net = define_G(OPTIONS, affine=True)
    missing, unexpected = net.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.rsplit(".", 1)[-1] in ("weight", "bias") for k in missing)
    g = torch.Generator().manual_seed(SEED + 2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.InstanceNorm2d):
                m.weight.copy_(1 + (torch.rand(m.weight.shape, generator=g) * 2 - 1) * 0.1)
                m.bias.copy_((torch.rand(m.bias.shape, generator=g) * 2 - 1) * 0.1)
    return net


def smooth_images(count: int, g: torch.Generator) -> list[torch.Tensor]:
    """[1, 3, 32, 32] smooth random fields in (-1, 1): 8×8 noise, bicubic up, tanh."""
    out = []
    for _ in range(count):
        low = torch.randn(1, 3, 8, 8, generator=g)
        out.append(torch.tanh(1.2 * F.interpolate(low, size=(32, 32), mode="bicubic", align_corners=False)))
    return out


def biases_before_norms(net: nn.Module) -> list[str]:
    """Names of conv biases whose next layer is an instance norm: the norm subtracts the
    channel mean, so their gradient is 0 in exact arithmetic (affine norm or not)."""
    names = []
    for prefix, m in net.named_modules():
        if isinstance(m, nn.Sequential):
            children = list(m.named_children())
            for (name, layer), (_, after) in zip(children, children[1:]):
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(after, nn.InstanceNorm2d):
                    names.append(f"{prefix}.{name}.bias" if prefix else f"{name}.bias")
    return names


def run(nets: dict[str, nn.Module], opt: Options, pairs, dtype=torch.float32):
    """`len(pairs)` reference iterations on copies of `nets`: (losses, nets after, debugging
    tensors of the first iteration: its visuals and the gradients G_A and D_A stepped with)."""
    nets = {role: copy.deepcopy(net).to(dtype).train() for role, net in nets.items()}
    model = CycleGAN(opt, *(nets[r] for r in ROLES), pool_rng=random.Random(0))
    first = {}
    # Each parameter takes part in one backward per iteration (G_A's in the G step, D_A's in
    # the D step), so the gradient a hook sees is the one its Adam step uses.
    hooks = [p.register_hook(lambda g, key=f"grad.{role}.{name}.0": first.__setitem__(key, g.detach().clone()))
             for role in ("G_A", "D_A") for name, p in nets[role].named_parameters()]
    losses = []
    for i, (a, b) in enumerate(pairs):
        step = model.optimize_parameters(a.to(dtype), b.to(dtype))
        losses.append([step[name] for name in LOSS_NAMES])
        if i == 0:
            for hook in hooks:
                hook.remove()
            first.update({f"{name}.0": getattr(model, name).detach().clone()
                          for name in ("fake_B", "rec_A", "fake_A", "rec_B", "idt_A", "idt_B")})
    return torch.tensor(losses, dtype=torch.float64), nets, first


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    OUT.mkdir(parents=True, exist_ok=True)

    nets = reference_nets()
    affine_G_A = with_affine_norms(nets["G_A"])
    sets = {"parity_set": nets, "parity_affine_set": {**nets, "G_A": affine_G_A}}
    for folder, members in sets.items():
        (OUT / folder).mkdir(exist_ok=True)
        for role, net in members.items():
            path = OUT / folder / f"latest_net_{role}.pth"
            torch.save(net.state_dict(), path)
            saved = torch.load(path, weights_only=True)
            assert saved.keys() == net.state_dict().keys()
            assert all(torch.equal(saved[k], v) for k, v in net.state_dict().items())

    g = torch.Generator().manual_seed(SEED + 3)
    pairs = [(a, b) for a, b in zip(smooth_images(3, g), smooth_images(3, g))]
    write(OUT / "parity_inputs.safetensors",
          {f"{side}.{i}": x for i, pair in enumerate(pairs) for side, x in zip(("real_A", "real_B"), pair)},
          meta(shape="1,3,32,32", range="-1,1", pairs=len(pairs)))

    excluded = {role: biases_before_norms(net) for role, net in nets.items()}
    report = {}
    for name, (gan_mode, iterations, affine, folder, stored) in FIXTURES.items():
        opt = replace(OPTIONS, gan_mode=gan_mode)
        start = sets[folder]
        losses, after, first = run(start, opt, pairs[:iterations])
        tensors = {"losses": losses.float()}
        for role in stored:
            tensors.update({f"{role}.{k}": v for k, v in after[role].state_dict().items()})
        # The same steps in float64: the exact answer, where float32 PyTorch's own rounding flips an
        # Adam step (a gradient that is mostly cancellation), so the Swift test can tell rounding from error.
        _, exact, _ = run(start, opt, pairs[:iterations], torch.float64)
        for role in stored:
            tensors.update({f"exact.{role}.{k}": v.float() for k, v in exact[role].state_dict().items()})
        tensors.update({k: v for k, v in first.items() if name == "parity" or not k.startswith("grad.")})
        write(OUT / f"{name}_expected.safetensors", tensors,
              meta(gan_mode=gan_mode, iterations=iterations, checkpoint_set=folder,
                   losses_order=",".join(LOSS_NAMES), G_A_affine=str(affine).lower(), networks=",".join(stored)))
        report[name] = float64_agreement(start, opt, pairs[:iterations], losses, after, excluded)

    options = {
        "reference": "pytorch-CycleGAN-and-pix2pix, --model cycle_gan (option names as there)",
        **{k: v for k, v in asdict(OPTIONS).items()
           if k not in ("lr_policy", "n_epochs", "n_epochs_decay", "epoch_count", "serial_batches")},
        "crop_size": 32, "load_size": 32, "continue_train": True, "epoch": "latest",
        "not_reference_options": {"adam_beta2": 0.999, "adam_eps": 1e-8, "weight_decay": 0,
                                  "zero_grad": "before each step", "threads": 1},
        "losses_order": LOSS_NAMES,
        "fixtures": {name: {"gan_mode": gm, "iterations": it, "checkpoint_set": folder,
                            "inputs": "parity_inputs.safetensors (real_A.i, real_B.i for i < iterations)",
                            "expected": f"{name}_expected.safetensors", "expected_networks": stored,
                            "G_A_norm": "instance, affine=True (not a reference option)" if aff else "instance"}
                     for name, (gm, it, aff, folder, stored) in FIXTURES.items()},
        "biases_before_instance_norm": excluded,
        "float32_vs_float64": report,
    }
    (OUT / "parity_options.json").write_text(json.dumps(options, indent=2) + "\n")

    print("biases directly before an instance norm (zero gradient in exact arithmetic):")
    for role, names in excluded.items():
        print(f"  {role}: {', '.join(names)}")
    print(json.dumps(report, indent=2))
    for path in sorted(OUT.rglob("*")):
        if path.is_file():
            print(f"{path.relative_to(OUT)}: {path.stat().st_size / 1024:.0f} KiB")


def float64_agreement(start, opt, pairs, losses32, after32, excluded) -> dict:
    """How far float32 PyTorch is from the same run in float64: what a Swift float32
    implementation can be expected to match, with and without the excluded biases."""
    losses64, after64, _ = run(start, opt, pairs, torch.float64)
    worst, worst_name, worst_excluded, above, total = 0.0, "", 0.0, 0, 0
    for role in ROLES:
        for k, v in after32[role].state_dict().items():
            d = (v.double() - after64[role].state_dict()[k]).abs()
            if k in excluded[role]:
                worst_excluded = max(worst_excluded, d.max().item())
                continue
            above, total = above + int((d > 1e-5).sum()), total + d.numel()
            if d.max().item() > worst:
                worst, worst_name = d.max().item(), f"{role}.{k}"
    return {"max_loss_rel_diff": ((losses32 - losses64).abs() / losses64.abs()).max().item(),
            "max_param_abs_diff": worst, "max_param_abs_diff_at": worst_name,
            "param_elements_off_by_more_than_1e-5": above, "param_elements": total,
            "max_param_abs_diff_excluded_biases": worst_excluded, "lr": opt.lr}


if __name__ == "__main__":
    main()
