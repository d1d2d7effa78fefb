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
import warnings

os.environ.setdefault("LLAMAFACTORY_VERBOSITY", "WARN")  # its INFO lines, one per model, say nothing here

import torch
import yaml

warnings.filterwarnings("ignore")

from llamafactory.hparams import FinetuningArguments, ModelArguments  # noqa: E402
from llamafactory.model.adapter import init_adapter  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from transformers import AutoModelForImageTextToText, HfArgumentParser  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from vlora_core import default_registry, export_plan, resolve  # noqa: E402
from vlora_core.modeltree import config_from_file  # noqa: E402

hf_logging.set_verbosity_error()

REFERENCES = ["Qwen2-VL-7B-Instruct", "Qwen2.5-VL-7B-Instruct", "llava-1.5-7b-hf", "Llama-3.2-11B-Vision",
              "gemma-3-4b-it", "paligemma-3b-pt-224", "Qwen3-VL-8B-Instruct"]
SPECS = {
    "language, last 8 layers": {"task": "vqa", "language": {"layers": {"last": 8}}},
    "vision only": {"finetune_vision_layers": True, "finetune_language_layers": False},
    "attention only": {"finetune_mlp_modules": False},
    "everything": {},
    "per-component ranks": {"vision": {"r": 8}, "language": {"r": 16}},
    "projector lora": {"finetune_projector": "lora"},
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


def main() -> int:
    failures = 0
    print(f"{'reference':<26} {'spec':<26} {'planned':>8} {'wrapped':>8}  result")
    for ref in REFERENCES:
        for label, spec in SPECS.items():
            try:
                plan = resolve(spec, ref)
            except Exception as exc:  # a spec that does not apply to this model (no vision tower to select...)
                print(f"{ref:<26} {label:<26} {'-':>8} {'-':>8}  not planned: {type(exc).__name__}")
                continue
            export = export_plan(plan, "llamafactory")
            got, trainable = wrapped(ref, export.text)
            want = {t.name for t in plan.module_targets}
            if got == want and trainable == plan.trainable_params:
                verdict = "equal"
            elif export.lost:
                verdict = f"differs, and the export says what is lost ({len(export.lost)} lines)"
            else:
                failures += 1
                extra, missing = sorted(got - want)[:2], sorted(want - got)[:2]
                verdict = (f"DIFFERS (extra {extra}, missing {missing}; trainable {trainable:,} where the plan "
                           f"trains {plan.trainable_params:,}) but the export says nothing is lost")
            print(f"{ref:<26} {label:<26} {len(want):>8} {len(got):>8}  {verdict}")
    print("ok" if not failures else f"{failures} exports differ from what LLaMA-Factory trains")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
