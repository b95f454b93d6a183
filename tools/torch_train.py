#!/usr/bin/env python3
"""The reference CycleGAN recipe in PyTorch: the counterpart of `cyclegand train`.

What pytorch-CycleGAN-and-pix2pix does with `--model cycle_gan` (cycle_gan_model.py,
networks.py, image_pool.py, unaligned_dataset.py, train.py), rewritten on our copies of the
networks (tools/reference_nets.py): ResnetGenerator and NLayerDiscriminator with
InstanceNorm(affine=False), init normal(0, 0.02) with zero biases, GANLoss (lsgan: MSE against
a full-size 1/0 target; vanilla: BCE with logits), L1 cycle and identity losses, one Adam over
both generators and one over both discriminators, an image pool per direction, and the
linear learning-rate rule (constant for n_epochs, then linear to 0 over n_epochs_decay).

Two modes:

    # train on DATAROOT/trainA, trainB for N iterations, translate DATAROOT/testA into OUT
    python tools/torch_train.py --dataroot D --iters 1000 --out OUT [--netG resnet_6blocks --ngf 16 --ndf 16]

    # time training iterations on random images of one size (nothing is read or written)
    python tools/torch_train.py --time-only --size 256 --netG resnet_9blocks --ngf 64 --ndf 64 --iters 4

Both print one JSON object on the last line of stdout: sec_per_iter_median (wall, of the
iterations after the first), cpu_sec_per_iter_median (process CPU time, all threads: on a shared
machine the wall figure depends on the neighbours), peak_rss_mib (ru_maxrss of this process),
and in training mode the loss curve (the eight losses every --print_freq iterations) and seconds.

`CycleGAN.optimize_parameters` is the reference's training step; tools/make_training_fixtures.py
imports it for the parity fixtures.

Needs: torch numpy pillow
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_nets import NLayerDiscriminator, ResnetGenerator

LOSS_NAMES = ["D_A", "G_A", "cycle_A", "idt_A", "D_B", "G_B", "cycle_B", "idt_B"]
BLOCKS = {"resnet_9blocks": 9, "resnet_6blocks": 6}


@dataclass
class Options:
    """The training options under the reference's names (train_options.py, base_options.py)."""

    netG: str = "resnet_9blocks"
    ngf: int = 64
    netD: str = "basic"
    n_layers_D: int = 3
    ndf: int = 64
    norm: str = "instance"
    no_dropout: bool = True
    init_type: str = "normal"
    init_gain: float = 0.02
    input_nc: int = 3
    output_nc: int = 3
    gan_mode: str = "lsgan"
    lambda_A: float = 10.0
    lambda_B: float = 10.0
    lambda_identity: float = 0.5
    lr: float = 0.0002
    beta1: float = 0.5
    pool_size: int = 50
    batch_size: int = 1
    lr_policy: str = "linear"
    n_epochs: int = 100
    n_epochs_decay: int = 100
    epoch_count: int = 1
    preprocess: str = "none"
    no_flip: bool = False
    serial_batches: bool = False
    direction: str = "AtoB"


# ---------------------------------------------------------------------------
# Networks, init, losses, pool
# ---------------------------------------------------------------------------


def define_G(opt: Options, affine: bool = False) -> ResnetGenerator:
    """`affine=True` is not a reference option: the vintagify wheel's generator has affine norms."""
    if opt.netG not in BLOCKS:
        raise SystemExit(f"netG {opt.netG!r} is not supported here (choose {', '.join(BLOCKS)})")
    return ResnetGenerator(opt.input_nc, opt.output_nc, opt.ngf, BLOCKS[opt.netG], affine=affine)


def define_D(opt: Options) -> NLayerDiscriminator:
    layers = {"basic": 3, "n_layers": opt.n_layers_D}.get(opt.netD)
    if layers is None:
        raise SystemExit(f"netD {opt.netD!r} is not supported here (choose basic, n_layers)")
    return NLayerDiscriminator(opt.output_nc, opt.ndf, layers)


