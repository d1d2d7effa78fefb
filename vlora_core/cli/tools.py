"""``vlora export`` and ``vlora import``: a plan in another tool's words, and another tool's config as a spec."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..boundary import escape
from ..interop import EXPORTERS, IMPORTERS, export_plan, import_config
from ..resolve import resolve
from .common import (
    MODEL_HELP,
    NO_CACHE_HELP,
    command,
    errors,
    resolution_options,
    spec_and_tree,
    write,
)


def add_export(sub: Any) -> None:
    ex = command(sub, "export", help="the plan of a spec as another tool's config (PEFT, Unsloth, LLaMA-Factory, "
                 "ms-swift, axolotl)",
                 description="Resolve SPEC on the model and write the closest configuration for TOOL, in "
                 "its own format: peft (adapter_config.json's LoraConfig JSON), unsloth (get_peft_model "
                 "keyword arguments), llamafactory (training YAML keys), swift (swift sft arguments), "
                 "axolotl (training YAML keys). What the tool cannot express (per-component ranks, "
                 "parameter targets, ...) is named in the file's header and on stderr; the targets "
                 "themselves are exact in every format.")
    ex.add_argument("spec", metavar="SPEC", nargs="?", help="spec file; without one, the defaults on --model")
    ex.add_argument("--to", required=True, choices=list(EXPORTERS), help="the tool to write for")
    resolution_options(ex)
    ex.add_argument("--output", "-o", metavar="FILE", help="file to write (default: standard output)")
    ex.add_argument("--tool-version", metavar="V", help="the tool's version to write for (default: the newest vlora "
                    "knows; e.g. --tool-version 3 for ms-swift 3.x, which spells --tuner_type --train_type)")


def add_import(sub: Any) -> None:
    im = command(sub, "import", help="another tool's LoRA config as a vlora spec (Unsloth, LLaMA-Factory, ms-swift)",
                 description="Read FILE, a LoRA config of TOOL (unsloth: a Python file with the "
                 "get_peft_model(...) call, or its keywords as YAML/JSON; llamafactory: the training YAML; "
                 "swift: a shell script with the swift sft command, or its arguments as YAML/JSON), work "
                 "out what that tool trains on the model (a setting the file leaves out takes that tool's "
                 "default), and write the spec whose plan is exactly that. Where the tool does not do what "
                 "its flags suggest, the spec's header says so.")
    im.add_argument("file", metavar="FILE", help="the tool's config")
    im.add_argument("--from", dest="tool", required=True, choices=list(IMPORTERS), help="the tool that reads FILE")
    im.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP.split(". Default")[0]
                    + ". Default: the file's model (model_name_or_path, --model)")
    im.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)
    im.add_argument("--output", "-o", metavar="SPEC", help="spec file to write (default: standard output)")


def run_export(args: argparse.Namespace) -> int:
    spec, tree = spec_and_tree(args, "vlora export SPEC --to TOOL [--model REF]")
    plan = resolve(spec, tree)
    result = export_plan(plan, args.to, tree, tool_version=args.tool_version)
    write(result.text, args.output, inputs=[args.spec])
    if args.output:
        print(escape(f"wrote {args.output}: {args.to} config for {len(plan.targets)} targets on {plan.model}"))
    for line in result.lost:
        print(f"vlora export: lost: {escape(line)}", file=sys.stderr)
    return errors.EXIT_OK


def run_import(args: argparse.Namespace) -> int:
    imported = import_config(args.file, args.tool, args.model)
    write(imported.to_yaml(), args.output, inputs=[args.file])
    if args.output:
        print(f"wrote {args.output}: {len(imported.plan.targets)} targets, {imported.plan.lora_params:,} LoRA "
              f"parameters on {imported.model}")
        for line in imported.differences:
            print(f"note: {escape(line)}")
    return errors.EXIT_OK


__all__ = ["add_export", "add_import", "run_export", "run_import"]
