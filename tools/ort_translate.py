#!/usr/bin/env python3
"""Translate one image with ONNX Runtime: the job `cyclegand translate` does, for the benchmark.

Reads the image with PIL as 8-bit RGB, pads bottom and right by repeated reflection to a
multiple of 4 (at least 8) as cyclegand does, runs the exported generator (bench.py exports
it with torch.onnx) on the whole image, crops, and writes the result in the format the
output's extension names. Imports neither torch nor reference_nets, so that the process's
peak memory is ONNX Runtime's own.

    python tools/ort_translate.py IN OUT --model generator.onnx [--threads N]

Needs: onnxruntime numpy pillow
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def padded_indices(n: int) -> np.ndarray:
    """Indices of a side padded to a multiple of 4 (at least 8), reflecting repeatedly."""
    size = max(8, (n + 3) // 4 * 4)
    if n == 1:
        return np.zeros(size, dtype=np.int64)
    period = 2 * (n - 1)
    i = np.arange(size) % period
    return np.where(i < n, i, period - i)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--model", type=Path, required=True, help="the generator exported to ONNX")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])

    rgb = np.asarray(Image.open(args.input).convert("RGB"), dtype=np.uint8)
    h, w, _ = rgb.shape
    x = rgb.astype(np.float32).transpose(2, 0, 1)[None] / 127.5 - 1
    x = np.ascontiguousarray(x[:, :, padded_indices(h)][:, :, :, padded_indices(w)])
    y = session.run(None, {"input": x})[0][0, :, :h, :w]
    v = (y.transpose(1, 2, 0).astype(np.float64) + 1) * 127.5
    Image.fromarray(np.clip(np.floor(v + 0.5), 0, 255).astype(np.uint8)).save(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
