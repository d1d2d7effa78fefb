"""ms-swift: ``swift sft`` command-line arguments.

The rule, read from ms-swift 3.x-4.x (swift/llm/argument/tuner_args.py, swift/llm/train/tuner.py):
``--target_regex`` goes to PEFT as given (exact); ``--target_modules all-linear`` is scoped by ``--freeze_llm``
(default false), ``--freeze_vit`` (default true) and ``--freeze_aligner`` (default true) to the Linear modules
*inside* the unfrozen parts (a projector that is itself one Linear, or a bare parameter, gets nothing); an
explicit ``--target_modules`` list goes to PEFT as its suffix list, the freeze flags ignored. Defaults:
``--lora_rank 8 --lora_alpha 32 --lora_dropout 0.05``. ``--modules_to_save`` becomes PEFT's.

Export writes ``--target_regex`` with the plan's regex: the targets are exact; parameter targets go to
``--target_parameters`` (ms-swift 4.x; lost for 3.x). ms-swift has one rank and one alpha: per-component ranks
are lost, and said so. ms-swift 4 renamed ``--train_type`` to ``--tuner_type`` with no alias: the default writes
the 4.x spelling, ``--tool-version 3`` the 3.x one (``versions.VERSIONS``), and import reads both.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..boundary import read_text
from ..errors import SpecError
from ..modeltree import ModuleTree
from ..peft.rules import dead_entry_warnings
from ..plan import TargetPlan
from ..plugins import Registry
from ..vocabulary import LINEAR
from .common import (
    Export,
    Imported,
    Trains,
    architecture_of,
    as_bool,
    as_dropout,
    as_names,
    as_number,
    as_regex,
    export_file,
    lost_lines,
    model_id,
    peft_matches,
    read_mapping,
    saved_matches,
)
from .common import spec_for as _spec_for
from .versions import ToolVersion, spellings, tool_version

TITLE = "ms-swift (swift sft arguments)"
VERSION_READ = "ms-swift 3.x-4.x, swift/llm/train/tuner.py (get_multimodal_target_regex)"
DEFAULTS: dict[str, Any] = {"lora_rank": 8, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["all-linear"],
                            "target_regex": None, "freeze_llm": False, "freeze_vit": True, "freeze_aligner": True,
                            "modules_to_save": []}
LISTS = {"target_modules", "modules_to_save"}
PARTS = {"freeze_vit": ("vision", "audio"), "freeze_aligner": ("projector",), "freeze_llm": ("language",)}
_QWEN = {"freeze_llm": ("model.language_model",), "freeze_vit": ("model.visual",),
         "freeze_aligner": ("model.visual.merger",)}
_LLAVA = {"freeze_llm": ("model.language_model",), "freeze_vit": ("model.vision_tower",),
          "freeze_aligner": ("model.multi_modal_projector",)}
# ms-swift 4.6.0's model_arch (swift/model/model_arch.py) of the bundled families, by transformers model type: the
# module roots each freeze flag covers. all-linear takes the Linears under the unfrozen roots (a model type not
# listed here: vlora's components stand for the roots).
MODEL_ARCH: dict[str, dict[str, tuple[str, ...]]] = {
    "qwen2_vl": _QWEN, "qwen2_5_vl": _QWEN, "qwen3_5": _QWEN, "qwen3_5_moe": _QWEN,
    "qwen3_vl": {**_QWEN, "freeze_aligner": ("model.visual.merger", "model.visual.deepstack_merger_list")},
    "qwen3_vl_moe": {**_QWEN, "freeze_aligner": ("model.visual.merger", "model.visual.deepstack_merger_list")},
    "llava": _LLAVA, "llava_next": _LLAVA, "gemma3": _LLAVA, "paligemma": _LLAVA,
    "mllama": {**_LLAVA, "freeze_vit": ("model.vision_model",)},
    "gemma4": {"freeze_llm": ("model.language_model",), "freeze_vit": ("model.vision_tower", "model.audio_tower"),
               "freeze_aligner": ("model.embed_vision", "model.embed_audio")},
    "llama4": {"freeze_llm": ("language_model",), "freeze_vit": ("vision_model",),
               "freeze_aligner": ("multi_modal_projector",)},
    "idefics3": {"freeze_llm": ("model.text_model",), "freeze_vit": ("model.vision_model",),
                 "freeze_aligner": ("model.connector",)},
}
# find_all_linears: a module whose class name contains "linear" (not these wrappers), outside heads and PEFT's own
NOT_LINEAR = ("glulinear", "gemma4clippablelinear")
IGNORED = ("lm_head", "score", "v_head", "classifier", "lora_A", "lora_B", "base_layer")


def all_linear(tree: ModuleTree, flags: dict[str, bool]) -> list[str] | None:
    """What ``--target_modules all-linear`` adapts under ms-swift's model_arch roots (None: type not known)."""
    roots = MODEL_ARCH.get(tree.model_type or "")
    if roots is None:
        return None
    aligners = roots["freeze_aligner"]
    chosen = []
    for flag in ("freeze_llm", "freeze_vit", "freeze_aligner"):
        if flags[flag]:
            continue
        for root in roots[flag]:
            rejected = [a for a in aligners if a.startswith(root + ".")] if flag != "freeze_aligner" else []
            for e in tree.entries:
                kind = e.type_name.lower()
                if not (e.name == root or e.name.startswith(root + ".")) or "linear" not in kind or any(
                        c in kind for c in NOT_LINEAR) or any(i in e.name for i in IGNORED):
                    continue
                if any(e.name == a or e.name.startswith(a + ".") for a in rejected) or e.name in chosen:
                    continue
                chosen.append(e.name)
    return chosen


