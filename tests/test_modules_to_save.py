"""``modules_to_save``: modules trained in full outside the LoRA targets (lm_head, embed_tokens), on the tiny
plain-torch VLM with real PEFT: what the plan says, what PEFT gets, what apply trains, and the refusals."""

from __future__ import annotations

import pytest
import torch
from tinyvlm import HIDDEN, TinyVLM, batch, make_registry, tiny_architecture

from vlora_core import (
    ComponentOverlapError,
    ResolutionErrors,
    UserPatternError,
    apply,
    diff_lock,
    make_lock,
    resolve,
)

REGISTRY = make_registry(tiny_architecture())
VOCAB = 32


def plan(spec: dict, model=None):
    return resolve(spec, model or TinyVLM(), registry=REGISTRY)


def test_saved_modules_are_in_the_plan_the_config_and_the_totals():
    base = plan({})
    saved = plan({"modules_to_save": ["lm_head", r"em.ed"]})
    assert [(m.name, m.component, m.params) for m in saved.full_modules] == [
        ("embed", "", VOCAB * HIDDEN), ("lm_head", "", VOCAB * HIDDEN)]  # in model order
    assert saved.targets == base.targets
    assert saved.trainable_params == base.trainable_params + 2 * VOCAB * HIDDEN
    assert saved.memory()["adapter_training_bytes"] == 16 * saved.trainable_params  # fp32: weights, grads, m, v
    assert saved.to_lora_config().modules_to_save == ["embed", "lm_head"]
    table = saved.table()
    assert f"fully trained: lm_head (outside the components, {VOCAB * HIDDEN:,} parameters)" in table
    assert f"trainable parameters: {saved.trainable_params:,}" in table
    assert [m["name"] for m in saved.to_dict()["full_modules"]] == ["embed", "lm_head"]


def test_a_plain_name_matches_the_modules_it_ends_and_a_pattern_must_fullmatch():
    names = [m.name for m in plan({"modules_to_save": ["norm"]}).full_modules]
    assert names == [f"vision.layers.{i}.norm" for i in range(4)] + [f"vision_global.layers.{i}.norm"
                                                                     for i in range(2)] + \
        [f"language.layers.{i}.norm" for i in range(3)]
    assert {m.component for m in plan({"modules_to_save": [r"language\.layers\.0\.norm"]}).full_modules} == \
        {"language"}
    with pytest.raises(UserPatternError, match="matches no module"):
        plan({"modules_to_save": [r"lm_hea"]})  # a pattern fullmatches; no partial names


def test_apply_trains_exactly_the_plan_with_saved_modules():
    model = TinyVLM()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    peft_model = apply(model, {"modules_to_save": ["lm_head", "embed"], "finetune_vision_layers": False},
                       registry=REGISTRY)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for n, p in peft_model.named_parameters() if n in trainable) == \
        peft_model.vlora_plan.trainable_params
    assert {n for n in trainable if "modules_to_save" in n} == {
        "base_model.model.embed.modules_to_save.default.weight",
        "base_model.model.lm_head.modules_to_save.default.weight"}
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model(*batch()).square().mean().backward()
    optimizer.step()
    for name, p in peft_model.named_parameters():
        original = name.removeprefix("base_model.model.").replace(".base_layer", "")
        original = original.replace(".original_module", "")
        if name not in trainable and original in before:
            assert torch.equal(p, before[original]), name  # the saved modules' originals stay as they were
    saved_copy = peft_model.base_model.model.lm_head.modules_to_save["default"].weight
    assert not torch.equal(saved_copy, before["lm_head.weight"])


@pytest.mark.parametrize(("entry", "message"), [
    (r"vision\.layers\.0\.attn\.q", "which is the LoRA target vision.layers.0.attn.q"),
    (r"language\.layers\.1", "which holds the LoRA target language.layers.1.attn.k and 5 more"),
    ("vision", "which holds the LoRA target"),
])
def test_a_saved_module_never_is_or_holds_a_target(entry, message):
    with pytest.raises(ComponentOverlapError, match=message) as info:
        plan({"modules_to_save": [entry]})
    assert info.value.location.field == "modules_to_save[0]"
    assert "exclude_modules" in info.value.hint
    # dropping the targets makes the same entry legal
    fine = plan({"modules_to_save": [r"language\.layers\.1"], "exclude_modules": [r"language\.layers\.1\..*"]})
    assert [m.name for m in fine.full_modules] == ["language.layers.1"]


def test_the_projector_in_full_mode_is_not_saved_twice():
    with pytest.raises(ComponentOverlapError, match="which is the projector projector, trained in full already"):
        plan({"finetune_projector": "full", "modules_to_save": ["projector"]})
    with pytest.raises(ComponentOverlapError, match="inside the projector"):
        plan({"finetune_projector": "full", "modules_to_save": [r"projector\.linear_1"]})


def test_every_bad_entry_is_reported_at_once():
    with pytest.raises(ResolutionErrors) as info:
        plan({"modules_to_save": ["nothing", "lm_head", r"vision\.layers\.0\.attn\.q"]})
    assert [e.location.field for e in info.value.errors] == ["modules_to_save[0]", "modules_to_save[2]"]


def test_only_saved_modules_is_a_plan():
    only = plan({"finetune_vision_layers": False, "finetune_language_layers": False, "modules_to_save": ["lm_head"]})
    assert not only.targets and [m.name for m in only.full_modules] == ["lm_head"]


def test_the_lock_records_saved_modules_and_the_diff_sees_a_new_one():
    before = plan({"modules_to_save": ["lm_head"]})
    lock = make_lock(before)
    assert lock["full_modules"] == [{"name": "lm_head", "component": "", "leaf": "lm_head",
                                     "params": VOCAB * HIDDEN}]
    assert diff_lock(lock, before).ok
    after = plan({"modules_to_save": ["lm_head", "embed"]})
    diff = diff_lock(lock, after)
    assert diff.full_added == ["embed"] and not diff.full_removed
