"""Layouts that several families share, as data: where each part of a model is, per transformers version.

Many VLMs (LLaVA, LLaVA-NeXT, PaliGemma, Gemma-3, and others) hold a CLIP/SigLIP vision tower, a
projector and a language model under the same names, which moved between transformers versions:

========  ==========  ====================================================  =============================
layout    versions    vision layers                                         language layers
========  ==========  ====================================================  =============================
``4.46``  4.46 - 4.51 ``vision_tower.vision_model.encoder.layers.N``        ``language_model.model.layers.N``
``4.52``  4.52 - 5.5  ``model.vision_tower.vision_model.encoder.layers.N``  ``model.language_model.layers.N``
``5.6``   5.6 and on  ``model.vision_tower.encoder.layers.N``               ``model.language_model.layers.N``
========  ==========  ====================================================  =============================

(the projector: ``multi_modal_projector``, under ``model.`` from 4.52). ``VISION_TOWER_PREFIXES`` gives a
plugin the ``Component.prefix`` of each part that matches exactly these layouts; the conformance kit
(``vlora_core.testing.vision_tower_layouts``) rebuilds a model under each of them from the same data.

``VISION_TOWER_ROLES`` holds the leaf names these models share (a CLIP/SigLIP encoder layer; a Llama,
Mistral or Gemma decoder layer), and ``vision_tower_components`` builds the three components from the
prefixes, those roles, and the projector's own leaves.

Plain data and string functions: no torch, like everything a plugin imports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .architecture import Component, UnusedLayers


@dataclass(frozen=True)
class Layout:
    """Where the parts of a LLaVA-style model are in one range of transformers versions (dotted paths)."""

    name: str  # e.g. "4.52"
    versions: str  # e.g. "4.52 - 5.5"
    root: str  # the module holding the model's parts ("" when they sit on the top-level class itself)
    vision_tower: str  # the vision transformer (its encoder holds the layers)
    projector: str
    language_model: str  # the decoder (it holds the layers)
    lm_head: str

    @property
    def vision_layers(self) -> str:
        return f"{self.vision_tower}.encoder.layers"

    @property
    def language_layers(self) -> str:
        return f"{self.language_model}.layers"


VISION_TOWER_LAYOUTS: tuple[Layout, ...] = (
    Layout("4.46", "4.46 - 4.51", "", "vision_tower.vision_model", "multi_modal_projector", "language_model.model",
           "language_model.lm_head"),
    Layout("4.52", "4.52 - 5.5", "model", "model.vision_tower.vision_model", "model.multi_modal_projector",
           "model.language_model", "lm_head"),
    Layout("5.6", "5.6 and later", "model", "model.vision_tower", "model.multi_modal_projector",
           "model.language_model", "lm_head"),
)


def any_of(paths: Iterable[str]) -> str:
    """A regex that matches exactly one of these dotted paths: ``(?:a\\.b|c\\.d)``."""
    unique = list(dict.fromkeys(paths))
    return "(?:" + "|".join(re.escape(p) for p in unique) + ")"


def layers_of(paths: Iterable[str]) -> str:
    """A ``Component.prefix`` for the layers of a list at any of these dotted paths: ``(?:...)\\.(?P<layer>\\d+)``."""
    return any_of(paths) + r"\.(?P<layer>\d+)"


VISION_TOWER_PREFIXES: dict[str, str] = {
    "vision": layers_of(layout.vision_layers for layout in VISION_TOWER_LAYOUTS),
    "projector": any_of(layout.projector for layout in VISION_TOWER_LAYOUTS),
    "language": layers_of(layout.language_layers for layout in VISION_TOWER_LAYOUTS),
}

def first_unused_layer(feature_layer: int | list[int], count: int) -> int:
    """Index of the first vision layer whose output the image features never see (LLaVA-style configs).

    ``hidden_states[0]`` is the embedding output and ``hidden_states[i]`` the output of layer ``i - 1``, so
    features taken from ``hidden_states[k]`` use layers ``0 .. k-1``. Negative ``k`` counts from the end
    of the ``count + 1`` hidden states; a list (several feature layers) takes the deepest.
    """
    layers = feature_layer if isinstance(feature_layer, list) else [feature_layer]
    return max(k if k >= 0 else count + 1 + k for k in layers)


def unused_after_feature_layer(
    config: dict[str, Any], layer_counts: dict[str, int], *, default: int | list[int] | None = None
) -> list[UnusedLayers] | None:
    """For ``vlora_unused_layers`` of a LLaVA-style model: the vision layers after the one whose hidden state
    ``vision_feature_layer`` (``default`` where the config has none) takes the image features from. The one
    place this rule is written: plugins, structural inference and scaffolded plugins call it."""
    feature_layer = config.get("vision_feature_layer", default)
    if "vision" not in layer_counts or not isinstance(feature_layer, int | list) or isinstance(feature_layer, bool):
        return None
    count = layer_counts["vision"]
    first = first_unused_layer(feature_layer, count)
    if first >= count:
        return None
    return [UnusedLayers(component="vision", layers=tuple(range(first, count)),
                         reason=f"image features come from vision_feature_layer={feature_layer}")]


VISION_TOWER_ROLES: dict[str, dict[str, tuple[str, ...]]] = {
    "vision": {  # a CLIP / SigLIP encoder layer
        "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
        "mlp": ("mlp.fc1", "mlp.fc2"),
    },
    "language": {  # a Llama / Mistral / Gemma decoder layer
        "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
        "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    },
}


def vision_tower_components(projection: tuple[str, ...]) -> tuple[Component, Component, Component]:
    """Vision, projector and language components of a LLaVA-style model on every layout above; the
    projector's ``projection`` leaves are the family's own (``("linear_1", "linear_2")`` for LLaVA)."""
    return (
        Component(name="vision", prefix=VISION_TOWER_PREFIXES["vision"], roles=VISION_TOWER_ROLES["vision"]),
        Component(name="projector", prefix=VISION_TOWER_PREFIXES["projector"], roles={"projection": projection}),
        Component(name="language", prefix=VISION_TOWER_PREFIXES["language"], roles=VISION_TOWER_ROLES["language"]),
    )


__all__ = [
    "VISION_TOWER_LAYOUTS",
    "VISION_TOWER_PREFIXES",
    "VISION_TOWER_ROLES",
    "Layout",
    "any_of",
    "first_unused_layer",
    "layers_of",
    "unused_after_feature_layer",
    "vision_tower_components",
]