def export(plan: TargetPlan, tree: Any = None, version: ToolVersion | None = None) -> Export:
    spec = plan.spec
    version = version or tool_version("swift")
    parameters = bool(version.facts.get("target_parameters"))
    lost = lost_lines(plan, "ms-swift", ranks=False, parameters=parameters, bias=("none", "all"), init=True)
    args: dict[str, Any] = {"model": model_id(plan), version.facts["tuner_flag"]: "lora", "lora_rank": spec.r,
                            "lora_alpha": plan.alpha, "lora_dropout": spec.lora_dropout}
    if plan.target_regex is not None:
        args["target_regex"] = plan.target_regex
    if parameters and plan.parameter_targets:
        args["target_parameters"] = [t.name for t in plan.parameter_targets]
    if plan.full_modules:
        args["modules_to_save"] = [m.name for m in plan.full_modules]
    if spec.bias == "all":
        args["lora_bias"] = "all"
    if spec.use_rslora:
        args["use_rslora"] = "true"
    if spec.use_dora:
        args["use_dora"] = "true"
    if spec.init_lora_weights is not True:
        args["init_weights"] = str(spec.init_lora_weights).lower()
    notes = ("--target_regex is given to PEFT as is; --freeze_vit/--freeze_aligner/--freeze_llm do not change it",)
    parts = ["swift sft"]
    for key, value in args.items():
        values = value if isinstance(value, list) else [value]
        parts.append(f"--{key} " + " ".join(shlex.quote(str(v)) for v in values))
    return export_file(plan, "swift", " \\\n    ".join(parts) + "\n", lost=lost, notes=notes, kwargs=args,
                       version=version)


# --- import -------------------------------------------------------------------------------------------


def read(path: str | Path) -> dict[str, Any]:
    """``swift sft`` arguments from a shell script (``--key value ...``) or a YAML/JSON mapping of them."""
    p = Path(path)
    if p.suffix not in (".sh", ".txt", ""):
        return read_mapping(p)
    text = read_text(p, "tool config", SpecError)
    try:
        words = shlex.split(text.replace("\\\n", " "), comments=True)
    except ValueError as exc:
        raise SpecError(f"cannot split the command line ({exc})", where=str(p), hint="check the quotes") from None
    out: dict[str, Any] = {}
    key = None
    for word in words:
        if word.startswith("--"):
            key, _, value = word[2:].partition("=")
            out[key] = [value] if value else []
        elif key is not None:
            out[key].append(word)
    if not out:
        raise SpecError("no --arguments found", where=str(p), hint="give the swift sft command line")
    return {k: (v if k in LISTS else (v[0] if len(v) == 1 else True if not v else " ".join(v))) for k, v in out.items()}


