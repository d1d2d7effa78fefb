"""vlora plugin for Idefics3 (``idefics3``) and SmolVLM (``smolvlm``: SmolVLM2 and later checkpoints).

Both are a SigLIP vision encoder, a connector that pixel-shuffles the image features and projects them with
one Linear (``modality_projection.proj``), and a Llama-style decoder (SmolLM2, Llama-3). SmolVLM-Instruct
itself reports ``model_type: idefics3``; the SmolVLM2 checkpoints report ``smolvlm``.

Module names (``N`` is a layer index) are the same in every transformers version that has the family
(Idefics3 from 4.46, SmolVLM from 4.50, up to 5.24): ``model.vision_model.encoder.layers.N``,
``model.connector``, ``model.text_model.layers.N``, ``lm_head``. The vision encoder's ``post_layernorm``
output is what the connector reads, so every vision layer is used.
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

IDEFICS3 = ArchitectureSpec(
    name="idefics3",
    title="Idefics3 / SmolVLM",
    model_types=("idefics3", "smolvlm"),
    components=(
        Component(
            name="vision",
            prefix=r"model\.vision_model\.encoder\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
                "mlp": ("mlp.fc1", "mlp.fc2"),
            },
        ),
        Component(
            name="projector",
            prefix=r"model\.connector",
            roles={"projection": ("modality_projection.proj",)},
        ),
        Component(
            name="language",
            prefix=r"model\.text_model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
        ),
    ),
    references=(
        ReferenceModel(name="SmolVLM-Instruct", hub_id="HuggingFaceTB/SmolVLM-Instruct",
                       config_path=CONFIGS / "SmolVLM-Instruct.json"),
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [IDEFICS3]
