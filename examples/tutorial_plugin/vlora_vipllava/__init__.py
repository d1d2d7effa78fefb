"""vlora plugin for VipLLaVA: where each part of the model is, as data."""

from vlora_core import ArchitectureSpec, Component, UnusedLayers, first_unused_layer, hookimpl

VIPLLAVA = ArchitectureSpec(
    name="vipllava",
    title="VipLLaVA",
    model_types=("vipllava",),
    components=(
        Component(
            name="vision",
            # transformers 4.52 - 5.5 keep a `vision_model.` level that 5.6 and later drop
            prefix=r"model\.vision_tower\.(?:vision_model\.)?encoder\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"),
                "mlp": ("mlp.fc1", "mlp.fc2"),
            },
        ),
        Component(
            name="projector",
            prefix=r"model\.multi_modal_projector",
            roles={"projection": ("linear_1", "linear_2")},
        ),
        Component(
            name="language",
            prefix=r"model\.language_model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"),
                "mlp": ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
            },
        ),
    ),
)


@hookimpl
def vlora_architectures():
    return [VIPLLAVA]


@hookimpl
def vlora_unused_layers(architecture, config, layer_counts):
    """VipLLaVA concatenates several vision hidden states; the layers after the deepest one it reads never
    reach the output."""
    if architecture.name != "vipllava" or "vision" not in layer_counts:
        return None
    # the key is vision_feature_layers up to transformers 4.57 and vision_feature_layer in 5.x
    read = config.get("vision_feature_layer", config.get("vision_feature_layers", [-2, -5, -8, -11, 6]))
    count = layer_counts["vision"]
    first = first_unused_layer(read, count)
    if first >= count:
        return None
    return [UnusedLayers(component="vision", layers=tuple(range(first, count)),
                         reason=f"image features come from the vision hidden states {read}")]
