"""Configuration: the schema engine, presets, YAML files and ``--set KEY=VALUE`` overrides.

A config is a plain nested dict. It is resolved in layers, later ones winning::

    defaults  <-  preset (presets/NAME.yaml)  <-  --config FILE.yaml  <-  --set KEY=VALUE ...

The defaults are not kept here: every component registers its own section with a :class:`Schema`
(:mod:`noisydarts.config.schema`), with its defaults and its validation, and this package never
imports a component (nor torch). :data:`SEARCH` is the search config's schema; the search package
(:func:`noisydarts.resolve_config`) imports the components, which register their sections, and
resolves through it.

A run's ``config.yaml`` ends with a ``provenance`` section (versions, command line, git commit);
it is ignored when the file is read back (``--resume``, or ``--config`` of a new run).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import yaml

from ..errors import UserError, path_kind, read_text, suggest
from .schema import (AUTO_OR_BOOL, NULLABLE, ON_OFF_WORDS, PROVENANCE, Schema, apply_aliases, check, check_choice,
                     merge, register_keys)

#: What `noisydarts search` and `noisydarts.search()` run when given no configuration.
DEFAULT_PRESET = "nb201-quick"
#: What `noisydarts search --data DIR` runs when no preset is named (any data but the embedded
#: demo set): the method the collapse benchmark chose (docs/results/2026-12-07-collapse-benchmark.md).
DATA_PRESET = "own-data"
#: The embedded demo data, which the quick default preset is sized for.
DEMO_DATA = "cifar10-mini"


def default_preset(data: str | None = None) -> str:
    """The preset a search starts from when none is named: :data:`DATA_PRESET` for a user's data
    (``--data`` naming anything but the embedded demo set), else :data:`DEFAULT_PRESET`."""
    return DATA_PRESET if data not in (None, DEMO_DATA) else DEFAULT_PRESET

#: The search config: every component that has search settings registers its section here.
SEARCH = Schema("search")

# the names earlier code used
_merge = merge
_check = check

__all__ = ["AUTO_OR_BOOL", "DATA_PRESET", "DEFAULT_PRESET", "DEMO_DATA", "NULLABLE", "ON_OFF_WORDS", "PROVENANCE", "SEARCH", "Schema",
           "absolute_data_paths", "apply_aliases", "check", "check_choice", "default_preset", "dump", "load_preset", "load_yaml", "merge",
           "parse_overrides", "preset_names", "preset_text", "register_keys", "resolve", "suggest"]


# --- presets --------------------------------------------------------------------------------

def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("noisydarts.presets").iterdir() if p.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    """The YAML text of a preset, as shipped."""
    if name not in preset_names():
        raise UserError(f"unknown preset {name!r}{suggest(name, preset_names())}: choose from "
                        f"{', '.join(preset_names())} (see `noisydarts presets`)")
    return resources.files("noisydarts.presets").joinpath(f"{name}.yaml").read_text()


def load_preset(name: str) -> dict:
    return yaml.safe_load(preset_text(name)) or {}


def load_yaml(path: str | Path) -> dict:
    """A YAML config file as a dict (its ``provenance`` section, if any, dropped)."""
    path = Path(path)
    if path_kind(path) != "file":
        raise UserError(f"config file {path} not found: give the path of a YAML file")
    text = read_text(path, "a YAML config file")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from e
    except RecursionError as e:
        raise UserError(f"config file {path} is nested too deeply to be a config") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of keys to values")
    data.pop(PROVENANCE, None)
    return data


def parse_overrides(pairs: list[str]) -> dict:
    """``["noise.lambda=0.1", "epochs=10"]`` -> nested dict; values are parsed as YAML scalars."""
    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {pair!r} is not KEY=VALUE: write e.g. --set noise.lambda=0.1")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {key}: {part} is set as a value and as a section")
        node[parts[-1]] = parsed
    return out


# --- resolution -------------------------------------------------------------------------------

def layers(preset: str | None = None, config_file: str | Path | dict | None = None,
           overrides: list[str] | dict | None = None) -> list[tuple[str, dict]]:
    """The ``(origin, layer)`` pairs a preset, a config file (or dict) and ``--set`` pairs make."""
    out = []
    if preset:
        out.append(("preset " + preset, load_preset(preset)))
    if config_file is not None:
        out.append(("config file", config_file if isinstance(config_file, dict) else load_yaml(config_file)))
    if overrides:
        out.append(("--set", overrides if isinstance(overrides, dict) else parse_overrides(overrides)))
    return out


def resolve(preset: str | None = None, config_file: str | Path | dict | None = None,
            overrides: list[str] | dict | None = None, *, schema: Schema = SEARCH) -> dict:
    """Merge the layers over ``schema``'s defaults, check every key and value, return the full
    config. The search schema is complete once :mod:`noisydarts.search` is imported; use
    :func:`noisydarts.resolve_config`, which makes sure of that."""
    return schema.resolve(layers(preset, config_file, overrides))


def absolute_data_paths(data: dict, named_datasets) -> None:
    """Store the paths of a ``data`` section absolute (in place): ``name`` when it is a directory
    rather than one of ``named_datasets``, and ``root`` (and ``cache_dir``) when given. A run's
    config.yaml then means the same from any working directory (``--resume``, ``evaluate``). A
    bare word that is no such path (a misspelled dataset name) is left for the data package to
    refuse by name. Symlinks are kept as given (``absolute``, not ``resolve``)."""
    name = data.get("name")
    if isinstance(name, str) and name and name not in named_datasets and (
            Path(name).expanduser().exists() or any(s in name for s in ("/", os.sep, ".", "~"))):
        data["name"] = str(Path(name).expanduser().absolute())
    for key in ("root", "cache_dir"):
        if isinstance(data.get(key), str) and data[key]:
            data[key] = str(Path(data[key]).expanduser().absolute())


def dump(cfg: dict, provenance: dict | None = None) -> str:
    """The YAML of a config; with ``provenance``, that section last (see :func:`noisydarts.runtime.runs.provenance`)."""
    text = yaml.safe_dump(cfg, sort_keys=False)
    if provenance is not None:
        text += yaml.safe_dump({PROVENANCE: provenance}, sort_keys=False)
    return text
