"""``param_groups``: torch optimizer parameter groups for a model wrapped by the plan, with a learning rate
per component (and for cross-attention), LoRA+ for ``lora_B``, and no weight decay on biases and norms.

Every trainable parameter is placed by the plan: by the target, fully trained module or component layer it
belongs to. The groups partition exactly the trainable parameters; anything else is a bug, refused here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import UsageError, VloraError
from .peft.rules import base_name
from .placement import path_pattern
from .plan import TargetPlan
from .spec import LearningRateScales

if TYPE_CHECKING:
    import torch.nn as nn


def param_groups(
    model: nn.Module,
    plan: TargetPlan | None = None,
    *,
    lr: float,
    weight_decay: float = 0.0,
    lr_scale: LearningRateScales | Mapping[str, float] | None = None,
    loraplus_lr_ratio: float | None = None,
) -> list[dict[str, Any]]:
    """Parameter groups for ``torch.optim`` (e.g. ``AdamW(param_groups(peft_model, lr=2e-4))``).

    ``plan`` defaults to the one ``apply`` attached (``peft_model.vlora_plan``); ``lr_scale`` and
    ``loraplus_lr_ratio`` default to the spec's. A parameter of component C trains at ``lr *
    lr_scale[C]`` (times ``lr_scale['cross_attention']`` in cross-attention targets, times
    ``loraplus_lr_ratio`` for ``lora_B``); biases, norms and other 1-D parameters get no weight decay.
    Each group carries a ``name`` saying what it holds (``vision lora_B``, ``language no_decay``, ...).
    """
    plan = plan if plan is not None else getattr(model, "vlora_plan", None)
    if plan is None:
        raise UsageError("param_groups needs the plan: pass plan=, or a model from vlora_core.apply (it carries "
                         "the plan as .vlora_plan)")
    scales = plan.spec.lr_scale if lr_scale is None else (
        lr_scale if isinstance(lr_scale, LearningRateScales) else LearningRateScales(**dict(lr_scale)))
    ratio = plan.spec.loraplus_lr_ratio if loraplus_lr_ratio is None else loraplus_lr_ratio
    _check_number("lr", lr, positive=True)
    _check_number("weight_decay", weight_decay, positive=False)
    if ratio is not None:
        _check_number("loraplus_lr_ratio", ratio, positive=True, why=" (at or below 0, lora_B would climb the loss)")
    where = _Owners(plan)
    strangers = [n for n, p in model.named_parameters()
                 if p.requires_grad and ".lora_" in n and base_name(n) not in where.owners]
    if strangers:
        raise UsageError(f"the model trains adapters the plan does not have, e.g. {strangers[0]} ({len(strangers)} "
                         "tensors): the plan is of another spec or model",
                         hint="pass the plan apply() attached (peft_model.vlora_plan), or leave plan= out")
    groups: dict[tuple[float, float, str], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        component, role = where.of(name)
        rate = lr * scales.scale(component, role)
        is_b = ".lora_B." in name or ".lora_embedding_B." in name
        if is_b and ratio is not None:
            rate *= ratio
        decay = weight_decay if param.ndim >= 2 and not name.endswith("bias") else 0.0
        label = " ".join(p for p in (component or "other", "cross_attention" if role == "cross_attention" else "",
                                     "lora_B" if is_b and ratio is not None else "",
                                     "no_decay" if decay == 0.0 and weight_decay else "") if p)
        group = groups.setdefault((rate, decay, label), {"params": [], "lr": rate, "weight_decay": decay,
                                                         "name": label})
        group["params"].append(param)
    out = sorted(groups.values(), key=lambda g: g["name"])
    _check_partition(model, out)
    return out


def _check_number(name: str, value: Any, *, positive: bool, why: str = "") -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and (
        value > 0 if positive else value >= 0)
    if not ok:
        raise UsageError(f"{name} must be a {'positive' if positive else 'non-negative'} finite number, got "
                         f"{value!r}{why}")


class _Owners:
    """Which component (and role) a trainable parameter of the wrapped model belongs to, read from the plan."""

    def __init__(self, plan: TargetPlan) -> None:
        self.owners: dict[str, tuple[str, str | None]] = {t.name: (t.component, t.role) for t in plan.targets}
        for t in plan.parameter_targets:  # PEFT wraps the module that holds a targeted parameter
            self.owners.setdefault(t.name.rpartition(".")[0], (t.component, t.role))
        for m in plan.full_modules:
            self.owners[m.name] = (m.component, None)
        # the layers of each component (biases trained by bias="all" lie there, outside the targets)
        paths: dict[str, str] = {}
        for t in plan.targets:
            paths.setdefault(t.path, t.component)
        self.layers = [(path_pattern(p), c) for p, c in paths.items()]

    def of(self, name: str) -> tuple[str, str | None]:
        base = base_name(name)
        parts = base.split(".")
        for cut in range(len(parts), 0, -1):
            owner = self.owners.get(".".join(parts[:cut]))
            if owner is not None:
                return owner
        for rx, component in self.layers:
            if rx.match(base):
                return component, None
        return "", None


def _check_partition(model: nn.Module, groups: list[dict[str, Any]]) -> None:
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    grouped = [id(p) for g in groups for p in g["params"]]
    if len(grouped) != len(set(grouped)) or set(grouped) != trainable:
        raise VloraError("internal error: the parameter groups do not partition the trainable parameters",
                         hint="please report this with `vlora plan --json` output")


__all__ = ["param_groups"]
