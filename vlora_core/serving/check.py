"""Will a serving engine apply an adapter as it was trained? Per group of what the adapter changes (language
layers, vision tower, projector, audio tower, expert parameters, router, linear attention, modules trained in
full): served, served only with a flag, loaded but dropped, served at another scale, refused, or unknown;
read from one engine release's derived facts (``engines``), for a plan before training or an adapter on disk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..vocabulary import SAVED
from .engines import EngineTable

SERVED, FLAG, RESCALED, DROPPED, REFUSED, UNKNOWN = ("served", "served only with a flag", "served at another scale",
                                                    "loaded but dropped", "refused", "unknown")
AS_TRAINED = (SERVED, FLAG)  # a flag the serve command carries still serves the adapter as trained
GROUPS = ("language layers", "vision tower", "projector", "audio tower", "linear attention", "router",
          "expert parameters", "trained in full", "outside the components")
_COMPONENT_GROUP = {"language": "language layers", "vision": "vision tower", "projector": "projector",
                    "audio": "audio tower"}
ROUTER_LEAVES = ("gate", "router")


@dataclass(frozen=True)
class Item:
    """One thing an adapter changes, as a serving engine sees it."""

    name: str
    group: str
    component: str | None
    leaf: str  # the last part of the name the engine reads (a parameter's: its module's)
    r: int = 0
    alpha: float = 0.0
    full: bool = False
    parameter: bool = False
    expert: bool = False


def group_of(component: str | None, role: str, leaf: str, variant: str | None, full: bool, expert: bool) -> str:
    if full:
        return "trained in full"
    if expert:
        return "expert parameters"
    if role == "mlp" and leaf.rpartition(".")[2] in ROUTER_LEAVES:
        return "router"
    if variant == "linear":
        return "linear attention"
    return _COMPONENT_GROUP.get(component or "", "outside the components")


def _last(name: str) -> str:
    return name.rpartition(".")[2]


def items_of_plan(plan: Any) -> list[Item]:
    """What a plan's adapter will change (``TargetPlan``)."""
    out = []
    for t in plan.targets:
        parameter = t.kind == "parameter"
        owner = t.name.rpartition(".")[0] if parameter else t.name
        out.append(Item(t.name, group_of(t.component, t.role, t.placement.leaf, t.variant, False, t.experts > 1),
                        t.component, _last(owner), t.r, t.lora_alpha, parameter=parameter, expert=t.experts > 1))
    for m in plan.full_modules:
        out.append(Item(m.name, "trained in full", m.component or None, _last(m.name), full=True))
    return out


def items_of_adapter(adapter: Any) -> list[Item]:
    """What an adapter on disk changes (``adapters.Adapter``)."""
    out = []
    for m in adapter.modules:
        full = m.kind == SAVED
        leaf = m.placement.leaf if m.placement else ""
        comp = adapter.spec.component(m.component) if adapter.spec and m.component else None
        variant = comp.variants.get(leaf) if comp is not None else None
        owner = m.name.rpartition(".")[0] if m.owner else m.name
        out.append(Item(m.name, group_of(m.component, m.role or "", leaf, variant, full, m.experts > 1),
                        m.component, _last(owner), m.r or 0, m.lora_alpha or 0.0, full=full, parameter=bool(m.owner),
                        expert=m.experts > 1))
    return out


@dataclass(frozen=True)
class Finding:
    """One group's verdict (a group whose items differ has several)."""

    group: str
    verdict: str
    names: tuple[str, ...]
    reason: str
    flag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "verdict": self.verdict, "modules": len(self.names),
                "examples": list(self.names[:3]), "reason": self.reason, "flag": self.flag}


