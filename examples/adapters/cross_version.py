"""An adapter saved under one transformers version, loaded under another: the check .ci/run makes between its
two environments (transformers 4.57, whose LLaVA names its vision layers ``model.vision_tower.vision_model.
encoder.layers.N``, and 5.x, where they are ``model.vision_tower.encoder.layers.N``).

    python examples/adapters/cross_version.py save DIR     # a tiny LLaVA, an adapter on it, its outputs
    python examples/adapters/cross_version.py verify DIR   # check, migrate, load, compare the outputs

``verify`` runs ``vlora adapter check`` (which must say whether the names moved), migrates the adapter for the
installed layout where they did, loads it with PEFT (no missing or unexpected key) and compares the outputs
with the ones saved (equal within 1e-5; other versions may round differently). Exits non-zero on a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import transformers
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file
from transformers import LlavaForConditionalGeneration

from vlora_core import apply, check_adapter, default_registry, migrate_adapter, module_tree, read_adapter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_adapters import tiny_llava  # the same tiny LLaVA as the example adapter

SPEC = {"finetune_projector": "lora", "init_lora_weights": False, "modules_to_save": ["lm_head"]}


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return dict(input_ids=torch.tensor([[1, 5, *[100] * 4, 6, 7, 2]]), pixel_values=torch.randn(1, 3, 8, 8))


def save(folder: Path) -> None:
    model = tiny_llava()
    model.save_pretrained(folder / "base")
    peft_model = apply(model, SPEC).eval()
    peft_model.save_pretrained(folder / "adapter")
    with torch.no_grad():
        torch.save(peft_model(**batch()).logits, folder / "logits.pt")
    (folder / "versions.json").write_text(json.dumps({"transformers": transformers.__version__}))
    print(f"saved under transformers {transformers.__version__}: {len(peft_model.vlora_plan.targets)} targets")


def verify(folder: Path) -> None:
    registry = default_registry()
    saved_under = json.loads((folder / "versions.json").read_text())["transformers"]
    base = LlavaForConditionalGeneration.from_pretrained(folder / "base").eval()
    adapter = read_adapter(folder / "adapter", registry)
    result = check_adapter(adapter, module_tree(base, registry))
    print(f"saved under transformers {saved_under} ({adapter.layout}), loading under {transformers.__version__}: "
          + ("loads as it is" if result.ok else f"{len(result.unmatched)} modules moved"))
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
        logits = peft_model(**batch()).logits
    expected = torch.load(folder / "logits.pt")
    worst = float((logits - expected).abs().max())
    print(f"loaded with no missing or unexpected key; outputs differ from the saved ones by at most {worst:.2e}")
    if worst > 1e-5:
        raise SystemExit("the outputs differ")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "verify"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    (save if args.action == "save" else verify)(args.folder)


if __name__ == "__main__":
    main()
