"""The layouts of an image folder people have (class folders alone, train/ alone, train/ with test/
or val/), the held-out test split (data.val_split, data.split_seed), the one-line refusals, the
summary line, and how non-square images are made square (data.resize)."""

import numpy as np
import pytest
import torch
from PIL import Image

from noisydarts.data import check_dataset, data_summary_line, describe_data, find_folder_layout, held_out_rows, load_dataset, make_batches, open_dataset
from noisydarts.data.factory import validate_data_config
from noisydarts.errors import UserError

COLOURS = {"ant": (250, 0, 0), "bee": (0, 250, 0), "cow": (0, 0, 250)}


def make_classes(folder, counts=(("ant", 10), ("bee", 10), ("cow", 1))):
    """Class folders of 8x8 PNGs; image i of a class is its colour with i in the last pixel."""
    for cls, n in counts:
        (folder / cls).mkdir(parents=True)
        for i in range(n):
            pixels = np.zeros((8, 8, 3), np.uint8) + np.array(COLOURS[cls], np.uint8)
            pixels[7, 7] = i
            Image.fromarray(pixels).save(folder / cls / f"{i:02d}.png")
    return folder


def identities(ds):
    """(class, image number) of every image of an in-memory dataset."""
    return {(int(y), int(x[0, 7, 7])) for x, y in zip(ds.images, ds.labels)}


def data_cfg(root, **kw):
    return {"name": str(root), "resolution": 8, "in_memory": True, **kw}


def test_class_folders_hold_out_a_stratified_seeded_test_split(tmp_path):
    root = make_classes(tmp_path / "pets")
    layout = find_folder_layout(root)
    assert layout.kind == "class folders" and layout.classes == ("ant", "bee", "cow") and layout.test is None
    train, test = open_dataset(data_cfg(root), "train"), open_dataset(data_cfg(root), "test")
    # data.val_split null: 0.1 of 21 images = 2 held out, one per big class; cow's only image trains.
    assert len(train) == 19 and len(test) == 2 and sorted(test.labels.tolist()) == [0, 1]
    assert identities(train).isdisjoint(identities(test)) and len(identities(train) | identities(test)) == 21
    assert train.mean == test.mean  # the test split is normalized with the training split's statistics
    again = open_dataset(data_cfg(root, limit=None), "test")
    assert identities(again) == identities(test)  # every command holds out the same images
    other = open_dataset(data_cfg(root, split_seed=1, val_split=0.3), "test")
    assert len(other) == 6 and identities(other) != identities(test)
    described = describe_data(data_cfg(root))
    assert described["layout"] == "class folders" and described["images"] == {"train": 19, "test": 2}
    assert data_summary_line(described) == (f"data {root} (class folders): 3 classes, 21 images: 19 train, 2 held out "
                                            "(data.val_split 0.1, split seed 0); 8 px")
    search_line = data_summary_line(describe_data(data_cfg(root), splits=("train",)))
    assert search_line == f"data {root} (class folders): 3 classes, 19 train images (2 held out: data.val_split 0.1, split seed 0); 8 px"


def test_held_out_rows_are_stratified_and_keep_a_training_image_per_class():
    labels = [0] * 7 + [1] * 3 + [2]
    held = held_out_rows(labels, 0.5, seed=0)
    counts = np.bincount(np.asarray(labels)[held], minlength=3)
    assert len(held) == 6 and counts.tolist() == [4, 2, 0]  # 5.5 rounds up; remainders of 0.5; cow keeps its one
    assert np.array_equal(held, held_out_rows(labels, 0.5, seed=0)) and not np.array_equal(held, held_out_rows(labels, 0.5, seed=3))
    assert held_out_rows([0, 1], 0.9, seed=0).size == 0  # one image per class: all train


def test_train_only_and_train_with_val_or_test(tmp_path):
    only = make_classes(tmp_path / "only" / "train")
    layout = find_folder_layout(only.parent)
    assert layout.kind == "train/" and layout.pool == only
    assert len(open_dataset(data_cfg(only.parent), "train")) == 19
    assert len(open_dataset(data_cfg(only.parent, in_memory=False), "test")) == 2  # streamed: the same split
    both = make_classes(tmp_path / "both" / "train")
    make_classes(both.parent / "val", (("ant", 2), ("bee", 3), ("cow", 1)))
    assert find_folder_layout(both.parent).kind == "train/ + val/"
    assert len(load_dataset(str(both.parent), "train", 8)) == 21 and len(load_dataset(str(both.parent), "test", 8)) == 6
    make_classes(both.parent / "test", (("ant", 1), ("bee", 1), ("cow", 1)))  # test/ wins over val/
    assert find_folder_layout(both.parent).kind == "train/ + test/"
    assert len(load_dataset(str(both.parent), "test", 8)) == 3
    line = data_summary_line(describe_data(data_cfg(both.parent)))
    assert line == f"data {both.parent} (train/ + test/): 3 classes, 24 images: 21 train, 3 test; 8 px"


