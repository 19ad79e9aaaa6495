"""The decoded-image cache (noisydarts.data.cache): a second load decodes nothing and gives the
pixels of a direct decode; a changed, added or removed file is noticed; a damaged entry is rebuilt
with a warning; data.limit decodes only what it batches; data.cache=false writes nothing; an
unwritable cache directory only costs a warning."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from noisydarts.data import cache as cache_mod
from noisydarts.data import memory as memory_mod
from noisydarts.data import decode_files, folder_split, load_dataset, make_batches, open_dataset


@pytest.fixture
def decodes(monkeypatch):
    """The images decoded from now on (file names), counted at the cache's decode call."""
    seen = []
    real = cache_mod.decode_sized

    def counting(blob, name, *args, **kwargs):
        seen.append(os.path.basename(name))
        return real(blob, name, *args, **kwargs)

    monkeypatch.setattr(cache_mod, "decode_sized", counting)
    return seen


def make_folder(root, per_class=10, seed=0):
    """Two class folders of noise PNGs of assorted sizes (10-14 px)."""
    rng = np.random.default_rng(seed)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            h = w = int(rng.integers(10, 15))  # square: resized, never squashed
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / cls / f"{i:02d}.png")
    return root


def load(root, cache_dir, split="train", **kw):
    return load_dataset(str(root), split, 8, cache_dir=str(cache_dir), **kw)


def direct(root, split="train"):
    part = folder_split(root, split)
    return decode_files(part.split_files, 8)


def entry_files(cache_dir, suffix):
    found = sorted(cache_dir.glob(f"*{suffix}"))
    assert len(found) == 1
    return found[0]


def test_second_load_decodes_nothing_and_equals_a_direct_decode(tmp_path, decodes):
    root, cache_dir = make_folder(tmp_path / "ds"), tmp_path / "cache"
    first = load(root, cache_dir)
    assert len(decodes) == 18  # 20 images, 2 held out (data.val_split null: 0.1)
    assert torch.equal(first.images, direct(root))
    header = json.loads(entry_files(cache_dir, ".json").read_text())
    assert header["count"] == 20 and header["resolution"] == 8 and len(header["stats"]) == 1
    decodes.clear()
    second, test = load(root, cache_dir), load(root, cache_dir, "test")
    assert len(decodes) == 2  # only the held-out images; one entry covers the pool
    assert torch.equal(second.images, first.images) and (second.mean, second.std) == (first.mean, first.std)
    assert torch.equal(test.images, direct(root, "test")) and test.mean == first.mean
    decodes.clear()
    load(root, cache_dir, val_split=0.5, split_seed=3)  # another held-out split: the same entry
    assert decodes == [] and len(list(cache_dir.glob("*.u8"))) == 1


def test_a_changed_added_or_removed_file_is_decoded_again(tmp_path, decodes):
    root, cache_dir = make_folder(tmp_path / "ds"), tmp_path / "cache"
    load(root, cache_dir, val_split=None)
    load(root, cache_dir, "test")
    decodes.clear()
    image = root / "a" / "03.png"
    st = image.stat()
    os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    load(root, cache_dir)
    load(root, cache_dir, "test")
    assert decodes == ["03.png"] and len(list(cache_dir.glob("*.u8"))) == 1  # the old entry is gone
    decodes.clear()
    Image.new("RGB", (12, 12), (1, 2, 3)).save(image)  # new content
    Image.new("RGB", (9, 9), (7, 8, 9)).save(root / "b" / "zz.png")  # added
    (root / "b" / "00.png").unlink()  # removed
    part = folder_split(root, "train")
    ds = load(root, cache_dir)
    load(root, cache_dir, "test")
    assert sorted(decodes) == ["03.png", "zz.png"]
    assert torch.equal(ds.images, direct(root)) and len(part.files) == 20
    assert ds.images[part.split_files.index(str(image))].flatten(1).float().mean(1).round().tolist() == [1, 2, 3]


