#!/usr/bin/env python3
"""Writes the small image fixtures of Tests/ImagingTests into Tests/Fixtures/imaging/.

Needs numpy and Pillow (pip install numpy pillow). Deterministic: run it again
and the files are byte-identical (apart from encoder version changes).
Files the tests can make themselves with the `vips` CLI (WebP, TIFF, HEIF,
16-bit, ICC-tagged, CMYK with a profile) are made there instead.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "imaging"
W, H = 48, 32  # not square, so a wrong rotation changes the shape


def pattern(seed: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(H, W, channels), dtype=np.uint8)


def quadrants() -> np.ndarray:
    """Upright reference for orientation tests: four flat colours, one per quadrant."""
    img = np.zeros((H, W, 3), dtype=np.uint8)
    img[: H // 2, : W // 2] = (230, 30, 30)  # top left red
    img[: H // 2, W // 2 :] = (30, 230, 30)  # top right green
    img[H // 2 :, : W // 2] = (30, 30, 230)  # bottom left blue
    img[H // 2 :, W // 2 :] = (240, 240, 240)  # bottom right white
    return img


# Stored pixels for EXIF orientation k, so that applying k gives the upright image.
# The EXIF transform for k maps stored -> upright; we store its inverse.
def stored_for(k: int, upright: np.ndarray) -> np.ndarray:
    inverse = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, k=1),  # upright = stored rotated 90° clockwise
        7: lambda a: np.rot90(a, k=2).transpose(1, 0, 2),
        8: lambda a: np.rot90(a, k=-1),  # upright = stored rotated 90° anticlockwise
    }[k]
    return np.ascontiguousarray(inverse(upright))


def bomb_png(path: Path, width: int, height: int) -> None:
    """A valid PNG signature and IHDR claiming width×height, with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rgb = pattern(1, 3)
    Image.fromarray(rgb, "RGB").save(OUT / "rgb.png")
    Image.fromarray(pattern(2, 4), "RGBA").save(OUT / "rgba.png")
    Image.fromarray(pattern(3, 1)[:, :, 0], "L").save(OUT / "grey.png")
    Image.fromarray(pattern(4, 2), "LA").save(OUT / "grey-alpha.png")

    # Palette PNG with 16 colours and one transparent entry.
    indices = (pattern(5, 1)[:, :, 0] % 16).astype(np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette = pattern(6, 3)[0, :16].reshape(-1).tolist()
    palette_image.putpalette(palette)
    palette_image.save(OUT / "palette.png")
    palette_image.save(OUT / "palette-transparent.png", transparency=0)

    # Untagged CMYK JPEG: flat patches of known ink.
    cmyk = np.zeros((H, W, 4), dtype=np.uint8)
    cmyk[:, : W // 3] = (0, 0, 0, 0)  # paper white
    cmyk[:, W // 3 : 2 * W // 3] = (0, 0, 0, 255)  # full black ink
    cmyk[:, 2 * W // 3 :] = (255, 0, 0, 0)  # full cyan
    Image.fromarray(cmyk, "CMYK").save(OUT / "cmyk.jpg", quality=95)

    upright = quadrants()
    for k in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = k
        Image.fromarray(stored_for(k, upright), "RGB").save(OUT / f"orientation-{k}.jpg", quality=95, exif=exif)

    # EXIF (orientation 6, a camera make) and an XMP packet, to check both survive.
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cyclegand-test-camera"
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
        b' dc:source="cyclegand-test-xmp" tiff:Orientation="6"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    Image.fromarray(stored_for(6, upright), "RGB").save(OUT / "metadata.jpg", quality=95, exif=exif, xmp=xmp)

    # Two frames of different flat colours; only the first must be read.
    frames = [Image.new("RGB", (W, H), (200, 40, 40)), Image.new("RGB", (W, H), (40, 40, 200))]
    frames[0].save(OUT / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)

    bomb_png(OUT / "bomb.png", 100000, 100000)


if __name__ == "__main__":
    main()
