"""vlora plugin for InternVL in the transformers format (``internvl``: InternVL3 and InternVL3.5 ``-hf``
checkpoints), in every transformers version that has it (4.52 and later, one layout).

* vision: ``model.vision_tower.encoder.layer.N`` (InternViT), attention ``attention.{q,k,v}_proj`` and
  ``attention.projection_layer``, MLP ``mlp.fc1`` / ``mlp.fc2``;
* projector: ``model.multi_modal_projector`` (a LayerNorm over the pixel-shuffled features, then
  ``linear_1`` and ``linear_2``);
* language: ``model.language_model.layers.N`` (a Qwen2, Qwen3 or Llama decoder: the same names).

Image features come from ``hidden_states[vision_feature_layer]`` (-1 in the published checkpoints); the
vision layers after it are left out.
"""

from __future__ import annotations

from typing import Any

from vlora_core import (
    VISION_TOWER_ROLES,
    ArchitectureSpec,
    Component,
    UnusedLayers,
    any_of,
    hookimpl,
    layers_of,
    unused_after_feature_layer,
)

INTERNVIT_ROLES = {
    "attention": ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.projection_layer"),
    "mlp": ("mlp.fc1", "mlp.fc2"),
}
INTERNVL = ArchitectureSpec(
    name="internvl",
    title="InternVL",
    model_types=("internvl",),
    components=(
        Component(name="vision", prefix=layers_of(["model.vision_tower.encoder.layer"]), roles=INTERNVIT_ROLES),
        Component(name="projector", prefix=any_of(["model.multi_modal_projector"]),
                  roles={"projection": ("linear_1", "linear_2")}),
        Component(name="language", prefix=layers_of(["model.language_model.layers"]),
                  roles=VISION_TOWER_ROLES["language"]),
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [INTERNVL]


@hookimpl
def vlora_unused_layers(
    architecture: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
) -> list[UnusedLayers] | None:
    if architecture.name != "internvl":
        return None
    return unused_after_feature_layer(config, layer_counts, default=-1)
