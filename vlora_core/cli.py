"""The ``vlora`` command: plan, validate, plugins, schema, models.

No traceback reaches a user for a bad input: every ``VloraError`` becomes one message and its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from . import errors
from .errors import VloraError

EXIT_CODES = f"""exit codes:
  {errors.EXIT_OK}  success
  {errors.EXIT_INTERNAL}  internal error (a bug: please report it)
  {errors.EXIT_USAGE}  usage error (bad arguments, no model given)
  {errors.EXIT_SPEC}  invalid spec (unreadable, malformed, or fails the schema)
  {errors.EXIT_RESOLUTION}  resolution failure (spec and model do not fit together)
  {errors.EXIT_PLUGIN}  plugin failure (failed to load, invalid, or conflicting)
"""

MODEL_HELP = (
    "model to resolve against: a bundled reference name (see `vlora models`), a directory holding config.json, "
    "a config.json path, or a Hub id (config only; needs the Hub or its cache). Default: the spec's `model:`"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlora",
        description="Exact, validated, explainable LoRA targets for vision-language models.",
        epilog=EXIT_CODES + "\nexample:\n  vlora plan examples/qwen2_vl_ocr.yaml --model Qwen2.5-VL-7B-Instruct",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vlora {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "plan",
        help="show what a spec trains on a model",
        description="Resolve SPEC against a model and print the plan: per component x role, the modules, "
        "layers, LoRA parameters and share; then totals.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", help="spec file (.yaml, .yml, .json or .toml)")
    p.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print the full plan as JSON (sorted, deterministic)")

    v = sub.add_parser(
        "validate",
        help="check spec files (schema, and resolution when a model is known)",
        description="Check each SPEC: the schema always; resolution too when --model is given or the spec "
        "has `model:`. Prints one `file:line: message` line per problem and exits non-zero on any.",
        epilog=EXIT_CODES + "  several kinds of problem: the highest code among them\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("specs", metavar="SPEC", nargs="+", help="spec files")
    v.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP)
    v.add_argument("--quiet", "-q", action="store_true", help="print problems only, not one line per good file")

    pl = sub.add_parser("plugins", help="list installed architecture plugins",
                        description="List installed plugins: distribution, version, architectures, model_types; "
                        "and any plugin that failed to load or conflicts (exit 5 then).")
    pl.add_argument("--json", action="store_true", help="print as JSON")

    sub.add_parser("schema", help="print the JSON Schema of spec files (for editors and CI)",
                   description="Print the JSON Schema of the spec file format.")

    mo = sub.add_parser("models", help="list bundled reference configs usable as --model",
                        description="List the reference configs bundled by installed plugins (config.json data of "
                        "published checkpoints, no weights). Use the name or the Hub id as --model.")
    mo.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def _version() -> str:
    from .plan import package_version

    return package_version("vlora")


# --- commands ----------------------------------------------------------------------------------------


def _cmd_plan(args: argparse.Namespace) -> int:
    from .resolve import resolve
    from .spec import load_spec

    spec = load_spec(args.spec)
    plan = resolve(spec, args.model)
    sys.stdout.write(plan.to_json() if args.json else plan.table())
    return errors.EXIT_OK


def _problem_lines(error: VloraError, source: str) -> list[str]:
    if isinstance(error, errors.SpecValidationError):
        pairs = error.problems
    else:
        pairs = [(error.where or source, error.message)]
    lines = []
    for where, message in pairs:
        if not where.startswith(source):
            where = f"{source}: {where}"
        line = f"{where}: {' '.join(message.split())}"
        if error.hint:
            line += f" (hint: {error.hint})"
        lines.append(line)
    return lines


def _cmd_validate(args: argparse.Namespace) -> int:
    from .modeltree import module_tree
    from .plugins import default_registry
    from .resolve import resolve
    from .spec import load_spec

    trees: dict[str, Any] = {}  # one module tree per model reference, however many specs use it
    codes: list[int] = []
    for path in args.specs:
        try:
            spec = load_spec(path)
            ref = args.model or spec.model
            if ref is None:
                if not args.quiet:
                    print(f"{path}: ok (schema only: no --model and no `model:` in the spec)")
                continue
            if ref not in trees:
                trees[ref] = module_tree(ref, default_registry())
            plan = resolve(spec, trees[ref])
            for warning in plan.warnings:
                print(f"{path}: warning: {warning}")
            if not args.quiet:
                print(f"{path}: ok ({len(plan.targets)} targets, {plan.lora_params:,} LoRA parameters on {ref})")
        except VloraError as exc:
            codes.append(exc.exit_code)
            for line in _problem_lines(exc, path):
                print(line)
    return max(codes, default=errors.EXIT_OK)


def _cmd_plugins(args: argparse.Namespace) -> int:
    from .plugins import default_registry

    registry = default_registry()
    conflicts = registry.conflicts()
    if args.json:
        data = {
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "architectures": [
                        {"name": a.name, "title": a.display_name, "model_types": list(a.model_types)}
                        for a in p.architectures
                    ],
                }
                for p in registry.plugins
            ],
            "failures": [{"name": f.name, "distribution": f.distribution, "reason": f.reason}
                         for f in registry.failures],
            "disabled": registry.disabled,
            "conflicts": {mt: [p.distribution for p, _ in owners] for mt, owners in sorted(conflicts.items())},
        }
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        if not registry.plugins:
            print("no plugins installed (install one, e.g. `pip install -e plugins/qwen2_vl`)")
        for p in registry.plugins:
            print(f"{p.distribution} {p.version} (entry point {p.name})")
            for a in p.architectures:
                print(f"  {a.name:<14} {a.display_name:<18} model_types: {', '.join(a.model_types)}")
        for name in registry.disabled:
            print(f"disabled: {name}")
        for mt, owners in sorted(conflicts.items()):
            print(f"conflict: model_type {mt!r} is claimed by {' and '.join(p.distribution for p, _ in owners)}")
        for f in registry.failures:
            print(f"failed: {f.name} ({f.distribution}): {f.reason}")
    return errors.EXIT_PLUGIN if registry.failures or conflicts else errors.EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    from .spec import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2, sort_keys=True))
    return errors.EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from .plugins import default_registry

    refs = default_registry().references()
    if args.json:
        print(json.dumps([
            {"name": r.name, "hub_id": r.hub_id, "architecture": a.name, "model_types": list(a.model_types),
             "plugin": p.distribution, "config": str(r.config_path)}
            for p, a, r in refs
        ], indent=2, sort_keys=True))
        return errors.EXIT_OK
    if not refs:
        print("no bundled reference configs (install an architecture plugin)")
    rows = [("name", "architecture", "hub id", "plugin")]
    rows += [(r.name, a.display_name, r.hub_id, p.distribution) for p, a, r in refs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[3])
    return errors.EXIT_OK


COMMANDS = {
    "plan": _cmd_plan,
    "validate": _cmd_validate,
    "plugins": _cmd_plugins,
    "schema": _cmd_schema,
    "models": _cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except VloraError as exc:
        print(f"vlora {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("vlora: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return errors.EXIT_OK
    except Exception as exc:  # a bug: say so plainly; the traceback only on request
        if os.environ.get("VLORA_DEBUG"):
            traceback.print_exc()
        print(
            f"vlora {args.command}: internal error: {type(exc).__name__}: {exc}\n"
            "  this is a bug in vlora or a plugin; rerun with VLORA_DEBUG=1 for the traceback and report it",
            file=sys.stderr,
        )
        return errors.EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
