"""Lock files: a resolved plan written down, and the diff between a lock and a fresh plan.

A lock records each target by its *logical identity* (component, role, stack, layer, leaf) next to its
raw module name, with rank, alpha and parameter count, plus the fully trained modules, totals, a hash
of the normalized spec, and the versions of vlora, the plugin, transformers and peft.

Checking a plan against a lock compares logical identities: a target added or removed, or its rank /
alpha / size changed, is a mismatch. Raw module names that moved (a transformers layout rename) and
version changes are not: they are reported in one line, and the check passes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .boundary import CAPS, read_json, write_text
from .diagnostics import Location, os_error_hint
from .errors import LockMismatchError, UsageError
from .patterns import layer_ranges
from .plan import TargetPlan
from .vocabulary import TargetKey

LOCK_FORMAT = 1  # the format this vlora writes (``"vlora_lock": 1``); raised when a lock's meaning changes
READS_FORMATS = (1,)  # formats it reads: an older one stays here as long as its locks can be checked
MAX_LOCK_BYTES = CAPS["lock"]  # a lock of the largest bundled model is a few MiB
LOCK_SUFFIX = ".lock.json"
_WRITABLE = "check that the folder is writable and has space"


def spec_hash(plan: TargetPlan) -> str:
    """Hash of the fields the spec sets (presets expanded), so a vlora upgrade that adds a field with a
    default does not look like a spec change."""
    written = plan.spec.model_dump(mode="json", exclude_unset=True)
    canonical = json.dumps(written, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def lock_path_for(spec_path: str | Path) -> Path:
    """Where the lock of a spec file lives: beside it, ``name.yaml`` -> ``name.lock.json``."""
    path = Path(spec_path)
    return path.with_name(path.stem + LOCK_SUFFIX)


def make_lock(plan: TargetPlan) -> dict[str, Any]:
    return {
        "vlora_lock": LOCK_FORMAT,
        "spec_sha256": spec_hash(plan),
        "model": plan.model,
        "architecture": plan.architecture,
        "versions": plan.versions(),
        "totals": {
            "targets": len(plan.targets),
            "lora_params": plan.lora_params,
            "full_params": plan.full_params,
            "trainable_params": plan.trainable_params,
        },
        "targets": [
            {
                **t.key.to_dict(),
                "name": t.name,
                "r": t.r,
                "lora_alpha": t.lora_alpha,
                "lora_params": t.lora_params,
            }
            for t in plan.targets
        ],
        "full_modules": [m.to_dict() for m in plan.full_modules],
    }


def write_lock(plan: TargetPlan, path: str | Path) -> Path:
    """Write the lock of ``plan`` to ``path`` atomically: into a temporary file in the same folder, then
    renamed over ``path``, so that a full disk, a kill or a concurrent writer never leaves a truncated or
    interleaved lock. Refuses a symbolic link at ``path``, a folder, a missing folder, and the spec file
    the plan came from."""
    path = Path(path)
    where = Location(file=str(path))
    try:
        _check_lock_path(plan, path, where)
    except OSError as exc:  # a name the file system refuses (a component over 255 bytes, ...)
        raise UsageError(f"cannot use the lock path: {exc.strerror or exc}", where=where,
                         hint=os_error_hint(exc, _WRITABLE)) from None
    text = json.dumps(make_lock(plan), indent=2, sort_keys=True) + "\n"
    write_text(path, text, inputs=[plan.spec.source] if plan.spec.source else [], what="the lock")
    return path


def _check_lock_path(plan: TargetPlan, path: Path, where: Location) -> None:
    if path.is_symlink():
        raise UsageError("the lock path is a symbolic link; vlora does not write through links", where=where,
                         hint="write the lock to a regular file path (-o FILE)")
    if path.is_dir():
        raise UsageError("the lock path is a folder", where=where, hint="name a file, e.g. -o NAME.lock.json")
    if not path.parent.is_dir():
        raise UsageError("the lock's folder does not exist", where=where, hint="create the folder first")
    source = plan.spec.source
    if source is not None and path.exists() and Path(source).exists() and path.samefile(source):
        raise UsageError("the lock path is the spec file itself; writing it would destroy the spec", where=where,
                         hint="leave -o out (the lock goes beside the spec as NAME.lock.json) or name another file")


def check_lock_paths(pairs: list[tuple[str, Path]]) -> None:
    """Refuse to write two specs' locks to one path (``a.yaml`` and ``a.json`` both lock to ``a.lock.json``)."""
    seen: dict[Path, str] = {}
    for spec, path in pairs:
        key = path.resolve()
        if key in seen:
            raise UsageError(f"{seen[key]} and {spec} would both lock to {path}; nothing was written",
                             hint="rename one of the specs, or lock them one at a time with -o")
        seen[key] = spec


