"""vlora plugin for Llama-3.2-Vision (``mllama``: 11B and 90B).

Module names (``N`` is a layer index):

==================  ========================================  ========================================
part                transformers 4.46 - 4.51                  4.52 and later
==================  ========================================  ========================================
vision, local       ``vision_model.transformer.layers.N``     ``model.vision_model.transformer.``
                                                              ``layers.N``
vision, global      ``vision_model.global_transformer.``      ``model.vision_model.global_transformer``
                    ``layers.N`` (gated)                      ``.layers.N``
projector           ``multi_modal_projector`` (one Linear)    ``model.multi_modal_projector``
language            ``language_model.model.layers.N``         ``model.language_model.layers.N``
==================  ========================================  ========================================

The vision component has two stacks, ``transformer`` (32 layers) and ``global_transformer`` (8), which
specs can select separately: ``vision: {layers: {global_transformer: {last: 4}}}``. In the language
model, the layers listed in ``text_config.cross_attention_layers`` have ``cross_attn.*`` where the others
have ``self_attn.*``; they are the role ``cross_attention``, switched by ``finetune_cross_attention``.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import (
    VISION_TOWER_PREFIXES,
    VISION_TOWER_ROLES,
    ArchitectureSpec,
    Component,
    ReferenceModel,
    hookimpl,
)

CONFIGS = Path(__file__).parent / "configs"

MLLAMA = ArchitectureSpec(
    name="mllama",
    title="Llama-3.2-Vision",
    model_types=("mllama",),
    components=(
        Component(
            name="vision",
            prefix=r"(?:model\.)?vision_model\.(?P<stack>transformer|global_transformer)\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.fc1", "mlp.fc2"),
            },
        ),
        # the projector and the language model sit where they sit in LLaVA-style models, on every layout
        Component(name="projector", prefix=VISION_TOWER_PREFIXES["projector"], roles={"projection": ("",)}),
        Component(
            name="language",
            prefix=VISION_TOWER_PREFIXES["language"],
            roles={
                **VISION_TOWER_ROLES["language"],
                "cross_attention": ("cross_attn.q_proj", "cross_attn.k_proj", "cross_attn.v_proj",
                                    "cross_attn.o_proj"),
            },
        ),
    ),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"meta-llama/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("Llama-3.2-11B-Vision", "Llama-3.2-90B-Vision")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [MLLAMA]
