"""Shapes beyond encoder -> projector -> decoder, inferred: a vision encoder whose output a text decoder reads
through cross-attention (BLIP, Pix2Struct, vision-encoder-decoder models such as TrOCR and Donut), a vision
encoder -> projector -> text encoder + decoder (Florence-2, a staged DaViT tower), and models whose top-level
config is the text model's (GIT; Idefics with its perceiver resampler and gated cross-attention layers), and a
tower of two encoders (unlimited_ocr: SAM and CLIP, DeepSeek-OCR style). Tiny real
models on the CPU: the plan's targets are checked against the modules transformers names for each part (the
cross-attention module names below are transformers' own attribute names, which inference never reads), then
forward and backward through apply."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from vlora_core import SpecArchitectureMismatch, VloraError, apply, resolve

warnings.filterwarnings("ignore", message=".*token_id must be.*")


def _blip():
    from transformers import BlipConfig, BlipForConditionalGeneration

    config = BlipConfig(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=16, patch_size=8),
        text_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                         vocab_size=100, encoder_hidden_size=32, max_position_embeddings=128))
    ids = torch.tensor([[1, 5, 6, 7]])
    return BlipForConditionalGeneration(config), dict(pixel_values=torch.randn(1, 3, 16, 16), input_ids=ids,
                                                      labels=ids)


def _pix2struct():
    from transformers import Pix2StructConfig, Pix2StructForConditionalGeneration

    config = Pix2StructConfig(
        vision_config=dict(hidden_size=32, d_ff=64, num_hidden_layers=2, num_attention_heads=2, d_kv=16,
                           patch_embed_hidden_size=12, seq_len=2048),
        text_config=dict(hidden_size=32, d_ff=64, num_layers=3, num_heads=2, d_kv=16, vocab_size=100))
    rows = torch.arange(16.0).view(1, 16, 1)  # each patch: its row and column (from 1), then its pixels
    patches = torch.cat([rows // 4 + 1, rows % 4 + 1, torch.randn(1, 16, 12)], -1)
    return Pix2StructForConditionalGeneration(config), dict(
        flattened_patches=patches, attention_mask=torch.ones(1, 16), labels=torch.tensor([[1, 5, 6, 7]]))


def _vision_encoder_decoder():
    from transformers import BertConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=16,
                  patch_size=8),
        BertConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                   vocab_size=100, pad_token_id=0))
    config.decoder_start_token_id, config.pad_token_id = 1, 0
    return VisionEncoderDecoderModel(config), dict(pixel_values=torch.randn(1, 3, 16, 16),
                                                   labels=torch.tensor([[1, 5, 6, 7]]))


def _donut():
    from transformers import DonutSwinConfig, MBartConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel

    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(
        DonutSwinConfig(image_size=[32, 32], patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[2, 2],
                        window_size=2),
        MBartConfig(d_model=32, decoder_layers=3, encoder_layers=3, decoder_attention_heads=2, decoder_ffn_dim=64,
                    is_decoder=True, add_cross_attention=True, vocab_size=100, max_position_embeddings=128))
    config.decoder_start_token_id, config.pad_token_id = 1, 0
    return VisionEncoderDecoderModel(config), dict(pixel_values=torch.randn(1, 3, 32, 32),
                                                   labels=torch.tensor([[1, 5, 6, 7]]))


def _florence2():
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    config = Florence2Config(
        vision_config=dict(embed_dim=[16, 32], depths=[1, 2], num_heads=[2, 2], num_groups=[2, 2], patch_size=[7, 5],
                           patch_stride=[4, 4], patch_padding=[3, 2], patch_prenorm=[False, True], window_size=2,
                           projection_dim=32),
        text_config=dict(d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=2,
                         decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=120,
                         max_position_embeddings=10240))
    config.image_token_id = 110
    ids = torch.tensor([[0] + [110] * 5 + [5, 6, 2]])  # a 32x32 image: 2 x 2 patch tokens and a pooled one
    return Florence2ForConditionalGeneration(config), dict(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32),
                                                           labels=torch.tensor([[0, 5, 6, 7, 2]]))


def _git():
    from transformers import GitConfig, GitForCausalLM

    config = GitConfig(vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                          num_attention_heads=2, image_size=16, patch_size=8),
                       hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                       vocab_size=100, max_position_embeddings=64)
    ids = torch.tensor([[1, 5, 6, 7]])
    return GitForCausalLM(config), dict(pixel_values=torch.randn(1, 3, 16, 16), input_ids=ids, labels=ids)


def _idefics():
    from transformers import IdeficsConfig, IdeficsForVisionText2Text

    config = IdeficsConfig(
        cross_layer_interval=2, use_resampler=True, num_hidden_layers=4, hidden_size=32, intermediate_size=64,
        alpha_initializer="ones",  # a trained checkpoint's gates are open (zeros, the pretraining start, pass nothing)
        num_attention_heads=2, vocab_size=100,
        vision_config=dict(embed_dim=24, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                           image_size=16, patch_size=8),
        perceiver_config=dict(resampler_depth=2, resampler_n_latents=4, resampler_n_heads=2, resampler_head_dim=8))
    ids = torch.tensor([[1, 5, 6, 7]])
    return IdeficsForVisionText2Text(config), dict(pixel_values=torch.randn(1, 1, 3, 16, 16), input_ids=ids,
                                                   labels=ids, image_attention_mask=torch.ones(1, 4, 1).long())


# family -> (builder, vision sub-model, language sub-model, the decoder's cross-attention module name (transformers'),
#            the layer counts the config states)
FAMILIES = {
    "blip": (_blip, "vision_model", "text_decoder", "crossattention", {"vision": 2, "language": 3}),
    "pix2struct": (_pix2struct, "encoder", "decoder", "encoder_decoder_attention", {"vision": 2, "language": 3}),
    "vision-encoder-decoder": (_vision_encoder_decoder, "encoder", "decoder", "crossattention",
                               {"vision": 2, "language": 3}),
    # Donut: a Swin encoder (stages, each a module holding its blocks: a stack per stage) and an MBart decoder
    "donut": (_donut, "encoder", "decoder", "encoder_attn", {"vision.0": 1, "vision.1": 2, "language": 3}),
    "florence2": (_florence2, "model.vision_tower", "model.language_model", "encoder_attn",
                  {"vision.0": 1, "vision.1": 2, "language.encoder": 2, "language.decoder": 3}),
}
# the top-level config is the text model's: family -> (builder, vision sub-model, the language layers' lists, the
# projector's module (transformers' names), cross-attention module name or None, the layer counts)
TEXT_AT_TOP = {
    "git": (_git, "git.image_encoder", ("git.encoder.layer",), "git.visual_projection", None,
            {"vision": 2, "language": 3}),
    # Idefics: 4 decoder layers, a gated cross-attention layer every 2 (num_hidden_layers / cross_layer_interval)
    "idefics": (_idefics, "model.vision_model", ("model.layers", "model.gated_cross_attn_layers"),
                "model.perceiver_resampler", "cross_attn",
                {"vision": 2, "language.layers": 4, "language.gated_cross_attn_layers": 2}),
}
ALL_ON = {"finetune_vision_layers": True, "finetune_language_layers": True, "finetune_attention_modules": True,
          "finetune_mlp_modules": True}


def _linears(model, under: str, *, inside: str | None = None) -> set[str]:
    """Names of the Linear modules under ``under`` (and with ``.inside.`` in their name, when given)."""
    return {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)
            and name.startswith(under + ".") and (inside is None or f".{inside}." in name)}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_part_lands_in_its_sub_model_and_cross_attention_is_found(family):
    build, vision, language, cross, counts = FAMILIES[family]
    model, _ = build()
    plan = resolve(ALL_ON, model)
    assert plan.inferred and plan.layer_counts == counts
    by: dict[tuple[str, str], set[str]] = {}
    for t in plan.targets:
        by.setdefault((t.component, t.role), set()).add(t.name)
    assert by[("language", "cross_attention")] == _linears(model, language, inside=cross)
    assert all(name.startswith(vision + ".") for (c, _), names in by.items() if c == "vision" for name in names)
    assert all(name.startswith(language + ".") for (c, _), names in by.items() if c == "language" for name in names)
    # every Linear of the decoder's layers is a target but the output head: self-attention, cross-attention, MLP
    decoder_layers = {n for n in _linears(model, language) if ".layer" in n}
    assert set().union(*(v for (c, _), v in by.items() if c == "language")) == decoder_layers
    assert by[("language", "mlp")] and by[("vision", "mlp")] and by[("vision", "attention")]
    assert not by[("language", "attention")] & by[("language", "cross_attention")]


@pytest.mark.parametrize("family", ["blip", "pix2struct"])
def test_no_projector_follows_the_rule_of_absent_parts(family):
    build = FAMILIES[family][0]
    model, _ = build()
    plan = resolve({**ALL_ON, "finetune_projector": "frozen"}, model)
    assert "projector" not in {t.component for t in plan.targets}
    assert any(d.code == "absent-part" and "no projector component" in d.message for d in plan.diagnostics)
    with pytest.raises(SpecArchitectureMismatch, match="has no projector component"):
        resolve({**ALL_ON, "finetune_projector": "lora"}, model)


def test_a_vision_encoder_decoder_s_bridge_is_its_projector():
    """Where the encoder's width is not the decoder's, VisionEncoderDecoderModel adds enc_to_dec_proj."""
    model, _ = _vision_encoder_decoder()
    plan = resolve({**ALL_ON, "finetune_projector": "lora"}, model)
    assert {t.name for t in plan.targets if t.component == "projector"} == {"enc_to_dec_proj"}


def test_cross_attention_has_its_own_toggle():
    build, _, language, cross, _ = FAMILIES["florence2"]
    model, _ = build()
    plan = resolve({**ALL_ON, "finetune_cross_attention": False}, model)
    roles = {t.role for t in plan.targets if t.component == "language"}
    assert roles == {"attention", "mlp"}
    only = resolve({**ALL_ON, "finetune_vision_layers": False, "finetune_attention_modules": False,
                    "finetune_mlp_modules": False, "finetune_cross_attention": True}, model)
    assert {t.name for t in only.targets} == _linears(model, language, inside=cross)


def test_stacks_of_an_encoder_decoder_and_of_a_staged_tower_are_selectable():
    model, _ = _florence2()
    plan = resolve({**ALL_ON, "language": {"layers": {"decoder": {"last": 1}}},
                    "vision": {"layers": {"1": [1]}}}, model)
    layers = {(t.component, t.placement.stack, t.layer) for t in plan.targets if t.component != "projector"}
    assert layers == {("language", "decoder", 2), ("vision", "1", 1)}


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_backward_through_apply(family):
    build = FAMILIES[family][0]
    torch.manual_seed(0)
    model, inputs = build()
    peft_model = apply(model, ALL_ON)
    peft_model.train()
    loss = peft_model(**inputs).loss
    assert torch.isfinite(loss)
    loss.backward()
    plan = peft_model.vlora_plan
    modules = dict(peft_model.base_model.model.named_modules())
    for key in {(t.component, t.role) for t in plan.targets}:  # each part's adapters learn
        grads = [modules[t.name].lora_B["default"].weight.grad for t in plan.targets if (t.component, t.role) == key]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key
    frozen = [n for n, p in peft_model.named_parameters() if "lora_" not in n and p.requires_grad]
    assert not frozen


# Pix2Struct: transformers does not checkpoint it (vlora says so before PEFT touches the model). BLIP and GIT:
# transformers 5.24's checkpointing makes the embeddings' output require grad, and their BERT-style embeddings add
# the position embeddings to it in place: a real step fails, and the simulation says so
IN_PLACE = "leaf Variable that requires grad is being used in an in-place operation"
# Donut: PEFT makes the input embeddings' output require grad where checkpointing is on, and Donut's Swin embeddings
# return a tuple
FAILS_CHECKPOINTED = {"pix2struct": "does not support gradient checkpointing", "blip": IN_PLACE, "git": IN_PLACE,
                      "donut": "'tuple' object has no attribute 'requires_grad_'"}


@pytest.mark.parametrize("family", [*FAMILIES, *TEXT_AT_TOP])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_the_simulated_step_is_the_real_one(family, checkpointing):
    """--memory on these shapes: the image on the encoder side, the target through the decoder; equal to the
    same step run for real (live tensor storage)."""
    from steps import real_tensor_peak

    from vlora_core import VisionLoRASpec, tree_from_module
    from vlora_core.memory import simulate_step
    from vlora_core.memory.inputs import step_inputs

    build = (FAMILIES.get(family) or TEXT_AT_TOP[family])[0]
    model, _ = build()
    tree = tree_from_module(model)
    spec = VisionLoRASpec(**ALL_ON, finetune_projector="lora" if family in TEXT_AT_TOP else "frozen")
    if checkpointing and family in FAILS_CHECKPOINTED:
        inputs = step_inputs(model.config, model.config.model_type, batch=2, seq=64, images=1)
        with pytest.raises(Exception, match=FAILS_CHECKPOINTED[family]):  # the real step
            real_tensor_peak(model, checkpointing, inputs.tensors, spec)
        with pytest.raises(VloraError, match=FAILS_CHECKPOINTED[family]) as simulated:  # the simulation, as one error
            simulate_step(spec, tree_from_module(build()[0]), batch=2, seq=64, images=1,
                          gradient_checkpointing=True, base_dtype="fp32")
        assert simulated.value.hint
        return
    images = 2 if family == "idefics" else 1
    simulated = simulate_step(spec, tree, batch=2, seq=64, images=images, gradient_checkpointing=checkpointing,
                              base_dtype="fp32")
    inputs = step_inputs(model.config, model.config.model_type, batch=2, seq=64, images=images)
    model.config._attn_implementation = simulated.inputs["attention"].split()[0]
    measured = real_tensor_peak(model, checkpointing, inputs.tensors, spec)
    assert simulated.inputs["images"] == images and simulated.inputs["image_tokens"] == inputs.image_tokens > 0
    assert abs(simulated.step_peak / measured - 1) < 0.05, (simulated.step_peak, measured)


@pytest.mark.parametrize("family", TEXT_AT_TOP)
def test_a_top_level_text_config_is_the_language_model(family):
    build, vision, lists, projector, cross, counts = TEXT_AT_TOP[family]
    model, inputs = build()
    plan = resolve({**ALL_ON, "finetune_projector": "lora"}, model)
    assert plan.inferred and plan.layer_counts == counts
    by: dict[tuple[str, str], set[str]] = {}
    for t in plan.targets:
        by.setdefault((t.component, t.role), set()).add(t.name)
    language = set().union(*(v for (c, _), v in by.items() if c == "language"))
    assert language == set().union(*(_linears(model, name) for name in lists))  # every Linear of its layers
    assert all(n.startswith(vision + ".") for (c, _), v in by.items() if c == "vision" for n in v)
    assert by[("projector", "projection")] == _linears(model, projector) | (
        {projector} if isinstance(dict(model.named_modules())[projector], torch.nn.Linear) else set())
    crossing = _linears(model, "model", inside=cross) if cross else set()
    assert by.get(("language", "cross_attention"), set()) == crossing
    peft_model = apply(model, {**ALL_ON, "finetune_projector": "lora"})
    loss = peft_model.train()(**inputs).loss
    loss.backward()
    modules = dict(peft_model.base_model.model.named_modules())
    for key in by:  # each part's adapters learn
        grads = [modules[name].lora_B["default"].weight.grad for name in by[key]]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key


def _unlimited_ocr():
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.for_model(
        "unlimited_ocr", image_token_id=150,
        vision_config=dict(
            sam_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, image_size=64, patch_size=16,
                            window_size=2, global_attn_indexes=[1], mlp_dim=32, output_channels=16,
                            downsample_channels=[32, 24], initializer_range=0.02),  # the default (1e-10) zeroes grads
            encoder_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                                image_size=64, patch_size=16)),
        text_config=dict(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=16, n_routed_experts=4,
                         n_shared_experts=1, num_experts_per_tok=2, moe_intermediate_size=16,
                         max_position_embeddings=256))
    return AutoModelForImageTextToText.from_config(config)


def test_a_tower_of_two_encoders_is_two_stacks():
    """unlimited_ocr: a SAM encoder feeding a CLIP encoder, each counted by its own sub-config (sam_config,
    encoder_config); each a stack, selectable apart, and each stack's adapters learn."""
    model = _unlimited_ocr()
    spec = {**ALL_ON, "finetune_projector": "lora"}
    plan = resolve(spec, model)
    assert plan.inferred and plan.layer_counts == {"vision.sam_encoder": 2, "vision.vision_encoder": 3,
                                                   "language": 2}
    for stack, tower in (("sam_encoder", "model.vision_tower.sam_encoder"),
                         ("vision_encoder", "model.vision_tower.vision_encoder")):
        names = {t.name for t in plan.targets if t.placement.stack == stack}
        assert names == {n for n in _linears(model, tower) if ".layers." in n}, stack
    only_sam = resolve({**spec, "vision": {"layers": {"sam_encoder": [1]}}}, model)
    assert {(t.placement.stack, t.layer) for t in only_sam.targets if t.component == "vision"} == {("sam_encoder", 1)}
    image_tokens = model.model.get_image_features(torch.zeros(1, 3, 64, 64)).pooler_output[0].shape[0]
    ids = torch.tensor([[1] + [150] * image_tokens + [5, 6, 7]])
    peft_model = apply(model, spec)
    peft_model.train()(input_ids=ids, pixel_values=torch.randn(1, 3, 64, 64), labels=ids).loss.backward()
    modules = dict(peft_model.base_model.model.named_modules())
    for key in {(t.component, t.placement.stack) for t in plan.targets}:
        grads = [modules[t.name].lora_B["default"].weight.grad for t in plan.targets
                 if (t.component, t.placement.stack) == key and t.name in modules]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), key


