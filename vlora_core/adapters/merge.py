"""Merge an adapter into its base model, and prove it held: every adapted module gives, merged, the outputs it gave
with its adapter (the tolerance of the base's dtype, stated); every target whose adapter is non-zero changed (the
silent "merged = base" failure); modules trained in full and tied embeddings are the trained ones in the result;
parameter targets (Gemma-3's projector, expert weights) merged to base + delta. The one place vlora reads weights.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..boundary import check_output, read_bytes, read_json, write_folder
from ..diagnostics import short_path
from ..errors import UsageError
from ..modeltree import config_from_dict, model_class

# max |merged - adapted| allowed per element, relative to the outputs' scale, by the base's dtype
TOLERANCE = {"float32": 1e-4, "float64": 1e-8, "bfloat16": 2e-2, "float16": 5e-3}
# files a base folder keeps beside its weights that a served model needs as they are
PROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "vocab.json", "merges.txt", "preprocessor_config.json",
                   "processor_config.json", "video_preprocessor_config.json", "chat_template.json",
                   "chat_template.jinja", "generation_config.json")
SAMPLE = 2048  # elements of a parameter target compared exactly (base + delta), from its start
MAX_SHARD = "5GB"


@dataclass
class MergeResult:
    """A merged model and the proof that the merge held."""

    model: Any  # the merged transformers model (adapters gone)
    dtype: str
    tolerance: float
    modules: int = 0  # adapted modules compared output against output
    max_difference: float = 0.0  # the largest |merged - adapted| over them, relative
    changed: int = 0  # targets whose weights changed (their adapter is non-zero)
    unchanged_zero: int = 0  # targets left as they were because their adapter is all zeros (B = 0: never trained)
    parameters: int = 0  # parameter targets checked as base + delta
    saved: list[str] = field(default_factory=list)  # modules trained in full, found trained in the result
    tied: list[str] = field(default_factory=list)  # (tied pairs still tied)
    problems: list[str] = field(default_factory=list)
    forward: str = ""  # the whole model's forward on a text input: how it compared

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "dtype": self.dtype, "tolerance": self.tolerance, "modules": self.modules,
                "max_difference": self.max_difference, "changed": self.changed, "all_zero": self.unchanged_zero,
                "parameters": self.parameters, "saved": self.saved, "tied": self.tied, "forward": self.forward,
                "problems": self.problems}

    def report(self) -> str:
        lines = [f"merged {self.modules + self.parameters} targets into the base ({self.dtype}): "
                 + ("the merge holds" if self.ok else "the merge does NOT hold"),
                 f"  {self.modules} adapted modules give, merged, their adapted outputs: largest difference "
                 f"{self.max_difference:.2e} of the outputs' scale (tolerance {self.tolerance:g} for {self.dtype})",
                 f"  {self.changed} targets changed"
                 + (f"; {self.unchanged_zero} adapters are all zeros (never trained) and leave their module as it was"
                    if self.unchanged_zero else "")]
        if self.parameters:
            lines.append(f"  {self.parameters} parameter targets hold base + delta")
        if self.saved:
            lines.append(f"  {len(self.saved)} modules trained in full are the trained ones in the result"
                         + (f" ({', '.join(self.tied)} still tied)" if self.tied else ""))
        if self.forward:
            lines.append(f"  the whole model on a text input: {self.forward}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines) + "\n"


def _refuse_quantized(model: Any) -> None:
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False) or any(
        type(m).__name__ in ("Linear4bit", "Linear8bitLt") for m in model.modules())
    if quantized:
        raise UsageError("the base model is quantized (bitsandbytes 4-bit/8-bit): merging into it rounds the "
                         "adapter away and the result cannot be saved as a plain model",
                         hint="load the base in bf16 (torch_dtype=torch.bfloat16, no quantization_config) and merge "
                         "there; the adapter trained with QLoRA applies to it")


def _relative(a: Any, b: Any) -> float:

    scale = max(float(b.abs().max()), 1e-6)
    return float((a.float() - b.float()).abs().max()) / scale if a.numel() else 0.0


def merge(peft_model: Any, *, inputs: dict[str, Any] | None = None) -> MergeResult:
    """Merge ``peft_model``'s active adapter into its base (``merge_and_unload``) and prove it held (a
    ``MergeResult``: its ``problems`` say what did not). ``inputs``: a batch for the whole model's forward (default:
    a short text input). A quantized base is refused; the base's dtype is kept."""
    import torch
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.layer import ParamWrapper

    base = peft_model.get_base_model()
    _refuse_quantized(base)
    adapter = peft_model.active_adapter if isinstance(peft_model.active_adapter, str) else peft_model.active_adapter[0]
    dtypes = {p.dtype for p in base.parameters() if p.is_floating_point()}  # the base's, before PEFT's adapters
    dtype = str(next(p.dtype for p in base.parameters() if p.is_floating_point())).removeprefix("torch.")
    tolerance = TOLERANCE.get(dtype, 1e-2)
    result = MergeResult(model=None, dtype=dtype, tolerance=tolerance)
    torch.manual_seed(0)
    probes: dict[str, tuple[Any, Any, Any]] = {}  # module name -> (input, adapted output, base output)
    params: dict[str, tuple[Any, Any]] = {}  # parameter name -> (base sample, delta sample)
    prefix = "base_model.model."
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            if not isinstance(module, LoraLayer) or adapter not in getattr(module, "lora_A", {}):
                continue
            short = name.removeprefix(prefix)
            if isinstance(module, ParamWrapper):  # nested wrappers (two parameters of one module): base_layer
                owner = short.replace(".base_layer", "")
                weight, delta = module.get_param(), module.get_delta_weight(adapter)
                params[f"{owner}.{module.parameter_name}"] = (weight.detach().flatten()[:SAMPLE].clone(),
                                                              delta.flatten()[:SAMPLE].clone())
                continue
            layer = module.get_base_layer()
            if not isinstance(layer, torch.nn.Linear):
                continue  # convolutions and embeddings: the whole-model forward covers them
            x = torch.randn(2, layer.in_features, dtype=layer.weight.dtype, device=layer.weight.device)
            nonzero = bool((module.lora_B[adapter].weight != 0).any())
            probes[short] = (x, module(x), layer(x), nonzero)
        saved = {}
        for name, module in peft_model.named_modules():
            store = getattr(module, "modules_to_save", None)
            if store is not None and adapter in store:
                saved[name.removeprefix(prefix)] = {k: v.detach().clone() for k, v in
                                                   store[adapter].state_dict().items()}
        batch = inputs if inputs is not None else _text_batch(base)
        tied_before = _shared_embeddings(base)
        adapted_out = _forward(peft_model, batch)
        merged = peft_model.merge_and_unload()
        result.model = merged
        modules = dict(merged.named_modules())
        for short, (x, adapted, plain, nonzero) in probes.items():
            module = modules.get(short)
            if module is None:
                result.problems.append(f"{short} is not in the merged model")
                continue
            after = module(x)
            diff = _relative(after, adapted)
            result.max_difference = max(result.max_difference, diff)
            if diff > tolerance:
                result.problems.append(f"{short}: merged outputs differ from the adapted ones by {diff:.2e}")
            if nonzero and torch.equal(after, plain) and not torch.equal(adapted, plain):
                result.problems.append(f"{short}: its adapter is non-zero but the merged module equals the base")
            else:
                result.changed += nonzero
            result.unchanged_zero += not nonzero
        result.modules = len(probes)
        named = dict(merged.named_parameters(remove_duplicate=False))
        for name, (before, delta) in params.items():
            after = named.get(name)
            if after is None:
                result.problems.append(f"parameter target {name} is not in the merged model")
                continue
            if _relative(after.detach().flatten()[:SAMPLE], before + delta) > tolerance:
                result.problems.append(f"parameter target {name} is not base + delta after the merge")
            result.parameters += 1
            result.changed += bool(delta.abs().max() > 0)
        for name, state in saved.items():
            module = modules.get(name)
            if module is None:
                result.problems.append(f"{name}, trained in full, is not in the merged model")
                continue
            now = module.state_dict()
            if any(k not in now or not torch.equal(now[k], v) for k, v in state.items()):
                result.problems.append(f"{name}, trained in full, is not the trained module in the merged model")
            else:
                result.saved.append(name)
        result.tied, untied = _tied(merged, tied_before)
        if untied:
            result.problems.append(untied)
        if adapted_out is None:
            result.forward = "not run (the model does not run on a text input alone; the per-module proof stands)"
        else:
            merged_out = _forward(merged, batch)
            diff = _relative(merged_out, adapted_out)
            result.forward = f"outputs equal (largest difference {diff:.2e})" if diff <= tolerance * 10 else \
                f"outputs differ by {diff:.2e}"
            if diff > tolerance * 10:
                result.problems.append(f"the merged model's outputs differ from the adapted model's by {diff:.2e}")
    after = {p.dtype for p in merged.parameters() if p.is_floating_point()}
    if not after <= dtypes:
        result.problems.append(f"the merged model holds {', '.join(sorted(map(str, after - dtypes)))}, which the base "
                               f"did not ({', '.join(sorted(map(str, dtypes)))})")
    return result


