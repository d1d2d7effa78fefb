"""vlora plugin for Llama-4 (``llama4``: Scout 17B-16E, Maverick 17B-128E).

Module names, the same in every transformers version that has Llama-4 (4.51 and later; ``N`` is a layer
index):

* vision: ``vision_model.model.layers.N`` (``self_attn.{q,k,v,o}_proj``, ``mlp.fc1``, ``mlp.fc2``); the patch
  embedding's Linear ``vision_model.patch_embedding.linear`` is never a target;
* projector: the vision adapter ``vision_model.vision_adapter`` (a pixel-shuffle MLP, ``mlp.fc1``, ``mlp.fc2``)
  and ``multi_modal_projector`` (``linear_1``) together, as Qwen's merger is: the adapter sits inside
  ``vision_model`` but is never vision;
* language: ``language_model.model.layers.N``. A mixture-of-experts layer has routed experts
  ``feed_forward.experts`` (fused ``gate_up_proj`` / ``down_proj``, through PEFT's ``target_parameters``),
  a shared expert ``feed_forward.shared_expert.{gate,up,down}_proj`` and the router
  ``feed_forward.router``, which is never a target: it is an nn.Linear whose forward returns a tuple, and
  PEFT's wrapper would break it. Maverick interleaves dense layers (``feed_forward.{gate,up,down}_proj``).
"""

from __future__ import annotations

from pathlib import Path

from vlora_core import ArchitectureSpec, Component, ReferenceModel, hookimpl

CONFIGS = Path(__file__).parent / "configs"

ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
SHARED_EXPERT = ("feed_forward.shared_expert.gate_proj", "feed_forward.shared_expert.up_proj",
                 "feed_forward.shared_expert.down_proj")
DENSE = ("feed_forward.gate_proj", "feed_forward.up_proj", "feed_forward.down_proj")

LLAMA4 = ArchitectureSpec(
    name="llama4",
    title="Llama-4",
    model_types=("llama4",),
    components=(
        Component(
            name="vision",
            prefix=r"vision_model\.model\.layers\.(?P<layer>\d+)",
            roles={"attention": ATTENTION, "mlp": ("mlp.fc1", "mlp.fc2")},
        ),
        Component(
            name="projector",
            prefix=r"(?:vision_model\.vision_adapter|multi_modal_projector)",
            roles={"projection": ("mlp.fc1", "mlp.fc2", "linear_1")},
        ),
        Component(
            name="language",
            prefix=r"language_model\.model\.layers\.(?P<layer>\d+)",
            roles={
                "attention": ATTENTION,
                "mlp": ("feed_forward.experts.gate_up_proj", "feed_forward.experts.down_proj", *SHARED_EXPERT,
                        *DENSE),
            },
            variants={leaf: "shared expert" for leaf in SHARED_EXPERT},
            optional=DENSE,  # Maverick's interleaved dense layers only
            frozen={"feed_forward.router": "the MoE router"},
        ),
    ),
    references=tuple(
        ReferenceModel(name=name, hub_id=f"meta-llama/{name}", config_path=CONFIGS / f"{name}.json")
        for name in ("Llama-4-Scout-17B-16E-Instruct", "Llama-4-Maverick-17B-128E-Instruct")
    ),
)


@hookimpl
def vlora_architectures() -> list[ArchitectureSpec]:
    return [LLAMA4]
