"""vlora plugin for FastVLM (``fast_vlm``): timm's FastViTHD (``fastvit_mci3``) vision tower, a two-Linear
projector, a Qwen2 language model.

FastVLM's vision tower is a timm model (``TimmWrapperModel``): transformers builds it only where timm (and
torchvision) are installed. Module names (``S`` a stage, ``N`` a block or layer index):

* vision: ``model.vision_tower.timm_model.stages.S.blocks.N``: each stage is a stack (named by its index), each
  block a layer; timm's architecture, not the config, sets how many blocks a stage has (2, 12, 24, 4, 2). The
  first three stages mix tokens with RepMixer (a depthwise convolution), the last two with attention:
  ``token_mixer.qkv`` / ``token_mixer.proj``. Every block's MLP is the 1 x 1 convolutions ``mlp.fc1`` /
  ``mlp.fc2``. Never targets: the depthwise convolutions (``token_mixer.reparam_conv``, ``mlp.conv.conv``: PEFT
  has no LoRA for grouped convolutions);
* projector: ``model.multi_modal_projector`` (``linear_1``, ``linear_2``);
* language: ``model.language_model.layers.N`` (``self_attn.{q,k,v,o}_proj``, ``mlp.{gate,up,down}_proj``).
"""

from __future__ import annotations

from vlora_core import ArchitectureSpec, Component, hookimpl

DEPTHWISE = "a depthwise convolution (PEFT has no LoRA for grouped convolutions)"

FAST_VLM = ArchitectureSpec(
    name="fast_vlm",
    title="FastVLM",
    model_types=("fast_vlm",),
    components=(
        Component(
            name="vision",
            prefix=r"model\.vision_tower\.timm_model\.stages\.(?P<stack>\d+)\.blocks\.(?P<layer>\d+)",
            roles={"attention": ("token_mixer.qkv", "token_mixer.proj"), "mlp": ("mlp.fc1", "mlp.fc2")},
            frozen={"token_mixer.reparam_conv": DEPTHWISE, "mlp.conv.conv": DEPTHWISE},
        ),
        Component(name="projector", prefix=r"model\.multi_modal_projector",
                  roles={"projection": ("linear_1", "linear_2")}),
        Component(
            name="language",
            prefix=r"model\.language_model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
        ),
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [FAST_VLM]
