"""The commands that report what is installed and known: plugins, models, schema, shares, coverage, the cache,
the documentation pages, and scaffold (a plugin written from an inferred layout)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..cache import CACHE_ENV, NO_CACHE_ENV, cache_dir, cache_enabled, cache_entries, clear_cache
from ..coverage import coverage_rows, render_coverage
from ..diagnostics import DOC_PAGES
from ..pages import page_file, page_text
from ..plugins import default_registry
from ..scaffold import scaffold
from ..shares import render_share_table, share_rows
from ..spec import spec_json_schema
from .common import MODEL_HELP, command, errors, positive_int


def add_plugins(sub: Any) -> None:
    pl = sub.add_parser("plugins", help="list installed architecture plugins",
                        description="List installed plugins: distribution, version, architectures, the model_types "
                        "(and config conditions) each claims, plugins slow to load; and any plugin that failed to "
                        "load or conflicts (exit 5 then).")
    pl.add_argument("--json", action="store_true", help="print as JSON")


def add_shares(sub: Any) -> None:
    sh = sub.add_parser("shares", help="language-only and vision-only shares of full LoRA, per bundled model",
                        description="For every bundled reference config: the LoRA parameters of full LoRA "
                        "(attention + MLP in vision and language), and the shares of it that language-only and "
                        "vision-only LoRA train, as a Markdown table (the one in the documentation page "
                        f"{DOC_PAGES['memory'][1]!r}).")
    sh.add_argument("--r", type=positive_int, default=16,
                    help="LoRA rank (the shares do not depend on it; default 16)")


def add_scaffold(sub: Any) -> None:
    sc = command(sub, "scaffold", help="write a plugin distribution for a model family from its inferred layout",
                 description="Infer the architecture of REF from its structure and write a complete plugin "
                 "distribution for its family into DIR: pyproject with the vlora.plugins entry point, the "
                 "package with its ArchitectureSpec, REF's config.json bundled, and tests that use the "
                 "conformance kit. `pip install DIR && pytest DIR` passes as written; then review and adjust.")
    sc.add_argument("ref", metavar="REF", help=MODEL_HELP.split(". Default")[0])
    sc.add_argument("--output", "-o", metavar="DIR", required=True, help="directory to write (new or empty)")
    sc.add_argument("--name", help="name of the bundled reference (default: from REF)")
    sc.add_argument("--hub-id", help="Hub id of the bundled reference (default: REF when it is one)")


def add_cache(sub: Any) -> None:
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


def add_models(sub: Any) -> None:
    mo = sub.add_parser("models", help="list bundled reference configs usable as --model",
                        description="List the reference configs bundled by installed plugins (config.json data of "
                        "published checkpoints, no weights). Use the name or the Hub id as --model.")
    mo.add_argument("--json", action="store_true", help="print as JSON")


def add_docs(sub: Any) -> None:
    do = sub.add_parser("docs", help="print a documentation page (they come with the package)",
                        description="Print one of the documentation pages installed with vlora (Markdown), or list "
                        "them. Hints name a page as `vlora docs PAGE`.")
    do.add_argument("page", nargs="?", metavar="PAGE", help="the page: " + ", ".join(DOC_PAGES))
    do.add_argument("--path", action="store_true", help="print where the page is instead of its text")


def add_coverage(sub: Any) -> None:
    sub.add_parser("coverage", help="what vlora makes of every model type in transformers' image-text-to-text registry",
                   description="For every model type of transformers' image-text-to-text registry, built from its "
                   "default config on the meta device: resolved by a plugin, inferred from the model's structure "
                   "(with the layers found and the config value they were checked against), or refused (why). A "
                   "Markdown table (the one in the documentation page "
                   f"{DOC_PAGES['coverage'][1]!r}).")


def add_schema(sub: Any) -> None:
    sub.add_parser("schema", help="print the JSON Schema of spec files (for editors and CI)",
                   description="Print the JSON Schema of the spec file format.")


def run_plugins(args: argparse.Namespace) -> int:
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
            print("no plugins loaded (the built-in ones come with vlora-core: `pip install --force-reinstall "
                  "vlora-core`, and check VLORA_DISABLE_PLUGINS)")
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


def run_shares(args: argparse.Namespace) -> int:
    sys.stdout.write(render_share_table(share_rows(default_registry(), r=args.r)))
    return errors.EXIT_OK


def run_scaffold(args: argparse.Namespace) -> int:
    files = scaffold(args.ref, args.output, default_registry(), name=args.name, hub_id=args.hub_id)
    for path in files:
        print(f"wrote {path}")
    print(f"next: pip install {args.output} && pytest {args.output}")
    return errors.EXIT_OK


def run_coverage(args: argparse.Namespace) -> int:
    sys.stdout.write(render_coverage(coverage_rows(default_registry(), progress=True)))
    return errors.EXIT_OK


def run_cache(args: argparse.Namespace) -> int:
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


def run_schema(args: argparse.Namespace) -> int:
    print(json.dumps(spec_json_schema(), indent=2, sort_keys=True))
    return errors.EXIT_OK


def run_docs(args: argparse.Namespace) -> int:
    if args.page is None:
        width = max(map(len, DOC_PAGES))
        for key, (_, title) in DOC_PAGES.items():
            print(f"{key:<{width}}  {title}")
        print("\nvlora docs PAGE prints one (Markdown); --path says where it is")
        return errors.EXIT_OK
    print(page_file(args.page) if args.path else page_text(args.page), end="" if not args.path else "\n")
    return errors.EXIT_OK


def run_models(args: argparse.Namespace) -> int:
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


__all__ = ["add_cache", "add_coverage", "add_models", "add_plugins", "add_scaffold", "add_schema", "add_shares"]
