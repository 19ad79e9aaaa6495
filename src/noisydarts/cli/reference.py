"""The reference pages, generated: every config key from the registered schema, every command and
flag from the argument parser. ``python -m noisydarts.cli.reference`` rewrites
``docs/reference/config.md`` and ``docs/reference/cli.md``; a test checks that they are current.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

_COMMENT = re.compile(r"""^\s*["'](?P<key>[\w.]+)["']\s*:.*?#\s*(?P<text>.+?)\s*$""")


def _key_comments(module_name: str) -> dict[str, str]:
    """``"key": value,  # comment`` lines of a module's source: the comment of each key's default."""
    try:
        source = inspect.getsource(importlib.import_module(module_name))
    except (OSError, TypeError, ImportError):
        return {}
    out: dict[str, str] = {}
    for line in source.splitlines():
        m = _COMMENT.match(line)
        if m:
            out.setdefault(m.group("key"), m.group("text"))
    return out


def _leaves(d: dict, prefix: str = ""):
    for key, value in d.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _show(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if value == "":
        return '""'
    return str(value).replace("|", "\\|")


def _type(path: str, value) -> str:
    from ..config import AUTO_OR_BOOL, NULLABLE

    if path in AUTO_OR_BOOL:
        return "auto \\| bool"
    if path in NULLABLE:
        return f"{NULLABLE[path].__name__} or null"
    return type(value).__name__ if value is not None else "any"


def _rows(section: dict, prefix: str, comments: dict[str, str]) -> list[str]:
    rows = []
    for path, value in _leaves(section, prefix):
        leaf = path.rsplit(".", 1)[-1]
        rows.append(f"| `{path}` | `{_show(value)}` | {_type(path, value)} | "
                    f"{comments.get(leaf, '').replace('|', chr(92) + '|')} |")
    return rows


def config_reference() -> str:
    """docs/reference/config.md: the search config's sections, by owner, and the training config."""
    from ..search.config import SCHEMA, defaults
    from ..train import DEFAULTS as TRAIN_DEFAULTS

    header = "| key | default | type | what it does |\n| --- | --- | --- | --- |"
    lines = ["# Configuration keys", "",
             "Generated from the registered schema by `python -m noisydarts.cli.reference`; do not edit by hand.",
             "A key set in a preset, a `--config` file or `--set KEY=VALUE` must be one of these; a typo is refused",
             "with the closest valid key. See [the searching guide](../guide/searching.md) for how the layers combine.",
             "", "## Search (`noisydarts search`)", ""]
    full = defaults()
    named = SCHEMA.named()
    order = {k: i for i, k in enumerate(full)}

    def position(item):
        key = item[0]
        top = _top_level_keys(SCHEMA, key)[0] if key.startswith("@") else key.split(".")[0]
        return order.get(top, len(order)), key.count(".")

    for key, owner in sorted(SCHEMA.sections().items(), key=position):
        if key in named:
            continue
        if key.startswith("@"):
            section = {k: full[k] for k in _top_level_keys(SCHEMA, key) if not isinstance(full[k], dict) or not full[k]}
            title, prefix = "Run-level keys" if owner.endswith("config") else "Outputs", ""
            section.update({k: full[k] for k in _top_level_keys(SCHEMA, key) if isinstance(full[k], dict) and full[k]})
        else:
            node = full
            for part in key.split("."):
                node = node[part]
            section = {k: v for k, v in node.items() if not (key == "arch" and k == "projection")}
            title, prefix = f"`{key}`", f"{key}."
        lines += [f"### {title}", "", f"Owned by `{owner}`.", "", header, *_rows(section, prefix, _key_comments(owner)), ""]
    for section, registry in named.items():
        # what the package ships (a space a user registers, like examples/chain_space.py, is theirs)
        registry = {n: impl for n, impl in registry.items() if _module_of(impl).startswith("noisydarts.")}
        lines += [f"### `{section}`", "", f"`{section}.name` picks one of: {', '.join(f'`{n}`' for n in registry)}. "
                  "Each brings its own keys:", ""]
        for name, impl in registry.items():
            module = _module_of(impl)
            keys = dict(impl.DEFAULTS)
            lines += [f"#### `{section}.name: {name}`", ""]
            if keys:
                lines += [header, *_rows(keys, f"{section}.", _key_comments(module)), ""]
            else:
                lines += ["No keys of its own.", ""]
    lines += ["## Training (`noisydarts train`)", "",
              "The network keys (`network.*`) are the space's: see `noisydarts info` and the space pages.", "",
              header, *_rows(TRAIN_DEFAULTS, "", _key_comments("noisydarts.train.config")), ""]
    return "\n".join(lines)


def _module_of(impl) -> str:
    return impl.__name__ if inspect.ismodule(impl) else type(impl).__module__ if not isinstance(impl, type) \
        else impl.__module__


def _top_level_keys(schema, key: str) -> list[str]:
    return list(schema._sections[key])  # noqa: SLF001 - the schema's own section table


def cli_reference() -> str:
    """docs/reference/cli.md: every command with its usage and flags, from the parser itself."""
    from . import build_parser

    parser = build_parser()
    lines = ["# Command line", "",
             "Generated from the argument parser by `python -m noisydarts.cli.reference`; do not edit by hand.",
             "Every command takes `--debug` (show the traceback of an error instead of one line).", "",
             "```text", _help(parser), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    for name, command in sub.choices.items():
        lines += [f"## `noisydarts {name}`", "", "```text", _help(command), "```", ""]
    return "\n".join(lines)


def _help(parser: argparse.ArgumentParser) -> str:
    formatter = parser.formatter_class
    parser.formatter_class = lambda prog: formatter(prog, width=100)
    try:
        return parser.format_help().rstrip()
    finally:
        parser.formatter_class = formatter


PAGES = {"config.md": config_reference, "cli.md": cli_reference}


def write(docs: Path) -> list[Path]:
    out = []
    for name, make in PAGES.items():
        path = docs / "reference" / name
        path.write_text(make() + "\n")
        out.append(path)
    return out


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "docs"
    for path in write(root):
        print(path)
