"""The FastVLM plugin: timm's FastViTHD vision tower (stages as stacks; attention only in the last two; 1 x 1
convolution MLPs; depthwise convolutions never), the projector and the Qwen2 language model; forward and backward
through ``apply`` on a tiny model whose vision tower is the real ``fastvit_mci3``; the full-size default config on
the meta device. Needs timm (and torchvision): CI runs these in its timm environment."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("timm", reason="FastVLM's vision tower is timm's: run in the timm environment")

from transformers import AutoConfig, AutoModelForImageTextToText

from vlora_core import apply, resolve

IMAGE = 100
ALL_ON = {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
          "finetune_mlp_modules": True, "finetune_projector": "lora"}


def tiny():
    torch.manual_seed(0)
    config = AutoConfig.for_model(
        "fast_vlm", image_token_index=IMAGE,
        text_config=dict(model_type="qwen2", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, vocab_size=128))
    model = AutoModelForImageTextToText.from_config(config)
    # transformers' initialisation of the reparameterised FastViT lets activations vanish to exactly zero by the
    # third stage (no gradient reaches the tower); trained weights keep them at scale, so do that here
    with torch.no_grad():
        for module in model.model.vision_tower.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_targets_per_part(model):
    plan = resolve(ALL_ON, model)
    assert plan.architecture == "fast_vlm" and plan.inferred is None
    stages = model.model.vision_tower.timm_model.stages
    by = {}
    for t in plan.targets:
        by.setdefault((t.component, t.role), set()).add(t.name)
    prefix = "model.vision_tower.timm_model.stages"
    attention = {f"{prefix}.{s}.blocks.{b}.token_mixer.{leaf}" for s, stage in enumerate(stages)
                 for b, block in enumerate(stage.blocks) if hasattr(block.token_mixer, "qkv")
                 for leaf in ("qkv", "proj")}
    assert by[("vision", "attention")] == attention and attention  # the attention stages only
    assert by[("vision", "mlp")] == {f"{prefix}.{s}.blocks.{b}.mlp.{leaf}" for s, stage in enumerate(stages)
                                     for b in range(len(stage.blocks)) for leaf in ("fc1", "fc2")}
    assert by[("projector", "projection")] == {"model.multi_modal_projector.linear_1",
                                               "model.multi_modal_projector.linear_2"}
    assert plan.layer_counts == {**{f"vision.{s}": len(stage.blocks) for s, stage in enumerate(stages)},
                                 "language": 2}
    assert all(model.get_submodule(n).groups == 1 for n in by[("vision", "mlp")])


def test_forward_and_backward_through_apply():
    model = tiny()
    ids = torch.tensor([[1] + [IMAGE] * 16 + [5, 6, 7]])  # a 256 x 256 image: 4 x 4 tokens after a stride of 64
    peft_model = apply(model, ALL_ON)
    peft_model.train()(input_ids=ids, pixel_values=torch.randn(1, 3, 256, 256), labels=ids).loss.backward()
    plan = peft_model.vlora_plan
    modules = dict(peft_model.base_model.model.named_modules())
    for key in {(t.component, t.placement.stack) for t in plan.targets}:
        grads = [modules[t.name].lora_B["default"].weight.grad for t in plan.targets
                 if (t.component, t.placement.stack) == key]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key


def test_the_full_size_default_config_on_the_meta_device():
    config = AutoConfig.for_model("fast_vlm")
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    plan = resolve(ALL_ON, model)
    assert plan.layer_counts["language"] == config.text_config.num_hidden_layers
    assert [plan.layer_counts[f"vision.{i}"] for i in range(5)] == [
        len(stage.blocks) for stage in model.model.vision_tower.timm_model.stages]
