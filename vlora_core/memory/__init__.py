"""The peak memory of a training step, from executing the model's own step on fake tensors (``step``) on a batch as
the family's processor makes it (``inputs``), and the live-storage tracker that measures it, on fake and on real
tensors alike (``tracker``)."""

from __future__ import annotations

from .step import ATTENTION, DTYPES, OPTIMIZERS, StepMemory, simulate_step

__all__ = ["ATTENTION", "DTYPES", "OPTIMIZERS", "StepMemory", "simulate_step"]
