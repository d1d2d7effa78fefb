"""Run by .ci/run in a fresh environment where README's user install command ran as written (vlora-core with its
built-in plugins and the train extra, not editable; no checkout on the path; run from an empty folder): what a
user who ran that command gets."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from transformers import AutoConfig

import vlora_core
from vlora_core import default_registry
from vlora_core.cli import main
from vlora_core.modeltree import build_meta_model
from vlora_core.testing import check_plugin, reference_model


def run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # --version exits through argparse
            code = exc.code or 0
    if code != 0:
        raise SystemExit(f"vlora {' '.join(argv)} exited {code}")
    return out.getvalue()


def main_check() -> None:
    os.environ["VLORA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vlora-cache-")
    os.environ.pop("VLORA_NO_CACHE", None)
    here = Path.cwd()
    source = Path(vlora_core.__file__).resolve()
    if "site-packages" not in source.parts:
        raise SystemExit(f"vlora_core comes from {source}, not from an installed wheel")
    print(f"vlora_core from {source.parent} (run in {here})")
    for name in ("trl", "accelerate", "bitsandbytes", "datasets"):  # the train extra came with the one command
        metadata.version(name)
    try:
        other = metadata.version("vlora")
    except metadata.PackageNotFoundError:
        other = None
    if other is not None:
        raise SystemExit(f"the unrelated distribution `vlora` {other} was installed beside vlora-core")
    print(run("--version"), end="")
    models = json.loads(run("models", "--json"))
    names = [m["name"] for m in models]
    for name in names:  # every bundled reference config is in its wheel and plans
        run("plan", "--model", name)
    print(f"vlora plan on all {len(names)} bundled references: ok")
    # those plans filled the module-tree cache: a second run in a new process reads it and imports no torch
    probe = ("import sys; from vlora_core.cli import main; main(sys.argv[1:]); "
             "print('IMPORTED', sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    warm = subprocess.run([sys.executable, "-c", probe, "plan", "--model", names[0]], capture_output=True,
                          text=True, check=True).stdout
    if "IMPORTED []" not in warm or warm.split("IMPORTED")[0] != run("plan", "--model", names[0]):
        raise SystemExit(f"a warm vlora plan imported torch or printed another plan:\n{warm}")
    print(f"warm vlora plan from the cache ({os.environ['VLORA_CACHE_DIR']}): the same plan, torch not imported")
    for tool in ("peft", "unsloth", "llamafactory", "swift", "axolotl", "vllm"):  # the interop package ships
        run("export", "--model", names[0], "--to", tool)
    print("vlora export to all six tools: ok")
    for engine in ("vllm", "sglang"):  # the serving facts ship as package data
        served = json.loads(run("plan", "--model", names[0], "--serve", engine, "--json"))["serve"]
        if not served["groups"] or engine not in served["read_from"]:
            raise SystemExit(f"vlora plan --serve {engine} printed no verdicts: {served}")
    print("vlora plan --serve vllm/sglang: the serving facts ship with the package")
    for key in ("install", "spec", "cli"):  # the pages hints name come with the package
        if not run("docs", key).startswith("# "):
            raise SystemExit(f"vlora docs {key} printed no page")
    if "site-packages" not in run("docs", "spec", "--path"):
        raise SystemExit("vlora docs reads a page from outside the installed package")
    print("vlora docs: the pages ship with the package")
    schema = json.loads(run("schema"))
    assert schema["title"] == "vlora spec", schema.get("title")
    registry = default_registry()
    if registry.failures:
        raise SystemExit(f"plugins failed to load: {registry.failures}")
    checked, needs_timm = [], []
    for info in registry.plugins:  # the conformance kit on every installed plugin, at full size, on meta
        refs = [r for a in info.architectures for r in a.references]
        try:
            if refs:
                model = reference_model(refs[0].name, registry)
            else:
                model = build_meta_model(AutoConfig.for_model(info.architectures[0].model_types[0]))
        except ImportError as exc:  # a timm tower (Gemma-3n, FastVLM): CI's timm environment checks these
            if "timm" not in str(exc):
                raise
            needs_timm.append(info.name)
            continue
        check_plugin(info.name, model, registry=registry)
        checked.append(info.name)
    print(f"conformance kit on {len(checked)} installed plugins: ok ({', '.join(checked)})"
          + (f"; {', '.join(needs_timm)} need timm, checked in the timm environment" if needs_timm else ""))


if __name__ == "__main__":
    main_check()
    print("ok: the installed wheels carry what vlora and its plugins need")
