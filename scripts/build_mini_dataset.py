"""Build the embedded ``cifar10-mini`` dataset shipped inside the package.

Reads the CIFAR-10 JPEG tarball (ImageFolder layout ``cifar10/{train,test}/<class>/NNNN.jpg``),
takes a class-balanced subset chosen by a fixed seed, and writes the ORIGINAL JPEG bytes (no
re-encoding) into a single numpy ``.npz`` file:

    classes         <U..  [C]       class names, sorted (label i is classes[i])
    {split}_bytes   uint8 [total]   the JPEG files of the split, concatenated
    {split}_offsets int64 [N + 1]   image i is {split}_bytes[offsets[i]:offsets[i + 1]]
    {split}_labels  int64 [N]       class index of each image
    {split}_files   int32 [N]       number NNNN of the source file, for provenance
    meta            <U..  []        JSON: source file, its sha256, seed, counts

Images are stored grouped by class, and by file name within a class. Usage:

    python scripts/build_mini_dataset.py [--tarball PATH] [--out PATH] [--seed 0]
"""

import argparse
import hashlib
import io
import json
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TARBALL = Path("/work/shared/data/cifar10-jpeg.tar.gz")
DEFAULT_OUT = REPO / "src" / "noisydarts" / "assets" / "cifar10_mini.npz"
PER_CLASS = {"train": 500, "test": 100}


def read_tarball(path: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """Return {split: {class: {file name: jpeg bytes}}} for every image in the tarball."""
    files: dict[str, dict[str, dict[str, bytes]]] = defaultdict(lambda: defaultdict(dict))
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) != 4 or parts[0] != "cifar10":
                continue
            _, split, cls, name = parts
            if split in PER_CLASS and name.lower().endswith((".jpg", ".jpeg")):
                files[split][cls][name] = tar.extractfile(member).read()
    return files


def select(files: dict[str, dict[str, bytes]], classes: list[str], per_class: int,
           seed: int, split_id: int) -> tuple[list[bytes], list[int], list[int]]:
    """Pick `per_class` files of every class uniformly at random (seeded), keep them in name order."""
    blobs, labels, numbers = [], [], []
    for label, cls in enumerate(classes):
        names = sorted(files[cls])
        if len(names) < per_class:
            raise SystemExit(f"class {cls} has only {len(names)} images, need {per_class}")
        # One generator per (seed, split, class): the choice does not depend on iteration order.
        rng = np.random.default_rng([seed, split_id, label])
        chosen = np.sort(rng.choice(len(names), size=per_class, replace=False))
        for i in chosen:
            blobs.append(files[cls][names[i]])
            labels.append(label)
            numbers.append(int(Path(names[i]).stem))
    return blobs, labels, numbers


def check_decodes(blobs: list[bytes], size: int = 32) -> None:
    """Every stored image must be a readable size x size RGB JPEG."""
    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as im:
            im.load()
            if im.format != "JPEG" or im.size != (size, size) or im.mode != "RGB":
                raise SystemExit(f"image {i}: {im.format} {im.mode} {im.size}, expected 32x32 RGB JPEG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tarball", type=Path, default=DEFAULT_TARBALL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    files = read_tarball(args.tarball)
    classes = sorted(files["train"])
    if sorted(files["test"]) != classes:
        raise SystemExit("train and test class folders differ")

    arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
    counts = {}
    for split_id, (split, per_class) in enumerate(PER_CLASS.items()):
        blobs, labels, numbers = select(files[split], classes, per_class, args.seed, split_id)
        check_decodes(blobs)
        sizes = np.array([len(b) for b in blobs], dtype=np.int64)
        arrays[f"{split}_bytes"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        arrays[f"{split}_labels"] = np.array(labels, dtype=np.int64)
        arrays[f"{split}_files"] = np.array(numbers, dtype=np.int32)
        counts[split] = {"images": len(blobs), "per_class": per_class, "jpeg_bytes": int(sizes.sum())}

    meta = {
        "name": "cifar10-mini",
        "source": args.tarball.name,
        "source_sha256": hashlib.sha256(args.tarball.read_bytes()).hexdigest(),
        "seed": args.seed,
        "selection": "per (split, class): numpy default_rng([seed, split_id, class_id]).choice "
                     "without replacement over the class's files sorted by name",
        "splits": counts,
    }
    arrays["meta"] = np.array(json.dumps(meta))

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)

    for split, c in counts.items():
        print(f"{split}: {c['images']} images ({c['per_class']} per class x {len(classes)} classes), "
              f"{c['jpeg_bytes']:,} bytes of JPEG ({c['jpeg_bytes'] / c['images']:.0f} per image)")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