def trains(config: dict[str, Any], tree: ModuleTree, registry: Registry, source: str
           ) -> tuple[Trains, dict[str, Any] | None]:
    known = {**DEFAULTS, **config}
    flag = next((f for f in sorted(spellings("swift", "tuner_flag")) if f in known), None)
    kind = str(known[flag]) if flag else "lora"
    if kind != "lora":
        raise SpecError(f"train_type is {kind!r}: only LoRA configs can be imported", where=source,
                        hint="use --tuner_type lora (ms-swift 4; --train_type in 3.x)")
    flags = {k: as_bool(known[k], k, source) for k in PARTS}
    r = as_number(known["lora_rank"], "lora_rank", source)
    alpha = as_number(known["lora_alpha"], "lora_alpha", source, float)
    names = [e.name for e in tree.entries if e.name]
    modules = as_names(known["target_modules"], "target_modules", source)
    notes = []
    if known["target_regex"]:
        if not isinstance(known["target_regex"], str):
            raise SpecError(f"target_regex must be a regular expression, got {known['target_regex']!r}",
                            where=source, hint="give one --target_regex")
        as_regex(known["target_regex"], "target_regex", source)
        chosen = peft_matches(known["target_regex"], names, source=source, key="target_regex")
    elif "all-linear" in modules and (known_roots := all_linear(tree, flags)) is not None:
        chosen = known_roots
    elif "all-linear" in modules:
        arch = architecture_of(tree, registry)
        open_parts = {c for k, cs in PARTS.items() if not flags[k] for c in cs}
        chosen = []
        for e in tree.entries:
            where = arch.place(e.name) if e.kind == LINEAR and e.name else None
            if where and where.component in open_parts and where.leaf:  # inside the part, not the part's own module
                chosen.append(e.name)
        if not flags["freeze_aligner"]:
            bare = [e.name for e in tree.entries if e.kind == LINEAR and e.name
                    and (w := arch.place(e.name)) and w.component == "projector" and not w.leaf]
            if bare:  # ms-swift 4.6.0's get_multimodal_target_regex adds a single-Linear aligner itself
                chosen += [n for n in bare if n not in chosen]
    else:
        chosen = peft_matches(modules, names, source=source)
        notes += dead_entry_warnings(modules, "--target_modules")
        notes.append("an explicit --target_modules list goes to PEFT unscoped: --freeze_vit/--freeze_aligner/"
                     "--freeze_llm do not apply to it")
    odd = [n for n in chosen if tree.get(n).kind is None]
    if odd:
        notes.append(f"the targets include {len(odd)} modules PEFT cannot wrap (e.g. {odd[0]}): PEFT would fail")
    lora = {n: (r, alpha) for n in chosen if tree.get(n).kind is not None}
    full = saved_matches(as_names(known.get("modules_to_save"), "modules_to_save", source), names)
    settings = {"r": r, "lora_alpha": alpha, "lora_dropout": as_dropout(known["lora_dropout"], "lora_dropout", source),
                **{k: as_bool(known[k], k, source) for k in ("use_rslora", "use_dora") if k in known}}
    suggested: dict[str, Any] | None = {
        "finetune_vision_layers": not flags["freeze_vit"], "finetune_language_layers": not flags["freeze_llm"],
        "finetune_projector": "frozen" if flags["freeze_aligner"] else "lora", "r": r, "lora_alpha": alpha}
    if known["target_regex"] or not (suggested["finetune_vision_layers"] or suggested["finetune_language_layers"]):
        suggested = None  # a regex suggests nothing beyond itself
    return Trains(lora=lora, full=tuple(full), notes=tuple(notes), settings=settings), suggested


MODEL_KEY = "model"


def import_config(config: dict[str, Any], source: str, tree: ModuleTree, registry: Registry, *,
                  model: str) -> Imported:
    found, suggested = trains(config, tree, registry, source)
    return _spec_for(found, tree, registry, tool="ms-swift", source=source, model=model, flags_spec=suggested,
                     keys={"r": "lora_rank", "bias": "lora_bias"})


__all__ = ["DEFAULTS", "MODEL_KEY", "TITLE", "VERSION_READ", "export", "import_config", "read", "trains"]
