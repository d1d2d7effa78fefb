"""What every command shares: the exit-code epilog, help texts, the resolution options, the spec from SPEC and
--set, the model from --model (else the spec's ``model:``), and writing a result to -o or standard output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import errors
from ..boundary import write_text
from ..cache import NO_CACHE_ENV, tree_for
from ..errors import UsageError
from ..modeltree import ModuleTree
from ..plugins import Registry, default_registry
from ..serving.engines import RELEASES
from ..spec import VisionLoRASpec, apply_sets, load_spec, spec_from_data
from ..versions import CORE_DISTRIBUTION, NAMES, core_version

EXIT_CODES = "exit codes:\n" + "".join(f"  {code}  {meaning}\n" for code, meaning in errors.EXIT_MEANINGS.items())

SET_HELP = ("override a spec field: KEY=VALUE, dotted for nested fields, the value read as YAML (--set r=16 is the "
            "integer 16; --set language.layers='[0, 1]'); repeatable")

NO_CACHE_HELP = ("build the model's module tree anew, neither reading nor writing the cache (the same as "
                 f"{NO_CACHE_ENV}=1; `vlora cache info` shows the cache)")

MODEL_HELP = (
    "model to resolve against: a bundled reference name (see `vlora models`), a directory holding config.json, "
    "a config.json path, or a Hub id (config only; needs the Hub or its cache). Default: the spec's `model:`"
)


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


class Version(argparse.Action):
    """``vlora --version``: the core's version, then each installed plugin's (and the ones that failed)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None):
        registry = default_registry()
        lines = [f"vlora {core_version()} ({CORE_DISTRIBUTION})"]
        built_in = [p.name for p in registry.plugins if p.distribution == CORE_DISTRIBUTION]
        if built_in:
            lines.append(f"  built-in plugins: {', '.join(built_in)}")
        lines += [f"  {p.distribution} {p.version} (plugin {p.name})" for p in registry.plugins
                  if p.distribution != CORE_DISTRIBUTION]
        lines += [f"  {f.distribution or f.name}: failed to load ({f.reason})" for f in registry.failures]
        print("\n".join(lines))
        parser.exit()


def resolution_options(parser: argparse.ArgumentParser) -> None:
    """--model, --set and --no-cache: the options of every command that resolves a spec."""
    parser.add_argument("--model", "-m", metavar="REF", help=MODEL_HELP)
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], help=SET_HELP)
    parser.add_argument("--no-cache", action="store_true", help=NO_CACHE_HELP)


def serve_options(parser: argparse.ArgumentParser, what: str) -> None:
    """--serve and --engine-version: which serving engine's facts to check ``what`` against."""
    parser.add_argument("--serve", metavar="ENGINE", choices=sorted(RELEASES),
                        help=f"also say what the serving engine (vllm or sglang) would apply of {what}, per group "
                        "(language layers, vision tower, projector, experts, ...): served, served only with a flag, "
                        "loaded but dropped, served at another scale, refused, or unknown")
    parser.add_argument("--engine-version", metavar="V", help="the engine release whose facts to use (default: the "
                        "newest vlora has: " + ", ".join(f"{NAMES[e]} {r[0].versions}" for e, r in RELEASES.items())
                        + ")")


def command(sub: Any, name: str, *, more: str = "", **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser with the exit codes (and ``more`` about them) under its help."""
    return sub.add_parser(name, epilog=EXIT_CODES + more, formatter_class=argparse.RawDescriptionHelpFormatter,
                          **kwargs)


def spec_of(args: argparse.Namespace) -> VisionLoRASpec:
    """SPEC with the --set overrides, or (no SPEC) the defaults with them."""
    if args.spec is not None:
        return load_spec(args.spec, sets=args.set)
    return spec_from_data(apply_sets({}, args.set))


def spec_and_tree(args: argparse.Namespace, usage: str) -> tuple[VisionLoRASpec, ModuleTree]:
    """SPEC (or the defaults on --model) and the tree it resolves against; neither given is a usage error."""
    if args.spec is None and args.model is None:
        raise UsageError(f"no SPEC given, and no --model to {args.command} the defaults on", hint=usage)
    spec = spec_of(args)
    return spec, model_tree(args, spec)


def model_tree(args: argparse.Namespace, spec: VisionLoRASpec, registry: Registry | None = None) -> ModuleTree:
    """The module tree of the model to resolve against: --model, else the spec's ``model:`` (the one place this
    step is written)."""
    ref = args.model or spec.model_ref()
    if ref is None:
        raise UsageError("no model to resolve against", hint="pass --model REF or set `model:` in the spec")
    return tree_for(ref, registry or default_registry(), label=args.model or spec.model)


def write(text: str, output: str | None, inputs: Iterable[str | Path | None] = ()) -> None:
    """``text`` to the file ``output`` (never onto one of the command's ``inputs``; atomically, through the
    boundary), or to standard output."""
    if not output:
        sys.stdout.write(text)
        return
    write_text(output, text, inputs=[i for i in inputs if i])


__all__ = [
    "EXIT_CODES",
    "MODEL_HELP",
    "NO_CACHE_HELP",
    "SET_HELP",
    "Version",
    "command",
    "errors",
    "model_tree",
    "positive_int",
    "resolution_options",
    "serve_options",
    "spec_and_tree",
    "spec_of",
    "write",
]
