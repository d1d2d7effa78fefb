"""Wrapping a live model with PEFT, and putting it back when PEFT fails: the snapshot of everything PEFT may
change, the restore-on-failure context every wrapping step runs in, and the inits that rewrite base weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..errors import SpecArchitectureMismatch, VloraError
from ..vocabulary import PARAMETER

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from ..plan import TargetPlan

# inits that rewrite the base weights of every target (the residual after taking out the top-r directions)
_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")


def _rewrites_weights(init: object) -> bool:
    return isinstance(init, str) and (init in _REWRITING_INITS or init.startswith("pissa_niter_"))


@contextmanager
def restored_on_failure(snapshot: Snapshot, what: str) -> Iterator[None]:
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


def checkpointing_on(model: nn.Module, kwargs: dict[str, Any]) -> None:
    """Gradient (activation) checkpointing, by the name the installed transformers gives it (5.x renamed it)."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def rewritten_weights(plan: TargetPlan, model: nn.Module) -> list[torch.Tensor]:
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


__all__ = ["Snapshot", "checkpointing_on", "restored_on_failure", "rewritten_weights"]
