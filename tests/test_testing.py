"""The conformance kit (vlora_core.testing) passes a good plugin and fails each kind of broken one."""

from __future__ import annotations

import pytest
import torch.nn as nn
from tinyvlm import TinyVLM, batch, install_plugin

from vlora_core.testing import ConformanceError, check_plugin, relayout

PLUGIN = """
from tinyvlm import ATTENTION, MLP_LEAVES, tiny_architecture, stacked_vision
from vlora_core import Component, hookimpl

@hookimpl
def vlora_architectures():
    return [{arch}]
"""


def _inputs(model):
    pixels, ids = batch()
    return {"pixels": pixels, "ids": ids}


def _check(tmp_path, monkeypatch, arch: str, **kw):
    install_plugin(tmp_path, monkeypatch, "vlora-test-kit", "vt_kit", PLUGIN.format(arch=arch))
    return check_plugin("vt_kit", TinyVLM(), inputs=_inputs, **kw)


OLD = {"old_vision": "vision", "old_vision_global": "vision_global", "proj": "projector", "lang.model": "language",
       "patch": "patch", "embed": "embed", "lang.head": "lm_head"}


def test_a_good_plugin_passes_and_is_reported(tmp_path, monkeypatch):
    report = _check(tmp_path, monkeypatch, "tiny_architecture(vision=stacked_vision())")
    assert report.plugin.distribution == "vlora-test-kit"
    assert set(report.plans) == {"lora", "full"}
    assert report.plans["full"].full_modules[0].name == "projector"


def test_layouts_must_give_the_same_logical_targets(tmp_path, monkeypatch):
    arch = ("tiny_architecture(vision=Component(name='vision', prefix=r'(?:old_)?(?P<stack>vision|vision_global)"
            "\\.layers\\.(?P<layer>\\d+)', roles={'attention': ATTENTION, 'mlp': MLP_LEAVES}), "
            "projector=Component(name='projector', prefix=r'projector|proj', roles={'projection': ('linear_1', "
            "'linear_2')}), language=Component(name='language', prefix=r'(?:language|lang\\.model)\\.layers\\."
            "(?P<layer>\\d+)', roles={'attention': ATTENTION, 'mlp': MLP_LEAVES}))")
    report = _check(tmp_path, monkeypatch, arch, layouts={"old": OLD})
    assert report.layouts["old"]
    with pytest.raises(ConformanceError, match=r"\[layout old\].*prefix"):
        _check(tmp_path, monkeypatch, "tiny_architecture(vision=stacked_vision())", layouts={"old": OLD})


@pytest.mark.parametrize(
    ("arch", "check", "words"),
    [
        ("tiny_architecture(language=Component(name='language', prefix=r'language\\.layers\\.(?P<layer>\\d+)', "
         "roles={'attention': ATTENTION, 'mlp': ('mlp.up', 'mlp.gate')}))", "patterns", "leaf 'mlp.gate'"),
        ("tiny_architecture(language=Component(name='language', prefix=r'language\\.layers\\.(?P<layer>\\d+)', "
         "roles={'attention': ATTENTION, 'mlp': ('mlp.up',)}))", "partition", "gives no role to language.layers.*"),
        ("tiny_architecture(language=Component(name='language', prefix=r'language\\.layers\\.(?P<layer>\\d+)', "
         "roles={'attention': ATTENTION, 'mlp': MLP_LEAVES + ('norm',)}))", "patterns", "LayerNorm"),
        ("tiny_architecture(projector=Component(name='projector', prefix=r'vision\\.layers\\.0', "
         "roles={'projection': ('mlp.up',)}))", "patterns", "matches the prefix of both"),
    ],
)
def test_broken_plugins_fail_with_the_check_named(tmp_path, monkeypatch, arch, check, words):
    with pytest.raises(ConformanceError) as info:
        _check(tmp_path, monkeypatch, arch)
    assert str(info.value).startswith(f"[{check}]") and words in str(info.value)


def test_a_plugin_that_does_not_load(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, "vlora-test-kit", "vt_kit", "raise ImportError('no such thing')\n")
    with pytest.raises(ConformanceError, match=r"\[loads\] plugin 'vt_kit' failed to load: .*no such thing"):
        check_plugin("vt_kit", TinyVLM())
    with pytest.raises(ConformanceError, match=r"\[loads\] no plugin 'nope'"):
        check_plugin("nope", TinyVLM())


def test_a_forward_that_skips_an_adapter_fails_backward(tmp_path, monkeypatch):
    class Skips(TinyVLM):
        def forward(self, pixels, ids):  # the global vision stack never runs
            img = self.patch(pixels).flatten(2).transpose(1, 2)
            img = self.projector(self.vision(img))
            x = __import__("torch").cat([img, self.embed(ids)], dim=1)
            return self.lm_head(self.language(x))

    install_plugin(tmp_path, monkeypatch, "vlora-test-kit", "vt_kit",
                   PLUGIN.format(arch="tiny_architecture(vision=stacked_vision())"))
    with pytest.raises(ConformanceError, match=r"\[backward\].*no gradient reached .*vision_global"):
        check_plugin("vt_kit", Skips(), inputs=_inputs)


def test_relayout_shares_modules_and_must_place_every_parameter():
    model = TinyVLM()
    old = relayout(model, OLD)
    assert old.lang.model is model.language and old.proj.linear_1.weight is model.projector.linear_1.weight
    assert sum(p.numel() for p in old.parameters()) == sum(p.numel() for p in model.parameters())
    pixels, ids = batch()
    assert old(pixels, ids).shape == model(pixels, ids).shape
    with pytest.raises(ValueError, match="leaves out parameters"):
        relayout(model, {"vision": "vision"})
    assert isinstance(old.lang, nn.Module)


def test_vision_tower_layouts_put_the_parts_where_the_paths_say():
    """A real LLaVA from transformers, rebuilt under each layout: the named paths exist, nothing is lost."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    from vlora_core.testing import VISION_TOWER_PATHS, current_vision_tower_layout, vision_tower_layouts

    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                           num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16),
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=128)))
    layouts = vision_tower_layouts(model)
    assert set(layouts) == set(VISION_TOWER_PATHS)
    assert current_vision_tower_layout(model) in layouts
    for name, names in layouts.items():
        old = relayout(model, names)
        modules = dict(old.named_modules())
        vision, projector, language = VISION_TOWER_PATHS[name]
        assert f"{vision}.1.self_attn.out_proj" in modules and f"{language}.1.mlp.down_proj" in modules, name
        assert projector in modules, name


def test_toggle_combinations_refuse_expected_names_the_model_does_not_have(model, registry):
    from vlora_core.testing import check_toggle_combinations

    def wrong(spec):  # a test that misspells a name would otherwise "find" a plugin bug, or hide one
        return {"vision.layers.0.attn.qq"}

    with pytest.raises(ConformanceError, match=r"the expected names \['vision\.layers\.0\.attn\.qq'\] are not in"):
        check_toggle_combinations(model, wrong, registry=registry)
