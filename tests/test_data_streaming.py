"""The streaming loader on generated ImageFolders: deterministic order, exact resume, order
independent of the number of workers, the same batches as the in-memory path, ImageNet
augmentation, the path chosen by the config, and one clear line for a corrupt image."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from noisydarts.search import resolve_config
from noisydarts.cli import main
from noisydarts.data import IMAGENET_MEAN, BatchIterator, ImageDataset, ImageFolderSplit, StreamingBatches, augment_style, color_jitter, imagenet_eval, imagenet_train, in_memory, make_batches, normalize, open_dataset, random_resized_crop_box
from noisydarts.data import folder as folder_mod
from noisydarts.errors import UserError

CLASSES = ("ant", "bee", "cow")
DATA = {"crop_padding": 2, "flip": True, "cutout": 4}  # the keys make_batches reads besides the path's


def make_folder(root, train=12, test=4, size=(24, 56), seed=0):
    """Noise images of assorted sizes (JPEG and PNG), a class-specific tint so labels are learnable."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for c, cls in enumerate(CLASSES):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                w, h = (int(v) for v in rng.integers(*size, 2))
                pixels = rng.integers(0, 200, (h, w, 3), dtype=np.uint8)
                pixels[..., c] += 55
                ext = "png" if i % 3 == 0 else "jpg"
                Image.fromarray(pixels).save(root / split / cls / f"{i:02d}.{ext}")
    folder_mod.list_split.cache_clear()
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("stream") / "ds")


def data_cfg(root, **kw):
    return {"name": str(root), "resolution": 16, **DATA, **kw}


def collect(batches, epoch):
    xs, ys = zip(*batches.epoch(epoch))
    return torch.cat(xs), torch.cat(ys)


def streamed(folder, indices, batch_size=8, *, seed=3, train=True, **kw):
    data = data_cfg(folder, in_memory=False, workers=0) | kw
    return make_batches(open_dataset(data, "test" if kw.pop("split", None) else "train"), indices, batch_size,
                        seed=seed, train=train, data=data)


# ---------------------------------------------------------------------------------------------
# Order, resume, workers


def test_streaming_order_is_deterministic_and_resumes_exactly(folder):
    indices = torch.arange(3, 36, 2)  # 17 samples: batches of 8, 8, 1
    batches = streamed(folder, indices)
    assert isinstance(batches, StreamingBatches) and isinstance(batches.dataset, ImageFolderSplit)
    assert len(batches) == 3 and [len(y) for _, y in batches.epoch(0)] == [8, 8, 1]
    rng_before = torch.get_rng_state()
    x0, y0 = collect(batches, 0)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the global RNG (noise, dropout) is left alone
    x1, y1 = collect(batches, 1)
    assert x0.dtype == torch.float32 and x0.shape == (17, 3, 16, 16)
    labels = batches.dataset.labels
    assert labels.tolist() == [0] * 12 + [1] * 12 + [2] * 12  # the ImageFolder's classes, in order
    # Each epoch is a permutation of the indices, a different one per epoch, the same as the
    # in-memory path's (seed, epoch) order on the CPU.
    order = torch.randperm(17, generator=torch.Generator().manual_seed(3 * 100003))
    assert torch.equal(y0, labels[indices[order]])
    assert not torch.equal(x0, x1)
    # A restart (a new loader, as after resume) gives exactly the same batches of epoch 1,
    # without replaying epoch 0; so does asking again.
    restarted = streamed(folder, indices)
    x1b, y1b = collect(restarted, 1)
    assert torch.equal(x1, x1b) and torch.equal(y1, y1b)
    assert torch.equal(collect(batches, 0)[0], x0)
    assert not torch.equal(collect(streamed(folder, indices, seed=4), 0)[0], x0)  # another seed


