"""``apply``: resolve a spec against a live model and wrap it with PEFT adapters for exactly the plan.

Nothing touches the model until the plan is valid, so a resolution error leaves it as it was.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import VloraError
from .plugins import Registry
from .resolve import resolve
from .spec import VisionLoRASpec

if TYPE_CHECKING:
    import torch.nn as nn
    from peft import PeftModel


def apply(
    model: nn.Module,
    spec: VisionLoRASpec | dict[str, Any] | str | Path,
    *,
    registry: Registry | None = None,
    adapter_name: str = "default",
) -> PeftModel:
    """Resolve ``spec`` against ``model`` and wrap it with PEFT adapters for exactly the planned targets.

    Nothing touches the model until the plan is valid; any resolution error leaves it unchanged. The
    returned model carries the plan as ``peft_model.vlora_plan``.
    """
    from peft import get_peft_model

    plan = resolve(spec, model, registry=registry)
    config = plan.to_lora_config()
    first = next(model.parameters(), None)
    on_meta = first is not None and first.is_meta  # a model is built on the meta device whole, or not at all
    with warnings.catch_warnings():
        # PEFT checks rank/alpha pattern keys against targeted *module* names only, so a key for a parameter
        # target (which it does apply) is reported as unmatched; the count check below is the real check.
        warnings.filterwarnings("ignore", r"The following (rank|alpha)_pattern keys did not match", RuntimeWarning)
        peft_model = get_peft_model(model, config, adapter_name=adapter_name, low_cpu_mem_usage=on_meta)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    if trainable != plan.trainable_params:
        peft_model.unload()
        raise VloraError(
            f"internal error: PEFT made {trainable:,} parameters trainable, the plan says "
            f"{plan.trainable_params:,}; the model was restored",
            hint="please report this with `vlora plan --json` output",
        )
    peft_model.vlora_plan = plan
    return peft_model


__all__ = ["apply"]
