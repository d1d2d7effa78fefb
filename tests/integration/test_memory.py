"""docs/memory.md and docs/training.md stay true: the share table is regenerated, the training demo runs (1 and 2
processes, DDP), and the FSDP2 demo matches one process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from project import project_registry

from vlora_core.shares import render_share_table, share_rows

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "train_tiny.py"


def test_share_table_in_the_docs_is_current():
    text = (ROOT / "docs" / "memory.md").read_text()
    documented = re.search(r"<!-- shares:begin -->\n(.*?)<!-- shares:end -->", text, re.S).group(1)
    rows = share_rows(project_registry())
    assert documented == render_share_table(rows), "docs/memory.md is stale: regenerate it with `vlora shares`"
    by_model = {r["model"]: r for r in rows}
    # the figures quoted in the prose
    assert round(100 * by_model["Qwen2-VL-2B-Instruct"]["language"], 1) == 63.8
    assert round(100 * by_model["Llama-3.2-90B-Vision"]["vision"], 1) == 5.4
    for row in rows:
        assert abs(row["language"] + row["vision"] + (row["audio"] or 0) - 1) < 1e-9
    assert by_model["gemma-4-E2B-it"]["audio"] > 0 and by_model["gemma-4-31B-it"]["audio"] is None


def _run(*argv: str) -> str:
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, check=False, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_training_demo_single_process():
    out = _run(str(DEMO), "--steps", "3")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] and line.split()[0] in (
        "ocr", "captioning", "vqa", "domain_adaptation")]
    assert [r[0] for r in rows] == ["ocr", "captioning", "vqa", "domain_adaptation"]
    assert out.rstrip().endswith("state bytes = the plan's estimate")
    by_task = {r[0]: r for r in rows}
    assert int(by_task["vqa"][1]) < int(by_task["ocr"][1])  # vqa trains the language model only


def test_training_demo_on_two_processes_with_ddp():
    out = _run("-m", "torch.distributed.run", "--nproc_per_node", "2", str(DEMO), "--steps", "2",
               "--preset", "vqa", "--preset", "ocr")
    assert re.search(r"^vqa .* 2$", out, re.M) and re.search(r"^ocr .* 2$", out, re.M)
    assert "state bytes = the plan's estimate" in out


def test_fsdp2_on_two_processes_saves_the_single_process_adapter(tmp_path):
    """examples/train_fsdp.py: FSDP2 (fully_shard, gloo) with LoRA adapters and the projector in full, sharded;
    only planned parameters change, and the adapter equals one process's on the same examples."""
    out = _run("-m", "torch.distributed.run", "--nproc_per_node", "2", str(ROOT / "examples" / "train_fsdp.py"),
               "--steps", "3", "--out", str(tmp_path))
    assert re.search(r"sharded: (\d+) of the \1 trainable tensors", out), out
    worst = float(re.search(r"largest difference from one process: (\S+)", out).group(1))
    assert worst <= 1e-4
    assert out.rstrip().endswith("the sharded run saved the single-process adapter")
    assert (tmp_path / "fsdp" / "adapter_model.safetensors").exists()
    assert (tmp_path / "single" / "adapter_model.safetensors").exists()


def test_a_third_party_plugin_installed_beside_ours_does_not_make_the_pages_stale(tmp_path, monkeypatch):
    from tinyvlm import install_plugin

    from vlora_core import Registry

    source = ("from vlora_core import ArchitectureSpec, Component, hookimpl\n\n@hookimpl\ndef vlora_architectures():\n"
              "    return [ArchitectureSpec(name='elsewhere', model_types=('elsewhere',), components=(Component("
              "name='language', prefix=r'language\\.layers\\.(?P<layer>\\d+)', roles={'mlp': ('mlp.up',)}),))]\n")
    install_plugin(tmp_path, monkeypatch, "vlora-someone-elses", "vt_elsewhere", source)
    assert "vlora-someone-elses" in {p.distribution for p in Registry.discover(disabled=[]).plugins}
    ours = {(p.distribution, p.name) for p in project_registry().plugins}
    assert not any(d == "vlora-someone-elses" for d, _ in ours)
    assert {("vlora-core", "qwen2_vl"), ("vlora-core", "idefics3")} <= ours
