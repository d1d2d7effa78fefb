"""LLaMA-Factory: the LoRA keys of a training YAML.

The rule, read from LLaMA-Factory mainline (src/llamafactory/model/model_utils/visual.py and
model/adapter.py, 2025-2026): for a model type in its table of composite (multimodal) models, the
``lora_target`` entries are substrings: every module whose full name contains one, and contains none of the
forbidden keys, goes to PEFT by its full name. Forbidden: the vision tower's keys unless
``freeze_vision_tower: false``, the projector's key unless ``freeze_multi_modal_projector: false``, the language
model's keys when ``freeze_language_model: true``, and per-model conflict keys (Qwen2-VL: ``patch_embed``).
``lora_target: all`` first collects the leaf names of every module whose class name contains "Linear" (not
"Embedding"), skipping names that contain ``lm_head``, the projector's key, or (with the tower frozen) a tower
key; so in LoRA mode the projector is never adapted, whatever ``freeze_multi_modal_projector`` says.
``additional_target`` becomes PEFT's ``modules_to_save``. Defaults: ``lora_rank: 8``, ``lora_alpha``: twice the
rank, ``lora_dropout: 0``, ``lora_target: all``, the vision tower and projector frozen, the language model not.

Export writes the shortest ``lora_target`` that gives exactly the plan under that rule: ``all``, then the
plan's leaf names, then the modules holding the targets (``model.layers.3.self_attn.``, where every module
under one is a target), then every target's full name (a full name is a substring only of
itself and its children).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..modeltree import ModuleTree
from ..peft.rules import saved_matches, target_matches
from ..plan import TargetPlan
from ..plugins import Registry
from .common import (
    Export,
    Imported,
    Trains,
    as_bool,
    as_dropout,
    as_names,
    as_number,
    export_file,
    lost_lines,
    model_id,
    read_mapping,
)
from .common import spec_for as _spec_for
from .versions import ToolVersion

TITLE = "LLaMA-Factory (training YAML keys)"
VERSION_READ = "LLaMA-Factory 0.9.5, model/model_utils/visual.py (COMPOSITE_MODELS) and misc.py"


@dataclass(frozen=True)
class Composite:
    """One entry of LLaMA-Factory's composite-model table: substrings of module names."""

    projectors: tuple[str, ...] = ("multi_modal_projector",)
    vision: tuple[str, ...] = ("vision_tower",)
    language: tuple[str, ...] = ("language_model", "lm_head")
    conflict: tuple[str, ...] = ()


_QWEN_VL = dict(projectors=("visual.merger",), vision=("visual.patch_embed", "visual.blocks"),
                conflict=("patch_embed",))
_QWEN3_VL = dict(projectors=("visual.merger",), conflict=("patch_embed",),
                 vision=("visual.pos_embed", "visual.patch_embed", "visual.blocks", "visual.deepstack_merger_list"))
_QWEN3_5 = dict(projectors=("model.visual.merger",), conflict=("patch_embed",),
                vision=("visual.pos_embed", "visual.patch_embed", "visual.blocks"))
# LLaMA-Factory 0.9.5, src/llamafactory/model/model_utils/visual.py (_register_composite_model), the model types of
# transformers' image-text-to-text registry (Keye, MiniCPM-V, dots.ocr and the audio/omni thinkers are remote code)
COMPOSITE_MODELS: dict[str, Composite] = {
    "gemma3": Composite(), "paligemma": Composite(), "llava": Composite(), "llava_next": Composite(),
    "llava_next_video": Composite(), "video_llava": Composite(), "internvl": Composite(), "interns1": Composite(),
    "kimi_vl": Composite(),
    "gemma3n": Composite(vision=("vision_tower", "audio_tower"), conflict=("timm_model", "subsample_conv_projection")),
    "gemma4": Composite(projectors=("model.embed_vision", "model.embed_audio"), vision=("vision_tower", "audio_tower"),
                        conflict=("per_layer_projection_norm",)),
    "mllama": Composite(vision=("vision_model",)), "llama4": Composite(vision=("vision_model",)),
    "mistral3": Composite(projectors=("model.multi_modal_projector",)),
    "glm4v": Composite(**_QWEN_VL), "glm4v_moe": Composite(**_QWEN_VL), "glm_ocr": Composite(**_QWEN_VL),
    "qwen2_vl": Composite(**_QWEN_VL), "qwen2_5_vl": Composite(**_QWEN_VL),
    "qwen3_vl": Composite(**_QWEN3_VL), "qwen3_vl_moe": Composite(**_QWEN3_VL),
    "qwen3_5": Composite(**_QWEN3_5), "qwen3_5_moe": Composite(**_QWEN3_5),
}
DEFAULTS: dict[str, Any] = {"lora_rank": 8, "lora_alpha": None, "lora_dropout": 0.0, "lora_target": "all",
                            "freeze_vision_tower": True, "freeze_multi_modal_projector": True,
                            "freeze_language_model": False, "additional_target": None}


