"""The schema engine: sections with defaults, nullable keys, validation, merging with type coercion
and did-you-mean key hints. It knows no component: components register their sections.

A :class:`Schema` is a nested dict of defaults assembled from *sections*. A section is registered
by the module that owns it (``noisydarts.methods.noise`` registers ``noise``, the search package
its run-level keys), with its defaults, the keys that may be null, and its validation::

    SEARCH.register("noise", DEFAULTS, validate=validate)

Two kinds of sections:

* a plain section (``noise``, ``data``; ``""`` for top-level keys; a dotted path such as
  ``arch.projection`` nests it in another section);
* a *named* section (``space``, ``estimator``): its ``name`` key picks an implementation from a
  registry whose entries carry their own ``DEFAULTS`` (and optionally ``validate(cfg)``), so
  ``--set space.name=nb201`` brings in the NB201 keys; a layer that switches a named section to
  another name starts that section afresh, dropping the keys earlier layers set for the old one.

Every key must exist in the defaults (a typo is an error that names the closest valid key, never
silently ignored) and keep its type: the default's type, or for a key that may be null the type
registered as nullable; list items keep the type of the default's items; floats must be finite.

Renamed keys stay valid: :func:`apply_aliases` moves a layer's old dotted keys to their new names
before it is merged (a schema's :meth:`Schema.register_alias`; the training config, which is no
:class:`Schema`, applies its own table), so old presets, YAML files, ``--set`` pairs and old runs'
config.yaml keep working while ``--print-config`` and config.yaml show the new names. A section
that belongs to the other kind of config (``network`` in a search) is refused with a line naming
the key meant (:meth:`Schema.register_foreign`), rather than the generic unknown-key hint.
"""

from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable

from ..errors import UserError, suggest

#: Keys that may be null, with the type of their other values. Shared by every schema (search and
#: training configs alike); a key whose default is null must be listed (tests/test_config.py checks).
NULLABLE: dict[str, type] = {}

#: Keys that take "auto" or a boolean (auto | true | false).
AUTO_OR_BOOL: set[str] = set()

#: Keys whose values are words such as on and off, which YAML 1.1 reads as booleans
#: (``--set amp=off`` gives False): a boolean is taken as the word ``on`` or ``off``.
ON_OFF_WORDS: set[str] = set()

#: The top-level key of a run's config.yaml that records how the run was made; never a setting.
PROVENANCE = "provenance"


def register_keys(*, nullable: dict[str, type] | None = None, auto_or_bool=(), on_off=()) -> None:
    """Declare how some keys are read (by full dotted path): nullable ones with their type, keys
    that take auto/true/false, keys whose booleans mean the words on/off."""
    NULLABLE.update(nullable or {})
    AUTO_OR_BOOL.update(auto_or_bool)
    ON_OFF_WORDS.update(on_off)


