"""Lock files on their own: what a lock holds, reading and writing, and the logical diff against a plan."""

from __future__ import annotations

import json

import pytest

from vlora_core import LockMismatchError, TargetKey, UsageError, diff_lock, make_lock, read_lock, resolve, write_lock
from vlora_core.lock import lock_path_for, spec_hash


def test_a_lock_holds_each_target_by_logical_identity_and_name(model, registry):
    plan = resolve({"task": "vqa", "r": 4}, model, registry=registry)
    lock = make_lock(plan)
    assert [TargetKey.from_dict(t) for t in lock["targets"]] == [t.key for t in plan.targets]
    assert [t["name"] for t in lock["targets"]] == [t.name for t in plan.targets]
    assert lock["totals"] == {"targets": len(plan.targets), "lora_params": plan.lora_params,
                              "full_params": 0, "trainable_params": plan.trainable_params}
    assert {t["r"] for t in lock["targets"]} == {4}


def test_write_then_read_round_trips(tmp_path, model, registry):
    plan = resolve({}, model, registry=registry)
    path = write_lock(plan, tmp_path / "a.lock.json")
    assert read_lock(path) == json.loads(json.dumps(make_lock(plan)))
    assert diff_lock(read_lock(path), plan).ok


@pytest.mark.parametrize(("content", "error", "words"), [
    (None, UsageError, "no such lock file"),
    ("{not json", LockMismatchError, "unreadable lock file"),
    ('{"vlora_lock": 99, "targets": []}', LockMismatchError, "format 99, written by a newer vlora"),
    ("[1, 2]", LockMismatchError, "not a vlora lock file"),
])
def test_unreadable_locks_name_the_file(tmp_path, content, error, words):
    path = tmp_path / "x.lock.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(error, match=words) as info:
        read_lock(path)
    assert info.value.location.file == str(path) and info.value.where == str(path)


def test_lock_path_is_beside_the_spec():
    assert lock_path_for("specs/a.yaml").as_posix() == "specs/a.lock.json"
    assert lock_path_for("b.toml").as_posix() == "b.lock.json"


def test_diff_added_removed_and_rerank(model, registry):
    lock = make_lock(resolve({"task": "vqa"}, model, registry=registry))
    wider = resolve({"task": "vqa", "finetune_projector": "lora"}, model, registry=registry)
    diff = diff_lock(lock, wider)
    assert not diff.ok and diff.spec_changed
    assert sorted(t["name"] for t in diff.added) == ["projector.linear_1", "projector.linear_2"]
    assert diff.removed == [] and diff.changed == []
    assert "projector:" in diff.lines() and any(line.startswith("  + projection") for line in diff.lines())
    reranked = diff_lock(lock, resolve({"task": "vqa", "language": {"r": 2}}, model, registry=registry))
    assert len(reranked.changed) == len(lock["targets"]) and not reranked.added and not reranked.removed
    assert any("r 16 -> 2" in line for line in reranked.lines())


def test_moved_names_and_versions_pass_with_a_note(model, registry):
    plan = resolve({"task": "vqa"}, model, registry=registry)
    lock = make_lock(plan)
    lock["targets"][0]["name"] = "old.layout." + lock["targets"][0]["name"]
    lock["versions"]["transformers"] = "4.57.6"
    diff = diff_lock(lock, plan)
    assert diff.ok and diff.renamed == 1
    assert "1 module names moved" in diff.note() and "transformers 4.57.6 ->" in diff.note()


def test_spec_hash_ignores_defaults_but_not_written_fields(model, registry):
    a = resolve({}, model, registry=registry)
    b = resolve({"r": 16}, model, registry=registry)  # the default, written out
    assert a.lora_params == b.lora_params and spec_hash(a) != spec_hash(b)
    assert spec_hash(a) == spec_hash(resolve({}, model, registry=registry))
