"""What a user sees, written to a folder so two versions of vlora can be compared byte for byte.

    python .ci/snapshot_outputs.py OUT            # run every command below, one file per command
    python .ci/snapshot_outputs.py --diff A B     # compare two such folders: counts, and the files that differ

A refactor that promises "nothing a user sees changed" runs it before and after (in one venv) and reports
the diff. Each command runs in-process through ``vlora_core.cli.main``; a file holds the exit code, stdout,
stderr and any file the command wrote.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p for p in (ROOT / "examples").glob("*") if p.suffix in (".yaml", ".json", ".toml")
               and not p.name.endswith(".lock.json"))
MODELS = ["Qwen2-VL-7B-Instruct", "llava-1.5-7b-hf", "gemma-3-4b-it", "Llama-3.2-11B-Vision"]
EXPLAIN = [
    ("qwen2_vl_ocr.yaml", "model.visual.blocks.0.attn.qkv"),
    ("qwen2_vl_ocr.yaml", "model.visual.patch_embed.proj"),
    ("qwen2_vl_ocr.yaml", "model.visual.merger.mlp.0"),
    ("qwen2_vl_ocr.yaml", "lm_head"),
    ("qwen2_vl_ocr.yaml", "model.language_model.layers.3.input_layernorm"),
    ("qwen2_vl_ocr.yaml", r"model\.language_model\.layers\.27\..*"),
    ("llava_vqa.yaml", r"model\.vision_tower\.vision_model\.encoder\.layers\.23\..*|"
                       r"model\.vision_tower\.encoder\.layers\.23\..*"),
    ("llava_vqa.yaml", "model.multi_modal_projector.linear_1"),
    ("mllama_cross_attention.yaml", r"model\.language_model\.layers\.3\..*"),
    ("gemma3_projector.yaml", "model.multi_modal_projector.mm_input_projection_weight"),
    ("qwen3_vl_moe_attention.yaml", r"model\.language_model\.layers\.0\.mlp\..*"),
    ("llama4_scout_language.yaml", r"language_model\.model\.layers\.1\..*"),
    ("qwen2_vl_domain.json", r"model\.visual\.blocks\.[0-2]\.attn\..*"),
    ("qwen2_5_vl_vqa.yaml", r"model\.language_model\.layers\.(?:0|27)\.self_attn\.q_proj"),
    ("llava_vqa.yaml", r".*layers\.23\.self_attn\.q_proj"),
    ("qwen2_5_vl_vqa.yaml", r"model\.visual\.blocks\.0\..*"),
    ("paligemma_captioning.yaml", r"model\.vision_tower\..*layers\.0\.self_attn\..*"),
]
TOOLS = ["peft", "unsloth", "llamafactory", "swift", "axolotl"]
IMPORTS = [("llamafactory_qwen2_5vl_lora_sft.yaml", "llamafactory"), ("swift_qwen2_5vl_ocr.sh", "swift"),
           ("unsloth_qwen2_vl.py", "unsloth --model Qwen2-VL-7B-Instruct")]


def commands(tmp: Path) -> list[tuple[str, list[str], Path | None]]:
    """(file name, argv, a file the command writes) for every command compared."""
    out: list[tuple[str, list[str], Path | None]] = []
    for spec in SPECS:
        s = str(spec.relative_to(ROOT))
        out.append((f"plan-{spec.name}", ["plan", s], None))
        out.append((f"plan-json-{spec.name}", ["plan", s, "--json"], None))
        out.append((f"plan-modules-{spec.name}", ["plan", s, "--modules"], None))
        out.append((f"validate-{spec.name}", ["validate", s], None))
        lock = tmp / f"{spec.name}.lock.json"
        out.append((f"lock-{spec.name}", ["lock", s, "-o", str(lock)], lock))
        for tool in TOOLS:
            out.append((f"export-{tool}-{spec.name}", ["export", s, "--to", tool], None))
        for model in MODELS:
            out.append((f"plan-{spec.name}-on-{model}", ["plan", s, "--model", model], None))
    for model in MODELS:
        out.append((f"plan-defaults-{model}", ["plan", "--model", model, "--json"], None))
    for i, (spec, name) in enumerate(EXPLAIN):
        out.append((f"explain-{i:02d}-{spec}", ["plan", f"examples/{spec}", "--explain", name], None))
    for broken in sorted((ROOT / "examples" / "broken").glob("*")):
        out.append((f"validate-broken-{broken.name}", ["validate", str(broken.relative_to(ROOT))], None))
    for file, tool in IMPORTS:
        out.append((f"import-{file}", ["import", f"examples/interop/{file}", "--from", *tool.split()], None))
    for command in ([], ["plan"], ["validate"], ["lock"], ["plugins"], ["shares"], ["scaffold"], ["coverage"],
                    ["cache"], ["cache", "info"], ["schema"], ["adapter"], ["adapter", "inspect"], ["adapter", "check"],
                    ["adapter", "spec"], ["adapter", "migrate"], ["export"], ["import"], ["models"]):
        out.append((f"help-{'-'.join(command) or 'vlora'}", [*command, "--help"], None))
    out.append(("models", ["models"], None))
    out.append(("plugins", ["plugins"], None))
    adapter = "examples/adapters/llava-q-v"
    out.append(("adapter-inspect", ["adapter", "inspect", adapter], None))
    out.append(("adapter-inspect-json", ["adapter", "inspect", adapter, "--json"], None))
    out.append(("adapter-spec", ["adapter", "spec", adapter, "--model", "examples/adapters/tiny-llava"], None))
    out.append(("adapter-check", ["adapter", "check", adapter, "--model", "examples/adapters/tiny-llava"], None))
    out.append(("adapter-check-7b", ["adapter", "check", adapter, "--model", "llava-1.5-7b-hf"], None))
    return out


def run(argv: list[str]) -> tuple[int, str, str]:
    from vlora_core.cli import main

    os.environ["COLUMNS"] = "120"  # --help wraps to the terminal's width
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return int(code or 0), stdout.getvalue(), stderr.getvalue()


def snapshot(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        for i, (name, argv, written) in enumerate(cmds, 1):
            code, stdout, stderr = run(argv)
            text = f"$ vlora {' '.join(argv)}\nexit {code}\n--- stdout\n{stdout}--- stderr\n{stderr}"
            if written is not None and written.is_file():
                text += f"--- {written.name}\n{written.read_text()}"
            (out / f"{name}.txt").write_text(text.replace(tmp, "TMP"))
            print(f"\r{i}/{len(cmds)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)


def diff(a: Path, b: Path) -> int:
    names = sorted({p.name for p in a.glob("*.txt")} | {p.name for p in b.glob("*.txt")})
    same = [n for n in names
            if (a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()]
    print(f"{len(same)} of {len(names)} outputs byte-identical")
    for n in names:
        if n in same:
            continue
        old = (a / n).read_text().splitlines() if (a / n).is_file() else []
        new = (b / n).read_text().splitlines() if (b / n).is_file() else []
        print(f"\n=== {n}")
        print("\n".join(list(difflib.unified_diff(old, new, lineterm="", n=1))[2:40]))
    return 0 if len(same) == len(names) else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--diff"]:
        sys.exit(diff(Path(sys.argv[2]), Path(sys.argv[3])))
    snapshot(Path(sys.argv[1]))
