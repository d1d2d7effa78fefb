"""The peak memory of one training step, by executing it: the full-size model is built on the meta device, the
plan's adapters are added by the same ``apply`` a user calls, its weights become fake tensors on the target
device, and the model's own forward and backward run on fake inputs under ``LiveStorage``. Nothing is
allocated and no formula per family is involved: what the step keeps for backward, its gradients and its
temporaries are what the model's code creates. The weights and the optimizer state are added from the wrapped
model's parameters.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import StepSimulationError, UsageError, VloraError
from ..spec import VisionLoRASpec
from .fsdp import fake_group, local, shard
from .quant import QUANT, quantize_meta

ATTENTION = ("sdpa", "eager")
OPTIMIZERS = {"adamw": 8, "adamw8bit": 2, "sgd": 0}  # optimizer state bytes per trainable weight (fp32 Adam: 2 x 4)
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
GiB = 1 << 30
_LABELS = {"vision": "vision tower", "language": "language model", "audio": "audio tower"}  # by component


@dataclass
class StepMemory:
    """What one training step holds at its peak, by part, and every input it assumed."""

    inputs: dict[str, Any]
    base_weights: int
    adapters: int
    optimizer_state: int
    step_peak: int  # bytes the step itself creates at its peak: activations kept for backward, gradients, temporaries
    at_peak: dict[str, int] = field(default_factory=dict)  # step_peak by the part that created it
    seconds: float = 0.0
    lora_bytes: int = 0  # of ``adapters``: the LoRA weights (the rest: modules trained in full)

    @property
    def peak(self) -> int:
        """The predicted peak: the weights and the optimizer state (held across steps) plus the step's own."""
        return self.base_weights + self.adapters + self.optimizer_state + self.step_peak

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "peak_bytes": self.peak, "base_weights_bytes": self.base_weights,
                "adapter_bytes": self.adapters, "optimizer_state_bytes": self.optimizer_state,
                "step_peak_bytes": self.step_peak, "step_peak_by_part": dict(sorted(self.at_peak.items())),
                "seconds": round(self.seconds, 2)}

    def table(self) -> str:
        i = self.inputs
        lines = [f"peak memory of one training step (simulated: the model's own forward and backward on fake "
                 f"tensors; batch {i['batch']} x {i['seq']} tokens, "
                 + (f"{i['images']} image(s) of {i['image_tokens']} tokens each, " if i["images"] else "text only, ")
                 + f"{i['attention']} attention, "
                 f"gradient checkpointing {'on' if i['gradient_checkpointing'] else 'off'}, base {i['base_dtype']}"
                 + (f" quantized to {i['quant']}" if i.get("quant") else "") + ", "
                 f"{i['optimizer']}, on {i['device']}"
                 + (f"; per device of {i['world_size']}, sharded by FSDP2 in {i['fsdp_units']} units and the whole "
                    "model, batch per device" if i.get("world_size") else "") + "):",
                 f"  base weights      {self.base_weights / GiB:8.2f} GiB  ("
                 + (f"bitsandbytes {i['quant']} (QLoRA's NF4, double quantization)" if i.get("quant") == "4bit" else
                    "bitsandbytes 8-bit (LLM.int8())" if i.get("quant") else i["base_dtype"])
                 + ", as loaded)",
                 f"  trainable weights {self.adapters / GiB:8.2f} GiB  (adapters, and modules trained in full; "
                 f"{i['adapter_dtype']})",
                 f"  optimizer state   {self.optimizer_state / GiB:8.2f} GiB  ({i['optimizer']}: "
                 f"{OPTIMIZERS[i['optimizer']]} bytes per trainable weight)",
                 f"  step              {self.step_peak / GiB:8.2f} GiB  (activations kept for backward, "
                 "gradients, temporaries, at the step's peak)"]
        for part, size in sorted(self.at_peak.items(), key=lambda kv: -kv[1]):
            if size > 0:
                lines.append(f"    {part:<34} {size / GiB:8.2f} GiB")
        lines.append(f"  predicted peak    {self.peak / GiB:8.2f} GiB  (not counted: the CUDA context, allocator "
                     "fragmentation, kernels' workspaces)")
        return "\n".join(lines) + "\n"