def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference's `normal` init: every conv weight ~ N(0, gain), every conv bias 0.

    Norm parameters are left as PyTorch makes them (weight 1, bias 0): the reference only
    draws BatchNorm weights. Modules are visited in the order `net.apply` visits them.
    """

    def visit(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight.data, 0.0, gain)
            if m.bias is not None:
                nn.init.constant_(m.bias.data, 0.0)

    net.apply(visit)
    return net


class GANLoss:
    """lsgan: mean squared error against a target of 1 (real) or 0 (fake) the size of the
    prediction; vanilla: binary cross-entropy on logits against the same targets."""

    def __init__(self, mode: str):
        if mode not in ("lsgan", "vanilla"):
            raise SystemExit(f"gan_mode {mode!r} is not supported here (choose lsgan, vanilla)")
        self.mode = mode

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


class ImagePool:
    """The reference's history of generated images. Size 0 returns its input. Otherwise,
    until full, every image goes in and comes back; then each image, with probability 1/2
    (uniform(0, 1) > 0.5), replaces a uniformly chosen stored image, which is returned in
    its place; else the image itself is returned."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.images = size, rng, []

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.detach().unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                slot = self.rng.randint(0, self.size - 1)
                out.append(self.images[slot].clone())
                self.images[slot] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def set_requires_grad(nets: list[nn.Module], flag: bool) -> None:
    for net in nets:
        for p in net.parameters():
            p.requires_grad = flag


class CycleGAN:
    """The four networks, two optimizers, two pools; `optimize_parameters` is one iteration."""

    def __init__(self, opt: Options, G_A, G_B, D_A, D_B, pool_rng: random.Random | None = None):
        self.opt = opt
        self.G_A, self.G_B, self.D_A, self.D_B = G_A, G_B, D_A, D_B
        self.gan = GANLoss(opt.gan_mode)
        betas = (opt.beta1, 0.999)
        self.optimizer_G = torch.optim.Adam(list(G_A.parameters()) + list(G_B.parameters()), lr=opt.lr, betas=betas)
        self.optimizer_D = torch.optim.Adam(list(D_A.parameters()) + list(D_B.parameters()), lr=opt.lr, betas=betas)
        rng = pool_rng or random.Random(0)
        self.fake_A_pool = ImagePool(opt.pool_size, rng)
        self.fake_B_pool = ImagePool(opt.pool_size, rng)

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.optimizer_G, self.optimizer_D):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        self.real_A, self.real_B = real_A, real_B
        self.fake_B = self.G_A(real_A)
        self.rec_A = self.G_B(self.fake_B)
        self.fake_A = self.G_B(real_B)
        self.rec_B = self.G_A(self.fake_A)

    def backward_G(self) -> dict[str, torch.Tensor]:
        opt = self.opt
        losses = {}
        if opt.lambda_identity > 0:
            self.idt_A = self.G_A(self.real_B)
            losses["idt_A"] = F.l1_loss(self.idt_A, self.real_B) * opt.lambda_B * opt.lambda_identity
            self.idt_B = self.G_B(self.real_A)
            losses["idt_B"] = F.l1_loss(self.idt_B, self.real_A) * opt.lambda_A * opt.lambda_identity
        else:
            losses["idt_A"] = losses["idt_B"] = torch.zeros(())
        losses["G_A"] = self.gan(self.D_A(self.fake_B), True)
        losses["G_B"] = self.gan(self.D_B(self.fake_A), True)
        losses["cycle_A"] = F.l1_loss(self.rec_A, self.real_A) * opt.lambda_A
        losses["cycle_B"] = F.l1_loss(self.rec_B, self.real_B) * opt.lambda_B
        total = (losses["G_A"] + losses["G_B"] + losses["cycle_A"] + losses["cycle_B"] + losses["idt_A"]
                 + losses["idt_B"])
        total.backward()
        return losses

    def backward_D(self, D: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = (self.gan(D(real), True) + self.gan(D(fake.detach()), False)) * 0.5
        loss.backward()
        return loss

    def optimize_parameters(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, float]:
        """forward; G step with the discriminators frozen; D step on pooled, detached fakes."""
        self.forward(real_A, real_B)
        set_requires_grad([self.D_A, self.D_B], False)
        self.optimizer_G.zero_grad()
        losses = self.backward_G()
        self.optimizer_G.step()
        set_requires_grad([self.D_A, self.D_B], True)
        self.optimizer_D.zero_grad()
        losses["D_A"] = self.backward_D(self.D_A, self.real_B, self.fake_B_pool.query(self.fake_B))
        losses["D_B"] = self.backward_D(self.D_B, self.real_A, self.fake_A_pool.query(self.fake_A))
        self.optimizer_D.step()
        return {name: float(losses[name].detach()) for name in LOSS_NAMES}


def build(opt: Options, seed: int) -> CycleGAN:
    """Networks made and initialised in the reference's order (G_A, G_B, D_A, D_B) from `seed`."""
    torch.manual_seed(seed)
    nets = [init_weights(define_G(opt), opt.init_gain), init_weights(define_G(opt), opt.init_gain),
            init_weights(define_D(opt), opt.init_gain), init_weights(define_D(opt), opt.init_gain)]
    return CycleGAN(opt, *nets, pool_rng=random.Random(seed))


def lr_factor(opt: Options, epoch_index: int) -> float:
    """The reference's linear rule for the epoch_index-th epoch (0-based) of this run."""
    return 1.0 - max(0, epoch_index + opt.epoch_count - opt.n_epochs) / float(opt.n_epochs_decay + 1)


# ---------------------------------------------------------------------------
# Data: the unaligned dataset with preprocess none
# ---------------------------------------------------------------------------


def load_image(path: Path) -> torch.Tensor:
    """An RGB image as [3, H, W] in [-1, 1]; preprocess none resizes (bicubic) to multiples of 4."""
    from PIL import Image

    image = Image.open(path).convert("RGB")
    w, h = image.size
    w4, h4 = max(4, round(w / 4) * 4), max(4, round(h / 4) * 4)
    if (w4, h4) != (w, h):
        image = image.resize((w4, h4), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1)
    return x / 127.5 - 1


def image_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".ppm"))
    if not files:
        raise SystemExit(f"no images in {folder}")
    return files


