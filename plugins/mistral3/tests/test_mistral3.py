"""The Mistral-3 plugin: exact target sets on both layouts, the Pixtral-in-LLaVA variant claimed next to the
LLaVA plugin by its vision sub-config, unused vision layers, full-size counts."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    Mistral3Config,
    Mistral3ForConditionalGeneration,
)

from vlora_core import default_registry, resolve
from vlora_core.testing import check_toggle_combinations, relayout

IMAGE = 100
PIXTRAL = dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=3,
               num_attention_heads=2, head_dim=16, image_size=16, patch_size=4)
MISTRAL = dict(model_type="mistral", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, head_dim=8, vocab_size=128)


def tiny(family: str = "mistral3", **config):
    torch.manual_seed(0)
    if family == "mistral3":
        return Mistral3ForConditionalGeneration(Mistral3Config(vision_config=PIXTRAL, text_config=MISTRAL,
                                                               image_token_index=IMAGE, **config))
    return LlavaForConditionalGeneration(LlavaConfig(vision_config=PIXTRAL, text_config=MISTRAL,
                                                     image_token_index=IMAGE, vision_feature_layer=-1,
                                                     vision_feature_select_strategy="full", **config))


def inputs(family: str) -> dict:
    torch.manual_seed(1)
    # one 16x16 image: 4x4 patches of 4 pixels; Mistral-3 merges 2x2 of them (4 tokens), LLaVA keeps 16
    tokens = 4 if family == "mistral3" else 16
    ids = torch.tensor([[1, 5, *[IMAGE] * tokens, 6, 7, 2]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 16, 16), image_sizes=torch.tensor([[16, 16]]),
                labels=ids)


# transformers 4.50 - 4.51: the parts at the top, the decoder inside language_model
OLD = {"vision_tower": "model.vision_tower", "multi_modal_projector": "model.multi_modal_projector",
       "language_model.model": "model.language_model", "language_model.lm_head": "lm_head"}
PATHS = {"current": ("model.vision_tower.transformer.layers", "model.multi_modal_projector",
                     "model.language_model.layers"),
         "4.50": ("vision_tower.transformer.layers", "multi_modal_projector", "language_model.model.layers")}
V_ATT = ["attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"]
V_MLP = ["feed_forward.gate_proj", "feed_forward.up_proj", "feed_forward.down_proj"]
L_ATT = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
L_MLP = ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def expected(spec: dict, family: str, layout: str, vision_layers: int = 3, language_layers: int = 2) -> set[str]:
    vision, projector, language = PATHS[layout]
    att, mlp = spec["finetune_attention_modules"], spec["finetune_mlp_modules"]
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"{vision}.{i}.{leaf}" for i in range(vision_layers) for leaf in (V_ATT * att + V_MLP * mlp)}
    if spec["finetune_language_layers"]:
        names |= {f"{language}.{i}.{leaf}" for i in range(language_layers) for leaf in (L_ATT * att + L_MLP * mlp)}
    if spec["finetune_projector"] == "lora":
        names |= {f"{projector}.linear_1", f"{projector}.linear_2"}
        if family == "mistral3":
            names.add(f"{projector}.patch_merger.merging_layer")  # the merger is the projector's, never vision's
    return names


@pytest.mark.parametrize("family", ["mistral3", "pixtral_llava"])
def test_conformance(vlora_conformance, family):
    model = tiny(family)
    report = vlora_conformance("mistral3", model, inputs=inputs(family), layouts={"4.50": OLD})
    assert report.plans["lora"].architecture == family


@pytest.mark.parametrize("family", ["mistral3", "pixtral_llava"])
@pytest.mark.parametrize("layout", ["current", "4.50"])
def test_every_combination_on_both_layouts(family, layout):
    model = tiny(family)
    if layout == "4.50":
        model = relayout(model, OLD)
    assert check_toggle_combinations(model, lambda spec: expected(spec, family, layout)) == 48


def test_a_llava_checkpoint_goes_to_the_llava_plugin_and_a_pixtral_one_to_this_one():
    clip = dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16)
    plain = LlavaForConditionalGeneration(LlavaConfig(vision_config=clip, text_config=MISTRAL))
    assert resolve({}, plain).architecture == "llava"  # model_type llava alone: the LLaVA plugin's claim
    plan = resolve({}, tiny("pixtral_llava"))  # model_type llava where vision_config.model_type is pixtral
    assert (plan.architecture, plan.plugin) == ("pixtral_llava", "vlora-core")


@pytest.mark.parametrize(("feature_layer", "used"), [(-1, 3), (-2, 2), (1, 1)])
def test_vision_layers_after_the_feature_layer_are_left_out(feature_layer, used):
    plan = resolve({"task": "domain_adaptation"}, tiny(vision_feature_layer=feature_layer))
    assert {t.layer for t in plan.targets} == set(range(used))
    assert [d.code for d in plan.diagnostics] == ([] if used == 3 else ["unused-layers"])


# --- the full-size reference on the meta device ---------------------------------------------------------

NAME = "Mistral-Small-3.2-24B-Instruct-2506"


def test_full_size_reference_plans_and_counts():
    _, _, ref = default_registry().require_reference(NAME)
    config = json.loads(ref.config_path.read_text())
    v, t = config["vision_config"], config["text_config"]
    r = 8
    plan = resolve({"finetune_projector": "lora", "r": r}, NAME)
    vd, vi, vh = v["hidden_size"], v["intermediate_size"], v["num_attention_heads"] * v["head_dim"]
    h, inter, hd = t["hidden_size"], t["intermediate_size"], t["head_dim"]
    q, kv = t["num_attention_heads"] * hd, t["num_key_value_heads"] * hd
    merged = vd * config["spatial_merge_size"] ** 2
    want = {
        "vision": r * v["num_hidden_layers"] * (3 * (vd + vh) + (vh + vd) + 2 * (vd + vi) + (vi + vd)),
        "projector": r * ((merged + vd) + (vd + h) + (h + h)),
        "language": r * t["num_hidden_layers"] * ((h + q) + 2 * (h + kv) + (q + h) + 3 * (h + inter)),
    }
    got = {c: sum(x.lora_params for x in plan.targets if x.component == c) for c in want}
    assert got == want
    assert plan.layer_counts == {"vision": v["num_hidden_layers"], "language": t["num_hidden_layers"]}
    # parameters from the config's dimensions alone (no biases: multimodal_projector_bias is false)
    vision = vd * 3 * v["patch_size"] ** 2 + vd + v["num_hidden_layers"] * (4 * vd * vh + 3 * vd * vi + 2 * vd)
    projector = vd + merged * vd + vd * h + h * h
    embed = t["vocab_size"] * h
    language = embed + t["num_hidden_layers"] * (2 * h * q + 2 * h * kv + 3 * h * inter + 2 * h) + h
    full = vision + projector + language + embed  # with its own LM head, as the checkpoint stores it
    assert round(full / 1e9) == 24  # Mistral's "24B"
    # measured: transformers 4.57.6 keeps the LM head apart (24,011,361,280); 5.24.0 ties it to the input
    # embeddings for this config (its top-level tie_word_embeddings defaults to true) and counts it once
    from vlora_core.testing import reference_model

    meta = reference_model(NAME)
    tied = meta.lm_head.weight is meta.get_input_embeddings().weight
    assert plan.total_params == full - (embed if tied else 0)


PIXTRAL_REF = "pixtral-12b"
# PixtralVisionConfig's defaults, for the keys the published config leaves out (the model card's 400M Pixtral-ViT)
PIXTRAL_VISION_DEFAULTS = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                           "num_attention_heads": 16, "num_channels": 3}


def test_pixtral_12b_reference_plans_and_counts():
    _, arch, ref = default_registry().require_reference(PIXTRAL_REF)
    assert arch.name == "pixtral_llava" and ref.hub_id == "mistral-community/pixtral-12b"
    config = json.loads(ref.config_path.read_text())
    v = PIXTRAL_VISION_DEFAULTS | config["vision_config"]
    t = config["text_config"]
    r = 8
    plan = resolve({"finetune_projector": "lora", "r": r}, PIXTRAL_REF)
    vd, vi, vh = v["hidden_size"], v["intermediate_size"], v["num_attention_heads"] * v["head_dim"]
    h, inter, hd, heads = t["hidden_size"], t["intermediate_size"], t["head_dim"], 32  # Mistral's default heads
    q, kv = heads * hd, t["num_key_value_heads"] * hd
    want = {
        "vision": r * v["num_hidden_layers"] * (3 * (vd + vh) + (vh + vd) + 2 * (vd + vi) + (vi + vd)),
        "projector": r * ((vd + h) + (h + h)),
        "language": r * t["num_hidden_layers"] * ((h + q) + 2 * (h + kv) + (q + h) + 3 * (h + inter)),
    }
    assert {c: sum(x.lora_params for x in plan.targets if x.component == c) for c in want} == want
    assert plan.layer_counts == {"vision": v["num_hidden_layers"], "language": t["num_hidden_layers"]}
    # parameters from the config's dimensions: the patch convolution without bias, RMSNorms, no attention biases;
    # the projector's two Linears with biases (multimodal_projector_bias defaults to true)
    vision = vd * v["num_channels"] * v["patch_size"] ** 2 + vd + v["num_hidden_layers"] * (
        4 * vd * vh + 3 * vd * vi + 2 * vd)
    projector = vd * h + h + h * h + h
    embed = t["vocab_size"] * h
    language = embed + t["num_hidden_layers"] * (2 * h * q + 2 * h * kv + 3 * h * inter + 2 * h) + h
    full = vision + projector + language + embed  # its own LM head (text_config leaves tying off)
    assert round(full / 1e9, 1) == 12.7  # the model card's "12B decoder + 400M vision encoder"
    from vlora_core.testing import reference_model

    meta = reference_model(PIXTRAL_REF)
    tied = meta.lm_head.weight is meta.get_input_embeddings().weight
    assert plan.total_params == full - (embed if tied else 0)
