"""``vlora plan``: what a spec trains on a model, as a table, JSON, a list of modules, an explanation of one
module, pictures, or several plans side by side."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..boundary import escape, escape_lines, shown, write_text
from ..cache import tree_for
from ..draw import draw_html, draw_svg
from ..errors import UsageError
from ..explain import explain, grouped
from ..interop.common import model_id
from ..memory.inputs import IMAGE_FAMILIES
from ..memory.quant import QUANT
from ..memory.step import ATTENTION, DTYPES, OPTIMIZERS, simulate_step  # torch: imported when it runs
from ..plan import DTYPE_BYTES
from ..plugins import default_registry
from ..report import render_compare
from ..resolve import resolve
from ..serving import serve_plan
from ..spec import TASK_PRESETS, load_spec
from ..spec_file import spec_text
from .common import command, errors, model_tree, resolution_options, serve_options, spec_of, write

GROUP_ABOVE = 8  # --explain: more modules than this are said in groups


def add(sub: Any) -> None:
    p = command(sub, "plan",
        help="show what a spec trains on a model",
        description="Resolve SPEC against a model and print the plan: per component x role, the modules, "
        "layers, LoRA parameters, their share of all LoRA parameters and of the component's own parameters; "
        "then totals and a memory estimate. With --compare or --compare-tasks, several plans for one model "
        "side by side.",
    )
    p.add_argument("spec", metavar="SPEC", nargs="?",
                   help="spec file (.yaml, .yml, .json or .toml); without one, the defaults (every tower, attention "
                   "and MLP, r=16) on --model")
    resolution_options(p)
    p.add_argument("--modules", action="store_true", help="also list every target and fully trained module by name")
    p.add_argument("--explain", metavar="NAME",
                   help="why each module named NAME (a full name, a full-name regular expression, or the end of "
                   "names such as q_proj; many are said in groups with their layers) is or is not a target: its "
                   "component and role, and the toggle, layer selection, exclusion or unused-layer rule that "
                   "decided it")
    p.add_argument("--json", action="store_true", help="print the full plan as JSON (sorted, deterministic)")
    p.add_argument("--write", metavar="FILE", help="save the spec this plan came from, --set values included, to FILE "
                   "(.yaml or .json; it may be SPEC itself: a YAML spec keeps its comments and key order); written "
                   "only when the plan resolves")
    p.add_argument("--svg", metavar="FILE", help="also draw the plan as an SVG picture: per component a grid of "
                   "layers x roles, adapted cells coloured by rank, unused layers and modules trained in full marked "
                   "(with --compare or --compare-tasks, the plans side by side)")
    p.add_argument("--html", metavar="FILE", help="also write one self-contained HTML page: the picture and the table")
    p.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default="fp32",
                   help="dtype of the trainable weights for the memory estimate (default fp32, PEFT's default "
                   "for adapters)")
    p.add_argument("--compare", metavar="SPEC", nargs="+", default=[],
                   help="more specs to lay side by side with SPEC (all for one model)")
    p.add_argument("--compare-tasks", metavar="TASK", nargs="*", default=None,
                   help="lay task presets side by side (all four: ocr, captioning, vqa, domain_adaptation, or the "
                   "ones named), each applied to SPEC (or to the defaults) with its tower toggles")
    serve_options(p, "the adapter this plan trains (the plan still exits 0)")
    mem = p.add_argument_group("the peak memory of a training step (--memory)")
    mem.add_argument("--memory", action="store_true",
                     help="also predict the peak memory of one training step of the full-size model, by executing "
                     "its own forward and backward on fake tensors (a few seconds; nothing is allocated): base "
                     "weights, adapters, optimizer state, and the step's activations, gradients and temporaries by "
                     "part")
    step_options(mem)
    p.add_argument("--infer", action="store_true",
                   help="read the architecture from the model's structure even where a plugin claims it (to compare "
                   "the two); a model no plugin claims is always read that way, and the plan says so")


def step_options(mem: Any) -> None:
    """The inputs of a simulated training step (plan --memory, fit)."""
    mem.add_argument("--batch", type=int, default=1, metavar="N", help="sequences per step (default 1)")
    mem.add_argument("--seq", type=int, default=2048, metavar="N", help="tokens per sequence, unpadded, images' "
                     "tokens included (default 2048)")
    mem.add_argument("--images", type=int, default=0, metavar="N",
                     help="images in each sequence (default 0: a text step). Simulated "
                     "for " + ", ".join(IMAGE_FAMILIES) + " so far")
    mem.add_argument("--image-size", metavar="WxH", type=_size, help="Qwen2-VL / Qwen2.5-VL: the images' size before "
                     "the processor's resize (default 448x448; the processor keeps 56x56 to 1280 x 28x28 pixels); "
                     "LLaVA and Gemma-3 resize every image to their tower's size")
    mem.add_argument("--gradient-checkpointing", action="store_true", help="with gradient checkpointing "
                     "(non-reentrant, as vlora's apply turns it on)")
    mem.add_argument("--attention", choices=ATTENTION, default="sdpa", help="the attention implementation "
                     "(default sdpa; kernels keep different activations)")
    mem.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adamw",
                     help="adamw (2 fp32 states per trainable weight, the default), adamw8bit, or sgd")
    mem.add_argument("--base-dtype", choices=sorted(DTYPES), help="the base weights' dtype (default: the "
                     "config's, else bf16)")
    mem.add_argument("--world-size", type=int, default=1, metavar="N", help="FSDP2 over N devices: the prediction "
                     "per device (every decoder layer and vision block sharded, then the whole model, as accelerate's "
                     "transformer-based wrap policy does it); --batch is per device (default 1: one device)")
    mem.add_argument("--quant", choices=QUANT, help="the base quantized by bitsandbytes as from_pretrained does it: "
                     "4bit (QLoRA's NF4, double quantization) or 8bit (LLM.int8()); modules trained in full stay "
                     "unquantized")


def step_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """simulate_step's keyword arguments from the options above."""
    return {"batch": args.batch, "seq": args.seq, "images": args.images, "image_size": args.image_size,
            "gradient_checkpointing": args.gradient_checkpointing, "attention": args.attention,
            "optimizer": args.optimizer, "base_dtype": args.base_dtype, "quant": args.quant,
            "world_size": args.world_size}


