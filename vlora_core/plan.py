"""TargetPlan: the resolved, validated result: its targets, totals, JSON, and the LoraConfig it emits.

Formatting lives in ``report`` (``TargetPlan.table()`` calls it), wrapping a model in ``apply``, the
name regexes in ``patterns``, and the PEFT config a plan emits, with PEFT's own rules, in ``peft``
(docs/how-it-works.md, "What PEFT gets").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from .decisions import Decisions
from .diagnostics import Diagnostic
from .patterns import layer_ranges
from .peft import config as peft_config
from .placement import Placement
from .report import render_table
from .spec import VisionLoRASpec
from .versions import core_version, package_version
from .vocabulary import PARAMETER, TargetKey, group_order

if TYPE_CHECKING:
    from peft import LoraConfig

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def _layers_text(targets: list[Target]) -> str:
    stacks = sorted({t.stack for t in targets if t.stack}, key=lambda s: min(
        (i for i, t in enumerate(targets) if t.stack == s)))
    if not stacks:
        return layer_ranges([t.layer for t in targets if t.layer is not None])
    return " ".join(f"{s}:{layer_ranges([t.layer for t in targets if t.stack == s and t.layer is not None])}"
                    for s in stacks)


def role_label(role: str, variant: str | None, experts: int) -> str:
    """A role with its variant, as reports name a row: ``attention (linear)``, ``mlp (experts: 128)``."""
    if variant is None:
        return role
    return f"{role} ({variant}" + (f": {experts})" if experts > 1 else ")")


@dataclass(frozen=True)
class Target:
    """One module that gets a LoRA adapter."""

    name: str
    placement: Placement  # where it sits: component, role, layer, stack, leaf and the holding module's *-path
    kind: str  # linear, conv, embedding (modules) or parameter (a bare 2-D parameter): vocabulary's module kinds
    module_type: str
    in_features: int
    out_features: int
    r: int
    lora_alpha: float
    lora_params: int
    bias_params: int = 0
    experts: int = 1  # experts adapted at once (a 3-D expert weight); 1 for every other target
    variant: str | None = None  # the row within its role: "linear" (linear attention), "experts", ...

    @property
    def component(self) -> str:
        return self.placement.component

    @property
    def role(self) -> str:
        return self.placement.role or ""

    @property
    def layer(self) -> int | None:
        return self.placement.layer

    @property
    def stack(self) -> str | None:
        """The stack's name, in components with several stacks of layers."""
        return self.placement.stack

    @property
    def leaf(self) -> str:
        """The name relative to its layer (or projector); "" for the layer/projector module itself."""
        return self.placement.leaf

    @property
    def path(self) -> str:
        """The holding module's name with the layer index as '*', e.g. model.visual.blocks.*"""
        return self.placement.path

    @property
    def label(self) -> str:
        """Its role as the plan table's rows name it (``SummaryRow.label``)."""
        return role_label(self.role, self.variant, self.experts)

    @property
    def key(self) -> TargetKey:
        """The logical identity (component, role, stack, layer, leaf), the same on every layout of a family."""
        return self.placement.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "component": self.component,
            "role": self.role,
            "layer": self.layer,
            "stack": self.stack,
            "leaf": self.leaf,
            "module_type": self.module_type,
            "in_features": self.in_features,
            "out_features": self.out_features,
            "r": self.r,
            "lora_alpha": self.lora_alpha,
            "lora_params": self.lora_params,
            "experts": self.experts,
            "variant": self.variant,
        }


@dataclass(frozen=True)
class FullModule:
    """A module trained in full (PEFT's ``modules_to_save``): a projector in ``full`` mode, or one the spec's
    ``modules_to_save`` names (``lm_head``, ``embed_tokens``)."""

    name: str
    component: str  # the component it lies in; "" for a module outside every component (lm_head)
    params: int  # a weight shared with another saved module (tied embeddings) is counted on one of them only
    bias_params: int = 0  # PEFT freezes the original's biases, even with bias="all"
    leaf: str = ""  # its name inside the component's layer, projector or tower ("" for the projector itself)
    tied_to: str | None = None  # the saved module it shares a weight with (tie_word_embeddings), if any

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "component": self.component, "params": self.params}
        if self.leaf:
            out["leaf"] = self.leaf
        if self.tied_to:
            out["tied_to"] = self.tied_to
        return out


