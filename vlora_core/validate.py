"""Checking many spec files at once, for people and for CI: schema, resolution, locks, required plugins.

``check_files`` returns one ``FileResult`` per spec; ``render`` prints them as text (``file:line:
message``), JSON, or GitHub Actions annotations. Torch and transformers are imported only when a spec
has a model to resolve against, and each model is built once however many specs use it.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from . import errors
from .boundary import escape
from .cache import tree_for
from .diagnostics import Diagnostic, Location, os_error_hint
from .errors import LockMismatchError, SpecFileError, UsageError, VloraError
from .lock import LOCK_SUFFIX, diff_lock, lock_path_for, read_lock
from .modeltree import ModuleTree
from .plan import TargetPlan
from .plugins import default_registry
from .resolve import resolve
from .serving import AS_TRAINED, serve_plan
from .spec import load_spec

SPEC_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
FORMATS = ("text", "json", "github")


@dataclass
class Problem:
    """One problem of one file, as validate reports it. ``exit_code`` is the exit code of its kind, ``kind`` the
    diagnostic's stable name, its ``Diagnostic.code`` (``layer-selection``, ``unknown-key``, ``lock-mismatch``)."""

    file: str
    line: int | None
    message: str
    hint: str | None
    exit_code: int
    details: list[str] = field(default_factory=list)
    kind: str = "vlora"

    def text(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        out = f"{where}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")
        return "\n".join([out, *(f"    {d}" for d in self.details)])