class Schema:
    """The sections of one kind of config, in the order they were registered."""

    def __init__(self, name: str):
        self.name = name
        self._sections: dict[str, dict] = {}        # path -> defaults
        self._named: dict[str, dict] = {}           # section -> registry of implementations
        self._validators: list[tuple[str, Callable]] = []
        self._checks: list[tuple[str, Callable]] = []   # checks of the whole config (register_check)
        self._owners: dict[str, str] = {}           # path -> the module that registered it
        #: top-level keys in this order first (the rest in registration order): a stable config.yaml
        self.key_order: tuple[str, ...] = ()
        #: old dotted key -> its name now (:func:`apply_aliases`, applied to every layer)
        self.aliases: dict[str, str] = {}
        #: section -> why it is not this config's (a one-line refusal naming the right key)
        self.foreign: dict[str, Callable[[str, str], str]] = {}

    # --- registration ---
    def register(self, path: str, defaults: dict, *, validate: Callable[[dict], None] | None = None,
                 nullable: dict[str, type] | None = None, auto_or_bool=(), on_off=(), owner: str = "") -> None:
        """Add a section (``path`` ``""``: top-level keys). ``validate(cfg)`` gets the whole resolved
        config and raises :class:`UserError`; ``nullable`` etc. take paths relative to ``path``."""
        key = path or f"@{owner}"  # top-level keys: one entry per owner
        if key in self._sections and self._owners.get(key) != owner:
            raise ValueError(f"config section {path!r} of the {self.name} config is already registered by "
                             f"{self._owners[key]}")
        self._sections[key] = copy.deepcopy(defaults)
        self._owners[key] = owner
        prefix = f"{path}." if path else ""
        register_keys(nullable={prefix + k: t for k, t in (nullable or {}).items()},
                      auto_or_bool=[prefix + k for k in auto_or_bool], on_off=[prefix + k for k in on_off])
        if validate is not None:
            self._validators = [(p, v) for p, v in self._validators if p != key] + [(key, validate)]

    def register_alias(self, old: str, new: str) -> None:
        """``old`` (a dotted key an earlier version used) is read as ``new`` in every layer."""
        self.aliases[old] = new

    def register_foreign(self, section: str, why: Callable[[str, str], str]) -> None:
        """``section`` belongs to another kind of config: a layer that sets ``section.KEY`` is
        refused with ``why(origin, KEY)`` (one line naming the key this config has instead)."""
        self.foreign[section] = why

    def register_named(self, section: str, registry: dict, *, default: str, owner: str = "") -> None:
        """A section whose ``name`` picks an implementation from ``registry`` (``{name: impl}``; each
        impl has ``DEFAULTS`` and may have ``validate(cfg)``)."""
        self._named[section] = registry
        self._sections[section] = {"name": default}
        self._owners[section] = owner

    def register_check(self, name: str, check: Callable[[dict], None], *, owner: str = "") -> None:
        """A check of the whole resolved config that belongs to no one section (a combination of
        sections: a method part the chosen space cannot honour). Runs after the sections' checks."""
        self._checks = [(n, c) for n, c in self._checks if n != name] + [(name, check)]
        self._owners.setdefault(f"!{name}", owner)

    def sections(self) -> dict[str, str]:
        """Each registered section and the module that owns it (for the reference docs)."""
        return {k: v for k, v in self._owners.items() if not k.startswith("!")}

    def named(self) -> dict[str, dict]:
        return dict(self._named)

    # --- defaults ---
    def defaults(self) -> dict:
        """The defaults of every section, nested, named sections with their default implementation's keys."""
        out: dict = {}
        for path, defaults in self._sections.items():
            if path in self._named:
                out[path] = self._named_section(path, defaults["name"], "defaults")
            elif path.startswith("@"):
                out.update(copy.deepcopy(defaults))
            else:
                node = out
                *parents, leaf = path.split(".")
                for part in parents:
                    node = node.setdefault(part, {})
                # a subsection registered first (arch.projection) stays inside its section (arch)
                node[leaf] = {**copy.deepcopy(defaults), **node.get(leaf, {})}
        first = [k for k in self.key_order if k in out]
        return {k: out[k] for k in first + [k for k in out if k not in first]}

    def _named_section(self, section: str, name, origin: str) -> dict:
        registry = self._named[section]
        if not isinstance(name, str) or name not in registry:
            raise UserError(f"{origin}: unknown {section}.name {name!r}{suggest(name, registry)}: choose from "
                            f"{', '.join(registry)}")
        return {"name": name, **copy.deepcopy(registry[name].DEFAULTS)}

    # --- resolution ---
    def resolve(self, layers: list[tuple[str, dict]]) -> dict:
        """Merge ``(origin, layer)`` pairs over the defaults, later ones winning; check every key and
        value; run every section's validation; return the full config."""
        if not self._sections:
            raise RuntimeError(f"the {self.name} config schema has no sections: import the package that "
                               "registers them (noisydarts.search) before resolving")
        cfg = self.defaults()
        for origin, layer in layers:
            if not isinstance(layer, dict):
                raise UserError(f"{origin}: the config must be a mapping of keys to values")
            for section, why in self.foreign.items():
                if isinstance(layer.get(section), dict) and layer[section]:
                    raise UserError(why(origin, str(next(iter(layer[section])))))
            layer = apply_aliases(layer, self.aliases, origin)
            for section in self._named:
                named = layer.get(section)
                if isinstance(named, dict) and "name" in named and named["name"] != cfg[section]["name"]:
                    cfg[section] = self._named_section(section, named["name"], origin)
            merge(cfg, layer, origin, prefix="")
        self.validate(cfg)
        return cfg

    def validate(self, cfg: dict) -> None:
        for section, registry in self._named.items():  # keys that follow from others first
            normalize = getattr(registry[cfg[section]["name"]], "normalize", None)
            if normalize is not None:
                normalize(cfg)
        for _, validate in self._validators:
            validate(cfg)
        for section, registry in self._named.items():
            impl = registry[cfg[section]["name"]]
            if hasattr(impl, "validate"):
                impl.validate(cfg)
        for _, check in self._checks:
            check(cfg)


# --- old key names ---------------------------------------------------------------------------------

_MISSING = object()


def _lookup(layer: dict, path: str):
    node = layer
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def apply_aliases(layer: dict, aliases: dict[str, str], origin: str) -> dict:
    """``layer`` with each key of ``aliases`` (an old dotted key) moved to its new name, the
    input left as it was. Old names stay valid in every layer (a preset, a YAML file, ``--set``,
    an old run's config.yaml); one layer giving both names different values is refused, since
    neither can be said to win. A section left empty by the move is dropped."""
    if not aliases or not isinstance(layer, dict):
        return layer
    found = [(old, new) for old, new in aliases.items() if _lookup(layer, old) is not _MISSING]
    if not found:
        return layer
    layer = copy.deepcopy(layer)
    for old, new in found:
        value = _lookup(layer, old)
        *parents, leaf = old.split(".")
        node = layer
        for part in parents:
            node = node[part]
        del node[leaf]
        if parents and not node:  # `space: {channels: 36}` moved whole: no empty `space` left behind
            _drop_empty(layer, parents)
        given = _lookup(layer, new)
        if given is not _MISSING and given != value:
            raise UserError(f"{origin}: {old} (read as {new}) is {value!r} but {new} is {given!r}: give only {new}")
        node = layer
        *parents, leaf = new.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{origin}: {part} is a section; set its keys, e.g. {new}=...")
        node[leaf] = value
    return layer