class UnalignedData:
    """Epochs of max(|A|, |B|) pairs: A in a shuffled order, B drawn uniformly at random
    (the reference's unaligned dataset without serial_batches), each side flipped
    horizontally with probability 1/2 unless no_flip. Images are decoded once."""

    def __init__(self, root: Path, opt: Options, rng: random.Random):
        self.A = [load_image(p) for p in image_files(root / "trainA")]
        self.B = [load_image(p) for p in image_files(root / "trainB")]
        self.opt, self.rng = opt, rng

    def __len__(self) -> int:
        return max(len(self.A), len(self.B))

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        if not self.opt.no_flip and self.rng.random() < 0.5:
            return x.flip(-1)
        return x

    def epoch(self):
        order = list(range(len(self)))
        if not self.opt.serial_batches:
            self.rng.shuffle(order)
        for index in order:
            a = self.A[index % len(self.A)]
            b = self.B[index % len(self.B)] if self.opt.serial_batches else self.B[self.rng.randrange(len(self.B))]
            yield self.flip(a).unsqueeze(0), self.flip(b).unsqueeze(0)


# ---------------------------------------------------------------------------
# The two modes
# ---------------------------------------------------------------------------


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train(args, opt: Options) -> dict:
    model = build(opt, args.seed)
    data = UnalignedData(args.dataroot, opt, random.Random(args.seed + 1))
    times, cpu, curve, iteration, epoch_index = [], [], [], 0, 0
    start = time.perf_counter()
    while iteration < args.iters:
        model.set_lr(opt.lr * lr_factor(opt, epoch_index))
        for real_A, real_B in data.epoch():
            t0, c0 = time.perf_counter(), time.process_time()
            losses = model.optimize_parameters(real_A, real_B)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            iteration += 1
            if args.out and iteration in args.snapshots:
                translate_folder(model.G_A, args.dataroot / "testA", args.out.with_name(f"{args.out.name}_{iteration}"))
            if iteration % args.print_freq == 0 or iteration == args.iters:
                curve.append({"iters": iteration, "epoch": epoch_index + opt.epoch_count, **losses})
                if args.verbose:
                    print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
            if iteration == args.iters:
                break
        epoch_index += 1
    seconds = time.perf_counter() - start
    if args.out:
        translate_folder(model.G_A, args.dataroot / "testA", args.out)
    return {"iters": args.iters, "seconds": seconds, "sec_per_iter_median": statistics.median(times[1:] or times),
            "cpu_sec_per_iter_median": statistics.median(cpu[1:] or cpu), "peak_rss_mib": peak_rss_mib(),
            "losses": curve}


