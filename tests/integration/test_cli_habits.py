"""Everyday command-line habits: ``--set`` on plan, validate and lock; ``vlora plan --model`` without a spec;
``--compare-tasks`` with a subset; ``--modules``; ``--explain`` naming the rule that decided each module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vlora_core import load_spec, resolve
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
OCR = ROOT / "examples" / "qwen2_vl_ocr.yaml"
VQA = ROOT / "examples" / "qwen2_5_vl_vqa.yaml"


@pytest.fixture(autouse=True)
def _at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def plan_json(capsys, *argv: str) -> dict:
    assert main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_set_overrides_fields_as_yaml_scalars(capsys):
    data = plan_json(capsys, str(OCR), "--set", "r=8", "--set", "vision.r=2", "--set", "language.layers={last: 2}",
                     "--set", "finetune_mlp_modules=false")
    spec = data["spec"]
    assert (spec["r"], spec["vision"]["r"], spec["finetune_mlp_modules"]) == (8, 2, False)
    expected = resolve(load_spec(OCR, sets=["r=8", "vision.r=2", "language.layers={last: 2}",
                                            "finetune_mlp_modules=false"]))
    assert data["totals"]["lora_params"] == expected.lora_params
    assert {t["layer"] for t in data["targets"] if t["component"] == "language"} == {26, 27}
    assert {t["r"] for t in data["targets"] if t["component"] == "vision"} == {2}


def test_set_errors_name_the_field_and_exit_as_their_kind(capsys):
    assert main(["plan", str(OCR), "--set", "r=abc"]) == 3
    err = capsys.readouterr().err
    assert "--set r=abc: r: Input should be a valid integer (got 'abc')" in err and ":5:" not in err  # no stale line
    assert main(["plan", str(OCR), "--set", "language.layers=[30]"]) == 4  # a resolution problem, named the same way
    err = capsys.readouterr().err
    assert "error: --set language.layers=[30]: language.layers: layer 30 does not exist" in err
    assert str(OCR.name) not in err  # the file holds nothing wrong
    assert main(["plan", str(OCR), "--set", "nothing"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["plan", str(OCR), "--set", "r.x=1"]) == 2
    assert "r is 16, not a group of fields" in capsys.readouterr().err


def test_set_on_validate_and_lock(tmp_path, capsys):
    assert main(["validate", str(OCR)]) == 0  # the committed lock matches
    assert main(["validate", str(OCR), "--set", "r=8"]) == 6  # a changed spec no longer does
    capsys.readouterr()
    lock = tmp_path / "ocr.lock.json"
    assert main(["lock", str(OCR), "--set", "r=8", "-o", str(lock)]) == 0
    assert {t["r"] for t in json.loads(lock.read_text())["targets"]} >= {8}


def test_plan_without_a_spec_plans_the_defaults(capsys):
    data = plan_json(capsys, "--model", "Qwen2-VL-2B-Instruct", "--set", "task=vqa")
    assert data["spec"]["task"] == "vqa" and {t["component"] for t in data["targets"]} == {"language"}
    assert main(["plan"]) == 2
    assert "no SPEC given, and no --model" in capsys.readouterr().err


def test_compare_tasks_takes_a_subset(capsys):
    assert main(["plan", "--compare-tasks", "vqa", "ocr", "--model", "Qwen2-VL-2B-Instruct", "--json"]) == 0
    assert [p["label"] for p in json.loads(capsys.readouterr().out)["plans"]] == ["vqa", "ocr"]
    assert main(["plan", "--compare-tasks", "--model", "Qwen2-VL-2B-Instruct", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["plans"]) == 4
    assert main(["plan", "--compare-tasks", "vqa", "nope", "--model", "Qwen2-VL-2B-Instruct"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err


def test_modules_lists_every_target_by_name(capsys):
    assert main(["plan", str(OCR), "--modules"]) == 0
    out = capsys.readouterr().out
    plan = resolve(load_spec(OCR))
    listed = [line.split()[0] for line in out.split("targets:\n", 1)[1].splitlines() if line.startswith("  ")]
    assert listed == [t.name for t in plan.targets] + [m.name for m in plan.full_modules]
    assert "fully trained:\n  model.visual.merger" in out


@pytest.mark.parametrize(("spec", "sets", "name", "words"), [
    (VQA, [], r"model\.language_model\.layers\.27\.mlp\.up_proj", "target: language mlp, layer 27, r=32"),
    (VQA, [], r"model\.visual\.blocks\.0\.attn\.qkv", "vision is off (finetune_vision_layers: false)"),
    (VQA, [], "lm_head", "outside every component"),
    (VQA, [], r"model\.language_model\.layers\.3\.self_attn\.q_proj", "layer 3 is not in language.layers"),
    (VQA, ["finetune_mlp_modules=false"], r"model\.language_model\.layers\.27\.mlp\.up_proj",
     "its role mlp is off (finetune_mlp_modules: false)"),
    (OCR, [], "model.visual.merger", "trained in full (finetune_projector: full)"),
    (OCR, ["exclude_modules=['model\\.visual\\.blocks\\.0\\..*']"], r"model\.visual\.blocks\.0\.attn\.qkv",
     "excluded by exclude_modules[0]"),
    (ROOT / "examples" / "llava_vqa.yaml", ["task=ocr"], r"model\.vision_tower\.encoder\.layers\.23\.mlp\.fc1",
     "vision layer 23 is never used by the model"),
    (VQA, [], r"model\.language_model\.layers\.0\.input_layernorm", "which LoRA cannot wrap"),
])
def test_explain_names_the_rule(capsys, spec, sets, name, words):
    argv = ["plan", str(spec), "--explain", name]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert words in out, out


def test_explain_names_the_component_a_part_follows(capsys, tmp_path):
    spec = tmp_path / "g4.yaml"
    spec.write_text("finetune_audio_layers: false\nfinetune_projector: lora\n")
    name = r"model\.embed_.*\.embedding_projection"
    assert main(["plan", str(spec), "--model", "gemma-4-E2B-it", "--explain", name]) == 0
    out = capsys.readouterr().out
    assert "model.embed_vision.embedding_projection: target: projector projection" in out
    assert ("model.embed_audio.embedding_projection: not a target: this part of the projector follows audio, and "
            "audio is off (finetune_audio_layers: false)") in out


def test_every_rule_resolve_records_has_its_own_sentence():
    from vlora_core.decisions import RULES, Decision
    from vlora_core.explain import _sentence

    plan = resolve(load_spec(VQA))
    fallback = "no rule of the spec selects it"
    sentences = set()
    for rule in RULES:
        if rule == "target":
            continue
        d = Decision(rule, "language", "mlp", 3, "mlp.up_proj", "vision" if rule == "follows" else "x", 0)
        sentences.add(_sentence(plan, d))
    assert fallback not in sentences and len(sentences) == len(RULES) - 1


def test_explain_of_nothing_is_a_usage_error(capsys):
    assert main(["plan", str(VQA), "--explain", "no\\.such\\.module"]) == 2
    assert "matches no module" in capsys.readouterr().err


def test_version_lists_the_installed_plugins(capsys, tmp_path, monkeypatch):
    from tinyvlm import install_plugin

    from vlora_core import default_registry

    install_plugin(tmp_path, monkeypatch, "vlora-broken-one", "vt_broken_one", "raise ImportError('no such thing')\n")
    default_registry(reload=True)
    try:
        with pytest.raises(SystemExit) as info:
            main(["--version"])
        assert info.value.code == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "vlora 0.1.0 (vlora-core)"
        built_in = next(line for line in out if line.startswith("  built-in plugins: "))
        assert {"qwen2_vl", "idefics3", "llava"} <= set(built_in.split(": ")[1].split(", "))
        assert "  vlora-vipllava 0.1.0 (plugin vipllava)" in out  # a third-party plugin: its own distribution
        assert any(line.startswith("  vlora-broken-one: failed to load") for line in out)
    finally:
        monkeypatch.undo()
        default_registry(reload=True)


def test_vlora_alone_prints_its_help(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: vlora") and "plan" in out and "docs" in out


def test_a_model_name_close_to_a_bundled_one_gets_a_did_you_mean(capsys):
    for ref in ("Qwen2-VL-7B", "someone/Qwen2-VL-7B"):
        assert main(["plan", "--model", ref]) != 0
        err = capsys.readouterr().err
        assert "did you mean Qwen2-VL-7B-Instruct?" in err and "gemma-3-27b-it" not in err  # short, not the list


def test_a_reupload_of_a_bundled_checkpoint_plans_on_its_config(capsys):
    for ref in ("unsloth/Qwen2-VL-7B-Instruct", "unsloth/Qwen2-VL-7B-Instruct-bnb-4bit",
                "unsloth/Qwen2-VL-7B-Instruct-unsloth-bnb-4bit"):
        assert main(["plan", "--model", ref, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["totals"]["targets"] == 324  # the bundled Qwen2-VL-7B plan


def test_the_documentation_pages_come_with_the_package(capsys):
    assert main(["docs"]) == 0
    assert "spec             Spec reference" in capsys.readouterr().out
    assert main(["docs", "spec"]) == 0
    assert capsys.readouterr().out == (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    assert main(["docs", "nowhere"]) == 2
    assert "no documentation page 'nowhere'" in capsys.readouterr().err


def test_explain_takes_a_leaf_name_and_says_it_in_groups(capsys):
    llava = ROOT / "examples" / "llava_vqa.yaml"  # language attention + MLP in the last 8 of 32 layers
    assert main(["plan", str(llava), "--explain", "o_proj"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "'o_proj': 32 modules"
    assert out[1].startswith("  24 modules, layers 0-23 (") and out[1].endswith(
        "not a target: these layers are not in language.layers ({'last': 8})")
    assert out[2].startswith("  8 modules, layers 24-31 (") and ": target: language attention" in out[2]
    assert main(["plan", str(llava), "--explain", "vision_tower.encoder.layers.3.self_attn.q_proj"]) == 0
    assert capsys.readouterr().out.count("\n") == 1  # one module: said on its own


@pytest.mark.parametrize(("extra", "words"), [({}, "upgrade it"), ({"auto_map": {"AutoConfig": "m.Config"}},
                                                                   "remote code")])
def test_an_unknown_model_type_is_one_short_message(tmp_path, capsys, extra, words):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "my_own_vlm", **extra}))
    assert main(["plan", "--model", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    assert "does not know model_type 'my_own_vlm'" in err and words in err
    assert len(err) < 600 and "gpt-sw3" not in err  # not transformers' list of every model type


def test_the_plan_table_shows_each_rows_rank_and_alpha(capsys):
    assert main(["plan", str(OCR)]) == 0  # r=16 for the spec, vision: {r: 8, lora_alpha: 8}
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("component"))
    assert lines[head].split()[:6] == ["component", "role", "modules", "layers", "r", "alpha"]
    rows = {(c[0], c[1]): (c[4], c[5]) for c in (line.split() for line in lines[head + 2:head + 6])}
    assert rows[("vision", "attention")] == ("8", "8") and rows[("language", "mlp")] == ("16", "16")


def test_write_saves_what_set_built_keeping_the_files_comments_and_order(tmp_path, capsys):
    spec = tmp_path / "q.yaml"
    spec.write_text("# my OCR run\nmodel: Qwen2-VL-7B-Instruct\ntask: ocr  # the preset\nr: 16\nvision:\n  r: 8\n")
    assert main(["plan", str(spec), "--set", "r=32", "--set", "language.layers={last: 4}", "--set", "lora_alpha=16",
                 "--write", str(spec)]) == 0
    assert f"wrote {spec}" in capsys.readouterr().err
    text = spec.read_text()
    assert text.startswith("# my OCR run\nmodel: Qwen2-VL-7B-Instruct\ntask: ocr  # the preset\nr: 32\n")
    assert "lora_alpha: 16\n" in text and "16.0" not in text
    again = load_spec(spec)
    assert (again.r, again.vision.r, again.language.layers.last) == (32, 8, 4)
    assert resolve(again).targets == resolve(load_spec(spec)).targets


def test_write_makes_a_new_spec_from_the_values_and_writes_nothing_that_does_not_plan(tmp_path, capsys):
    out = tmp_path / "new.json"
    assert main(["plan", "--model", "llava-1.5-7b-hf", "--set", "task=vqa", "--write", str(out)]) == 0
    assert json.loads(out.read_text()) == {"model": "llava-1.5-7b-hf", "task": "vqa"}
    bad = tmp_path / "bad.yaml"
    assert main(["plan", "--model", "llava-1.5-7b-hf", "--set", "language.layers=[99]", "--write", str(bad)]) != 0
    assert not bad.exists()
    assert main(["plan", "--model", "llava-1.5-7b-hf", "--write", str(tmp_path / "x.toml")]) == 2
    assert "YAML or JSON" in capsys.readouterr().err
