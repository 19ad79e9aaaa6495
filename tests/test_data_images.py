"""Every image mode and file kind an ImageFolder can hold, and what noisydarts.data does with it:
converted (to the expected pixels), or refused in one line naming the file. The decisions are
listed in noisydarts/data/folder.py. Generated files only."""

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from noisydarts.data import decode_image, list_images, load_dataset, open_dataset
from noisydarts.data import folder as folder_mod
from noisydarts.errors import UserError


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def decoded(blob: bytes) -> np.ndarray:
    """HWC int array, as the loaders decode `blob`."""
    x = decode_image(blob, "img")
    assert x.dtype == torch.uint8 and x.shape[0] == 3
    return x.permute(1, 2, 0).numpy().astype(np.int64)


def refused(blob: bytes, *words: str) -> str:
    with pytest.raises(UserError) as info:
        decode_image(blob, "the/file.png")
    message = str(info.value)
    assert "\n" not in message and "the/file.png" in message
    for w in words:
        assert w in message
    return message


def png_16bit(values: np.ndarray) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): grey for [H, W], RGB for [H, W, 3]."""
    h, w = values.shape[:2]
    colour_type = 2 if values.ndim == 3 else 0
    rows = values.astype(">u2").reshape(h, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


GREY16 = np.array([[0, 128, 257 * 100, 32896], [40000, 65279, 65534, 65535]], dtype=np.uint16)
GREY16_AS_8 = (GREY16.astype(np.int64) + 128) // 257  # round(v / 257)


# ---------------------------------------------------------------------------------------------
# 16 bits


def test_16bit_grey_png_is_scaled_not_white():
    blob = png_16bit(GREY16)
    assert Image.open(io.BytesIO(blob)).mode == "I;16"
    assert Image.open(io.BytesIO(blob)).convert("RGB").getpixel((0, 1)) == (255, 255, 255)  # Pillow's bug
    out = decoded(blob)
    assert out.shape == (2, 4, 3)
    assert np.array_equal(out, np.repeat(GREY16_AS_8[..., None], 3, axis=2))
    assert GREY16_AS_8.tolist() == [[0, 0, 100, 128], [156, 254, 255, 255]]


def test_16bit_grey_tiff_and_pgm():
    tiff = encode(Image.fromarray(GREY16), "TIFF")
    pgm = encode(Image.fromarray(GREY16), "PPM")  # 16-bit PGM: Pillow reads it as mode I
    assert Image.open(io.BytesIO(pgm)).mode == "I"
    for blob in (tiff, pgm):
        assert np.array_equal(decoded(blob)[..., 0], GREY16_AS_8)


def test_16bit_rgb_png_keeps_its_colours():
    values = np.zeros((2, 2, 3), dtype=np.uint16)
    values[0, 0] = (65535, 0, 32896)
    values[1, 1] = (1000, 50000, 20000)
    out = decoded(png_16bit(values))
    assert np.abs(out - values / 257).max() <= 1  # Pillow keeps the high byte


def test_32bit_integer_and_float_images():
    ok = Image.fromarray(GREY16.astype(np.int32))  # mode I within 16 bits: read as 16-bit
    assert np.array_equal(decoded(encode(ok, "TIFF"))[..., 0], GREY16_AS_8)
    too_big = Image.fromarray((GREY16.astype(np.int32) + 1) * 1000)
    refused(encode(too_big, "TIFF"), "0..65535")
    floats = Image.fromarray(np.linspace(0, 1, 8, dtype=np.float32).reshape(2, 4))
    assert floats.mode == "F"
    refused(encode(floats, "TIFF"), "float")


# ---------------------------------------------------------------------------------------------
# Palette, grey, 1-bit, CMYK


def test_palette_grey_and_1bit():
    pal = Image.new("P", (3, 2), 2)
    pal.putpalette([0, 0, 0, 10, 200, 30, 250, 5, 60] + [0] * 759)
    pal.putpixel((0, 0), 1)
    out = decoded(encode(pal, "PNG"))
    assert out[0, 0].tolist() == [10, 200, 30] and out[1, 2].tolist() == [250, 5, 60]
    out = decoded(encode(pal, "GIF"))
    assert out[0, 0].tolist() == [10, 200, 30]

    grey = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    assert decoded(encode(grey, "PNG")).tolist() == [[[0] * 3, [77] * 3, [255] * 3]]
    one = Image.new("1", (4, 1), 0)
    one.putpixel((2, 0), 1)
    for fmt in ("PNG", "BMP"):
        assert decoded(encode(one, fmt))[0, :, 0].tolist() == [0, 0, 255, 0]


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk(fmt):
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = decoded(encode(img, fmt, **({"quality": 100} if fmt == "JPEG" else {})))
    assert np.abs(out - np.array([255, 0, 0])).max() <= (0 if fmt == "TIFF" else 3)


# ---------------------------------------------------------------------------------------------
# Transparency: composited over white


def test_rgba_and_la_are_composited_over_white():
    rgba = Image.new("RGBA", (3, 1))
    rgba.putdata([(200, 40, 10, 255), (200, 40, 10, 0), (200, 40, 10, 128)])
    out = decoded(encode(rgba, "PNG"))
    assert out[0, 0].tolist() == [200, 40, 10]           # opaque: its colour
    assert out[0, 1].tolist() == [255, 255, 255]         # transparent: white, not the stored colour
    half = np.array([200, 40, 10]) * 128 / 255 + 255 * 127 / 255
    assert np.abs(out[0, 2] - half).max() <= 1
    la = Image.new("LA", (2, 1))
    la.putdata([(60, 255), (60, 0)])
    assert decoded(encode(la, "PNG"))[0].tolist() == [[60] * 3, [255] * 3]
    webp = decoded(encode(rgba, "WEBP", lossless=True))
    assert webp[0, 1].tolist() == [255, 255, 255]


def test_palette_with_transparent_colour():
    pal = Image.new("P", (2, 1), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.putpixel((0, 0), 0)  # colour 0 (black) is the transparent one
    for fmt in ("PNG", "GIF"):
        out = decoded(encode(pal, fmt, transparency=0))
        assert out[0].tolist() == [[255, 255, 255], [10, 200, 30]]


# ---------------------------------------------------------------------------------------------
# Orientation, frames


def two_halves(size=(64, 32)):
    img = Image.new("RGB", size, (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half red, right half blue
    return img


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    for fmt, kw in (("JPEG", {"quality": 95}), ("PNG", {})):
        out = decoded(encode(two_halves(), fmt, exif=exif.tobytes(), **kw))
        assert out.shape == (64, 32, 3)  # upright: portrait
        assert np.abs(out[8, 16] - [255, 0, 0]).max() < 30 and np.abs(out[56, 16] - [0, 0, 255]).max() < 30
    plain = decoded(encode(two_halves(), "PNG"))
    assert plain.shape == (32, 64, 3) and plain[16, 8].tolist() == [255, 0, 0]


def test_jpeg_draft_decoding_with_orientation():
    """A large rotated JPEG decoded smaller (DCT scaling) is the same picture, upright."""
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees counter-clockwise to view: the left (red) half goes to the bottom
    blob = encode(two_halves((640, 320)), "JPEG", quality=95, exif=exif.tobytes())
    full = decode_image(blob, "x")
    small = decode_image(blob, "x", plan=lambda w, h: 4)
    assert tuple(full.shape) == (3, 640, 320) and tuple(small.shape) == (3, 160, 80)
    assert small[:, 150, 40].tolist()[0] > 200 and small[:, 10, 40].tolist()[2] > 200


@pytest.mark.parametrize("fmt", ["GIF", "TIFF", "WEBP"])
def test_multi_frame_images_give_the_first_frame(fmt):
    frames = [Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    blob = encode(frames[0], fmt, save_all=True, append_images=frames[1:], **kw)
    assert Image.open(io.BytesIO(blob)).n_frames == 2
    assert np.abs(decoded(blob) - [255, 0, 0]).max() <= 2


# ---------------------------------------------------------------------------------------------
# Broken content


def test_corrupt_truncated_and_misnamed_files():
    refused(b"this is not an image", "not a recognized image format")
    png = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)), "PNG")
    refused(png[: len(png) // 2], "cannot decode")
    jpeg = encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)), "JPEG")
    refused(jpeg[: len(jpeg) // 2], "truncated")
    # The content decides, not the extension: a PNG named .jpg loads.
    assert decoded(png).shape == (32, 32, 3)


# ---------------------------------------------------------------------------------------------
# File kinds in a folder


def make_folder(root, per_class=2):
    for split in ("train", "test"):
        for c, colour in (("cat", (255, 0, 0)), ("dog", (0, 255, 0))):
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), colour).save(root / split / c / f"{i}.png")
    return root


def load_error(root, path=None) -> str:
    folder_mod.list_split.cache_clear()
    with pytest.raises(UserError) as info:
        load_dataset(str(root), "train", resolution=8)
    message = str(info.value)
    assert "\n" not in message
    if path is not None:
        assert str(path) in message
    return message


def test_misnamed_png_and_directory_named_like_an_image(tmp_path):
    root = make_folder(tmp_path / "ds")
    Image.new("RGB", (8, 8), (255, 0, 0)).save(root / "train" / "cat" / "real.jpg", format="PNG")
    nested = root / "train" / "dog" / "album.jpg"  # a directory, searched like any other
    nested.mkdir()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(nested / "inside.png")
    folder_mod.list_split.cache_clear()
    ds = load_dataset(str(root), "train", resolution=8)
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    files = list_images(root / "train" / "dog")
    assert [os.path.relpath(f, root / "train" / "dog") for f in files] == ["0.png", "1.png", "album.jpg/inside.png"]
    assert ds.images[2, :, 0, 0].tolist() == [255, 0, 0]


def test_empty_file(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "train" / "dog" / "empty.jpg").write_bytes(b"")
    assert "empty" in load_error(root, root / "train" / "dog" / "empty.jpg")


def test_unreadable_file(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "ds")
    locked = root / "train" / "cat" / "locked.png"
    Image.new("RGB", (8, 8)).save(locked)
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the read fail as it would for a user

        def deny(path, *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return open(path, *args, **kwargs)

        monkeypatch.setattr(folder_mod, "open", deny, raising=False)
    message = load_error(root, locked)
    assert "cannot read" in message and "Permission denied" in message
    locked.chmod(0o644)


def test_unreadable_folder(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "ds")
    locked = root / "train" / "dog" / "private"
    locked.mkdir()
    locked.chmod(0)
    if os.geteuid() == 0:
        scandir = os.scandir

        def deny(path):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return scandir(path)

        monkeypatch.setattr(os, "scandir", deny)
    message = load_error(root, locked)
    assert "cannot list" in message and "Permission denied" in message
    locked.chmod(0o755)


def test_broken_symlink_and_fifo(tmp_path):
    root = make_folder(tmp_path / "ds")
    link = root / "train" / "cat" / "gone.jpg"
    link.symlink_to(tmp_path / "nowhere.jpg")
    assert "broken symbolic link" in load_error(root, link)
    link.unlink()
    (root / "train" / "cat" / "unnamed").symlink_to(tmp_path / "nowhere")  # not named like an image: ignored
    fifo = root / "train" / "dog" / "pipe.png"
    os.mkfifo(fifo)
    assert "not a regular file" in load_error(root, fifo)


def test_symlink_loops_load_each_image_once(tmp_path):
    root = make_folder(tmp_path / "ds")
    cat = root / "train" / "cat"
    (cat / "again").symlink_to(cat)                 # loop onto itself
    (cat / "sub").mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(cat / "sub" / "deep.png")
    (cat / "sub" / "up").symlink_to(cat)            # loop through a subfolder
    (cat / "split").symlink_to(root / "train")      # up to the split: would pull the dog images into cat
    shared = tmp_path / "shared"
    shared.mkdir()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(shared / "s.png")
    (cat / "link1").symlink_to(shared)              # two links to one folder: read once
    (cat / "link2").symlink_to(shared)
    files = [os.path.relpath(f, cat) for f in list_images(cat)]
    assert files == ["0.png", "1.png", "link1/s.png", "sub/deep.png"]
    folder_mod.list_split.cache_clear()
    ds = load_dataset(str(root), "train", resolution=8)
    assert ds.labels.tolist() == [0, 0, 0, 0, 1, 1]


def test_every_mode_in_one_folder_loads_the_same_in_both_paths(tmp_path):
    """A folder mixing the modes above: the in-memory and the streaming path give the same pixels."""
    root = make_folder(tmp_path / "ds")
    cat = root / "train" / "cat"
    (cat / "grey16.png").write_bytes(png_16bit(GREY16 * 0 + 40000))
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cat / "cmyk.tif")
    Image.new("LA", (8, 8), (90, 0)).save(cat / "la.png")
    Image.new("1", (8, 8), 1).save(cat / "one.bmp")
    folder_mod.list_split.cache_clear()
    data = {"name": str(root), "resolution": 8, "in_memory": True}
    memory = open_dataset(data, "train")
    streamed = open_dataset(data | {"in_memory": False}, "train")
    assert len(streamed) == len(memory) == 8
    from noisydarts.data import make_batches

    batches = make_batches(streamed, torch.arange(8), 8, seed=0, train=False, data=data | {"in_memory": False, "workers": 0})
    x, y = next(iter(batches.epoch(0)))
    from noisydarts.data import normalize

    assert torch.equal(y, memory.labels) and torch.equal(x, normalize(memory.images, memory.mean, memory.std))
    by_name = {os.path.basename(streamed.path(i)): memory.images[i, :, 0, 0].tolist() for i in range(len(streamed))}
    assert by_name["grey16.png"] == [156] * 3 and by_name["cmyk.tif"] == [255, 0, 0]
    assert by_name["la.png"] == [255] * 3 and by_name["one.bmp"] == [255] * 3
