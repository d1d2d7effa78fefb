"""After training: merging gives the adapted model's outputs; saving and reloading keeps every setting the
plan gave PEFT; a second adapter under another name plans and trains on the same model; the same name twice
is a clear error. Tiny Qwen2-VL (rank and alpha per component, a saved module) and Gemma-3 (a bare
projector parameter, adapted through target_parameters)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel

from vlora_core import UsageError, apply, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import image_batch, tiny_model
from tiny_models import gemma, gemma_batch

# random B (init_lora_weights: false), so that the adapters change the outputs from the first step
QWEN_SPEC = {"finetune_projector": "lora", "r": 8, "lora_alpha": 16, "vision": {"r": 4, "lora_alpha": 4},
             "modules_to_save": ["lm_head"], "init_lora_weights": False}
GEMMA_SPEC = {"finetune_projector": "lora", "init_lora_weights": False}


FAMILIES = {"qwen2_vl": (lambda: tiny_model("qwen2_vl"), QWEN_SPEC,
                         lambda m: {k: v for k, v in image_batch(m.config).items() if k != "labels"}),
            "gemma3": (gemma, GEMMA_SPEC, lambda m: gemma_batch())}


@pytest.mark.parametrize("family", FAMILIES)
def test_merge_and_unload_gives_the_adapted_outputs(family):
    make, spec, batch = FAMILIES[family]
    peft_model = apply(make(), spec).eval()
    inputs = batch(peft_model)
    with torch.no_grad():
        adapted = peft_model(**inputs).logits
        with peft_model.disable_adapter():
            plain = peft_model(**inputs).logits
        merged = peft_model.merge_and_unload()(**inputs).logits
    assert not torch.allclose(adapted, plain)  # the adapters do something
    torch.testing.assert_close(merged, adapted, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_reload_keeps_every_setting(family, tmp_path):
    make, spec, batch = FAMILIES[family]
    peft_model = apply(make(), spec).eval()
    plan = peft_model.vlora_plan
    peft_model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(make(), tmp_path).eval()
    saved, want = reloaded.peft_config["default"], plan.to_lora_config()
    assert saved.target_modules == want.target_modules == plan.target_regex
    assert saved.rank_pattern == want.rank_pattern and saved.alpha_pattern == want.alpha_pattern
    assert list(saved.target_parameters or []) == [t.name for t in plan.parameter_targets]
    assert list(saved.modules_to_save or []) == [m.name for m in plan.full_modules]
    assert (saved.r, saved.lora_alpha) == (want.r, want.lora_alpha)
    inputs = batch(peft_model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, peft_model(**inputs).logits)
    if family == "gemma3":
        assert plan.parameter_targets  # the bare projector weight went through target_parameters
    else:
        assert plan.spec.vision.r == 4 and saved.rank_pattern  # per-component rank survived


def test_a_second_adapter_under_another_name():
    peft_model = apply(tiny_model("qwen2_vl"), {"finetune_vision_layers": False, "r": 4})
    first = {n for n, p in peft_model.named_parameters() if ".default." in n}
    apply(peft_model, {"finetune_language_layers": False, "finetune_projector": "lora"}, adapter_name="vision")
    second = peft_model.vlora_plans["vision"]
    assert set(peft_model.vlora_plans) == {"default", "vision"}
    assert {t.component for t in second.targets} == {"vision", "projector"}
    assert {t.name for t in second.targets} == {t.name for t in resolve(
        {"finetune_language_layers": False, "finetune_projector": "lora"}, tiny_model("qwen2_vl")).targets}
    vision = {n for n, p in peft_model.named_parameters() if ".vision." in n}
    assert sum(p.numel() for n, p in peft_model.named_parameters() if n in vision) == second.lora_params
    assert {n for n, p in peft_model.named_parameters() if ".default." in n} == first  # the first is untouched
    peft_model.set_adapter("vision")
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    before = {n: p.detach().clone() for n, p in peft_model.named_parameters()}
    peft_model.train()
    peft_model(**image_batch(peft_model.config)).loss.backward()
    optimizer.step()
    changed = {n for n, p in peft_model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert changed and changed <= vision


def test_the_same_adapter_name_twice_is_a_clear_error():
    peft_model = apply(tiny_model("qwen2_vl"), {"r": 4})
    names = [n for n, _ in peft_model.named_parameters()]
    with pytest.raises(UsageError, match="already has an adapter named 'default'") as info:
        apply(peft_model, {"r": 8})
    assert "adapter_name" in info.value.hint
    assert [n for n, _ in peft_model.named_parameters()] == names  # untouched


def test_a_second_adapter_that_fails_half_way_leaves_the_model_as_it_was(monkeypatch):
    """PEFT adds the adapter, then something fails: the adapter, its config entry and every tensor go back."""
    from vlora_core import VloraError

    peft_model = apply(tiny_model("qwen2_vl"), {"r": 4})
    names = [n for n, _ in peft_model.named_parameters()]
    real = type(peft_model).add_adapter

    def add_then_fail(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(type(peft_model), "add_adapter", add_then_fail)
    with pytest.raises(VloraError, match=r"PEFT failed while adding adapter 'two' .*disk full.*the model was restored"):
        apply(peft_model, {"r": 2}, adapter_name="two")
    assert list(peft_model.peft_config) == ["default"]
    assert [n for n, _ in peft_model.named_parameters()] == names
