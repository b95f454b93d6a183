#!/usr/bin/env python3
"""Writes the fixtures of Tests/TrainingTests/DataTests.swift into Tests/Fixtures/training-data/.

The reference (pytorch-CycleGAN-and-pix2pix) prepares training images with PIL: BICUBIC
resizes (torchvision's Resize, __scale_width, __make_power_2) and convert("L") for grey.
This writes one photo-like test image and what PIL makes of it, so the tests can measure
how close libvips' bicubic comes. Needs numpy and Pillow; deterministic.
"""

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "training-data"


def photo() -> Image.Image:
    """300×200: smooth shading, a hard-edged disc, one-pixel lines and noise, like a photo's mix."""
    rng = np.random.default_rng(1)
    h, w = 200, 300
    y, x = np.mgrid[0:h, 0:w]
    r = 128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    g = 255 * (x / w)
    b = np.where((x - 150) ** 2 + (y - 100) ** 2 < 60**2, 230, 20).astype(float)
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    img[::16, :, :] = 255
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    source = photo()
    source.save(OUT / "photo.png")
    # resize_and_crop's resize (down in width, up in height), a plain shrink, an enlargement,
    # a strong shrink, and scale_width's 286 × 190.
    for w, h in [(286, 286), (256, 170), (600, 400), (36, 28), (286, 190)]:
        source.resize((w, h), Image.BICUBIC).save(OUT / f"pil-bicubic-{w}x{h}.png")
    source.convert("L").save(OUT / "pil-grey.png")


if __name__ == "__main__":
    main()
