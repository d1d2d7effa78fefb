"""A bitsandbytes-quantized base in a simulated step: the linear layers transformers' own quantizer would
replace (``replace_with_bnb_linear``, with the modules it keeps in full precision, ``lm_head`` among them) become
bitsandbytes' ``Linear4bit`` / ``Linear8bitLt`` on the meta device, and their weights are quantized *as fake
tensors* by bitsandbytes' own functions (its ops have fake implementations), so the step runs bitsandbytes'
real code: the packed 4-bit weight with its absmax statistics (QLoRA's NF4, double quantization), or the int8
weight with its row scales, and whatever its matmul creates forward and backward.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError

QUANT = ("4bit", "8bit")


def quantize_meta(model: Any, quant: str, compute_dtype: Any, keep: list[str]) -> None:
    """Replace ``model``'s linear layers (on the meta device) the way ``from_pretrained(...,
    quantization_config=BitsAndBytesConfig(...))`` does: QLoRA's recipe for 4-bit (NF4, double quantization,
    compute in the base dtype), LLM.int8() for 8-bit. ``keep``: modules the plan trains in full, which a
    quantized weight cannot be (``llm_int8_skip_modules``, beside transformers' own, ``lm_head``)."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"--quant {quant} simulates bitsandbytes' own code, which is not installed here",
                         hint="pip install bitsandbytes (vlora's `train` extra has it)") from exc
    from transformers import BitsAndBytesConfig
    from transformers.quantizers import AutoHfQuantizer
    from transformers.quantizers.base import get_keys_to_not_convert

    skip = sorted({*get_keys_to_not_convert(model), *keep})
    if quant == "4bit":
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                    bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=skip)
    else:
        config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    quantizer = AutoHfQuantizer.from_config(config, pre_quantized=False)
    quantizer.preprocess_model(model, device_map=None, dtype=compute_dtype)
    model.is_loaded_in_4bit = quant == "4bit"
    model.is_loaded_in_8bit = quant == "8bit"
    model.is_quantized = True


def is_quantized_linear(module: Any) -> bool:
    import bitsandbytes as bnb

    return isinstance(module, bnb.nn.Linear4bit | bnb.nn.Linear8bitLt)


def fake_quantized_weight(module: Any, mode: Any, device: Any, dtype: Any) -> list[Any]:
    """Give a bitsandbytes linear layer (on the meta device) its quantized weight as fake tensors, made by
    bitsandbytes' own quantization functions; the tensors it holds (to count as base weights)."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    import torch

    if "dynamic" not in F.name2qmap:  # its code table, made from real values once, outside the fake mode
        F.name2qmap["dynamic"] = F.create_dynamic_map()
    shape = (module.out_features, module.in_features)
    with mode:
        weight = mode.fake_tensor_converter.from_meta_and_device(
            mode, torch.empty(shape, dtype=dtype, device="meta"), device)
        if isinstance(module, bnb.nn.Linear4bit):
            packed, state = F.quantize_4bit(weight, blocksize=module.weight.blocksize,
                                            compress_statistics=module.weight.compress_statistics,
                                            quant_type=module.weight.quant_type)
            param = torch.nn.Parameter(packed, requires_grad=False)
            param.quant_state = state
            held = [packed, state.absmax, *([state.state2.absmax] if state.nested else [])]
        else:
            rows, scales, _ = F.int8_vectorwise_quant(weight.to(torch.float16))
            param = torch.nn.Parameter(rows, requires_grad=False)
            param.CB, param.SCB = None, None
            module.state.CB, module.state.SCB = rows, scales
            held = [rows, scales]
    module._parameters["weight"] = param
    return held


__all__ = ["QUANT", "fake_quantized_weight", "is_quantized_linear", "quantize_meta"]
