"""The spec: defaults, presets, overrides, value checks, and file loading with file:line errors."""

from __future__ import annotations

import json

import jsonschema
import pytest

from vlora_core import LayerRange, SpecFileError, SpecValidationError, VisionLoRASpec, load_spec
from vlora_core.spec import spec_from_data, spec_json_schema


def test_defaults_match_unsloth():
    spec = VisionLoRASpec()
    assert (spec.finetune_vision_layers, spec.finetune_language_layers) == (True, True)
    assert (spec.finetune_attention_modules, spec.finetune_mlp_modules) == (True, True)
    assert spec.finetune_projector == "frozen"
    assert spec.finetune_cross_attention is None
    assert (spec.r, spec.lora_alpha, spec.lora_dropout, spec.bias) == (16, 16, 0.0, "none")


@pytest.mark.parametrize(
    ("task", "vision", "language"),
    [("ocr", True, True), ("captioning", True, True), ("vqa", False, True), ("domain_adaptation", True, False)],
)
def test_task_presets_follow_the_guidelines_table(task, vision, language):
    spec = VisionLoRASpec(task=task)
    assert (spec.finetune_vision_layers, spec.finetune_language_layers) == (vision, language)


def test_explicit_toggle_wins_over_preset():
    spec = VisionLoRASpec(task="vqa", finetune_vision_layers=True)
    assert spec.finetune_vision_layers is True
    assert spec.normalized()["finetune_vision_layers"] is True
    assert spec.normalized()["task"] == "vqa"


def test_layer_forms():
    assert VisionLoRASpec(vision={"layers": [3, 1, 2]}).vision.layers == [1, 2, 3]
    rng = VisionLoRASpec(language={"layers": {"last": 2}}).language.layers
    assert isinstance(rng, LayerRange) and rng.indices(5) == [3, 4]
    assert VisionLoRASpec(language={"layers": {"first": 2}}).language.layers.indices(5) == [0, 1]


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        ({"foo": 1}, "foo", "unknown key 'foo'"),
        ({"rr": 1}, "rr", "did you mean 'r'"),
        ({"r": 0}, "r", "greater than or equal to 1"),
        ({"lora_dropout": 1.5}, "lora_dropout", "less than 1"),
        ({"lora_alpha": 0}, "lora_alpha", "greater than 0"),
        ({"bias": "some"}, "bias", "'none', 'all' or 'lora_only'"),
        ({"finetune_projector": "yes"}, "finetune_projector", "'frozen', 'lora' or 'full'"),
        ({"task": "ocrr"}, "task", "'ocr'"),
        ({"vision": {"layers": [-1]}}, "vision.layers", "whole numbers >= 0"),
        ({"vision": {"layers": [1, 1]}}, "vision.layers", "listed twice"),
        ({"vision": {"layers": []}}, "vision.layers", "empty list"),
        ({"vision": {"layers": {"last": 0}}}, "vision.layers", ">= 1"),
        ({"vision": {"layers": {"middle": 2}}}, "vision.layers", "{last: N}"),
        ({"vision": {"lora_alph": 2}}, "vision.lora_alph", "did you mean 'lora_alpha'"),
        ({"vision": {"depth": 2}}, "vision.depth", "known keys here: layers, lora_alpha, r"),
        ({"projector": {"layers": [0]}}, "projector.layers", "unknown key 'layers'"),
        ({"target_modules_extra": ["a(b"]}, "target_modules_extra[0]", "invalid regular expression"),
        ({"exclude_modules": ["ok", "[x"]}, "exclude_modules[1]", "invalid regular expression"),
        ({"init_lora_weights": "eva"}, "init_lora_weights", "extra PEFT config"),
        ({"init_lora_weights": "zeros"}, "init_lora_weights", "pissa_niter_<N>"),
    ],
)
def test_bad_values_name_the_field(data, field, words):
    with pytest.raises(SpecValidationError) as info:
        spec_from_data(data)
    text = str(info.value)
    assert text.startswith(field + ":") or f" {field}:" in text, text
    assert words in text


def test_init_lora_weights_choices():
    assert VisionLoRASpec(init_lora_weights="pissa_niter_4").init_lora_weights == "pissa_niter_4"
    assert VisionLoRASpec(init_lora_weights=False).init_lora_weights is False


def test_yaml_errors_carry_file_and_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("r: 8\nvision:\n  r: 4\n  layers: [0, -2]\nlora_dropout: 2\n")
    with pytest.raises(SpecValidationError) as info:
        load_spec(path)
    wheres = [w for w, _ in info.value.problems]
    assert wheres == [f"{path}:4: vision.layers", f"{path}:5: lora_dropout"]


def test_json_and_toml_errors_carry_line(tmp_path):
    js = tmp_path / "s.json"
    js.write_text('{\n  "r": 8,\n  "finetune_mlp": false\n}\n')
    with pytest.raises(SpecValidationError) as info:
        load_spec(js)
    assert info.value.problems[0][0] == f"{js}:3: finetune_mlp"
    assert "did you mean 'finetune_mlp_modules'" in info.value.problems[0][1]
    tm = tmp_path / "s.toml"
    tm.write_text('r = 8\n\n[language]\nlayers = [0]\nr = 0\n')
    with pytest.raises(SpecValidationError) as info:
        load_spec(tm)
    assert info.value.problems[0][0] == f"{tm}:5: language.r"


@pytest.mark.parametrize(
    ("name", "text", "line", "words"),
    [
        ("bad.yaml", "r: 16\n  lora_alpha: [\n", 2, "malformed YAML"),
        ("bad.json", '{"r": 16,\n "x": }\n', 2, "malformed JSON"),
        ("bad.toml", "r = 16\nr = = 2\n", 2, "malformed TOML"),
    ],
)
def test_malformed_files(tmp_path, name, text, line, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecFileError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:{line}: {words}")


def test_unreadable_and_unknown_type(tmp_path):
    with pytest.raises(SpecFileError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    other = tmp_path / "spec.ini"
    other.write_text("r=1")
    with pytest.raises(SpecFileError, match=r"use \.yaml, \.yml, \.json or \.toml"):
        load_spec(other)
    listy = tmp_path / "list.yaml"
    listy.write_text("- r: 1\n")
    with pytest.raises(SpecFileError, match="must be a mapping"):
        load_spec(listy)


def test_empty_file_is_the_default_spec(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing\n")
    assert load_spec(path).normalized() == VisionLoRASpec().normalized()


def test_locate_points_at_the_field(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("model: x\nlanguage:\n  layers: [1]\n")
    spec = load_spec(path)
    assert spec.source == str(path)
    assert spec.locate("language", "layers") == f"{path}:3: language.layers"
    assert VisionLoRASpec().locate("vision", "layers") == "vision.layers"


def test_schema_accepts_good_and_rejects_bad():
    schema = spec_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"task": "vqa", "r": 8, "language": {"layers": {"last": 4}}})
    assert validator.is_valid(json.loads(json.dumps(VisionLoRASpec().normalized())))
    assert not validator.is_valid({"r": 0})
    assert not validator.is_valid({"unknown": 1})


def test_loading_and_checking_a_spec_never_imports_torch(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "s.yaml"
    path.write_text("task: vqa\nr: 8\n")
    code = (
        "import sys; from vlora_core.cli import main; "
        f"rc = main(['validate', {str(path)!r}]); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'; "
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "ok (schema only" in proc.stdout
