#!/usr/bin/env python3
"""cyclegand against PyTorch and ONNX Runtime on the same generator, in one run.

Sections (each a function in SECTIONS; `--only NAME[,NAME]` runs some of them):
  forward   generator forward at 256², 512², 1024² (configurable): cyclegand's own
            `bench` subcommand, PyTorch CPU and ONNX Runtime, same weights, same thread
            count; median and min of --repeat runs after one warm-up; GFLOP/s and ratios.
  process   whole-process wall time and peak RSS (/usr/bin/time -v) of
            `cyclegand translate` against tools/torch_translate.py on a 1024² photo.
  load      the default model from the native store (`cyclegand models --load`), 7 fresh processes.
  large     a 6000×4000 photo (streamed, default 1 GiB limit) against a 1024² one (whole):
            peak RSS and seconds per megapixel.
  daemon    50 photos of 256² dropped into a running daemon's inbox against 50 in-process
            forward passes.
  socket    control socket: ping round trip p50/p99 at idle, and a 256² translate through the
            daemon's socket against the in-process forward (`cyclegand bench`), with the ratio.
  train     one training iteration (resnet_9blocks, ngf 64, ndf 64, batch 1) at 256² and 128²:
            `cyclegand train` against tools/torch_train.py --time-only; sec/iter and peak RSS.
  finetune  a 256² fine-tune of the default model inside the daemon: socket translate p50 and a
            50-image burst against the idle daemon, and the job's sec/iter against `cyclegand train`.
  learn     the synthetic task of tools/synthetic_task.py (swap red and blue, 32²) learnt by
            `cyclegand train` and by tools/torch_train.py in --learn-iters iterations, both
            scored against the known answer.

Prints each table and writes them all as markdown to bench/out/results.md.
`make bench` runs it in .venv; by hand:

    python tools/bench.py --weights weights/vintagify/G_A2B_epoch33.pth [--threads 2] [--only forward]

Needs: torch numpy pillow onnx onnxruntime (tools/requirements.txt)

To add a section: write `def section_x(ctx: Context) -> Section`, add it to SECTIONS.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from reference_nets import load_generator

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(__file__).resolve().parent
# Multiply-adds of the 9-block ngf-64 generator at 256x256; it scales with the pixel count.
MACS_AT_256 = 49.55e9


@dataclass
class Context:
    binary: Path
    weights: Path
    threads: int
    repeat: int
    sizes: list[int]
    out: Path
    learn_iters: int = 1000


@dataclass
class Section:
    title: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    # Set when the section could measure only part of what it compares: its table is still
    # reported, and the run exits 1.
    failure: str | None = None

    def text(self) -> str:
        widths = [
            max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h) for i, h in enumerate(self.headers)
        ]
        lines = [self.title, "  ".join(h.rjust(w) for h, w in zip(self.headers, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in self.rows]
        return "\n".join(lines + self.notes)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.headers) + " |", "|" + " --- |" * len(self.headers)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)


def gflops(size: int, seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{2 * MACS_AT_256 * size * size / 65536 / seconds / 1e9:.1f}"


def fmt_seconds(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.3f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{a / b:.2f}×"


def timed(fn, repeat: int) -> tuple[float, float]:
    """One warm-up, then `repeat` runs: (median, min) seconds."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


# ---------------------------------------------------------------------------
# forward: the generator alone
# ---------------------------------------------------------------------------


def cyclegand_forward(ctx: Context, key: str = "seconds_median") -> tuple[dict[int, float], str | None]:
    """Seconds per size from `cyclegand bench --json` (the median of the repeats, or `key`), or a
    reason it is not available."""
    if not ctx.binary.is_file():
        return {}, f"{ctx.binary} not found (run `make build`)"
    command = [str(ctx.binary), "bench", "--weights", str(ctx.weights), "--sizes", ",".join(map(str, ctx.sizes))]
    command += ["--threads", str(ctx.threads), "--repeat", str(ctx.repeat), "--json"]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        return {}, f"`{' '.join(command[1:3])} ...` failed: {reason}"
    times = {}
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            times[int(record["size"])] = float(record[key])
    return times, None


def torch_forward(ctx: Context, net: torch.nn.Module) -> dict[int, float]:
    torch.set_num_threads(ctx.threads)
    times = {}
    with torch.inference_mode():
        for size in ctx.sizes:
            x = torch.rand(1, 3, size, size) * 2 - 1
            times[size], _ = timed(lambda: net(x), ctx.repeat)
            print(f"  torch {size}²: {times[size]:.3f} s", flush=True)
    return times


def export_onnx(ctx: Context, net: torch.nn.Module) -> Path:
    """The generator exported to ONNX with dynamic height and width (once per weights file)."""
    model = ctx.out / "generator.onnx"
    if not model.is_file() or model.stat().st_mtime < ctx.weights.stat().st_mtime:
        # One export with dynamic height and width; the legacy exporter needs no onnxscript.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, 64, 64),),
                str(model),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {2: "height", 3: "width"}, "output": {2: "height", 3: "width"}},
                opset_version=17,
                dynamo=False,
            )
    return model


def onnx_forward(ctx: Context, net: torch.nn.Module) -> dict[int, float]:
    import onnxruntime as ort

    model = export_onnx(ctx, net)
    options = ort.SessionOptions()
    options.intra_op_num_threads = ctx.threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    times = {}
    for size in ctx.sizes:
        x = (np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32) * 2 - 1).astype(np.float32)
        times[size], _ = timed(lambda: session.run(None, {"input": x}), ctx.repeat)
        print(f"  onnxruntime {size}²: {times[size]:.3f} s", flush=True)
    return times


