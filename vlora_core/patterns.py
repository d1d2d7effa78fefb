"""Regular expressions and short texts for sets of module names and layer indices. Pure string functions.

``names_regex`` builds the alternatives of an anchored regex that matches exactly a set of names
given as (layer path with ``*``, layer index, leaf): what ``TargetPlan.target_regex`` and the
per-component rank keys are made of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def int_pattern(numbers: list[int]) -> str:
    """A regex matching exactly these non-negative integers, compact: ``[0, 1, ..., 31]`` ->
    ``[0-9]|[12][0-9]|3[01]``. Numbers that share all but their last digit become one character class."""
    groups: dict[str, list[int]] = {}
    for n in sorted(set(numbers)):
        text = str(n)
        groups.setdefault(text[:-1], []).append(int(text[-1]))
    parts: list[tuple[str, str]] = []  # (class of the last digit, prefix)
    for prefix, digits in groups.items():
        runs, start, prev = [], digits[0], digits[0]
        for d in [*digits[1:], None]:
            if d is not None and d == prev + 1:
                prev = d
                continue
            runs.append(str(start) if start == prev else f"{start}{prev}" if prev == start + 1 else f"{start}-{prev}")
            if d is not None:
                start = prev = d
        last = runs[0] if len(runs) == 1 and len(runs[0]) == 1 else f"[{''.join(runs)}]"
        parts.append((last, prefix))
    # merge prefixes of the same length whose last-digit classes are equal: 1[0-9]|2[0-9] -> [12][0-9]
    merged: dict[tuple[str, int, str], list[str]] = {}
    for last, prefix in parts:
        merged.setdefault((last, len(prefix), prefix[:-1]), []).append(prefix[-1:] if prefix else "")
    out = []
    for (last, _, head), tails in merged.items():
        if tails == [""]:
            out.append(last)
        elif len(tails) == 1:
            out.append(f"{head}{tails[0]}{last}")
        else:
            out.append(f"{head}[{''.join(tails)}]{last}")
    return "|".join(out)


def layer_ranges(layers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2,5,7-8"``; empty -> ``"-"``."""
    if not layers:
        return "-"
    layers = sorted(set(layers))
    parts, start, prev = [], layers[0], layers[0]
    for n in [*layers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def names_regex(items: Iterable[tuple[str, int | None, str]]) -> list[str]:
    """Alternatives matching exactly the names ``path`` (with the layer index for ``*``) + ``.leaf``.

    ``items`` are (path, layer, leaf) triples; one alternative per (path, identical leaf set) group, with
    the layers of the group as a compact integer pattern."""
    by_path: dict[str, dict[int | None, set[str]]] = {}
    for path, layer, leaf in items:
        by_path.setdefault(path, {}).setdefault(layer, set()).add(leaf)
    alternatives = []
    for path in sorted(by_path, key=_natural):
        groups: dict[tuple[str, ...], list[int | None]] = {}
        for layer, leaves in by_path[path].items():
            groups.setdefault(tuple(sorted(leaves)), []).append(layer)
        for leaves, idx in sorted(groups.items(), key=lambda kv: (min((i or 0) for i in kv[1]), kv[0])):
            if idx == [None]:
                head = re.escape(path)
            else:
                before, _, after = path.partition("*")
                nums = int_pattern([i for i in idx if i is not None])
                head = f"{re.escape(before)}(?:{nums}){re.escape(after)}"
            tails = [f"\\.{re.escape(leaf)}" if leaf else "" for leaf in leaves]
            alternatives.append(head + (tails[0] if len(tails) == 1 else f"(?:{'|'.join(tails)})"))
    return alternatives


__all__ = ["int_pattern", "layer_ranges", "names_regex"]
