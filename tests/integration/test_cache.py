"""The module-tree cache: a warm plan equals a cold one, imports neither torch nor transformers, and an entry
that does not check out is rebuilt, never trusted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoConfig

from vlora_core import cache as cache_module
from vlora_core import resolve
from vlora_core.cache import FORMAT, cache_entries, tree_for
from vlora_core.cli import main
from vlora_core.plugins import default_registry

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "examples" / "qwen2_vl_ocr.yaml"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("VLORA_CACHE_DIR", str(folder))
    monkeypatch.delenv("VLORA_NO_CACHE", raising=False)
    monkeypatch.setattr(cache_module, "STATS", cache_module.CacheStats())
    return folder


def _stats():
    return cache_module.STATS


def _entry(folder: Path) -> Path:
    (path,) = folder.glob("*.tree.json")
    return path


def test_warm_plans_equal_cold_plans_on_every_bundled_reference(cache):
    registry = default_registry()
    names = [r.name for _, _, r in registry.references()]
    assert len(names) >= 20
    for name in names:
        cold = tree_for(name, registry)  # built, and written
        warm = tree_for(name, registry)  # read back
        assert cold.model_config is not None and warm.model_config is None, name
        assert warm.entries == cold.entries and warm.params == cold.params and warm.tied == cold.tied, name
        assert warm.config == cold.config and warm.sub_models == cold.sub_models, name
        assert resolve({}, warm).to_dict() == resolve({}, cold).to_dict(), name
    assert (_stats().misses, _stats().hits) == (len(names), len(names))
    assert len(cache_entries(cache)) == len(names)


def test_an_inferred_architecture_is_kept_with_the_tree(cache, tmp_path, monkeypatch):
    folder = tmp_path / "aria"
    AutoConfig.for_model("aria").save_pretrained(folder)  # no plugin claims aria: inferred
    cold = resolve({}, str(folder))
    assert cold.inferred
    monkeypatch.setattr(sys.modules["vlora_core.resolve"], "infer_architecture",
                        lambda tree: pytest.fail("inferred again instead of read from the cache"))
    warm = resolve({}, str(folder))
    assert warm.to_dict() == cold.to_dict()
    assert _stats().hits == 1


def _run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    probe = ("import sys; from vlora_core.cli import main; rc = main(sys.argv[1:]); "
             "print('IMPORTED', sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)); "
             "sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.mark.parametrize("args", [
    ["plan", str(SPEC)],
    ["plan", "--model", "Qwen2-VL-7B-Instruct", "--json"],
    ["validate", str(SPEC), "--model", "Qwen2-VL-7B-Instruct"],
    ["lock", str(SPEC), "-o", "{tmp}/x.lock.json"],
    ["export", str(SPEC), "--to", "peft"],  # PEFT's format written from the plan's data, not from a LoraConfig
    ["export", str(SPEC), "--to", "unsloth"],
    ["import", str(ROOT / "tests/data/interop/unsloth/u01_qwen2_vl_7b_vision.py"), "--from", "unsloth", "--model",
     "Qwen2-VL-7B-Instruct"],
])
def test_a_warm_command_imports_neither_torch_nor_transformers(cache, tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"} | {"VLORA_CACHE_DIR": str(cache)}
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    cold = _run(args, env)
    assert cold.returncode == 0, cold.stderr
    assert "'torch'" in cold.stdout  # the first run builds the tree
    warm = _run(args, env)
    assert warm.returncode == 0, warm.stderr
    assert "IMPORTED []" in warm.stdout
    assert warm.stdout.split("IMPORTED")[0] == cold.stdout.split("IMPORTED")[0]  # the same output


def test_a_hub_id_in_the_hub_cache_is_cached_too(tmp_path):
    hub = tmp_path / "hub"
    snapshot = hub / "models--someone--tiny-llava" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (hub / "models--someone--tiny-llava" / "refs").mkdir()
    (hub / "models--someone--tiny-llava" / "refs" / "main").write_text("abc123")
    (snapshot / "config.json").write_text(
        (ROOT / "plugins/llava/vlora_llava/configs/llava-1.5-7b-hf.json").read_text())
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"} | {
        "VLORA_CACHE_DIR": str(tmp_path / "cache"), "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    args = ["plan", "--model", "someone/tiny-llava"]
    cold, warm = _run(args, env), _run(args, env)
    assert cold.returncode == 0 and warm.returncode == 0, cold.stderr + warm.stderr
    assert "IMPORTED []" in warm.stdout and "someone/tiny-llava" in warm.stdout
    assert warm.stdout.split("IMPORTED")[0] == cold.stdout.split("IMPORTED")[0]


def _damage_payload(path: Path) -> None:
    text = path.read_text()
    path.write_text(text.replace('"Linear"', '"Linaer"', 1))  # the digest no longer fits


def _foreign_key(path: Path) -> None:
    header, payload = path.read_text().split("\n", 1)
    data = json.loads(header)
    data["key"] = "0" * 64  # another key's entry copied over this one
    path.write_text(json.dumps(data) + "\n" + payload)


def _wrong_types(path: Path) -> None:
    import hashlib

    header, payload = path.read_text().rstrip("\n").split("\n", 1)
    data = json.loads(payload)
    data["entries"][1][3] = "4096"  # a string where a width belongs, with a digest that fits
    payload = json.dumps(data)
    head = json.loads(header) | {"sha256": hashlib.sha256(payload.encode()).hexdigest()}
    path.write_text(json.dumps(head) + "\n" + payload + "\n")


@pytest.mark.parametrize("damage", [
    pytest.param(lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), id="truncated"),
    pytest.param(lambda p: p.write_bytes(b"\x00\xff garbage"), id="garbage"),
    pytest.param(lambda p: p.write_text(""), id="empty"),
    pytest.param(_damage_payload, id="payload-changed"),
    pytest.param(_foreign_key, id="foreign-key"),
    pytest.param(lambda p: p.write_text(p.read_text().replace(f'"vlora_cache": {FORMAT}', '"vlora_cache": 99')),
                 id="other-format"),
    pytest.param(_wrong_types, id="wrong-types"),
])
def test_a_damaged_or_foreign_entry_is_rebuilt(cache, damage):
    registry = default_registry()
    expected = resolve({}, tree_for("llava-1.5-7b-hf", registry)).to_dict()
    entry = _entry(cache)
    good = entry.read_text()
    damage(entry)
    assert resolve({}, tree_for("llava-1.5-7b-hf", registry)).to_dict() == expected
    assert _stats().rebuilt == [entry.name] and _stats().hits == 0
    assert entry.read_text().split("\n", 1)[1] == good.split("\n", 1)[1]  # written anew
    tree_for("llava-1.5-7b-hf", registry)
    assert _stats().hits == 1


def test_the_key_follows_the_config_content_and_the_versions(cache, tmp_path, monkeypatch):
    source = json.loads((ROOT / "plugins/llava/vlora_llava/configs/llava-1.5-7b-hf.json").read_text())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "config.json").write_text(json.dumps(source))
    (b / "config.json").write_text(json.dumps(source, indent=4, sort_keys=True))  # same content, other bytes
    registry = default_registry()
    tree_for(str(a), registry)
    assert tree_for(str(b), registry).source == str(b)  # a hit, under this reference's own label
    assert _stats().hits == 1
    source["text_config"]["num_hidden_layers"] = 4
    (b / "config.json").write_text(json.dumps(source))
    assert tree_for(str(b), registry).get("model.language_model.layers.4") is None  # a new entry
    assert _stats().misses == 2
    monkeypatch.setattr(cache_module, "package_version", lambda dist: "9.9" if dist == "transformers" else "1")
    tree_for(str(a), registry)
    assert _stats().misses == 3 and len(cache_entries(cache)) == 3


def test_concurrent_runs_write_whole_entries(cache, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"} | {"VLORA_CACHE_DIR": str(cache)}
    runs = [subprocess.Popen([sys.executable, "-m", "vlora_core.cli", "plan", "--model", "paligemma-3b-pt-224",
                              "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    assert len({out for out, _ in outputs}) == 1
    (entry,) = cache_entries(cache)
    assert entry.model == "paligemma-3b-pt-224"
    assert not list(cache.glob(".tmp-*"))


def test_an_unwritable_cache_folder_costs_speed_only(cache, tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("VLORA_CACHE_DIR", str(blocked / "cache"))
    plan = resolve({}, "paligemma-3b-pt-224")
    assert plan.targets and _stats().write_failures


def test_no_cache_reads_and_writes_nothing(cache, capsys):
    assert main(["plan", str(SPEC), "--no-cache"]) == 0
    assert not cache.exists()


def test_cache_info_and_clear(cache, capsys):
    assert main(["cache", "info"]) == 0
    assert f"cache folder: {cache} (on;" in capsys.readouterr().out
    assert main(["plan", str(SPEC)]) == 0 and main(["plan", "--model", "paligemma-3b-pt-224"]) == 0
    (cache / "0123.tree.json").write_text("junk")
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "3 entries" in out and "Qwen2-VL-7B-Instruct (qwen2_vl)" in out and "paligemma-3b-pt-224" in out
    assert "0123.tree.json: damaged or foreign" in out
    assert main(["cache", "info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["folder"] == str(cache) and data["enabled"] and len(data["entries"]) == 3
    assert {e["versions"].get("plugin") for e in data["entries"] if e["model"]} == {
        f"vlora-core {cache_module.package_version('vlora-core')}"}  # the built-in plugins ship with the core
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 2 entries (")  # vlora's own; the foreign file stays
    assert [e.file for e in cache_entries(cache)] == ["0123.tree.json"]
    assert (cache / "0123.tree.json").read_text() == "junk"


def test_adapter_inspect_reads_files_alone_without_torch(tmp_path):
    """`vlora adapter inspect` places an adapter from its files and the plugins' patterns: the base model class
    PEFT recorded is looked up in the bundled configs, not in transformers' auto mappings (which import torch)."""
    env = {k: v for k, v in os.environ.items() if k != "VLORA_NO_CACHE"} | {"VLORA_CACHE_DIR": str(tmp_path)}
    run = _run(["adapter", "inspect", str(ROOT / "examples" / "adapters" / "llava-q-v")], env)
    assert run.returncode == 0, run.stderr
    assert "llava (plugin vlora-core)" in run.stdout and "IMPORTED []" in run.stdout
