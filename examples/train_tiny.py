"""Fine-tune a tiny Qwen2-VL with each task preset, on the CPU, and check that exactly the plan trained.

The model is built from a config with random weights; batches are synthetic images and text. For each
preset (ocr, captioning, vqa, domain_adaptation) the script resolves the plan, applies it, trains a few
AdamW steps, and then checks:

* every planned (trainable) parameter changed, and every other parameter is bit-identical;
* the trainable parameters, their gradients and Adam's state take exactly the bytes the plan estimated;
* under torchrun, every rank resolved the same plan (DDP, gloo backend).

    python examples/train_tiny.py                              # all presets, one process
    python examples/train_tiny.py --isolate                    # each preset in its own process (peak memory)
    torchrun --nproc_per_node 2 examples/train_tiny.py         # DDP on 2 processes

Exits non-zero if any check fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import torch
import torch.distributed as dist
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from vlora_core import TASK_PRESETS, apply

IMAGE_TOKEN = 100
CONFIG = dict(
    text_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=256, rope_scaling={"type": "mrope", "mrope_section": [4, 2, 2]},
                     bos_token_id=1, eos_token_id=2),
    vision_config=dict(depth=4, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=2,
                       temporal_patch_size=2, spatial_merge_size=2),
    image_token_id=IMAGE_TOKEN, video_token_id=101, vision_start_token_id=102, vision_end_token_id=103,
)


def batch(step: int, rank: int) -> dict[str, torch.Tensor]:
    """One synthetic example: an 8x8-patch image (16 tokens after the 2x2 merge) inside random text."""
    g = torch.Generator().manual_seed(1000 * rank + step)
    text = torch.randint(3, 100, (1, 12), generator=g)
    ids = torch.cat([text[:, :4], torch.tensor([[102, *[IMAGE_TOKEN] * 16, 103]]), text[:, 4:]], dim=1)
    patch_dim = 3 * 2 * 2 * 2
    return dict(input_ids=ids, pixel_values=torch.randn(64, patch_dim, generator=g),
                image_grid_thw=torch.tensor([[1, 8, 8]]), mm_token_type_ids=(ids == IMAGE_TOKEN).long(), labels=ids)


def state_bytes(params: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the trainable weights, their gradients, and Adam's moment buffers."""
    total = sum(p.numel() * p.element_size() for p in params)
    total += sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None)
    for p in params:
        for value in optimizer.state[p].values():
            if torch.is_tensor(value) and value.shape == p.shape:
                total += value.numel() * value.element_size()
    return total


def train(task: str, steps: int, rank: int, world: int) -> dict:
    torch.manual_seed(0)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**CONFIG))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    peft_model = apply(model, {"task": task, "r": 8, "lora_alpha": 16})
    plan = peft_model.vlora_plan
    initial = {n: p.detach().clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    digest = hashlib.sha256(json.dumps(plan.to_dict()["targets"], sort_keys=True).encode()).hexdigest()
    if world > 1:
        digests = [None] * world
        dist.all_gather_object(digests, digest)
        if len(set(digests)) != 1:
            raise SystemExit(f"{task}: ranks resolved different plans: {digests}")
        trained = torch.nn.parallel.DistributedDataParallel(peft_model)
    else:
        trained = peft_model
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    times = []
    for step in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        trained(**batch(step, rank)).loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)

    changed, unchanged, problems = 0, 0, []
    for name, param in peft_model.named_parameters():
        if param.requires_grad:
            if ".lora_" not in name:
                problems.append(f"{name} is trainable but not an adapter")
            elif torch.equal(param.detach(), initial[name]):
                problems.append(f"adapter {name} did not change")
            changed += 1
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        if not torch.equal(param.detach(), before[key]):
            problems.append(f"frozen {key} changed")
        unchanged += 1
    measured = state_bytes(params, optimizer)
    estimated = plan.memory("fp32")["adapter_training_bytes"]
    if measured != estimated:
        problems.append(f"adapter training state is {measured} bytes, the plan estimated {estimated}")
    if problems:
        raise SystemExit(f"{task}: " + "; ".join(problems[:5]))
    return {
        "task": task,
        "targets": len(plan.targets),
        "trainable": plan.trainable_params,
        "changed": changed,
        "bit_identical": unchanged,
        "state_bytes": measured,
        "step_seconds": sorted(times)[len(times) // 2],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ranks": world,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="training steps per preset (default 4)")
    parser.add_argument("--preset", choices=list(TASK_PRESETS), action="append", help="only these presets")
    parser.add_argument("--isolate", action="store_true", help="run each preset in a fresh process")
    parser.add_argument("--json", action="store_true", help="print one JSON object per preset")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)
    presets = args.preset or list(TASK_PRESETS)
    torch.set_num_threads(1)

    if args.isolate:
        rows = []
        for task in presets:
            out = subprocess.run([sys.executable, __file__, "--preset", task, "--steps", str(args.steps), "--json"],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise SystemExit(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"{task} failed")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        _report(rows, args.json)
        return

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        dist.init_process_group("gloo")
    rows = [train(task, args.steps, rank, world) for task in presets]
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    if rank == 0:
        _report(rows, args.json)


def _report(rows: list[dict], as_json: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row, sort_keys=True))
        return
    print(f"{'preset':<18} {'targets':>7} {'trainable':>10} {'changed':>7} {'identical':>9} {'state KiB':>9} "
          f"{'step ms':>8} {'peak RSS MiB':>12} {'ranks':>5}")
    for r in rows:
        print(f"{r['task']:<18} {r['targets']:>7} {r['trainable']:>10,} {r['changed']:>7} {r['bit_identical']:>9} "
              f"{r['state_bytes'] / 1024:>9.1f} {1000 * r['step_seconds']:>8.1f} {r['peak_rss_mib']:>12.1f} "
              f"{r['ranks']:>5}")
    print("ok: every planned parameter changed, every other one is bit-identical, state bytes = the plan's estimate")


if __name__ == "__main__":
    main()