@dataclass(frozen=True)
class SummaryRow:
    component: str
    role: str
    variant: str | None
    experts: int  # experts per target (1 unless the row is expert weights)
    modules: int
    layers: str
    lora_params: int
    share: float  # of all LoRA parameters
    component_share: float  # of the component's base parameters
    r: str = ""  # the rank(s) of the row's targets, as the table shows them ("8", or "8/16" where they differ)
    alpha: str = ""

    @property
    def label(self) -> str:
        """The role as the table shows it: ``attention``, ``attention (linear)``, ``mlp (experts: 128)``."""
        return role_label(self.role, self.variant, self.experts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "role": self.role,
            "variant": self.variant,
            "experts": self.experts,
            "modules": self.modules,
            "layers": self.layers,
            "lora_params": self.lora_params,
            "share": round(self.share, 6),
            "component_share": round(self.component_share, 6),
        }


@dataclass(frozen=True)
class TargetPlan:
    """Every target, every fully trained module, the counts, and where it all came from."""

    architecture: str
    architecture_title: str
    model_type: str | None
    model: str
    plugin: str
    plugin_version: str
    spec: VisionLoRASpec
    targets: tuple[Target, ...]
    full_modules: tuple[FullModule, ...]
    total_params: int
    all_bias_params: int
    component_params: dict[str, int]
    layer_counts: dict[str, int]  # layers per component, or per "component.stack" in stacked components
    diagnostics: tuple[Diagnostic, ...]  # warnings: legal choices that are probably unintended
    transformers_version: str
    inferred: str | None = None  # why the architecture was read from the model's structure, when it was
    quantization: str | None = None  # "4-bit" / "8-bit" when the model's weights are bitsandbytes-quantized
    stored_bytes: int | None = None  # a live model's parameters as stored (None on the meta device)
    # layers whose output the model never uses, by layer_counts key (left out unless include_unused_layers)
    unused_layers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # why each module is or is not a target, as resolve decided it (read by --explain)
    decisions: Decisions | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(sorted(self.targets, key=lambda t: (t.key.sort_key(), t.path))))

    @property
    def warnings(self) -> tuple[str, ...]:
        """The warnings' messages."""
        return tuple(d.message for d in self.diagnostics)

    # --- counts -------------------------------------------------------------------------------------

    @property
    def lora_params(self) -> int:
        return sum(t.lora_params for t in self.targets)

    @property
    def full_params(self) -> int:
        return sum(m.params for m in self.full_modules)

    @property
    def bias_params(self) -> int:
        """Base-model biases that PEFT's ``bias`` setting makes trainable."""
        if self.spec.bias == "all":  # every bias but those of fully trained originals (PEFT freezes them)
            return self.all_bias_params - sum(m.bias_params for m in self.full_modules)
        if self.spec.bias == "lora_only":
            return sum(t.bias_params for t in self.targets)
        return 0

    @property
    def trainable_params(self) -> int:
        return self.lora_params + self.full_params + self.bias_params

    def summary(self) -> list[SummaryRow]:
        """One row per component x role x variant, in report order."""
        groups: dict[tuple[str, str, str | None], list[Target]] = {}
        for t in self.targets:
            groups.setdefault((t.component, t.role, t.variant), []).append(t)
        total = self.lora_params or 1
        rows = []
        for (comp, role, variant), ts in sorted(groups.items(), key=lambda kv: (group_order(*kv[0][:2]),
                                                                               kv[0][2] or "")):
            n = sum(t.lora_params for t in ts)
            base = self.component_params.get(comp) or 0
            rows.append(
                SummaryRow(
                    component=comp,
                    role=role,
                    variant=variant,
                    experts=max(t.experts for t in ts),
                    modules=len(ts),
                    layers=_layers_text(ts),
                    lora_params=n,
                    share=n / total,
                    component_share=n / base if base else 0.0,
                    r="/".join(str(v) for v in sorted({t.r for t in ts})),
                    alpha="/".join(f"{v:g}" for v in sorted({t.lora_alpha for t in ts})),
                )
            )
        return rows

    # --- PEFT (its rules and the config data live in vlora_core.peft) -------------------------------

    @property
    def module_targets(self) -> list[Target]:
        return [t for t in self.targets if t.kind != PARAMETER]

    @property
    def parameter_targets(self) -> list[Target]:
        return [t for t in self.targets if t.kind == PARAMETER]

    @cached_property
    def target_regex(self) -> str | None:
        """One anchored regular expression matching exactly the planned module names (None: no module target)."""
        return peft_config.target_regex(self)

    def check_regex(self, names: list[str]) -> None:
        """Fail loudly if the emitted regex would match anything but the targets (a bug, never user error)."""
        peft_config.check_regex(self, names)

    def check_saved(self, names: list[str]) -> None:
        """Refuse a plan whose ``modules_to_save`` would make PEFT wrap one more module than planned."""
        peft_config.check_saved(self, names)

    def patterns(self) -> tuple[dict[str, int], dict[str, float]]:
        """``rank_pattern`` and ``alpha_pattern``: one key per component whose value differs from the spec's."""
        return peft_config.patterns(self)

    @property
    def alpha(self) -> float | int:
        """The spec's ``lora_alpha`` as configs write it: an int when it is whole (16, not 16.0)."""
        return peft_config.whole_alpha(self.spec.lora_alpha)

    def lora_config_data(self) -> dict[str, Any]:
        """The keyword arguments of ``peft.LoraConfig`` for exactly this plan (plain data; imports no torch)."""
        return peft_config.config_data(self)

    def to_lora_config(self) -> LoraConfig:
        """A new ``peft.LoraConfig`` for exactly this plan (a fresh object every call)."""
        return peft_config.lora_config(self)

    # --- output -------------------------------------------------------------------------------------

    def versions(self) -> dict[str, str]:
        return {
            "vlora": core_version(),
            "plugin": f"{self.plugin} {self.plugin_version}",
            "transformers": self.transformers_version,
            "peft": package_version("peft"),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe and deterministic: the same inputs give the same dict."""
        total = self.total_params or 1
        return {
            "architecture": self.architecture,
            "architecture_title": self.architecture_title,
            "model_type": self.model_type,
            "model": self.model,
            "inferred": self.inferred is not None,
            "plugin": {"distribution": self.plugin, "version": self.plugin_version},
            "versions": self.versions(),
            "spec": self.spec.normalized(),
            "targets": [t.to_dict() for t in self.targets],
            "full_modules": [m.to_dict() for m in self.full_modules],
            "summary": [row.to_dict() for row in self.summary()],
            "totals": {
                "targets": len(self.targets),
                "lora_params": self.lora_params,
                "full_params": self.full_params,
                "bias_params": self.bias_params,
                "trainable_params": self.trainable_params,
                "model_params": self.total_params,
                "lora_percent": round(100 * self.lora_params / total, 6),
                "trainable_percent": round(100 * self.trainable_params / total, 6),
            },
            "layer_counts": dict(sorted(self.layer_counts.items())),
            "memory": self.memory(),
            "target_modules": self.target_regex,
            "target_parameters": [t.name for t in self.parameter_targets],
            "warnings": list(self.warnings),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def memory(self, dtype: str = "fp32") -> dict[str, Any]:
        """Estimated bytes: training the trainable parameters in ``dtype`` (weights, gradients and Adam's two
        moment buffers, 4 copies), and the base model's weights in bf16, 8-bit and 4-bit; for a live model,
        also the bytes its parameters occupy as loaded (``loaded_bytes``, with its ``quantization``)."""
        if dtype not in DTYPE_BYTES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, got {dtype!r}")
        return {
            "adapter_dtype": dtype,
            "adapter_training_bytes": 4 * DTYPE_BYTES[dtype] * self.trainable_params,
            "base_weights_bytes": {"bf16": 2 * self.total_params, "8-bit": self.total_params,
                                   "4-bit": self.total_params // 2},
            "loaded_bytes": self.stored_bytes,
            "quantization": self.quantization,
        }

    def table(self, dtype: str = "fp32") -> str:
        """A human-readable report (``vlora_core.report.render_table``)."""
        return render_table(self, dtype)


__all__ = ["DTYPE_BYTES", "FullModule", "SummaryRow", "Target", "TargetPlan", "role_label"]
