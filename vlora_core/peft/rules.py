"""PEFT's own matching and naming rules, each written once (PEFT 0.21; the tests check each against PEFT
itself on real module trees). Pure string functions: no torch, no peft import.

* ``target_modules``: a string is one regular expression that must match the whole name (``re.fullmatch``);
  a list entry matches the name itself or its end after a dot.
* ``modules_to_save``: every module whose name *ends with* an entry (plain ``endswith``, no dot boundary).
* ``rank_pattern`` / ``alpha_pattern``: the first key (in dict order) for which ``re.match(rf"(.*\\.)?({key})$",
  name)`` matches; no key: the config's ``r`` / ``lora_alpha``.
* names in a wrapped model and in adapter files: ``base_model.model.`` before the base model's names; the
  adapter's tensors ``lora_A`` / ``lora_B`` (``lora_embedding_A`` / ``_B`` for embeddings, DoRA's
  ``lora_magnitude_vector``) under the wrapped module, optionally with the adapter's name; the original
  module as ``base_layer`` inside the wrapper (one ``base_layer`` per parameter adapted on the same module);
  a module trained in full as ``modules_to_save.<adapter>`` beside ``original_module``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from ..boundary import bounded_fullmatches
from ..diagnostics import Location
from ..errors import UserPatternError, VloraError

PREFIX = "base_model.model."
LORA_PARTS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")
# one tensor of an adapter file: the module it belongs to, the part, the adapter name PEFT may keep in the key
LORA_TENSOR = re.compile(r"^(?P<module>.+)\.(?P<part>" + "|".join(LORA_PARTS) + r")(?:\.(?P<adapter>[^.]+))?"
                         r"(?:\.weight)?$")
# what PEFT puts under a wrapped module: the adapter's weights, the trained copy of a saved module, the original
_INNER = re.compile(r"\.(?:" + "|".join(LORA_PARTS) + r"|modules_to_save|base_layer|original_module)(?:\.|$)")
_BASE_LAYERS = re.compile(r"(?:\.base_layer)+$")
# a module PEFT adds to a wrapped model (not one of the base model's), and the levels it puts the original under
_PEFT_PART = re.compile(r"(?:^|\.)(?:" + "|".join(LORA_PARTS) + r"|lora_dropout|modules_to_save)(?:\.|$)")
_PEFT_LEVELS = re.compile(r"\.(?:base_layer|original_module)(?=\.|$)")


def target_matches(target_modules: str | Iterable[str] | None, names: Iterable[str], *,
                   where: Location | str | None = None, error: type[VloraError] = UserPatternError,
                   what: str = "target_modules") -> list[str]:
    """The names ``target_modules`` selects (a string: a regex that must match the whole name, run by the
    time-bounded engine; a list: names or dotted suffixes, in time linear in the names). A regex that does not
    compile or backtracks without end is one ``error`` naming ``what``."""
    names = list(names)
    if target_modules is None:
        return []
    if isinstance(target_modules, str):
        found = bounded_fullmatches(target_modules, names, where=where, what=what, error=error)
        return [n for n in names if n in found]
    keys = {k for k in target_modules if isinstance(k, str)}
    return [n for n in names if n in keys or any(suffix in keys for suffix in _dotted_suffixes(n))]


def _dotted_suffixes(name: str) -> Iterator[str]:
    """``a.b.c`` -> ``b.c``, ``c``: what a list entry of ``target_modules`` may be to match ``name``."""
    start = name.find(".")
    while start != -1:
        yield name[start + 1:]
        start = name.find(".", start + 1)


_REGEX_SYNTAX = re.compile(r"[\\*+?()\[\]{}^$|]")


def literal_patterns(target_modules: Any) -> list[str]:
    r"""Entries of a ``target_modules`` *list* written as regular expressions (``visual\.blocks\.\d+\.attn\.qkv``):
    PEFT matches a list entry as a module name or a dotted name ending, never as a pattern, so such an entry
    matches nothing and the part its author meant to train was never trained."""
    if not isinstance(target_modules, list):
        return []
    return [t for t in target_modules if isinstance(t, str) and _REGEX_SYNTAX.search(t)]


def dead_entry_warnings(target_modules: Any, where: str = "target_modules") -> list[str]:
    """What to say, loudly, about each ``literal_patterns`` entry."""
    return [f"WARNING: {where} lists {t!r}, a regular expression inside a list: PEFT matches list entries as module "
            "names or name endings, never as patterns, so it matches nothing: that part of the model is not "
            "trained (write target_modules as one regex string, or list the module names)"
            for t in literal_patterns(target_modules)]


def saved_matches(modules_to_save: Iterable[str] | None, names: Iterable[str]) -> list[str]:
    """The modules PEFT trains in full for ``modules_to_save``: every (non-empty) name that ends with an entry."""
    keys = list(modules_to_save or [])
    return [n for n in names if n and any(n.endswith(k) for k in keys)]


def saved_entry(name: str, modules_to_save: Iterable[str]) -> str | None:
    """The ``modules_to_save`` entry that makes PEFT train module ``name`` in full (None: none does)."""
    return next((k for k in modules_to_save if name.endswith(k)), None)


def pattern_value(patterns: dict[str, Any] | None, name: str, default: Any) -> Any:
    """The ``rank_pattern`` / ``alpha_pattern`` value PEFT gives module ``name``: the first key that matches the
    end of the name. An invalid key raises ``re.error`` (PEFT fails on it too)."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", name):
            return value
    return default