def _apertus1p5():
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.for_model(
        "apertus1p5", image_token_id=30, audio_token_id=31, image_token_offset=40, audio_token_offset=168,
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, vocab_size=300),
        vision_config=dict(codebook_size=128, embed_dim=8, latent_channels=8, base_channels=32,
                           channel_multiplier=[1, 2], num_res_blocks=1, attn_resolutions=[], resolution=32),
        audio_config=dict(codebook_size=64, codebook_dim=16, hidden_size=16, num_filters=4, decoder_hidden_size=16,
                          decoder_intermediate_size=32, decoder_num_layers=1, decoder_attention_num_groups=4))
    return AutoModelForImageTextToText.from_config(config)


def test_image_tokenizers_are_not_towers():
    """Apertus 1.5 turns images (and audio) into codes of its vocabulary with VQ tokenizers (their configs state a
    codebook): no gradient passes through them, so only the language model trains, and the plan says why."""
    model = _apertus1p5()
    plan = resolve({}, model)
    assert plan.inferred and plan.layer_counts == {"language": 2}
    assert {t.name for t in plan.targets} == {n for n in _linears(model, "model.language_model") if ".layers." in n}
    assert any("tokens of its vocabulary" in w for w in plan.warnings)
    with pytest.raises(SpecArchitectureMismatch, match="no vision component"):
        resolve({"finetune_vision_layers": True}, model)
    ids = torch.tensor([[1, 30, 45, 46, 47, 5, 6, 7]])  # an image's codes are ordinary tokens (offset 40)
    peft_model = apply(model, {})
    peft_model.train()(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in peft_model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def _t5gemma2():
    from transformers import AutoConfig, AutoModelForImageTextToText

    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                head_dim=16, vocab_size=300, layer_types=["sliding_attention", "full_attention"], sliding_window=8)
    config = AutoConfig.for_model(
        "t5gemma2", image_token_index=252,
        encoder=dict(text_config=text, vision_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=2,
                                                          num_attention_heads=2, image_size=32, patch_size=8),
                     mm_tokens_per_image=4, boi_token_index=250, eoi_token_index=251, image_token_index=252),
        decoder={**text, "num_hidden_layers": 3,
                 "layer_types": ["sliding_attention", "full_attention", "sliding_attention"]})
    model = AutoModelForImageTextToText.from_config(config)
    with torch.no_grad():  # transformers initialises the projection to zeros (no gradient would reach the tower)
        model.model.encoder.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.2)
    return model


