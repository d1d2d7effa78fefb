"""vlora's Unsloth imports and exports checked against Unsloth's real target logic: unsloth-zoo's own
`get_peft_regex` (installed from PyPI with --no-deps; `import unsloth` needs a GPU, so its peft_utils.py is loaded
from its file), with the few steps of `FastBaseModel.get_peft_model` around it (unsloth 2026.10.9,
models/vision.py) stated here on their own, and the environment's real PEFT wrapping a model built on the meta
device (with Unsloth's patch that adapts a Gemma-4 clippable wrapper through its inner `.linear`).

For one bundled reference per family and a handful of `get_peft_model` keyword sets (Unsloth's notebook defaults,
each toggle off, "all-linear", explicit lists narrowed by the toggles), plus every Unsloth notebook config in
tests/data/interop/unsloth on its model, what `vlora import --from unsloth` plans must be exactly what PEFT wraps;
and every spec `vlora export --to unsloth` writes must wrap exactly the plan. Any difference fails.

    .venv-llamafactory/bin/python .ci/real_unsloth.py   (the environment with unsloth-zoo installed)
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
import types
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")

from example_specs import plan_of, specs_for, with_examples  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from peft.tuners.lora.model import LoraModel  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from vlora_core import default_registry, export_plan, import_config  # noqa: E402
from vlora_core.interop.unsloth import read as read_unsloth  # noqa: E402
from vlora_core.modeltree import config_from_file  # noqa: E402

hf_logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "interop" / "unsloth"


def real_get_peft_regex():
    """unsloth_zoo.peft_utils.get_peft_regex from the installed file, without unsloth_zoo's __init__ (which
    needs a GPU). Of its package it needs only the logger; empty_model is used by other functions of the file."""
    root = Path(importlib.util.find_spec("unsloth_zoo").submodule_search_locations[0])
    package = types.ModuleType("unsloth_zoo")
    package.__path__ = [str(root)]
    sys.modules["unsloth_zoo"] = package
    sys.modules["unsloth_zoo.empty_model"] = types.SimpleNamespace(_get_module_attribute=None)
    for name in ("log", "peft_utils"):
        spec = importlib.util.spec_from_file_location(f"unsloth_zoo.{name}", root / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["unsloth_zoo.peft_utils"].get_peft_regex


GET_PEFT_REGEX = real_get_peft_regex()


def patch_clippable() -> None:
    """Unsloth's PEFT patch (unsloth-zoo temporary_patches/gemma4.py): a Gemma4ClippableLinear target is adapted
    through its inner .linear."""
    original = LoraModel._create_and_replace

    def create_and_replace(self, peft_config, adapter_name, target, target_name, parent, current_key=None, **kw):
        if type(target).__name__ == "Gemma4ClippableLinear" and hasattr(target, "linear"):
            return original(self, peft_config, adapter_name, target.linear, "linear", target,
                            current_key=current_key, **kw)
        return original(self, peft_config, adapter_name, target, target_name, parent, current_key=current_key, **kw)

    LoraModel._create_and_replace = create_and_replace


patch_clippable()

TOGGLES = ("finetune_vision_layers", "finetune_language_layers", "finetune_attention_modules",
           "finetune_mlp_modules", "finetune_audio_layers")
MOE_MLP = {"gate_proj", "up_proj", "down_proj", "gate_up_proj"}


def moe_leaves(detect) -> set[str]:
    """unsloth/models/_utils.py _moe_target_set_from_string (and the list case of get_moe_target_parameters)."""
    if isinstance(detect, list | tuple):
        return {t for t in detect if "." not in t and t in MOE_MLP}
    if detect in MOE_MLP:
        return {detect}
    if not re.search(r"[*+?()[\]{}|\\^$]", detect) or not any(t in detect for t in ("mlp", "ffn", "feed_forward",
                                                                                      "experts")):
        return set()
    named = {t for t in MOE_MLP if t in detect}
    if named:
        return named
    if re.search(r"(?<![qkvo]_)(?<!out_)(?<!in_)proj", detect) or "mlp|feed_forward|ffn|dense" in detect:
        return set(MOE_MLP)
    return set()


def is_moe(config) -> bool:
    for cfg in (config, getattr(config, "text_config", None)):
        for attr in ("num_experts", "n_routed_experts", "num_local_experts"):
            if cfg is not None and getattr(cfg, attr, None) is not None:
                return getattr(cfg, attr) > 0
    return False


def moe_parameters(model, detect) -> list[str] | None:
    """get_moe_target_parameters: the fused expert weights its targets name, under mlp.experts.* or experts.*."""
    if not is_moe(model.config):
        return None
    wanted, names = moe_leaves(detect), [n for n, _ in model.named_parameters()]

    def resolved(leaf):
        for n in names:
            if n == f"mlp.experts.{leaf}" or n.endswith(f".mlp.experts.{leaf}"):
                return f"mlp.experts.{leaf}"
            if n == f"experts.{leaf}" or n.endswith(f".experts.{leaf}"):
                return f"experts.{leaf}"
        return f"experts.{leaf}" if model.config.model_type.startswith("gemma4") else f"mlp.experts.{leaf}"

    def exists(name):
        return any(n == name or n.endswith("." + name) for n in names)

    out = []
    if wanted & {"gate_proj", "up_proj", "gate_up_proj"}:
        if exists(resolved("gate_up_proj")):
            out.append(resolved("gate_up_proj"))
        else:
            out += [resolved(x) for x in ("gate_proj", "up_proj")
                    if (x in wanted or "gate_up_proj" in wanted) and exists(resolved(x))]
    if "down_proj" in wanted and exists(resolved("down_proj")):
        out.append(resolved("down_proj"))
    return out or None


def unsloth_wraps(model, kw: dict) -> set[str]:
    """FastBaseModel.get_peft_model's path to PEFT (unsloth 2026.10.9) with the real get_peft_regex, then PEFT:
    the names of the modules and parameters it adapts."""
    flags = {k: kw.get(k, k != "finetune_audio_layers") for k in TOGGLES}
    target = kw.get("target_modules")
    if target == "all-linear":
        flags = dict.fromkeys(flags, True)
    vision, language, attention, mlp, audio = (flags[k] for k in TOGGLES)
    saved = list(kw.get("modules_to_save") or [])
    if isinstance(target, list) and language:
        moved = [t for t in target if t.rpartition(".")[2] in ("embed_tokens", "lm_head")]
        target, saved = [t for t in target if t not in moved], saved + moved
    detect = target if isinstance(target, list) and mlp and language else None
    toggles = dict(finetune_vision_layers=vision, finetune_language_layers=language,
                   finetune_attention_modules=attention, finetune_mlp_modules=mlp, finetune_audio_layers=audio)
    if target in (None, "all-linear"):
        target = GET_PEFT_REGEX(model, **toggles)
    elif isinstance(target, list) and (not all((vision, language, attention, mlp)) or audio):
        target = GET_PEFT_REGEX(model, **toggles, target_modules=list(target))
    params = kw.get("target_parameters")
    if params is None:
        params = moe_parameters(model, detect if detect is not None else target)
    config = LoraConfig(r=kw.get("r", 16), lora_alpha=kw.get("lora_alpha", 16), target_modules=target,
                        target_parameters=params or None, modules_to_save=saved or None)
    peft_model = get_peft_model(model, config, low_cpu_mem_usage=True)
    out = set()
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            name = re.sub(r"(\.base_layer)+$", "", name.removeprefix("base_model.model."))
            parameter = getattr(module, "parameter_name", None)
            out.add(f"{name}.{parameter}" if parameter else name)
    return out


REFERENCES = ["Qwen2-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct", "Qwen3-VL-8B-Instruct", "Qwen3-VL-30B-A3B-Instruct",
              "Qwen3.5-9B", "Qwen3.5-35B-A3B", "llava-1.5-7b-hf", "llava-v1.6-mistral-7b-hf", "Llama-3.2-11B-Vision",
              "gemma-3-4b-it", "gemma-4-E2B-it", "gemma-4-26B-A4B-it", "paligemma-3b-pt-224", "pixtral-12b",
              "Llama-4-Scout-17B-16E-Instruct", "SmolVLM-Instruct"]
KEYWORDS = {
    "notebook defaults": {},
    "language only": {"finetune_vision_layers": False},
    "vision only": {"finetune_language_layers": False},
    "mlp only": {"finetune_attention_modules": False},
    "attention only": {"finetune_mlp_modules": False},
    "all-linear": {"target_modules": "all-linear"},
    "list, language attention": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                                 "finetune_vision_layers": False},
    "list of mlp leaves": {"target_modules": ["gate_proj", "up_proj", "down_proj"]},
}
EXPORTS = {
    "language, last 8 layers": {"task": "vqa", "language": {"layers": {"last": 8}}},
    "vision only": {"finetune_vision_layers": True, "finetune_language_layers": False},
    "per-component ranks, projector": {"vision": {"r": 8}, "language": {"r": 16}, "finetune_projector": "lora"},
}
# notebook config -> the bundled reference it is planned on (same family where the notebook's size is not bundled)
NOTEBOOKS = {"u01_qwen2_vl_7b_vision.py": "Qwen2-VL-7B-Instruct", "u04_qwen3_vl_8b_vision.py": "Qwen3-VL-8B-Instruct",
             "u06_qwen3_5_4b_vision.py": "Qwen3.5-9B", "u09_llama3_2_11b_vision.py": "Llama-3.2-11B-Vision",
             "u12_pixtral_12b_vision.py": "pixtral-12b", "u15_gemma4_e2b_vision.py": "gemma-4-E2B-it",
             "u17_gemma4_26b_a4b_vision.py": "gemma-4-26B-A4B-it"}


def meta_model(config):
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def verdict(want: set[str], got: set[str]) -> tuple[bool, str]:
    if want == got:
        return True, "equal"
    return False, f"DIFFERS (vlora only {sorted(want - got)[:2]}, Unsloth only {sorted(got - want)[:2]})"


def main() -> int:
    registry, rows = default_registry(), []
    cases = [(ref, label, kw, None) for ref in REFERENCES for label, kw in KEYWORDS.items()]
    cases += [(ref, name, None, CORPUS / name) for name, ref in NOTEBOOKS.items()]
    with tempfile.TemporaryDirectory() as tmp:
        for ref, label, kw, path in cases:
            config = config_from_file(registry.require_reference(ref)[2].config_path)
            label = f"import: {label}"
            if path is None:
                path = Path(tmp) / "kwargs.json"
                path.write_text(json.dumps(kw))
            else:
                kw = read_unsloth(path)  # the notebook's keywords, as vlora reads them
            try:
                imported = import_config(path, "unsloth", ref, registry=registry)
                want = {t.name for t in imported.plan.targets} | set(imported.unexpressed)
            except Exception as exc:  # vlora refuses: Unsloth must refuse too
                want = f"refused: {str(exc)[:90]}"
            try:
                got = unsloth_wraps(meta_model(config), kw)
            except Exception as exc:
                got = f"refused: {str(exc)[:90]}"
            if isinstance(want, str) or isinstance(got, str):
                ok = isinstance(want, str) and isinstance(got, str)
                rows.append((ref, label, "-", "-", f"both refuse ({want})" if ok else f"DIFFERS: vlora {want!r:.120}; "
                             f"Unsloth {got if isinstance(got, str) else len(got)}"))
            else:
                ok, text = verdict(want, got)
                rows.append((ref, label, len(want), len(got), text))
            rows[-1] = (*rows[-1], ok)
        for ref in with_examples(REFERENCES):
            config = config_from_file(registry.require_reference(ref)[2].config_path)
            for label, spec in specs_for(ref, EXPORTS, REFERENCES):
                try:
                    plan = plan_of(spec, ref)
                except Exception as exc:
                    rows.append((ref, f"export: {label}", "-", "-", f"not planned: {type(exc).__name__}", True))
                    continue
                kw = export_plan(plan, "unsloth").kwargs
                got = unsloth_wraps(meta_model(config), kw)
                ok, text = verdict({t.name for t in plan.targets}, got)
                rows.append((ref, f"export: {label}", len(plan.targets), len(got), text, ok))
    print(f"{'reference':<32} {'case':<42} {'vlora':>6} {'unsloth':>7}  result")
    for ref, case, a, b, text, _ in rows:
        print(f"{ref:<32} {case:<42} {a:>6} {b:>7}  {text}")
    failures = sum(1 for row in rows if not row[-1])
    print(json.dumps({"cases": len(rows), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