def test_streaming_path_gives_the_in_memory_batches(folder):
    """cifar augmentation: the same pixels, order and random draws, bit for bit on the CPU."""
    memory = open_dataset(data_cfg(folder, in_memory=True), "train")
    stream = open_dataset(data_cfg(folder, in_memory=False), "train")
    assert isinstance(memory, ImageDataset) and isinstance(stream, ImageFolderSplit)
    assert memory.classes == stream.classes == list(CLASSES) and torch.equal(memory.labels, stream.labels)
    assert memory.mean == stream.mean and memory.std == stream.std  # the train split's statistics
    indices = torch.arange(0, 36, 3)
    for train in (True, False):
        kw = dict(seed=5, train=train, channels_last=True)
        a = make_batches(memory, indices, 5, data=data_cfg(folder), **kw)
        b = make_batches(stream, indices, 5, data=data_cfg(folder, workers=0), **kw)
        assert isinstance(a, BatchIterator) and len(a) == len(b) == 3
        for (xa, ya), (xb, yb) in zip(a.epoch(2), b.epoch(2), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert xb.is_contiguous(memory_format=torch.channels_last)


def test_order_and_augmentation_do_not_depend_on_workers_and_corrupt_image_is_one_line(tmp_path):
    """imagenet augmentation draws per image from (seed, epoch, index): 0 or 2 worker processes
    give the same batches. A corrupt file decoded in a worker stops with one line naming it."""
    root = make_folder(tmp_path / "ds", train=6, size=(70, 110))
    data = data_cfg(root, resolution=72, augment="imagenet", in_memory="auto")
    split = open_dataset(data, "train")
    assert isinstance(split, ImageFolderSplit) and split.mean == IMAGENET_MEAN
    indices = torch.arange(18)
    zero = make_batches(split, indices, 4, seed=1, train=True, data=data | {"workers": 0})
    two = make_batches(split, indices, 4, seed=1, train=True, data=data | {"workers": 2})
    assert two.workers == 2 and two.loader.persistent_workers
    for epoch in (0, 1):
        for (xa, ya), (xb, yb) in zip(zero.epoch(epoch), two.epoch(epoch), strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and xa.shape[1:] == (3, 72, 72)
    assert not torch.equal(collect(zero, 0)[0], collect(zero, 1)[0])
    two.close()  # now, rather than when the garbage collector gets to it (seconds per worker, see close())

    bad = root / "train" / "bee" / "04.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    broken = make_batches(split, indices, 4, seed=1, train=True, data=data | {"workers": 2})
    with pytest.raises(UserError) as info:
        collect(broken, 0)
    message = str(info.value)
    assert str(bad) in message and "cannot decode" in message
    assert "\n" not in message and "worker" not in message.lower() and "Traceback" not in message
    assert info.value.__cause__ is None  # no worker traceback chained either


def test_corrupt_image_through_the_cli_is_one_line_exit_2(tmp_path, capsys):
    root = make_folder(tmp_path / "ds", train=4, test=1)
    (root / "train" / "cow" / "01.jpg").write_bytes(b"garbage")
    args = ["search", "--preset", "quick", "--data", str(root), "--out", str(tmp_path / "run"), "--no-progress", "--no-plots",
            "--set", "data.in_memory=false", "--set", "data.workers=0", "--set", "data.resolution=16",
            "--set", "space.channels=4", "--set", "space.layers=3", "--set", "space.nodes=2",
            "--set", "batch_size=4", "--set", "epochs=1"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "cow/01.jpg" in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# ImageNet augmentation


def test_random_resized_crop_box_ranges():
    rng = np.random.default_rng(0)
    areas, aspects = [], []
    for _ in range(2000):
        top, left, h, w = random_resized_crop_box(400, 300, rng)
        assert 0 <= top and top + h <= 300 and 0 <= left and left + w <= 400 and h > 0 and w > 0
        areas.append(h * w / (400 * 300))
        aspects.append(w / h)
    assert 0.075 <= min(areas) < 0.1 and max(areas) <= 1.0 and 0.4 < np.mean(areas) < 0.6
    assert min(aspects) >= 0.74 and max(aspects) <= 1.35
    # An image too thin for any window: the central crop at the nearest allowed aspect ratio.
    assert random_resized_crop_box(1000, 10, np.random.default_rng(0)) == (0, 493, 10, 13)
    assert random_resized_crop_box(10, 1000, np.random.default_rng(0)) == (493, 0, 13, 10)


def test_imagenet_eval_is_resize_then_centre_crop():
    import torchvision.transforms.v2.functional as TF

    rng = np.random.default_rng(0)
    small = torch.from_numpy(rng.integers(0, 256, (3, 25, 37), dtype=np.uint8))
    x = torch.nn.functional.interpolate(small[None].float(), size=(200, 300), mode="bicubic")[0].clamp(0, 255).round().to(torch.uint8)
    out = imagenet_eval(x, 56)  # resize to 64 (= 56 / 0.875), centre crop 56
    ref = TF.center_crop(TF.resize(x, [64], antialias=True), [56, 56])
    assert out.shape == (3, 56, 56) and out.dtype == torch.uint8
    assert torch.equal(out, ref)


def test_color_jitter_matches_torchvision():
    import torchvision.transforms.v2.functional as TF

    x = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (3, 20, 20), dtype=np.uint8))
    for seed in range(6):
        out = color_jitter(x, np.random.default_rng(seed), 0.4)
        rng = np.random.default_rng(seed)
        order, factors = rng.permutation(3), rng.uniform(0.6, 1.4, size=3)
        assert all(0.6 <= f <= 1.4 for f in factors)
        ref = x.float() / 255
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
        for k in order:
            ref = ops[k](ref, float(factors[k]))
        assert (out.float() - ref * 255).abs().max() <= 1.0


def test_imagenet_train_view():
    x = torch.arange(3 * 40 * 60, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(3, 40, 60)
    same = [imagenet_train(x, (5, 10, 20, 30), 16, np.random.default_rng(7)) for _ in range(2)]
    assert same[0].shape == (3, 16, 16) and torch.equal(same[0], same[1])
    # Without jitter: the crop, resized, mirrored when the generator's first draw is < 1/2.
    for seed in range(4):
        out = imagenet_train(x, (5, 10, 20, 30), 20, np.random.default_rng(seed), jitter=0)
        crop = torch.nn.functional.interpolate(x[None, :, 5:25, 10:40], size=(20, 20), mode="bilinear",
                                               antialias=True, align_corners=False)[0]
        flipped = np.random.default_rng(seed).random() < 0.5
        assert torch.equal(out, crop.flip(-1) if flipped else crop)


# ---------------------------------------------------------------------------------------------
# Which path, which augmentation: data.in_memory, data.augment and their checks


def test_auto_picks_the_path(folder):
    assert in_memory({"name": "cifar10-mini", "resolution": 32})
    assert augment_style({"name": "cifar10-mini", "resolution": 224}) == "cifar"
    small = data_cfg(folder)
    assert augment_style(small) == "cifar" and in_memory(small)
    # 36 images x 3 x 16 x 16 = 27,648 bytes: over a 20 kB budget it streams.
    assert in_memory(small | {"memory_budget_gb": 27648 / 2**30})
    assert not in_memory(small | {"memory_budget_gb": 20000 / 2**30})
    big = data_cfg(folder, resolution=96)  # above 64 px: ImageNet-like, streams to crop the originals
    assert augment_style(big) == "imagenet" and not in_memory(big)
    assert augment_style(big | {"augment": "cifar"}) == "cifar" and in_memory(big | {"augment": "cifar"})
    assert not in_memory(small | {"in_memory": False}) and in_memory(big | {"augment": "cifar", "in_memory": True})


@pytest.mark.parametrize("setting, words", [
    ("data.in_memory=maybe", "data.in_memory must be auto, true or false"),
    ("data.in_memory=false", "data.in_memory=false streams an ImageFolder directory"),
    ("data.augment=imagenet", "data.augment=imagenet crops full-size images"),
    ("data.augment=autoaugment", "data.augment must be auto, cifar or imagenet"),
    ("data.workers=-1", "data.workers must be a whole number"),
    ("data.workers=two", "data.workers must be int"),
    ("data.memory_budget_gb=0", "data.memory_budget_gb must be a positive number"),
    ("data.memory_budget_gb=.inf", "data.memory_budget_gb must be a finite number"),
    ("data.color_jitter=-0.1", "data.color_jitter must be a number >= 0"),
])
def test_bad_data_settings_are_one_line(setting, words):
    with pytest.raises(UserError) as info:
        resolve_config("quick", overrides=[setting])
    assert words in str(info.value) and "\n" not in str(info.value)


def test_data_keys_resolve(folder):
    cfg = resolve_config("quick", overrides=["data.in_memory=true", "data.workers=3", "data.memory_budget_gb=2"])
    assert cfg["data"]["in_memory"] is True and cfg["data"]["workers"] == 3 and cfg["data"]["memory_budget_gb"] == 2
    assert resolve_config("quick")["data"]["in_memory"] == "auto"
    with pytest.raises(UserError, match="does not keep"):
        resolve_config("quick", overrides=[f"data.name={folder}", "data.in_memory=true", "data.augment=imagenet"])
    from noisydarts.train import resolve_config as train_resolve

    train_cfg = train_resolve({"family": "imagenet", "data": {"name": str(folder)}})
    assert train_cfg["data"]["resolution"] == 224 and augment_style(train_cfg["data"]) == "imagenet"
    with pytest.raises(UserError, match="data.in_memory"):
        train_resolve({"data": {"in_memory": "yes please"}})


# ---------------------------------------------------------------------------------------------
# Search and training, streamed


def tiny_search(root, **data):
    return {"epochs": 2, "batch_size": 8, "plots": False,
            "data": {"name": str(root), "resolution": 16, "workers": 0, **data},
            "space": {"name": "darts", "channels": 4, "layers": 3, "nodes": 2}, "weights": {"lr": 0.05}}


def test_streamed_search_resumes_exactly_and_equals_the_in_memory_search(folder, tmp_path):
    """A 16-px ImageFolder (like ImageNet16-120) searched in both paths: the same run."""
    from noisydarts.search import search

    streamed_cfg = tiny_search(folder, in_memory=False)
    full = search(streamed_cfg, out=tmp_path / "full", progress=False)
    part = tmp_path / "part"
    search(streamed_cfg, out=part, progress=False, stop_after=1)
    resumed = search(resume=part, progress=False)
    assert resumed.alpha_history == full.alpha_history and resumed.genotype == full.genotype
    memory = search(tiny_search(folder, in_memory=True), out=tmp_path / "memory", progress=False)
    assert memory.alpha_history == full.alpha_history
    assert [m["train_loss"] for m in memory.metrics] == [m["train_loss"] for m in full.metrics]


def test_streamed_training_and_evaluation_use_the_imagenet_views(tmp_path):
    from noisydarts.train import evaluate, resolve_config, train

    root = make_folder(tmp_path / "ds", train=3, test=2, size=(70, 100))
    cfg = resolve_config({"epochs": 1, "batch_size": 4, "network": {"channels": 4, "layers": 3, "auxiliary": False},
                          "device": "cpu", "plots": False, "data": {"name": str(root), "resolution": 72, "workers": 0}})
    assert augment_style(cfg["data"]) == "imagenet" and not in_memory(cfg["data"])
    result = train("noisydarts_a", cfg, out=tmp_path / "run", progress=False)
    assert math.isfinite(result.metrics[0]["train_loss"])
    again = evaluate(result.run_dir, device="cpu")
    assert again["images"] == 6 and again["top1"] == pytest.approx(result.metrics[0]["test_acc"])
    # The test view: the centre crop, normalized with ImageNet's statistics.
    test = open_dataset(cfg["data"], "test")
    x, _ = next(iter(make_batches(test, torch.arange(6), 6, seed=0, train=False, data=cfg["data"]).epoch(0)))
    first = folder_mod.decode_image(folder_mod.read_file(test.path(0)), "x")
    assert torch.allclose(x[0], normalize(imagenet_eval(first, 72)[None], test.mean, test.std)[0])
