"""vlora plugin for PaliGemma and PaliGemma 2 (``paligemma``).

Module names (``N`` is a layer index):

===============  ======================================  =====================================  =============================
part             transformers 4.46 - 4.51                4.52 - 5.5                             5.6 and later
===============  ======================================  =====================================  =============================
vision (SigLIP)  ``vision_tower.vision_model.encoder``   ``model.vision_tower.vision_model.``   ``model.vision_tower.encoder.``
                 ``.layers.N``                           ``encoder.layers.N``                   ``layers.N``
projector        ``multi_modal_projector.linear``        ``model.multi_modal_projector.linear`` same
language         ``language_model.model.layers.N``       ``model.language_model.layers.N``      same
===============  ======================================  =====================================  =============================

The language model is Gemma (PaliGemma) or Gemma 2 (PaliGemma 2); both have the same leaf names.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

PALIGEMMA = ArchitectureSpec(
    name="paligemma",
    title="PaliGemma",
    model_types=("paligemma",),
    components=(
        Component(
            name="vision",
            prefix=r"(?:model\.)?vision_tower\.(?:vision_model\.)?encoder\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
                "mlp": ("mlp.fc1", "mlp.fc2"),
            },
        ),
        Component(name="projector", prefix=r"(?:model\.)?multi_modal_projector", roles={"projection": ("linear",)}),
        Component(
            name="language",
            prefix=r"(?:model\.language_model|language_model\.model)\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
        ),
    ),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"google/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("paligemma-3b-pt-224", "paligemma-3b-pt-448", "paligemma2-3b-pt-224", "paligemma2-10b-pt-224")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [PALIGEMMA]