def section_forward(ctx: Context) -> Section:
    net = load_generator(ctx.weights)
    print("forward: cyclegand", flush=True)
    ours, missing = cyclegand_forward(ctx)
    print("forward: PyTorch", flush=True)
    pt = torch_forward(ctx, net)
    print("forward: ONNX Runtime", flush=True)
    ox = onnx_forward(ctx, net)
    headers = ["size", "cyclegand s", "GFLOP/s", "PyTorch s", "GFLOP/s", "ONNX RT s", "GFLOP/s"]
    headers += ["PyTorch/cyclegand", "ONNX RT/cyclegand"]
    rows = []
    for size in ctx.sizes:
        c, p, o = ours.get(size), pt.get(size), ox.get(size)
        rows.append(
            [
                f"{size}²",
                fmt_seconds(c),
                gflops(size, c),
                fmt_seconds(p),
                gflops(size, p),
                fmt_seconds(o),
                gflops(size, o),
            ]
            + [ratio(p, c), ratio(o, c)]
        )
    notes = [
        f"median of {ctx.repeat} runs after one warm-up, {ctx.threads} threads; "
        f"GFLOP/s = 2 × {MACS_AT_256 / 1e9:.2f} G multiply-adds × (size/256)² / s; ratios > 1 mean cyclegand is faster"
    ]
    if missing:
        notes.append(f"cyclegand: not available ({missing})")
    return Section("Generator forward (vintagify, ngf 64, 9 blocks)", headers, rows, notes)


# ---------------------------------------------------------------------------
# process: a whole `translate` run, start to exit
# ---------------------------------------------------------------------------


def time_process(command: list[str]) -> tuple[float, float] | str:
    """(wall seconds, peak RSS MiB) from /usr/bin/time -v, or the reason it failed."""
    if not Path("/usr/bin/time").is_file():
        return "/usr/bin/time not found (apt install time)"
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("\t")]
        return (lines or [f"exit status {result.returncode}"])[0]
    return time_v_figures(result.stderr)


