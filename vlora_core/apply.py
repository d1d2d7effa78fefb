"""``apply``: resolve a spec against a live model and wrap it with PEFT adapters for exactly the plan.

Nothing touches the model until the plan is valid, so a resolution error leaves it as it was. What PEFT
is known to reject is refused before it starts; if PEFT fails (or is interrupted) half-way, the model is
put back as it was: every module, parameter, buffer, dtype, ``requires_grad`` flag, hook and attribute.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import SpecArchitectureMismatch, UsageError, VloraError
from .modeltree import tree_from_module
from .plan import PARAMETER, TargetPlan
from .plugins import Registry
from .resolve import resolve
from .spec import VisionLoRASpec

if TYPE_CHECKING:
    import torch
    import torch.nn as nn
    from peft import PeftModel

# inits that rewrite the base weights of every target (the residual after taking out the top-r directions)
_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


def _rewrites_weights(init: object) -> bool:
    return isinstance(init, str) and (init in _REWRITING_INITS or init.startswith("pissa_niter_"))


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
    rewritten = _rewritten_weights(plan, model)
    config = plan.to_lora_config()
    first = next(model.parameters(), None)
    on_meta = first is not None and first.is_meta  # a model is built on the meta device whole, or not at all
    snapshot = Snapshot(model, copy_weights_of=rewritten)
    checkpointing = {"use_reentrant": False}
    with _restored_on_failure(snapshot, "adding the adapters"):
        if plan.quantization is not None:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing,
                                                    gradient_checkpointing_kwargs=checkpointing)
        elif gradient_checkpointing:
            _checkpointing_on(model, checkpointing)
        with warnings.catch_warnings():
            # PEFT checks rank/alpha pattern keys against targeted *module* names only, so a key for a parameter
            # target (which it does apply) is reported as unmatched; the count check below is the real check.
            warnings.filterwarnings("ignore", r"The following (rank|alpha)_pattern keys did not match",
                                    RuntimeWarning)
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
    config = plan.to_lora_config()
    snapshot = Snapshot(peft_model)  # its peft_config dict is one of the dicts the snapshot puts back
    with _restored_on_failure(snapshot, f"adding adapter {adapter_name!r}"):
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


@contextmanager
def _restored_on_failure(snapshot: Snapshot, what: str) -> Iterator[None]:
    """Put the model back as the snapshot has it when the body fails or is interrupted, and say so."""
    try:
        yield
    except BaseException as exc:
        snapshot.restore()
        if isinstance(exc, VloraError):
            exc.message += "; the model was restored"
            raise
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: restored, then let it through
            raise
        raise VloraError(
            f"PEFT failed while {what} ({type(exc).__name__}: {str(exc).strip()[:300]}); the model was restored",
            hint="please report this with `vlora plan --json` output: vlora should have refused the spec first",
        ) from exc


def _checkpointing_on(model: nn.Module, kwargs: dict[str, Any]) -> None:
    """Gradient (activation) checkpointing, by the name the installed transformers gives it (5.x renamed it)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _rewritten_weights(plan: TargetPlan, model: nn.Module) -> list[torch.Tensor]:
    """The weights PEFT will rewrite in place (the targets' own, under an init that decomposes them), after
    checking that it can: PiSSA, OLoRA, ... work in float32, float16 and bfloat16 only, and PEFT finds out
    target by target, after it has rewritten the earlier ones."""
    import torch

    init = plan.spec.init_lora_weights
    if not _rewrites_weights(init):
        return []
    modules = dict(model.named_modules())
    weights = []
    for t in plan.targets:
        weight = getattr(modules.get(t.name), "weight", None)
        if t.kind == PARAMETER or weight is None:
            continue
        if weight.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise SpecArchitectureMismatch(
                f"init_lora_weights: {init} decomposes each target's weight in float32, float16 or bfloat16, "
                f"and {t.name} is {str(weight.dtype).removeprefix('torch.')}",
                where=plan.spec.location("init_lora_weights"),
                hint="cast the model (model.to(torch.bfloat16)) or use another init_lora_weights",
            )
        weights.append(weight)
    return weights


class Snapshot:
    """What PEFT may change in a model, taken before it starts, and put back by ``restore()``.

    Module structure and attributes are kept by reference (each module's ``__dict__`` and the dicts in it:
    children, parameters, buffers, hooks), each tensor by the storage it had (``.data``) and its
    ``requires_grad``. PEFT replaces modules and tensors rather than writing into them, except under inits
    that rewrite the targets' weights: those weights (``copy_weights_of``) are copied and written back.
    """

    def __init__(self, model: nn.Module, *, copy_weights_of: list[torch.Tensor] = ()) -> None:
        self.modules = []
        for module in model.modules():
            attrs = dict(module.__dict__)
            dicts = {k: (v, dict(v)) for k, v in attrs.items() if isinstance(v, dict)}
            self.modules.append((module, attrs, dicts))
        config = getattr(model, "config", None)
        self.config = (config, dict(config.__dict__)) if hasattr(config, "__dict__") else None
        seen: set[int] = set()
        self.tensors = []
        for tensor in [*model.parameters(), *model.buffers()]:
            if id(tensor) not in seen:
                seen.add(id(tensor))
                self.tensors.append((tensor, tensor.data, tensor.requires_grad))
        self.copies = [(w, w.detach().clone()) for w in copy_weights_of if not w.is_meta]

    def restore(self) -> None:
        import torch

        for module, attrs, dicts in self.modules:
            for original, content in dicts.values():
                original.clear()
                original.update(content)
            module.__dict__.clear()
            module.__dict__.update(attrs)
        if self.config is not None:
            config, attrs = self.config
            config.__dict__.clear()
            config.__dict__.update(attrs)
        for tensor, data, requires_grad in self.tensors:
            tensor.data = data
            tensor.requires_grad_(requires_grad)
        with torch.no_grad():
            for weight, copy in self.copies:
                weight.data.copy_(copy)


__all__ = ["apply"]
