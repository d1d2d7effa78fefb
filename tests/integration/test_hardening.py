"""Hardening checks that need a real bundled model (the built-in plugins): lock-path collisions, a pattern
that backtracks catastrophically on real module names, validate's summary of a failing file."""

from __future__ import annotations

import json

import pytest

from vlora_core import resolve
from vlora_core.cli import main
from vlora_core.validate import check_files, render


def test_two_specs_that_lock_to_one_path_write_nothing(tmp_path, capsys):
    for name in ("a.yaml", "a.json"):
        (tmp_path / name).write_text("task: vqa\nmodel: Qwen2-VL-2B-Instruct\n" if name.endswith("yaml")
                                     else '{"task": "vqa", "model": "Qwen2-VL-2B-Instruct"}')
    code = main(["lock", str(tmp_path / "a.yaml"), str(tmp_path / "a.json")])
    assert code == 2 and "would both lock to" in capsys.readouterr().err
    assert not (tmp_path / "a.lock.json").exists()


def test_a_pattern_that_backtracks_catastrophically_ends_in_bounded_time():
    import time

    from vlora_core import UserPatternError

    # with Python's re, this pattern runs for minutes on 40-character module names; vlora matches user
    # patterns with the regex engine, under a time budget (a pattern over it is refused, naming the field)
    start = time.monotonic()
    for field in ("exclude_modules", "target_modules_extra"):
        with pytest.raises(UserPatternError) as info:
            resolve({field: [r"([a-z._0-9]+)+!"]}, "Qwen2-VL-2B-Instruct")
        assert info.value.location.field == f"{field}[0]"
    assert time.monotonic() - start < 10


def test_a_file_with_a_lock_mismatch_is_not_summarised_as_ok(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("model: Qwen2-VL-2B-Instruct\ntask: vqa\n")
    lock = tmp_path / "s.lock.json"
    lock.write_text(json.dumps({"vlora_lock": 1, "targets": []}))
    (result,) = check_files([str(spec)])
    assert not result.ok and result.summary == "failed (1 problem)"
    data = json.loads(render([result], "json"))
    assert data["files"][0]["summary"] == "failed (1 problem)" and data["files"][0]["problems"]



def test_a_forced_architecture_that_does_not_fit_says_so_not_that_the_plugin_is_stale():
    from vlora_core import SpecArchitectureMismatch

    with pytest.raises(SpecArchitectureMismatch) as info:
        resolve({"architecture": "gemma3", "finetune_vision_layers": True}, "Qwen2-VL-2B-Instruct")
    assert info.value.location.field == "architecture"
    assert "forces Gemma-3 onto a model whose model_type is 'qwen2_vl'" in str(info.value)
    assert "out of date" not in str(info.value)
    # where the forced family's patterns happen to match, the plan carries a warning saying what was forced
    plan = resolve({"architecture": "gemma3", "task": "vqa"}, "Qwen2-VL-2B-Instruct")
    assert [d.code for d in plan.diagnostics] == ["architecture-forced"]


def test_the_inner_model_without_its_lm_head_is_named_as_such():
    import torch
    from transformers import Qwen2VLModel

    from vlora_core import PatternMatchError, default_registry, module_tree

    config = module_tree("Qwen2-VL-2B-Instruct", default_registry()).model_config
    with torch.device("meta"):
        inner = Qwen2VLModel(config)
    with pytest.raises(PatternMatchError, match="is the inner model of a Qwen2-VL without its LM head") as info:
        resolve({}, inner)
    assert "out of date" not in str(info.value) and "AutoModelForImageTextToText" in info.value.hint
