"""`vlora lock` and `vlora validate` as CI uses them: locks, diffs, many files, formats, exit codes.

Uses the installed built-in plugins and their bundled reference configs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from vlora_core.cli import main
from vlora_core.spec import spec_json_schema

ROOT = Path(__file__).resolve().parents[2]
SPEC = "model: llava-1.5-7b-hf\ntask: vqa\nr: 8\nlanguage:\n  layers: {last: 8}\n"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def locked(tmp_path, capsys) -> Path:
    spec = tmp_path / "vqa.yaml"
    spec.write_text(SPEC)
    code, out, _ = run(capsys, "lock", spec)
    assert code == 0 and f"wrote {tmp_path / 'vqa.lock.json'}" in out
    return spec


def _edit_lock(spec: Path, edit) -> None:
    lock_file = spec.with_name("vqa.lock.json")
    data = json.loads(lock_file.read_text())
    edit(data)
    lock_file.write_text(json.dumps(data))


def test_lock_records_logical_identity_versions_and_spec_hash(locked):
    data = json.loads(locked.with_name("vqa.lock.json").read_text())
    assert data["vlora_lock"] == 1 and data["spec_sha256"].startswith("sha256:")
    assert set(data["versions"]) == {"vlora", "plugin", "transformers", "peft"}
    target = data["targets"][0]
    assert set(target) == {"component", "role", "stack", "layer", "leaf", "name", "r", "lora_alpha", "lora_params"}
    assert {t["layer"] for t in data["targets"]} == set(range(24, 32))
    assert data["totals"]["lora_params"] == sum(t["lora_params"] for t in data["targets"])


def test_unchanged_plan_passes(locked, capsys):
    code, out, _ = run(capsys, "validate", locked)
    assert code == 0 and "matches" in out and "vqa.lock.json" in out


def test_another_model_adds_and_removes_targets(locked, capsys):
    code, out, _ = run(capsys, "validate", locked, "--model", "llava-1.5-13b-hf")
    assert code == 6
    lines = out.splitlines()
    assert lines[0].startswith(f"{locked}: the plan differs from {locked.with_name('vqa.lock.json')}")
    assert "    language:" in lines
    assert any(re.search(r"\+ attention layers 32-39 \(32 modules: ", line) for line in lines)
    assert any(re.search(r"- mlp layers 24-31 \(24 modules: mlp.down_proj", line) for line in lines)


def test_rank_change_is_reported(locked, capsys):
    def rerank(data):
        for t in data["targets"]:
            if t["role"] == "mlp":
                t["r"], t["lora_params"] = 4, t["lora_params"] // 2

    _edit_lock(locked, rerank)
    code, out, _ = run(capsys, "validate", locked)
    assert code == 6
    assert re.search(r"~ mlp layers 24-31 \(24 modules: .*\): r 4 -> 8, lora_params \d+ -> \d+", out)
    assert "attention" not in out


def test_spec_edit_without_relock_fails(locked, capsys):
    locked.write_text(SPEC + "lora_dropout: 0.1\n")
    code, out, _ = run(capsys, "validate", locked)
    assert code == 6 and "the spec changed since the lock was written" in out
    assert run(capsys, "lock", locked)[0] == 0
    assert run(capsys, "validate", locked)[0] == 0


def test_renamed_modules_and_new_versions_pass_with_one_line(locked, capsys):
    """A lock written under transformers 4.46-4.51 names the language layers language_model.model.layers.N."""
    def old_layout(data):
        for t in data["targets"]:
            t["name"] = t["name"].replace("model.language_model.", "language_model.model.")
        data["versions"]["transformers"] = "4.51.3"

    _edit_lock(locked, old_layout)
    code, out, _ = run(capsys, "validate", locked)
    assert code == 0
    notes = [line for line in out.splitlines() if "same plan as the lock" in line]
    assert len(notes) == 1
    assert "transformers 4.51.3 -> " in notes[0] and "56 module names moved" in notes[0]


def test_many_specs_globs_directories_and_required_locks(tmp_path, capsys):
    for name, layers in (("a", "[0, 1]"), ("b", "{last: 2}")):
        (tmp_path / f"{name}.yaml").write_text(f"model: paligemma-3b-pt-224\nlanguage:\n  layers: {layers}\n")
    (tmp_path / "c.toml").write_text('task = "vqa"\n')  # schema only: no model
    assert run(capsys, "lock", tmp_path / "a.yaml", tmp_path / "b.yaml")[0] == 0
    code, out, _ = run(capsys, "validate", tmp_path)
    assert code == 0
    assert out.count("matches") == 2 and "c.toml: ok (schema only" in out
    code, out, _ = run(capsys, "validate", f"{tmp_path}/*.yaml", "-q")
    assert code == 0 and out == ""
    (tmp_path / "d.yaml").write_text("model: paligemma-3b-pt-224\n")
    code, out, _ = run(capsys, "validate", tmp_path, "--require-lock")
    assert code == 6 and "d.yaml: no lock file" in out and "c.toml" in out
    code, _, err = run(capsys, "validate", tmp_path / "a.yaml", tmp_path / "b.yaml", "--lock", tmp_path / "a.lock.json")
    assert code == 2 and "--lock names one lock file" in err
    code, _, err = run(capsys, "validate", tmp_path / "nothing*.yaml")
    assert code == 3 and "no such spec file" in err  # as `vlora plan` on a missing spec


BAD = {  # name: (text, exit code, line)
    "schema.yaml": ("model: llava-1.5-7b-hf\nr: 0\n", 3, 2),
    "resolution.yaml": ("model: llava-1.5-7b-hf\nvision:\n  layers: [30]\n", 4, 3),
}


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_formats_and_exit_codes(tmp_path, capsys, fmt):
    for name, (text, _, _) in BAD.items():
        (tmp_path / name).write_text(text)
    code, out, _ = run(capsys, "validate", tmp_path, "--format", fmt, "--require-plugins", "llava>=99")
    assert code == 5  # the highest of 3, 4 and 5
    if fmt == "json":
        data = json.loads(out)
        assert data["exit_code"] == 5 and data["ok"] is False
        assert data["problems"][0]["exit_code"] == 5 and "expected: llava>=99" in data["problems"][0]["details"]
        by_file = {Path(f["file"]).name: f for f in data["files"]}
        for name, (_, exit_code, line) in BAD.items():
            (problem,) = by_file[name]["problems"]
            assert (problem["exit_code"], problem["line"]) == (exit_code, line)
    elif fmt == "github":
        lines = out.splitlines()
        assert lines[0].startswith("::error file=plugins::1 of 1 required plugins not satisfied")
        for name, (_, _, line) in BAD.items():
            assert any(x.startswith(f"::error file={tmp_path / name},line={line}::") for x in lines)
    else:
        assert f"{tmp_path / 'schema.yaml'}:2: r: Input should be greater than or equal to 1" in out
        assert f"{tmp_path / 'resolution.yaml'}:3: vision.layers: layer 30 does not exist" in out
        assert "missing or mismatched: llava>=99: installed 0.1.0" in out


def test_each_exit_code_alone(tmp_path, capsys, locked):
    for name, (text, exit_code, _) in BAD.items():
        (tmp_path / name).write_text(text)
        assert run(capsys, "validate", tmp_path / name)[0] == exit_code
    assert run(capsys, "validate", locked, "--model", "llava-1.5-13b-hf")[0] == 6
    assert run(capsys, "validate", locked, "--require-plugins", "llava", "gemma3", "vlora-core>=0.1")[0] == 0
    assert run(capsys, "validate", locked, "--require-plugins", "not a requirement!")[0] == 2


def test_every_example_spec_fits_the_exported_schema():
    validator = jsonschema.Draft202012Validator(spec_json_schema())
    specs = [p for p in (ROOT / "examples").glob("*")
             if p.suffix in (".yaml", ".json", ".toml") and not p.name.endswith(".lock.json")]
    assert len(specs) >= 4
    for path in specs:
        text = path.read_text()
        if path.suffix == ".yaml":
            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
        errors = sorted(e.message for e in validator.iter_errors(data))
        assert errors == [], f"{path.name}: {errors}"
    assert not validator.is_valid(yaml.safe_load((ROOT / "examples/broken/typo.yaml").read_text()))


def test_committed_locks_validate_under_this_transformers(capsys):
    """The example locks were written under one transformers version (see their "versions"); under another
    one (CI runs this in a second environment with transformers 4.57) they must still pass, and say what
    moved."""
    locks = sorted((ROOT / "examples").glob("*.lock.json"))
    assert len(locks) >= 5
    code, out, _ = run(capsys, "validate", ROOT / "examples", "--require-lock")
    assert code == 0, out
    import transformers

    for lock in locks:
        locked_version = json.loads(lock.read_text())["versions"]["transformers"]
        spec = lock.name.removesuffix(".lock.json")
        notes = [line for line in out.splitlines() if f"/{spec}." in line and "same plan as the lock" in line]
        if locked_version == transformers.__version__:
            assert not any("transformers" in n for n in notes)
        else:
            assert len(notes) == 1 and f"transformers {locked_version} -> {transformers.__version__}" in notes[0]
    from vlora_core.testing import current_vision_tower_layout, reference_model

    here = current_vision_tower_layout(reference_model("paligemma-3b-pt-224"))
    locked_names = json.loads((ROOT / "examples/paligemma_captioning.lock.json").read_text())["targets"]
    locked_layout = "4.52" if any(".vision_model." in t["name"] for t in locked_names) else "5.6"
    vision_tower_renamed = here != locked_layout
    paligemma = [line for line in out.splitlines() if "paligemma_captioning" in line and "same plan" in line]
    assert ("module names moved" in " ".join(paligemma)) == vision_tower_renamed


def test_plan_compare_and_compare_tasks(tmp_path, capsys):
    code, out, _ = run(capsys, "plan", "--compare-tasks", "--model", "Qwen2-VL-2B-Instruct", "--json")
    assert code == 0
    data = json.loads(out)
    assert [p["label"] for p in data["plans"]] == ["ocr", "captioning", "vqa", "domain_adaptation"]
    vqa = next(p for p in data["plans"] if p["label"] == "vqa")
    assert {t["component"] for t in vqa["targets"]} == {"language"}
    spec = tmp_path / "mine.yaml"
    spec.write_text("model: Qwen2-VL-2B-Instruct\nr: 4\nfinetune_vision_layers: false\n")
    code, out, _ = run(capsys, "plan", "--compare-tasks", spec)
    assert code == 0
    ocr = next(line for line in out.splitlines() if line.startswith("vision attention"))
    assert ocr.split()[2] != "-"  # the preset's toggles apply, not the spec's own tower toggles
    code, out, _ = run(capsys, "plan", ROOT / "examples/qwen2_vl_ocr.yaml", "--compare", spec,
                       "--model", "Qwen2-VL-2B-Instruct")
    assert code == 0 and "fully trained" in out and "mine.yaml" in out
    code, _, err = run(capsys, "plan", ROOT / "examples/qwen2_vl_ocr.yaml", "--compare",
                       ROOT / "examples/llava_vqa.yaml")
    assert code == 2 and "different models" in err