def translate_folder(G: nn.Module, source: Path, out: Path) -> None:
    """Each image through G in eval mode, 8-bit as the reference maps it, same file name as PNG."""
    from PIL import Image

    from reference_nets import to_8bit

    out.mkdir(parents=True, exist_ok=True)
    G.eval()
    with torch.inference_mode():
        for path in image_files(source):
            y = G(load_image(path).unsqueeze(0))
            Image.fromarray(to_8bit(y)).save(out / (path.stem + ".png"))
    G.train()


def time_only(args, opt: Options) -> dict:
    """Training iterations on one pair: random --size² images, or the first of DATAROOT/trainA, trainB."""
    model = build(opt, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    if args.dataroot:
        real_A = load_image(image_files(args.dataroot / "trainA")[0]).unsqueeze(0)
        real_B = load_image(image_files(args.dataroot / "trainB")[0]).unsqueeze(0)
    else:
        real_A = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
        real_B = torch.rand(1, 3, args.size, args.size, generator=g) * 2 - 1
    times, cpu = [], []
    for _ in range(args.iters):
        t0, c0 = time.perf_counter(), time.process_time()
        model.optimize_parameters(real_A, real_B)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"size": list(real_A.shape[-2:]), "iters": args.iters, "sec_per_iter": times,
            "sec_per_iter_median": statistics.median(times[1:] or times),
            "cpu_sec_per_iter_median": statistics.median(cpu[1:] or cpu), "peak_rss_mib": peak_rss_mib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataroot", type=Path)
    parser.add_argument("--out", type=Path, help="where G_A's translations of DATAROOT/testA go (PNG)")
    parser.add_argument("--iters", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--print_freq", type=int, default=50)
    parser.add_argument("--snapshots", default="", help="iterations (comma-separated) after which testA is also "
                        "translated, into OUT_<iterations>")
    parser.add_argument("--time-only", action="store_true", help="time iterations on random images of --size²")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--verbose", action="store_true", help="losses to stderr as training goes")
    defaults = Options()
    for name, value in asdict(defaults).items():
        if name == "no_dropout":
            continue  # the networks here have no dropout layers
        if isinstance(value, bool):
            parser.add_argument(f"--{name}", action="store_true", default=value)
        else:
            parser.add_argument(f"--{name}", type=type(value), default=value)
    args = parser.parse_args()
    args.snapshots = {int(n) for n in args.snapshots.split(",") if n.strip()}
    opt = Options(**{name: getattr(args, name) for name in asdict(defaults) if name != "no_dropout"})
    implemented = {"batch_size": 1, "preprocess": "none", "direction": "AtoB", "norm": "instance",
                   "init_type": "normal", "lr_policy": "linear"}
    for name, value in implemented.items():
        if getattr(opt, name) != value:
            parser.error(f"only --{name} {value} is implemented here")

    torch.set_num_threads(args.threads)
    if args.time_only:
        result = time_only(args, opt)
    else:
        if args.dataroot is None:
            parser.error("--dataroot is needed to train (or use --time-only)")
        result = train(args, opt)
    result["options"] = asdict(opt)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
