"""Live tensor storage during a step: every storage an aten op creates is counted from its creation until the
storage is freed (torch keeps one Python object per storage, so a weak reference sees it go), at its size as it
is resized in place (FSDP2 frees its unsharded weights so), under a tag for the part of the model that was
running; the peak and what was live at that moment. It works the same on real tensors and on fake ones
(``FakeTensorMode``), which is what lets a simulation be checked against a real step.
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
        self._sizes: dict[int, list[Any]] = {}  # a counted storage's bytes now and its tag
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
        self._seen.add(key)
        self._sizes[key] = [0, self.tag]
        self._resize(key, storage.nbytes())
        weakref.finalize(storage, self._free, key)

    def _resize(self, key: int, size: int) -> None:
        """A counted storage now holds ``size`` bytes (made, or resized in place: FSDP frees and refills its
        unsharded weights that way, keeping the tensors)."""
        entry = self._sizes[key]
        change, tag = size - entry[0], entry[1]
        entry[0] = size
        self.live += change
        self._by_tag[tag] = self._by_tag.get(tag, 0) + change
        if self.live > self.peak:
            self.peak = self.live
            self.at_peak = dict(self._by_tag)

    def _free(self, key: int) -> None:
        self._resize(key, 0)
        self._seen.discard(key)
        del self._sizes[key]

    def __enter__(self) -> LiveStorage:
        tracker, original = self, torch.UntypedStorage.resize_

        def resize(storage: Any, size: int) -> Any:
            out = original(storage, size)
            if id(storage) in tracker._sizes:
                tracker._resize(id(storage), storage.nbytes())
            return out

        self._original_resize = original
        torch.UntypedStorage.resize_ = resize
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        torch.UntypedStorage.resize_ = self._original_resize
        super().__exit__(*exc)

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
