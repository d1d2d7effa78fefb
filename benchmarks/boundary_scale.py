"""Large foreign inputs cost linear time: `vlora adapter inspect` of an adapter with N LoRA modules, and
`vlora import` of a tool config listing N module names, each at N and 2N, side by side in one run. Linear
work gives a ratio near 2 (quadratic work, as before the boundary, near 4).

    .venv/bin/python benchmarks/boundary_scale.py
"""

from __future__ import annotations

import json
import struct
import sys
import tempfile
from pathlib import Path

import yaml
from _common import side_by_side

from vlora_core import default_registry, import_config, read_adapter


def adapter(folder: Path, n: int) -> Path:
    """An adapter of ``n`` LoRA modules (rank 2 on 16 x 16 Linears), each in a layer of its own."""
    folder.mkdir(parents=True)
    header, offset = {}, 0
    for i in range(n):
        base = f"base_model.model.model.language_model.layers.{i}.self_attn.q_proj"
        for part, shape in (("lora_A", [2, 16]), ("lora_B", [16, 2])):
            header[f"{base}.{part}.weight"] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + 128]}
            offset += 128
    raw = json.dumps(header).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                                            "target_modules": ["q_proj"]}))
    return folder


def tool_config(path: Path, n: int) -> Path:
    """An Unsloth config whose target_modules lists ``n`` names (one of them real)."""
    names = [f"model.language_model.layers.{i % 28}.self_attn.q_proj_{i}" for i in range(n - 1)] + ["q_proj"]
    path.write_text(yaml.safe_dump({"target_modules": names, "r": 8, "lora_alpha": 16}))
    return path


def main() -> int:
    registry = default_registry()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for label, n, make, run in (
            ("adapter inspect", 25_000, lambda n: adapter(root / f"a{n}", n),
             lambda path: read_adapter(path, registry)),
            ("import (target_modules list)", 75_000, lambda n: tool_config(root / f"u{n}.yaml", n),
             lambda path: import_config(path, "unsloth", "Qwen2-VL-7B-Instruct", registry=registry)),
        ):
            small, large = make(n), make(2 * n)
            run(small)  # warm: plugins, the model's module tree
            t_small, t_large = side_by_side([lambda s=small, f=run: f(s), lambda s=large, f=run: f(s)], repeat=3)
            rows.append((label, n, t_small, t_large))
    print(f"{'input':<30} {'N':>8} {'time N':>9} {'time 2N':>9} {'ratio':>6}  (linear: ~2, quadratic: ~4)")
    for label, n, a, b in rows:
        print(f"{label:<30} {n:>8,} {a:>8.2f}s {b:>8.2f}s {b / a:>6.2f}")
    return 0 if all(b / a < 3 for *_, a, b in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
