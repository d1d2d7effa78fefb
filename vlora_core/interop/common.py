"""What the tools share: an export's result, the way PEFT matches ``target_modules``, and the import that turns
the set of modules a tool would train into the spec that plans exactly that set.

A tool's behaviour is emulated from the rule it applies (each tool's module says which rule, read from which
version), on vlora's module tree of the model; the last step, PEFT matching a regex or a list against module
names, is PEFT's documented rule, and the tests check every exported value against PEFT itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..architecture import ArchitectureSpec
from ..boundary import escape, load_yaml, one_line, read_text
from ..diagnostics import Location
from ..errors import ResolutionErrors, SpecError, SpecValidationError, UnsupportedModelError, VloraError
from ..infer import infer_architecture
from ..modeltree import ModuleTree
from ..peft.rules import pattern_value, saved_matches, target_matches
from ..plan import TargetPlan
from ..plugins import Registry, default_registry
from ..resolve import resolve
from ..synthesis import synthesize
from .versions import ToolVersion, tool_version


@dataclass(frozen=True)
class Export:
    """A plan said in another tool's words: the file's text, and what that tool cannot express."""

    tool: str
    text: str
    lost: tuple[str, ...] = ()  # what the plan asks and the tool cannot do (the config is the nearest one)
    notes: tuple[str, ...] = ()  # how the tool reads this config, where that is not what its flags suggest
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)  # the values, as data (for tests and code)
    version: ToolVersion | None = None  # the releases of the tool it is written for (also in the text's header)


def peft_matches(target_modules: str | Iterable[str] | None, names: Iterable[str], *, source: str = "",
                 key: str = "target_modules") -> list[str]:
    """The names PEFT's ``target_modules`` selects (``vlora_core.peft.rules.target_matches``, a regex run by the
    time-bounded engine); a regex that does not compile or backtracks without end is an error naming the file
    and the key."""
    return target_matches(target_modules, names, where=source or None, error=SpecError, what=key)


def header(lines: Iterable[str], comment: str = "#") -> str:
    """Comment lines for a generated file; a control character in a line (a newline in a folder's name) is
    escaped, so that no text ever leaves its comment."""
    return "".join(f"{comment} {escape(line)}\n" if line else f"{comment}\n" for line in lines)


def export_file(plan: TargetPlan, tool: str, body: str, *, lost: Iterable[str] = (), notes: Iterable[str] = (),
                kwargs: dict[str, Any], extra: Iterable[str] = (), version: ToolVersion | None = None) -> Export:
    """An ``Export`` whose text is a comment header (what, for which versions of the tool, counts, ``extra``, what
    is lost, notes) and ``body``."""
    lost, notes = tuple(lost), tuple(notes)
    version = version or tool_version(tool)
    lines = [f"vlora export --to {tool}: {plan.model}, spec {plan.spec.source or '(in memory)'}",
             f"for {version.describe()}",
             f"{len(plan.targets)} LoRA targets, {plan.lora_params:,} LoRA parameters"
             + ("; nothing is lost" if not lost else ""), *extra]
    lines += [f"lost: {x}" for x in lost] + [f"note: {x}" for x in notes]
    return Export(tool=tool, text=header(lines) + body, lost=lost, notes=notes, kwargs=kwargs, version=version)


def lost_lines(plan: TargetPlan, tool: str, *, ranks: bool, parameters: bool, bias: tuple[str, ...],
               init: bool) -> list[str]:
    """What a tool with these abilities loses of ``plan``: per-component ranks and alphas (``ranks``: it has
    rank/alpha patterns), bare parameter targets (``parameters``: it passes target_parameters on), a bias mode
    outside ``bias``, a non-default initialisation (``init``: it has a setting for it)."""
    spec = plan.spec
    out = []
    differing = sorted({(t.component, t.r, t.lora_alpha) for t in plan.targets
                        if (t.r, t.lora_alpha) != (spec.r, spec.lora_alpha)})
    if differing and not ranks:
        said = ", ".join(f"{c} r={r} alpha={a:g}" for c, r, a in differing)
        out.append(f"per-component rank and alpha ({said}): {tool} has one rank and one alpha; the config uses "
                   f"r={spec.r}, alpha={spec.lora_alpha:g} everywhere")
    params = [t.name for t in plan.parameter_targets]
    if params and not parameters:
        out.append(f"{len(params)} parameter targets (target_parameters: {', '.join(params[:3])}"
                   + (" ..." if len(params) > 3 else "") + f"): {tool} cannot pass them to PEFT; they stay frozen")
    if spec.bias not in bias:
        out.append(f"bias={spec.bias}: {tool} does not offer it; the config trains no bias")
    if spec.init_lora_weights is not True and not init:
        out.append(f"init_lora_weights={spec.init_lora_weights!r}: {tool} does not offer it; the config uses "
                   "PEFT's default initialisation")
    return out


def model_id(plan: TargetPlan) -> str:
    """The Hub id of the plan's model where it is a bundled reference (what the other tools load), else its name."""
    found = default_registry().find_reference(plan.model)
    return one_line(found[2].hub_id if found else plan.model, "the model's name")


def architecture_of(tree: ModuleTree, registry: Registry) -> ArchitectureSpec:
    """The architecture that places the tree's modules: the installed plugin's, else the inferred one."""
    try:
        return registry.lookup(tree.model_type or "", tree.config)[1]
    except UnsupportedModelError:
        return (tree.inference or infer_architecture(tree)).architecture


# --- import -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trains:
    """What a tool would train on a model: LoRA modules with their rank and alpha, modules in full, and notes
    on where its behaviour differs from what its flags suggest."""

    lora: dict[str, tuple[int, float]]  # module name -> (r, alpha)
    full: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # lora_dropout, use_dora, use_rslora, bias, r, lora_alpha


@dataclass(frozen=True)
class Imported:
    """A tool's config turned into a spec whose plan is what that tool would train."""

    tool: str
    source: str
    model: str
    data: dict[str, Any]  # the spec, as spec-file data
    plan: TargetPlan
    trains: Trains
    unexpressed: tuple[str, ...]  # modules the tool adapts that lie outside every component (no spec can say them)
    differences: tuple[str, ...]  # where the tool's behaviour differs from what its flags suggest

    def to_yaml(self) -> str:
        import yaml

        lines = [f"the spec whose plan on {self.model} is what {self.tool} trains with {self.source} "
                 "(vlora import)",
                 f"{len(self.plan.targets)} LoRA targets, {self.plan.lora_params:,} LoRA parameters"
                 + (f", {len(self.plan.full_modules)} modules trained in full" if self.plan.full_modules else "")]
        if self.differences:
            lines += ["", f"where {self.tool} does not do what its flags suggest:"]
            lines += [f"- {d}" for d in self.differences]
        if self.unexpressed:
            count = len(self.unexpressed)
            lines += ["", f"{self.tool} also adapts {count} module{'s' if count != 1 else ''} outside every "
                      "component, which no spec can target: " + ", ".join(self.unexpressed[:4])
                      + (" ..." if len(self.unexpressed) > 4 else "")]
        return header(lines) + yaml.safe_dump(self.data, sort_keys=False, allow_unicode=True)


def _in_tool_words(exc: VloraError, tool: str, source: str, keys: dict[str, str]) -> VloraError:
    """An error about the spec written from a tool's file, said about that file and the tool's own key."""
    diag = exc.diagnostics[0]
    field = diag.location.field if diag.location else None
    key = keys.get(field.partition(".")[0], field) if field else None
    kind = SpecError if isinstance(exc, SpecValidationError | ResolutionErrors) else type(exc)
    hint = f"vlora writes its spec from this {tool} config's values" + (f"; {diag.hint}" if diag.hint else "")
    return kind(diag.message, where=Location(file=source, field=key), hint=hint)


def spec_for(trains: Trains, tree: ModuleTree, registry: Registry, *, tool: str, source: str, model: str,
             flags_spec: dict[str, Any] | None, keys: dict[str, str] | None = None) -> Imported:
    """The spec whose plan on ``tree`` has exactly ``trains``'s modules (through the same search that writes the
    spec of an adapter on disk), and where that differs from ``flags_spec``, the spec the flags suggest. ``keys``:
    the tool's name for a spec field (``r`` -> ``lora_rank``), for messages about the tool's file."""
    keys = keys or {}
    if not trains.lora and not trains.full:
        raise SpecError(f"{tool} would train nothing on {model} with this config",
                        where=source, hint="check the target and freeze settings against the model")
    both = [n for n in trains.full for m in trains.lora if m == n or m.startswith(n + ".") or n.startswith(m + ".")]
    if both:
        raise SpecError(f"{tool} would both adapt and fully train {both[0]}"
                        + (f" and {len(set(both)) - 1} more modules" if len(set(both)) > 1 else "")
                        + " (its modules_to_save ends the names of LoRA targets, or holds them); no vlora spec can "
                        "say that", where=source, hint="name only modules without LoRA targets in modules_to_save")
    arch = architecture_of(tree, registry)
    settings = trains.settings
    config = {"r": settings.get("r"), "lora_alpha": settings.get("lora_alpha"),
              **{k: settings[k] for k in ("lora_dropout", "bias", "use_rslora", "use_dora") if k in settings}}
    try:
        found = synthesize(dict(trains.lora), list(trains.full), tree, registry, arch, config, model=model,
                           origin=source)
    except VloraError as exc:  # about a value the tool's file holds: name that file and key, not the spec's field
        raise _in_tool_words(exc, tool, source, keys) from None
    differences = list(trains.notes)
    if flags_spec is not None:
        try:
            suggested = resolve(flags_spec, tree, registry=registry)
        except VloraError as exc:
            differences.append(f"its flags alone would select nothing vlora can plan ({exc.message})")
        else:
            differences += _differences(suggested, found.plan, tool)
    return Imported(tool=tool, source=source, model=model, data=found.data, plan=found.plan, trains=trains,
                    unexpressed=found.unexpressed, differences=tuple(dict.fromkeys(differences)))


def _differences(suggested: TargetPlan, actual: TargetPlan, tool: str) -> list[str]:
    """Per component x role, where the modules the tool trains differ from the ones its flags suggest."""
    def groups(plan: TargetPlan) -> dict[tuple[str, str], set[str]]:
        out: dict[tuple[str, str], set[str]] = {}
        for t in plan.targets:
            out.setdefault((t.component, t.role), set()).add(t.name)
        return out

    said, done = groups(suggested), groups(actual)
    out = []
    for key in sorted(set(said) | set(done)):
        a, b = said.get(key, set()), done.get(key, set())
        if a == b:
            continue
        what = f"{key[0]} {key[1]}"
        if not b:
            out.append(f"{what}: the flags suggest {len(a)} adapted modules; {tool} adapts none of them")
        elif not a:
            out.append(f"{what}: the flags suggest none; {tool} adapts {len(b)} modules (e.g. {min(b)})")
        else:
            extra, missing = sorted(b - a), sorted(a - b)
            parts = ([f"{len(extra)} more (e.g. {extra[0]})"] if extra else []) + (
                [f"{len(missing)} fewer (e.g. {missing[0]})"] if missing else [])
            out.append(f"{what}: {tool} adapts {len(b)} modules where the flags suggest {len(a)}: "
                       + ", ".join(parts))
    full_said, full_done = {m.name for m in suggested.full_modules}, {m.name for m in actual.full_modules}
    if full_said != full_done:
        out.append(f"trained in full: the flags suggest {', '.join(sorted(full_said)) or 'nothing'}; {tool} "
                   f"trains {', '.join(sorted(full_done)) or 'nothing'}")
    return out


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON file holding one mapping (a tool's config), read through the boundary."""
    p = Path(path)
    data = load_yaml(read_text(p, "tool config", SpecError), p, "tool config", SpecError)
    if not isinstance(data, dict):
        raise SpecError(f"expected a mapping of settings, found {type(data).__name__}", where=str(p),
                        hint="the file should hold key: value settings")
    return data


def as_bool(value: Any, key: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SpecError(f"{key} must be true or false, got {value!r}", where=source,
                    hint=f"set {key}: true or {key}: false")


def as_dropout(value: Any, key: str, source: str) -> float:
    """A dropout probability (a command line's text too)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1:
        return float(value)
    raise SpecError(f"{key} must be a number from 0 up to 1, got {value!r}", where=source, hint=f"set {key}: 0.05")


def as_names(value: Any, key: str, source: str, *, split: bool = False) -> list[str]:
    """None, a name, or a list of names (``split``: a comma-separated string too)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()] if split else [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return list(value)
    raise SpecError(f"{key} must be a name or a list of names, got {value!r}", where=source,
                    hint=f"write {key} as a list of module names")


def as_regex(value: str, key: str, source: str) -> re.Pattern[str]:
    try:
        return re.compile(value)
    except re.error as exc:
        raise SpecError(f"{key} is not a valid regular expression ({exc})", where=source,
                        hint=f"fix {key}") from None


def as_number(value: Any, key: str, source: str, kind: type = int) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or (number <= 0 and key != "lora_dropout") or (
            kind is int and float(value) != number):
        raise SpecError(f"{key} must be a positive {'whole number' if kind is int else 'number'}, got "
                        f"{value!r}", where=source, hint=f"set {key} to a number like {'8' if kind is int else '16'}")
    return number


__all__ = ["Export", "Imported", "Trains", "architecture_of", "as_bool", "as_dropout", "as_names", "as_number",
           "as_regex", "export_file", "header", "lost_lines",
           "model_id", "pattern_value", "peft_matches", "read_mapping", "saved_matches", "spec_for"]
