"""The PEFT config a plan emits, as data (no torch, no peft), and as a ``peft.LoraConfig``.

Three rules (docs/how-it-works.md, "What PEFT gets"):

* ``target_modules`` is one anchored regular expression that matches exactly the planned names; never a list
  (PEFT rewrites long lists into suffix sets that mean other modules on another model).
* per-component rank/alpha are a few pattern keys (one per component that differs from the global value),
  never one key per module.
* fully trained modules go through ``modules_to_save`` with their exact names; bare parameters and expert
  weights through ``target_parameters``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import EmptySelectionError, VloraError
from ..patterns import names_regex
from ..vocabulary import PARAMETER, component_rank
from .rules import saved_entry

if TYPE_CHECKING:
    from peft import LoraConfig

    from ..plan import Target, TargetPlan


def _alternatives(targets: list[Target]) -> list[str]:
    """Alternatives that match exactly ``targets``: one per (path, identical leaf set) group."""
    return names_regex((t.path, t.layer, t.leaf) for t in targets)


def _components(plan: TargetPlan) -> list[str]:
    return sorted({t.component for t in plan.targets}, key=lambda c: (component_rank(c), c))


def target_regex(plan: TargetPlan) -> str | None:
    """One anchored regular expression matching exactly the planned module names (None: no module target)."""
    modules = [t for t in plan.targets if t.kind != PARAMETER]
    if not modules:
        return None
    alternatives: list[str] = []
    for comp in _components(plan):
        alternatives += _alternatives([t for t in modules if t.component == comp])
    return "^(?:" + "|".join(alternatives) + ")$"


def patterns(plan: TargetPlan) -> tuple[dict[str, int], dict[str, float]]:
    """``rank_pattern`` and ``alpha_pattern``: one key per component whose value differs from the spec's."""
    rank: dict[str, int] = {}
    alpha: dict[str, float] = {}
    for comp in _components(plan):
        ts = [t for t in plan.targets if t.component == comp]
        rs = {t.r for t in ts}
        alphas = {t.lora_alpha for t in ts}
        keys = _alternatives([t for t in ts if t.kind != PARAMETER])
        keys += [re.escape(t.name) for t in ts if t.kind == PARAMETER]
        key = "(?:" + "|".join(keys) + ")"
        if rs != {plan.spec.r}:
            (rank[key],) = rs
        if alphas != {plan.spec.lora_alpha}:
            (alpha[key],) = alphas
    return rank, alpha


def whole_alpha(alpha: float) -> float | int:
    """An alpha as configs write it: an int when it is whole (16, not 16.0)."""
    return int(alpha) if float(alpha).is_integer() else alpha


def config_data(plan: TargetPlan) -> dict[str, Any]:
    """The keyword arguments of ``peft.LoraConfig`` for exactly this plan (plain data)."""
    spec = plan.spec
    if not plan.targets:
        full = ", ".join(m.name for m in plan.full_modules)
        raise EmptySelectionError(
            f"the plan trains {full} in full but has no LoRA target, and PEFT cannot build a LoRA model "
            "without one",
            where=spec.origin,
            hint="enable a tower (finetune_vision_layers / finetune_language_layers), or use "
            "finetune_projector: lora",
        )
    rank, alpha = patterns(plan)
    return {
        "r": spec.r,
        "lora_alpha": whole_alpha(spec.lora_alpha),
        "lora_dropout": spec.lora_dropout,
        "bias": spec.bias,
        "use_rslora": spec.use_rslora,
        "use_dora": spec.use_dora,
        "init_lora_weights": spec.init_lora_weights,
        "target_modules": target_regex(plan),
        "target_parameters": [t.name for t in plan.targets if t.kind == PARAMETER] or None,
        "rank_pattern": rank,
        "alpha_pattern": alpha,
        "modules_to_save": [m.name for m in plan.full_modules] or None,
        **({"ensure_weight_tying": True} if any(m.tied_to for m in plan.full_modules) else {}),
    }


def lora_config(plan: TargetPlan) -> LoraConfig:
    """A new ``peft.LoraConfig`` for exactly this plan (a fresh object every call)."""
    from peft import LoraConfig

    return LoraConfig(**config_data(plan))


def check_regex(plan: TargetPlan, names: list[str]) -> None:
    """Fail loudly if the emitted regex would match anything but the targets (a bug, never user error)."""
    regex = target_regex(plan)
    if regex is None:
        return
    rx = re.compile(regex)
    matched = {n for n in names if rx.fullmatch(n)}
    expected = {t.name for t in plan.targets if t.kind != PARAMETER}
    if matched != expected:
        extra, missing = sorted(matched - expected)[:3], sorted(expected - matched)[:3]
        raise VloraError(f"internal error: target regex mismatch (extra {extra}, missing {missing})")


def check_saved(plan: TargetPlan, names: list[str]) -> None:
    """PEFT wraps every module whose name *ends with* a ``modules_to_save`` entry (no dot boundary): refuse a
    plan whose exact names would make it wrap one more module than planned."""
    saved = [m.name for m in plan.full_modules]
    for n in names:
        owner = saved_entry(n, saved) if n not in saved else None
        if owner is not None:
            raise VloraError(
                f"PEFT would train {n} in full too: it matches modules_to_save entries by the end of the name, "
                f"and {n} ends with {owner}",
                hint="PEFT cannot tell these two apart in modules_to_save; rename the module, or train it "
                "through adapters instead",
            )


__all__ = ["check_regex", "check_saved", "config_data", "lora_config", "patterns", "target_regex", "whole_alpha"]
