"""``vlora fit``: what fits a memory budget, around a spec."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..boundary import escape, write_text
from ..memory.fit import AXES, DEFAULT_AXES, Candidate, FitResult, fit
from ..memory.step import GiB
from ..spec import apply_sets, load_spec, spec_from_data
from ..spec_file import spec_text
from .common import command, errors, resolution_options, spec_and_tree
from .plan import step_options

UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20,
         "gib": 1 << 30, "tib": 1 << 40}
SHOWN = 12  # frontier rows printed (--json and --write: all)


def budget_bytes(text: str) -> int:
    """``24GiB``, ``80 GB``, ``23000MiB``: bytes (GB is 10^9, GiB 2^30)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*", text, re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a size with its unit, like 24GiB or 80GB; got {text!r}")
    return int(float(match[1]) * UNITS[match[2].lower()])


def axes_of(text: str) -> tuple[str, ...]:
    axes = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in axes if a not in AXES]
    if bad or not axes:
        raise argparse.ArgumentTypeError(f"unknown axis {bad[0]!r}; the axes: {', '.join(AXES)}" if bad else
                                         "name at least one axis")
    return axes


def add(sub: Any) -> None:
    p = command(sub, "fit", more="  10 is this command's: nothing tried fits the budget (the smallest peak is said)\n",
                help="find the settings of a spec's training step that fit a memory budget",
                description="Predict the peak memory of training steps around SPEC (the step simulated as "
                "`vlora plan --memory` does it), vary what --vary names, and print the frontier of what fits "
                "--budget: each row a setting no other fitting one beats on every axis, closest to SPEC first. "
                "Per-layer costs are measured by a few simulated steps and reused for every rank, layer count and "
                "batch in between, so a 7B-11B model takes tens of seconds.")
    p.add_argument("spec", metavar="SPEC", nargs="?", help="spec file; without one, the defaults on --model")
    resolution_options(p)
    p.add_argument("--budget", type=budget_bytes, required=True, metavar="SIZE",
                   help="the memory of one device, with its unit: 24GiB, 80GB (GB is 10^9 bytes, GiB 2^30); leave "
                   "room for the CUDA context and the allocator (docs/memory.md says how much)")
    p.add_argument("--vary", type=axes_of, default=DEFAULT_AXES, metavar="AXES",
                   help="what to vary, comma-separated (default: " + ",".join(DEFAULT_AXES) + ", which leave what "
                   "trains alone): checkpointing (on), optimizer (adamw8bit), batch (halved down to 1), quant (8bit, "
                   "4bit), rank (every rank x1/2, x1/4, x1/8, not below 4), layers (the last 1/2, 1/4 of each "
                   "trained stack), components (language only; vision only with --images), seq (halved down to "
                   "256)")
    p.add_argument("--write", metavar="DIR", help="save each setting that fits as a spec file, DIR/fit-01.yaml, ... "
                   "(closest to SPEC first; its step settings in a comment at the top)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    mem = p.add_argument_group("the training step (the given values lead each axis)")
    step_options(mem)


def run(args: argparse.Namespace) -> int:
    spec, tree = spec_and_tree(args, "vlora fit SPEC --budget 24GiB, or vlora fit --model REF --budget 24GiB")

    def make_spec(sets: list[str]) -> Any:
        if args.spec is not None:
            return load_spec(args.spec, sets=[*args.set, *sets])
        return spec_from_data(apply_sets({}, [*args.set, *sets]))

    result = fit(spec, tree, args.budget, axes=args.vary, make_spec=make_spec, batch=args.batch, seq=args.seq,
                 images=args.images, image_size=args.image_size, gradient_checkpointing=args.gradient_checkpointing,
                 attention=args.attention, optimizer=args.optimizer, base_dtype=args.base_dtype, quant=args.quant,
                 world_size=args.world_size,
                 progress=None if args.json else lambda line: print(escape(line), file=sys.stderr))
    if args.write:
        for i, cand in enumerate(result.frontier, 1):
            target = Path(args.write) / f"fit-{i:02d}.yaml"
            text = spec_text(args.spec, [*args.set, *cand.sets], target=target,
                             extra={"model": args.model} if args.model else None)
            written = write_text(target, _header(cand, result) + text, inputs=[args.spec] if args.spec else [],
                                 what="a spec that fits")
            print(f"wrote {written}", file=sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(_data(result), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(_table(result, args))
    return errors.EXIT_OK if result.fits else errors.EXIT_NO_FIT


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB"


def _header(cand: Candidate, result: FitResult) -> str:
    s = cand.setting
    return (f"# vlora fit: predicted peak {_gib(cand.peak)} of a {_gib(result.budget)} budget, with batch {s.batch} "
            f"x {s.seq} tokens, gradient checkpointing {'on' if s.checkpointing else 'off'}, {s.optimizer}, "
            f"{'a ' + s.quant + ' base' if s.quant else 'the base unquantized'}\n"
            f"# changed from the spec: {', '.join(cand.changes) or 'nothing'}\n")


def _data(result: FitResult) -> dict[str, Any]:
    return {"budget_bytes": result.budget, "fits": result.fits, "axes": list(result.axes),
            "given": result.given.to_dict() if result.given else None,
            "frontier": [c.to_dict() for c in result.frontier],
            "smallest": result.smallest.to_dict() if result.smallest else None,
            "candidates_tried": result.tried, "simulated_steps": result.probes, "seconds": round(result.seconds, 1),
            "notes": result.notes}


def _table(result: FitResult, args: argparse.Namespace) -> str:
    lines = [f"budget {_gib(result.budget)}; a step of {args.batch} x {args.seq} tokens"
             + (f", {args.images} image(s) per sequence" if args.images else ", text only")
             + f", {args.attention} attention"
             + (f"; per device of {args.world_size} (FSDP2)" if args.world_size > 1 else "")]
    given = result.given
    if given is not None:
        verdict = "fits" if given.peak <= result.budget else f"does not fit ({_gib(given.peak - result.budget)} over)"
        lines.append(f"as given: predicted peak {_gib(given.peak)}: {verdict}")
    if result.fits:
        lines.append("fits (the frontier: no other setting that fits is better on every axis; closest to the spec "
                     "first):")
        header = ("  #  peak GiB  LoRA params     r  batch   seq  ckpt  base   optimizer  changed")
        lines.append(header)
        for i, c in enumerate(result.frontier[:SHOWN], 1):
            s = c.setting
            lines.append(f"  {i:<2} {c.peak / GiB:8.2f}  {c.lora_params:>11,}  {c.r:>4}  {s.batch:>5}  {s.seq:>4}  "
                         f"{'on' if s.checkpointing else 'off':<4}  {s.quant or 'full':<5}  {s.optimizer:<9}  "
                         f"{', '.join(c.changes) or '(as given)'}")
        if len(result.frontier) > SHOWN:
            lines.append(f"  ... {len(result.frontier) - SHOWN} more (--json or --write DIR has them all)")
    else:
        small = result.smallest
        lines.append("nothing tried fits" + (f": the smallest predicted peak is {_gib(small.peak)} "
                                             f"({', '.join(small.changes) or 'as given'})" if small else ""))
        lines.append("  vary more (--vary " + ",".join(AXES) + "), or give a larger --budget")
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"tried {result.tried} settings from {result.probes} simulated steps in {result.seconds:.1f} s "
                 f"(varied: {', '.join(result.axes)}; not counted: the CUDA context, allocator fragmentation, "
                 "kernels' workspaces)")
    return "\n".join(escape(line) for line in lines) + "\n"


__all__ = ["add", "budget_bytes", "run"]
