"""Write the example adapters in this folder (tiny models, random weights; a few KB each).

* llava-q-v: an adapter made outside vlora with PEFT's own hand-written target list ``["q_proj", "v_proj"]``
  on a tiny LLaVA, the way many recipes do it; on LLaVA those names also hit the vision tower, which
  ``vlora adapter inspect`` shows;
* tiny-llava: the config.json of the model it was trained on, for ``vlora adapter check``.

    python examples/adapters/make_adapters.py
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlavaConfig, LlavaForConditionalGeneration

HERE = Path(__file__).resolve().parent


def tiny_llava() -> LlavaForConditionalGeneration:
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                           num_attention_heads=2, image_size=8, patch_size=4, projection_dim=16),
        text_config=dict(model_type="llama", hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=128),
        image_token_index=100, vision_feature_layer=-2))


def main() -> None:
    base = tiny_llava()
    base.config.save_pretrained(HERE / "tiny-llava")  # the model it was trained on, config only
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(HERE / "llava-q-v")
    (HERE / "llava-q-v" / "README.md").unlink()  # PEFT's model card template
    print(f"wrote {HERE / 'llava-q-v'}")


if __name__ == "__main__":
    main()
