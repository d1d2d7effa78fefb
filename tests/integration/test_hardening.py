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


def _reference_folder(root, name="qwen2vl"):
    from vlora_core import default_registry

    (_, _, reference) = default_registry().find_reference("Qwen2-VL-2B-Instruct")
    folder = root / "models" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(reference.config_path.read_text())
    return folder


def test_a_relative_model_path_is_read_against_the_spec_file(tmp_path, monkeypatch, capsys):
    _reference_folder(tmp_path)
    (tmp_path / "specs").mkdir()
    spec = tmp_path / "specs" / "s.yaml"
    spec.write_text("task: vqa\nmodel: ../models/qwen2vl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # ../models/qwen2vl does not exist from here; it does beside the spec
    assert main(["lock", str(spec)]) == 0
    lock = json.loads((tmp_path / "specs" / "s.lock.json").read_text())
    assert lock["model"] == "../models/qwen2vl"  # the spec's own words, the same from any folder
    monkeypatch.chdir(tmp_path / "specs")
    assert main(["validate", "s.yaml"]) == 0
    assert "matches s.lock.json" in capsys.readouterr().out


def test_a_lock_for_another_model_says_so(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\nmodel: Qwen2-VL-2B-Instruct\n")
    assert main(["lock", str(spec), "--model", "Qwen2-VL-7B-Instruct"]) == 0
    assert f"check it with `vlora validate {spec} --model Qwen2-VL-7B-Instruct`" in capsys.readouterr().err
    assert main(["validate", str(spec)]) == 6
    out = capsys.readouterr().out
    assert "the lock was written for model Qwen2-VL-7B-Instruct, this plan is for Qwen2-VL-2B-Instruct" in out
    assert "check against it with --model Qwen2-VL-7B-Instruct" in out
    assert main(["validate", str(spec), "--model", "Qwen2-VL-7B-Instruct"]) == 0


def test_a_mistyped_local_folder_is_not_reported_as_a_hub_miss(tmp_path, monkeypatch):
    from vlora_core import ModelLoadError

    _reference_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelLoadError, match="no file or folder 'qwen2-vl' in 'models'") as info:
        resolve({}, "models/qwen2-vl")
    assert "did you mean 'models/qwen2vl'?" in info.value.hint and "Hub" not in info.value.message
    assert resolve({}, "models/qwen2vl").targets


def test_a_hub_that_accepts_and_never_answers_times_out(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # connections are accepted by the kernel and never answered
    port = server.getsockname()[1]
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\n")
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf"),
           "VLORA_HUB_TIMEOUT": "2"}
    env.pop("HF_HUB_OFFLINE", None)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "vlora_core.cli", "plan", str(spec), "--model", "someone/model"],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert done.returncode == 4, done.stderr
    assert "the Hub did not answer within 2 s for the config of 'someone/model'" in done.stderr
    assert "VLORA_HUB_TIMEOUT" in done.stderr and time.monotonic() - start < 60


def test_no_warning_of_transformers_or_peft_reaches_stderr(tmp_path):
    """Building every bundled reference on the meta device (and an inferred model) prints the plan only:
    transformers' log lines and Python warnings are kept from the user, even under ``-W always``."""
    import subprocess
    import sys

    from transformers import AutoConfig

    from vlora_core import default_registry

    AutoConfig.for_model("glm4v").save_pretrained(tmp_path / "glm4v")  # no plugin claims it: inferred
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\n")
    refs = [r.name for _, _, r in default_registry().references()] + [str(tmp_path / "glm4v")]
    script = ("import sys\nfrom vlora_core.cli import main\ncode = 0\n"
              f"for ref in {refs!r}:\n    code = max(code, main(['plan', {str(spec)!r}, '--model', ref]))\n"
              "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-W", "always", "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert done.stdout.count("LoRA parameters:") == len(refs)
