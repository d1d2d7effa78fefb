"""What fits a memory budget: candidate settings around a spec (gradient checkpointing, the optimizer, batch,
a quantized base, rank, layers, the towers trained, sequence length), each one's predicted peak, and the
frontier of those that fit.

Per-layer costs are measured once and reused. A *probe* is one simulated step (``simulate_step``) with every
layer of every trained stack counted apart: what each layer holds at the step's peak. Candidates that differ
only in rank, in how many of the last layers train, and in batch are composed from a few probes, not
simulated: a trained layer's bytes at a rank and batch are interpolated (bilinearly: LoRA's activations grow
with rank x batch, the rest with batch) between probes at the smallest and largest rank and batch tried; a
frozen layer below the trained ones costs what it costs in a probe where only the last layer of each stack
trains. What is not a layer (embeddings, the logits, the loss, gradients of the step) is interpolated the same
way. The base weights come from the probe, the adapters and the optimizer state from the candidate's plan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..spec import VisionLoRASpec
from .step import NOTHING_TRAINS, OPTIMIZERS, StepMemory, simulate_step

AXES = ("checkpointing", "optimizer", "batch", "quant", "rank", "layers", "components", "seq")
DEFAULT_AXES = ("checkpointing", "optimizer", "batch", "quant")
# what each axis tries, best first (the given value leads; ladders only go down in memory)
LAYER_FRACTIONS = (1.0, 0.5, 0.25)
QUANT_ORDER = (None, "8bit", "4bit")
OPTIMIZER_ORDER = ("adamw", "adamw8bit", "sgd")
MIN_RANK, MIN_SEQ = 4, 256


@dataclass(frozen=True)
class Setting:
    """One candidate: the step's settings and the spec's changes."""

    checkpointing: bool
    optimizer: str
    batch: int
    quant: str | None
    rank_scale: float  # every rank of the spec times this
    layers: float  # the last fraction of each trained stack's layers (1.0: as the spec says)
    components: str  # "as given", "language", "vision"
    seq: int

    def describe(self, given: Setting) -> list[str]:
        """What differs from ``given``, in words."""
        out = []
        if self.components != given.components:
            out.append(f"{self.components} only")
        if self.layers != given.layers:
            out.append(f"the last {_fraction(self.layers)} of the layers")
        if self.rank_scale != given.rank_scale:
            out.append(f"rank x{_fraction(self.rank_scale)}")
        if self.quant != given.quant:
            out.append(f"{self.quant} base")
        if self.seq != given.seq:
            out.append(f"seq {self.seq}")
        if self.optimizer != given.optimizer:
            out.append(self.optimizer)
        if self.batch != given.batch:
            out.append(f"batch {self.batch}")
        if self.checkpointing != given.checkpointing:
            out.append("checkpointing " + ("on" if self.checkpointing else "off"))
        return out


def _fraction(value: float) -> str:
    return {0.5: "1/2", 0.25: "1/4", 0.125: "1/8"}.get(value, f"{value:g}")


@dataclass
class Candidate:
    setting: Setting
    sets: list[str]  # the spec changes, as --set overrides
    peak: int
    weights: int
    adapters: int
    optimizer_state: int
    step: int
    lora_params: int
    trainable_params: int
    changes: list[str]
    r: int

    def to_dict(self) -> dict[str, Any]:
        s = self.setting
        return {"peak_bytes": self.peak, "base_weights_bytes": self.weights, "adapter_bytes": self.adapters,
                "optimizer_state_bytes": self.optimizer_state, "step_peak_bytes": self.step,
                "lora_params": self.lora_params, "trainable_params": self.trainable_params, "r": self.r,
                "set": self.sets, "changes": self.changes,
                "step": {"gradient_checkpointing": s.checkpointing, "optimizer": s.optimizer, "batch": s.batch,
                         "quant": s.quant, "seq": s.seq}}


@dataclass
class FitResult:
    budget: int
    given: Candidate | None  # the spec and step as given (None: nothing of it trains in the step)
    frontier: list[Candidate]  # the candidates that fit and no other fitting one beats on every axis
    smallest: Candidate | None  # the smallest predicted peak of all (to say how far off, when nothing fits)
    tried: int
    probes: int
    seconds: float
    axes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)  # every one tried

    @property
    def fits(self) -> bool:
        return bool(self.frontier)


def _r_sets(spec: VisionLoRASpec, scale: float) -> tuple[list[str], int]:
    """--set overrides scaling every rank of ``spec`` (alpha alike, so that the scale alpha/r stays), and the
    top-level rank they give."""
    if scale == 1.0:
        return [], spec.r
    top = max(1, round(spec.r * scale))
    sets = [f"r={top}", f"lora_alpha={spec.lora_alpha * top / spec.r:g}"]
    for part in ("vision", "audio", "language", "projector"):
        override = getattr(spec, part)
        if override.r is not None:
            r = max(1, round(override.r * scale))
            sets.append(f"{part}.r={r}")
            if override.lora_alpha is not None:
                sets.append(f"{part}.lora_alpha={override.lora_alpha * r / override.r:g}")
    return sets, top


class _Search:
    """The candidates around one spec: its probes (each simulated once) and the compositions made from them."""

    def __init__(self, spec: VisionLoRASpec, tree: Any, make_spec: Callable[[list[str]], VisionLoRASpec],
                 registry: Any, step: dict[str, Any], progress: Callable[[str], None] | None) -> None:
        self.spec, self.tree, self.make_spec, self.registry = spec, tree, make_spec, registry
        self.step, self.progress = step, progress
        self.probes: dict[tuple[Any, ...], StepMemory | None] = {}
        self._plans: dict[tuple[str, ...], Any] = {}

    def plan(self, sets: list[str]) -> Any:
        """The plan of the spec with ``sets`` (each resolved once: the same sets recur across a search)."""
        from ..resolve import resolve

        key = tuple(sets)
        if key not in self._plans:
            self._plans[key] = resolve(self.make_spec(sets), self.tree, registry=self.registry)
        return self._plans[key]

    @staticmethod
    def component_sets(which: str) -> list[str]:
        return {"as given": [], "language": ["finetune_vision_layers=false"],
                "vision": ["finetune_language_layers=false"]}[which]

    def layer_sets(self, which: str, fraction: float | None) -> list[str]:
        """{last: N} for each stack the candidate trains, where the spec does not choose layers itself (None:
        the last layer alone, for a probe)."""
        if fraction == 1.0:
            return []
        sub = self.plan(self.component_sets(which))
        by_component: dict[str, dict[str, int]] = {}
        for key in sorted({_stack_key(t) for t in sub.targets if t.layer is not None}):
            component, _, stack = key.partition(".")
            override = getattr(self.spec, component, None)
            if override is None or override.layers is not None:
                continue
            count = sub.layer_counts[key]
            by_component.setdefault(component, {})[stack] = 1 if fraction is None else max(
                1, math.ceil(count * fraction))
        out = []
        for component, per_stack in by_component.items():
            if list(per_stack) == [""]:
                out.append(f"{component}.layers={{last: {per_stack['']}}}")
            else:
                out.append(f"{component}.layers={{" + ", ".join(f"{k}: {{last: {v}}}" for k, v in per_stack.items())
                           + "}")
        return out

    def probe(self, which: str, rank: float, batch: int, last_only: bool, seq: int, quant: str | None,
              checkpointing: bool, tags: dict[str, str]) -> StepMemory | None:
        """One simulated step (None: nothing the candidate trains takes part in it)."""
        key = (which, rank, batch, last_only, seq, quant, checkpointing)
        if key not in self.probes:
            sets = self.component_sets(which) + _r_sets(self.spec, rank)[0] + (
                self.layer_sets(which, None) if last_only else [])
            if self.progress:
                self.progress(f"simulating step {len(self.probes) + 1}: "
                              + ("the spec's towers" if which == "as given" else f"{which} only")
                              + (f", rank x{_fraction(rank)}" if rank != 1.0 else "")
                              + (", the last layers alone" if last_only else "") + f", batch {batch}, seq {seq}, "
                              f"{quant or 'unquantized'}, checkpointing {'on' if checkpointing else 'off'}")
            try:
                self.probes[key] = simulate_step(self.make_spec(sets), self.tree, batch=batch, seq=seq,
                                                 gradient_checkpointing=checkpointing, quant=quant, tags=tags,
                                                 registry=self.registry, **self.step)
            except UsageError as exc:
                if NOTHING_TRAINS not in exc.message:
                    raise
                self.probes[key] = None
        return self.probes[key]

    def group(self, which: str, seq: int, quant: str | None, checkpointing: bool, given: Setting,
              ladders: dict[str, list[Any]]) -> list[Candidate] | None:
        """Every candidate of one group (towers, seq, quantization, checkpointing), composed from at most six
        probes; None when nothing it trains takes part in the step."""
        ranks, fractions, batches = ladders["rank"], ladders["layers"], ladders["batch"]
        templates = _layer_templates(self.plan(self.component_sets(which)))
        tags = {name: tag for tag, name in templates}
        layer_tags = [tag for tag, _ in templates]
        r_range, b_range = (min(ranks), max(ranks)), (min(batches), max(batches))
        corners = {(r, b): self.probe(which, r, b, False, seq, quant, checkpointing, tags)
                   for r in set(r_range) for b in set(b_range)}
        if any(m is None for m in corners.values()):
            return None
        frozen = {b: self.probe(which, r_range[1], b, True, seq, quant, checkpointing, tags)
                  for b in set(b_range)} if len(fractions) > 1 else {}
        top = corners[(r_range[1], b_range[1])]
        # the adapters: modules trained in full as in the probe, LoRA weights at its bytes per LoRA parameter
        per_lora = top.lora_bytes / max(1, self.plan(self.component_sets(which)
                                                     + _r_sets(self.spec, r_range[1])[0]).lora_params)
        out = []
        for rank in ranks:
            for fraction in fractions:
                sets = self.component_sets(which) + _r_sets(self.spec, rank)[0] + self.layer_sets(which, fraction)
                plan = self.plan(sets)
                trained = {tags[n] for n in _trained_layers(plan, templates)}
                adapters = top.adapters - top.lora_bytes + round(per_lora * plan.lora_params)
                for batch in batches:
                    step = _compose(corners, frozen, trained, layer_tags, rank, batch, r_range, b_range)
                    for optimizer in ladders["optimizer"]:
                        setting = Setting(checkpointing, optimizer, batch, quant, rank, fraction, which, seq)
                        state = OPTIMIZERS[optimizer] * plan.trainable_params
                        out.append(Candidate(setting, sets, top.base_weights + adapters + state + step,
                                             top.base_weights, adapters, state, step, plan.lora_params,
                                             plan.trainable_params, setting.describe(given),
                                             _r_sets(self.spec, rank)[1]))
        return out


def fit(spec: VisionLoRASpec, tree: Any, budget: int, *, axes: Sequence[str] = DEFAULT_AXES,
        make_spec: Callable[[list[str]], VisionLoRASpec], batch: int = 1, seq: int = 2048, images: int = 0,
        image_size: tuple[int, int] | None = None, gradient_checkpointing: bool = False,
        attention: str = "sdpa", optimizer: str = "adamw", base_dtype: str | None = None,
        quant: str | None = None, registry: Any = None, world_size: int = 1,
        progress: Callable[[str], None] | None = None) -> FitResult:
    """The settings around ``spec`` (``make_spec(sets)`` gives the spec with --set overrides) whose predicted
    peak stays within ``budget`` bytes, varying ``axes``."""
    started = time.perf_counter()
    unknown = [a for a in axes if a not in AXES]
    if unknown:
        raise UsageError(f"--vary {unknown[0]!r}: vlora varies " + ", ".join(AXES))
    if budget <= 0:
        raise UsageError("--budget must be above 0")
    search = _Search(spec, tree, make_spec, registry, {"images": images, "image_size": image_size,
                                                       "attention": attention, "base_dtype": base_dtype,
                                                       "world_size": world_size}, progress)
    notes: list[str] = []
    given = Setting(gradient_checkpointing, optimizer, batch, quant, 1.0, 1.0, "as given", seq)
    trains = {t.component for t in search.plan([]).targets}
    components = ["as given"]
    if "components" in axes:
        if {"vision", "language"} <= trains:
            components += ["language", "vision"] if images else ["language"]
            if not images:
                notes.append("vision only is not tried: a text step does not run the vision tower (--images N)")
        else:
            notes.append("components: the spec trains one tower; nothing smaller to try")
    if "layers" in axes:
        chosen = [c for c in ("vision", "language", "audio") if getattr(spec, c).layers is not None]
        if chosen:
            notes.append("layers: " + ", ".join(chosen) + " already choose their layers; the fractions apply to "
                         "the other stacks")
    ladders = {
        "rank": [1.0, *(s for s in (0.5, 0.25, 0.125) if spec.r * s >= MIN_RANK)] if "rank" in axes else [1.0],
        "layers": list(LAYER_FRACTIONS) if "layers" in axes else [1.0],
        "batch": sorted({batch, *(_halvings(batch, 1) if "batch" in axes else [])}, reverse=True),
        "optimizer": [optimizer, *(o for o in OPTIMIZER_ORDER[OPTIMIZER_ORDER.index(optimizer) + 1:]
                                   if "optimizer" in axes and o != "sgd")],
    }
    quants = [quant, *(q for q in QUANT_ORDER[QUANT_ORDER.index(quant) + 1:] if "quant" in axes and world_size == 1)]
    if "quant" in axes and world_size > 1:
        notes.append("quant is not tried with --world-size: FSDP2 over a bitsandbytes base is not simulated")
    checkpointing = [gradient_checkpointing, *([True] if "checkpointing" in axes and not gradient_checkpointing
                                               else [])]
    seqs = sorted({seq, *(_halvings(seq, MIN_SEQ) if "seq" in axes else [])}, reverse=True)
    candidates: list[Candidate] = []
    for which in components:
        for s in seqs:
            covered: list[tuple[str | None, bool]] = []
            for q in quants:  # best first: a setting at least as good in both that fits every candidate hides it
                for ckpt in checkpointing:
                    if any(QUANT_ORDER.index(q) >= QUANT_ORDER.index(q2) and ckpt >= c2 for q2, c2 in covered):
                        continue
                    group = search.group(which, s, q, ckpt, given, ladders)
                    if group is None:
                        notes.append(f"{which}: {NOTHING_TRAINS}")
                        break
                    candidates += group
                    if all(c.peak <= budget for c in group):
                        covered.append((q, ckpt))
    fitting = [c for c in candidates if c.peak <= budget]
    frontier = sorted(_frontier(fitting), key=lambda c: (len(c.changes), -c.peak))
    first = next((c for c in candidates if c.setting == given), None)
    return FitResult(budget, first, frontier, min(candidates, key=lambda c: c.peak) if candidates else None,
                     len(candidates), len(search.probes), time.perf_counter() - started, tuple(axes),
                     list(dict.fromkeys(notes)), candidates)


def _lerp(x: float, x0: float, x1: float, y0: float, y1: float) -> float:
    return y0 if x1 == x0 else y0 + (x - x0) * (y1 - y0) / (x1 - x0)


def _halvings(value: int, floor: int) -> list[int]:
    out = []
    while value // 2 >= floor:
        value //= 2
        out.append(value)
    return out


def _stack_key(target: Any) -> str:
    stack = target.placement.stack
    return f"{target.component}.{stack}" if stack else target.component


def _layer_templates(plan: Any) -> list[tuple[str, str]]:
    """(tag, module name) of every layer of each stack ``plan`` trains."""
    paths: dict[str, str] = {}
    for target in plan.targets:
        if target.layer is not None:
            paths.setdefault(_stack_key(target), target.placement.path)
    return [(f"{key}[{i}]", path.replace("*", str(i), 1)) for key, path in sorted(paths.items())
            for i in range(plan.layer_counts[key])]


def _trained_layers(plan: Any, templates: list[tuple[str, str]]) -> set[str]:
    names = {name for _, name in templates}
    return {t.placement.holder for t in plan.targets if t.layer is not None} & names


def _compose(corners: dict[tuple[float, int], StepMemory], frozen: dict[int, StepMemory], trained: set[str],
             layer_tags: Any, rank: float, b: int, r_range: tuple[float, float], b_range: tuple[int, int]) -> int:
    """The step's peak for rank ``rank`` and batch ``b``: each trained layer's bytes and the rest interpolated
    between the corner probes, each frozen layer's from the last-layers-only probes."""
    (r_lo, r_hi), (b_lo, b_hi) = r_range, b_range

    def part(memory: StepMemory, tag: str | None) -> int:
        if tag is not None:
            return memory.at_peak.get(tag, 0)
        return memory.step_peak - sum(memory.at_peak.get(t, 0) for t in layer_tags)

    def at(tag: str | None) -> float:
        lo = _lerp(b, b_lo, b_hi, part(corners[(r_lo, b_lo)], tag), part(corners[(r_lo, b_hi)], tag))
        hi = _lerp(b, b_lo, b_hi, part(corners[(r_hi, b_lo)], tag), part(corners[(r_hi, b_hi)], tag))
        return _lerp(rank, r_lo, r_hi, lo, hi)

    total = at(None)
    for tag in layer_tags:
        if tag in trained or not frozen:
            total += at(tag)
        else:
            total += _lerp(b, b_lo, b_hi, part(frozen[b_lo], tag), part(frozen[b_hi], tag))
    return round(total)


def _quality(s: Setting) -> tuple[float, ...]:
    """Higher is better on every axis (the frontier's order)."""
    towers = {"as given": (1, 1), "language": (1, 0), "vision": (0, 1)}[s.components]
    return (*towers, s.layers, s.rank_scale,
            -QUANT_ORDER.index(s.quant), s.seq, -OPTIMIZER_ORDER.index(s.optimizer), float(not s.checkpointing),
            s.batch)


def _frontier(fitting: list[Candidate]) -> list[Candidate]:
    scored = [(_quality(c.setting), c) for c in fitting]
    return [cand for vector, cand in scored
            if not any(other != vector and all(o >= v for o, v in zip(other, vector, strict=True))
                       for other, _ in scored)]


__all__ = ["AXES", "DEFAULT_AXES", "Candidate", "FitResult", "Setting", "fit"]