def test_a_composite_encoder_and_a_decoder():
    """T5Gemma-2: the encoder holds a SigLIP tower, a projector and a Gemma text encoder; the decoder merges self-
    and cross-attention in one module (its attention). The towers are the encoder's own sub-configs'."""
    model = _t5gemma2()
    spec = {**ALL_ON, "finetune_projector": "lora"}
    plan = resolve(spec, model)
    assert plan.inferred and plan.layer_counts == {"vision": 2, "language.encoder": 2, "language.decoder": 3}
    by: dict[str, set[str]] = {}
    for t in plan.targets:
        by.setdefault(t.component, set()).add(t.name)
    assert by["vision"] == {n for n in _linears(model, "model.encoder.vision_tower") if ".layers." in n}
    assert by["language"] == {n for n in _linears(model, "model.encoder.text_model") | _linears(model, "model.decoder")
                              if ".layers." in n}
    assert by["projector"] == {"model.encoder.multi_modal_projector.mm_input_projection_weight"}
    ids = torch.tensor([[2, 250] + [252] * 4 + [251, 5, 6]])
    peft_model = apply(model, spec)
    peft_model.train()(input_ids=ids, pixel_values=torch.randn(1, 3, 32, 32),
                       labels=torch.tensor([[5, 6, 7, 8]])).loss.backward()
    learned = {n for n, p in peft_model.named_parameters() if p.requires_grad and p.grad is not None
               and p.grad.abs().sum() > 0}
    for part in ("vision_tower", "multi_modal_projector", "encoder.text_model", "decoder.layers"):
        assert any(part in n for n in learned), part