def read_lock(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    where = Location(file=str(path))
    if not path.exists() and not path.is_symlink():
        raise UsageError("no such lock file", where=where, hint="write it with `vlora lock SPEC`")
    try:
        data = read_json(path, "lock", LockMismatchError, cap=MAX_LOCK_BYTES)
    except LockMismatchError as exc:
        raise LockMismatchError(f"unreadable lock file: {exc.message}", where=where,
                                hint=exc.hint if "regular file" in (exc.hint or "")
                                else "write it again with `vlora lock SPEC`") from None
    version = data.get("vlora_lock") if isinstance(data, dict) else None
    if not _is_int(version) or not isinstance(data.get("targets"), list):
        raise LockMismatchError("not a vlora lock file (no `vlora_lock` format number and `targets` list)",
                                where=where, hint="write it again with `vlora lock SPEC`")
    if version > LOCK_FORMAT:
        raise LockMismatchError(f"the lock has format {version}, written by a newer vlora; this one reads "
                                f"format {LOCK_FORMAT}", where=where,
                                hint="upgrade vlora (pip install -U vlora-core), or write the lock again with this one")
    if version not in READS_FORMATS:
        raise LockMismatchError(f"the lock has format {version}, which this vlora no longer reads (it writes "
                                f"format {LOCK_FORMAT})", where=where,
                                hint="write it again with `vlora lock SPEC` and commit the new lock")
    for i, target in enumerate(data["targets"]):
        problem = _target_problem(target)
        if problem:
            raise LockMismatchError(f"target {i} of the lock {problem}", where=where,
                                    hint="write it again with `vlora lock SPEC`")
    if not isinstance(data.get("versions", {}), dict) or not isinstance(data.get("full_modules", []), list):
        raise LockMismatchError("the lock's versions must be a mapping and its full_modules a list", where=where,
                                hint="write it again with `vlora lock SPEC`")
    for i, module in enumerate(data.get("full_modules", [])):
        if not (isinstance(module, dict) and isinstance(module.get("name"), str) and _is_int(module.get("params"))
                and isinstance(module.get("component"), str)):
            raise LockMismatchError(f"fully trained module {i} of the lock lacks name, component or params",
                                    where=where, hint="write it again with `vlora lock SPEC`")
    return data


_TARGET_FIELDS = {"component": str, "role": str, "leaf": str, "name": str}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _target_problem(target: Any) -> str | None:
    """What is wrong with one lock entry (None when it has every field, of the right type)."""
    if not isinstance(target, dict):
        return f"is a {type(target).__name__}, not a mapping"
    for key, kind in _TARGET_FIELDS.items():
        if not isinstance(target.get(key), kind):
            return f"has no {key} (a string)"
    if target.get("layer") is not None and not _is_int(target.get("layer")):
        return "has a layer that is not a whole number"
    if target.get("stack") is not None and not isinstance(target.get("stack"), str):
        return "has a stack that is not a string"
    if not (_is_int(target.get("r")) and _is_int(target.get("lora_params"))
            and isinstance(target.get("lora_alpha"), int | float) and not isinstance(target.get("lora_alpha"), bool)):
        return "lacks r, lora_alpha or lora_params (numbers)"
    return None


@dataclass
class LockDiff:
    """What differs between a lock and a fresh plan. ``ok`` when the logical plan is the same."""

    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (locked, now)
    full_added: list[str] = field(default_factory=list)
    full_removed: list[str] = field(default_factory=list)
    spec_changed: bool = False
    renamed: int = 0  # same logical target, another raw module name
    versions: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (locked, now)
    model: tuple[str, str] | None = None  # (locked, now) when the model reference differs

    @property
    def ok(self) -> bool:
        return not (self.added or self.removed or self.changed or self.full_added or self.full_removed
                    or self.spec_changed)

    def note(self) -> str | None:
        """One line on what changed without changing the plan (None when nothing did)."""
        parts = []
        if self.model:
            parts.append(f"model {self.model[0]} -> {self.model[1]}")
        if self.versions:
            parts.append(", ".join(f"{k} {a} -> {b}" for k, a, b in
                                   ((k, *v) for k, v in sorted(self.versions.items()))))
        if self.renamed:
            parts.append(f"{self.renamed} module names moved (same logical targets)")
        return "same plan as the lock; " + "; ".join(parts) if parts else None

    def lines(self) -> list[str]:
        """The mismatch, grouped by component: + added, - removed, ~ rank/alpha/size changed."""
        out = []
        if self.model:
            out.append(f"the lock was written for model {self.model[0]}, this plan is for {self.model[1]}")
        if self.spec_changed:
            out.append("the spec changed since the lock was written (its hash differs)")
        by_component: dict[str, list[str]] = {}
        for sign, items in (("+", self.added), ("-", self.removed)):
            for (comp, role, stack), group in _grouped(items).items():
                by_component.setdefault(comp, []).append(f"{sign} {_describe(role, stack, group)}")
        changes: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
        for old, new in self.changed:
            what = ", ".join(
                f"{f} {old[f]} -> {new[f]}" for f in ("r", "lora_alpha", "lora_params") if old[f] != new[f]
            )
            changes.setdefault((old["component"], old["role"], old.get("stack") or "", what), []).append(new)
        for (comp, role, stack, what), group in changes.items():
            by_component.setdefault(comp, []).append(f"~ {_describe(role, stack, group)}: {what}")
        for name in self.full_added:
            by_component.setdefault("projector", []).append(f"+ fully trained {name}")
        for name in self.full_removed:
            by_component.setdefault("projector", []).append(f"- fully trained {name}")
        for comp in sorted(by_component):
            out.append(f"{comp}:")
            out += [f"  {line}" for line in by_component[comp]]
        return out


def _grouped(items: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for t in items:
        groups.setdefault((t["component"], t["role"], t.get("stack") or ""), []).append(t)
    return groups


def _describe(role: str, stack: str, group: list[dict[str, Any]]) -> str:
    layers = [t["layer"] for t in group if t.get("layer") is not None]
    leaves = sorted({t["leaf"] or "(module)" for t in group})
    where = f" {stack}" if stack else ""
    where += f" layers {layer_ranges(layers)}" if layers else ""
    return f"{role}{where} ({len(group)} modules: {', '.join(leaves)})"


def diff_lock(lock: dict[str, Any], plan: TargetPlan) -> LockDiff:
    now = make_lock(plan)
    locked = {TargetKey.from_dict(t): t for t in lock["targets"]}
    fresh = {TargetKey.from_dict(t): t for t in now["targets"]}
    diff = LockDiff(spec_changed=lock.get("spec_sha256") != now["spec_sha256"])
    diff.added = [fresh[k] for k in sorted(fresh.keys() - locked.keys(), key=TargetKey.sort_key)]
    diff.removed = [locked[k] for k in sorted(locked.keys() - fresh.keys(), key=TargetKey.sort_key)]
    for k in sorted(fresh.keys() & locked.keys(), key=TargetKey.sort_key):
        old, new = locked[k], fresh[k]
        if any(old.get(f) != new[f] for f in ("r", "lora_alpha", "lora_params")):
            diff.changed.append((old, new))
        if old.get("name") != new["name"]:
            diff.renamed += 1
    # a fully trained module's identity on every layout: its component, its name inside it, its size
    locked_full = {(m["component"], m.get("leaf", ""), m["params"]): m["name"] for m in lock.get("full_modules", [])}
    fresh_full = {(m["component"], m.get("leaf", ""), m["params"]): m["name"] for m in now["full_modules"]}
    diff.full_added = [fresh_full[k] for k in sorted(fresh_full.keys() - locked_full.keys())]
    diff.full_removed = [locked_full[k] for k in sorted(locked_full.keys() - fresh_full.keys())]
    diff.renamed += sum(1 for k in fresh_full.keys() & locked_full.keys() if fresh_full[k] != locked_full[k])
    if lock.get("model") != now["model"]:
        diff.model = (str(lock.get("model")), now["model"])
    old_versions = lock.get("versions", {})
    diff.versions = {k: (old_versions.get(k, "?"), v) for k, v in now["versions"].items() if old_versions.get(k) != v}
    return diff
