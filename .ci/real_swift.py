"""vlora's ms-swift exports handed to the real ms-swift (installed from PyPI, run in its own environment): for
each bundled reference of a family ms-swift supports and a handful of toggle combinations, the `swift sft`
arguments `vlora export --to swift` writes are parsed by ms-swift's own `parse_args(SftArguments, ...)` (the
model folder holding the bundled config.json) and its `prepare_adapter` wraps a model built on the meta device.
The modules PEFT then wraps and the trainable parameter count must equal the plan, or the export must say what
is lost. Then the import direction: what `vlora import --from swift` plans for `--target_modules all-linear`
with each freeze setting must be what ms-swift wraps. Any difference fails.

    .venv-swift/bin/python .ci/real_swift.py
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import sys
import tempfile
import warnings
from pathlib import Path

import torch

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

from example_specs import plan_of, specs_for, with_examples  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from swift.arguments import SftArguments  # noqa: E402
from swift.pipelines.train.tuner import prepare_adapter  # noqa: E402
from swift.utils import parse_args  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402

from vlora_core import default_registry, export_plan, import_config  # noqa: E402
from vlora_core.interop.swift import read as read_swift  # noqa: E402
from vlora_core.modeltree import config_from_file  # noqa: E402

# bundled reference -> ms-swift's model_type and template for it (swift/model/constant.py)
REFERENCES = {"Qwen2-VL-7B-Instruct": "qwen2_vl", "Qwen2.5-VL-7B-Instruct": "qwen2_5_vl",
              "llava-1.5-7b-hf": "llava1_5_hf", "Llama-3.2-11B-Vision": "llama3_2_vision",
              "gemma-3-4b-it": "gemma3_vision", "paligemma-3b-pt-224": "paligemma",
              "Qwen3-VL-8B-Instruct": "qwen3_vl", "Qwen3-VL-30B-A3B-Instruct": "qwen3_vl_moe",
              "Qwen3.5-35B-A3B": "qwen3_5_moe", "gemma-4-E2B-it": "gemma4", "pixtral-12b": "pixtral",
              "Llama-4-Scout-17B-16E-Instruct": "llama4"}
EXAMPLE_TYPES = {"Qwen2-VL-2B-Instruct": "qwen2_vl", "Qwen2.5-VL-3B-Instruct": "qwen2_5_vl"}  # example specs' models
TEMPLATES = {"qwen3_vl_moe": "qwen3_vl", "qwen3_5_moe": "qwen3_5"}  # where the template is not named as the type
# ms-swift's own example scripts (tests/data/interop/swift) -> the bundled reference of their family
EXAMPLES = {"s01_caption_qwen2_5vl.sh": "Qwen2.5-VL-7B-Instruct", "s03_ocr_qwen2_5vl.sh": "Qwen2.5-VL-7B-Instruct",
            "s06_qwen3vl_mixed.sh": "Qwen3-VL-8B-Instruct", "s08_qwen3_5_moe_transformers.sh": "Qwen3.5-35B-A3B",
            "s10_gemma4_train.sh": "gemma-4-E2B-it", "s11_llama4_moe.sh": "Llama-4-Scout-17B-16E-Instruct"}
# the arguments of an example that decide what is trained (the rest: data, schedule, devices)
LORA_ARGS = ("tuner_type", "train_type", "lora_rank", "lora_alpha", "lora_dropout", "target_modules", "target_regex",
             "target_parameters", "freeze_vit", "freeze_aligner", "freeze_llm", "modules_to_save", "use_rslora",
             "use_dora")
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "interop" / "swift"
SPECS = {
    "language, last 8 layers": {"task": "vqa", "language": {"layers": {"last": 8}}},
    "vision only": {"finetune_vision_layers": True, "finetune_language_layers": False},
    "attention only": {"finetune_mlp_modules": False},
    "per-component ranks": {"vision": {"r": 8}, "language": {"r": 16}},
    "projector lora": {"finetune_projector": "lora"},
    "projector full": {"finetune_projector": "full"},
}
FREEZES = ["", "--freeze_vit false", "--freeze_vit false --freeze_aligner false",
           "--freeze_llm true --freeze_vit false"]


def wrapped(ref: str, model_type: str, folder: Path, argv: list[str]) -> tuple[set[str], int]:
    """What ms-swift's prepare_adapter has PEFT wrap for these `swift sft` arguments, and the trainable count."""
    argv = [*argv, "--model", str(folder), "--model_type", model_type,
            "--template", TEMPLATES.get(model_type, model_type), "--dataset", "unused", "--use_cpu", "true",
            "--torch_dtype", "float32",
            "--output_dir", str(folder / "output")]
    args, _ = parse_args(SftArguments, argv)
    config = config_from_file(folder / "config.json")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    model.model_meta, model.model_info = args.model_meta, args.model_info
    model = prepare_adapter(args, model)
    names = {re.sub(r"(\.base_layer)+$", "", n.removeprefix("base_model.model."))  # nested parameter wrappers
             for n, m in model.named_modules() if isinstance(m, LoraLayer)}
    return names, sum(p.numel() for p in model.parameters() if p.requires_grad)


