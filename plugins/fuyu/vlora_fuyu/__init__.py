"""vlora plugin for Fuyu (``fuyu``): no vision tower. Image patches (30 x 30 pixels, flattened) go through one
Linear, ``vision_embed_tokens``, straight into a Persimmon decoder; that Linear is the projector, and the vision
toggles select nothing here (the plan says so).

Module names (``N`` is a layer index):

==========  ==============================================  ==========================================
part        transformers 4.46 - 4.51                        4.52 and later
==========  ==============================================  ==========================================
projector   ``vision_embed_tokens`` (one Linear)            ``model.vision_embed_tokens``
language    ``language_model.model.layers.N``               ``model.language_model.layers.N``
==========  ==============================================  ==========================================

A Persimmon layer has one fused ``self_attn.query_key_value`` and ``self_attn.dense`` (attention), and
``mlp.dense_h_to_4h`` / ``mlp.dense_4h_to_h`` (MLP, squared ReLU).
"""

from __future__ import annotations

from vlora_core import ArchitectureSpec, Component, hookimpl

FUYU = ArchitectureSpec(
    name="fuyu",
    title="Fuyu",
    model_types=("fuyu",),
    components=(
        Component(name="projector", prefix=r"(?:model\.)?vision_embed_tokens", roles={"projection": ("",)}),
        Component(name="language", prefix=r"(?:model\.)?language_model\.(?:model\.)?layers\.(?P<layer>\d+)",
                  roles={"attention": ("self_attn.query_key_value", "self_attn.dense"),
                         "mlp": ("mlp.dense_h_to_4h", "mlp.dense_4h_to_h")}),
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [FUYU]