def test_search_never_reads_the_test_folder(tmp_path):
    root = make_classes(tmp_path / "ds" / "train")
    (tmp_path / "ds" / "test" / "ant").mkdir(parents=True)  # an unusable test split: no images, classes differ
    with pytest.raises(UserError, match="differ between train/ and test/"):
        open_dataset(data_cfg(root.parent), "train")  # the layout is checked as a whole
    for cls in ("bee", "cow"):
        (tmp_path / "ds" / "test" / cls).mkdir()
    assert len(open_dataset(data_cfg(root.parent), "train")) == 21  # an empty test/ is not read for train
    check_dataset(data_cfg(root.parent))  # what compare checks before its runs: the training split
    with pytest.raises(UserError, match="no images"):
        open_dataset(data_cfg(root.parent), "test")
    with pytest.raises(UserError, match="no images"):
        check_dataset(data_cfg(root.parent), splits=("train", "test"))


@pytest.mark.parametrize("problem,expected", [
    ("val_split_with_test", "data.val_split=0.2"),
    ("val_split_with_named", "data.val_split"),
    ("val_split_range", "data.val_split must be a fraction"),
    ("split_seed", "data.split_seed must be"),
    ("resize", "data.resize must be squash"),
    ("cache", "data.cache must be true or false"),
    ("test_without_train", "no train/ subfolder"),
    ("one_class", "need at least 2"),
    ("nothing_held_out", "holds out none"),
])
def test_refusals_name_the_key_and_the_fix(tmp_path, problem, expected):
    root = tmp_path / "ds"
    cfg = data_cfg(root)
    split = "train"
    if problem == "val_split_with_test":
        make_classes(root / "train")
        make_classes(root / "test")
        cfg["val_split"] = 0.2
    elif problem == "val_split_with_named":
        cfg = {"name": "cifar10-mini", "resolution": 32, "val_split": 0.2}
    elif problem == "val_split_range":
        cfg["val_split"] = 1.0
    elif problem == "split_seed":
        cfg["split_seed"] = -1
    elif problem == "resize":
        cfg["resize"] = "stretch"
    elif problem == "cache":
        cfg["cache"] = "yes"
    elif problem == "test_without_train":
        make_classes(root / "test")
    elif problem == "one_class":
        make_classes(root, (("ant", 3),))
    elif problem == "nothing_held_out":
        make_classes(root, (("ant", 1), ("bee", 1)))
        split = "test"
    with pytest.raises(UserError) as info:
        validate_data_config(cfg)
        open_dataset(cfg, split)
    message = str(info.value)
    assert expected in message and "\n" not in message
    if problem == "val_split_with_test":
        assert "remove data.val_split" in message and str(root / "test") in message


def test_non_square_images_are_squashed_with_a_warning_or_centre_cropped(tmp_path):
    root = tmp_path / "wide"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            pixels = np.zeros((8, 24, 3), np.uint8)
            pixels[:, :8], pixels[:, 8:16], pixels[:, 16:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
            Image.fromarray(pixels).save(root / cls / f"{i}.png")
    with pytest.warns(UserWarning, match=r"5 of the 5 images .* are not square: they are resized to 8 x 8 px without keeping"):
        squashed = load_dataset(str(root), "train", 8)  # 1 of 6 held out
    with pytest.warns(UserWarning, match="used so far are not square"):  # lazily filled: counts what it decoded
        lazy = open_dataset(data_cfg(root, resolution=6, limit=2), "train")
        make_batches(lazy, torch.arange(2), 2, seed=0, train=False, data=data_cfg(root))
    assert describe_data(data_cfg(root, resolution=6))["non_square"] == [2, 2]
    cropped = load_dataset(str(root), "train", 8, resize="crop")
    assert (cropped.images[:, 1] == 255).all() and (cropped.images[:, 0] == 0).all()  # the green centre only
    assert (squashed.images[:, 0, :, 0] > 200).all() and (squashed.images[:, 2, :, -1] > 200).all()  # all three bands
