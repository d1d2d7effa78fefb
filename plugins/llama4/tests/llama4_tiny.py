"""Tiny Llama-4 models built from the real config class (random weights, CPU): Scout-like (every layer a
mixture of experts) and Maverick-like (dense and MoE layers interleaved)."""

from __future__ import annotations

import torch
import torch.nn as nn
from transformers import Llama4Config, Llama4ForConditionalGeneration

IMAGE, BOI, EOI = 63, 61, 62
TEXT = dict(hidden_size=16, intermediate_size=8, intermediate_size_mlp=24, num_hidden_layers=4, num_attention_heads=2,
            num_key_value_heads=1, head_dim=8, vocab_size=64, num_local_experts=4, num_experts_per_tok=1)
# pixel shuffle (ratio 0.5) turns the 2 x 2 patches of a 28-pixel image into one token of 4 x 16 features
VISION = dict(hidden_size=16, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
              patch_size=14, vision_output_dim=16, projector_input_dim=16, projector_output_dim=16,
              pixel_shuffle_ratio=0.5)


def tiny_config(kind: str = "scout") -> Llama4Config:
    step = 1 if kind == "scout" else 2
    return Llama4Config(image_token_index=IMAGE, boi_token_index=BOI, eoi_token_index=EOI,
                        text_config={**TEXT, "interleave_moe_layer_step": step}, vision_config=VISION)


class Llama4Steps(nn.Module):
    """A Llama-4 model's own modules under their own names, with a forward that runs the steps of
    ``Llama4ForConditionalGeneration.forward``: transformers 5.24's version builds its output from a field
    (``image_outputs``) the language model's output does not have, so it fails on every call."""

    def __init__(self, model: Llama4ForConditionalGeneration) -> None:
        super().__init__()
        self.config = model.config
        self.vision_model, self.multi_modal_projector = model.vision_model, model.multi_modal_projector
        self.language_model = model.language_model
        object.__setattr__(self, "_model", model)

    def forward(self, input_ids, pixel_values, labels):
        embeds = self.language_model.get_input_embeddings()(input_ids)
        features = self.vision_model(pixel_values).last_hidden_state
        projected = self.multi_modal_projector(features.view(-1, features.size(-1)))
        mask = (input_ids == IMAGE).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, projected.to(embeds.dtype))
        return self.language_model(inputs_embeds=embeds, labels=labels)


def tiny_model(kind: str = "scout") -> nn.Module:
    torch.manual_seed(0)
    return Llama4Steps(Llama4ForConditionalGeneration(tiny_config(kind)))


def batch() -> dict[str, torch.Tensor]:
    torch.manual_seed(2)
    ids = torch.tensor([[1, 5, BOI, IMAGE, EOI, 6, 7, 2]])
    return dict(input_ids=ids, pixel_values=torch.randn(1, 3, 28, 28), labels=ids)
