"""docs/coverage.md stays true: every model type of transformers' image-text-to-text registry is resolved (by a
plugin or by inference, with every tower's layer count equal to a value of its config) or refused with a
reason; none crashes. The page is regenerated and compared."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from project import project_registry

from vlora_core import default_registry
from vlora_core.coverage import coverage_rows, render_coverage

ROOT = Path(__file__).resolve().parents[2]


def test_coverage_page_is_current_and_most_types_resolve():
    rows = coverage_rows(project_registry())
    text = (ROOT / "docs" / "coverage.md").read_text()
    documented = re.search(r"<!-- coverage:begin -->\n(.*?)<!-- coverage:end -->", text, re.S).group(1)
    assert documented == render_coverage(rows), "docs/coverage.md is stale: regenerate it with `vlora coverage`"
    resolved = [r for r in rows if r["status"] in ("plugin", "inferred")]
    assert len(resolved) >= 70
    assert all(r["counts_match"] for r in resolved), [r for r in resolved if not r["counts_match"]]
    assert all(r["detail"] for r in rows)
    by_type = {r["model_type"]: r for r in rows}
    assert by_type["qwen2_vl"]["status"] == "plugin" and by_type["internvl"]["status"] == "plugin"
    assert by_type["glm4v"]["status"] == "inferred"
    # a plugin's claim beats a text-only default config: gemma4 is the plugin's, resolved on its references
    assert by_type["gemma4"]["status"] == "plugin" and "gemma-4-E2B-it: audio 12" in by_type["gemma4"]["detail"]
    assert by_type["gemma4_unified"]["status"] == "refused" and "text-only" in by_type["gemma4_unified"]["detail"]
    # encoder-decoder shapes: the decoder's cross-attention reads the vision tower (no projector), or a text encoder
    # and decoder, each a stack (Florence-2, whose DaViT tower is staged: a stack per stage)
    for model_type in ("blip", "pix2struct", "vision-encoder-decoder", "florence2", "git", "idefics",
                       "unlimited_ocr"):
        assert by_type[model_type]["status"] == "inferred", by_type[model_type]
    florence = by_type["florence2"]["detail"]
    assert "language decoder 12 (decoder_layers); language encoder 12 (encoder_layers)" in florence
    assert "vision 2 9 (depths[2])" in florence
    assert "gated_cross_attn_layers 32 (num_hidden_layers / cross_layer_interval)" in by_type["idefics"]["detail"]
    assert "vision sam_encoder 12 (sam_config.num_hidden_layers)" in by_type["unlimited_ocr"]["detail"]
    assert "language decoder 26 (num_hidden_layers); language encoder 26" in by_type["t5gemma2"]["detail"]
    assert by_type["apertus1p5"]["status"] == "inferred"  # its image and audio tokenizers are not towers
    assert "beside it (an action expert, as in pi0)" in by_type["pi0"]["detail"]
    assert by_type["udop"]["status"] == "inferred"  # no vision tower: its patch embedding is the projector


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_coverage_shows_progress_on_a_terminal_only(monkeypatch, terminal):
    import vlora_core.coverage as coverage

    monkeypatch.setattr(coverage, "registry_model_types", lambda: ["llava", "qwen2_vl", "aria"])
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    rows = coverage.coverage_rows(default_registry(), progress=True)
    assert [r["model_type"] for r in rows] == ["llava", "qwen2_vl", "aria"]
    shown = stream.getvalue()
    assert ("vlora coverage" in shown and "/3 " in shown) if terminal else shown == ""
