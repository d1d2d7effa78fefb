"""Would an adapter on disk load completely into a model: the modules PEFT would drop, leave untrained or find
the wrong shape, and whether ``migrate`` can rewrite it for this model's layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..diagnostics import Location
from ..errors import AdapterError
from ..peft.files import AdaptedModule
from ..peft.rules import target_matches
from ..vocabulary import ADAPTED, SAVED
from .inspect import Adapter, in_order_of
from .migrate import MISFIT, TRANSPOSED, migration_map, param_layout


@dataclass(frozen=True)
class AdapterCheck:
    """Whether an adapter loads completely into a model: what PEFT would leave out or get wrong."""

    adapter: Adapter
    model: str
    unmatched: tuple[AdaptedModule, ...]  # modules of the adapter the model does not have: their weights are lost
    untrained: tuple[str, ...]  # modules the config targets in this model with no weights in the adapter
    mismatched: tuple[tuple[AdaptedModule, str], ...]  # present, but the shapes do not fit: (module, why)
    migratable: bool = False  # every unmatched module has a counterpart here (vlora adapter migrate)
    # adapted parameters (fused experts) laid out transposed: saved under another transformers version
    transposed: tuple[AdaptedModule, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.unmatched or self.untrained or self.mismatched or self.transposed)

    def to_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter.path, "model": self.model, "ok": self.ok, "migratable": self.migratable,
                "unmatched": [m.name for m in self.unmatched], "untrained": list(self.untrained),
                "mismatched": [{"name": m.name, "problem": why} for m, why in self.mismatched],
                "transposed": [m.name for m in self.transposed]}

    def report(self) -> str:
        lines = [f"{self.adapter.path} on {self.model}: "
                 + ("every tensor of the adapter loads, and every targeted module gets its weights" if self.ok
                    else "the adapter would NOT load completely")]
        if self.unmatched:
            lines.append(f"{len(self.unmatched)} adapted modules are not in this model (their weights would be "
                         "dropped):")
            lines += _grouped(self.unmatched)
        if self.untrained:
            lines.append(f"{len(self.untrained)} modules this model would give an adapter get no weights from the "
                         "file (they would stay untrained):")
            spec = self.adapter.spec
            placed = [AdaptedModule(name=n, kind=ADAPTED, params=0, placement=spec.place(n) if spec else None)
                      for n in self.untrained]
            lines += _grouped(tuple(placed))
        if self.mismatched:
            lines.append(f"{len(self.mismatched)} modules do not fit their weights:")
            lines += [f"  {m.name}: {why}" for m, why in self.mismatched[:8]]
        if self.transposed:
            m = self.transposed[0]
            lines.append(f"{len(self.transposed)} expert weights are laid out ({m.experts}, {m.in_features}, "
                         f"{m.out_features}) where this model's are ({m.experts}, {m.out_features}, {m.in_features}): "
                         "the adapter was saved under another transformers version (Qwen3-VL-MoE's fused experts are "
                         "transposed between 4.57 and 5.x); PEFT would refuse their shapes, or, where they are "
                         "square, apply them transposed")
            lines += [f"  {x.name}" for x in self.transposed[:4]] + (["  ..."] if len(self.transposed) > 4 else [])
        if self.migratable:
            lines.append((f"every one of the {len(self.unmatched)} has a counterpart in this model (the names are of "
                          "another layout): " if self.unmatched else "")
                         + "`vlora adapter migrate DIR --model REF -o OUT` rewrites the adapter for it"
                         + (" (the expert weights transposed: the same update, exactly)" if self.transposed else ""))
        return "\n".join(lines + self.adapter.warnings) + "\n"


def _grouped(modules: tuple[AdaptedModule, ...]) -> list[str]:
    groups: dict[str, list[AdaptedModule]] = {}
    for m in modules:
        groups.setdefault(m.component or ("(outside)" if m.kind == "full" else "(unplaced)"), []).append(m)
    out = []
    for component, ms in groups.items():
        example = ", ".join(m.name for m in ms[:2]) + (", ..." if len(ms) > 2 else "")
        out.append(f"  {component}: {len(ms)} ({example})")
    return out


def _config_targets(adapter: Adapter, names: list[str]) -> set[str]:
    """The module names the adapter config's target_modules picks among ``names`` (PEFT's rule); one PEFT itself
    would refuse (a regex that does not compile) is a damaged adapter."""
    return set(target_matches(adapter.config.get("target_modules"), names, error=AdapterError,
                              where=Location(file=f"{adapter.path}/adapter_config.json", field="target_modules"),
                              what="adapter_config.json: target_modules"))


def check_adapter(adapter: Adapter, tree: Any) -> AdapterCheck:
    """Check ``adapter`` against a module tree (``module_tree(model_or_ref, registry)``) as PEFT would load it."""
    adapter = in_order_of(adapter, tree)
    entries = {e.name: e for e in tree.entries}
    unmatched, mismatched, transposed = [], [], []
    for m in adapter.modules:
        entry = entries.get(m.name)
        if m.owner:  # an adapted parameter
            shape = tree.param_shape(m.name)
            layout = param_layout(m, shape)
            if shape is None:
                unmatched.append(m)
            elif layout == TRANSPOSED:
                transposed.append(m)
            elif layout == MISFIT:
                mismatched.append((m, f"the adapter is {m.experts} x {m.in_features} -> {m.out_features}, the "
                                      f"parameter is {tuple(shape)}"))
            continue
        if entry is None:
            unmatched.append(m)
        elif m.kind == ADAPTED and (entry.in_features, entry.out_features) != (m.in_features, m.out_features) \
                and entry.kind is not None:
            mismatched.append((m, f"the adapter is {m.in_features} -> {m.out_features}, the module "
                                  f"{entry.in_features} -> {entry.out_features}"))
        elif m.kind == SAVED and tree.subtree_params(m.name) not in (m.params, 0):
            mismatched.append((m, f"the adapter saves {m.params:,} values, the module has "
                                  f"{tree.subtree_params(m.name):,}"))
    wrappable = [e.name for e in tree.entries if e.kind is not None]
    have = {m.name for m in adapter.modules}
    untrained = [n for n in wrappable if n in _config_targets(adapter, wrappable) - have]  # model order
    migratable = False
    if unmatched or transposed:
        try:
            mapping = migration_map(adapter, tree)
            migratable = all(mapping[m.name] != m.name for m in unmatched) and not mismatched
        except AdapterError:
            migratable = False
    return AdapterCheck(adapter=adapter, model=tree.source, unmatched=tuple(unmatched), untrained=tuple(untrained),
                        mismatched=tuple(mismatched), migratable=migratable, transposed=tuple(transposed))




__all__ = ["AdapterCheck", "check_adapter"]
