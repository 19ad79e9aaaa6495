"""Tests of noisydarts.data: embedded dataset, ImageFolder loading and its errors, splits,
batched augmentation and the reproducible batch iterator. No network, no /work/shared."""

import urllib.error

import numpy as np
import pytest
import torch
from PIL import Image

from noisydarts import data
from noisydarts.data import CIFAR10_MEAN, CIFAR10_STD, BatchIterator, ImageDataset, augment, channel_stats, load_dataset, normalize, sample_augment_params, split_indices
from noisydarts.errors import UserError

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_images(n, h=32, w=32, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, h, w), generator=g, dtype=torch.uint8).to(device)


def gen(seed, device="cpu"):
    return torch.Generator(device=device).manual_seed(seed)


def unnormalized(x):
    """Back to the 0..255 integer domain, for outputs normalized with mean 0 and std 1."""
    return (x * 255).round().to(torch.int64)


# ---------------------------------------------------------------------------------------------
# Embedded cifar10-mini


def test_mini_dataset():
    train, test = load_dataset("cifar10-mini", "train"), load_dataset("cifar10-mini", "test")
    for ds, n in ((train, 5000), (test, 1000)):
        assert isinstance(ds, ImageDataset) and len(ds) == n
        assert ds.images.shape == (n, 3, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.images.is_contiguous()
        assert ds.labels.shape == (n,) and ds.labels.dtype == torch.int64
        assert ds.labels.min() >= 0 and ds.labels.max() < 10
        assert torch.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10
        assert ds.classes == CIFAR10_CLASSES
        assert ds.mean == CIFAR10_MEAN and ds.std == CIFAR10_STD
        assert 0.3 < ds.images.float().mean() / 255 < 0.6  # real photos, not blank
    # Decoded once per process: a second load shares the tensors.
    assert load_dataset("cifar10-mini", "train").images is train.images
    # Its pixel statistics are those of CIFAR-10 (JPEG smooths a little, lowering the std).
    mean, std = channel_stats(train.images)
    assert np.allclose(mean, CIFAR10_MEAN, atol=0.02) and np.allclose(std, CIFAR10_STD, atol=0.02)
    assert data.mini_metadata()["splits"]["train"]["images"] == 5000


def test_mini_resolution_and_to():
    ds = load_dataset("cifar10-mini", "test", resolution=16)
    assert ds.images.shape == (1000, 3, 16, 16) and ds.images.dtype == torch.uint8
    moved = ds.to("cpu")
    assert isinstance(moved, ImageDataset) and moved.images.device.type == "cpu" and len(moved) == 1000


# ---------------------------------------------------------------------------------------------
# split_indices


@pytest.mark.parametrize("n,portion", [(5000, 0.5), (7, 0.5), (10, 0.3), (3, 0.0), (3, 1.0), (1, 0.5)])
def test_split_indices(n, portion):
    a, b = split_indices(n, portion, seed=3)
    assert len(a) == round(portion * n) and len(a) + len(b) == n
    assert torch.cat([a, b]).sort().values.tolist() == list(range(n))  # disjoint and covering
    a2, b2 = split_indices(n, portion, seed=3)
    assert torch.equal(a, a2) and torch.equal(b, b2)


def test_split_indices_depends_on_seed():
    assert not torch.equal(split_indices(100, 0.5, 0)[0], split_indices(100, 0.5, 1)[0])


# ---------------------------------------------------------------------------------------------
# normalize / augment


@pytest.mark.parametrize("device", DEVICES)
def test_augment_identity_equals_normalize(device):
    x = random_images(8, device=device)
    ref = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    out = augment(x, gen(0, device), mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_padding=0, flip=False, cutout=0)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    out = augment(x, None, mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_padding=0, flip=False, channels_last=True)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, ref)
    assert torch.equal(normalize(x, CIFAR10_MEAN, CIFAR10_STD, channels_last=True), ref)


