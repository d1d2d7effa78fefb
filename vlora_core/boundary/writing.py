"""Writing what a command produces (``-o``, ``--svg``, ``--html``, locks, migrated adapters, scaffolded plugins):
never onto one of the command's own inputs, never through a symbolic link, atomically (a temporary file
beside the target, renamed over it; nothing left behind when interrupted), with the mode the umask gives a new
file. A folder, a path under a file or a place that cannot be written is a usage error (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from ..diagnostics import os_error_hint, short_path
from ..errors import UsageError
from .text import shown


def _umask_mode(base: int = 0o666) -> int:
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | Path, *, inputs: Iterable[str | Path] = (), what: str = "the output",
                 folder: bool = False) -> Path:
    """Refuse an output path that is one of ``inputs`` (or lies inside an input folder), a symbolic link, a folder
    (for a file) or a file (for a folder), or lies under a file; returns it as a ``Path``."""
    out = Path(path)
    shown = short_path(str(out))
    for given in inputs:
        source = Path(given)
        if _same(out, source) or (source.is_dir() and out.resolve().is_relative_to(source.resolve())):
            raise UsageError(f"{what} {shown} is one of this command's inputs ({short_path(str(source))}); writing "
                             "it would destroy the input", hint="write to another path")
    if out.is_symlink():
        raise UsageError(f"{what} {shown} is a symbolic link; vlora does not write through links",
                         hint="write to the link's target directly, or to another path")
    if out.exists() and not folder and out.is_dir():
        raise UsageError(f"{what} {shown} is a folder", hint="give a file path")
    if out.exists() and folder and not out.is_dir():
        raise UsageError(f"{what} {shown} is a file", hint="give a new (or empty) folder")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"{what} {shown} lies under {short_path(str(parent))}, which is a file, not a "
                                 "folder", hint="give a path in a folder")
            break
    return out


@contextlib.contextmanager
def _refused_os_errors(what: str, shown: str) -> Iterator[None]:
    try:
        yield
    except UsageError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot write {what} {shown}: {exc.strerror or exc}", hint=os_error_hint(exc)) from None


def write_text(path: str | Path, text: str, *, inputs: Iterable[str | Path] = (), what: str = "the output") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, after ``check_output``."""
    return write_bytes(path, text.encode("utf-8"), inputs=inputs, what=what)


def write_bytes(path: str | Path, data: bytes, *, inputs: Iterable[str | Path] = (), what: str = "the output") -> Path:
    out = check_output(path, inputs=inputs, what=what)
    shown = short_path(str(out))
    with _refused_os_errors(what, shown):
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, _umask_mode())
            if out.is_symlink():  # appeared since the check
                raise UsageError(f"{what} {shown} became a symbolic link while being written")
            os.replace(tmp, out)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return out


def write_folder(path: str | Path, files: Mapping[str, bytes | Callable[[Path], None]], *,
                 inputs: Iterable[str | Path] = (), what: str = "the output folder",
                 fill: Callable[[Path], None] | None = None) -> Path:
    """Write a new folder atomically: each of ``files`` (a relative path -> its bytes, or a function that writes
    the file at the path it is given: a library's own saver) into a temporary folder beside ``path``, which is
    renamed to ``path`` at the end (``path`` must not exist, or be an empty folder). A relative path that would
    leave the folder is refused. ``fill``: a library's saver of a whole folder (``save_pretrained``), run first
    on the temporary folder."""
    out = check_output(path, inputs=inputs, what=what, folder=True)
    shown_out = short_path(str(out))
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{shown_out} exists and is not an empty folder", hint="write into a new folder")
    with _refused_os_errors(what, shown_out):
        out.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            if fill is not None:
                fill(work)
            for name, content in files.items():
                target = (work / name).resolve()
                if not target.is_relative_to(work.resolve()) or name.startswith(("/", "~")):
                    raise UsageError(f"{shown(name, 80)} would be written outside {shown_out}",
                                     hint="name files inside the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                if callable(content):
                    content(target)
                else:
                    target.write_bytes(content)
            os.chmod(work, _umask_mode(0o777))
            for item in work.rglob("*"):
                if item.is_file() and not item.is_symlink():
                    os.chmod(item, _umask_mode(0o777 if item.stat().st_mode & stat.S_IXUSR else 0o666))
            if out.exists():
                out.rmdir()
            os.replace(work, out)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return out


__all__ = ["check_output", "write_bytes", "write_folder", "write_text"]
