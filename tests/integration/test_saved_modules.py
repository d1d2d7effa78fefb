"""``modules_to_save`` on real transformers models: tied input/output embeddings (one copy trained for both,
as PEFT's ensure_weight_tying does, with a warning), untied ones, and a module without weights."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen2VLForConditionalGeneration

from vlora_core import UserPatternError, apply, resolve

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "qwen2_vl" / "tests"))
from qwen_tiny import image_batch, tiny_config

EMBED = "model.language_model.embed_tokens"


def model(tied: bool):
    config = tiny_config("qwen2_vl")
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = tied
    torch.manual_seed(0)
    return Qwen2VLForConditionalGeneration(config)


def step(peft_model) -> None:
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    peft_model(**image_batch(peft_model.config)).loss.backward()
    optimizer.step()


@pytest.mark.parametrize("entry", ["lm_head", "embed_tokens"])
def test_tied_embeddings_train_one_copy_for_both(entry):
    tiny = model(tied=True)
    vocab, hidden = tiny.lm_head.weight.shape
    plan = resolve({"modules_to_save": [entry]}, tiny)
    assert {m.name for m in plan.full_modules} == {EMBED, "lm_head"}
    assert sum(m.params for m in plan.full_modules) == vocab * hidden  # one weight, counted once
    assert {m.name: m.tied_to for m in plan.full_modules} == {EMBED: "lm_head", "lm_head": EMBED}
    assert [d.code for d in plan.diagnostics] == ["tied-weights"]
    assert "PEFT trains one copy for both" in plan.warnings[0] and "untie them first" in plan.warnings[0]
    assert plan.to_lora_config().ensure_weight_tying is True

    head_before = tiny.lm_head.weight.detach().clone()
    peft_model = apply(tiny, {"modules_to_save": [entry]})
    step(peft_model)
    inner = peft_model.base_model.model
    embed = inner.model.language_model.embed_tokens.modules_to_save["default"].weight
    head = inner.lm_head.modules_to_save["default"].weight
    assert embed is head  # still one weight
    assert not torch.equal(head, head_before)


def test_untied_embeddings_are_saved_separately():
    tiny = model(tied=False)
    plan = resolve({"modules_to_save": ["lm_head", "embed_tokens"]}, tiny)
    assert [(m.name, m.component, m.leaf) for m in plan.full_modules] == [
        (EMBED, "language", "embed_tokens"), ("lm_head", "", "lm_head")]
    assert not plan.diagnostics and plan.to_lora_config().ensure_weight_tying is False
    peft_model = apply(tiny, {"modules_to_save": ["lm_head", "embed_tokens"]})
    assert sum(p.numel() for p in peft_model.parameters() if p.requires_grad) == plan.trainable_params


def test_a_module_without_weights_is_refused():
    with pytest.raises(UserPatternError, match="has no parameters to train"):
        resolve({"modules_to_save": ["rotary_emb"]}, model(tied=False))
