#!/usr/bin/env python3
"""Checks that PyTorch reads what `cyclegand export` wrote.

Requirements: torch numpy safetensors (pip install torch numpy safetensors).

    python tools/check_export.py EXPORT_DIR SOURCE [SOURCE ...]

EXPORT_DIR holds latest_net_<ROLE>.pth and/or .safetensors from
`cyclegand export NAME EXPORT_DIR [--format safetensors]`. Each SOURCE is a
checkpoint the model was imported from: a reference folder (latest_net_*.pth)
or a single generator file, which counts as G_A. For every exported file this
loads it the way users will (`torch.load(path, weights_only=True)`, or
`safetensors.torch.load_file`), loads it with strict=True into the reference
network class built for its shapes, and checks that its tensors and the
network's output on a random image equal the source's exactly.
Exit status 0 when everything matches.
"""
import os
import re
import sys

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_checkpoint_fixtures import NLayerDiscriminator, ResnetGenerator, affine_norm, plain_norm  # noqa: E402


def reference_names(sd):
    """The names cyclegand stores: no module. prefix, conv_block, no norm running stats."""
    out = {}
    for k, v in sd.items():
        k = k[len("module."):] if k.startswith("module.") else k
        if k.endswith((".running_mean", ".running_var", ".num_batches_tracked")):
            continue
        out[re.sub(r"^(model\.\d+)\.block\.", r"\1.conv_block.", k)] = v
    return out


def build(sd):
    if "model.1.weight" in sd:
        ngf = sd["model.1.weight"].shape[0]
        blocks = len({k.split(".")[1] for k in sd if ".conv_block." in k})
        dropout = any(k.endswith("conv_block.6.weight") and sd[k].dim() == 4 for k in sd)
        norm = affine_norm if "model.2.weight" in sd else plain_norm
        return ResnetGenerator(input_nc=sd["model.1.weight"].shape[1], output_nc=sd[max(
            (k for k in sd if k.endswith(".weight") and sd[k].dim() == 4), key=lambda k: int(k.split(".")[1]))].shape[0],
            ngf=ngf, n_blocks=blocks, use_dropout=dropout, norm_layer=norm)
    convs = [k for k in sd if re.fullmatch(r"model\.\d+\.weight", k) and sd[k].dim() == 4]
    norm = affine_norm if "model.3.weight" in sd else plain_norm
    return NLayerDiscriminator(input_nc=sd["model.0.weight"].shape[1], ndf=sd["model.0.weight"].shape[0],
                               n_layers=len(convs) - 2, norm_layer=norm)


def sources(args):
    out = {}
    for path in args:
        if os.path.isdir(path):
            for f in os.listdir(path):
                m = re.fullmatch(r"latest_net_(G_A|G_B|D_A|D_B)\.pth", f)
                if m:
                    out[m.group(1)] = os.path.join(path, f)
        else:
            out["G_A"] = path
    return out


def main():
    export_dir, originals = sys.argv[1], sources(sys.argv[2:])
    failures = checked = 0
    for f in sorted(os.listdir(export_dir)):
        m = re.fullmatch(r"latest_net_(G_A|G_B|D_A|D_B)\.(pth|safetensors)", f)
        if not m:
            continue
        role, fmt = m.groups()
        path = os.path.join(export_dir, f)
        ours = torch.load(path, weights_only=True, map_location="cpu") if fmt == "pth" else load_file(path)
        source = reference_names(torch.load(originals[role], weights_only=True, map_location="cpu"))
        net_ours, net_source = build(ours).eval(), build(source).eval()
        net_ours.load_state_dict(ours, strict=True)
        # The source may be in the dropout layout too; the reference class built for it takes it as is.
        net_source.load_state_dict(source, strict=True)
        same = ours.keys() == source.keys() and all(torch.equal(ours[k], source[k]) for k in ours)
        side = 32 if role.startswith("D") else 24
        x = torch.rand((1, 3, side, side), generator=torch.Generator().manual_seed(0)) * 2 - 1
        with torch.no_grad():
            diff = (net_ours(x) - net_source(x)).abs().max().item()
        ok = same and diff == 0
        checked += 1
        failures += not ok
        print("%s %s: %d tensors %s, output max |diff| %g" % ("ok  " if ok else "FAIL", f, len(ours),
                                                             "identical" if same else "DIFFER", diff))
    if checked == 0:
        print("no latest_net_*.pth / .safetensors in %s" % export_dir)
        sys.exit(2)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