@dataclass(frozen=True)
class ServeCheck:
    """What one engine release would apply of an adapter on one model class."""

    engine: str  # "vllm" / "sglang"
    engine_name: str  # "vLLM 0.33.0"
    read_from: str
    model_class: str
    subject: str  # the adapter's folder or the spec file
    findings: tuple[Finding, ...]
    refusals: tuple[str, ...]  # reasons the engine refuses the whole adapter, in its words
    flags: tuple[str, ...]  # what the serve command needs for the verdicts said "served"
    max_rank: int = 0

    @property
    def ok(self) -> bool:
        """Everything would serve as trained (with the flags named)."""
        return not self.refusals and all(f.verdict in AS_TRAINED for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "engine_version": self.engine_name.split()[-1], "read_from": self.read_from,
                "model_class": self.model_class, "subject": self.subject, "ok": self.ok,
                "refusals": list(self.refusals), "flags": list(self.flags),
                "groups": [f.to_dict() for f in self.findings]}

    def report(self) -> str:
        wheel = "-".join(self.read_from.split("-")[:2])  # vllm-0.33.0, without the platform tags
        head = f"{self.subject} on {self.engine_name} ({self.model_class}; facts from the {wheel} wheel): "
        if self.ok:
            head += "everything serves as trained" + (" with " + " ".join(self.flags) if self.flags else "")
        else:
            head += "it would NOT serve as trained"
        lines = [head]
        lines += [f"  the engine refuses the whole adapter: {r}" for r in self.refusals]
        width = max((len(f.group) for f in self.findings), default=0)
        for f in self.findings:
            example = ", ".join(f.names[:2]) + (", ..." if len(f.names) > 2 else "")
            lines.append(f"  {f.group:<{width}}  {len(f.names):>4}  {f.verdict}: {f.reason}  ({example})")
        return "\n".join(lines) + "\n"

    def command(self, model: str = "MODEL", adapter: str = "ADAPTER_DIR", name: str = "adapter") -> str:
        """The serve command line these verdicts need (vLLM)."""
        if self.engine == "vllm":
            return " ".join(["vllm serve", model, "--enable-lora", *self.flags, f"--lora-modules {name}={adapter}"])
        return " ".join(["python -m sglang.launch_server --model-path", model, "--enable-lora", *self.flags,
                         f"--lora-paths {name}={adapter}"])


def _findings(verdicts: list[tuple[Item, str, str, str | None]]) -> tuple[Finding, ...]:
    grouped: dict[tuple[str, str, str, str | None], list[str]] = {}
    for item, verdict, reason, flag in verdicts:
        grouped.setdefault((item.group, verdict, reason, flag), []).append(item.name)
    order = {g: i for i, g in enumerate(GROUPS)}
    return tuple(Finding(g, v, tuple(names), reason, flag)
                 for (g, v, reason, flag), names in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])))


def _scale(r: int, alpha: float, rslora: bool) -> float:
    return alpha / (math.sqrt(r) if rslora else r) if r else 0.0


def architecture_of(config: dict[str, Any], model_type: str | None) -> str | None:
    """The model's class name as transformers and the engines register it."""
    archs = config.get("architectures") or []
    if archs:
        return str(archs[0])
    from transformers.models.auto import modeling_auto as auto

    for table in ("MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES", "MODEL_FOR_VISION_2_SEQ_MAPPING_NAMES"):
        found = getattr(auto, table, {}).get(model_type or "")
        if found:
            return str(found)
    return None


def _text_architecture(config: dict[str, Any]) -> str | None:
    text = config.get("text_config") or {}
    archs = text.get("architectures") or []
    if archs:
        return str(archs[0])
    from transformers.models.auto import modeling_auto as auto

    found = auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(text.get("model_type", ""))
    return str(found) if found else None


def check_serving(items: list[Item], table: EngineTable, config: dict[str, Any], model_type: str | None, *,
                  settings: dict[str, Any], subject: str) -> ServeCheck:
    """The verdicts of ``table``'s engine release on ``items`` (``items_of_plan`` / ``items_of_adapter``) for the
    model of ``config``. ``settings``: the adapter config's r, lora_alpha, use_rslora, use_dora, bias,
    target_modules."""
    arch = architecture_of(config, model_type) or f"(model type {model_type})"
    rule = _vllm if table.engine == "vllm" else _sglang
    verdicts, refusals, flags = rule(items, table, arch, config, settings)
    max_rank = max((i.r for i in items if not i.full), default=0)
    return ServeCheck(engine=table.engine, engine_name=table.name, read_from=table.source, model_class=arch,
                      subject=subject, findings=_findings(verdicts), refusals=tuple(refusals), flags=tuple(flags),
                      max_rank=max_rank)


