"""Pictures of a plan: the drawing is read back (every cell carries its component, row, layer and state) and
must show every adapted cell and only those; then a real renderer (cairosvg) draws it and the pixels at the
centres of cells are checked against the colours they stand for."""

from __future__ import annotations

import io
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cairosvg
import pytest
from PIL import Image

from vlora_core import resolve
from vlora_core.cli import main
from vlora_core.draw import FROZEN, FULL, PALETTE, UNUSED, draw_html, draw_svg

ROOT = Path(__file__).resolve().parents[2]
NS = "{http://www.w3.org/2000/svg}"
PLANS = {
    "per-component ranks, projector in full": ("examples/qwen2_vl_ocr.yaml", {}),
    "layer selection, unused vision layer": ({"finetune_projector": "lora", "vision": {"layers": {"last": 6}}},
                                             "llava-1.5-7b-hf"),
    "unused layer kept": ({"include_unused_layers": True, "finetune_language_layers": False}, "llava-1.5-7b-hf"),
    "stacks and cross-attention": ("examples/mllama_cross_attention.yaml", {}),
    "experts": ("examples/qwen3_vl_moe_attention.yaml", {"finetune_mlp_modules": True}),
    "a bare parameter": ("examples/gemma3_projector.yaml", {}),
}


def plan_of(case: str):
    spec, extra = PLANS[case]
    if isinstance(spec, str):
        from vlora_core import load_spec

        loaded = load_spec(ROOT / spec)
        return resolve(loaded.model_copy(update=extra) if extra else loaded)
    return resolve(spec, extra)


def cells(svg: str) -> list[dict[str, str]]:
    root = ET.fromstring(svg)
    return [{**{k[5:]: v for k, v in el.attrib.items() if k.startswith("data-")},
             **{k: el.attrib[k] for k in ("x", "y", "width", "height", "fill")}}
            for el in root.iter(f"{NS}rect") if el.attrib.get("class") == "cell"]


def row_label(t) -> str:
    if t.variant is None:
        return t.role
    return f"{t.role} ({t.variant}" + (f": {t.experts})" if t.experts > 1 else ")")


@pytest.mark.parametrize("case", list(PLANS))
def test_the_drawing_shows_every_adapted_cell_and_only_those(case):
    plan = plan_of(case)
    drawn = cells(draw_svg(plan))
    adapted = [c for c in drawn if c["state"] == "adapted"]
    layered = {(c["component"], c["stack"], c["row"], int(c["layer"])) for c in adapted if c["layer"]}
    expected = {(t.component, t.stack or "", row_label(t), t.layer) for t in plan.targets if t.layer is not None}
    assert layered == expected
    named = sorted(c["name"] for c in adapted if not c["layer"])
    assert named == sorted(t.name for t in plan.targets if t.layer is None)
    for c in adapted:  # the rank a cell shows is the rank of its targets
        ranks = {t.r for t in plan.targets if (t.component, t.stack or "", row_label(t)) ==
                 (c["component"], c["stack"], c["row"]) and (str(t.layer) == c["layer"] or t.name == c.get("name"))}
        assert ranks == {int(c["r"])}
    assert sorted(c["name"] for c in drawn if c["state"] == "full") == sorted(m.name for m in plan.full_modules)
    # every layer of every stack is drawn in every row, and the unused ones are marked
    for key, count in plan.layer_counts.items():
        comp, _, stack = key.partition(".")
        rows = {c["row"] for c in drawn if c["component"] == comp and c["stack"] == stack and c["layer"]}
        for row in rows:
            layers = sorted(int(c["layer"]) for c in drawn if (c["component"], c["stack"], c["row"]) ==
                            (comp, stack, row) and c["layer"])
            assert layers == list(range(count))
        marked = {int(c["layer"]) for c in drawn if c["component"] == comp and c["stack"] == stack
                  and c["state"] == "unused"}
        unused = set(plan.unused_layers.get(key, ()))
        if plan.spec.include_unused_layers or not plan.spec.component_enabled(comp):
            assert not marked or not plan.spec.component_enabled(comp)
        else:
            assert marked == unused


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


