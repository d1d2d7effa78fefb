# shaped like Unsloth's Qwen2-VL vision fine-tuning notebook
from unsloth import FastVisionModel

model, tokenizer = FastVisionModel.from_pretrained("unsloth/Qwen2-VL-7B-Instruct", load_in_4bit=True,
                                                   use_gradient_checkpointing="unsloth")

model = FastVisionModel.get_peft_model(
    model,
    finetune_vision_layers     = True,
    finetune_language_layers   = True,
    finetune_attention_modules = True,
    finetune_mlp_modules       = True,
    r = 16,
    lora_alpha = 16,
    lora_dropout = 0,
    bias = "none",
    random_state = 3407,
    use_rslora = False,
    loftq_config = None,
)