@pytest.mark.parametrize("family", ["t5gemma2", "apertus1p5", "unlimited_ocr", "udop"])
def test_a_text_step_of_the_other_shapes_is_the_real_one(family):
    """--memory without images on T5Gemma-2 (the text through its encoder, the labels through its decoder),
    Apertus 1.5 (whose image tokenizer has no SDPA: it keeps eager attention, and the header says so) and
    unlimited_ocr, and UDOP (a document's words with their boxes), equal to the same step run for real."""
    from steps import real_tensor_peak

    from vlora_core import VisionLoRASpec, tree_from_module
    from vlora_core.memory import simulate_step
    from vlora_core.memory.inputs import step_inputs

    build = {"t5gemma2": _t5gemma2, "apertus1p5": _apertus1p5, "unlimited_ocr": _unlimited_ocr, "udop": _udop}[family]
    model = build()
    dtype = "bf16" if family == "unlimited_ocr" else "fp32"  # its experts' grouped matmul is bfloat16 only
    model = model.to(torch.bfloat16 if dtype == "bf16" else torch.float32)
    spec = VisionLoRASpec(finetune_vision_layers=False)
    images = 0
    spec = VisionLoRASpec(finetune_vision_layers=False)
    simulated = simulate_step(spec, tree_from_module(model), batch=2, seq=32, base_dtype=dtype, images=images)
    inputs = step_inputs(model.config, model.config.model_type, batch=2, seq=32, images=images)
    measured = real_tensor_peak(model, False, inputs.tensors, spec)
    assert abs(simulated.step_peak / measured - 1) < 0.05, (simulated.step_peak, measured)
    assert ("eager in Apertus1p5VisionTokenizerModel" in simulated.inputs["attention"]) == (family == "apertus1p5")


