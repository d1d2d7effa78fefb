"""vlora plugin for LLaVA-1.5 (``llava``), LLaVA-NeXT (``llava_next``) and LLaVA-OneVision (``llava_onevision``:
a SigLIP tower, whose layers have the same names as CLIP's, and a Qwen2 decoder).

Module names by transformers version (``N`` is a layer index):

* 4.46 - 4.51: ``vision_tower.vision_model.encoder.layers.N``, ``multi_modal_projector``,
  ``language_model.model.layers.N``;
* 4.52 - 5.5: ``model.vision_tower.vision_model.encoder.layers.N``, ``model.multi_modal_projector``,
  ``model.language_model.layers.N``;
* 5.6 and later: as 4.52, without the ``vision_model.`` level: ``model.vision_tower.encoder.layers.N``.

LLaVA takes its image features from the hidden state ``vision_feature_layer`` (-2 for every published
LLaVA-1.5 and LLaVA-NeXT checkpoint; OneVision's default is -1, the last), so the vision layers after it
never influence the output and adapters there get no gradient.
``vlora_unused_layers`` reports them; the plan leaves them out unless the spec sets
``include_unused_layers: true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlora_core import (
    ArchitectureSpec,
    ReferenceModel,
    UnusedLayers,
    hookimpl,
    unused_after_feature_layer,
    vision_tower_components,
)

CONFIGS = Path(__file__).parent / "configs"

# vision (CLIP), projector and language model where every LLaVA-style model has them, on every layout
VISION, PROJECTOR, LANGUAGE = vision_tower_components(projection=("linear_1", "linear_2"))


def _reference(name: str) -> ReferenceModel:
    return ReferenceModel(name=name, hub_id=f"llava-hf/{name}", config_path=CONFIGS / f"{name}.json")


LLAVA = ArchitectureSpec(
    name="llava",
    title="LLaVA-1.5",
    model_types=("llava",),
    components=(VISION, PROJECTOR, LANGUAGE),
    references=(_reference("llava-1.5-7b-hf"), _reference("llava-1.5-13b-hf")),
)
LLAVA_NEXT = ArchitectureSpec(
    name="llava_next",
    title="LLaVA-NeXT",
    model_types=("llava_next",),
    components=(VISION, PROJECTOR, LANGUAGE),
    references=(_reference("llava-v1.6-mistral-7b-hf"), _reference("llava-v1.6-vicuna-7b-hf")),
)


LLAVA_ONEVISION = ArchitectureSpec(
    name="llava_onevision",
    title="LLaVA-OneVision",
    model_types=("llava_onevision",),
    components=(VISION, PROJECTOR, LANGUAGE),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [LLAVA, LLAVA_NEXT, LLAVA_ONEVISION]


@hookimpl
def vlora_unused_layers(
    architecture: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
) -> list[UnusedLayers] | None:
    if architecture.name not in ("llava", "llava_next", "llava_onevision"):
        return None
    return unused_after_feature_layer(config, layer_counts, default=-1 if architecture.name == "llava_onevision"
                                      else -2)