def vllm_max_rank(table: EngineTable, rank: int) -> int | None:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank`` (None: above every value it allows)."""
    return next((r for r in sorted(table.fact("max_lora_ranks")) if r >= rank), None)


def _vllm(items: list[Item], table: EngineTable, arch: str, config: dict[str, Any], settings: dict[str, Any]):
    verdicts: list[tuple[Item, str, str, str | None]] = []
    refusals: list[str] = []
    flags: list[str] = []
    model = table.models.get(arch)
    if model is None:
        removed = table.previously_supported.get(arch)
        if removed:
            why = f"vLLM supported {arch} until {removed} and no longer does"
            return [(i, REFUSED, why, None) for i in items], [why], []
        why = f"{table.name} has no model class registered as {arch} (vlora has no fact for it)"
        return [(i, UNKNOWN, why, None) for i in items], [], []
    if not model["lora"]:
        why = f"`{arch} does not support LoRA yet.` ({model['read_from']})"
        return [(i, REFUSED, why, None) for i in items], [why], []
    if settings.get("use_dora"):
        refusals.append(f"`vLLM does not yet support DoRA.` ({table.where('dora')})")
    if settings.get("bias", "none") != "none":
        refusals.append(f"`Adapter bias is not supported.` (bias={settings['bias']!r}; {table.where('bias')})")
    ranks = [i.r for i in items if not i.full and i.r]
    if ranks and max(ranks) > table.fact("max_lora_rank_default"):
        needed = vllm_max_rank(table, max(ranks))
        if needed is not None:
            flags.append(f"--max-lora-rank {needed}")
        else:
            refusals.append(f"`LoRA rank {max(ranks)} is greater than max_lora_rank` (vLLM allows at most "
                            f"{max(table.fact('max_lora_ranks'))}; {table.where('max_lora_ranks')})")
    leaves, packed = set(model["leaves"]), dict(model["packed"])
    language_known = True
    if model.get("text_from_config"):
        text = table.text_models.get(_text_architecture(config) or "")
        if text is None:
            language_known = False
        else:
            leaves |= set(text["leaves"])
            packed = packed or dict(text["packed"])
    expected: set[str] = set()
    for leaf in leaves:
        expected |= set(packed.get(leaf, [leaf]))
        if leaf == "experts":
            expected.add(leaf)
    tower_flag = table.fact("tower_flag")
    saved = [i for i in items if i.full]
    if saved:
        refusals.append(f"vLLM loads modules_to_save only for {' / '.join(table.fact('modules_to_save'))} heads "
                        f"({', '.join(i.name for i in saved[:2])}{', ...' if len(saved) > 2 else ''}; "
                        f"{table.where('modules_to_save')}); serve the merged model instead (vlora adapter merge), or "
                        "train those modules with LoRA (finetune_projector: lora)")
    for i in items:
        if i.full:
            verdicts.append((i, REFUSED, "vLLM refuses modules_to_save outside a classifier head", None))
        elif i.expert:
            if "experts" not in expected:
                verdicts.append((i, REFUSED, "the model has no fused-MoE layer named experts", None))
            elif model["moe_3d"]:
                verdicts.append((i, SERVED, "3-D expert LoRA on a 3-D MoE model (read in the layout of the "
                                 "transformers that saved it)", None))
            else:
                flag = table.fact("mixed_moe_flag")
                verdicts.append((i, FLAG, f"3-D expert LoRA on a 2-D MoE model needs {flag} (and "
                                 "is_3d_lora_weight=True on the request)", flag))
        elif i.leaf not in expected and not (i.leaf.isdigit() and "#" in expected) \
                and (i.component != "language" or language_known):
            verdicts.append((i, REFUSED, f"`{i.leaf}` is no LoRA-capable layer name of {arch}: vLLM refuses the "
                             "whole adapter (`expected target modules in ...`)", None))
        elif i.component == "language":
            verdicts.append((i, SERVED if language_known else UNKNOWN, "language model" if language_known else
                             "the language model's class is chosen from the config and vlora could not tell which",
                             None))
        elif i.component in ("vision", "audio", "projector"):
            prefixes = model["connector"] if i.component == "projector" else model["tower"]
            if model["tower_connector"] and (prefixes or model["tower"]):
                verdicts.append((i, FLAG, f"tower and connector LoRA needs {tower_flag}", tower_flag))
            else:
                verdicts.append((i, DROPPED, f"{arch} takes no tower/connector LoRA in {table.name}: the weights "
                                 "are read and never applied", None))
        else:
            verdicts.append((i, UNKNOWN, "outside the model's language, tower and connector prefixes", None))
    if any(v == FLAG and f == tower_flag for _, v, _, f in verdicts):
        flags.append(tower_flag)
    flags += sorted({f for _, v, _, f in verdicts if v == FLAG and f and f != tower_flag})
    if not refusals and any(v == REFUSED for _, v, _, _ in verdicts):
        bad = sorted({i.leaf for i, v, _, _ in verdicts if v == REFUSED})
        refusals.append(f"`expected target modules in {{...}} but received [...]` for {', '.join(bad)} "
                        f"({table.where('leaf_check')})")
    return verdicts, refusals, flags


def _sglang(items: list[Item], table: EngineTable, arch: str, config: dict[str, Any], settings: dict[str, Any]):
    verdicts: list[tuple[Item, str, str, str | None]] = []
    refusals: list[str] = []
    if settings.get("use_dora"):
        refusals.append(f"`LoRA serving currently doesn't support DoRA adapters` ({table.where('dora')})")
    targets = settings.get("target_modules")
    if isinstance(targets, str) and targets not in ("all", "all-linear"):
        leaves = sorted({i.leaf for i in items if not i.full and not i.parameter})
        refusals.append(f"`SGLang does not recognize target_modules=...`: it reads a list of names, and this "
                        f"adapter's is a regular expression ({table.where('target_modules')}); a serving copy "
                        f"with target_modules: {leaves} loads the same weights")
    model = table.models.get(arch)
    if model is None:
        why = (f"{table.name} has no native model class {arch} (its transformers fallback may run it; vlora has "
               "no fact for LoRA there)")
        return [(i, UNKNOWN, why, None) for i in items], refusals, []
    normalized, sized = table.fact("normalized"), set(table.fact("sized"))
    r, alpha = settings.get("r") or 0, settings.get("lora_alpha") or 0
    engine_scale = alpha / r if r else 0.0
    pattern = model.get("gate_pattern")
    for i in items:
        n = normalized.get(i.leaf, i.leaf)
        if i.full:
            verdicts.append((i, DROPPED, "SGLang reads no modules_to_save: the base weights stay", None))
        elif i.expert:
            verdicts.append((i, UNKNOWN, "SGLang's MoE LoRA reads its own expert format; vlora has no fact for "
                             "PEFT's target_parameters there", None))
        elif n in ("embed_tokens", "lm_head"):
            verdicts.append((i, SERVED, "embeddings and lm_head are taken before the model's gate", None))
        elif i.component != "language":
            if model["gate"]:
                verdicts.append((i, DROPPED, f"the model's should_apply_lora keeps LoRA to the language model "
                                 f"(`{model['gate']}`, {model['read_from']})", None))
            else:
                verdicts.append((i, UNKNOWN, "the model has no should_apply_lora; vlora has no fact for its "
                                 "tower", None))
        elif pattern and not re.search(rf"(?<!\w){re.escape(n)}(?!\w)", pattern):
            verdicts.append((i, DROPPED, f"`{i.leaf}` ({n}) is outside the model's LoRA pattern "
                             f"({model['read_from']})", None))
        elif n not in sized and not model["sizes_own"]:
            verdicts.append((i, REFUSED, f"`get_hidden_dim not implemented for {n}`: the server stops at start "
                             f"({table.where('sized')})", None))
        elif n not in sized:
            verdicts.append((i, UNKNOWN, f"{n} is sized by the model's own get_hidden_dim", None))
        elif i.r and not math.isclose(_scale(i.r, i.alpha, bool(settings.get("use_rslora"))), engine_scale):
            verdicts.append((i, RESCALED, f"trained at scale {_scale(i.r, i.alpha, bool(settings.get('use_rslora'))):g}"
                             f"; SGLang applies lora_alpha / r = {engine_scale:g} to every module "
                             f"({table.where('rank_pattern')})", None))
        else:
            verdicts.append((i, SERVED, "language model", None))
    return verdicts, refusals, []


__all__ = ["AS_TRAINED", "DROPPED", "FLAG", "GROUPS", "REFUSED", "RESCALED", "SERVED", "UNKNOWN", "Finding", "Item",
           "ServeCheck", "architecture_of", "check_serving", "group_of", "items_of_adapter", "items_of_plan",
           "vllm_max_rank"]