def _udop():
    from transformers import UdopConfig, UdopForConditionalGeneration

    config = UdopConfig(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=3, num_heads=2, vocab_size=100,
                        image_size=32, patch_size=8, max_2d_position_embeddings=64, decoder_start_token_id=0)
    return UdopForConditionalGeneration(config)


def test_no_vision_tower_and_an_encoder_decoder_text_side():
    """UDOP: a T5 encoder and decoder (stacks), no vision sub-model; its patch embedding is the image path's only
    weights (the projector, as in Fuyu's plugin), and of its tied copies the one the encoder runs is adapted."""
    model = _udop()
    plan = resolve({"finetune_projector": "lora"}, model)
    assert plan.inferred and plan.layer_counts == {"language.encoder": 2, "language.decoder": 3}
    assert {t.name for t in plan.targets if t.component == "projector"} == {"encoder.embed_patches.proj"}
    crossing = {n for n in _linears(model, "decoder") if ".EncDecAttention." in n}
    assert {t.name for t in plan.targets if t.role == "cross_attention"} == crossing
    assert any("no vision tower" in w for w in plan.warnings)
    peft_model = apply(model, {"finetune_projector": "lora"})
    ids = torch.tensor([[5, 6, 7, 8]])
    peft_model.train()(input_ids=ids, bbox=torch.tensor([[[0.1, 0.1, 0.2, 0.2]] * 4]),
                       pixel_values=torch.randn(1, 3, 32, 32), labels=torch.tensor([[5, 6, 7]])).loss.backward()
    modules = dict(peft_model.base_model.model.named_modules())
    for role in {t.role for t in plan.targets}:
        grads = [modules[t.name].lora_B["default"].weight.grad for t in plan.targets if t.role == role]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), role