def _split(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def _checked(known: dict[str, Any], source: str) -> None:
    """LLaMA-Factory reads lora_target and additional_target as comma-separated names (or lists of them)."""
    for key in ("lora_target", "additional_target"):
        value = known[key]
        if value is not None and not isinstance(value, str):
            as_names(value, key, source)


def targets(settings: dict[str, Any], tree: ModuleTree) -> tuple[list[str], list[str]]:
    """(modules LLaMA-Factory gives LoRA adapters, modules it trains in full) for these settings."""
    composite = COMPOSITE_MODELS.get(tree.model_type or "")
    names = [e.name for e in tree.entries if e.name]
    wanted = _split(settings["lora_target"])
    if wanted == ["all"]:
        skip = {"lm_head"}
        if composite:
            skip.update(composite.projectors)
            if settings["freeze_vision_tower"]:
                skip.update(composite.vision)
        wanted = sorted({e.name.rpartition(".")[2] for e in tree.entries if e.name
                         and "Linear" in e.type_name and "Embedding" not in e.type_name
                         and not any(s in e.name for s in skip)})
    if composite:
        forbidden = set(composite.conflict)
        if settings["freeze_vision_tower"]:
            forbidden.update(composite.vision)
        if settings["freeze_multi_modal_projector"]:
            forbidden.update(composite.projectors)
        if settings["freeze_language_model"]:
            forbidden.update(composite.language)
        lora = [n for n in names if any(t in n for t in wanted) and not any(f in n for f in forbidden)]
    else:  # a plain list for PEFT: the name itself or its end after a dot
        lora = target_matches(wanted, names)
    full = saved_matches(_split(settings.get("additional_target")), names)
    return lora, full


def _settings(plan: TargetPlan, lora_target: str) -> dict[str, Any]:
    comps = {t.component for t in plan.targets}
    return {"lora_target": lora_target, "freeze_vision_tower": not comps & {"vision", "audio"},
            "freeze_multi_modal_projector": "projector" not in comps, "freeze_language_model": "language" not in comps,
            "additional_target": ",".join(m.name for m in plan.full_modules) or None}


def _holders(plan: TargetPlan, tree: ModuleTree) -> list[str]:
    """The targets as ``holder.`` (where every module under it is a target) or by their full names."""
    wanted = [t.name for t in plan.module_targets]
    by_holder: dict[str, list[str]] = {}
    for name in wanted:
        by_holder.setdefault(name.rpartition(".")[0], []).append(name)
    out = []
    for holder, names in by_holder.items():
        under = [e.name for e in tree.entries if e.name.startswith(holder + ".")]
        out += [holder + "."] if holder and sorted(under) == sorted(names) else names
    return out


def export(plan: TargetPlan, tree: ModuleTree, version: ToolVersion | None = None) -> Export:
    spec = plan.spec
    want = {t.name for t in plan.module_targets}
    candidates = ["all", ",".join(sorted({t.name.rpartition(".")[2] for t in plan.module_targets})),
                  ",".join(_holders(plan, tree)), ",".join(t.name for t in plan.module_targets)]
    tries = [(lora_target, unfreeze) for lora_target in candidates for unfreeze in (False, True)]
    for lora_target, unfreeze in tries:  # unfreeze: LLaMA-Factory files some of the plan under its vision keys
        settings = _settings(plan, lora_target)
        if unfreeze:
            if not settings["freeze_vision_tower"]:
                continue
            settings["freeze_vision_tower"] = False
        got, _ = targets(settings, tree)
        wrapped = {n for n in got if tree.get(n) is not None and tree.get(n).kind is not None}
        if wrapped == want and len(got) == len(wrapped):
            break
    lost = lost_lines(plan, "LLaMA-Factory", ranks=False, parameters=False, bias=("none",), init=False)
    extra = sorted(set(got) - want)
    if extra:  # children of a full name (a wrapper's inner Linear): PEFT gets them too
        lost.append(f"{len(extra)} modules inside the targets match too (e.g. {extra[0]}): LLaMA-Factory matches "
                    "by substring, so a target's children go to PEFT with it")
    missing = sorted(want - wrapped)
    if missing:
        lost.append(f"{len(missing)} planned targets LLaMA-Factory does not adapt with any lora_target (e.g. "
                    f"{missing[0]})")
    notes = []
    if (tree.model_type or "") not in COMPOSITE_MODELS:
        notes.append(f"model_type {tree.model_type} is not in LLaMA-Factory's composite-model table: its freeze_* "
                     "keys do nothing and lora_target is a list of name ends for PEFT")
    if settings["freeze_vision_tower"] is False and not {t.component for t in plan.targets} & {"vision", "audio"}:
        notes.append("freeze_vision_tower: false only lets the explicit lora_target reach modules LLaMA-Factory files "
                     "under its vision keys (" + ", ".join(COMPOSITE_MODELS[tree.model_type or ""].vision)
                     + "); no vision layer is adapted")
    if "projector" in {t.component for t in plan.targets}:
        notes.append("the projector's LoRA needs the explicit lora_target below with freeze_multi_modal_projector: "
                     "false; lora_target: all never adapts the projector")
    data: dict[str, Any] = {"model_name_or_path": model_id(plan), "finetuning_type": "lora", "lora_rank": spec.r,
                            "lora_alpha": plan.alpha, "lora_dropout": spec.lora_dropout,
                            **{k: v for k, v in settings.items() if v is not None}}
    if spec.use_dora:
        data["use_dora"] = True
    if spec.use_rslora:
        data["use_rslora"] = True
    import yaml

    body = yaml.safe_dump(data, sort_keys=False, width=1 << 20)
    return export_file(plan, "llamafactory", body, lost=lost, notes=notes, kwargs=data, version=version,
                       extra=[f"rule assumed: {VERSION_READ}"])


# --- import -------------------------------------------------------------------------------------------


def read(path: str | Path) -> dict[str, Any]:
    """The training YAML (or JSON) as a mapping."""
    return read_mapping(path)


def trains(config: dict[str, Any], tree: ModuleTree, source: str) -> tuple[Trains, dict[str, Any]]:
    known = {**DEFAULTS, **{k: v for k, v in config.items() if k in DEFAULTS or k == "finetuning_type"}}
    if str(known.get("finetuning_type", "lora")) != "lora":
        raise SpecError(f"finetuning_type is {known['finetuning_type']!r}: only LoRA configs can be imported",
                        where=source, hint="set finetuning_type: lora")
    for key in ("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model"):
        known[key] = as_bool(known[key], key, source)
    _checked(known, source)
    r = as_number(known["lora_rank"], "lora_rank", source)
    alpha = as_number(known["lora_alpha"], "lora_alpha", source, float) if known["lora_alpha"] is not None else 2.0 * r
    lora, full = targets(known, tree)
    notes = []
    if not known["freeze_multi_modal_projector"] and _split(known["lora_target"]) == ["all"]:
        notes.append("freeze_multi_modal_projector: false does nothing with lora_target: all: LLaMA-Factory neither "
                     "adapts nor trains the projector in LoRA mode")
    if (tree.model_type or "") not in COMPOSITE_MODELS:
        notes.append(f"model_type {tree.model_type} is not in LLaMA-Factory's composite-model table: the freeze_* "
                     "keys do nothing")
    kept = [n for n in lora if tree.get(n).kind is not None]
    odd = [n for n in lora if tree.get(n).kind is None]
    if odd:
        notes.append(f"lora_target also names {len(odd)} modules PEFT cannot wrap (e.g. {odd[0]}): PEFT would stop "
                     "with an error on them")
    settings = {"r": r, "lora_alpha": alpha, "lora_dropout": as_dropout(known["lora_dropout"], "lora_dropout", source),
                **{k: as_bool(config[k], k, source) for k in ("use_rslora", "use_dora") if k in config}}
    roles = _roles(known, tree)
    suggested = {"finetune_vision_layers": not known["freeze_vision_tower"],
                 "finetune_language_layers": not known["freeze_language_model"],
                 "finetune_projector": "frozen" if known["freeze_multi_modal_projector"] else "lora",
                 "finetune_attention_modules": roles[0], "finetune_mlp_modules": roles[1], "r": r,
                 "lora_alpha": alpha}
    if not (suggested["finetune_vision_layers"] or suggested["finetune_language_layers"]):
        suggested = None
    return Trains(lora={n: (r, alpha) for n in kept}, full=tuple(full), notes=tuple(notes),
                  settings=settings), suggested


def _roles(known: dict[str, Any], tree: ModuleTree) -> tuple[bool, bool]:
    """Whether ``lora_target`` reads as attention and as MLP (``all``: both)."""
    wanted = _split(known["lora_target"])
    if wanted == ["all"]:
        return True, True
    attention = any(any(k in w for k in ("q_proj", "k_proj", "v_proj", "o_proj", "qkv", "attn")) for w in wanted)
    mlp = any(any(k in w for k in ("gate", "up_proj", "down_proj", "fc1", "fc2", "mlp")) for w in wanted)
    return attention or not mlp, mlp


MODEL_KEY = "model_name_or_path"


def import_config(config: dict[str, Any], source: str, tree: ModuleTree, registry: Registry, *,
                  model: str) -> Imported:
    found, suggested = trains(config, tree, source)
    return _spec_for(found, tree, registry, tool="LLaMA-Factory", source=source, model=model, flags_spec=suggested,
                     keys={"r": "lora_rank"})


__all__ = ["COMPOSITE_MODELS", "DEFAULTS", "MODEL_KEY", "TITLE", "VERSION_READ", "export", "import_config", "read",
           "targets", "trains"]
