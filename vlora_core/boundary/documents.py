"""Reading a document a user wrote (a spec: YAML, JSON or TOML) with the line of every key, within caps: a
size cap, a cap on values with every YAML alias expanded, no duplicate keys, UTF-8 text, and one
``SpecFileError`` naming the file (and line) for anything else. Pure file-format work: it knows no spec field.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..diagnostics import Location
from ..errors import SpecFileError, VloraError
from .reading import CAPS, check_values, read_text

Lines = dict[tuple[str | int, ...], int]  # a key's path in the document -> its line


def field_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def location_of(
    source: str | None, lines: Mapping[tuple[str | int, ...], int | str], path: tuple[str | int, ...]
) -> Location:
    """Where field ``path`` of a document is: its file and line, or (a value ``lines`` holds as text) the
    command-line option that set it (``--set r=0``)."""
    field = field_path(path) or None
    for cut in range(len(path), -1, -1):
        line = lines.get(tuple(path[:cut]))
        if isinstance(line, str):
            return Location(subject=line, field=field)
        if line is not None and source is not None:
            return Location(file=source, line=line, field=field)
    if source is None:
        return Location(field=field or "spec")
    return Location(file=source, field=field)


def _yaml_lines(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out[sub] = key.start_mark.line + 1
            _yaml_lines(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*path, i)] = item.start_mark.line + 1
            _yaml_lines(item, (*path, i), out)


_TOML_KEY = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_TOML_DOTTED = rf"{_TOML_KEY}(?:\s*\.\s*{_TOML_KEY})*"


def _toml_parts(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in re.findall(_TOML_KEY, dotted))


def _toml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The line of each key (TOML parsers give no positions): ``key =`` under its ``[table]`` header, dotted
    keys (``vision.r = 4``) and the keys of an inline table (``language = { r = 8 }``) on its line."""
    out: dict[tuple[str | int, ...], int] = {(): 1}
    table: tuple[str, ...] = ()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.fullmatch(rf"\[\[?\s*({_TOML_DOTTED})\s*\]\]?\s*(?:#.*)?", line)
        if header:
            table = _toml_parts(header.group(1))
            for i in range(1, len(table) + 1):
                out.setdefault(table[:i], number)
            continue
        key = re.match(rf"({_TOML_DOTTED})\s*=(.*)", line)
        if not key:
            continue
        parts = (*table, *_toml_parts(key.group(1)))
        for i in range(len(table) + 1, len(parts) + 1):
            out.setdefault(parts[:i], number)
        inline = key.group(2).strip()
        if inline.startswith("{"):
            for inner in re.findall(rf"({_TOML_DOTTED})\s*=", inline):
                out.setdefault((*parts, *_toml_parts(inner)), number)
    return out


MAX_SPEC_BYTES = CAPS["spec"]
MAX_VALUES = 2_000_000  # another tool's file: a list of 150,000 module names is far below it
MAX_SPEC_VALUES = 100_000  # values of a spec with every YAML alias expanded (a "billion laughs" file: 10**9)


_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's, where PyYAML was built with it: ~10x faster
# YAML 1.1's base-60 numbers (`16:00` is 960) are not numbers here: a file and `--set` read `r: 16:00` as the
# text it looks like, which the spec then refuses where a number is expected (YAML 1.2 dropped them too)
_INT = re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$")
_FLOAT = re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


class LOADER(_BASE):
    """The safe YAML loader (libyaml's where available) without YAML 1.1's base-60 numbers."""


LOADER.yaml_implicit_resolvers = {
    first: [(tag, _INT if tag == "tag:yaml.org,2002:int" else _FLOAT if tag == "tag:yaml.org,2002:float" else rx)
            for tag, rx in resolvers]
    for first, resolvers in _BASE.yaml_implicit_resolvers.items()
}


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for with every alias expanded, in time linear in the file."""
    key = id(node)
    if memo.get(key) == -1:  # reached again while it is being counted: an alias that contains itself
        raise RecursionError("an alias that contains itself")
    if key not in memo:
        memo[key] = -1
        if isinstance(node, yaml.MappingNode):
            size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            size = 1 + sum(_expanded_size(item, memo) for item in node.value)
        else:
            size = 1
        memo[key] = size
    return memo[key]


def load_yaml(text: str, path: str | Path, kind: str, error: type[VloraError] = SpecFileError) -> Any:
    """YAML (or JSON) from outside: at most ``MAX_SPEC_VALUES`` values with every alias expanded, nested at most
    ``MAX_DEPTH`` deep, finite numbers, no base-60; one ``error`` naming the file (and line) otherwise."""
    p = Path(path)
    most = MAX_SPEC_VALUES if kind == "spec" else MAX_VALUES
    try:
        node = yaml.compose(text, Loader=LOADER)
        if node is not None and _expanded_size(node, {}) > most:
            raise error(f"the YAML expands to more than {most:,} values", where=Location(file=str(p)),
                        hint=f"a {kind} needs no nested aliases; write the values out")
        data = yaml.load(text, Loader=LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        raise error(f"not valid YAML or JSON ({problem})", where=Location(file=str(p),
                    line=mark.line + 1 if mark else None), hint="fix the syntax at that line") from None
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML or JSON ({str(exc).splitlines()[0][:200]})", where=Location(file=str(p)),
                    hint="remove control characters from the file") from None
    except RecursionError:
        raise error("the file nests too deeply, or has an alias that contains itself", where=Location(file=str(p)),
                    hint=f"a {kind} nests a few levels at most") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise error(f"a value cannot be read: {str(exc).splitlines()[0][:200]}", where=Location(file=str(p)),
                    hint=f"fix the {kind} file") from None
    check_values(data, p, kind, error)
    return data


def _duplicate_key(node: yaml.Node, seen: set[int] | None = None) -> yaml.Node | None:
    """The first key node that repeats a key of its mapping (YAML and JSON would silently keep the last)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[Any] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in keys:
                    return key
                keys.add(key.value)
            found = _duplicate_key(value, seen)
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item, seen)
            if found is not None:
                return found
    return None


