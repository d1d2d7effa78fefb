"""vlora plugin for Mistral-3 (``mistral3``: Mistral-Small-3.1 and 3.2) and for Pixtral checkpoints in the
LLaVA format (``llava`` with a Pixtral vision tower, e.g. Pixtral-12B as converted for transformers).

Both have a Pixtral vision tower, a projector and a Mistral decoder. Module names by transformers version
(``N`` is a layer index):

* 4.50 - 4.51: ``vision_tower.transformer.layers.N``, ``multi_modal_projector``, ``language_model.model.layers.N``;
* 4.52 and later: ``model.vision_tower.transformer.layers.N``, ``model.multi_modal_projector``,
  ``model.language_model.layers.N``.

A Pixtral layer has ``attention.{q,k,v,o}_proj`` and ``feed_forward.{gate,up,down}_proj``. Mistral-3's
projector is an RMSNorm, a patch merger (``patch_merger.merging_layer``, a Linear that merges 2x2 patches)
and two Linears; all of it is the projector, never vision.

Pixtral-in-LLaVA reports ``model_type: llava`` like every LLaVA checkpoint: this plugin claims it only
where ``vision_config.model_type`` is ``pixtral`` (``ArchitectureSpec.when``), which is more specific than
the LLaVA plugin's claim, so both plugins stay installed and each model goes to the right one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlora_core import (
    VISION_TOWER_ROLES,
    ArchitectureSpec,
    Component,
    ReferenceModel,
    UnusedLayers,
    any_of,
    hookimpl,
    layers_of,
    unused_after_feature_layer,
)

CONFIGS = Path(__file__).parent / "configs"

VISION_LAYERS = ("model.vision_tower.transformer.layers", "vision_tower.transformer.layers")
PROJECTORS = ("model.multi_modal_projector", "multi_modal_projector")
LANGUAGE_LAYERS = ("model.language_model.layers", "language_model.model.layers")

PIXTRAL_ROLES = {
    "attention": ("attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj"),
    "mlp": ("feed_forward.gate_proj", "feed_forward.up_proj", "feed_forward.down_proj"),
}
VISION = Component(name="vision", prefix=layers_of(VISION_LAYERS), roles=PIXTRAL_ROLES)
LANGUAGE = Component(name="language", prefix=layers_of(LANGUAGE_LAYERS), roles=VISION_TOWER_ROLES["language"])


def _projector(*leaves: str) -> Component:
    return Component(name="projector", prefix=any_of(PROJECTORS), roles={"projection": leaves})


MISTRAL3 = ArchitectureSpec(
    name="mistral3",
    title="Mistral-3",
    model_types=("mistral3",),
    components=(VISION, _projector("patch_merger.merging_layer", "linear_1", "linear_2"), LANGUAGE),
    references=(ReferenceModel(name="Mistral-Small-3.2-24B-Instruct-2506",
                               hub_id="mistralai/Mistral-Small-3.2-24B-Instruct-2506",
                               config_path=CONFIGS / "Mistral-Small-3.2-24B-Instruct-2506.json"),),
)
PIXTRAL_LLAVA = ArchitectureSpec(
    name="pixtral_llava",
    title="Pixtral-LLaVA",
    model_types=("llava",),
    when={"vision_config.model_type": "pixtral"},
    components=(VISION, _projector("linear_1", "linear_2"), LANGUAGE),
    # mistral-community/pixtral-12b's published config.json (provenance: configs/pixtral-12b.provenance.txt)
    references=(ReferenceModel(name="pixtral-12b", hub_id="mistral-community/pixtral-12b",
                               config_path=CONFIGS / "pixtral-12b.json"),),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [MISTRAL3, PIXTRAL_LLAVA]


@hookimpl
def vlora_unused_layers(
    architecture: ArchitectureSpec, config: dict[str, Any], layer_counts: dict[str, int]
) -> list[UnusedLayers] | None:
    """Image features come from ``hidden_states[vision_feature_layer]`` (-1, the last, in the published
    checkpoints); Pixtral layers after it never influence the output."""
    if architecture.name not in ("mistral3", "pixtral_llava"):
        return None
    return unused_after_feature_layer(config, layer_counts, default=-1)
