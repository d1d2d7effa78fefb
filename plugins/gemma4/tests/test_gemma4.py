"""The Gemma-4 plugin: vision inside clipped-linear wrappers, the audio tower and its toggle, the projector's
audio part following it, the per-layer-input path and the router never targets, experts, full-size plans."""

from __future__ import annotations

import json

import pytest
from gemma4_tiny import batch, tiny_model

from vlora_core import SpecArchitectureMismatch, default_registry, resolve
from vlora_core.testing import check_toggle_combinations

VISION = {"attention": [f"self_attn.{p}_proj.linear" for p in "qkvo"],
          "mlp": [f"mlp.{p}_proj.linear" for p in ("gate", "up", "down")]}
AUDIO = {"attention": ["self_attn.q_proj.linear", "self_attn.k_proj.linear", "self_attn.v_proj.linear",
                       "self_attn.post.linear", "self_attn.relative_k_proj"],
         "mlp": [f"feed_forward{i}.ffw_layer_{j}.linear" for i in (1, 2) for j in (1, 2)]
         + ["lconv1d.linear_start.linear", "lconv1d.linear_end.linear"]}
LANGUAGE = {"attention": [f"self_attn.{p}_proj" for p in "qkvo"],
            "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
EXPERTS = ["experts.gate_up_proj", "experts.down_proj"]


def expected(config, spec) -> set[str]:
    """Target names written out from the config, independently of the plugin and resolver."""
    roles = [r for r, key in (("attention", "finetune_attention_modules"), ("mlp", "finetune_mlp_modules"))
             if spec[key]]
    audio_on = config.audio_config is not None and spec.get("finetune_audio_layers") is not False
    names = set()
    if spec["finetune_vision_layers"]:
        names |= {f"model.vision_tower.encoder.layers.{i}.{leaf}" for i in range(config.vision_config.num_hidden_layers)
                  for r in roles for leaf in VISION[r]}
    if audio_on:
        names |= {f"model.audio_tower.layers.{i}.{leaf}" for i in range(config.audio_config.num_hidden_layers)
                  for r in roles for leaf in AUDIO[r]}
    if spec["finetune_language_layers"]:
        mlp = LANGUAGE["mlp"] + (EXPERTS if config.text_config.enable_moe_block else [])
        leaves = {"attention": LANGUAGE["attention"], "mlp": mlp}
        names |= {f"model.language_model.layers.{i}.{leaf}" for i in range(config.text_config.num_hidden_layers)
                  for r in roles for leaf in leaves[r]}
    if spec["finetune_projector"] == "lora":
        names.add("model.embed_vision.embedding_projection")
        if audio_on:
            names.add("model.embed_audio.embedding_projection")
    return names


@pytest.mark.parametrize("kind", ["audio", "moe"])
def test_every_combination_gives_the_exact_target_set(kind):
    model = tiny_model(kind)
    def want(spec):
        return expected(model.config, spec)

    audio = {"finetune_audio_layers": [None, True, False]} if kind == "audio" else None
    assert check_toggle_combinations(model, want, extra=audio) == 48 * (3 if audio else 1)


def test_the_audio_toggle_also_switches_the_projectors_audio_part():
    model = tiny_model("audio")
    full = resolve({"finetune_projector": "full", "finetune_audio_layers": False}, model)
    assert [m.name for m in full.full_modules] == ["model.embed_vision"]
    both = resolve({"finetune_projector": "full"}, model)
    assert [m.name for m in both.full_modules] == ["model.embed_audio", "model.embed_vision"]
    audio_only = resolve({"task": "vqa", "finetune_language_layers": False, "audio": {"layers": [1], "r": 4}}, model)
    assert {(t.component, t.layer, t.r) for t in audio_only.targets} == {("audio", 1, 4)}
    rows = [(r.component, r.label) for r in audio_only.summary()]
    assert rows == [("audio", "attention"), ("audio", "mlp"), ("audio", "mlp (conv module)")]


def test_audio_settings_on_a_gemma4_without_audio_are_an_error():
    model = tiny_model("moe")
    with pytest.raises(SpecArchitectureMismatch, match=r"\(Gemma-4\) has no audio tower"):
        resolve({"finetune_audio_layers": True}, model)
    assert "audio" not in {t.component for t in resolve({}, model).targets}


def test_wrappers_per_layer_input_path_and_router_are_never_targets():
    for kind in ("audio", "moe"):
        plan = resolve({"finetune_projector": "lora"}, tiny_model(kind))
        assert plan.diagnostics == ()
        assert not any("per_layer" in t.name or "router" in t.name for t in plan.targets)
        # the inner Linear of every clipped-linear wrapper, never the wrapper
        assert all(t.module_type == "Linear" for t in plan.targets if t.kind != "parameter")
        assert any(t.name.endswith("q_proj.linear") for t in plan.targets)


def test_experts_of_the_moe_variant():
    plan = resolve({"task": "vqa", "finetune_attention_modules": False, "r": 2}, tiny_model("moe"))
    assert [r.label for r in plan.summary()] == ["mlp", "mlp (experts: 4)"]
    gate_up = next(t for t in plan.targets if t.leaf == "experts.gate_up_proj")
    assert gate_up.lora_params == 2 * 4 * (2 * 12 + 32)


@pytest.mark.parametrize("name", ["gemma-4-E2B-it", "gemma-4-E4B-it", "gemma-4-26B-A4B-it", "gemma-4-31B-it"])
def test_full_size_reference_plans(name):
    _, _, ref = default_registry().require_reference(name)
    config = json.loads(ref.config_path.read_text())
    plan = resolve({"r": 16, "finetune_projector": "lora"}, name)
    has_audio = "audio_config" in config
    assert ("audio" in {t.component for t in plan.targets}) is has_audio
    assert ("model.embed_audio.embedding_projection" in {t.name for t in plan.targets}) is has_audio
    assert any(t.variant == "experts" for t in plan.targets) is config["text_config"]["enable_moe_block"]
    assert plan.layer_counts["language"] == config["text_config"]["num_hidden_layers"]
    assert plan.diagnostics == ()


@pytest.mark.parametrize("kind", ["audio", "moe"])
def test_conformance(vlora_conformance, kind):
    """apply trains exactly the plan (experts included) and a forward + backward pass reaches every adapter."""
    report = vlora_conformance("gemma4", tiny_model(kind), inputs=batch(kind))
    assert report.plugin.distribution == "vlora-core"
    towers = {"vision", "audio", "projector", "language"} if kind == "audio" else {"vision", "projector", "language"}
    assert {t.component for t in report.plans["lora"].targets} == towers
