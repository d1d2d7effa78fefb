"""vlora plugin for Qwen3.5 (``qwen3_5``) and Qwen3.5-MoE (``qwen3_5_moe``).

Qwen3.5 exists in transformers 5 only, with this layout (``N`` is a layer index):

* vision: ``model.visual.blocks.N`` (``attn.qkv``, ``attn.proj``; ``mlp.linear_fc1``, ``mlp.linear_fc2``), as
  Qwen3-VL without DeepStack; the projector is ``model.visual.merger``, inside ``model.visual`` but never
  vision;
* language: one stack ``model.language_model.layers.N`` whose layers follow ``text_config.layer_types``:
  most are Gated DeltaNet linear attention (``linear_attn``), every few (``full_attention_interval``) a
  full-attention layer (``self_attn``). Both kinds of projection have the role ``attention``, switched by
  ``finetune_attention_modules``; the linear ones are the variant ``linear`` (their own row in the plan).
  Layer selection counts the layers of the one stack.

Never targets: the depthwise ``linear_attn.conv1d``, and ``linear_attn.in_proj_a`` / ``in_proj_b``, which
have one output per value head (32 on the 9B) and drive the decay and update gates of the recurrence:
an adapter of rank 16 there is nearly a full update of the gate, not a low-rank one. A spec can still
add them with ``target_modules_extra`` (with a warning).

The MoE variant's MLP: routed experts ``mlp.experts`` (fused ``gate_up_proj`` and ``down_proj``, adapted
through PEFT's ``target_parameters``), a shared expert ``mlp.shared_expert.{gate,up,down}_proj`` (the
variant ``shared expert``), and two gates that are never targets: the router ``mlp.gate`` and
``mlp.shared_expert_gate`` (a Linear with one output).
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

FULL_ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
LINEAR_ATTENTION = ("linear_attn.in_proj_qkv", "linear_attn.in_proj_z", "linear_attn.out_proj")
LINEAR_FROZEN = {
    "linear_attn.in_proj_a": "a gate projection with one output per value head",
    "linear_attn.in_proj_b": "a gate projection with one output per value head",
    "linear_attn.conv1d": "a depthwise convolution",
}
SHARED_EXPERT = ("mlp.shared_expert.gate_proj", "mlp.shared_expert.up_proj", "mlp.shared_expert.down_proj")

VISION = Component(
    name="vision",
    prefix=r"model\.visual\.blocks\.(?P<layer>\d+)",
    roles={"attention": ("attn.qkv", "attn.proj"), "mlp": ("mlp.linear_fc1", "mlp.linear_fc2")},
)
PROJECTOR = Component(
    name="projector", prefix=r"model\.visual\.merger", roles={"projection": ("linear_fc1", "linear_fc2")}
)
LAYERS = r"model\.language_model\.layers\.(?P<layer>\d+)"


def _reference(name: str) -> ReferenceModel:
    return ReferenceModel(name=name, hub_id=f"Qwen/{name}", config_path=CONFIGS / f"{name}.json")


QWEN3_5 = ArchitectureSpec(
    name="qwen3_5",
    title="Qwen3.5",
    model_types=("qwen3_5",),
    components=(
        VISION,
        PROJECTOR,
        Component(
            name="language",
            prefix=LAYERS,
            roles={"attention": (*FULL_ATTENTION, *LINEAR_ATTENTION),
                   "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")},
            variants={leaf: "linear" for leaf in LINEAR_ATTENTION},
            frozen=LINEAR_FROZEN,
        ),
    ),
    references=(_reference("Qwen3.5-9B"),),
)

QWEN3_5_MOE = ArchitectureSpec(
    name="qwen3_5_moe",
    title="Qwen3.5-MoE",
    model_types=("qwen3_5_moe",),
    components=(
        VISION,
        PROJECTOR,
        Component(
            name="language",
            prefix=LAYERS,
            roles={"attention": (*FULL_ATTENTION, *LINEAR_ATTENTION),
                   "mlp": ("mlp.experts.gate_up_proj", "mlp.experts.down_proj", *SHARED_EXPERT)},
            variants={**{leaf: "linear" for leaf in LINEAR_ATTENTION},
                      **{leaf: "shared expert" for leaf in SHARED_EXPERT}},
            frozen={**LINEAR_FROZEN, "mlp.gate": "the MoE router",
                    "mlp.shared_expert_gate": "the shared expert's gate (one output)"},
        ),
    ),
    references=(_reference("Qwen3.5-35B-A3B"),),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [QWEN3_5, QWEN3_5_MOE]
