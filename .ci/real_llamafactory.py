"""vlora's LLaMA-Factory exports handed to the real LLaMA-Factory (installed from PyPI, run in its own
environment): for each bundled reference of a family LLaMA-Factory supports and a handful of toggle combinations,
the YAML `vlora export --to llamafactory` writes is parsed into LLaMA-Factory's own ModelArguments /
FinetuningArguments and its `init_adapter` wraps a model built on the meta device. The modules PEFT then wraps
must be exactly the plan's targets, or the export must say what is lost. Any difference fails.

    .venv-llamafactory/bin/python .ci/real_llamafactory.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # its INFO lines, one per model, say nothing here

import torch
import yaml

warnings.filterwarnings("ignore")

from example_specs import plan_of, specs_for, with_examples  # noqa: E402
from llamafactory.hparams import FinetuningArguments, ModelArguments  # noqa: E402
from llamafactory.model.adapter import init_adapter  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from transformers import AutoModelForImageTextToText, HfArgumentParser  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from vlora_core import default_registry, export_plan, import_config  # noqa: E402
from vlora_core.modeltree import config_from_file  # noqa: E402

hf_logging.set_verbosity_error()

REFERENCES = ["Qwen2-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct", "llava-1.5-7b-hf", "Llama-3.2-11B-Vision",
              "gemma-3-4b-it", "paligemma-3b-pt-224", "Qwen3-VL-8B-Instruct", "Qwen3-VL-30B-A3B-Instruct",
              "Qwen3.5-9B", "Qwen3.5-35B-A3B", "gemma-4-E2B-it", "gemma-4-26B-A4B-it", "pixtral-12b",
              "Llama-4-Scout-17B-16E-Instruct"]
FREEZES = [{}, {"freeze_vision_tower": False}, {"freeze_vision_tower": False, "freeze_multi_modal_projector": False},
           {"freeze_language_model": True, "freeze_vision_tower": False}]
# LLaMA-Factory's own example YAMLs (tests/data/interop/llamafactory) -> the bundled reference of their family
EXAMPLES = {"lf01_qwen3vl_lora_sft.yaml": "Qwen3-VL-8B-Instruct",
            "lf03_qwen3vlmoe_lora_sft_fsdp_ascend.yaml": "Qwen3-VL-30B-A3B-Instruct",
            "lf05_qwen3_5moe_lora_sft_fsdp2_ascend.yaml": "Qwen3.5-35B-A3B",
            "lf09_qwen2_5vl_lora_sft.yaml": "Qwen2.5-VL-7B-Instruct", "lf11_qwen2vl_lora_sft_2025-04.yaml":
            "Qwen2-VL-7B-Instruct", "lf14_llava1_5_lora_sft_2025-04.yaml": "llava-1.5-7b-hf",
            "lf16_llama4_lora_sft.yaml": "Llama-4-Scout-17B-16E-Instruct"}
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "interop" / "llamafactory"
KEYS = ("finetuning_type", "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "additional_target",
        "freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model", "use_dora", "use_rslora")
SPECS = {
    "language, last 8 layers": {"task": "vqa", "language": {"layers": {"last": 8}}},
    "vision only": {"finetune_vision_layers": True, "finetune_language_layers": False},
    "attention only": {"finetune_mlp_modules": False},
    "everything": {},
    "per-component ranks": {"vision": {"r": 8}, "language": {"r": 16}},
    "projector lora": {"finetune_projector": "lora"},
    "projector lora, tower frozen": {"finetune_projector": "lora", "finetune_vision_layers": False},
    "projector full": {"finetune_projector": "full"},
}


def wrapped(ref: str, text: str) -> tuple[set[str], int]:
    """The modules LLaMA-Factory's init_adapter has PEFT wrap, for the exported YAML, on the meta model, and how
    many parameters it leaves trainable."""
    data = yaml.safe_load(text)
    data.pop("model_name_or_path", None)
    parser = HfArgumentParser((ModelArguments, FinetuningArguments))
    model_args, finetuning_args = parser.parse_dict({"model_name_or_path": ref, **data}, allow_extra_keys=True)
    _, _, reference = default_registry().require_reference(ref)
    config = config_from_file(reference.config_path)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    model = init_adapter(config, model, model_args, finetuning_args, is_trainable=True)
    names = {n.removeprefix("base_model.model.") for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    return names, sum(p.numel() for p in model.parameters() if p.requires_grad)


def compared(path: Path, ref: str) -> tuple[bool, tuple]:
    """vlora's import of a training YAML against what LLaMA-Factory wraps with its LoRA keys."""
    data = {k: v for k, v in yaml.safe_load(path.read_text()).items() if k in KEYS}
    try:
        got, _ = wrapped(ref, yaml.safe_dump(data))
    except ValueError as exc:  # LLaMA-Factory stops (PEFT cannot wrap a target): vlora must say it would
        failure = str(exc).splitlines()[0]
        try:
            imported = import_config(path, "llamafactory", ref)
        except Exception as refusal:
            return True, ("-", "-", f"both stop (LLaMA-Factory: {failure[:60]}; vlora: {str(refusal)[:60]})")
        said = [d for d in imported.differences if "PEFT would" in d]
        return bool(said), ("-", "-", (f"LLaMA-Factory stops ({failure[:50]}...); the import says: {said[0][:70]}"
                                        if said else f"DIFFERS: LLaMA-Factory stops ({failure[:80]}), the import "
                                        "says nothing"))
    try:
        imported = import_config(path, "llamafactory", ref)
    except Exception as exc:
        reason = str(exc).splitlines()[0]
        ok = any(name in reason for name in got)
        return ok, ("-", len(got), ("refused, naming a module it adapts: " if ok else "REFUSED: ") + reason[:110])
    want = {t.name for t in imported.plan.targets} | set(imported.unexpressed)
    if got == want:
        return True, (len(want), len(got), "equal" + (f" ({len(imported.unexpressed)} outside every component, said "
                                                      "in the import)" if imported.unexpressed else ""))
    return False, (len(want), len(got), f"DIFFERS (extra {sorted(got - want)[:2]}, missing {sorted(want - got)[:2]})")


