"""vlora plugin for Gemma-4 (``gemma4``: E2B and E4B with vision and audio; 26B-A4B (MoE) and 31B with vision).

Gemma-4 exists in transformers 5 only, with this layout (``N`` is a layer index):

* vision: ``model.vision_tower.encoder.layers.N``; its projections sit inside clipped-linear wrapper
  modules, so the target is the inner Linear, and the plan names it: ``self_attn.q_proj.linear``;
* audio (E2B, E4B): a conformer, ``model.audio_tower.layers.N``: attention ``self_attn.{q,k,v}_proj.linear``,
  ``self_attn.post.linear`` and the relative-position key projection ``self_attn.relative_k_proj``; MLP
  the two feed-forward blocks ``feed_forward{1,2}.ffw_layer_{1,2}.linear`` and the convolution module's
  pointwise projections ``lconv1d.linear_{start,end}.linear`` (the variant ``conv module``); its
  depthwise convolution is never a target;
* projector: ``model.embed_vision`` and ``model.embed_audio`` (``embedding_projection``); the audio part
  follows ``finetune_audio_layers`` as well as ``finetune_projector``. The audio tower's ``output_proj``
  before it is left frozen;
* language: ``model.language_model.layers.N`` (``self_attn.*``, ``mlp.*``; the 26B-A4B adds a mixture of
  experts, ``experts.gate_up_proj`` / ``experts.down_proj``, next to the dense MLP). Never targets: the
  router ``router.proj`` and the per-layer-input path (``per_layer_input_gate``, ``per_layer_projection``).

``Gemma4Config()``'s defaults are text-only, so the bundled references carry vision (and audio) configs:
they hold the published sizes of each checkpoint (hidden size, layers, heads, experts, the vision tower's
width); fields the model cards do not state take transformers' defaults.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

CONV_MODULE = ("lconv1d.linear_start.linear", "lconv1d.linear_end.linear")

GEMMA4 = ArchitectureSpec(
    name="gemma4",
    title="Gemma-4",
    model_types=("gemma4",),
    components=(
        Component(
            name="vision",
            prefix=r"model\.vision_tower\.encoder\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj.linear", "self_attn.k_proj.linear", "self_attn.v_proj.linear",
                              "self_attn.o_proj.linear"),
                "mlp": ("mlp.gate_proj.linear", "mlp.up_proj.linear", "mlp.down_proj.linear"),
            },
        ),
        Component(
            name="audio",
            prefix=r"model\.audio_tower\.layers\.(?P<layer>\d+)",
            required=False,  # E2B and E4B only
            roles={
                "attention": ("self_attn.q_proj.linear", "self_attn.k_proj.linear", "self_attn.v_proj.linear",
                              "self_attn.post.linear", "self_attn.relative_k_proj"),
                "mlp": ("feed_forward1.ffw_layer_1.linear", "feed_forward1.ffw_layer_2.linear",
                        "feed_forward2.ffw_layer_1.linear", "feed_forward2.ffw_layer_2.linear", *CONV_MODULE),
            },
            variants={leaf: "conv module" for leaf in CONV_MODULE},
            frozen={"lconv1d.depthwise_conv1d": "a depthwise convolution"},
        ),
        Component(
            name="projector",
            prefix=r"model\.embed_(?:vision|audio)",
            roles={"projection": ("embedding_projection",)},
            follows={"embed_audio": "audio"},
        ),
        Component(
            name="language",
            prefix=r"model\.language_model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "experts.gate_up_proj",
                        "experts.down_proj"),
            },
            optional=("experts.gate_up_proj", "experts.down_proj"),  # the 26B-A4B only
            frozen={
                "router.proj": "the MoE router",
                "per_layer_input_gate": "the per-layer-input path",
                "per_layer_projection": "the per-layer-input path",
            },
        ),
    ),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"google/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("gemma-4-E2B-it", "gemma-4-E4B-it", "gemma-4-26B-A4B-it", "gemma-4-31B-it")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [GEMMA4]
