"""Diagnostics as data: a code, a message, a location (file, line, spec field, or the plugin at fault), a hint.

Errors and warnings are built from these values and rendered to text only at the edge (the CLI, a
report), so ``vlora validate``, its JSON and GitHub formats, the conformance kit and anything else that
needs the line or the field reads a field instead of parsing prose.

A hint tells the user how to fix the problem. When the answer is in the documentation, it names the page
with ``see_docs``: its title and ``vlora docs PAGE``, which prints the page the package ships (never a
repository path an installed user does not have), or the command that prints the answer (``vlora schema``,
``vlora plugins``, ``vlora models``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]

# The documentation pages the package ships and refers to: key (``vlora docs KEY``) -> (path in the repository's
# documentation, title). Every page of docs/ is here (tests/test_layers.py checks both ways).
DOC_PAGES: dict[str, tuple[str, str]] = {
    "install": ("docs/install.md", "Installing vlora"),
    "guide": ("docs/guide.md", "Guide: from a spec to a PEFT model"),
    "spec": ("docs/spec.md", "Spec reference"),
    "how-it-works": ("docs/how-it-works.md", "How vlora resolves a spec, and what it hands to PEFT"),
    "plugin-tutorial": ("docs/plugin-tutorial.md", "Tutorial: support a new model family with a plugin"),
    "hooks": ("docs/hooks.md", "Hook reference"),
    "ci": ("docs/ci.md", "vlora in CI"),
    "cli": ("docs/cli.md", "The `vlora` command"),
    "memory": ("docs/memory.md", "Memory and parameter shares"),
    "coverage": ("docs/coverage.md", "Coverage of transformers' image-text-to-text models"),
    "interop": ("docs/interop.md", "Other tools' configs"),
    "serving": ("docs/serving.md", "Serving and merging"),
    "training": ("docs/training.md", "Training with vlora: QLoRA, TRL and the HF Trainer, learning rates, sharding"),
    "benchmarks": ("docs/benchmarks.md", "Benchmarks"),
}


def see_docs(page: str) -> str:
    """``see "<title>" (vlora docs <page>)``, for a hint; ``page`` is a key of ``DOC_PAGES``."""
    return f'see "{DOC_PAGES[page][1]}" (`vlora docs {page}`)'


@dataclass(frozen=True)
class Location:
    """Where a problem is: a file (and line), a spec field (dotted path), or a subject such as a plugin.

    Renders as today's text: ``file:line: field``, ``file: field``, ``file``, ``field``, or the subject.
    """

    file: str | None = None
    line: int | None = None
    field: str | None = None
    subject: str | None = None  # e.g. "plugin vlora-core (llava)"

    def render(self) -> str:
        if self.file is not None:
            file = short_path(self.file)
            head = f"{file}:{self.line}" if self.line is not None else file
            return f"{head}: {self.field}" if self.field else head
        if self.subject and self.field:  # a value given on the command line: `--set r=0: r`
            return f"{self.subject}: {self.field}"
        return self.field or self.subject or ""

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "subject": self.subject}

    @classmethod
    def of(cls, where: str | Location | None) -> Location | None:
        """A location from a ``where=`` argument: a ``Location`` as is, a plain string as a subject."""
        if where is None or isinstance(where, Location):
            return where
        return cls(subject=where)


def short_path(path: str, longest: int = 80) -> str:
    """``path`` with each component over ``longest`` characters cut in the middle, so that a message about a
    path component too long for the file system does not echo it whole."""
    parts = path.split("/")
    if all(len(p) <= longest for p in parts):
        return path
    return "/".join(f"{p[:40]}...{p[-16:]} ({len(p.encode())} bytes)" if len(p) > longest else p for p in parts)


def os_error_hint(exc: OSError, otherwise: str = "check the path and its permissions") -> str:
    """The hint for a path the operating system refused: too long a name, or ``otherwise``."""
    import errno

    if exc.errno == errno.ENAMETOOLONG:
        return "use a shorter name: a file system takes at most 255 bytes per path component"
    return otherwise


@dataclass(frozen=True)
class Diagnostic:
    """One problem or warning. ``code`` is stable (kebab-case), for tools; ``message`` is for people."""

    code: str
    message: str
    location: Location | None = None
    hint: str | None = None
    severity: Severity = "error"

    @property
    def where(self) -> str | None:
        return self.location.render() if self.location else None

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "location": self.location.to_dict() if self.location else None,
            "hint": self.hint,
        }


def warning(code: str, message: str, *, location: Location | None = None, hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, message, location, hint, "warning")


__all__ = ["DOC_PAGES", "Diagnostic", "Location", "Severity", "os_error_hint", "see_docs", "short_path", "warning"]
