"""Reading what comes from outside: regular files only (a FIFO or ``/dev/zero`` is refused, never read forever),
a size cap per kind, UTF-8 text, JSON with a nesting cap, and numbers that are finite and of sane size. Every
failure is one error of the caller's class, naming the file (and the key, where there is one).
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from ..diagnostics import Location, os_error_hint, short_path
from ..errors import SpecFileError, VloraError

# how large each kind of file may be before it is refused unread
CAPS: dict[str, int] = {
    "spec": 1 << 20,  # a spec is a few hundred bytes
    "lock": 64 << 20,  # a lock lists every target: Llama-4-Maverick's is a few megabytes
    "config.json": 16 << 20,  # a model's config
    "adapter config": 8 << 20,  # adapter_config.json
    "tool config": 16 << 20,  # another tool's YAML / JSON / Python / shell file (a list of 150,000 names fits)
    "cache entry": 256 << 20,
    "documentation page": 1 << 20,  # a page the package ships
    "tokenizer or processor file": 64 << 20,  # copied into a merged model: a large vocabulary's tokenizer.json
}
# what a file of each kind is, for the hint when it is not UTF-8 text
TEXT_OF: dict[str, str] = {"spec": "a YAML, JSON or TOML text file in UTF-8"}
MAX_DEPTH = 64  # nesting of JSON / YAML values: no config of any kind nests deeper than a handful
MAX_INT_DIGITS = 30  # an integer in a config: ranks, sizes, counts; 30 digits is far past any of them


def _where(path: Path, key: str | None = None) -> Location:
    return Location(file=short_path(str(path)), field=key)  # the path as the caller gave it


def read_bytes(path: str | Path, kind: str, error: type[VloraError] = SpecFileError, *, cap: int | None = None
               ) -> bytes:
    """The bytes of a regular file of ``kind`` (a key of ``CAPS``, whose cap ``cap`` overrides), refused when it is
    no regular file, larger than the cap, or unreadable."""
    p = Path(path)
    cap = CAPS[kind] if cap is None else cap
    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a pipe, a device or a socket)"
            raise error(f"{short_path(str(p))} is {what}", where=_where(p),
                        hint=f"give the {kind} file itself" if stat.S_ISDIR(info.st_mode)
                        else f"vlora reads a {kind} only from a regular file")
        if info.st_size > cap:
            raise error(f"the file is {info.st_size:,} bytes; a {kind} is at most {cap:,}", where=_where(p),
                        hint=f"is this the {kind} file you meant?")
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the two looks
                raise error(f"{short_path(str(p))} is not a regular file", where=_where(p))
            with os.fdopen(fd, "rb") as f:
                fd = -1
                data = f.read(cap + 1)
        finally:
            if fd >= 0:
                os.close(fd)
    except FileNotFoundError:
        raise error("no such file", where=_where(p), hint="check the path") from None
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror or exc}", where=_where(p), hint=os_error_hint(exc)) from None
    if len(data) > cap:  # it grew while being read
        raise error(f"the file is more than {cap:,} bytes; a {kind} is at most that", where=_where(p))
    return data


def read_head(path: str | Path, size: int, kind: str, error: type[VloraError] = SpecFileError) -> bytes:
    """The first ``size`` bytes of a regular file of ``kind`` (a weights file's header; the file itself may be
    any size); a file shorter than that is truncated."""
    p = Path(path)
    try:
        info = p.stat()
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{short_path(str(p))} is not a regular file (a folder, a pipe, a device or a socket)",
                        where=_where(p), hint=f"vlora reads a {kind} only from a regular file")
        with p.open("rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise error(f"{short_path(str(p))} is not a regular file", where=_where(p))
            data = f.read(size)
    except FileNotFoundError:
        raise error("no such file", where=_where(p), hint="check the path") from None
    except OSError as exc:
        raise error(f"cannot read the file: {exc.strerror or exc}", where=_where(p), hint=os_error_hint(exc)) from None
    if len(data) < size:
        raise error(f"the {kind} is damaged or truncated ({info.st_size:,} bytes)", where=_where(p),
                    hint="save it again, or copy the file again in full")
    return data


def decode(data: bytes, path: str | Path, kind: str, error: type[VloraError] = SpecFileError) -> str:
    """UTF-8 text, or one error naming the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"not a UTF-8 text file (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
                    where=_where(Path(path)),
                    hint=f"a {kind} is {TEXT_OF.get(kind, 'UTF-8 text')}; is this the file meant?") from None


def read_text(path: str | Path, kind: str, error: type[VloraError] = SpecFileError, *, cap: int | None = None) -> str:
    """A regular UTF-8 text file of ``kind``, within its cap."""
    return decode(read_bytes(path, kind, error, cap=cap), path, kind, error)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number vlora accepts (only finite numbers)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text.lstrip('-')):,} digits is not a value of any config")
    return int(text)


def load_json(text: str, path: str | Path, kind: str, error: type[VloraError] = SpecFileError) -> Any:
    """JSON with finite numbers of sane size, nested at most ``MAX_DEPTH`` deep."""
    p = Path(path)
    try:
        data = json.loads(text, parse_constant=_no_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
                    where=Location(file=short_path(str(p)), line=exc.lineno), hint=f"fix the {kind} file") from None
    except ValueError as exc:
        raise error(f"a value cannot be read: {exc}", where=_where(p), hint=f"fix the {kind} file") from None
    except RecursionError:
        raise error("the JSON nests too deeply", where=_where(p), hint=f"a {kind} nests a few levels at most") from None
    check_values(data, p, kind, error)
    return data


def check_values(data: Any, path: str | Path, kind: str, error: type[VloraError] = SpecFileError) -> None:
    """Nesting at most ``MAX_DEPTH`` deep, floats finite, integers of at most ``MAX_INT_DIGITS`` digits (YAML and
    TOML values too, which their parsers do not check)."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            raise error(f"the values nest more than {MAX_DEPTH} levels deep", where=_where(Path(path), key or None),
                        hint=f"a {kind} nests a few levels at most")
        if isinstance(value, float) and not math.isfinite(value):
            raise error(f"{value} is not a finite number", where=_where(Path(path), key or None),
                        hint="write a finite number")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** MAX_INT_DIGITS:
            raise error(f"an integer of {len(str(abs(value))):,} digits is not a value of any config",
                        where=_where(Path(path), key or None), hint="write a plausible number")
        if isinstance(value, dict):
            stack += [(v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in value.items()]
        elif isinstance(value, list | tuple):
            stack += [(v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value)]


def read_json(path: str | Path, kind: str, error: type[VloraError] = SpecFileError, *, cap: int | None = None) -> Any:
    """A JSON file of ``kind``: ``read_text`` then ``load_json``."""
    return load_json(read_text(path, kind, error, cap=cap), path, kind, error)


__all__ = ["CAPS", "MAX_DEPTH", "MAX_INT_DIGITS", "check_values", "decode", "load_json", "read_bytes", "read_head",
           "read_json", "read_text"]