def test_normalize_constant_image():
    colour = torch.tensor([10, 128, 250], dtype=torch.uint8)
    x = colour.view(1, 3, 1, 1).expand(4, 3, 32, 32)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    expected = (colour / 255 - torch.tensor(CIFAR10_MEAN)) / torch.tensor(CIFAR10_STD)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), expected, atol=1e-6)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.zeros(3), atol=1e-6)
    # Normalizing with an image set's own statistics gives mean 0, std 1 per channel.
    imgs = random_images(64) // 2 + torch.tensor([0, 40, 100], dtype=torch.uint8).view(1, 3, 1, 1)
    mean, std = channel_stats(imgs)
    out = normalize(imgs, mean, std)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.double().std(dim=(0, 2, 3), unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4)


def test_channel_stats_exact():
    x = random_images(5, 7, 9)
    mean, std = channel_stats(x)
    ref = x.double() / 255
    assert np.allclose(mean, ref.mean(dim=(0, 2, 3)).tolist(), rtol=0, atol=1e-12)
    assert np.allclose(std, ref.std(dim=(0, 2, 3), unbiased=False).tolist(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_flip(device):
    x = random_images(64, device=device)
    kw = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_padding=0, flip=True)
    out = augment(x, gen(5, device), **kw)
    flip = sample_augment_params(x.shape, gen(5, device), device, crop_padding=0, flip=True).flip
    assert 0 < flip.sum() < 64  # both cases occur with this seed
    ref = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    for i in range(64):
        expected = torch.flip(ref[i], dims=[-1]) if flip[i] else ref[i]
        assert torch.equal(out[i], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_crop_is_translation_of_padded_image(device):
    pad = 4
    x = random_images(32, device=device)
    out = augment(x, gen(1, device), mean=(0, 0, 0), std=(1, 1, 1), crop_padding=pad, flip=False)
    got = unnormalized(out)
    padded = torch.nn.functional.pad(x, (pad,) * 4).to(torch.int64)  # zero padding
    offsets = set()
    for i in range(len(x)):
        # Exactly one 32x32 window of the padded input matches (the images are random noise).
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if torch.equal(got[i], padded[i, :, dy:dy + 32, dx:dx + 32])]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 10  # per-sample offsets
    # ...and it is the window whose offset the generator drew.
    p = sample_augment_params(x.shape, gen(1, device), device, crop_padding=pad, flip=False)
    assert p.dy is not None and p.dy.max() <= 2 * pad
    for i in range(len(x)):
        dy, dx = int(p.dy[i]), int(p.dx[i])
        assert torch.equal(got[i], padded[i, :, dy:dy + 32, dx:dx + 32])


@pytest.mark.parametrize("size", [8, 5])
@pytest.mark.parametrize("device", DEVICES)
def test_cutout_zeroes_clipped_square(size, device):
    n, h, w = 200, 32, 24
    x = torch.full((n, 3, h, w), 255, dtype=torch.uint8, device=device)
    kw = dict(crop_padding=0, flip=False, cutout=size)
    out = augment(x, gen(2, device), mean=(0, 0, 0), std=(1, 1, 1), **kw)
    got = unnormalized(out)
    p = sample_augment_params(x.shape, gen(2, device), device, **kw)
    full = 0
    for i in range(n):
        zero = got[i] == 0
        assert torch.equal(zero, zero[:1].expand(3, h, w))  # all channels alike
        assert torch.all(got[i][~zero] == 255)
        rows, cols = zero[0].any(dim=1), zero[0].any(dim=0)
        assert torch.equal(zero[0], rows[:, None] & cols[None, :])  # a rectangle
        y0, x0 = int(p.cy[i]) - size // 2, int(p.cx[i]) - size // 2
        expected_rows = torch.zeros(h, dtype=torch.bool, device=device)
        expected_rows[max(y0, 0):max(y0 + size, 0)] = True
        expected_cols = torch.zeros(w, dtype=torch.bool, device=device)
        expected_cols[max(x0, 0):max(x0 + size, 0)] = True
        assert torch.equal(rows, expected_rows) and torch.equal(cols, expected_cols)
        assert 1 <= rows.sum() <= size and 1 <= cols.sum() <= size  # the centre is always inside
        full += int(rows.sum() == size and cols.sum() == size)
    assert 0 < full < n  # some squares are whole, some clipped at the border


def test_cutout_is_zero_after_normalization():
    """As in DARTS: the cut square is 0 in the normalized output (the dataset's mean colour)."""
    x = random_images(16)
    out = augment(x, gen(0), mean=CIFAR10_MEAN, std=CIFAR10_STD, crop_padding=0, flip=False, cutout=16)
    ref = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    cut = out != ref
    assert torch.all(out[cut] == 0) and cut.sum(dim=(1, 2, 3)).min() >= 3 * 8 * 8


# ---------------------------------------------------------------------------------------------
# BatchIterator


def indexed_dataset(n=103, device="cpu"):
    """Labels are the sample index, so batches tell which samples they hold."""
    return ImageDataset(random_images(n, 8, 8), torch.arange(n), [str(i) for i in range(n)],
                        CIFAR10_MEAN, CIFAR10_STD).to(device)


def collect(it, epoch):
    xs, ys = zip(*it.epoch(epoch))
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("device", DEVICES)
def test_batch_iterator_reproducible(device):
    ds = indexed_dataset(device=device)
    idx, _ = split_indices(len(ds), 0.6, seed=0)
    kw = dict(seed=7, train=True, augment_kwargs=dict(crop_padding=2, cutout=3))
    it = BatchIterator(ds, idx, 16, **kw)
    assert len(it) == 4  # 62 samples: 3 full batches and one of 14
    sizes = [len(y) for _, y in it.epoch(0)]
    assert sizes == [16, 16, 16, 14]
    x0, y0 = collect(it, 0)
    assert x0.dtype == torch.float32 and x0.shape == (62, 3, 8, 8) and y0.device.type == device
    # Every index exactly once per epoch, shuffled.
    assert y0.sort().values.tolist() == idx.tolist() and y0.tolist() != idx.tolist()
    # Same seed and epoch -> identical batches, also from a fresh iterator after other epochs
    # (what a resumed run does).
    for e in (1, 2):
        collect(it, e)
    again = BatchIterator(ds, idx, 16, **kw)
    x0b, y0b = collect(again, 0)
    assert torch.equal(y0, y0b) and torch.equal(x0, x0b)
    # Another epoch or seed: another order and other augmentations.
    x1, y1 = collect(it, 1)
    assert y1.sort().values.tolist() == idx.tolist() and not torch.equal(y0, y1)
    assert not torch.equal(y0, collect(BatchIterator(ds, idx, 16, **{**kw, "seed": 8}), 0)[1])


def test_batch_iterator_eval_and_drop_last():
    ds = indexed_dataset()
    idx = torch.arange(50, 103)
    it = BatchIterator(ds, idx, 10, seed=0, train=False, channels_last=True)
    assert len(it) == 6
    x, y = collect(it, 3)
    assert torch.equal(y, idx)  # fixed order, no augmentation
    assert torch.equal(x, normalize(ds.images[idx], ds.mean, ds.std))
    assert next(it.epoch(0))[0].is_contiguous(memory_format=torch.channels_last)
    it = BatchIterator(ds, idx, 10, seed=0, train=True, drop_last=True)
    assert len(it) == 5 and [len(y) for _, y in it.epoch(0)] == [10] * 5


def test_batch_iterator_without_augmentation_only_shuffles():
    ds = indexed_dataset()
    it = BatchIterator(ds, torch.arange(len(ds)), 32, seed=1, train=True,
                       augment_kwargs=dict(crop_padding=0, flip=False))
    x, y = collect(it, 0)
    assert torch.equal(x, normalize(ds.images[y], ds.mean, ds.std))


# ---------------------------------------------------------------------------------------------
# ImageFolder directories


def save(path, size=(32, 32), colour=(255, 0, 0), mode="RGB", fmt=None, noise_seed=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    if noise_seed is not None:
        arr = np.random.default_rng(noise_seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr)
    else:
        img = Image.new("RGB", size, colour)
    img.convert(mode).save(path, format=fmt)


COLOURS = {"cat": (255, 0, 0), "dog": (0, 255, 0), "emu": (0, 0, 255)}


def make_folder(root, classes=("cat", "dog", "emu"), per_class=(3, 2)):
    """Solid-colour images per class, in assorted formats, modes and sizes."""
    kinds = [("png", (40, 30), "RGB"), ("jpg", (16, 16), "RGB"), ("png", (32, 32), "RGBA"), ("bmp", (20, 50), "RGB")]
    for split, count in zip(("train", "test"), per_class):
        for c in classes:
            for i in range(count):
                ext, size, mode = kinds[(i + len(c)) % len(kinds)]
                save(root / split / c / f"{i:03d}.{ext}", size, COLOURS.get(c, (9, 9, 9)), mode)
    return root


def test_image_folder(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "train" / "cat" / "notes.txt").write_text("not an image, ignored")
    (root / "train" / "cat" / ".hidden.png").write_bytes(b"ignored")
    train = load_dataset(str(root), "train", resolution=24)
    test = load_dataset(root, "test", resolution=24)
    assert train.classes == test.classes == ["cat", "dog", "emu"]
    assert train.images.shape == (9, 3, 24, 24) and train.images.dtype == torch.uint8
    assert test.images.shape == (6, 3, 24, 24)
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    for ds in (train, test):  # every image, whatever its size and format, became its class colour
        for img, label in zip(ds.images, ds.labels):
            colour = torch.tensor(COLOURS[ds.classes[label]], dtype=torch.int64).view(3, 1, 1)
            assert (img.to(torch.int64) - colour).abs().max() <= 3  # JPEG is lossy
    # Statistics come from the train images; test uses the train statistics.
    assert train.mean == test.mean and train.std == test.std
    mean, std = channel_stats(train.images)
    assert np.allclose(train.mean, mean) and np.allclose(train.std, std)
    assert np.allclose(train.mean, [1 / 3] * 3, atol=0.01)


def test_image_folder_default_resolution_and_wrapper_dir(tmp_path):
    # Like the unpacked cifar10-jpeg.tar.gz: DIR/cifar10/{train,test}.
    make_folder(tmp_path / "cifar10", classes=("a", "b"))
    for i in range(2):  # noisy images keep their content at their own size
        save(tmp_path / "cifar10" / "train" / "a" / f"noise{i}.png", noise_seed=i)
    ds = load_dataset(str(tmp_path), "train")
    assert ds.images.shape == (8, 3, 32, 32) and ds.classes == ["a", "b"]
    noise = np.array(Image.open(tmp_path / "cifar10" / "train" / "a" / "noise0.png"))
    assert torch.equal(ds.images[3], torch.from_numpy(noise).permute(2, 0, 1))


@pytest.mark.parametrize("problem,expected", [
    ("missing", "does not exist"),
    ("file", "not a directory"),
    ("no_train", "no train/"),
    ("empty", "no images"),
    ("one_class", "at least 2"),
    ("mismatch", "differ between train/ and test/"),
    ("empty_class", "have no images"),
    ("corrupt", "bad.jpg"),
    ("truncated", "cut.jpg"),
    ("corrupt_png", "bad.png"),
])
def test_image_folder_errors(tmp_path, problem, expected):
    root = tmp_path / "ds"
    if problem == "missing":
        pass
    elif problem == "file":
        root.write_text("x")
    elif problem in ("no_train", "no_test"):
        make_folder(root)
        import shutil
        shutil.rmtree(root / ("train" if problem == "no_train" else "test"))
    elif problem == "empty":
        for split in ("train", "test"):
            for c in ("cat", "dog"):
                (root / split / c).mkdir(parents=True)
    elif problem == "one_class":
        make_folder(root, classes=("cat",))
    elif problem == "mismatch":
        make_folder(root)
        (root / "test" / "emu").rename(root / "test" / "eel")
    elif problem == "empty_class":
        make_folder(root)
        (root / "train" / "yak").mkdir()
        (root / "test" / "yak").mkdir()
    elif problem == "corrupt":
        make_folder(root)
        (root / "train" / "dog" / "bad.jpg").write_bytes(b"this is not a jpeg")
    elif problem == "truncated":
        make_folder(root)
        save(root / "train" / "dog" / "cut.jpg", noise_seed=0)
        blob = (root / "train" / "dog" / "cut.jpg").read_bytes()
        (root / "train" / "dog" / "cut.jpg").write_bytes(blob[: len(blob) // 2])
    elif problem == "corrupt_png":
        make_folder(root)
        (root / "train" / "emu" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UserError) as info:
        load_dataset(str(root), "train")
    message = str(info.value)
    assert expected in message and "\n" not in message
    if problem == "mismatch":
        assert "emu" in message and "eel" in message


def test_unknown_dataset_name():
    with pytest.raises(UserError) as info:
        load_dataset("imagenet", "train")
    message = str(info.value)
    assert "imagenet" in message and all(n in message for n in data.DATASETS) and "directory" in message


def test_bad_arguments():
    with pytest.raises(UserError, match="resolution"):
        load_dataset("cifar10-mini", "train", resolution=0)
    with pytest.raises(ValueError):
        load_dataset("cifar10-mini", "validation")


# ---------------------------------------------------------------------------------------------
# cifar10 / cifar100 through torchvision (faked: the tests never touch the network)


class FakeCIFAR:
    calls: list = []
    present = True
    classes = ["c0", "c1"]

    def __init__(self, root, train, download):
        FakeCIFAR.calls.append(download)
        if download:
            raise urllib.error.URLError("no network")
        if not FakeCIFAR.present:
            raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
        n = 6 if train else 4
        self.data = np.arange(n * 32 * 32 * 3, dtype=np.int64).astype(np.uint8).reshape(n, 32, 32, 3)
        self.targets = [i % 2 for i in range(n)]


@pytest.fixture
def fake_cifar(monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR)
    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR)
    FakeCIFAR.calls = []
    data._load_torchvision.cache_clear()
    yield FakeCIFAR
    data._load_torchvision.cache_clear()


def test_cifar_present_needs_no_download(fake_cifar, tmp_path):
    fake_cifar.present = True
    ds = load_dataset("cifar100", "train", root=str(tmp_path))
    assert fake_cifar.calls == [False]
    assert ds.images.shape == (6, 3, 32, 32) and ds.images.is_contiguous()
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1] and ds.mean == data.CIFAR100_MEAN
    expected = torch.from_numpy(FakeCIFAR(None, True, False).data).permute(0, 3, 1, 2)
    assert torch.equal(ds.images, expected)  # NHWC -> NCHW, pixel for pixel


def test_cifar_offline_raises_user_error(fake_cifar, tmp_path):
    fake_cifar.present = False
    with pytest.raises(UserError) as info:
        load_dataset("cifar10", "test", root=str(tmp_path))
    message = str(info.value)
    assert fake_cifar.calls == [False, True]
    assert "download" in message and "--data" in message and "cifar10-mini" in message


def test_a_cutout_that_blanks_every_image_is_refused_in_one_line():
    """A cutout square of side >= 2R - 1 covers an R x R image wherever it is centred (DARTS' 16 px
    square at 8 px): the supernet would see only blank images. One below that is accepted."""
    import torch

    from noisydarts.data.augment import augment
    from noisydarts.errors import UserError
    from noisydarts.search import resolve_config

    with pytest.raises(UserError, match=r"data.cutout=16 blanks every 8 px image.*data.cutout=4"):
        resolve_config("amended-s1", overrides=["data.resolution=8"])
    assert resolve_config("amended-s1", overrides=["data.resolution=8", "data.cutout=14"])["data"]["cutout"] == 14
    # the rule against the augmentation itself: side 2R - 1 blanks all of every image, side 2R - 2 does not
    images = torch.full((64, 3, 8, 8), 200, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    for side, blank in ((16, True), (15, True), (14, False)):
        out = augment(images, g, mean=(0, 0, 0), std=(1, 1, 1), crop_padding=0, flip=False, cutout=side)
        assert bool((out == 0).all()) is blank
