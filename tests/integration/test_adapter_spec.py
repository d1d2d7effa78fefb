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
for plugin in ("llama4", "qwen3_5", "gemma4"):
    sys.path.insert(0, str(ROOT / "plugins" / plugin / "tests"))
from gemma4_tiny import tiny_model as gemma4  # noqa: E402
from llama4_tiny import tiny_model as llama4  # noqa: E402
from make_adapters import tiny_llava  # noqa: E402
from qwen35_tiny import tiny_model as qwen35  # noqa: E402
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
    "llama4 experts": (lambda: llama4("scout"), {"task": "vqa", "language": {"r": 4}}),
    "qwen3.5 linear attention": (lambda: qwen35("qwen3_5"), {"finetune_projector": "full"}),
    "gemma4 audio": (lambda: gemma4("audio"), {"finetune_vision_layers": False, "audio": {"layers": {"last": 1}}}),
}


def _plugin_tiny(plugin: str, module: str, *args):
    """The tiny model a plugin's own tests build (loaded from its test module)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"_{module}", ROOT / "plugins" / plugin / "tests" / f"{module}.py")
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return lambda: getattr(loaded, "tiny" if hasattr(loaded, "tiny") else "tiny_model")(*args)


CASES.update({
    "mllama cross-attention apart": (_plugin_tiny("mllama", "test_mllama"), {
        "finetune_cross_attention": False, "finetune_projector": "lora"}),
    "paligemma": (_plugin_tiny("paligemma", "test_paligemma"), {"finetune_projector": "lora", "r": 4}),
    "qwen3_vl": (_plugin_tiny("qwen3_vl", "qwen3_tiny", "qwen3_vl"), {"finetune_projector": "lora"}),
    "mistral3": (_plugin_tiny("mistral3", "test_mistral3"), {"finetune_projector": "full"}),
    "internvl": (_plugin_tiny("internvl", "test_internvl"), {"finetune_projector": "lora", "vision": {"r": 2}}),
    "idefics3": (_plugin_tiny("idefics3", "test_idefics3", "idefics3"), {"task": "ocr", "finetune_projector": "lora"}),
    "llava_next": (_plugin_tiny("llava", "test_llava", "llava_next"), {"finetune_projector": "lora"}),
})


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


# --- every example spec at full size --------------------------------------------------------------------

EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*") if p.suffix in (".yaml", ".json", ".toml")
                  and not p.name.endswith(".lock.json"))


def _write_shapes(path: Path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A safetensors file with these tensor names and shapes, all zeros, written sparse: the header
    ``read_adapter`` reads, without gigabytes of data for a full-size model's saved modules."""
    import json
    import struct

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for key, shape in shapes.items():
        size = 1
        for s in shape:
            size *= s
        header[key] = {"dtype": "I8", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + offset)


def adapter_from_plan(plan, tree, folder: Path) -> None:
    """What PEFT's save_pretrained writes for ``plan`` (adapter_config.json, tensor names and shapes)."""
    plan.to_lora_config().save_pretrained(folder)
    prefix = "base_model.model."
    shapes: dict[str, tuple[int, ...]] = {}
    for t in plan.module_targets:
        a, b = ("lora_embedding_A", "lora_embedding_B") if t.kind == "embedding" else ("lora_A.weight", "lora_B.weight")
        shapes[f"{prefix}{t.name}.{a}"] = (t.r, t.in_features)
        shapes[f"{prefix}{t.name}.{b}"] = (t.out_features, t.r)
    by_module: dict[str, list] = {}
    for t in plan.parameter_targets:  # several on one module nest: the last listed is the outermost
        by_module.setdefault(t.name.rpartition(".")[0], []).append(t)
    for module, targets in by_module.items():
        for depth, t in enumerate(reversed(targets)):
            owner = module + ".base_layer" * depth
            shapes[f"{prefix}{owner}.lora_A.weight"] = (t.r * t.experts, t.in_features)
            shapes[f"{prefix}{owner}.lora_B.weight"] = (t.out_features, t.r * t.experts)
    for m in plan.full_modules:
        for name, shape in tree.params:
            if name.startswith(m.name + "."):
                shapes[prefix + name] = shape
    _write_shapes(folder / "adapter_model.safetensors", shapes)


def rank_one(spec) -> dict:
    """The example spec at rank 1 (2 where it sets a component's rank of its own, to keep that difference)."""
    data = spec.model_dump(mode="json", exclude_unset=True)
    data["r"] = 1
    for component in ("vision", "audio", "language", "projector"):
        if isinstance(data.get(component), dict) and "r" in data[component]:
            data[component]["r"] = 2
    return data


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_spec_comes_back_from_an_adapter_of_its_plan(path, tmp_path):
    from vlora_core import load_spec

    registry = default_registry()
    spec = load_spec(path)
    tree = module_tree(spec.model_ref(), registry, label=spec.model)
    plan = resolve(rank_one(spec), tree, registry=registry)
    adapter_from_plan(plan, tree, tmp_path)
    found = spec_for_adapter(read_adapter(tmp_path, registry), tree, registry)
    same_plan(found.plan, plan)
    assert not found.unexpressed
