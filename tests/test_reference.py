"""The generated reference pages (docs/reference/config.md, cli.md) match the schema and the
parser: regenerate them with ``python -m noisydarts.cli.reference`` after changing either."""

from __future__ import annotations

import argparse
from pathlib import Path

from noisydarts.cli import build_parser
from noisydarts.cli.reference import cli_reference, config_reference
from noisydarts.search import defaults
from noisydarts.train import DEFAULTS as TRAIN_DEFAULTS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "reference"


def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_the_config_reference_is_current():
    assert (DOCS / "config.md").read_text() == config_reference() + "\n", \
        "docs/reference/config.md is stale: run python -m noisydarts.cli.reference"


def test_the_config_reference_lists_every_key_of_every_space_and_estimator():
    from noisydarts.search import resolve_config
    from noisydarts.search.config import SCHEMA

    text = (DOCS / "config.md").read_text()
    keys = set(_leaves(defaults())) | {f"train: {k}" for k in _leaves(TRAIN_DEFAULTS)}
    for section, registry in SCHEMA.named().items():
        for name in registry:
            keys |= set(_leaves(resolve_config(config_file={section: {"name": name}})[section], f"{section}."))
    missing = [k for k in keys if f"`{k.removeprefix('train: ')}`" not in text]
    assert not missing, missing


def test_the_cli_reference_has_every_command_and_flag():
    text = (DOCS / "cli.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in sub.choices.items():
        assert f"## `noisydarts {name}`" in text
        for action in command._actions:
            for option in action.option_strings:
                assert option in text, f"{name} {option}"


def test_the_cli_reference_is_current_where_it_was_generated():
    """argparse's layout changes between Python versions, so the whole page is compared only
    where its text says the same as this interpreter's parser does for the top-level help."""
    page, now = (DOCS / "cli.md").read_text(), cli_reference() + "\n"
    top = now.split("## ", 1)[0]
    if page.split("## ", 1)[0] == top:
        assert page == now, "docs/reference/cli.md is stale: run python -m noisydarts.cli.reference"
