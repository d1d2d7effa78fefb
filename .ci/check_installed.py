"""Run by .ci/run in a fresh environment that has vlora and its built-in plugins installed from their built
wheels (no checkout on the path; run from an empty folder): what a user who ran `pip install` gets."""

from __future__ import annotations

import contextlib
import io
import json
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
    here = Path.cwd()
    source = Path(vlora_core.__file__).resolve()
    if "site-packages" not in source.parts:
        raise SystemExit(f"vlora_core comes from {source}, not from an installed wheel")
    print(f"vlora_core from {source.parent} (run in {here})")
    print(run("--version"), end="")
    models = json.loads(run("models", "--json"))
    names = [m["name"] for m in models]
    for name in names:  # every bundled reference config is in its wheel and plans
        run("plan", "--model", name)
    print(f"vlora plan on all {len(names)} bundled references: ok")
    schema = json.loads(run("schema"))
    assert schema["title"] == "vlora spec", schema.get("title")
    registry = default_registry()
    if registry.failures:
        raise SystemExit(f"plugins failed to load: {registry.failures}")
    checked = []
    for info in registry.plugins:  # the conformance kit on every installed plugin, at full size, on meta
        refs = [r for a in info.architectures for r in a.references]
        if refs:
            model = reference_model(refs[0].name, registry)
        else:
            model = build_meta_model(AutoConfig.for_model(info.architectures[0].model_types[0]))
        check_plugin(info.distribution, model, registry=registry)
        checked.append(info.distribution)
    print(f"conformance kit on {len(checked)} installed plugins: ok ({', '.join(checked)})")


if __name__ == "__main__":
    main_check()
    print("ok: the installed wheels carry what vlora and its plugins need")