def run(args: argparse.Namespace) -> int:
    if args.compare or args.compare_tasks is not None:
        return compare(args)
    if args.spec is None and args.model is None:
        raise UsageError("no SPEC given, and no --model to plan the defaults on",
                         hint="vlora plan SPEC [--model REF], or vlora plan --model REF for the defaults")
    spec = spec_of(args)
    if args.explain:
        tree = model_tree(args, spec)
        plan = resolve(spec, tree, infer=args.infer)
        found = explain(plan, tree, args.explain)
        if len(found) > GROUP_ABOVE:  # a leaf name over every layer: one line per group, with its layers
            print(f"{shown(args.explain)}: {len(found)} modules")
            print("\n".join(f"  {line}" for line in grouped(found)))
        else:
            print("\n".join(e.render() for e in found))
        return errors.EXIT_OK
    tree = model_tree(args, spec) if args.serve or args.memory else args.model
    plan = resolve(spec, tree, infer=args.infer)
    served = serve_plan(plan, tree, args.serve, args.engine_version, subject=args.spec or "the defaults") \
        if args.serve else None
    if args.write:
        text = spec_text(args.spec, args.set or (), target=args.write,
                         extra={"model": args.model} if args.model else None)
        written = write_text(args.write, text, what="the spec")  # SPEC itself is allowed: the user asked for it
        print(f"wrote {written}", file=sys.stderr)
    memory = simulate_step(spec, tree, **step_kwargs(args)) if args.memory else None
    if args.json:
        data = plan.to_dict() | ({"serve": served.to_dict()} if served else {}) | (
            {"memory": memory.to_dict()} if memory else {})
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n" if served or memory else plan.to_json())
    else:
        sys.stdout.write(plan.table(args.dtype))
        if memory:
            sys.stdout.write("\n(the two lines above count the adapters' training state and the weights alone; the "
                             "step below counts everything a training step holds)\n" + memory.table())
    if args.modules and not args.json:
        sys.stdout.write(module_list(plan))
    if served and not args.json:
        sys.stdout.write("\n" + escape_lines(served.report()))
        print(escape(f"serve with: {served.command(model_id(plan))}"))
    drawings(args, plan)
    return errors.EXIT_OK