def _to_fake(model: Any, mode: Any, device: Any, quant: str | None, dtype: Any) -> list[Any]:
    """Every parameter and buffer of ``model`` (on the meta device) as a fake tensor on ``device``, a
    bitsandbytes layer's weight quantized by bitsandbytes; the quantization statistics made (not parameters).
    A parameter two modules share (tied embeddings) stays one parameter."""
    import torch

    from .quant import fake_quantized_weight, is_quantized_linear

    convert = mode.fake_tensor_converter
    statistics: list[Any] = []
    made: dict[int, Any] = {}
    for module in model.modules():
        if quant and is_quantized_linear(module):
            statistics += fake_quantized_weight(module, mode, device, dtype)[1:]
        for name, param in list(module._parameters.items()):
            if quant and name == "weight" and is_quantized_linear(module):
                continue
            if param is not None:
                if id(param) not in made:
                    fake = convert.from_meta_and_device(mode, param.to("meta"), device)
                    made[id(param)] = (param, torch.nn.Parameter(fake, requires_grad=param.requires_grad))
                module._parameters[name] = made[id(param)][1]
        for name, buffer in list(module._buffers.items()):
            if buffer is not None:
                module._buffers[name] = convert.from_meta_and_device(mode, buffer.to("meta"), device)
    return statistics


