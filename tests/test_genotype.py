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