SHAPES = ["blip", "pix2struct", "vision-encoder-decoder", "florence2", "git", "idefics", "unlimited_ocr", "t5gemma2",
          "apertus1p5", "udop"]


@pytest.mark.parametrize("model_type", SHAPES)
def test_every_command_on_the_full_size_default_config(model_type, tmp_path, capsys):
    """What a user runs, on transformers' default config of each new shape (built on the meta device): the plan,
    --explain, a lock and its validation, an export to each tool, the serving check; --memory on two."""
    from transformers import AutoConfig

    from vlora_core.cli import main

    folder = tmp_path / "model"
    AutoConfig.for_model(model_type).save_pretrained(folder)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"model: {folder}\n")
    assert main(["plan", str(spec), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["inferred"] and plan["targets"]
    target = plan["targets"][0]["name"]
    assert main(["plan", str(spec), "--explain", target]) == 0
    assert f"{target}: target: {plan['targets'][0]['component']}" in capsys.readouterr().out
    lock = tmp_path / "spec.lock.json"
    assert main(["lock", str(spec), "-o", str(lock)]) == 0
    assert main(["validate", str(spec), "--lock", str(lock)]) == 0
    for tool in ("peft", "unsloth", "llamafactory", "swift"):
        assert main(["export", str(spec), "--to", tool, "-o", str(tmp_path / tool)]) == 0, tool
    assert json.loads((tmp_path / "peft").read_text())["target_modules"]  # a PEFT LoraConfig
    for engine in ("vllm", "sglang"):
        main(["plan", str(spec), "--serve", engine])
        assert "serve with:" in capsys.readouterr().out
    if model_type in ("blip", "florence2"):
        assert main(["plan", str(spec), "--memory", "--images", "1", "--seq", "64", "--json"]) == 0
        memory = json.loads(capsys.readouterr().out)["memory"]
        assert memory["inputs"]["image_tokens"] == 577 and memory["peak_bytes"] > memory["base_weights_bytes"]
