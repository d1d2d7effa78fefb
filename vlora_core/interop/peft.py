"""PEFT's own format: the plan's ``LoraConfig`` as adapter_config.json holds it.

Nothing is lost: the keys are the ones ``TargetPlan.to_lora_config()`` passes (PEFT gives every other key its
default when it reads the file back with ``LoraConfig.from_pretrained`` or ``LoraConfig(**json.load(f))``), plus
``peft_type`` and ``base_model_name_or_path``. Written from the plan's data, without importing torch or PEFT.
"""

from __future__ import annotations

import json
from typing import Any

from ..plan import TargetPlan
from .common import Export, model_id
from .versions import tool_version

TITLE = "PEFT (adapter_config.json)"


def _plain(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    if hasattr(value, "value") and isinstance(value.value, str):  # an enum (peft_type, task_type)
        return value.value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def export(plan: TargetPlan, tree: Any = None, version: Any = None) -> Export:
    data = {**plan.lora_config_data(), "peft_type": "LORA", "task_type": None,
            "base_model_name_or_path": model_id(plan)}
    text = json.dumps(data, indent=2, sort_keys=True, default=_plain) + "\n"
    # JSON holds no comment: the version it is written for is the Export's (PEFT's own keys, as the installed one has)
    return Export(tool="peft", text=text, kwargs=json.loads(text), version=version or tool_version("peft"))


__all__ = ["TITLE", "export"]
