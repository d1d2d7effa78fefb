"""``vlora adapter inspect | check | spec | migrate``: adapters already on disk."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..adapters import check_adapter, merge_folder, migrate_adapter, read_adapter, spec_for_adapter
from ..boundary import escape, escape_lines
from ..cache import tree_for
from ..errors import UsageError
from ..peft.files import adapter_files
from ..plugins import default_registry
from ..serving import serve_adapter
from .common import MODEL_HELP, command, errors, serve_options, write


def add(sub: Any) -> None:
    ad = command(sub, "adapter", help="adapters already on disk (PEFT's format): inspect, check, migrate, spec, merge",
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
                         "untrained), and shapes that do not fit. Exit 0 when everything loads, 8 otherwise. With "
                         "--serve, also what a serving engine would apply of it: exit 9 when anything would not "
                         "serve as trained or vlora cannot tell (8 still wins: an adapter that does not load).")
    ac.add_argument("--model", "-m", metavar="REF", required=True, help=MODEL_HELP.split(". Default")[0])
    serve_options(ac, "the adapter")
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
    mg = adapter_command("merge", help="merge an adapter into its base's weights, and prove it held",
                         description="The one vlora command that loads weights (it says so, and how many bytes): "
                         "load the base from PATH in its own dtype and DIR on it, merge (PEFT's merge_and_unload), "
                         "then prove it: every adapted module gives, merged, the outputs it gave with its adapter "
                         "(the tolerance of the dtype, stated); every target whose adapter is non-zero changed; "
                         "modules trained in full and tied embeddings are the trained ones; parameter targets hold "
                         "base + delta; the whole model's outputs on a text input are the adapted model's. Only "
                         "then is OUT written, as save_pretrained writes it (sharded safetensors, the base's "
                         "dtype) with PATH's tokenizer and processor files, atomically. A quantized base is "
                         "refused. Exit 8 when the adapter would not load completely, or the merge does not hold.")
    mg.add_argument("--model", "-m", metavar="PATH", required=True,
                    help="the base model's folder with its weights (save_pretrained's output or a Hub snapshot)")
    mg.add_argument("--output", "-o", metavar="OUT", required=True, help="the folder to write (new or empty)")
    mg.add_argument("--json", action="store_true", help="print the proof as JSON")


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
    if args.adapter_command == "merge":
        return merge_command(args, adapter, registry)
    if args.adapter_command == "check":
        tree = tree_for(args.model, registry, label=args.model)
        result = check_adapter(adapter, tree)
        served = serve_adapter(adapter, tree, args.serve, args.engine_version) if args.serve else None
        if args.json:
            data = result.to_dict() | ({"serve": served.to_dict()} if served else {})
            print(json.dumps(data, indent=2, sort_keys=True))
        else:
            sys.stdout.write(escape_lines(result.report()))
            if served:
                sys.stdout.write(escape_lines(served.report()))
                print(escape(f"serve with: {served.command(args.model, args.adapter)}"))
        if not result.ok:
            return errors.EXIT_ADAPTER_MISFIT
        return errors.EXIT_NOT_SERVED if served and not served.ok else errors.EXIT_OK
    if args.json:
        print(json.dumps(adapter.to_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(escape_lines(adapter.table()))
    return errors.EXIT_OK


def merge_command(args: argparse.Namespace, adapter: Any, registry: Any) -> int:
    result = check_adapter(adapter, tree_for(args.model, registry, label=args.model))
    if not result.ok:  # before any weight is read
        sys.stdout.write(escape_lines(result.report()))
        return errors.EXIT_ADAPTER_MISFIT
    size = sum(f.stat().st_size for f in Path(args.model).glob("*.safetensors")) + \
        sum(f.stat().st_size for f in Path(args.model).glob("*.bin"))
    print(escape(f"vlora adapter merge: loading the weights of {args.model} ({size / 2**30:.2f} GiB) and "
                 f"{args.adapter}"), file=sys.stderr)
    merged, out = merge_folder(args.adapter, args.model, args.output)
    if args.json:
        print(json.dumps(merged.to_dict() | {"written": str(out) if merged.ok else None}, indent=2, sort_keys=True))
    else:
        sys.stdout.write(merged.report())
        print(escape(f"wrote {out}" if merged.ok else f"nothing was written to {args.output}"))
    return errors.EXIT_OK if merged.ok else errors.EXIT_ADAPTER_MISFIT


__all__ = ["add", "run"]
