"""`vlora scaffold` on families no built-in plugin claims (Aria, GLM-4V): the generated distribution installs
into a fresh virtual environment and its own tests pass there as written (the conformance kit on the
bundled config, and the plugin's plan equal to the inferred one); the plan it gives equals inference's."""

from __future__ import annotations

import json
import site
import subprocess
import venv
from pathlib import Path

import pytest
from transformers import AutoConfig

from vlora_core import UsageError, default_registry, resolve
from vlora_core.cli import main
from vlora_core.scaffold import scaffold


def _default_config_dir(tmp_path: Path, model_type: str) -> Path:
    ref = tmp_path / f"{model_type}-default"
    ref.mkdir()
    (ref / "config.json").write_text(json.dumps(AutoConfig.for_model(model_type).to_dict()))
    return ref


def _venv(tmp_path: Path) -> Path:
    """A new environment that sees this one's packages (torch, transformers, vlora) through a .pth file."""
    env = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    (next((env / "lib").glob("python*")) / "site-packages" / "_vlora_dev.pth").write_text(
        f"import site; site.addsitedir({site.getsitepackages()[0]!r})\n")
    return env / "bin" / "python"


@pytest.mark.parametrize("model_type", ["aria", "glm4v"])
def test_a_scaffolded_plugin_installs_and_passes_its_own_tests(tmp_path, model_type):
    ref = _default_config_dir(tmp_path, model_type)
    out = tmp_path / "plugin"
    assert main(["scaffold", str(ref), "-o", str(out)]) == 0
    package = f"vlora_{model_type}"
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "pyproject.toml", f"{package}/__init__.py", f"{package}/configs/{ref.name}.json",
        f"tests/test_{model_type}.py"}
    python = _venv(tmp_path)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(out)],
                   check=True, capture_output=True)
    run = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(out / "tests")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and "2 passed" in run.stdout, run.stdout + run.stderr
    spec = tmp_path / "spec.yaml"
    spec.write_text("finetune_projector: lora\n")
    plan = subprocess.run([python, "-m", "vlora_core.cli", "plan", str(spec), "--model", ref.name, "--json"],
                          capture_output=True, text=True, check=True).stdout
    by_plugin = json.loads(plan)
    assert by_plugin["inferred"] is False and by_plugin["plugin"]["distribution"] == f"vlora-{model_type}"
    inferred = resolve({"finetune_projector": "lora"}, str(ref)).to_dict()  # here no plugin claims it
    assert inferred["inferred"] is True
    assert by_plugin["targets"] == inferred["targets"]


def test_scaffold_refuses_a_directory_that_is_not_empty(tmp_path):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="exists and is not empty"):
        scaffold("Qwen2-VL-2B-Instruct", tmp_path, default_registry())
    assert main(["scaffold", "Qwen2-VL-2B-Instruct", "-o", str(tmp_path)]) == 2


@pytest.mark.parametrize(("version", "wanted"), [("0.1.0", "vlora-core>=0.1,<0.2"), ("1.4.2", "vlora-core>=1.4,<2"),
                                                  ("not installed", "vlora-core")])
def test_a_scaffolded_plugin_requires_vlora_core_never_the_unrelated_vlora(monkeypatch, version, wanted):
    from vlora_core import scaffold

    monkeypatch.setattr(scaffold, "core_version", lambda: version)
    assert scaffold._core_range() == wanted
