"""A training step run for real, measured as the peak of live tensor storage (what the memory tests compare the
simulation with)."""

from __future__ import annotations

from vlora_core import apply


def real_tensor_peak(model, checkpointing: bool, tensors: dict, spec) -> int:
    """The peak live tensor storage of the second of two real steps of ``spec`` on ``model`` (the first makes the
    lazily built state: PEFT's, the optimizer's absent, the autograd engine's)."""
    from vlora_core.memory.tracker import LiveStorage

    peft_model = apply(model, spec, gradient_checkpointing=checkpointing).train()
    peft_model(**tensors).loss.backward()
    peft_model.zero_grad(set_to_none=True)
    tracker = LiveStorage()
    tracker.existing([*peft_model.parameters(), *peft_model.buffers(), *tensors.values()])
    with tracker:
        peft_model(**tensors).loss.backward()
    return tracker.peak