def main() -> int:
    failures = 0
    print(f"{'reference':<26} {'case':<40} {'vlora':>8} {'wrapped':>8}  result")
    for ref in with_examples(REFERENCES):
        for label, spec in specs_for(ref, SPECS, REFERENCES):
            try:
                plan = plan_of(spec, ref)
            except Exception as exc:  # a spec that does not apply to this model (no vision tower to select...)
                print(f"{ref:<26} {label:<40} {'-':>8} {'-':>8}  not planned: {type(exc).__name__}")
                continue
            export = export_plan(plan, "llamafactory")
            got, trainable = wrapped(ref, export.text)
            want = {t.name for t in plan.module_targets}
            if got == want and trainable == plan.trainable_params:
                verdict = "equal"
            elif got == want and export.lost:  # the same modules; a rank, alpha or parameter target is lost
                verdict = f"equal targets; the export says what is lost ({len(export.lost)} lines)"
            elif export.lost and any("targets" in line or "match too" in line for line in export.lost):
                verdict = f"other targets, and the export names them ({len(export.lost)} lost lines)"
            else:
                failures += 1
                extra, missing = sorted(got - want)[:2], sorted(want - got)[:2]
                verdict = (f"DIFFERS (extra {extra}, missing {missing}; trainable {trainable:,} where the plan "
                           f"trains {plan.trainable_params:,}) but the export says nothing is lost")
            print(f"{ref:<26} {label:<40} {len(want):>8} {len(got):>8}  {verdict}")
        with tempfile.TemporaryDirectory() as tmp:
            for freeze in FREEZES if ref in REFERENCES else ():
                path = Path(tmp) / "train.yaml"
                path.write_text(yaml.safe_dump({"model_name_or_path": ref, "finetuning_type": "lora",
                                                "lora_target": "all", **freeze}))
                ok, (a, b, verdict) = compared(path, ref)
                failures += 0 if ok else 1
                label = "import: all " + " ".join(f"{k}={v}" for k, v in freeze.items())
                print(f"{ref:<26} {label[:40]:<40} {a:>8} {b:>8}  {verdict}")
    for name, ref in EXAMPLES.items():
        ok, (a, b, verdict) = compared(CORPUS / name, ref)
        failures += 0 if ok else 1
        print(f"{ref:<26} {'import: ' + name[:32]:<40} {a:>8} {b:>8}  {verdict}")
    print("ok" if not failures else f"{failures} cases differ from what LLaMA-Factory trains")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
