"""Live tensor storage during a step: every storage an aten op creates is counted from its creation until the
storage is freed (torch keeps one Python object per storage, so a weak reference sees it go), under a tag for
the part of the model that was running; the peak and what was live at that moment. It works the same on real
tensors and on fake ones (``FakeTensorMode``), which is what lets a simulation be checked against a real step.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

BACKWARD = "backward"


class LiveStorage(TorchDispatchMode):
    """Peak bytes of the storages created while active (what existed before is not counted), per tag."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self.at_peak: dict[str, int] = {}
        self.tag = "other"
        self._by_tag: dict[str, int] = {}
        self._seen: set[int] = set()
        self._before: list[Any] = []  # storages that existed before the step (weights, inputs): never counted

    def existing(self, tensors: Any) -> None:
        """Storages made before the step (the weights, the inputs): an op that returns a view of one (a weight's
        transpose) allocates nothing."""
        for tensor in tensors:
            storage = tensor.untyped_storage()
            self._before.append(storage)  # kept alive, so that its id is not reused while the step runs
            self._seen.add(id(storage))

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._seen:
            return
        size, tag = storage.nbytes(), self.tag
        self._seen.add(key)
        self.live += size
        self._by_tag[tag] = self._by_tag.get(tag, 0) + size
        if self.live > self.peak:
            self.peak = self.live
            self.at_peak = dict(self._by_tag)
        weakref.finalize(storage, self._free, key, size, tag)

    def _free(self, key: int, size: int, tag: str) -> None:
        self._seen.discard(key)
        self.live -= size
        self._by_tag[tag] -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self._count(value)
        return out


def tag_modules(model: torch.nn.Module, tracker: LiveStorage, names: dict[str, str]) -> list[Any]:
    """Forward hooks that set ``tracker.tag`` to ``names[module name]`` while that module runs (the label of the
    part it belongs to); the handles, to remove them."""
    handles = []
    modules = dict(model.named_modules())
    for name, label in names.items():
        module = modules.get(name)
        if module is None:
            continue
        outer: list[str] = []

        def enter(_module: Any, _args: Any, label: str = label, outer: list[str] = outer) -> None:
            outer.append(tracker.tag)
            tracker.tag = label

        def leave(_module: Any, _args: Any, _out: Any, outer: list[str] = outer) -> None:
            tracker.tag = outer.pop() if outer else "other"

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    return handles


__all__ = ["BACKWARD", "LiveStorage", "tag_modules"]
