"""vlora fit on 7B-11B bundled references, measured on this machine (CPU):

1. speed: the seconds a fit takes, with the simulated steps it ran and the settings it composed from them;
2. accuracy of the reuse: for a sample of the composed settings (ranks, layer counts and batches between the
   simulated ones), the composed step peak against the same step simulated on its own, as a ratio.

    python benchmarks/fit.py [--sample N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from vlora_core import load_spec  # noqa: E402
from vlora_core.cache import tree_for  # noqa: E402
from vlora_core.memory import simulate_step  # noqa: E402
from vlora_core.memory.fit import fit  # noqa: E402
from vlora_core.plugins import default_registry  # noqa: E402
from vlora_core.spec import apply_sets, spec_from_data  # noqa: E402

GiB = 1 << 30
# (label, spec file or None for the defaults, model, budget, axes, batch, seq, images)
CASES = [
    ("Qwen2-VL-7B OCR spec, default axes", ROOT / "examples" / "qwen2_vl_ocr.yaml", None, 24, None, 4, 1024, 0),
    ("Qwen2-VL-7B OCR spec, six axes", ROOT / "examples" / "qwen2_vl_ocr.yaml", None, 24,
     ("rank", "layers", "checkpointing", "batch", "quant", "optimizer"), 4, 1024, 0),
    ("Qwen2.5-VL-7B defaults (both towers), 1 image, four axes", None, "Qwen2.5-VL-7B-Instruct", 24,
     ("components", "layers", "checkpointing", "batch"), 4, 1024, 1),
    ("Llama-3.2-11B-Vision defaults, default axes", None, "Llama-3.2-11B-Vision", 24, None, 2, 2048, 0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=4, help="composed settings checked per case (default 4)")
    args = parser.parse_args()
    random.seed(0)
    print("| case | simulated steps | settings composed | seconds | frontier rows | composed / simulated alone "
          "(min-max over the sample) |")
    print("|---|---|---|---|---|---|")
    for label, path, model, budget, axes, batch, seq, images in CASES:
        spec = load_spec(path) if path else spec_from_data({})
        tree = tree_for(model or spec.model_ref(), default_registry())

        def make(sets, path=path):
            return load_spec(path, sets=sets) if path else spec_from_data(apply_sets({}, sets))

        started = time.perf_counter()
        kwargs = {"axes": axes} if axes else {}
        result = fit(spec, tree, budget * GiB, make_spec=make, batch=batch, seq=seq, images=images, **kwargs)
        seconds = time.perf_counter() - started
        composed = [c for c in result.candidates
                    if c.setting.batch not in (1, batch) or c.setting.rank_scale not in (1.0, min(
                        x.setting.rank_scale for x in result.candidates)) or c.setting.layers != 1.0]
        ratios = []
        for cand in random.sample(composed, min(args.sample, len(composed))):
            s = cand.setting
            alone = simulate_step(make(cand.sets), tree, batch=s.batch, seq=s.seq, images=images,
                                  gradient_checkpointing=s.checkpointing, quant=s.quant)
            ratios.append(cand.step / alone.step_peak)
        span = f"{min(ratios):.4f}-{max(ratios):.4f}" if ratios else "(nothing composed)"
        print(f"| {label} | {result.probes} | {result.tried} | {seconds:.1f} | {len(result.frontier)} | {span} |",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