@pytest.mark.parametrize("case", ["per-component ranks, projector in full", "layer selection, unused vision layer",
                                  "stacks and cross-attention"])
def test_a_real_renderer_paints_the_cells_in_their_colours(case):
    plan = plan_of(case)
    svg = draw_svg(plan)
    image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode()))).convert("RGB")
    drawn = cells(svg)
    seen = set()
    for c in drawn:
        key = (c["state"], c["r"])
        if key in seen:
            continue
        seen.add(key)
        x = float(c["x"]) + float(c["width"]) / 2
        y = float(c["y"]) + float(c["height"]) / 2 - 1
        assert image.getpixel((int(x), int(y))) == rgb(c["fill"]), c
    states = {s for s, _ in seen}
    assert "adapted" in states
    if case == "layer selection, unused vision layer":
        assert {"frozen", "unused"} <= states
    colours = {c["fill"] for c in drawn}
    assert colours <= {*PALETTE, FROZEN, UNUSED, FULL}
    # distinct ranks get distinct colours
    by_rank = {c["r"]: c["fill"] for c in drawn if c["state"] == "adapted"}
    assert len(set(by_rank.values())) == len(by_rank)


def test_two_plans_side_by_side(tmp_path, capsys):
    svg, page = tmp_path / "tasks.svg", tmp_path / "tasks.html"
    assert main(["plan", "--model", "Qwen2-VL-2B-Instruct", "--compare-tasks", "ocr", "vqa", "--svg", str(svg),
                 "--html", str(page)]) == 0
    assert f"wrote {svg}" in capsys.readouterr().err
    text = svg.read_text()
    assert re.findall(r">(ocr|vqa)</text>", text) == ["ocr", "vqa"]
    root_x = {c["component"]: [] for c in cells(text)}
    for c in cells(text):
        root_x[c["component"]].append(float(c["x"]))
    half = float(ET.fromstring(text).attrib["width"]) / 2
    assert all(any(x < half for x in xs) and any(x > half for x in xs) for xs in root_x.values())
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "<svg" in html and "ocr" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # self-contained


def test_the_html_page_holds_the_picture_and_the_table():
    plan = plan_of("per-component ranks, projector in full")
    page = draw_html(plan)
    assert draw_svg(plan) in page
    assert "LoRA parameters: 45,613,056" in page


def test_the_readme_picture_is_what_vlora_draws():
    sys.path.insert(0, str(ROOT / "docs" / "images"))
    import render

    assert (ROOT / "docs" / "images" / "qwen2_vl_ocr.svg").read_text() == render.svg()
    assert "docs/images/qwen2_vl_ocr.png" in (ROOT / "README.md").read_text()
    committed = Image.open(ROOT / "docs" / "images" / "qwen2_vl_ocr.png").convert("RGB")
    fresh = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=render.svg().encode()))).convert("RGB")
    assert committed.size == fresh.size
    for c in cells(render.svg()):
        point = (int(float(c["x"]) + float(c["width"]) / 2), int(float(c["y"]) + float(c["height"]) / 2 - 1))
        assert committed.getpixel(point) == rgb(c["fill"])


def test_the_picture_is_as_wide_as_its_text_and_numbers_the_layers():
    """Rendered with a real font: no text is cut at the right edge (the README's picture cut its own totals), and
    each grid of layers carries its layer numbers, the first and the last."""
    plan = resolve(ROOT / "examples" / "qwen2_vl_ocr.yaml")
    svg = draw_svg(plan)
    root = ET.fromstring(svg)
    width = float(root.get("width"))
    texts = [t.text for t in root.iter(f"{NS}text")]
    assert {"0", "31", "27"} <= set(texts)  # vision 32 layers, language 28
    image = Image.open(io.BytesIO(cairosvg.svg2png(bytestring=svg.encode()))).convert("L")
    right = [image.getpixel((int(width) - 1 - dx, y)) for dx in range(8) for y in range(image.height)]
    assert min(right) > 200, "ink reaches the right edge: a text is cut"  # a white margin, no glyph in it
