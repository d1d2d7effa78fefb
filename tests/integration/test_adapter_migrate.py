"""``vlora adapter check`` and ``migrate`` on adapters saved under transformers' older module layouts
(rebuilt on tiny models with the kit's relayout) and under the current one: check tells them apart, and after
migrate PEFT loads the adapter with no missing or unexpected key and the outputs equal the original
adapter's on its original layout, bit for bit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from vlora_core import AdapterError, apply, check_adapter, default_registry, migrate_adapter, module_tree, read_adapter
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import OLD_LAYOUT, image_batch, tiny_model  # noqa: E402

from vlora_core.testing import relayout, vision_tower_layouts  # noqa: E402

sys.path.insert(0, str(ROOT / "examples" / "adapters"))
from make_adapters import tiny_llava  # noqa: E402

# random B, so the adapters change the outputs; a rank of its own for vision; a module saved in full
SPEC = {"finetune_projector": "lora", "vision": {"r": 4, "lora_alpha": 8}, "modules_to_save": ["lm_head"],
        "init_lora_weights": False}


def inputs(model) -> dict:
    return {k: v for k, v in image_batch(model.config).items() if k != "labels"}


@pytest.fixture(scope="module")
def old_adapter(tmp_path_factory):
    """An adapter trained under the 4.46 layout (visual.*, model.layers.*), and that model's outputs with it."""
    folder = tmp_path_factory.mktemp("old-adapter")
    model = tiny_model("qwen2_vl")
    old = relayout(model, OLD_LAYOUT)
    peft_model = apply(old, SPEC).eval()
    peft_model.save_pretrained(folder)
    with torch.no_grad():
        logits = peft_model(**inputs(model)).logits
    return folder, logits


def registry():
    return default_registry()


def test_the_old_layout_is_read_and_checked_as_not_loading(old_adapter):
    folder, _ = old_adapter
    adapter = read_adapter(folder, registry())
    assert adapter.architecture == "qwen2_vl" and not adapter.unplaced
    assert any(m.name.startswith("visual.blocks.") for m in adapter.modules)  # the old names
    result = check_adapter(adapter, module_tree(tiny_model("qwen2_vl"), registry()))
    assert not result.ok
    assert {m.component for m in result.unmatched} == {"vision", "projector", "language"}
    assert "lm_head" not in {m.name for m in result.unmatched}  # the same name on both layouts
    assert "vlora adapter migrate" in result.report()


def test_an_adapter_of_the_current_layout_checks_clean(tmp_path):
    model = tiny_model("qwen2_vl")
    apply(model, SPEC).save_pretrained(tmp_path)
    assert check_adapter(read_adapter(tmp_path, registry()), module_tree(tiny_model("qwen2_vl"), registry())).ok
    assert main(["adapter", "check", str(tmp_path), "--model", str(ROOT / "examples" / "adapters" / "tiny-llava")]) \
        == 8  # another model family altogether


def llava_inputs(model) -> dict:
    torch.manual_seed(1)
    return dict(input_ids=torch.tensor([[1, 5, *[100] * 4, 6, 7, 2]]), pixel_values=torch.randn(1, 3, 8, 8))


# family -> (a fresh tiny model, the older layout's relayout map, its inputs)
OLDER = {
    "qwen2_vl 4.46": (lambda: tiny_model("qwen2_vl"), lambda m: OLD_LAYOUT, inputs),
    "llava 4.46": (tiny_llava, lambda m: vision_tower_layouts(m)["4.46"], llava_inputs),
    "llava 4.52": (tiny_llava, lambda m: vision_tower_layouts(m)["4.52"], llava_inputs),
}


@pytest.mark.parametrize("family", OLDER)
def test_migrate_loads_completely_and_gives_the_same_outputs(family, tmp_path):
    make, layout, batch = OLDER[family]
    folder = tmp_path / "old"
    model = make()
    old = apply(relayout(model, layout(model)), SPEC).eval()
    old.save_pretrained(folder)
    with torch.no_grad():
        old_logits = old(**batch(model)).logits
    current = make()
    assert not check_adapter(read_adapter(folder, registry()), module_tree(current, registry())).ok
    if family.startswith("llava"):  # inspect names the layout the names are of
        versions = {"4.46": "transformers 4.46 - 4.51", "4.52": "transformers 4.52 - 5.5"}[family.split()[1]]
        assert read_adapter(folder, registry()).layout == versions
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "migrated"
    config_dir = tmp_path / "config"
    current.config.save_pretrained(config_dir)
    assert main(["adapter", "migrate", str(folder), "--model", str(config_dir), "-o", str(out)]) == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # DIR untouched
    migrated = read_adapter(out, registry())
    assert check_adapter(migrated, module_tree(current, registry())).ok

    config = LoraConfig.from_pretrained(out)
    peft_model = get_peft_model(current, config).eval()
    result = set_peft_model_state_dict(peft_model, load_file(out / "adapter_model.safetensors"))
    assert not result.unexpected_keys
    assert not [k for k in result.missing_keys if ".lora_" in k or "modules_to_save" in k]
    with torch.no_grad():
        assert torch.equal(peft_model(**batch(current)).logits, old_logits)
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["modules_to_save"] == ["lm_head"] and saved["rank_pattern"]


def test_modules_it_cannot_map_are_refused_and_nothing_is_written(old_adapter, tmp_path):
    folder, _ = old_adapter
    adapter = read_adapter(folder, registry())
    llava = module_tree(ROOT / "examples" / "adapters" / "tiny-llava", registry())
    out = tmp_path / "nowhere"
    with pytest.raises(AdapterError, match="have no counterpart in"):
        migrate_adapter(adapter, llava, out)
    assert not out.exists()
