"""``vlora adapter spec``: apply -> save -> the spec read back from the adapter gives the same plan, on tiny
models of several families (per-component rank, layer selections, a projector in full or as a bare
parameter, a module saved in full, exclusions), from an adapter of an older layout too; and a hand-written
target list is expressed exactly, with the unused vision layer it trained."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from vlora_core import apply, default_registry, module_tree, read_adapter, resolve, spec_for_adapter
from vlora_core.cli import main

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "plugins" / "qwen2_vl" / "tests"))
sys.path.insert(0, str(ROOT / "examples" / "adapters"))
from make_adapters import tiny_llava  # noqa: E402
from qwen_tiny import OLD_LAYOUT, tiny_model  # noqa: E402
from tiny_models import gemma  # noqa: E402

from vlora_core.testing import relayout  # noqa: E402

CASES = {
    "qwen2_vl ranks, layers, saved": (lambda: tiny_model("qwen2_vl"), {
        "finetune_projector": "lora", "vision": {"r": 4, "lora_alpha": 8}, "language": {"layers": [0, 2]},
        "modules_to_save": ["lm_head"]}),
    "qwen2_vl full projector, attention": (lambda: tiny_model("qwen2_vl"), {
        "finetune_projector": "full", "finetune_mlp_modules": False}),
    "qwen2_vl vqa, last layers, an exclusion": (lambda: tiny_model("qwen2_vl"), {
        "task": "vqa", "language": {"layers": {"last": 2}},
        "exclude_modules": [r"model\.language_model\.layers\.2\.mlp\.up_proj"]}),
    "llava default": (tiny_llava, {}),
    "llava vision only, r 8": (tiny_llava, {"task": "domain_adaptation", "r": 8, "lora_alpha": 32}),
    "gemma3 projector parameter": (gemma, {"finetune_projector": "lora", "task": "vqa"}),
}


def same_plan(a, b) -> None:
    assert [t.to_dict() for t in a.targets] == [t.to_dict() for t in b.targets]
    assert [m.to_dict() for m in a.full_modules] == [m.to_dict() for m in b.full_modules]


@pytest.mark.parametrize("case", CASES)
def test_the_spec_of_a_saved_adapter_gives_its_plan(case, tmp_path):
    make, spec = CASES[case]
    peft_model = apply(make(), spec)
    peft_model.save_pretrained(tmp_path)
    registry = default_registry()
    found = spec_for_adapter(read_adapter(tmp_path, registry), module_tree(make(), registry), registry)
    same_plan(found.plan, peft_model.vlora_plan)
    assert not found.unexpressed
    same_plan(resolve(yaml.safe_load(found.to_yaml("x")), make(), registry=registry), peft_model.vlora_plan)


def test_an_adapter_of_an_older_layout_gives_the_plan_on_this_one(tmp_path):
    spec = CASES["qwen2_vl ranks, layers, saved"][1]
    model = tiny_model("qwen2_vl")
    apply(relayout(model, OLD_LAYOUT), spec).save_pretrained(tmp_path)
    registry = default_registry()
    found = spec_for_adapter(read_adapter(tmp_path, registry), module_tree(tiny_model("qwen2_vl"), registry),
                             registry)
    same_plan(found.plan, resolve(spec, tiny_model("qwen2_vl")))


def test_a_hand_written_list_is_expressed_with_exclusions_and_the_unused_layer(tmp_path, capsys):
    out = tmp_path / "spec.yaml"
    assert main(["adapter", "spec", str(ROOT / "examples" / "adapters" / "llava-q-v"), "--model",
                 str(ROOT / "examples" / "adapters" / "tiny-llava"), "-o", str(out)]) == 0
    data = yaml.safe_load(out.read_text())
    assert data["include_unused_layers"] is True  # vision layer 2 is never read (vision_feature_layer -2)
    assert data["finetune_mlp_modules"] is False and data["exclude_modules"]
    adapter = read_adapter(ROOT / "examples" / "adapters" / "llava-q-v", default_registry())
    plan = resolve(data, str(ROOT / "examples" / "adapters" / "tiny-llava"))
    assert {t.name for t in plan.targets} == {m.name for m in adapter.modules}


def test_without_a_model_it_asks_for_one(capsys):
    assert main(["adapter", "spec", str(ROOT / "examples" / "adapters" / "llava-q-v")]) == 2
    assert "does not name its base model" in capsys.readouterr().err
