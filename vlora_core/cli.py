"""The ``vlora`` command: plan, validate, lock, export, import, plugins, shares, coverage, scaffold, schema, models.

No traceback reaches a user for a bad input: every ``VloraError`` becomes one message and its exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import errors
from .adapters import check_adapter, migrate_adapter, read_adapter, spec_for_adapter
from .cache import CACHE_ENV, NO_CACHE_ENV, cache_dir, cache_enabled, cache_entries, clear_cache, tree_for
from .coverage import coverage_rows, render_coverage
from .diagnostics import DOC_PAGES
from .draw import draw_html, draw_svg
from .errors import UsageError, VloraError
from .explain import explain
from .interop import EXPORTERS, IMPORTERS, export_plan, import_config
from .lock import check_lock_paths, lock_path_for, write_lock
from .plan import DTYPE_BYTES
from .plugins import default_registry, loaded_registry
from .report import render_compare
from .resolve import resolve
from .scaffold import scaffold
from .shares import render_share_table, share_rows
from .spec import TASK_PRESETS, VisionLoRASpec, apply_sets, load_spec, spec_from_data, spec_json_schema
from .validate import FORMATS, check_files, check_required_plugins, exit_code, expand, render
from .versions import core_version

EXIT_CODES = f"""exit codes:
  {errors.EXIT_OK}  success
  {errors.EXIT_INTERNAL}  internal error (a bug: please report it)
  {errors.EXIT_USAGE}  usage error (bad arguments, no model given)
  {errors.EXIT_SPEC}  invalid spec (unreadable, malformed, or fails the schema)
  {errors.EXIT_RESOLUTION}  resolution failure (spec and model do not fit together)
  {errors.EXIT_PLUGIN}  plugin failure (failed to load, invalid, conflicting, or --require-plugins unmet)
  {errors.EXIT_LOCK}  lock mismatch (the plan differs from its lock file)
  {errors.EXIT_ADAPTER}  adapter files invalid (no adapter, damaged weights, a config that disagrees with them)
  {errors.EXIT_ADAPTER_MISFIT}  the adapter would not load completely into the model (vlora adapter check)
"""

SET_HELP = ("override a spec field: KEY=VALUE, dotted for nested fields, the value read as YAML (--set r=16 is the "
            "integer 16; --set language.layers='[0, 1]'); repeatable")

NO_CACHE_HELP = ("build the model's module tree anew, neither reading nor writing the cache (the same as "
                 f"{NO_CACHE_ENV}=1; `vlora cache info` shows the cache)")

MODEL_HELP = (
    "model to resolve against: a bundled reference name (see `vlora models`), a directory holding config.json, "
    "a config.json path, or a Hub id (config only; needs the Hub or its cache). Default: the spec's `model:`"
)


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


class _Version(argparse.Action):
    """``vlora --version``: the core's version, then each installed plugin's (and the ones that failed)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None):
        registry = default_registry()
        lines = [f"vlora {core_version()}"]
        lines += [f"  {p.distribution} {p.version} (plugin {p.name})" for p in registry.plugins]
        lines += [f"  {f.distribution or f.name}: failed to load ({f.reason})" for f in registry.failures]
        print("\n".join(lines))
        parser.exit()


