"""The Gemma-3n plugin: timm's MobileNetV5 vision tower (stages as stacks, convolution targets, depthwise and
Conv2dSame convolutions never), the audio conformer and its toggle, the projector's audio part following it, the
per-layer-input path, AltUp and LAuReL never targets; forward and backward through ``apply`` on a tiny model whose
vision tower is the real MobileNetV5-300M (timm has no smaller one); the full-size default config on the meta
device. Needs timm (and torchvision): CI runs these in its timm environment (README, "Environments")."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm", reason="Gemma-3n's vision tower is timm's: run in the timm environment")

from transformers import Gemma3nConfig, Gemma3nForConditionalGeneration  # noqa: E402

from vlora_core import SpecArchitectureMismatch, apply, default_registry, resolve, tree_from_module  # noqa: E402

IMAGE = 258
AUDIO = 386
ALL_ON = {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
          "finetune_mlp_modules": True}


def tiny() -> Gemma3nForConditionalGeneration:
    torch.manual_seed(0)
    text = dict(hidden_size=32, intermediate_size=[64] * 4, num_hidden_layers=4, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, sliding_window=8,
                layer_types=["sliding_attention", "full_attention"] * 2, num_kv_shared_layers=2,
                hidden_size_per_layer_input=4, vocab_size=512, vocab_size_per_layer_input=512, altup_num_inputs=2,
                laurel_rank=4, activation_sparsity_pattern=[0.0] * 4, max_position_embeddings=512)
    audio = dict(hidden_size=32, conf_num_hidden_layers=2, conf_num_attention_heads=2, input_feat_size=16,
                 vocab_size=128, vocab_offset=384, sscp_conv_channel_size=[8, 4], conf_attention_chunk_size=4,
                 conf_attention_context_left=5, conf_attention_context_right=0)
    config = Gemma3nConfig(text_config=text, audio_config=audio, vision_config=dict(vocab_size=128, vocab_offset=256),
                           audio_soft_tokens_per_image=4, boi_token_id=256, eoi_token_id=257, image_token_id=IMAGE,
                           boa_token_id=384, eoa_token_id=385, audio_token_id=AUDIO)
    return Gemma3nForConditionalGeneration(config)


def inputs() -> dict:
    """A 256 x 256 image (MobileNetV5's fusion adapter makes it 16 x 16 = 256 soft tokens) and 64 audio frames
    (4 soft tokens), each at its token's place."""
    torch.manual_seed(1)
    ids = torch.tensor([[2] + [IMAGE] * 256 + [5, 6, 7] + [AUDIO] * 4 + [8, 9]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 256, 256), input_features=torch.randn(1, 64, 16),
                input_features_mask=torch.ones(1, 64, dtype=torch.bool), labels=ids)


def modules_of(model, kind, under: str, leaves: tuple[str, ...]) -> set[str]:
    """Names of modules of ``kind`` under ``under`` whose name ends with one of ``leaves`` (transformers' and
    timm's own attribute names), written out independently of the plugin."""
    return {n for n, m in model.named_modules() if isinstance(m, kind) and n.startswith(under + ".")
            and n.endswith(leaves)}


VISION_ATTENTION = ("attn.query.proj", "attn.key.proj", "attn.value.proj", "attn.output.proj")
VISION_MLP = ("pw_exp.conv", "pw_proj.conv", "conv_pwl")
AUDIO_LEAVES = ("q_proj", "k_proj", "v_proj", "attention.post", "pos_proj", "ffw_layer_1", "ffw_layer_2",
                "linear_start", "linear_end")
LANGUAGE_LEAVES = (*(f"self_attn.{p}_proj" for p in "qkvo"), "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@pytest.fixture(scope="module")
def model():
    return tiny()


def test_targets_per_toggle(model):
    plan = resolve({**ALL_ON, "finetune_projector": "lora"}, model)
    assert plan.inferred is None and plan.architecture == "gemma3n"
    by = {}
    for t in plan.targets:
        by.setdefault(t.component, set()).add(t.name)
    blocks = "model.vision_tower.timm_model.blocks"
    vision = modules_of(model, torch.nn.Conv2d, blocks, VISION_ATTENTION + VISION_MLP)
    assert by["vision"] == vision
    assert all(model.get_submodule(n).groups == 1 for n in vision)  # never a depthwise convolution
    assert by["audio"] == modules_of(model, torch.nn.Linear, "model.audio_tower.conformer", AUDIO_LEAVES)
    assert by["language"] == modules_of(model, torch.nn.Linear, "model.language_model.layers", LANGUAGE_LEAVES)
    assert by["projector"] == {"model.embed_vision.embedding_projection", "model.embed_audio.embedding_projection",
                               "model.vision_tower.timm_model.msfa.ffn.pw_exp.conv",
                               "model.vision_tower.timm_model.msfa.ffn.pw_proj.conv"}
    stages = {t.placement.stack for t in plan.targets if t.component == "vision"}
    assert stages == {str(i) for i in range(len(model.model.vision_tower.timm_model.blocks))}
    never = ("per_layer", "altup", "laurel", "dw_", "down_conv")
    assert not any(part in t.name for t in plan.targets for part in never)


def test_the_audio_toggle_and_the_projector_part_that_follows_it(model):
    on = resolve({**ALL_ON, "finetune_projector": "lora"}, model)
    off = resolve({**ALL_ON, "finetune_projector": "lora", "finetune_audio_layers": False}, model)
    gone = {t.name for t in on.targets} - {t.name for t in off.targets}
    assert gone == {t.name for t in on.targets if t.component == "audio"} | {"model.embed_audio.embedding_projection"}
    vision_only = resolve({"finetune_language_layers": False, "finetune_audio_layers": False,
                           "vision": {"layers": {"3": {"last": 2}}}}, model)
    assert {(t.placement.stack, t.layer) for t in vision_only.targets} == {
        ("3", n) for n in (len(model.model.vision_tower.timm_model.blocks[3]) - 2,
                           len(model.model.vision_tower.timm_model.blocks[3]) - 1)}
    with pytest.raises(SpecArchitectureMismatch):
        resolve({"finetune_cross_attention": True}, model)


def test_forward_and_backward_through_apply():
    model = tiny()
    peft_model = apply(model, {**ALL_ON, "finetune_projector": "lora"})
    peft_model.train()(**inputs()).loss.backward()
    plan = peft_model.vlora_plan
    modules = dict(peft_model.base_model.model.named_modules())
    for key in {(t.component, t.placement.stack) for t in plan.targets}:  # each part, each vision stage, learns
        grads = [modules[t.name].lora_B["default"].weight.grad for t in plan.targets
                 if (t.component, t.placement.stack) == key]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key
    assert not [n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n]


def test_the_full_size_default_config_on_the_meta_device():
    config = Gemma3nConfig()  # transformers' default: E4B's text sizes
    with torch.device("meta"):
        model = Gemma3nForConditionalGeneration(config)
    plan = resolve({**ALL_ON, "finetune_projector": "lora"}, tree_from_module(model), registry=default_registry())
    assert plan.layer_counts["language"] == config.text_config.num_hidden_layers
    assert plan.layer_counts["audio"] == config.audio_config.conf_num_hidden_layers
    stages = [len(stage) for stage in model.model.vision_tower.timm_model.blocks]
    assert [plan.layer_counts[f"vision.{i}"] for i in range(len(stages))] == stages
