"""``apply``: resolve a spec against a live model and wrap it with PEFT adapters for exactly the plan.

Nothing touches the model until the plan is valid, so a resolution error leaves it as it was. What PEFT
is known to reject is refused before it starts; if PEFT fails (or is interrupted) half-way, the model is
put back as it was: every module, parameter, buffer, dtype, ``requires_grad`` flag, hook and attribute.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError, VloraError
from .modeltree import tree_from_module
from .peft import Snapshot, checkpointing_on, lora_config, restored_on_failure, rewritten_weights
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
    gradient_checkpointing: bool = False,
) -> PeftModel:
    """Resolve ``spec`` against ``model`` and wrap it with PEFT adapters for exactly the planned targets.

    Nothing touches the model until the plan is valid; any resolution error leaves it unchanged, and so
    does a failure (or a KeyboardInterrupt) inside PEFT: the model is restored before the error is raised.
    The returned model carries the plan as ``peft_model.vlora_plan`` (and ``vlora_plans``, by adapter name).
    Given a ``PeftModel``, adds another adapter under ``adapter_name`` (planned on its base model; the name
    must be new), as PEFT's ``add_adapter`` does: the active adapter stays the one it was.

    A bitsandbytes-quantized model (4-bit or 8-bit) goes through PEFT's ``prepare_model_for_kbit_training``
    first (QLoRA: the weights stay quantized, norms and other small float weights are upcast to float32).
    ``gradient_checkpointing=True`` turns on the model's gradient checkpointing (non-reentrant, so every
    adapter gets its gradient without an input hook).
    """
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if isinstance(model, PeftModel):
        return _add_adapter(model, spec, registry, adapter_name)
    plan = resolve(spec, model, registry=registry)
    if gradient_checkpointing and not hasattr(model, "gradient_checkpointing_enable") and not hasattr(
            model, "activation_checkpointing_enable"):
        raise VloraError(
            f"gradient_checkpointing=True needs a model with gradient_checkpointing_enable(); "
            f"{type(model).__name__} has none",
            hint="use a transformers model, or turn checkpointing on yourself (torch.utils.checkpoint)",
        )
    if gradient_checkpointing and getattr(model, "supports_gradient_checkpointing", True) is False:
        raise UsageError(
            f"gradient_checkpointing=True: transformers does not support gradient checkpointing for "
            f"{type(model).__name__} (its supports_gradient_checkpointing is False)",
            hint="train it without checkpointing (leave --gradient-checkpointing out), with a smaller batch or "
            "sequence if memory is short",
        )
    rewritten = rewritten_weights(plan, model)
    config = lora_config(plan)
    first = next(model.parameters(), None)
    on_meta = first is not None and first.is_meta  # a model is built on the meta device whole, or not at all
    snapshot = Snapshot(model, copy_weights_of=rewritten)
    checkpointing = {"use_reentrant": False}
    with restored_on_failure(snapshot, "adding the adapters"):
        if plan.quantization is not None:  # checkpointing by the name the installed transformers gives it, below
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if gradient_checkpointing:
            checkpointing_on(model, checkpointing)
        with warnings.catch_warnings():
            # PEFT checks rank/alpha pattern keys against targeted *module* names only, so a key for a parameter
            # target (which it does apply) is reported as unmatched; the count check below is the real check.
            warnings.filterwarnings("ignore", r"The following (rank|alpha)_pattern keys did not match",
                                    RuntimeWarning)
            # PEFT asks the model `is_gradient_checkpointing`, which transformers 5 renamed: PEFT's call, not yours
            warnings.filterwarnings("ignore", r"`is_gradient_checkpointing` is deprecated", FutureWarning)
            peft_model = get_peft_model(model, config, adapter_name=adapter_name, low_cpu_mem_usage=on_meta)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        if trainable != plan.trainable_params:
            raise VloraError(
                f"internal error: PEFT made {trainable:,} parameters trainable, the plan says "
                f"{plan.trainable_params:,}",
                hint="please report this with `vlora plan --json` output",
            )
    peft_model.vlora_plan = plan
    peft_model.vlora_plans = {adapter_name: plan}
    return peft_model


def _add_adapter(peft_model: PeftModel, spec: Any, registry: Registry | None, adapter_name: str) -> PeftModel:
    """Another adapter, planned on the base model under the existing one, added with ``add_adapter``."""
    existing = list(peft_model.peft_config)
    if adapter_name in existing:
        raise UsageError(
            f"this model already has an adapter named {adapter_name!r} (its adapters: {', '.join(existing)})",
            hint="pass another adapter_name=..., or remove that one first: peft_model.delete_adapter(name)",
        )
    base = peft_model.get_base_model()
    tree = tree_from_module(base, source=type(base).__name__, through_adapters=True)
    plan = resolve(spec, tree, registry=registry)
    config = lora_config(plan)
    snapshot = Snapshot(peft_model)  # its peft_config dict is one of the dicts the snapshot puts back
    with restored_on_failure(snapshot, f"adding adapter {adapter_name!r}"):
        peft_model.add_adapter(adapter_name, config)
        mine = re.compile(rf"\.{re.escape(adapter_name)}(?:\.|$)")
        added = sum(p.numel() for n, p in peft_model.named_parameters() if mine.search(n))
        if added != plan.lora_params + plan.full_params:
            raise VloraError(f"internal error: PEFT added {added:,} parameters for adapter {adapter_name!r}, the "
                             f"plan says {plan.lora_params + plan.full_params:,}",
                             hint="please report this with `vlora plan --json` output")
    plans = getattr(peft_model, "vlora_plans", None) or {}
    plans[adapter_name] = plan
    peft_model.vlora_plans = plans
    return peft_model


__all__ = ["apply"]