def _resolution_options(parser: argparse.ArgumentParser) -> None:
    """--model, --set and --no-cache: the options of every command that resolves a spec."""
    parser.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP)
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help=SET_HELP)
    parser.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vlora",
        description="Exact, validated, explainable LoRA targets for vision-language models.",
        epilog=EXIT_CODES + "\nexample (`vlora models` lists the bundled model names):\n"
        "  vlora plan my_spec.yaml --model Qwen2.5-VL-7B-Instruct",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="print vlora's version and the installed plugins with theirs, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "plan",
        help="show what a spec trains on a model",
        description="Resolve SPEC against a model and print the plan: per component x role, the modules, "
        "layers, LoRA parameters, their share of all LoRA parameters and of the component's own parameters; "
        "then totals and a memory estimate. With --compare or --compare-tasks, several plans for one model "
        "side by side.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", metavar="SPEC", nargs="?",
                   help="spec file (.yaml, .yml, .json or .toml); without one, the defaults (every tower, attention "
                   "and MLP, r=16) on --model")
    _resolution_options(p)
    p.add_argument("--modules", action="store_true", help="also list every target and fully trained module by name")
    p.add_argument("--explain", metavar="NAME",
                   help="why each module named NAME (a full name, or a full-name regular expression) is or is not "
                   "a target: its component and role, and the toggle, layer selection, exclusion or unused-layer "
                   "rule that decided it")
    p.add_argument("--json", action="store_true", help="print the full plan as JSON (sorted, deterministic)")
    p.add_argument("--svg", metavar="FILE", help="also draw the plan as an SVG picture: per component a grid of "
                   "layers x roles, adapted cells coloured by rank, unused layers and modules trained in full marked "
                   "(with --compare or --compare-tasks, the plans side by side)")
    p.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page: the picture and the table")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="fp32",
                   help="dtype of the trainable weights for the memory estimate (default fp32, PEFT's default "
                   "for adapters)")
    p.add_argument("--compare", metavar="SPEC", nargs="+", default=[],
                   help="more specs to lay side by side with SPEC (all for one model)")
    p.add_argument("--compare-tasks", metavar="TASK", nargs="*", default=None,
                   help="lay task presets side by side (all four: ocr, captioning, vqa, domain_adaptation, or the "
                   "ones named), each applied to SPEC (or to the defaults) with its tower toggles")
    p.add_argument("--infer", action="store_true",
                   help="read the architecture from the model's structure even where a plugin claims it (to compare "
                   "the two); a model no plugin claims is always read that way, and the plan says so")

    v = sub.add_parser(
        "validate",
        help="check spec files (schema, resolution, locks, required plugins)",
        description="Check each SPEC (files, directories of specs, or glob patterns): the schema always; "
        "resolution too when --model is given or the spec has `model:`; and the plan against its lock file "
        "(--lock, or NAME.lock.json beside NAME.yaml when it exists). One line per problem, and a "
        "non-zero exit on any.",
        epilog=EXIT_CODES + "  several kinds of problem: the highest code among them\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("specs", metavar="SPEC", nargs="+", help="spec files, directories of specs, or globs")
    _resolution_options(v)
    v.add_argument("--lock", metavar="FILE", help="lock file to check the plan against (one SPEC only); default: "
                   "NAME.lock.json beside each spec, when it exists")
    v.add_argument("--require-lock", action="store_true", help="a spec without a lock file is a problem")
    v.add_argument("--require-plugins", metavar="REQ", nargs="+", default=[],
                   help="plugin distributions that must be installed and load, e.g. 'vlora-llava>=0.2'")
    v.add_argument("--format", choices=FORMATS, default="text",
                   help="text (file:line: message), json, or github (::error annotations for GitHub Actions)")
    v.add_argument("--quiet", "-q", action="store_true", help="text format: print problems and warnings only")

    lk = sub.add_parser(
        "lock",
        help="write the resolved plan of a spec to a lock file",
        description="Resolve each SPEC and write its plan to a lock file (default: NAME.lock.json beside "
        "NAME.yaml): each target's logical identity (component, role, stack, layer, leaf) and module name, "
        "ranks, alphas, counts, a hash of the spec, and the versions of vlora, the plugin, transformers and "
        "peft. `vlora validate` then fails when the plan changes.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lk.add_argument("specs", metavar="SPEC", nargs="+", help="spec files, directories of specs, or globs")
    _resolution_options(lk)
    lk.add_argument("--output", "-o", metavar="FILE", help="lock file to write (one SPEC only)")

    pl = sub.add_parser("plugins", help="list installed architecture plugins",
                        description="List installed plugins: distribution, version, architectures, the model_types "
                        "(and config conditions) each claims, plugins slow to load; and any plugin that failed to "
                        "load or conflicts (exit 5 then).")
    pl.add_argument("--json", action="store_true", help="print as JSON")

    sh = sub.add_parser("shares", help="language-only and vision-only shares of full LoRA, per bundled model",
                        description="For every bundled reference config: the LoRA parameters of full LoRA "
                        "(attention + MLP in vision and language), and the shares of it that language-only and "
                        "vision-only LoRA train, as a Markdown table (the one in the documentation page "
                        f"{DOC_PAGES['memory'][1]!r}).")
    sh.add_argument("--r", type=_positive_int, default=16,
                    help="LoRA rank (the shares do not depend on it; default 16)")

    sc = sub.add_parser("scaffold", help="write a plugin distribution for a model family from its inferred layout",
                        description="Infer the architecture of REF from its structure and write a complete plugin "
                        "distribution for its family into DIR: pyproject with the vlora.plugins entry point, the "
                        "package with its ArchitectureSpec, REF's config.json bundled, and tests that use the "
                        "conformance kit. `pip install DIR && pytest DIR` passes as written; then review and adjust.",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sc.add_argument("ref", metavar="REF", help=MODEL_HELP.split(". Default")[0])
    sc.add_argument("--output", "-o", metavar="DIR", required=True, help="directory to write (new or empty)")
    sc.add_argument("--name", help="name of the bundled reference (default: from REF)")
    sc.add_argument("--hub-id", help="Hub id of the bundled reference (default: REF when it is one)")

    sub.add_parser("coverage", help="what vlora makes of every model type in transformers' image-text-to-text registry",
                   description="For every model type of transformers' image-text-to-text registry, built from its "
                   "default config on the meta device: resolved by a plugin, inferred from the model's structure "
                   "(with the layers found and the config value they were checked against), or refused (why). A "
                   "Markdown table (the one in the documentation page "
                   f"{DOC_PAGES['coverage'][1]!r}).")

    ca = sub.add_parser("cache", help="the module-tree cache: where it is, what it holds; clear it",
                        description="plan, validate and lock keep each model's module tree (names, types, shapes, "
                        "parameters, config; for a model no plugin claims, the inferred architecture) in a cache "
                        "folder, keyed by the config's content and the versions of transformers, torch, vlora and "
                        "the plugin that claims the model, so a warm run imports neither torch nor transformers. "
                        f"The folder: {CACHE_ENV} or the platform's user cache folder; {NO_CACHE_ENV}=1 or "
                        "--no-cache turns it off. A damaged or foreign entry is rebuilt, never trusted.")
    cache_sub = ca.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    ci = cache_sub.add_parser("info", help="the cache folder and its entries",
                              description="Print the cache folder, whether the cache is on, and each entry: the "
                              "model it was built from, its model_type, size, when it was written, and the versions "
                              "it is keyed on.")
    ci.add_argument("--json", action="store_true", help="print as JSON")
    cache_sub.add_parser("clear", help="remove every entry", description="Remove every entry of the cache folder "
                         "(the next run of each model builds its tree again).")

    sub.add_parser("schema", help="print the JSON Schema of spec files (for editors and CI)",
                   description="Print the JSON Schema of the spec file format.")

    ad = sub.add_parser("adapter", help="adapters already on disk (PEFT's format): inspect, check, migrate, spec",
                        description="Adapters already on disk, whatever trained them (PEFT, Unsloth, LLaMA-Factory "
                        "and ms-swift all save PEFT's format).", epilog=EXIT_CODES,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    adapter_sub = ad.add_subparsers(dest="adapter_command", metavar="COMMAND", required=True)
    def adapter_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """One `vlora adapter` subcommand: its parser, with the adapter folder every one of them reads."""
        command = adapter_sub.add_parser(name, epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter,
                                         **kwargs)
        command.add_argument("adapter", metavar="DIR", help="the adapter's folder (what save_pretrained wrote)")
        return command

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

    ex = sub.add_parser("export", help="the plan of a spec as another tool's config (PEFT, Unsloth, LLaMA-Factory, "
                        "ms-swift, axolotl)",
                        description="Resolve SPEC on the model and write the closest configuration for TOOL, in "
                        "its own format: peft (adapter_config.json's LoraConfig JSON), unsloth (get_peft_model "
                        "keyword arguments), llamafactory (training YAML keys), swift (swift sft arguments), "
                        "axolotl (training YAML keys). What the tool cannot express (per-component ranks, "
                        "parameter targets, ...) is named in the file's header and on stderr; the targets "
                        "themselves are exact in every format.",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("spec", metavar="SPEC", nargs="?", help="spec file; without one, the defaults on --model")
    ex.add_argument("--to", required=True, choices=list(EXPORTERS), help="the tool to write for")
    _resolution_options(ex)
    ex.add_argument("--output", "-o", metavar="FILE", help="file to write (default: standard output)")

    im = sub.add_parser("import", help="another tool's LoRA config as a vlora spec (Unsloth, LLaMA-Factory, ms-swift)",
                        description="Read FILE, a LoRA config of TOOL (unsloth: a Python file with the "
                        "get_peft_model(...) call, or its keywords as YAML/JSON; llamafactory: the training YAML; "
                        "swift: a shell script with the swift sft command, or its arguments as YAML/JSON), work "
                        "out what that tool trains on the model (a setting the file leaves out takes that tool's "
                        "default), and write the spec whose plan is exactly that. Where the tool does not do what "
                        "its flags suggest, the spec's header says so.",
                        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    im.add_argument("file", metavar="FILE", help="the tool's config")
    im.add_argument("--from", dest="tool", required=True, choices=list(IMPORTERS), help="the tool that reads FILE")
    im.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP.split(". Default")[0]
                    + ". Default: the file's model (model_name_or_path, --model)")
    im.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)
    im.add_argument("--output", "-o", metavar="SPEC", help="spec file to write (default: standard output)")

    mo = sub.add_parser("models", help="list bundled reference configs usable as --model",
                        description="List the reference configs bundled by installed plugins (config.json data of "
                        "published checkpoints, no weights). Use the name or the Hub id as --model.")
    mo.add_argument("--json", action="store_true", help="print as JSON")
    return parser


# --- commands ----------------------------------------------------------------------------------------


def _spec(args: argparse.Namespace) -> VisionLoRASpec:
    """SPEC with the --set overrides, or (no SPEC) the defaults with them."""
    if args.spec is not None:
        return load_spec(args.spec, sets=args.set)
    return spec_from_data(apply_sets({}, args.set))


def _cmd_plan(args: argparse.Namespace) -> int:
    if args.compare or args.compare_tasks is not None:
        return _compare(args)
    if args.spec is None and args.model is None:
        raise UsageError("no SPEC given, and no --model to plan the defaults on",
                         hint="vlora plan SPEC [--model REF], or vlora plan --model REF for the defaults")
    spec = _spec(args)
    if args.explain:
        registry = default_registry()
        ref = args.model or spec.model_ref()
        if ref is None:
            raise UsageError("no model to resolve against", hint="pass --model REF or set `model:` in the spec")
        tree = tree_for(ref, registry, label=args.model or spec.model)
        plan = resolve(spec, tree, infer=args.infer)
        for line in explain(plan, tree, registry, args.explain):
            print(line.render())
        return errors.EXIT_OK
    plan = resolve(spec, args.model, infer=args.infer)
    sys.stdout.write(plan.to_json() if args.json else plan.table(args.dtype))
    if args.modules and not args.json:
        sys.stdout.write(_module_list(plan))
    _drawings(args, plan)
    return errors.EXIT_OK


def _drawings(args: argparse.Namespace, plans: Any) -> None:
    """Write --svg and --html (a plan, or (label, plan) pairs side by side); say so on stderr."""
    for path, draw in ((args.svg, draw_svg), (args.html, draw_html)):
        if path:
            _write(draw(plans), path)
            print(f"vlora plan: wrote {path}", file=sys.stderr)


def _module_list(plan) -> str:
    lines = ["", "targets:"]
    lines += [f"  {t.name}  ({t.component} {t.role}, r={t.r}, alpha={t.lora_alpha:g})" for t in plan.targets]
    if plan.full_modules:
        lines.append("fully trained:")
        lines += [f"  {m.name}  ({m.component or 'outside the components'})" for m in plan.full_modules]
    return "\n".join(lines) + "\n"


def _compare(args: argparse.Namespace) -> int:
    if args.compare_tasks is not None:
        if args.compare:
            raise UsageError("use --compare or --compare-tasks, not both")
        tasks = [t for t in args.compare_tasks if t in TASK_PRESETS]
        others = [t for t in args.compare_tasks if t not in TASK_PRESETS]
        if others and args.spec is None and len(others) == 1 and not tasks:
            args.spec = others.pop()  # `vlora plan --compare-tasks SPEC`: the flag before the spec
        if others:
            raise UsageError(f"--compare-tasks: unknown task {others[0]!r}", hint=f"tasks: {', '.join(TASK_PRESETS)}")
        base = _spec(args)
        specs = [(task, base.with_task(task)) for task in tasks or TASK_PRESETS]
        ref = args.model or base.model_ref()
    else:
        paths = ([args.spec] if args.spec else []) + args.compare
        specs = [(path, load_spec(path, sets=args.set)) for path in paths]
        models = {args.model or s.model_ref() for _, s in specs}
        if len(models) != 1:
            raise UsageError(f"the specs name different models ({', '.join(sorted(map(str, models)))})",
                             hint="compare plans for one model: pass --model REF")
        (ref,) = models
    if ref is None:
        raise UsageError("no model to compare on", hint="pass --model REF or set `model:` in the spec")
    tree = tree_for(ref, default_registry())
    plans = [(label, resolve(spec, tree, infer=args.infer)) for label, spec in specs]
    if args.json:
        data = {"model": str(ref), "plans": [{"label": label, **plan.to_dict()} for label, plan in plans]}
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_compare(plans, args.dtype))
    _drawings(args, plans)
    return errors.EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    files = expand(args.specs)
    if args.lock and len(files) != 1:
        raise UsageError(f"--lock names one lock file, but {len(files)} specs were given",
                         hint="validate one spec with --lock, or keep NAME.lock.json beside each spec")
    extra = [p for p in [check_required_plugins(args.require_plugins)] if p] if args.require_plugins else []
    results = check_files(files, model=args.model, lock=args.lock, require_lock=args.require_lock, sets=args.set)
    sys.stdout.write(render(results, args.format, quiet=args.quiet, extra=extra))
    return exit_code(results, extra)


def _cmd_lock(args: argparse.Namespace) -> int:
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


def _cmd_export(args: argparse.Namespace) -> int:
    if args.spec is None and args.model is None:
        raise UsageError("no SPEC given, and no --model to export the defaults for",
                         hint="vlora export SPEC --to TOOL [--model REF]")
    spec = _spec(args)
    ref = args.model or spec.model_ref()
    if ref is None:
        raise UsageError("no model to resolve against", hint="pass --model REF or set `model:` in the spec")
    registry = default_registry()
    tree = tree_for(ref, registry, label=args.model or spec.model)
    plan = resolve(spec, tree)
    result = export_plan(plan, args.to, tree)
    _write(result.text, args.output)
    if args.output:
        print(f"wrote {args.output}: {args.to} config for {len(plan.targets)} targets on {plan.model}")
    for line in result.lost:
        print(f"vlora export: lost: {line}", file=sys.stderr)
    return errors.EXIT_OK


def _write(text: str, output: str | None) -> None:
    if not output:
        sys.stdout.write(text)
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}", hint="check the path") from None


def _cmd_import(args: argparse.Namespace) -> int:
    imported = import_config(args.file, args.tool, args.model)
    _write(imported.to_yaml(), args.output)
    if args.output:
        print(f"wrote {args.output}: {len(imported.plan.targets)} targets, {imported.plan.lora_params:,} LoRA "
              f"parameters on {imported.model}")
        for line in imported.differences:
            print(f"note: {line}")
    return errors.EXIT_OK


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry = default_registry()
    conflicts = registry.conflicts()
    if args.json:
        data = {
            "plugins": [
                {
                    "name": p.name,
                    "distribution": p.distribution,
                    "version": p.version,
                    "load_seconds": round(p.load_seconds, 4),
                    "architectures": [
                        {"name": a.name, "title": a.display_name, "model_types": list(a.model_types),
                         "when": dict(a.when)}
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
            print("no plugins installed (install the one for your model family, e.g. `pip install vlora-qwen2-vl`)")
        archs = [a for p in registry.plugins for a in p.architectures]
        name_w = max([14, *(len(a.name) for a in archs)])  # columns widen for long names, never overflow
        title_w = max([18, *(len(a.display_name) for a in archs)])
        slow = registry.slow_plugins()
        for p in registry.plugins:
            took = f"; slow: {p.load_seconds:.1f} s to load, which every command pays" if p in slow else ""
            print(f"{p.distribution} {p.version} (entry point {p.name}{took})")
            for a in p.architectures:
                print(f"  {a.name:<{name_w}} {a.display_name:<{title_w}} model_types: {a.describe_claim()}")
        for name in registry.disabled:
            print(f"disabled: {name}")
        for mt, owners in sorted(conflicts.items()):
            print(f"conflict: model_type {mt} is claimed by {' and '.join(p.distribution for p, _ in owners)}")
        for f in registry.failures:
            print(f"failed: {f.name} ({f.distribution}): {f.reason}")
    return errors.EXIT_PLUGIN if registry.failures or conflicts else errors.EXIT_OK


def _cmd_shares(args: argparse.Namespace) -> int:
    sys.stdout.write(render_share_table(share_rows(default_registry(), r=args.r)))
    return errors.EXIT_OK


def _cmd_scaffold(args: argparse.Namespace) -> int:
    files = scaffold(args.ref, args.output, default_registry(), name=args.name, hub_id=args.hub_id)
    for path in files:
        print(f"wrote {path}")
    print(f"next: pip install {args.output} && pytest {args.output}")
    return errors.EXIT_OK


def _cmd_coverage(args: argparse.Namespace) -> int:
    sys.stdout.write(render_coverage(coverage_rows(default_registry())))
    return errors.EXIT_OK


def _cmd_cache(args: argparse.Namespace) -> int:
    folder = cache_dir()
    if args.cache_command == "clear":
        removed, size = clear_cache(folder)
        print(f"removed {removed} entr{'y' if removed == 1 else 'ies'} ({size / 1024:,.1f} KiB) from {folder}")
        return errors.EXIT_OK
    entries = cache_entries(folder)
    if args.json:
        print(json.dumps({"folder": str(folder), "enabled": cache_enabled(), "bytes": sum(e.bytes for e in entries),
                          "entries": [vars(e) for e in entries]}, indent=2, sort_keys=True))
        return errors.EXIT_OK
    state = "on" if cache_enabled() else f"off ({NO_CACHE_ENV} is set)"
    print(f"cache folder: {folder} ({state}; {CACHE_ENV} moves it)")
    total = sum(e.bytes for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {total / 1024:,.1f} KiB")
    for e in entries:
        if e.model is None:
            print(f"  {e.file}: damaged or foreign (rebuilt on next use; `vlora cache clear` removes it)")
            continue
        versions = ", ".join(f"{k} {v}" for k, v in sorted(e.versions.items()))
        print(f"  {e.model} ({e.model_type}) {e.bytes / 1024:,.1f} KiB, {e.created}: {versions}")
    return errors.EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_json_schema(), indent=2, sort_keys=True))
    return errors.EXIT_OK


def _cmd_adapter(args: argparse.Namespace) -> int:
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
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output}: {len(found.plan.targets)} targets, "
                  f"{len(found.plan.full_modules)} modules trained in full")
        else:
            sys.stdout.write(text)
        for name in found.unexpressed:
            print(f"vlora adapter spec: note: {name} lies outside every component; no spec can target it",
                  file=sys.stderr)
        return errors.EXIT_OK
    if args.adapter_command == "migrate":
        tree = tree_for(args.model, registry, label=args.model)
        written = migrate_adapter(adapter, tree, args.output)
        result = check_adapter(read_adapter(written, registry), tree)
        print(f"wrote {written}: {len(adapter.modules)} modules for the layout of {args.model}"
              + ("" if result.ok else "; but it still would not load completely:"))
        if not result.ok:
            sys.stdout.write(result.report())
        return errors.EXIT_OK if result.ok else errors.EXIT_ADAPTER_MISFIT
    if args.adapter_command == "check":
        result = check_adapter(adapter, tree_for(args.model, registry, label=args.model))
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, sort_keys=True))
        else:
            sys.stdout.write(result.report())
        return errors.EXIT_OK if result.ok else errors.EXIT_ADAPTER_MISFIT
    if args.json:
        print(json.dumps(adapter.to_dict(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(adapter.table())
    return errors.EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
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
    "lock": _cmd_lock,
    "plugins": _cmd_plugins,
    "schema": _cmd_schema,
    "shares": _cmd_shares,
    "coverage": _cmd_coverage,
    "scaffold": _cmd_scaffold,
    "models": _cmd_models,
    "adapter": _cmd_adapter,
    "cache": _cmd_cache,
    "export": _cmd_export,
    "import": _cmd_import,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "no_cache", False):
        os.environ[NO_CACHE_ENV] = "1"  # for this process (and what it starts): nothing is read or written
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
    finally:
        _note_slow_plugins(args.command)


def _note_slow_plugins(command: str) -> None:
    """Name the plugins that made this command slow to start (each command loads every plugin)."""
    registry = loaded_registry()
    for p in registry.slow_plugins() if registry is not None and command != "plugins" else []:
        print(f"vlora: note: plugin {p.distribution} took {p.load_seconds:.1f} s to load, and every vlora command "
              f"pays that; `vlora plugins` shows each plugin's load time, VLORA_DISABLE_PLUGINS={p.name} skips it",
              file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
