"""Two variants under one model_type: a plugin claims a model by its config as well (``ArchitectureSpec.when``);
the most specific claim whose conditions hold wins, next to the built-in plugins, and two claims of equal
specificity that both hold are a conflict naming both. Tested with third-party plugins installed the way
pip installs them."""

from __future__ import annotations

import pytest
import torch
from tinyvlm import install_plugin
from transformers import LlavaConfig, LlavaForConditionalGeneration

from vlora_core import PluginConflictError, Registry, resolve

SPECIALISE = """
from vlora_core import ArchitectureSpec, hookimpl, vision_tower_components

@hookimpl
def vlora_architectures():
    return [ArchitectureSpec(name="{name}", title="LLaVA, reviewed by someone else", model_types=("llava",),
                             when={when!r}, components=vision_tower_components(projection=("linear_1", "linear_2")))]
"""
CLIP = dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
            num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16)
TEXT = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=128)


def llava(text_type: str) -> torch.nn.Module:
    return LlavaForConditionalGeneration(LlavaConfig(vision_config=CLIP, text_config=dict(TEXT, model_type=text_type)))


def test_a_third_party_plugin_specialises_the_built_in_one_by_config(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-someone-llama", "vt_llama",
                   SPECIALISE.format(name="llava_llama", when={"text_config.model_type": "llama"}))
    registry = Registry.discover(disabled=[])
    assert registry.conflicts() == {}  # another claim (model_type plus a condition), not the same one
    on_llama = resolve({}, llava("llama"), registry=registry)
    assert (on_llama.architecture, on_llama.plugin) == ("llava_llama", "vlora-someone-llama")
    on_mistral = resolve({}, llava("mistral"), registry=registry)  # the condition does not hold: built-in
    assert (on_mistral.architecture, on_mistral.plugin) == ("llava", "vlora-core")
    # its own patterns (the same as the built-in's here; it has no vlora_unused_layers hook of its own, so the
    # last vision layer, which LLaVA's vision_feature_layer -2 never uses, is a target)
    built_in = resolve({"include_unused_layers": True}, llava("llama"), registry=Registry.discover(
        disabled=["vt_llama"]))
    assert {t.name for t in on_llama.targets} == {t.name for t in built_in.targets}


def test_two_claims_of_equal_specificity_that_both_hold_are_a_conflict(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-someone-llama", "vt_llama",
                   SPECIALISE.format(name="llava_llama", when={"text_config.model_type": "llama"}))
    install_plugin(tmp_path, monkeypatch, "vlora-someone-clip", "vt_clip",
                   SPECIALISE.format(name="llava_clip", when={"vision_config.model_type": "clip_vision_model"}))
    registry = Registry.discover(disabled=[])
    with pytest.raises(PluginConflictError) as info:
        resolve({}, llava("llama"), registry=registry)  # both conditions hold, one each
    text = str(info.value)
    assert "vlora-someone-llama (llava_llama) and vlora-someone-clip (llava_clip)" in text or \
           "vlora-someone-clip (llava_clip) and vlora-someone-llama (llava_llama)" in text
    assert "with equal specificity (1 config condition each)" in text
    assert "VLORA_DISABLE_PLUGINS=vt_" in info.value.hint
    # a Pixtral tower: the CLIP claim does not hold, but vlora-mistral3's Pixtral claim does (one condition too)
    pixtral = dict(model_type="pixtral", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                   num_attention_heads=2, head_dim=16, image_size=16, patch_size=4)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=pixtral,
                                                      text_config=dict(TEXT, model_type="llama")))
    with pytest.raises(PluginConflictError):  # llama claim (1) vs vlora-mistral3's pixtral claim (1): both hold
        resolve({}, model, registry=registry)
    mistral_text = LlavaForConditionalGeneration(LlavaConfig(vision_config=pixtral,
                                                             text_config=dict(TEXT, model_type="mistral")))
    assert resolve({}, mistral_text, registry=registry).architecture == "pixtral_llava"


def test_the_same_conditions_twice_are_listed_as_a_conflict(tmp_path, monkeypatch):
    for dist, module in (("vlora-someone-a", "vt_a"), ("vlora-someone-b", "vt_b")):
        install_plugin(tmp_path, monkeypatch, dist, module,
                       SPECIALISE.format(name=module, when={"text_config.model_type": "llama"}))
    conflicts = Registry.discover(disabled=[]).conflicts()
    assert list(conflicts) == ["llava where text_config.model_type = 'llama'"]
