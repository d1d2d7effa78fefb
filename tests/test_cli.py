"""The command line without any model: schema, schema-only validation, usage and internal errors."""

from __future__ import annotations

import json

import pytest

import vlora_core.cli as cli
from vlora_core.cli import main


def test_schema_is_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False and "finetune_vision_layers" in schema["properties"]


def test_validate_without_model_checks_the_schema(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("task: vqa\n")
    bad.write_text("task: vqa\nr: -1\n")
    assert main(["validate", str(good), str(bad)]) == 3
    out = capsys.readouterr().out
    assert f"{good}: ok (schema only" in out and f"{bad}:2: r: Input should be greater than or equal to 1" in out


def test_a_lock_needs_a_model(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text("task: vqa\n")
    (tmp_path / "s.lock.json").write_text("{}")
    assert main(["validate", str(spec)]) == 2
    assert "a lock needs a model" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["validate"], ["nonsense"], ["validate", "x.yaml", "--format", "xml"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: vlora" in capsys.readouterr().err


def test_plan_without_spec_is_a_usage_error(capsys):
    assert main(["plan"]) == 2
    assert "no SPEC given" in capsys.readouterr().err


def test_a_bug_is_an_internal_error_with_exit_1(monkeypatch, tmp_path, capsys):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setitem(cli.COMMANDS, "schema", broken)
    assert main(["schema"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err and "VLORA_DEBUG=1" in err and "Traceback" not in err