@contextlib.contextmanager
def _unpadded() -> Iterator[None]:
    """transformers reads the values of two tensors to choose how it masks attention: whether the padding mask
    lets SDPA run causal without a mask (``_ignore_causal_mask_sdpa``), and whether position ids pack several
    sequences into a row (``find_packed_sequence_indices``). Fake tensors have no values, so it would build the
    full mask a real batch never builds. The simulated batch is one unpadded sequence per row by construction:
    decide as for it."""
    try:
        from transformers import masking_utils
    except ImportError:  # transformers 4.x decides the same for real and fake tensors
        yield
        return
    swaps: dict[str, Any] = {}
    skip = getattr(masking_utils, "_ignore_causal_mask_sdpa", None)
    if skip is not None:
        swaps["_ignore_causal_mask_sdpa"] = lambda padding_mask, *a, **k: skip(None, *a, **k)
    if hasattr(masking_utils, "find_packed_sequence_indices"):
        swaps["find_packed_sequence_indices"] = lambda position_ids: None
    saved = {name: getattr(masking_utils, name) for name in swaps}
    for name, value in swaps.items():
        setattr(masking_utils, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(masking_utils, name, value)


@contextlib.contextmanager
def _the_model_step(tree: Any) -> Iterator[None]:
    """An error raised by the model's own code (transformers, PEFT) as one message that names it."""
    try:
        yield
    except VloraError:
        raise
    except Exception as exc:
        import transformers

        where = _library_frame(exc)
        raise StepSimulationError(
            f"the training step of {tree.model_type} fails inside {where or 'the model code'} (transformers "
            f"{transformers.__version__}): {type(exc).__name__}: {exc}"[:600],
            hint="a real step with this transformers likely fails the same way; try another transformers release, "
            "and report it to vlora if a real step runs") from exc


def _library_frame(exc: BaseException) -> str | None:
    """The last frame of the traceback in transformers or PEFT, as ``package/file.py:line``."""
    import traceback

    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        for package in ("transformers", "peft"):
            marker = f"/{package}/"
            if marker in frame.filename:
                found = f"{package}/{frame.filename.rsplit(marker, 1)[1]}:{frame.lineno}"
    return found


def _config(tree: Any, attention: str) -> Any:
    from ..modeltree import config_from_dict

    config = copy.deepcopy(tree.model_config) if tree.model_config is not None else \
        config_from_dict(dict(tree.config), where=tree.source)
    # the attention of the towers the step runs (an audio tower keeps its own: Gemma-4's has no SDPA)
    keys = [key for key in getattr(config, "sub_configs", {}) or {} if key != "audio_config"]
    for sub in [config, *(getattr(config, key, None) for key in keys)]:
        if sub is not None and hasattr(sub, "_attn_implementation"):
            sub._attn_implementation = attention
        if sub is not None and hasattr(sub, "use_cache"):
            sub.use_cache = False  # a training step keeps no key/value cache
    audio = getattr(config, "audio_config", None)
    if audio is not None and hasattr(audio, "_attn_implementation"):
        audio._attn_implementation = "eager"  # the top-level setting reaches every sub-config: set it back
    return config


def _build(config: Any) -> tuple[Any, str | None]:
    """The meta model of ``config``, and what became of SDPA where transformers refuses it for a model (None: it
    is used). A tower whose model has none (Apertus 1.5's image tokenizer, Donut's Swin encoder) keeps eager
    attention beside the language model's SDPA; a model that has none at all (BLIP, GIT) is eager throughout, as a
    real step would be."""
    from ..infer import tower_keys
    from ..modeltree import build_meta_model

    keys = list(getattr(config, "sub_configs", {}) or {})
    language = {k for k, c in tower_keys(config.to_dict(), keys).items() if c == "language"} | {"text_config"}
    refused = None
    for eager in ([k for k in keys if k not in language], ["", *keys]):  # first the towers, then everything
        try:
            return build_meta_model(config), refused and f"eager in {refused}, which has no SDPA"
        except ValueError as exc:
            match = re.match(r"(\w+) does not support an attention implementation through "
                             r"torch\.nn\.functional\.scaled_dot_product_attention", str(exc))
            if match is None:
                raise
            refused = match.group(1)
        for key in eager:
            sub = getattr(config, key, None) if key else config
            if hasattr(sub, "_attn_implementation"):
                sub._attn_implementation = "eager"
    return build_meta_model(config), "eager: the model has no SDPA"


def _part_labels(tree: Any, base: Any, plan: Any) -> dict[str, str]:
    """Module name -> the part the step's memory is counted under: each tower's sub-model and its children (a
    composite may run a tower's parts without the tower's own forward: Florence-2 runs its BART's encoder and
    decoder one by one); where the language model is no sub-model (GIT's top-level text config), its layers."""
    from ..infer import tower_keys
    from ..vocabulary import layer_count_key

    towers = tower_keys(tree.config, [k for _, k in tree.sub_models])
    labels = {name: _LABELS.get(towers.get(kind, ""), kind.removesuffix("_config")) for name, kind in tree.sub_models}
    modules = dict(base.named_modules())
    for name, label in list(labels.items()):
        for child, _ in modules[name].named_children() if name in modules else []:
            labels.setdefault(f"{name}.{child}", label)
    if _LABELS["language"] not in labels.values():
        paths = {(t.placement.path, layer_count_key("language", t.stack)) for t in plan.targets
                 if t.component == "language" and t.layer is not None}
        labels.update({path.replace("*", str(i)): _LABELS["language"] for path, key in paths
                       for i in range(plan.layer_counts.get(key, 0))})
    return labels


def _real_bookkeeping() -> Any:
    """A dispatch mode under which the step's bookkeeping on its real inputs stays real: an op whose tensor
    arguments are all real (token ids, image grids, masks made from them) runs for real, and a small integer or
    bool tensor made from nothing (positions, indices) is made for real, so that the values the model's code
    reads (how many image tokens, where each image's patches start) exist. Everything that touches a weight is
    fake."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensor, unset_fake_temporarily
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    index_ops = {torch.ops.aten.index.Tensor, torch.ops.aten.index_put.default, torch.ops.aten.index_put_.default}

    def real_positions(indices: list[Any]) -> list[Any]:
        """A real boolean mask among an index op's indices as the positions it selects (what indexing by a mask
        does first): a fake tensor indexed by them has a known shape."""
        out: list[Any] = []
        for index in indices:
            if index is not None and index.dtype == torch.bool and not isinstance(index, FakeTensor):
                with unset_fake_temporarily():
                    out += list(index.nonzero().unbind(1))
            else:
                out.append(index)
        return out

    class RealBookkeeping(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func in index_ops and len(args) > 1 and any(
                    i is not None and i.dtype == torch.bool and not isinstance(i, FakeTensor) for i in args[1]):
                args = (args[0], real_positions(list(args[1])), *args[2:])
            tensors = [t for t in tree_flatten((args, kwargs))[0] if hasattr(t, "is_floating_point")]
            if tensors and not any(isinstance(t, FakeTensor) for t in tensors):
                with unset_fake_temporarily():
                    return func(*args, **kwargs)
            out = func(*args, **kwargs)
            if not tensors and isinstance(out, FakeTensor) and out.numel() <= SMALL_BOOKKEEPING \
                    and not out.is_floating_point() and out.device.type == "cpu":
                with unset_fake_temporarily():
                    return func(*args, **kwargs)
            return out

    return RealBookkeeping()


NOTHING_TRAINS = "nothing this plan trains takes part in the step"
SMALL_BOOKKEEPING = 1 << 22  # elements: an index or mask of a batch's tokens, never a weight-sized tensor


def simulate_step(spec: VisionLoRASpec, tree: Any, *, batch: int = 1, seq: int = 2048,
                  gradient_checkpointing: bool = False, attention: str = "sdpa", optimizer: str = "adamw",
                  base_dtype: str | None = None, device: str = "cpu", registry: Any = None, images: int = 0,
                  image_size: tuple[int, int] | None = None, quant: str | None = None,
                  tags: dict[str, str] | None = None, world_size: int = 1) -> StepMemory:
    """The peak memory of one training step of ``spec`` on the full-size model of ``tree`` (``batch``
    sequences of ``seq`` tokens, ``images`` images in each), by executing the step on fake tensors; ``quant``
    ("4bit" / "8bit"): on a base quantized by bitsandbytes. ``tags``: more parts to count apart, by module name
    (the innermost part running owns what an op makes), as ``vlora fit`` does per layer. ``world_size`` above 1:
    sharded by FSDP2 over that many devices, the prediction per device (``batch`` is per device)."""
    # bitsandbytes (imported by PEFT where installed) warns on import that it could not fetch an optional CPU
    # kernel from the Hub; nothing here runs that kernel
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ..apply import apply
    from .inputs import step_inputs
    from .tracker import BACKWARD, LiveStorage, tag_modules

    if attention not in ATTENTION:
        raise UsageError(f"--attention {attention!r}: vlora simulates " + ", ".join(ATTENTION),
                         hint="flash attention keeps no more than sdpa's memory-efficient kernel: use sdpa for it")
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer {optimizer!r}: vlora knows " + ", ".join(OPTIMIZERS))
    if quant not in (None, *QUANT):
        raise UsageError(f"--quant {quant!r}: one of " + ", ".join(QUANT))
    if world_size < 1:
        raise UsageError("--world-size is at least 1")
    if world_size > 1 and quant:
        raise UsageError("--quant with --world-size: vlora does not simulate FSDP2 over a bitsandbytes base yet",
                         hint="predict the quantized step on one device (leave --world-size out), or FSDP2 unquantized")
    if batch < 1 or seq < 1:
        raise UsageError("--batch and --seq are at least 1")
    started = time.perf_counter()
    config = _config(tree, attention)
    dtype_name = DTYPES.get(base_dtype or "", base_dtype) or str(getattr(config, "dtype", None)
                                                                   or getattr(config, "torch_dtype", None)
                                                                   or "bfloat16").replace("torch.", "")
    dtype = getattr(torch, dtype_name, None)
    if not isinstance(dtype, torch.dtype):
        raise UsageError(f"--base-dtype {base_dtype!r}: one of " + ", ".join(DTYPES))
    inputs = step_inputs(config, tree.model_type, batch=batch, seq=seq, images=images, image_size=image_size)
    model, eager = _build(config)
    model = model.to(dtype)
    if eager:
        attention = "eager (the model has no SDPA)" if eager.startswith("eager:") else f"{attention} ({eager})"
    if quant:
        from ..resolve import resolve

        quantize_meta(model, quant, dtype, keep=[m.name for m in resolve(spec, tree, registry=registry).full_modules])
    peft_model = apply(model, spec, registry=registry, gradient_checkpointing=gradient_checkpointing)
    peft_model.train()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    statistics = _to_fake(peft_model, mode, torch.device(device), quant, dtype)
    with contextlib.ExitStack() as stack:
        if world_size > 1:
            sharded = shard(peft_model, stack.enter_context(fake_group(world_size)), mode)
        named = [(n, local(p), p.requires_grad) for n, p in peft_model.named_parameters()]
        trainable = [p for _, p, grad in named if grad]
        weights = sum(p.numel() * p.element_size() for _, p, grad in named if not grad) + sum(
            t.numel() * t.element_size() for t in statistics)
        base = peft_model.get_base_model()
        labels = _part_labels(tree, base, peft_model.vlora_plan)
        labels.update({name: "logits (lm_head)" for name, _ in base.named_modules()
                       if name.rpartition(".")[2] == "lm_head"})
        labels.update(tags or {})
        tracker = LiveStorage()
        tracker.existing([*(p for _, p, _ in named), *(local(b) for b in peft_model.buffers()), *statistics])
        tracker.tag = "embeddings, loss and the rest"
        handles = tag_modules(base, tracker, labels)
        try:
            with mode:
                kwargs = {k: mode.from_tensor(v) if v.is_floating_point() and k not in inputs.real else v
                          for k, v in inputs.tensors.items()}
            tracker.existing(kwargs.values())
            with mode, tracker, _real_bookkeeping(), _unpadded():
                with _the_model_step(tree):
                    loss = peft_model(**kwargs).loss
                if not loss.requires_grad:
                    raise UsageError(NOTHING_TRAINS + ("" if images else
                                                       " (a text step: the vision tower does not run)"),
                                     hint="give --images N for a step with images, or train a part the step runs")
                tracker.tag = BACKWARD + " (gradients, temporaries)"
                with _the_model_step(tree):
                    loss.backward()
        finally:
            for handle in handles:
                handle.remove()
    return StepMemory(
        inputs={"batch": batch, "seq": seq, "attention": attention, "gradient_checkpointing": gradient_checkpointing,
                "base_dtype": dtype_name, "quant": quant, "optimizer": optimizer, "device": device,
                "images": images if inputs.images is None else inputs.images,
                "image_tokens": inputs.image_tokens, **inputs.assumed,
                "adapter_dtype": ", ".join(sorted({str(p.dtype).replace("torch.", "") for p in trainable})),
                **({"world_size": world_size, "fsdp_units": sharded} if world_size > 1 else {})},
        base_weights=weights, adapters=sum(p.numel() * p.element_size() for p in trainable),
        optimizer_state=OPTIMIZERS[optimizer] * sum(p.numel() for p in trainable),
        step_peak=tracker.peak, at_peak=tracker.at_peak, seconds=time.perf_counter() - started,
        lora_bytes=sum(p.numel() * p.element_size() for n, p, grad in named if grad and ".lora_" in n))


__all__ = ["ATTENTION", "DTYPES", "NOTHING_TRAINS", "OPTIMIZERS", "StepMemory", "simulate_step"]