def _drop_empty(layer: dict, parents: list[str]) -> None:
    for depth in range(len(parents), 0, -1):
        node = layer
        for part in parents[:depth - 1]:
            node = node[part]
        if node[parents[depth - 1]] == {}:
            del node[parents[depth - 1]]


# --- merging and coercion ---------------------------------------------------------------------

def _paths(d: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in d.items():
        out += _paths(value, f"{prefix}{key}.") if isinstance(value, dict) else [f"{prefix}{key}"]
    return out


def _key_hint(key, base: dict, prefix: str, root: dict) -> str:
    """The closest valid key: in the same section, else anywhere (a key given in the wrong section,
    e.g. ``lambda`` for ``noise.lambda``)."""
    here = difflib.get_close_matches(str(key), [str(k) for k in base], 1, 0.6)
    if here:
        return f" (did you mean {prefix + here[0]!r}?)"
    paths = _paths(root)
    full = difflib.get_close_matches(prefix + str(key), paths, 1, 0.6)
    if full:
        return f" (did you mean {full[0]!r}?)"
    leaves: dict[str, str] = {}
    for p in paths:
        leaves.setdefault(p.rsplit(".", 1)[-1], p)
    leaf = difflib.get_close_matches(str(key), list(leaves), 1, 0.6)
    return f" (did you mean {leaves[leaf[0]]!r}?)" if leaf else ""


def merge(base: dict, layer: dict, origin: str, prefix: str = "", root: dict | None = None) -> None:
    """Merge ``layer`` into ``base`` (the config at ``prefix``), checking every key and value."""
    root = base if root is None else root
    if not isinstance(layer, dict):
        raise UserError(f"{origin}: {prefix.rstrip('.') or 'the config'} must be a mapping")
    for key, value in layer.items():
        path = prefix + str(key)
        if not prefix and key == PROVENANCE:
            continue  # how an earlier run was made, copied along with its config.yaml
        if key not in base:
            options = ", ".join(sorted(map(str, base)))
            raise UserError(f"{origin}: unknown config key {path!r}{_key_hint(key, base, prefix, root)}; "
                            f"valid keys here: {options}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise UserError(f"{origin}: {path} is a section; set its keys, e.g. {path}.{next(iter(base[key]))}=...")
            merge(base[key], value, origin, path + ".", root)
        else:
            base[key] = _coerce(path, base[key], value, origin)


_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string", list: "a list"}


def _coerce(path: str, default, value, origin: str):
    """``value`` as the type of ``path``: the type of its default, or its :data:`NULLABLE` type."""
    declared = NULLABLE.get(path)
    if value is None:
        if declared is not None or default is None:
            return None
        raise UserError(f"{origin}: {path} needs a value ({_TYPE_WORDS.get(type(default), type(default).__name__)}), "
                        f"e.g. {path}={_example(default)}")
    kind = declared or (type(default) if default is not None else None)
    if kind is None:  # a null default nobody declared: take plain scalars only
        if not isinstance(value, (str, int, float, bool)):
            raise UserError(f"{origin}: {path} must be a single value, got {value!r}")
        return value
    if kind is list:
        if not isinstance(value, list):
            raise UserError(f"{origin}: {path} must be a list, e.g. {path}={_example(default)}, got {value!r}")
        item_kind = type(default[0]) if default else None
        return [value_ if item_kind is None else _scalar(f"{path}[{i}]", item_kind, value_, origin)
                for i, value_ in enumerate(value)]
    return _scalar(path, kind, value, origin, default)


def _scalar(path: str, kind: type, value, origin: str, default=None):
    if path in AUTO_OR_BOOL and isinstance(value, bool):
        return value
    if path in ON_OFF_WORDS and isinstance(value, bool):
        return "on" if value else "off"
    if kind is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-5" (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{origin}: {path} must be a finite number, got {value}")
    if kind is bool and not isinstance(value, bool) or kind is not bool and isinstance(value, bool) \
            or not isinstance(value, kind):
        raise UserError(f"{origin}: {path} must be {kind.__name__} ({_TYPE_WORDS.get(kind, kind.__name__)}), "
                        f"got {value!r}")
    return value


def _example(default) -> str:
    if isinstance(default, list):
        return "[" + ",".join(map(str, default)) + "]"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if default != "" else "TEXT"


# --- validation helpers components use ---------------------------------------------------------------

def check(ok: bool, message: str) -> None:
    """Raise :class:`UserError` with ``message`` unless ``ok``."""
    if not ok:
        raise UserError(message)


def check_choice(key: str, value, choices) -> None:
    """``value`` must be one of ``choices``; the message names the closest one."""
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(map(str, choices))}, got {value!r}{suggest(value, choices)}")