def time_v_figures(stderr: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) from the report `/usr/bin/time -v` writes to stderr."""
    wall = rss = 0.0
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith("Elapsed (wall clock) time"):
            clock = line.rsplit(" ", 1)[-1].split(":")
            wall = sum(float(part) * 60**i for i, part in enumerate(reversed(clock)))
        elif line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(" ", 1)[-1]) / 1024
    return wall, rss


def photo(ctx: Context, size: int) -> Path:
    """A real photo (examples/images/astronaut.jpg) resized to size², saved as PNG."""
    from PIL import Image

    path = ctx.out / f"photo_{size}.png"
    if not path.is_file():
        Image.open(REPO / "examples" / "images" / "astronaut.jpg").convert("RGB").resize(
            (size, size), Image.LANCZOS
        ).save(path)
    return path


def agreement(a: Path, b: Path) -> str:
    from PIL import Image

    x = np.asarray(Image.open(a).convert("RGB"), dtype=np.int16)
    y = np.asarray(Image.open(b).convert("RGB"), dtype=np.int16)
    if x.shape != y.shape:
        return f"outputs differ in size: {x.shape} vs {y.shape}"
    diff = np.abs(x - y)
    return f"{100 * np.mean(diff == 0):.2f} % of channel values equal to ours, max difference {diff.max()}"


def section_process(ctx: Context) -> Section:
    source = photo(ctx, 1024)
    ctx.weights.read_bytes()  # warm the page cache so neither side pays the first read
    ours_out, torch_out = ctx.out / "translate_cyclegand.png", ctx.out / "translate_torch.png"
    ort_out = ctx.out / "translate_ort.png"
    model = export_onnx(ctx, load_generator(ctx.weights))  # before the clock: not part of the job
    weights, threads = ["--weights", str(ctx.weights)], ["--threads", str(ctx.threads)]
    jobs = {
        "cyclegand translate": [str(ctx.binary), "translate", str(source), str(ours_out), *weights, *threads],
        "PyTorch (tools/torch_translate.py)": [
            sys.executable, str(TOOLS / "torch_translate.py"), str(source), str(torch_out), *weights, *threads],
        "ONNX Runtime (tools/ort_translate.py)": [
            sys.executable, str(TOOLS / "ort_translate.py"), str(source), str(ort_out), "--model", str(model),
            *threads],
    }
    rows, notes, results = [], [], {}
    for name, command in jobs.items():
        print(f"process: {name}", flush=True)
        results[name] = time_process(command)
    for name, result in results.items():
        if isinstance(result, str):
            rows.append([name, "n/a", "n/a"])
            notes.append(f"{name}: not available ({result})")
        else:
            rows.append([name, f"{result[0]:.2f}", f"{result[1]:.0f}"])
    ours = results["cyclegand translate"]
    for (name, result), out in zip(list(results.items())[1:], [torch_out, ort_out]):
        if isinstance(ours, str) or isinstance(result, str):
            continue
        peer = name.split(" (")[0]
        notes.append(f"{peer}/cyclegand: time {result[0] / ours[0]:.2f}×, peak RSS {result[1] / ours[1]:.2f}×; "
                     f"{agreement(ours_out, out)}")
    notes.insert(0, f"1024×1024 PNG from examples/images/astronaut.jpg, {ctx.threads} threads, one run each")
    return Section("Whole process: translate one 1024² image", ["program", "wall s", "peak RSS MiB"], rows, notes)


# ---------------------------------------------------------------------------
# socket: the control socket's overhead (added by the control-socket work)
# ---------------------------------------------------------------------------


def section_socket(ctx: Context) -> Section:
    """Ping round trips at idle, and a 256² translate through the socket against the forward
    pass alone (`cyclegand bench`), on a daemon started here with the same weights."""
    import shutil
    import tempfile

    sys.path.insert(0, str(REPO / "plugins" / "gimp" / "cyclegand"))
    import cyclegand_client

    title = "Control socket: ping and a 256² translate through the daemon"
    headers = ["measure", "p50 ms", "p99 ms", "ratio"]
    if not ctx.binary.is_file():
        return Section(title, headers, [], [f"{ctx.binary} not found (run `make build`)"])
    work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
    daemon = None
    try:
        models, sock = work / "models", work / "cyclegand.sock"
        subprocess.run(
            [str(ctx.binary), "import", str(ctx.weights), "--name", "bench", "--domains", "modern,vintage",
             "--as", "G_A", "--models-dir", str(models)], check=True, capture_output=True)
        daemon = subprocess.Popen(
            [str(ctx.binary), "serve", "--root", str(work / "spool"), "--models-dir", str(models), "--socket", str(sock),
             "--threads", str(ctx.threads), "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not sock.exists():
            if time.time() > deadline or daemon.poll() is not None:
                return Section(title, headers, [], ["the daemon did not open its socket"])
            time.sleep(0.05)

        # The socket file can appear a moment before the daemon accepts on it.
        while True:
            try:
                client = cyclegand_client.Client(str(sock))
                break
            except ConnectionError:
                if time.time() > deadline or daemon.poll() is not None:
                    return Section(title, headers, [], ["the daemon did not accept connections on its socket"])
                time.sleep(0.05)
        for _ in range(200):
            client.ping()
        pings = []
        for _ in range(5000):
            start = time.perf_counter()
            client.ping()
            pings.append(time.perf_counter() - start)
        pings.sort()
        p50, p99 = pings[len(pings) // 2], pings[int(len(pings) * 0.99)]

        image = photo(ctx, 256).read_bytes()
        client.translate_bytes(image, "modern2vintage", name="photo.png")  # warm-up: loads the model
        # 15 runs each side: a 256² pass is short enough for a noisy second to move a median of 5.
        inline = []
        for _ in range(max(ctx.repeat, 15)):
            start = time.perf_counter()
            client.translate_bytes(image, "modern2vintage", name="photo.png")
            inline.append(time.perf_counter() - start)
        inline.sort()
        client.shutdown()
        daemon.wait(timeout=60)
        daemon = None

        forward, reason = cyclegand_forward(
            Context(ctx.binary, ctx.weights, ctx.threads, max(ctx.repeat, 15), [256], ctx.out))
        in_process = forward.get(256)
        socket_median = statistics.median(inline)
        rows = [
            ["ping round trip (Python client, idle)", f"{p50 * 1e3:.3f}", f"{p99 * 1e3:.3f}", ""],
            ["translate 256² PNG inline via socket", f"{socket_median * 1e3:.1f}", f"{inline[-1] * 1e3:.1f}",
             ratio(socket_median, in_process)],
            ["forward 256² in process (cyclegand bench)", f"{in_process * 1e3:.1f}" if in_process else "n/a",
             "", "1.00×" if in_process else "n/a"],
        ]
        notes = [
            f"5000 pings on one connection after 200 warm-up; translate: median and max of {len(inline)} after one warm-up",
            "the socket time includes PNG decode and encode and the daemon's scratch files; the ratio is socket / in-process forward",
        ]
        if reason:
            notes.append(f"in-process forward not available: {reason}")
        return Section(title, headers, rows, notes)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# load, large, daemon: model load time, a large photo in bounded memory, and the
# watch-folder daemon's throughput (issues 3, 4 and 5)
# ---------------------------------------------------------------------------


def import_default(ctx: Context, models: Path) -> None:
    subprocess.run(
        [str(ctx.binary), "import", str(ctx.weights), "--name", "modern2vintage", "--domains", "modern,vintage",
         "--models-dir", str(models)], check=True, capture_output=True)


def section_load(ctx: Context) -> Section:
    """`cyclegand models --load`: map the store's safetensors, check its sha256, build the
    generator (Winograd filters included), in a fresh process each time."""
    import re
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
    try:
        import_default(ctx, work / "models")
        store, total = [], []
        for _ in range(7):
            start = time.perf_counter()
            out = subprocess.run(
                [str(ctx.binary), "models", "--models-dir", str(work / "models"), "--load", "modern2vintage"],
                check=True, capture_output=True, text=True).stdout
            wall = time.perf_counter() - start
            m = re.search(r"checked in ([0-9.]+) s; generator ready in ([0-9.]+) s", out)
            if not m:
                raise RuntimeError(f"unexpected output of models --load: {out!r}")
            store.append(float(m.group(1)))
            total.append(float(m.group(2)))
        rows = [
            ["weights mapped and sha256-checked", f"{statistics.median(store):.3f}", f"{min(store):.3f}"],
            ["generator ready (load total)", f"{statistics.median(total):.3f}", f"{min(total):.3f}"],
        ]
        notes = ["default model (vintagify G_A2B, 45 MB) from the native store; 7 fresh processes; goal: under 0.2 s"]
        return Section("Model load: modern2vintage from the store", ["step", "median s", "min s"], rows, notes)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def translate_json(ctx: Context, source: Path, out: Path) -> tuple[dict, float, float]:
    """cyclegand translate --json under /usr/bin/time -v: (report, wall s, peak RSS MiB)."""
    result = subprocess.run(
        ["/usr/bin/time", "-v", str(ctx.binary), "translate", str(source), str(out), "--weights", str(ctx.weights),
         "--threads", str(ctx.threads), "--json"], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return (report, *time_v_figures(result.stderr))


def section_large(ctx: Context) -> Section:
    """A 6000×4000 photo through `cyclegand translate` with the default 1 GiB memory limit
    (streamed), against a 1024² one (whole image): peak RSS and seconds per megapixel."""
    large = ctx.out / "photo_6000x4000.jpg"
    if not large.is_file():
        subprocess.run(
            ["vips", "resize", str(REPO / "examples" / "images" / "astronaut.jpg"), str(large), str(6000 / 512),
             "--vscale", str(4000 / 512)], check=True)
    # The 1024² baseline runs before and twice after the large photo (median of 3), so that
    # a noisy minute on a shared machine does not decide the ratio.
    runs: dict[str, list[tuple[dict, float, float]]] = {"1024×1024 PNG": [], "6000×4000 JPEG": []}
    for name, source in [("1024×1024 PNG", photo(ctx, 1024)), ("6000×4000 JPEG", large),
                         ("1024×1024 PNG", photo(ctx, 1024)), ("1024×1024 PNG", photo(ctx, 1024))]:
        print(f"large: {name}", flush=True)
        runs[name].append(translate_json(ctx, source, ctx.out / f"large_{source.stem}{source.suffix}"))
    rows, per_mp = [], {}
    for name, results in runs.items():
        results.sort(key=lambda r: r[0]["seconds"])
        report, wall, rss = results[len(results) // 2]
        mp = report["width"] * report["height"] / 1e6
        per_mp[name] = report["seconds"] / mp
        rows.append([name, report["mode"], f"{report['seconds']:.1f}", f"{per_mp[name]:.2f}", f"{wall:.1f}",
                     f"{max(r[2] for r in results):.0f}"])
    a, b = per_mp.values()
    notes = [
        f"time per megapixel, streamed 6000×4000 / whole 1024²: {b / a:.2f}× (goal ≤ 1.25×); goal peak RSS ≤ 1536 MiB",
        "seconds: translateFile as reported by --json (decode, network, encode; not the model load); "
        "1024²: median of 3 runs, one before and two after the large photo; 6000×4000: one run",
    ]
    return Section(
        "Large photo in bounded memory (default --memory-limit 1GiB)",
        ["image", "mode", "seconds", "s/MP", "process wall s", "peak RSS MiB"], rows, notes)


def section_daemon(ctx: Context) -> Section:
    """50 photos of 256² dropped into a running daemon's inbox (written under a hidden name
    and renamed in, as a file manager does), timed until 50 outputs exist, against 50
    in-process forward passes (`cyclegand bench --repeat 50`)."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
    daemon = None
    try:
        import_default(ctx, work / "models")
        root = work / "spool"
        daemon = subprocess.Popen(
            [str(ctx.binary), "serve", "--root", str(root), "--models-dir", str(work / "models"), "--no-socket",
             "--log-level", "warning"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        inbox, outbox = root / "inbox" / "modern2vintage", root / "outbox" / "modern2vintage"
        deadline = time.time() + 60
        while not inbox.is_dir():
            if time.time() > deadline or daemon.poll() is not None:
                raise RuntimeError("the daemon did not create its inbox")
            time.sleep(0.05)
        image = photo(ctx, 256).read_bytes()
        # One image first so that the model is loaded before the clock starts.
        (inbox / ".warm.png").write_bytes(image)
        (inbox / ".warm.png").rename(inbox / "warm.png")
        while not (outbox / "warm.png").exists():
            if time.time() > deadline or daemon.poll() is not None:
                raise RuntimeError("the daemon did not translate the warm-up image")
            time.sleep(0.01)
        def batch(n: int) -> float:
            start = time.perf_counter()
            for i in range(50):
                hidden = inbox / f".photo{n}_{i:02d}.png"
                hidden.write_bytes(image)
                hidden.rename(inbox / f"photo{n}_{i:02d}.png")
            while len(list(outbox.glob(f"photo{n}_*.png"))) < 50:
                if daemon.poll() is not None or time.perf_counter() - start > 600:
                    raise RuntimeError("the daemon did not translate the 50 images")
                time.sleep(0.005)
            return time.perf_counter() - start

        # Three batches, the in-process passes between the first and the second (the daemon
        # idles meanwhile), so that both sides see the same minutes of a shared machine.
        batches = [batch(0)]
        # The passes end to end, as the burst is timed (a median would leave out the machine's
        # slow moments that the burst cannot).
        forward, reason = cyclegand_forward(
            Context(ctx.binary, ctx.weights, ctx.threads, 50, [256], ctx.out), key="seconds_total")
        batches += [batch(1), batch(2)]
        daemon_seconds = sorted(batches)[1]
        daemon.terminate()
        daemon.wait(timeout=60)
        daemon = None
        total = forward.get(256)
        in_process = total / 50 if total else None
        rows = [
            ["daemon: 50 × 256² PNG, drop to last output", f"{daemon_seconds:.2f}", f"{daemon_seconds / 50 * 1e3:.0f}"],
            ["in process: 50 forward passes, end to end", f"{total:.2f}" if total else "n/a",
             f"{in_process * 1e3:.0f}" if in_process else "n/a"],
        ]
        notes = [f"daemon / in-process: {ratio(daemon_seconds, total)} (goal ≤ 1.10×)",
                 f"daemon: median of 3 batches ({', '.join(f'{b:.2f}' for b in batches)} s), default settings "
                 f"(workers and threads 0: one image per core when several wait); {ctx.threads} threads for the "
                 "in-process passes",
                 "the daemon's time includes PNG decode and encode, the spool's renames and fsyncs"]
        if reason:
            notes.append(f"in-process forward not available: {reason}")
        return Section("Watch-folder throughput", ["run", "seconds", "ms per image"], rows, notes)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------
# train, learn: the training engine against the reference recipe in PyTorch
# ---------------------------------------------------------------------------


def cyclegand_train_missing(ctx: Context) -> str | None:
    """Why `cyclegand train` cannot run here, or None when it can."""
    if not ctx.binary.is_file():
        return f"{ctx.binary} not found (run `make build`)"
    result = subprocess.run([str(ctx.binary), "train", "--help"], capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[0]
        return f"`cyclegand train` is not available in {ctx.binary}: {reason}"
    return None


def run_timed(command: list[str], what: str) -> tuple[str, float, float]:
    """(stdout, wall s, peak RSS MiB) of a command under /usr/bin/time -v; raises with its stderr."""
    if not Path("/usr/bin/time").is_file():
        raise RuntimeError("/usr/bin/time not found (apt install time)")
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [ln for ln in result.stderr.splitlines() if not ln.startswith("\t")]
        raise RuntimeError(f"{what} failed (exit {result.returncode}): {' | '.join(lines[-5:])}")
    return (result.stdout, *time_v_figures(result.stderr))


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def loss_log(path: Path) -> list[dict]:
    """cyclegand's training/loss_log.jsonl: one JSON object per printed iteration."""
    if not path.is_file():
        raise RuntimeError(f"cyclegand train wrote no {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_images(ctx: Context, size: int, count: int = 4) -> Path:
    """DIR/trainA, trainB with `count` synthetic size² PNGs each (tools/synthetic_task.py fields),
    written afresh each run (a second or two) so that they follow the generator's code."""
    import shutil

    from synthetic_task import make

    root = ctx.out / f"train_data_{size}"
    shutil.rmtree(root, ignore_errors=True)
    make(root, seed=1, train=count, test=0, size=size)
    return root


TRAIN_NETS = ["--netG", "resnet_9blocks", "--ngf", "64", "--ndf", "64"]


def section_train(ctx: Context) -> Section:
    """One training iteration (forward, G step, D step) of the reference recipe at 256² and 128²."""
    import shutil
    import tempfile

    threads = ["--threads", str(ctx.threads)]
    missing = cyclegand_train_missing(ctx)
    rows, notes, goals = [], [], []
    def torch_run(size: int, data: Path) -> tuple[list[float], float, float]:
        out, _, rss = run_timed(
            [sys.executable, str(TOOLS / "torch_train.py"), "--time-only", "--size", str(size), "--dataroot", str(data),
             *TRAIN_NETS, "--iters", "4", *threads], "tools/torch_train.py --time-only")
        timing = last_json(out)
        return timing["sec_per_iter"], timing["cpu_sec_per_iter_median"], rss

    def our_run(size: int, data: Path) -> tuple[list[float], float]:
        work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
        try:
            _, _, rss = run_timed(
                [str(ctx.binary), "train", "--dataroot", str(data), "--name", "bench_train", "--models-dir",
                 str(work), *TRAIN_NETS, "--preprocess", "none", "--crop_size", str(size), "--load_size",
                 str(size), "--no_flip", "--max_iters", "4", "--print_freq", "1", *threads], "cyclegand train")
            records = sorted(loss_log(work / "bench_train" / "training" / "loss_log.jsonl"), key=lambda r: r["iters"])
            return [r["sec_per_iter"] for r in records], rss
        finally:
            shutil.rmtree(work, ignore_errors=True)

    for size in (256, 128):
        data = training_images(ctx, size)
        # Two rounds of PyTorch then cyclegand, so that both sides see the same minutes of a
        # shared machine; the first iteration of each run is left out (warm-up).
        torch_each, ours_each, torch_rss, ours_rss, cpu = [], [], 0.0, None, []
        for turn in (1, 2):
            print(f"train {size}²: PyTorch (round {turn})", flush=True)
            each, cpu_s, rss = torch_run(size, data)
            torch_each.append(each)
            cpu.append(cpu_s)
            torch_rss = max(torch_rss, rss)
            if missing is None:
                print(f"train {size}²: cyclegand (round {turn})", flush=True)
                each, rss = our_run(size, data)
                ours_each.append(each)
                ours_rss = max(ours_rss or 0.0, rss)
        torch_s = statistics.median(t for run in torch_each for t in run[1:])
        ours_s = statistics.median(t for run in ours_each for t in run[1:]) if ours_each else None
        # Each iteration's time, so that a neighbour's burst on a shared machine shows.
        notes.append(f"{size}² PyTorch iterations: {' / '.join(', '.join(f'{t:.2f}' for t in run) for run in torch_each)} s "
                     f"(CPU {statistics.median(cpu):.2f} s/iter)")
        if ours_each:
            notes.append(f"{size}² cyclegand iterations: "
                         f"{' / '.join(', '.join(f'{t:.2f}' for t in run) for run in ours_each)} s")
        rows.append([f"{size}²", fmt_seconds(ours_s), fmt_seconds(torch_s), ratio(torch_s, ours_s),
                     "n/a" if ours_rss is None else f"{ours_rss:.0f}", f"{torch_rss:.0f}",
                     "n/a" if ours_rss is None else f"{100 * ours_rss / torch_rss:.0f} %"])
        if ours_s is not None:
            met = torch_s / ours_s >= 1.3 and ours_rss <= 0.6 * torch_rss
            goals.append(f"{size}²: {'met' if met else 'NOT met'}")
    notes.insert(0, f"batch 1, {ctx.threads} threads, 4 iterations on 4 synthetic images per domain, two rounds of "
                 "PyTorch then cyclegand: median sec/iter of iterations 2-4 of both rounds (cyclegand: loss_log.jsonl; "
                 "PyTorch: tools/torch_train.py --time-only); peak RSS of the whole process from /usr/bin/time -v, "
                 "the larger of the two rounds")
    notes.insert(1, "speed = PyTorch s / cyclegand s; goal ≥ 1.3× faster and ≤ 60 % of PyTorch's peak RSS"
                 + (f" ({'; '.join(goals)})" if goals else ""))
    headers = ["size", "cyclegand s/iter", "PyTorch s/iter", "speed", "cyclegand RSS MiB", "PyTorch RSS MiB",
               "RSS cyclegand/PyTorch"]
    return Section("Training iteration (resnet_9blocks, ngf 64, ndf 64)", headers, rows, notes, failure=missing)


LEARN_NETS = ["--netG", "resnet_6blocks", "--ngf", "16", "--ndf", "16"]


def section_learn(ctx: Context) -> Section:
    """The synthetic swap-red-and-blue task (tools/synthetic_task.py) learnt from scratch by both,
    with the reference recipe (lsgan, λ 10, identity 0.5, pool 50, Adam 2e-4, flips), constant lr."""
    import shutil
    import tempfile

    from synthetic_task import make, score

    data = ctx.out / "learn_data"
    shutil.rmtree(data, ignore_errors=True)  # written afresh: it follows synthetic_task.py's code
    make(data, seed=1, train=400, test=100, size=32)
    n, threads = ctx.learn_iters, ["--threads", str(ctx.threads)]
    schedule = ["--n_epochs", "1000", "--n_epochs_decay", "0"]
    missing = cyclegand_train_missing(ctx)
    rows, notes = [], []

    print(f"learn: PyTorch, {n} iterations", flush=True)
    torch_out = ctx.out / "learn_torch"
    shutil.rmtree(torch_out, ignore_errors=True)
    start = time.perf_counter()
    out, _, _ = run_timed(
        [sys.executable, str(TOOLS / "torch_train.py"), "--dataroot", str(data), *LEARN_NETS, "--iters", str(n),
         *schedule, *threads, "--seed", "1", "--out", str(torch_out)], "tools/torch_train.py")
    torch_wall = time.perf_counter() - start
    trained = last_json(out)
    torch_score = score(torch_out, data / "testA")
    rows.append(["PyTorch (tools/torch_train.py)", str(n), f"{torch_wall:.0f}",
                 f"{trained['sec_per_iter_median'] * 1e3:.1f}", f"{torch_score['ratio']:.3f}"])

    if missing is None:
        print(f"learn: cyclegand, {n} iterations", flush=True)
        work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
        try:
            start = time.perf_counter()
            run_timed([str(ctx.binary), "train", "--dataroot", str(data), "--name", "learn", "--models-dir", str(work),
                       *LEARN_NETS, "--preprocess", "none", "--crop_size", "32", "--load_size", "32", "--max_iters",
                       str(n), *schedule, *threads, "--seed", "1"], "cyclegand train")
            ours_wall = time.perf_counter() - start
            records = loss_log(work / "learn" / "training" / "loss_log.jsonl")
            ours_out = ctx.out / "learn_cyclegand"
            shutil.rmtree(ours_out, ignore_errors=True)
            ours_out.mkdir(parents=True)
            for source in sorted((data / "testA").glob("*.png")):
                run_timed([str(ctx.binary), "translate", str(source), str(ours_out / source.name), "--models-dir",
                           str(work), "--direction", "A2B"], "cyclegand translate")
            ours_score = score(ours_out, data / "testA")
            per_iter = statistics.median(r["sec_per_iter"] for r in records[1:] or records)
            rows.insert(0, ["cyclegand train", str(n), f"{ours_wall:.0f}", f"{per_iter * 1e3:.1f}",
                            f"{ours_score['ratio']:.3f}"])
            plot = work / "learn" / "training" / "losses.png"
            if plot.is_file():
                shutil.copy(plot, ctx.out / "learn_losses.png")
                notes.append(f"cyclegand's loss curves: {ctx.out / 'learn_losses.png'}")
            else:
                notes.append(f"cyclegand wrote no {plot}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        rows.insert(0, ["cyclegand train", str(n), "n/a", "n/a", "n/a"])
    notes.insert(0, f"32² synthetic task (tools/synthetic_task.py, seed 1: 400 train images per domain, 100 testA), "
                    f"resnet_6blocks, ngf 16, ndf 16, batch 1, {ctx.threads} threads, seed 1, constant lr 0.0002; "
                    f"ratio = mean |G_A(x) − swapRB(x)| / mean |x − swapRB(x)| on testA "
                    f"(identity baseline {torch_score['identity_baseline']:.3f}; 0 is the answer; an output of the "
                    f"right colour without structure scores {torch_score['flat_ratio']:.3f})")
    notes.append("process s: the whole training process (start, data, iterations, and for PyTorch translating "
                 "testA); ms/iter: median of the iterations after the first")
    headers = ["trainer", "iterations", "process s", "ms/iter", "ratio to identity baseline"]
    return Section("Learning the synthetic task (swap red and blue, 32²)", headers, rows, notes, failure=missing)


# ---------------------------------------------------------------------------
# finetune: the daemon's fine-tune job yielding to images (issue 12)
# ---------------------------------------------------------------------------


class BenchDaemon:
    """`cyclegand serve` on a scratch spool with the default model, and a socket client."""

    def __init__(self, ctx: Context, work: Path, memory_limit: str = "8GiB"):
        sys.path.insert(0, str(REPO / "plugins" / "gimp" / "cyclegand"))
        import cyclegand_client

        self.root, self.sock = work / "spool", work / "cyclegand.sock"
        self.process = subprocess.Popen(
            [str(ctx.binary), "serve", "--root", str(self.root), "--models-dir", str(work / "models"), "--socket",
             str(self.sock), "--memory-limit", memory_limit, "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                self.client = cyclegand_client.Client(str(self.sock), timeout=3600)
                break
            except (ConnectionError, FileNotFoundError):
                if time.time() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the daemon did not open its socket")
                time.sleep(0.05)

    def call(self, cmd: str, **fields) -> dict:
        return self.client.call(cmd, **fields)[0]

    def training(self) -> dict:
        return self.call("training", action="status")["training"]

    def wait_iterations(self, n: int, timeout: float = 900) -> dict:
        deadline = time.time() + timeout
        while True:
            t = self.training()
            if t.get("iterations", 0) >= n or t["state"] in ("done", "failed"):
                return t
            if time.time() > deadline:
                raise RuntimeError(f"the fine-tune did not reach iteration {n}: {t}")
            time.sleep(0.2)

    def translate_p50(self, image: bytes, runs: int) -> float:
        self.client.translate_bytes(image, "modern2vintage", name="photo.png")
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self.client.translate_bytes(image, "modern2vintage", name="photo.png")
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    def burst(self, image: bytes, tag: str, count: int = 50) -> float:
        inbox, outbox = self.root / "inbox" / "modern2vintage", self.root / "outbox" / "modern2vintage"
        start = time.perf_counter()
        for i in range(count):
            hidden = inbox / f".{tag}_{i:02d}.png"
            hidden.write_bytes(image)
            hidden.rename(inbox / f"{tag}_{i:02d}.png")
        while len(list(outbox.glob(f"{tag}_*.png"))) < count:
            if self.process.poll() is not None or time.perf_counter() - start > 1200:
                raise RuntimeError(f"the daemon did not translate the {count} images")
            time.sleep(0.005)
        return time.perf_counter() - start

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("shutdown")
            except Exception:
                self.process.terminate()
            self.process.wait(timeout=120)


def section_finetune(ctx: Context) -> Section:
    """A fine-tune of the default model at 256² running inside the daemon: a 256² socket translate's
    p50 and a 50-image watch-folder burst against the same daemon idle, and the job's own speed
    with nothing else to do against `cyclegand train` on the same data."""
    import shutil
    import tempfile

    title = "Fine-tune in the daemon at 256²: yielding to images"
    headers = ["measure", "idle", "fine-tune running", "ratio", "goal"]
    missing = cyclegand_train_missing(ctx)
    if missing:
        return Section(title, headers, [], [], failure=missing)
    work = Path(tempfile.mkdtemp(prefix="cyclegand-bench-"))
    daemon = None
    try:
        data = training_images(ctx, 256, count=8)
        recipe = {"preprocess": "none", "crop_size": 256, "load_size": 256, "no_flip": True, "print_freq": 1,
                  "save_latest_freq": 100000, "display_freq": 100000}
        # cyclegand train on its own copy of the model, before the daemon and again after it, so
        # that the reference brackets the job in time on a machine whose speed drifts.
        def reference(run: int) -> list[float]:
            models = work / f"ref_models_{run}"
            import_default(ctx, models)
            print(f"finetune: cyclegand train (reference speed, run {run})", flush=True)
            subprocess.run(
                [str(ctx.binary), "train", "--dataroot", str(data), "--name", "modern2vintage", "--continue_train",
                 "--models-dir", str(models), "--max_iters", "9", "--preprocess", "none", "--crop_size", "256",
                 "--load_size", "256", "--no_flip", "--print_freq", "1"], check=True, capture_output=True)
            log = sorted(loss_log(models / "modern2vintage" / "training" / "loss_log.jsonl"), key=lambda r: r["iters"])
            return [r["sec_per_iter"] for r in log[1:]]

        ref = reference(1)
        import_default(ctx, work / "models")
        daemon = BenchDaemon(ctx, work)
        image = photo(ctx, 256).read_bytes()
        print("finetune: idle daemon", flush=True)
        idle_p50 = daemon.translate_p50(image, 15)
        idle_burst = daemon.burst(image, "idle")
        print("finetune: with the fine-tune running", flush=True)
        daemon.call("finetune", model="modern2vintage", dataroot=str(data), options={**recipe, "max_iters": 100000})
        # The job alone for eight iterations (after its first), then with images, then alone for
        # eight more.
        daemon.wait_iterations(9)
        busy_p50 = daemon.translate_p50(image, 15)
        busy_burst = daemon.burst(image, "busy")
        after = daemon.training()["iterations"] + 1
        daemon.wait_iterations(after + 8)
        log = loss_log(work / "models" / "modern2vintage" / "training" / "loss_log.jsonl")
        alone = [r["sec_per_iter"] for r in log if 1 < r["total_iters"] <= 9 or r["total_iters"] > after]
        job_s = statistics.median(alone)
        daemon.call("training", action="stop", publish=False)
        daemon.stop()
        daemon = None
        ref += reference(2)
        train_s = statistics.median(ref)
        rows = [
            ["256² socket translate p50", f"{idle_p50 * 1e3:.0f} ms", f"{busy_p50 * 1e3:.0f} ms",
             ratio(busy_p50, idle_p50), "≤ 1.25×"],
            ["50 × 256² watch-folder burst", f"{idle_burst:.1f} s", f"{busy_burst:.1f} s", ratio(busy_burst, idle_burst),
             "≤ 1.25×"],
            ["iteration, nothing else to do", f"{train_s:.2f} s (cyclegand train)", f"{job_s:.2f} s (daemon job)",
             ratio(job_s, train_s), "≤ 1.05×"],
        ]
        met = busy_p50 <= 1.25 * idle_p50 and busy_burst <= 1.25 * idle_burst and job_s <= 1.05 * train_s
        notes = [
            "the default modern2vintage model fine-tuned on 8 synthetic 256² images per domain (G_B, D_A, D_B "
            "initialised), batch 1, resnet_9blocks ngf 64; the daemon's memory_limit 8 GiB, default workers and threads",
            f"translate: median of 15 after one warm-up; burst: drop to last output; job: median sec/iter of "
            f"{len(alone)} iterations with nothing else to do (iterations 2-9, and 8 after the last image: "
            f"{', '.join(f'{t:.2f}' for t in alone)} s), against the median of iterations 2-9 of two runs of "
            f"`cyclegand train`, one before the daemon and one after it ({', '.join(f'{t:.2f}' for t in ref)} s)",
            f"goals {'met' if met else 'NOT met'}",
        ]
        return Section(title, headers, rows, notes)
    finally:
        if daemon is not None:
            daemon.process.terminate()
            daemon.process.wait(timeout=120)
        shutil.rmtree(work, ignore_errors=True)


SECTIONS = {
    "forward": section_forward,
    "process": section_process,
    "load": section_load,
    "large": section_large,
    "daemon": section_daemon,
    "socket": section_socket,
    "train": section_train,
    "learn": section_learn,
    "finetune": section_finetune,
}
# Sections that train from scratch: they need no weights file.
TRAINING_SECTIONS = {"train", "learn"}


# What keeps each side's kernels to AVX2 with FMA on a CPU that has AVX-512.
AVX2_ONLY = {"CYCLEGAND_KERNELS": "avx2", "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"}


def machine_summary(ctx: Context) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import onnxruntime

        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "not installed"
    return (
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores; "
        f"{ctx.threads} threads; "
        + ("AVX2 only (" + ", ".join(f"{k}={v}" for k, v in AVX2_ONLY.items()) + "); "
           if os.environ.get("CYCLEGAND_KERNELS") == "avx2" else "")
        + f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"onnxruntime {ort_version}; weights {ctx.weights}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=REPO / "weights" / "vintagify" / "G_A2B_epoch33.pth")
    parser.add_argument("--binary", type=Path, default=REPO / ".build" / "release" / "cyclegand")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="256,512,1024")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated, from: {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--learn-iters", type=int, default=1000, help="training iterations of the learn section")
    parser.add_argument("--isa", choices=["native", "avx2"], default="native",
                        help="avx2: both sides keep off AVX-512 (cyclegand's kernels, OpenBLAS, ATen, oneDNN), to "
                             "measure an AVX2-only CPU on an AVX-512 one")
    args = parser.parse_args()
    # Before torch is imported here or in a child: each library reads its variable once.
    os.environ.update(AVX2_ONLY if args.isa == "avx2" else {})

    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if not args.weights.is_file() and any(s not in TRAINING_SECTIONS for s in chosen):
        print(f"error: weights {args.weights} not found; run `make model` or pass --weights", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(
        binary=args.binary.resolve(),
        weights=args.weights.resolve(),
        threads=args.threads,
        repeat=args.repeat,
        sizes=[int(s) for s in args.sizes.split(",")],
        out=args.out,
        learn_iters=args.learn_iters,
    )

    summary = machine_summary(ctx)
    sections, failed = [], []
    for name in chosen:
        try:
            section = SECTIONS[name](ctx)
        except Exception as error:  # one broken section must not lose the others' results
            traceback.print_exc()
            failed.append(name)
            section = Section(f"{name}: failed", ["error"], [[f"{type(error).__name__}: {error}"]])
        if section.failure:
            failed.append(name)
            section.notes.append(f"failed: {section.failure}")
        sections.append(section)
        print("\n" + section.text() + "\n", flush=True)
    report = "\n\n".join(["# cyclegand benchmark", summary] + [s.markdown() for s in sections]) + "\n"
    (args.out / "results.md").write_text(report)
    print(f"results written to {args.out / 'results.md'}")
    if failed:
        print(f"error: section(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