def _shared_embeddings(model: Any) -> bool | None:
    """Whether the input and output embeddings share one weight (PEFT's saved-module wrappers looked through);
    None where the model has no such pair."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if inp is None or out is None:
        return None
    inp, out = getattr(inp, "original_module", inp), getattr(out, "original_module", out)
    return inp.weight.data_ptr() == out.weight.data_ptr()


def _tied(model: Any, tied_before: bool | None) -> tuple[list[str], str | None]:
    """(["embeddings"] where the base tied its input and output embeddings and the merged model still does, a
    problem where they came apart with different values: save_pretrained would keep one of the two, and a
    reload would tie the other to it)."""
    if not tied_before:
        return [], None
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if _shared_embeddings(model) or (inp.weight.shape == out.weight.shape and bool((inp.weight == out.weight).all())):
        return ["embeddings"], None
    return [], ("the base ties its input and output embeddings, but the merged model holds two different ones: "
                "saving would keep one; train both together (ensure_weight_tying) or untie them in the config")


def _text_batch(model: Any) -> dict[str, Any] | None:
    import torch

    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    vocab = getattr(config, "vocab_size", None)
    if not vocab:
        return None
    torch.manual_seed(1)
    return {"input_ids": torch.randint(3, min(vocab, 64), (1, 8), device=next(model.parameters()).device)}


def _forward(model: Any, batch: dict[str, Any] | None) -> Any:
    """The logits of a forward pass, or None where the model does not run on this batch alone."""
    if batch is None:
        return None
    try:
        out = model(**batch)
    except Exception:  # a model that needs its image inputs: the per-module proof stands alone
        return None
    return getattr(out, "logits", None)


def _base_folder(path: str | Path) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise UsageError(f"{short_path(str(folder))} is no model folder (no config.json)",
                         hint="give the folder of the base model's weights (what save_pretrained wrote, or a Hub "
                         "snapshot)")
    return folder


def save_merged(result: MergeResult, out: str | Path, *, base_folder: str | Path | None = None,
                inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write the merged model the way ``save_pretrained`` does (sharded safetensors), with the base folder's
    tokenizer and processor files, atomically (a temporary folder renamed at the end) through the guarded path."""
    out = check_output(out, inputs=inputs, what="the merged model", folder=True)
    copies = {n: read_bytes(Path(base_folder) / n, "tokenizer or processor file", UsageError)
              for n in PROCESSOR_FILES if base_folder and (Path(base_folder) / n).is_file()}

    def fill(folder: Path) -> None:
        result.model.save_pretrained(folder, safe_serialization=True, max_shard_size=MAX_SHARD)
        for name in list(copies):
            if (folder / name).exists():  # what save_pretrained wrote itself (generation_config.json) stays
                del copies[name]

    return write_folder(out, copies, inputs=inputs, what="the merged model", fill=fill)


