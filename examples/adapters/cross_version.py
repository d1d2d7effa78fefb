"""An adapter saved under one transformers version, loaded under another: the check .ci/run makes between its
two environments (transformers 4.57 and 5.x), for two kinds of change:

* ``llava``: the names moved (4.57's LLaVA names its vision layers ``model.vision_tower.vision_model.encoder.
  layers.N``, 5.x ``model.vision_tower.encoder.layers.N``);
* ``qwen3_vl_moe``: the weights moved (Qwen3-VL-MoE's fused expert weights are (experts, hidden, 2 x inter) in
  4.57 and (experts, 2 x inter, hidden) in 5.x: an expert adapter's LoRA weights must be transposed, not renamed).

    python examples/adapters/cross_version.py save DIR [--family F]     # a tiny model, an adapter, its outputs
    python examples/adapters/cross_version.py verify DIR                # check, migrate, load, compare outputs

``verify`` runs ``vlora adapter check`` (which must say whether the names or the expert layout moved), migrates
the adapter for the installed layout where they did, loads it with PEFT (no missing or unexpected key) and
compares the outputs with the ones saved (equal within 1e-5; other versions may round differently). Exits
non-zero on a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from vlora_core import apply, check_adapter, default_registry, migrate_adapter, module_tree, read_adapter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "plugins" / "qwen3_vl" / "tests"))
from make_adapters import tiny_llava  # noqa: E402 (the same tiny LLaVA as the example adapter)

SPEC = {"finetune_projector": "lora", "init_lora_weights": False, "modules_to_save": ["lm_head"]}


def llava_batch(model_config) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return dict(input_ids=torch.tensor([[1, 5, *[100] * 4, 6, 7, 2]]), pixel_values=torch.randn(1, 3, 8, 8))


def qwen3_moe_batch(model_config) -> dict[str, torch.Tensor]:
    from qwen3_tiny import image_batch

    # mm_token_type_ids: 5.x asks for it with an image, 4.57 has no such argument
    keep = {"input_ids", "pixel_values", "image_grid_thw"} | (
        {"mm_token_type_ids"} if Version(transformers.__version__).major >= 5 else set())
    return {k: v for k, v in image_batch(model_config).items() if k in keep}


def qwen3_moe():
    from qwen3_tiny import tiny_model

    return tiny_model("qwen3_vl_moe")


# family -> (the tiny model, its batch, the spec trained: experts included where the family has them)
FAMILIES = {"llava": (tiny_llava, llava_batch, SPEC),
            "qwen3_vl_moe": (qwen3_moe, qwen3_moe_batch, {**SPEC, "finetune_vision_layers": False})}


def save(folder: Path, family: str) -> None:
    make, batch, spec = FAMILIES[family]
    model = make()
    model.save_pretrained(folder / "base")
    peft_model = apply(model, spec).eval()
    peft_model.save_pretrained(folder / "adapter")
    with torch.no_grad():
        torch.save(peft_model(**batch(model.config)).logits, folder / "logits.pt")
    (folder / "versions.json").write_text(json.dumps({"transformers": transformers.__version__, "family": family}))
    experts = sum(t.experts > 1 for t in peft_model.vlora_plan.targets)
    print(f"{family} saved under transformers {transformers.__version__}: {len(peft_model.vlora_plan.targets)} "
          f"targets ({experts} fused expert weights)")


def verify(folder: Path) -> None:
    registry = default_registry()
    saved = json.loads((folder / "versions.json").read_text())
    saved_under, family = saved["transformers"], saved.get("family", "llava")
    make, batch, _ = FAMILIES[family]
    base = type(make()).from_pretrained(folder / "base").eval()
    adapter = read_adapter(folder / "adapter", registry)
    result = check_adapter(adapter, module_tree(base, registry))
    names = adapter.layout or "one naming in every version"
    print(f"{family} saved under transformers {saved_under} ({names}), loading under "
          f"{transformers.__version__}: " + ("loads as it is" if result.ok else
                                             f"{len(result.unmatched)} modules moved, "
                                             f"{len(result.transposed)} expert weights transposed"))
    target = folder / "adapter"
    if not result.ok:
        if not result.migratable:
            raise SystemExit("the adapter does not load and cannot be migrated:\n" + result.report())
        target = migrate_adapter(adapter, module_tree(base, registry), folder / "migrated")
    peft_model = get_peft_model(base, LoraConfig.from_pretrained(target)).eval()
    loaded = set_peft_model_state_dict(peft_model, load_file(target / "adapter_model.safetensors"))
    lost = [k for k in loaded.missing_keys if ".lora_" in k or "modules_to_save" in k]
    if loaded.unexpected_keys or lost:
        raise SystemExit(f"PEFT did not load it whole: unexpected {loaded.unexpected_keys[:3]}, missing {lost[:3]}")
    with torch.no_grad():
        logits = peft_model(**batch(base.config)).logits
    expected = torch.load(folder / "logits.pt")
    worst = float((logits - expected).abs().max())
    print(f"loaded with no missing or unexpected key; outputs differ from the saved ones by at most {worst:.2e}")
    if worst > 1e-5:
        raise SystemExit("the outputs differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "verify"])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--family", choices=sorted(FAMILIES), default="llava", help="save: the model family")
    args = parser.parse_args()
    if args.action == "save":
        save(args.folder, args.family)
    else:
        verify(args.folder)


if __name__ == "__main__":
    main()
