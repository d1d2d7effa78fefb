"""The `vlora` command on the bundled Qwen references: output, JSON determinism, errors and exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vlora_core import default_registry
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_table(capsys):
    code, out, err = run(capsys, "plan", str(EXAMPLES / "qwen2_vl_ocr.yaml"))
    assert code == 0, err
    assert out.startswith("Qwen2-VL-7B-Instruct · Qwen2-VL")
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines() if line.split()[:1] in (
        ["vision"], ["language"])}
    assert rows[("vision", "attention")][2:4] == ["64", "0-31"]
    assert rows[("language", "mlp")][2:4] == ["84", "0-27"]
    assert "fully trained: model.visual.merger" in out
    assert "of 8,291,375,616 model parameters" in out


def test_plan_json_is_byte_identical_and_complete(capsys):
    args = ("plan", str(EXAMPLES / "qwen2_vl_ocr.yaml"), "--model", "Qwen2-VL-2B-Instruct", "--json")
    code, first, _ = run(capsys, *args)
    code2, second, _ = run(capsys, *args)
    assert code == code2 == 0 and first == second
    data = json.loads(first)
    assert data["model"] == "Qwen2-VL-2B-Instruct"  # --model wins over the spec's model:
    assert data["plugin"]["distribution"] == "vlora-core"
    assert data["versions"]["transformers"] and data["versions"]["peft"] and data["versions"]["vlora"]
    assert data["spec"]["task"] == "ocr" and data["spec"]["vision"]["r"] == 8
    assert data["full_modules"][0]["name"] == "model.visual.merger"
    assert data["totals"]["lora_params"] == sum(t["lora_params"] for t in data["targets"])
    assert {t["module_type"] for t in data["targets"]} == {"Linear"}


@pytest.mark.parametrize("form", ["directory", "config.json", "hub id"])
def test_model_references(capsys, tmp_path, form):
    _, _, ref = default_registry().require_reference("Qwen2.5-VL-3B-Instruct")
    if form == "directory":
        shutil.copy(ref.config_path, tmp_path / "config.json")
        model = str(tmp_path)
    elif form == "config.json":
        model = str(ref.config_path)
    else:
        model = ref.hub_id
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\n")
    code, out, err = run(capsys, "plan", str(spec), "--model", model, "--json")
    assert code == 0, err
    assert json.loads(out)["totals"]["model_params"] == 3_754_622_976


def test_unreachable_hub_id_fails_fast_and_clearly(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    spec = tmp_path / "s.yaml"
    spec.write_text("model: some-org/not-cached-model\n")
    code, _out, err = run(capsys, "plan", str(spec))
    assert code == 4
    assert "some-org/not-cached-model" in err and "Traceback" not in err
    assert "bundled reference" in err


def test_no_model_is_a_usage_error(capsys, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("r: 8\n")
    code, _, err = run(capsys, "plan", str(spec))
    assert code == 2 and "set `model:` in the spec" in err


BAD = {
    "unknown.yaml": ("r: 16\nfoo: 1\n", 3, ":2: foo: unknown key 'foo'"),
    "r0.yaml": ("r: 0\n", 3, ":1: r: Input should be greater than or equal to 1"),
    "dropout.yaml": ("lora_dropout: 1.5\n", 3, ":1: lora_dropout: Input should be less than 1"),
    "off.yaml": ("finetune_vision_layers: false\nfinetune_language_layers: false\n", 4, "selects nothing"),
    "alloff.yaml": ("finetune_vision_layers: false\nfinetune_language_layers: false\n"
                    "finetune_attention_modules: false\nfinetune_mlp_modules: false\n", 4,
                    "finetune_attention_modules and finetune_mlp_modules are both false"),
    "layer99.yaml": ("vision:\n  layers: [0, 99]\n", 4, ":2: vision.layers: layer 99 does not exist: Qwen2-VL "
                     "vision has 32 layers (0-31)"),
    "regex.yaml": ("target_modules_extra:\n  - 'model\\.visual\\.(0'\n", 3,
                   ":2: target_modules_extra[0]: invalid regular expression"),
    "nomatch.yaml": ("exclude_modules: ['model\\.nothing']\n", 4, ":1: exclude_modules[0]: pattern"),
    "malformed.yaml": ("r: 16\n  lora_alpha: [\n", 3, ":2: malformed YAML"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_specs_one_message_and_exit_code(capsys, tmp_path, name):
    text, code, words = BAD[name]
    path = tmp_path / name
    path.write_text(text)
    got, out, err = run(capsys, "plan", str(path), "--model", "Qwen2-VL-7B-Instruct")
    assert got == code
    assert words in err and "Traceback" not in err
    assert out == ""
    got, out, _ = run(capsys, "validate", str(path), "--model", "Qwen2-VL-7B-Instruct")
    assert got == code
    assert out.count("\n") == 1 and out.startswith(str(path)) and words in out


def test_validate_many_files(capsys, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("task: vqa\n")
    schema_only = tmp_path / "schema_only.yaml"
    schema_only.write_text("r: 8\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("r: 8\nvision:\n  layers: [40]\n")
    code, out, _ = run(capsys, "validate", str(good), str(bad), "--model", "Qwen2-VL-2B-Instruct")
    assert code == 4
    lines = out.splitlines()
    assert lines[0].startswith(f"{good}: ok (") and lines[1].startswith(f"{bad}:3: vision.layers: layer 40")
    code, out, _ = run(capsys, "validate", str(schema_only))
    assert code == 0 and "schema only" in out
    code, out, _ = run(capsys, "validate", "-q", str(schema_only), str(good))
    assert code == 0 and out == ""


def test_plugins_models_schema(capsys):
    code, out, _ = run(capsys, "plugins")
    assert code == 0 and "vlora-core 0.1.0 (entry point qwen2_vl)" in out and "qwen2_5_vl" in out
    code, out, _ = run(capsys, "plugins", "--json")
    data = json.loads(out)
    qwen = next(p for p in data["plugins"] if p["name"] == "qwen2_vl" and p["distribution"] == "vlora-core")
    assert {a["name"] for a in qwen["architectures"]} == {"qwen2_vl", "qwen2_5_vl"}
    code, out, _ = run(capsys, "models")
    assert code == 0 and all(n in out for n in ("Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct"))
    code, out, _ = run(capsys, "schema")
    assert code == 0 and json.loads(out)["properties"]["finetune_projector"]["enum"] == ["frozen", "lora", "full"]


def test_console_script_never_shows_a_traceback(tmp_path):
    exe = shutil.which("vlora") or str(Path(sys.executable).parent / "vlora")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vision:\n  layers: [99]\n")
    proc = subprocess.run([exe, "plan", str(bad), "--model", "Qwen2-VL-7B-Instruct"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 4
    assert proc.stderr.startswith(f"vlora plan: error: {bad}:2: vision.layers: layer 99 does not exist")
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([exe, "plan"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "vlora plan: error: no SPEC given" in proc.stderr
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "exit codes:" in proc.stdout