def export_args(text: str) -> list[str]:
    """The arguments of the exported ``swift sft`` command, without ``--model HUB_ID`` (the bundled config's
    folder stands for the model)."""
    words = shlex.split(text.replace("\\\n", " "), comments=True)[2:]  # drop "swift sft"
    at = words.index("--model")
    return words[:at] + words[at + 2:]


def compared(script: Path, ref: str, model_type: str, folder: Path, argv: list[str], registry
             ) -> tuple[bool, tuple]:
    """vlora's import of a `swift sft` script against what ms-swift wraps with its arguments: equal, or vlora
    refuses with a reason that names a module ms-swift wraps (one vlora cannot plan)."""
    got, _ = wrapped(ref, model_type, folder, argv)
    try:
        imported = import_config(script, "swift", ref, registry=registry)
    except Exception as exc:
        reason = str(exc).splitlines()[0]
        ok = any(name in reason for name in got)
        return ok, ("-", len(got), ("refused, naming a module ms-swift adapts: " if ok else "REFUSED: ") + reason[:110])
    want = {t.name for t in imported.plan.targets} | set(imported.unexpressed)
    want |= {t.name.rpartition(".")[0] for t in imported.plan.parameter_targets}
    want -= {t.name for t in imported.plan.parameter_targets}
    if got == want:
        return True, (len(want), len(got), "equal" + (f" ({len(imported.unexpressed)} outside every component, said "
                                                      "in the import)" if imported.unexpressed else ""))
    return False, (len(want), len(got), f"DIFFERS (extra {sorted(got - want)[:2]}, missing {sorted(want - got)[:2]})")


def main() -> int:
    failures, rows = 0, []
    registry = default_registry()
    with tempfile.TemporaryDirectory() as tmp:
        for ref in with_examples(REFERENCES):
            model_type = REFERENCES.get(ref) or EXAMPLE_TYPES[ref]
            folder = Path(tmp) / ref
            folder.mkdir()
            _, _, reference = registry.require_reference(ref)
            (folder / "config.json").write_text(reference.config_path.read_text())
            for label, spec in specs_for(ref, SPECS, REFERENCES):
                try:
                    plan = plan_of(spec, ref)
                except Exception as exc:
                    rows.append((ref, f"export: {label}", "-", "-", f"not planned: {type(exc).__name__}"))
                    continue
                export = export_plan(plan, "swift")
                got, trainable = wrapped(ref, model_type, folder, export_args(export.text))
                want = {t.name for t in plan.module_targets} | {t.name.rpartition(".")[0]
                                                                for t in plan.parameter_targets}
                if got == want and trainable == plan.trainable_params:
                    verdict = "equal"
                elif got == want and export.lost:
                    verdict = f"equal targets; the export says what is lost ({len(export.lost)} lines)"
                else:
                    failures += 1
                    verdict = (f"DIFFERS (extra {sorted(got - want)[:2]}, missing {sorted(want - got)[:2]}, trainable "
                               f"{trainable:,} where the plan trains {plan.trainable_params:,})")
                rows.append((ref, f"export: {label}", len(want), len(got), verdict))
            for freeze in FREEZES if ref in REFERENCES else ():
                script = Path(tmp) / "train.sh"
                script.write_text(f"swift sft --model {reference.hub_id} --tuner_type lora --target_modules "
                                  f"all-linear {freeze}\n")
                ok, row = compared(script, ref, model_type, folder, shlex.split(
                    f"--tuner_type lora --target_modules all-linear {freeze}"), registry)
                failures += 0 if ok else 1
                rows.append((ref, f"import: all-linear {freeze}".strip(), *row))
        for name, ref in EXAMPLES.items():
            folder = Path(tmp) / ref
            argv = []
            for key, value in read_swift(CORPUS / name).items():
                if key in LORA_ARGS:
                    argv += [f"--{key}", *(value if isinstance(value, list) else [str(value)])]
            ok, row = compared(CORPUS / name, ref, REFERENCES[ref], folder, argv, registry)
            failures += 0 if ok else 1
            rows.append((ref, f"import: {name}", *row))
    print(f"{'reference':<26} {'case':<60} {'vlora':>6} {'swift':>6}  result")
    for ref, case, a, b, verdict in rows:
        print(f"{ref:<26} {case:<60} {a:>6} {b:>6}  {verdict}")
    print(json.dumps({"cases": len(rows), "failures": failures}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
