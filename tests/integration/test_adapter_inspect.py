"""``vlora adapter inspect``: what an adapter on disk covers, from its files alone, on adapters saved by
``apply`` (the plan is the expected answer, computed before any file exists), by PEFT with a hand-written
target list, as .bin, and on folders that are no adapter or whose files are damaged or disagree."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from vlora_core import AdapterError, apply, default_registry, read_adapter
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import tiny_model  # noqa: E402

SPEC = {"finetune_projector": "lora", "modules_to_save": ["lm_head"], "vision": {"r": 4, "lora_alpha": 8},
        "language": {"layers": [0, 2]}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An adapter written by apply + save_pretrained, and the plan it came from."""
    folder = tmp_path_factory.mktemp("adapter")
    peft_model = apply(tiny_model("qwen2_vl"), SPEC)
    peft_model.save_pretrained(folder)
    return folder, peft_model.vlora_plan


def test_inspect_gives_back_the_plan(saved):
    folder, plan = saved
    adapter = read_adapter(folder, default_registry())
    assert adapter.architecture == "qwen2_vl" and adapter.plugin == "vlora-core"
    assert adapter.total_params == plan.trainable_params
    lora = {m.name: m for m in adapter.modules if m.kind == "lora"}
    assert set(lora) == {t.name for t in plan.targets}
    for t in plan.targets:
        m = lora[t.name]
        assert (m.component, m.role, m.layer, m.leaf, m.r, m.lora_alpha) == \
            (t.component, t.role, t.layer, t.leaf, t.r, t.lora_alpha)
        assert (m.in_features, m.out_features, m.params) == (t.in_features, t.out_features, t.lora_params)
    assert [(m.name, m.params) for m in adapter.modules if m.kind == "full"] == \
        [(f.name, f.params) for f in plan.full_modules]
    rows = {(r["component"], r["role"]): r for r in adapter.summary()}
    for row in plan.summary():
        mine = rows[(row.component, row.role)]
        assert (mine["modules"], mine["layers"], mine["params"]) == (row.modules, row.layers, row.lora_params)
    assert rows[("(outside)", "saved in full")]["modules"] == 1
    assert not adapter.unplaced


def test_the_command_prints_the_table_and_the_json(saved, capsys):
    folder, plan = saved
    assert main(["adapter", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "qwen2_vl (plugin vlora-core)" in out
    assert f"total: {len(plan.targets) + 1} modules, {plan.trainable_params:,} parameters" in out
    assert main(["adapter", "inspect", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total_params"] == plan.trainable_params and data["modules_to_save"] == ["lm_head"]


def test_a_hand_written_target_list_shows_what_it_really_trained():
    """q_proj, v_proj on LLaVA: the names also hit the vision tower (examples/adapters/llava-q-v)."""
    adapter = read_adapter(ROOT / "examples" / "adapters" / "llava-q-v", default_registry())
    assert adapter.architecture == "llava"
    rows = {(r["component"], r["role"]): r for r in adapter.summary()}
    assert rows[("vision", "attention")]["leaves"] == ["self_attn.q_proj", "self_attn.v_proj"]
    assert rows[("vision", "attention")]["modules"] == 2 * 3  # all 3 vision layers: the tower trained too
    assert rows[("vision", "attention")]["layers"] == "0-2"
    assert rows[("language", "attention")]["modules"] == 2 * 2


def test_a_bin_adapter_is_read_with_weights_only(tmp_path):
    peft_model = apply(tiny_model("qwen2_vl"), {"r": 2})
    peft_model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "adapter_model.bin").exists()
    adapter = read_adapter(tmp_path, default_registry())
    assert adapter.weights_file == "adapter_model.bin" and adapter.total_params == peft_model.vlora_plan.lora_params


def _copy(saved, tmp_path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(saved[0], folder)
    return folder


def test_bad_adapters_get_one_clear_error_and_exit_7(saved, tmp_path, capsys):
    assert main(["adapter", "inspect", str(ROOT / "examples")]) == 7
    assert "is not a PEFT adapter: it has no adapter_config.json" in capsys.readouterr().err

    truncated = _copy(saved, tmp_path)
    weights = truncated / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    assert main(["adapter", "inspect", str(truncated)]) == 7
    assert "damaged or truncated" in capsys.readouterr().err

    disagreeing = tmp_path / "disagree"
    shutil.copytree(saved[0], disagreeing)
    config = json.loads((disagreeing / "adapter_config.json").read_text())
    config["r"], config["rank_pattern"] = 32, {}
    (disagreeing / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(AdapterError, match=r"disagrees with the weights: \S+ has rank 16 in the weights, the "
                                           r"config says 32"):
        read_adapter(disagreeing, default_registry())

    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    shutil.copy(saved[0] / "adapter_config.json", no_weights)
    with pytest.raises(AdapterError, match="but no weights"):
        read_adapter(no_weights, default_registry())

    lost_half = tmp_path / "lost-half"
    shutil.copytree(saved[0], lost_half)
    from safetensors.torch import load_file, save_file

    tensors = load_file(lost_half / "adapter_model.safetensors")
    save_file({k: v for k, v in tensors.items() if ".lora_B." not in k or "layers.0" not in k},
              lost_half / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match="without its lora_B"):
        read_adapter(lost_half, default_registry())


REAL = Path(__file__).resolve().parents[1] / "data" / "qwen2-vl-7b-nutrition"  # a published adapter's config


def _real_adapter(folder: Path) -> Path:
    """The published Qwen2-VL-7B adapter's config, with the tensors PEFT would save for it: the modules PEFT's own
    list rule wraps on the bundled reference (built on the meta device), zeros of the shapes they have."""
    import struct

    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    from vlora_core import module_tree

    config = json.loads((REAL / "adapter_config.json").read_text())
    tree = module_tree("Qwen2-VL-7B-Instruct", default_registry())
    peft_config = LoraConfig(target_modules=config["target_modules"], r=config["r"])
    header, offset, r = {}, 0, config["r"]
    for e in tree.entries:
        if e.name and e.kind == "linear" and check_target_module_exists(peft_config, e.name):
            for part, shape in (("lora_A", [r, e.in_features]), ("lora_B", [e.out_features, r])):
                size = 2 * shape[0] * shape[1]
                header[f"base_model.model.{e.name}.{part}.weight"] = {"dtype": "BF16", "shape": shape,
                                                                    "data_offsets": [offset, offset + size]}
                offset += size
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(config))
    raw = json.dumps(header).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return folder


def test_a_published_qwen2_vl_adapter_is_placed_by_its_base_model_and_its_dead_regex_is_named(tmp_path, capsys):
    folder = _real_adapter(tmp_path / "nutrition")
    adapter = read_adapter(folder, default_registry())
    assert adapter.architecture == "qwen2_vl"  # base_model_name_or_path is Qwen/Qwen2-VL-7B-Instruct
    assert {m.component for m in adapter.modules} == {"language"}  # the vision entry matched nothing
    assert len(adapter.warnings) == 1 and "visual\\\\.blocks\\\\.\\\\d+\\\\.attn\\\\.qkv" in adapter.warnings[0]
    assert main(["adapter", "inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: adapter_config.json's target_modules lists" in out and "is not trained" in out
    assert main(["adapter", "check", str(folder), "--model", "Qwen2-VL-7B-Instruct"]) == 0
    assert "a regular expression inside a list" in capsys.readouterr().out
