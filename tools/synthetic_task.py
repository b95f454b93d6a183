#!/usr/bin/env python3
"""A synthetic unpaired translation task whose answer is known: swap red and blue.

    python tools/synthetic_task.py make DIR [--seed 1] [--train 400] [--test 100] [--size 32]
    python tools/synthetic_task.py score TRANSLATED --testA DIR/testA

`make` writes DIR/trainA, trainB, testA, testB of RGB PNGs, the same for the same seed.
Every channel is smooth noise (a small grid of N(0, 1), bicubically upsampled), shaped per
channel. Domain A: red is bright blobs on a flat ground (0.1 + 0.35·max(n, 0), 4×4 grid),
green smooth noise around 0 (0.3·n, 5×5), blue dark and nearly flat (−0.3 + 0.08·n, 6×6), in
[-1, 1] units. Domain B is drawn the same way with red and blue swapped. Each image is its own
draw (nothing pairs A with B), so the true A→B map is "swap R and B", and so is B→A.

Why this shape (each tried with the reference recipe, tools/torch_train.py, 500–1,000 iterations):
- with the same structure in every channel and only the means differing, "shift red down and
  blue up" gives exactly domain B's distribution, and the CycleGAN learns that (every output
  channel correlated 0.92 with the same input channel), not the swap;
- with one channel structured and the other flat but the structure symmetric (noise), "new
  blue = −old red" is as good as the swap, and it learnt that (correlation −0.78);
- blobs on a flat ground are not symmetric (negated, they are dark holes in a bright ground),
  and a flat channel cannot carry the red structure through the cycle, so the swap is the one
  answer left: it learns it (output blue correlated 0.81 with input red, green 0.95 with green).

`score` compares a folder of translated testA images (same file names, PNG) with the answer:
error = mean |G_A(x) − swapRB(x)| and identity baseline = mean |x − swapRB(x)|, both in
[-1, 1] units (8-bit value / 127.5), averaged over all pixels and channels of all images, and
prints {"error", "identity_baseline", "ratio", "flat_ratio", "images"} as JSON. A ratio of 0 is
the answer; 1 is as far from it as leaving the images unchanged. flat_ratio is what an output
with the right colour and no structure would score (each output its source's swapped mean
colour everywhere): 0.365 for seed 1's testA (0.383 for the constant mean colour of domain B,
0.696 for all zeros): a generator must beat it to have learnt structure, not only colour.

Needs: numpy pillow
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

# Domain A's channels (B has red and blue swapped): (base level in [-1, 1] units, amplitude,
# noise grid side, shape). Red: bright blobs on a flat ground; green: smooth noise, the same in
# both domains; blue: a dark, nearly flat channel.
CHANNELS_A = ((0.1, 0.35, 4, "blobs"), (0.0, 0.3, 5, "noise"), (-0.3, 0.08, 6, "noise"))
SPLITS = {"train": 0, "test": 1}
DOMAINS = {"A": 0, "B": 1}


def swap_rb(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 (any dtype): the same image with red and blue exchanged."""
    return rgb[..., ::-1].copy()


def smooth_field(rng: np.random.Generator, size: int, grid_side: int) -> np.ndarray:
    """size×size smooth normal noise: a grid_side² grid of N(0, 1), bicubically upsampled."""
    grid = rng.standard_normal((grid_side, grid_side)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.BICUBIC), dtype=np.float64)


def draw_image(rng: np.random.Generator, size: int, domain: str) -> np.ndarray:
    """One size×size×3 uint8 image of the domain."""
    channels = []
    for base, amplitude, grid_side, shape in CHANNELS_A:
        field = smooth_field(rng, size, grid_side)
        channels.append(base + amplitude * (np.maximum(field, 0) if shape == "blobs" else field))
    x = np.clip(np.stack(channels, axis=-1), -1, 1)
    rgb = np.clip(np.floor((x + 1) * 127.5 + 0.5), 0, 255).astype(np.uint8)
    return swap_rb(rgb) if domain == "B" else rgb


def make(root: Path, seed: int, train: int, test: int, size: int) -> None:
    for split, count in (("train", train), ("test", test)):
        for domain in DOMAINS:
            folder = root / f"{split}{domain}"
            folder.mkdir(parents=True, exist_ok=True)
            # One stream per folder: the folders do not depend on each other's counts.
            rng = np.random.default_rng([seed, SPLITS[split], DOMAINS[domain]])
            for i in range(count):
                Image.fromarray(draw_image(rng, size, domain)).save(folder / f"{i:04d}.png")


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 127.5 - 1


def score(translated: Path, test_a: Path) -> dict:
    """Error of the translations against swapRB of their sources, and the identity baseline."""
    sources = sorted(test_a.glob("*.png"))
    if not sources:
        raise SystemExit(f"no PNG images in {test_a}")
    error = baseline = flat = 0.0
    for source in sources:
        out_path = translated / source.name
        if not out_path.is_file():
            raise SystemExit(f"{out_path} is missing (every testA image needs a translation of the same name)")
        x, y = load_rgb(source), load_rgb(out_path)
        if x.shape != y.shape:
            raise SystemExit(f"{out_path} is {y.shape[1]}×{y.shape[0]}, its source {x.shape[1]}×{x.shape[0]}")
        target = swap_rb(x)
        error += np.abs(y - target).mean()
        baseline += np.abs(x - target).mean()
        flat += np.abs(target.mean(axis=(0, 1)) - target).mean()
    n = len(sources)
    return {"error": float(error / n), "identity_baseline": float(baseline / n), "ratio": float(error / baseline),
            "flat_ratio": float(flat / baseline), "images": n}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("make", help="write DIR/trainA, trainB, testA, testB")
    m.add_argument("dir", type=Path)
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--train", type=int, default=400, help="images per domain in trainA, trainB")
    m.add_argument("--test", type=int, default=100, help="images per domain in testA, testB")
    m.add_argument("--size", type=int, default=32)
    s = commands.add_parser("score", help="score translated testA images against swap(R, B)")
    s.add_argument("translated", type=Path)
    s.add_argument("--testA", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "make":
        make(args.dir, args.seed, args.train, args.test, args.size)
    else:
        print(json.dumps(score(args.translated, args.testA)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
