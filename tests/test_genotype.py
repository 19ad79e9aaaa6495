import json

import pytest

from noisydarts.errors import UserError
from noisydarts.models import resolve_genotype as load_genotype
from noisydarts.spaces.darts import Genotype

# DARTS V2 from the DARTS release (cnn/genotypes.py).
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def test_text_round_trip_is_exact():
    g = Genotype.parse(DARTS_V2)
    assert str(g) == DARTS_V2
    assert g.count("skip_connect", "normal") == 2 and g.count("skip_connect", "reduce") == 3
    assert g.nodes == 4


def test_json_round_trip(tmp_path):
    g = Genotype.parse(DARTS_V2)
    assert Genotype.from_dict(json.loads(g.to_json())) == g
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"space": "darts", "genotype": g.to_dict()}))
    assert load_genotype(path) == g


def test_release_repr_with_range_and_module_prefix():
    text = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert Genotype.parse("genotypes." + text) == Genotype.parse(DARTS_V2)


@pytest.mark.parametrize("bad, words", [
    (DARTS_V2.replace("'dil_conv_3x3', 2", "'conv_9x9', 2"), "unknown operation"),
    (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "inputs must be"),
    (DARTS_V2.replace("('sep_conv_3x3', 0), ", "", 1), "edges"),
    ("Genotype(normal=[", "cannot parse"),
    ("Network(a=1)", "must look like"),
])
def test_malformed_genotypes_raise_user_errors(bad, words):
    with pytest.raises(UserError, match=words):
        Genotype.parse(bad)


def test_malformed_json_file(tmp_path):
    p = tmp_path / "g.json"
    p.write_text('{"normal": [')
    with pytest.raises(UserError, match="malformed genotype file"):
        load_genotype(p)
    p.write_text('{"normal": []}')
    with pytest.raises(UserError, match="needs the keys"):
        load_genotype(p)


# --- strict parsing (issue 10, class 7): literals only, nothing evaluated ----------------------------

@pytest.mark.parametrize("concat, words", [
    ("[2+3, 4]", "is not a literal"),
    ("[x for x in range(2, 6)]", "is not a literal"),
    ("__import__('os').system('touch pwned')", "is not a literal"),
    ("[2, 3, 4, 5][::-1]", "is not a literal"),
    ("list(range(2, 6))", "is not a literal"),
    ("range(2, 6, 0)", "is not a literal"),
    ("range('a', 'b')", "is not a literal"),
    ("range(2, 10**9)", "is not a literal"),
    ("range(2, 1000000000)", "has 999999998 values"),
    ("range(a=2)", "is not a literal"),
    ("[2, 3.5]", "must be an integer"),
    ("[2, True]", "must be an integer"),
    ("[2, '3']", "must be an integer"),
    ("{2, 3}", "is not a literal"),
    ("[2, None]", "must be an integer"),
    ("2", "must be a list of node indices"),
])
def test_concat_lists_are_literals_only(concat, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=words):
        Genotype.parse(DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", f"normal_concat={concat}"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', 0+1)", 1), "is not a literal"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', 0.0)", 1), "must be an integer"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', '0')", 1), "must be an integer"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "(3, 0)", 1), "must be an \\[op_name, input_index\\] pair"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "('sep_conv_3x3', 0, 1)", 1), "pair"),
    (lambda t: t.replace("('sep_conv_3x3', 0)", "OPS['sep_conv_3x3']", 1), "is not a literal"),
    (lambda t: t.replace("normal_concat=", "extra=1, normal_concat="), "takes the fields"),
    (lambda t: t.replace("Genotype(", "Genotype([], "), "takes the fields"),
    (lambda t: t.replace("Genotype(", "Genotype(**x, "), "takes the fields"),
    (lambda t: t + "\x00", "cannot parse"),
    (lambda t: "Genotype(normal=" + "[" * 200 + "]" * 200 + ")", "cannot parse|not a literal|pair"),
])
def test_genotype_text_is_never_evaluated(edit, words):
    with pytest.raises(UserError, match=words):
        Genotype.parse(edit(DARTS_V2))


@pytest.mark.parametrize("content, words", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is not UTF-8 text"),
    (b"\xff\xfe{\x00}\x00", "is not UTF-8 text"),
    (b"{\"normal\": \x00}", "NUL bytes"),
    (b"[" * 100000, "malformed genotype file|nested too deeply|cannot parse|holds no genotype"),
    (b"{\"normal\": [[\"sep_conv_3x3\", Infinity]], \"normal_concat\": [2], \"reduce\": [], \"reduce_concat\": []}",
     "must be an integer"),
    (b"{\"normal\": [[\"sep_conv_3x3\", 1.5]], \"normal_concat\": [2], \"reduce\": [], \"reduce_concat\": []}",
     "must be an integer"),
    (b"{\"normal\": \"abc\", \"normal_concat\": [2], \"reduce\": [], \"reduce_concat\": []}", "pair"),
    (b"5", "not found|needs the keys|must look like|holds no genotype"),
], ids=["png", "utf16", "nul", "deep", "infinity", "float", "string-edges", "number"])
def test_genotype_files_that_are_not_genotypes(content, words, tmp_path):
    load = load_genotype  # noisydarts.models.resolve_genotype: what every command uses
    for name in ("genotype.json", "genotype.txt"):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UserError, match=words):
            load(str(path))
    (tmp_path / "genotype.txt").unlink()
    with pytest.raises(UserError):  # a run directory holding that genotype.json
        load(str(tmp_path))


def test_cli_commands_that_read_a_genotype_answer_in_one_line(tmp_path, capsys):
    from noisydarts.cli import main

    bad = tmp_path / "genotype.json"
    bad.write_bytes(b"\x00\xff\xfe binary")
    text = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[2+3]")
    for args in (["info", str(bad)], ["info", text], ["train", str(bad), "--print-config"], ["info", "x" * 5000],
                 ["info", "{" + "x" * 5000]):
        code = main(args)
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args[:2], err)
