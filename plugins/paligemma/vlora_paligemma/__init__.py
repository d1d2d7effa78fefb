"""vlora plugin for PaliGemma and PaliGemma 2 (``paligemma``).

Module names by transformers version (``N`` is a layer index):

* 4.46 - 4.51: ``vision_tower.vision_model.encoder.layers.N``, ``multi_modal_projector.linear``,
  ``language_model.model.layers.N``;
* 4.52 - 5.5: ``model.vision_tower.vision_model.encoder.layers.N``, ``model.multi_modal_projector.linear``,
  ``model.language_model.layers.N``;
* 5.6 and later: as 4.52, without the ``vision_model.`` level: ``model.vision_tower.encoder.layers.N``.

The language model is Gemma (PaliGemma) or Gemma 2 (PaliGemma 2); both have the same leaf names.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, ReferenceModel, hookimpl, vision_tower_components

CONFIGS = Path(__file__).parent / "configs"

PALIGEMMA = ArchitectureSpec(
    name="paligemma",
    title="PaliGemma",
    model_types=("paligemma",),
    # vision (SigLIP), projector and language model where every LLaVA-style model has them, on every layout
    components=vision_tower_components(projection=("linear",)),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"google/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("paligemma-3b-pt-224", "paligemma-3b-pt-448", "paligemma2-3b-pt-224", "paligemma2-10b-pt-224")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [PALIGEMMA]