def merge_folder(adapter_dir: str | Path, base_folder: str | Path, out: str | Path) -> tuple[MergeResult, Path]:
    """``vlora adapter merge``: load the base from ``base_folder`` (its own dtype; a quantized one is refused),
    the adapter from ``adapter_dir``, merge, prove, and write ``out``."""
    from peft import PeftModel

    folder = _base_folder(base_folder)
    check_output(out, inputs=(adapter_dir, folder), what="the merged model", folder=True)
    config = read_json(folder / "config.json", "config.json", UsageError)
    if config.get("quantization_config"):
        raise UsageError(f"{short_path(str(folder))} holds a quantized model "
                         f"({config['quantization_config'].get('quant_method', 'quantized')})",
                         hint="merge into the unquantized base in bf16; the adapter trained with QLoRA applies to it")
    cls = model_class(config_from_dict(config, where=str(folder / "config.json")))
    with warnings.catch_warnings():  # PEFT asks for transformers' deprecated is_gradient_checkpointing
        warnings.simplefilter("ignore", FutureWarning)
        base = cls.from_pretrained(folder, dtype="auto")
        peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
        result = merge(peft_model)
    if not result.ok:
        return result, Path(out)
    return result, save_merged(result, out, base_folder=folder, inputs=(adapter_dir, folder))


__all__ = ["PROCESSOR_FILES", "TOLERANCE", "MergeResult", "merge", "merge_folder", "save_merged"]
