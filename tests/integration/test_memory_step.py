"""The simulated peak of a training step against real steps: for tiny models of four families, with and
without gradient checkpointing, at two sequence lengths, the step simulated on fake tensors (the model built on
the meta device from the same config) predicts what a real step on CPU makes the C allocator hold at its peak
(glibc's mallinfo2, sampled after every aten op: a measurement that shares nothing with vlora's tracker), within
5 %. The allocator's own overhead (a few hundred KB, fixed) is part of the 5 %."""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vlora_core import VisionLoRASpec, apply, tree_from_module
from vlora_core.cli import main
from vlora_core.memory import simulate_step

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from families import tiny
from steps import real_tensor_peak

SPEC = VisionLoRASpec(finetune_vision_layers=True)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                                               "uordblks", "fordblks", "keepcost")]


try:
    _LIBC = ctypes.CDLL("libc.so.6")
    _LIBC.mallinfo2.restype = _MallInfo2
except (OSError, AttributeError):  # not glibc 2.33+
    _LIBC = None


class AllocatorPeak(TorchDispatchMode):
    """The bytes glibc's allocator has in use (small blocks and mapped ones), sampled after every aten op: the
    peak over the step, above where it started."""

    def __enter__(self):
        self.start, self.peak = self.in_use(), 0
        return super().__enter__()

    @staticmethod
    def in_use() -> int:
        info = _LIBC.mallinfo2()
        return info.uordblks + info.hblkhd

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.in_use() - self.start)
        return out


def real_step_peak(model, checkpointing: bool, batch: int, seq: int) -> int:
    peft_model = apply(model, SPEC, gradient_checkpointing=checkpointing).train()
    torch.manual_seed(3)
    ids = torch.randint(0, 50, (batch, seq))

    def step():
        peft_model(input_ids=ids, labels=ids).loss.backward()
        peft_model.zero_grad(set_to_none=False)  # the gradients stay: they are the step's

    step()  # the first step allocates what lasts (gradients); measure the next one on a clean slate
    peft_model.zero_grad(set_to_none=True)
    with AllocatorPeak() as measured:
        peft_model(input_ids=ids, labels=ids).loss.backward()
    return measured.peak


@pytest.mark.skipif(_LIBC is None, reason="glibc's mallinfo2 is not available here")
@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "gemma3", "qwen3_vl"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_the_simulated_step_is_the_real_one_within_5_percent(family, checkpointing):
    for seq in (1024, 2048):
        model = tiny(family)
        tree = tree_from_module(model)
        simulated = simulate_step(SPEC, tree, batch=4, seq=seq, gradient_checkpointing=checkpointing,
                                  base_dtype="fp32")
        measured = real_step_peak(model, checkpointing, 4, seq)
        assert abs(simulated.step_peak / measured - 1) < 0.05, (family, checkpointing, seq, simulated.step_peak,
                                                                 measured)


def test_checkpointing_and_the_attention_kernel_change_the_peak_as_real_steps_do():
    model = tiny("qwen2_vl")
    tree = tree_from_module(model)
    runs = {(ckpt, attention): simulate_step(SPEC, tree, batch=2, seq=1024, gradient_checkpointing=ckpt,
                                             attention=attention, base_dtype="fp32").step_peak
            for ckpt in (False, True) for attention in ("sdpa", "eager")}
    assert runs[(True, "sdpa")] < runs[(False, "sdpa")] / 2  # checkpointing keeps layer inputs only
    assert runs[(False, "eager")] > runs[(False, "sdpa")]  # eager keeps the attention weights for backward


def test_plan_memory_on_a_full_size_reference(capsys):
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--memory", "--seq", "1024", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)["memory"]
    assert short["peak_bytes"] == (short["base_weights_bytes"] + short["adapter_bytes"]
                                   + short["optimizer_state_bytes"] + short["step_peak_bytes"])
    assert short["inputs"]["base_dtype"] == "bfloat16" and short["inputs"]["seq"] == 1024
    # 7.6 B bf16 weights from the config, not from the formula
    assert 15 * 2**30 < short["base_weights_bytes"] < 16 * 2**30
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--memory", "--seq", "2048", "--json"]) == 0
    longer = json.loads(capsys.readouterr().out)["memory"]
    assert 1.8 < longer["step_peak_bytes"] / short["step_peak_bytes"] < 2.2  # activations grow with the tokens
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--memory", "--seq", "1024"]) == 0
    out = capsys.readouterr().out
    assert "predicted peak" in out and "language model" in out and "backward" in out


