"""axolotl: the LoRA keys of a training YAML.

axolotl gives ``lora_target_modules`` to PEFT as given (a string is a regex over the full name, a list PEFT's
suffix list), ``lora_target_parameters`` as PEFT's ``target_parameters`` and ``lora_modules_to_save`` as its
``modules_to_save``. Export writes the plan's regex: the targets are exact; axolotl has one rank and one alpha,
so per-component ranks are lost, and said so.
"""

from __future__ import annotations

from typing import Any

from ..plan import TargetPlan
from .common import Export, export_file, lost_lines, model_id
from .versions import ToolVersion

TITLE = "axolotl (training YAML keys)"


def export(plan: TargetPlan, tree: Any = None, version: ToolVersion | None = None) -> Export:
    import yaml

    spec = plan.spec
    lost = lost_lines(plan, "axolotl", ranks=False, parameters=True, bias=("none",), init=False)
    data: dict[str, Any] = {"base_model": model_id(plan), "adapter": "lora", "lora_r": spec.r, "lora_alpha": plan.alpha,
                            "lora_dropout": spec.lora_dropout, "lora_target_modules": plan.target_regex}
    if plan.parameter_targets:
        data["lora_target_parameters"] = [t.name for t in plan.parameter_targets]
    if plan.full_modules:
        data["lora_modules_to_save"] = [m.name for m in plan.full_modules]
    if spec.use_dora:
        data["peft_use_dora"] = True
    if spec.use_rslora:
        data["peft_use_rslora"] = True
    notes = ("lora_target_linear must stay unset: it would add every Linear's name to the targets",)
    return export_file(plan, "axolotl", yaml.safe_dump(data, sort_keys=False, width=1 << 20), lost=lost,
                       notes=notes, kwargs=data, version=version)


__all__ = ["TITLE", "export"]