@pytest.mark.parametrize("damage", ["flipped_bytes", "truncated", "header", "index"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(tmp_path, decodes, damage):
    root, cache_dir = make_folder(tmp_path / "ds"), tmp_path / "cache"
    expected = load(root, cache_dir, val_split=None).images.clone()
    decodes.clear()
    pixels = entry_files(cache_dir, ".u8")
    if damage == "flipped_bytes":
        data = bytearray(pixels.read_bytes())
        data[5] ^= 0xFF
        data[3 * 64 * 7 + 1] ^= 0x01  # image 7
        pixels.write_bytes(bytes(data))
        message, redone = "2 image\\(s\\) in the decoded-image cache .* fail their checksum", 2
    elif damage == "truncated":
        os.truncate(pixels, pixels.stat().st_size // 2)
        message, redone = "is damaged \\(a file of it has the wrong size\\)", 18
    elif damage == "header":
        entry_files(cache_dir, ".json").write_text('{"format": 1, "key": "not')
        message, redone = "is damaged \\(its header does not read", 18
    else:
        index = entry_files(cache_dir, ".index")
        index.write_bytes(b"\xff" * index.stat().st_size)
        message, redone = "is damaged \\(its index holds unknown values\\)", 18
    with pytest.warns(UserWarning, match=message):
        again = load(root, cache_dir)
    assert torch.equal(again.images, expected) and len(decodes) == redone
    decodes.clear()
    assert torch.equal(load(root, cache_dir).images, expected) and decodes == []  # repaired for good


def test_rows_a_killed_process_left_undecoded_are_decoded_without_a_warning(tmp_path, decodes, recwarn):
    root, cache_dir = make_folder(tmp_path / "ds"), tmp_path / "cache"
    expected = load(root, cache_dir).images.clone()
    index = np.memmap(entry_files(cache_dir, ".index"), cache_mod.INDEX_DTYPE, "r+")
    index["state"][folder_split(root, "train").rows[[4, 11]]] = cache_mod.MISSING  # pixels written, state not: kill -9
    index.flush()
    del index
    decodes.clear()
    assert torch.equal(load(root, cache_dir).images, expected) and len(decodes) == 2
    assert not [w for w in recwarn if "decoded-image cache" in str(w.message)]


def test_data_limit_decodes_only_the_images_it_batches(tmp_path, decodes, monkeypatch):
    monkeypatch.setattr(memory_mod, "STATS_SAMPLE", 3)  # the statistics' sample: 3 evenly spaced images
    root, cache_dir = make_folder(tmp_path / "ds"), tmp_path / "cache"
    data = {"name": str(root), "resolution": 8, "in_memory": True, "limit": 4, "cache_dir": str(cache_dir)}
    ds = open_dataset(data, "train")
    assert len(ds) == 18 and len(decodes) == 3
    indices = torch.tensor([1, 5, 9, 17])
    batches = make_batches(ds, indices, 4, seed=0, train=False, data=data)
    assert len(decodes) == 3 + 3  # index 17 is the last image of the statistics' sample, decoded already
    x, y = next(iter(batches.epoch(0)))
    full = load(root, cache_dir, val_split=None)
    from noisydarts.data import normalize

    assert torch.equal(x, normalize(full.images[indices], full.mean, full.std)) and torch.equal(y, full.labels[indices])
    assert (ds.images[0] == 0).all()  # never batched: never decoded


def test_cache_off_writes_nothing_and_an_unwritable_directory_warns(tmp_path, decodes):
    root = make_folder(tmp_path / "ds")
    expected = direct(root)
    off = tmp_path / "off"
    ds = load(root, off, cache=False)
    assert torch.equal(ds.images, expected) and not off.exists() and len(decodes) == 18
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.warns(UserWarning, match="cannot use the decoded-image cache .*a-file/cache.*: decoding in memory"):
        ds = load(root, blocker / "cache")
    assert torch.equal(ds.images, expected)
