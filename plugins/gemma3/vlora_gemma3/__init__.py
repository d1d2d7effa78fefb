"""vlora plugin for Gemma-3 (``gemma3``: 4B, 12B, 27B).

Module names by transformers version (``N`` is a layer index):

* 4.50 - 4.51 (Gemma-3 starts at 4.50): ``vision_tower.vision_model.encoder.layers.N``,
  ``multi_modal_projector``,
  ``language_model.model.layers.N``;
* 4.52 - 5.5: ``model.vision_tower.vision_model.encoder.layers.N``, ``model.multi_modal_projector``,
  ``model.language_model.layers.N``;
* 5.6 and later: as 4.52, without the ``vision_model.`` level: ``model.vision_tower.encoder.layers.N``.

The projector is not a Linear: it holds an RMSNorm and a bare parameter ``mm_input_projection_weight``
(vision width x text width) that it multiplies with. ``finetune_projector: full`` trains the whole
projector module; ``lora`` puts an adapter on that parameter through PEFT's ``target_parameters``.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, ReferenceModel, hookimpl, vision_tower_components

CONFIGS = Path(__file__).parent / "configs"

GEMMA3 = ArchitectureSpec(
    name="gemma3",
    title="Gemma-3",
    model_types=("gemma3",),
    # vision (SigLIP), projector and language model where every LLaVA-style model has them, on every layout
    components=vision_tower_components(projection=("mm_input_projection_weight",)),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"google/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("gemma-3-4b-it", "gemma-3-12b-it", "gemma-3-27b-it")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [GEMMA3]