def _size(text: str) -> tuple[int, int]:
    """``--image-size WxH`` -> (height, width)."""
    width, sep, height = text.lower().partition("x")
    if not (sep and width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is no size: write WIDTHxHEIGHT, e.g. 448x448")
    return int(height), int(width)


def drawings(args: argparse.Namespace, plans: Any) -> None:
    """Write --svg and --html (a plan, or (label, plan) pairs side by side); say so on stderr."""
    for path, draw in ((args.svg, draw_svg), (args.html, draw_html)):
        if path:
            write(draw(plans), path, inputs=[args.spec, *args.compare])
            print(f"vlora plan: wrote {path}", file=sys.stderr)


def module_list(plan) -> str:
    lines = ["", "targets:"]
    lines += [f"  {t.name}  ({t.component} {t.role}, r={t.r}, alpha={t.lora_alpha:g})" for t in plan.targets]
    if plan.full_modules:
        lines.append("fully trained:")
        lines += [f"  {m.name}  ({m.component or 'outside the components'})" for m in plan.full_modules]
    return "\n".join(lines) + "\n"


def compare(args: argparse.Namespace) -> int:
    if args.compare_tasks is not None:
        if args.compare:
            raise UsageError("use --compare or --compare-tasks, not both")
        tasks = [t for t in args.compare_tasks if t in TASK_PRESETS]
        others = [t for t in args.compare_tasks if t not in TASK_PRESETS]
        if others and args.spec is None and len(others) == 1 and not tasks:
            args.spec = others.pop()  # `vlora plan --compare-tasks SPEC`: the flag before the spec
        if others:
            raise UsageError(f"--compare-tasks: unknown task {others[0]!r}", hint=f"tasks: {', '.join(TASK_PRESETS)}")
        base = spec_of(args)
        specs = [(task, base.with_task(task)) for task in tasks or TASK_PRESETS]
        ref = args.model or base.model_ref()
    else:
        paths = ([args.spec] if args.spec else []) + args.compare
        specs = [(path, load_spec(path, sets=args.set)) for path in paths]
        models = {args.model or s.model_ref() for _, s in specs}
        if len(models) != 1:
            raise UsageError(f"the specs name different models ({', '.join(sorted(map(str, models)))})",
                             hint="compare plans for one model: pass --model REF")
        (ref,) = models
    if ref is None:
        raise UsageError("no model to compare on", hint="pass --model REF or set `model:` in the spec")
    tree = tree_for(ref, default_registry())
    plans = [(label, resolve(spec, tree, infer=args.infer)) for label, spec in specs]
    memories = [simulate_step(spec, tree, **step_kwargs(args)) for _, spec in specs] if args.memory else None
    if args.json:
        data = {"model": str(ref), "plans": [{"label": label, **plan.to_dict()} | (
            {"memory": memories[i].to_dict()} if memories else {}) for i, (label, plan) in enumerate(plans)]}
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_compare(plans, args.dtype, [m.peak for m in memories] if memories else None))
        if memories:
            print(f"(peak of a training step: vlora plan --memory's prediction, {memories[0].inputs['batch']} x "
                  f"{memories[0].inputs['seq']} tokens, checkpointing "
                  f"{'on' if args.gradient_checkpointing else 'off'}, {args.optimizer}, "
                  + (f"base quantized to {args.quant}, " if args.quant else "")
                  + (f"{args.images} image(s) per sequence" if args.images else "a text step (no image: the vision "
                     "tower does not run; --images N adds them)") + "; docs/memory.md)")
    drawings(args, plans)
    return errors.EXIT_OK


__all__ = ["add", "run", "step_kwargs", "step_options"]
