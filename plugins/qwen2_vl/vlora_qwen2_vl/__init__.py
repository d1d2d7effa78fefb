"""vlora plugin for Qwen2-VL and Qwen2.5-VL.

Layouts covered (module names; ``N`` is a layer index):

=================  ==================================  ====================================
part               transformers 4.46 - 4.51            transformers 4.52 and later
=================  ==================================  ====================================
vision blocks      ``visual.blocks.N``                 ``model.visual.blocks.N``
projector          ``visual.merger``                   ``model.visual.merger``
language layers    ``model.layers.N``                  ``model.language_model.layers.N``
=================  ==================================  ====================================

The projector (the merger MLP) sits *inside* the vision tower, so the vision component is the blocks
only and the merger is its own component. Qwen2.5-VL's vision MLP uses the same leaf names as the
language MLP (gate/up/down_proj); they are told apart by their prefix, never by leaf name.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

VISION_BLOCKS = r"(?:model\.)?visual\.blocks\.(?P<layer>\d+)"
MERGER = r"(?:model\.)?visual\.merger"
LANGUAGE_LAYERS = r"(?:model\.language_model|model)\.layers\.(?P<layer>\d+)"

LANGUAGE = Component(
    name="language",
    prefix=LANGUAGE_LAYERS,
    roles={
        "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
        "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    },
)
PROJECTOR = Component(name="projector", prefix=MERGER, roles={"projection": ("mlp.0", "mlp.2")})


def _reference(name: str) -> ReferenceModel:
    return ReferenceModel(name=name, hub_id=f"Qwen/{name}", config_path=CONFIGS / f"{name}.json")


QWEN2_VL = ArchitectureSpec(
    name="qwen2_vl",
    title="Qwen2-VL",
    model_types=("qwen2_vl",),
    components=(
        Component(
            name="vision",
            prefix=VISION_BLOCKS,
            roles={"attention": ("attn.qkv", "attn.proj"), "mlp": ("mlp.fc1", "mlp.fc2")},
        ),
        PROJECTOR,
        LANGUAGE,
    ),
    references=(_reference("Qwen2-VL-2B-Instruct"), _reference("Qwen2-VL-7B-Instruct")),
)

QWEN2_5_VL = ArchitectureSpec(
    name="qwen2_5_vl",
    title="Qwen2.5-VL",
    model_types=("qwen2_5_vl",),
    components=(
        Component(
            name="vision",
            prefix=VISION_BLOCKS,
            roles={
                "attention": ("attn.qkv", "attn.proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
        ),
        PROJECTOR,
        LANGUAGE,
    ),
    references=(_reference("Qwen2.5-VL-3B-Instruct"), _reference("Qwen2.5-VL-7B-Instruct")),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [QWEN2_VL, QWEN2_5_VL]
