"""validate on its own: expanding paths, schema-only checks, problems read from diagnostics (line, field,
kind), warnings and lock notes kept apart, the three output formats and the exit code."""

from __future__ import annotations

import json

import pytest

from vlora_core import LayerSelectionError, resolve
from vlora_core.errors import EXIT_LOCK, EXIT_OK, EXIT_RESOLUTION, EXIT_SPEC, SpecFileError
from vlora_core.validate import FileResult, Problem, check_files, exit_code, expand, problems_of, render


@pytest.fixture
def specs(tmp_path):
    (tmp_path / "good.yaml").write_text("task: vqa\nr: 8\n")
    (tmp_path / "bad.yaml").write_text("task: vqa\nr: 0\nfinetune_mlp: true\n")
    (tmp_path / "other.lock.json").write_text("{}")  # a lock is never taken for a spec
    (tmp_path / "notes.txt").write_text("not a spec")
    return tmp_path


def test_expand_directories_globs_and_files(specs):
    assert expand([str(specs)]) == [str(specs / "bad.yaml"), str(specs / "good.yaml")]
    assert expand([str(specs / "g*.yaml"), str(specs / "good.yaml")]) == [str(specs / "good.yaml")]
    with pytest.raises(SpecFileError, match="no such spec file, directory, or matching pattern"):
        expand([str(specs / "nothing-*.yaml")])


def test_schema_only_check_reads_line_and_field_from_each_diagnostic(specs):
    good, bad = check_files([str(specs / "good.yaml"), str(specs / "bad.yaml")])
    assert good.ok and good.summary.startswith("ok (schema only")
    assert [(p.line, p.kind, p.exit_code) for p in bad.problems] == [(2, "invalid-field", EXIT_SPEC),
                                                               (3, "unknown-key", EXIT_SPEC)]
    assert bad.problems[0].message.startswith("r: ") and "finetune_mlp_modules" in bad.problems[1].message
    assert exit_code([good, bad]) == EXIT_SPEC


def test_a_resolution_error_becomes_one_problem_at_its_line(tmp_path, model, registry):
    from vlora_core import load_spec

    path = tmp_path / "s.yaml"
    path.write_text("task: vqa\nlanguage:\n  layers: [7]\n")
    with pytest.raises(LayerSelectionError) as info:
        resolve(load_spec(path), model, registry=registry)
    (problem,) = problems_of(info.value, str(path))
    assert (problem.line, problem.kind, problem.exit_code) == (3, "layer-selection", EXIT_RESOLUTION)
    assert problem.message.startswith("language.layers: layer 7 does not exist")
    assert problem.hint == info.value.hint
    (elsewhere,) = problems_of(info.value, "other.yaml")  # a location in another file leads the message
    assert elsewhere.line is None and elsewhere.message.startswith(f"{path}:3: language.layers: layer 7")


def test_warnings_and_notes_in_each_format(model, registry, tmp_path):
    plan = resolve({"finetune_vision_layers": False, "vision": {"layers": [0]}}, model, registry=registry)
    result = FileResult("a.yaml", warnings=list(plan.diagnostics), notes=["same plan as the lock; x"],
                        summary="ok (3 targets)")
    failed = FileResult("b.yaml", problems=[Problem("b.yaml", 4, "r: too small", "use 1 or more", EXIT_SPEC,
                                                    kind="invalid-field")])
    text = render([result, failed], "text")
    assert text.splitlines() == [
        "a.yaml: ok (3 targets)",
        "a.yaml: warning: vision.layers is set but finetune_vision_layers is false: the selection is ignored",
        "a.yaml: same plan as the lock; x",
        "b.yaml:4: r: too small (hint: use 1 or more)",
    ]
    quiet = render([result, failed], "text", quiet=True).splitlines()
    assert quiet == [text.splitlines()[1], text.splitlines()[3]]
    data = json.loads(render([result, failed], "json"))
    assert data["exit_code"] == EXIT_SPEC and not data["ok"]
    assert data["files"][0]["warnings"][0]["code"] == "ignored-layers"
    assert data["files"][0]["notes"] == ["warning: " + plan.warnings[0], "same plan as the lock; x"]
    assert data["files"][1]["problems"][0]["kind"] == "invalid-field"
    github = render([result, failed], "github").splitlines()
    assert github == ["::warning file=a.yaml::warning: " + plan.warnings[0],
                      "::error file=b.yaml,line=4::r: too small (hint: use 1 or more)"]


def test_exit_code_is_the_highest_kind():
    lock = FileResult("a", problems=[Problem("a", None, "m", None, EXIT_LOCK)])
    spec = FileResult("b", problems=[Problem("b", 1, "m", None, EXIT_SPEC)])
    assert exit_code([lock, spec]) == EXIT_LOCK and exit_code([FileResult("c")]) == EXIT_OK
