"""Images/s of the data paths against the images/s of a training step: is the loader the bottleneck?

    python benchmarks/data_loader.py                       # generated folders, the machine's cores as workers
    python benchmarks/data_loader.py --workers 4 --images 2000
    python benchmarks/data_loader.py --folder32 /work/data/cifar10 --skip-steps

Rows (on the CPU, and again on CUDA when present: batches land on the device, the step runs there):

* ``stream``: the streaming loader alone (:class:`noisydarts.data.StreamingBatches`: worker
  processes decode, augment and collate; the main process normalizes), on a generated ImageFolder:
  at 224 px with imagenet augmentation (ImageNet-like JPEGs, about 320-500 x 260-400 px), and at
  32 px with cifar augmentation (32 x 32 JPEGs, like the CIFAR-10 ImageFolder). Timed over
  whole epochs after a warm-up epoch (the persistent workers are started by then).
* ``memory``: the in-memory path (:class:`noisydarts.data.BatchIterator`) on the same folder.
* ``decode``: one process decoding the 224-px folder's JPEGs with Pillow (what the loader uses)
  and with ``torchvision.io.decode_jpeg``, to compare the two decoders.
* ``step``: what consumes the batches. At 32 px, the DARTS search step of
  ``benchmarks/search_step.py`` (C=16, 8 cells, first order, run the same way). At 224 px, a
  training step (forward, backward, SGD) of torchvision's MobileNetV2: a lower bound on the cost of
  a step in the MobileNetV2 search space, whose supernet runs six MBConvs per layer plus an
  architecture step.

The last column is loader images/s over the step's images/s at the same resolution (target >= 2).
The machine is shared: timings are indicative.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_folders(root: Path, n: int, seed: int = 0) -> dict[int, Path]:
    """Two ImageFolders of `n` training images over 10 classes, made from the embedded
    cifar10-mini images: 224-px-like photos (upscaled, with grain so the JPEGs are of realistic
    size) and 32 x 32 JPEGs."""
    import numpy as np
    from PIL import Image

    from noisydarts.data import load_dataset

    mini = load_dataset("cifar10-mini", "train")
    rng = np.random.default_rng(seed)
    folders = {224: root / "f224", 32: root / "f32"}
    for i in range(n):
        k = (i * 997) % len(mini)  # spread over the classes (mini is sorted by class)
        label = int(mini.labels[k])
        pixels = mini.images[k].permute(1, 2, 0).numpy()
        for split in ("train", "test"):
            for folder in folders.values():
                (folder / split / f"c{label}").mkdir(parents=True, exist_ok=True)
        small = Image.fromarray(pixels)
        small.save(folders[32] / "train" / f"c{label}" / f"{i:06d}.jpg", quality=95)
        w, h = int(rng.integers(320, 500)), int(rng.integers(260, 400))
        big = np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).astype(np.int16)
        big = (big + rng.normal(0, 16, (h, w, 1)) + rng.normal(0, 6, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(big).save(folders[224] / "train" / f"c{label}" / f"{i:06d}.jpg", quality=90)
    for folder in folders.values():  # the test split only has to exist
        for d in (folder / "train").iterdir():
            src = next(d.iterdir())
            (folder / "test" / d.name / src.name).write_bytes(src.read_bytes())
    return folders


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_epochs(batches, epochs: int, device: str) -> float:
    """Images per second over `epochs` whole epochs (batches on `device`), after one warm-up epoch."""
    for _ in batches.epoch(0):
        pass
    _sync(device)
    seen, t0 = 0, time.perf_counter()
    for e in range(1, epochs + 1):
        for _, y in batches.epoch(e):
            seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - t0)


def loader_rate(folder: Path, resolution: int, *, in_memory: bool, workers: int, batch: int, epochs: int,
                augment: str, device: str) -> float:
    import torch

    from noisydarts.data import make_batches, open_dataset

    data = {"name": str(folder), "resolution": resolution, "in_memory": in_memory, "workers": workers,
            "augment": augment, "crop_padding": 4, "flip": True, "cutout": 0, "color_jitter": 0.4}
    dataset = open_dataset(data, "train", device)
    batches = make_batches(dataset, torch.arange(len(dataset)), batch, seed=0, train=True, data=data,
                           channels_last=True, device=device)
    rate = time_epochs(batches, epochs, device)
    if hasattr(batches, "close"):
        batches.close()
    return rate


def decode_rates(folder: Path, limit: int = 200) -> dict[str, float]:
    import torch
    from torchvision.io import decode_jpeg

    from noisydarts.data import decode_image

    blobs = [p.read_bytes() for p in sorted((folder / "train").rglob("*.jpg"))[:limit]]
    rates = {}
    for name, fn in (("Pillow", lambda b: decode_image(b, "x")),
                     ("torchvision.io", lambda b: decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8)))):
        fn(blobs[0])
        t0 = time.perf_counter()
        for b in blobs:
            fn(b)
        rates[name] = len(blobs) / (time.perf_counter() - t0)
    return rates


def mobilenet_step_rate(batch: int, steps: int, device: str) -> float:
    """Images/s of forward + backward + SGD of torchvision's MobileNetV2 at 224 px (channels_last;
    bf16 autocast on CUDA, as the training loop runs)."""
    import contextlib

    import torch
    import torchvision

    model = torchvision.models.mobilenet_v2(num_classes=1000).to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def darts_step_rate(batch: int, steps: int, device: str, threads: int) -> float:
    one = {"device": device, "batch": batch, "noise": True, "estimator": "first_order", "steps": steps,
           "warmup": 1, "threads": threads, "baseline_run": False, "overrides": []}
    out = subprocess.run([sys.executable, str(HERE / "search_step.py"), "--one", json.dumps(one)],
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000, help="training images per generated folder")
    p.add_argument("--workers", type=int, default=None, help="loader worker processes (default: one per core)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs per loader row (after one warm-up)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per step row (after one warm-up)")
    p.add_argument("--step-batch", type=int, default=32,
                   help="batch of the step rows (the DARTS step needs ~5 GB at 32, ~10 GB at 64)")
    p.add_argument("--folder32", help="use this ImageFolder (e.g. /work/data/cifar10) for the 32-px rows")
    p.add_argument("--skip-steps", action="store_true", help="time only the loaders")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads of this process and of the step (default: torch's; 1 on a busy machine, "
                        "where several threads mostly wait on each other)")
    p.add_argument("--devices", nargs="+", default=None, help="where batches go (default: cpu, and cuda when present)")
    args = p.parse_args()

    import torch

    from noisydarts.data.factory import default_workers

    if args.threads:
        torch.set_num_threads(args.threads)

    workers = default_workers() if args.workers is None else args.workers
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
          f"{workers} loader workers, batch {args.batch}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        folders = make_folders(Path(tmp), args.images)
        if args.folder32:
            folders[32] = Path(args.folder32)
        sizes = [f.stat().st_size for f in (folders[224] / "train").rglob("*.jpg")]
        print(f"generated {args.images} + {args.images} images in {time.perf_counter() - t0:.0f}s; 224-px folder: "
              f"mean JPEG {sum(sizes) / len(sizes) / 1e3:.0f} kB", flush=True)
        for device in devices:
            for res, augment in ((224, "imagenet"), (32, "cifar")):
                for w in sorted({0, workers}):
                    rate = loader_rate(folders[res], res, in_memory=False, workers=w, batch=args.batch,
                                       epochs=args.epochs, augment=augment, device=device)
                    rows.append((device, "stream", res, augment, w, rate))
                    print(f"  {device} stream {res}px {augment} workers={w}: {rate:.0f} images/s", flush=True)
                rate = loader_rate(folders[res], res, in_memory=True, workers=0, batch=args.batch,
                                   epochs=args.epochs, augment="cifar", device=device)
                rows.append((device, "memory", res, "cifar", "-", rate))
                print(f"  {device} memory {res}px: {rate:.0f} images/s", flush=True)
        for name, rate in decode_rates(folders[224]).items():
            rows.append(("cpu", f"decode ({name})", 224, "-", 1, rate))
    steps = {}
    if not args.skip_steps:
        for device in devices:
            steps[device, 224] = mobilenet_step_rate(args.step_batch, args.steps, device)
            rows.append((device, "step: MobileNetV2 train (bound)", 224, "-", "-", steps[device, 224]))
            print(f"  {device} step 224px: {steps[device, 224]:.1f} images/s", flush=True)
            steps[device, 32] = darts_step_rate(args.step_batch, args.steps, device, args.threads)
            rows.append((device, "step: DARTS search", 32, "-", "-", steps[device, 32]))
            print(f"  {device} step 32px: {steps[device, 32]:.1f} images/s", flush=True)

    print()
    print("| device | path | px | augment | workers | images/s | × step |")
    print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
    for device, path, res, augment, w, rate in rows:
        step = steps.get((device, res))
        ratio = f"{rate / step:.0f}" if step and path in ("stream", "memory") else ""
        print(f"| {device} | {path} | {res} | {augment} | {w} | {rate:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
