"""vlora plugin for Qwen3-VL (``qwen3_vl``) and Qwen3-VL-MoE (``qwen3_vl_moe``).

Qwen3-VL exists in transformers from 4.57, always with this layout (``N`` is a layer index):

* vision: ``model.visual.blocks.N`` (``attn.qkv``, ``attn.proj``; ``mlp.linear_fc1``, ``mlp.linear_fc2``);
* projector: ``model.visual.merger`` and the DeepStack mergers ``model.visual.deepstack_merger_list.N``,
  which feed vision features of middle layers into the first language layers. They sit inside
  ``model.visual`` but are the projector, never vision;
* language: ``model.language_model.layers.N``. The MoE variant's MLP is ``mlp.experts`` (fused expert
  weights ``gate_up_proj`` and ``down_proj``, adapted through PEFT's ``target_parameters``) and its
  router ``mlp.gate``, which is never a target; layers listed in ``mlp_only_layers`` keep a dense MLP.

The patch embedding ``model.visual.patch_embed.proj`` is a Conv3d and never a target.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
DENSE_MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
EXPERTS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")

VISION = Component(
    name="vision",
    prefix=r"model\.visual\.blocks\.(?P<layer>\d+)",
    roles={"attention": ("attn.qkv", "attn.proj"), "mlp": ("mlp.linear_fc1", "mlp.linear_fc2")},
)
PROJECTOR = Component(
    name="projector",
    prefix=r"model\.visual\.(?:merger|deepstack_merger_list\.\d+)",
    roles={"projection": ("linear_fc1", "linear_fc2")},
)
LAYERS = r"model\.language_model\.layers\.(?P<layer>\d+)"


def _reference(name: str) -> ReferenceModel:
    return ReferenceModel(name=name, hub_id=f"Qwen/{name}", config_path=CONFIGS / f"{name}.json")


QWEN3_VL = ArchitectureSpec(
    name="qwen3_vl",
    title="Qwen3-VL",
    model_types=("qwen3_vl",),
    components=(
        VISION,
        PROJECTOR,
        Component(name="language", prefix=LAYERS, roles={"attention": ATTENTION, "mlp": DENSE_MLP}),
    ),
    references=(_reference("Qwen3-VL-8B-Instruct"),),
)

QWEN3_VL_MOE = ArchitectureSpec(
    name="qwen3_vl_moe",
    title="Qwen3-VL-MoE",
    model_types=("qwen3_vl_moe",),
    components=(
        VISION,
        PROJECTOR,
        Component(
            name="language",
            prefix=LAYERS,
            roles={"attention": ATTENTION, "mlp": (*EXPERTS, *DENSE_MLP)},
            optional=DENSE_MLP,  # only in the layers listed in mlp_only_layers
            frozen={"mlp.gate": "the MoE router"},
        ),
    ),
    references=(_reference("Qwen3-VL-30B-A3B-Instruct"),),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [QWEN3_VL, QWEN3_VL_MOE]