def _check_duplicates(node: yaml.Node | None, path: Path) -> None:
    key = _duplicate_key(node) if node is not None else None
    if key is not None:
        raise SpecFileError(f"key {key.value!r} is written twice in one mapping; the second would silently win",
                            where=Location(file=str(path), line=key.start_mark.line + 1),
                            hint="keep one of them")


def read_document(path: Path) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    try:
        return _read_file(path)
    except RecursionError:
        raise SpecFileError("the file nests too deeply, or has an alias that contains itself",
                            where=Location(file=str(path)), hint="a spec is a mapping with a few flat blocks") from None
    except ValueError as exc:  # a value the parser cannot take (an integer of thousands of digits)
        raise SpecFileError(f"cannot read a value: {str(exc).splitlines()[0][:200]}", where=Location(file=str(path)),
                            hint="write the value as a spec expects it (see `vlora schema`)") from None


def _read_file(path: Path) -> tuple[Any, dict[tuple[str | int, ...], int]]:
    text = read_text(path, "spec", SpecFileError)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            node = yaml.compose(text, Loader=LOADER)
            memo: dict[int, int] = {}
            if node is not None and _expanded_size(node, memo) > MAX_SPEC_VALUES:
                aliased = len(memo) <= MAX_SPEC_VALUES  # the file itself is small; its aliases make it big
                raise SpecFileError(
                    f"the YAML {'expands to' if aliased else 'has'} more than {MAX_SPEC_VALUES:,} values"
                    + (" through its aliases" if aliased else ""),
                    where=Location(file=str(path), line=node.start_mark.line + 1),
                    hint="a spec needs no nested aliases; write the values out" if aliased
                    else "a spec is a mapping with a few flat blocks; is this the file you meant?",
                )
            _check_duplicates(node, path)
            data = yaml.load(text, Loader=LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            raise SpecFileError(
                f"malformed YAML: {problem}",
                where=Location(file=str(path), line=mark.line + 1 if mark else None),
                hint="fix the YAML syntax at that line",
            ) from None
        except yaml.YAMLError as exc:  # the reader's errors (NUL and other control bytes) carry a position only
            position = getattr(exc, "position", None)
            line = text[:position].count("\n") + 1 if isinstance(position, int) else None
            reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
            raise SpecFileError(f"malformed YAML: {reason}", where=Location(file=str(path), line=line),
                                hint="remove control characters from the file") from None
        lines: dict[tuple[str | int, ...], int] = {}
        if node is not None:
            _yaml_lines(node, (), lines)
        return data, lines
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecFileError(f"malformed JSON: {exc.msg}", where=Location(file=str(path), line=exc.lineno)) from None
        lines = {}
        try:  # JSON is YAML: reuse the YAML composer for key positions and duplicate keys
            node = yaml.compose(text, Loader=LOADER)
        except yaml.YAMLError:
            node = None
        if node is not None:
            _check_duplicates(node, path)
            _yaml_lines(node, (), lines)
        return data, lines
    if suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"line (\d+)", str(exc))
            if match:
                line: int | None = int(match.group(1))
            else:  # "at end of document": the last line that has something
                line = (len(text.rstrip().splitlines()) or 1) if "end of document" in str(exc) else None
            raise SpecFileError(f"malformed TOML: {exc}", where=Location(file=str(path), line=line)) from None
        return data, _toml_lines(text)
    raise SpecFileError(
        f"unknown spec file type {suffix or '(none)'!r}",
        where=Location(file=str(path)),
        hint="use .yaml, .yml, .json or .toml",
    )


__all__ = ["LOADER", "MAX_SPEC_BYTES", "MAX_SPEC_VALUES", "Lines", "field_path", "load_yaml", "location_of",
           "read_document"]
