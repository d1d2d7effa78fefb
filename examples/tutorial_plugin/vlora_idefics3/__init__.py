"""vlora plugin for Idefics3 and SmolVLM: where each part of the model is, as data."""

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

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
        ReferenceModel(
            name="SmolVLM-Instruct",
            hub_id="HuggingFaceTB/SmolVLM-Instruct",
            config_path=Path(__file__).parent / "configs" / "SmolVLM-Instruct.json",
        ),
    ),
)


@hookimpl
def vlora_architectures():
    return [IDEFICS3]
