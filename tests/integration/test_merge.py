"""Merging proves itself: on a tiny model of every family a built-in plugin handles, the merged modules give the
adapted outputs and every target changed; a merge that silently leaves the base (PEFT's unload instead of its
merge) is caught; `vlora adapter merge` writes the merged model as save_pretrained does (shards, the base's
dtype, the base's tokenizer files) and refuses a quantized base and an output onto its input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from peft.tuners.lora import LoraModel

from vlora_core import UsageError, apply, merge
from vlora_core.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from families import FAMILIES, spec_for, tiny

# random B (init_lora_weights: false): every adapter is non-zero, so every target must change
SPEC = {"finetune_vision_layers": True, "finetune_projector": "lora", "init_lora_weights": False}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_merges_and_proves_it(family):
    peft_model = apply(tiny(family), spec_for(family, SPEC)).eval()
    plan = peft_model.vlora_plan
    result = merge(peft_model)
    assert result.ok, result.report()
    assert result.modules + result.parameters == len(plan.targets)
    assert result.changed == len(plan.targets) and result.unchanged_zero == 0
    assert result.max_difference <= result.tolerance
    assert not any("lora_" in n for n, _ in result.model.named_parameters())  # the adapters are gone


def test_a_merge_that_leaves_the_base_is_caught(monkeypatch):
    peft_model = apply(tiny("qwen2_vl"), {**SPEC, "modules_to_save": ["lm_head"]}).eval()
    monkeypatch.setattr(LoraModel, "merge_and_unload", lambda self, *a, **k: self.unload())
    result = merge(peft_model)
    assert not result.ok
    assert any("equals the base" in p for p in result.problems)
    assert "the merge does NOT hold" in result.report()


def test_tied_embeddings_trained_in_full_stay_tied(monkeypatch):
    peft_model = apply(tiny("gemma3"), {**SPEC, "modules_to_save": ["lm_head"]})  # Gemma-3 ties them
    result = merge(peft_model)
    assert result.ok and result.tied == ["embeddings"]
    assert sorted(result.saved) == ["lm_head", "model.language_model.embed_tokens"]
    # a merge that leaves the two apart, with the trained lm_head only: caught, as save_pretrained would lose one
    peft_model = apply(tiny("gemma3"), {**SPEC, "modules_to_save": ["lm_head"]})
    original = LoraModel.merge_and_unload

    def untie(self, *args, **kwargs):
        merged = original(self, *args, **kwargs)
        merged.lm_head.weight = torch.nn.Parameter(merged.lm_head.weight.detach() + 1)
        return merged

    monkeypatch.setattr(LoraModel, "merge_and_unload", untie)
    assert any("ties its input and output embeddings" in p for p in merge(peft_model).problems)


def test_a_zero_adapter_leaves_its_module_and_says_so():
    peft_model = apply(tiny("llava"), {"finetune_vision_layers": False}).eval()  # PEFT's default: B = 0
    result = merge(peft_model)
    assert result.ok and result.changed == 0 and result.unchanged_zero == result.modules > 0
    assert "all zeros (never trained)" in result.report()


def test_a_quantized_base_is_refused():
    peft_model = apply(tiny("llava"), SPEC)
    peft_model.get_base_model().is_loaded_in_4bit = True
    with pytest.raises(UsageError, match="quantized") as caught:
        merge(peft_model)
    assert "bf16" in caught.value.hint
    assert any("lora_A" in n for n, _ in peft_model.named_parameters())  # nothing was merged


@pytest.fixture
def folders(tmp_path):
    """A bf16 base with its tokenizer file, and an adapter trained on it (random B, a saved lm_head)."""
    base = tiny("qwen2_vl").to(torch.bfloat16)
    base.save_pretrained(tmp_path / "base")
    (tmp_path / "base" / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    peft_model = apply(base, {**SPEC, "modules_to_save": ["lm_head"]})
    peft_model.save_pretrained(tmp_path / "adapter")
    return tmp_path


def test_the_command_writes_the_merged_model_as_save_pretrained_does(folders, monkeypatch, capsys):
    monkeypatch.setattr(sys.modules["vlora_core.adapters.merge"], "MAX_SHARD", "20KB")  # a tiny model in several shards
    out = folders / "merged"
    code = main(["adapter", "merge", str(folders / "adapter"), "--model", str(folders / "base"), "-o", str(out),
                 "--json"])
    proof = json.loads(capsys.readouterr().out)
    assert code == 0 and proof["ok"] and proof["written"] == str(out)
    assert proof["dtype"] == "bfloat16" and proof["saved"] == ["lm_head"]
    assert (out / "model.safetensors.index.json").is_file() and len(list(out.glob("model-*.safetensors"))) > 1
    assert json.loads((out / "tokenizer_config.json").read_text()) == {"model_max_length": 64}
    reloaded = type(tiny("qwen2_vl")).from_pretrained(out).eval()
    assert reloaded.dtype == torch.bfloat16
    adapted = PeftModel.from_pretrained(type(reloaded).from_pretrained(folders / "base"), folders / "adapter").eval()
    ids = {"input_ids": torch.tensor([[5, 6, 7, 8, 9]])}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**ids).logits.float(), adapted(**ids).logits.float(), atol=0.05,
                                   rtol=0.05)
        with adapted.disable_adapter():
            assert not torch.allclose(reloaded(**ids).logits.float(), adapted(**ids).logits.float(), atol=1e-3)


def test_the_command_refuses_a_quantized_base_and_its_own_inputs(folders, capsys):
    config = json.loads((folders / "base" / "config.json").read_text())
    (folders / "base" / "config.json").write_text(json.dumps(config | {"quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True}}))
    assert main(["adapter", "merge", str(folders / "adapter"), "--model", str(folders / "base"), "-o",
                 str(folders / "out")]) == 2
    assert "quantized" in capsys.readouterr().err and not (folders / "out").exists()
    (folders / "base" / "config.json").write_text(json.dumps(config))
    assert main(["adapter", "merge", str(folders / "adapter"), "--model", str(folders / "base"), "-o",
                 str(folders / "adapter")]) == 2
    assert "one of this command's inputs" in capsys.readouterr().err