@dataclass
class FileResult:
    file: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)  # the plan's warnings
    notes: list[str] = field(default_factory=list)  # lock notes (what changed without changing the plan)
    summary: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def expand(paths: list[str]) -> list[str]:
    """Spec files named by ``paths``: files as given, directories searched for spec files (not locks),
    glob patterns expanded. A name that matches nothing is a usage error."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        try:
            if path.is_dir():
                found = sorted(str(p) for p in path.iterdir() if p.suffix in SPEC_SUFFIXES and not p.name.endswith(
                    LOCK_SUFFIX) and p.is_file())
            elif path.exists():
                found = [raw]
            elif glob.has_magic(raw):
                found = sorted(p for p in glob.glob(raw, recursive=True) if not p.endswith(LOCK_SUFFIX))
            else:
                found = []
        except OSError as exc:  # a name the file system refuses (a component over 255 bytes), a folder it hides
            raise SpecFileError(f"cannot read it: {exc.strerror or exc}", where=Location(file=raw),
                                hint=os_error_hint(exc)) from None
        if not found:  # the same exit code as `vlora plan` on a missing spec: an unreadable spec
            raise SpecFileError("no such spec file, directory, or matching pattern", where=Location(file=raw),
                                hint="give spec files (.yaml, .yml, .json, .toml), directories or globs")
        out += [f for f in found if f not in out]
    return out


def problems_of(error: VloraError, file: str) -> list[Problem]:
    """The error's diagnostics as problems of ``file``: a location in that file gives the line, and its
    field (or, for a location elsewhere, the whole location) leads the message."""
    out = []
    for diag in error.diagnostics:
        loc = diag.location
        line, lead = None, diag.where
        if loc is not None and loc.file == file:
            line, lead = loc.line, loc.field
        elif lead == file:
            lead = None
        text = " ".join(diag.message.split())
        out.append(Problem(file, line, f"{lead}: {text}" if lead else text, diag.hint, error.exit_code, kind=diag.code))
    return out


def plugin_failures() -> list[Problem]:
    """A problem per installed plugin that failed to load (an import error, sys.exit() at import, invalid data,
    a misspelt hook): the files may still validate, but the installation does not."""
    return [Problem("plugins", None, f"plugin {f.name} ({f.distribution}) failed to load: {escape(f.reason)[:300]}",
                    f"fix or uninstall it, or skip it with VLORA_DISABLE_PLUGINS={f.name}", errors.EXIT_PLUGIN,
                    kind="plugin-failure") for f in default_registry().failures]


def check_required_plugins(requirements: list[str]) -> Problem | None:
    """Every requirement installed, loaded, and at a matching version: a plugin distribution
    (``'vlora-vipllava>=0.2'``) or an entry point (``llava``: a built-in plugin, at vlora-core's version)."""
    registry = default_registry()
    loaded = {p.distribution.lower(): p.version for p in registry.plugins}
    loaded.update({p.name.lower(): p.version for p in registry.plugins})
    failed = {f.distribution.lower(): f.reason for f in registry.failures}
    failed.update({f.name.lower(): f.reason for f in registry.failures})
    bad: list[str] = []
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise UsageError(f"--require-plugins {text!r}: {exc}",
                             hint="write it like 'llava' or 'vlora-vipllava>=0.2'") from None
        name = req.name.lower()
        try:
            version = loaded.get(name) or (failed.get(name) and "?") or metadata.version(req.name)
        except metadata.PackageNotFoundError:
            bad.append(f"{text}: missing")
            continue
        if name in failed:
            bad.append(f"{text}: installed {version} but failed to load ({failed[name]})")
        elif name not in loaded:
            bad.append(f"{text}: {req.name} {version} is installed but is not a vlora plugin")
        elif req.specifier and not req.specifier.contains(version, prereleases=True):
            bad.append(f"{text}: installed {version}")
    if not bad:
        return None
    installed = ", ".join(f"{d} {v}" for d, v in sorted(loaded.items())) or "none"
    return Problem("plugins", None, f"{len(bad)} of {len(requirements)} required plugins not satisfied",
                   "install or upgrade them, e.g. pip install " + " ".join(f"'{r}'" for r in requirements),
                   errors.EXIT_PLUGIN,
                   details=[f"installed: {installed}", f"expected: {', '.join(requirements)}",
                            f"missing or mismatched: {'; '.join(bad)}"], kind="required-plugins")


def check_files(
    files: list[str], *, model: str | None = None, lock: str | None = None, require_lock: bool = False,
    sets: list[str] | tuple[str, ...] = (), serve: tuple[str, str | None] | None = None,
) -> list[FileResult]:
    """Check each file: the schema; the plan when there is a model; its lock; with ``serve`` (engine, release),
    whether that serving engine would apply the plan's adapter as trained."""
    trees: dict[str, ModuleTree] = {}
    results = []
    for file in files:
        result = FileResult(file)
        results.append(result)
        try:
            spec = load_spec(file, sets=sets)
            ref = model or spec.model_ref()
            lock_file = Path(lock) if lock else lock_path_for(file)
            has_lock = lock is not None or lock_file.exists()
            if ref is None:
                if has_lock or require_lock:
                    raise UsageError("a lock needs a model to resolve against",
                                     where=file, hint="pass --model or set `model:` in the spec")
                result.summary = "ok (schema only: no --model and no `model:` in the spec)"
                continue
            plan = _resolve(spec, ref, trees, label=model or spec.model)
            result.warnings += plan.diagnostics
            result.summary = f"ok ({len(plan.targets)} targets, {plan.lora_params:,} LoRA parameters on {ref})"
            if serve:
                _check_serving(result, plan, trees[ref], *serve)
            if has_lock:
                _check_lock(result, plan, lock_file)
            elif require_lock:
                result.problems.append(Problem(file, None, f"no lock file {lock_file}", "write it with "
                                               f"`vlora lock {file}`", errors.EXIT_LOCK, kind="no-lock"))
        except VloraError as exc:
            result.problems += problems_of(exc, file)
        if result.problems:  # a file with a problem is never summarised as "ok" (the JSON format shows it)
            result.summary = f"failed ({len(result.problems)} problem{'s' if len(result.problems) > 1 else ''})"
    return results


def _resolve(spec: Any, ref: str, trees: dict[str, ModuleTree], label: str | None) -> TargetPlan:
    if ref not in trees:
        trees[ref] = tree_for(ref, default_registry(), label=label)
    return resolve(spec, trees[ref])


def _check_serving(result: FileResult, plan: TargetPlan, tree: ModuleTree, engine: str, version: str | None) -> None:
    check = serve_plan(plan, tree, engine, version, subject=result.file)
    if check.ok:
        result.summary = (result.summary or "ok") + f"; serves as trained on {check.engine_name}" + (
            f" with {' '.join(check.flags)}" if check.flags else "")
        return
    bad = [f for f in check.findings if f.verdict not in AS_TRAINED]
    said = "; ".join((["the engine refuses the whole adapter"] if check.refusals else [])
                     + [f"{f.group}: {f.verdict}" for f in bad][:4])
    result.problems.append(Problem(
        result.file, None, f"would not serve as trained on {check.engine_name} ({check.model_class}): {said}",
        "see `vlora plan SPEC --serve " + engine + "` for every group and why", errors.EXIT_NOT_SERVED,
        details=check.report().splitlines()[1:], kind="not-served"))


def _check_lock(result: FileResult, plan: TargetPlan, lock_file: Path) -> None:
    diff = diff_lock(read_lock(lock_file), plan)
    if diff.ok:
        result.summary = (result.summary or "ok") + f"; matches {lock_file}"
        note = diff.note()
        if note:
            result.notes.append(note)
        return
    relock = f"`vlora lock {result.file}`" + (f" -o {lock_file}" if lock_file != lock_path_for(result.file) else "")
    hint = (f"the lock is for another model: check against it with --model {diff.model[0]}, or re-lock with {relock}"
            if diff.model else f"if the change is intended, run {relock}")
    result.problems.append(Problem(
        result.file, None, f"the plan differs from {lock_file}", hint,
        LockMismatchError.exit_code, details=diff.lines(), kind=LockMismatchError.code))


def exit_code(results: list[FileResult], extra: list[Problem] = ()) -> int:
    return max([p.exit_code for r in results for p in r.problems] + [p.exit_code for p in extra],
               default=errors.EXIT_OK)


def render(results: list[FileResult], fmt: str, *, quiet: bool = False, extra: list[Problem] = ()) -> str:
    lines: list[str] = []
    if fmt == "json":
        return json.dumps({
            "ok": not extra and all(r.ok for r in results),
            "exit_code": exit_code(results, extra),
            "problems": [_problem_dict(p) for p in extra],
            "files": [{"file": r.file, "ok": r.ok, "summary": r.summary, "notes": _notes(r),
                       "warnings": [w.to_dict() for w in r.warnings],
                       "problems": [_problem_dict(p) for p in r.problems]} for r in results],
        }, indent=2, sort_keys=True) + "\n"
    for p in extra:
        lines.append(_github(p) if fmt == "github" else p.text())
    for r in results:
        if fmt == "github":
            lines += [_github(p) for p in r.problems]
            lines += [f"::warning file={r.file}::{_escape('warning: ' + w.message)}" for w in r.warnings]
            continue
        lines += [p.text() for p in r.problems]
        if r.ok and not quiet and r.summary:
            lines.append(f"{r.file}: {r.summary}")
        lines += [f"{r.file}: warning: {w.message}" for w in r.warnings]
        lines += [] if quiet else [f"{r.file}: {n}" for n in r.notes]
    return "".join(f"{line}\n" for line in lines)


def _notes(result: FileResult) -> list[str]:
    """The JSON ``notes``: warnings (as text) and lock notes, as before ``warnings`` had their own key."""
    return [f"warning: {w.message}" for w in result.warnings] + result.notes


def _problem_dict(p: Problem) -> dict[str, Any]:
    return {"file": p.file, "line": p.line, "message": p.message, "hint": p.hint, "exit_code": p.exit_code,
            "details": p.details, "kind": p.kind}


def _escape(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _github(p: Problem) -> str:
    loc = f"file={p.file}" + (f",line={p.line}" if p.line else "")
    body = p.message + (f" (hint: {p.hint})" if p.hint else "")
    if p.details:
        body += "\n" + "\n".join(p.details)
    return f"::error {loc}::{_escape(body)}"


__all__ = ["FORMATS", "FileResult", "Problem", "check_files", "check_required_plugins", "exit_code", "expand", "render"]