def test_tied_weights_are_counted_once():
    # Qwen2-VL-2B ties its input embeddings and lm_head: the base holds one copy (bf16, 2 bytes a parameter)
    from vlora_core.cache import tree_for
    from vlora_core.plugins import default_registry

    tree = tree_for("Qwen2-VL-2B-Instruct", default_registry())
    assert tree.tied
    assert simulate_step(VisionLoRASpec(), tree, seq=64).base_weights == 2 * tree.total_params


def test_plans_side_by_side_with_their_peaks(capsys):
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--compare-tasks", "ocr", "vqa", "--memory", "--seq", "512",
                 "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]
    assert [p["label"] for p in plans] == ["ocr", "vqa"]
    assert all(p["memory"]["peak_bytes"] > p["memory"]["base_weights_bytes"] for p in plans)
    assert main(["plan", "examples/qwen2_vl_ocr.yaml", "--compare-tasks", "ocr", "vqa", "--memory",
                 "--seq", "512"]) == 0
    assert "peak of a training step" in capsys.readouterr().out


# image steps: the simulation against the same step run for real, measured as the peak of live tensor storage by
# the tracker in real mode (CPU kernels such as oneDNN's convolution keep scratch memory outside tensors, which
# the C allocator would add; docs/memory.md says how much)
IMAGE_CASES = [("qwen2_vl", 1, (32, 32)), ("qwen2_vl", 1, (64, 64)), ("qwen2_5_vl", 1, (32, 32)),
               ("qwen2_5_vl", 1, (64, 64)), ("gemma3", 1, None), ("gemma3", 2, None), ("llava", 1, None),
               ("llava", 2, None), ("paligemma", 1, None), ("paligemma", 2, None),
               # Qwen3-VL and Qwen3.5 (the tiny towers' 4-pixel patches): 64 x 64 is raised to the processor's
               # least pixel count (65536), 320 x 256 is above it
               ("qwen3_vl", 1, (64, 64)), ("qwen3_vl", 1, (320, 256)), ("qwen3_5", 1, (64, 64)),
               # Mllama: a wide image on 1 x 2 tiles, two square ones on one tile each (of 4 slots the tower runs)
               ("mllama", 1, (64, 40)), ("mllama", 2, None),
               # Idefics3 / SmolVLM: images split into tiles of the tiny tower's size, and the whole once more
               ("idefics3", 1, (64, 40)), ("smolvlm", 2, (40, 64)),
               # LLaVA-NeXT / OneVision: the whole image and the tiles of the best grid, unpadded
               ("llava_next", 1, (64, 40)), ("llava_onevision", 2, (40, 64)),
               # InternVL: 1-12 tiles and a thumbnail; Mistral-3 and Pixtral: any size, one token per (merged) patch
               ("internvl", 1, (64, 40)), ("internvl", 2, None), ("mistral3", 1, (64, 40)),
               ("pixtral_llava", 1, (40, 64)),
               # Fuyu: no tower, the patches themselves are the image tokens
               ("fuyu", 1, (64, 40)), ("fuyu", 2, (30, 50))]


@pytest.mark.parametrize(("family", "images", "size"), IMAGE_CASES,
                         ids=[f"{f}-{n}x{'x'.join(map(str, s)) if s else 'fixed'}" for f, n, s in IMAGE_CASES])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_an_image_step_is_the_real_one(family, images, size, checkpointing):
    from vlora_core.memory.inputs import step_inputs

    model = tiny(family)
    tree = tree_from_module(model)
    seq = 2048 if family.startswith("qwen3") else 1024
    spec = VisionLoRASpec(finetune_projector="lora") if family == "fuyu" else SPEC  # Fuyu: no vision tower
    simulated = simulate_step(spec, tree, batch=2, seq=seq, images=images, image_size=size,
                              gradient_checkpointing=checkpointing, base_dtype="fp32")
    inputs = step_inputs(model.config, model.config.model_type, batch=2, seq=seq, images=images, image_size=size)
    measured = real_tensor_peak(model, checkpointing, inputs.tensors, spec)
    assert simulated.inputs["image_tokens"] == inputs.image_tokens > 0
    assert abs(simulated.step_peak / measured - 1) < 0.05, (simulated.step_peak, measured)


