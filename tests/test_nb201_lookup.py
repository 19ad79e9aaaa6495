"""NB201 ground-truth lookup: uses only the packaged asset (src/noisydarts/assets)."""

from __future__ import annotations

import itertools
import time

import pytest

from noisydarts.benchmark import nb201
from noisydarts.errors import UserError
from noisydarts.benchmark.nb201 import NB201_EDGES, NB201_OPS, NB201Arch, NB201Result, by_index, format_result, lookup, table

ALL_SKIP = (
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
)
BEST_C10 = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
)
KEYS = ["index", "arch", "cifar10_test", "cifar100_test", "imagenet16_test", "params_m", "multadds_m"]


@pytest.fixture(scope="module")
def rows() -> list[NB201Result]:
    return table()


def test_constants():
    assert NB201_OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert NB201_EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_asset_is_deterministic_gzip():
    data = nb201._ASSET.read_bytes()
    assert data[:2] == b"\x1f\x8b"
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert data[3] & 0x08 == 0  # no file name stored


def test_load_is_fast():
    nb201._load.cache_clear()
    t0 = time.perf_counter()
    nb201._load()
    assert time.perf_counter() - t0 < 1.0


def test_all_skip_cell():
    r = lookup(ALL_SKIP)
    assert r.cifar10_test == pytest.approx(54.30, abs=0.01)
    assert r.cifar100_test == pytest.approx(15.61, abs=0.01)
    assert r.imagenet16_test == pytest.approx(16.32, abs=0.01)
    assert r.arch == ALL_SKIP
    assert NB201Arch.parse(ALL_SKIP).count("skip_connect") == 6


def test_best_cifar10_is_index_6111(rows):
    best = max(rows, key=lambda r: r.cifar10_test)
    assert best.index == 6111
    assert best.arch == BEST_C10
    assert best.cifar10_test == pytest.approx(94.37, abs=0.01)
    assert by_index(6111) == best
    assert lookup(BEST_C10) == best


def test_table_covers_space(rows):
    assert len(rows) == 15_625
    assert [r.index for r in rows] == list(range(15_625))
    archs = {r.arch for r in rows}
    assert len(archs) == 15_625
    assert {NB201Arch.parse(a).ops for a in archs} == set(itertools.product(NB201_OPS, repeat=6))


def test_params_flops_formulas(rows):
    for r in rows:
        a = NB201Arch.parse(r.arch)
        n3, n1 = a.count("nor_conv_3x3"), a.count("nor_conv_1x1")
        assert r.params_m == pytest.approx(0.073306 + 0.24304 * n3 + 0.028 * n1, abs=1e-6), r.arch
        assert r.flops_m == pytest.approx(7.78305 + 35.38944 * n3 + 3.93216 * n1, abs=1e-5), r.arch


def test_string_round_trip_and_lookup(rows):
    for r in rows:
        a = NB201Arch.parse(r.arch)
        assert str(a) == r.arch
        assert NB201Arch.from_ops(a.ops) == a
        assert lookup(a) is r
        assert lookup(r.arch) is r
        assert by_index(r.index) is r


def test_parse_tolerates_surrounding_whitespace():
    assert str(NB201Arch.parse(f"  {ALL_SKIP}\n")) == ALL_SKIP
    assert lookup(f"\t{BEST_C10} ").index == 6111


def test_from_ops_names_and_indices():
    a = NB201Arch.from_ops(["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3", "nor_conv_1x1"])
    assert str(a) == BEST_C10
    assert NB201Arch.from_ops([3, 3, 3, 1, 3, 2]) == a
    assert a.ops == tuple(a.ops) and isinstance(a.ops, tuple)
    assert a.count("nor_conv_3x3") == 4 and a.count("none") == 0
    assert NB201Arch(list(a.ops)) == a  # direct construction also normalises/validates


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "|none~0||none~0|none~1||none~0|none~1|none~2|",  # missing '+'
        "|none~0|+|none~0|none~1|",  # two nodes
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",  # four nodes
        "|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # unknown op
        "|none~0|+|none~0|none~1|+|none~0|none~1|Skip_Connect~2|",  # wrong case
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",  # wrong source index
        "|none~0|+|none~1|none~0|+|none~0|none~1|none~2|",  # indices out of order
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~x|",  # non-numeric index
        "|none~0|+|none~0|none~1|+|none~0|none~1|",  # 5 edges
        "|none~0|+|none~0|+|none~0|none~1|none~2|none~3|",  # right edge count, wrong split
        "|none|+|none~0|none~1|+|none~0|none~1|none~2|",  # no '~'
        "none~0|+|none~0|none~1|+|none~0|none~1|none~2|",  # missing leading '|'
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2",  # missing trailing '|'
        "|none~0|+|none~0| none~1|+|none~0|none~1|none~2|",  # inner whitespace
    ],
)
def test_malformed_strings_raise_user_error(text):
    with pytest.raises(UserError) as exc:
        NB201Arch.parse(text)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in msg
    with pytest.raises(UserError):
        lookup(text)


@pytest.mark.parametrize("value", [None, 5, b"|none~0|", ["none"] * 6])
def test_lookup_wrong_type(value):
    with pytest.raises(UserError):
        lookup(value)


@pytest.mark.parametrize(
    "ops",
    [
        ("none",) * 5,
        ("none",) * 7,
        ("none",) * 5 + ("conv",),
        "none",
        (0, 1, 2, 3, 4, 5),
        (0, 1, 2, 3, 4, -1),
        (0, 1, 2, 3, 4, 1.0),
    ],
)
def test_from_ops_validates(ops):
    with pytest.raises(UserError):
        NB201Arch.from_ops(ops)


def test_count_unknown_op():
    with pytest.raises(UserError):
        NB201Arch.parse(ALL_SKIP).count("conv")


@pytest.mark.parametrize("i", [-1, 15_625, 10**9, 1.0, "3", None, True])
def test_by_index_out_of_range(i):
    with pytest.raises(UserError):
        by_index(i)


def test_by_index_bounds():
    assert by_index(0).index == 0
    assert by_index(15_624).index == 15_624


def test_to_dict_keys():
    d = by_index(6111).to_dict()
    assert list(d) == KEYS
    assert d["index"] == 6111 and d["arch"] == BEST_C10


def test_table_returns_copy(rows):
    t = table()
    t.clear()
    assert len(table()) == 15_625


def test_format_result():
    text = format_result(by_index(6111))
    lines = text.splitlines()
    assert len(lines) >= 5
    assert "6111" in text and BEST_C10 in text
    assert "94.37" in text and "73.22" in text and "46.71" in text
    assert "1.0735" in text and "153.27" in text


@pytest.mark.parametrize("content", [None, b"not gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"])
def test_missing_or_corrupt_asset_is_user_error(tmp_path, monkeypatch, content):
    bad = tmp_path / "nb201_accuracy.csv.gz"
    if content is not None:
        bad.write_bytes(content)
    monkeypatch.setattr(nb201, "_ASSET", bad)
    nb201._load.cache_clear()
    try:
        with pytest.raises(UserError, match="build_nb201_table"):
            by_index(0)
    finally:
        monkeypatch.undo()
        nb201._load.cache_clear()
    assert by_index(0).index == 0
