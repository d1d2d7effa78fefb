"""vlora plugin for Gemma-3n (``gemma3n``: E2B and E4B; vision, audio and text).

Gemma-3n's vision tower is timm's MobileNetV5 (``TimmWrapperModel``): transformers builds it only where timm
(and torchvision) are installed. Module names (``S`` a stage, ``N`` a block or layer index):

* vision: ``model.vision_tower.timm_model.blocks.S.N``: each stage is a stack (named by its index), each
  block a layer; timm's architecture (``mobilenetv5_300m_enc``), not the config, sets how many blocks a stage
  has. Its weights are convolutions: attention is the mobile multi-query attention's 1 x 1 projections
  ``attn.{query,key,value,output}.proj``; MLP the inverted-residual blocks' pointwise ``pw_exp.conv`` /
  ``pw_proj.conv`` and the edge-residual blocks' ``conv_pwl``. Never targets: the depthwise convolutions
  (``dw_start``, ``dw_mid``, the attention's ``down_conv``s: PEFT has no LoRA for grouped convolutions) and the
  edge-residual blocks' ``conv_exp`` (timm's ``Conv2dSame`` pads in its forward, which PEFT's LoRA convolution
  does not repeat);
* audio: a conformer, ``model.audio_tower.conformer.N``: attention ``attention.attn.{q,k,v}_proj``,
  ``attention.post`` and the relative-position projection ``attention.attn.relative_position_embedding.pos_proj``;
  MLP the two feed-forward blocks ``ffw_layer_{start,end}.ffw_layer_{1,2}`` and the convolution module's
  pointwise ``lconv1d.linear_{start,end}`` (the variant ``conv module``); its depthwise convolution is never a
  target;
* projector: the vision tower's multi-scale fusion adapter after its stages
  (``model.vision_tower.timm_model.msfa``, pointwise ``ffn.pw_exp.conv`` / ``ffn.pw_proj.conv``),
  ``model.embed_vision`` and ``model.embed_audio`` (``embedding_projection``); the audio part follows
  ``finetune_audio_layers`` as well as ``finetune_projector``;
* language: ``model.language_model.layers.N`` (``self_attn.*``, ``mlp.*``). Never targets, as in Gemma-4: the
  per-layer-input path (``per_layer_input_gate``, ``per_layer_projection``), AltUp's coefficient maps and its
  modality router (``altup.*``) and LAuReL's low-rank residual (``laurel.linear_{left,right}``, already rank
  ``laurel_rank``).

No published Gemma-3n config.json is bundled: transformers' default ``Gemma3nConfig()`` has E4B's text sizes
(35 layers, hidden 2048) and is what ``vlora coverage`` plans.
"""

from __future__ import annotations

from vlora_core import ArchitectureSpec, Component, hookimpl

CONV_MODULE = ("lconv1d.linear_start", "lconv1d.linear_end")
DEPTHWISE = "a depthwise convolution (PEFT has no LoRA for grouped convolutions)"

GEMMA3N = ArchitectureSpec(
    name="gemma3n",
    title="Gemma-3n",
    model_types=("gemma3n",),
    components=(
        Component(
            name="vision",
            prefix=r"model\.vision_tower\.timm_model\.blocks\.(?P<stack>\d+)\.(?P<layer>\d+)",
            roles={
                "attention": ("attn.query.proj", "attn.key.proj", "attn.value.proj", "attn.output.proj"),
                "mlp": ("pw_exp.conv", "pw_proj.conv", "conv_pwl"),
            },
            frozen={
                "dw_start.conv": DEPTHWISE, "dw_mid.conv": DEPTHWISE, "attn.key.down_conv": DEPTHWISE,
                "attn.value.down_conv": DEPTHWISE,
                "conv_exp": "timm's Conv2dSame (it pads in its forward; PEFT's LoRA convolution would not)",
            },
        ),
        Component(
            name="audio",
            prefix=r"model\.audio_tower\.conformer\.(?P<layer>\d+)",
            roles={
                "attention": ("attention.attn.q_proj", "attention.attn.k_proj", "attention.attn.v_proj",
                              "attention.post", "attention.attn.relative_position_embedding.pos_proj"),
                "mlp": ("ffw_layer_start.ffw_layer_1", "ffw_layer_start.ffw_layer_2", "ffw_layer_end.ffw_layer_1",
                        "ffw_layer_end.ffw_layer_2", *CONV_MODULE),
            },
            variants={leaf: "conv module" for leaf in CONV_MODULE},
            frozen={"lconv1d.depthwise_conv1d": "a depthwise convolution"},
        ),
        Component(
            name="projector",
            prefix=r"model\.(?:embed_(?:vision|audio)|vision_tower\.timm_model\.msfa)",
            roles={"projection": ("embedding_projection", "ffn.pw_exp.conv", "ffn.pw_proj.conv")},
            follows={"embed_audio": "audio"},
        ),
        Component(
            name="language",
            prefix=r"model\.language_model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
            frozen={
                "per_layer_input_gate": "the per-layer-input path",
                "per_layer_projection": "the per-layer-input path",
                "altup.correction_coefs": "AltUp's coefficients",
                "altup.prediction_coefs": "AltUp's coefficients",
                "altup.modality_router": "AltUp's router",
                "laurel.linear_left": "LAuReL's low-rank residual",
                "laurel.linear_right": "LAuReL's low-rank residual",
            },
        ),
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [GEMMA3N]