def pattern_values(patterns: dict[str, Any] | None, names: Iterable[str], default: Any, *,
                   where: Location | str | None = None, error: type[VloraError] = UserPatternError,
                   what: str = "rank_pattern") -> dict[str, Any]:
    """``pattern_value`` for many names at once, each key run once over all of them by the time-bounded engine
    (a key that does not compile or backtracks without end is one ``error`` naming it)."""
    out = dict.fromkeys(names, default)
    left = set(out)
    for key, value in (patterns or {}).items():
        hit = bounded_fullmatches(key, sorted(left), where=where, what=f"{what} key", error=error, search=True)
        for name in hit:
            out[name] = value
        left -= hit
    return out


def base_name(name: str) -> str:
    """The base model's module a parameter of a wrapped model belongs to: ``base_model.model.`` and whatever
    PEFT puts under the wrapped module taken off."""
    return _INNER.split(name.removeprefix(PREFIX), maxsplit=1)[0]


def is_peft_part(name: str) -> bool:
    """Whether a module of a wrapped model is one PEFT added (an adapter's weights, its dropout, a trained copy)."""
    return _PEFT_PART.search(name) is not None


def unwrapped(name: str) -> str:
    """A wrapped model's module name as the base model had it (the ``base_layer`` / ``original_module`` levels
    taken out; ``base_model.model.`` is the caller's to remove)."""
    return _PEFT_LEVELS.sub("", name)


def wrapped_owner(raw: str) -> tuple[str, int]:
    """A module name as an adapter's tensors have it (``x.base_layer.base_layer``) -> (the module, how deep the
    adapted parameter's wrapper sits: 0 for the outermost)."""
    owner = _BASE_LAYERS.sub("", raw)
    return owner, raw[len(owner):].count(".base_layer")


def exact_regex(names: Iterable[str]) -> str:
    """An anchored regex matching exactly these names."""
    return "^(?:" + "|".join(re.escape(n) for n in sorted(names)) + ")$"


def value_patterns(values: dict[str, Any]) -> dict[str, Any]:
    """``rank_pattern`` / ``alpha_pattern`` keys for exact names: one key per distinct value (PEFT's first
    matching key wins, and few keys stay fast)."""
    by_value: dict[Any, list[str]] = {}
    for name, value in values.items():
        by_value.setdefault(value, []).append(name)
    return {"(?:" + "|".join(re.escape(n) for n in sorted(ns)) + ")": v for v, ns in by_value.items()}


__all__ = ["LORA_PARTS", "LORA_TENSOR", "PREFIX", "base_name", "dead_entry_warnings", "exact_regex", "is_peft_part",
           "literal_patterns", "pattern_value", "pattern_values", "saved_entry", "saved_matches", "target_matches",
           "unwrapped", "value_patterns", "wrapped_owner"]