def test_image_tokens_follow_the_processor_and_other_families_are_refused(capsys):
    # Qwen2-VL-2B: 14-pixel patches merged 2 x 2: a 448 x 448 image is 32 x 32 patches, 256 tokens
    assert main(["plan", "--model", "Qwen2-VL-2B-Instruct", "--memory", "--images", "1", "--seq", "1024",
                 "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert memory["inputs"]["image_tokens"] == (448 // 14) ** 2 // 4
    assert main(["plan", "--model", "Qwen2-VL-2B-Instruct", "--memory", "--images", "1", "--image-size", "896x896",
                 "--seq", "2048", "--json"]) == 0
    bigger = json.loads(capsys.readouterr().out)["memory"]
    assert bigger["inputs"]["image_tokens"] == (896 // 14) ** 2 // 4
    assert bigger["step_peak_bytes"] > memory["step_peak_bytes"]
    assert main(["plan", "--model", "gemma-4-E2B-it", "--memory", "--images", "1"]) == 2
    assert "--images on gemma4" in capsys.readouterr().err


def test_mllama_tiles_follow_its_processor():
    pytest.importorskip("PIL")
    from transformers.models.mllama.image_processing_pil_mllama import get_optimal_tiled_canvas

    from vlora_core.memory.inputs import _mllama_tiles

    sides = [100, 300, 448, 560, 561, 800, 1120, 1500, 2240, 3000]
    for height in sides:
        for width in sides:
            down, across = (n // 560 for n in get_optimal_tiled_canvas(height, width, 4, 560))
            assert _mllama_tiles(height, width, 4, 560) == (down, across), (height, width)


# quantized bases: the same tiny model saved and loaded with real bitsandbytes quantization on CPU, one real step
# measured as the peak of live tensor storage, against the simulation that quantizes the meta model with
# bitsandbytes' own functions on fake tensors
@pytest.mark.parametrize("family", ["qwen2_vl", "llava"])
@pytest.mark.parametrize("quant", ["4bit", "8bit"])
@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpointing"])
def test_a_quantized_step_is_the_real_one(family, quant, checkpointing, tmp_path):
    from transformers import BitsAndBytesConfig

    model = tiny(family).to(torch.bfloat16)
    simulated = simulate_step(SPEC, tree_from_module(model), batch=2, seq=512, quant=quant, base_dtype="bf16",
                              gradient_checkpointing=checkpointing)
    model.save_pretrained(tmp_path)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=torch.bfloat16) if quant == "4bit" else \
        BitsAndBytesConfig(load_in_8bit=True)
    real = type(model).from_pretrained(tmp_path, quantization_config=config, device_map="cpu", dtype=torch.bfloat16)
    ids = torch.randint(3, 50, (2, 512))
    measured = real_tensor_peak(real, checkpointing, {"input_ids": ids, "labels": ids}, SPEC)
    assert abs(simulated.step_peak / measured - 1) < 0.01, (simulated.step_peak, measured)
    held = sum(p.numel() * p.element_size() for p in real.parameters() if not p.requires_grad)
    for module in real.modules():  # and the quantization statistics beside the packed weights
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        held += sum(t.numel() * t.element_size() for t in ([state.absmax] + ([state.state2.absmax] if state.nested
                                                                               else []))) if state else 0
        scales = getattr(getattr(module, "state", None), "SCB", None)
        held += scales.numel() * scales.element_size() if scales is not None else 0
    assert abs(simulated.base_weights / held - 1) < 0.05, (simulated.base_weights, held)


# FSDP2: the step simulated over a fake process group of 2 ranks against a real FSDP2 step on 2 processes (gloo),
# rank 0's shards, the peak of its live tensor storage and the peak of glibc's allocator
@pytest.mark.parametrize(("family", "checkpointing"), [("qwen2_vl", False), ("llava", True)])
def test_an_fsdp2_step_per_device_is_the_real_one(family, checkpointing):
    import subprocess

    script = Path(__file__).resolve().parent / "fsdp_step_peak.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script),
                           family, "2", "1024", *(["--checkpointing"] if checkpointing else [])],
                          capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    model = tiny(family)
    simulated = simulate_step(SPEC, tree_from_module(model), batch=2, seq=1024, base_dtype="fp32", world_size=2,
                              gradient_checkpointing=checkpointing)
    alone = simulate_step(SPEC, tree_from_module(model), batch=2, seq=1024, base_dtype="fp32",
                          gradient_checkpointing=checkpointing)
    assert simulated.base_weights == measured["weights"] < alone.base_weights  # each rank: half of every weight
    assert simulated.adapters == measured["adapters"]
    assert abs(simulated.step_peak / measured["step_peak"] - 1) < 0.01, (simulated.step_peak, measured)
    if measured["allocator_peak"] is not None:
        assert abs(simulated.step_peak / measured["allocator_peak"] - 1) < 0.05, (simulated.step_peak, measured)


def test_idefics3_tiles_follow_its_processor():
    pytest.importorskip("PIL")
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from vlora_core.memory.inputs import _idefics3_tiles

    sides = [50, 300, 364, 448, 700, 1000, 1456, 2000, 5000]
    for tile in (364, 384, 512):  # Idefics3, SmolVLM, SmolVLM2
        processor = Idefics3ImageProcessorPil(size={"longest_edge": 4 * tile}, max_image_size={"longest_edge": tile})
        for height in sides:
            for width in sides:
                images = processor.get_number_of_image_patches(height, width, {})[0] or 1  # 0: not split, 1 image
                assert _idefics3_tiles(height, width, tile) == images, (tile, height, width)


@pytest.mark.parametrize("family", ["llava_next", "llava_onevision"])
def test_anyres_tokens_follow_the_processor(family):
    """Image tokens of LLaVA-NeXT / OneVision as step_inputs counts them, against the processor's own method
    (called on the attributes it reads: the grid pinpoints, the patch size, the tokens of the whole image)."""
    from types import SimpleNamespace

    from transformers import AutoConfig
    from transformers.image_processing_utils import select_best_resolution

    from vlora_core.memory.inputs import _anyres_tokens

    if family == "llava_next":
        from transformers.models.llava_next.processing_llava_next import LlavaNextProcessor as Processor
    else:
        from transformers.models.llava_onevision.processing_llava_onevision import LlavaOnevisionProcessor as Processor
    config = AutoConfig.for_model(family)
    side, patch = config.vision_config.image_size, config.vision_config.patch_size
    patches = side // patch
    onevision = family == "llava_onevision"
    most = int(config.vision_aspect_ratio.removeprefix("anyres_max_")) if onevision else None
    processor = SimpleNamespace(image_processor=SimpleNamespace(image_grid_pinpoints=config.image_grid_pinpoints),
                                patch_size=patch, num_additional_image_tokens=0 if onevision else 1,
                                num_image_tokens=patches**2, vision_aspect_ratio=getattr(config, "vision_aspect_ratio",
                                                                                         None))
    processor._get_unpadded_features = lambda *a: Processor._get_unpadded_features(processor, *a)
    for height in (100, 336, 448, 700, 1000, 2000):
        for width in (100, 336, 448, 700, 1000, 2000):
            theirs = Processor._get_number_of_features(processor, height, width, side, side)
            theirs -= 1 if config.vision_feature_select_strategy == "default" else 0
            best = select_best_resolution((height, width), config.image_grid_pinpoints)
            whole = patches**2 + (1 if config.vision_feature_select_strategy == "full" and not onevision else 0)
            assert whole + _anyres_tokens(height, width, best, side, patches, most) == theirs, (height, width)


def test_internvl_and_pixtral_sizes_follow_their_processors():
    pytest.importorskip("PIL")
    import numpy as np
    from transformers.models.got_ocr2.image_processing_pil_got_ocr2 import get_optimal_tiled_canvas
    from transformers.models.pixtral.image_processing_pil_pixtral import get_resize_output_image_size

    from vlora_core.memory.inputs import _internvl_tiles, step_inputs

    sides = [100, 300, 448, 600, 896, 1000, 1344, 2000, 4000]
    for height in sides:
        for width in sides:
            across, down = get_optimal_tiled_canvas((height, width), (448, 448), 1, 12)
            assert _internvl_tiles(height, width, 448, 1, 12) == across * down + (across * down > 1)
    model = tiny("mistral3")
    config, step = model.config, model.config.vision_config.patch_size * model.config.spatial_merge_size
    for height, width in [(100, 300), (448, 448), (2000, 1000), (4000, 4000)]:
        inputs = step_inputs(config, "mistral3", batch=1, seq=10**6, images=1, image_size=(height, width))
        theirs = get_resize_output_image_size(np.zeros((3, height, width)), size=(1540, 1540),
                                              patch_size=(step, step))
        assert tuple(inputs.tensors["image_sizes"][0].tolist()) == theirs
        assert inputs.image_tokens == (theirs[0] // step) * (theirs[1] // step)
