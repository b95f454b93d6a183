#!/usr/bin/env python3
"""Translate one image with PyTorch: the job `cyclegand translate` does, for the benchmark.

Loads the generator (.pth in either layout, or .safetensors with reference names),
reads the image with PIL as 8-bit RGB, runs the network on the whole image (padding
sides that are not multiples of 4 as cyclegand does), writes the result in the format
the output's extension names.

    python tools/torch_translate.py IN OUT --weights G.pth [--threads N]

Needs: torch numpy pillow
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reference_nets import load_generator, run_padded, to_8bit, to_model_input


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    net = load_generator(args.weights)
    rgb = np.asarray(Image.open(args.input).convert("RGB"), dtype=np.uint8)
    with torch.inference_mode():
        y = run_padded(net, to_model_input(rgb))
    Image.fromarray(to_8bit(y)).save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
