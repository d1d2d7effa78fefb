"""``vlora validate`` and ``vlora lock``: spec files checked for people and CI, and plans written to lock files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..lock import check_lock_paths, lock_path_for, write_lock
from ..resolve import resolve
from ..spec import load_spec
from ..validate import FORMATS, check_files, check_required_plugins, exit_code, expand, plugin_failures, render
from .common import command, errors, resolution_options, serve_options


def add_validate(sub: Any) -> None:
    v = command(sub, "validate",
        help="check spec files (schema, resolution, locks, required plugins)",
        description="Check each SPEC (files, directories of specs, or glob patterns): the schema always; "
        "resolution too when --model is given or the spec has `model:`; and the plan against its lock file "
        "(--lock, or NAME.lock.json beside NAME.yaml when it exists). One line per problem, and a "
        "non-zero exit on any.",
        more="  several kinds of problem: the highest code among them\n",
    )
    v.add_argument("specs", metavar="SPEC", nargs="+", help="spec files, directories of specs, or globs")
    resolution_options(v)
    v.add_argument("--lock", metavar="FILE", help="lock file to check the plan against (one SPEC only); default: "
                   "NAME.lock.json beside each spec, when it exists")
    v.add_argument("--require-lock", action="store_true", help="a spec without a lock file is a problem")
    v.add_argument("--require-plugins", metavar="REQ", nargs="+", default=[],
                   help="plugins that must be installed and load: an entry point ('llava', built in) or a "
                   "distribution with a version range ('vlora-vipllava>=0.2')")
    v.add_argument("--format", choices=FORMATS, default="text",
                   help="text (file:line: message), json, or github (::error annotations for GitHub Actions)")
    v.add_argument("--quiet", "-q", action="store_true", help="text format: print problems and warnings only")
    serve_options(v, "each spec's adapter (a problem, exit 9, when anything would not serve as trained)")


def add_lock(sub: Any) -> None:
    lk = command(sub, "lock",
        help="write the resolved plan of a spec to a lock file",
        description="Resolve each SPEC and write its plan to a lock file (default: NAME.lock.json beside "
        "NAME.yaml): each target's logical identity (component, role, stack, layer, leaf) and module name, "
        "ranks, alphas, counts, a hash of the spec, and the versions of vlora, the plugin, transformers and "
        "peft. `vlora validate` then fails when the plan changes.",
    )
    lk.add_argument("specs", metavar="SPEC", nargs="+", help="spec files, directories of specs, or globs")
    resolution_options(lk)
    lk.add_argument("--output", "-o", metavar="FILE", help="lock file to write (one SPEC only)")


def run_validate(args: argparse.Namespace) -> int:
    files = expand(args.specs)
    if args.lock and len(files) != 1:
        raise UsageError(f"--lock names one lock file, but {len(files)} specs were given",
                         hint="validate one spec with --lock, or keep NAME.lock.json beside each spec")
    extra = [p for p in [check_required_plugins(args.require_plugins)] if p] if args.require_plugins else []
    extra += [p for p in plugin_failures() if not any(p.message in e.message for e in extra)]
    results = check_files(files, model=args.model, lock=args.lock, require_lock=args.require_lock, sets=args.set,
                          serve=(args.serve, args.engine_version) if args.serve else None)
    sys.stdout.write(render(results, args.format, quiet=args.quiet, extra=extra))
    return exit_code(results, extra)


def run_lock(args: argparse.Namespace) -> int:
    files = expand(args.specs)
    if args.output and len(files) != 1:
        raise UsageError(f"--output names one lock file, but {len(files)} specs were given",
                         hint="lock one spec with -o, or let each lock go beside its spec")
    targets = [(file, Path(args.output) if args.output else lock_path_for(file)) for file in files]
    check_lock_paths(targets)
    for file, target in targets:
        spec = load_spec(file, sets=args.set)
        plan = resolve(spec, args.model)
        path = write_lock(plan, target)
        print(f"{file}: wrote {path} ({len(plan.targets)} targets, {plan.lora_params:,} LoRA parameters on "
              f"{plan.model})")
        if args.model and spec.model and args.model != spec.model:
            print(f"{file}: note: locked for --model {args.model}, but the spec names {spec.model}; check it with "
                  f"`vlora validate {file} --model {args.model}`", file=sys.stderr)
    return errors.EXIT_OK


__all__ = ["add_lock", "add_validate", "run_lock", "run_validate"]
