"""``vlora adapter inspect | check | spec | migrate``: adapters already on disk."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..adapters import check_adapter, migrate_adapter, read_adapter, spec_for_adapter
from ..boundary import escape, escape_lines
from ..cache import tree_for
from ..errors import UsageError
from ..peft.files import adapter_files
from ..plugins import default_registry
from .common import MODEL_HELP, command, errors, write


def add(sub: Any) -> None:
    ad = command(sub, "adapter", help="adapters already on disk (PEFT's format): inspect, check, migrate, spec",
                 description="Adapters already on disk, whatever trained them (PEFT, Unsloth, LLaMA-Factory "
                 "and ms-swift all save PEFT's format).")
    adapter_sub = ad.add_subparsers(dest="adapter_command", metavar="COMMAND", required=True)
    def adapter_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """One `vlora adapter` subcommand: its parser, with the adapter folder every one of them reads."""
        parser = command(adapter_sub, name, **kwargs)
        parser.add_argument("adapter", metavar="DIR", help="the adapter's folder (what save_pretrained wrote)")
        return parser

    ai = adapter_command("inspect", help="what an adapter covers, from its files alone",
                         description="Read DIR's adapter_config.json and the tensor names and shapes of its "
                         "weights (adapter_model.safetensors; a .bin only with torch.load(weights_only=True)), "
                         "check that they agree, and show what the adapter covers per component and role: "
                         "layers, rank and alpha, modules saved in full, target_parameters, the installed "
                         "plugin whose patterns place its modules, and the total parameters. No base model "
                         "is needed. Exit 7 when the folder is no adapter or its files are damaged or "
                         "disagree.")
    ai.add_argument("--json", action="store_true", help="print as JSON")
    ac = adapter_command("check", help="would the adapter load completely into this model?",
                         description="Check DIR against the model REF under the installed transformers, as "
                         "PEFT would load it: adapted modules the model does not have (their weights would be "
                         "dropped, often because the adapter was saved under another transformers layout), "
                         "modules the adapter's config targets that would get no weights (they would stay "
                         "untrained), and shapes that do not fit. Exit 0 when everything loads, 8 otherwise.")
    ac.add_argument("--model", "-m", metavar="REF", required=True, help=MODEL_HELP.split(". Default")[0])
    ac.add_argument("--json", action="store_true", help="print as JSON")
    asp = adapter_command("spec", help="the spec that reproduces an adapter's targets",
                          description="Write the vlora spec whose plan on REF has exactly the adapter's targets "
                          "(ranks, alphas, layers, projector mode, modules saved in full; leaves its roles do "
                          "not cover with target_modules_extra, missing ones with exclude_modules), checked by "
                          "resolving it. Adapted modules outside every component cannot be expressed: they are "
                          "named in the file's header and on stderr. REF defaults to the adapter's "
                          "base_model_name_or_path.")
    asp.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP.split(". Default")[0]
                     + ". Default: the adapter's base_model_name_or_path")
    asp.add_argument("--output", "-o", metavar="FILE", help="spec file to write (default: standard output)")
    am = adapter_command("migrate", help="rewrite an adapter for this model's layout",
                         description="Rewrite DIR for the module names of REF under the installed "
                         "transformers: every tensor key and adapter_config.json (target_modules, rank and "
                         "alpha patterns, modules_to_save, target_parameters), through each module's logical "
                         "identity (component, layer, leaf). Modules it cannot map are refused by name, never "
                         "dropped. OUT is written atomically; DIR is never modified.")
    am.add_argument("--model", "-m", metavar="REF", required=True, help=MODEL_HELP.split(". Default")[0])
    am.add_argument("--output", "-o", metavar="OUT", required=True, help="the folder to write (new or empty)")


def run(args: argparse.Namespace) -> int:
    registry = default_registry()
    adapter = read_adapter(args.adapter, registry)
    if args.adapter_command == "spec":
        ref = args.model or adapter.config.get("base_model_name_or_path")
        if not ref:
            raise UsageError("the adapter does not name its base model (base_model_name_or_path is empty)",
                             hint="give the model: vlora adapter spec DIR --model REF")
        found = spec_for_adapter(adapter, tree_for(ref, registry, label=ref), registry, model=ref)
        text = found.to_yaml(adapter.path)
        if args.output:
            write(text, args.output, inputs=adapter_files(args.adapter))
            print(f"wrote {args.output}: {len(found.plan.targets)} targets, "
                  f"{len(found.plan.full_modules)} modules trained in full")
        else:
            sys.stdout.write(text)
        for name in found.unexpressed:
            print(f"vlora adapter spec: note: {escape(name)} lies outside every component; no spec can target it",
                  file=sys.stderr)
        return errors.EXIT_OK
    if args.adapter_command == "migrate":
        tree = tree_for(args.model, registry, label=args.model)
        written = migrate_adapter(adapter, tree, args.output)
        result = check_adapter(read_adapter(written, registry), tree)
        print(f"wrote {written}: {len(adapter.modules)} modules for the layout of {args.model}"
              + ("" if result.ok else "; but it still would not load completely:"))
        if not result.ok:
            sys.stdout.write(escape_lines(result.report()))
        return errors.EXIT_OK if result.ok else errors.EXIT_ADAPTER_MISFIT
    if args.adapter_command == "check":
        result = check_adapter(adapter, tree_for(args.model, registry, label=args.model))
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            sys.stdout.write(escape_lines(result.report()))
        return errors.EXIT_OK if result.ok else errors.EXIT_ADAPTER_MISFIT
    if args.json:
        print(json.dumps(adapter.to_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(escape_lines(adapter.table()))
    return errors.EXIT_OK


__all__ = ["add", "run"]
